"""/proc/<pid>/mountinfo, parsed in one place (proc(5))."""

from __future__ import annotations

from runtime.record import Record


class Mount(Record):
    id: int
    parent: int
    dev: str
    root: str  # the root of the mount within its filesystem
    point: str  # the mount point
    opts: str  # per-mount options
    optional: tuple[str, ...]  # shared:N, master:N, ...
    fstype: str
    source: str
    super: str  # superblock options


def unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")


def read(pid: int | str = "self", fstypes: tuple[str, ...] = ()) -> list[Mount]:
    """Every mount, or those of `fstypes` (the others are skipped before any parsing: a
    host's table can be long, and `create` reads it)."""
    out = []
    marks = tuple(f" - {t} " for t in fstypes)
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            if marks and not any(m in line for m in marks):
                continue
            left, _, right = line.rstrip("\n").partition(" - ")
            a = left.split(" ")
            b = right.split(" ")
            out.append(Mount(int(a[0]), int(a[1]), a[2], unescape(a[3]), unescape(a[4]), a[5],
                             tuple(a[6:]), b[0], unescape(b[1]), b[2] if len(b) > 2 else ""))
    return out


def points(pid: int | str = "self") -> set[str]:
    """Every mount point, unescaped."""
    return {m.point for m in read(pid)}
