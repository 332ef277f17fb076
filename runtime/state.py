"""The state store: <root>/<id>/state.json, written atomically, with a per-container lock.

Liveness is (pid, start time): a recycled pid has another start time. Whether a live
container is `created` or `running` is told by its exec fifo, which `start` removes, so no
daemon is needed (runc does the same).

Beside state.json, `create` keeps a second, smaller record (init.json): the pids and start
times of stage 1 and the init and the cgroup paths, written as soon as each is known. It
lets `delete --force` find and kill what a container left when its `create` was killed
before state.json existed, or when state.json is truncated or corrupt.
"""

from __future__ import annotations

import fcntl
import os
import time

from runtime import OCI_VERSION, fastjson
from runtime.errors import Broken, NotFound, OnggiError, reason
from runtime.record import Record

DEFAULT_ROOT = "/run/onggi"
STATE_FILE = "state.json"
CONFIG_FILE = "config.json"  # the bundle's config.json as create read it (exec, update)
EXEC_FIFO = "exec.fifo"
RECORD_FILE = "init.json"  # the second record: see the module's docstring
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


def proc_stat(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after comm, its state first (proc(5)'s field 3 is
    [0], the ppid [1], the start time [19]); None when the process is gone. The one parser
    (runtime.linux.pids has the rest: signals, waits)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2 :].split()  # comm may hold spaces and parens
    except (OSError, ValueError):
        return None


def proc_start_time(pid: int | str) -> int | None:
    """The start time in clock ticks (liveness against pid reuse); None when the process is
    gone or a zombie (it has run its course)."""
    f = proc_stat(pid)
    if f is None or f[0] in (b"Z", b"X"):
        return None
    return int(f[19])


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
    """Atomic and on disk before we go on: a crash leaves the old file or the new one,
    never a truncated one. The directory's fsync also makes the renames before it durable
    (save_config's)."""
    _write(path, STATE_FILE, fastjson.dumps(st.to_dict()).encode(), sync=True)
    dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def save_config(path: str, data: bytes) -> None:
    """Atomic, not fsync'd: the snapshot serves verbs on a live container (exec, update),
    and after a host crash there is none; save() right after syncs the directory."""
    _write(path, CONFIG_FILE, data, sync=False)


def _write(path: str, name: str, data: bytes, sync: bool) -> None:
    tmp = os.path.join(path, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(path, name))


def save_record(path: str, record: dict) -> None:
    """The second record: atomic, but not fsync'd. It guards against the runtime's death,
    not the host's (after a reboot there is no process left to kill), and create writes it
    up to three times."""
    _write(path, RECORD_FILE, fastjson.dumps(record).encode(), sync=False)


# The type each field must have, from State's annotations: a field added later is checked
# too, and one with an annotation not listed here fails at import (bool is an int to
# Python: every check is on the exact type).
_KINDS = {"str": str, "int": int, "bool": bool, "dict": dict, "list": list}
_TYPES = {name: _KINDS[ann] for name, ann in State.__annotations__.items()}
# The nested fields and the type of each of their members: {field: {member: (type,
# required)}}. Members not named here are not looked at.
_SHAPES = {
    "cgroup_data": {"parents": (list, False), "resources": (dict, False)},
    "host_mounts": {"path": (str, True), "mnt_id": (int, True)},  # or {}: none
    "net_devices": {"host": (str, True), "name": (str, True), "kind": (str, False),
                    "address": (str, False)},  # for each device
    "intel_rdt": {"path": (str, True), "mon": (str, False), "created": (bool, False)},
}


def _check_types(raw: dict, fields: tuple[str, ...]) -> None:
    """ValueError naming the first field whose type or shape is not what onggi writes:
    the verbs could not act on it (delete --force then goes by the second record)."""
    for name in fields:
        if name not in raw:
            continue
        value, want = raw[name], _TYPES[name]
        if type(value) is not want:
            raise ValueError(f"{name}: want {want.__name__}, got {type(value).__name__}")
        if want is int and not 0 <= value < 2**63:
            raise ValueError(f"{name}: {value} out of range")
    for name in ("annotations", "cgroup_paths", "namespaces"):
        if not all(type(v) is str for v in raw.get(name, {}).values()):
            raise ValueError(f"{name}: values must be strings")
    hooks = raw.get("hooks", {})
    if not all(type(v) is list and all(type(h) is dict and type(h.get("path")) is str
                                       for h in v) for v in hooks.values()):
        raise ValueError("hooks: each must be a list of {path, ...}")
    # The driver matters only with cgroup paths (then status() imports runtime.cgroups
    # anyway): a container without cgroups costs the hot path no cgroup import.
    if raw.get("cgroup_paths"):
        from runtime import cgroups

        if raw.get("cgroup_driver") and raw["cgroup_driver"] not in cgroups.DRIVERS:
            raise ValueError(f"cgroup_driver: unknown driver {raw['cgroup_driver']!r}")
        for key, d in raw["cgroup_paths"].items():  # delete kills in them and removes them
            if bad := cgroups.bad_dir(key, d):
                raise ValueError(f"cgroup_paths.{key or 'v2'}: {bad}")
    for name in ("cgroup_data", "host_mounts", "intel_rdt"):
        if raw.get(name):
            _check_shape(name, raw[name])
    for i, dev in enumerate(raw.get("net_devices", ())):
        if type(dev) is not dict:
            raise ValueError(f"net_devices[{i}]: want dict, got {type(dev).__name__}")
        _check_shape("net_devices", dev, f"net_devices[{i}]")
    parents = (raw.get("cgroup_data") or {}).get("parents", ())
    if not all(type(p) is str for p in parents):
        raise ValueError("cgroup_data.parents: each must be a string")
    if parents:  # delete removes them when empty
        from runtime import cgroups

        if bad := next(filter(None, (cgroups.bad_dir("", p) for p in parents)), None):
            raise ValueError(f"cgroup_data.parents: {bad}")


