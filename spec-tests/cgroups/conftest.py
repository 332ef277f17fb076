"""Fixtures for the cgroup suites (helpers in cgtest.py)."""

from __future__ import annotations

from cgtest import runc  # noqa: F401
