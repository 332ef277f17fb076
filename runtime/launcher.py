"""Write a faster `onggi` entry script: `python -m runtime.launcher PATH`.

pip's console script starts the interpreter with `site`, which costs ~7 ms a call here
(.pth files, sitecustomize). Engines start onggi for every container event, so the
Makefile replaces the script with one that runs `python -S` and puts onggi and its
site-packages on sys.path itself: the same imports, without the site machinery.
"""

from __future__ import annotations

import os
import sys
import sysconfig

TEMPLATE = """#!{python} -S
# Written by `python -m runtime.launcher`: -S skips `site` (~7 ms a call); the paths it
# would have added are set here instead. The cyclic GC is off from the first import.
# onggi replaces the script's own dir; site-packages comes after the standard library, as
# with `site`, so the hot verbs, which need nothing from it, never look there.
import gc
gc.disable()
import sys
sys.path[0] = {repo!r}
sys.path += {site!r}
from runtime.cli import entry
entry()
"""


def script() -> str:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    purelib = sysconfig.get_paths()["purelib"]
    platlib = sysconfig.get_paths()["platlib"]
    site = [p for p in dict.fromkeys([purelib, platlib]) if p != repo]
    return TEMPLATE.format(python=sys.executable, repo=repo, site=site)


def main() -> None:
    dest = sys.argv[1]
    tmp = dest + ".tmp"
    with open(tmp, "w") as f:
        f.write(script())
    os.chmod(tmp, 0o755)
    os.rename(tmp, dest)


if __name__ == "__main__":
    main()
