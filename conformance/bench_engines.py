#!/usr/bin/env python3
"""onggi vs runc under the engines, side by side, printing the ratio of medians.

    .venv/bin/python conformance/bench_engines.py [--runs N] [--only podman,ctr,crictl]

- podman: `podman run --rm IMAGE true`;
- ctr: `ctr run --rm IMAGE ID true`;
- crictl: create + start + stop + rm of a container in a ready pod (with $CRICTL only).
Each engine gets the same setup for both runtimes (podman and containerd through the same
logging wrapper; one CRI node with both handlers). The two runtimes alternate run by run, so
a change in the machine's load hits both alike. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engines import containerd, podman  # noqa: E402
from engines.common import Runtime, StepFailed, Workdir, exit_on_term  # noqa: E402
from engines.image import IMAGE  # noqa: E402

RUNTIMES = ("onggi", "runc")  # "onggi" is $ONGGI_ENGINE_RUNTIME when set (e.g. a wrapper)


def runtime(name: str) -> Runtime:
    return Runtime.select("runc" if name == "runc" else None)


def interleaved(fns: dict[str, Callable[[], object]], runs: int, warmup: int = 2) -> dict:
    """Median seconds per name (None when it failed), running the callables in turn."""
    times: dict[str, list[float]] = {n: [] for n in fns}
    failed: dict[str, str] = {}
    for i in range(warmup + runs):
        for name, fn in fns.items():
            if name in failed:
                continue
            t0 = time.perf_counter()
            try:
                fn()
            except StepFailed as e:
                failed[name] = str(e).splitlines()[0]
                continue
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {n: (None, failed[n]) if n in failed else (statistics.median(ts), "")
            for n, ts in times.items()}


def report(title: str, res: dict, runs: int) -> None:
    (o, oerr), (r, rerr) = res["onggi"], res["runc"]
    if o is None or r is None:
        print(f"{title}: onggi {oerr or f'{o * 1000:.1f} ms'}; runc {rerr or f'{r * 1000:.1f} ms'}")
        return
    print(f"{title}: onggi {o * 1000:.1f} ms, runc {r * 1000:.1f} ms (medians of {runs}, "
          f"interleaved) -> ratio {o / r:.2f}x", flush=True)


def bench_podman(runs: int) -> None:
    works, fns = [], {}
    try:
        for name in RUNTIMES:
            works.append(work := Workdir())
            p = podman.setup(runtime(name), work)
            fns[name] = (lambda p=p: p("run", "--rm", IMAGE, "true"))
        report("podman run --rm true", interleaved(fns, runs), runs)
    finally:
        for w in works:
            w.cleanup()


def bench_ctr(runs: int) -> None:
    works, fns = [], {}
    try:
        for name in RUNTIMES:
            works.append(work := Workdir())
            c = containerd.setup(runtime(name), work)
            fns[name] = (lambda c=c: c("run", "--rm", *c.rt, IMAGE, c.new_id(), "true"))
        report("ctr run --rm true", interleaved(fns, runs), runs)
    finally:
        for w in works:
            w.cleanup()


def bench_crictl(runs: int) -> None:
    from cri.node import CRICTL_ENV, Node, find_tool
    from cri.pod import Pod

    crictl = find_tool(CRICTL_ENV)
    if not crictl:
        print(f"crictl: skipped (no ${CRICTL_ENV})")
        return
    work = Workdir()
    try:
        node = Node(runtime("onggi"), work, crictl)  # handlers: onggi and runc
        node.setup()
        pod = Pod(node)
        cfg = json.loads(pod.ctr_config.read_text())
        cfg["command"] = ["sleep", "1000"]
        pod.ctr_config.write_text(json.dumps(cfg))
        fns = {}
        for name in RUNTIMES:
            pcfg = json.loads(pod.pod_config.read_text())
            pcfg["metadata"]["name"] = f"bench-{name}"  # one pod per handler
            path = pod.files / f"pod-{name}.json"
            path.write_text(json.dumps(pcfg))
            pod_id = node.crictl("runp", "--runtime", name, str(path)).stdout.strip()
            fns[name] = (lambda pod_id=pod_id, path=path: cycle(node, pod.ctr_config, path,
                                                                pod_id))
        report("crictl create+start+stop+rm", interleaved(fns, runs), runs)
    finally:
        work.cleanup()


def cycle(node, ctr_config: Path, pod_config: Path, pod_id: str) -> None:
    cid = node.crictl("create", pod_id, str(ctr_config), str(pod_config)).stdout.strip()
    node.crictl("start", cid)
    node.crictl("stop", "--timeout", "0", cid)
    node.crictl("rm", cid)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--only", default="podman,ctr,crictl")
    a = p.parse_args()
    exit_on_term()
    if os.geteuid() != 0:
        raise SystemExit("bench_engines: needs root")
    podman.ensure_installed()
    containerd.ensure_installed()
    for name in a.only.split(","):
        {"podman": bench_podman, "ctr": bench_ctr, "crictl": bench_crictl}[name](a.runs)


if __name__ == "__main__":
    main()
