#!/bin/bash
# $V2VM_CACHE/rootfs.img: Debian 12 minbase plus packages.txt, as a raw ext4 image for the systemd
# guest (mkfs.ext4 -d: no loop mount). systemd boots it to multi-user.target with as few units as
# possible, and v2run.service runs the command given by run.sh, then powers off.
# Needs debootstrap, e2fsprogs and the host's Debian mirror (V2_MIRROR overrides it).
set -euo pipefail
S=$(dirname "$(readlink -f "$0")")
C=${V2VM_CACHE:?}; R=$C/rootfs
PKGS=$(sed 's/#.*//' "$S/packages.txt" | xargs | tr ' ' ,)
PKGHASH=$(echo "$PKGS" | sha256sum | cut -c1-16)
if [ ! -x "$R/lib/systemd/systemd" ] || [ "$(cat "$R/.v2vm-packages" 2>/dev/null)" != "$PKGHASH" ]; then
  rm -rf "$R"
  MIRROR=${V2_MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)}
  [ -n "$MIRROR" ] || MIRROR=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
  debootstrap --variant=minbase --include="$PKGS" bookworm "$R" "$MIRROR" > "$C/debootstrap.log" 2>&1 ||
    { tail -n 30 "$C/debootstrap.log" >&2; exit 1; }
  chroot "$R" apt-get clean
  rm -rf "$R"/var/lib/apt/lists/*
  echo "$PKGHASH" > "$R/.v2vm-packages"
fi
echo v2vm > "$R/etc/hostname"
printf '127.0.0.1 localhost v2vm\n::1 localhost\n' > "$R/etc/hosts"
: > "$R/etc/fstab"
[ -s "$R/etc/machine-id" ] || chroot "$R" systemd-machine-id-setup
mkdir -p "$R/v2ctl"
# trim boot: no gettys, no timers, no pstore/e2scrub
ln -sf /dev/null "$R/etc/systemd/system/getty.target"
rm -f "$R"/etc/systemd/system/timers.target.wants/* "$R/etc/systemd/system/multi-user.target.wants/e2scrub_reap.service" \
      "$R/etc/systemd/system/sysinit.target.wants/systemd-pstore.service"
for u in systemd-update-utmp.service systemd-update-utmp-runlevel.service systemd-ask-password-wall.path \
         systemd-journal-flush.service; do ln -sf /dev/null "$R/etc/systemd/system/$u"; done
# fewer units/generators => faster boot under TCG
for u in modprobe@.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
         sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount sys-fs-fuse-connections.mount \
         systemd-random-seed.service systemd-firstboot.service systemd-repart.service first-boot-complete.target \
         systemd-ask-password-console.path systemd-machine-id-commit.service \
         podman.service podman.socket podman-restart.service podman-auto-update.service; do
  ln -sf /dev/null "$R/etc/systemd/system/$u"; done
rm -f "$R"/etc/systemd/system/default.target.wants/podman* "$R"/etc/systemd/system/sockets.target.wants/podman*
mkdir -p "$R/etc/systemd/system-generators"
for g in systemd-cryptsetup-generator systemd-gpt-auto-generator systemd-hibernate-resume-generator \
         systemd-integritysetup-generator systemd-veritysetup-generator systemd-sysv-generator systemd-rc-local-generator \
         systemd-system-update-generator systemd-getty-generator systemd-fstab-generator; do
  ln -sf /dev/null "$R/etc/systemd/system-generators/$g"; done
ln -sf /lib/systemd/system/multi-user.target "$R/etc/systemd/system/default.target"
# like most hosts: loop devices (/dev/loop0 ...) exist; the tests bind host device nodes
echo loop > "$R/etc/modules-load.d/v2vm.conf"
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' > "$R/etc/systemd/journald.conf.d/v2vm.conf"
cat > "$R/usr/local/sbin/v2run" <<'EOF'
#!/bin/sh
# Runs /v2ctl/cmd.sh (written by run.sh), stores its exit status in /v2ctl/rc, powers off at once.
[ -f /v2ctl/config ] && . /v2ctl/config
stty raw -echo <&1 2>/dev/null   # stdout is /dev/hvc0 (StandardOutput=tty), keep it raw: no \n -> \r\n
echo "v2vm: run $(cut -d' ' -f1 /proc/uptime)s" > /dev/kmsg
cut -d' ' -f1 /proc/uptime > /v2ctl/started
cd "${V2_CWD:-/}" 2>/dev/null || cd /
sh /v2ctl/cmd.sh < /dev/null
rc=$?
echo $rc > /v2ctl/rc
echo "v2vm: done rc=$rc $(cut -d' ' -f1 /proc/uptime)s" > /dev/kmsg
sync
systemctl poweroff -ff >/dev/null 2>&1
EOF
chmod 755 "$R/usr/local/sbin/v2run"
cat > "$R/etc/systemd/system/v2run.service" <<'EOF'
[Unit]
Description=v2vm: run the host-provided command
After=basic.target dbus.socket
Wants=dbus.socket
ConditionPathExists=/v2ctl/cmd.sh
[Service]
Type=oneshot
Environment=HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TERM=dumb
ExecStart=/usr/local/sbin/v2run
StandardInput=null
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/hvc0
TTYReset=no
TTYVHangup=no
Delegate=yes
TimeoutStartSec=infinity
[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/v2run.service "$R/etc/systemd/system/multi-user.target.wants/v2run.service"
rm -f "$C/rootfs.img.new"
mkfs.ext4 -q -L v2root -d "$R" "$C/rootfs.img.new" 2048M
mv "$C/rootfs.img.new" "$C/rootfs.img"
