"""runc-style log lines (text or json) to --log, without the logging module (no locks)."""

from __future__ import annotations

import os
import sys
import time

_path: str | None = None
_json = False
_debug = False


def setup(path: str | None, fmt: str, debug: bool) -> None:
    global _path, _json, _debug
    _path, _json, _debug = path, fmt == "json", debug


def _stamp() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _line(level: str, msg: str) -> str:
    if _json:
        import json

        return json.dumps({"level": level, "msg": msg, "time": _stamp()}) + "\n"
    quoted = msg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")  # as logrus
    return f'time="{_stamp()}" level={level} msg="{quoted}"\n'


def write(level: str, msg: str) -> None:
    if level == "debug" and not _debug:
        return
    if _path:
        fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, _line(level, msg).encode())
        finally:
            os.close(fd)
    elif level == "debug":
        sys.stderr.write(_line(level, msg))


def error(msg: str) -> None:
    write("error", msg)


def warn(msg: str) -> None:
    write("warning", msg)


def debug(msg: str) -> None:
    write("debug", msg)
