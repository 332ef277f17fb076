"""The child side of `create`: stage 1 enters the namespaces, the init sets up and execs.

Everything here runs between fork and exec: no imports, no logging, no locks. The steps and
their order are messages.py's; a failing step goes to the parent as a typed ERROR (step,
errno, message) over the sync socket, and the process leaves with os._exit.
"""

from __future__ import annotations

import os

from runtime import faults, messages
from runtime.cgroups import files
from runtime.linux import finalize, mounts, namespaces, net, pivot, process, procfs, syscalls
from runtime.record import Record
from runtime.spec import CLONE_FLAGS, Config, sysctl_path
from runtime.state import EXEC_FIFO


class InitContext(Record):
    """What the parent prepared for the child (all fds are inherited through fork)."""

    cid: str
    sock: object  # _socket.socket
    peer: object  # the parent's end: closed in the child so a dead parent reads EOF
    lock_fd: int  # the state dir's flock: the child must not keep it held
    state_dir_fd: int  # O_PATH; the exec fifo is opened through it, never through /proc
    join_fds: list[tuple[str, int]]
    plan: object  # runtime.linux.mountplan.Plan
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
    attrs: object = None  # runtime.linux.execattrs.ExecAttrs, None without such fields
    anchor_fd: int = -1  # no mount namespace: the rootfs bind the parent made (hostmounts)
    hook_state: dict = {}  # State.oci() for the hooks; status and pid are set per hook


step = faults.Steps("init:", "stage1")  # the step the child is in, for its error report


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
    """To the parent while it listens; after `created` it is gone, so to our stderr. When
    the runtime died (EOF) there is no one to tell: we just leave."""
    if messages.report(ctx.sock, step.name, e):
        return
    try:
        os.write(2, f"onggi init: {messages.one_line(e)}\n".encode())
    except OSError:
        pass


def _stage1(cfg: Config, ctx: InitContext) -> None:
    # Not dumpable: the container must not reach us through /proc/<pid>/exe (CVE-2019-5736).
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
    lx = cfg.linux
    step("cgroup-join")
    tasks = messages.expect(ctx.sock, messages.CGROUP_JOIN)[1]["tasks"]
    failed = files.join_self(tasks)
    messages.send(ctx.sock, messages.CGROUP_JOINED, failed=failed)
    if failed:
        messages.expect(ctx.sock, messages.CGROUP_DONE)
    step("join-namespaces")
    namespaces.join(ctx.join_fds)
    user = lx.ns("user")
    new_user = user is not None and user.path is None
    if new_user:
        syscalls.unshare(CLONE_FLAGS["user"])
    step("id-maps")
    messages.send(ctx.sock, messages.ID_MAPS, write=new_user)
    messages.expect(ctx.sock, messages.MAPS_DONE)
    step("unshare")
    if user is not None:
        _become_ns_root(lx)
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)  # a credential change resets it
    syscalls.unshare(namespaces.new_flags(lx, without=("user",)))
    if lx.time_offsets:
        namespaces.write_time_offsets(lx)
    step("fork-init")
    # The init speaks only once the parent knows its pid: INIT_PID comes first on the socket.
    go_r, go_w = os.pipe()
    pid = os.fork()  # the init: PID 1 of a new pid namespace
    if pid == 0:
        code = 1
        try:
            os.close(go_w)
            if os.read(go_r, 1) != b"1":  # stage 1 died before the parent knew our pid
                os._exit(1)
            os.close(go_r)
            _init(cfg, ctx)  # execs on success
        except BaseException as e:  # noqa: BLE001
            _report(ctx, e)
        finally:
            os._exit(code)
    os.close(go_r)
    messages.send(ctx.sock, messages.INIT_PID, pid=pid)
    os.write(go_w, b"1")
    os.close(go_w)


def _become_ns_root(lx) -> None:
    if any(m.container_id == 0 for m in lx.gid_mappings) or lx.ns("user").path:
        os.setresgid(0, 0, 0)
    if any(m.container_id == 0 for m in lx.uid_mappings) or lx.ns("user").path:
        os.setresuid(0, 0, 0)


