"""The child side of `create`: stage 1 enters the namespaces, the init sets up and execs.

Everything here runs between fork and exec: no imports, no logging, no locks. Errors go to
the parent as one line over the sync socket, and the process leaves with os._exit.
"""

from __future__ import annotations

import os
import resource

from runtime import messages
from runtime.linux import caps, namespaces, net, process, procfs, rootfs, syscalls
from runtime.record import Record
from runtime.spec import CLONE_FLAGS, Config, Process
from runtime.state import EXEC_FIFO

_KEYCTL = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine)
_KEYCTL_JOIN_SESSION_KEYRING = 1


class InitContext(Record):
    """What the parent prepared for the child (all fds are inherited through fork)."""

    cid: str
    sock: object  # _socket.socket
    peer: object  # the parent's end: closed in the child so a dead parent reads EOF
    lock_fd: int  # the state dir's flock: the child must not keep it held
    state_dir_fd: int  # O_PATH; the exec fifo is opened through it, never through /proc
    join_fds: list[tuple[str, int]]
    plan: object
    no_pivot: bool = False
    no_new_keyring: bool = False
    preserve_fds: int = 0
    extra_env: tuple[str, ...] = ()
    last_cap: int = 40
    seccomp: object = None  # a seccomp.Plan; pyseccomp was imported by the parent
    # Modules only some configs need (runtime.hooks, .linux.seccomp, .linux.tty): the parent
    # imports them before fork and hands them over, since the child may not import.
    hooks_mod: object = None
    seccomp_mod: object = None
    tty_mod: object = None
    hook_state: dict = {}  # State.oci() for the hooks; status and pid are set per hook


def child_main(cfg: Config, ctx: InitContext) -> None:
    """Stage 1. Never returns."""
    code = 1
    try:
        ctx.peer.close()
        os.close(ctx.lock_fd)
        _stage1(cfg, ctx)
        code = 0
    except BaseException as e:  # noqa: BLE001 - every failure must reach the parent
        _report(ctx, e)
    finally:
        os._exit(code)


def _report(ctx: InitContext, e: BaseException) -> None:
    """To the parent while it listens; after `created` it is gone, so to our stderr."""
    try:
        messages.send(ctx.sock, messages.ERROR, msg=_one_line(e))
        return
    except BaseException:  # noqa: BLE001
        pass
    try:
        os.write(2, f"onggi init: {_one_line(e)}\n".encode())
    except OSError:
        pass


def _one_line(e: BaseException) -> str:
    """OSError's own str() reads "[Errno 1] ...": give the op, the path and the reason."""
    if isinstance(e, OSError) and e.strerror:
        if e.filename is None:
            return e.strerror
        if ":" in e.strerror:  # syscalls' errors already name the op
            return f"{e.strerror} ({e.filename})"
        return f"{e.filename}: {e.strerror.lower()}"
    return str(e) or type(e).__name__


def _stage1(cfg: Config, ctx: InitContext) -> None:
    # Not dumpable: the container must not reach us through /proc/<pid>/exe (CVE-2019-5736).
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
    lx = cfg.linux
    namespaces.join(ctx.join_fds)
    user = lx.ns("user")
    if user is not None and user.path is None:
        syscalls.unshare(CLONE_FLAGS["user"])
        messages.send(ctx.sock, messages.USERNS_READY)
        messages.expect(ctx.sock, messages.MAPS_DONE)
    if user is not None:
        _become_ns_root(lx)
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)  # a credential change resets it
    syscalls.unshare(namespaces.new_flags(lx, without=("user",)))
    if lx.time_offsets:
        namespaces.write_time_offsets(lx)
    pid = os.fork()  # the init: PID 1 of a new pid namespace
    if pid == 0:
        code = 1
        try:
            _init(cfg, ctx)  # execs on success
        except BaseException as e:  # noqa: BLE001
            _report(ctx, e)
        finally:
            os._exit(code)
    messages.send(ctx.sock, messages.INIT_PID, pid=pid)


def _become_ns_root(lx) -> None:
    if any(m.container_id == 0 for m in lx.gid_mappings) or lx.ns("user").path:
        os.setresgid(0, 0, 0)
    if any(m.container_id == 0 for m in lx.uid_mappings) or lx.ns("user").path:
        os.setresuid(0, 0, 0)


