"""`onggi exec [flags] ID [COMMAND [ARGS...]]`: a new process in a running container, as
runc starts it. This is the command line and the parent side; execproc.py builds the
process, execinit.py is the child, messages.py has the steps.

The process is the container's `process` (config.json as create saved it) with the flags
applied, or a runtime-spec `process` object from --process FILE (podman and containerd),
which takes what it leaves out from the container. It joins the init's namespaces (user
first; a pid namespace by forking after setns), root, cgroups and linux.intelRdt groups, and
gets the same setup as the init (finalize.py): seccomp, rlimits, capabilities, no_new_privs,
umask, groups, HOME.

Engines call this for every exec, always with --detach, so the command line is parsed here
without argparse, and only what the container needs is imported: pyseccomp when it has a
filter, the tty helpers for a terminal, the foreground helpers when not detached.
"""

from __future__ import annotations

import _signal as signal  # the enum-free core of `signal` (see container.py)
import os

from runtime import fastjson, faults, messages, state
from runtime.errors import OnggiError, reason
from runtime.execproc import ExecArgs, build_process, exec_attrs
from runtime.linux import pids
from runtime.spec import Process

# runc exits 255 when exec itself fails, so that a process's own status (foreground) is
# never mistaken for the runtime's failure.
EXIT_FAILED = 255


# runc's flags (Go's flag package: one or two dashes, "-f v" or "-f=v").
_VALUE = {"console-socket": "console_socket", "cwd": "cwd", "u": "user", "user": "user",
          "p": "process", "process": "process", "pid-file": "pid_file",
          "process-label": "process_label", "apparmor": "apparmor",
          "preserve-fds": "preserve_fds"}
_LIST = {"e": "env", "env": "env", "g": "additional_gids", "additional-gids": "additional_gids",
         "c": "cap", "cap": "cap", "cgroup": "cgroup"}
_BOOL = {"t": "tty", "tty": "tty", "d": "detach", "detach": "detach",
         "no-new-privs": "no_new_privs", "ignore-paused": "ignore_paused"}
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")

USAGE = """\
usage: onggi exec [command options] <container-id> <command> [args...]
       onggi exec [command options] -p process.json <container-id>

Execute a new process inside a running container. Flags come before the id; everything
after the id is the command.

options:
  --console-socket PATH  an AF_UNIX socket which will receive the master end of the
                         process's pseudoterminal
  --cwd DIR              current working directory in the container
  -e, --env K=V          set an environment variable (repeatable; a later value wins)
  -t, --tty              allocate a pseudo-TTY
  -u, --user UID[:GID]   the user to run as (numeric)
  -g, --additional-gids GID
                         an additional gid (repeatable)
  -p, --process FILE     path to the process.json (the flags above still apply on top)
  -d, --detach           detach from the container's process
  --pid-file FILE        write the process's host pid to FILE
  --process-label LABEL  the SELinux process label
  --apparmor PROFILE     the AppArmor profile
  --no-new-privs         set no_new_privs for the process
  -c, --cap CAP          add a capability to the bounding, effective and permitted sets
                         (repeatable)
  --preserve-fds N       pass N additional file descriptors to the process (fds 3..3+N-1)
  --cgroup [CTRL[,CTRL]:]PATH
                         run in an existing sub-cgroup of the container's (repeatable)
  --ignore-paused        allow exec in a paused container
"""


def _usage_error(msg: str) -> OnggiError:
    return OnggiError(f"exec: {msg}", code=2)


def parse(argv: list[str]) -> ExecArgs | None:
    """The command line, runc's way; None for --help."""
    kw: dict[str, object] = {}
    lists: dict[str, list[str]] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            i += 1
            break
        if not tok.startswith("-") or tok == "-":
            break
        name, eq, value = tok.lstrip("-").partition("=")
        if name in ("h", "help"):
            return None
        if name in _BOOL:
            if eq and value not in _TRUE + _FALSE:
                raise _usage_error(f'invalid boolean value "{value}" for -{name}')
            kw[_BOOL[name]] = not eq or value in _TRUE
        elif name in _VALUE or name in _LIST:
            if not eq:
                i += 1
                if i == len(argv):
                    raise _usage_error(f"flag needs an argument: -{name}")
                value = argv[i]
            if name in _VALUE:
                kw[_VALUE[name]] = value
            else:
                lists.setdefault(_LIST[name], []).append(value)
        else:
            raise _usage_error(f"flag provided but not defined: {tok.partition('=')[0]}")
        i += 1
    if i == len(argv):
        raise _usage_error('"exec" requires a minimum of 1 argument(s): the container id')
    return ExecArgs(id=argv[i], args=tuple(argv[i + 1 :]), **kw,
                    **{k: tuple(v) for k, v in lists.items()})


