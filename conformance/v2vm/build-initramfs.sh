#!/bin/bash
# $V2VM_CACHE/initrd.img: busybox-static, src/init, src/v2init, and the guest kernel's modules for
# virtio (mmio/pci), the block and console devices, 9p, overlayfs and ext4.
set -euo pipefail
S=$(dirname "$(readlink -f "$0")")
C=${V2VM_CACHE:?}
KV=$(ls "$C/kernel/lib/modules" | head -1)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
mkdir -p "$T/bin" "$T/lib/modules/$KV"
cp /bin/busybox "$T/bin/busybox"
cp "$S/src/init" "$T/init"; cp "$S/src/v2init" "$T/v2init"; chmod 755 "$T/init" "$T/v2init"
: > "$T/modules.list"
for m in virtio_pci virtio_mmio virtio_blk virtio_console 9pnet_virtio 9p overlay ext4; do
  modprobe -d "$C/kernel" -S "$KV" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | awk '!s[$0]++' | while read -r f; do
  rel=${f#"$C"/kernel}; mkdir -p "$T$(dirname "$rel")"; cp "$f" "$T$rel"; echo "$rel" >> "$T/modules.list"
done
(cd "$T" && find . | cpio -o -H newc --quiet | gzip -1) > "$C/initrd.img.new"
mv "$C/initrd.img.new" "$C/initrd.img"
