"""The parent side of `create`: fork the child, walk it through the steps of messages.py
over the sync socket (cgroups, id maps, resources, hooks), record the state.

On any failure everything `create` made is undone: the processes are killed, the cgroups
and the state dir removed. The mounts live only in the child's mount namespace, so they go
with it; what lives outside it (runtime.hostres: the mounts of a container without a mount
namespace, moved net devices, the resctrl group) is released.
"""

from __future__ import annotations

import _signal as signal  # the enum-free core of `signal` (see container.py)
import os

from runtime import cgroups, faults, log, messages, state
from runtime.errors import OnggiError
from runtime.hostres import HostResources
from runtime.linux import pids
from runtime.record import Record
from runtime.spec import Config, has_exec_attrs


class CreateOptions(Record):
    cid: str
    root: str
    pid_file: str | None = None
    console_socket: str | None = None
    no_pivot: bool = False
    no_new_keyring: bool = False
    preserve_fds: int = 0
    cgroups: cgroups.Options = cgroups.Options()


def create(cfg: Config, raw_config: bytes, opts: CreateOptions) -> state.State:
    # Imported here: only create pays for the init's modules (python-prctl, ctypes setup).
    from runtime import init
    from runtime.linux import caps, mountplan, namespaces

    steps = log.Steps("create")
    seccomp_plan = seccomp = hooks = tty = None
    if cfg.linux.seccomp is not None:  # only then: pyseccomp is loaded before the fork
        from runtime.linux import seccomp

        seccomp_plan = seccomp.prepare(cfg.linux.seccomp)
    if any(cfg.hooks.values()):
        from runtime import hooks
    if cfg.process is not None and cfg.process.terminal:
        from runtime.linux import tty
    plan = mountplan.plan(cfg)
    for note in plan.notes:
        log.warn(note)
    attrs = rdt = None
    if has_exec_attrs(cfg.process, cfg.linux):  # only then: no probing for plain configs
        from runtime.linux import execattrs

        attrs = execattrs.prepare(cfg.process, cfg.linux)
    if cfg.linux.intel_rdt is not None:
        from runtime.linux import resctrl

        rdt = resctrl.prepare(cfg.linux.intel_rdt, opts.cid)
    steps.step("planned", mounts=len(plan.mounts), seccomp=seccomp_plan is not None)
    if opts.console_socket is None and cfg.process is not None and cfg.process.terminal:
        raise OnggiError("process.terminal is set: --console-socket is required")
    extra_env, preserve = _listen_fds(opts.preserve_fds)
    join_fds = namespaces.open_joins(cfg.linux)
    path = state.make_dir(opts.root, opts.cid)
    lock = state.Lock(path)  # held until state.json exists: see state.Lock
    fifo_path = os.path.join(path, state.EXEC_FIFO)
    init_pid, dir_fd, anchor_fd = 0, -1, -1
    parent_sock = child_sock = None
    mgr = cgroups.Manager()
    res = HostResources()
    try:
        mgr = cgroups.for_create(cfg, opts.cid, opts.cgroups.replace(state_dir=path))
        record = _Record(path, _own_pid_ns(cfg), mgr)
        if plan.host_mntns:  # no mount namespace: our mounts go under one anchor
            from runtime.linux import hostmounts

            anchor_fd, anchor = hostmounts.make_anchor(cfg.root_path)
            res.host_mounts = anchor.to_state()
            record.note(host_mounts=res.host_mounts)
        os.mkfifo(fifo_path, 0o622)
        os.chmod(fifo_path, 0o622)  # mkfifo honours the umask; a mapped root must open it
        dir_fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        parent_sock, child_sock = messages.pair()
        created = state.now_rfc3339()
        # The hooks' state (runtime.md): pid and status are set where each hook runs.
        hook_state = state.State(
            id=opts.cid, pid=0, start_time=0, bundle=cfg.bundle, rootfs=cfg.root_path,
            created=created, annotations=cfg.annotations,
        ).oci("creating")
        ctx = init.InitContext(
            cid=opts.cid,
            sock=child_sock,
            peer=parent_sock,
            lock_fd=lock.fd,
            state_dir_fd=dir_fd,
            join_fds=join_fds,
            plan=plan,
            no_pivot=opts.no_pivot,
            no_new_keyring=opts.no_new_keyring,
            preserve_fds=preserve,
            extra_env=extra_env,
            last_cap=caps.last_cap(),
            hooks_mod=hooks,
            seccomp_mod=seccomp,
            tty_mod=tty,
            seccomp=seccomp_plan,
            attrs=attrs,
            anchor_fd=anchor_fd,
            hook_state=hook_state,
        )
        if attrs is None:
            stage1 = mgr.fork(lambda: init.child_main(cfg, ctx))
        else:  # execCPUAffinity.initial: the runtime's work in the container runs there
            stage1 = execattrs.with_initial_affinity(
                attrs, lambda: mgr.fork(lambda: init.child_main(cfg, ctx)))
        record.note(stage1=[stage1, state.proc_start_time(stage1) or 0])
        faults.point("create:forked")
        steps.step("forked", stage1=stage1)
        child_sock.close()
        mountplan.close_trees(plan.mounts)  # the child holds its own copies now
        if anchor_fd >= 0:
            os.close(anchor_fd)
            anchor_fd = -1
        init_pid, console = _talk(parent_sock, stage1, cfg, plan, mgr, hook_state, steps, res,
                                  rdt, record)
        if console is not None:
            _send_console(opts.console_socket, console)
        st = state.State(
            id=opts.cid,
            pid=init_pid,
            # as read when the init reported: it may be gone by now (a console socket that
            # closed the pty master hung it up), which makes a stopped container, as in runc
            start_time=record.data["start_time"],
            bundle=cfg.bundle,
            rootfs=cfg.root_path,
            created=created,
            annotations=cfg.annotations,
            pid_ns=_own_pid_ns(cfg),
            hooks={k: [h.__dict__ for h in v] for k, v in cfg.hooks.items()},
            cgroup_driver=mgr.driver,
            cgroup_paths=mgr.paths,
            cgroup_data=mgr.saved(),
            namespaces=namespaces.paths(cfg.linux, init_pid),
            host_mounts=res.host_mounts,
            net_devices=res.net_devices,
            intel_rdt=res.intel_rdt,
            no_new_keyring=opts.no_new_keyring,
        )
        if not st.start_time:
            raise OnggiError("container init exited before it was ready")
        state.save_config(path, raw_config)
        state.save(path, st)
        faults.point("create:state-saved")
        _release_init(parent_sock)
        if opts.pid_file:
            state.write_pid_file(opts.pid_file, init_pid)
        steps.step("state saved", pid=init_pid)
        return st
    except BaseException:
        if init_pid:
            _kill(init_pid)
        if anchor_fd >= 0:
            os.close(anchor_fd)
        _release(res)
        _destroy(mgr)
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        raise
    finally:
        lock.release()
        if dir_fd >= 0:
            os.close(dir_fd)
        for _, fd in join_fds:
            os.close(fd)
        for s in (parent_sock, child_sock):
            if s is not None:
                s.close()


