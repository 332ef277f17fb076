"""Image config → runtime config.json, by the image-spec's conversion rules (conversion.md)."""

from __future__ import annotations

import posixpath

from runtime.errors import OnggiError

TYPE_CHECKING = False  # no typing import on the cached-overlay hot path
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
A = "org.opencontainers.image."


def default_spec() -> dict[str, Any]:
    """onggi's default spec (like `runc spec`); the image's values then override it."""
    from runtime.spec_default import default_spec as ds

    return _copy(ds(rootless=False))


def _copy(obj: Any) -> Any:
    """copy.deepcopy for JSON-shaped data (dicts, lists, scalars), without importing copy."""
    if type(obj) is dict:
        return {k: _copy(v) for k, v in obj.items()}
    if type(obj) is list:
        return [_copy(v) for v in obj]
    if obj is None or type(obj) in (str, int, float, bool):
        return obj
    import copy

    return copy.deepcopy(obj)


def in_root_path(value: str, field: str) -> str:
    """An absolute path that never climbs above "/" (GHSA-crp2-qrr5-8pq7); normalized."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise OnggiError(f"image config: {field} {value!r}: must be an absolute path")
    depth = 0
    for c in value.split("/"):
        if c == "..":
            depth -= 1
            if depth < 0:
                raise OnggiError(f"image config: {field} {value!r}: climbs out of the root filesystem")
        elif c not in ("", "."):
            depth += 1
    return posixpath.normpath(value).replace("//", "/")


def _parse_db(data: bytes | None) -> list[list[str]]:
    if not data:
        return []
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def resolve_user(user: str, rootfs: str) -> dict[str, Any]:
    """`name`, `uid`, `name:group`, `uid:gid` → process.user, from the rootfs's own files."""
    from runtime.image.fsutil import read_file_in_root  # openat2 (ctypes): only for a User

    name, _, group = user.partition(":")
    passwd = _parse_db(read_file_in_root(rootfs, "/etc/passwd"))
    groups = _parse_db(read_file_in_root(rootfs, "/etc/group"))
    uid: int | None = None
    gid: int | None = None
    uname: str | None = None
    if name.isdigit():
        uid = int(name)
        for row in passwd:
            if len(row) >= 4 and row[2] == name and row[3].isdigit():
                gid, uname = int(row[3]), row[0]
                break
    else:
        for row in passwd:
            if len(row) >= 4 and row[0] == name and row[2].isdigit() and row[3].isdigit():
                uid, gid, uname = int(row[2]), int(row[3]), name
                break
        if uid is None:
            raise OnggiError(f"image config: config.User {user!r}: no user {name!r} in the image's /etc/passwd")
    out: dict[str, Any] = {"uid": uid}
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            gid = next((int(r[2]) for r in groups if len(r) >= 3 and r[0] == group and r[2].isdigit()), None)
            if gid is None:
                raise OnggiError(f"image config: config.User {user!r}: no group {group!r} in the image's /etc/group")
    out["gid"] = gid if gid is not None else 0
    if not group and not name.isdigit() and uname:
        # Supplementary groups only for a named user without a group (conversion.md).
        extra = sorted(
            {int(r[2]) for r in groups if len(r) >= 4 and r[2].isdigit() and uname in r[3].split(",")}
            - {out["gid"]}
        )
        if extra:
            out["additionalGids"] = extra
    return out


def _volume_dir_name(dest: str) -> str:
    """A readable, collision-free dir name: /a/b and /a_b must not share one."""
    from runtime.image.store import sha256

    return (dest.strip("/").replace("/", "_") or "root") + "-" + sha256(dest.encode()).hexdigest()[:8]


def convert(
    image_config: dict[str, Any], rootfs: str, volumes_dir: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Return (runtime config, volume destinations). Volumes become bind mounts of per-bundle
    dirs under `volumes_dir`, so application data does not land in the rootfs."""
    spec = default_spec()
    cfg = image_config.get("config") or {}
    if not isinstance(cfg, dict):
        raise OnggiError("image config: config: must be an object")
    proc = spec.setdefault("process", {})
    proc["terminal"] = False
    spec["root"] = {"path": "rootfs", "readonly": False}

    entry = cfg.get("Entrypoint") or []
    cmd = cfg.get("Cmd") or []
    for field, v in (("Entrypoint", entry), ("Cmd", cmd)):
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise OnggiError(f"image config: config.{field}: must be a list of strings")
    args = list(entry) + list(cmd)
    if args:
        proc["args"] = args

    env = cfg.get("Env") or []
    if not isinstance(env, list) or not all(isinstance(s, str) for s in env):
        raise OnggiError("image config: config.Env: must be a list of strings")
    if not any(e.startswith("PATH=") for e in env):
        env = [DEFAULT_PATH, *env]
    proc["env"] = env

    wd = cfg.get("WorkingDir") or "/"
    proc["cwd"] = in_root_path(wd, "config.WorkingDir")

    user = cfg.get("User") or ""
    if not isinstance(user, str):
        raise OnggiError("image config: config.User: must be a string")
    proc["user"] = resolve_user(user, rootfs) if user else {"uid": 0, "gid": 0}

    ann: dict[str, str] = {}
    for key, field in (
        ("os", "os"),
        ("architecture", "architecture"),
        ("variant", "variant"),
        ("os.version", "os.version"),
        ("author", "author"),
        ("created", "created"),
    ):
        v = image_config.get(field)
        if isinstance(v, str) and v:
            ann[A + key] = v
    feats = image_config.get("os.features")
    if isinstance(feats, list) and feats:
        ann[A + "os.features"] = ",".join(str(f) for f in feats)
    if isinstance(cfg.get("StopSignal"), str) and cfg["StopSignal"]:
        ann[A + "stopSignal"] = cfg["StopSignal"]
    ports = cfg.get("ExposedPorts")
    if isinstance(ports, dict) and ports:
        ann[A + "exposedPorts"] = ",".join(sorted(ports))
    labels = cfg.get("Labels") or {}
    if not isinstance(labels, dict):
        raise OnggiError("image config: config.Labels: must be an object")
    for k, v in labels.items():
        ann[str(k)] = str(v)  # labels win over the implicit annotations
    if ann:
        spec["annotations"] = ann

    dests: list[str] = []
    vols = cfg.get("Volumes") or {}
    if not isinstance(vols, dict):
        raise OnggiError("image config: config.Volumes: must be an object")
    mounts = spec.setdefault("mounts", [])
    taken = {m.get("destination") for m in mounts}
    for v in sorted(vols):
        dest = in_root_path(v, f"config.Volumes[{v!r}]")
        if dest in taken or dest == "/":
            continue
        dests.append(dest)
        if volumes_dir:
            src = f"{volumes_dir}/{_volume_dir_name(dest)}"
            mounts.append({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rw"]})
    return spec, dests
