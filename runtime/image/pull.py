"""Pull: resolve a source to one platform's manifest and bring its blobs into the store."""

from __future__ import annotations

import json
import platform as _platform
import time
from typing import Any

from runtime.errors import OnggiError
from runtime.image import mediatypes as mt
from runtime.image.progress import Progress
from runtime.image.reference import Reference, parse_source
from runtime.image.store import Store

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
         "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> tuple[str, str, str]:
    m = _platform.machine()
    arch = _ARCH.get(m, m)
    variant = {"aarch64": "v8", "armv7l": "v7", "armv6l": "v6"}.get(m, "")
    return "linux", arch, variant


def parse_platform(text: str | None) -> tuple[str, str, str]:
    if not text:
        return host_platform()
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise OnggiError(f"--platform {text!r}: expected os/arch[/variant]")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def select_platform(index: dict[str, Any], want: tuple[str, str, str], where: str) -> dict[str, Any]:
    """The manifest descriptor for os/arch[/variant]; an exact variant beats a missing one."""
    mans = index.get("manifests")
    if not isinstance(mans, list):
        raise OnggiError(f"{where}: index has no manifests list")
    os_, arch, variant = want
    best, best_score = None, -1
    seen = []
    for d in mans:
        p = d.get("platform") or {}
        seen.append("/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x))
        if p.get("os") != os_ or p.get("architecture") != arch:
            continue
        v = p.get("variant") or ""
        if variant and v and v != variant:
            continue
        score = 2 if v == variant else 1
        if score > best_score:
            best, best_score = d, score
    if best is None:
        plats = ", ".join(s for s in seen if s) or "none"
        raise OnggiError(f"{where}: no manifest for platform {'/'.join(x for x in want if x)} (has: {plats})")
    return best


def make_source(text: str, tls_verify: bool | None, plain_http: bool | None) -> tuple[Any, str, bool]:
    """(fetcher, store name, parallel blob fetches?)."""
    src = parse_source(text)
    if src.kind == "oci":
        from runtime.image.layout import OCILayout

        lay = OCILayout(src.path, src.tag)
        return lay, lay.default_name(), False
    if src.kind == "docker-archive":
        from runtime.image.layout import DockerArchive

        arc = DockerArchive(src.path, src.tag)
        return arc, arc.default_name(), False
    from runtime.image.registry import Registry

    ref = src.ref
    assert ref is not None
    reg = RegistrySource(Registry(ref, tls_verify=tls_verify, plain_http=plain_http), ref)
    name = str(Reference(ref.registry, ref.repository, ref.tag, None if ref.tag else ref.digest))
    return reg, name, True


class RegistrySource:
    def __init__(self, reg: Any, ref: Reference) -> None:
        self.reg = reg
        self.ref = ref

    def top(self) -> tuple[bytes, str | None, str]:
        body, ctype, digest = self.reg.get_manifest(self.ref.digest or self.ref.tag or "latest")
        return body, ctype, digest

    def manifest(self, digest: str, media_type: str | None) -> tuple[bytes, str | None]:
        body, ctype, _ = self.reg.get_manifest(digest)
        return body, ctype or media_type

    def fetch_blob(self, store: Store, desc: dict[str, Any], progress: Progress) -> bool:
        return self.reg.fetch_blob(store, desc, progress)


def _json(body: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(body)
    except ValueError as e:
        raise OnggiError(f"{what}: invalid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise OnggiError(f"{what}: not a JSON object")
    return obj


def check_descriptor(d: Any, where: str) -> dict[str, Any]:
    from runtime.image.reference import check_digest

    if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
        raise OnggiError(f"{where}: descriptor without a digest")
    check_digest(d["digest"], f"{where}.digest")
    if not isinstance(d.get("size"), int) or d["size"] < 0:
        raise OnggiError(f"{where}.size: must be a non-negative integer")
    return d


def pull(
    store: Store,
    text: str,
    platform: str | None = None,
    tls_verify: bool | None = None,
    plain_http: bool | None = None,
    quiet: bool = False,
    name: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Pull `text` into the store and name it; returns (name, index record)."""
    want = parse_platform(platform)
    store.init()
    store.clean_tmp()
    src, default_name, parallel = make_source(text, tls_verify, plain_http)
    name = name or default_name
    progress = Progress(quiet)
    body, ctype, top_digest = src.top()
    obj = _json(body, f"{text}: manifest")
    mtype = mt.guess_type(obj, ctype)
    store.put_blob(body, top_digest)
    man_digest, man_body, man = top_digest, body, obj
    if mtype in mt.INDEXES:
        desc = check_descriptor(select_platform(obj, want, text), f"{text}: index manifests[]")
        man_body, ctype2 = src.manifest(desc["digest"], desc.get("mediaType"))
        man = _json(man_body, f"{text}@{desc['digest']}")
        mtype = mt.guess_type(man, desc.get("mediaType") or ctype2)
        man_digest = store.put_blob(man_body, desc["digest"])
    if mtype not in mt.MANIFESTS:
        raise OnggiError(f"{text}: manifest mediaType {mtype!r}: not an image manifest onggi reads")
    cfg_desc = check_descriptor(man.get("config"), f"{text}: manifest config")
    layers = man.get("layers")
    if not isinstance(layers, list):
        raise OnggiError(f"{text}: manifest layers: must be a list")
    for i, ld in enumerate(layers):
        check_descriptor(ld, f"{text}: manifest layers[{i}]")
        if ld.get("mediaType") not in mt.LAYERS:
            raise OnggiError(f"{text}: manifest layers[{i}].mediaType {ld.get('mediaType')!r}: not a layer type onggi reads")

    todo = [cfg_desc, *layers]
    missing = []
    for d in todo:
        if store.has_blob(d["digest"]):
            progress.line(f"Blob {d['digest'][7:19]}: already exists")
        elif d["digest"] not in {m["digest"] for m in missing}:
            missing.append(d)
    if parallel and len(missing) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(4, len(missing))) as ex:
            for f in [ex.submit(src.fetch_blob, store, d, progress) for d in missing]:
                f.result()
    else:
        for d in missing:
            src.fetch_blob(store, d, progress)

    config = store.read_json_blob(cfg_desc["digest"])
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
        raise OnggiError(
            f"{text}: config rootfs.diff_ids: {len(diff_ids) if isinstance(diff_ids, list) else 'no'} "
            f"entries for {len(layers)} layers"
        )
    rec = {
        "digest": top_digest,
        "manifest": man_digest,
        "config": cfg_desc["digest"],
        "source": text,
        "pulled": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with store.edit_index() as idx:
        idx["images"][name] = rec
    progress.line(f"Pulled {name} ({top_digest})")
    return name, rec
