"""Layer application: tar streams (gzip, zstd, plain) applied into a rootfs, safely.

Every entry is written through a directory fd resolved by the kernel inside the rootfs
(openat2 RESOLVE_IN_ROOT), and the final component is never followed: an existing name is
unlinked and recreated with O_EXCL, so no write, chmod, chown or delete reaches outside.

Two targets:
  copy      layers applied one over another; whiteouts delete from the lower layers.
  snapshot  one layer into an empty dir, whiteouts kept in overlayfs form (0/0 char devices
            and trusted.overlay.opaque), for overlay-mode bundles.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import queue
import stat
import tarfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from runtime.errors import OnggiError
from runtime.image.fsutil import clean_parts, open_in_root

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE = "trusted.overlay.opaque"
CHUNK = 1 << 20
MAX_DIR_FDS = 256  # cached dir fds, and never more than a quarter of RLIMIT_NOFILE
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class LayerError(OnggiError):
    """A layer that cannot be applied: names the layer, the entry and the reason."""


# -- decompressed streams ------------------------------------------------------------------
def sniff_compression(path: str) -> str:
    """gzip, zstd or none, from the magic bytes (media types lie often enough)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


def _decompressed_chunks(path: str) -> Iterator[bytes]:
    kind = sniff_compression(path)
    with open(path, "rb", buffering=0) as f:
        if kind == "gzip":
            import zlib

            d = zlib.decompressobj(wbits=31)
            while True:
                c = f.read(CHUNK)
                if not c:
                    break
                while c:
                    out = d.decompress(c)
                    if out:
                        yield out
                    if d.eof:
                        # A multi-member gzip: the next member starts in unused_data.
                        c = d.unused_data
                        d = zlib.decompressobj(wbits=31)
                    else:
                        c = b""
            tail = d.flush()
            if tail:
                yield tail
        elif kind == "zstd":
            import zstandard

            r = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
            while True:
                c = r.read(CHUNK)
                if not c:
                    break
                yield c
        else:
            while True:
                c = f.read(CHUNK)
                if not c:
                    break
                yield c


class LayerStream:
    """A forward-only reader over the decompressed layer, filled by a worker thread.

    Decompression and hashing (zlib, zstd and hashlib drop the GIL) run beside the
    file writes, like `tar -xzf` with its gzip child. It also computes the diffID.
    """

    def __init__(self, path: str) -> None:
        self._q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=64)
        self._buf = b""
        self._off = 0
        self.pos = 0
        self._eof = False
        self._hash = hashlib.sha256()
        self._stop = False
        self._t = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._t.start()

    def _run(self, path: str) -> None:
        try:
            for c in _decompressed_chunks(path):
                self._hash.update(c)
                if self._stop:
                    return
                self._q.put(c)
            self._q.put(None)
        except BaseException as e:  # handed to the reader, which raises it
            self._q.put(e)

    def _fill(self) -> bool:
        if self._eof:
            return False
        item = self._q.get()
        if item is None:
            self._eof = True
            return False
        if isinstance(item, BaseException):
            self._eof = True
            raise LayerError(f"decompress: {item}")
        self._buf, self._off = item, 0
        return True

    def read_some(self, n: int) -> memoryview:
        """Up to n bytes without copying; empty only at the end."""
        if self._off >= len(self._buf) and not self._fill():
            return memoryview(b"")
        end = min(len(self._buf), self._off + n)
        mv = memoryview(self._buf)[self._off : end]
        self._off = end
        self.pos += len(mv)
        return mv

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            out = bytearray()
            while True:
                mv = self.read_some(CHUNK)
                if not mv:
                    return bytes(out)
                out += mv
        if self._off + n <= len(self._buf):
            b = self._buf[self._off : self._off + n]
            self._off += n
            self.pos += n
            return b
        out = bytearray()
        while len(out) < n:
            mv = self.read_some(n - len(out))
            if not mv:
                break
            out += mv
        return bytes(out)

    def tell(self) -> int:
        return self.pos

    def seek(self, off: int, whence: int = 0) -> int:
        if whence == 1:
            off += self.pos
        if whence == 2 or off < self.pos:
            raise OSError(errno.ESPIPE, "layer stream only seeks forward")
        while self.pos < off:
            if not self.read_some(off - self.pos):
                break
        return self.pos

    def finish(self) -> str:
        """Drain the rest (padding, end blocks, trailing data) and return the diffID."""
        while self.read_some(CHUNK):
            pass
        self._t.join()
        return "sha256:" + self._hash.hexdigest()

    def close(self) -> None:
        self._stop = True
        # Unblock the worker if it waits on a full queue.
        while self._t.is_alive():
            try:
                self._q.get(timeout=0.05)
            except queue.Empty:
                pass


