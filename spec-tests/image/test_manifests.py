"""The fixtures are valid image-spec v1.1.1 documents (checked with the spec's own schemas),
and broken manifests or configs are refused with one line naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from imgtest import SHARED, image, imagefix

from runtime.errors import OnggiError

SCHEMAS = SHARED / "schemas" / "image-spec-v1.1.1"


def validator(name: str) -> Any:
    if not SCHEMAS.is_dir():
        pytest.skip(f"{SCHEMAS} absent: cannot validate against the image-spec schemas")
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    reg: Registry = Registry()
    for p in SCHEMAS.glob("*.json"):
        res = Resource.from_contents(json.loads(p.read_text()), DRAFT4)
        for base in ("https://opencontainers.org/schema/", "https://opencontainers.org/schema/image/"):
            reg = reg.with_resource(base + p.name, res)
    schema = json.loads((SCHEMAS / name).read_text())
    return jsonschema.Draft4Validator(schema, registry=reg)


def test_fixture_layouts_follow_the_image_spec(work: Path) -> None:
    w = imagefix.OCIWriter(work / "lay")
    base = imagefix.tar_bytes(imagefix.busybox_entries())
    a = w.image([(base, "gzip")], imagefix.image_config(arch="amd64"))
    b = w.image([(base, "zstd")], imagefix.image_config(arch="arm64"))
    w.tag(w.multi([a, b]), "multi")
    w.tag(a, "single")

    def blob(d: str) -> Any:
        return json.loads((work / "lay" / "blobs" / "sha256" / d[7:]).read_bytes())

    validator("image-layout-schema.json").validate(json.loads((work / "lay" / "oci-layout").read_text()))
    validator("image-index-schema.json").validate(json.loads((work / "lay" / "index.json").read_text()))
    validator("image-index-schema.json").validate(blob(w.index[0]["digest"]))
    for d in (a, b):
        man = blob(d["digest"])
        validator("image-manifest-schema.json").validate(man)
        validator("config-schema.json").validate(blob(man["config"]["digest"]))
    # ...and the validators do reject what is wrong.
    with pytest.raises(Exception, match="digest"):
        validator("image-manifest-schema.json").validate(
            {**blob(a["digest"]), "config": {"mediaType": imagefix.OCI_CONFIG, "size": 1, "digest": "no digest"}})


def _broken(work: Path, mutate: Any, name: str) -> str:
    w = imagefix.OCIWriter(work / name)
    d = w.image([(imagefix.tar_bytes(imagefix.busybox_entries()), "gzip")], imagefix.image_config())
    man = json.loads((work / name / "blobs" / "sha256" / d["digest"][7:]).read_bytes())
    cfg = json.loads((work / name / "blobs" / "sha256" / man["config"]["digest"][7:]).read_bytes())
    mutate(man, cfg)
    man["config"] = w.blob(json.dumps(cfg).encode(), imagefix.OCI_CONFIG) | {"mediaType": man["config"]["mediaType"]}
    w.tag(w.blob(json.dumps(man).encode(), imagefix.OCI_MANIFEST), "t")
    return f"oci:{work / name}:t"


@pytest.mark.parametrize(
    "mutate,err",
    [
        (lambda m, c: m["layers"][0].update(mediaType="application/x-tar"),
         r"layers\[0\].mediaType 'application/x-tar': not a layer type"),
        (lambda m, c: m["layers"][0].update(digest="sha256:xyz"), r"layers\[0\].digest 'sha256:xyz': not a sha256"),
        (lambda m, c: m["layers"][0].update(size=-1), r"layers\[0\].size: must be a non-negative integer"),
        (lambda m, c: m.update(layers="nope"), "manifest layers: must be a list"),
        (lambda m, c: c["rootfs"].update(diff_ids=[]), r"config rootfs.diff_ids: 0 entries for 1 layers"),
        (lambda m, c: m.update(mediaType="application/vnd.oci.artifact.manifest.v1+json"),
         "mediaType 'application/vnd.oci.artifact.manifest.v1\\+json': not an image manifest"),
    ],
    ids=["layer-type", "layer-digest", "layer-size", "layers", "diff-ids", "artifact"],
)
def test_broken_manifests_are_refused(mutate: Any, err: str, work: Path, store: Path) -> None:
    src = _broken(work, mutate, "b")
    with pytest.raises(OnggiError, match=err) as e:
        image(["image", "pull", "-q", src], store)
    assert "\n" not in str(e.value)
    from runtime.image.store import Store

    assert Store(store).read_index()["images"] == {}


def test_layer_blob_with_wrong_content_is_refused(work: Path, store: Path) -> None:
    w = imagefix.OCIWriter(work / "c")
    d = w.image([(imagefix.tar_bytes(imagefix.busybox_entries()), "gzip")], imagefix.image_config())
    w.tag(d, "t")
    man = json.loads((work / "c" / "blobs" / "sha256" / d["digest"][7:]).read_bytes())
    p = work / "c" / "blobs" / "sha256" / man["layers"][0]["digest"][7:]
    p.write_bytes(p.read_bytes()[:-4] + b"oops")
    with pytest.raises(OnggiError, match="digest mismatch"):
        image(["image", "pull", "-q", f"oci:{work / 'c'}:t"], store)
    from runtime.image.store import Store

    s = Store(store)
    assert not s.has_blob(man["layers"][0]["digest"]) and list(s.tmp.iterdir()) == []
