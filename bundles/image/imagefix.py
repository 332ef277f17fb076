"""Image fixtures built from Debian packages, without internet: layers, OCI layouts,
docker-archives, a loopback `docker-registry` and a small push client.

Used by spec-tests/image, bundles/demo-image.sh and conformance/bench_unpack.py.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "echo", "ls", "cat", "id", "uname", "env", "pwd", "true", "false", "sleep", "touch", "stat", "mount"]
MTIME = 1700000000


# -- layers ------------------------------------------------------------------------------
@dataclass
class E:
    """One tar entry. kind: f(ile) d(ir) l(symlink) h(ardlink) c(har) b(lock) p(fifo)."""

    name: str
    kind: str = "f"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    link: str = ""
    dev: tuple[int, int] = (0, 0)
    mtime: int = MTIME
    xattrs: dict[str, bytes] = field(default_factory=dict)


_TYPES = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE, "h": tarfile.LNKTYPE,
          "c": tarfile.CHRTYPE, "b": tarfile.BLKTYPE, "p": tarfile.FIFOTYPE}


def tar_bytes(entries: list[E], eof: bool = True, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar stream of exactly these entries, in this order (no normalisation at all)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as tf:
        for e in entries:
            ti = tarfile.TarInfo(e.name)
            ti.type = _TYPES[e.kind]
            ti.mode, ti.uid, ti.gid, ti.mtime = e.mode, e.uid, e.gid, e.mtime
            ti.uname = ti.gname = ""
            ti.linkname = e.link
            ti.devmajor, ti.devminor = e.dev
            if e.xattrs:
                ti.pax_headers = {
                    f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in e.xattrs.items()
                }
            if e.kind == "f":
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
            else:
                tf.addfile(ti)
    data = buf.getvalue()
    if not eof:
        # Drop the end-of-archive blocks, as some writers do.
        data = data.rstrip(b"\0")
        data += b"\0" * (-len(data) % 512)
    return data


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if how == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def busybox_entries(extra_passwd: str = "") -> list[E]:
    """A minimal busybox rootfs: /bin/busybox from busybox-static, applet links, passwd/group."""
    bb = Path(BUSYBOX).read_bytes()
    es = [E("bin/", "d", mode=0o755), E("bin/busybox", data=bb, mode=0o755)]
    es += [E(f"bin/{a}", "l", link="busybox", mode=0o777) for a in APPLETS]
    es += [E("etc/", "d", mode=0o755),
           E("etc/passwd", data=("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
                                  "nobody:x:65534:65534:nobody:/:/bin/false\n" + extra_passwd).encode()),
           E("etc/group", data=b"root:x:0:\napp:x:1000:\nwheel:x:10:app\naudio:x:29:app\nnogroup:x:65534:\n"),
           E("tmp/", "d", mode=0o1777), E("root/", "d", mode=0o700), E("home/", "d", mode=0o755),
           E("home/app/", "d", mode=0o755, uid=1000, gid=1000),
           E("proc/", "d", mode=0o755), E("sys/", "d", mode=0o755), E("dev/", "d", mode=0o755)]
    return es


def image_config(cmd: list[str] | None = None, arch: str = "amd64", **cfg: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"Env": ["PATH=/bin"], "Cmd": cmd or ["sh"]}
    c.update(cfg)
    return {"architecture": arch, "os": "linux", "created": "2026-11-01T00:00:00Z", "config": c,
            "rootfs": {"type": "layers", "diff_ids": []}, "history": []}


# -- OCI layouts -------------------------------------------------------------------------
class OCIWriter:
    """Writes an OCI image layout; layers are given as uncompressed tars + a compression."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        idx = self.root / "index.json"
        self.index: list[dict[str, Any]] = json.loads(idx.read_text())["manifests"] if idx.exists() else []

    def blob(self, data: bytes, media_type: str) -> dict[str, Any]:
        d = sha(data)
        (self.root / "blobs" / "sha256" / d[7:]).write_bytes(data)
        return {"mediaType": media_type, "digest": d, "size": len(data)}

    def image(self, layers: list[tuple[bytes, str]], config: dict[str, Any], docker_types: bool = False) -> dict[str, Any]:
        config = json.loads(json.dumps(config))
        config["rootfs"] = {"type": "layers", "diff_ids": [sha(t) for t, _ in layers]}
        ldescs = []
        for t, how in layers:
            mtype = LAYER_TYPES[how]
            if docker_types:
                mtype = {"gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                         "none": "application/vnd.docker.image.rootfs.diff.tar"}[how]
            ldescs.append(self.blob(compress(t, how), mtype))
        cdesc = self.blob(json.dumps(config).encode(),
                          "application/vnd.docker.container.image.v1+json" if docker_types else OCI_CONFIG)
        mtype = "application/vnd.docker.distribution.manifest.v2+json" if docker_types else OCI_MANIFEST
        man = {"schemaVersion": 2, "mediaType": mtype, "config": cdesc, "layers": ldescs}
        desc = self.blob(json.dumps(man).encode(), mtype)
        desc["platform"] = {"os": config.get("os", "linux"), "architecture": config.get("architecture", "amd64")}
        return desc

    def multi(self, descs: list[dict[str, Any]], docker_types: bool = False) -> dict[str, Any]:
        mtype = "application/vnd.docker.distribution.manifest.list.v2+json" if docker_types else OCI_INDEX
        idx = {"schemaVersion": 2, "mediaType": mtype, "manifests": descs}
        return self.blob(json.dumps(idx).encode(), mtype)

    def tag(self, desc: dict[str, Any], tag: str) -> None:
        d = {k: v for k, v in desc.items() if k != "platform" or "manifests" not in json.loads(
            (self.root / "blobs" / "sha256" / desc["digest"][7:]).read_bytes())}
        d["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self.index.append(d)
        (self.root / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.index}))


