"""A Kubernetes node's path: containerd's CRI plugin with the runtime under test as a
RuntimeClass handler, driven by crictl step by step, then the CRI validation suite.

    CRICTL=/path/crictl CRITEST=/path/critest \\
        .venv/bin/python conformance/cri [--runtime onggi|runc|PATH] [pod|critest|all]

crictl and critest are not in Debian: build them from kubernetes-sigs/cri-tools (see the
README) and name them in $CRICTL/$CRITEST. Without them this exits 0 saying it skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines.__main__ import run_steps  # noqa: E402
from engines.common import Runtime, Workdir, exit_on_term  # noqa: E402

from cri import pod  # noqa: E402
from cri.node import CRICTL_ENV, CRITEST_ENV, Node, ensure_installed, find_tool  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", default="all", choices=["all", "pod", "critest"])
    p.add_argument("--runtime", help="onggi (default), runc, crun or a path")
    p.add_argument("--focus", help="critest: only specs matching this regexp")
    a = p.parse_args()
    exit_on_term()
    crictl = find_tool(CRICTL_ENV)
    if not crictl:
        print(f"skipped: no crictl (set ${CRICTL_ENV}; build it from cri-tools, see README)")
        return 0
    if os.geteuid() != 0:
        print("cri: needs root")
        return 1
    runtime = Runtime.select(a.runtime)
    print(f"runtime: {runtime.name} ({runtime.path})")
    ensure_installed()
    failed: list[str] = []
    if a.what in ("all", "pod"):
        work = Workdir()
        try:
            node = Node(runtime, work, crictl)
            node.setup()
            failed += run_steps(pod.Pod(node), pod.STEPS, runtime)
        finally:
            for err in work.cleanup():
                print(f"cleanup: {err}", file=sys.stderr)
    if a.what in ("all", "critest"):
        tool = find_tool(CRITEST_ENV)
        if not tool:
            print(f"critest skipped: no critest (set ${CRITEST_ENV})")
        else:
            t0 = time.monotonic()
            from cri import critest

            res = critest.run_critest(runtime, crictl, tool, focus=a.focus)
            print(res.summary(), f"in {time.monotonic() - t0:.0f}s")
            for name in res.failed:
                print(f"  failed: {name}")
    print(f"{'FAILED: ' + ', '.join(failed) if failed else 'pod steps passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
