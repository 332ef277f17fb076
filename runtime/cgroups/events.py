"""`events [--stats] [--interval D] ID`: the container's stats in runc's JSON shape, once
(--stats) or every interval, and an {"type":"oom"} line whenever the OOM killer acts in it.

OOM comes from memory.oom_control through an eventfd on v1 (cgroup.event_control), and
from memory.events' oom_kill count, watched with inotify, on v2. The stream ends when the
container stops.
"""

from __future__ import annotations

import errno
import os
import select
import sys
import time

from runtime import fastjson, log, state
from runtime.errors import OnggiError, reason

_UNITS = (("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("μs", 1e-6), ("ms", 1e-3), ("s", 1.0),
          ("m", 60.0), ("h", 3600.0))


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration ("5s", "1m30s", "500ms", "1.5h") -> seconds."""
    s, total = text.strip(), 0.0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    while s:
        i = 0
        while i < len(s) and (s[i].isdigit() or s[i] == "."):
            i += 1
        if i == 0:
            raise ValueError(f"invalid duration {text!r}")
        num, s = s[:i], s[i:]
        for unit, scale in sorted(_UNITS, key=lambda u: -len(u[0])):
            if s.startswith(unit):
                total += float(num) * scale
                s = s[len(unit):]
                break
        else:
            raise ValueError(f"missing or unknown unit in duration {text!r}")
    return sign * total


def emit(kind: str, cid: str, data: dict | None = None) -> None:
    ev = {"type": kind, "id": cid}
    if data is not None:
        ev["data"] = data
    sys.stdout.write(fastjson.dumps_compact(ev) + "\n")
    sys.stdout.flush()


def cmd_events(argv: list[str], g) -> int:
    from runtime import cgroups
    from runtime.cgroups.verbs import simple
    from runtime.cli import Args, _verb_parser

    a = simple(argv, {"--stats": "stats"}, {"--interval": "interval"})
    if a is None:
        p = _verb_parser("events")
        p.add_argument("--interval", default="5s", help="set the stats collection interval "
                       "(default: 5s)")
        p.add_argument("--stats", action="store_true", help="display the container's stats "
                       "then exit")
        p.add_argument("id")
        a = vars(p.parse_args(argv))
    a = Args(**{"interval": "5s", **a})
    try:
        interval = parse_duration(a.interval)
    except ValueError as e:
        raise OnggiError(f"events: --interval: {e}") from None
    if interval <= 0:
        raise OnggiError("events: --interval: duration interval must be greater than 0")
    path, st = state.load(g.root, a.id)
    if state.status(path, st) == "stopped":
        raise OnggiError(f"container with id {a.id} is not running")
    if not st.cgroup_paths:
        raise OnggiError(f"events: container {a.id} has no cgroups")
    mgr = cgroups.from_state(st)
    if a.stats:
        emit("stats", a.id, mgr.stats())
        return 0
    stream(a.id, path, st, mgr, interval)
    return 0


def stream(cid: str, path: str, st, mgr, interval: float) -> None:
    watch = OomWatch(mgr.paths)
    try:
        due = time.monotonic() + interval
        while True:
            left = max(0.0, due - time.monotonic())
            if watch.wait(min(left, 1.0)):
                emit("oom", cid)
            if not state.alive(st) or not watch.alive():
                return
            if time.monotonic() >= due:
                try:
                    emit("stats", cid, mgr.stats())
                except OSError as e:  # a stats error is logged, not fatal (runc)
                    log.error(f"events: stats: {e}")
                due += interval
    finally:
        watch.close()


class OomWatch:
    """OOM kills in the container's memory cgroup, as readiness of one fd."""

    def __init__(self, paths: dict) -> None:
        self.fds: list[int] = []
        self.v1 = paths.get("memory")
        self.v2 = paths.get("") if self.v1 is None else None
        self.kills = 0
        try:
            if self.v1:
                self._v1(self.v1)
            elif self.v2:
                self._v2(self.v2)
        except OSError as e:
            log.warn(f"events: no OOM notifications: {reason(e)}")
            self.close()

    def _v1(self, d: str) -> None:
        efd = os.eventfd(0, os.EFD_CLOEXEC)
        self.fds.append(efd)
        ofd = os.open(f"{d}/memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        self.fds.append(ofd)
        fd = os.open(f"{d}/cgroup.event_control", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, f"{efd} {ofd}".encode())
        finally:
            os.close(fd)

    def _v2(self, d: str) -> None:
        from runtime.cgroups import inotify

        self.kills = self._oom_kills()
        ifd = inotify.init()
        self.fds.append(ifd)
        inotify.watch(ifd, f"{d}/memory.events", inotify.IN_MODIFY)

    def _oom_kills(self) -> int:
        from runtime.cgroups import files

        return files.read_keyed(self.v2, "memory.events").get("oom_kill", 0)

    def wait(self, timeout: float) -> bool:
        """True when an OOM kill happened (waits at most `timeout` seconds)."""
        if not self.fds:
            time.sleep(timeout)
            return False
        ready, _, _ = select.select([self.fds[0]], [], [], timeout)
        if not ready:
            return False
        try:
            os.read(self.fds[0], 4096)
        except OSError as e:
            if e.errno != errno.EAGAIN:
                raise
        if self.v1:
            # the eventfd also fires when the cgroup is removed
            return os.path.exists(f"{self.v1}/cgroup.event_control")
        kills = self._oom_kills()
        new, self.kills = kills > self.kills, kills
        return new

    def alive(self) -> bool:
        d = self.v1 or self.v2
        return d is None or os.path.isdir(d)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
