"""The content-addressed store: blobs by digest, layer snapshots, an index of names.

Layout under the store root:
  blobs/sha256/<hex>        verified content, written temp + rename
  snapshots/<key>/fs        one layer extracted in overlayfs form (key: diffID hex, or
                            "c-<chainID hex>" for a layer whose hardlinks reach into lower layers)
  overlays/<id>/{upper,work} per-bundle writable dirs of overlay-mode bundles
  index.json                {"images": {name: record}, "bundles": {path: record}}
  locks/, tmp/              flock files and in-progress writes
"""

from __future__ import annotations

import errno
import fcntl
import os

from runtime import fastjson
from runtime.errors import OnggiError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~5 ms)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path
    from typing import Any

# Nothing heavy at import time: unpacking a cached image in overlay mode (the hot path)
# needs no pathlib, hashlib, json, re or shutil. The Path-valued attributes of Store are
# built on first use; the hot path uses their str twins (_root, _blobs, _snapshots, …).

INDEX_VERSION = 1
_HEX = frozenset("0123456789abcdef")


def sha256_hex(digest: str) -> str:
    if not (len(digest) == 71 and digest.startswith("sha256:") and _HEX.issuperset(digest[7:])):
        from runtime.image.reference import check_digest  # the full check and its message

        check_digest(digest)
    return digest.split(":", 1)[1]


def sha256(data: bytes = b""):  # noqa: ANN201 - a hashlib sha256 object
    """hashlib.sha256 without importing hashlib (and OpenSSL: ~5 ms) on the hot path."""
    try:
        from _sha256 import sha256 as new  # CPython <= 3.11
    except ImportError:
        try:
            from _sha2 import sha256 as new  # CPython >= 3.12
        except ImportError:
            from hashlib import sha256 as new
    return new(data)


class suppress:  # noqa: N801 - contextlib.suppress, without contextlib (and functools, collections)
    def __init__(self, *excs: type[BaseException]) -> None:
        self.excs = excs

    def __enter__(self) -> None:
        return None

    def __exit__(self, t: type[BaseException] | None, v: object, tb: object) -> bool:
        return t is not None and issubclass(t, self.excs)


