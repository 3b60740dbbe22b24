#!/usr/bin/env bash
# deploy/tune-host.sh: check a host against shardcast's tuning advice
# (deploy/TUNING.md), and with --apply, apply what can be applied at runtime.
#
# Without --apply nothing is written, anywhere.
set -u

usage() {
    cat <<'EOF'
Usage: tune-host.sh [--apply] [--strict] [--nic IFACE]... [--cpus LIST]
                    [--profile low-latency|throughput|FILE] [--buf BYTES]

Checks this host against shardcast's tuning advice (deploy/TUNING.md) and
prints one line per check:

  OK    NAME: current VALUE; recommended VALUE
  WARN  NAME: current VALUE; recommended VALUE (why)
  n/a   NAME: what is missing (no such file on this host: VM, container, driver)

then what needs a reboot (kernel command line) and the sysctl.d lines that
keep the runtime settings across one.

Options:
  --nic IFACE     a NIC carrying shardcast streams (repeat): its NUMA node and
                  the affinity of its IRQs are checked (and set with --apply)
  --cpus LIST     the cores shardcast's threads are pinned to (the union of
                  --cpus/--io-cpus of the publisher, or --shard-cpus/--io-cpus/
                  --worker-cpus of the subscriber): checked to be isolated,
                  kept free of NIC IRQs, and kept out of deep C-states
  --profile P     low-latency or throughput (or a profile file): busy polling
                  is recommended for low-latency only, and socket buffer
                  limits are raised to at least the profile's --rcvbuf/--sndbuf
  --buf BYTES     socket buffer limit to recommend (default 16777216)
  --apply         apply at runtime: sysctls, CPU governor, C-states and IRQ
                  affinity (for --nic, away from --cpus); needs root. Lost at
                  reboot: the sysctl.d lines and the kernel command line
                  printed at the end make it last
  --strict        exit 1 if any check warns
  -h, --help      this text

Exit status: 0 when the checks ran (warnings included, unless --strict) and
everything asked for was applied; 1 with --strict and a warning that is left
(not fixed by --apply), or when an --apply step failed; 2 for a bad command
line.

TUNE_HOST_ROOT=DIR reads and writes /proc, /sys and /etc under DIR instead
(for tests).
EOF
}

ROOT="${TUNE_HOST_ROOT:-}"
APPLY=0
STRICT=0
NICS=()
CPUS=""
PROFILE=""
BUF=16777216
BUF_GIVEN=0

die_usage() {
    echo "tune-host.sh: $*" >&2
    echo "try: tune-host.sh --help" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --apply) APPLY=1 ;;
        --strict) STRICT=1 ;;
        --nic) [ $# -ge 2 ] || die_usage "--nic needs an interface name"; NICS+=("$2"); shift ;;
        --nic=*) NICS+=("${1#--nic=}") ;;
        --cpus) [ $# -ge 2 ] || die_usage "--cpus needs a CPU list"; CPUS="$2"; shift ;;
        --cpus=*) CPUS="${1#--cpus=}" ;;
        --profile) [ $# -ge 2 ] || die_usage "--profile needs a name or file"; PROFILE="$2"; shift ;;
        --profile=*) PROFILE="${1#--profile=}" ;;
        --buf) [ $# -ge 2 ] || die_usage "--buf needs a size in bytes"; BUF="$2"; BUF_GIVEN=1; shift ;;
        --buf=*) BUF="${1#--buf=}"; BUF_GIVEN=1 ;;
        -h | --help) usage; exit 0 ;;
        *) die_usage "unknown argument '$1'" ;;
    esac
    shift
done

case "$BUF" in '' | *[!0-9]*) die_usage "--buf: '$BUF' is not a number of bytes" ;; esac

# ---- CPU lists ---------------------------------------------------------------

# Expand a CPU list (0-3,6) into one CPU per line; fails on bad syntax.
expand_cpus() {
    local list="$1" part lo hi
    [ -n "$list" ] || return 0
    local IFS=,
    for part in $list; do
        case "$part" in
            *[!0-9-]* | '' | -* | *- | *-*-*) return 1 ;;
            *-*) lo="${part%-*}"; hi="${part#*-}" ;;
            *) lo="$part"; hi="$part" ;;
        esac
        [ "$lo" -le "$hi" ] || return 1
        seq "$lo" "$hi"
    done
}

