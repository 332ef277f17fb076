#!/bin/bash
# The README demo, with no internet: a loopback registry (Debian's docker-registry) holding a
# busybox image built here from busybox-static, then
#   onggi image pull → onggi image unpack --mode overlay → onggi run
# and everything is cleaned up afterwards (overlay unmounted, registry stopped, temp removed).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY="$REPO/.venv/bin/python"
ONGGI="$REPO/.venv/bin/onggi"
REGISTRY=/usr/bin/docker-registry
for bin in "$PY" "$ONGGI" "$REGISTRY" /bin/busybox; do
    [ -x "$bin" ] || { echo "demo-image: $bin missing (make install / apt-get install docker-registry busybox-static)" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/onggi-demo.XXXXXX)
STORE="$TMP/store"
BUNDLE="$TMP/bundle"
REG_PID=""
cleanup() {
    "$ONGGI" --root "$TMP/state" delete -f demo-id >/dev/null 2>&1 || true
    if [ -e "$BUNDLE/config.json" ]; then
        "$ONGGI" --store "$STORE" image unmount "$BUNDLE" || true
    fi
    if [ -n "$REG_PID" ]; then
        kill "$REG_PID" 2>/dev/null || true
        wait "$REG_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$TMP/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $TMP/registry
http:
  addr: 127.0.0.1:$PORT
EOF
"$REGISTRY" serve "$TMP/registry.yml" >"$TMP/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.05
done
echo "# a registry on 127.0.0.1:$PORT; pushing busybox (from busybox-static) to it"
REPO="$REPO" "$PY" - "$TMP/layout" "127.0.0.1:$PORT" <<'EOF'
import os, sys
sys.path.insert(0, os.path.join(os.environ["REPO"], "bundles", "image"))
import imagefix
imagefix.busybox_layout(sys.argv[1], "latest",
                        cmd=["sh", "-c", "echo Hello from busybox in an onggi container; uname -s; id"])
print(imagefix.push_layout(sys.argv[1], sys.argv[2], "demo/busybox", "latest"))
EOF

REF="127.0.0.1:$PORT/demo/busybox:latest"
run() { echo "+ onggi $*"; "$ONGGI" "$@"; }
run --store "$STORE" image pull "$REF"
run --store "$STORE" images
run --store "$STORE" image unpack --mode overlay "$REF" "$BUNDLE"
run --root "$TMP/state" run -b "$BUNDLE" demo-id
run --store "$STORE" image unmount "$BUNDLE"
echo "# done; cleaning up"
