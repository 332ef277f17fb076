"""Mutations of valid JSON documents (config.json, state.json, process.json) for the fuzz
tests: wrong types, missing fields, huge values, NUL bytes, "..", odd unicode, deep nesting.

    gen = Mutator(seed)
    doc = gen.mutate(valid_doc)          # 1 to 3 edits at random places
    data = gen.damage(json_bytes)        # cut, flipped, or spliced bytes (file-level faults)

Everything is drawn from a seeded random.Random, so a failure names a seed that repeats it.
"""

from __future__ import annotations

import copy
import json
import random
import re

# Values that break assumptions. Some are paths ("/", "../../../.."): config paths resolve
# inside the rootfs, and state.json's cgroup dirs must lie below a hierarchy under
# /sys/fs/cgroup (runtime.cgroups.bad_dir), or the state is corrupt; never put a value here
# that a verb would act on outside the test's own dirs.
ODD_VALUES: list[object] = [
    None, True, False, 0, -1, 1, 255, 65536, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63,
    2**64, -(2**63) - 1, 10**30, 1.5, -0.0, 1e308,
    "", " ", "x", ".", "..", "../..", "../../../../..", "/..", "/", "//", "a/../../b",
    "a\0b", "\0", "\n", "\t", "é", "日本語", "\u202e", "😀", "\ud800", "\uffff",
    "x" * 5000, "-1", "0x10", "1e3", "true", "null", "SIGKILL", "CAP_SYS_ADMIN",
    [], {}, [None], [""], ["\0"], [1, "a", None], {"": ""}, {"a": None}, {"..": 1},
]


def _deep(depth: int) -> str:
    """A marker that dumps() turns into `depth` nested arrays (kept out of the Python
    document, which is walked and copied recursively)."""
    return f"@deep{depth}@"


def _paths(doc: object, here: tuple = ()) -> list[tuple]:
    """Every place in the document: keys of dicts and indexes of lists."""
    out = [here]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*here, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*here, i))
    return out


def _get(doc: object, path: tuple) -> object:
    for p in path:
        doc = doc[p]
    return doc


class Mutator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def value(self) -> object:
        r = self.rng.random()
        if r < 0.03:
            return _deep(self.rng.choice((50, 500, 5000)))
        if r < 0.06:
            return "".join(self.rng.choice("ab./\0😀é ") for _ in range(self.rng.randrange(1, 40)))
        return copy.deepcopy(self.rng.choice(ODD_VALUES))

    def mutate(self, doc: object, edits: int | None = None) -> object:
        doc = copy.deepcopy(doc)
        for _ in range(edits or self.rng.randint(1, 3)):
            doc = self._edit(doc)
        return doc

    def _edit(self, doc: object) -> object:
        paths = _paths(doc)
        path = self.rng.choice(paths)
        if not path:  # the whole document
            return self.value() if self.rng.random() < 0.3 else doc
        parent, key = _get(doc, path[:-1]), path[-1]
        op = self.rng.random()
        if op < 0.25 and isinstance(parent, dict):
            del parent[key]  # a missing field
        elif op < 0.35 and isinstance(parent, dict):
            parent[self.rng.choice(["x", "", "\0", "..", "😀", key + "_"])] = self.value()
        elif op < 0.45 and isinstance(parent, list):
            parent.insert(self.rng.randrange(len(parent) + 1),
                          copy.deepcopy(self.rng.choice(parent)) if parent else self.value())
        elif op < 0.55 and isinstance(parent[key], str):
            s = parent[key]
            i = self.rng.randrange(len(s) + 1)
            parent[key] = s[:i] + self.rng.choice(["\0", "/..", "../", "😀", "\ud800", "é",
                                                    "\n", "x" * 300]) + s[i:]
        elif op < 0.62 and isinstance(parent[key], (int, float)) and \
                not isinstance(parent[key], bool):
            parent[key] = self.rng.choice([-1, 2**32, 2**63, 2**64, -(2**64), 10**20, 0.5])
        else:
            parent[key] = self.value()  # a wrong type, or an odd value of the right one
        return doc

    def damage(self, data: bytes) -> bytes:
        """File-level faults: cut short (a crash without fsync), bytes flipped, zeroed,
        or the file twice over."""
        r = self.rng.random()
        if r < 0.5:
            return data[: self.rng.randrange(len(data) + 1)]
        if r < 0.7:
            b = bytearray(data)
            for _ in range(self.rng.randint(1, 4)):
                b[self.rng.randrange(len(b))] = self.rng.randrange(256)
            return bytes(b)
        if r < 0.8:
            return b"\0" * self.rng.randrange(len(data) + 1)
        if r < 0.9:
            return data + data
        return bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(64)))


def dumps(doc: object) -> bytes:
    """JSON bytes of a mutated document (a lone surrogate is written escaped, which is
    valid JSON); deep-nesting markers become the nested arrays."""
    text = json.dumps(doc)
    return re.sub(r'"@deep(\d+)@"', lambda m: "[" * int(m[1]) + "0" + "]" * int(m[1]),
                  text).encode()
