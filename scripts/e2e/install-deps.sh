#!/usr/bin/env bash
# Installs what the end-to-end test (make e2e, docs/testing.md) needs, and
# only what is missing:
#   - Debian packages: QEMU with SeaBIOS and iPXE, busybox-static, dropbear,
#     syslinux, mtools, dosfstools, fdisk, cpio, kmod, OpenIPMI's ipmi_sim,
#     ipmitool, socat;
#   - the Debian kernel that linux-image-amd64 depends on (the cloud kernel
#     lacks e1000 and the IPMI drivers), fetched with `apt-get download`,
#     unpacked with `dpkg-deb -x`, cut down to the modules the test node
#     needs (and their dependencies), with `depmod -b`.
# The kernel lands in the cache directory (see below) and is reused across
# runs; a newer kernel package gets its own directory.
#
# Prints the kernel directory (KDIR, holding vmlinuz, kver and lib/modules)
# as its last line. Environment:
#   REPROV_E2E_CACHE  cache directory (default /var/cache/reprov-e2e as root,
#                     else ${XDG_CACHE_HOME:-~/.cache}/reprov-e2e)
set -euo pipefail

log() { printf 'e2e-deps: %s\n' "$*" >&2; }

cache_dir() {
  if [ -n "${REPROV_E2E_CACHE:-}" ]; then
    printf '%s\n' "$REPROV_E2E_CACHE"
  elif [ "$(id -u)" -eq 0 ]; then
    printf '%s\n' /var/cache/reprov-e2e
  else
    printf '%s\n' "${XDG_CACHE_HOME:-$HOME/.cache}/reprov-e2e"
  fi
}

packages=(qemu-system-x86 qemu-utils ipxe-qemu seabios busybox-static dropbear-bin
  syslinux syslinux-common mtools dosfstools fdisk cpio kmod openipmi ipmitool socat)

updated=0
apt_update() {
  if [ "$updated" -eq 0 ] && [ "$(id -u)" -eq 0 ]; then
    log "apt-get update"
    apt-get update -qq
    updated=1
  fi
}

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_update
  log "installing ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The kernel: the package linux-image-amd64 depends on, as the package
# lists say (updated first when that kernel is not cached yet, so that the
# download finds it).
cache=$(cache_dir)
resolve_kernel() {
  kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  kvers=
  [ -n "$kpkg" ] && kvers=$(apt-cache policy "$kpkg" | awk '/Candidate:/ {print $2; exit}')
  kdir="$cache/kernel/${kpkg}_${kvers}"
}
resolve_kernel
if [ -z "$kpkg" ] || [ -z "$kvers" ] || [ "$kvers" = "(none)" ] || [ ! -f "$kdir/ok" ]; then
  apt_update
  resolve_kernel
fi
if [ -z "$kpkg" ] || [ -z "$kvers" ] || [ "$kvers" = "(none)" ]; then
  log "cannot tell which kernel package linux-image-amd64 depends on"
  exit 1
fi
if [ -f "$kdir/ok" ]; then
  log "kernel $kpkg $kvers cached in $kdir"
  printf '%s\n' "$kdir"
  exit 0
fi

# The node's kernel modules, by name; their dependencies come along.
modules=(ata_piix sd_mod e1000 virtio_pci virtio_net virtio_blk ipmi_si ipmi_devintf af_packet)

mkdir -p "$cache/kernel"
work=$(mktemp -d "$cache/kernel/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "fetching $kpkg $kvers"
# Into a root-only directory: no download sandbox user.
( cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "$kpkg=$kvers" >/dev/null )
deb=$(ls "$work"/*.deb)
log "unpacking $(basename "$deb")"
dpkg-deb -x "$deb" "$work/root"
rm -f "$deb"
kver=$(ls "$work/root/lib/modules")
depmod -b "$work/root" "$kver"

out="$work/out"
mkdir -p "$out/lib/modules/$kver"
cp "$work/root/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$work/root/lib/modules/$kver"/modules.{order,builtin} "$out/lib/modules/$kver/" 2>/dev/null || true
cp "$work/root/lib/modules/$kver"/modules.builtin.modinfo "$out/lib/modules/$kver/" 2>/dev/null || true
: > "$out/load-order"
for m in "${modules[@]}"; do
  # --show-depends lists "insmod PATH" for each module to load, dependencies
  # first, and "builtin NAME" for what the kernel has built in.
  if ! deps=$(modprobe -d "$work/root" -S "$kver" --show-depends "$m" 2>/dev/null); then
    log "kernel $kver has no module $m (skipped)"
    continue
  fi
  while read -r what path _; do
    [ "$what" = insmod ] || continue
    rel=${path#"$work/root"}
    mkdir -p "$out$(dirname "$rel")"
    cp -n "$path" "$out$rel"
    name=$(basename "$rel")
    grep -qxF "$name" "$out/load-order" || printf '%s\n' "$name" >> "$out/load-order"
  done <<< "$deps"
done
depmod -b "$out" "$kver"
printf '%s\n' "$kver" > "$out/kver"
rm -rf "$kdir"
mv "$out" "$kdir"
touch "$kdir/ok"
# Older kernels are never used again.
find "$cache/kernel" -mindepth 1 -maxdepth 1 -type d ! -name "$(basename "$kdir")" ! -name '.build.*' -exec rm -rf {} +
log "kernel $kver with $(wc -l < "$kdir/load-order") modules in $kdir"
printf '%s\n' "$kdir"
