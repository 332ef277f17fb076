"""idmapped mounts (mount options "idmap"/"ridmap" with the mount's uid/gidMappings).

The mapping needs a user namespace fd whose maps are the mount's mappings: a short-lived child
unshares CLONE_NEWUSER, we write its uid_map/gid_map ("containerID hostID size", the same format
as a user namespace, as the spec says) and keep /proc/<child>/ns/user open. The tree is set up
in the parent, in the host's user namespace, because MOUNT_ATTR_IDMAP needs CAP_SYS_ADMIN over
the filesystem's own user namespace; the init only attaches the detached tree (move_mount).
"""

from __future__ import annotations

import os

from runtime.linux import syscalls as sc


def _map_text(maps) -> str:
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)


def userns_fd(uid_maps, gid_maps) -> int:
    """An fd of a new user namespace with these maps (its process is gone on return)."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only syscalls, then _exit
        code = 0
        try:
            os.close(ready_r)
            os.close(done_w)
            sc.unshare(sc.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(done_r, 1)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError("idmap: the helper could not make a user namespace")
        for name, maps in (("uid_map", uid_maps), ("gid_map", gid_maps)):
            fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, _map_text(maps).encode())
            finally:
                os.close(fd)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)


def apply(tree: int, uid_maps, gid_maps, recursive: bool) -> None:
    """Give the detached mount `tree` (from open_tree) the mappings."""
    ns = userns_fd(uid_maps, gid_maps)
    try:
        attr = sc.MountAttr(sc.MOUNT_ATTR_IDMAP, 0, 0, ns)
        sc.mount_setattr(tree, "", sc.AT_EMPTY_PATH | (sc.AT_RECURSIVE if recursive else 0),
                         attr)
    finally:
        os.close(ns)


def open_tree(source: str, uid_maps, gid_maps, recursive_bind: bool, recursive: bool) -> int:
    """A detached, idmapped clone of `source`; the caller attaches it with move_mount."""
    flags = sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC
    if recursive_bind or recursive:
        flags |= sc.AT_RECURSIVE
    tree = sc.open_tree(-100, source, flags)
    try:
        apply(tree, uid_maps, gid_maps, recursive)
    except BaseException:
        os.close(tree)
        raise
    return tree
