#!/usr/bin/env bash
# bench-peers.sh — reprov's out-of-band step against the independent IPMI
# clients, on one farm of simulated BMCs (lab/ipmibmc) on loopback.
#
# Starts N BMCs (default 256) in one process, then times, at fan-out P
# (default 64), "one-time PXE boot + power cycle" on every BMC with:
#   (a) reprov     lab/ipmibmc/cmd/pxecycle (bmc/ipmi: open, set PXE once with
#                  parameter 3 and read-back, status + cycle, close)
#   (b) FreeIPMI   ipmi-chassis-config --commit Boot_Device=PXE; ipmipower --cycle
#   (c) ipmitool   chassis bootdev pxe; chassis power cycle
# and prints the three times and the ratios to reprov's.
#
#   scripts/bench-peers.sh [-n NODES] [-P FANOUT] [-g]
#     -g  also run the in-process Go benchmark (BenchmarkPXEOnceAndCycle256)
#
# Needs: go, ipmitool, freeipmi-tools (ipmipower, ipmi-chassis-config).
set -euo pipefail

nodes=256
fanout=64
gobench=0
while getopts "n:P:gh" opt; do
	case $opt in
	n) nodes=$OPTARG ;;
	P) fanout=$OPTARG ;;
	g) gobench=1 ;;
	*)
		sed -n '2,16p' "$0"
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

work=$(mktemp -d)
farm_pid=""
cleanup() {
	if [[ -n $farm_pid ]] && kill -0 "$farm_pid" 2>/dev/null; then
		kill "$farm_pid" 2>/dev/null || true
		wait "$farm_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A throwaway password (16 characters: FreeIPMI's limit): never printed.
umask 077
head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/password"
password=$(cat "$work/password")

echo "bench-peers: building" >&2
go build -o "$work/bmcfarm" ./lab/ipmibmc/cmd/bmcfarm
go build -o "$work/pxecycle" ./lab/ipmibmc/cmd/pxecycle

"$work/bmcfarm" -n "$nodes" -user admin -password-file "$work/password" \
	>"$work/addrs" 2>"$work/farm.log" &
farm_pid=$!
for _ in $(seq 1 200); do
	if grep -q "ready" "$work/farm.log" 2>/dev/null; then
		break
	fi
	if ! kill -0 "$farm_pid" 2>/dev/null; then
		echo "bench-peers: bmcfarm exited:" >&2
		cat "$work/farm.log" >&2
		exit 1
	fi
	sleep 0.05
done
got=$(wc -l <"$work/addrs")
if [[ $got -ne $nodes ]]; then
	echo "bench-peers: bmcfarm lists $got BMCs, want $nodes" >&2
	exit 1
fi
echo "bench-peers: $nodes BMCs up, fan-out $fanout" >&2

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }

# (a) reprov
t0=$(now)
"$work/pxecycle" -fanout "$fanout" -user admin -password-file "$work/password" <"$work/addrs" >"$work/a.out"
t_reprov=$(elapsed "$t0" "$(now)")

# (b) FreeIPMI. The password is a throwaway: -p on the command line is fine.
export BENCH_PW=$password
t0=$(now)
xargs -P "$fanout" -L 1 sh -c '
	ipmi-chassis-config -D LAN_2_0 -h "$0:$1" -u admin -p "$BENCH_PW" --commit \
		-e "Chassis_Boot_Flags:Boot_Device=PXE" >/dev/null &&
	ipmipower -D LAN_2_0 -h "$0:$1" -u admin -p "$BENCH_PW" --cycle | grep -q ": ok$" ||
	{ echo "freeipmi failed on $0:$1" >&2; exit 255; }
' <"$work/addrs"
t_freeipmi=$(elapsed "$t0" "$(now)")
unset BENCH_PW

# (c) ipmitool, password from the environment (-E).
export IPMI_PASSWORD=$password
t0=$(now)
xargs -P "$fanout" -L 1 sh -c '
	ipmitool -I lanplus -C 17 -H "$0" -p "$1" -U admin -E chassis bootdev pxe >/dev/null &&
	ipmitool -I lanplus -C 17 -H "$0" -p "$1" -U admin -E chassis power cycle >/dev/null ||
	{ echo "ipmitool failed on $0:$1" >&2; exit 255; }
' <"$work/addrs"
t_ipmitool=$(elapsed "$t0" "$(now)")
unset IPMI_PASSWORD

kill "$farm_pid"
wait "$farm_pid" || true
farm_pid=""

printf '\n%d nodes, fan-out %d: one-time PXE + power cycle\n' "$nodes" "$fanout"
printf '  (a) reprov     %8.3f s   %7.3f ms/node\n' "$t_reprov" "$(calc "$t_reprov * 1000 / $nodes")"
printf '  (b) FreeIPMI   %8.3f s   %7.3f ms/node   %6.1fx reprov\n' "$t_freeipmi" "$(calc "$t_freeipmi * 1000 / $nodes")" "$(calc "$t_freeipmi / $t_reprov")"
printf '  (c) ipmitool   %8.3f s   %7.3f ms/node   %6.1fx reprov\n' "$t_ipmitool" "$(calc "$t_ipmitool * 1000 / $nodes")" "$(calc "$t_ipmitool / $t_reprov")"
# Each tool's cycle is a boot: 3 per node when every run succeeded.
sed -n 's/^bmcfarm: /  farm: /p' "$work/farm.log" | tail -1

if [[ $gobench -eq 1 ]]; then
	printf '\nin-process Go benchmark (256 BMCs in the test process):\n'
	go test -run='^$' -bench=PXEOnceAndCycle256 -benchtime=5x ./bmc/ipmi | grep Benchmark
fi
