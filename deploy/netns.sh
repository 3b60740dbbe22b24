#!/usr/bin/env bash
# deploy/netns.sh: "real hosts on one machine" for multi-host tests.
#
# Builds four Linux network namespaces joined by veth pairs, so a publisher
# and two subscribers each get their own network stack, their own NICs with
# their own addresses and their own per-interface byte counters, while
# sharing one kernel (and one test run). Run with --help for the picture.
#
# Nothing outside the namespaces is touched: no address, route, link or
# sysctl of the root namespace changes, and deleting the namespaces removes
# every veth and the bridge with them.
set -euo pipefail

readonly ME=netns.sh
readonly HOSTS=(pub sub1 sub2 sw)
# Inside 'run', commands that call this script again find the same topology.
PREFIX=${SHARDCAST_NETNS_PREFIX:-sc}

usage() {
	cat <<'EOF'
Usage: deploy/netns.sh [--prefix P] COMMAND [ARGS]
       deploy/netns.sh run [--prefix P] -- CMD [ARGS...]

Builds "hosts on one machine" from Linux network namespaces P-pub, P-sub1,
P-sub2 and P-sw (P defaults to "sc"):

      P-pub                          P-sub1
   a0 10.77.1.1/24 <---- link A ----> a0 10.77.1.2/24
   b0 10.77.2.1/24 <---- link B ----> b0 10.77.2.2/24
   c0 10.77.3.1/24 --+           +--- c0 10.77.3.2/24
                     |   P-sw    |
                     +--[ br0 ]--+
                         |           P-sub2
                         +----------- c0 10.77.3.3/24

  Links A and B: the publisher host and sub1 joined by two point-to-point
  links, two NICs each: stream 0 on one, stream 1 on the other.
  LAN C: a bridge (multicast snooping off, so multicast floods to every port
  without an IGMP querier) joining all three hosts: where one multicast send
  reaches two subscriber hosts. The bridge's ports in P-sw are named after
  the host they lead to (pub, sub1, sub2).
  Every host has lo up and a multicast route 224.0.0.0/4 dev c0; sub2 has
  routes to 10.77.1.0/24 and 10.77.2.0/24 via 10.77.3.1, so it reaches the
  publisher's per-stream addresses over LAN C. IPv6 is off inside the
  namespaces so the counters carry only the traffic under test.

Commands:
  up              build the topology (first removing any leftover one with the
                  same prefix; a half-built one is removed if setup fails)
  down            remove it (idempotent)
  status          namespaces, addresses and per-interface rx/tx byte counters
  counters HOST   "iface rx_bytes tx_bytes" lines for HOST (pub, sub1, sub2,
                  sw), from the interfaces' own kernel counters
  run -- CMD...   up, run CMD (in the root namespace, with
                  SHARDCAST_NETNS_PREFIX set; use "ip netns exec P-pub ..." in
                  it), then down, also on errors, SIGINT and SIGTERM; exits
                  with CMD's status

Options:
  --prefix P      namespace name prefix: a lower-case letter, then up to 9
                  lower-case letters or digits (default $SHARDCAST_NETNS_PREFIX,
                  which 'run' sets for CMD, else sc)
  -h, --help      this text

Needs root (CAP_NET_ADMIN and mounts for "ip netns") and iproute2's ip.

Example:
  sudo deploy/netns.sh run -- bash
  # in that shell:
  ip netns exec sc-pub shardcast-pub --bind tcp://10.77.1.1:5556 ...
EOF
}

die() {
	echo "$ME: error: $*" >&2
	exit 1
}

note() {
	echo "$ME: $*" >&2
}

ns() {
	printf '%s-%s' "$PREFIX" "$1"
}

check_prefix() {
	# Namespace names may be long, but the longest one, P-sub1, is kept within
	# 15 bytes (an interface name's limit) so the same name can label a veth
	# or a log column anywhere without truncation, and so a prefix cannot
	# smuggle a '/' or '..' into /run/netns.
	[[ $PREFIX =~ ^[a-z][a-z0-9]{0,9}$ ]] ||
		die "bad --prefix '$PREFIX': a lower-case letter, then at most 9 lower-case letters or digits"
}

