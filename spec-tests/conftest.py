"""pytest fixtures; the harness itself lives in harness.py (import it by that name: several
suites have a conftest.py of their own)."""

from harness import bundle, busybox_rootfs, state_root  # noqa: F401

# markers cgroupv2 and systemd: skip on this host, run in the v2 guest (spec-tests/v2guest)
pytest_plugins = ["guestmarks"]