def _init(cfg: Config, ctx: InitContext) -> None:
    proc = cfg.process
    os.setsid()
    if not ctx.no_new_keyring and _KEYCTL:
        _join_session_keyring(ctx.cid)
    lx = cfg.linux
    if lx.ns("network") is not None and lx.ns("network").path is None:
        net.loopback_up()
    rootfs.mount_all(cfg, ctx.plan)
    hooks = ctx.hooks_mod
    if cfg.hooks.get("prestart") or cfg.hooks.get("createRuntime"):
        messages.send(ctx.sock, messages.RUN_HOOKS)  # the parent runs them (runtime.md 3, 4)
        messages.expect(ctx.sock, messages.HOOKS_DONE)
    if cfg.hooks.get("createContainer"):  # in our namespaces; paths still in the host's view
        data = hooks.state_json(ctx.hook_state, "creating", os.getpid())
        hooks.run_all("createContainer", cfg.hooks["createContainer"], data)
    rootfs.pivot(cfg, ctx.no_pivot)
    if proc is not None and proc.terminal:
        tty = ctx.tty_mod
        master, slave = tty.open_pty()
        rootfs.bind_console(slave)  # /dev/console is the pty, as runc makes it
        if proc.console_size:
            tty.set_size(slave, *proc.console_size)
        messages.send(ctx.sock, messages.CONSOLE, fds=[master])
        os.close(master)
        tty.make_controlling(slave)
    for key, value in lx.sysctl:  # before finish: it makes /proc/sys read-only
        procfs.write("/proc/sys/" + key.replace(".", "/"), value)
    rootfs.finish(cfg, ctx.plan)
    if cfg.hostname is not None:
        syscalls.sethostname(cfg.hostname)
    if cfg.domainname is not None:
        syscalls.setdomainname(cfg.domainname)
    if proc is None:
        raise RuntimeError("process: config has no process to run")
    seccomp = ctx.seccomp_mod
    filt = seccomp.build(ctx.seccomp) if ctx.seccomp is not None else None
    _close_host_fds(ctx)  # before any filter is loaded: close_range may not be allowed
    process.die_on_signals()  # before the filter too; `kill` can reach us from CREATED on
    _setup_process(proc, ctx, filt)
    path = _look_path(proc)
    messages.send(ctx.sock, messages.CREATED)
    # Blocks until `start` opens the fifo for reading: the user process has not run yet.
    # openat on the state dir fd: /proc/self/fd is closed to us while we are not dumpable.
    fd = os.open(EXEC_FIFO, os.O_WRONLY | os.O_CLOEXEC, dir_fd=ctx.state_dir_fd)
    os.write(fd, b"0")
    os.close(fd)
    if cfg.hooks.get("startContainer"):  # after start, before the user process; a failure
        data = ctx.hooks_mod.state_json(ctx.hook_state, "created", os.getpid())  # exits, see _report
        ctx.hooks_mod.run_all("startContainer", cfg.hooks["startContainer"], data)
    process.reset_signals()
    args, env = list(proc.args), list(proc.env) + list(ctx.extra_env)
    if filt is not None and proc.no_new_privileges:
        ctx.seccomp_mod.load(filt)  # last: no syscall of ours may meet the container's filter
    syscalls.execve(path, args, env)


def _join_session_keyring(cid: str) -> None:
    name = f"_ses.{cid}".encode()
    if syscalls._syscall(_KEYCTL, _KEYCTL_JOIN_SESSION_KEYRING, name) < 0:
        pass  # like runc: keyrings may be unavailable (ENOSYS/EACCES), which is not fatal


def _setup_process(proc: Process, ctx: InitContext, filt=None) -> None:
    if proc.oom_score_adj is not None:
        procfs.write("/proc/self/oom_score_adj", str(proc.oom_score_adj))
    for r in proc.rlimits:
        try:
            resource.setrlimit(r.resource, (_rlim(r.soft), _rlim(r.hard)))
        except (OSError, ValueError) as e:
            if isinstance(e, ValueError):
                raise RuntimeError(f"setting rlimit {r.name}: {e}") from None
            raise OSError(e.errno, f"setting rlimit {r.name}: {os.strerror(e.errno)}") from None
    _chdir(proc.cwd)
    if filt is not None and not proc.no_new_privileges:
        ctx.seccomp_mod.load(filt)  # needs CAP_SYS_ADMIN without no_new_privs: before caps drop
    if proc.capabilities is not None:
        caps.apply_bounding(proc.capabilities, ctx.last_cap)
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 1)
    _set_user(proc)
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 0)
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)  # setresuid reset it to fs.suid_dumpable
    if proc.capabilities is not None:
        caps.apply_sets(proc.capabilities, ctx.last_cap)
    if proc.user.umask is not None:
        os.umask(proc.user.umask)
    if proc.no_new_privileges:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)


def _rlim(v: int) -> int:
    return resource.RLIM_INFINITY if v >= 2**63 else v


def _chdir(cwd: str) -> None:
    # After pivot_root the path resolves inside the container's root, symlinks included.
    try:
        os.chdir(cwd)
    except FileNotFoundError:
        os.makedirs(cwd, 0o755, exist_ok=True)
        os.chdir(cwd)
    except OSError as e:
        raise OSError(e.errno, f"process.cwd {cwd}: {os.strerror(e.errno)}") from None


def _set_user(proc: Process) -> None:
    u = proc.user
    try:
        os.setgroups(list(u.additional_gids))
    except PermissionError:
        if u.additional_gids:
            raise  # setgroups is denied in this user namespace
    os.setresgid(u.gid, u.gid, u.gid)
    os.setresuid(u.uid, u.uid, u.uid)


def _look_path(proc: Process) -> str:
    """args[0] as execve will see it, with the config's PATH, like Go's exec.LookPath."""
    name = proc.args[0]
    if "/" in name:
        if not os.path.exists(name):
            raise RuntimeError(f'exec: "{name}": stat {name}: no such file or directory')
        if not os.access(name, os.X_OK) or os.path.isdir(name):
            raise RuntimeError(f'exec: "{name}": permission denied')
        return name
    path = next((e[5:] for e in proc.env if e.startswith("PATH=")), "")
    for d in path.split(":"):
        cand = os.path.join(d or ".", name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise RuntimeError(f'exec: "{name}": executable file not found in $PATH')


def _close_host_fds(ctx: InitContext) -> None:
    """Only stdio and the preserved fds survive execve; nothing of the host leaks in."""
    first = 3 + ctx.preserve_fds
    for fd in range(3, first):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    syscalls.close_range(first, 0xFFFFFFFF, syscalls.CLOSE_RANGE_CLOEXEC)
