#!/bin/bash
# build.sh [--force] [--check]: build the pure-cgroup-v2 guest into $ONGGI_V2VM_CACHE
# (default /var/tmp/onggi-v2vm), or reuse it when every part is up to date.
#
# Parts, each rebuilt only when the hash of its inputs (stored in CACHE/<part>.stamp) changed:
#   kernel  Debian's current linux-image-*-amd64 .deb unpacked (not installed), vmlinux extracted
#   initrd  busybox-static + src/init + src/v2init + virtio/9p/ext4/overlay modules
#   rootfs  Debian 12 minbase + packages.txt (systemd, dbus, runc, crun, ...), raw ext4 image
# --check: exit 0 when up to date, 1 when a build is needed (builds nothing).
# Everything comes from Debian packages; nothing is fetched from anywhere else.
set -euo pipefail
S=$(dirname "$(readlink -f "$0")")
C=${ONGGI_V2VM_CACHE:-/var/tmp/onggi-v2vm}
FORCE=; CHECK=
for a in "$@"; do case $a in --force) FORCE=1;; --check) CHECK=1;; *) echo "usage: $0 [--force|--check]" >&2; exit 2;; esac; done

# The kernel package Debian's linux-image-amd64 points at now. apt-cache takes about a second, so
# ask it only when the apt lists changed since the kernel was built.
kernel_pkg() {
  if [ -s "$C/kernel.pkg" ] && [ -z "$(find /var/lib/apt/lists -maxdepth 1 -newer "$C/kernel.pkg" -name '*Packages*' -print -quit 2>/dev/null)" ]; then
    cat "$C/kernel.pkg"
  else
    apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'
  fi
}
inputs_kernel() { cat "$S/build-kernel.sh"; kernel_pkg; }
inputs_initrd() { cat "$S/build-initramfs.sh" "$S/src/init" "$S/src/v2init" "$C/kernel.stamp" 2>/dev/null; }
inputs_rootfs() { cat "$S/build-rootfs.sh" "$S/packages.txt"; }
hash_of() { "inputs_$1" | sha256sum | cut -c1-16; }
declare -A PRODUCT=([kernel]=vmlinux [initrd]=initrd.img [rootfs]=rootfs.img)
fresh() { [ -z "$FORCE" ] && [ -s "$C/${PRODUCT[$1]}" ] && [ -s "$C/$1.stamp" ] &&
          [ "$(cat "$C/$1.stamp")" = "$(hash_of "$1")" ]; }
all_fresh() { fresh kernel && fresh initrd && fresh rootfs; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

if all_fresh; then exit 0; fi
[ -n "$CHECK" ] && exit 1
[ "$(id -u)" = 0 ] || { echo "v2vm: building the guest needs root (debootstrap, depmod -b)" >&2; exit 1; }

mkdir -p "$C"
# One build at a time; runs (run.sh) hold this lock shared, so a build waits for them to end.
exec 9>"$C/.lock"
if ! flock -x -n 9; then
  echo "v2vm: waiting for $C/.lock (another build, or guests still running)" >&2
  flock -x -w "${V2_LOCK_WAIT:-1800}" 9 || { echo "v2vm: could not take $C/.lock" >&2; exit 1; }
fi
if all_fresh; then exit 0; fi   # another process built it while we waited

HOST_PKGS="qemu-system-x86 qemu-utils debootstrap busybox-static kmod cpio e2fsprogs python3"
missing=$(for p in $HOST_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  echo "v2vm: apt-get install" $missing >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
fi

export V2VM_CACHE=$C
t0=$(date +%s%N)
for part in kernel initrd rootfs; do
  fresh "$part" && continue
  rm -f "$C/$part.stamp"
  t=$(date +%s%N)
  case $part in
    kernel) "$S/build-kernel.sh";;
    initrd) "$S/build-initramfs.sh";;
    rootfs) "$S/build-rootfs.sh";;
  esac
  hash_of "$part" > "$C/$part.stamp"
  echo "v2vm: $part built in $(ms_since "$t") ms" >&2
done
FORCE=
all_fresh || { echo "v2vm: build finished but $C is still not up to date" >&2; exit 1; }
echo "v2vm: guest ready in $C ($(ms_since "$t0") ms)" >&2
