"""`onggi features`: what this runtime supports, built from the tables the code itself uses
(runtime.fields says which config fields take effect). It claims only what works here:
AppArmor, SELinux and Intel RDT are `enabled` only where a config asking for them would
run, since `create` refuses it elsewhere."""

from __future__ import annotations

from runtime import OCI_VERSION, __version__, fields
from runtime.spec import CAPABILITIES, CLONE_FLAGS

HOOKS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]


def _applied(path: str) -> bool:
    return fields.group(path) == fields.APPLIED


def _has_rdma() -> bool:
    try:
        with open("/proc/cgroups") as f:
            return any(line.split()[0] == "rdma" for line in f if line.strip())
    except OSError:
        return False


def features() -> dict:
    from runtime import cgroups
    from runtime.linux import lsm, mempolicy, mountopts, resctrl, seccomp

    rdt = _applied("linux.intelRdt.closID") and resctrl.is_resctrl()
    linux = {
        "namespaces": sorted(CLONE_FLAGS),
        "capabilities": list(CAPABILITIES),
        # rdma: written to rdma.max where the host has the controller (v1 or v2); systemd:
        # where --systemd-cgroup works (systemd as init, pure cgroup v2, root)
        "cgroup": {"v1": True, "v2": True, "systemd": cgroups.systemd_usable(),
                   "systemdUser": False,
                   "rdma": _has_rdma()},
        "seccomp": {"enabled": True, "actions": sorted(seccomp.ACTIONS),
                    "operators": sorted(seccomp.OPERATORS), "archs": sorted(seccomp.ARCHES)},
        "apparmor": {"enabled": _applied("process.apparmorProfile") and lsm.apparmor_enabled()},
        "selinux": {"enabled": _applied("process.selinuxLabel") and lsm.selinux_enabled()},
        "intelRdt": {"enabled": rdt},
        "mountExtensions": {"idmap": {"enabled": _applied("mounts[].uidMappings[].hostID")}},
        "netDevices": {"enabled": _applied("linux.netDevices.<key>.name")},
    }
    if rdt:  # features-linux.md; not in the 1.3.0 schema, which allows extra keys
        linux["intelRdt"].update(schemata=True, monitoring=resctrl.has_monitoring())
    if _applied("linux.memoryPolicy.mode"):
        linux["memoryPolicy"] = {"modes": sorted(mempolicy.MODES),
                                 "flags": sorted(mempolicy.FLAGS)}
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": HOOKS,
        "mountOptions": sorted(mountopts.known_options()),
        "linux": linux,
        "annotations": {"io.github.onggi.version": __version__},
    }
