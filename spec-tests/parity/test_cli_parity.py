"""Issue 8, points 17 to 22: what a user or a script sees of the CLI, against runc."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from harness import ONGGI, REPO, onggi
from paritylib import RUNC, runc_or_skip, stderr_message

# ---- 17. list --format json: runc's bytes

def _shape(text: str) -> str:
    """The JSON with every value but the structure blanked: keys, order, separators."""
    return re.sub(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|true|false|null', "V",
                  re.sub(r'"([a-zA-Z]+)":', r"<\1>:", text))


def test_17_list_json_is_runcs_bytes(bundle, runc):
    bundle.config["annotations"] = {"x.y": "1", "a": "b<&>"}
    mine = bundle.create(args=["sleep", "100"])
    theirs = runc.create(bundle, ["sleep", "100"])
    out = bundle.onggi("list", "--format", "json").stdout
    ref = runc("list", "--format", "json").stdout
    assert out.endswith("}]\n") and "\n" not in out[:-1] and ": " not in out  # compact, one line
    assert _shape(out) == _shape(ref)  # same keys, same order, same separators
    assert '"annotations":{"a":"b\\u003c\\u0026\\u003e","x.y":"1"},"owner":"root"' in out
    assert '"annotations":{"a":"b\\u003c\\u0026\\u003e","x.y":"1"},"owner":"root"' in ref
    [entry] = json.loads(out)
    assert entry["id"] == mine and entry["status"] == "created"
    assert not re.search(r'\.\d*0Z"', out)  # RFC3339Nano: trailing zeros dropped
    assert json.loads(ref)[0]["id"] == theirs


def test_state_is_runcs_bytes_through_either_parser(bundle, runc):
    """`state` prints json.MarshalIndent's layout (nested maps indented, Go's escaping, map
    keys sorted, no newline at the end), whichever parser read the command line."""
    bundle.config["annotations"] = {"n": "x<&>\u00e9\u2028", "a": "b"}
    mine = bundle.create(args=["sleep", "100"])
    theirs = runc.create(bundle, ["sleep", "100"])
    ref = runc("state", theirs).stdout
    assert '"annotations": {\n    "a": "b",\n    "n": "x\\u003c' in ref
    for argv in (["state", mine], ["state", "--", mine]):  # the hot path, then argparse
        out = bundle.onggi(*argv).stdout
        ours, want = json.loads(out), ref
        for key in ("ociVersion", "id", "pid", "created"):  # the values that differ
            want = want.replace(f'"{key}": {json.dumps(json.loads(ref)[key])}',
                                f'"{key}": {json.dumps(ours[key])}')
        assert out == want, argv


def test_17_list_json_of_nothing_is_null(tmp_path, runc):
    assert onggi("list", "-f", "json", root=tmp_path / "none").stdout == "null\n"
    assert runc("list", "-f", "json").stdout == "null\n"


# ---- 18. kill and delete: the words containerd's shim matches

def test_18_kill_words_and_kill_all_on_stopped(bundle, runc):
    cid = bundle.create(args=["true"])
    bundle.onggi("start", cid, check=True)
    bundle.wait_stopped(cid)
    theirs = runc.create(bundle, ["true"])
    runc("start", theirs)
    for _ in range(100):
        if json.loads(runc("state", theirs).stdout)["status"] == "stopped":
            break
    res, ref = bundle.onggi("kill", cid, "9"), runc("kill", theirs, "9")
    # containerd's checkKillError: "container not running" -> already exited (NotFound)
    assert (res.returncode, res.stderr) == (1, "onggi: container not running\n")
    assert (ref.returncode, stderr_message(ref.stderr)) == (1, "container not running")
    # kill --all of a stopped container: nothing to signal, success (runc 1.1)
    assert bundle.onggi("kill", "--all", cid, "9").returncode == 0
    assert runc("kill", "--all", theirs, "9").returncode == 0
    # unknown: "does not exist" -> no such container
    res, ref = bundle.onggi("kill", "nosuch", "9"), runc("kill", "nosuch", "9")
    assert res.returncode == ref.returncode == 1
    assert "does not exist" in res.stderr and "does not exist" in ref.stderr
    assert bundle.onggi("delete", "--force", "nosuch").returncode == 0
    assert runc("delete", "--force", "nosuch").returncode == 0
    # and runc's words for start in the wrong state
    res, ref = bundle.onggi("start", cid), runc("start", theirs)
    assert res.stderr == "onggi: cannot start a container that has stopped\n"
    assert stderr_message(ref.stderr) == "cannot start a container that has stopped"


def test_18_delete_of_a_created_container_still_needs_force(bundle, runc):
    """On purpose unlike runc (which kills and deletes it): runtime.md says deleting a
    container that is not stopped MUST fail, and the conformance suite checks it."""
    cid = bundle.create(args=["sleep", "100"])
    res = bundle.onggi("delete", cid)
    assert res.returncode == 1
    assert res.stderr == f"onggi: cannot delete container {cid} that is not stopped: created\n"
    theirs = runc.create(bundle, ["sleep", "100"])
    assert runc("delete", theirs).returncode == 0  # runc's behaviour, for the record


# ---- 19. --debug: each step, with its timing

def test_19_debug_logs_each_step_with_timings(bundle, tmp_path):
    log = tmp_path / "debug.json"
    dbg = ["--debug", "--log", str(log), "--log-format", "json"]
    bundle.write(["sleep", "100"])
    cid = bundle.new_id()
    with open(os.devnull, "w") as null, open(tmp_path / "create.err", "w") as err:
        res = subprocess.run(ONGGI + dbg + ["--root", str(bundle.root), "create", "-b",
                                            str(bundle.path), cid], stdout=null, stderr=err,
                             stdin=subprocess.DEVNULL)
    assert res.returncode == 0, (tmp_path / "create.err").read_text()
    for verb in (["start", cid], ["kill", cid, "KILL"], ["delete", "--force", cid]):
        assert onggi(*dbg, *verb, root=bundle.root).returncode == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    debug = [d for d in lines if d["level"] == "debug"]
    assert all(set(d) >= {"level", "msg", "time"} for d in lines)
    assert all(list(d) == sorted(d) for d in lines)  # logrus' JSON: keys sorted
    steps = [(d["msg"].split(":")[0], d.get("step")) for d in debug]
    for want in [("create", "planned"), ("create", "forked"), ("create", "cgroup-joined"),
                 ("create", "init-pid"), ("create", "mounts-done"), ("create", "created"),
                 ("create", "state saved"), ("start", "released the exec fifo"),
                 ("kill", "signalled"), ("delete", "removed the state")]:
        assert want in steps, (want, steps)
    assert all(re.fullmatch(r"\d+\.\dms", d["elapsed"]) and re.fullmatch(r"\d+\.\dms", d["total"])
               for d in debug)


def test_19_debug_text_lines_look_like_logrus(bundle):
    bundle.write(["true"])
    cid = bundle.new_id()
    res = onggi("--debug", "run", "-b", str(bundle.path), cid, root=bundle.root)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if "level=debug" in ln]
    assert lines, res.stderr
    for ln in lines:
        assert re.fullmatch(r'time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)" '
                            r'level=debug msg="[^"]*"( \w+=(\S+|"[^"]*"))*', ln), ln
    assert any('msg="create: created"' in ln and " elapsed=" in ln for ln in lines)


def test_19_no_debug_writes_nothing(bundle, tmp_path):
    log = tmp_path / "quiet.log"
    bundle.write(["true"])
    res = onggi("--log", str(log), "run", "-b", str(bundle.path), bundle.new_id(),
                root=bundle.root)
    assert res.returncode == 0 and res.stderr == ""
    assert "level=debug" not in log.read_text()


# ---- 20. --log that cannot be opened

@pytest.mark.parametrize("path", ["invalid:/path", "/nonexistent/dir/f"])
def test_20_unopenable_log_fails(tmp_path, path):
    res = onggi("--log", path, "list", root=tmp_path)
    assert res.returncode == 1
    assert res.stderr == f"onggi: open {path}: no such file or directory\n"
    if RUNC:
        ref = subprocess.run([RUNC, "--root", str(tmp_path), "--log", path, "list"],
                             capture_output=True, text=True)
        assert ref.returncode == 1
        assert stderr_message(ref.stderr) == f"open {path}: no such file or directory"


def test_20_bad_log_format_fails(tmp_path):
    res = onggi("--log-format", "foo", "state", "x", root=tmp_path)
    assert (res.returncode, res.stderr) == (1, "onggi: invalid log-format: foo\n")
    if RUNC:
        ref = subprocess.run([RUNC, "--log-format", "foo", "list"], capture_output=True, text=True)
        assert stderr_message(ref.stderr) == "invalid log-format: foo"


# ---- 21. help and version

def _sections(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if re.fullmatch(r"[A-Z][A-Z ]+:", ln)]


def test_21_help_layout_is_runcs():
    mine = onggi("--help")
    assert mine.returncode == 0
    assert _sections(mine.stdout) == ["NAME:", "USAGE:", "VERSION:", "COMMANDS:",
                                      "GLOBAL OPTIONS:"]
    assert onggi().stdout == onggi("-h").stdout == onggi("help").stdout == mine.stdout
    assert "   create    create a container\n" in mine.stdout
    assert "   --log-format value  set the log format ('text' (default), or 'json') " \
           "(default: \"text\")\n" in mine.stdout
    if RUNC:
        ref = subprocess.run([RUNC, "--help"], capture_output=True, text=True)
        assert _sections(ref.stdout) == _sections(mine.stdout)


@pytest.mark.parametrize("verb", ["create", "start", "state", "kill", "delete", "list"])
def test_21_verb_help_is_runcs_word_for_word(verb):
    mine = onggi(verb, "--help")
    assert mine.returncode == 0
    assert onggi("help", verb).stdout == mine.stdout
    runc = runc_or_skip()
    ref = subprocess.run([runc, verb, "--help"], capture_output=True, text=True)
    assert mine.stdout == ref.stdout.replace("runc", "onggi")


def test_21_unknown_help_topic():
    for argv in (["help", "foo"], ["foo"]):
        res = onggi(*argv)
        assert (res.returncode, res.stdout, res.stderr) == (3, "", "onggi: No help topic for 'foo'\n")
        if RUNC:
            ref = subprocess.run([RUNC, *argv], capture_output=True, text=True)
            assert ref.returncode == 3 and "No help topic for 'foo'" in ref.stderr


def test_21_version_lines():
    res = onggi("--version")
    assert res.returncode == 0 and onggi("-v").stdout == res.stdout
    keys = [ln.split(":")[0] if ":" in ln else ln.split()[1] for ln in res.stdout.splitlines()]
    assert keys[0] == "version" and res.stdout.startswith("onggi version 0.1.0\n")
    assert [k for k in keys if k != "commit"] == ["version", "spec", "python", "libseccomp"]
    assert "\nspec: 1.3.0\n" in res.stdout
    commit = re.search(r"^commit: ([0-9a-f]{40})$", res.stdout, re.M)
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                         text=True)
    if git.returncode == 0:
        assert commit and commit.group(1) == git.stdout.strip()
    if RUNC:
        ref = subprocess.run([RUNC, "--version"], capture_output=True, text=True).stdout
        theirs = re.search(r"^libseccomp: .*$", ref, re.M).group(0)
        assert theirs in res.stdout.splitlines()  # the same library, read the same way


# ---- 22. a closed pipe

@pytest.mark.parametrize("argv", [["list"], ["features"], ["--help"]])
def test_22_closed_pipe_ends_quietly_by_sigpipe(tmp_path, argv):
    r, w = os.pipe()
    os.close(r)  # nobody reads: the first write meets EPIPE
    try:
        res = subprocess.run(ONGGI + ["--root", str(tmp_path), *argv], stdout=w,
                             stderr=subprocess.PIPE, text=True)
    finally:
        os.close(w)
    assert (res.returncode, res.stderr) == (-13, "")  # killed by SIGPIPE, as runc is
    if RUNC:
        r, w = os.pipe()
        os.close(r)
        ref = subprocess.run([RUNC, "--root", str(tmp_path), *argv], stdout=w,
                             stderr=subprocess.PIPE, text=True)
        os.close(w)
        assert (ref.returncode, ref.stderr) == (-13, "")