def _check_shape(name: str, doc: dict, where: str = "") -> None:
    for member, (want, required) in _SHAPES[name].items():
        if member not in doc:
            if required:
                raise ValueError(f"{where or name}: {member} is missing")
            continue
        value = doc[member]
        if type(value) is not want:
            raise ValueError(f"{where or name}.{member}: want {want.__name__}, "
                             f"got {type(value).__name__}")


def parse(cid: str, data: bytes) -> State:
    """state.json's bytes as a State; ValueError says what is wrong. Fields of a newer onggi
    are dropped; those an older one did not write take their defaults."""
    raw = fastjson.loads(data)
    if type(raw) is not dict:
        raise ValueError("not a JSON object")
    if fastjson.may_hold_surrogates(data) and (bad := fastjson.lone_surrogate(raw)):
        raise ValueError(f"{bad}: not valid unicode (a lone surrogate)")
    _check_types(raw, State._fields)
    missing = [f for f in State._fields if f not in raw and not hasattr(State, f)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    if raw["id"] != cid:
        raise ValueError(f"it is the state of {raw['id']!r}")
    return State(**{k: v for k, v in raw.items() if k in State._fields})


def load(root: str, cid: str) -> tuple[str, State]:
    path = container_dir(root, cid)
    try:
        with open(os.path.join(path, STATE_FILE), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise NotFound(cid) from None
    except OSError as e:  # EISDIR, EACCES, EIO: the file is as good as corrupt
        raise Broken(f"container {cid}: {path}/{STATE_FILE}: corrupt state: "
                     f"{reason(e)} (delete --force removes it)") from None
    try:
        return path, parse(cid, data)
    except (ValueError, RecursionError) as e:
        why = " ".join(str(e).split()) or type(e).__name__
        raise Broken(f"container {cid}: {path}/{STATE_FILE}: corrupt state: {why} "
                     "(delete --force removes it)") from None


def load_record(path: str, cid: str) -> tuple[State, State] | None:
    """What the second record knows: (init, stage 1) as States with the fields it holds
    (pid, start_time, pid_ns, cgroups, host resources); None when it is missing or
    unreadable."""
    try:
        with open(os.path.join(path, RECORD_FILE), "rb") as f:
            raw = fastjson.loads(f.read())
        if type(raw) is not dict or fastjson.lone_surrogate(raw):
            return None
        fields = ("pid", "start_time", "pid_ns", "cgroup_driver", "cgroup_paths",
                  "host_mounts", "net_devices", "intel_rdt")
        _check_types(raw, fields)
    except (OSError, ValueError, RecursionError):
        return None
    init = State(id=cid, pid=raw.get("pid", 0), start_time=raw.get("start_time", 0),
                 bundle="", rootfs="", created="",
                 **{k: raw[k] for k in fields[2:] if k in raw})
    stage1 = raw.get("stage1")
    if not (type(stage1) is list and len(stage1) == 2
            and all(type(v) is int and 0 <= v < 2**63 for v in stage1)):
        stage1 = [0, 0]
    return init, State(id=cid, pid=stage1[0], start_time=stage1[1], bundle="", rootfs="",
                       created="", pid_ns=False)


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
    """Every container dir under root, with a state.json or not (see `unfinished`)."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.startswith(".") and set(n) <= _ID_CHARS
                  and os.path.isdir(os.path.join(root, n)))


def unfinished(path: str) -> bool:
    """A dir without state.json whose lock is free: its `create` was killed (one that is
    still running holds the lock)."""
    if os.path.lexists(os.path.join(path, STATE_FILE)):
        return False
    try:
        Lock(path, wait=False).release()
    except (OSError, BlockingIOError):
        return False
    return not os.path.lexists(os.path.join(path, STATE_FILE))


def remove_dir(path: str) -> None:
    """The state dir holds only flat files (no need for shutil's import cost here).
    state.json goes last but for the record: a delete killed halfway leaves a dir that the
    next delete --force still reads as a container, or as an unfinished create."""
    last = (STATE_FILE, RECORD_FILE)
    for name in os.listdir(path):
        if name not in last:
            _unlink(os.path.join(path, name))
    for name in last:
        _unlink(os.path.join(path, name))
    os.rmdir(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_pid_file(path: str, pid: int) -> None:
    """Atomically, and without a trailing newline (runc's format, which callers parse)."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)
