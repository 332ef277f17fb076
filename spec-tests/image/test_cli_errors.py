"""Through the real `onggi` command: bad input gives one line naming the field or path and
the reason, a non-zero exit, and no traceback; the runtime verbs never import the image tool."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from imgtest import ONGGI, PY, REPO

from runtime.image.reference import normalize_name, parse_reference


def onggi(*args: str, store: Path) -> subprocess.CompletedProcess[str]:
    if not os.access(ONGGI, os.X_OK):
        pytest.skip(f"{ONGGI} missing: pip install -e . first")
    return subprocess.run([ONGGI, "--store", str(store), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args,want",
    [
        (["image", "pull", "Bad/Name"], "reference 'Bad/Name': invalid repository component 'Bad'"),
        (["pull", "busybox@sha256:123"], "digest 'sha256:123': not a sha256 digest"),
        (["image", "pull", "oci:/nonexistent/dir"], "oci:/nonexistent/dir: no index.json"),
        (["image", "pull", "docker-archive:/nonexistent.tar"], "docker-archive:/nonexistent.tar: cannot read"),
        (["image", "pull", "--platform", "linux", "x"], "--platform 'linux': expected os/arch[/variant]"),
        (["image", "unpack", "x", "/tmp/b", "--mode", "zip"], "argument --mode: invalid choice: 'zip'"),
        (["image", "inspect", "nothere:1"], "image nothere:1: not in store"),
        (["rmi", "nothere"], "image nothere: not in store"),
        (["image", "unmount", "/nonexistent-bundle"], "bundle /nonexistent-bundle: not an overlay bundle"),
        (["image", "frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        (["image", "pull", "127.0.0.1:1/x:y", "-q"], "127.0.0.1:1: "),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], want: str, work: Path) -> None:
    r = onggi(*args, store=work / "store")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("onggi: ") and want in lines[0], lines[0]
    assert "Traceback" not in r.stderr


def test_images_alias_on_empty_store(work: Path) -> None:
    r = onggi("images", "--format", "json", store=work / "store")
    assert r.returncode == 0 and r.stdout.strip() == "[]"


def test_runtime_verbs_do_not_import_the_image_tool() -> None:
    code = ("import sys, runtime.cli; "
            "print([m for m in sys.modules if m.startswith('runtime.image') or m in "
            "('zstandard', 'http.client', 'ssl', 'concurrent.futures', 'tarfile')])")
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "text,want",
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("library/busybox:1.36", "docker.io/library/busybox:1.36"),
        ("index.docker.io/user/app", "docker.io/user/app:latest"),
        ("quay.io/org/app:v1", "quay.io/org/app:v1"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/a/b/c:t", "localhost:5000/a/b/c:t"),
        ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
        ("app@sha256:" + "a" * 64, "docker.io/library/app@sha256:" + "a" * 64),
        ("app:v1@sha256:" + "a" * 64, "docker.io/library/app:v1"),
    ],
)
def test_reference_defaults(text: str, want: str) -> None:
    assert normalize_name(text) == want


def test_reference_parts() -> None:
    r = parse_reference("127.0.0.1:5000/team/app:v2")
    assert (r.registry, r.repository, r.tag, r.digest) == ("127.0.0.1:5000", "team/app", "v2", None)
    assert r.is_loopback and not parse_reference("quay.io/a").is_loopback
    assert parse_reference("busybox").api_host == "registry-1.docker.io"
