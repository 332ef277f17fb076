"""runc's CVE history for exec: no fd of the runtime or the caller's (the shim leaks fd 3)
reaches the process unless preserved, the runtime is not dumpable while it is in the
container, writes to /proc are not redirected by the container, and the cwd stays inside."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from exec_harness import CGROOT, alive, ex, init_pid, start, wait_for
from harness import ONGGI


@pytest.fixture
def running(bundle) -> str:
    return start(bundle)


def _with_fds(bundle, fds: dict[int, Path], *argv: str) -> subprocess.CompletedProcess:
    """onggi exec ARGV started with the given files open on the given fd numbers (as a
    caller that leaks them, or passes them with --preserve-fds)."""
    redirs = " ".join(f"{n}<{p}" for n, p in fds.items())
    cmd = ONGGI + ["--root", str(bundle.root), "exec", *argv]
    out = bundle.path.parent / f"fds-{uuid.uuid4().hex[:6]}"
    with open(out, "w+") as f:
        res = subprocess.run(["bash", "-c", f'exec "$@" {redirs}', "bash", *cmd],
                             stdin=subprocess.DEVNULL, stdout=f, stderr=f, timeout=30)
        f.seek(0)
        res.stdout = f.read()
    return res


def _detached_fds(bundle, cid: str, fds: dict[int, Path], *flags: str) -> list[str]:
    """The fds of a detached `sleep` exec'd with `fds` open in the caller, as the host sees."""
    pid_file = bundle.path.parent / f"pid-{uuid.uuid4().hex[:6]}"
    res = _with_fds(bundle, fds, "-d", "--pid-file", str(pid_file), *flags, cid, "sleep", "100")
    assert res.returncode == 0, res.stdout
    pid = int(pid_file.read_text())
    try:
        return sorted(os.listdir(f"/proc/{pid}/fd"), key=int)
    finally:
        os.kill(pid, 9)


def test_only_stdio_reaches_the_process(bundle, running, tmp_path):
    """Nothing of onggi's (sockets, namespace and root fds, the state lock) and nothing the
    caller leaked (containerd's shim leaks a socket on fd 3) survives into the process."""
    leak = tmp_path / "leaked"
    leak.write_text("secret")
    assert _detached_fds(bundle, running, {3: leak}) == ["0", "1", "2"]
    assert _detached_fds(bundle, running, {}) == ["0", "1", "2"]


