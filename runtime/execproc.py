"""The process `exec` starts: the container's `process` (config.json as create saved it)
or a runtime-spec `process` object from --process FILE, which takes what it leaves out from
the container, then the command line's flags on top (runc's getProcess and newInitConfig).
Every error names the flag or the field."""

from __future__ import annotations

from runtime import spec
from runtime.errors import ConfigError, OnggiError, reason
from runtime.record import Record
from runtime.spec import CAP_NUMBER, Process


class ExecArgs(Record):
    """The command line of `onggi exec`, as parsed (runtime.exec.parse)."""

    id: str = ""
    args: tuple[str, ...] = ()
    process: str | None = None
    console_socket: str | None = None
    pid_file: str | None = None
    detach: bool = False
    tty: bool = False
    cwd: str | None = None
    env: tuple[str, ...] = ()
    user: str | None = None
    additional_gids: tuple[str, ...] = ()
    cap: tuple[str, ...] = ()
    no_new_privs: bool | None = None  # None: not given
    apparmor: str | None = None
    process_label: str | None = None
    preserve_fds: str = "0"
    cgroup: tuple[str, ...] = ()
    ignore_paused: bool = False


def _int(text: str, what: str, given: str) -> int:
    if not text.isdigit() or int(text) > 0xFFFFFFFE:
        raise OnggiError(f"{given}: bad {what}: must be a number from 0 to 4294967294")
    return int(text)


def _check_env(env: tuple[str, ...], where) -> None:
    """runc's prepareEnv rules, each entry named: NAME=VALUE, a name, no NUL."""
    for i, e in enumerate(env):
        name, eq, _ = e.partition("=")
        if not eq:
            raise OnggiError(f"{where(i)}: invalid environment variable {e!r}: missing '='")
        if not name:
            raise OnggiError(f"{where(i)}: invalid environment variable {e!r}: "
                             "name cannot be empty")
        if "\0" in e:
            raise OnggiError(f"{where(i)}: invalid environment variable {name!r}: "
                             "contains a NUL byte")


def merge_env(env: tuple[str, ...], extra: tuple[str, ...]) -> tuple[str, ...]:
    """env + extra, where a name given again keeps only its last value (runc's -e)."""
    out = list(env)
    for e in extra:
        key = e.partition("=")[0] + "="
        out = [x for x in out if not x.startswith(key)]
        out.append(e)
    return tuple(out)


# What a --process file leaves out comes from the container's process: {json key: field}.
# (args, env, cwd, user and terminal never do: the file must say them, as with runc.)
_INHERITED = {"capabilities": "capabilities", "rlimits": "rlimits",
              "noNewPrivileges": "no_new_privileges", "oomScoreAdj": "oom_score_adj",
              "apparmorProfile": "apparmor_profile", "selinuxLabel": "selinux_label"}


def _from_file(a: ExecArgs, base: Process | None) -> Process:
    path = a.process
    try:
        with open(path, "rb") as f:
            raw = spec.parse_json(f.read(), path)
    except OSError as e:
        raise OnggiError(f"--process {path}: {reason(e)}") from None
    if not isinstance(raw, dict):
        raise OnggiError(f"--process {path}: process: must be of type object")
    if a.args:  # the command line's args win (the issue; runc ignores them with -p)
        raw = {**raw, "args": list(a.args)}
    try:
        proc = spec.parse_process(raw)
        _check_env(proc.env, lambda i: f"process.env[{i}]")
    except ConfigError as e:
        raise OnggiError(f"--process {path}: {e.field}: {e.reason}") from None
    except OnggiError as e:
        raise OnggiError(f"--process {path}: {e}") from None
    if base is None:
        return proc
    given = {k for k, v in raw.items() if v not in (None, [], "")}
    inherit = {f: getattr(base, f) for k, f in _INHERITED.items() if k not in given}
    user = proc.user
    if "umask" not in (raw.get("user") or {}) and base.user.umask is not None:
        user = user.replace(umask=base.user.umask)
    return proc.replace(user=user, **inherit)