check_env() {
	command -v ip >/dev/null 2>&1 || die "ip not found: install iproute2"
	[[ $EUID -eq 0 ]] || die "must run as root (namespaces, veths and 'ip netns exec' need it): try sudo $0 $*"
	ip netns list >/dev/null 2>&1 || die "'ip netns' does not work here (no network namespace support?)"
}

# True if namespace $1 exists. The list is read whole first: with pipefail,
# 'ip netns list | grep -q' can fail when grep exits before ip has written.
ns_exists() {
	local list name _
	list=$(ip netns list)
	while read -r name _; do
		[[ $name == "$1" ]] && return 0
	done <<<"$list"
	return 1
}

is_host() {
	local h
	for h in "${HOSTS[@]}"; do
		[[ $h == "$1" ]] && return 0
	done
	return 1
}

in_ns() {
	local n
	n=$(ns "$1")
	shift
	ip netns exec "$n" "$@"
}

cmd_down() {
	local h n pids
	for h in "${HOSTS[@]}"; do
		n=$(ns "$h")
		ns_exists "$n" || continue
		# Deleting the name does not stop processes inside; their namespace
		# (and its links) lives on until they exit. Say so rather than kill
		# what we did not start.
		pids=$(ip netns pids "$n" 2>/dev/null | tr '\n' ' ' || true)
		[[ -z $pids ]] || note "warning: processes still in $n (pids $pids); its links go when they exit"
		ip netns del "$n"
	done
}

# Turn IPv6 off in a namespace: otherwise every new link sends router
# solicitations, neighbour discovery and MLD reports, which land in the byte
# counters the tests read. Best effort: a kernel without IPv6 has nothing to
# turn off.
no_ipv6() {
	in_ns "$1" sh -c '
		[ -d /proc/sys/net/ipv6 ] || exit 0
		echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6
		echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6'
}

build() {
	local pub sub1 sub2 sw h
	pub=$(ns pub)
	sub1=$(ns sub1)
	sub2=$(ns sub2)
	sw=$(ns sw)
	for h in "${HOSTS[@]}"; do
		ip netns add "$(ns "$h")"
		no_ipv6 "$h"
		ip -n "$(ns "$h")" link set lo up
	done

	# Each veth is created inside its namespace with its peer placed straight
	# into the other one, so no interface ever appears in the root namespace
	# (where its name could clash with a real NIC or another run's).
	ip -n "$pub" link add a0 type veth peer name a0 netns "$sub1"
	ip -n "$pub" link add b0 type veth peer name b0 netns "$sub1"

	# LAN C. Snooping off: with snooping on and no IGMP querier on the
	# segment, the bridge would stop flooding a group once it has seen
	# reports and then time out, and epgm would work by accident or not at all.
	ip -n "$sw" link add br0 type bridge mcast_snooping 0
	for h in pub sub1 sub2; do
		ip -n "$(ns "$h")" link add c0 type veth peer name "$h" netns "$sw"
		ip -n "$sw" link set "$h" master br0
		ip -n "$sw" link set "$h" up
	done
	ip -n "$sw" link set br0 up

	ip -n "$pub" addr add 10.77.1.1/24 dev a0
	ip -n "$sub1" addr add 10.77.1.2/24 dev a0
	ip -n "$pub" addr add 10.77.2.1/24 dev b0
	ip -n "$sub1" addr add 10.77.2.2/24 dev b0
	ip -n "$pub" addr add 10.77.3.1/24 dev c0
	ip -n "$sub1" addr add 10.77.3.2/24 dev c0
	ip -n "$sub2" addr add 10.77.3.3/24 dev c0
	ip -n "$pub" link set a0 up
	ip -n "$pub" link set b0 up
	ip -n "$sub1" link set a0 up
	ip -n "$sub1" link set b0 up
	for h in pub sub1 sub2; do
		ip -n "$(ns "$h")" link set c0 up
		# Multicast leaves by LAN C whatever the default route would say (the
		# hosts have none).
		ip -n "$(ns "$h")" route add 224.0.0.0/4 dev c0
	done
	# sub2 has no link A or B: it reaches the publisher's per-stream
	# addresses through the publisher's c0. Linux answers for any local
	# address on any interface (the weak host model), so no route is needed
	# on the publisher's side.
	ip -n "$sub2" route add 10.77.1.0/24 via 10.77.3.1 dev c0
	ip -n "$sub2" route add 10.77.2.0/24 via 10.77.3.1 dev c0
}

