#!/usr/bin/env bash
# bench-10k.sh — the controller alone at fleet scale, as an operator meets
# it: `reprov lab up` runs the simulated fleet (legacy IPMI nodes in racks
# of 40, firmware taking BOOT_DELAY from power-on to the network boot) in
# one process, and `reprov reinstall --all` reinstalls it from another,
# under the limits a site would set (500 nodes at once, 10 per rack), with
# the built-in playbooks and their timeouts, SQLite store, audit log and
# landing endpoint (the controller's own). The agent pushed to the nodes is
# the slim reprov-agent build, as `make build` installs it.
#
# Prints the controller's wall time, nodes/s, the wall time against the
# floor the limits impose (admission waves x BOOT_DELAY), its max RSS
# (the reinstall process alone, /usr/bin/time -v) and RSS per node, the
# lab's max RSS for comparison, the nodes that did not land (by reason),
# and the load average at the start and the end. docs/performance.md
# records the figures.
#
#   scripts/bench-10k.sh [-n NODES] [-P MAX_PARALLEL] [-R PER_RACK] [-b BOOT_DELAY] [-k]
#     -n  nodes (default 10000)
#     -P  --max-parallel (default 500)
#     -R  --per-rack (default 10)
#     -b  the lab's --boot-delay (default 2s)
#     -k  keep the working directory (inventory, state dir, logs, report)
#     -c  also write the controller's CPU profile (REPROV_CPUPROFILE) there
#     -m  also write the controller's heap profile at its peak heap
#         (REPROV_HEAPPROFILE) there
#
# Needs: go, /usr/bin/time (Debian package time), an open-file limit of
# 2 x NODES + 2000 (ulimit -n; 10,000 nodes need 22,000). Everything listens on
# 127.0.0.0/8.
set -euo pipefail

nodes=10000
parallel=500
perrack=10
boot=2s
keep=0
cpuprof=0
heapprof=0
while getopts "n:P:R:b:kcmh" opt; do
	case $opt in
	n) nodes=$OPTARG ;;
	P) parallel=$OPTARG ;;
	R) perrack=$OPTARG ;;
	b) boot=$OPTARG ;;
	k) keep=1 ;;
	c) cpuprof=1 keep=1 ;;
	m) heapprof=1 keep=1 ;;
	*)
		sed -n '2,30p' "$0"
		exit 2
		;;
	esac
done

cd "$(dirname "$0")/.."
if [[ ! -x /usr/bin/time ]]; then
	echo "bench-10k: /usr/bin/time not found (apt-get install time)" >&2
	exit 2
fi

# The lab holds a BMC socket and an SSH listener per node: with every OS
# up, that is two open files per node (and some to spare) in its process.
limit=$(ulimit -n)
if ((nodes * 2 + 2000 > limit)); then
	echo "bench-10k: the open-file limit ($limit) keeps at most $(((limit - 2000) / 2)) nodes with their OS up in the lab: use -n, or raise ulimit -n" >&2
	exit 2
fi

# On the disk that holds /var/tmp (the store's fsyncs are part of the
# controller's work), not a tmpfs.
work=$(mktemp -d /var/tmp/bench-10k.XXXXXX)
lab_pid=""
cleanup() {
	if [[ -n $lab_pid ]] && kill -0 "$lab_pid" 2>/dev/null; then
		kill -INT "$lab_pid" 2>/dev/null || true
		wait "$lab_pid" 2>/dev/null || true
	fi
	if [[ $keep -eq 0 ]]; then
		rm -rf "$work"
	else
		echo "kept: $work"
	fi
}
trap cleanup EXIT

echo "building reprov and the slim agent in $work/bin"
mkdir -p "$work/bin"
go build -o "$work/bin/reprov" ./cmd/reprov
CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags "-s -w" -o "$work/bin/reprov-agent-linux-amd64" ./cmd/reprov-agent
CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -trimpath -ldflags "-s -w" -o "$work/bin/reprov-agent-linux-arm64" ./cmd/reprov-agent
reprov=$work/bin/reprov