def _from_config(a: ExecArgs, base: Process | None) -> Process:
    if base is None:
        raise OnggiError("the container's config has no process to start from: use --process")
    if not a.args:
        raise OnggiError("exec args cannot be empty")
    # The config's terminal and console size are the init's: -t alone asks for one here.
    return base.replace(args=tuple(a.args), terminal=False, console_size=None)


def _add_caps(proc: Process, names: tuple[str, ...]) -> Process:
    """runc's --cap: into bounding, effective and permitted, and ambient when the process
    has inheritable ones (the kernel ignores an ambient cap without it)."""
    for name in names:
        if name not in CAP_NUMBER:
            raise OnggiError(f"--cap {name}: unknown capability")
    c = proc.capabilities
    if c is None or not names:
        return proc  # None: nothing is dropped, so every capability is there already
    add = tuple(CAP_NUMBER[n] for n in names)

    def more(cur: tuple[int, ...] | None) -> tuple[int, ...]:
        cur = cur or ()
        return cur + tuple(n for n in add if n not in cur)

    sets = {"bounding": more(c.bounding), "effective": more(c.effective),
            "permitted": more(c.permitted)}
    if c.inheritable is not None:
        sets["ambient"] = more(c.ambient)
    return proc.replace(capabilities=c.replace(**sets))


def _apply_flags(proc: Process, a: ExecArgs) -> Process:
    changes: dict[str, object] = {}
    if a.cwd:
        if not a.cwd.startswith("/"):
            raise OnggiError(f"--cwd {a.cwd}: must be an absolute path")
        changes["cwd"] = a.cwd
    if a.env:
        _check_env(a.env, lambda i: f"--env {a.env[i]!r}")
        changes["env"] = merge_env(proc.env, a.env)
    user = proc.user
    if a.user:
        uid, sep, gid = a.user.partition(":")
        user = user.replace(uid=_int(uid, "uid", f"--user {a.user}"))
        if sep:
            user = user.replace(gid=_int(gid, "gid", f"--user {a.user}"))
    if a.additional_gids:
        gids = tuple(_int(g, "gid", f"--additional-gids {g}") for g in a.additional_gids)
        user = user.replace(additional_gids=user.additional_gids + gids)
    if user is not proc.user:
        changes["user"] = user
    if a.no_new_privs is not None:
        changes["no_new_privileges"] = a.no_new_privs
    if a.apparmor:
        changes["apparmor_profile"] = a.apparmor
    if a.process_label:
        changes["selinux_label"] = a.process_label
    if a.tty:
        changes["terminal"] = True
    return _add_caps(proc.replace(**changes) if changes else proc, a.cap)


def exec_attrs(proc: Process, config: dict, a: ExecArgs):
    """runtime.linux.execattrs for the process (scheduler, ioPriority, execCPUAffinity,
    the container's personality and memoryPolicy, the LSM labels), prepared as create
    does: refused when the host cannot apply them. None when there are none (and then
    nothing is imported or probed)."""
    lx_raw = config.get("linux") or {}
    lx = spec.Linux(
        personality=spec.personality(lx_raw["personality"]) if "personality" in lx_raw
        else None,
        memory_policy=spec.memory_policy(lx_raw["memoryPolicy"]) if "memoryPolicy" in lx_raw
        else None)
    if not spec.has_exec_attrs(proc, lx):
        return None
    from runtime.linux import execattrs

    try:
        return execattrs.prepare(proc, lx)
    except ConfigError as e:  # the flag that asked for it, when one did
        flag = {"process.apparmorProfile": a.apparmor and "--apparmor",
                "process.selinuxLabel": a.process_label and "--process-label"}.get(e.field)
        if flag:
            raise OnggiError(f"{flag}: {e.reason}") from None
        raise


def build_process(a: ExecArgs, config: dict) -> Process:
    """The process to start: the container's (config.json as create read it) or the
    --process file's, with the flags applied on top."""
    raw = config.get("process")
    base = spec.parse_process(raw, check=False) if isinstance(raw, dict) else None  # create did
    proc = _from_file(a, base) if a.process else _from_config(a, base)
    return _apply_flags(proc, a)
