"""cgroups: one Manager interface over cgroupfs v1, v2, hybrid, and systemd (v2).

A Manager owns one container's cgroups. `create` calls, in this order (runc's):
  fork(child)     start stage 1 (on pure v2 born in its cgroup: clone3 CLONE_INTO_CGROUP)
  apply(pid)      create the cgroup(s) and move stage 1 in, before it unshares a cgroup
                  namespace or runs anything of the container's; or, as create does it,
  self_join(pid)  create them and return the files stage 1 writes "0" to, moving itself
                  in (see FsManager.self_join); rejoin(pid, failed) for those it could not
  set(resources)  write linux.resources, before the prestart/createRuntime hooks
  paths, saved()  {controller or "" for cgroup2: absolute host dir} and the driver's own
                  data (parents it made, resources in force), kept in state.json
The verbs use the rest: freeze/thaw (pause, resume), frozen, stats (events), pids (ps,
kill --all), kill_all, destroy (delete; also every failed create).

Drivers are modules named in DRIVERS, imported only when used: "fs" (cgroupfs, fs.py) and
"systemd" (systemd.py: a transient scope through systemd's D-Bus API, the files through fs.py;
its D-Bus library is loaded only when it talks to systemd). This module is imported by
`create`; the hot path (state/kill/delete/start) imports a driver only when the container has
cgroups.
"""

from __future__ import annotations

import os

from runtime.errors import OnggiError
from runtime.record import Record

DRIVERS = {"fs": "runtime.cgroups.fs:FsManager",
           "systemd": "runtime.cgroups.systemd:SystemdManager"}
ROOT = "/sys/fs/cgroup"  # where onggi finds the host's hierarchies (runtime.cgroups.hierarchy)


def bad_dir(key: str, d: object) -> str | None:
    """Why `d` cannot be the cgroup dir of a container's `key` (controller, "" for cgroup2)
    in a state.json or init.json: the verbs kill what is in it and remove it, so it must be
    a normalised path below a hierarchy under ROOT, never a hierarchy's root itself. None
    when it can be."""
    if type(d) is not str or not d.startswith(ROOT + "/") or os.path.normpath(d) != d:
        return f"{d!r} is not a directory below {ROOT}"
    parts = d[len(ROOT) + 1 :].split("/")
    if len(parts) < (1 if key == "" and parts[0] != "unified" else 2):
        return f"{d} is the root of a cgroup hierarchy"
    return None


class Manager:
    """The interface (youki's CgroupManager, crun's manager table). This base manages no
    cgroup: it is what a container without cgroups of its own gets."""

    driver = ""  # a DRIVERS key; "" when onggi manages no cgroup

    @property
    def paths(self) -> dict[str, str]:
        return {}

    def saved(self) -> dict:
        """The driver's data for state.json's cgroup_data (from_state reads it back)."""
        return {}

    def fork(self, child) -> int:
        from runtime.linux import process

        return process.fork(child)

    def apply(self, pid: int) -> None:
        pass

    def self_join(self, pid: int) -> list[str]:
        """apply(pid), less what `pid` (stage 1, one thread) joins by itself: the files it
        is to write "0" to are returned. This base joins it to everything itself."""
        self.apply(pid)
        return []

    def rejoin(self, pid: int, failed: list[str]) -> None:
        """The self_join() files stage 1 could not write: joined by pid instead."""

    def set(self, resources: dict, skip_devices: bool = False) -> None:
        pass

    def freeze(self) -> None:
        raise OnggiError("cannot pause: the container has no cgroups")

    def thaw(self) -> None:
        raise OnggiError("cannot resume: the container has no cgroups")

    def frozen(self) -> bool:
        return False

    def stats(self) -> dict:
        raise OnggiError("the container has no cgroups")

    def pids(self) -> list[int]:
        return []

    def kill_all(self, sig: int) -> None:
        raise OnggiError("the container has no cgroups")

    def destroy(self) -> None:
        pass


class Options(Record):
    """What the global flags say about cgroups."""

    systemd: bool = False  # --systemd-cgroup
    rootless: str = "auto"  # --rootless: true|false|auto
    state_dir: str = ""  # create's state dir: the cgroups are noted there before they exist


# In the state dir of a container being created: the cgroups it is about to make, so that a
# `delete --force` after a create that was killed half-way (no state.json) removes them,
# and those of its dirs that existed before it (a cgroupsPath of someone else's): never
# emptied nor removed on its behalf.
NOTE = "cgroups.json"


def _driver(name: str):
    target = DRIVERS.get(name)
    if target is None:
        raise OnggiError(f"unknown cgroup driver {name!r} in the container's state")
    mod, _, cls = target.partition(":")
    try:
        return getattr(__import__(mod, fromlist=[cls]), cls)
    except ModuleNotFoundError:
        raise OnggiError(f"the {name} cgroup driver is not available in this onggi") from None


def systemd_usable() -> bool:
    """Would --systemd-cgroup work here (for `features`): systemd as init, pure cgroup v2
    (onggi's systemd driver does not do v1), root."""
    from runtime.cgroups import hierarchy

    return os.path.isdir("/run/systemd/system") and hierarchy.mode() == "v2" \
        and os.geteuid() == 0


def check_systemd() -> None:
    """--systemd-cgroup needs systemd as the host's init (runc's check)."""
    if not os.path.isdir("/run/systemd/system"):
        raise OnggiError("--systemd-cgroup: systemd is not running on this host "
                         "(no /run/systemd/system): use the default cgroupfs driver")
    _driver("systemd")


def for_create(cfg, cid: str, opts: Options) -> Manager:
    """The manager for a new container (runtime.spec.Config `cfg`)."""
    if opts.systemd:
        check_systemd()
        return _driver("systemd").for_create(cfg, cid, opts)
    return _driver("fs").for_create(cfg, cid, opts)


def _read_note(state_dir: str) -> dict | None:
    from runtime import fastjson

    try:
        with open(os.path.join(state_dir, NOTE)) as f:
            note = fastjson.loads(f.read())
    except (OSError, ValueError):
        return None
    if type(note) is not dict or type(note.get("paths")) is not dict:
        return None
    if any(bad_dir(k, d) for k, d in note["paths"].items()):
        return None
    return note


def existed(state_dir: str) -> set[str]:
    """The container's cgroup dirs that were there before its create (see NOTE)."""
    note = _read_note(state_dir)
    return set(note.get("existed") or ()) if note is not None else set()


def remove_noted(state_dir: str) -> None:
    """What a killed create noted: kill what runs in the cgroups it made and remove them.
    A dir that existed before it is left as it is, with whatever runs there."""
    note = _read_note(state_dir)
    if note is None:
        return
    before = set(note.get("existed") or ())
    made = {k: d for k, d in note["paths"].items() if d not in before}
    if not made:
        return
    mgr = _driver(note.get("driver") or "fs").from_note({**note, "paths": made})
    if mgr.pids():
        mgr.kill_all(9)
    mgr.destroy()


def from_state(st) -> Manager:
    """The manager of an existing container, from its state.json (runtime.state.State)."""
    if not st.cgroup_paths:
        return Manager()
    return _driver(st.cgroup_driver or "fs").from_state(st)