def main(argv: list[str], g) -> int:
    """The verb (runtime.cli's VERBS): exit status of the process, or 0 when detached."""
    a = parse(argv)
    if a is None:
        import sys

        sys.stdout.write(USAGE)
        return 0
    try:
        return run(a, g.root)
    except OnggiError as e:
        raise OnggiError(f"exec failed: {e}", code=EXIT_FAILED if e.code == 1 else e.code) \
            from None
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        raise OnggiError(f"exec failed: {where}{reason(e)}",
                         code=EXIT_FAILED) from None


# ---------------------------------------------------------------- checks before the fork


def _check_stdio_and_fds(preserve: int) -> None:
    """fds 0-2 exist (a missing one would be taken by our own sockets, which the tty
    setup then overwrites), and so do the fds to preserve, which must be the caller's:
    everything we open comes after them."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open("/dev/null", os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    for fd in range(3, 3 + preserve):
        try:
            os.fstat(fd)
        except OSError:
            raise OnggiError(f"--preserve-fds {preserve}: fd {fd} is not open") from None


def _check_tty(proc: Process, a: ExecArgs) -> None:
    if a.detach and proc.terminal and not a.console_socket:
        raise OnggiError("cannot allocate tty if onggi will detach without setting "
                         "console socket")
    if a.console_socket and (not a.detach or not proc.terminal):
        raise OnggiError("cannot use console socket if onggi will not detach or allocate tty")


def _check_status(path: str, st: state.State, ignore_paused: bool) -> str:
    status = state.status(path, st)
    if status == "stopped":
        raise OnggiError("cannot exec in a stopped container")
    if status == "created":  # runc allows it; the process would run before the init's
        raise OnggiError("cannot exec in a created container (start it first)")
    if status == "paused" and not ignore_paused:
        raise OnggiError("cannot exec in a paused container (use --ignore-paused to override)")
    return status


def _seccomp(config: dict, st: state.State):
    """The container's filter, checked and built before the fork (pyseccomp only then):
    (a finalize.Seccomp or None, the listener: called with the notify fd of a filter with
    SCMP_ACT_NOTIFY rules, it hands the fd to the agent at listenerPath, as create does)."""
    sc = (config.get("linux") or {}).get("seccomp")
    if sc is None:
        return None, None
    from runtime.linux import finalize, seccomp

    plan = seccomp.prepare(sc)
    if plan is None:
        return None, None

    def listener(pid: int, fd: int) -> None:
        seccomp.send_to_listener(sc, st.oci("running"), pid, fd)

    return finalize.Seccomp(seccomp, plan), listener if plan.listener else None


# ---------------------------------------------------------------- run


def run(a: ExecArgs, root: str) -> int:
    preserve = a.preserve_fds
    if not preserve.isdigit():
        raise OnggiError(f"--preserve-fds {preserve}: must be a number of fds, 0 or more",
                         code=2)
    _check_stdio_and_fds(int(preserve))
    path, st = state.load(root, a.id)
    config = fastjson.loads(state.load_config(path))
    proc = build_process(a, config)
    attrs = exec_attrs(proc, config, a)
    _check_tty(proc, a)
    from runtime.cgroups import exec_join

    cgroups = exec_join.exec_dirs(st.cgroup_paths, exec_join.parse_sub(a.cgroup))
    seccomp, listener = _seccomp(config, st)
    console = _dial(a.console_socket) if a.console_socket else None  # runc dials first too
    lock = state.Lock(path, shared=True)  # no delete, pause or start meanwhile
    try:
        status = _check_status(path, st, a.ignore_paused)
        proc_out = _start(a, st, proc, int(preserve), cgroups, (seccomp, listener, attrs),
                          lock, console, paused=status == "paused")
    finally:
        lock.release()
        if console is not None:
            console.close()
    pid, master = proc_out
    if a.pid_file:
        state.write_pid_file(a.pid_file, pid)
    if a.detach:
        return 0
    from runtime import foreground

    resize = None
    if master is not None:
        from runtime.linux import tty

        def resize() -> None:
            tty.copy_size(0, master)
    foreground.forward_to(pid, resize)
    return foreground.wait(pid, master)


def _dial(path: str):
    """The caller's --console-socket, connected before anything starts."""
    try:
        return messages.dial(path)
    except OSError as e:
        raise OnggiError(f"--console-socket {path}: {reason(e)}") from None


