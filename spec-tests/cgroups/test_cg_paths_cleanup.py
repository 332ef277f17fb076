"""Where a container's cgroups go (linux.cgroupsPath) and that they all go away: after
delete in every state, and after a create that fails at any step."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cgtest import (
    MODE,
    ROOT,
    V1,
    cgpaths,
    create_fails,
    leftovers,
    proc_cgroups,
    resources,
    running,
    uid,
)
from harness import ONGGI

from runtime.cgroups import hierarchy


def _own(ctrl: str) -> str:
    return proc_cgroups(os.getpid()).get(ctrl, "/")


@pytest.mark.guest_too
def test_default_path_is_the_id_below_our_own_cgroup(bundle):
    cid = running(bundle, start=False)
    paths = cgpaths(bundle, cid)
    if V1:
        assert paths["pids"] == f"{ROOT}/pids{_own('pids').rstrip('/')}/{cid}"
        assert paths["memory"] == f"{ROOT}/memory{_own('memory').rstrip('/')}/{cid}"
        assert paths["name=systemd"].endswith("/" + cid)
    if MODE == "hybrid":
        assert paths[""] == f"{ROOT}/unified/{cid}"  # runc: from the unified root
    if MODE == "v2":  # beside our own cgroup, which has processes
        assert paths[""] == f"{ROOT}{os.path.dirname(_own(''))}/{cid}".replace("//", "/")


def test_absolute_path_from_each_hierarchys_root(bundle):
    name = uid()
    bundle.config["linux"]["cgroupsPath"] = f"/{name}/inner"
    cid = running(bundle, start=False)
    paths = cgpaths(bundle, cid)
    for ctrl, d in paths.items():
        assert d.endswith(f"/{name}/inner"), (ctrl, d)
        assert d.count("/") == (f"{ROOT}/x/{name}/inner" if ctrl else f"{ROOT}/{name}/inner"
                                ).count("/") + (1 if MODE == "hybrid" and not ctrl else 0)
    assert bundle.onggi("delete", "--force", cid).returncode == 0
    assert leftovers(name) == [], "the parents we made stay behind"


def test_relative_path_parents_are_made_and_removed(bundle):
    top = uid("rel")
    bundle.config["linux"]["cgroupsPath"] = f"{top}/mid/leaf"
    cid = running(bundle)
    assert all(d.endswith(f"{top}/mid/leaf") for d in cgpaths(bundle, cid).values())
    assert leftovers(top)
    assert bundle.onggi("delete", "--force", cid).returncode == 0
    assert leftovers(top) == [] and leftovers("leaf") == []


def test_a_parent_someone_else_uses_stays(bundle):
    top = uid("shared")
    try:
        bundle.config["linux"]["cgroupsPath"] = f"/{top}/a"
        a = running(bundle)
        bundle.config["linux"]["cgroupsPath"] = f"/{top}/b"
        b = running(bundle)
        assert bundle.onggi("delete", "--force", a).returncode == 0
        assert all(os.path.isdir(d) for d in cgpaths(bundle, b).values())  # a made it
        assert leftovers(top)
        assert bundle.onggi("delete", "--force", b).returncode == 0
        # b did not make it, so b leaves it (runc leaves every parent)
    finally:
        bundle.cleanup()
        for d in leftovers(top):
            os.rmdir(d)


def _precreate(name: str) -> list[Path]:
    """A cgroup `name` in every hierarchy, made before the container (someone else's)."""
    made = []
    for h in hierarchy.host():
        d = Path(h.host_path, name)
        d.mkdir()
        made.append(d)
        if h.name == "cpuset":
            for f in ("cpuset.cpus", "cpuset.mems"):
                (d / f).write_text((Path(h.host_path) / f).read_text())
    return made


def test_an_existing_cgroup_is_joined(bundle):
    name = uid("pre")
    made = _precreate(name)
    try:
        bundle.config["linux"]["cgroupsPath"] = "/" + name
        cid = running(bundle, start=False)
        pid = bundle.state(cid)["pid"]
        for d in set(cgpaths(bundle, cid).values()):
            assert str(pid) in Path(d, "cgroup.procs").read_text().split()
        assert bundle.onggi("delete", "--force", cid).returncode == 0
        assert leftovers(name) == []  # runc removes a joined cgroup at delete too
    finally:
        for d in made:
            if d.exists():
                d.rmdir()


@pytest.mark.guest_too
@pytest.mark.parametrize("state", ["created", "running", "paused", "stopped"])
def test_delete_leaves_no_cgroup(bundle, state):
    cid = running(bundle, "true" if state == "stopped" else "sleep 1000",
                  start=state != "created")
    if state == "paused":
        assert bundle.onggi("pause", cid).returncode == 0
    if state == "stopped":
        bundle.wait_stopped(cid)
    assert bundle.state(cid)["status"] == state
    assert leftovers(cid)
    res = bundle.onggi("delete", *([] if state == "stopped" else ["--force"]), cid)
    assert res.returncode == 0, res.stderr
    assert leftovers(cid) == []


@pytest.mark.guest_too
def test_delete_of_a_container_without_a_pid_namespace_kills_what_is_left(bundle):
    """Its init died, but the init's children live on in the cgroup (no pid namespace to
    take them along): delete kills them so that the cgroup can go (runc)."""
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"]
                                            if n["type"] != "pid"]
    cid = running(bundle, "sleep 1000 & exit 0")
    bundle.wait_stopped(cid)
    left = [int(p) for p in Path(cgpaths(bundle, cid)["pids" if V1 else ""],
                                 "cgroup.procs").read_text().split()]
    assert left, "the child should still run"
    assert bundle.onggi("delete", cid).returncode == 0
    assert leftovers(cid) == []
    for p in left:
        assert not os.path.exists(f"/proc/{p}") or \
            Path(f"/proc/{p}/stat").read_text().split(") ")[1][0] == "Z"


