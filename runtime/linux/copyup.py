"""tmpcopyup: a fresh tmpfs that starts with what the image had at the destination, and
the copy itself (files, dirs, links, nodes with owner, mode and times; never following a
symlink).

Runs in the init (its own mount namespace): no imports inside functions, no logging.
"""

from __future__ import annotations

import os
import stat

from runtime.linux import syscalls as sc
from runtime.linux.mountopts import attrs_of

TYPE_CHECKING = False  # not `typing`: create imports nothing it does not need
if TYPE_CHECKING:
    from runtime.linux.mountplan import MountPlan


_SB_FLAGS = ((sc.MS_SYNCHRONOUS, "sync"), (sc.MS_DIRSYNC, "dirsync"),
             (sc.MS_LAZYTIME, "lazytime"), (sc.MS_MANDLOCK, "mand"), (sc.MS_SILENT, "silent"))


def tmpfs_copyup(rootfd: int, fd: int, m: MountPlan, flags: int, data: str | None) -> None:
    """tmpcopyup: a fresh tmpfs that starts with what the image had at the destination."""
    # Superblock flags travel as fsconfig flags with the new mount API.
    sb = [name for bit, name in _SB_FLAGS if flags & bit]
    tmp = sc.fsopen_mount("tmpfs", ",".join(filter(None, [data, *sb])))
    try:
        copy_tree(fd, tmp)
        # flags only now: the copy needed a writable tmpfs
        set_, clr = attrs_of(flags)
        if set_ or clr:
            sc.mount_setattr(tmp, "", sc.AT_EMPTY_PATH, sc.MountAttr(set_, clr, 0, 0))
        sc.move_mount(tmp, "", fd, "", sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH)
    finally:
        os.close(tmp)


def copy_tree(src: int, dst: int) -> None:
    """Copy the directory `src` (an fd) into `dst` (an fd): files, dirs, links, nodes, with
    owner, mode and times; never following a symlink."""
    sfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=src)
    try:
        st = os.fstat(sfd)
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dst)
        try:
            os.chmod(dfd, stat.S_IMODE(st.st_mode))
            os.chown(dfd, st.st_uid, st.st_gid)
            _copy_entries(sfd, dfd)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _copy_entries(sfd: int, dfd: int) -> None:
    for name in os.listdir(sfd):
        st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dfd)
            s2 = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=sfd)
            d2 = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=dfd)
            try:
                _copy_entries(s2, d2)
            finally:
                os.close(s2)
                os.close(d2)
        elif stat.S_ISREG(mode):
            _copy_file(sfd, dfd, name)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=sfd), name, dir_fd=dfd)
        else:
            os.mknod(name, mode, st.st_rdev, dir_fd=dfd)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISLNK(mode):
            os.chmod(name, stat.S_IMODE(mode), dir_fd=dfd)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)


def _copy_file(sfd: int, dfd: int, name: str) -> None:
    s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
    try:
        d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600, dir_fd=dfd)
        try:
            while True:
                chunk = os.read(s, 1 << 20)
                if not chunk:
                    break
                os.write(d, chunk)
        finally:
            os.close(d)
    finally:
        os.close(s)