def _send_console(sock, master: int) -> None:
    """The pty master over the console socket (named like runc's)."""
    try:
        messages.send_fd(sock, b"/dev/ptmx", master)
    except OSError as e:
        raise OnggiError(f"--console-socket: sending the pty: "
                         f"{reason(e)}") from None
    finally:
        os.close(master)


def _start(a: ExecArgs, st: state.State, proc: Process, preserve: int, cgroups, setup,
           lock: state.Lock, console, paused: bool) -> tuple[int, int | None]:
    """Fork the process, walk it through messages.py's exec steps; (host pid, pty master
    or None once it went to --console-socket). `setup`: (seccomp, its listener, attrs)."""
    seccomp, listener, attrs = setup
    from runtime import execinit
    from runtime.cgroups import exec_join
    from runtime.linux import caps, namespaces, process, syscalls

    ns_fds, root_fd = _open_container(st)
    parent_sock = child_sock = None
    run = _Run()
    try:
        if state.proc_start_time(st.pid) != st.start_time:
            raise OnggiError("cannot exec in a stopped container")  # gone while we opened
        parent_sock, child_sock = messages.pair()
        tty_mod = None
        if proc.terminal:
            from runtime.linux import tty as tty_mod
        ctx = execinit.ExecContext(
            cid=st.id, sock=child_sock, peer=parent_sock, lock_fd=lock.fd,
            ns_fds=[(k, fd) for k, fd in ns_fds if k != "pid"], root_fd=root_fd, proc=proc,
            preserve_fds=preserve, last_cap=caps.last_cap(), keyring=not st.no_new_keyring,
            seccomp=seccomp, tty_mod=tty_mod, attrs=attrs)
        # The child is born not dumpable (CVE-2019-5736) and, when the container has a pid
        # namespace, in it: setns(CLONE_NEWPID) moves only our children, and we fork one.
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
        namespaces.join([(k, fd) for k, fd in ns_fds if k == "pid"])
        if not a.detach:
            from runtime import foreground

            # held until there is a pid to forward them to
            signal.pthread_sigmask(signal.SIG_BLOCK, foreground.FORWARDED)
        plan = exec_join.Plan(cgroups, paused)
        ctx.cgroup_tasks = plan.tasks
        if attrs is None:
            run.pid = _fork(plan, process, lambda: execinit.main(ctx))
        else:  # execCPUAffinity.initial: our work in the container runs there
            from runtime.linux import execattrs

            run.pid = execattrs.with_initial_affinity(
                attrs, lambda: _fork(plan, process, lambda: execinit.main(ctx)))
        faults.point("exec:forked")
        child_sock.close()
        _walk(run, parent_sock, plan, lock if paused else None, listener, st.intel_rdt)
        if run.master is not None and console is not None:
            master, run.master = run.master, None
            _send_console(console, master)
        return run.pid, run.master
    except BaseException as e:
        run.cleanup()
        raise _failure(e, st) from None
    finally:
        for _, fd in ns_fds:
            os.close(fd)
        os.close(root_fd)
        for s in (parent_sock, child_sock):
            if s is not None:
                s.close()


def _fork(plan, process, child) -> int:
    try:
        return plan.fork(process.fork, child)
    except OSError as e:  # ENOMEM: the pid namespace lost its init, no pid is handed out
        raise OnggiError("cannot exec in a stopped container (its pid namespace has no "
                         f"init: {reason(e)})") from None