# Compress CPUs (one per line, any order) into a list: 0-3,6.
compress_cpus() {
    sort -n -u | awk 'BEGIN { s = -1 }
        { if (s < 0) { s = $1; e = $1 } else if ($1 == e + 1) { e = $1 }
          else { printf "%s%s", sep, (s == e ? s : s "-" e); sep = ","; s = $1; e = $1 } }
        END { if (s >= 0) printf "%s%s", sep, (s == e ? s : s "-" e); print "" }'
}

# CPUs in list $1 that are not in list $2, as a list.
cpus_minus() {
    local a b
    a=$(expand_cpus "$1") || return 1
    b=$(expand_cpus "$2") || return 1
    comm -23 <(printf '%s\n' $a | sort -u) <(printf '%s\n' $b | sort -u) | compress_cpus
}

# CPUs in both lists, as a list.
cpus_and() {
    local a b
    a=$(expand_cpus "$1") || return 1
    b=$(expand_cpus "$2") || return 1
    comm -12 <(printf '%s\n' $a | sort -u) <(printf '%s\n' $b | sort -u) | compress_cpus
}

if [ -n "$CPUS" ]; then
    expand_cpus "$CPUS" >/dev/null || die_usage "--cpus: '$CPUS' is not a CPU list (such as 2-5,8)"
    CPUS=$(expand_cpus "$CPUS" | compress_cpus)
fi

# ---- profile -----------------------------------------------------------------

PROFILE_NAME=""
if [ -n "$PROFILE" ]; then
    here=$(cd "$(dirname "$0")" && pwd)
    pfile=""
    for cand in "$PROFILE" "$here/profiles/$PROFILE.env" "/etc/shardcast/profiles/$PROFILE.env"; do
        if [ -f "$cand" ]; then pfile="$cand"; break; fi
    done
    case "$PROFILE" in
        low-latency | */low-latency.env) PROFILE_NAME=low-latency ;;
        throughput | */throughput.env) PROFILE_NAME=throughput ;;
        *) PROFILE_NAME=other ;;
    esac
    if [ -z "$pfile" ]; then
        [ "$PROFILE_NAME" != other ] || die_usage "--profile: no profile '$PROFILE' (a name in deploy/profiles or a file)"
    else
        # The largest buffer the profile asks for raises the limit to recommend.
        while IFS='=' read -r key value; do
            case "$key" in
                SHARDCAST_SUB_RCVBUF | SHARDCAST_PUB_SNDBUF)
                    case "$value" in '' | *[!0-9]*) ;; *) [ "$BUF_GIVEN" = 1 ] || [ "$value" -le "$BUF" ] || BUF="$value" ;; esac ;;
            esac
        done < <(grep -E '^[[:space:]]*SHARDCAST_[A-Z0-9_]+=' "$pfile" | tr -d ' \t\r')
    fi
fi

# ---- output ------------------------------------------------------------------

WARNS=0
FIXED=0
FAILED=0
PERSIST=()   # sysctl.d lines
REBOOT=()    # kernel command line advice

ok() { printf 'OK    %s: current %s; recommended %s\n' "$1" "$2" "$3"; }
warn() {
    WARNS=$((WARNS + 1))
    printf 'WARN  %s: current %s; recommended %s (%s)\n' "$1" "$2" "$3" "$4"
}
na() { printf 'n/a   %s: %s\n' "$1" "$2"; }
section() { printf '\n== %s ==\n' "$1"; }
applied() { printf 'SET   %s: %s\n' "$1" "$2"; }
failed() {
    FAILED=$((FAILED + 1))
    printf 'FAIL  %s: %s\n' "$1" "$2"
}

# Write VALUE to FILE (under ROOT); report it.
write_file() {
    local name="$1" file="$2" value="$3"
    if printf '%s\n' "$value" 2>/dev/null >"$ROOT$file"; then
        applied "$name" "$value"
        FIXED=$((FIXED + 1))
    else
        failed "$name" "could not write '$value' to $file"
    fi
}