def test_preserve_fds_passes_exactly_those(bundle, running, tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    a.write_text("A")
    b.write_text("B")
    c.write_text("C")
    res = _with_fds(bundle, {3: a, 4: b, 5: c}, "--preserve-fds", "2", running,
                    "sh", "-c", "cat <&3; cat <&4; cat <&5")
    assert res.stdout.startswith("AB") and "C" not in res.stdout
    assert _detached_fds(bundle, running, {3: a, 4: b, 5: c}, "--preserve-fds", "2") == [
        "0", "1", "2", "3", "4"]


def test_preserve_fds_must_be_open(bundle, running):
    res = ex(bundle, "--preserve-fds", "3", running, "true")
    assert res.returncode == 255 and "--preserve-fds 3: fd 3 is not open" in res.stderr


def test_cwd_cannot_leave_the_root(bundle, running):
    res = ex(bundle, "--cwd", "/../../../..", running, "sh", "-c", "pwd; ls /")
    lines = res.stdout.split()
    assert lines[0] == "/" and sorted(lines[1:]) == sorted(os.listdir(bundle.rootfs))


def test_proc_writes_are_not_redirected_by_the_container(bundle, tmp_path):
    """The container (here with CAP_SYS_ADMIN) replaces its /proc by a symlink to files of
    its own; exec's oom_score_adj still lands on the process, not in those files."""
    caps = bundle.config["process"]["capabilities"]
    for s in ("bounding", "effective", "permitted"):
        caps[s].append("CAP_SYS_ADMIN")
    bundle.config["root"]["readonly"] = False
    cid = start(bundle)
    fake = "/tmp/fakeproc"
    res = ex(bundle, cid, "sh", "-c", f"mkdir -p {fake}/self && echo 0 > {fake}/self/oom_score_adj"
             f" && umount -l /proc && rmdir /proc && ln -s {fake} /proc && ls -l /proc")
    assert res.returncode == 0, res.stderr
    pfile = tmp_path / "p.json"
    pfile.write_text(json.dumps({"args": ["sleep", "100"], "cwd": "/", "oomScoreAdj": 345,
                                 "env": ["PATH=/bin"]}))
    pid_file = tmp_path / "pid"
    res = ex(bundle, "-d", "--pid-file", str(pid_file), "-p", str(pfile), cid)
    assert res.returncode == 0, res.stderr
    pid = int(pid_file.read_text())
    try:
        assert Path(f"/proc/{pid}/oom_score_adj").read_text() == "345\n"
        assert (bundle.rootfs / fake.lstrip("/") / "self" / "oom_score_adj").read_text() == "0\n"
    finally:
        os.kill(pid, 9)


def test_not_dumpable_while_in_the_container(bundle, tmp_path):
    """CVE-2019-5736: while onggi is inside the container's namespaces (held there by a
    frozen cgroup, which it joins before it does anything), the container's root cannot
    open its /proc/<pid>/exe (the host's python). Here the kernel also refuses because
    onggi still holds capabilities the container lacks; not being dumpable covers the
    moments after the process's capabilities are set and before execve."""
    freezer = CGROOT / "freezer"
    if not (freezer / "cgroup.procs").exists():
        pytest.skip("no v1 freezer here")
    bundle.config["root"]["readonly"] = False
    cid = start(bundle, ["sh", "-c",
                         "while [ ! -e /tmp/go ]; do sleep 0.02; done; "
                         "for p in /proc/[0-9]*; do [ $p = /proc/1 ] && continue; "
                         "n=$(tr '\\0' ' ' < $p/cmdline); "
                         "if cat $p/exe > /dev/null 2> /tmp/err; then echo \"$n: open\"; "
                         "else echo \"$n: $(cat /tmp/err)\"; fi; done > /tmp/result; "
                         "sleep 1000"])
    state_file = bundle.root / cid / "state.json"
    saved = state_file.read_text()
    cg = freezer / f"onggi-exec-test-{uuid.uuid4().hex[:8]}"
    cg.mkdir()
    (cg / "freezer.state").write_text("FROZEN")
    proc = None
    try:
        doc = json.loads(saved)
        doc["cgroup_paths"] = {"freezer": str(cg)}
        state_file.write_text(json.dumps(doc))
        # the frozen freezer makes the container read as paused: --ignore-paused
        proc = subprocess.Popen(ONGGI + ["--root", str(bundle.root), "exec", "-d",
                                         "--ignore-paused", cid, "true"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        wait_for(lambda: (cg / "cgroup.procs").read_text().split())
        frozen = int((cg / "cgroup.procs").read_text().split()[0])
        assert os.readlink(f"/proc/{frozen}/ns/mnt") == os.readlink(
            f"/proc/{init_pid(bundle, cid)}/ns/mnt")  # it is in the container
        (bundle.rootfs / "tmp" / "go").write_text("")
        result = bundle.rootfs / "tmp" / "result"
        wait_for(lambda: result.exists() and result.read_text().endswith("\n"))
        lines = result.read_text().splitlines()
        ours = [x for x in lines if "onggi" in x or "python" in x]
        assert ours and all(x.endswith("Permission denied") for x in ours), lines
    finally:
        state_file.write_text(saved)
        (cg / "freezer.state").write_text("THAWED")
        if proc is not None:
            assert proc.wait(20) == 0
        wait_for(lambda: not (cg / "cgroup.procs").read_text().split())
        cg.rmdir()


def test_exec_leaves_no_process_of_its_own(bundle, running):
    """After a detached exec returns, no onggi process is left (the process was handed to
    the caller's reaper, stage 1 is reaped)."""
    before = _onggi_procs()
    res = ex(bundle, "-d", running, "sleep", "0.3")
    assert res.returncode == 0, res.stderr
    assert _onggi_procs() <= before


def _onggi_procs() -> set[int]:
    out = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes()
            except OSError:
                continue
            if b"onggi" in cmd and b"exec" in cmd and alive(int(p.name)):
                out.add(int(p.name))
    return out