class _Record:
    """The second record (state.RECORD_FILE): rewritten as each process or cgroup is
    known, so that `delete --force` finds them whenever `create` dies."""

    def __init__(self, path: str, pid_ns: bool, mgr: cgroups.Manager) -> None:
        self.path = path
        self.data = {"stage1": [0, 0], "pid": 0, "start_time": 0, "pid_ns": pid_ns,
                     "cgroup_driver": mgr.driver, "cgroup_paths": mgr.paths,
                     "host_mounts": {}, "net_devices": [], "intel_rdt": {}}
        state.save_record(path, self.data)

    def note(self, **fields: object) -> None:
        if any(self.data[k] != v for k, v in fields.items()):
            self.data.update(fields)
            state.save_record(self.path, self.data)


def _release_init(sock) -> None:
    """The state is saved: the init may block on the exec fifo. Until now it would exit on
    our death. If it is already gone, the container is merely stopped."""
    try:
        messages.send(sock, messages.STATE_SAVED)
    except (messages.Gone, OSError):
        pass


def _talk(sock, stage1: int, cfg: Config, plan, mgr: cgroups.Manager, hook_state: dict,
          steps: log.Steps, res: HostResources, rdt, record: _Record) -> tuple[int, int | None]:
    """Walk the child through the steps of messages.py; returns (init pid, console master).
    Each step is a debug line with its timing (the child may not log: it reports here)."""
    from runtime.linux import namespaces

    init_pid, console = 0, None
    expect = messages.expect
    try:
        tasks = mgr.self_join(stage1)
        messages.send(sock, messages.CGROUP_JOIN, tasks=tasks)
        failed = expect(sock, messages.CGROUP_JOINED)[1]["failed"]
        if failed:
            mgr.rejoin(stage1, failed)
            messages.send(sock, messages.CGROUP_DONE)
        record.note(cgroup_driver=mgr.driver, cgroup_paths=mgr.paths)
        faults.point("create:cgroup-joined")
        steps.step(messages.CGROUP_JOINED, driver=mgr.driver or "none", failed=len(failed))
        _, fields, _ = expect(sock, messages.ID_MAPS)
        if fields["write"]:
            namespaces.write_id_maps(stage1, cfg.linux)
        faults.point("create:id-maps")
        messages.send(sock, messages.MAPS_DONE)
        steps.step(messages.ID_MAPS, written=fields["write"])
        init_pid = expect(sock, messages.INIT_PID)[1]["pid"]
        record.note(pid=init_pid, start_time=state.proc_start_time(init_pid) or 0)
        pids.reap(stage1)
        stage1 = 0
        faults.point("create:init-pid")
        steps.step(messages.INIT_PID, pid=init_pid)
        try:
            _outside(cfg, init_pid, res, rdt)
        finally:  # what was moved or made is delete --force's to give back too
            record.note(net_devices=list(res.net_devices), intel_rdt=dict(res.intel_rdt))
        if plan.sources_in_parent:
            _send_mount_sources(sock, init_pid, plan)
            steps.step(messages.MOUNT_SOURCES_DONE)
        expect(sock, messages.MOUNTS_DONE)
        steps.step(messages.MOUNTS_DONE)
        mgr.set(cfg.linux.resources)  # runc: Set before the prestart hooks
        faults.point("create:resources-set")
        steps.step("resources-set")
        _create_hooks(cfg, hook_state, init_pid)
        messages.send(sock, messages.PARENT_READY)
        steps.step(messages.PARENT_READY)
        while True:
            kind, fields, fds = expect(sock, messages.CONSOLE, messages.SECCOMP,
                                       messages.CREATED)
            if kind == messages.CONSOLE:
                console = fds[0]
            elif kind == messages.SECCOMP:
                _seccomp_listener(cfg, hook_state, init_pid, fds)
                messages.send(sock, messages.SECCOMP_DONE)
            steps.step(kind)
            if kind == messages.CREATED:
                break
        faults.point("create:created")
        return init_pid, console
    except BaseException:
        if init_pid:
            _kill(init_pid)
        if stage1:
            pids.kill_child(stage1)
        if console is not None:
            os.close(console)
        raise


