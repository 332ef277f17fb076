"""Bundles from stored images: copy mode (full extraction) or overlay mode (shared snapshots)."""

from __future__ import annotations

import os

from runtime import fastjson
from runtime.errors import OnggiError
from runtime.image import overlay
from runtime.image.progress import Progress
from runtime.image.store import Store, remove_tree, sha256, sha256_hex, suppress

TYPE_CHECKING = False  # no typing/pathlib imports on the cached-overlay hot path
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any


def image_parts(store: Store, rec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], list[str]]:
    """(manifest, config, layer descriptors, diff_ids) of a stored image record."""
    man = store.read_json_blob(rec["manifest"])
    cfg = store.read_json_blob(rec["config"])
    layers = man.get("layers") or []
    diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(layers):
        raise OnggiError(f"image {rec['manifest']}: {len(layers)} layers but {len(diff_ids)} diff_ids")
    return man, cfg, layers, diff_ids


def snapshot_keys(diff_ids: list[str]) -> list[tuple[str, str]]:
    """Per layer: (diffID hex, "c-" + chainID hex) — the two names a snapshot can have."""
    out, chain = [], ""
    for d in diff_ids:
        chain = d if not chain else "sha256:" + sha256(f"{chain} {d}".encode()).hexdigest()
        out.append((sha256_hex(d), "c-" + sha256_hex(chain)))
    return out


def ensure_snapshots(store: Store, layers: list[dict[str, Any]], diff_ids: list[str], progress: Progress) -> list[str]:
    """Extract each layer once into snapshots/<key>/fs; later bundles reuse them."""
    keys: list[str] = []
    for i, ((dhex, chain_key), ld) in enumerate(zip(snapshot_keys(diff_ids), layers, strict=True)):
        with store.lock("snap-" + dhex):
            if os.path.isdir(os.path.join(store._snapshots, dhex, "fs")):
                keys.append(dhex)
                continue
            if os.path.isdir(os.path.join(store._snapshots, chain_key, "fs")):
                keys.append(chain_key)
                continue
            import json

            from runtime.image.unpack import apply_layer  # only when something is extracted

            tmp = store.snapshots / f"tmp-{dhex[:16]}.{os.getpid()}"
            remove_tree(tmp)
            (tmp / "fs").mkdir(parents=True)
            view = _LowerView(store, keys, tmp / "lower")
            try:
                res = apply_layer(
                    str(store.blob_path(ld["digest"])),
                    str(tmp / "fs"),
                    diff_ids[i],
                    snapshot=True,
                    lower=view.get,
                    what=f"layer {i} ({ld['digest']})",
                )
            except BaseException:
                view.close()
                remove_tree(tmp)
                raise
            view.close()
            with suppress(FileNotFoundError):
                (tmp / "lower").rmdir()
            key = chain_key if res.used_lower else dhex
            (tmp / "meta.json").write_text(json.dumps({"diffID": diff_ids[i], "entries": res.entries}))
            os.rename(tmp, store.snapshots / key)
            progress.line(f"Layer {dhex[:12]}: extracted ({res.entries} entries)")
            keys.append(key)
    return keys


class _LowerView:
    """A read-only overlay of the lower snapshots, mounted only if a hardlink needs it."""

    def __init__(self, store: Store, keys: list[str], where: Path) -> None:
        self.store, self.keys, self.where = store, list(keys), where
        self.mounted = False

    def get(self) -> str | None:
        if not self.keys:
            return None
        if not self.mounted:
            self.where.mkdir(exist_ok=True)
            overlay.mount_overlay([f"{k}/fs" for k in reversed(self.keys)], None, None, str(self.where), str(self.store.snapshots))
            self.mounted = True
        return str(self.where)

    def close(self) -> None:
        if self.mounted:
            overlay.umount(str(self.where), detach=True)
            self.mounted = False


def _bundle_id(bundle: str) -> str:
    return sha256(bundle.encode()).hexdigest()[:24]


def _check_empty_bundle(bundle: str) -> None:
    if os.path.exists(os.path.join(bundle, "config.json")):
        raise OnggiError(f"bundle {bundle}: config.json already exists (remove it, or `onggi image unmount` it)")
    rootfs = os.path.join(bundle, "rootfs")
    if os.path.islink(rootfs) or (os.path.exists(rootfs) and (not os.path.isdir(rootfs) or os.listdir(rootfs))):
        raise OnggiError(f"bundle {bundle}: rootfs already exists and is not empty")


