#!/usr/bin/env python3
"""Load: many container lifecycles at once, onggi against runc side by side.

    .venv/bin/python conformance/load.py [--lifecycles 300] [--runs 200] [--parallel 20]
                                         [--rounds 2] [--only onggi|runc]

A lifecycle is create, start, wait for the init to exit, delete, with /bin/true as the
process; a run is a foreground `run` of /bin/true. Each batch keeps `--parallel` of them in
flight. The batches alternate between the runtimes (onggi, runc, onggi, runc, ...) so the
machine's other load hits both alike; the ratio is of the summed times. The driver is a
child subreaper, so every init is reparented to it and "wait" is a plain waitpid.

spec-tests/load/ runs the same driver with smaller counts and asserts no failures and
nothing left behind; this script is the benchmark and asserts nothing.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bundles"))

ONGGI = os.path.join(REPO, ".venv", "bin", "onggi")
_PR_SET_CHILD_SUBREAPER = 36
_reaped: dict[int, int] = {}
_reaped_cond = threading.Condition()


def become_subreaper() -> None:
    """Orphaned inits come to us: waiting for one is then a waitpid, for both runtimes."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def wait_init(pid: int, timeout: float = 30) -> None:
    """Wait for a reparented init (a zombie child of ours once it exits)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not ours (yet): the creator may still be exiting
            got = 0
            if not os.path.exists(f"/proc/{pid}"):
                return
        if got == pid:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"init {pid} still running after {timeout}s")
        time.sleep(0.002)


class Result:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.cpu = 0.0

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


def _call(argv: list[str], res: Result, what: str) -> bool:
    """Run one verb; stderr goes to a file, not a pipe: the init inherits it from create
    and would keep a pipe open until it exits."""
    with tempfile.TemporaryFile() as err:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=err, timeout=60)
        if p.returncode != 0:
            err.seek(0)
            res.fail(f"{what}: rc {p.returncode}: {err.read().decode(errors='replace').strip()}")
    return p.returncode == 0


def lifecycle(tool: str, root: str, bundle: str, cid: str, res: Result) -> None:
    base = [tool, "--root", root]
    pid_file = os.path.join(os.path.dirname(root), f"{cid}.pid")  # not in --root
    done = False
    try:
        if not _call(base + ["create", "-b", bundle, "--pid-file", pid_file, cid], res,
                     f"create {cid}"):
            return
        with open(pid_file) as f:
            pid = int(f.read())
        if _call(base + ["start", cid], res, f"start {cid}"):
            wait_init(pid)
        done = _call(base + ["delete", cid], res, f"delete {cid}")
    finally:
        if not done:  # what a failed step left (not timed: it is already a failure)
            subprocess.run(base + ["delete", "--force", cid], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        if os.path.exists(pid_file):
            os.unlink(pid_file)


def run_once(tool: str, root: str, bundle: str, cid: str, res: Result) -> None:
    _call([tool, "--root", root, "run", "-b", bundle, cid], res, f"run {cid}")


def cpu_seconds() -> float:
    """CPU time of every process we have waited for: the verbs, what they waited for (stage
    1, hooks), and the inits, which come to us as their subreaper."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def batch(kind: str, tool: str, root: str, bundle: str, count: int, parallel: int,
          prefix: str = "ld") -> tuple[float, Result]:
    """`count` lifecycles (or runs) with `parallel` in flight; (seconds, result), with the
    CPU seconds they used in result.cpu."""
    res = Result()
    fn = lifecycle if kind == "lifecycle" else run_once
    tag = uuid.uuid4().hex[:8]
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        futs = [pool.submit(fn, tool, root, bundle, f"{prefix}-{tag}-{i}", res)
                for i in range(count)]
        for f in futs:
            try:
                f.result()
            except Exception as e:  # noqa: BLE001 - a timeout is a failure to count
                res.fail(f"{type(e).__name__}: {e}")
    secs = time.perf_counter() - t0
    reap_strays()
    res.cpu = cpu_seconds() - cpu0
    return secs, res


