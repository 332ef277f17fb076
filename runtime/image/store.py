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

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from runtime.errors import OnggiError
from runtime.image.reference import check_digest

INDEX_VERSION = 1


def sha256_hex(digest: str) -> str:
    check_digest(digest)
    return digest.split(":", 1)[1]


class DigestMismatch(OnggiError):
    def __init__(self, what: str, want: str, got: str) -> None:
        super().__init__(f"{what}: digest mismatch: expected {want}, got {got}")


class Store:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.abspath(root))
        self.blobs = self.root / "blobs" / "sha256"
        self.snapshots = self.root / "snapshots"
        self.overlays = self.root / "overlays"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"
        self.index_path = self.root / "index.json"

    def init(self) -> Store:
        try:
            for d in (self.blobs, self.snapshots, self.overlays, self.tmp, self.locks):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OnggiError(f"store {self.root}: cannot create: {e.strerror}") from None
        return self

    # -- locks --------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str, shared: bool = False) -> Iterator[None]:
        """An flock on locks/<name>: released by the kernel if we die, so no stale locks."""
        self.locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.locks / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- blobs --------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.blobs / sha256_hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise OnggiError(f"blob {digest}: not in store {self.root}") from None

    def read_json_blob(self, digest: str) -> dict[str, Any]:
        data = self.read_blob(digest)
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise OnggiError(f"blob {digest}: invalid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise OnggiError(f"blob {digest}: JSON is not an object")
        return obj

    def put_blob(self, data: bytes, digest: str | None = None) -> str:
        got = "sha256:" + hashlib.sha256(data).hexdigest()
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
            h = hashlib.sha256()
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
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        return dest

    def write_atomic(self, path: Path, data: bytes) -> None:
        tmp = self.tmp / f"{path.name}.{os.getpid()}.w"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)

    # -- index --------------------------------------------------------------------------
    def read_index(self) -> dict[str, Any]:
        try:
            idx = json.loads(self.index_path.read_text())
        except FileNotFoundError:
            idx = {}
        except ValueError as e:
            raise OnggiError(f"store index {self.index_path}: invalid JSON: {e}") from None
        idx.setdefault("version", INDEX_VERSION)
        idx.setdefault("images", {})
        idx.setdefault("bundles", {})
        return idx

    @contextlib.contextmanager
    def edit_index(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write the index under the store lock, replaced atomically."""
        self.init()
        with self.lock("index"):
            idx = self.read_index()
            yield idx
            self.write_atomic(self.index_path, json.dumps(idx, indent=1, sort_keys=True).encode())

    # -- snapshots ----------------------------------------------------------------------
    def snapshot_dir(self, key: str) -> Path:
        return self.snapshots / key

    def clean_tmp(self) -> None:
        """Remove leftovers of dead writers (their flocks are gone, so nobody holds them)."""
        if not self.tmp.is_dir():
            return
        for p in self.tmp.iterdir():
            if p.name.endswith(".partial"):
                continue  # a resumable download, guarded by its blob's flock
            pid = _pid_of(p.name)
            if pid is not None and (pid == os.getpid() or _alive(pid)):
                continue
            remove_tree(p)
        if self.snapshots.is_dir():
            for p in self.snapshots.glob("tmp-*"):
                pid = _pid_of(p.name.rsplit(".", 1)[-1])
                if pid is not None and (pid == os.getpid() or _alive(pid)):
                    continue
                if (p / "lower").is_dir():
                    from runtime.image.overlay import umount

                    with contextlib.suppress(OnggiError):
                        umount(str(p / "lower"), detach=True)  # a dead pull's lower view
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
            with contextlib.suppress(OSError):
                os.chmod(parent, 0o700)
            with contextlib.suppress(OSError):
                os.chmod(p, 0o700)
            func(p)
            return
        raise e

    if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path, onerror=onerror)


def import_stream(store: Store, chunks: Iterable[bytes]) -> tuple[str, int]:
    """Store content whose digest is not known in advance: hash while writing, then rename."""
    store.init()
    tmp = store.tmp / f"import.{os.getpid()}.{id(chunks)}"
    h = hashlib.sha256()
    n = 0
    try:
        with open(tmp, "wb") as f:
            for c in chunks:
                h.update(c)
                f.write(c)
                n += len(c)
        digest = "sha256:" + h.hexdigest()
        dest = store.blob_path(digest)
        with store.lock(h.hexdigest()):
            if not dest.is_file():
                os.rename(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return digest, n
