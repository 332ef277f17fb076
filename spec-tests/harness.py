"""The shared harness: a private state root and a fresh busybox bundle per test (crun's model).

`bundle.run(args)` runs a real container in the foreground and returns the completed
process; `bundle.onggi(...)` runs any onggi verb against the test's private --root.
Everything a test leaves running is force-deleted at teardown.
"""

from __future__ import annotations

import copy
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SCHEMAS = SHARED / "schemas" / "runtime-spec-v1.3.0"
sys.path.insert(0, str(REPO / "bundles"))
sys.path.insert(0, str(REPO))

import busybox  # noqa: E402  (bundles/busybox.py)

from runtime.spec_default import default_spec  # noqa: E402
from runtime.state import proc_start_time  # noqa: E402

_venv_onggi = REPO / ".venv" / "bin" / "onggi"
ONGGI = [str(_venv_onggi)] if _venv_onggi.exists() else [sys.executable, "-m", "runtime"]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="real containers need root")


def need_shared() -> Path:
    if not SCHEMAS.is_dir():
        pytest.skip(f"{SCHEMAS} is absent (a plain clone has no ../shared)")
    return SCHEMAS


def onggi(*args: str, root: str | os.PathLike | None = None, check: bool = False,
          timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    cmd = list(ONGGI)
    if root is not None:
        cmd += ["--root", str(root)]
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    res = subprocess.run(cmd + list(args), timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"onggi {' '.join(args)} failed ({res.returncode}): {res.stderr}")
    return res


# ---------------------------------------------------------------- what a command imports

# What the hot verbs (state, kill, delete, start) may import beyond the interpreter's own
# start-up (README: "nothing beyond the interpreter's own core"): os and its helpers, the
# C cores of signal/json, and onggi's core modules.
HOT_CORE = frozenset({
    "__future__", "_collections_abc", "_stat", "stat", "os", "posixpath", "genericpath",
    "gc", "_signal", "fcntl", "select", "_json",
    "runtime", "runtime.cli", "runtime.errors", "runtime.log", "runtime.faults",
    "runtime.fastjson", "runtime.record", "runtime.state", "runtime.container",
    "runtime.linux", "runtime.linux.pids"})


def launcher(dest: Path) -> Path:
    """The entry script `make deps` installs (runtime.launcher: python -S, no site)."""
    if not dest.exists():
        subprocess.run([sys.executable, "-m", "runtime.launcher", str(dest)], check=True,
                       cwd=REPO)
    return dest


def _imported(cmd: list[str]) -> tuple[set[str], subprocess.CompletedProcess]:
    res = subprocess.run([sys.executable, "-S", "-X", "importtime", *cmd],
                         capture_output=True, text=True, cwd=REPO)
    mods = {line.split("|")[-1].strip() for line in res.stderr.splitlines()
            if line.startswith("import time:")}
    res.stderr = "".join(line + "\n" for line in res.stderr.splitlines()
                         if not line.startswith("import time:"))
    return mods, res


def launcher_imports(tmp_path: Path, *argv: str) -> tuple[set[str], subprocess.CompletedProcess]:
    """The modules `onggi ARGV` imports through the launcher script, less those the bare
    interpreter (python -S) imports on its own; and the finished process."""
    base, _ = _imported(["-c", "pass"])
    mods, res = _imported([str(launcher(tmp_path / "onggi-launcher")), *argv])
    assert "runtime.cli" in mods, res.stderr  # the measurement itself worked
    return mods - base, res


def read_until_eof(fd: int, timeout: float = 10) -> bytes:
    """Everything a pty master (or pipe) gives until its other side is closed (EIO/EOF)."""
    out = b""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], left)[0]:
            break  # nothing more within the timeout: don't hang the suite
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


def create_imports(bundle: Bundle, args: list[str] | None = None) -> set[str]:
    """The modules a `create` of the bundle's config imports (through the entry script, as
    engines call it); the container is deleted after."""
    bundle.write(args or ["true"])
    cid = bundle.new_id()
    err = bundle.path.parent / f"{cid}.importtime"
    with open(err, "w") as fe:  # a file: the init inherits onggi's stderr
        res = subprocess.run([sys.executable, "-S", "-X", "importtime",
                              str(launcher(bundle.path.parent / "onggi-launcher")), "--root",
                              str(bundle.root), "create", "-b", str(bundle.path), cid],
                             stdout=subprocess.DEVNULL, stderr=fe, cwd=REPO,
                             stdin=subprocess.DEVNULL, timeout=30)
    onggi("delete", "--force", cid, root=bundle.root)
    assert res.returncode == 0, err.read_text()
    return {line.split("|")[-1].strip() for line in err.read_text().splitlines()
            if line.startswith("import time:")}


def userns(bundle: Bundle, host_id: int = 100000) -> None:
    """A user namespace mapping 0..65535 to host_id.. in the bundle's config."""
    lx = bundle.config["linux"]
    lx["namespaces"].append({"type": "user"})
    lx["uidMappings"] = [{"containerID": 0, "hostID": host_id, "size": 65536}]
    lx["gidMappings"] = [{"containerID": 0, "hostID": host_id, "size": 65536}]
    # cgroup v1 can't be mounted from a user namespace; runc binds it, we keep it out here.
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["type"] != "cgroup"]
    # pytest's temp dirs are 0700: let the mapped root traverse down to the rootfs.
    for d in [bundle.path, *bundle.path.parents]:
        if str(d) == "/tmp":
            break
        os.chmod(d, os.stat(d).st_mode | 0o005)