cmd_up() {
	# A run that was killed leaves its namespaces behind; start clean.
	cmd_down
	# If anything below fails (or we are interrupted), remove what was built
	# so far: a half topology would make the next test's failure misleading.
	trap 'note "setup failed; removing what was built"; cmd_down' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	build
	trap - EXIT INT TERM
	note "topology up: $(ns pub) $(ns sub1) $(ns sub2) $(ns sw)"
}

cmd_counters() {
	(($# == 1)) || die "counters takes one HOST (${HOSTS[*]})"
	is_host "$1" || die "unknown host '$1' (one of: ${HOSTS[*]})"
	ns_exists "$(ns "$1")" || die "no namespace $(ns "$1") (run '$ME up --prefix $PREFIX' first)"
	# /proc/net/dev is the kernel's per-interface counters as seen from the
	# reading process's network namespace; unlike /sys/class/net it does not
	# depend on 'ip netns exec' managing to remount /sys. A long counter can
	# touch the colon after the name ("a0:123456789"), hence the split on ':'.
	in_ns "$1" cat /proc/net/dev | awk 'NR > 2 {
		sub(/:/, " ")
		print $1, $2, $10
	}'
}

cmd_status() {
	local h n
	for h in "${HOSTS[@]}"; do
		n=$(ns "$h")
		if ! ns_exists "$n"; then
			echo "$n: absent"
			continue
		fi
		echo "== $n"
		ip -n "$n" -br addr show
		echo "-- iface rx_bytes tx_bytes"
		cmd_counters "$h"
	done
}

cmd_run() {
	(($# > 0)) || die "run: no command (usage: $ME run [--prefix P] -- CMD...)"
	cmd_up
	local child status=0 sig=""
	# From here on the topology goes away however we leave.
	trap 'cmd_down' EXIT
	export SHARDCAST_NETNS_PREFIX=$PREFIX
	# CMD runs in the background so a SIGTERM sent to this script is handled
	# at once (bash runs traps only between foreground commands) and passed
	# on. '<&0': a background command would otherwise get /dev/null as stdin,
	# and 'run -- bash' should be interactive.
	"$@" <&0 &
	child=$!
	# Background commands ignore SIGINT when job control is off, so both
	# signals are passed on as SIGTERM.
	trap 'sig=INT; kill -TERM "$child" 2>/dev/null || true' INT
	trap 'sig=TERM; kill -TERM "$child" 2>/dev/null || true' TERM
	wait "$child" || status=$?
	# A trapped signal cuts 'wait' short; wait again for CMD's own status.
	while [[ -n $sig ]] && kill -0 "$child" 2>/dev/null; do
		status=0
		wait "$child" || status=$?
	done
	[[ -z $sig ]] || note "got SIG$sig; CMD ended with status $status"
	exit "$status"
}

main() {
	local cmd="" pos=() args=() dashdash=0
	while (($# > 0)); do
		case $1 in
		-h | --help)
			usage
			exit 0
			;;
		--prefix)
			(($# >= 2)) || die "--prefix needs a value"
			PREFIX=$2
			shift 2
			;;
		--prefix=*)
			PREFIX=${1#--prefix=}
			shift
			;;
		--)
			shift
			dashdash=1
			args+=("$@")
			break
			;;
		-*)
			die "unknown option '$1' (see --help)"
			;;
		*)
			if [[ -z $cmd ]]; then
				cmd=$1
			else
				pos+=("$1")
			fi
			shift
			;;
		esac
	done
	[[ -n $cmd ]] || {
		usage >&2
		exit 2
	}
	check_prefix
	case $cmd in
	up | down | status | counters | run) ;;
	*) die "unknown command '$cmd' (see --help)" ;;
	esac
	check_env "$cmd"
	if [[ $cmd == run ]]; then
		# CMD only after '--', so its own options are never taken for ours.
		((dashdash && ${#pos[@]} == 0)) || die "usage: $ME run [--prefix P] -- CMD..."
		cmd_run "${args[@]}"
	fi
	((!dashdash)) || die "'--' is for 'run' only"
	case $cmd in
	counters) cmd_counters "${pos[@]}" ;;
	*)
		((${#pos[@]} == 0)) || die "$cmd takes no arguments"
		"cmd_$cmd"
		;;
	esac
}

main "$@"
