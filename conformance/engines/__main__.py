"""Drive podman and containerd with a runtime, step by step, checking each real effect.

    .venv/bin/python conformance/engines [--runtime onggi|runc|PATH] [-k SUBSTR] \
        [all|podman|containerd|list]
    .venv/bin/python conformance/engines record [--out DIR]   # config.json fixtures

The runtime is onggi by default (or $ONGGI_ENGINE_RUNTIME); `--runtime runc` proves each
step against the reference. Prints `ok`/`FAIL`/`n/a` per step and exits 1 if any step failed.
Everything lives in a private temp dir and is cleaned up, even after a failure or ^C.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines import containerd, podman  # noqa: E402
from engines.common import REPO, Runtime, Workdir, exit_on_term  # noqa: E402
from engines.record import record  # noqa: E402
from engines.steps import Step, missing_features  # noqa: E402

ENGINES = {"podman": podman, "containerd": containerd}


def run_steps(ctx: object, steps: list[Step], runtime: Runtime) -> list[str]:
    failed = []
    gone = missing_features(runtime)
    for s in steps:
        t0 = time.monotonic()
        try:
            s.fn(ctx)
        except Exception as e:  # noqa: BLE001 - a step failing is a result, go on
            lacks = sorted(set(s.needs) & gone)
            note = f" (the runtime has no {', '.join(lacks)})" if lacks else ""
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"FAIL {s.engine} {s.name}{note}: {first}", flush=True)
            failed.append(f"{s.engine} {s.name}")
        else:
            print(f"ok   {s.engine} {s.name} ({time.monotonic() - t0:.1f}s)", flush=True)
    return failed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", default="all", choices=["all", "list", "record", *ENGINES])
    p.add_argument("--runtime", help="onggi (default), runc, crun or a path")
    p.add_argument("-k", dest="only", help="only steps whose name contains this")
    p.add_argument("--out", default=str(REPO / "spec-tests" / "engines" / "configs"),
                   help="where `record` writes the configs")
    a = p.parse_args()
    exit_on_term()
    engines = list(ENGINES) if a.what in ("all", "list") else [a.what]
    if a.what == "list":
        for e in engines:
            for s in ENGINES[e].STEPS:
                print(f"{e:10} {s.name:22} {s.doc}")
        return 0
    if os.geteuid() != 0:
        print("engines: needs root (real containers through podman and containerd)")
        return 1
    if a.what == "record":  # the engines' configs do not depend on the runtime: use runc
        for e in ENGINES.values():
            e.ensure_installed()
        for path in record(Path(a.out), Runtime.select(a.runtime or "runc")):
            print(path)
        return 0
    runtime = Runtime.select(a.runtime)
    print(f"runtime: {runtime.name} ({runtime.path})")
    failed: list[str] = []
    for e in engines:
        mod = ENGINES[e]
        steps = [s for s in mod.STEPS if not a.only or a.only in s.name]
        if not steps:
            continue
        mod.ensure_installed()
        work = Workdir()
        try:
            ctx = mod.setup(runtime, work)
            failed += run_steps(ctx, steps, runtime)
        finally:
            for err in work.cleanup():
                print(f"cleanup: {err}", file=sys.stderr)
    print(f"{'FAILED: ' + ', '.join(failed) if failed else 'all passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
