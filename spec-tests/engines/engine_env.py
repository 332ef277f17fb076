"""Fixtures of the engine tests: podman and containerd set up once per session, each with
the runtime under test (onggi, or $ONGGI_ENGINE_RUNTIME, e.g. runc to check the steps).

The steps themselves live in conformance/engines, which also runs them without pytest."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
from harness import REPO

sys.path.insert(0, str(REPO / "conformance"))

from engines import (  # noqa: E402
    cgroups,  # noqa: E402,F401  (test_configs)
    containerd,
    podman,
)
from engines.common import Runtime, Workdir  # noqa: E402
from engines.steps import Step  # noqa: E402


@pytest.fixture(scope="session")
def runtime() -> Runtime:
    return Runtime.select()


def engine(mod: ModuleType, runtime: Runtime) -> Iterator[object]:
    """Install the engine's packages (skip if that cannot be done here), set it up in a
    private temp dir, and clean everything up afterwards."""
    if os.geteuid() != 0:
        pytest.skip("podman and containerd with a custom runtime need root")
    try:
        mod.ensure_installed()
    except RuntimeError as e:
        pytest.skip(f"cannot install the engine's Debian packages: {e}")
    work = Workdir()
    try:
        yield mod.setup(runtime, work)
    finally:
        errors = work.cleanup()
        assert not errors, f"cleanup failed: {errors}"


@pytest.fixture(scope="session")
def podman_env(runtime: Runtime) -> Iterator[podman.Podman]:
    yield from engine(podman, runtime)


@pytest.fixture(scope="session")
def ctr_env(runtime: Runtime) -> Iterator[containerd.Ctr]:
    yield from engine(containerd, runtime)


def run_step(step: Step, ctx: object, runtime: Runtime, request: pytest.FixtureRequest) -> None:
    """Run the step (with onggi every step must pass: no verb or cgroup support is optional)."""
    step.fn(ctx)
