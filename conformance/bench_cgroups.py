#!/usr/bin/env python3
"""onggi vs runc: `run` of /bin/true with a cgroupsPath and memory, pids and cpu limits,
side by side (interleaved run by run), printing the ratio of medians. Also `pause`+`resume`
and `events --stats` of a running container, which engines call.

    .venv/bin/python conformance/bench_cgroups.py [--runs N]

A benchmark, not a test: it asserts nothing. Each runtime gets its own bundle and cgroup
path; both are removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import uuid

from bench import ONGGI, _need, busybox, interleaved, report

RESOURCES = {
    "memory": {"limit": 67108864, "swap": 134217728},
    "pids": {"limit": 100},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000},
    "devices": [{"allow": False, "access": "rwm"}],
}


def bundle(work: str, name: str, args: list[str], cgroups_path: str) -> str:
    path = busybox.build_bundle(os.path.join(work, name), args)
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["linux"]["cgroupsPath"] = cgroups_path
    cfg["linux"]["resources"] = RESOURCES
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    a = p.parse_args()
    runc = _need("runc")
    work = tempfile.mkdtemp(prefix="onggi-bench-cg-")
    tag = uuid.uuid4().hex[:8]
    roots = {ONGGI: os.path.join(work, "onggi-root"), runc: os.path.join(work, "runc-root")}
    try:
        bundles = {tool: bundle(work, name, ["/bin/true"], f"/onggi-bench-{name}-{tag}")
                   for tool, name in ((ONGGI, "onggi"), (runc, "runc"))}
        res = interleaved({
            name: [tool, "--root", roots[tool], "run", "-b", bundles[tool], "bench-cg"]
            for tool, name in ((ONGGI, "onggi"), (runc, "runc"))}, a.runs)
        report("run /bin/true, cgroupsPath + memory/pids/cpu limits", res, a.runs)

        live = {tool: bundle(work, name + "-live", ["sleep", "1000"],
                             f"/onggi-bench-{name}-live-{tag}")
                for tool, name in ((ONGGI, "onggi"), (runc, "runc"))}
        try:
            for tool in (ONGGI, runc):
                subprocess.run([tool, "--root", roots[tool], "run", "-d", "-b", live[tool],
                                "bench-live"], check=True, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for title, verb in (("pause + resume", None), ("events --stats", ["events", "--stats"]),
                                ("ps --format json", ["ps", "--format", "json"])):
                if verb is None:
                    cmds = {name: ["sh", "-c", f"{tool} --root {roots[tool]} pause bench-live && "
                                   f"{tool} --root {roots[tool]} resume bench-live"]
                            for tool, name in ((ONGGI, "onggi"), (runc, "runc"))}
                else:
                    cmds = {name: [tool, "--root", roots[tool], *verb, "bench-live"]
                            for tool, name in ((ONGGI, "onggi"), (runc, "runc"))}
                report(title, interleaved(cmds, a.runs), a.runs)
        finally:
            for tool in (ONGGI, runc):
                subprocess.run([tool, "--root", roots[tool], "delete", "--force", "bench-live"],
                               check=False, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