if [ "$APPLY" = 1 ] && [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
    echo "tune-host.sh: --apply needs root (it writes /proc/sys, /sys and /proc/irq)" >&2
    exit 1
fi

echo "shardcast host tuning: $([ "$APPLY" = 1 ] && echo "checking and applying" || echo "checking (nothing is changed without --apply)")"
echo "host $(cat "$ROOT/proc/sys/kernel/hostname" 2>/dev/null || echo '?'), pinned cores: ${CPUS:-not given (--cpus)}, NICs: ${NICS[*]:-none given (--nic)}, profile: ${PROFILE:-none (--profile)}"

# ---- sysctls -----------------------------------------------------------------

sysctl_path() { printf '/proc/sys/%s' "$(printf '%s' "$1" | tr . /)"; }

# check_min NAME MIN WHY: a sysctl that must be at least MIN.
check_min() {
    local name="$1" min="$2" why="$3" file cur
    file=$(sysctl_path "$name")
    if ! cur=$(cat "$ROOT$file" 2>/dev/null); then
        na "$name" "no $file"
        return
    fi
    PERSIST+=("$name = $( [ "$cur" -ge "$min" ] 2>/dev/null && echo "$cur" || echo "$min")")
    if [ "$cur" -ge "$min" ] 2>/dev/null; then
        ok "$name" "$cur" ">= $min"
    else
        warn "$name" "$cur" ">= $min" "$why"
        [ "$APPLY" = 1 ] && write_file "$name" "$file" "$min"
    fi
}

# check_eq NAME WANT WHY: a sysctl that should be WANT.
check_eq() {
    local name="$1" want="$2" why="$3" file cur
    file=$(sysctl_path "$name")
    if ! cur=$(cat "$ROOT$file" 2>/dev/null); then
        na "$name" "no $file"
        return
    fi
    PERSIST+=("$name = $want")
    if [ "$cur" = "$want" ]; then
        ok "$name" "$cur" "$want"
    else
        warn "$name" "$cur" "$want" "$why"
        [ "$APPLY" = 1 ] && write_file "$name" "$file" "$want"
    fi
}

# check_triple_max NAME MIN WHY: the third field of a "min default max"
# sysctl (tcp_rmem, tcp_wmem) must be at least MIN.
check_triple_max() {
    local name="$1" min="$2" why="$3" file cur a b c
    file=$(sysctl_path "$name")
    if ! cur=$(cat "$ROOT$file" 2>/dev/null); then
        na "$name" "no $file"
        return
    fi
    read -r a b c <<<"$cur"
    cur="$a $b $c"
    if [ "${c:-0}" -ge "$min" ] 2>/dev/null; then
        PERSIST+=("$name = $cur")
        ok "$name" "$cur" "max >= $min"
    else
        PERSIST+=("$name = $a $b $min")
        warn "$name" "$cur" "$a $b $min" "$why"
        [ "$APPLY" = 1 ] && write_file "$name" "$file" "$a $b $min"
    fi
}

section "socket buffers and the network stack"
check_min net.core.rmem_max "$BUF" "the kernel silently caps SO_RCVBUF (--rcvbuf) at this"
check_min net.core.wmem_max "$BUF" "the kernel silently caps SO_SNDBUF (--sndbuf) at this"
check_min net.core.rmem_default 4194304 "the buffer of sockets that set none: UDP, the epgm/pgm transports"
check_triple_max net.ipv4.tcp_rmem "$BUF" "autotuning ceiling of TCP receive buffers when --rcvbuf is 0"
check_triple_max net.ipv4.tcp_wmem "$BUF" "autotuning ceiling of TCP send buffers when --sndbuf is 0"
check_min net.core.netdev_max_backlog 250000 "packets a CPU queues before the stack drops them; a drop costs a TCP retransmission, 200 ms or more"

# Busy polling: judged only for low-latency hosts.
for name in net.core.busy_poll net.core.busy_read; do
    file=$(sysctl_path "$name")
    if ! cur=$(cat "$ROOT$file" 2>/dev/null); then
        na "$name" "no $file"
        continue
    fi
    case "$PROFILE_NAME" in
        low-latency)
            PERSIST+=("$name = 50")
            if [ "$cur" -ge 50 ] 2>/dev/null; then
                ok "$name" "$cur" ">= 50 us (low-latency)"
            else
                warn "$name" "$cur" "50 us" "low-latency: the kernel polls the NIC queue instead of waiting for an interrupt; costs CPU on the pinned I/O cores"
                [ "$APPLY" = 1 ] && write_file "$name" "$file" 50
            fi
            ;;
        *) ok "$name" "$cur" "50 on low-latency hosts (--profile low-latency), 0 otherwise" ;;
    esac
