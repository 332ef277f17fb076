"""The hot path's stand-ins for argparse and json must agree with the real thing."""

from __future__ import annotations

import json

import pytest
from harness import HOT_CORE, launcher_imports

from runtime import cli, fastjson

DOCS = [
    {"id": "x", "pid": 12, "ok": True, "none": None, "list": [1, "a", {"b": []}],
     "uni": "항아리 \u2028 \"quoted\" \\ tab\t", "big": 2**63, "neg": -5, "f": 1.5},
    [], {}, "s", 0,
]


@pytest.mark.parametrize("doc", DOCS)
def test_fastjson_round_trips_like_json(doc):
    assert fastjson.dumps(doc) == json.dumps(doc)
    assert fastjson.loads(json.dumps(doc)) == doc
    assert fastjson.loads(json.dumps(doc, indent=2)) == doc


@pytest.mark.parametrize("text", ["", "{", '{"a": 1} x', "nope", "[1,]"])
def test_fastjson_rejects_what_json_rejects(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        fastjson.loads(text)


@pytest.mark.parametrize("doc", DOCS)
def test_indented_go_json_is_json(doc):
    assert json.loads(fastjson.dumps_go(doc, indent=2)) == doc


def test_indented_go_json_is_gos_marshal_indent():
    """json.MarshalIndent(v, "", "  "): nested maps indented too, Go's escaping (<, >, &
    and U+2028 escaped, other non-ASCII raw)."""
    doc = {"id": "c", "annotations": {"a": "b<&>", "n": "é\u2028"}, "empty": {}, "l": [1]}
    assert fastjson.dumps_go(doc, indent=2) == (
        '{\n  "id": "c",\n  "annotations": {\n    "a": "b\\u003c\\u0026\\u003e",\n'
        '    "n": "é\\u2028"\n  },\n  "empty": {},\n  "l": [\n    1\n  ]\n}')


ARGVS = [
    ["state", "c1"],
    ["--root", "/r", "state", "c1"],
    ["--root=/r", "--log", "/l", "--log-format=json", "kill", "c1", "9"],
    ["--root", "/r", "kill", "--all", "c1", "KILL"],
    ["kill", "-a", "c1"],
    ["--debug", "delete", "--force", "c1"],
    ["delete", "-f", "c1"],
    ["start", "c1"],
    ["--log-format", "json", "--log", "/x/log.json", "delete", "c1"],
    ["create", "--bundle", "/b", "--pid-file", "/p", "--console-socket=/s", "c1"],
    ["--root", "/r", "create", "-b", "/b", "--no-pivot", "--preserve-fds", "2", "c1"],
    ["create", "c1", "--no-new-keyring"],
    ["run", "-d", "-b", "/b", "--keep", "c1"],
    ["run", "--detach", "--bundle=/b", "--no-subreaper", "--pid-file", "/p", "c1"],
    ["run", "c1"],
]


def _slow(argv):
    g = cli._global_parser().parse_args(argv)
    p = cli._verb_parser(g.command)
    if g.command in ("create", "run"):
        p = cli.create_parser() if g.command == "create" else cli.run_parser()
    elif g.command == "kill":
        p.add_argument("-a", "--all", action="store_true")
        p.add_argument("id")
        p.add_argument("signal", nargs="?", default="TERM")
    elif g.command == "delete":
        p.add_argument("-f", "--force", action="store_true")
        p.add_argument("id")
    else:
        p.add_argument("id")
    return g, p.parse_args(g.args)


@pytest.mark.parametrize("argv", ARGVS, ids=[" ".join(a) for a in ARGVS])
def test_fast_parse_agrees_with_argparse(argv):
    fast = cli.fast_parse(argv)
    assert fast is not None
    g, a = _slow(argv)
    for key in ("root", "log", "log_format", "debug", "command"):
        assert getattr(fast[0], key) == getattr(g, key), key
    assert {k: v for k, v in vars(fast[1]).items() if k in vars(a)} == vars(a)


@pytest.mark.parametrize("argv", [["state"], ["state", "a", "b"], ["kill", "--bogus", "x"],
                                  ["--root"], ["list"], ["--log-format", "xml", "state", "x"],
                                  ["--unknown", "state", "x"], ["state", "--help"],
                                  ["create", "--preserve-fds", "x", "c"], ["create", "-b"],
                                  ["run", "--bogus", "c"], ["create", "a", "b"]])
def test_fast_parse_leaves_the_rest_to_argparse(argv):
    assert cli.fast_parse(argv) is None


def test_fastjson_error_in_a_fresh_interpreter(tmp_path):
    """The C scanner raises through json.decoder, which a fresh hot path has not loaded."""
    import subprocess
    import sys

    code = ("from runtime import fastjson\ntry:\n    fastjson.loads('{broken')\n"
            "except ValueError as e:\n    print('ValueError')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout == "ValueError\n", out.stderr


# ---------------------------------------------------------------- cgroups on the hot path


def _imported(tmp_path, *verb: str) -> tuple[set[str], str]:
    """What the verb imports beyond the interpreter's own start, through the entry script."""
    mods, res = launcher_imports(tmp_path, "--root", str(tmp_path / "root"), *verb)
    return mods, res.stdout


# What a container's cgroups add: the freezer for its status; delete also the driver, which
# finds the host's hierarchies (mountinfo) to remove the dirs.
CGROUP_STATUS = frozenset({"errno", "runtime.cgroups", "runtime.cgroups.files",
                           "runtime.cgroups.freezer"})
CGROUP_DELETE = CGROUP_STATUS | {"time", "runtime.cgroups.fs", "runtime.cgroups.paths",
                                 "runtime.cgroups.tree", "runtime.cgroups.hierarchy",
                                 "runtime.linux", "runtime.linux.mountinfo"}


def _fake_state(tmp_path, cid: str, paths: dict, alive: bool = True, driver: str = "fs",
                data: dict | None = None) -> None:
    import os

    from runtime import state

    d = tmp_path / "root" / cid
    d.mkdir(parents=True)
    pid = os.getpid() if alive else 0
    st = state.State(id=cid, pid=pid, start_time=state.proc_start_time(pid) or 0 if alive else 0,
                     bundle="/b", rootfs="/b/rootfs", created="now", cgroup_driver=driver,
                     cgroup_paths=paths, cgroup_data=data or {})
    state.save(str(d), st)


def test_state_without_cgroups_imports_no_cgroup_module(tmp_path):
    _fake_state(tmp_path, "c1", {})
    mods, out = _imported(tmp_path, "state", "c1")
    assert json.loads(out)["status"] == "running"
    assert mods - HOT_CORE == set()


@pytest.fixture
def cgroup():
    """make(controller) -> (state key, dir): an empty cgroup of the test's own (state.json
    names real cgroup dirs only); frozen ones are thawed and all removed after."""
    import os
    import uuid

    from runtime.cgroups import hierarchy

    if os.geteuid() != 0:
        pytest.skip("making a cgroup needs root")
    v2 = hierarchy.mode() == "v2"
    made = []

    def make(ctrl: str) -> tuple[str, str]:
        d = f"{hierarchy.ROOT}{'' if v2 else '/' + ctrl}/onggi-hot-{uuid.uuid4().hex[:10]}"
        os.mkdir(d)
        made.append(d)
        return ("" if v2 else ctrl), d

    yield make
    for d in made:
        for name, thawed in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            if os.path.exists(f"{d}/{name}"):
                with open(f"{d}/{name}", "w") as f:
                    f.write(thawed)
        if os.path.isdir(d):
            os.rmdir(d)


def test_state_reads_only_the_freezer(tmp_path, cgroup):
    key, frz = cgroup("freezer")
    with open(f"{frz}/{'freezer.state' if key else 'cgroup.freeze'}", "w") as f:
        f.write("FROZEN" if key else "1")
    _fake_state(tmp_path, "c2", {key: frz})
    mods, out = _imported(tmp_path, "state", "c2")
    assert json.loads(out)["status"] == "paused"
    assert mods - HOT_CORE - CGROUP_STATUS == set()


def test_delete_pays_for_cgroups_only_when_there_are_some(tmp_path, cgroup):
    import os

    _fake_state(tmp_path, "c3", {}, alive=False)
    mods, _ = _imported(tmp_path, "delete", "c3")
    assert mods - HOT_CORE == set()
    assert not (tmp_path / "root" / "c3").exists()
    key, cg = cgroup("pids")
    _fake_state(tmp_path, "c4", {key: cg}, alive=False)
    mods, _ = _imported(tmp_path, "delete", "c4")
    assert "runtime.cgroups.fs" in mods and mods - HOT_CORE - CGROUP_DELETE == set()
    assert not os.path.exists(cg) and not (tmp_path / "root" / "c4").exists()


def test_systemd_containers_load_no_dbus_library_for_state_or_kill(tmp_path):
    """A container of the systemd driver: `state` reads its freezer file, `kill` signals its
    init and `ps` reads the scope's cgroup.procs like any other; only create, update and
    delete talk to systemd (jeepney)."""
    import os
    import subprocess
    import uuid

    from runtime.cgroups import hierarchy

    if os.geteuid() != 0:
        pytest.skip("making a cgroup needs root")
    top = hierarchy.ROOT if hierarchy.mode() == "v2" else f"{hierarchy.ROOT}/unified"
    cg = f"{top}/onggi-hot-{uuid.uuid4().hex[:10]}.scope"
    os.mkdir(cg)
    member = subprocess.Popen(["sleep", "100"])
    try:
        with open(f"{cg}/cgroup.procs", "w") as f:
            f.write(str(member.pid))
        _fake_state(tmp_path, "c5", {"": cg}, driver="systemd",
                    data={"unit": os.path.basename(cg), "slice": "system.slice"})
        for verb in (["state", "c5"], ["kill", "c5", "0"], ["ps", "-f", "json", "c5"]):
            mods, out = _imported(tmp_path, *verb)
            assert not {m for m in mods if m.startswith("jeepney")}, verb
            assert "runtime.cgroups.sdbus" not in mods and "runtime.cgroups.sdprops" not in mods
        assert "runtime.cgroups.systemd" in mods and json.loads(out) == [member.pid]  # ps
        assert json.loads(_imported(tmp_path, "state", "c5")[1])["status"] == "running"
    finally:
        member.kill()
        member.wait()
        os.rmdir(cg)


def test_fast_parse_leaves_the_cgroup_verbs_to_argparse():
    for verb in (["pause", "c"], ["resume", "c"], ["update", "--memory", "1M", "c"],
                 ["events", "--stats", "c"], ["ps", "c"]):
        assert cli.fast_parse(verb) is None


@pytest.mark.parametrize("doc", DOCS)
def test_fastjson_compact_is_json_with_gos_separators(doc):
    assert fastjson.dumps_compact(doc) == json.dumps(doc, separators=(",", ":"))


@pytest.mark.parametrize("verb", [["pause", "x"], ["resume", "x"], ["ps", "-f", "json", "x"],
                                  ["--log-format", "json", "events", "--stats", "x"],
                                  ["update", "--resources=RES", "x"],
                                  ["update", "-r", "RES", "x"]])
def test_the_engines_cgroup_verbs_skip_argparse(tmp_path, verb):
    """containerd and podman call these on live containers: a plain command line costs no
    argparse (nor subprocess, which `ps` loads only for its table)."""
    (tmp_path / "root").mkdir()
    (tmp_path / "res.json").write_text('{"pids": {"limit": 5}}')
    verb = [v.replace("RES", str(tmp_path / "res.json")) for v in verb]
    mods, _ = _imported(tmp_path, *verb)
    assert not {"argparse", "subprocess", "json"} & mods