class _Flock:
    """What Store.lock returns: the flock is taken on entry, released on exit."""

    def __init__(self, locks: str, name: str, shared: bool) -> None:
        self.locks, self.name, self.shared = locks, name, shared

    def __enter__(self) -> None:
        os.makedirs(self.locks, exist_ok=True)
        self.fd = os.open(os.path.join(self.locks, f"{self.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise

    def __exit__(self, t: object, v: object, tb: object) -> bool:
        os.close(self.fd)
        return False


class _IndexEdit:
    """What Store.edit_index returns: the index under its lock, written back on a clean exit."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> dict[str, Any]:
        self.store.init()
        self.lock = self.store.lock("index")
        self.lock.__enter__()
        try:
            self.idx = self.store.read_index()
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise
        return self.idx

    def __exit__(self, t: object, v: object, tb: object) -> bool:
        try:
            if t is None:
                self.store.write_atomic(self.store._index_path, fastjson.dumps(self.idx, indent=1, sort_keys=True).encode())
        finally:
            self.lock.__exit__(None, None, None)
        return False


def _path(s: str) -> Path:
    from pathlib import Path

    return Path(s)


class DigestMismatch(OnggiError):
    def __init__(self, what: str, want: str, got: str) -> None:
        super().__init__(f"{what}: digest mismatch: expected {want}, got {got}")


class Store:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = r = os.path.abspath(root)
        self._blobs = os.path.join(r, "blobs", "sha256")
        self._snapshots = os.path.join(r, "snapshots")
        self._overlays = os.path.join(r, "overlays")
        self._tmp = os.path.join(r, "tmp")
        self._locks = os.path.join(r, "locks")
        self._index_path = os.path.join(r, "index.json")

    root = property(lambda self: _path(self._root))
    blobs = property(lambda self: _path(self._blobs))
    snapshots = property(lambda self: _path(self._snapshots))
    overlays = property(lambda self: _path(self._overlays))
    tmp = property(lambda self: _path(self._tmp))
    locks = property(lambda self: _path(self._locks))
    index_path = property(lambda self: _path(self._index_path))

    def init(self) -> Store:
        try:
            for d in (self._blobs, self._snapshots, self._overlays, self._tmp, self._locks):
                os.makedirs(d, exist_ok=True)
        except OSError as e:
            raise OnggiError(f"store {self._root}: cannot create: {e.strerror}") from None
        return self

    # -- locks --------------------------------------------------------------------------
    def lock(self, name: str, shared: bool = False) -> _Flock:
        """An flock on locks/<name>: released by the kernel if we die, so no stale locks."""
        return _Flock(self._locks, name, shared)

    # -- blobs --------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return _path(self.blob_file(digest))

    def blob_file(self, digest: str) -> str:
        """blob_path as a str."""
        return os.path.join(self._blobs, sha256_hex(digest))

    def has_blob(self, digest: str) -> bool:
        return os.path.isfile(self.blob_file(digest))

    def read_blob(self, digest: str) -> bytes:
        try:
            with open(self.blob_file(digest), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise OnggiError(f"blob {digest}: not in store {self._root}") from None

    def read_json_blob(self, digest: str) -> dict[str, Any]:
        data = self.read_blob(digest)
        try:
            obj = fastjson.loads(data)
        except ValueError as e:
            raise OnggiError(f"blob {digest}: invalid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise OnggiError(f"blob {digest}: JSON is not an object")
        return obj

    def put_blob(self, data: bytes, digest: str | None = None) -> str:
        got = "sha256:" + sha256(data).hexdigest()
        if digest and got != digest:
            raise DigestMismatch(f"blob {digest}", digest, got)
        if not self.has_blob(got):
            self.write_atomic(self.blob_path(got), data)
        return got

    def put_blob_stream(
        self, digest: str, chunks: Iterable[bytes], size: int | None = None, what: str = ""
    ) -> Path:
        """Write a stream to the store, hashing while writing; nothing is kept on mismatch."""
        hexd = sha256_hex(digest)
        dest = self.blobs / hexd
        with self.lock(hexd):
            if dest.is_file():
                return dest
            tmp = self.tmp / f"{hexd}.{os.getpid()}"
            h = sha256()
            n = 0
            try:
                with open(tmp, "wb") as f:
                    for c in chunks:
                        h.update(c)
                        f.write(c)
                        n += len(c)
                got = "sha256:" + h.hexdigest()
                if got != digest:
                    raise DigestMismatch(what or f"blob {digest}", digest, got)
                if size is not None and n != size:
                    raise OnggiError(f"{what or 'blob ' + digest}: size {n}, descriptor says {size}")
                os.rename(tmp, dest)
            finally:
                with suppress(FileNotFoundError):
                    os.unlink(tmp)
        return dest

    def write_atomic(self, path: str | os.PathLike[str], data: bytes) -> None:
        tmp = os.path.join(self._tmp, f"{os.path.basename(path)}.{os.getpid()}.w")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)

    # -- index --------------------------------------------------------------------------
    def read_index(self) -> dict[str, Any]:
        try:
            with open(self._index_path) as f:
                idx = fastjson.loads(f.read())
        except FileNotFoundError:
            idx = {}
        except ValueError as e:
            raise OnggiError(f"store index {self._index_path}: invalid JSON: {e}") from None
        idx.setdefault("version", INDEX_VERSION)
        idx.setdefault("images", {})
        idx.setdefault("bundles", {})
        return idx

    def edit_index(self) -> _IndexEdit:
        """Read-modify-write the index under the store lock, replaced atomically."""
        return _IndexEdit(self)

    # -- snapshots ----------------------------------------------------------------------
    def snapshot_dir(self, key: str) -> Path:
        return self.snapshots / key

    def clean_tmp(self) -> None:
        """Remove leftovers of dead writers (their flocks are gone, so nobody holds them)."""
        if not os.path.isdir(self._tmp):
            return
        for name in os.listdir(self._tmp):
            if name.endswith(".partial"):
                continue  # a resumable download, guarded by its blob's flock
            pid = _pid_of(name)
            if pid is not None and (pid == os.getpid() or _alive(pid)):
                continue
            remove_tree(os.path.join(self._tmp, name))
        if os.path.isdir(self._snapshots):
            for name in os.listdir(self._snapshots):
                if not name.startswith("tmp-"):
                    continue
                p = os.path.join(self._snapshots, name)
                pid = _pid_of(name.rsplit(".", 1)[-1])
                if pid is not None and (pid == os.getpid() or _alive(pid)):
                    continue
                if os.path.isdir(os.path.join(p, "lower")):
                    from runtime.image.overlay import umount

                    with suppress(OnggiError):
                        umount(os.path.join(p, "lower"), detach=True)  # a dead pull's lower view
                remove_tree(p)


def _pid_of(name: str) -> int | None:
    for part in name.split("."):
        if part.isdigit():
            return int(part)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_tree(path: str | os.PathLike[str]) -> None:
    """rm -rf that also clears immutable-free read-only dirs (mode 000 dirs from layers)."""

    def onerror(func: Any, p: str, exc: Any) -> None:
        e = exc[1] if isinstance(exc, tuple) else exc
        if isinstance(e, FileNotFoundError):
            return
        if isinstance(e, PermissionError) or getattr(e, "errno", None) == errno.EACCES:
            parent = os.path.dirname(p)
            with suppress(OSError):
                os.chmod(parent, 0o700)
            with suppress(OSError):
                os.chmod(p, 0o700)
            func(p)
            return
        raise e

    if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.isdir(path):
        import shutil

        shutil.rmtree(path, onerror=onerror)


def import_stream(store: Store, chunks: Iterable[bytes]) -> tuple[str, int]:
    """Store content whose digest is not known in advance: hash while writing, then rename."""
    store.init()
    tmp = os.path.join(store._tmp, f"import.{os.getpid()}.{id(chunks)}")
    h = sha256()
    n = 0
    try:
        with open(tmp, "wb") as f:
            for c in chunks:
                h.update(c)
                f.write(c)
                n += len(c)
        digest = "sha256:" + h.hexdigest()
        dest = store.blob_file(digest)
        with store.lock(h.hexdigest()):
            if not os.path.isfile(dest):
                os.rename(tmp, dest)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
    return digest, n
