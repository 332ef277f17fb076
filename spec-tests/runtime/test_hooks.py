"""config.md "POSIX-platform Hooks" and runtime.md's lifecycle, with real containers.

Each hook writes its stdin (the state), its mount/uts namespaces and its name (to an
`order` file) into a host dir that the container sees bind-mounted at /marker.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from harness import userns
from leakcheck import Probe

PATH_ENV = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
HOOK = """#!/bin/sh
kind=$1 out=$2
cat > "$out/$kind.json"
readlink /proc/self/ns/mnt > "$out/$kind.mnt"
readlink /proc/self/ns/uts > "$out/$kind.uts"
echo "$kind" >> "$out/order"
"""
HOST_KINDS = ("prestart", "createRuntime", "createContainer", "poststart", "poststop")
CREATE_KINDS = ("prestart", "createRuntime", "createContainer")


def _setup(bundle, tmp_path):
    """(marker dir on the host, host hook script); the script is in the rootfs too."""
    marker = tmp_path / "marker"
    marker.mkdir()
    bundle.config["mounts"].append(
        {"destination": "/marker", "type": "bind", "source": str(marker), "options": ["rbind"]}
    )
    script = tmp_path / "hook.sh"
    script.write_text(HOOK)
    script.chmod(0o755)
    (bundle.rootfs / "hook.sh").write_text(HOOK)
    (bundle.rootfs / "hook.sh").chmod(0o755)
    return marker, script


def _hook(script, kind: str, out, **extra) -> dict:
    return {"path": str(script), "args": [str(script), kind, str(out)], "env": [PATH_ENV], **extra}


def _all_hooks(bundle, tmp_path):
    marker, script = _setup(bundle, tmp_path)
    hooks = {k: [_hook(script, k, marker)] for k in HOST_KINDS}
    hooks["startContainer"] = [_hook("/hook.sh", "startContainer", "/marker")]
    bundle.config["hooks"] = hooks
    return marker


def _wait_for(path, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists(), f"{path.name} never appeared"


def _order(marker) -> list[str]:
    p = marker / "order"
    return p.read_text().split() if p.exists() else []


def _state(marker, kind: str) -> dict:
    return json.loads((marker / f"{kind}.json").read_text())


def _snapshot(bundle, token: str) -> tuple:
    procs = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline").read()
        except OSError:
            continue
        if str(bundle.path) in cmd or token in cmd:
            procs.add(pid)
    # mounts of this test only: other tests on the machine mount things meanwhile
    mounts = sorted(Probe(paths=[bundle.path, bundle.root]).mounts())
    return mounts, procs, sorted(os.listdir(bundle.root))


def _create_fails(bundle, token: str = "\0none") -> str:
    bundle.write()
    before = _snapshot(bundle, token)
    cid = bundle.new_id()  # unique: the cgroups are named after it
    res = bundle.onggi("create", "-b", str(bundle.path), cid)
    assert res.returncode != 0
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("onggi: "), res.stderr
    assert _snapshot(bundle, token) == before, "create left something behind"
    assert not (bundle.root / cid).exists()
    return lines[0]


def test_every_hook_at_its_point(bundle, tmp_path):
    marker = _all_hooks(bundle, tmp_path)
    user = "test -f /marker/startContainer.json && echo yes > /marker/user; exec sleep 100"
    cid = bundle.create(args=["sh", "-c", user])
    assert _order(marker) == ["prestart", "createRuntime", "createContainer"]
    st = bundle.state(cid)
    pid = st["pid"]
    host_mnt, host_uts = os.readlink("/proc/self/ns/mnt"), os.readlink("/proc/self/ns/uts")
    ctr_mnt, ctr_uts = os.readlink(f"/proc/{pid}/ns/mnt"), os.readlink(f"/proc/{pid}/ns/uts")
    assert ctr_mnt != host_mnt and ctr_uts != host_uts

    # In the runtime's namespaces, host pid; prestart sees "created", as runtime-tools checks.
    for kind, status in (("prestart", "created"), ("createRuntime", "creating")):
        s = _state(marker, kind)
        assert (s["id"], s["status"], s["pid"], s["bundle"]) == (cid, status, pid, str(bundle.path))
        assert (marker / f"{kind}.mnt").read_text().strip() == host_mnt
    s = _state(marker, "createContainer")  # in the container's namespaces, its own pid
    assert (s["id"], s["status"], s["pid"], s["bundle"]) == (cid, "creating", 1, str(bundle.path))
    assert s["ociVersion"] and s["rootfs"] == str(bundle.rootfs)
    assert (marker / "createContainer.mnt").read_text().strip() == ctr_mnt
    assert (marker / "createContainer.uts").read_text().strip() == ctr_uts

    time.sleep(0.2)
    assert not (marker / "startContainer.json").exists(), "startContainer ran before start"
    assert bundle.onggi("start", cid).returncode == 0
    _wait_for(marker / "user")
    assert (marker / "user").read_text() == "yes\n"  # startContainer ran before the process
    s = _state(marker, "startContainer")
    assert (s["id"], s["status"], s["pid"]) == (cid, "created", 1)
    assert (marker / "startContainer.mnt").read_text().strip() == ctr_mnt
    s = _state(marker, "poststart")
    assert (s["id"], s["status"], s["pid"]) == (cid, "running", pid)
    assert (marker / "poststart.mnt").read_text().strip() == host_mnt
    assert "poststop" not in _order(marker)

    assert bundle.onggi("kill", cid, "KILL").returncode == 0
    bundle.wait_stopped(cid)
    assert not (marker / "poststop.json").exists()
    assert bundle.onggi("delete", cid).returncode == 0
    s = _state(marker, "poststop")
    assert (s["id"], s["status"], s["pid"]) == (cid, "stopped", 0)
    assert not (bundle.root / cid).exists()
    order = _order(marker)
    assert order[:4] == ["prestart", "createRuntime", "createContainer", "startContainer"]
    assert sorted(order[4:]) == ["poststart", "poststop"] and order[-1] == "poststop"


def test_run_runs_poststart_and_poststop(bundle, tmp_path):
    marker, script = _setup(bundle, tmp_path)
    bundle.config["hooks"] = {k: [_hook(script, k, marker)] for k in ("poststart", "poststop")}
    res = bundle.run(["true"])
    assert res.returncode == 0, res.stderr
    assert _order(marker) == ["poststart", "poststop"]
    assert _state(marker, "poststop")["status"] == "stopped"


def test_args_and_env_exactly(bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # busybox picks its applet by argv[0]: "sh" only runs if args[0] reaches it unchanged.
    script = f"tr '\\0' '\\n' < /proc/$$/cmdline > {out}/argv; env > {out}/env"
    bundle.config["hooks"] = {"prestart": [{
        "path": "/bin/busybox",
        "args": ["sh", "-c", script, "x y", "z"],
        "env": [PATH_ENV, "A=1", "B=two words"],
    }]}
    cid = bundle.create(args=["true"], env={**os.environ, "ONGGI_LEAK": "1"})
    assert (out / "argv").read_text().splitlines() == ["sh", "-c", script, "x y", "z"]
    env = (out / "env").read_text().splitlines()
    assert {PATH_ENV, "A=1", "B=two words"} <= set(env)
    assert not any(e.startswith("ONGGI_LEAK=") for e in env), "the runtime's env leaked in"
    bundle.onggi("delete", "--force", cid)


def test_hook_without_args_gets_its_path_as_argv0(bundle, tmp_path):
    out = tmp_path / "argv0"
    script = tmp_path / "h.sh"
    script.write_text(f'#!/bin/sh\necho "$0 $#" > {out}\n')
    script.chmod(0o755)
    bundle.config["hooks"] = {"createRuntime": [{"path": str(script)}]}
    bundle.onggi("delete", "--force", bundle.create(args=["true"]))
    assert out.read_text() == f"{script} 0\n"


@pytest.mark.parametrize("kind", CREATE_KINDS)
def test_failing_create_hook_fails_create(bundle, tmp_path, kind):
    marker, script = _setup(bundle, tmp_path)
    bundle.config["hooks"] = {kind: [
        _hook(script, kind, marker),
        {"path": "/bin/sh", "args": ["sh", "-c", "echo oops >&2; exit 3"]},
        _hook(script, "never", marker),
    ]}
    msg = _create_fails(bundle)
    assert msg == f"onggi: hooks.{kind}[1]: /bin/sh exited with status 3: oops"
    assert _order(marker) == [kind]


@pytest.mark.parametrize("kind", ("createRuntime", "createContainer"))
def test_timeout_kills_the_hook(bundle, kind):
    bundle.config["hooks"] = {kind: [
        {"path": "/bin/sh", "args": ["sh", "-c", "sleep 987; :"], "env": [PATH_ENV], "timeout": 1},
    ]}
    t0 = time.monotonic()
    msg = _create_fails(bundle, token="sleep\x00987")
    assert time.monotonic() - t0 < 10
    assert msg == f"onggi: hooks.{kind}[0]: /bin/sh timed out after 1 s"


def test_missing_hook_binary(bundle):
    bundle.config["hooks"] = {"prestart": [{"path": "/no/such/hook"}]}
    msg = _create_fails(bundle)
    assert msg.startswith("onggi: hooks.prestart[0]: /no/such/hook exited with status 127")
    assert "no such file" in msg.lower()


@pytest.mark.parametrize("kind", ("poststart", "poststop"))
def test_failing_post_hook_only_warns(bundle, tmp_path, kind):
    marker, script = _setup(bundle, tmp_path)
    bundle.config["hooks"] = {kind: [
        {"path": "/bin/sh", "args": ["sh", "-c", "exit 2"]},
        _hook(script, kind, marker),  # the next one still runs
    ]}
    log = tmp_path / "onggi.log"
    cid = bundle.create(args=["sleep", "100"])
    res = bundle.onggi("--log", str(log), "start", cid)
    assert res.returncode == 0, res.stderr
    res = bundle.onggi("--log", str(log), "delete", "--force", cid)
    assert res.returncode == 0, res.stderr
    assert not (bundle.root / cid).exists()
    text = log.read_text()
    assert "level=warning" in text and f"hooks.{kind}[0]: /bin/sh exited with status 2" in text
    assert _order(marker) == [kind]


def test_failing_start_container_hook(bundle, tmp_path):
    marker, _ = _setup(bundle, tmp_path)
    bundle.config["hooks"] = {"startContainer": [{"path": "/bin/false"}]}
    cid = bundle.create(args=["sh", "-c", "echo ran > /marker/ran"])
    bundle.onggi("start", cid)
    bundle.wait_stopped(cid)
    assert not (marker / "ran").exists(), "the user process ran after a failed startContainer"
    err = (bundle.path.parent / f"{cid}.err").read_text()
    assert "hooks.startContainer[0]: /bin/false exited with status 1" in err


def test_create_container_in_a_user_namespace(bundle, tmp_path):
    userns(bundle)
    # No bind mount here: before pivot_root the hook still sees the host's paths.
    marker, script = tmp_path / "out", tmp_path / "hook.sh"
    marker.mkdir(mode=0o777)
    marker.chmod(0o777)  # the hook runs as the container's root, host uid 100000
    (marker / "order").touch(0o666)
    (marker / "order").chmod(0o666)
    script.write_text(HOOK)
    script.chmod(0o755)
    bundle.config["hooks"] = {k: [_hook(script, k, marker)] for k in CREATE_KINDS}
    cid = bundle.create(args=["sleep", "100"])
    assert _order(marker) == list(CREATE_KINDS)
    pid = bundle.state(cid)["pid"]
    assert (marker / "createContainer.mnt").read_text().strip() == os.readlink(f"/proc/{pid}/ns/mnt")
    assert os.stat(marker / "createContainer.json").st_uid == 100000
    assert os.stat(marker / "createRuntime.json").st_uid == 0
    assert _state(marker, "createRuntime")["pid"] == pid
