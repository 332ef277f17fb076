#!/bin/bash
# run.sh HOSTDIR 'COMMAND'
# Boot a throw-away guest whose only cgroup hierarchy is cgroup v2 (cgroup_no_v1=all), share HOSTDIR
# over 9p (read-write, at the same absolute path), run COMMAND there with /bin/sh (cwd HOSTDIR, as
# root, stdin /dev/null), stream its stdout+stderr to our stdout, power off, and exit with COMMAND's
# exit status. The guest is built first by build.sh when it is missing or out of date.
#
# Exit 255 = guest failure (no status came back: boot hang, kernel panic, V2_TIMEOUT); the reason and
# the tail of the guest console go to stderr. COMMAND's own 255 is told apart in V2_STATUS_FILE.
# Inside the guest ONGGI_V2GUEST is set to the mode (systemd or minimal).
#
# Environment:
#   V2_MODE=systemd|minimal  systemd (default): Debian 12 image (packages.txt), systemd PID 1 and the
#                            system D-Bus; COMMAND runs as v2run.service (system.slice, Delegate=yes).
#                            minimal: busybox PID 1 on a tmpfs root, the host's /usr and /etc mounted
#                            read-only (overlay, writes discarded); no systemd, no D-Bus.
#   V2_TIMEOUT=900           seconds for boot + COMMAND before the guest is killed (exit 255)
#   V2_BOOT_TIMEOUT=90       seconds for the guest to reach COMMAND; after that it is killed and booted
#   V2_BOOT_RETRIES=1        again, this many times (a hung boot leaves no output to repeat)
#   V2_STATUS_FILE=FILE      gets "rc N" (COMMAND's status) or "guest-failure REASON"
#   V2_CONSOLE=FILE          keep the guest console (kernel, initramfs, systemd) in FILE
#   V2_CPUS=2 V2_MEM=2048    guest vCPUs / MiB of RAM
#   V2_EXTRA_SHARES='/a /b:rw'  up to 8 more host dirs at the same path, read-only unless :rw
#   V2_GUEST_PATH=...        where HOSTDIR appears in the guest (default: the same path)
#   V2_SHARE_CACHE=loose     9p cache mode of HOSTDIR and the extra shares. loose: the guest caches
#                            metadata and data (python imports from the .venv about 5x faster), and
#                            does not see changes the host makes while it runs; mmap: coherent, slow
#   V2_ACCEL=auto|kvm|tcg    auto: kvm only where kvm_intel/kvm_amd is loaded (not on this host's PVM)
#   V2_MACHINE=microvm|pc|q35, V2_EXTRA_APPEND='...' (kernel command line), V2_NO_BUILD=1
#   ONGGI_V2VM_CACHE=/var/tmp/onggi-v2vm  where build.sh put the guest
set -u
S=$(dirname "$(readlink -f "$0")")
C=${ONGGI_V2VM_CACHE:-/var/tmp/onggi-v2vm}
if [ $# -lt 2 ]; then echo "usage: $0 HOSTDIR 'COMMAND'" >&2; exit 2; fi
HOSTDIR=$(cd "$1" && pwd -P) || { echo "v2vm: no such dir: $1" >&2; exit 2; }
CMD=$2
MODE=${V2_MODE:-systemd}
case $MODE in systemd|minimal) ;; *) echo "v2vm: V2_MODE must be systemd or minimal, not $MODE" >&2; exit 2;; esac
CPUS=${V2_CPUS:-2}; MEM=${V2_MEM:-2048}; TMO=${V2_TIMEOUT:-900}
BOOT_TMO=${V2_BOOT_TIMEOUT:-90}; RETRIES=${V2_BOOT_RETRIES:-1}
GPATH=${V2_GUEST_PATH:-$HOSTDIR}
STATUS=${V2_STATUS_FILE:-}
status() { [ -n "$STATUS" ] && echo "$*" > "$STATUS"; return 0; }
status "guest-failure run.sh did not finish"

if [ -z "${V2_NO_BUILD:-}" ]; then
  "$S/build.sh" >&2 || { status "guest-failure build.sh failed"; echo "v2vm: build.sh failed" >&2; exit 255; }
fi
for f in vmlinux initrd.img rootfs.img; do
  [ -s "$C/$f" ] || { status "guest-failure $C/$f missing"; echo "v2vm: $C/$f missing: run $S/build.sh" >&2; exit 255; }
done
# Shared: a rebuild (exclusive) waits until running guests are done with the kernel and modules.
exec 9>"$C/.lock"
flock -s -w "${V2_LOCK_WAIT:-1800}" 9 || { status "guest-failure lock"; echo "v2vm: could not lock $C/.lock" >&2; exit 255; }

ACCEL=${V2_ACCEL:-auto}
if [ "$ACCEL" = auto ]; then
  if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then ACCEL=kvm; else ACCEL=tcg; fi
fi
case $ACCEL in
  kvm) ACCEL_ARGS=(-accel kvm -cpu host);;
  *)   ACCEL_ARGS=(-accel tcg,thread=multi,tb-size=256 -cpu max);;
esac
# Under TCG the guest TSC runs at the host TSC rate. Tell the guest kernel that rate: its PIT-based
# calibration sometimes fails when the host is busy, and microvm has no HPET/PM-timer fallback (boot hangs).
KCLK=
if [ "$ACCEL" = tcg ]; then
  KHZ=$(awk '/^cpu MHz/{printf "%d", $4*1000; exit}' /proc/cpuinfo)
  [ -n "$KHZ" ] && KCLK="tsc_early_khz=$KHZ"
