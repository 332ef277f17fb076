"""Image config → config.json, by the image-spec's conversion rules; the result must be a
valid runtime-spec v1.3.0 config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from imgtest import SHARED, image, imagefix

from runtime.errors import OnggiError

E = imagefix.E


def _unpack(work: Path, store: Path, cfg: dict[str, Any], extra: list[E] | None = None, name: str = "b",
            **top: Any) -> dict[str, Any]:
    lay = work / f"lay-{name}"
    w = imagefix.OCIWriter(lay)
    conf = imagefix.image_config(**cfg)
    conf.update(top)
    layers = [(imagefix.tar_bytes(imagefix.busybox_entries()), "gzip")]
    if extra:
        layers.append((imagefix.tar_bytes(extra), "gzip"))
    w.tag(w.image(layers, conf), "t")
    image(["image", "unpack", "-q", f"oci:{lay}:t", str(work / name)], store)
    return json.loads((work / name / "config.json").read_text())


def validate(cfg: dict[str, Any]) -> None:
    schema_dir = SHARED / "schemas" / "runtime-spec-v1.3.0"
    if not schema_dir.is_dir():
        pytest.skip(f"{schema_dir} absent: cannot validate against the runtime-spec schema")
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    reg: Registry = Registry()
    for p in schema_dir.glob("*.json"):
        reg = reg.with_resource(p.name, Resource.from_contents(json.loads(p.read_text()), DRAFT4))
    schema = json.loads((schema_dir / "config-schema.json").read_text())
    jsonschema.Draft4Validator(schema, registry=reg).validate(cfg)


def test_full_conversion(work: Path, store: Path) -> None:
    cfg = _unpack(
        work, store,
        dict(Entrypoint=["/bin/sh", "-c"], Cmd=["echo hi"], Env=["FOO=bar"], WorkingDir="/srv/app",
             User="app", StopSignal="SIGINT", ExposedPorts={"80/tcp": {}, "53/udp": {}},
             Volumes={"/data": {}, "/var/log/app": {}},
             Labels={"org.opencontainers.image.os": "custom-os", "com.example.team": "infra"}),
        author="Ada", variant="v8",
    )
    validate(cfg)
    p = cfg["process"]
    assert p["args"] == ["/bin/sh", "-c", "echo hi"]
    assert p["env"][0].startswith("PATH=") and "FOO=bar" in p["env"]
    assert p["cwd"] == "/srv/app"
    assert p["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10, 29]}
    assert p["terminal"] is False
    a = cfg["annotations"]
    assert a["org.opencontainers.image.os"] == "custom-os", "Labels take precedence"
    assert a["org.opencontainers.image.architecture"] == "amd64"
    assert a["org.opencontainers.image.variant"] == "v8"
    assert a["org.opencontainers.image.author"] == "Ada"
    assert a["org.opencontainers.image.created"] == "2026-11-01T00:00:00Z"
    assert a["org.opencontainers.image.stopSignal"] == "SIGINT"
    assert a["org.opencontainers.image.exposedPorts"] == "53/udp,80/tcp"
    assert a["com.example.team"] == "infra"
    vols = {m["destination"]: m for m in cfg["mounts"] if m["destination"] in ("/data", "/var/log/app")}
    assert set(vols) == {"/data", "/var/log/app"}
    for m in vols.values():
        assert m["type"] == "bind" and Path(m["source"]).is_dir()
        assert Path(m["source"]).parent == work / "b" / "volumes"
    assert cfg["root"]["path"] == "rootfs"
    assert any(m["destination"] == "/proc" for m in cfg["mounts"]), "the rest comes from the default spec"


def test_env_path_is_kept_when_given(work: Path, store: Path) -> None:
    cfg = _unpack(work, store, dict(Env=["PATH=/opt/bin", "X=1"]))
    assert cfg["process"]["env"] == ["PATH=/opt/bin", "X=1"]


@pytest.mark.parametrize(
    "user,want",
    [
        ("1234:5678", {"uid": 1234, "gid": 5678}),
        ("1000", {"uid": 1000, "gid": 1000}),
        ("app:wheel", {"uid": 1000, "gid": 10}),
        ("app:29", {"uid": 1000, "gid": 29}),
        ("nobody", {"uid": 65534, "gid": 65534}),
        ("root", {"uid": 0, "gid": 0}),
    ],
)
def test_user_forms(user: str, want: dict[str, Any], work: Path, store: Path) -> None:
    assert _unpack(work, store, dict(User=user))["process"]["user"] == want


@pytest.mark.parametrize(
    "user,err",
    [("ghost", "no user 'ghost'"), ("app:nogrp", "no group 'nogrp'")],
)
def test_unknown_user_or_group_is_an_error(user: str, err: str, work: Path, store: Path) -> None:
    with pytest.raises(OnggiError, match=f"config.User '{user}': {err}"):
        _unpack(work, store, dict(User=user))
    assert not (work / "b").exists()


def test_user_lookup_does_not_follow_symlinks_out(work: Path, store: Path) -> None:
    """/etc/passwd a symlink to the host's: resolved inside the rootfs, it finds nothing."""
    evil = [E("etc/passwd", "l", link="../../../../../../../../etc/passwd"),
            E("etc/group", "l", link="/../../../../etc/group")]
    with pytest.raises(OnggiError, match="no user 'daemon'"):
        _unpack(work, store, dict(User="daemon"), extra=evil)


@pytest.mark.parametrize(
    "cfg,err",
    [
        (dict(WorkingDir="/../../etc"), r"WorkingDir '/../../etc': climbs out of the root"),
        (dict(WorkingDir="/a/../../b"), r"WorkingDir '/a/../../b': climbs out of the root"),
        (dict(WorkingDir="app"), r"WorkingDir 'app': must be an absolute path"),
        (dict(Volumes={"/data/../../../host": {}}), r"Volumes\['/data/../../../host'\].*climbs out"),
        (dict(Cmd="echo"), r"config.Cmd: must be a list of strings"),
    ],
)
def test_bad_paths_are_rejected(cfg: dict[str, Any], err: str, work: Path, store: Path) -> None:
    with pytest.raises(OnggiError, match=err):
        _unpack(work, store, cfg)


def test_workdir_is_normalized(work: Path, store: Path) -> None:
    assert _unpack(work, store, dict(WorkingDir="/a/./b/../c/"))["process"]["cwd"] == "/a/c"