# ---------------------------------------------------------------- failed creates


@pytest.mark.guest_too
def test_failed_apply_leaves_nothing(bundle):
    resources(bundle, cpu={"cpus": "77"})  # refused by the kernel while joining (cpuset)
    assert "linux.resources.cpu.cpus" in create_fails(bundle)


def test_failed_set_leaves_nothing(bundle):
    resources(bundle, memory={"limit": 67108864, "swap": 1048576})
    assert "linux.resources.memory.swap" in create_fails(bundle)


@pytest.mark.guest_too
def test_failed_prestart_hook_leaves_nothing(bundle):
    bundle.config["hooks"] = {"prestart": [{"path": "/bin/false"}]}
    assert "prestart" in create_fails(bundle)


def test_failed_exec_leaves_nothing(bundle):
    bundle.config["process"]["args"] = ["/no/such/program"]
    create_fails(bundle)


def test_failed_mount_leaves_nothing(bundle):
    bundle.config["mounts"].append({"destination": "/x", "type": "bind",
                                    "source": "/no/such/source", "options": ["rbind"]})
    create_fails(bundle)


def test_failed_relative_create_removes_the_parents_it_made(bundle):
    top = uid("fail")
    bundle.config["linux"]["cgroupsPath"] = f"{top}/leaf"
    resources(bundle, memory={"limit": 67108864, "swap": 1048576})
    create_fails(bundle)
    assert leftovers(top) == []


def test_the_root_cgroup_is_refused(bundle):
    bundle.config["linux"]["cgroupsPath"] = "/../"
    assert "linux.cgroupsPath: '/' is the root cgroup" in create_fails(bundle)


@pytest.mark.parametrize("step", ["create:cgroup-joined", "create:id-maps", "create:init-pid",
                                  "create:resources-set", "create:created"])
@pytest.mark.guest_too
def test_a_killed_create_is_cleaned_by_delete_force(bundle, step):
    """A create killed mid-way (an engine's timeout, the OOM killer) cannot clean up itself:
    the next `delete --force` removes what it made, cgroups included."""
    import subprocess

    cid = bundle.new_id()
    bundle.write(["sleep", "1000"])
    env = {**os.environ, "ONGGI_FAULT": step}
    res = subprocess.run([*ONGGI, "--root", str(bundle.root), "create", "-b", str(bundle.path),
                          cid], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)  # a live init would hold a pipe open
    assert res.returncode == -9
    assert leftovers(cid), "the fault should have left cgroups"
    # the killed create's stage 1 holds the state dir's lock until it runs and drops it: a
    # delete --force in that moment takes the dir for a create under way and leaves it
    for _ in range(50):
        assert bundle.onggi("delete", "--force", cid).returncode == 0
        if not (bundle.root / cid).exists():
            break
        time.sleep(0.1)
    assert leftovers(cid) == []
    assert not (bundle.root / cid).exists()


@pytest.mark.parametrize("step", ["create:cgroup-joined", "create:init-pid"])
def test_a_killed_create_in_someone_elses_cgroup_spares_it(bundle, step):
    """cgroupsPath names an existing cgroup with a process of someone else's in it; create
    is killed after joining it. delete --force kills the container's processes (by
    init.json) but neither that process nor the cgroup: the create did not make it."""
    import subprocess

    name = uid("busy")
    made = []
    bystander = subprocess.Popen(["sleep", "1000"])
    try:
        made = _precreate(name)
        for d in made:
            (d / "cgroup.procs").write_text(str(bystander.pid))
        bundle.config["linux"]["cgroupsPath"] = "/" + name
        cid = bundle.new_id()
        bundle.write(["sleep", "1000"])
        res = subprocess.run([*ONGGI, "--root", str(bundle.root), "create", "-b",
                              str(bundle.path), cid], env={**os.environ, "ONGGI_FAULT": step},
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        assert res.returncode == -9
        for _ in range(50):  # see test_a_killed_create_is_cleaned_by_delete_force
            res = bundle.onggi("delete", "--force", cid)
            assert res.returncode == 0, res.stderr
            if not (bundle.root / cid).exists():
                break
            time.sleep(0.1)
        assert not (bundle.root / cid).exists()
        assert bystander.poll() is None, "delete --force killed a process that is not ours"
        assert all(d.is_dir() for d in made)
        assert [int(p) for p in (made[0] / "cgroup.procs").read_text().split()] == \
            [bystander.pid], "the container's processes are still there"
    finally:
        bystander.kill()
        bystander.wait()
        for d in made:
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