# -- the applier ---------------------------------------------------------------------------
def pax_xattrs(m: tarfile.TarInfo) -> dict[str, bytes]:
    """xattrs from PAX records (SCHILY.xattr.* and LIBARCHIVE.xattr.*), binary-exact."""
    out: dict[str, bytes] = {}
    for k, v in m.pax_headers.items():
        if k.startswith("SCHILY.xattr."):
            out[k[len("SCHILY.xattr.") :]] = v.encode("utf-8", "surrogateescape")
        elif k.startswith("LIBARCHIVE.xattr."):
            name = urllib.parse.unquote(k[len("LIBARCHIVE.xattr.") :])
            out[name] = base64.b64decode(v + "=" * (-len(v) % 4))
    return out


@dataclass
class LayerResult:
    diff_id: str
    entries: int = 0
    used_lower: bool = False  # a hardlink reached into a lower layer (snapshot mode)
    warnings: list[str] = field(default_factory=list)


class Applier:
    """Applies tar entries under one root directory fd."""

    def __init__(
        self,
        root: str,
        snapshot: bool = False,
        lower: Callable[[], str | None] | None = None,
        what: str = "layer",
    ) -> None:
        self.root_path = root
        self.rootfd = os.open(root, _DIR_FLAGS)
        self.snapshot = snapshot
        self.lower = lower  # snapshot mode: gives a read-only merged view of lower layers
        self.what = what
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.max_fds = MAX_DIR_FDS if soft == resource.RLIM_INFINITY else max(8, min(MAX_DIR_FDS, soft // 4))
        self.dirs: dict[str, int] = {}
        self.layer_paths: set[str] = set()
        self.layer_parents: set[str] = set()
        self.dir_times: list[tuple[str, int]] = []
        self.used_lower = False
        self.warnings: list[str] = []

    def close(self) -> None:
        for fd in self.dirs.values():
            os.close(fd)
        self.dirs.clear()
        os.close(self.rootfd)

    def fail(self, name: str, reason: str) -> LayerError:
        return LayerError(f"{self.what}: entry {name!r}: {reason}")

    # -- directory fds, resolved in root ----------------------------------------------
    def dirfd(self, parts: list[str], create: bool = True, name: str = "", depth: int = 0) -> int | None:
        key = "/".join(parts)
        if not key:
            return self.rootfd
        fd = self.dirs.get(key)
        if fd is not None:
            return fd
        try:
            fd = open_in_root(self.rootfd, key, _DIR_FLAGS)
        except FileNotFoundError:
            if not create:
                return None
            parent = self.dirfd(parts[:-1], True, name, depth)
            assert parent is not None
            try:
                os.mkdir(parts[-1], 0o755, dir_fd=parent)
            except FileExistsError:
                # A dangling symlink: create its target, resolved inside the root, as
                # containerd does (e.g. /var/run -> /run before /run exists).
                if depth > 40:
                    raise self.fail(name, f"parent {key!r}: too many symlinks") from None
                target = os.readlink(parts[-1], dir_fd=parent)
                if target.startswith("/"):
                    tparts = clean_parts(target)
                else:
                    tparts = clean_parts(self.in_root_path(parent) + "/" + target)
                self.dirfd(tparts, True, name, depth + 1)
            fd = open_in_root(self.rootfd, key, _DIR_FLAGS)
            if self.snapshot:
                self.inherit_dir(key, fd)
        except NotADirectoryError:
            if not create:
                return None
            raise self.fail(name, f"parent {key!r} is not a directory") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise self.fail(name, f"parent {key!r}: too many symlinks") from None
            raise
        self.dirs[key] = fd
        return fd

    def in_root_path(self, fd: int) -> str:
        """Where a dir fd is, as a path inside the root (for relative symlink targets)."""
        real = os.readlink(f"/proc/self/fd/{fd}")
        base = os.readlink(f"/proc/self/fd/{self.rootfd}")
        if real == base:
            return ""
        if not real.startswith(base.rstrip("/") + "/"):
            raise LayerError(f"{self.what}: {real!r} is outside the root")
        return real[len(base) :]

    def inherit_dir(self, key: str, fd: int) -> None:
        """A snapshot's implicit parent dir takes the owner, mode, xattrs and mtime of the
        same dir below, or the merged view would show it as a fresh 0755 dir."""
        if self.lower is None:
            return
        lroot = self.lower()
        if lroot is None:
            return
        lrootfd = os.open(lroot, _DIR_FLAGS)
        try:
            try:
                lfd = open_in_root(lrootfd, key, _DIR_FLAGS)
            except OSError:
                return
            try:
                st = os.fstat(lfd)
                src, dst = f"/proc/self/fd/{lfd}", f"/proc/self/fd/{fd}"
                os.chown(dst, st.st_uid, st.st_gid)
                os.chmod(dst, stat.S_IMODE(st.st_mode))
                for name in os.listxattr(src):
                    if not name.startswith("trusted.overlay."):
                        os.setxattr(dst, name, os.getxattr(src, name))
                self.dir_times.append((key, st.st_mtime_ns // 10**9))
                self.used_lower = True  # the snapshot now depends on its lower chain
            finally:
                os.close(lfd)
        finally:
            os.close(lrootfd)

    def forget(self, key: str) -> None:
        """A dir or symlink at `key` goes away: cached fds below it no longer name paths."""
        pre = key + "/"
        for k in [k for k in self.dirs if k == key or k.startswith(pre)]:
            os.close(self.dirs.pop(k))

    def remove(self, pfd: int, base: str, key: str) -> None:
        try:
            st = os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            import shutil

            self.forget(key)
            shutil.rmtree(base, dir_fd=pfd)  # fd-based, never follows symlinks
        else:
            if stat.S_ISLNK(st.st_mode):
                self.forget(key)
            os.unlink(base, dir_fd=pfd)

    # -- entries ------------------------------------------------------------------------
    def trim(self) -> None:
        """Bound the dir fd cache (an image may have more dirs than RLIMIT_NOFILE allows).
        Only called between entries, when no cached fd is in use."""
        if len(self.dirs) > self.max_fds:
            for k in list(self.dirs)[: len(self.dirs) // 2]:
                os.close(self.dirs.pop(k))

    def apply(self, m: tarfile.TarInfo, data: LayerStream) -> None:
        self.trim()
        parts = clean_parts(m.name)
        if not parts:
            return  # the root itself keeps the bundle's own metadata
        base = parts[-1]
        if base.startswith(WH_PREFIX):
            self.whiteout(parts, m.name)
            return
        key = "/".join(parts)
        pfd = self.dirfd(parts[:-1], name=m.name)
        assert pfd is not None
        self.layer_paths.add(key)
        for i in range(1, len(parts)):
            self.layer_parents.add("/".join(parts[:i]))
        if m.isdir():
            self.make_dir(m, pfd, base, key)
        elif m.isreg():
            self.make_file(m, pfd, base, key, data)
        elif m.issym():
            self.replace(pfd, base, key)
            os.symlink(m.linkname, base, dir_fd=pfd)
            self.meta(m, pfd, base, key, symlink=True)
        elif m.islnk():
            self.make_link(m, pfd, base, key)
        elif m.ischr() or m.isblk() or m.isfifo():
            self.replace(pfd, base, key)
            if m.isfifo():
                os.mkfifo(base, 0o600, dir_fd=pfd)
            else:
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
            self.meta(m, pfd, base, key)
        else:
            self.warnings.append(f"{m.name}: skipped tar type {m.type!r}")

    def replace(self, pfd: int, base: str, key: str) -> None:
        self.remove(pfd, base, key)

    def make_dir(self, m: tarfile.TarInfo, pfd: int, base: str, key: str) -> None:
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.lstat(base, dir_fd=pfd)
            if not stat.S_ISDIR(st.st_mode):
                self.remove(pfd, base, key)
                os.mkdir(base, 0o700, dir_fd=pfd)
        self.meta(m, pfd, base, key, is_dir=True)
        self.dir_times.append((key, int(m.mtime)))

    def make_file(
        self, m: tarfile.TarInfo, pfd: int, base: str, key: str, data: LayerStream
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(base, flags, 0o600, dir_fd=pfd)
        except FileExistsError:
            # Never write into what is there: it may be a symlink or a hardlinked inode.
            self.remove(pfd, base, key)
            fd = os.open(base, flags, 0o600, dir_fd=pfd)
        try:
            data.seek(m.offset_data)
            if m.sparse:
                for off, n in m.sparse:
                    os.lseek(fd, off, os.SEEK_SET)
                    self.copy(data, fd, n, m.name)
                os.ftruncate(fd, m.size)
            else:
                self.copy(data, fd, m.size, m.name)
            os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            self.xattrs(m, fd)
            os.utime(fd, ns=(int(m.mtime * 1e9), int(m.mtime * 1e9)))
        finally:
            os.close(fd)

    def copy(self, data: LayerStream, fd: int, n: int, name: str) -> None:
        while n > 0:
            mv = data.read_some(min(n, CHUNK))
            if not mv:
                raise self.fail(name, "truncated file data")
            while mv:
                w = os.write(fd, mv)
                mv = mv[w:]
                n -= w

    def make_link(self, m: tarfile.TarInfo, pfd: int, base: str, key: str) -> None:
        tparts = clean_parts(m.linkname)
        if not tparts:
            raise self.fail(m.name, f"hardlink to the root ({m.linkname!r})")
        tkey = "/".join(tparts)
        if tkey == key:
            return  # a link to itself: the name already is that inode
        tpfd = self.dirfd(tparts[:-1], create=False)
        src_exists = False
        if tpfd is not None:
            try:
                st = os.lstat(tparts[-1], dir_fd=tpfd)
                src_exists = not stat.S_ISDIR(st.st_mode) and not _is_whiteout_dev(st)
            except FileNotFoundError:
                pass
        self.replace(pfd, base, key)
        if src_exists:
            assert tpfd is not None
            # flags=0: link the name itself, never what a symlink points at.
            os.link(tparts[-1], base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
            return
        if self.snapshot and self.lower is not None:
            if self.copy_from_lower(tkey, pfd, base):
                return
        raise self.fail(m.name, f"hardlink target {m.linkname!r} does not exist")

    def copy_from_lower(self, tkey: str, pfd: int, base: str) -> bool:
        """A hardlink into a lower layer: copy the file (snapshots cannot share the inode)."""
        assert self.lower is not None
        lroot = self.lower()
        if lroot is None:
            return False
        lrootfd = os.open(lroot, _DIR_FLAGS)
        try:
            try:
                src = open_in_root(lrootfd, tkey, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                return False
            try:
                st = os.fstat(src)
                if not stat.S_ISREG(st.st_mode):
                    return False
                dst = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=pfd)
                try:
                    while os.sendfile(dst, src, None, CHUNK) > 0:  # overlay → ext4: no reflinks
                        pass
                    os.fchown(dst, st.st_uid, st.st_gid)
                    os.fchmod(dst, stat.S_IMODE(st.st_mode))
                    for name in os.listxattr(src):
                        os.setxattr(dst, name, os.getxattr(src, name))
                    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
                finally:
                    os.close(dst)
            finally:
                os.close(src)
        finally:
            os.close(lrootfd)
        self.used_lower = True
        return True

    def meta(
        self, m: tarfile.TarInfo, pfd: int, base: str, key: str, symlink: bool = False, is_dir: bool = False
    ) -> None:
        os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        if symlink:
            xs = pax_xattrs(m)
            if xs:
                path = f"/proc/self/fd/{pfd}/{base}"
                for name, val in xs.items():
                    self.setxattr(m, path, name, val, follow=False)
            if not is_dir:
                ns = int(m.mtime * 1e9)
                os.utime(base, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
            return
        # An O_PATH fd of the new inode itself: chmod and xattrs go to it, never elsewhere.
        fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            p = f"/proc/self/fd/{fd}"
            os.chmod(p, m.mode & 0o7777)
            for name, val in pax_xattrs(m).items():
                self.setxattr(m, p, name, val, follow=True)
            if not is_dir:
                ns = int(m.mtime * 1e9)
                os.utime(p, ns=(ns, ns))
        finally:
            os.close(fd)

    def xattrs(self, m: tarfile.TarInfo, fd: int) -> None:
        for name, val in pax_xattrs(m).items():
            self.setxattr(m, fd, name, val, follow=True)

    def setxattr(self, m: tarfile.TarInfo, target: int | str, name: str, val: bytes, follow: bool) -> None:
        if name.startswith("trusted.overlay."):
            # A layer must not steer overlayfs (redirects, opaque markers) of its own accord.
            self.warnings.append(f"{m.name}: dropped xattr {name}")
            return
        try:
            os.setxattr(target, name, val, follow_symlinks=follow)
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.EPERM) and name.startswith("user."):
                self.warnings.append(f"{m.name}: xattr {name} not supported here: {e.strerror}")
                return
            raise self.fail(m.name, f"xattr {name}: {e.strerror}") from None

    # -- whiteouts ----------------------------------------------------------------------
    def whiteout(self, parts: list[str], name: str) -> None:
        dparts, base = parts[:-1], parts[-1]
        dkey = "/".join(dparts)
        if base == WH_OPAQUE:
            if self.snapshot:
                fd = self.dirfd(dparts, name=name)
                assert fd is not None
                os.setxattr(f"/proc/self/fd/{fd}", OVERLAY_OPAQUE, b"y")
                if dkey:
                    self.layer_parents.add(dkey)
            else:
                fd = self.dirfd(dparts, create=False)
                if fd is not None:
                    self.opaque(fd, dkey)
            return
        target = base[len(WH_PREFIX) :]
        if target in ("", ".", ".."):
            raise self.fail(name, f"invalid whiteout name {base!r}")
        tkey = f"{dkey}/{target}" if dkey else target
        if tkey in self.layer_paths or tkey in self.layer_parents:
            return  # whiteouts only hide lower layers, never entries of their own layer
        if self.snapshot:
            fd = self.dirfd(dparts, name=name)
            assert fd is not None
            self.remove(fd, target, tkey)
            os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=fd)
            self.layer_paths.add(tkey)
        else:
            fd = self.dirfd(dparts, create=False)
            if fd is not None:
                self.remove(fd, target, tkey)

    def opaque(self, fd: int, dkey: str) -> None:
        """Copy mode: drop what lower layers put under dkey, keep this layer's entries."""
        for entry in os.listdir(f"/proc/self/fd/{fd}"):
            key = f"{dkey}/{entry}" if dkey else entry
            if key in self.layer_paths or key in self.layer_parents:
                try:
                    st = os.lstat(entry, dir_fd=fd)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    sub = self.dirfd(key.split("/"), create=False)
                    if sub is not None:
                        self.opaque(sub, key)
                continue
            self.remove(fd, entry, key)

    def finish_dirs(self) -> None:
        """Directory mtimes last, once nothing more is written into them."""
        for key, mtime in reversed(self.dir_times):
            self.trim()
            parts = key.split("/")
            pfd = self.dirfd(parts[:-1], create=False)
            if pfd is None:
                continue
            try:
                os.utime(parts[-1], ns=(mtime * 10**9, mtime * 10**9), dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                pass


def _is_whiteout_dev(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class _Buffered:
    """A small file's data, read ahead by the parser so a writer thread can apply it."""

    def __init__(self, base: int, data: bytes) -> None:
        self.base, self.mv, self.pos = base, memoryview(data), 0

    def seek(self, off: int, whence: int = 0) -> int:
        self.pos = off - self.base
        return off

    def read_some(self, n: int) -> memoryview:
        out = self.mv[self.pos : self.pos + n]
        self.pos += len(out)
        return out


class _Writer:
    """Applies entries on a worker thread while the main thread parses tar headers: the
    filesystem syscalls (which drop the GIL) overlap the header parsing, as tar's do with
    gzip. Entries stay strictly in order; big files are applied inline after a drain."""

    MAX_BUFFERED = 1 << 20  # with 64 queued entries: at most 64 MiB read ahead

    def __init__(self, app: Applier) -> None:
        self.app = app
        self.q: queue.Queue[tuple[tarfile.TarInfo, _Buffered | None] | None] = queue.Queue(maxsize=64)
        self.error: BaseException | None = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        while (item := self.q.get()) is not None:
            try:
                if self.error is None:
                    _apply_one(self.app, item[0], item[1])  # type: ignore[arg-type]
            except BaseException as e:  # reported to the main thread
                self.error = e
            finally:
                self.q.task_done()
        self.q.task_done()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def submit(self, m: tarfile.TarInfo, stream: LayerStream) -> None:
        self.check()
        if m.isreg() and (m.sparse or m.size > self.MAX_BUFFERED):
            self.q.join()  # drain, then stream this one from the layer inline
            self.check()
            _apply_one(self.app, m, stream)
            return
        buf = None
        if m.isreg():
            stream.seek(m.offset_data)
            data = stream.read(m.size)
            if len(data) != m.size:
                raise self.app.fail(m.name, "truncated file data")
            buf = _Buffered(m.offset_data, data)
        self.q.put((m, buf))

    def close(self) -> None:
        self.q.put(None)
        self.t.join()
        self.check()


def _apply_one(app: Applier, m: tarfile.TarInfo, data: LayerStream | _Buffered) -> None:
    try:
        app.apply(m, data)  # type: ignore[arg-type]
    except LayerError:
        raise
    except OSError as e:
        raise app.fail(m.name, e.strerror or str(e)) from None


def apply_layer(
    blob: str,
    root: str,
    diff_id: str | None = None,
    snapshot: bool = False,
    lower: Callable[[], str | None] | None = None,
    what: str = "layer",
) -> LayerResult:
    """Apply one layer blob to `root`; checks the uncompressed digest against diff_id."""
    stream = LayerStream(blob)
    app = Applier(root, snapshot=snapshot, lower=lower, what=what)
    writer = _Writer(app)
    n = 0
    try:
        try:
            tf = tarfile.open(fileobj=stream, mode="r:")  # type: ignore[call-overload]
        except tarfile.ReadError as e:
            if stream.tell() == 0 or "empty" in str(e):
                tf = None  # an empty layer (no blocks at all)
            else:
                raise LayerError(f"{what}: not a tar archive: {e}") from None
        while tf is not None:
            try:
                m = tf.next()
            except tarfile.TarError as e:
                raise LayerError(f"{what}: corrupt tar after {n} entries: {e}") from None
            if m is None:
                break
            tf.members = []  # nothing looks members up again; keep memory flat
            n += 1
            writer.submit(m, stream)
        writer.close()
        app.finish_dirs()
        got = stream.finish()
    finally:
        if writer.t.is_alive():
            writer.error = writer.error or LayerError(f"{what}: aborted")
            writer.q.put(None)
            writer.t.join()
        app.close()
        stream.close()
    if diff_id and got != diff_id:
        raise LayerError(f"{what}: uncompressed digest {got} does not match diff_id {diff_id}")
    return LayerResult(got, n, app.used_lower, app.warnings)