echo "starting the lab: $nodes ipmi nodes, --boot-delay $boot"
# Every node powered on, its OS up (as a fleet in production is): its
# precheck identifies the running OS over SSH, pushing the agent.
"$reprov" lab up --write-inventory "$work/inventory.yaml" --mix "ipmi=$nodes" --max-os-up "$nodes" \
	--boot-delay "$boot" --os-boot-time 1s >"$work/lab.out" 2>"$work/lab.err" &
lab_pid=$!
# The lab says so once every node is up.
for ((i = 0; i < 1800; i++)); do
	if grep -q "The lab runs until Ctrl-C" "$work/lab.out" 2>/dev/null; then
		break
	fi
	if ! kill -0 "$lab_pid" 2>/dev/null; then
		echo "bench-10k: the lab exited:" >&2
		cat "$work/lab.err" >&2
		exit 1
	fi
	sleep 1
done
if ! grep -q "The lab runs until Ctrl-C" "$work/lab.out"; then
	echo "bench-10k: the lab did not come up within 30 minutes" >&2
	exit 1
fi
head -1 "$work/lab.out"
lab_rss_before=$(awk '/^VmRSS/ {print $2}' "/proc/$lab_pid/status")

load_start=$(cat /proc/loadavg)
echo "load average at the start: $load_start"
echo "reinstalling: --max-parallel $parallel --per-rack $perrack"
rc=0
if [[ $cpuprof -eq 1 ]]; then
	export REPROV_CPUPROFILE=$work/controller-cpu.pprof
fi
if [[ $heapprof -eq 1 ]]; then
	export REPROV_HEAPPROFILE=$work/controller-heap.pprof
fi
/usr/bin/time -v -o "$work/time.txt" "$reprov" reinstall --all --yes --max-parallel "$parallel" --per-rack "$perrack" \
	--config "$work/reprov.yaml" -o json >"$work/report.json" 2>"$work/reinstall.err" || rc=$?
load_end=$(cat /proc/loadavg)
lab_hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$lab_pid/status")
if [[ $rc -ne 0 && $rc -ne 1 ]]; then
	echo "bench-10k: reprov reinstall exited $rc:" >&2
	tail -20 "$work/reinstall.err" >&2
	keep=1
	exit 1
fi

# "Elapsed (wall clock) time (h:mm:ss or m:ss): 12:34.56"
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$work/time.txt")
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
cpu=$(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {printf "%.0f", u + s}' "$work/time.txt")
ok=$(grep -c '^      "status": "ok"' "$work/report.json" || true)
boot_s=$(awk -v b="$boot" 'BEGIN {v = b + 0; if (b ~ /ms$/) v /= 1000; else if (b ~ /m$/) v *= 60; print v}')

awk -v nodes="$nodes" -v ok="$ok" -v wall="$wall" -v rss="$rss_kb" -v cpu="$cpu" -v par="$parallel" -v pr="$perrack" \
	-v boot="$boot_s" -v labrss="$lab_rss_before" -v labhwm="$lab_hwm" 'BEGIN {
	racks = int((nodes + 39) / 40); atonce = par; if (racks * pr < atonce) atonce = racks * pr
	waves = int((nodes + atonce - 1) / atonce)
	rw = int(((nodes < 40 ? nodes : 40) + pr - 1) / pr); if (rw > waves) waves = rw
	floor = waves * boot
	printf "nodes                  %d (%d landed, %d not)\n", nodes, ok, nodes - ok
	printf "wall time              %.1f s (%.1f nodes/s)\n", wall, nodes / wall
	printf "floor (limits)         %d waves x %.1f s = %.0f s: wall / floor %.1f\n", waves, boot, floor, wall / floor
	printf "controller CPU         %d s (user + system)\n", cpu
	printf "controller max RSS     %.0f MiB (%.0f KB per node)\n", rss / 1024, rss * 1024 / nodes / 1000
	printf "lab max RSS            %.0f MiB (%.0f MiB when the run started)\n", labhwm / 1024, labrss / 1024
}'
echo "load average at the end: $load_end"
grep -h '^reprov: REPROV_HEAPPROFILE' "$work/reinstall.err" || true
if [[ $ok -ne $nodes ]]; then
	echo "nodes that did not land, by reason:"
	grep '^      "reason": ' "$work/report.json" | sort | uniq -c | sort -rn | head -20
	keep=1
fi
