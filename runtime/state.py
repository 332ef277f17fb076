"""The state store: <root>/<id>/state.json, written atomically, with a per-container lock.

Liveness is (pid, start time): a recycled pid has another start time. Whether a live
container is `created` or `running` is told by its exec fifo, which `start` removes, so no
daemon is needed (runc does the same).
"""

from __future__ import annotations

import fcntl
import os
import time

from runtime import OCI_VERSION, fastjson
from runtime.errors import NotFound, OnggiError
from runtime.record import Record

DEFAULT_ROOT = "/run/onggi"
STATE_FILE = "state.json"
CONFIG_FILE = "config.json"  # the bundle's config.json as create read it (exec, update)
EXEC_FIFO = "exec.fifo"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


class State(Record):
    """What state.json holds."""

    id: str
    pid: int
    start_time: int  # of the init's pid, against pid reuse
    bundle: str
    rootfs: str
    created: str
    owner: str = ""
    annotations: dict = {}
    pid_ns: bool = True  # the container has its own pid namespace
    hooks: dict = {}  # poststart/poststop, in the spec's raw form
    cgroup_driver: str = ""  # runtime.cgroups' driver name; "" when onggi made no cgroup
    cgroup_paths: dict = {}  # {controller, or "" for v2: absolute host dir}
    cgroup_data: dict = {}  # the driver's own (runtime.cgroups Manager.saved()): parents it
    #                         made, the linux.resources in force (update merges into them)
    namespaces: dict = {}  # {spec namespace type: path to join it (exec)}
    # outside the container's namespaces, for delete (runtime.hostres): the rootfs anchor
    # of a container without a mount namespace, moved net devices, the resctrl group
    host_mounts: dict = {}
    net_devices: list = []
    intel_rdt: dict = {}
    no_new_keyring: bool = False  # create's --no-new-keyring: exec joins no keyring either

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in self._fields}

    def oci(self, status: str) -> dict:
        """The spec's state object plus runc's rootfs/created/owner fields."""
        out = {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "pid": self.pid if status != "stopped" else 0,
            "status": status,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
        }
        if self.annotations:  # runc's order: annotations (omitted when empty), then owner
            out["annotations"] = self.annotations
        out["owner"] = self.owner
        return out


def check_id(cid: str) -> None:
    if not cid or cid in (".", "..") or not set(cid) <= _ID_CHARS:
        raise OnggiError(f"invalid container id {cid!r}: use letters, digits and _+-. only")


def now_rfc3339() -> str:
    """UTC, as Go's RFC3339Nano writes it (runc's `created`): trailing zeros of the fraction
    are dropped, and the fraction altogether when it is zero."""
    t = time.time_ns()
    frac = f"{t % 10**9:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 10**9)) + \
        (f".{frac}" if frac else "") + "Z"


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may hold spaces and parens: split after the last ')'.
    rest = data[data.rindex(b")") + 2 :].split()
    if rest[0] in (b"Z", b"X"):
        return None  # a zombie has run its course
    return int(rest[19])


def alive(st: State) -> bool:
    return st.pid > 0 and proc_start_time(st.pid) == st.start_time


def container_dir(root: str, cid: str) -> str:
    check_id(cid)
    return os.path.join(root, cid)


def make_dir(root: str, cid: str) -> str:
    """Reserve <root>/<id>; mkdir is atomic, so of two concurrent creates exactly one wins."""
    path = container_dir(root, cid)
    os.makedirs(root, mode=0o700, exist_ok=True)
    try:
        os.mkdir(path, 0o711)
    except FileExistsError:
        raise OnggiError(f"container with id {cid} already exists") from None
    return path


def save(path: str, st: State) -> None:
    _write_durably(path, STATE_FILE, fastjson.dumps(st.to_dict()).encode())


def save_config(path: str, data: bytes) -> None:
    _write_durably(path, CONFIG_FILE, data)


def _write_durably(path: str, name: str, data: bytes) -> None:
    """Atomic and on disk before we go on: a crash leaves the old file or the new one,
    never a truncated one."""
    tmp = os.path.join(path, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(path, name))
    dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load(root: str, cid: str) -> tuple[str, State]:
    path = container_dir(root, cid)
    try:
        with open(os.path.join(path, STATE_FILE)) as f:
            raw = fastjson.loads(f.read())
    except FileNotFoundError:
        raise NotFound(cid) from None
    except ValueError as e:
        raise OnggiError(f"{path}/{STATE_FILE}: corrupt state: {e}") from None
    try:
        # Fields of a newer onggi are dropped; those an older one did not write take
        # their defaults.
        return path, State(**{k: v for k, v in raw.items() if k in State._fields})
    except (TypeError, AttributeError) as e:
        raise OnggiError(f"{path}/{STATE_FILE}: corrupt state: {e}") from None


def load_config(path: str) -> bytes:
    """The config snapshot create saved beside state.json."""
    with open(os.path.join(path, CONFIG_FILE), "rb") as f:
        return f.read()


class Lock:
    """flock on the container dir: one verb at a time per container. `create` holds it
    until state.json is written, so a dir without one is either being created (locked)
    or left by a create that was killed (unlocked)."""

    def __init__(self, path: str, wait: bool = True, shared: bool = False) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX  # shared: execs run side by side
        try:
            fcntl.flock(self.fd, mode | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(self.fd)
            raise

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def status(path: str, st: State) -> str:
    if not alive(st):
        return "stopped"
    if st.cgroup_paths:  # only then: a container without cgroups imports nothing more
        from runtime.cgroups import freezer

        if freezer.paused(st.cgroup_paths):
            return "paused"
    if os.path.exists(os.path.join(path, EXEC_FIFO)):
        return "created"
    return "running"


def list_ids(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.isfile(os.path.join(root, n, STATE_FILE)))
