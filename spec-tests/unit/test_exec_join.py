"""exec's cgroup join (runtime/cgroups/exec_join.py) over fake cgroup dirs: runc's
--cgroup forms and errors, co-mounted controllers, best-effort hierarchies."""

from __future__ import annotations

import pytest

from runtime.cgroups import exec_join as j
from runtime.errors import OnggiError


@pytest.fixture
def paths(tmp_path) -> dict[str, str]:
    for d in ("cpu,cpuacct/c/sub", "pids/c/sub", "memory/c", "systemd/c", "unified/c/sub"):
        (tmp_path / d).mkdir(parents=True)
    return {"cpu": f"{tmp_path}/cpu,cpuacct/c", "cpuacct": f"{tmp_path}/cpu,cpuacct/c",
            "pids": f"{tmp_path}/pids/c", "memory": f"{tmp_path}/memory/c",
            "name=systemd": f"{tmp_path}/systemd/c", "": f"{tmp_path}/unified/c"}


def test_no_sub_joins_each_dir_once(paths):
    dirs = dict(j.exec_dirs(paths, {}))
    assert sorted(dirs.values()) == sorted(set(paths.values()))


def test_controller_sub_moves_its_co_mounted_twin_too(paths):
    dirs = dict(j.exec_dirs(paths, j.parse_sub(["cpuacct:sub"])))
    assert dirs["cpu"].endswith("cpu,cpuacct/c/sub") and "cpuacct" not in dirs
    assert dirs["pids"].endswith("pids/c")


def test_plain_sub_is_for_every_hierarchy(paths, tmp_path):
    with pytest.raises(OnggiError, match="memory/c/sub: no such cgroup"):
        j.exec_dirs(paths, j.parse_sub(["sub"]))
    dirs = j.exec_dirs({"": f"{tmp_path}/unified/c"}, j.parse_sub(["sub"]))
    assert dirs == [("", f"{tmp_path}/unified/c/sub")]


@pytest.mark.parametrize(("args", "words"), [
    (["a", "b"], "missing <controller>: prefix"),
    ([":x"], "empty <controller> prefix"),
    (["cpu:x", "cpu:y"], "controller cpu specified multiple times"),
])
def test_parse_errors(args, words):
    with pytest.raises(OnggiError, match=words):
        j.parse_sub(args)


def test_bad_subs(paths):
    with pytest.raises(OnggiError, match="leaves"):
        j.exec_dirs(paths, j.parse_sub(["pids:../../x"]))
    with pytest.raises(OnggiError, match="unknown controller 'rdma'"):
        j.exec_dirs(paths, j.parse_sub(["rdma:sub"]))
    with pytest.raises(OnggiError, match="has no cgroups"):
        j.exec_dirs({}, j.parse_sub(["sub"]))
    assert j.exec_dirs({}, {}) == []


def test_join_writes_the_pid_and_skips_best_effort_ones(paths, tmp_path):
    for d in set(paths.values()) - {paths["name=systemd"], paths[""]}:
        open(f"{d}/cgroup.procs", "w").close()
    j.join(j.exec_dirs(paths, {}), 1234)  # no cgroup.procs in name=systemd nor unified
    assert open(f"{paths['pids']}/cgroup.procs").read() == "1234"
    with pytest.raises(OnggiError, match="joining the container's cgroup"):
        j.join([("pids", f"{tmp_path}/nowhere")], 1)
