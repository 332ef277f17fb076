"""Mount options (config.md "Mounts") -> mount(2) flags, propagation, recursive attrs, data.

One table per kind of option, so `features` can list exactly what `parse` accepts. Names and
meanings follow runc's specconv; anything not in a table is filesystem data, as in runc.
"""

from __future__ import annotations

from runtime.linux import syscalls as sc
from runtime.record import Record

# name -> (clears the flag?, flag)
FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, sc.MS_SYNCHRONOUS),
    "atime": (True, sc.MS_NOATIME),
    "bind": (False, sc.MS_BIND),
    "defaults": (False, 0),
    "dev": (True, sc.MS_NODEV),
    "diratime": (True, sc.MS_NODIRATIME),
    "dirsync": (False, sc.MS_DIRSYNC),
    "exec": (True, sc.MS_NOEXEC),
    "iversion": (False, sc.MS_I_VERSION),
    "lazytime": (False, sc.MS_LAZYTIME),
    "loud": (True, sc.MS_SILENT),
    "mand": (False, sc.MS_MANDLOCK),
    "noatime": (False, sc.MS_NOATIME),
    "nodev": (False, sc.MS_NODEV),
    "nodiratime": (False, sc.MS_NODIRATIME),
    "noexec": (False, sc.MS_NOEXEC),
    "noiversion": (True, sc.MS_I_VERSION),
    "nolazytime": (True, sc.MS_LAZYTIME),
    "nomand": (True, sc.MS_MANDLOCK),
    "norelatime": (True, sc.MS_RELATIME),
    "nostrictatime": (True, sc.MS_STRICTATIME),
    "nosuid": (False, sc.MS_NOSUID),
    "nosymfollow": (False, sc.MS_NOSYMFOLLOW),
    "rbind": (False, sc.MS_BIND | sc.MS_REC),
    "relatime": (False, sc.MS_RELATIME),
    "remount": (False, sc.MS_REMOUNT),
    "ro": (False, sc.MS_RDONLY),
    "rw": (True, sc.MS_RDONLY),
    "silent": (False, sc.MS_SILENT),
    "strictatime": (False, sc.MS_STRICTATIME),
    "suid": (True, sc.MS_NOSUID),
    "symfollow": (True, sc.MS_NOSYMFOLLOW),
    "sync": (False, sc.MS_SYNCHRONOUS),
}

