#!/bin/sh
# The e2e node's board, as ipmi_sim's chassis_control program (lan.conf:
# chassis_control "chassis.sh DIR"). ipmi_sim runs it once per request,
# synchronously:
#
#   chassis.sh DIR get power|boot ...      prints power:0|1, boot:DEVICE
#   chassis.sh DIR set power 0|1           power off (QEMU quits) / on (QEMU starts)
#   chassis.sh DIR set reset 1             hard reset of a running machine
#   chassis.sh DIR set boot DEVICE         none|pxe|default|cdrom|bios: the next boot
#   chassis.sh DIR set shutdown 1          as power 0
#   chassis.sh DIR set identify ...        ignored
#
# When ipmi_sim has a chassis_control program it sends power requests to it
# rather than to its startcmd, so this program is the machine's power: it
# starts QEMU (DIR/qemu-start.sh BOOTARG, which runs qemu -daemonize) and
# stops it through the QEMU monitor (DIR/monitor.sock).
#
# DIR/board says how the firmware treats the boot device the BMC was given:
#   honours  a well-behaved board: a power-on or reset after "set boot pxe"
#            boots the network once (qemu -boot once=n); set while the machine
#            runs, it is applied at once (monitor boot_set n), so the next
#            reset — the OS's own reboot included — boots the network.
#   ignores  an HP DL360 G7: the BMC accepts and records the device, the
#            board boots its disk regardless (a disk without a bootable MBR
#            still falls through to the NIC, as SeaBIOS does).
# Either way a boot consumes the device (it reads back as none afterwards).
#
# Files in DIR: board, boot (the pending device), qemu.pid, chassis.log
# (one line per request and per boot, for the test and the operator).
set -u
dir=$1
shift
op=${1:-}
[ $# -gt 0 ] && shift

exec 9>>"$dir/chassis.lock"
flock 9

log() { printf '%s %s\n' "$(date -u +%H:%M:%S.%N | cut -c1-12)" "$*" >> "$dir/chassis.log"; }
get() { cat "$dir/$1" 2>/dev/null; }
put() { printf '%s\n' "$2" > "$dir/$1.tmp" && mv "$dir/$1.tmp" "$dir/$1"; }

# running: QEMU's process exists and is not a zombie (the pid 1 of some
# containers reaps orphans only now and then).
running() {
	pid=$(get qemu.pid)
	[ -n "$pid" ] || return 1
	state=$(sed -n 's/^[0-9]* (.*) \([A-Z]\) .*/\1/p' "/proc/$pid/stat" 2>/dev/null)
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

monitor() {
	printf '%s\n' "$1" | socat -t 1 - "UNIX-CONNECT:$dir/monitor.sock" >/dev/null 2>&1
}

honoured_pxe() {
	[ "$(get board)" = honours ] && [ "$(get boot)" = pxe ]
}

start_vm() {
	if honoured_pxe; then
		bootarg=once=n,order=cn
		log "boot: network (the board honours the pxe override)"
	else
		bootarg=order=cn
		case $(get boot) in
		none | "") log "boot: disk first (boot order c, n)" ;;
		*) log "boot: disk first (boot order c, n); the board IGNORES the $(get boot) override" ;;
		esac
	fi
	put boot none
	rm -f "$dir/qemu.pid"
	if ! "$dir/qemu-start.sh" "$bootarg" 9>&- >>"$dir/qemu.log" 2>&1; then
		log "power on FAILED (see qemu.log)"
		echo "qemu failed to start"
		exit 1
	fi
	put powerons $(($(get powerons) + 1))
}

stop_vm() {
	running || return 0
	# Through the monitor, or (no monitor) by SIGTERM: QEMU exits at once.
	monitor quit || kill -TERM "$(get qemu.pid)" 2>/dev/null
	i=0
	while running && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if running; then
		kill -9 "$(get qemu.pid)" 2>/dev/null
		sleep 0.2
	fi
}

case $op in
get)
	for p in "$@"; do
		case $p in
		power) if running; then echo power:1; else echo power:0; fi ;;
		boot) echo "boot:$(get boot || echo none)" ;;
		*) echo "unknown parameter $p"; exit 1 ;;
		esac
	done
	;;
set)
	while [ $# -ge 2 ]; do
		p=$1
		v=$2
		shift 2
		case $p in
		power)
			if [ "$v" = 1 ]; then
				if running; then log "power on: already on"; else log "power on"; start_vm; fi
			else
				log "power off"
				stop_vm
			fi
			;;
		shutdown)
			log "soft shutdown (as power off)"
			stop_vm
			;;
		reset)
			if running; then
				log "reset"
				honoured_pxe && log "boot: network (the board honours the pxe override)"
				put boot none
				monitor system_reset
			else
				log "reset: machine is off"
			fi
			;;
		boot)
			case $v in
			none | pxe | default | cdrom | bios) ;;
			*) echo "invalid boot value $v"; exit 1 ;;
			esac
			log "set boot $v (board $(get board))"
			put boot "$v"
			if running && [ "$(get board)" = honours ]; then
				case $v in
				pxe) monitor "boot_set n" ;;
				*) monitor "boot_set c" ;;
				esac
			fi
			;;
		identify)
			# "identify INTERVAL FORCE": two values.
			[ $# -gt 0 ] && shift
			;;
		*) echo "unknown parameter $p"; exit 1 ;;
		esac
	done
	;;
*)
	echo "unknown operation $op"
	exit 1
	;;
esac
exit 0
