"""The cached-overlay hot path: `image unpack --mode overlay` of an image whose layers are
all extracted already loads none of the heavy modules, and its argparse-free command-line
parser agrees with build_parser()."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import pytest
from imgtest import PY, REPO, image

from runtime import fastjson
from runtime.errors import OnggiError
from runtime.image.cli import build_parser, fast_parse

# Imported only to pull layers or to extract them, never to mount an already cached image.
HEAVY = {"hashlib", "_hashlib", "json", "re", "pathlib", "typing", "shutil", "threading",
         "urllib", "urllib.parse", "http", "http.client", "ssl", "tarfile", "zstandard",
         "concurrent.futures", "copy", "dataclasses", "runtime.image.pull",
         "runtime.image.unpack", "runtime.image.registry", "runtime.image.layout",
         "runtime.image.reference"}


def _imported(args: list[str], whole_cli: bool = False) -> set[str]:
    """Module names a run imports, from `python -S -X importtime` (-S like the onggi entry
    script): of `python -m runtime --store S ARGS…` if whole_cli, else of the image tool's
    main() alone (runtime/cli.py's global argparse parser left out)."""
    if whole_cli:
        cmd = [PY, "-S", "-X", "importtime", "-m", "runtime", "--store", *args]
    else:
        code = ("import sys; from runtime.image.cli import main; "
                "sys.exit(main(sys.argv[2:], store=sys.argv[1]))")
        cmd = [PY, "-S", "-X", "importtime", "-c", code, *args]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    names = set()
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_cached_overlay_unpack_skips_heavy_imports(work: Path, store: Path, busybox_layout: Path) -> None:
    assert image(["pull", "-q", f"oci:{busybox_layout}:latest"], store) == 0
    ref = "localhost/busybox:latest"
    assert image(["image", "unpack", "-q", "--mode", "overlay", ref, str(work / "b0")], store) == 0
    try:
        names = _imported([str(store), "image", "unpack", "-q", "--mode", "overlay", ref, str(work / "b1")])
        assert (work / "b1" / "config.json").is_file()
        assert (work / "b1" / "rootfs" / "bin").exists()
        assert "runtime.image.bundle" in names
        assert not names & HEAVY, sorted(names & HEAVY)
        # What it wrote is what json wrote before: the same config.json as the first bundle
        # (up to the bundle paths), and an index json reads back.
        a = json.loads((work / "b0" / "config.json").read_text())
        b = json.loads((work / "b1" / "config.json").read_text().replace(str(work / "b1"), str(work / "b0")))
        assert a == b
        text = (work / "b1" / "config.json").read_text()
        assert text == json.dumps(json.loads(text), indent=2) + "\n"
        idx_text = (store / "index.json").read_text()
        assert idx_text == json.dumps(json.loads(idx_text), indent=1, sort_keys=True)
        assert str(work / "b1") in json.loads(idx_text)["bundles"]
        # Through the whole CLI too: runtime/cli.py hands a plain `image unpack` over without
        # building its argparse parser.
        names = _imported([str(store), "image", "unpack", "-q", "--mode", "overlay", ref, str(work / "b2")],
                          whole_cli=True)
        assert (work / "b2" / "config.json").is_file()
        assert "runtime.image.bundle" in names
        assert not names & (HEAVY | {"argparse"}), sorted(names & (HEAVY | {"argparse"}))
    finally:
        for b in ("b2", "b1", "b0"):
            with contextlib.suppress(OnggiError):  # not made if the test failed before it
                image(["image", "unmount", str(work / b)], store)


@pytest.mark.parametrize("obj", [
    {}, [], None, "x", 1.5, {"b": [1, 2, {"x": None, "a": True}], "a": {"z": [], "y": {}},
                             "é": "ü\n\"", "f": 1e100, "n": -3, "t": (1, "2")},
])
def test_fastjson_indented_matches_json(obj: object) -> None:
    for indent in (1, 2):
        for sort_keys in (False, True):
            assert fastjson.dumps(obj, indent, sort_keys) == json.dumps(obj, indent=indent, sort_keys=sort_keys)


@pytest.mark.parametrize("text", [b'{"a": [1, 2.5, null, true]}', b' {"a":1}', b'{"a":1} \n',
                                  "\ufeff{}".encode(), b'{"a": NaN}', b"[1, 2", b"{} x", b"\xff",
                                  b"", b'"\\ud800"', b'{"a":1}\x0b'])
def test_fastjson_loads_matches_json(text: bytes) -> None:
    def run(f: object) -> str:
        try:
            return repr(f(text))  # type: ignore[operator]
        except ValueError as e:
            return f"{type(e).__name__}: {e}"

    assert run(fastjson.loads) == run(json.loads)


UNPACK_ARGVS = [
    ["unpack", "r", "b"],
    ["unpack", "-q", "--mode", "overlay", "r", "b"],
    ["unpack", "r", "b", "--mode=overlay", "--quiet"],
    ["unpack", "--mode", "copy", "--mode", "overlay", "r", "b"],
    ["unpack", "--platform", "linux/arm64", "--plain-http", "r", "b"],
    ["unpack", "--platform=linux/amd64/v2", "r", "b", "-q"],
    ["unpack", "oci:/x:latest", "/tmp/some bundle"],
    # argparse's: errors, abbreviations, --tls-verify, odd values.
    ["unpack", "r"],
    ["unpack", "r", "b", "c"],
    ["unpack", "--mode", "bogus", "r", "b"],
    ["unpack", "--mode", "r", "b"],
    ["unpack", "--mode"],
    ["unpack", "--mo", "overlay", "r", "b"],
    ["unpack", "--tls-verify", "r", "b"],
    ["unpack", "--tls-verify=false", "r", "b"],
    ["unpack", "--", "r", "b"],
    ["unpack", "-qq", "r", "b"],
    ["unpack", "--platform", "-x", "r", "b"],
    ["unpack", "", "b"],
    ["unpack", "-h"],
    ["pull", "r"],
    ["unmount", "b"],
    [],
]


@pytest.mark.parametrize("argv", UNPACK_ARGVS)
def test_fast_parse_agrees_with_argparse(argv: list[str]) -> None:
    fast = fast_parse(argv)
    if fast is None:
        return  # argparse decides, as before
    try:
        ns = build_parser().parse_args(argv)
    except (OnggiError, SystemExit) as e:
        pytest.fail(f"fast_parse accepted {argv}, argparse refused it: {e}")
    assert vars(fast) == vars(ns)


def test_fast_parse_takes_the_plain_unpack_lines() -> None:
    for argv in UNPACK_ARGVS[:7]:
        assert fast_parse(argv) is not None, argv
