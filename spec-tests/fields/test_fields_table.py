"""runtime.fields against the bundled schema: every field of config.md and config-linux.md
is applied, refused or ignored, exactly once; the refused and ignored ones behave as the
table says; `onggi features` is built from the same table and validates."""

from __future__ import annotations

import json
import os

import pytest
from harness import REPO, onggi

from runtime import fields, schema

SCHEMAS = REPO / "runtime" / "schemas"


def _load(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text())


def _resolve(node: dict, base: str) -> tuple[dict, str]:
    while "$ref" in node:
        name, _, frag = node["$ref"].partition("#")
        name = name or base
        target = _load(name)
        for part in filter(None, frag.split("/")):
            target = target[part]
        node = {**{k: v for k, v in node.items() if k != "$ref"}, **target}
        base = name
    return node, base


def schema_fields() -> list[str]:
    """Every leaf field of the config schema as a path ("a.b", "a[].b", "a.<key>"): a
    property with no properties of its own, or an array of scalars."""
    out: list[str] = []

    def walk(node: dict, base: str, path: str) -> bool:
        node, base = _resolve(node, base)
        found = False
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(key, ()):
                found |= walk(sub, base, path)
        for k, v in node.get("properties", {}).items():
            walk(v, base, f"{path}.{k}" if path else k)
            found = True
        for v in node.get("patternProperties", {}).values():
            walk(v, base, f"{path}.<key>")
            found = True
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, base, f"{path}.<key>")
            found = True
        if isinstance(node.get("items"), dict):
            mark = len(out)
            if not walk(node["items"], base, path + "[]"):
                del out[mark:]  # an array of scalars is one field
                out.append(path)
            found = True
        if not found and path:
            out.append(path)
        return found

    walk(_load("config-schema.json"), "config-schema.json", "")
    return sorted(set(out))


def _entry_for(path: str) -> list[str]:
    """The table entries that classify `path`: its own, or a subtree ("X.**") above it."""
    hits = [path] if path in fields.table() else []
    hits += [p for p in fields.table() if p.endswith(".**") and
             (path == p[:-3] or path.startswith(p[:-2]))]
    return hits


def test_the_walk_sees_the_spec():
    found = schema_fields()
    assert len(found) > 200
    for p in ("ociVersion", "process.scheduler.policy", "process.args",
              "linux.netDevices.<key>.name", "mounts[].uidMappings[].hostID",
              "linux.seccomp.syscalls[].args[].op", "hooks.poststop[].timeout",
              "linux.sysctl.<key>", "windows.layerFolders"):
        assert p in found, p


def test_every_field_is_in_exactly_one_group():
    missing, twice = [], []
    for path in schema_fields():
        hits = _entry_for(path)
        if not hits:
            missing.append(path)
        elif len(hits) > 1:
            twice.append((path, hits))
    assert not missing, f"fields in no group of runtime/fields.py: {missing}"
    assert not twice, twice


def test_every_table_entry_is_a_field():
    found = schema_fields()
    stale = [p for p in fields.table() if not any(
        f == p or (p.endswith(".**") and (f == p[:-3] or f.startswith(p[:-2]))) for f in found)]
    assert not stale, stale


def test_no_path_is_listed_twice():
    applied = [p for p, _ in fields._applied()]
    everything = applied + list(fields.REFUSED_FIELDS) + list(fields.IGNORED_FIELDS)
    assert len(everything) == len(set(everything)) == len(fields.table())


def test_refused_and_ignored_have_a_reason():
    for path, f in fields.table().items():
        assert f.group in (fields.APPLIED, fields.REFUSED, fields.IGNORED), path
        if f.group != fields.APPLIED:
            assert f.why and "\n" not in f.why, path


# A schema-valid value for each field that is not simply applied: the test below runs each.
SAMPLES = {
    "vm.**": {"vm": {"hypervisor": {"path": "/usr/bin/qemu"}, "kernel": {"path": "/vmlinuz"}}},
    "process.commandLine": {"process": {"commandLine": "cmd.exe /c dir"}},
    "process.user.username": {"process": {"user": {"uid": 0, "gid": 0,
                                                   "username": "ContainerUser"}}},
    "linux.personality.flags": {"linux": {"personality": {"domain": "LINUX",
                                                          "flags": ["ADDR_NO_RANDOMIZE"]}}},
    "windows.**": {"windows": {"layerFolders": ["C:\\layers\\1"]}},
    "solaris.**": {"solaris": {"milestone": "svc:/milestone/container:default"}},
    "zos.**": {"zos": {"namespaces": [{"type": "mount"}]}},
    "freebsd.**": {"freebsd": {"jail": {"host": "new"}}},
}
CHECKED = [p for p, f in fields.table().items() if f.group != fields.APPLIED]


def test_every_refused_or_ignored_field_has_a_sample():
    assert sorted(SAMPLES) == sorted(CHECKED)


def _merge(into: dict, extra: dict) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


@pytest.mark.parametrize("path", CHECKED)
def test_refused_and_ignored_fields_behave_as_the_table_says(bundle, tmp_path, path):
    _merge(bundle.config, SAMPLES[path])
    assert schema.check_with_jsonschema(bundle.config) == []
    log = tmp_path / "log"
    bundle.write(["true"])
    res = bundle.onggi("--log", str(log), "run", "-b", str(bundle.path), bundle.new_id())
    name = fields.name(path)
    why = fields.table()[path].why
    if fields.table()[path].group == fields.REFUSED:
        assert res.returncode != 0
        assert res.stderr == f"onggi: config: {name}: {why}\n"
        assert os.listdir(bundle.root) == []
    else:
        assert res.returncode == 0, res.stderr
        warnings = [x for x in log.read_text().splitlines() if "level=warning" in x]
        assert any(f"{name}: ignored: " in x for x in warnings), warnings


def test_a_plain_config_warns_about_nothing(bundle, tmp_path):
    log = tmp_path / "log"
    bundle.config["linux"].pop("resources", None)
    bundle.write(["true"])
    res = bundle.onggi("--log", str(log), "run", "-b", str(bundle.path), bundle.new_id())
    assert res.returncode == 0, res.stderr
    assert not log.exists() or "ignored" not in log.read_text()


def test_features_come_from_the_table_and_validate():
    doc = json.loads(onggi("features", check=True).stdout)
    assert schema.check_with_jsonschema(doc, "features-schema.json") == []
    lx = doc["linux"]
    assert lx["netDevices"] == {"enabled": True}
    assert lx["mountExtensions"]["idmap"]["enabled"] is True
    modes = _load("defs-linux.json")["definitions"]["MemoryPolicyMode"]["enum"]
    flags = _load("defs-linux.json")["definitions"]["MemoryPolicyFlag"]["enum"]
    assert sorted(lx["memoryPolicy"]["modes"]) == sorted(modes)
    assert sorted(lx["memoryPolicy"]["flags"]) == sorted(flags)
    from runtime.linux import resctrl

    assert lx["intelRdt"]["enabled"] == resctrl.is_resctrl()
