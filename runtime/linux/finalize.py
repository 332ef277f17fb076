"""The process setup `create` and `exec` share (runc's finalizeNamespace), from plain
arguments: rlimits, cwd, HOME, user and groups, capabilities, umask, no_new_privs and
seccomp, then the exec of the user process.

Both callers run, in this order:
  prepare(proc)               oom_score_adj and rlimits; exec does it before it joins the
                              container's user namespace (raising a limit needs the host's
                              CAP_SYS_RESOURCE), the init where it always did
  close_host_fds(n)           before any filter: close_range may be denied
  proc = finalize(proc, ...)  everything up to the exec; returns proc with HOME added
  path = look_path(proc)
  exec_process(path, proc, extra_env, seccomp, attrs)
The spec 1.2/1.3 process attributes (scheduler, I/O priority, CPU affinity, memory policy,
personality, LSM labels) come in as `attrs` (runtime.linux.execattrs, prepared by the
parent; None when the config sets none), at the places runc gives them.

Runs between fork and exec: no imports, no logging, no locks. The seccomp module and the
built filter are handed in (the parent imported pyseccomp before the fork).
"""

from __future__ import annotations

import errno
import os
import resource
import stat

from runtime.errors import strerror
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


def prepare(proc: Process) -> None:
    """What the process inherits through fork: oom_score_adj and the rlimits."""
    if proc.oom_score_adj is not None:
        procfs.write("/proc/self/oom_score_adj", str(proc.oom_score_adj))
    set_rlimits(proc)


def finalize(proc: Process, last_cap: int, seccomp: Seccomp | None = None,
             attrs=None) -> Process:
    """Everything up to the exec, in runc's order, inside the container's root; returns
    `proc` with HOME in its env. `attrs` sets the scheduler, I/O priority, final CPU
    affinity and memory policy first, while we are still root with every capability.
    `seccomp` is loaded here only without noNewPrivileges (it then needs CAP_SYS_ADMIN, so
    before the capabilities drop). A missing cwd is an error here: the init made it before
    (ensure_cwd), as runc's create does; exec does not, as runc's exec does not."""
    if attrs is not None:
        attrs.before_user()
    # First try the cwd as root: a directory root can reach but the user cannot is fine
    # (runc); on EACCES try again as the user.
    cwd_done = _chdir(proc.cwd, retry_as_user=True)
    # Read in the container (after pivot/setns) and before we drop to the user: a
    # passwd only root may read still gives the user's home.
    proc = proc.replace(env=with_home(proc.env, proc.user.uid))
    if seccomp is not None and not proc.no_new_privileges:
        seccomp.load()
    if proc.capabilities is not None:
        caps.apply_bounding(proc.capabilities, last_cap)
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 1)
    fix_stdio_permissions(proc.user.uid)
    set_user(proc)
    if not cwd_done:
        _chdir(proc.cwd, retry_as_user=False)
    verify_cwd()
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 0)
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)  # setresuid reset it to fs.suid_dumpable
    if proc.capabilities is not None:
        caps.apply_sets(proc.capabilities, last_cap)
    if proc.user.umask is not None:
        os.umask(proc.user.umask)
    if proc.no_new_privileges:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    return proc


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


def ensure_cwd(cwd: str) -> None:
    """The init's: a missing process.cwd is made in the container's root (0755, as runc's
    MkdirAll), before the root may become read-only. Any other lookup error is left to the
    chdir."""
    try:
        os.stat(cwd)
        return
    except FileNotFoundError:
        pass
    except OSError:
        return
    try:
        os.makedirs(cwd, 0o755, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"process.cwd {cwd}: {strerror(e.errno)}") from None


def _chdir(cwd: str, retry_as_user: bool) -> bool:
    """chdir to process.cwd (it resolves inside the container's root, symlinks included);
    False when it is worth another try once we are the user."""
    try:
        os.chdir(cwd)
    except PermissionError:
        if retry_as_user:
            return False
        raise OSError(13, f"process.cwd {cwd}: {strerror(13)}") from None
    except OSError as e:
        raise OSError(e.errno, f"process.cwd {cwd}: {strerror(e.errno)}") from None
    return True


def verify_cwd() -> None:
    """The cwd must lie inside our root (CVE-2024-21626): getcwd(2) fails with ENOENT
    ("(unreachable)") for a directory outside it, such as one a leaked fd pointed to."""
    try:
        where = os.getcwd()
    except FileNotFoundError:
        raise RuntimeError("process.cwd: the working directory is outside the container's "
                           "root (possible container breakout)") from None
    if not where.startswith("/"):
        raise RuntimeError(f"process.cwd: the working directory {where!r} is not absolute "
                           "(possible container breakout)")


_PASSWD_MAX = 4 << 20


def with_home(env: tuple[str, ...], uid: int) -> tuple[str, ...]:
    """runc: without HOME in the env (or with an empty one), HOME is the uid's home in the
    container's /etc/passwd, or "/" when it has none."""
    last = next((e for e in reversed(env) if e.startswith("HOME=")), None)
    if last is not None and last != "HOME=":
        return env
    return tuple(e for e in env if e != "HOME=") + ("HOME=" + passwd_home(uid),)


def passwd_home(uid: int) -> str:
    """The home field of `uid`'s first line in /etc/passwd (as it is in our root); "/"
    when there is none. The file is the container's: it may be anything, so no blocking
    open (a FIFO), nothing but a regular file, and only so much of it."""
    try:
        fd = os.open("/etc/passwd", os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return "/"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "/"
        data = b""
        while len(data) < _PASSWD_MAX and (chunk := os.read(fd, 65536)):
            data += chunk
    except OSError:
        return "/"
    finally:
        os.close(fd)
    want = str(uid).encode()
    for line in data.split(b"\n"):
        f = line.split(b":")
        if len(f) >= 6 and f[2] == want:
            home = f[5].decode("utf-8", "replace")
            return home or "/"
    return "/"


def _handed_over(st: os.stat_result) -> bool:
    """Stdio runc hands to the user (so it can reopen /dev/stdout or its tty): pipes,
    sockets and ptys. Never a host file or device: a caller that passes a regular file, or
    /dev/null, keeps its owner."""
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        return True
    return stat.S_ISCHR(st.st_mode) and 136 <= os.major(st.st_rdev) <= 143  # pty slaves


def fix_stdio_permissions(uid: int) -> None:
    """Hand stdio to the process's user, as runc's setupUser does: the owner only (the
    group stays, e.g. devpts' gid=5 tty group). Refusals (a read-only or foreign file)
    are ignored, as in runc."""
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if st.st_uid == uid or not _handed_over(st):
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
