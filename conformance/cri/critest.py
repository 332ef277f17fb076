"""The CRI validation suite (critest) against a runtime handler, with no internet.

critest pulls fixed image names from registry.k8s.io and gcr.io. A local docker-registry
serves look-alikes built here, and containerd's registry mirrors send those hosts to it:
- e2e-test-images/busybox: Debian's dynamic busybox (`apt-get download`), applets as real
  files (a static busybox runs `ls` inside its own shell, defeating the masked-paths check),
  plus ipcs and pgrep with their libraries;
- the nginx and httpd images: nginx.c, a static HTTP server named nginx;
- nonewprivs: nonewprivs.c, setuid root, printing its effective uid;
- test-image-*: busybox with the USER / passwd / group entries the specs read;
- pause:3.9 under two registries (a marker file gives it an image ID apart from the sandbox
  image, which a spec removes by ID).
One spec pins an upstream digest that cannot be rebuilt: it is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from engines.common import Runtime, Workdir, kill_pid, run, wait_for
from engines.podman import Podman

from .node import Node, free_port

SKIP = [r"public image with digest should be pulled and removed"]
MIRRORED = ["registry.k8s.io", "k8s.gcr.io", "gcr.io"]
E2E = "e2e-test-images/"
STAGING = "k8s-staging-cri-tools/"
PASSWD = ("root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\n"
          "default-user:x:1000:1000::/home/default-user:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = ("root:x:0:\nwww-data:x:33:\ndefault-user:x:1000:\n"
         "group-defined-in-image:x:50000:default-user\nnogroup:x:65534:\n")


@dataclass
class Result:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        total = len(self.passed) + len(self.failed) + len(self.skipped)
        return (f"critest: {len(self.passed)} passed, {len(self.failed)} failed, "
                f"{len(self.skipped)} skipped of {total} specs")


def run_critest(runtime: Runtime, crictl: str, critest: str, focus: str | None = None) -> Result:
    work = Workdir()
    try:
        port = start_registry(work)
        url = f"127.0.0.1:{port}"
        node = Node(runtime, work, crictl, mirrors={h: f"http://{url}" for h in MIRRORED})
        node.setup()
        push_lookalikes(node.podman, work.path / "images", url)
        report = work.path / "critest.xml"
        argv = [critest, f"--runtime-endpoint=unix://{node.sock}",
                f"--image-endpoint=unix://{node.sock}", f"--runtime-handler={runtime.name}",
                f"--ginkgo.skip={'|'.join(SKIP)}", f"--ginkgo.junit-report={report}",
                "--ginkgo.no-color", "--ginkgo.timeout=45m",
                # a call that cannot finish (a pod the shim can never stop) fails in 20 s
                # rather than critest's default five minutes
                "--runtime-service-timeout=20s"]
        if focus:
            argv.append(f"--ginkgo.focus={focus}")
        log = Path(os.environ.get("CRITEST_LOG") or work.path / "critest.log")
        with open(log, "w") as out:  # ginkgo's own timeout ends it first
            subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, cwd=work.path,
                           timeout=3000)
        return parse_junit(report)
    finally:
        work.cleanup()


def parse_junit(report: Path) -> Result:
    res = Result()
    for case in ET.parse(report).getroot().iter("testcase"):
        name = re.sub(r"^\[It\] ", "", case.get("name", ""))
        if name.startswith(("[BeforeSuite]", "[AfterSuite]", "[SynchronizedBeforeSuite]",
                            "[SynchronizedAfterSuite]", "[ReportAfterSuite]")):
            continue
        if case.find("skipped") is not None:
            res.skipped.append(name)
        elif case.find("failure") is not None or case.find("error") is not None:
            res.failed.append(name)
        else:
            res.passed.append(name)
    return res


def start_registry(work: Workdir) -> int:
    """Debian's docker-registry (distribution 2.8) on a loopback port, storage in `work`."""
    port = free_port()
    base = work.path / "registry"
    base.mkdir()
    (base / "config.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {base}/data\n"
        f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: error\n")
    with open(base / "registry.log", "wb") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(base / "config.yml")],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    work.on_cleanup("registry", lambda: kill_pid(proc.pid))
    wait_for(lambda: _listening(port), "the registry", 20)
    return port


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _copy_with_libs(binary: str, root: Path, at: str | None = None) -> None:
    """A dynamic binary (to `at`, or its own path) and the libraries ldd names, in `root`."""
    libs = re.findall(r"(/\S+) \(0x", run(["ldd", binary]).stdout)
    for src, path in [(binary, at or binary), *((lib, lib) for lib in libs)]:
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        shutil.copy2(os.path.realpath(src), dest)


