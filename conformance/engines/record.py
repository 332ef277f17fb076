"""Record the config.json files podman and containerd write, as test fixtures.

    .venv/bin/python conformance/engines record [--out spec-tests/engines/configs]

The runtime wrapper copies each bundle's config.json at `create`; this module runs a few
typical containers through both engines (with runc, the reference), then rewrites what is
specific to this host and run into placeholders that spec-tests/engines/test_configs.py
fills in: {id} (the container id), {ns} (containerd namespace), {userdata} (podman's
per-container dir: hosts, resolv.conf, shm...), {netns} (podman's network namespace file),
{base} (the recording's temp dir, in annotations only).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import containerd, podman
from .common import Runtime, Workdir, in_pty
from .image import IMAGE

ECHO = ("sh", "-c", "echo engine-config-ok")

PODMAN = {
    "podman-default": (),
    "podman-resources": ("--memory", "64m", "--pids-limit", "50", "--cpus", "0.5"),
    "podman-hardened": ("--read-only", "--cap-drop", "ALL", "--user", "1000:1000",
                        "--network", "none", "--security-opt", "no-new-privileges"),
}
CTR = {
    "ctr-default": (),
    "ctr-resources": ("--memory-limit", str(64 << 20), "--cpus", "0.5"),
}


def record(out: Path, runtime: Runtime) -> list[Path]:
    work = Workdir()
    raw = work.path / "recorded"
    raw.mkdir()
    written = []
    try:
        p = podman.Podman(runtime, work, record_dir=raw)
        p.setup()
        for name, opts in PODMAN.items():
            written.append(_podman(p, raw, out, name, ["run", "--rm", *opts, IMAGE, *ECHO]))
        written.append(_podman(p, raw, out, "podman-tty",
                               ["run", "-it", "--rm", IMAGE, *ECHO], pty=True))
        archive = work.path / "bb-docker.tar"
        p("save", "--format", "docker-archive", "-o", str(archive), IMAGE)
        c = containerd.Ctr(runtime, work, record_dir=raw)
        c.setup()
        c.import_image(archive)
        for name, opts in CTR.items():
            cid = c.new_id()
            c("run", "--rm", *c.rt, *opts, IMAGE, cid, *ECHO)
            written.append(_save(raw / f"{cid}.json", out / f"{name}.json",
                                 {cid: "{id}", c.ns: "{ns}"}))
        cid = c.new_id()
        in_pty(c.argv("run", "-t", "--rm", *c.rt, IMAGE, cid, *ECHO))
        written.append(_save(raw / f"{cid}.json", out / "ctr-tty.json",
                             {cid: "{id}", c.ns: "{ns}"}))
    finally:
        work.cleanup()
    return written


def _podman(p: podman.Podman, raw: Path, out: Path, name: str, argv: list[str],
            pty: bool = False) -> Path:
    cidfile = p.base / f"{name}.cid"
    argv = [argv[0], "--cidfile", str(cidfile), *argv[1:]]
    p.pty(*argv) if pty else p(*argv)
    cid = cidfile.read_text().strip()
    cfg = json.loads((raw / f"{cid}.json").read_text())
    subs = {cid: "{id}"}
    for m in cfg["mounts"]:
        found = re.match(r"(.*/userdata)/", m["source"])
        if found:
            subs[found.group(1)] = "{userdata}"
    for ns in cfg["linux"]["namespaces"]:
        if ns.get("path", "").startswith("/run/netns/"):
            subs[ns["path"]] = "{netns}"
    return _save(raw / f"{cid}.json", out / f"{name}.json", subs)


def _save(src: Path, dest: Path, subs: dict[str, str]) -> Path:
    """The config with `subs` applied to every string, and root.path the bundle's rootfs."""
    cfg = json.loads(src.read_text())
    cfg["root"]["path"] = "rootfs"
    subs = {**subs, str(src.parents[1]): "{base}"}  # the run's temp dir (e.g. in annotations)

    def walk(v):
        if isinstance(v, str):  # longest first: a userdata path contains the id
            for old, new in sorted(subs.items(), key=lambda kv: -len(kv[0])):
                v = v.replace(old, new)
            return v
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {walk(k): walk(x) for k, x in v.items()}
        return v

    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(walk(cfg), indent=2) + "\n")
    return dest
