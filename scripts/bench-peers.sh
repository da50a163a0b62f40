#!/usr/bin/env bash
# bench-peers.sh — reprov against the independent IPMI clients, each used as
# its users use it, on one farm of simulated BMCs (lab/ipmibmc) on loopback.
#
# Starts N go-ipmi reference BMCs (default 256) in one bmcfarm process, on
# 127.0.x.y:623, then runs "one-time PXE boot + power cycle" on every BMC
# at fan-out P (default 64) with each client, R rounds (default 5) in a
# rotated order after one uncounted warm-up round, and prints medians, the
# ratio to the raw go-ipmi library, and exchanges and sessions per node as
# the BMCs counted them. Every run is checked on the farm's side: one PXE
# boot per BMC, no session left open. The clients and what each run is are
# listed in lab/ipmibmc/cmd/benchpeers; docs/performance.md explains the
# table.
#
#   scripts/bench-peers.sh [-n NODES] [-P FANOUT] [-r ROUNDS] [-c CLIENTS] [-b REV] [-g]
#     -c  comma-separated client names (substrings) to run, default all
#     -b  also run the reprov CLI built from git revision REV (e.g. main):
#         one more row, to compare two builds in one alternating run
#     -g  also run the in-process Go benchmark (BenchmarkPXEOnceAndCycle256)
#
# Needs: go, root (port 623), ipmitool, freeipmi-tools (ipmipower,
# ipmi-chassis-config), a tmpfs at /dev/shm for the tmpfs row.
set -euo pipefail

nodes=256
fanout=64
rounds=5
clients=""
gobench=0
base=""
while getopts "n:P:r:c:b:gh" opt; do
	case $opt in
	n) nodes=$OPTARG ;;
	P) fanout=$OPTARG ;;
	r) rounds=$OPTARG ;;
	c) clients=$OPTARG ;;
	b) base=$OPTARG ;;
	g) gobench=1 ;;
	*)
		sed -n '2,22p' "$0"
		exit 2
		;;
	esac
done

cd "$(dirname "$0")/.."
for tool in go ipmitool ipmipower ipmi-chassis-config; do
	if ! command -v "$tool" >/dev/null; then
		echo "bench-peers: $tool not found (apt-get install ipmitool freeipmi-tools)" >&2
		exit 2
	fi
done
if [[ $(id -u) -ne 0 ]]; then
	echo "bench-peers: the BMCs listen on port 623: run as root" >&2
	exit 2
fi

# The working directory (inventory, password, reprov's on-disk state dir)
# is on the disk that holds /var/tmp, not on a tmpfs.
work=$(mktemp -d /var/tmp/bench-peers.XXXXXX)
trap 'rm -rf "$work"' EXIT

# A throwaway password (16 characters: FreeIPMI's limit): never printed.
umask 077
head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/password"

echo "bench-peers: building" >&2
go build -o "$work/bmcfarm" ./lab/ipmibmc/cmd/bmcfarm
go build -o "$work/benchpeers" ./lab/ipmibmc/cmd/benchpeers
go build -o "$work/reprov" ./cmd/reprov
baseargs=()
if [[ -n $base ]]; then
	git worktree add --detach "$work/base-src" "$base" >/dev/null 2>&1
	(cd "$work/base-src" && go build -o "$work/reprov-base" ./cmd/reprov)
	git worktree remove --force "$work/base-src"
	baseargs=(-reprov-base "$work/reprov-base")
fi

tmpfs=/dev/shm
if [[ $(stat -f -c %T "$tmpfs" 2>/dev/null) != tmpfs ]]; then
	echo "bench-peers: $tmpfs is not a tmpfs: skipping the tmpfs row" >&2
	tmpfs=""
fi

"$work/benchpeers" -n "$nodes" -fanout "$fanout" -rounds "$rounds" -clients "$clients" \
	-bmcfarm "$work/bmcfarm" -reprov "$work/reprov" -work "$work" -tmpfs-dir "$tmpfs" "${baseargs[@]}"

if [[ $gobench -eq 1 ]]; then
	printf '\nin-process Go benchmark (256 BMCs in the test process, reprov bmc library):\n'
	go test -run='^$' -bench=PXEOnceAndCycle256 -benchtime=5x ./bmc/ipmi | grep Benchmark
fi
