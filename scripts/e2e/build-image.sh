#!/usr/bin/env bash
# Builds the end-to-end test's node image (docs/testing.md): a legacy-BIOS
# disk whose MBR (syslinux's mbr.bin) boots one active FAT partition holding
# syslinux, the Debian kernel and an initramfs — "the running OS": busybox,
# dropbear with one baked host key (so the OS that comes back keeps its key),
# the test's authorized key, and the kernel modules for the disk, the NIC
# and in-band IPMI (/dev/ipmi0).
#
# No root, loop device or mount: sfdisk on a file, mkfs.vfat --offset,
# syslinux --offset --install, mcopy, and mbr.bin written into the first 440
# bytes.
#
# The result is cached by a hash of its inputs (this script, the kernel, the
# busybox, dropbear and syslinux versions): a repeat run prints the cached
# directory at once. Output directory (printed as the last line):
#   disk.img          the disk (raw)
#   id_ed25519[.pub]  the test's SSH key (root's authorized key in the image)
#   host_key.pub      the node's SSH host key (OpenSSH public key line)
#   vmlinuz initrd.gz the same kernel and initramfs, for netbooting the
#                     "installer": booted with reprov.callback= and
#                     reprov.token= on its command line (reprov's install
#                     script adds them), the init posts the callback and
#                     starts no sshd
#
# Usage: build-image.sh [KDIR]   (KDIR from install-deps.sh; default: run it)
# Environment: REPROV_E2E_CACHE (see install-deps.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
log() { printf 'e2e-image: %s\n' "$*" >&2; }

kdir=${1:-}
if [ -z "$kdir" ]; then
  kdir=$("$here/install-deps.sh" | tail -n 1)
fi
[ -f "$kdir/ok" ] || { log "no kernel in $kdir (run install-deps.sh)"; exit 1; }
kver=$(cat "$kdir/kver")

if [ -n "${REPROV_E2E_CACHE:-}" ]; then
  cache=$REPROV_E2E_CACHE
elif [ "$(id -u)" -eq 0 ]; then
  cache=/var/cache/reprov-e2e
else
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/reprov-e2e
fi

versions=$(dpkg-query -W -f='${Package}=${Version}\n' busybox-static dropbear-bin syslinux syslinux-common 2>/dev/null)
hash=$( { cat "$0"; printf '%s\n' "$kdir" "$kver" "$versions"; sha256sum "$kdir/vmlinuz" "$kdir/load-order"; } | sha256sum | cut -c1-16)
out="$cache/image/$hash"
if [ -f "$out/ok" ]; then
  log "image cached in $out"
  printf '%s\n' "$out"
  exit 0
fi

mkdir -p "$cache/image"
work=$(mktemp -d "$cache/image/.build.XXXXXX")
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
root="$work/initramfs"

# --- the initramfs -----------------------------------------------------------
mkdir -p "$root"/{bin,dev,etc/dropbear,lib,lib64,proc,sys,tmp,run,var/tmp,var/log,root/.ssh}
mkdir -p "$root/usr"
ln -s bin "$root/sbin"
ln -s ../bin "$root/usr/bin"
ln -s ../bin "$root/usr/sbin"
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 700 "$root/root" "$root/root/.ssh"

cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done

