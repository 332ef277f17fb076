"""The parent side of each lifecycle verb after create: start, state, kill, delete, list, ps.

This is the hot path (engines call it for every container event), so it imports only the
state store and the standard library's cheapest modules.
"""

from __future__ import annotations

# _signal, not signal: the latter builds IntEnums (enum costs ~6 ms) we don't need here.
import _signal as signal
import os
import select

from runtime import fastjson, faults, log, state
from runtime.errors import Broken, NotFound, OnggiError
from runtime.linux import pids

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
    raise OnggiError(f'unknown signal "{text}"')  # runc's words


# runc's words for a start in the wrong state
_START_ERRORS = {"stopped": "cannot start a container that has stopped",
                 "running": "cannot start an already running container"}


def start(root: str, cid: str) -> state.State:
    steps = log.Steps("start")
    path, st = state.load(root, cid)
    with state.Lock(path):
        status = state.status(path, st)
        if status != "created":
            raise OnggiError(_START_ERRORS.get(status,
                                               f"cannot start a container in the {status} state"))
        _release(os.path.join(path, state.EXEC_FIFO), st)
        steps.step("released the exec fifo", pid=st.pid)
        if st.hooks.get("poststart"):  # only then: the hot path imports nothing more
            from runtime import hooks

            hooks.warn_all("poststart", st.hooks["poststart"],
                           hooks.state_json(st.oci("running"), "running", st.pid))
            steps.step("poststart hooks")
    return st


def _release(fifo: str, st: state.State) -> None:
    """Open the exec fifo: the init unblocks and writes one byte, runs the startContainer
    hooks and execs the user process, which closes its end of the fifo (close-on-exec).
    We return at that close, so poststart runs after the user process started (runtime.md).

    The init is pinned with a pidfd *before* the fifo is opened: from that open on, the user
    process may run, exit and be reaped at once (/bin/true), and its pid be reused."""
    if (pidfd := pids.pin(st.pid)) is None:
        raise OnggiError("cannot start: the container init has exited")
    fd = -1
    try:
        if state.proc_start_time(st.pid) != st.start_time:  # pinned now: still ours?
            raise OnggiError("cannot start: the container init has exited")
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        faults.point("start:released")
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        released = False
        while True:
            # until the byte: 10 s; then as long as the startContainer hooks take
            ready = dict(poller.poll(-1 if released else 10_000))
            if fd in ready:
                try:
                    data = os.read(fd, 1)
                except BlockingIOError:
                    data = None
                if data == b"0" and not released:
                    released = True
                    os.unlink(fifo)  # only now: the init may not have opened it before
                elif data == b"" and released:
                    return  # the init's end is closed: it exec'd (or exited)
            if pidfd in ready and released:
                return  # the init is gone after the release: its process ran (or failed)
            if pidfd in ready or not ready:
                raise OnggiError("cannot start: the container init exited or does not answer")
    finally:
        if fd >= 0:
            os.close(fd)
        os.close(pidfd)


def query(root: str, cid: str) -> dict:
    path, st = state.load(root, cid)
    return st.oci(state.status(path, st))


def state_text(root: str, cid: str) -> str:
    """What `state` prints, byte for byte runc's: json.MarshalIndent with two spaces, Go's
    escaping, map keys sorted, no newline at the end."""
    doc = query(root, cid)
    if "annotations" in doc:
        doc["annotations"] = dict(sorted(doc["annotations"].items()))
    return fastjson.dumps_go(doc, indent=2)


def kill(root: str, cid: str, sig: int, all_procs: bool = False) -> None:
    steps = log.Steps("kill")
    path, st = state.load(root, cid)
    status = state.status(path, st)
    if status not in LIVE and not all_procs:
        # runc's exact words: containerd's shim matches "container not running" to learn
        # that the container has exited already (anything else: "unknown error after kill")
        raise OnggiError("container not running")
    # --all on a stopped container signals what is left of it (in its cgroup, or its pid
    # namespace), if anything, and succeeds
    if st.cgroup_paths and _through_cgroup(st, sig, all_procs, status):
        steps.step("signalled through the cgroup", signal=sig, status=status)
        return
    pids = container_pids(st) if all_procs else [st.pid]
    for pid in pids:
        _signal(pid, sig, st if pid == st.pid else None)
    steps.step("signalled", signal=sig, pids=len(pids), status=status)


