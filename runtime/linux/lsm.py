"""AppArmor and SELinux: whether the host has them (probed only when a config asks for a
label), and the label writes of the child.

- process.apparmorProfile: "exec <profile>" into /proc/thread-self/attr/apparmor/exec
  (attr/exec on kernels without LSM stacking), just before execve.
- process.selinuxLabel: the label into /proc/thread-self/attr/exec just before execve, and
  into /proc/self/attr/keycreate before the session keyring is joined (runc does both).
- linux.mountLabel: context="<label>" on the mounts that take it (runtime.linux.mountplan).

A profile or label on a host without that LSM is refused in the parent: nothing would
confine the container. The writes go through runtime.linux.procfs, so a container cannot
redirect them.
"""

from __future__ import annotations

import os

from runtime.errors import strerror
from runtime.linux import mountinfo, procfs

SELINUX_OFF = "selinux label is specified in config, but selinux is disabled or not supported"


def apparmor_enabled(sysfs: str = "/sys") -> bool:
    """runc's check: securityfs has apparmor and the module says it is enabled."""
    if not os.path.isdir(f"{sysfs}/kernel/security/apparmor"):
        return False
    try:
        with open(f"{sysfs}/module/apparmor/parameters/enabled") as f:
            return f.read(1) == "Y"
    except OSError:
        return False


def selinux_enabled(proc: str = "/proc") -> bool:
    """go-selinux's check: selinuxfs is mounted and we run under a label other than the
    kernel's initial one."""
    try:
        if not mountinfo.read(fstypes=("selinuxfs",)):  # the other lines are not parsed
            return False
        with open(f"{proc}/self/attr/current") as f:
            return f.read().strip("\0\n ") not in ("", "kernel")
    except OSError:
        return False


def apparmor_exec_path(proc: str = "/proc") -> str:
    """The LSM-stacking interface when the kernel has it, else the legacy file."""
    if os.path.exists(f"{proc}/self/attr/apparmor/exec"):
        return "/proc/thread-self/attr/apparmor/exec"
    return "/proc/thread-self/attr/exec"


def _write_attr(path: str, data: str, what: str) -> None:
    try:
        procfs.write(path, data)
    except OSError as e:
        raise OSError(e.errno, f"{what}: {strerror(e.errno)}") from None


def apply_apparmor(path: str, profile: str) -> None:
    """Child side: takes effect at the next execve."""
    _write_attr(path, f"exec {profile}", f"process.apparmorProfile: applying {profile!r}")


def apply_selinux_exec(label: str) -> None:
    _write_attr("/proc/thread-self/attr/exec", label,
                f"process.selinuxLabel: setting the exec label {label!r}")


def set_keyring_label(label: str) -> None:
    """Before the session keyring is joined: the keyring gets the container's label."""
    _write_attr("/proc/self/attr/keycreate", label,
                f"process.selinuxLabel: setting the keyring label {label!r}")
