"""JSON for the cached-overlay hot path without `import json` (which pulls in re and enum).

Reading goes through json's own C scanner (runtime.fastjson); anything unusual (a BOM,
non-UTF-8 bytes, NaN, bad JSON) is handed to `json.loads`, so results and error messages
stay json's own. Writing reproduces `json.dumps(obj, indent=N, sort_keys=...)` byte for
byte for what the store writes (dicts with str keys, lists, str, int, float, bool, None).
"""

from __future__ import annotations

from runtime import fastjson

_WS = " \t\n\r"


def loads(data: bytes | str) -> object:
    """`json.loads(data)`, through the C scanner alone when the text is plain."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        if not text.startswith("\ufeff"):
            obj, end = fastjson._scan(text, 0)
            if not text[end:].strip(_WS):
                return obj
    except Exception:  # noqa: BLE001, S110 - json.loads below gives the real answer or error
        pass
    import json

    return json.loads(data)


def dumps(obj: object, indent: int, sort_keys: bool = False) -> str:
    """`json.dumps(obj, indent=indent, sort_keys=sort_keys)`."""
    out: list[str] = []
    _write(obj, out, " " * indent, "\n", sort_keys)
    return "".join(out)


def _write(obj: object, out: list[str], step: str, nl: str, sort_keys: bool) -> None:
    if isinstance(obj, dict) and all(type(k) is str for k in obj):
        if not obj:
            out.append("{}")
            return
        inner = nl + step
        out.append("{")
        items = sorted(obj.items()) if sort_keys else obj.items()
        first = True
        for k, v in items:
            out.append(inner if first else "," + inner)
            first = False
            out.append(fastjson._string(k) + ": ")
            _write(v, out, step, inner, sort_keys)
        out.append(nl + "}")
    elif isinstance(obj, (list, tuple)):
        if not obj:
            out.append("[]")
            return
        inner = nl + step
        out.append("[")
        for i, v in enumerate(obj):
            out.append(inner if i == 0 else "," + inner)
            _write(v, out, step, inner, sort_keys)
        out.append(nl + "]")
    elif obj is None or isinstance(obj, (str, int, float)) and type(obj) in (str, int, float, bool):
        out.append(fastjson.dumps(obj))
    else:  # anything exotic: json's own encoder, at this nesting level
        import json

        text = json.dumps(obj, indent=len(step), sort_keys=sort_keys)
        out.append(text.replace("\n", nl))
