"""The child side of `exec` (runc's setns init): the process joins the container's
namespaces and root, and once the parent has put it in the container's cgroups, sets
itself up with finalize.py (as the init does) and execs.

Everything here runs between fork and exec: no imports, no logging, no locks. The steps
are messages.py's; a failing step goes to the parent as a typed ERROR over the sync socket,
and the process leaves with os._exit. The socket is close-on-exec: the parent's EOF says
the execve succeeded.
"""

from __future__ import annotations

import os

from runtime import faults, messages
from runtime.cgroups import files
from runtime.linux import finalize, namespaces, syscalls
from runtime.record import Record
from runtime.spec import Process


class ExecContext(Record):
    """What the parent prepared (every fd is inherited through fork)."""

    cid: str
    sock: object  # _socket.socket, the child's end
    peer: object  # the parent's end: closed here, so a dead parent reads as EOF
    lock_fd: int  # the state dir's shared flock: the parent holds it, not us
    ns_fds: list[tuple[str, int]]  # JOIN_ORDER, user first; pid is the parent's to join
    root_fd: int  # O_PATH of the init's root
    proc: Process
    preserve_fds: int = 0
    last_cap: int = 40
    keyring: bool = True  # join the container's session keyring (not --no-new-keyring)
    seccomp: object = None  # a finalize.Seccomp, the filter built by the parent
    tty_mod: object = None  # runtime.linux.tty, imported before fork for process.terminal
    attrs: object = None  # runtime.linux.execattrs.ExecAttrs, or None
    cgroup_tasks: list[str] = []  # v1 `tasks` files to write "0" to (exec_join.Plan)


step = faults.Steps("exec:", "exec")  # the step the child is in, for its error report


def main(ctx: ExecContext) -> None:
    """The process, from fork to execve; never returns. It was born not dumpable (the parent
    made itself so): in the container's namespaces nothing there may open our
    /proc/<pid>/exe (CVE-2019-5736). Born in the container's pid namespace, when it has
    one: the parent joined it for its children before the fork."""
    try:
        ctx.peer.close()
        os.close(ctx.lock_fd)
        step("cgroup-self")
        failed = files.join_self(ctx.cgroup_tasks)  # first: all we do next counts there
        step("prepare")
        finalize.prepare(ctx.proc)  # with the host's rights: raising a limit needs them
        step("join-namespaces")
        namespaces.enter(ctx.ns_fds, ctx.root_fd)
        for _, fd in ctx.ns_fds:
            os.close(fd)
        os.close(ctx.root_fd)
        step("cgroup")
        messages.send(ctx.sock, messages.NS_JOINED, failed=failed)
        messages.expect(ctx.sock, messages.CGROUP_JOINED)
        os.setsid()
        if ctx.keyring:
            if ctx.attrs is not None:
                ctx.attrs.keyring_label()
            syscalls.join_session_keyring(f"_ses.{ctx.cid}")  # the init's, not the caller's
        proc = ctx.proc
        if proc.terminal:
            step("console")
            _console(ctx, proc)
        step("process")
        seccomp = ctx.seccomp
        if seccomp is not None:
            seccomp.notify = lambda fd: _notify(ctx, fd)
        finalize.close_host_fds(ctx.preserve_fds)  # before any filter: close_range may be denied
        proc = finalize.finalize(proc, ctx.last_cap, seccomp, ctx.attrs)  # no cwd is made
        path = finalize.look_path(proc)
        step("exec")
        messages.send(ctx.sock, messages.EXECVE)  # before the filter, which may deny it
        finalize.exec_process(path, proc, (), seccomp, ctx.attrs)
    except BaseException as e:  # noqa: BLE001 - every failure must reach the parent
        _report(ctx, e)
    finally:
        os._exit(1)


def _notify(ctx: ExecContext, fd: int) -> None:
    step("seccomp-notify")
    messages.hand_over_notify(ctx.sock, fd)


def _console(ctx: ExecContext, proc: Process) -> None:
    """A new pty from the container's devpts (we are in its root), master to the parent,
    the peer as our stdio and controlling terminal."""
    tty = ctx.tty_mod
    master, slave = tty.open_pty()
    try:
        os.fchown(slave, proc.user.uid, -1)  # ours, on the container's devpts (runc)
    except OSError:
        pass  # EPERM (uid unmapped), EROFS: the process can still use its open fds
    if proc.console_size:
        tty.set_size(slave, *proc.console_size)
    messages.send(ctx.sock, messages.CONSOLE, fds=[master])
    os.close(master)
    tty.make_controlling(slave)


def _report(ctx: ExecContext, e: BaseException) -> None:
    messages.report(ctx.sock, step.name, e)  # a closed socket: the parent is gone