def _send_mount_sources(sock, init_pid: int, plan) -> None:
    """The bind sources, opened inside the init's mount namespace with our credentials
    (mountplan.open_sources), handed to the init."""
    from runtime.linux import mountplan

    trees = mountplan.open_sources(init_pid, plan)
    try:
        for index, fd in trees:
            messages.send(sock, messages.MOUNT_SOURCE, fds=[fd], index=index)
        messages.send(sock, messages.MOUNT_SOURCES_DONE)
    finally:
        for _, fd in trees:
            os.close(fd)


def _seccomp_listener(cfg: Config, hook_state: dict, init_pid: int, fds: list[int]) -> None:
    """linux.seccomp.listenerPath: hand the init's notify fd to the agent, with the
    container process state (config-linux.md); a failure fails the create."""
    from runtime.linux import seccomp

    try:
        if len(fds) != 1:
            raise OnggiError(f"sync: expected one seccomp notify fd, got {len(fds)}")
        seccomp.send_to_listener(cfg.linux.seccomp, {**hook_state, "pid": init_pid}, init_pid,
                                 fds[0])
    finally:
        for fd in fds:
            os.close(fd)


def _outside(cfg: Config, init_pid: int, res: HostResources, rdt) -> None:
    """What the parent does to the init from outside (runc: after the cgroup join, before
    the prestart hooks): move linux.netDevices into its network namespace, and put it in
    its linux.intelRdt group. `res` records each step for delete and for undoing."""
    if cfg.linux.net_devices:
        from runtime.linux import netdev  # pyroute2: only for configs with netDevices

        netdev.move_all(cfg.linux.net_devices, init_pid, res.net_devices)
    if rdt is not None:
        from runtime.linux import resctrl

        resctrl.apply(rdt, init_pid, res.intel_rdt)


def _release(res: HostResources) -> None:
    """A failed create gives back what it took outside the container."""
    try:
        res.release()
    except Exception as e:  # noqa: BLE001 - the create's own error is the one to report
        log.warn(f"undoing a failed create: {e}")


def _create_hooks(cfg: Config, hook_state: dict, init_pid: int) -> None:
    """prestart and createRuntime, while the init waits before pivot_root (runtime.md 3, 4)."""
    if not any(cfg.hooks.get(kind) for kind in ("prestart", "createRuntime")):
        return
    from runtime import hooks  # imported before the fork when the config has hooks

    for kind in hooks.PARENT_CREATE:
        data = hooks.state_json(hook_state, hooks.CREATE_STATUS[kind], init_pid)
        hooks.run_all(kind, cfg.hooks.get(kind), data)


def _destroy(mgr: cgroups.Manager) -> None:
    """A failed create leaves no cgroup behind."""
    try:
        mgr.destroy()
    except Exception as e:  # noqa: BLE001 - the create's own error is the one to report
        log.warn(f"removing the cgroups of a failed create: {e}")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _send_console(path: str | None, master: int) -> None:
    from runtime.linux import tty

    try:
        tty.send_console(path, master)
    except OSError as e:
        raise OnggiError(f"--console-socket {path}: {e.strerror.lower()}") from None
    finally:
        os.close(master)


def _listen_fds(preserve: int) -> tuple[tuple[str, ...], int]:
    """systemd socket activation: LISTEN_FDS fds are passed on like runc does."""
    n = os.environ.get("LISTEN_FDS", "")
    if not n.isdigit() or int(n) == 0:
        return (), preserve
    return (f"LISTEN_FDS={n}", "LISTEN_PID=1"), preserve + int(n)


def _own_pid_ns(cfg: Config) -> bool:
    ns = cfg.linux.ns("pid")
    return ns is not None and ns.path is None
