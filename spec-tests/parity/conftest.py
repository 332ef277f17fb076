"""The parity suite's fixture: runc side by side (the bundle fixtures are the suite's own)."""

from paritylib import runc  # noqa: F401
