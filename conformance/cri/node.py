"""A Kubernetes node's runtime side, privately: containerd 1.6 with its CRI plugin on its own
socket, a runtime handler for the runtime under test, CNI bridge networking, and local
images (busybox-static, and a pause image built from pause.c), all under a temp dir."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
from pathlib import Path

from engines.common import SBIN_PATH, Runtime, Workdir, ensure_packages, run, unique, write_wrapper
from engines.containerd import CONFIG, start_containerd
from engines.image import IMAGE
from engines.podman import Podman

PACKAGES = ["containerd", "containernetworking-plugins", "podman", "gcc", "libc6-dev",
            "busybox-static", "iproute2"]
CRICTL_ENV, CRITEST_ENV = "CRICTL", "CRITEST"
PAUSE_IMAGE = "localhost/onggi-pause:3.9"
K8S_NS = "k8s.io"  # the containerd namespace the CRI plugin uses

CRI = """\
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "{stream_port}"
  # no CAP_SYS_RESOURCE here: the sandbox's oom_score_adj of -998 could not be set
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{base}/rt-runc"
{handler}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{base}/net.d"
{mirrors}
"""

HANDLER = """\
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}.options]
        BinaryName = "{binary}"
        Root = "{base}/rt-{name}"
"""

MIRROR = """\
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{host}"]
    endpoint = ["{endpoint}"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_tool(env: str) -> str | None:
    """crictl/critest from $CRICTL/$CRITEST (or PATH); None when not built here."""
    path = os.environ.get(env) or shutil.which(env.lower())
    return path if path and os.access(path, os.X_OK) else None


class Node:
    """containerd+CRI for `runtime` (handler = its name; runc is always there too)."""

    def __init__(self, runtime: Runtime, work: Workdir, crictl: str,
                 mirrors: dict[str, str] | None = None):
        self.runtime = runtime
        self.work = work
        self.crictl_path = crictl
        self.base = work.path / "cri"
        self.calls = self.base / "runtime-calls.log"
        self.mirrors = mirrors or {}
        self.cgroup_parent = "/" + unique("onggi-cri-")
        self.bridge = unique("ocri")[:15]

    def setup(self) -> None:
        bindir = self.base / "bin"
        bindir.mkdir(parents=True)
        runc = write_wrapper(bindir / "runc-logged", Runtime.select("runc"), self.calls)
        handler = ""
        if self.runtime.name != "runc":
            wrapper = write_wrapper(bindir / f"{self.runtime.name}-logged", self.runtime,
                                    self.calls)
            handler = HANDLER.format(name=self.runtime.name, binary=wrapper, base=self.base)
        self.write_cni()
        mirrors = "".join(MIRROR.format(host=h, endpoint=e) for h, e in self.mirrors.items())
        config = CONFIG.format(base=self.base, top="") + CRI.format(
            base=self.base, pause=PAUSE_IMAGE, runc=runc, handler=handler,
            stream_port=free_port(), mirrors=mirrors)
        self.work.on_cleanup("cni bridge", lambda: run(
            ["ip", "link", "del", self.bridge], check=False))
        self.work.on_cleanup("pod cgroups", self.remove_cgroups)
        self.sock = start_containerd(self.work, self.base, config, [bindir])
        self.work.on_cleanup("pods", self.remove_pods)
        self.import_images()

    def write_cni(self) -> None:
        """A bridge network of its own (a unique bridge, a random /24 in 10.199/16)."""
        subnet = f"10.199.{random.randrange(1, 254)}.0/24"
        conf = {"cniVersion": "1.0.0", "name": self.bridge, "plugins": [
            {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                      "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": str(self.base / "cni-ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}
        (self.base / "net.d").mkdir(parents=True, exist_ok=True)
        (self.base / "net.d" / "10-onggi.conflist").write_text(json.dumps(conf, indent=1))
        self.subnet = subnet

    def import_images(self) -> None:
        """busybox-static and the pause image, into the CRI plugin's namespace: podman
        imports the rootfs tarballs and writes docker-archives that ctr imports."""
        self.podman = pm = Podman(Runtime.select("runc"), self.work)
        pm.setup()  # imports the busybox image (IMAGE)
        from .critest import build_c

        pause_root = self.base / "pause-rootfs"
        build_c("pause.c", pause_root / "pause")
        pause_tar = self.base / "pause-rootfs.tar"
        subprocess.run(["tar", "-C", str(pause_root), "-cf", str(pause_tar), "pause"],
                       check=True)
        pm("import", "--change", 'ENTRYPOINT ["/pause"]', str(pause_tar), PAUSE_IMAGE)
        for name in (IMAGE, PAUSE_IMAGE):
            archive = self.base / (name.split("/")[-1].replace(":", "_") + ".tar")
            pm("save", "--format", "docker-archive", "-o", str(archive), name)
            self.ctr("image", "import", str(archive))

    def ctr(self, *args: str, check: bool = True):
        return run(["ctr", "--address", str(self.sock), "--namespace", K8S_NS, *args],
                   check=check, timeout=120)

    def crictl(self, *args: str, check: bool = True, timeout: float = 90):
        return run([self.crictl_path, "--config", str(self.crictl_yaml), *args], check=check,
                   timeout=timeout, env={"PATH": SBIN_PATH, "HOME": os.environ.get("HOME", "/")})

    @property
    def crictl_yaml(self) -> Path:
        path = self.base / "crictl.yaml"
        if not path.exists():
            ep = f"unix://{self.sock}"
            path.write_text(f"runtime-endpoint: {ep}\nimage-endpoint: {ep}\ntimeout: 60\n")
        return path

    def remove_pods(self) -> None:
        """Through CRI first; then whatever the runtimes still hold (a runtime whose kill
        the shim misreads leaves pods that CRI can no longer stop)."""
        netns = []
        for pod in self.crictl("pods", "-q", check=False).stdout.split():
            netns.append(self.pod_netns(pod))
            self.crictl("stopp", pod, check=False)
            self.crictl("rmp", "-f", pod, check=False)
        for root in self.base.glob(f"rt-*/{K8S_NS}"):
            rt = Runtime.select("runc") if root.parent.name == "rt-runc" else self.runtime
            for cid in run([rt.path, "--root", str(root), "list", "-q"],
                           check=False).stdout.split():
                run([rt.path, "--root", str(root), "kill", cid, "9"], check=False)
                run([rt.path, "--root", str(root), "delete", "--force", cid], check=False)
        for path in filter(None, netns):  # what CRI could not tear down
            if Path(path).exists():
                run(["umount", path], check=False)
                Path(path).unlink(missing_ok=True)

    def pod_netns(self, pod: str) -> str | None:
        """The pod's /var/run/netns/cni-... file, from its runtime spec."""
        res = self.crictl("inspectp", "-o", "json", pod, check=False)
        try:
            spec = json.loads(res.stdout)["info"]["runtimeSpec"]
        except (ValueError, KeyError):
            return None
        return next((ns.get("path") for ns in spec["linux"]["namespaces"]
                     if ns["type"] == "network"), None)

    def remove_cgroups(self) -> None:
        from engines import cgroups

        cgroups.remove_we_made(self.cgroup_parent, set(), recursive=True)


def ensure_installed() -> None:
    ensure_packages(PACKAGES)
