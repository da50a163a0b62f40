#!/usr/bin/env bash
# Installs the Debian packages whose tools the integration tests drive as
# real protocol peers, when they are missing. Tests themselves fail (under
# CI=true) or skip (otherwise) when a tool is still missing.
set -euo pipefail

# tool → Debian package
declare -A need=(
  [ipmi_sim]=openipmi
  [ipmitool]=ipmitool
  [ipmipower]=freeipmi-tools
  [ipmi-chassis-config]=freeipmi-tools
  [/usr/sbin/sshd]=openssh-server
  [ssh-keygen]=openssh-client
  [redfishtool]=redfishtool
  [sfdisk]=fdisk
  [/usr/lib/postgresql/15/bin/initdb]=postgresql
  [chromium]=chromium
  [promtool]=prometheus
  [dropbear]=dropbear-bin
  [dropbearkey]=dropbear-bin
)

missing=()
for tool in "${!need[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "$tool" ]; then
    missing+=("${need[$tool]}")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "test-deps: missing Debian packages: $pkgs (run as root, or: sudo apt-get install $pkgs)" >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
fi
echo "test-deps: installing $pkgs" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
