"""pytest fixtures; the harness itself lives in harness.py (import it by that name: several
suites have a conftest.py of their own)."""

from harness import bundle, busybox_rootfs, state_root  # noqa: F401