class FdServer:
    """A unix socket that takes one message and its fds (SCM_RIGHTS) from each connection,
    on a thread, and hands them to `got(msg, fds)`: a --console-socket, a seccomp agent's
    listenerPath."""

    def __init__(self, path: str | os.PathLike, got, maxfds: int = 4) -> None:
        self.path = str(path)
        self.got = got
        self.maxfds = maxfds
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                try:
                    msg, fds, _, _ = socket.recv_fds(conn, 65536, self.maxfds)
                except OSError:
                    continue
            self.got(msg, fds)

    def close(self) -> None:
        self.sock.close()


class Bundle:
    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self.root = root
        self.rootfs = path / "rootfs"
        self.config = default_spec()
        self.config["process"]["terminal"] = False
        self.ids: list[str] = []

    def new_id(self) -> str:
        cid = "t" + uuid.uuid4().hex[:10]
        self.ids.append(cid)
        return cid

    def write(self, args: list[str] | None = None) -> None:
        cfg = copy.deepcopy(self.config)
        if args is not None:
            cfg["process"]["args"] = list(args)
        (self.path / "config.json").write_text(json.dumps(cfg, indent=2))

    def onggi(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return onggi(*args, root=self.root, **kw)

    def run(self, args: list[str] | None = None, *extra: str, **kw) -> subprocess.CompletedProcess:
        """Foreground `onggi run` of args (or the config's); returns the finished process."""
        self.write(args)
        return self.onggi("run", "-b", str(self.path), *extra, self.new_id(), **kw)

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess:
        return self.run(["sh", "-c", script], **kw)

    def create(self, cid: str | None = None, *extra: str, args: list[str] | None = None,
               check: bool = True, **kw) -> str:
        """`onggi create`; the container's stdout/stderr go to files (see .output), since
        the init inherits onggi's stdio and would hold a capture pipe open."""
        cid = cid or self.new_id()
        if cid not in self.ids:
            self.ids.append(cid)
        self.write(args)
        out, err = self.path.parent / f"{cid}.out", self.path.parent / f"{cid}.err"
        with open(out, "w") as fo, open(err, "w") as fe:
            kw.setdefault("stdin", subprocess.DEVNULL)
            res = onggi("create", "-b", str(self.path), *extra, cid, root=self.root,
                        capture_output=False, stdout=fo, stderr=fe, **kw)
        self.last_create = res
        res.stderr = err.read_text()
        if check and res.returncode != 0:
            raise AssertionError(f"create failed: {res.stderr}")
        return cid

    def output(self, cid: str) -> str:
        return (self.path.parent / f"{cid}.out").read_text()

    def wait_stopped(self, cid: str, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.state(cid)
            if st["status"] == "stopped":
                return st
            time.sleep(0.02)
        raise AssertionError(f"{cid} still {st['status']} after {timeout}s")

    def state(self, cid: str) -> dict:
        res = self.onggi("state", cid, check=True)
        return json.loads(res.stdout)

    def cleanup(self) -> None:
        """delete --force each container the test made; where that fails, kill what its
        records name (see kill_by_record) and say so, rather than leave it running."""
        for cid in self.ids:
            res = self.onggi("delete", "--force", cid)
            if res.returncode != 0:
                kill_by_record(self.root / cid)
                warnings.warn(f"delete --force {cid} failed ({res.stderr.strip()}): killed "
                              "what its state.json and init.json name", stacklevel=2)


def kill_by_record(path: Path, timeout: float = 5) -> None:
    """The last resort of a teardown whose delete --force failed: SIGKILL the init and stage 1
    that the container's state.json and init.json name (only while their start time still
    matches: never a reused pid), wait for them, then rmdir their cgroups (empty by then;
    the ids are unique, so the dirs are this container's)."""
    procs: set[tuple[int, int]] = set()
    cgdirs: set[str] = set()
    for name in ("state.json", "init.json"):
        try:
            doc = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict):
            continue
        pairs = [(doc.get("pid"), doc.get("start_time")), tuple(doc.get("stage1") or ())]
        procs |= {p for p in pairs if len(p) == 2 and all(type(x) is int and x > 0 for x in p)}
        paths = doc.get("cgroup_paths")
        if isinstance(paths, dict):
            cgdirs |= {d for d in paths.values()
                       if isinstance(d, str) and d.startswith("/sys/fs/cgroup/")}
    live = [pid for pid, start in procs if proc_start_time(pid) == start]
    for pid in live:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(proc_start_time(pid) is not None for pid in live) and time.monotonic() < deadline:
        time.sleep(0.01)
    for d in sorted(cgdirs, key=len, reverse=True):
        for _ in range(50):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory) -> Path:
    return Path(busybox.build_rootfs(str(tmp_path_factory.mktemp("template") / "rootfs")))


@pytest.fixture
def state_root(tmp_path) -> Path:
    root = tmp_path / "state"
    root.mkdir()
    return root


@pytest.fixture
def bundle(tmp_path, busybox_rootfs, state_root):
    if os.geteuid() != 0:
        pytest.skip("real containers need root")
    path = tmp_path / "bundle"
    path.mkdir()
    shutil.copytree(busybox_rootfs, path / "rootfs", symlinks=True)
    b = Bundle(path, state_root)
    b.write()
    yield b
    b.cleanup()