fi
mkdir -p "$C/runs"
# control dirs of runs that were killed outright (no trap ran); a live run is younger than a day
find "$C/runs" -mindepth 1 -maxdepth 1 -name 'run.*' -mmin +1440 -exec rm -rf {} + 2>/dev/null
CTL=$(mktemp -d "$C/runs/run.XXXXXX") || { status "guest-failure mktemp"; exit 255; }
QPID=
cleanup() { [ -n "$QPID" ] && kill "$QPID" 2>/dev/null; rm -rf "$CTL"; }
trap cleanup EXIT
trap 'status "guest-failure interrupted"; exit 130' INT TERM HUP
sq() { printf "'%s'" "$(printf %s "$1" | sed "s/'/'\\\\''/g")"; }
{
  echo "export V2_SHARE_PATH=$(sq "$GPATH")"
  echo "export V2_CWD=$(sq "$GPATH")"
  echo "export V2_HOSTUSR=1"
  echo "export ONGGI_V2GUEST=$MODE"
  echo "export V2_SHARE_CACHE=$(sq "${V2_SHARE_CACHE:-loose}")"
} > "$CTL/config"
printf '%s\n' "$CMD" > "$CTL/cmd.sh"
MACH=${V2_MACHINE:-microvm}
if [ "$MACH" = microvm ]; then
  MARGS=(-M microvm,isa-serial=on,rtc=on); VDEV=device
else
  MARGS=(-M "$MACH"); VDEV=pci
fi
APPEND="console=ttyS0 quiet loglevel=5 panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 mitigations=off tsc=reliable no_timer_check i8042.noaux i8042.nokbd $KCLK ${V2_EXTRA_APPEND:-}"
ARGS=("${MARGS[@]}" "${ACCEL_ARGS[@]}" -smp "$CPUS" -m "$MEM" -nodefaults -no-user-config -display none -no-reboot
      -kernel "$C/vmlinux" -initrd "$C/initrd.img"
      -device virtio-serial-$VDEV -chardev stdio,id=out,signal=off -device virtconsole,chardev=out,name=v2out)
share() { # tag path [readonly] [security_model]
  ARGS+=(-fsdev "local,id=fs_$1,path=${2//,/,,},security_model=${4:-passthrough}${3:+,readonly=on}" -device "virtio-9p-$VDEV,fsdev=fs_$1,mount_tag=$1"); }
share v2ctl "$CTL"
share host0 "$HOSTDIR"
share v2mods "$(echo "$C"/kernel/lib/modules/*)" ro none
i=0
for x in ${V2_EXTRA_SHARES:-}; do
  xp=${x%:rw}; xro=ro; [ "$xp" != "$x" ] && xro=
  xp=$(cd "$xp" && pwd -P) || { status "guest-failure no such dir $x"; echo "v2vm: no such dir: $x" >&2; exit 2; }
  share x$i "$xp" $xro
  echo "export V2_X$i=$(sq "$xp")" >> "$CTL/config"
  i=$((i+1)); [ $i -ge 8 ] && break
done
if [ "$MODE" = systemd ]; then
  APPEND="$APPEND v2root=/dev/vda systemd.show_status=0 rw"
  ARGS+=(-drive "if=none,id=root,file=$C/rootfs.img,format=raw,snapshot=on,cache=unsafe" -device "virtio-blk-$VDEV,drive=root")
else
  share hostusr /usr ro
  share hostetc /etc ro
fi
ARGS+=(-append "$APPEND")

tail_console() { echo "v2vm: $1; guest console tail ($2):" >&2; tail -n "${V2_CONSOLE_LINES:-40}" "$2" >&2; }
attempt=0
while :; do
  CONSOLE=${V2_CONSOLE:-$CTL/console.log}
  rm -f "$CTL/started" "$CTL/rc"
  # --foreground: qemu stays in our process group, so a caller that kills the group reaches it
  timeout --foreground -k 5 "$TMO" qemu-system-x86_64 "${ARGS[@]}" -serial "file:$CONSOLE" < /dev/null &
  QPID=$!
  t0=$SECONDS; HUNG=
  while kill -0 "$QPID" 2>/dev/null && [ ! -e "$CTL/started" ]; do
    if [ $((SECONDS - t0)) -ge "$BOOT_TMO" ]; then HUNG=1; kill "$QPID"; break; fi
    sleep 0.2
  done
  wait "$QPID"; QRC=$?; QPID=
  if [ -s "$CTL/rc" ]; then
    rc=$(cat "$CTL/rc"); status "rc $rc"; exit "$rc"
  fi
  if [ -n "$HUNG" ] && [ "$attempt" -lt "$RETRIES" ]; then
    attempt=$((attempt + 1))
    tail_console "the guest did not reach the command in ${BOOT_TMO}s; booting it again" "$CONSOLE"
    continue
  fi
  if [ -n "$HUNG" ]; then why="the guest did not reach the command in ${BOOT_TMO}s"
  elif [ "$QRC" = 124 ] || [ "$QRC" = 137 ]; then why="timed out after V2_TIMEOUT=${TMO}s"
  elif [ -e "$CTL/started" ]; then why="the guest stopped before the command finished (qemu rc=$QRC)"
  else why="the guest stopped before it reached the command (qemu rc=$QRC)"; fi
  status "guest-failure $why"
  tail_console "$why" "$CONSOLE"
  exit 255
done
