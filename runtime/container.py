"""The parent side of each lifecycle verb after create: start, state, kill, delete, list, ps.

This is the hot path (engines call it for every container event), so it imports only the
state store and the standard library's cheapest modules.
"""

from __future__ import annotations

# _signal, not signal: the latter builds IntEnums (enum costs ~6 ms) we don't need here.
import _signal as signal
import os
import select

from runtime import state
from runtime.errors import NotFound, OnggiError

LIVE = ("created", "running", "paused")


def parse_signal(text: str) -> int:
    """TERM, SIGTERM or 15 (runc accepts all three); 0 only checks the init exists, as with kill(2)."""
    if text.isdigit():
        num = int(text)
        if 0 <= num < signal.NSIG:
            return num
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        sig = getattr(signal, name, None) if "_" not in name else None
        if isinstance(sig, int):
            return sig
        if name.startswith("SIGRTMIN+") or name.startswith("SIGRTMAX-"):
            base, _, off = name[3:].partition("+" if "+" in name else "-")
            if off.isdigit():
                num = signal.SIGRTMIN + int(off) if base == "RTMIN" else signal.SIGRTMAX - int(off)
                if signal.SIGRTMIN <= num <= signal.SIGRTMAX:
                    return num
    raise OnggiError(f"invalid signal {text!r}")


def start(root: str, cid: str) -> state.State:
    path, st = state.load(root, cid)
    with state.Lock(path):
        status = state.status(path, st)
        if status != "created":
            raise OnggiError(f"cannot start a container in the {status} state (want created)")
        fifo = os.path.join(path, state.EXEC_FIFO)
        _release(fifo, st)
        os.unlink(fifo)
        if st.hooks.get("poststart"):  # only then: the hot path imports nothing more
            from runtime import hooks

            hooks.warn_all("poststart", st.hooks["poststart"],
                           hooks.state_json(st.oci("running"), "running", st.pid))
    return st


def _release(fifo: str, st: state.State) -> None:
    """Open the exec fifo: the init unblocks, writes one byte, and execs the user process.
    The pidfd comes first: once the fifo is open, a user process like `true` may exit and
    be reaped by the engine's subreaper before we could look the pid up."""
    try:
        pidfd = os.pidfd_open(st.pid)
    except ProcessLookupError:
        raise OnggiError("cannot start: the container init has exited") from None
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        while True:
            ready = dict(poller.poll(10_000))
            if fd in ready and (data := os.read(fd, 1)):
                if data == b"0":
                    return
            if pidfd in ready or not ready:
                raise OnggiError("cannot start: the container init exited or does not answer")
    finally:
        os.close(fd)
        os.close(pidfd)


def query(root: str, cid: str) -> dict:
    path, st = state.load(root, cid)
    return st.oci(state.status(path, st))


def kill(root: str, cid: str, sig: int, all_procs: bool = False) -> None:
    path, st = state.load(root, cid)
    status = state.status(path, st)
    if status not in LIVE:
        raise OnggiError(f"container {cid} is not running (it is {status})")
    pids = container_pids(st) if all_procs else [st.pid]
    for pid in pids:
        _signal(pid, sig, st if pid == st.pid else None)


def _signal(pid: int, sig: int, st: state.State | None) -> None:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        # The pidfd pins the process: check it is still ours, then signal exactly it.
        if st is not None and state.proc_start_time(pid) != st.start_time:
            return
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


def container_pids(st: state.State) -> list[int]:
    """Every process of the container: its pid namespace, else the init and its descendants."""
    if not state.alive(st):
        return []
    procs = _all_procs()
    if st.pid_ns:
        try:
            ns = os.readlink(f"/proc/{st.pid}/ns/pid")
        except OSError:
            return []
        return [p for p in procs if _readlink(f"/proc/{p}/ns/pid") == ns]
    children: dict[int, list[int]] = {}
    for p, ppid in procs.items():
        children.setdefault(ppid, []).append(p)
    out, todo = [], [st.pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return sorted(out)


def _all_procs() -> dict[int, int]:
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    data = f.read()
                procs[int(name)] = int(data[data.rindex(b")") + 2 :].split()[1])
            except (OSError, ValueError):
                continue
    return procs


def _readlink(p: str) -> str | None:
    try:
        return os.readlink(p)
    except OSError:
        return None


def delete(root: str, cid: str, force: bool = False) -> None:
    try:
        path, st = state.load(root, cid)
    except NotFound:
        if force:
            _remove_stale(root, cid)
            return  # engines always send a final delete --force (runc exits 0 too)
        raise
    with state.Lock(path):
        status = state.status(path, st)
        if status in LIVE:
            if not force:
                raise OnggiError(f"cannot delete container {cid} that is not stopped: {status}")
            for pid in container_pids(st):
                _signal(pid, signal.SIGKILL, st if pid == st.pid else None)
            _wait_gone(st)
        if st.hooks.get("poststop"):
            from runtime import hooks

            hooks.warn_all("poststop", st.hooks["poststop"],
                           hooks.state_json(st.oci("stopped"), "stopped", 0))
        _remove_dir(path)


def _remove_stale(root: str, cid: str) -> None:
    """A dir without state.json whose lock is free was left by a killed `create`."""
    path = state.container_dir(root, cid)
    try:
        lock = state.Lock(path, wait=False)
    except (FileNotFoundError, NotADirectoryError, BlockingIOError):
        return  # nothing there, or a create is still under way
    try:
        if not os.path.exists(os.path.join(path, state.STATE_FILE)):
            _remove_dir(path)
    finally:
        lock.release()


def _remove_dir(path: str) -> None:
    """The state dir holds only flat files: no need for shutil's import cost here."""
    for name in os.listdir(path):
        os.unlink(os.path.join(path, name))
    os.rmdir(path)


def _wait_gone(st: state.State, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while state.alive(st):
        if time.monotonic() > deadline:
            raise OnggiError(f"container {st.id}: init {st.pid} did not die after SIGKILL")
        time.sleep(0.005)


def list_states(root: str) -> list[dict]:
    out = []
    for cid in state.list_ids(root):
        try:
            out.append(query(root, cid))
        except OnggiError:
            continue
    return out


def format_table(rows: list[list[str]]) -> str:
    """Go's tabwriter(minwidth=12, padding=3), as runc's `list` prints."""
    widths = [max(12, *(len(r[i]) + 3 for r in rows)) for i in range(len(rows[0]))]
    return "".join(
        "".join(c.ljust(w) if i < len(r) - 1 else c for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        + "\n"
        for r in rows
    )
