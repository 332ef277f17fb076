"""Local sources: an OCI image layout directory and a `docker save` archive."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from runtime.errors import OnggiError
from runtime.image import mediatypes as mt
from runtime.image.progress import Progress
from runtime.image.reference import check_digest
from runtime.image.store import DigestMismatch, Store, import_stream

REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1 << 20


def _load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise OnggiError(f"{what}: invalid JSON: {e}") from None


class OCILayout:
    """An OCI image layout (oci-layout, index.json, blobs/<alg>/<hex>)."""

    def __init__(self, path: str, tag: str | None) -> None:
        self.path = Path(path)
        self.tag = tag
        if not (self.path / "index.json").is_file():
            raise OnggiError(f"oci:{path}: no index.json (not an OCI image layout)")
        lay = self.path / "oci-layout"
        if lay.is_file():
            v = _load_json(lay.read_bytes(), f"{lay}").get("imageLayoutVersion")
            if not isinstance(v, str) or not v.startswith("1."):
                raise OnggiError(f"{lay}: imageLayoutVersion {v!r}: unsupported (want 1.x)")

    def default_name(self) -> str:
        base = self.path.resolve().name.lower() or "image"
        safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in base).strip("._-") or "image"
        return f"localhost/{safe}:{self.tag or 'latest'}"

    def _blob(self, digest: str) -> Path:
        check_digest(digest, f"oci:{self.path}: descriptor digest")
        return self.path / "blobs" / "sha256" / digest.split(":", 1)[1]

    def top(self) -> tuple[bytes, str | None, str]:
        index = _load_json((self.path / "index.json").read_bytes(), f"{self.path}/index.json")
        mans = index.get("manifests")
        if not isinstance(mans, list) or not mans:
            raise OnggiError(f"{self.path}/index.json: manifests: empty")
        if self.tag:
            hits = [m for m in mans if (m.get("annotations") or {}).get(REF_NAME) == self.tag]
            if not hits:
                tags = sorted({(m.get("annotations") or {}).get(REF_NAME, "") for m in mans} - {""})
                raise OnggiError(f"oci:{self.path}:{self.tag}: no such tag (tags: {', '.join(tags) or 'none'})")
            desc = hits[0]
        elif len(mans) == 1:
            desc = mans[0]
        else:
            raise OnggiError(f"oci:{self.path}: {len(mans)} manifests in index.json; name one with oci:DIR:TAG")
        body, mtype = self.manifest(desc["digest"], desc.get("mediaType"))
        return body, mtype, desc["digest"]

    def manifest(self, digest: str, media_type: str | None) -> tuple[bytes, str | None]:
        p = self._blob(digest)
        try:
            body = p.read_bytes()
        except FileNotFoundError:
            raise OnggiError(f"oci:{self.path}: blob {digest} is missing") from None
        got = "sha256:" + hashlib.sha256(body).hexdigest()
        if got != digest:
            raise DigestMismatch(f"oci:{self.path}: manifest {digest}", digest, got)
        return body, media_type

    def fetch_blob(self, store: Store, desc: dict[str, Any], progress: Progress) -> bool:
        digest = desc["digest"]
        if store.has_blob(digest):
            return False
        p = self._blob(digest)
        if not p.is_file():
            raise OnggiError(f"oci:{self.path}: blob {digest} is missing")
        progress.start(digest[7:19], digest[7:19], desc.get("size"))
        store.put_blob_stream(digest, _counted(_file_chunks(p), progress, digest[7:19]), desc.get("size"),
                              f"oci:{self.path}: blob {digest}")
        progress.done(digest[7:19])
        return True


def _counted(chunks: Any, progress: Progress, key: str) -> Any:
    for c in chunks:
        progress.update(key, len(c))
        yield c


def _file_chunks(p: Path) -> Any:
    with open(p, "rb", buffering=0) as f:
        while c := f.read(CHUNK):
            yield c


class DockerArchive:
    """A `docker save` tarball: manifest.json + config JSON + layer tars, turned into a
    Docker schema2 manifest whose blobs are the archive's own files."""

    def __init__(self, path: str, name: str | None) -> None:
        self.path = path
        self.want = name
        try:
            self.tar = tarfile.open(path, "r:*")
        except (OSError, tarfile.TarError) as e:
            raise OnggiError(f"docker-archive:{path}: cannot read: {e}") from None
        self.members = {os.path.normpath(m.name): m for m in self.tar.getmembers() if m.isreg()}
        doc = _load_json(self._read("manifest.json"), f"docker-archive:{path}: manifest.json")
        if not isinstance(doc, list) or not doc:
            raise OnggiError(f"docker-archive:{path}: manifest.json: expected a non-empty list")
        self.entry = self._pick(doc)
        self.body: bytes | None = None
        self.blobs: dict[str, str] = {}  # digest -> member name

    def _read(self, name: str) -> bytes:
        m = self.members.get(os.path.normpath(name))
        if m is None:
            raise OnggiError(f"docker-archive:{self.path}: {name}: missing from the archive")
        f = self.tar.extractfile(m)
        assert f is not None
        return f.read()

    def _pick(self, doc: list[dict[str, Any]]) -> dict[str, Any]:
        if self.want:
            from runtime.image.reference import normalize_name

            want = normalize_name(self.want)
            for e in doc:
                for t in e.get("RepoTags") or []:
                    if normalize_name(t) == want:
                        return e
            raise OnggiError(f"docker-archive:{self.path}: no image tagged {self.want}")
        if len(doc) > 1:
            raise OnggiError(f"docker-archive:{self.path}: {len(doc)} images; name one with docker-archive:FILE:NAME:TAG")
        return doc[0]

    def default_name(self) -> str:
        from runtime.image.reference import normalize_name

        if self.want:
            return normalize_name(self.want)
        tags = self.entry.get("RepoTags") or []
        if tags:
            return normalize_name(tags[0])
        base = Path(self.path).name.split(".")[0].lower() or "image"
        safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in base).strip("._-") or "image"
        return f"localhost/{safe}:latest"

    def top(self) -> tuple[bytes, str | None, str]:
        if self.body is None:
            self.body = self._synthesize()
        return self.body, mt.DOCKER_MANIFEST, "sha256:" + hashlib.sha256(self.body).hexdigest()

    def _member_digest(self, name: str) -> tuple[str, int, bytes]:
        m = self.members.get(os.path.normpath(name))
        if m is None:
            raise OnggiError(f"docker-archive:{self.path}: {name}: missing from the archive")
        f = self.tar.extractfile(m)
        assert f is not None
        h = hashlib.sha256()
        head = f.read(4)
        h.update(head)
        while c := f.read(CHUNK):
            h.update(c)
        return "sha256:" + h.hexdigest(), m.size, head

    def _synthesize(self) -> bytes:
        cfg_name = self.entry.get("Config")
        if not isinstance(cfg_name, str):
            raise OnggiError(f"docker-archive:{self.path}: manifest.json: Config: missing")
        cdig, csize, _ = self._member_digest(cfg_name)
        self.blobs[cdig] = cfg_name
        layers = []
        for ln in self.entry.get("Layers") or []:
            d, size, head = self._member_digest(ln)
            self.blobs[d] = ln
            if head[:2] == b"\x1f\x8b":
                mtype = mt.DOCKER_LAYER_GZIP
            elif head == b"\x28\xb5\x2f\xfd":
                mtype = mt.OCI_LAYER_ZSTD
            else:
                mtype = mt.DOCKER_LAYER
            layers.append({"mediaType": mtype, "size": size, "digest": d})
        man = {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": {"mediaType": mt.DOCKER_CONFIG, "size": csize, "digest": cdig},
            "layers": layers,
        }
        return json.dumps(man, separators=(",", ":")).encode()

    def manifest(self, digest: str, media_type: str | None) -> tuple[bytes, str | None]:
        raise OnggiError(f"docker-archive:{self.path}: has no manifest {digest}")

    def fetch_blob(self, store: Store, desc: dict[str, Any], progress: Progress) -> bool:
        digest = desc["digest"]
        if store.has_blob(digest):
            return False
        name = self.blobs[digest]
        m = self.members[os.path.normpath(name)]
        f = self.tar.extractfile(m)
        assert f is not None
        progress.start(digest[7:19], digest[7:19], m.size)

        def chunks() -> Any:
            while c := f.read(CHUNK):
                yield c

        got, _ = import_stream(store, _counted(chunks(), progress, digest[7:19]))
        if got != digest:
            raise DigestMismatch(f"docker-archive:{self.path}: {name}", digest, got)
        progress.done(digest[7:19])
        return True
