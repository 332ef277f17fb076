#!/usr/bin/env python3
"""Build a busybox bundle from Debian's busybox-static: rootfs/ plus a default config.json.

    python bundles/busybox.py DEST [--args 'sh -c "..."']

The tests and the demo use it; it needs /bin/busybox (apt-get install busybox-static).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys

BUSYBOX = "/bin/busybox"
DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
        "var/run", "run", "home")


def build_rootfs(dest: str) -> str:
    """A minimal rootfs: static busybox, its applets as symlinks, passwd/group files."""
    if not os.path.exists(BUSYBOX):
        raise SystemExit(f"{BUSYBOX}: missing (apt-get install busybox-static)")
    for d in DIRS:
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(dest, "bin/busybox"))
    applets = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        link = os.path.join(dest, applet)
        if not os.path.lexists(link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink("/bin/busybox", link)
    _write(dest, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
           "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    _write(dest, "etc/group", "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
    _write(dest, "etc/hostname", "busybox\n")
    return dest


def _write(root: str, rel: str, text: str) -> None:
    with open(os.path.join(root, rel), "w") as f:
        f.write(text)


def build_bundle(dest: str, args: list[str] | None = None, terminal: bool = False) -> str:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from runtime.spec_default import default_spec

    os.makedirs(dest, exist_ok=True)
    build_rootfs(os.path.join(dest, "rootfs"))
    spec = default_spec()
    spec["process"]["terminal"] = terminal
    if args:
        spec["process"]["args"] = args
    with open(os.path.join(dest, "config.json"), "w") as f:
        json.dump(spec, f, indent=2)
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dest")
    p.add_argument("--args", help="process.args as a shell-quoted string")
    p.add_argument("--terminal", action="store_true")
    a = p.parse_args()
    build_bundle(a.dest, shlex.split(a.args) if a.args else None, a.terminal)
    print(a.dest)


if __name__ == "__main__":
    sys.exit(main())
