"""`onggi features`: what this runtime supports, built from the tables the code itself uses."""

from __future__ import annotations

from runtime import OCI_VERSION, __version__
from runtime.spec import CAPABILITIES, CLONE_FLAGS

HOOKS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]


def features() -> dict:
    from runtime.linux import mountopts, seccomp

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": HOOKS,
        "mountOptions": sorted(mountopts.known_options()),
        "linux": {
            "namespaces": sorted(CLONE_FLAGS),
            "capabilities": list(CAPABILITIES),
            # rdma: written to rdma.max where the controller exists (v1 or v2)
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": True},
            "seccomp": {"enabled": True, "actions": sorted(seccomp.ACTIONS),
                        "operators": sorted(seccomp.OPERATORS), "archs": sorted(seccomp.ARCHES)},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": True}},
        },
        "annotations": {"io.github.onggi.version": __version__},
    }
