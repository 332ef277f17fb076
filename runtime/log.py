"""runc-style log lines (logrus text or json) to --log, without the logging module (no locks).

As in runc, the file is opened once, before the verb runs: a --log that cannot be opened is
an error of its own. Without --log, debug lines go to stderr (errors are written there by
the CLI itself, as one line).
"""

from __future__ import annotations

import os
import sys
import time

from runtime.errors import OnggiError, reason

_fd = -1
_json = False
_debug = False
_t0 = time.monotonic()


def setup(path: str | None, fmt: str, debug: bool) -> None:
    """Check --log-format, open --log (append, created 0644), as runc's configLogrus does."""
    global _fd, _json, _debug
    if fmt not in ("text", "json"):
        raise OnggiError(f"invalid log-format: {fmt}")
    _json, _debug = fmt == "json", debug
    if path:
        try:
            _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise OnggiError(f"open {path}: {reason(e)}") from None


def enabled() -> bool:
    """Whether debug lines are written: callers skip building costly messages otherwise."""
    return _debug


def _stamp() -> str:
    """RFC 3339 in seconds and the local zone, as logrus writes its time field."""
    t = time.localtime()
    zone = time.strftime("%z", t)
    zone = "Z" if zone in ("+0000", "-0000", "") else f"{zone[:3]}:{zone[3:]}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + zone


def _plain(value: str) -> bool:
    return value != "" and all(c.isascii() and (c.isalnum() or c in "-._/@^+") for c in value)


def _quote(value: str) -> str:
    """logrus quotes a value (Go's %q) unless it is made of plain characters only."""
    if _plain(value):
        return value
    out = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + out.replace("\r", "\\r").replace("\t", "\\t") + '"'


def _line(level: str, msg: str, fields: dict) -> str:
    if _json:
        from runtime import fastjson

        doc = {"level": level, "msg": msg, "time": _stamp(), **fields}
        return fastjson.dumps_go({k: doc[k] for k in sorted(doc)}) + "\n"
    quoted = msg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")  # as logrus
    extra = "".join(f" {k}={_quote(str(v))}" for k, v in sorted(fields.items()))
    return f'time="{_stamp()}" level={level} msg="{quoted}"{extra}\n'


def write(level: str, msg: str, **fields: object) -> None:
    if level == "debug" and not _debug:
        return
    if _fd >= 0:
        os.write(_fd, _line(level, msg, fields).encode())
    elif level == "debug":
        sys.stderr.write(_line(level, msg, fields))
        sys.stderr.flush()


def error(msg: str) -> None:
    write("error", msg)


def warn(msg: str) -> None:
    write("warning", msg)


def debug(msg: str, **fields: object) -> None:
    write("debug", msg, **fields)


class Steps:
    """Debug lines for the steps of a verb: each with its own time and the time since the
    verb began (`step=NAME elapsed=…ms total=…ms`). Costs nothing without --debug."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.last = self.start = time.monotonic()

    def step(self, name: str, **fields: object) -> None:
        if not _debug:
            return
        now = time.monotonic()
        write("debug", f"{self.verb}: {name}", step=name, **fields,
              elapsed=f"{(now - self.last) * 1000:.1f}ms", total=f"{(now - self.start) * 1000:.1f}ms")
        self.last = now