def unpack(store: Store, name: str, rec: dict[str, Any], bundle_arg: str, mode: str, quiet: bool = False) -> str:
    """Returns the bundle's absolute path (a str)."""
    from runtime.image.convert import convert

    if mode not in ("copy", "overlay"):
        raise OnggiError(f"--mode {mode!r}: must be copy or overlay")
    bundle = os.path.abspath(bundle_arg)
    _check_empty_bundle(bundle)
    progress = Progress(quiet)
    store.clean_tmp()  # snapshot extractions a killed unpack left behind
    _, cfg, layers, diff_ids = image_parts(store, rec)
    created = not os.path.exists(bundle)
    rootfs = os.path.join(bundle, "rootfs")
    volumes = os.path.join(bundle, "volumes")
    os.makedirs(rootfs, exist_ok=True)
    os.chmod(rootfs, 0o755)
    mounted = False
    try:
        if mode == "copy":
            from runtime.image.unpack import apply_layer

            with store.lock("gc", shared=True):  # no rmi may collect the blobs meanwhile
                for i, (ld, d) in enumerate(zip(layers, diff_ids, strict=True)):
                    res = apply_layer(
                        store.blob_file(ld["digest"]), rootfs, d, what=f"layer {i} ({ld['digest']})"
                    )
                    for w in res.warnings:
                        progress.line(f"warning: layer {i}: {w}")
        else:
            with store.lock("gc", shared=True):
                keys = ensure_snapshots(store, layers, diff_ids, progress)
                ov_name = _bundle_id(bundle)
                ov = os.path.join(store._overlays, ov_name)
                remove_tree(ov)
                os.makedirs(os.path.join(ov, "upper"))
                os.mkdir(os.path.join(ov, "work"))
                # Paths relative to the snapshots dir: a store path with "," or ":" in it
                # cannot break the mount options.
                overlay.mount_overlay(
                    [f"{k}/fs" for k in reversed(keys)],
                    f"../overlays/{ov_name}/upper",
                    f"../overlays/{ov_name}/work",
                    rootfs,
                    store._snapshots,
                )
                mounted = True
                with store.edit_index() as idx:
                    idx["bundles"][bundle] = {
                        "image": name,
                        "manifest": rec["manifest"],
                        "snapshots": keys,
                        "overlay": ov_name,
                    }
        spec, vols = convert(cfg, rootfs, volumes)
        for v in spec.get("mounts", []):
            if v.get("type") == "bind" and str(v.get("source", "")).startswith(volumes + "/"):
                os.makedirs(v["source"], mode=0o755, exist_ok=True)
        tmp = os.path.join(bundle, f".config.json.{os.getpid()}")
        with open(tmp, "w") as f:
            f.write(fastjson.dumps(spec, indent=2) + "\n")
        os.rename(tmp, os.path.join(bundle, "config.json"))
    except BaseException:
        if mounted:
            with suppress(OnggiError):
                overlay.umount(rootfs, detach=True)
            with store.edit_index() as idx:
                rec_b = idx["bundles"].pop(bundle, None)
            if rec_b:
                remove_tree(os.path.join(store._overlays, rec_b["overlay"]))
        if created:
            remove_tree(bundle)
        else:
            for p in (rootfs, volumes, os.path.join(bundle, "config.json")):
                if os.path.exists(p):
                    remove_tree(p)
        raise
    return bundle


def unmount(store: Store, bundle_arg: str) -> None:
    """Undo an overlay bundle: unmount, then remove its upper dir, volumes, config.json and
    record. Only bundles this store made are touched, never another mount."""
    bundle = os.path.abspath(bundle_arg)
    idx = store.read_index()
    rec = idx["bundles"].get(bundle)
    rootfs = os.path.join(bundle, "rootfs")
    if rec is None:
        raise OnggiError(f"bundle {bundle}: not an overlay bundle of store {store._root}")
    is_mounted = overlay.is_mountpoint(rootfs)
    if is_mounted:
        try:
            overlay.umount(rootfs)
        except OnggiError:
            # Still busy (a container holds it): detach so the store can be cleaned.
            overlay.umount(rootfs, detach=True)
    with store.edit_index() as idx:
        rec = idx["bundles"].pop(bundle, rec)
    if rec:
        remove_tree(os.path.join(store._overlays, rec["overlay"]))
    for p in (os.path.join(bundle, "config.json"), os.path.join(bundle, "volumes"), rootfs):
        if os.path.lexists(p):
            remove_tree(p)
    with suppress(OSError):
        os.rmdir(bundle)
