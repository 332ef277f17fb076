"""Typed errors: each one renders as a single line for the user."""

from __future__ import annotations

import os


class OnggiError(Exception):
    """An error the user caused or can act on; shown as one line, exit status `code`."""

    code = 1

    def __init__(self, msg: str, *, code: int | None = None) -> None:
        super().__init__(msg)
        if code is not None:
            self.code = code


class ConfigError(OnggiError):
    """config.json (or a process.json) breaks the spec: names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"config: {field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(OnggiError):
    """The container does not exist (podman matches this text)."""

    def __init__(self, cid: str) -> None:
        super().__init__(f"container {cid} does not exist")


class Broken(OnggiError):
    """The container's state.json is missing its end or makes no sense (a crash, a full
    disk): the verbs say so in one line; `delete --force` still removes what it left."""


def strerror(err: int) -> str:
    """An errno's text as runc (Go) writes it: in lower case."""
    return os.strerror(err).lower()


def reason(e: OSError) -> str:
    """An OSError's text with only the errno's own words in lower case (runc's); whatever
    else the message says (an op, a path, a field name) stays as it was written."""
    msg = e.strerror or str(e)
    if not e.errno:
        return msg
    std = os.strerror(e.errno)
    return msg.replace(std, std.lower())
