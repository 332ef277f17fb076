"""A pod's life through containerd's CRI plugin with the runtime under test as a RuntimeClass
handler, driven by crictl: one test per step of conformance/cri, in order on one pod.

crictl is not in Debian and cannot be built offline from a Go proxy: these tests run when
$CRICTL names a crictl built from kubernetes-sigs/cri-tools (README: "Kubernetes"), and are
skipped, saying so, otherwise."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from cri import pod as cri_pod
from cri.node import CRICTL_ENV, Node, ensure_installed, find_tool
from engine_env import run_step
from engines.common import Runtime, Workdir


@pytest.fixture(scope="module")
def pod(runtime: Runtime) -> Iterator[cri_pod.Pod]:
    crictl = find_tool(CRICTL_ENV)
    if not crictl:
        pytest.skip(f"no crictl: set ${CRICTL_ENV} to a crictl built from cri-tools "
                    "(not in Debian; see the README's Kubernetes section)")
    if os.geteuid() != 0:
        pytest.skip("containerd's CRI plugin with a custom runtime needs root")
    try:
        ensure_installed()
    except RuntimeError as e:
        pytest.skip(f"cannot install the node's Debian packages: {e}")
    work = Workdir()
    try:
        node = Node(runtime, work, crictl)
        node.setup()
        yield cri_pod.Pod(node)
    finally:
        errors = work.cleanup()
        assert not errors, f"cleanup failed: {errors}"


# the first test's setup installs the engine from Debian when missing (minutes on a fresh
# machine); every command inside a step has its own timeout
pytestmark = pytest.mark.timeout(900)

@pytest.mark.parametrize("step", cri_pod.STEPS, ids=lambda s: s.name)
def test_cri(step, pod, runtime, request):
    run_step(step, pod, runtime, request)