# dropbear and the shared libraries it needs.
cp /usr/sbin/dropbear "$root/bin/dropbear"
for lib in $(ldd /usr/sbin/dropbear | awk '/=>/ {print $3} /^\t\/lib64/ {print $1}'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
[ -e "$root/lib64/ld-linux-x86-64.so.2" ] || cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"

# Kernel modules, with their modules.dep, for busybox modprobe.
cp -a "$kdir/lib/modules" "$root/lib/"
cp "$kdir/load-order" "$root/etc/modules.load"

# Keys: the node's host key (baked: the returning OS keeps it) and the
# test's key pair, whose public half root accepts.
dropbearkey -t ed25519 -f "$root/etc/dropbear/host_key" >/dev/null 2>&1
dropbearkey -y -f "$root/etc/dropbear/host_key" | awk '/^ssh-/ {print $1, $2}' > "$work/host_key.pub"
ssh-keygen -q -t ed25519 -N '' -C reprov-e2e -f "$work/id_ed25519"
cp "$work/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
chmod 600 "$root/root/.ssh/authorized_keys"

cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
EOF
cat > "$root/etc/shadow" <<'EOF'
root:*:19000:0:99999:7:::
EOF
chmod 600 "$root/etc/shadow"
printf 'root:x:0:\n' > "$root/etc/group"
printf '/bin/sh\n' > "$root/etc/shells"
printf 'reprov-node\n' > "$root/etc/hostname"

cat > "$root/etc/udhcpc.script" <<'EOF'
#!/bin/sh
# udhcpc's hook: configure the lease (QEMU user network: 10.0.2.15/24 via 10.0.2.2).
case $1 in
deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	for r in $router; do ip route add default via "$r" dev "$interface"; break; done
	: > /etc/resolv.conf
	for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
	;;
esac
exit 0
EOF
chmod 755 "$root/etc/udhcpc.script"

cat > "$root/init" <<'EOF'
#!/bin/sh
# The test node's "running OS": an initramfs whose init brings up what an
# operator's node has — a disk, a NIC with DHCP, /dev/ipmi0 and sshd — and
# says so on the serial console.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
hostname -F /etc/hostname
echo "reprov-e2e: boot_id=$(cat /proc/sys/kernel/random/boot_id)"
for m in $(cat /etc/modules.load); do
	modprobe "${m%.ko}" 2>/dev/null
done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /etc/udhcpc.script -t 10 -T 1 -n -q >/dev/null 2>&1 || echo "reprov-e2e: no DHCP lease"
i=0
while [ ! -e /dev/ipmi0 ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
[ -e /dev/ipmi0 ] && echo "reprov-e2e: /dev/ipmi0 present" || echo "reprov-e2e: no /dev/ipmi0"
echo "reprov-e2e: serial=$(cat /sys/class/dmi/id/product_serial 2>/dev/null)"
echo "reprov-e2e: mac=$(cat /sys/class/net/eth0/address 2>/dev/null) ip=$(ip -4 -o addr show dev eth0 | awk '{print $4}')"
# Booted over the network by reprov's install script: play the installer.
# Prove the landing with the job's callback and token (as a real installer
# would), and start no sshd: the old OS is gone.
cb=$(sed -n 's/.*reprov\.callback=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$cb" ]; then
	token=$(sed -n 's/.*reprov\.token=\([^ ]*\).*/\1/p' /proc/cmdline)
	node=$(sed -n 's/.*reprov\.node=\([^ ]*\).*/\1/p' /proc/cmdline)
	echo "reprov-e2e: installer for node=$node"
	i=0
	until wget -q -O /dev/null --header "Authorization: Bearer $token" --post-data "" "$cb"; do
		i=$((i + 1))
		[ $i -ge 20 ] && { echo "reprov-e2e: installer callback failed"; break; }
		sleep 1
	done
	[ $i -lt 20 ] && echo "reprov-e2e: installer called back"
else
	dropbear -r /etc/dropbear/host_key -s -p 22 -P /run/dropbear.pid
	echo "reprov-e2e: sshd up"
fi
exec setsid sh -c 'exec sh </dev/console >/dev/console 2>&1'
EOF
chmod 755 "$root/init"

( cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet ) | gzip -6 > "$work/initrd.gz"

# --- the disk ----------------------------------------------------------------
cat > "$work/syslinux.cfg" <<'EOF'
DEFAULT node
PROMPT 0
TIMEOUT 0
LABEL node
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND console=ttyS0,115200 quiet loglevel=3 panic=5
EOF

kib=$(( ( $(stat -c %s "$kdir/vmlinuz") + $(stat -c %s "$work/initrd.gz") ) / 1024 ))
size_mib=$(( kib / 1024 + 8 ))
part_start=2048 # sectors
disk="$work/disk.img"
truncate -s "${size_mib}M" "$disk"
printf 'label: dos\nstart=%d, type=c, bootable\n' "$part_start" | sfdisk -q "$disk"
part_sectors=$(sfdisk -d "$disk" | awk -F'size=' '/start=/ {split($2, a, ","); gsub(/ /, "", a[1]); print a[1]}')
offset=$(( part_start * 512 ))
mkfs.vfat -n REPROVNODE --offset "$part_start" "$disk" $(( part_sectors / 2 )) >/dev/null
syslinux --offset "$offset" --install "$disk"
export MTOOLS_SKIP_CHECK=1
mcopy -i "$disk@@$offset" "$kdir/vmlinuz" ::vmlinuz
mcopy -i "$disk@@$offset" "$work/initrd.gz" ::initrd.gz
mcopy -i "$disk@@$offset" "$work/syslinux.cfg" ::syslinux.cfg
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none

mkdir -p "$work/out"
mv "$disk" "$work/id_ed25519" "$work/id_ed25519.pub" "$work/host_key.pub" "$work/initrd.gz" "$work/out/"
cp "$kdir/vmlinuz" "$work/out/vmlinuz"
printf '%s\n' "$kver" > "$work/out/kver"
rm -rf "$out"
mv "$work/out" "$out"
touch "$out/ok"
# Images of older inputs are never used again.
find "$cache/image" -mindepth 1 -maxdepth 1 -type d ! -name "$hash" ! -name '.build.*' -exec rm -rf {} +
log "image built in $out ($(du -h "$out/disk.img" | cut -f1))"
printf '%s\n' "$out"
