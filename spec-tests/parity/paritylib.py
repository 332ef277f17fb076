"""Side by side with runc (1.1.5 here): the same bundle through `onggi` and `runc`, each
with a private --root, so a parity test checks onggi against what runc really does.

runc is optional: `runc_or_skip()` skips a comparison where it is not installed; the onggi
half of each test stands alone (with runc's words pinned where research-8 recorded them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

RUNC = shutil.which("runc")


def runc_or_skip() -> str:
    if RUNC is None:
        pytest.skip("runc is not installed")
    return RUNC


class Runc:
    """runc with its own state dir; every container it made is force-deleted at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ids: list[str] = []

    def new_id(self) -> str:
        cid = "r" + uuid.uuid4().hex[:10]
        self.ids.append(cid)
        return cid

    def __call__(self, *args: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run([runc_or_skip(), "--root", str(self.root), *args],
                              timeout=timeout, **kw)

    def run(self, bundle, args: list[str] | None = None, **kw) -> subprocess.CompletedProcess:
        """Foreground `runc run` of the harness bundle's config (written as onggi's is)."""
        bundle.write(args)
        return self("run", "-b", str(bundle.path), self.new_id(), **kw)

    def create(self, bundle, args: list[str] | None = None) -> str:
        """`runc create`; stdio to files, since the init holds them open (as with onggi)."""
        bundle.write(args)
        cid = self.new_id()
        err = self.root.parent / f"{cid}.err"
        with open(os.devnull, "w") as null, open(err, "w") as fe:
            res = self("create", "-b", str(bundle.path), cid, stdout=null, stderr=fe,
                       capture_output=False)
        assert res.returncode == 0, err.read_text()
        return cid

    def cleanup(self) -> None:
        for cid in self.ids:
            self("delete", "--force", cid)


@pytest.fixture
def runc(tmp_path):
    runc_or_skip()
    r = Runc(tmp_path / "runc-state")
    yield r
    r.cleanup()


def stderr_message(text: str) -> str:
    """runc's error without its logrus frame: `time="…" level=error msg="X"` -> X."""
    line = text.strip().splitlines()[-1] if text.strip() else ""
    if 'msg="' in line:
        line = line.split('msg="', 1)[1].rsplit('"', 1)[0]
        line = line.replace('\\"', '"').replace("\\n", "\n")
    return line
