"""A fast check of config.json against the bundled runtime-spec v1.3.0 schema.

jsonschema costs ~100 ms to import, which every `create` would pay. The spec's schemas use
only a small draft-04 subset (type, properties, required, items, enum, pattern, minimum,
maximum, minItems, patternProperties, additionalProperties, allOf, anyOf, $ref), so this
walks that subset directly. jsonschema stays the reference: `onggi validate --strict` runs
it, and the tests compare both on every test config of the spec and on mutations of them.
"""

from __future__ import annotations

import os

from runtime import fastjson

_DIR = os.path.join(os.path.dirname(__file__), "schemas")
_docs: dict[str, dict] = {}

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),  # draft-04: 1.0 is not
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class SchemaError(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path or '(root)'}: {reason}")
        self.path, self.reason = path, reason


def _doc(name: str) -> dict:
    if name not in _docs:
        with open(os.path.join(_DIR, name)) as f:
            _docs[name] = fastjson.loads(f.read())
    return _docs[name]


def _upper(s: str, extra: str = "") -> bool:
    return s != "" and all("A" <= c <= "Z" or c in extra for c in s)


def _digits(s: str) -> bool:
    return all("0" <= c <= "9" for c in s)


# The spec schemas' patterns as plain predicates: `re` costs ~9 ms per create, and every
# config with rlimits meets one. Each agrees with re.search (tested); others fall back to re.
PATTERNS = {
    "^RLIMIT_[A-Z]+$": lambda v: v.startswith("RLIMIT_") and _upper(v[7:]),
    "^CAP_[A-Z_]+$": lambda v: v.startswith("CAP_") and _upper(v[4:], "_"),
    "^[cbup]$": lambda v: v in ("c", "b", "u", "p"),
    "^[0-9, -]*$": lambda v: all("0" <= c <= "9" or c in ", -" for c in v),
    "^[1-9][0-9]*[KMG]B$": lambda v: (
        len(v) >= 3 and v[-1] == "B" and v[-2] in "KMG" and "1" <= v[0] <= "9" and _digits(v[1:-2])
    ),
    "^MB:[^\\n]*$": lambda v: v.startswith("MB:") and "\n" not in v[3:],
    ".{1,}": lambda v: any(c != "\n" for c in v),
}


def _matches(pattern: str, value: str) -> bool:
    test = PATTERNS.get(pattern)
    if test is not None:
        if pattern.endswith("$") and value.endswith("\n"):
            value = value[:-1]  # re's `$` also matches just before a final newline
        return test(value)
    import re

    return re.search(pattern, value) is not None


def _resolve(ref: str, base: str) -> tuple[dict, str]:
    name, _, frag = ref.partition("#")
    name = name or base
    node = _doc(name)
    for part in frag.strip("/").split("/"):
        if part:
            node = node[part]
    return node, name


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


# Where the schema is stricter than runc, `create` accepts what runc accepts (runc decodes
# config.json with Go's encoding/json and never reads the schema): these (field, keyword)
# pairs are not enforced by check_config(relaxed=True); the typed parse gives the default
# runc gives ("[]" stands for any index). `onggi validate --strict` still reports them.
RELAXED = {
    ("linux.rootfsPropagation", "enum"),  # rprivate, rshared, rslave, runbindable, ""
    ("process.consoleSize.height", "required"),  # missing: 0, and no resize
    ("process.consoleSize.width", "required"),
    ("linux.resources.pids.limit", "required"),  # missing: 0, "not set"
    ("linux.resources.devices[].allow", "required"),  # missing: false
    ("linux.seccomp.syscalls[].names", "required"),  # missing or []: a rule for nothing
    ("linux.seccomp.syscalls[].names", "minItems"),
    ("linux.seccomp.syscalls[].args[].value", "required"),  # missing: 0
    ("linux.devices[].fileMode", "maximum"),  # file type bits are dropped (spec.linux)
}


def _generic(path: str) -> str:
    """"a[3].b[0]" -> "a[].b[]"."""
    out, skip = [], False
    for c in path:
        if c == "[":
            skip = True
            out.append("[]")
        elif c == "]":
            skip = False
        elif not skip:
            out.append(c)
    return "".join(out)