def _through_cgroup(st: state.State, sig: int, all_procs: bool, status: str) -> bool:
    """--all, and SIGKILL of a container without its own pid namespace (whose processes
    the init's death would not take along), reach every process of the cgroup. SIGKILL of a
    paused init also thaws it: a frozen task cannot die (runc)."""
    if all_procs or (sig == signal.SIGKILL and not st.pid_ns):
        from runtime import cgroups

        cgroups.from_state(st).kill_all(sig)
        return True
    if status == "paused" and sig == signal.SIGKILL:
        from runtime import cgroups

        _signal(st.pid, sig, st)
        cgroups.from_state(st).thaw()
        return True
    return False


def _signal(pid: int, sig: int, st: state.State | None) -> None:
    """Signal pid, if it is still st's init (same start time); any pid when st is None."""
    pids.send(pid, sig, st.start_time if st is not None else None)


def container_pids(st: state.State) -> list[int]:
    """Every process of the container: its pid namespace, else the init and its descendants."""
    if not state.alive(st):
        return []
    procs = pids.all_ppids()
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


def _readlink(p: str) -> str | None:
    try:
        return os.readlink(p)
    except OSError:
        return None


def delete(root: str, cid: str, force: bool = False) -> None:
    steps = log.Steps("delete")
    try:
        path, st = state.load(root, cid)
    except NotFound:
        if force:  # engines always send a final delete --force (runc exits 0 too)
            from runtime import reclaim

            reclaim.remove(root, cid)
            return
        raise
    except Broken:
        if not force:
            raise
        from runtime import reclaim

        reclaim.remove(root, cid)
        return
    with state.Lock(path):
        status = state.status(path, st)
        if status in LIVE:
            # runc deletes a created container without --force; the spec says deleting a
            # container that is not stopped MUST fail, and the conformance suite checks it
            if not force:
                raise OnggiError(f"cannot delete container {cid} that is not stopped: {status}")
            if st.cgroup_paths:
                _through_cgroup(st, signal.SIGKILL, True, status)
            else:
                for pid in container_pids(st):
                    _signal(pid, signal.SIGKILL, st if pid == st.pid else None)
        if force:
            _kill_unrecorded(path, st)
        faults.point("delete:killed")
        wait_gone(st)
        steps.step("killed", status=status)
        if st.host_mounts or st.net_devices or st.intel_rdt:  # only then: imports
            from runtime import hostres

            hostres.release_for_delete(st, force)
        if st.cgroup_paths:  # only then: delete pays for cgroups when there are some
            _remove_cgroups(st)
        if st.hooks.get("poststop"):
            from runtime import hooks

            hooks.warn_all("poststop", st.hooks["poststop"],
                           hooks.state_json(st.oci("stopped"), "stopped", 0))
            steps.step("poststop hooks")
        faults.point("delete:removing")
        state.remove_dir(path)
        steps.step("removed the state")


def _remove_cgroups(st: state.State) -> None:
    """After the init: a container without its own pid namespace may have left processes
    in its cgroup (runc kills them too), then the cgroups go."""
    from runtime import cgroups

    mgr = cgroups.from_state(st)
    if not st.pid_ns and mgr.pids():
        mgr.kill_all(signal.SIGKILL)
    mgr.destroy()


def _kill_unrecorded(path: str, st: state.State) -> None:
    """What the second record names and state.json does not (a stage 1 still alive, an init
    state.json lost track of): killed too. runtime.reclaim is imported only then."""
    found = state.load_record(path, st.id)
    if found is None:
        return
    init, stage1 = found
    other = (init.pid, init.start_time) != (st.pid, st.start_time)
    if state.alive(stage1) or other and state.alive(init):
        from runtime import reclaim

        reclaim.kill_recorded(init, stage1)


def wait_gone(st: state.State, timeout: float = 10.0) -> None:
    """Until st's init has exited (the rest of its pid namespace goes with it)."""
    if not pids.wait_gone(st.pid, st.start_time, timeout):
        raise OnggiError(f"container {st.id}: init {st.pid} did not die after SIGKILL")


def list_states(root: str, warn=None) -> list[dict]:
    """The state of each container; `warn(line)` hears of each broken one, which is left
    out (runc prints "load container ID: ..." to stderr too)."""
    out = []
    for cid in state.list_ids(root):
        try:
            out.append(query(root, cid))
        except Broken as e:
            if warn:
                warn(str(e))
        except NotFound:
            if warn and state.unfinished(state.container_dir(root, cid)):
                warn(f"container {cid}: its create did not finish (delete --force removes it)")
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


def owner(root: str, cid: str) -> str:
    """The user owning the container's state dir, by name (runc's `list` OWNER): from the
    host's passwd, else "#UID"."""
    try:
        uid = os.stat(state.container_dir(root, cid)).st_uid
    except OSError:
        return ""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"