def busybox_layout(root: str | Path, tag: str = "latest", how: str = "gzip",
                   cmd: list[str] | None = None) -> dict[str, Any]:
    w = OCIWriter(root)
    desc = w.image([(tar_bytes(busybox_entries()), how)],
                   image_config(cmd or ["sh", "-c", "echo hello from onggi"]))
    w.tag(desc, tag)
    return desc


def docker_archive(path: str | Path, layers: list[bytes], config: dict[str, Any], repotag: str | None) -> None:
    """A `docker save`-style tarball (uncompressed layer.tar files, <id>.json config)."""
    config = json.loads(json.dumps(config))
    config["rootfs"] = {"type": "layers", "diff_ids": [sha(t) for t in layers]}
    cbytes = json.dumps(config).encode()
    cname = sha(cbytes)[7:] + ".json"
    files: list[tuple[str, bytes]] = [(cname, cbytes)]
    names = []
    for t in layers:
        n = f"{sha(t)[7:]}/layer.tar"
        files.append((n, t))
        names.append(n)
    man = [{"Config": cname, "RepoTags": [repotag] if repotag else None, "Layers": names}]
    files.append(("manifest.json", json.dumps(man).encode()))
    with tarfile.open(path, "w") as tf:
        for n, data in files:
            ti = tarfile.TarInfo(n)
            ti.size = len(data)
            ti.mtime = MTIME
            tf.addfile(ti, io.BytesIO(data))


# -- a loopback registry -----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRegistry:
    """Debian's docker-registry (CNCF distribution) on 127.0.0.1, storage in a temp dir."""

    BIN = "/usr/bin/docker-registry"

    def __init__(self, workdir: str | Path, tls: tuple[str, str] | None = None) -> None:
        self.tls = tls  # (certificate, key) files: serve HTTPS
        self.dir = Path(workdir)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalRegistry:
        if not os.access(self.BIN, os.X_OK):
            raise FileNotFoundError(f"{self.BIN} missing (apt-get install docker-registry)")
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "config.yml"
        cfg.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
            + (f"  tls:\n    certificate: {self.tls[0]}\n    key: {self.tls[1]}\n" if self.tls else "")
        )
        self.proc = subprocess.Popen([self.BIN, "serve", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "log", "wb"), start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.dir / 'log').read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def blob_data_path(self, repo: str, digest: str) -> Path:
        h = digest[7:]
        return self.dir / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / h[:2] / h / "data"

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *a: Any) -> None:
        self.stop()


def push_layout(layout: str | Path, host: str, repo: str, tag: str, src_tag: str | None = None) -> str:
    """Push one tagged image (manifest or index) of an OCI layout to host/repo:tag over HTTP.
    Returns the pushed top-level digest."""
    root = Path(layout)
    index = json.loads((root / "index.json").read_text())
    want = src_tag or tag
    top = next(m for m in index["manifests"]
               if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == want)
    c = http.client.HTTPConnection(host, timeout=60)

    def blob(d: str) -> bytes:
        return (root / "blobs" / "sha256" / d[7:]).read_bytes()

    def put_blob(d: str) -> None:
        c.request("HEAD", f"/v2/{repo}/blobs/{d}")
        r = c.getresponse()
        r.read()
        if r.status == 200:
            return
        c.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
        r = c.getresponse()
        r.read()
        if r.status != 202:
            raise RuntimeError(f"upload start: HTTP {r.status}")
        loc = urllib.parse.urlsplit(r.getheader("Location"))
        q = (loc.query + "&" if loc.query else "") + urllib.parse.urlencode({"digest": d})
        data = blob(d)
        c.request("PUT", f"{loc.path}?{q}", body=data,
                  headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
        r = c.getresponse()
        body = r.read()
        if r.status != 201:
            raise RuntimeError(f"upload {d}: HTTP {r.status} {body[:200]!r}")

    def put_manifest(desc: dict[str, Any], ref: str) -> None:
        data = blob(desc["digest"])
        obj = json.loads(data)
        if "manifests" in obj:
            for m in obj["manifests"]:
                put_manifest(m, m["digest"])
        else:
            put_blob(obj["config"]["digest"])
            for ld in obj["layers"]:
                put_blob(ld["digest"])
        c.request("PUT", f"/v2/{repo}/manifests/{ref}", body=data,
                  headers={"Content-Type": obj.get("mediaType") or desc["mediaType"]})
        r = c.getresponse()
        body = r.read()
        if r.status != 201:
            raise RuntimeError(f"manifest {ref}: HTTP {r.status} {body[:300]!r}")

    put_manifest(top, tag)
    c.close()
    return top["digest"]


def rmtree(p: str | Path) -> None:
    shutil.rmtree(p, ignore_errors=True)