def _fail(path: str, keyword: str, reason: str, relax: bool) -> None:
    if not (relax and (_generic(path), keyword) in RELAXED):
        raise SchemaError(path, reason)


def _check(v, s: dict, base: str, path: str, relax: bool = False) -> None:
    if "$ref" in s:
        # draft-04: siblings of $ref are ignored; the spec's refs are all file-relative.
        target, name = _resolve(s["$ref"].replace("#definitions", "#/definitions"), base)
        return _check(v, target, name, path, relax)
    t = s.get("type")
    if t is not None:
        ts = t if isinstance(t, list) else [t]
        if not any(_TYPES[x](v) for x in ts):
            raise SchemaError(path, f"must be of type {' or '.join(ts)}")
    if "enum" in s and v not in s["enum"]:
        _fail(path, "enum", f"must be one of {', '.join(map(str, s['enum']))}", relax)
    if isinstance(v, str) and "pattern" in s and not _matches(s["pattern"], v):
        raise SchemaError(path, f"{v!r} does not match {s['pattern']!r}")
    if _TYPES["number"](v):
        if "minimum" in s and v < s["minimum"]:
            raise SchemaError(path, f"{v} is less than the minimum {s['minimum']}")
        if "maximum" in s and v > s["maximum"]:
            _fail(path, "maximum", f"{v} is greater than the maximum {s['maximum']}", relax)
    if isinstance(v, list):
        if len(v) < s.get("minItems", 0):
            _fail(path, "minItems", f"needs at least {s['minItems']} item(s)", relax)
        if "items" in s:
            for i, item in enumerate(v):
                _check(item, s["items"], base, _join(path, i), relax)
    if isinstance(v, dict):
        for key in s.get("required", ()):
            if key not in v:
                _fail(_join(path, key), "required", "is required", relax)
        props = s.get("properties", {})
        pats = s.get("patternProperties", {})
        extra = s.get("additionalProperties", True)
        for key, item in v.items():
            matched = False
            if key in props:
                matched = True
                _check(item, props[key], base, _join(path, key), relax)
            for pat, sub in pats.items():
                if _matches(pat, key):
                    matched = True
                    _check(item, sub, base, _join(path, key), relax)
            if not matched and isinstance(extra, dict):
                _check(item, extra, base, _join(path, key), relax)
            elif not matched and extra is False:
                raise SchemaError(_join(path, key), "is not allowed")
    for sub in s.get("allOf", ()):
        _check(v, sub, base, path, relax)
    if "anyOf" in s:
        errors = []
        for sub in s["anyOf"]:
            try:
                _check(v, sub, base, path, relax)
                break
            except SchemaError as e:
                errors.append(e)
        else:
            raise errors[0]


def check_config(doc: object, relaxed: bool = False) -> None:
    """Raise SchemaError (path + reason) where `doc` breaks config-schema.json; with
    `relaxed`, not where runc accepts more than the schema (RELAXED)."""
    _check(doc, _doc("config-schema.json"), "config-schema.json", "", relaxed)


def check_process(doc: object) -> None:
    """A `process` object on its own (exec's --process FILE), by the config schema's rules
    for config.json's `process`; paths in errors read "process.args" and so on."""
    node = _doc("config-schema.json")["properties"]["process"]
    _check(doc, node, "config-schema.json", "process")


_validators: dict[str, object] = {}


def _reference_validator(schema: str):
    if schema not in _validators:
        import jsonschema
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4

        def retrieve(uri: str) -> Resource:
            return Resource.from_contents(
                _doc(uri.rsplit("/", 1)[-1]), default_specification=DRAFT4
            )

        root = dict(_doc(schema))
        root.setdefault("id", f"file:///schemas/{schema}")
        _validators[schema] = jsonschema.Draft4Validator(root, registry=Registry(retrieve=retrieve))
    return _validators[schema]


def check_with_jsonschema(doc: object, schema: str = "config-schema.json") -> list[str]:
    """The reference check (slow import): every error as 'path: message'."""
    v = _reference_validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in sorted(v.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]
