"""pytest fixtures of the image tool's tests; they live in imgtest.py, a module name that
cannot clash with the other test directories' conftest modules."""

from imgtest import busybox_layout, registry, store, work  # noqa: F401
