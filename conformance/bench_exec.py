#!/usr/bin/env python3
"""`exec` of /bin/true into a running container: onggi vs `runc exec`, side by side.

    .venv/bin/python conformance/bench_exec.py [--runs N] [--profile]

Both runtimes run the same busybox bundle (`sleep` as the init). Three cases, each with the
two commands alternating run by run (see bench.py): `exec -d` (what conmon and the shim
call, with --pid-file), `exec` in the foreground, and `exec --process FILE -d` (the engines'
process.json). A benchmark, not a test: it asserts nothing. --profile prints where one
onggi `exec -d` spends its time (cProfile, cumulative, in this interpreter).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from bench import ONGGI, _need, busybox, interleaved, report


def _start(tool: str, root: str, bundle: str, cid: str) -> None:
    subprocess.run([tool, "--root", root, "run", "-d", "-b", bundle, cid], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def _profile(root: str, cid: str, work: str) -> None:
    import cProfile
    import pstats

    sys.argv = ["onggi", "--root", root, "exec", "-d", "--pid-file", f"{work}/p", cid, "true"]
    from runtime import cli

    prof = cProfile.Profile()
    prof.runcall(cli.main)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=40)
    p.add_argument("--profile", action="store_true")
    a = p.parse_args()
    runc = _need("runc")
    work = tempfile.mkdtemp(prefix="onggi-bench-exec-")
    ro, rr = os.path.join(work, "onggi-root"), os.path.join(work, "runc-root")
    cid = "onggi-bench-exec"
    try:
        bundle = busybox.build_bundle(os.path.join(work, "bundle"), ["sleep", "100000"])
        proc = json.load(open(os.path.join(bundle, "config.json")))["process"]
        pfile = os.path.join(work, "process.json")
        with open(pfile, "w") as f:
            json.dump({**proc, "args": ["/bin/true"], "terminal": False}, f)
        _start(ONGGI, ro, bundle, cid)
        _start(runc, rr, bundle, cid)
        if a.profile:
            _profile(ro, cid, work)
            return
        for title, flags in (("exec -d --pid-file /bin/true (engines)",
                              ["-d", "--pid-file", f"{work}/pid"]),
                             ("exec /bin/true (foreground)", []),
                             ("exec --process FILE -d", ["-d", "--process", pfile])):
            cmd = [*flags, cid] + ([] if "--process" in flags else ["/bin/true"])
            res = interleaved({"onggi": [ONGGI, "--root", ro, "exec", *cmd],
                               "runc": [runc, "--root", rr, "exec", *cmd]}, a.runs)
            report(title, res, a.runs)
    finally:
        for tool, root in ((ONGGI, ro), (runc, rr)):
            subprocess.run([tool, "--root", root, "delete", "--force", cid], check=False,
                           stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
