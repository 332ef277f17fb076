"""POSIX-platform hooks (config.md "POSIX-platform Hooks", runtime.md "Lifecycle").

createContainer and startContainer run in the container init, between fork and exec: so
nothing here imports after module load, logs or takes a lock, and a hook is started with
fork + execve, never subprocess. The parent-side hooks use the same helper.

Where each kind runs, and the state it is given on stdin (runc's choices):
  prestart, createRuntime  the parent of create, once the init has done the mounts and
                           waits before pivot_root; pid = the init's host pid. Status
                           "creating" for createRuntime (runc's); "created" for prestart,
                           which the conformance suite (hooks_stdin) checks for
  createContainer          the init, after the mounts, before pivot_root: "creating",
                           pid = the init's own pid (as it sees it: 1 in a new pid ns); its
                           cwd is the rootfs (runc's), so relative paths reach the container
  startContainer           the init, after start released the exec fifo, before execve:
                           "created", pid = the init's own pid; under the container's seccomp
                           filter, user and capabilities, as in runc
  poststart                the parent of start, after the release: "running"
  poststop                 delete, once the container is stopped: "stopped", pid 0

A hook without `env` runs with the runtime's environment (the parent's hooks) or the
container process's (createContainer, startContainer), as in runc; `"env": []` is empty.
"""

from __future__ import annotations

import _signal as signal
import os
import select
import time

from runtime import fastjson
from runtime.errors import OnggiError
from runtime.linux import process, syscalls

PARENT_CREATE = ("prestart", "createRuntime")  # in the spec's order (runtime.md, 3 and 4)
CREATE_STATUS = {"prestart": "created", "createRuntime": "creating"}  # see above
_OUTPUT_MAX = 4096


def state_json(base: dict, status: str, pid: int) -> bytes:
    """The state object of runtime.md, from State.oci() with status and pid set."""
    return fastjson.dumps({**base, "status": status, "pid": pid}).encode()


def run_all(kind: str, hooks, state: bytes, default_env: list[str] | None = None) -> None:
    """Each hook in order; the first failure raises (the lifecycle decides what it means)."""
    for i, hook in enumerate(hooks or ()):
        run(hook, state, f"hooks.{kind}[{i}]", default_env)


def warn_all(kind: str, hooks, state: bytes) -> None:
    """poststart/poststop: a failure is a warning and the next hook still runs."""
    from runtime import log

    for i, hook in enumerate(hooks or ()):
        try:
            run(hook, state, f"hooks.{kind}[{i}]")
        except (OnggiError, OSError) as e:  # OSError: no pipe or fork to be had
            log.warn(str(e) if isinstance(e, OnggiError) else f"hooks.{kind}[{i}]: {e}")


def run(hook, state: bytes, where: str, default_env: list[str] | None = None) -> None:
    """Run one hook (a spec.Hook, or its dict form from state.json) with `state` on stdin.
    A hook without `env` (not an empty one) gets `default_env`, else the runtime's own
    environment, as runc runs it (Go's exec.Cmd with a nil Env)."""
    if isinstance(hook, dict):
        path, args, env, timeout = (hook["path"], hook.get("args") or (), hook.get("env"),
                                    hook.get("timeout"))
    else:
        path, args, env, timeout = hook.path, hook.args, hook.env, hook.timeout
    argv = list(args) or [path]
    if env is not None:
        envp = list(env)
    elif default_env is not None:
        envp = list(default_env)
    else:
        envp = [f"{k}={v}" for k, v in os.environ.items()]
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        pid = process.fork(lambda: _child(path, argv, envp, in_r, out_w))
    except BaseException:
        for fd in (in_r, in_w, out_r, out_w):
            os.close(fd)
        raise
    os.close(in_r)
    os.close(out_w)
    try:
        os.setpgid(pid, pid)  # the child does it too: whichever runs first
    except OSError:
        pass
    try:
        status, output = _wait(pid, in_w, out_r, state, timeout)
    finally:
        os.close(out_r)
    if status is None:
        raise OnggiError(f"{where}: {path} timed out after {timeout} s")
    if status == 0:
        return
    why = (f"exited with status {status}" if status > 0
           else f"was killed by signal {-status}")
    lines = [ln.strip() for ln in output.decode("utf-8", "replace").splitlines() if ln.strip()]
    tail = f": {lines[-1][:300]}" if lines else ""
    raise OnggiError(f"{where}: {path} {why}{tail}")


def _child(path: str, argv: list[str], envp: list[str], stdin: int, out: int) -> None:
    code = 127
    try:
        os.setpgid(0, 0)  # its own group: a timeout kills what it forked too
        os.dup2(stdin, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        # Only stdio reaches the hook: every other fd is close-on-exec.
        try:
            syscalls.close_range(3, 0xFFFFFFFF, syscalls.CLOSE_RANGE_CLOEXEC)
        except OSError:
            pass  # a seccomp filter may refuse it; the init has marked its own fds already
        process.reset_signals()
        syscalls.execve(path, argv, envp)
    except BaseException as e:  # noqa: BLE001 - the parent reads this line from the output
        msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        try:
            os.write(2, f"{msg}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def _wait(pid: int, in_w: int, out_r: int, data: bytes, timeout) -> tuple[int | None, bytes]:
    """Feed stdin, collect output, reap. (exit code or -signal, output); None on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(out_r, select.POLLIN)
    os.set_blocking(out_r, False)
    os.set_blocking(in_w, False)
    poller.register(in_w, select.POLLOUT)
    output = b""
    try:
        while True:
            wait_ms = -1
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    _kill(pid)
                    os.waitpid(pid, 0)
                    return None, output
                wait_ms = int(left * 1000) + 1
            exited = False
            for fd, _ev in poller.poll(wait_ms):
                if fd == in_w:
                    try:
                        data = data[os.write(in_w, data):]
                    except BlockingIOError:
                        continue
                    except OSError:  # EPIPE: the hook does not read its stdin
                        data = b""
                    if not data:
                        poller.unregister(in_w)
                        os.close(in_w)
                        in_w = -1
                elif fd == out_r:
                    output = _read(out_r, output, poller)
                elif fd == pidfd:
                    exited = True
            if exited:
                output = _read(out_r, output, None)  # what it wrote before exiting
                _, status = os.waitpid(pid, 0)
                return os.waitstatus_to_exitcode(status), output
    finally:
        os.close(pidfd)
        if in_w >= 0:
            os.close(in_w)


def _read(fd: int, output: bytes, poller) -> bytes:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, InterruptedError):
            return output
        if not chunk:  # EOF: nobody holds the write end any more
            if poller is not None:
                poller.unregister(fd)
            return output
        output = (output + chunk)[-_OUTPUT_MAX:]


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
