"""onggi's fast config check must agree with the reference jsonschema on the spec's configs."""

from __future__ import annotations

import copy
import json

import pytest
from harness import REPO, need_shared

from runtime import schema, spec
from runtime.errors import ConfigError


def _configs(kind: str) -> list:
    root = need_shared() / "test" / "config" / kind
    return sorted(root.glob("*.json"))


def _mine(doc) -> str | None:
    try:
        schema.check_config(doc)
    except schema.SchemaError as e:
        return str(e)
    return None


@pytest.mark.parametrize("kind", ["good", "bad"])
def test_spec_test_configs(kind):
    for path in _configs(kind):
        try:
            doc = json.loads(path.read_text())
        except ValueError:
            with pytest.raises(Exception, match="invalid JSON"):
                spec.parse_json(path.read_bytes(), str(path))
            continue
        ref = schema.check_with_jsonschema(doc)
        mine = _mine(doc)
        assert (mine is None) == (not ref), f"{path.name}: onggi {mine!r} vs jsonschema {ref}"
        assert (kind == "good") == (mine is None), f"{path.name}: {mine}"


def _leaves(doc, path=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _leaves(v, path + (i,))
    yield path, doc


def _wrong(value) -> list:
    """Values of other types (and out-of-range ones) for a leaf of this type."""
    if isinstance(value, bool):
        return ["true", 1]
    if isinstance(value, int):
        return ["x", -1, 2**64, 1.5, -(2**63) - 1]
    if isinstance(value, str):
        return [5, None]
    if isinstance(value, list):
        return [{}, [None]]
    return [[], "x"]


def _set(doc, path, value):
    out = copy.deepcopy(doc)
    node = out
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return out


def test_mutations_agree_with_jsonschema():
    """Every leaf of every good config, replaced by values of other types: same verdict."""
    checked = 0
    reference = schema._reference_validator("config-schema.json")
    for path in _configs("good"):
        doc = json.loads(path.read_text())
        for where, leaf in list(_leaves(doc)):
            if not where:
                continue
            for value in _wrong(leaf):
                bad = _set(doc, where, value)
                ref_ok = reference.is_valid(bad)
                mine = _mine(bad)
                assert (mine is None) == ref_ok, (
                    f"{path.name} {where}={value!r}: onggi {mine!r} vs jsonschema "
                    f"{schema.check_with_jsonschema(bad)[:1]}"
                )
                checked += 1
    assert checked > 900


def test_typed_parse_names_the_field(tmp_path):
    (tmp_path / "rootfs").mkdir()
    good = json.loads((REPO / "runtime/schemas/config-schema.json").read_text())
    assert good  # the bundled schema is readable
    doc = {"ociVersion": "1.3.0", "root": {"path": "rootfs"},
           "process": {"cwd": "/", "args": ["sh"], "rlimits": [{"type": "RLIMIT_NOFILE",
                                                                  "soft": "many", "hard": 1}]}}
    with pytest.raises(ConfigError, match=r"process\.rlimits\[0\]\.soft: must be of type integer"):
        spec.parse(doc, str(tmp_path))


def test_pattern_predicates_agree_with_re():
    import itertools
    import re

    alphabet = ["", "A", "Z", "a", "_", "0", "1", "9", "B", "K", "M", "G", "c", "b", "u", "p",
                ",", " ", "-", "\n", ":", "RLIMIT_", "CAP_", "MB:", "x"]
    samples = {"".join(t) for n in range(4) for t in itertools.product(alphabet, repeat=n)}
    for pattern in schema.PATTERNS:
        for s in samples:
            assert schema._matches(pattern, s) == (re.search(pattern, s) is not None), (pattern, s)
    used = set()
    for path in (REPO / "runtime" / "schemas").glob("*.json"):
        used |= set(re.findall(r'"pattern": "((?:[^"\\]|\\.)*)"', path.read_text()))
    assert {json.loads(f'"{p}"') for p in used} <= set(schema.PATTERNS)
