"""On a systemd host "/" and every mount under it are shared (this host's are private), so a
container's mount namespace starts as a peer of the host's. Nothing the runtime unmounts in
there may reach the host. Found in the v2 guest: with --no-pivot and rootfsPropagation
"shared" or "rshared", onggi used to detach the host's /dev/pts, /dev/shm, /sys/fs/cgroup,
/run/lock and more (an unmount propagates through its parent's peer group, and the parents
were still shared; runtime.linux.pivot._drop_host_mounts now makes them slaves first).

Each run happens in a mount namespace of its own whose mounts are made shared, standing in
for a systemd host: what it loses is counted there, and the real host's mounts (or the
guest's) stay intact. So it runs on any host, and in the v2 guest too.
"""

from __future__ import annotations

import subprocess

import pytest
from harness import ONGGI

# the stand-in host: private from the guest's namespace, then shared like systemd's "/"
SCRIPT = r"""
d=$1; shift
mount --make-rshared / || exit 99
# stacked mounts (one covering another at the same point), as a busy host has them
# (containerd's task rootfs): the covered one cannot be reached by its path
mkdir -p "$d/stack" && mount -t tmpfs low "$d/stack" && mount -t tmpfs high "$d/stack" || exit 98
awk '{print $5}' /proc/self/mountinfo | sort > "$d/before"
"$@" > "$d/run.out" 2>&1; echo "rc=$?"
awk '{print $5}' /proc/self/mountinfo | sort > "$d/after"
echo "lost: $(comm -23 "$d/before" "$d/after" | tr '\n' ' ')"
"""

@pytest.mark.guest_too
@pytest.mark.parametrize("no_pivot,prop", [
    (False, "shared"),
    (False, "rshared"),
    (True, None),
    (True, "slave"),
    (True, "shared"),
    (True, "rshared"),
    (True, "private"),
    (True, "rprivate"),
])
def test_container_unmounts_never_reach_a_shared_host(bundle, tmp_path, no_pivot, prop):
    if prop:
        bundle.config["linux"]["rootfsPropagation"] = prop
    bundle.write(["true"])
    run = [*ONGGI, "--root", str(bundle.root), "run", *(["--no-pivot"] if no_pivot else []),
           "-b", str(bundle.path), bundle.new_id()]
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", SCRIPT,
                          "sh", str(tmp_path), *run],
                         capture_output=True, text=True, timeout=300)
    lines = dict(line.split("=", 1) if "=" in line else line.split(":", 1)
                 for line in res.stdout.splitlines() if line)
    assert res.returncode == 0 and lines.get("rc") == "0", \
        res.stdout + res.stderr + (tmp_path / "run.out").read_text()
    assert lines["lost"].split() == [], f"the host lost mounts: {lines['lost']}"
