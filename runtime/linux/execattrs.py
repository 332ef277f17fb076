"""What the user process inherits from us beyond finalize's basics: scheduler, I/O
priority, CPU affinity, memory policy, personality and the LSM labels.

`prepare` runs in the parent (create, and exec with the process it runs): it converts the
fields, probes the host where a field needs it (AppArmor, SELinux, NUMA nodes) and refuses
what cannot take effect. It returns None for a config with none of these fields; `create`
imports this module only when runtime.spec.has_exec_attrs says the config has one.

The child calls, in this order (runc's):
  keyring_label()   before the session keyring is joined (init only)
  before_user()     at the start of finalize, still root with every capability:
                    scheduler, ioPriority, execCPUAffinity.final, memoryPolicy
  before_exec()     in exec_process, after the user switch, before a late seccomp
                    filter: personality, the SELinux exec label, the AppArmor profile
The parent runs `with_initial_affinity` around its fork: the runtime's work inside the
container runs on execCPUAffinity.initial.
"""

from __future__ import annotations

import os

from runtime.errors import ConfigError, OnggiError
from runtime.linux import lsm, sched
from runtime.linux import personality as persona
from runtime.record import Record
from runtime.spec import Linux, Process, has_exec_attrs


class ExecAttrs(Record):
    scheduler: object = None  # sched.SchedAttr
    scheduler_policy: str = ""
    ioprio: int | None = None
    initial_cpus: tuple[int, ...] | None = None
    final_cpus: tuple[int, ...] | None = None
    mempolicy: object = None  # mempolicy.Policy
    personality: str | None = None
    selinux_label: str | None = None
    apparmor_profile: str | None = None
    apparmor_path: str = ""

    def keyring_label(self) -> None:
        if self.selinux_label:
            lsm.set_keyring_label(self.selinux_label)

    def before_user(self) -> None:
        if self.scheduler is not None:
            sched.set_scheduler(self.scheduler, self.scheduler_policy)
        if self.ioprio is not None:
            sched.set_ioprio(self.ioprio)
        if self.final_cpus is not None:
            sched.set_affinity(self.final_cpus, "process.execCPUAffinity.final")
        if self.mempolicy is not None:
            self.mempolicy.apply()

    def before_exec(self) -> None:
        if self.personality is not None:
            persona.set_domain(self.personality)
        if self.selinux_label:
            lsm.apply_selinux_exec(self.selinux_label)
        if self.apparmor_profile:
            lsm.apply_apparmor(self.apparmor_path, self.apparmor_profile)


def prepare(proc: Process | None, lx: Linux) -> ExecAttrs | None:
    """Parent side; raises ConfigError for what this host cannot apply."""
    if not has_exec_attrs(proc, lx):
        return None
    a: dict = {}
    if proc is not None:
        if proc.scheduler is not None:
            a["scheduler"] = sched.sched_attr(proc.scheduler)
            a["scheduler_policy"] = proc.scheduler.policy
        if proc.io_priority is not None:
            a["ioprio"] = sched.ioprio_value(proc.io_priority)
        if proc.exec_cpu_affinity is not None:
            a["initial_cpus"] = _usable(proc.exec_cpu_affinity.initial, "initial")
            a["final_cpus"] = _usable(proc.exec_cpu_affinity.final, "final")
        if proc.apparmor_profile:
            if not lsm.apparmor_enabled():
                raise ConfigError("process.apparmorProfile", "AppArmor is not enabled on "
                                  "this host")
            a["apparmor_profile"] = proc.apparmor_profile
            a["apparmor_path"] = lsm.apparmor_exec_path()
        if proc.selinux_label:
            if not lsm.selinux_enabled():
                raise ConfigError("process.selinuxLabel", lsm.SELINUX_OFF)
            a["selinux_label"] = proc.selinux_label
    if lx.memory_policy is not None:
        from runtime.linux import mempolicy

        a["mempolicy"] = mempolicy.prepare(lx.memory_policy)
    if lx.personality is not None:
        a["personality"] = lx.personality.domain
    return ExecAttrs(**a)


def _usable(cpus: tuple[int, ...] | None, which: str) -> tuple[int, ...] | None:
    """CPUs that do not exist here would make sched_setaffinity fail in the child: say so
    now. (The cgroup's cpuset may narrow them further; the child reports that.)"""
    if cpus is None:
        return None
    present = os.cpu_count() or 1
    if all(c >= present for c in cpus):
        raise ConfigError(f"process.execCPUAffinity.{which}",
                          f"no CPU of {sched.format_cpus(cpus)} exists on this host "
                          f"(CPUs 0-{present - 1})")
    return cpus


def with_initial_affinity(attrs: ExecAttrs | None, fork):
    """Run `fork()` (which starts the container's first process) with the caller's affinity
    set to execCPUAffinity.initial, so everything the runtime does inside the container runs
    there; the caller's own affinity is restored afterwards. Returns what fork returns."""
    if attrs is None or attrs.initial_cpus is None:
        return fork()
    old = os.sched_getaffinity(0)
    try:
        sched.set_affinity(attrs.initial_cpus, "process.execCPUAffinity.initial")
    except OSError as e:
        raise OnggiError(e.strerror) from None
    try:
        return fork()
    finally:
        os.sched_setaffinity(0, old)
