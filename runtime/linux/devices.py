"""Device nodes in the container's /dev: the default set, linux.devices, and /dev symlinks.

Like runc: the defaults (null, zero, full, random, urandom, tty; 0666 root:root) are made
unless the config lists a device with the same path, and all of them only when /dev is a
tmpfs or not mounted at all (a bind-mounted /dev is the user's). In a user namespace,
where mknod is refused, the host's node is bind-mounted onto an empty file instead.

Runs in the init between fork and exec: no imports inside functions, no logging.
"""

from __future__ import annotations

import errno
import os
import stat

from runtime.errors import strerror
from runtime.linux import pathsafe
from runtime.linux import syscalls as sc
from runtime.record import Record


class Node(Record):
    """A device to make, with every default filled in (the spec's Device, resolved)."""

    path: str  # absolute, inside the container
    type: str  # c, b, u or p
    major: int
    minor: int
    mode: int  # permission bits only
    uid: int
    gid: int


DEFAULTS = (
    Node("/dev/null", "c", 1, 3, 0o666, 0, 0),
    Node("/dev/zero", "c", 1, 5, 0o666, 0, 0),
    Node("/dev/full", "c", 1, 7, 0o666, 0, 0),
    Node("/dev/tty", "c", 5, 0, 0o666, 0, 0),
    Node("/dev/urandom", "c", 1, 9, 0o666, 0, 0),
    Node("/dev/random", "c", 1, 8, 0o666, 0, 0),
)

# symlink name in /dev -> target, as runc makes them
LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)
KCORE_LINK = ("core", "/proc/kcore")

_TYPE_BITS = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def from_spec(devices: tuple) -> tuple[Node, ...]:
    """Config devices (runtime.spec.Device) as Nodes: mode 0666 and root:root by default."""
    out = []
    for d in devices:
        mode = 0o666 if d.file_mode is None else d.file_mode & 0o7777
        out.append(Node("/" + pathsafe.clean(d.path), d.type,
                        d.major, d.minor, mode, d.uid or 0, d.gid or 0))
    return tuple(out)


def merged(config_nodes: tuple[Node, ...]) -> tuple[Node, ...]:
    """Defaults first, then the config's; a config device with a default's path wins."""
    taken = {n.path for n in config_nodes}
    return tuple(n for n in DEFAULTS if n.path not in taken) + config_nodes


def create(rootfd: int, node: Node, bind: bool) -> None:
    """Make one device node inside the root (bind the host's node when `bind`)."""
    parent, name = pathsafe.open_parent(rootfd, node.path)
    try:
        if bind:
            _bind_host_node(parent, name, node)
        else:
            try:
                _mknod(parent, name, node)
            except PermissionError:
                _bind_host_node(parent, name, node)
    finally:
        os.close(parent)


def _mknod(parent: int, name: str, node: Node) -> None:
    kind = _TYPE_BITS[node.type]
    dev = os.makedev(node.major, node.minor) if node.type != "p" else 0
    try:
        os.mknod(name, kind | node.mode, dev, dir_fd=parent)
    except FileExistsError:
        # replace whatever the image had there (a file, or a symlink to the host)
        _unlink(parent, name, node.path)
        os.mknod(name, kind | node.mode, dev, dir_fd=parent)
    except OSError as e:
        if e.errno == errno.EPERM:
            raise PermissionError(e.errno, e.strerror, node.path) from None
        raise OSError(e.errno, f"mknod {node.path}: {strerror(e.errno)}",
                      node.path) from None
    fd = pathsafe.open_beneath(parent, name, node.path)
    try:
        if stat.S_IFMT(os.fstat(fd).st_mode) != kind:
            raise OSError(errno.EEXIST, f"device {node.path}: replaced while being made",
                          node.path)
        # chmod too (the mode given to mknod is cut by the umask), through the checked fd
        os.chmod(pathsafe.fd_path(fd), node.mode)
        os.chown(pathsafe.fd_path(fd), node.uid, node.gid)
    finally:
        os.close(fd)


def _unlink(parent: int, name: str, path: str) -> None:
    try:
        os.unlink(name, dir_fd=parent)
    except IsADirectoryError:
        raise OSError(errno.EISDIR, f"device {path}: a directory is in the way", path) from None
    except FileNotFoundError:
        pass


def _bind_host_node(parent: int, name: str, node: Node) -> None:
    """In a user namespace: an empty file with the host's node bind-mounted over it."""
    src = os.open(node.path, os.O_PATH | os.O_CLOEXEC)
    try:
        st = os.fstat(src)
        if stat.S_IFMT(st.st_mode) != _TYPE_BITS[node.type] or (
            node.type != "p" and st.st_rdev != os.makedev(node.major, node.minor)
        ):
            raise OSError(errno.ENODEV,
                          f"device {node.path}: the host's node is not {node.type} "
                          f"{node.major}:{node.minor}, so it cannot be bind-mounted", node.path)
        try:
            st_in = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISREG(st_in.st_mode):
                _unlink(parent, name, node.path)
        except FileNotFoundError:
            pass
        dst = pathsafe.create_file(parent, name, 0o600, node.path)
        try:
            sc.mount(pathsafe.fd_path(src), pathsafe.fd_path(dst), None, sc.MS_BIND)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def make_links(rootfd: int, dev: str = "/dev", kcore: bool = False) -> None:
    """/dev/fd, stdin, stdout, stderr (and /dev/core when the host has /proc/kcore)."""
    links = LINKS + ((KCORE_LINK,) if kcore else ())
    devfd = pathsafe.mkdir_all(rootfd, dev)
    try:
        for name, target in links:
            try:
                os.symlink(target, name, dir_fd=devfd)
            except FileExistsError:
                pass  # runc leaves what is there
    finally:
        os.close(devfd)


def make_ptmx(rootfd: int) -> None:
    """/dev/ptmx -> pts/ptmx, so the container's devpts instance serves ptys."""
    devfd = pathsafe.mkdir_all(rootfd, "/dev")
    try:
        try:
            os.unlink("ptmx", dir_fd=devfd)
        except FileNotFoundError:
            pass
        os.symlink("pts/ptmx", "ptmx", dir_fd=devfd)
    finally:
        os.close(devfd)
