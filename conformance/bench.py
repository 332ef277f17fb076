#!/usr/bin/env python3
"""onggi vs runc, side by side in one run (hyperfine), printing the ratio of medians.

    .venv/bin/python conformance/bench.py [--runs N]

Measures `run` of /bin/true on the busybox bundle, and `state` of a created container (the
hot path engines pay on every event). A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

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


def hyperfine(cmds: dict[str, str], runs: int, out: str, prepare: str | None = None) -> dict:
    argv = ["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", out]
    if prepare:
        argv = argv[:2] + ["--prepare", prepare] + argv[2:]
        argv.remove("-N")
    for name, cmd in cmds.items():
        argv += ["-n", name, cmd]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return {r["command"]: r for r in json.load(f)["results"]}


def report(title: str, res: dict) -> None:
    o, r = res["onggi"]["median"], res["runc"]["median"]
    print(f"{title}: onggi {o * 1000:.1f} ms, runc {r * 1000:.1f} ms (medians) -> "
          f"ratio {o / r:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    a = p.parse_args()
    runc = _need("runc")
    _need("hyperfine")
    work = tempfile.mkdtemp(prefix="onggi-bench-")
    try:
        bundle = busybox.build_bundle(os.path.join(work, "bundle"), ["/bin/true"])
        ro, rr = os.path.join(work, "onggi-root"), os.path.join(work, "runc-root")
        res = hyperfine({
            "onggi": f"{ONGGI} --root {ro} run -b {bundle} onggi-bench",
            "runc": f"{runc} --root {rr} run -b {bundle} onggi-bench",
        }, a.runs, os.path.join(work, "run.json"))
        report("run /bin/true", res)

        for tool, root in ((ONGGI, ro), (runc, rr)):
            subprocess.run([tool, "--root", root, "create", "-b", bundle, "onggi-bench-st"], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        res = hyperfine({
            "onggi": f"{ONGGI} --root {ro} state onggi-bench-st",
            "runc": f"{runc} --root {rr} state onggi-bench-st",
        }, a.runs, os.path.join(work, "state.json"))
        report("state (hot path)", res)
        for tool, root in ((ONGGI, ro), (runc, rr)):
            subprocess.run([tool, "--root", root, "delete", "--force", "onggi-bench-st"], check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
