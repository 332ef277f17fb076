"""containerd 1.6 (driven with ctr) runs containers with the runtime under test: one test
per step of conformance/engines (`python conformance/engines containerd` runs the same)."""

import pytest
from engine_env import containerd, run_step

# the first test's setup installs the engine from Debian when missing (minutes on a fresh
# machine); every command inside a step has its own timeout
pytestmark = pytest.mark.timeout(900)


@pytest.mark.parametrize("step", containerd.STEPS, ids=lambda s: s.name)
def test_containerd(step, ctr_env, runtime, request):
    run_step(step, ctr_env, runtime, request)