def busybox_rootfs(dest: Path) -> Path:
    """Debian's dynamic busybox with every applet a hard link (a real file)."""
    debs = dest.parent / "debs"
    debs.mkdir(exist_ok=True)
    run(["apt-get", "download", "busybox"], cwd=str(debs), timeout=300)
    deb = next(debs.glob("busybox_*.deb"))
    extracted = debs / "busybox"
    run(["dpkg-deb", "-x", str(deb), str(extracted)])
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp",
              "root", "var/run", "run", "home/default-user", "var/www"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    _copy_with_libs(str(extracted / "bin/busybox"), dest, "/bin/busybox")
    applets = run([str(extracted / "bin/busybox"), "--list-full"]).stdout.split()
    for applet in applets:
        target = dest / applet
        if not target.exists():
            os.link(dest / "bin/busybox", target)
    for tool in ("/usr/bin/ipcs", "/usr/bin/pgrep"):
        _copy_with_libs(tool, dest)
    (dest / "etc/passwd").write_text(PASSWD)
    (dest / "etc/group").write_text(GROUP)
    return dest


def build_c(source: str, dest: Path) -> None:
    """One of this directory's C programs, static, at `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    run(["gcc", "-static", "-O2", "-o", str(dest), str(Path(__file__).with_name(source))])


def push_lookalikes(pm: Podman, work: Path, registry: str) -> None:
    """Build every image critest pulls and push it to the local registry."""
    work.mkdir()
    bb = busybox_rootfs(work / "busybox")
    build_c("nginx.c", bb / "usr/sbin/nginx")
    (bb / "usr/sbin/httpd").unlink(missing_ok=True)  # busybox's applet: the log names httpd
    shutil.copy2(bb / "usr/sbin/nginx", bb / "usr/sbin/httpd")
    build_c("nonewprivs.c", bb / "usr/local/bin/nonewprivs")
    (bb / "usr/local/bin/nonewprivs").chmod(0o4755)  # setuid root

    def image(name: str, root: Path, *changes: str, marker: str = "") -> str:
        if marker:
            (root / "marker").write_text(marker)
        tar = work / f"{name.replace('/', '_').replace(':', '_')}.tar"
        run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(tar), "."])
        ref = f"localhost/lookalike/{name}"
        args = [x for c in changes for x in ("--change", c)]
        pm("import", *args, str(tar), ref, timeout=120)
        (root / "marker").unlink(missing_ok=True)
        return ref

    def push(ref: str, *paths: str) -> None:
        for path in paths:
            pm("push", "--tls-verify=false", ref, f"docker://{registry}/{path}", timeout=120)

    sh = 'CMD ["/bin/sh"]'
    push(image("busybox", bb, sh), f"{E2E}busybox:1.29-2")
    nginx = 'ENTRYPOINT ["/usr/sbin/nginx", "-g", "master process"]'
    push(image("nginx", bb, nginx), f"{E2E}nginx:1.14-2")
    push(image("httpd", bb, 'ENTRYPOINT ["/usr/sbin/httpd"]'), f"{E2E}httpd:2.4.39-4")
    push(image("hostnet-nginx", bb, nginx, 'CMD ["12003"]'),
         f"{STAGING}hostnet-nginx-amd64:latest")
    push(image("nonewprivs", bb, 'ENTRYPOINT ["/usr/local/bin/nonewprivs"]'),
         f"{E2E}nonewprivs:1.3")
    for name, user in (("test-image-user-uid", "1002"), ("test-image-user-username", "www-data"),
                       ("test-image-user-uid-group", "1003:1003"),
                       ("test-image-user-username-group", "www-data:www-data"),
                       ("test-image-predefined-group", "1000")):
        push(image(name, bb, sh, f"USER {user}"), f"{STAGING}{name}:latest")
    push(image("test-image", bb, sh, marker="test-image"),
         f"{STAGING}test-image-latest:latest", f"{STAGING}test-image-tag:test",
         f"{STAGING}test-image-tag:all")
    for i in (1, 2, 3):
        push(image(f"test-image-{i}", bb, sh, marker=str(i)), f"{STAGING}test-image-{i}:latest")
    push(image("test-image-tags", bb, sh, marker="tags"),
         *(f"{STAGING}test-image-tags:{i}" for i in (1, 2, 3)))
    pause_root = work / "pause"
    build_c("pause.c", pause_root / "pause")
    push(image("pause", pause_root, 'ENTRYPOINT ["/pause"]', marker="registry-pause"),
         "pause:3.9")