class _Run:
    """The process of one exec (our child until we exit), for the steps and for cleaning
    up after a failure."""

    def __init__(self) -> None:
        self.pid = 0
        self.master: int | None = None

    def cleanup(self) -> None:
        if self.pid:
            pids.kill_child(self.pid)
        if self.master is not None:
            os.close(self.master)
            self.master = None


def _walk(run: _Run, sock, plan, paused_lock: state.Lock | None, listener=None,
          intel_rdt: dict | None = None) -> None:
    """messages.py's exec steps, parent side."""
    kind, fields, fds = messages.recv(sock)
    for fd in fds:
        os.close(fd)
    if kind != messages.NS_JOINED:
        raise _child_error(kind, fields)
    plan.join_rest(fields.get("failed") or [], run.pid)  # what it did not join itself
    if intel_rdt:  # and the container's linux.intelRdt groups (only then: the import)
        from runtime.linux import resctrl

        resctrl.join(intel_rdt, run.pid)
    faults.point("exec:cgroup-joined")
    if paused_lock is not None:  # --ignore-paused: it waits frozen; resume needs the lock
        paused_lock.release()
    messages.send(sock, messages.CGROUP_JOINED)
    run.master = _await_exec(sock, run.pid, listener)
    faults.point("exec:execed")


def _open_container(st: state.State) -> tuple[list[tuple[str, int]], int]:
    from runtime.linux import namespaces

    if st.start_time == 0 or not st.namespaces:
        raise OnggiError("the container's state has no namespaces to join (made by an "
                         "older onggi?)")
    try:
        return namespaces.open_container(st.namespaces, st.pid)
    except OSError:
        if _init_gone(st):  # it died since the status check
            raise OnggiError("cannot exec in a stopped container") from None
        raise


def _failure(e: BaseException, st: state.State) -> BaseException:
    """What to tell of a failed start: a closed socket or a dead child only follows from
    a container that stopped meanwhile, or from a child that died on the way."""
    if isinstance(e, (OSError, OnggiError)) and _init_gone(st):
        return OnggiError("cannot exec in a stopped container (it stopped while the "
                          "process was being started)")
    if isinstance(e, (ConnectionResetError, BrokenPipeError)):
        return OnggiError("unable to start container process: it exited before it was "
                          f"ready ({reason(e)})")
    return e


def _init_gone(st: state.State) -> bool:
    """Dead, or dying: an exiting task drops its namespaces before it turns zombie."""
    if not state.alive(st):
        return True
    try:
        os.readlink(f"/proc/{st.pid}/ns/mnt")
    except OSError:
        return True
    return False


def _await_exec(sock, pid: int, listener=None) -> int | None:
    """Until EXECVE and then EOF, which says the process exec'd (its end of the socket is
    close-on-exec); the pty master on the way, with process.terminal, and the seccomp
    notify fd for the agent (before or after EXECVE: the filter loads last with NNP)."""
    master, ready = None, False
    notified = listener is None  # a filter with a listener hands its fd over before execve
    while True:
        kind, fields, fds = messages.recv(sock)
        if kind == messages.CONSOLE and fds and master is None:
            master = fds.pop(0)
        if kind == messages.SECCOMP and fds and listener is not None:
            fd = fds.pop(0)
            try:
                listener(pid, fd)
            finally:
                os.close(fd)
            messages.send(sock, messages.SECCOMP_DONE)
            notified = True
            continue
        for fd in fds:
            os.close(fd)
        if kind == messages.CONSOLE or (kind == messages.EXECVE and not ready):
            ready = ready or kind == messages.EXECVE
            continue
        if kind == messages.EOF and ready and notified:  # else: it died before execve
            return master
        if master is not None:
            os.close(master)
        raise _child_error(kind, fields)


def _child_error(kind: str, fields: dict) -> OnggiError:
    if kind == messages.ERROR:
        return messages.ChildError(fields.get("step", "?"), fields.get("errno"),
                                   f"unable to start container process: {fields.get('msg')}")
    if kind == messages.EOF:
        return OnggiError("unable to start container process: it exited before it was "
                          "ready (is the container's init gone?)")
    return OnggiError(f"sync: unexpected {kind}")
