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


def loads(text: str) -> object:
    try:
        obj, end = _scan(text, 0)
    except Exception:  # noqa: BLE001 - the scanner's own errors need json.decoder loaded
        import json

        return json.loads(text)  # raises the proper JSONDecodeError (a ValueError)
    if text[end:].strip():
        raise ValueError(f"extra data after JSON at {end}")
    return obj


def dumps(obj: object) -> str:
    return "".join(_encode(obj, 0))


def dumps_indented(obj: dict) -> str:
    """A dict with one key per line, as runc prints `state` (nested values stay inline)."""
    lines = [f"  {_string(k)}: {dumps(v)}" for k, v in obj.items()]
    return "{\n" + ",\n".join(lines) + "\n}"
