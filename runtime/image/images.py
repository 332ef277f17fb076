"""Names in the store: lookup, ls, tag, rm and garbage collection, inspect."""

from __future__ import annotations

import os

from runtime.errors import OnggiError
from runtime.image.store import Store, remove_tree

TYPE_CHECKING = False  # no typing import on the cached-overlay hot path
if TYPE_CHECKING:
    from typing import Any


def find_image(store: Store, text: str) -> tuple[str, dict[str, Any]] | None:
    """A stored image by name (normalized like Docker), by digest, or by a digest prefix."""
    idx = store.read_index()
    images = idx["images"]
    if text in images:
        return text, images[text]
    try:
        from runtime.image.reference import normalize_name, parse_reference

        n = normalize_name(text)
        if n in images:
            return n, images[n]
        r = parse_reference(text)
        if r.digest:
            for k, rec in sorted(images.items()):
                if r.digest in (rec["digest"], rec["manifest"]) and split_name(k)[0] == r.name:
                    return k, rec
    except OnggiError:
        pass
    hexpart = text[7:] if text.startswith("sha256:") else text
    if len(hexpart) >= 6 and all(c in "0123456789abcdef" for c in hexpart):
        for k, rec in sorted(images.items()):
            for d in (rec["digest"], rec["manifest"], rec["config"]):
                if d[7:].startswith(hexpart):
                    return k, rec
    return None


def require_image(store: Store, text: str) -> tuple[str, dict[str, Any]]:
    hit = find_image(store, text)
    if hit is None:
        raise OnggiError(f"image {text}: not in store {store.root} (onggi image pull it first)")
    return hit


def split_name(name: str) -> tuple[str, str]:
    if "@" in name:
        return name.split("@", 1)[0], "<none>"
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "<none>"


def list_images(store: Store) -> list[dict[str, Any]]:
    idx = store.read_index()
    rows = []
    for name, rec in sorted(idx["images"].items()):
        try:
            man = store.read_json_blob(rec["manifest"])
            cfg = store.read_json_blob(rec["config"])
        except OnggiError:
            continue  # a half-removed record: nothing to show
        size = sum(int(ld.get("size", 0)) for ld in man.get("layers") or []) + int(man["config"].get("size", 0))
        repo, tag = split_name(name)
        rows.append(
            {
                "name": name,
                "repository": repo,
                "tag": tag,
                "digest": rec["digest"],
                "manifest": rec["manifest"],
                "id": rec["config"],
                "size": size,
                "created": cfg.get("created", ""),
            }
        )
    return rows


def tag(store: Store, src: str, dst: str) -> str:
    from runtime.image.reference import normalize_name

    _, rec = require_image(store, src)
    new = normalize_name(dst)
    with store.edit_index() as idx:
        idx["images"][new] = dict(rec)
    return new


def _bundle_live(path: str, rec: dict[str, Any]) -> bool:
    from runtime.image.overlay import is_mountpoint

    return is_mountpoint(os.path.join(path, "rootfs")) or os.path.isdir(path)


def remove(store: Store, refs: list[str], force: bool = False) -> list[str]:
    """Untag names (or every name of a digest); refuse while an overlay bundle uses the
    image unless forced; then collect unreferenced blobs and snapshots."""
    removed: list[str] = []
    with store.lock("gc"):
        with store.edit_index() as idx:
            images = idx["images"]
            for text in refs:
                hit = find_image(store, text) if text not in images else (text, images[text])
                if hit is None or hit[0] not in images:
                    raise OnggiError(f"image {text}: not in store {store.root}")
                name, rec = hit
                is_digest = name != text and name != _normalized(text)  # found by digest or ID
                names = [k for k, r in images.items() if r["manifest"] == rec["manifest"]] if is_digest else [name]
                left = [k for k, r in images.items() if r["manifest"] == rec["manifest"] and k not in names]
                users = [
                    b for b, br in idx["bundles"].items() if br["manifest"] == rec["manifest"] and _bundle_live(b, br)
                ]
                if users and not left and not force:
                    raise OnggiError(
                        f"image {text}: in use by overlay bundle {users[0]} "
                        f"(onggi image unmount it first, or rm --force)"
                    )
                for k in names:
                    images.pop(k, None)
                    removed.append(k)
            # Bundles whose directory is gone no longer pin anything.
            for b in [b for b, br in idx["bundles"].items() if not _bundle_live(b, br)]:
                br = idx["bundles"].pop(b)
                remove_tree(store.overlays / br["overlay"])
            gc(store, idx)
    return removed


def _normalized(text: str) -> str | None:
    from runtime.image.reference import normalize_name

    try:
        return normalize_name(text)
    except OnggiError:
        return None


def gc(store: Store, idx: dict[str, Any]) -> tuple[int, int]:
    """Delete blobs and snapshots no image or live bundle references. Caller holds "gc"."""
    from runtime.image.bundle import snapshot_keys

    keep_blobs: set[str] = set()
    keep_snaps: set[str] = set()
    for rec in idx["images"].values():
        keep_blobs.update((rec["digest"], rec["manifest"], rec["config"]))
        try:
            man = store.read_json_blob(rec["manifest"])
            cfg = store.read_json_blob(rec["config"])
        except OnggiError:
            continue
        keep_blobs.update(ld["digest"] for ld in man.get("layers") or [])
        for dk, ck in snapshot_keys((cfg.get("rootfs") or {}).get("diff_ids") or []):
            keep_snaps.update((dk, ck))
    for br in idx["bundles"].values():
        keep_snaps.update(br.get("snapshots") or [])
    nb = ns = 0
    if store.blobs.is_dir():
        for p in store.blobs.iterdir():
            if "sha256:" + p.name not in keep_blobs:
                p.unlink()
                nb += 1
    if store.snapshots.is_dir():
        for p in store.snapshots.iterdir():
            if p.name.startswith(("tmp-", ".")) or p.name in keep_snaps:
                continue
            remove_tree(p)
            ns += 1
    # Lock files of blobs and snapshots that are gone: nobody holds them, since every
    # pull and unpack holds "gc" shared and we hold it exclusive.
    for p in store.locks.glob("*.lock"):
        stem = p.name[: -len(".lock")]
        if stem in ("gc", "index"):
            continue
        h = stem[len("snap-") :] if stem.startswith("snap-") else stem
        if not (store.blobs / h).exists() and h not in keep_snaps:
            p.unlink()
    return nb, ns


def inspect(store: Store, text: str) -> dict[str, Any]:
    from runtime.image.bundle import image_parts

    name, rec = require_image(store, text)
    man, cfg, layers, diff_ids = image_parts(store, rec)
    out: dict[str, Any] = {
        "name": name,
        "digest": rec["digest"],
        "manifestDigest": rec["manifest"],
        "configDigest": rec["config"],
        "source": rec.get("source"),
        "pulled": rec.get("pulled"),
        "manifest": man,
        "config": cfg,
        "layers": [
            {"digest": ld["digest"], "size": ld.get("size"), "mediaType": ld.get("mediaType"), "diffID": d}
            for ld, d in zip(layers, diff_ids, strict=True)
        ],
    }
    if rec["digest"] != rec["manifest"] and store.has_blob(rec["digest"]):
        out["index"] = store.read_json_blob(rec["digest"])
    return out
