"""podman 4.3 runs containers with the runtime under test: one test per step of
conformance/engines (`python conformance/engines podman` runs the same steps)."""

import pytest
from engine_env import podman, run_step

# the first test's setup installs the engine from Debian when missing (minutes on a fresh
# machine); every command inside a step has its own timeout
pytestmark = pytest.mark.timeout(900)


@pytest.mark.parametrize("step", podman.STEPS, ids=lambda s: s.name)
def test_podman(step, podman_env, runtime, request):
    run_step(step, podman_env, runtime, request)