def _init(cfg: Config, ctx: InitContext) -> None:
    step("init")
    proc = cfg.process  # never None: spec refuses a config without one
    os.setsid()
    if not ctx.no_new_keyring:
        if ctx.attrs is not None:
            ctx.attrs.keyring_label()
        syscalls.join_session_keyring(f"_ses.{ctx.cid}")  # failure is not fatal (runc)
    lx = cfg.linux
    if lx.ns("network") is not None and lx.ns("network").path is None:
        net.loopback_up()
    if ctx.plan.sources_in_parent:
        step("mount-sources")
        _receive_mount_sources(ctx)
    step("mounts")
    rootfs = mounts.mount_all(cfg, ctx.plan, ctx.anchor_fd)
    step("parent-ready")
    messages.send(ctx.sock, messages.MOUNTS_DONE)  # the parent sets resources, runs hooks
    messages.expect(ctx.sock, messages.PARENT_READY)
    step("create-container-hooks")
    hooks = ctx.hooks_mod
    if cfg.hooks.get("createContainer"):  # in our namespaces; paths still in the host's view
        os.fchdir(rootfs.rootfd)  # runc runs them in the rootfs: relative paths reach it
        data = hooks.state_json(ctx.hook_state, "creating", os.getpid())
        hooks.run_all("createContainer", cfg.hooks["createContainer"], data,
                      list(proc.env))
    step("pivot")
    pivot.pivot(rootfs, cfg, ctx.no_pivot)
    finalize.ensure_cwd(proc.cwd)  # before root.readonly applies, as runc makes it
    if proc.terminal:
        step("console")
        tty = ctx.tty_mod
        master, slave = tty.open_pty()
        pivot.bind_console(slave)  # /dev/console is the pty, as runc makes it
        if proc.console_size:
            tty.set_size(slave, *proc.console_size)
        messages.send(ctx.sock, messages.CONSOLE, fds=[master])
        os.close(master)
        tty.make_controlling(slave)
    step("sysctl")
    for key, value in lx.sysctl:  # before finish: it makes /proc/sys read-only
        procfs.write("/proc/sys/" + sysctl_path(key), value)
    step("finish-rootfs")
    pivot.finish(rootfs, cfg, ctx.plan)
    if cfg.hostname is not None:
        syscalls.sethostname(cfg.hostname)
    if cfg.domainname is not None:
        syscalls.setdomainname(cfg.domainname)
    step("process")
    seccomp = None
    if ctx.seccomp is not None:
        seccomp = finalize.Seccomp(ctx.seccomp_mod, ctx.seccomp,
                                   notify=lambda fd: _notify(ctx, fd))
    finalize.prepare(proc)
    finalize.close_host_fds(ctx.preserve_fds)  # before any filter: close_range may be denied
    process.die_on_signals()  # before the filter too; `kill` can reach us from CREATED on
    proc = finalize.finalize(proc, ctx.last_cap, seccomp, ctx.attrs)
    path = finalize.look_path(proc)
    if seccomp is not None and not seccomp.loaded:
        # With noNewPrivileges, as late as runc loads it: before `created`, so that the
        # filter confines the startContainer hooks too, and a load error fails create.
        step("seccomp")
        seccomp.load()
    step("created")
    messages.send(ctx.sock, messages.CREATED)
    # Until state.json is saved nothing could find us: if the runtime dies first (EOF), so
    # do we. PR_SET_PDEATHSIG cannot say this: our parent is stage 1, which has exited.
    messages.expect(ctx.sock, messages.STATE_SAVED)
    ctx.sock.close()
    step("exec-fifo")
    # Blocks until `start` opens the fifo for reading: the user process has not run yet.
    # openat on the state dir fd: /proc/self/fd is closed to us while we are not dumpable.
    # The fd stays open until execve closes it (O_CLOEXEC): `start` waits for that.
    fd = os.open(EXEC_FIFO, os.O_WRONLY | os.O_CLOEXEC, dir_fd=ctx.state_dir_fd)
    os.write(fd, b"0")
    step("start-container-hooks")
    if cfg.hooks.get("startContainer"):  # after start, before the user process; a failure
        data = hooks.state_json(ctx.hook_state, "created", os.getpid())  # exits, see _report
        hooks.run_all("startContainer", cfg.hooks["startContainer"], data,
                      list(proc.env) + list(ctx.extra_env))
    step("exec")
    finalize.exec_process(path, proc, ctx.extra_env, seccomp, ctx.attrs)


def _notify(ctx: InitContext, fd: int) -> None:
    step("seccomp-notify")
    messages.hand_over_notify(ctx.sock, fd)


def _receive_mount_sources(ctx: InitContext) -> None:
    """The bind trees the parent opened for us (launch._send_mount_sources)."""
    mounts_ = ctx.plan.mounts
    while True:
        kind, fields, fds = messages.expect(ctx.sock, messages.MOUNT_SOURCE,
                                            messages.MOUNT_SOURCES_DONE)
        if kind == messages.MOUNT_SOURCES_DONE:
            return
        mounts_[fields["index"]].tree = fds[0]
