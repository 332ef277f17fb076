#!/usr/bin/env python3
"""onggi vs runc, side by side in one run, printing the ratio of medians.

    .venv/bin/python conformance/bench.py [--runs N]

Measures `run` of /bin/true on the busybox bundle, and `state` of a created container (the
hot path engines pay on every event). The two commands alternate run by run, so a change in
the machine's load hits both alike (hyperfine runs one batch after the other). A benchmark,
not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bundles"))
sys.path.insert(0, REPO)

import busybox  # noqa: E402

ONGGI = os.path.join(REPO, ".venv", "bin", "onggi")


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise SystemExit(f"{tool}: not installed (apt-get install {tool})")
    return path


def interleaved(cmds: dict[str, list[str]], runs: int, warmup: int = 3) -> dict[str, float]:
    """Median wall time of each command, running them in turn `runs` times."""
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for i in range(warmup + runs):
        for name, argv in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def report(title: str, res: dict[str, float], runs: int) -> None:
    o, r = res["onggi"], res["runc"]
    print(f"{title}: onggi {o * 1000:.1f} ms, runc {r * 1000:.1f} ms (medians of {runs}, "
          f"interleaved) -> ratio {o / r:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    a = p.parse_args()
    runc = _need("runc")
    work = tempfile.mkdtemp(prefix="onggi-bench-")
    try:
        bundle = busybox.build_bundle(os.path.join(work, "bundle"), ["/bin/true"])
        ro, rr = os.path.join(work, "onggi-root"), os.path.join(work, "runc-root")
        res = interleaved({
            "onggi": [ONGGI, "--root", ro, "run", "-b", bundle, "onggi-bench"],
            # another id: with no cgroupsPath the id names the cgroup, which both would share
            "runc": [runc, "--root", rr, "run", "-b", bundle, "runc-bench"],
        }, a.runs)
        report("run /bin/true", res, a.runs)

        try:
            for tool, root, cid in ((ONGGI, ro, "onggi-bench-st"), (runc, rr, "runc-bench-st")):
                subprocess.run([tool, "--root", root, "create", "-b", bundle, cid],
                               check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            res = interleaved({
                "onggi": [ONGGI, "--root", ro, "state", "onggi-bench-st"],
                "runc": [runc, "--root", rr, "state", "runc-bench-st"],
            }, a.runs)
        finally:  # created containers outlive us otherwise (and runc's keep a cgroup)
            for tool, root, cid in ((ONGGI, ro, "onggi-bench-st"), (runc, rr, "runc-bench-st")):
                subprocess.run([tool, "--root", root, "delete", "--force", cid],
                               check=False, stderr=subprocess.DEVNULL)
        report("state (hot path)", res, a.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
