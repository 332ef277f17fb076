"""linux.resources.devices: the rule list, written to v1's devices.allow/deny in the
config's order, or normalised for v2's eBPF program (bpf.py).

The list is the config's rules in order, then the devices runc always allows (a container
needs /dev/null and friends). The kernel's v1 list keeps exceptions in the order they were
written, and runtime-tools checks that order; runc 1.1.5 writes a minimal, sorted transition
instead and fails that test. crun writes them in order, as we do.
"""

from __future__ import annotations

from runtime.cgroups import files
from runtime.cgroups.files import CgroupError
from runtime.record import Record

WILD = -1


class Rule(Record):
    allow: bool
    type: str  # "a", "b" or "c"
    major: int = WILD
    minor: int = WILD
    access: str = "rwm"
    where: str = ""  # the config field it came from, for errors

    def text(self) -> str:
        """The v1 devices.allow/deny line."""
        if self.type == "a":
            return "a"
        maj = "*" if self.major == WILD else str(self.major)
        mnr = "*" if self.minor == WILD else str(self.minor)
        return f"{self.type} {maj}:{mnr} {self.access}"


def _default(t: str, major: int, minor: int, access: str = "rwm") -> Rule:
    return Rule(True, t, major, minor, access, "(default devices)")


# runc's AllowedDevices, in its order (specconv.go).
DEFAULTS = (
    _default("c", WILD, WILD, "m"),
    _default("b", WILD, WILD, "m"),
    _default("c", 1, 3),  # /dev/null
    _default("c", 1, 8),  # /dev/random
    _default("c", 1, 7),  # /dev/full
    _default("c", 5, 0),  # /dev/tty
    _default("c", 1, 5),  # /dev/zero
    _default("c", 1, 9),  # /dev/urandom
    _default("c", 136, WILD),  # /dev/pts/*
    _default("c", 5, 2),  # /dev/ptmx
    _default("c", 10, 200),  # /dev/net/tun
)


def rules(items: list | tuple | None) -> list[Rule]:
    """The config's rules, checked, then the defaults."""
    out = []
    for i, d in enumerate(items or ()):
        where = f"linux.resources.devices[{i}]"
        t = d.get("type") or "a"
        if t not in ("a", "b", "c"):
            raise CgroupError(f"{where}.type: {t!r} is not a, b or c")
        access = d.get("access")
        if access is None or access == "":
            raise CgroupError(f"{where}.access: must not be empty (use some of r, w, m)")
        if not set(access) <= set("rwm"):
            raise CgroupError(f"{where}.access: {access!r} may only hold r, w and m")
        major, minor = d.get("major"), d.get("minor")
        for name, v in (("major", major), ("minor", minor)):
            if v is not None and not 0 <= v < 2**32:
                raise CgroupError(f"{where}.{name}: {v} is not a device number")
        out.append(Rule(bool(d["allow"]), t, WILD if major is None else major,
                        WILD if minor is None else minor, _canon(access), where))
    return out + list(DEFAULTS)


def _canon(access: str) -> str:
    return "".join(c for c in "rwm" if c in access)


# ---------------------------------------------------------------- the emulator


class Emulator:
    """What the kernel's v1 devices controller would end up with (runc's devices_emulator):
    a default (allow or deny everything) and exceptions {(type, major, minor): access}."""

    def __init__(self) -> None:
        self.default_allow = False
        self.exceptions: dict[tuple[str, int, int], str] = {}

    def apply(self, r: Rule) -> None:
        if r.type == "a":
            self.default_allow = r.allow
            self.exceptions = {}
            return
        key = (r.type, r.major, r.minor)
        if r.allow != self.default_allow:  # an exception to the default
            self.exceptions[key] = _canon(self.exceptions.get(key, "") + r.access)
            return
        # the same as the default: take access away from an exception
        for part in ((r.type, WILD, r.minor), (r.type, r.major, WILD), (r.type, WILD, WILD)):
            if part != key and set(self.exceptions.get(part, "")) & set(r.access):
                other = Rule(not r.allow, *part, self.exceptions[part]).text()
                raise CgroupError(f"{r.where}: {'allow' if r.allow else 'deny'} {r.text()} "
                                  f"would punch a hole in the earlier rule {other!r}, which "
                                  "cgroup device rules cannot express")
        left = "".join(c for c in self.exceptions.get(key, "") if c not in r.access)
        if left:
            self.exceptions[key] = left
        else:
            self.exceptions.pop(key, None)

    def sorted_exceptions(self) -> list[Rule]:
        """Exceptions sorted by (major, minor, type), as runc orders its eBPF blocks."""
        items = sorted(self.exceptions.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0]))
        return [Rule(not self.default_allow, t, ma, mi, acc) for (t, ma, mi), acc in items]


def emulate(rs: list[Rule]) -> Emulator:
    e = Emulator()
    for r in rs:
        e.apply(r)
    return e


# ---------------------------------------------------------------- v1


def set_v1(path: str, rs: list[Rule]) -> None:
    """Write the rules in order, starting from deny-all (runc's semantics: nothing is
    allowed but what the rules allow). A cgroup with children refuses any "a" write, so an
    "a" rule that would change nothing is not written (joining an existing cgroup)."""
    emulate(rs)  # refuses what the kernel would silently ignore
    listed = files.read_or(path, "devices.list", "").split("\n")
    listed = [x for x in listed if x]
    allow_all, clean = listed == ["a *:* rwm"], not listed
    if allow_all or not clean:  # the deny-all the rules start from
        files.write(path, "devices.deny", "a", "linux.resources.devices")
        allow_all, clean = False, True
    for r in rs:
        if r.type == "a" and r.allow == allow_all and clean:
            continue
        files.write(path, "devices.allow" if r.allow else "devices.deny", r.text(),
                    r.where or "linux.resources.devices")
        if r.type == "a":
            allow_all, clean = r.allow, True
        else:
            clean = False
