"""Per-layer progress: bars redrawn in place on a TTY, plain lines otherwise, or nothing."""

from __future__ import annotations

import _thread
import sys
import time


class Progress:
    def __init__(self, quiet: bool = False, stream=None) -> None:  # noqa: ANN001
        self.out = stream or sys.stderr
        self.quiet = quiet
        self.tty = not quiet and self.out.isatty()
        self.lock = _thread.allocate_lock()  # threading.Lock, without importing threading
        self.rows: dict[str, list] = {}  # key -> [label, done, total, state]
        self.drawn = 0
        self.last = 0.0

    def line(self, msg: str) -> None:
        if self.quiet:
            return
        with self.lock:
            if self.tty and self.drawn:
                self._redraw(force=True)
            self.out.write(msg + "\n")
            self.out.flush()
            self.drawn = 0 if self.tty else self.drawn

    def start(self, key: str, label: str, total: int | None) -> None:
        with self.lock:
            self.rows[key] = [label, 0, total or 0, "downloading"]
            if not self.tty and not self.quiet:
                self.out.write(f"Copying {label}\n")
                self.out.flush()
            self._redraw()

    def update(self, key: str, n: int) -> None:
        with self.lock:
            self.rows[key][1] += n
            self._redraw()

    def done(self, key: str, state: str = "done") -> None:
        with self.lock:
            row = self.rows.setdefault(key, [key, 0, 0, state])
            row[3] = state
            if not self.tty and not self.quiet:
                self.out.write(f"{row[0]}: {state}\n")
                self.out.flush()
            self._redraw(force=True)

    def _redraw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        buf = []
        if self.drawn:
            buf.append(f"\x1b[{self.drawn}A")
        for label, done, total, state in self.rows.values():
            if total:
                frac = min(1.0, done / total)
                bar = "#" * int(frac * 30)
                buf.append(f"\r\x1b[K{label[:26]:26} [{bar:30}] {_size(done)}/{_size(total)} {state}\n")
            else:
                buf.append(f"\r\x1b[K{label[:26]:26} {_size(done)} {state}\n")
        self.drawn = len(self.rows)
        self.out.write("".join(buf))
        self.out.flush()


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}"