def reap_strays() -> None:
    """Inits that ended up ours and that nobody waited for (a failed start)."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def exec_batch(tool: str, root: str, bundle: str, count: int, parallel: int,
               prefix: str = "ld") -> tuple[float, Result]:
    """`count` execs of /bin/true into one running container, `parallel` at a time. A
    container that does not start, or a first exec that fails, is a failure of the batch."""
    cid = f"{prefix}-x{uuid.uuid4().hex[:8]}"
    base = [tool, "--root", root]
    res = Result()
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = f.read()
    exec_bundle = bundle + "-exec"  # the same rootfs, a process that stays
    os.makedirs(exec_bundle, exist_ok=True)
    with open(os.path.join(exec_bundle, "config.json"), "w") as f:
        f.write(cfg.replace('"/bin/true"', '"/bin/sleep", "60"').replace(
            '"path": "rootfs"', f'"path": "{os.path.join(bundle, "rootfs")}"'))
    try:
        if not _call(base + ["run", "-d", "-b", exec_bundle, cid], res, "run -d") or \
                not _call(base + ["exec", cid, "/bin/true"], res, "first exec"):
            return 0.0, res
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            futs = [pool.submit(_call, base + ["exec", cid, "/bin/true"], res, f"exec {i}")
                    for i in range(count)]
            for f in futs:
                f.result()
        secs = time.perf_counter() - t0
        res.cpu = cpu_seconds() - cpu0
        return secs, res
    finally:
        subprocess.run(base + ["delete", "--force", cid], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def main() -> None:
    import json

    import busybox

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lifecycles", type=int, default=300)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--execs", type=int, default=50, help="into one container (needs exec)")
    p.add_argument("--parallel", type=int, default=20)
    p.add_argument("--exec-parallel", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2, help="batches per runtime, alternating")
    p.add_argument("--only", choices=("onggi", "runc"))
    p.add_argument("--work", help="use this dir (kept) instead of a temporary one")
    p.add_argument("--env", action="append", default=[],
                   help="NAME=VALUE for the container's environment (the tests tag it)")
    p.add_argument("--json", action="store_true", help="one JSON line per batch")
    a = p.parse_args()
    tools = {"onggi": ONGGI, "runc": shutil.which("runc") or "runc"}
    if a.only:
        tools = {a.only: tools[a.only]}
    become_subreaper()
    work = a.work or tempfile.mkdtemp(prefix="onggi-load-")
    try:
        bundle = busybox.build_bundle(os.path.join(work, "bundle"), ["/bin/true"])
        if a.env:
            path = os.path.join(bundle, "config.json")
            with open(path) as f:
                cfg = json.load(f)
            cfg["process"]["env"] += a.env
            with open(path, "w") as f:
                json.dump(cfg, f)
        for kind, count in (("lifecycle", a.lifecycles), ("run", a.runs), ("exec", a.execs)):
            if not count:
                continue
            total = dict.fromkeys(tools, 0.0)
            cpu = dict.fromkeys(tools, 0.0)
            for _ in range(a.rounds):
                for name, tool in tools.items():
                    root = os.path.join(work, f"{name}-root")
                    if kind == "exec":
                        secs, res = exec_batch(tool, root, bundle, count, a.exec_parallel)
                    else:
                        secs, res = batch(kind, tool, root, bundle, count, a.parallel)
                    left = os.listdir(root) if os.path.isdir(root) else []
                    total[name] = total.get(name, 0.0) + secs
                    cpu[name] = cpu.get(name, 0.0) + res.cpu
                    if a.json:
                        print(json.dumps({"kind": kind, "runtime": name, "count": count,
                                          "seconds": secs, "cpu": res.cpu,
                                          "failures": res.failures, "left": left}), flush=True)
                        continue
                    par = a.exec_parallel if kind == "exec" else a.parallel
                    print(f"{kind} x{count} ({par} at a time) {name}: {secs:.2f} s "
                          f"(CPU {res.cpu:.2f} s), {len(res.failures)} failures, "
                          f"{len(left)} left in --root"
                          + (f"; first: {res.failures[0]}" if res.failures else ""), flush=True)
            if len(total) == 2 and not a.json:
                print(f"{kind}: onggi/runc = {total['onggi'] / total['runc']:.2f}x wall, "
                      f"{cpu['onggi'] / cpu['runc']:.2f}x CPU ({a.rounds} rounds each, "
                      "alternating)", flush=True)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
