"""The process setup `create` and `exec` share (runc's finalizeNamespace), from plain
arguments: rlimits, cwd, user and groups, capabilities, umask, no_new_privs and seccomp,
then the exec of the user process.

Runs between fork and exec: no imports, no logging, no locks. The seccomp module and the
built filter are handed in (the parent imported pyseccomp before the fork).
"""

from __future__ import annotations

import errno
import os
import resource
import stat

from runtime.linux import caps, process, procfs, syscalls
from runtime.spec import Process


class Seccomp:
    """The container's filter, built before fork from runtime.linux.seccomp's plan.
    `notify(fd)` takes the listener fd of a filter with SCMP_ACT_NOTIFY rules right after
    the load (it hands it to the parent, for the seccomp agent); it is closed here after."""

    def __init__(self, module, filt, notify=None) -> None:
        self.module = module
        self.filt = filt
        self.notify = notify
        self.loaded = False

    def load(self) -> None:
        fd = self.module.load(self.filt)
        self.loaded = True
        if fd is not None:
            try:
                if self.notify is not None:
                    self.notify(fd)
            finally:
                os.close(fd)


def close_host_fds(preserve_fds: int) -> None:
    """Only stdio and the preserved fds survive execve; nothing of the host leaks in."""
    first = 3 + preserve_fds
    for fd in range(3, first):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    syscalls.close_range(first, 0xFFFFFFFF, syscalls.CLOSE_RANGE_CLOEXEC)


def finalize(proc: Process, last_cap: int, seccomp: Seccomp | None = None,
             attrs=None) -> None:
    """Everything up to the exec, in runc's order; `seccomp` is loaded here only without
    noNewPrivileges (it then needs CAP_SYS_ADMIN, so before the capabilities drop).
    `attrs` (runtime.linux.execattrs.prepare's, None when the config has none) sets the
    scheduler, I/O priority, final CPU affinity and memory policy first, while we are
    still root with every capability."""
    if attrs is not None:
        attrs.before_user()
    if proc.oom_score_adj is not None:
        procfs.write("/proc/self/oom_score_adj", str(proc.oom_score_adj))
    set_rlimits(proc)
    # First try the cwd as root: a directory root can reach but the user cannot is fine
    # (runc); on EACCES try again as the user.
    cwd_done = _chdir(proc.cwd, retry_as_user=True)
    if seccomp is not None and not proc.no_new_privileges:
        seccomp.load()
    if proc.capabilities is not None:
        caps.apply_bounding(proc.capabilities, last_cap)
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 1)
    fix_stdio_permissions(proc.user.uid)
    set_user(proc)
    if not cwd_done:
        _chdir(proc.cwd, retry_as_user=False)
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 0)
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)  # setresuid reset it to fs.suid_dumpable
    if proc.capabilities is not None:
        caps.apply_sets(proc.capabilities, last_cap)
    if proc.user.umask is not None:
        os.umask(proc.user.umask)
    if proc.no_new_privileges:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)


def exec_process(path: str, proc: Process, extra_env: tuple[str, ...] = (),
                 seccomp: Seccomp | None = None, attrs=None) -> None:
    """Signals back to their defaults, personality and the LSM labels (`attrs`), the filter
    last (with noNewPrivileges: no syscall of ours may meet the container's filter), then
    execve. Returns only by raising."""
    process.reset_signals()
    args, env = list(proc.args), list(proc.env) + list(extra_env)
    if attrs is not None:
        attrs.before_exec()
    if seccomp is not None and not seccomp.loaded:
        seccomp.load()
    syscalls.execve(path, args, env)


def set_rlimits(proc: Process) -> None:
    for r in proc.rlimits:
        try:
            resource.setrlimit(r.resource, (_rlim(r.soft), _rlim(r.hard)))
        except (OSError, ValueError) as e:
            if isinstance(e, ValueError):
                raise RuntimeError(f"setting rlimit {r.name}: {e}") from None
            raise OSError(e.errno, f"setting rlimit {r.name}: {os.strerror(e.errno)}") from None


def _rlim(v: int) -> int:
    return resource.RLIM_INFINITY if v >= 2**63 else v


def _chdir(cwd: str, retry_as_user: bool) -> bool:
    """chdir to process.cwd (it resolves inside the container's root, symlinks included);
    False when it is worth another try once we are the user."""
    try:
        os.chdir(cwd)
    except FileNotFoundError:
        os.makedirs(cwd, 0o755, exist_ok=True)
        os.chdir(cwd)
    except PermissionError:
        if retry_as_user:
            return False
        raise OSError(13, f"process.cwd {cwd}: {os.strerror(13)}") from None
    except OSError as e:
        raise OSError(e.errno, f"process.cwd {cwd}: {os.strerror(e.errno)}") from None
    return True


_DEV_NULL = os.makedev(1, 3)


def fix_stdio_permissions(uid: int) -> None:
    """Hand stdio (the console, pipes) to the process's user, as runc's setupUser does, so
    it can reopen /dev/stdout or its tty: the owner only (the group stays, e.g. devpts'
    gid=5 tty group), and never /dev/null. Refusals (a read-only or foreign file) are
    ignored, as in runc."""
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if st.st_uid == uid or (stat.S_ISCHR(st.st_mode) and st.st_rdev == _DEV_NULL):
            continue
        try:
            os.fchown(fd, uid, -1)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EPERM, errno.EROFS):
                raise OSError(e.errno, f"chown stdio fd {fd}: {os.strerror(e.errno)}") \
                    from None


def set_user(proc: Process) -> None:
    u = proc.user
    try:
        os.setgroups(list(u.additional_gids))
    except PermissionError:
        if u.additional_gids:
            raise  # setgroups is denied in this user namespace
    os.setresgid(u.gid, u.gid, u.gid)
    os.setresuid(u.uid, u.uid, u.uid)


def look_path(proc: Process) -> str:
    """args[0] as execve will see it, with the process's PATH, like Go's exec.LookPath."""
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