done

check_eq kernel.numa_balancing 0 "automatic NUMA balancing unmaps pages to migrate them: page faults on the hot path"

# ---- CPUs --------------------------------------------------------------------

section "CPUs"
online=$(cat "$ROOT/sys/devices/system/cpu/online" 2>/dev/null || true)
target_cpus="${CPUS:-$online}"

# Frequency governor: all CPUs.
govs=("$ROOT"/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor)
if [ ! -e "${govs[0]}" ]; then
    na "cpu governor" "no /sys/devices/system/cpu/cpu*/cpufreq (no frequency scaling exposed: VM, container, or BIOS-controlled); recommended performance"
else
    not_perf=()
    for g in "${govs[@]}"; do
        cur=$(cat "$g" 2>/dev/null || echo '?')
        [ "$cur" = performance ] || not_perf+=("$g")
    done
    if [ ${#not_perf[@]} -eq 0 ]; then
        ok "cpu governor" "performance on ${#govs[@]} CPUs" "performance"
    else
        ex=$(cat "${not_perf[0]}" 2>/dev/null)
        warn "cpu governor" "${#not_perf[@]} of ${#govs[@]} CPUs not performance (e.g. $ex)" "performance" "a core that clocks down takes tens of microseconds to come back"
        if [ "$APPLY" = 1 ]; then
            n_ok=0
            for g in "${not_perf[@]}"; do
                if printf 'performance\n' 2>/dev/null >"$g"; then n_ok=$((n_ok + 1)); else failed "cpu governor" "could not write ${g#"$ROOT"}"; fi
            done
            applied "cpu governor" "performance on $n_ok CPUs"
            [ "$n_ok" = ${#not_perf[@]} ] && FIXED=$((FIXED + 1))
        fi
    fi
fi

# C-states: idle states with an exit latency above 10 us on the pinned cores
# (all cores without --cpus).
if [ ! -d "$ROOT/sys/devices/system/cpu/cpu0/cpuidle" ]; then
    na "C-states" "no /sys/devices/system/cpu/cpu0/cpuidle (no cpuidle driver: VM or container); recommended: no state deeper than 10 us exit latency on the pinned cores"
elif ! cpulist=$(expand_cpus "$target_cpus") || [ -z "$cpulist" ]; then
    na "C-states" "no CPU list (--cpus, or /sys/devices/system/cpu/online)"
else
    deep=()
    for c in $cpulist; do
        for st in "$ROOT/sys/devices/system/cpu/cpu$c"/cpuidle/state[0-9]*; do
            [ -d "$st" ] || continue
            lat=$(cat "$st/latency" 2>/dev/null || echo 0)
            dis=$(cat "$st/disable" 2>/dev/null || echo 0)
            if [ "$lat" -gt 10 ] 2>/dev/null && [ "$dis" = 0 ]; then
                deep+=("$st")
            fi
        done
    done
    if [ ${#deep[@]} -eq 0 ]; then
        ok "C-states on cores $target_cpus" "none deeper than 10 us enabled" "none deeper than 10 us"
    else
        names=$(for st in "${deep[@]}"; do printf '%s(%sus)\n' "$(cat "$st/name" 2>/dev/null)" "$(cat "$st/latency" 2>/dev/null)"; done | sort -u | tr '\n' ' ')
        warn "C-states on cores $target_cpus" "${#deep[@]} deep states enabled: ${names% }" "disabled" "waking from one costs its exit latency on the first message after a pause; spinning threads never idle, blocking ones do"
        if [ "$APPLY" = 1 ]; then
            n_ok=0
            for st in "${deep[@]}"; do
                if printf '1\n' 2>/dev/null >"$st/disable"; then n_ok=$((n_ok + 1)); else failed "C-states" "could not write ${st#"$ROOT"}/disable"; fi
            done
            applied "C-states" "disabled $n_ok states on cores $target_cpus"
            [ "$n_ok" = ${#deep[@]} ] && FIXED=$((FIXED + 1))
        fi
    fi
fi

# Kernel command line: isolation of the pinned cores (needs a reboot).
cmdline=$(cat "$ROOT/proc/cmdline" 2>/dev/null || true)
cmd_param() { printf '%s\n' "$cmdline" | tr ' ' '\n' | sed -n "s/^$1=//p" | tail -n 1; }
isolated=$(cat "$ROOT/sys/devices/system/cpu/isolated" 2>/dev/null || true)
nohz=$(cat "$ROOT/sys/devices/system/cpu/nohz_full" 2>/dev/null || true)
[ "$nohz" = "(null)" ] && nohz=""
rcu=$(cmd_param rcu_nocbs)
# isolcpus may carry flags: isolcpus=managed_irq,domain,2-5
[ -n "$isolated" ] || isolated=$(cmd_param isolcpus | tr ',' '\n' | grep -E '^[0-9]' | paste -sd, -)
for pair in "isolcpus:$isolated:the scheduler puts no other task there" \
    "nohz_full:$nohz:no scheduler tick while one thread runs" \
    "rcu_nocbs:$rcu:RCU callbacks run elsewhere"; do
    name="${pair%%:*}"
    rest="${pair#*:}"
    cur="${rest%%:*}"
    why="${rest#*:}"
    if [ -z "$cmdline" ] && [ ! -e "$ROOT/sys/devices/system/cpu/isolated" ]; then
        na "$name" "no /proc/cmdline or /sys/devices/system/cpu/isolated; recommended: the pinned cores"
    elif [ -z "$CPUS" ]; then
        ok "$name" "${cur:-none}" "the pinned cores (give --cpus to check)"
    else
        missing=$(cpus_minus "$CPUS" "${cur:-}")
        if [ -z "$missing" ]; then
            ok "$name" "$cur" "includes $CPUS"
        else
            warn "$name" "${cur:-none}" "includes $CPUS" "$why; not covered: $missing; needs a reboot"
            REBOOT+=("$name")
        fi
    fi
done

# Transparent huge pages.
for knob in enabled defrag; do
    f="/sys/kernel/mm/transparent_hugepage/$knob"
    if ! raw=$(cat "$ROOT$f" 2>/dev/null); then
        na "THP $knob" "no $f"
        continue
    fi
    cur=$(printf '%s' "$raw" | sed -n 's/.*\[\(.*\)\].*/\1/p')
    if [ "$cur" = always ]; then
        warn "THP $knob" "$cur" "madvise" "khugepaged and direct compaction stall the threads that fault pages in"
        [ "$APPLY" = 1 ] && write_file "THP $knob" "$f" madvise
    else
        ok "THP $knob" "${cur:-$raw}" "madvise or never"
    fi
done

# ---- IRQs and NICs -----------------------------------------------------------

section "NICs and IRQs"

# Processes are found in /proc (none there: a foreign or missing /proc).
have_procs=0
for c in "$ROOT"/proc/[0-9]*/comm; do [ -r "$c" ] && have_procs=1 && break; done

# irqbalance rewrites IRQ affinity every 10 s.
irqb=0
for c in "$ROOT"/proc/[0-9]*/comm; do
    [ -r "$c" ] && [ "$(cat "$c" 2>/dev/null)" = irqbalance ] && irqb=1 && break
done
banned=""
for f in /etc/default/irqbalance /etc/sysconfig/irqbalance; do
    [ -r "$ROOT$f" ] && banned=$(sed -n 's/^[[:space:]]*IRQBALANCE_BANNED_CPULIST=["]*\([0-9,-]*\)["]*.*/\1/p' "$ROOT$f" | tail -n 1)
    [ -n "$banned" ] && break
done
if [ "$have_procs" = 0 ]; then
    na "irqbalance" "no processes in /proc; recommended: not running, or banned from the pinned cores"
elif [ "$irqb" = 0 ]; then
    ok "irqbalance" "not running" "not running, or banned from the pinned cores"
elif [ -z "$CPUS" ]; then
    ok "irqbalance" "running" "banned from the pinned cores (give --cpus to check)"
elif [ -z "$(cpus_minus "$CPUS" "$banned")" ]; then
    ok "irqbalance" "running, banned from $banned" "banned from $CPUS"
else
    warn "irqbalance" "running${banned:+, banned from $banned}" "IRQBALANCE_BANNED_CPULIST=$CPUS in /etc/default/irqbalance, or stopped" "it moves NIC IRQs onto the pinned cores and undoes the IRQ affinity set here"
fi

if [ ${#NICS[@]} -eq 0 ]; then
    na "NIC" "no --nic given: NUMA node and IRQ affinity not checked"
fi
for nic in "${NICS[@]}"; do
    dev="/sys/class/net/$nic"
    if [ ! -e "$ROOT$dev" ]; then
        na "$nic" "no $dev (no such interface on this host)"
        continue
    fi
    node=$(cat "$ROOT$dev/device/numa_node" 2>/dev/null || echo "")
    near="$online"
    if [ -z "$node" ]; then
        na "$nic NUMA node" "no $dev/device/numa_node (virtual interface)"
    elif [ "$node" -lt 0 ] 2>/dev/null; then
        ok "$nic NUMA node" "none (single node)" "pinned cores on the NIC's node"
    else
        near=$(cat "$ROOT/sys/devices/system/node/node$node/cpulist" 2>/dev/null || echo "$online")
        if [ -z "$CPUS" ]; then
            ok "$nic NUMA node" "$node (cores $near)" "pin the threads of this NIC's streams to cores $near"
        else
            far=$(cpus_minus "$CPUS" "$near")
            if [ -z "$far" ]; then
                ok "$nic NUMA node" "$node (cores $near)" "pinned cores $CPUS on node $node"
            else
                warn "$nic NUMA node" "$node (cores $near)" "pinned cores on node $node" "cores $far are on another node: every packet crosses the interconnect; pin this NIC's streams near it (CPUAffinity= and the CPU lists)"
            fi
        fi
    fi
    # The NIC's IRQs: MSI/MSI-X vectors, else /proc/interrupts lines naming it.
    irqs=$(ls "$ROOT$dev/device/msi_irqs" 2>/dev/null | sort -n | tr '\n' ' ')
    if [ -z "$irqs" ]; then
        irqs=$(awk -v n="$nic" 'index($0, n) { sub(":", "", $1); print $1 }' "$ROOT/proc/interrupts" 2>/dev/null | tr '\n' ' ')
    fi
    if [ -z "${irqs// /}" ]; then
        na "$nic IRQs" "none found in $dev/device/msi_irqs or /proc/interrupts"
        continue
    fi
    want="$near"
    [ -n "$CPUS" ] && want=$(cpus_minus "$near" "$CPUS")
    if [ -z "$want" ]; then
        warn "$nic IRQs" "-" "cores near the NIC that are not pinned" "every core of node ${node:-?} is in --cpus: leave one or two for IRQs"
        continue
    fi
    total=0
    bad=()
    example=""
    for irq in $irqs; do
        f="/proc/irq/$irq/smp_affinity_list"
        cur=$(cat "$ROOT$f" 2>/dev/null) || continue
        total=$((total + 1))
        if [ -n "$CPUS" ] && [ -n "$(cpus_and "$cur" "$CPUS")" ]; then
            bad+=("$irq")
            [ -n "$example" ] || example="IRQ $irq -> $cur"
        fi
    done
    if [ "$total" = 0 ]; then
        na "$nic IRQs" "no /proc/irq/N/smp_affinity_list for IRQs $irqs"
    elif [ -z "$CPUS" ]; then
        ok "$nic IRQs" "$total IRQs" "on cores near the NIC, away from the pinned ones: $want (give --cpus to check)"
    elif [ ${#bad[@]} -eq 0 ]; then
        ok "$nic IRQs" "$total IRQs, none on $CPUS" "$want"
    else
        warn "$nic IRQs" "${#bad[@]} of $total IRQs may run on pinned cores ($example)" "$want" "an interrupt on a pinned core preempts the thread that spins or waits there"
        if [ "$APPLY" = 1 ]; then
            n_ok=0
            for irq in "${bad[@]}"; do
                if printf '%s\n' "$want" 2>/dev/null >"$ROOT/proc/irq/$irq/smp_affinity_list"; then
                    n_ok=$((n_ok + 1))
                else
                    printf 'n/a   %s IRQ %s: affinity not writable (kernel-managed IRQ: use isolcpus=managed_irq,...)\n' "$nic" "$irq"
                fi
            done
            applied "$nic IRQs" "$n_ok IRQs -> $want"
            [ "$n_ok" = ${#bad[@]} ] && FIXED=$((FIXED + 1))
        fi
    fi
done

# ---- clocks ------------------------------------------------------------------

section "clock"
sync=""
for c in "$ROOT"/proc/[0-9]*/comm; do
    [ -r "$c" ] || continue
    case "$(cat "$c" 2>/dev/null)" in
        ptp4l | phc2sys | chronyd | ntpd | systemd-timesyn) sync="$sync $(cat "$c")" ;;
    esac
done
sync=$(printf '%s\n' $sync | sort -u | tr '\n' ' ')
if [ "$have_procs" = 0 ]; then
    na "clock sync" "no processes in /proc; recommended PTP (ptp4l + phc2sys), or chrony"
elif [ -n "${sync// /}" ]; then
    ok "clock sync" "${sync% }" "PTP (ptp4l + phc2sys) for --snail-mode absolute across hosts"
else
    warn "clock sync" "no ptp4l, phc2sys, chronyd, ntpd or timesyncd running" "PTP (ptp4l + phc2sys), or chrony" "--snail-mode absolute judges lag across hosts by their clocks; without sync use --snail-mode relative"
fi

# ---- what is left ------------------------------------------------------------

section "needs a reboot"
if [ -n "$CPUS" ] && [ ${#REBOOT[@]} -eq 0 ] && [ -z "$cmdline" ]; then
    echo "unknown (no /proc/cmdline); to isolate $CPUS: isolcpus=managed_irq,domain,$CPUS nohz_full=$CPUS rcu_nocbs=$CPUS"
elif [ -n "$CPUS" ]; then
    housekeeping=$(cpus_minus "$online" "$CPUS")
    if [ ${#REBOOT[@]} -eq 0 ]; then
        echo "nothing: the kernel command line already isolates $CPUS"
    else
        echo "kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub and reboot):"
        echo "  isolcpus=managed_irq,domain,$CPUS nohz_full=$CPUS rcu_nocbs=$CPUS${housekeeping:+ irqaffinity=$housekeeping}"
    fi
else
    echo "give --cpus LIST (the cores shardcast is pinned to) for the kernel command line that isolates them"
fi

section "to keep the sysctls across reboots"
if [ ${#PERSIST[@]} -eq 0 ]; then
    echo "none read (no /proc/sys)"
else
    echo "/etc/sysctl.d/60-shardcast.conf (then: sysctl --system):"
    for l in "${PERSIST[@]}"; do echo "  $l"; done
fi

echo
if [ "$APPLY" = 1 ]; then
    echo "summary: $WARNS warning(s), $FIXED fixed at runtime, $FAILED failed step(s)"
else
    echo "summary: $WARNS warning(s)"
fi
if [ "$FAILED" -gt 0 ]; then exit 1; fi
if [ "$STRICT" = 1 ] && [ $((WARNS - FIXED)) -gt 0 ]; then exit 1; fi
exit 0
