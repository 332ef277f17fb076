"""JSON for the hot path (state files, `onggi state`) through the C accelerator alone.

`import json` pulls in `re` and `enum`, ~17 ms here: more than the interpreter's own
start. The C scanner and encoder that json itself uses need neither. This covers what the
state store holds (dicts, lists, strings, ints, bools, null); anything else takes `json`.
"""

from __future__ import annotations

import _json


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = None  # NaN/Infinity never appear in our files
    memo: dict = {}


_scan = _json.make_scanner(_Context)
_string = _json.encode_basestring_ascii


def _default(obj: object) -> object:
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


# (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys,
#  allow_nan): what json.dumps(obj) passes for its defaults.
_encode = _json.make_encoder({}, _default, _string, None, ": ", ", ", False, False, True)
_compact = _json.make_encoder({}, _default, _string, None, ":", ",", False, False, True)


def loads(data: bytes | str) -> object:
    """json.loads(data), through the C scanner alone when the text is plain; anything unusual
    (a BOM, bad UTF-8, NaN, bad JSON) goes to json.loads, so results and errors stay json's."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        if not text.startswith("\ufeff"):
            obj, end = _scan(text, 0)
            if not text[end:].strip(" \t\n\r"):
                return obj
    except Exception:  # noqa: BLE001 - json.loads below gives the real answer or error
        pass
    import json

    return json.loads(data)


def dumps(obj: object, indent: int | None = None, sort_keys: bool = False) -> str:
    """json.dumps(obj, indent=indent, sort_keys=sort_keys), byte for byte."""
    if indent is None and not sort_keys:
        return "".join(_encode(obj, 0))
    if indent is None:
        import json

        return json.dumps(obj, sort_keys=True)
    out: list[str] = []
    _write(obj, out, " " * indent, "\n", sort_keys, _string)
    return "".join(out)


def dumps_compact(obj: object) -> str:
    """json.dumps(obj, separators=(",", ":")): Go's encoding/json layout (runc's output)."""
    return "".join(_compact(obj, 0))


def _write(obj: object, out: list[str], step: str, nl: str, sort_keys: bool, string) -> None:
    """Indented JSON of `obj` onto `out`; `string` writes a str (json's or Go's escaping)."""
    if isinstance(obj, dict) and all(type(k) is str for k in obj):
        if not obj:
            out.append("{}")
            return
        inner = nl + step
        out.append("{")
        items = sorted(obj.items()) if sort_keys else obj.items()
        for i, (k, v) in enumerate(items):
            out.append(inner if i == 0 else "," + inner)
            out.append(string(k) + ": ")
            _write(v, out, step, inner, sort_keys, string)
        out.append(nl + "}")
    elif isinstance(obj, (list, tuple)):
        if not obj:
            out.append("[]")
            return
        inner = nl + step
        out.append("[")
        for i, v in enumerate(obj):
            out.append(inner if i == 0 else "," + inner)
            _write(v, out, step, inner, sort_keys, string)
        out.append(nl + "]")
    elif type(obj) is str:
        out.append(string(obj))
    elif obj is None or type(obj) in (int, float, bool):
        out.append("".join(_encode(obj, 0)))
    else:  # anything exotic: json's own encoder, at this nesting level
        import json

        out.append(json.dumps(obj, indent=len(step), sort_keys=sort_keys).replace("\n", nl))


def _go_string(s: str) -> str:
    """A string as Go's encoding/json writes it: <, >, &, U+2028/2029 and control
    characters as \\u00XX (\\n, \\r, \\t short), other non-ASCII raw, lone surrogates as U+FFFD."""
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif c < 0x20 or ch in "<>&\u2028\u2029":
            out.append(f"\\u{c:04x}")
        elif 0xD800 <= c < 0xE000:
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_encode_go = _json.make_encoder(None, _default, _go_string, None, ":", ",", False, False, True)


def dumps_go(obj: object, indent: int | None = None) -> str:
    """JSON byte for byte as Go's json.Marshal writes it (runc's `list -f json`, its json
    log): compact, Go's escaping; with `indent`, as json.MarshalIndent(obj, "", indent
    spaces) does (runc's `state`). Dict order is kept: sort map keys beforehand."""
    if indent is None:
        return "".join(_encode_go(obj, 0))
    out: list[str] = []
    _write(obj, out, " " * indent, "\n", False, _go_string)
    return "".join(out)


def lone_surrogate(doc: object, where: str = "") -> str | None:
    """Where `doc` holds a string with half a UTF-16 pair (JSON may escape one: "\\ud800"),
    which can never become a path, an argument or a name; None when it holds none. Cheap
    to skip: only text with a "\\ud" escape can need it (see may_hold_surrogates)."""
    if isinstance(doc, str):
        try:
            doc.encode()
        except UnicodeEncodeError:
            return where or "(root)"
    elif isinstance(doc, dict):
        for k, item in doc.items():
            bad = lone_surrogate(k, where) or lone_surrogate(item, f"{where}.{k}" if where else k)
            if bad:
                return bad
    elif isinstance(doc, list):
        for i, item in enumerate(doc):
            bad = lone_surrogate(item, f"{where}[{i}]")
            if bad:
                return bad
    return None


def may_hold_surrogates(data: bytes) -> bool:
    return b"\\ud" in data or b"\\uD" in data
