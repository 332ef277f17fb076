"""`start` against an init that execs and exits at once (the issue's case 3).

Opening the exec fifo lets the init run the user process; /bin/true then exits and its
reaper takes it at once, so its pid may already be gone (or reused) when `start` looks
for it. `start` must pin the init with a pidfd before it opens the fifo.

The test makes the race certain: a child subreaper reaps the init the moment it exits, and
ONGGI_FAULT=start:released@0.3 holds `start` for 0.3 s just after it opened the fifo.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from harness import ONGGI

DRIVER = textwrap.dedent("""
    import ctypes, os, subprocess, sys, threading
    onggi, root, bundle, cid = sys.argv[1:5]
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the init comes to us
    base = onggi.split("\\x1f") + ["--root", root]
    pid_file = root + ".pid"
    subprocess.run(base + ["create", "-b", bundle, "--pid-file", pid_file, cid], check=True,
                   stdin=subprocess.DEVNULL)
    pid = int(open(pid_file).read())
    reaped = threading.Event()
    def reap():
        os.waitpid(pid, 0)  # the init is our child now: take it the moment it exits
        reaped.set()
    threading.Thread(target=reap, daemon=True).start()
    env = dict(os.environ, ONGGI_FAULT="start:released@0.3")
    res = subprocess.run(base + ["start", cid], env=env, capture_output=True, text=True)
    reaped.wait(5)
    subprocess.run(base + ["delete", "--force", cid])
    print(res.returncode, reaped.is_set(), res.stderr.strip(), sep="|")
""")


def test_start_wins_against_an_init_that_exits_at_once(rig):
    cid, _ = rig.new(["/bin/true"])
    res = subprocess.run([sys.executable, "-c", DRIVER, "\x1f".join(ONGGI), str(rig.root),
                          str(rig.bundle.path), cid], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    code, reaped, err = res.stdout.strip().split("|", 2)
    assert reaped == "True", "the init was not reaped during start: the race was not run"
    assert code == "0", f"start lost the race: {err}"