PROPAGATION: dict[str, int] = {
    "private": sc.MS_PRIVATE,
    "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED,
    "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE,
    "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE,
    "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}

# name -> (clears the attr?, MOUNT_ATTR_*), applied with mount_setattr(AT_RECURSIVE)
REC_ATTRS: dict[str, tuple[bool, int]] = {
    "rro": (False, sc.MOUNT_ATTR_RDONLY),
    "rrw": (True, sc.MOUNT_ATTR_RDONLY),
    "rnosuid": (False, sc.MOUNT_ATTR_NOSUID),
    "rsuid": (True, sc.MOUNT_ATTR_NOSUID),
    "rnodev": (False, sc.MOUNT_ATTR_NODEV),
    "rdev": (True, sc.MOUNT_ATTR_NODEV),
    "rnoexec": (False, sc.MOUNT_ATTR_NOEXEC),
    "rexec": (True, sc.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, sc.MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, sc.MOUNT_ATTR_NODIRATIME),
    "rrelatime": (False, sc.MOUNT_ATTR_RELATIME),
    "rnorelatime": (True, sc.MOUNT_ATTR_RELATIME),
    "rnoatime": (False, sc.MOUNT_ATTR_NOATIME),
    "ratime": (True, sc.MOUNT_ATTR_NOATIME),
    "rstrictatime": (False, sc.MOUNT_ATTR_STRICTATIME),
    "rnostrictatime": (True, sc.MOUNT_ATTR_STRICTATIME),
    "rnosymfollow": (False, sc.MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, sc.MOUNT_ATTR_NOSYMFOLLOW),
}

# onggi's own extensions (not passed to the kernel)
EXTENSIONS = ("tmpcopyup", "idmap", "ridmap")

# The atime attrs are a 3-valued field in mount_setattr, not independent bits.
_ATIME_ATTRS = (sc.MOUNT_ATTR_RELATIME, sc.MOUNT_ATTR_NOATIME, sc.MOUNT_ATTR_STRICTATIME)


def known_options() -> list[str]:
    """Every option name onggi understands (for `features`)."""
    return sorted({*FLAGS, *PROPAGATION, *REC_ATTRS, *EXTENSIONS})


class Options(Record):
    flags: int = 0  # MS_* to pass to mount(2)
    clear: int = 0  # MS_* the options cleared (e.g. "rw", "dev"), for bind remounts
    propagation: tuple[int, ...] = ()  # MS_SHARED|MS_REC etc., applied in order
    attr_set: int = 0  # MOUNT_ATTR_* to set recursively
    attr_clr: int = 0  # MOUNT_ATTR_* to clear recursively
    data: str = ""  # filesystem data: unknown options, comma-joined
    tmpcopyup: bool = False
    idmap: bool = False
    ridmap: bool = False

    @property
    def bind(self) -> bool:
        return bool(self.flags & sc.MS_BIND)

    @property
    def recursive_bind(self) -> bool:
        return bool(self.flags & sc.MS_REC)


def parse(options: tuple[str, ...] | list[str]) -> Options:
    """Turn a mount's option list into flags; later options win over earlier ones."""
    flags = clear = attr_set = attr_clr = 0
    propagation: list[int] = []
    data: list[str] = []
    ext = {name: False for name in EXTENSIONS}
    for opt in options:
        if opt in FLAGS:
            clears, flag = FLAGS[opt]
            if clears:
                flags &= ~flag
                clear |= flag
            else:
                flags |= flag
                clear &= ~flag
        elif opt in PROPAGATION:
            propagation.append(PROPAGATION[opt])
        elif opt in REC_ATTRS:
            clears, attr = REC_ATTRS[opt]
            if attr in _ATIME_ATTRS:
                # atime mode: clear the whole field, then set the wanted mode (if any)
                attr_clr |= sc.MOUNT_ATTR__ATIME
                attr_set &= ~sc.MOUNT_ATTR__ATIME
                if not clears:
                    attr_set |= attr
            elif clears:
                attr_set &= ~attr
                attr_clr |= attr
            else:
                attr_set |= attr
                attr_clr &= ~attr
        elif opt in ext:
            ext[opt] = True
        else:
            data.append(opt)
    return Options(
        flags=flags,
        clear=clear,
        propagation=tuple(propagation),
        attr_set=attr_set,
        attr_clr=attr_clr,
        data=",".join(data),
        tmpcopyup=ext["tmpcopyup"],
        idmap=ext["idmap"],
        ridmap=ext["ridmap"],
    )


# MS_* flags that mount_setattr can express as MOUNT_ATTR_* on one mount (bind remounts).
MS_TO_ATTR: dict[int, int] = {
    sc.MS_RDONLY: sc.MOUNT_ATTR_RDONLY,
    sc.MS_NOSUID: sc.MOUNT_ATTR_NOSUID,
    sc.MS_NODEV: sc.MOUNT_ATTR_NODEV,
    sc.MS_NOEXEC: sc.MOUNT_ATTR_NOEXEC,
    sc.MS_NODIRATIME: sc.MOUNT_ATTR_NODIRATIME,
    sc.MS_NOSYMFOLLOW: sc.MOUNT_ATTR_NOSYMFOLLOW,
}


# Flags of the mount(2) call itself, never passed on to a new filesystem mount.
TOP_FLAGS = sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT


def attrs_of(flags: int) -> tuple[int, int]:
    """(attr_set, attr_clr) for mount_setattr from MS_* per-mount flags."""
    set_ = 0
    clr = 0
    for ms, attr in MS_TO_ATTR.items():
        if flags & ms:
            set_ |= attr
    if flags & sc.MS_NOATIME:
        set_, clr = set_ | sc.MOUNT_ATTR_NOATIME, clr | sc.MOUNT_ATTR__ATIME
    elif flags & sc.MS_STRICTATIME:
        set_, clr = set_ | sc.MOUNT_ATTR_STRICTATIME, clr | sc.MOUNT_ATTR__ATIME
    elif flags & sc.MS_RELATIME:
        clr |= sc.MOUNT_ATTR__ATIME
    return set_, clr
