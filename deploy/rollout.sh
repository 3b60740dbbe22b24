#!/usr/bin/env bash
# deploy/rollout.sh: deploy shardcast to the hosts of a topology file
# (format: deploy/topology.example). Needs bash 4.4 or newer, ssh, scp, tar
# on this machine; sh, install, systemd and sudo (or a root login) on the hosts.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: rollout.sh TOPOLOGY [--dry-run] [--out DIR] [--bin-dir DIR]
                  [--sudo CMD] [--settle SECONDS] [--install-only]

Reads TOPOLOGY (format: deploy/topology.example), checks it, generates each
host's files, and deploys them over ssh:

  1. check the topology: roles, names, profiles, keys that belong to the role,
     every *_CPUS list inside the instance's CPU affinity; with the binaries in
     --bin-dir, also that every key is a flag twin and that each instance's
     environment (profile + instance file) is accepted (--print-config)
  2. generate, per host, under DIR/HOST/ the tree that lands on it:
       etc/shardcast/INSTANCE.ROLE.env        the instance file
       etc/shardcast/INSTANCE.ROLE.profile    symlink to profiles/PROFILE.env
       etc/shardcast/profiles/*.env           the profiles
       etc/systemd/system/shardcast-{pub,sub}@.service
       etc/systemd/system/shardcast-ROLE@INSTANCE.service.d/10-cpu.conf
                                              CPUAffinity= (and TimeoutStopSec=)
       usr/local/sbin/shardcast-tune-host     deploy/tune-host.sh
       usr/local/share/doc/shardcast/         README.md, TUNING.md
       install.sh                             run as root on the host
  3. copy each tree and the binaries it needs to HOST:/var/tmp/shardcast-rollout,
     run install.sh (user shardcast, files in place, daemon-reload, enable),
     and run tune-host.sh in check mode where the topology has a tune line
  4. stop the publishers (they send end-of-stream; subscribers end with
     complete reports), restart the subscribers, start the publishers (with
     --wait-subscribers the publisher then starts sending at once and no
     subscriber misses the first messages)
  5. after --settle seconds, check every unit is active; print the journal of
     any that is not, and exit 1

Options:
  --dry-run        do steps 1 and 2, print every command of 3-5, run none
  --out DIR        where to generate the trees (default: a new temporary dir)
  --bin-dir DIR    where shardcast-pub and shardcast-sub are (default:
                   target/release of this checkout)
  --sudo CMD       how to become root on the hosts (default: sudo; '' when
                   ssh logs in as root)
  --settle S       seconds to wait before checking the units (default 3)
  --install-only   steps 1-3 only: nothing is stopped or started
  -h, --help       this text

Environment: SSH (default "ssh -o BatchMode=yes"), SCP (default
"scp -q -o BatchMode=yes").

Exit status: 0 done; 1 a host step failed or a unit is not active; 2 a bad
command line or topology (nothing was touched).
EOF
}

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
TOPOLOGY=""
DRY=0
OUT=""
BIN_DIR="$REPO/target/release"
SUDO=sudo
SETTLE=3
INSTALL_ONLY=0
SSH=${SSH:-ssh -o BatchMode=yes}
SCP=${SCP:-scp -q -o BatchMode=yes}
RDIR=/var/tmp/shardcast-rollout

die_usage() {
    echo "rollout.sh: $*" >&2
    echo "try: rollout.sh --help" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --out) [ $# -ge 2 ] || die_usage "--out needs a directory"; OUT="$2"; shift ;;
        --out=*) OUT="${1#--out=}" ;;
        --bin-dir) [ $# -ge 2 ] || die_usage "--bin-dir needs a directory"; BIN_DIR="$2"; shift ;;
        --bin-dir=*) BIN_DIR="${1#--bin-dir=}" ;;
        --sudo) [ $# -ge 2 ] || die_usage "--sudo needs a command ('' for none)"; SUDO="$2"; shift ;;
        --sudo=*) SUDO="${1#--sudo=}" ;;
        --settle) [ $# -ge 2 ] || die_usage "--settle needs seconds"; SETTLE="$2"; shift ;;
        --settle=*) SETTLE="${1#--settle=}" ;;
        --install-only) INSTALL_ONLY=1 ;;
        -h | --help) usage; exit 0 ;;
        -*) die_usage "unknown option '$1'" ;;
        *) [ -z "$TOPOLOGY" ] || die_usage "one topology file, not '$TOPOLOGY' and '$1'"; TOPOLOGY="$1" ;;
    esac
    shift
done
[ -n "$TOPOLOGY" ] || die_usage "no topology file (see deploy/topology.example)"
[ -r "$TOPOLOGY" ] || die_usage "cannot read topology '$TOPOLOGY'"
[ ! -d "$BIN_DIR" ] || BIN_DIR=$(cd "$BIN_DIR" && pwd)
case "$SETTLE" in '' | *[!0-9]*) die_usage "--settle: '$SETTLE' is not a whole number of seconds" ;; esac

# ---- CPU lists ---------------------------------------------------------------

# One CPU per line from a list such as 0-3,6; fails on bad syntax.
expand_cpus() {
    local list="$1" part lo hi
    [ -n "$list" ] || return 1
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

# ---- read and check the topology --------------------------------------------

I_HOST=() I_ROLE=() I_INST=() I_PROF=() I_AFF=() I_ENV=() I_LINE=() I_KEYLINE=()
T_HOST=() T_ARGS=()
ERRORS=()
err() { ERRORS+=("$TOPOLOGY:$1: $2"); }

lineno=0
cur=-1
while IFS= read -r raw || [ -n "$raw" ]; do
    lineno=$((lineno + 1))
    line="${raw%$'\r'}"
    trimmed="${line#"${line%%[![:space:]]*}"}"
    trimmed="${trimmed%"${trimmed##*[![:space:]]}"}"
    [ -z "$trimmed" ] && continue
    case "$trimmed" in \#*) continue ;; esac
    if [[ "$line" =~ ^[[:space:]] ]]; then
        # An indented setting of the instance above.
        if [ "$cur" -lt 0 ]; then
            err "$lineno" "a setting before any instance line"
            continue
        fi
        key="${trimmed%%=*}"
        value="${trimmed#*=}"
        role="${I_ROLE[$cur]}"
        prefix="SHARDCAST_$(printf '%s' "$role" | tr a-z A-Z)_"
        if [ "$key" = "$trimmed" ] || ! [[ "$key" =~ ^SHARDCAST_(PUB|SUB)_[A-Z0-9_]+$ ]]; then
            err "$lineno" "'$trimmed' is not KEY=VALUE with KEY a flag twin (SHARDCAST_PUB_* or SHARDCAST_SUB_*)"
        elif [ "${key#"$prefix"}" = "$key" ]; then
            err "$lineno" "$key is not for a $role instance (its keys start with $prefix)"
        elif [ -z "$value" ] || [[ "$value" =~ [[:space:]\"\'\\\$\`] ]]; then
            err "$lineno" "$key: the value must be non-empty, without spaces, quotes, \\, \$ or \` (lists: comma-separated)"
        else
            if grep -q "^$key=" <<<"${I_ENV[$cur]}"; then
                err "$lineno" "$key is set twice for ${I_INST[$cur]}"
            fi
            I_ENV[$cur]+="$key=$value"$'\n'
            I_KEYLINE[$cur]+="$key $lineno"$'\n'
        fi
        continue
    fi
    read -r -a f <<<"$trimmed"
    if [ "${f[0]}" = tune ]; then
        if [ ${#f[@]} -lt 2 ]; then
            err "$lineno" "tune needs a host"
        else
            T_HOST+=("${f[1]}")
            T_ARGS+=("${f[*]:2}")
        fi
        cur=-1
        continue
    fi
    if [ ${#f[@]} -ne 5 ]; then
        err "$lineno" "an instance line has five fields (HOST ROLE INSTANCE PROFILE CPUAFFINITY), not ${#f[@]}: '$trimmed'"
        cur=-1
        continue
    fi
    host="${f[0]}" role="${f[1]}" inst="${f[2]}" prof="${f[3]}" aff="${f[4]}"
    [[ "$host" =~ ^[A-Za-z0-9_.@:-]+$ ]] || err "$lineno" "host '$host': letters, digits, . _ - @ : only"
    case "$role" in pub | sub) ;; *) err "$lineno" "role '$role': pub or sub" ;; esac
    [[ "$inst" =~ ^[A-Za-z0-9_.-]+$ ]] || err "$lineno" "instance '$inst': letters, digits, . _ - only"
    [[ "$prof" =~ ^[A-Za-z0-9_.-]+$ ]] && [ -f "$HERE/profiles/$prof.env" ] ||
        err "$lineno" "profile '$prof': no deploy/profiles/$prof.env (have: $(cd "$HERE/profiles" && ls *.env | sed 's/\.env$//' | paste -sd' ' -))"
    expand_cpus "$aff" >/dev/null || err "$lineno" "CPU affinity '$aff' is not a CPU list (such as 1-5 or 1,6-9)"
    for i in "${!I_HOST[@]}"; do
        if [ "${I_HOST[$i]}" = "$host" ] && [ "${I_ROLE[$i]}" = "$role" ] && [ "${I_INST[$i]}" = "$inst" ]; then
            err "$lineno" "$role instance '$inst' on $host is already defined on line ${I_LINE[$i]}"
        fi
    done
    I_HOST+=("$host") I_ROLE+=("$role") I_INST+=("$inst") I_PROF+=("$prof") I_AFF+=("$aff") I_ENV+=("") I_LINE+=("$lineno") I_KEYLINE+=("")
    cur=$((${#I_HOST[@]} - 1))
done <"$TOPOLOGY"

[ ${#I_HOST[@]} -gt 0 ] || err "$lineno" "no instances"

# Per instance: required keys, CPU lists inside the affinity.
for i in "${!I_HOST[@]}"; do
    role="${I_ROLE[$i]}"
    case "$role" in
        pub) need=SHARDCAST_PUB_BIND ;;
        sub) need=SHARDCAST_SUB_CONNECT ;;
        *) continue ;;
    esac
    grep -q "^$need=" <<<"${I_ENV[$i]}" ||
        err "${I_LINE[$i]}" "$role instance '${I_INST[$i]}' on ${I_HOST[$i]} has no $need"
    aff=$(expand_cpus "${I_AFF[$i]}" 2>/dev/null) || continue
    while IFS='=' read -r key value; do
        case "$key" in *_CPUS) ;; *) continue ;; esac
        kl=$(awk -v k="$key" '$1 == k { print $2 }' <<<"${I_KEYLINE[$i]}")
        if ! cpus=$(expand_cpus "$value"); then
            err "$kl" "$key=$value is not a CPU list"
            continue
        fi
        outside=$(comm -23 <(printf '%s\n' $cpus | sort -u) <(printf '%s\n' $aff | sort -u) | paste -sd, -)
        [ -z "$outside" ] || err "$kl" "$key=$value: CPUs $outside are outside the instance's CPU affinity ${I_AFF[$i]} (the binary would exit 2)"
    done < <(printf '%s' "${I_ENV[$i]}")
done

if [ ${#ERRORS[@]} -gt 0 ]; then
    printf '%s\n' "${ERRORS[@]}" >&2
    echo "rollout.sh: ${#ERRORS[@]} error(s) in the topology; nothing was done" >&2
    exit 2
fi

# ---- pre-flight with the binaries -------------------------------------------

have_bins=1
for b in shardcast-pub shardcast-sub; do [ -x "$BIN_DIR/$b" ] || have_bins=0; done
if [ "$have_bins" = 0 ] && [ "$DRY" = 0 ]; then
    die_usage "no shardcast-pub and shardcast-sub in $BIN_DIR (cargo build --release --bins, or --bin-dir)"
fi

# The CPUs this machine lets us use, for the stand-in CPU lists below.
mapfile -t LOCAL_CPUS < <(expand_cpus "$(awk '/^Cpus_allowed_list/ { print $2 }' /proc/self/status 2>/dev/null || true)" 2>/dev/null || echo 0)
[ ${#LOCAL_CPUS[@]} -gt 0 ] || LOCAL_CPUS=(0)

# KEY=VALUE lines of a profile file.
profile_env() { grep -E '^[[:space:]]*SHARDCAST_[A-Z0-9_]+=' "$HERE/profiles/$1.env" | sed 's/^[[:space:]]*//' || true; }

if [ "$have_bins" = 1 ]; then
    echo "== pre-flight: every key a flag twin, every instance accepted by its binary (--print-config) =="
    declare -A TWINS=()
    for b in pub sub; do
        for t in $("$BIN_DIR/shardcast-$b" --help 2>/dev/null | grep -o '\[env: SHARDCAST_[A-Z0-9_]*' | sed 's/^\[env: //'); do
            TWINS[$t]=1
        done
    done
    for i in "${!I_HOST[@]}"; do
        role="${I_ROLE[$i]}"
        name="${I_HOST[$i]} $role ${I_INST[$i]}"
        prefix="SHARDCAST_$(printf '%s' "$role" | tr a-z A-Z)_"
        envs=()
        while IFS='=' read -r key value; do
            [ -n "$key" ] || continue
            [ -n "${TWINS[$key]:-}" ] || err "${I_LINE[$i]}" "$key (profile ${I_PROF[$i]} or instance) is not a flag twin (see shardcast-pub --help, shardcast-sub --help)"
            [ "${key#"$prefix"}" != "$key" ] || continue
            # CPU lists name the target host's CPUs, checked against the
            # affinity above; here they are replaced by as many of ours.
            case "$key" in
                *_CPUS)
                    n=$(expand_cpus "$value" | wc -l)
                    stand_in=""
                    for ((k = 0; k < n; k++)); do stand_in+="${stand_in:+,}${LOCAL_CPUS[$((k % ${#LOCAL_CPUS[@]}))]}"; done
                    value="$stand_in"
                    ;;
            esac
            envs+=("$key=$value")
        done < <(profile_env "${I_PROF[$i]}"; printf '%s' "${I_ENV[$i]}")
        if out=$(env -i PATH="$PATH" "${envs[@]}" "$BIN_DIR/shardcast-$role" --print-config 2>&1 >/dev/null); then
            echo "ok    $name (profile ${I_PROF[$i]})"
        else
            err "${I_LINE[$i]}" "$name: shardcast-$role refuses its environment: $(printf '%s\n' "$out" | grep -m1 'error' || printf '%s\n' "$out" | tail -n 1)"
        fi
    done
    if [ ${#ERRORS[@]} -gt 0 ]; then
        printf '%s\n' "${ERRORS[@]}" >&2
        echo "rollout.sh: ${#ERRORS[@]} error(s) in the pre-flight; nothing was done" >&2
        exit 2
    fi
else
    echo "== pre-flight skipped: no binaries in $BIN_DIR (flag twins and values not checked) =="
fi

# ---- generate ----------------------------------------------------------------

if [ -z "$OUT" ]; then
    OUT=$(mktemp -d "${TMPDIR:-/tmp}/shardcast-rollout.XXXXXX")
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

HOSTS=()
for h in "${I_HOST[@]}" "${T_HOST[@]}"; do
    case " ${HOSTS[*]} " in *" $h "*) ;; *) HOSTS+=("$h") ;; esac
done

# The value of KEY for instance i: the instance file's, else the profile's.
setting() {
    local i="$1" key="$2" v
    v=$(printf '%s' "${I_ENV[$i]}" | sed -n "s/^$key=//p" | tail -n 1)
    [ -n "$v" ] || v=$(profile_env "${I_PROF[$i]}" | sed -n "s/^$key=//p" | tail -n 1)
    printf '%s' "$v"
}

echo "== generating $OUT =="
for h in "${HOSTS[@]}"; do
    d="$OUT/$h"
    rm -rf "$d"
    mkdir -p "$d/etc/shardcast/profiles" "$d/etc/systemd/system" "$d/usr/local/bin" \
        "$d/usr/local/sbin" "$d/usr/local/share/doc/shardcast"
    cp "$HERE"/profiles/*.env "$d/etc/shardcast/profiles/"
    cp "$HERE"/systemd/shardcast-pub@.service "$HERE"/systemd/shardcast-sub@.service "$d/etc/systemd/system/"
    cp "$HERE/tune-host.sh" "$d/usr/local/sbin/shardcast-tune-host"
    chmod 0755 "$d/usr/local/sbin/shardcast-tune-host"
    cp "$HERE/README.md" "$HERE/TUNING.md" "$d/usr/local/share/doc/shardcast/"
    roles=""
    {
        echo "#!/bin/sh"
        echo "# Generated by deploy/rollout.sh from $(basename "$TOPOLOGY"): installs shardcast on $h."
        echo "# Run as root from the directory it was copied to."
        echo "set -eu"
        echo 'cd "$(dirname "$0")"'
        echo "getent passwd shardcast >/dev/null || useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin shardcast"
        echo "install -d -m 0755 /etc/shardcast /etc/shardcast/profiles /usr/local/share/doc/shardcast"
        echo 'for b in usr/local/bin/shardcast-*; do if [ -f "$b" ]; then install -m 0755 "$b" "/$b"; fi; done'
        echo "install -m 0644 etc/systemd/system/shardcast-pub@.service etc/systemd/system/shardcast-sub@.service /etc/systemd/system/"
        echo "install -m 0644 etc/shardcast/profiles/*.env /etc/shardcast/profiles/"
        echo "install -m 0755 usr/local/sbin/shardcast-tune-host /usr/local/sbin/shardcast-tune-host"
        echo "install -m 0644 usr/local/share/doc/shardcast/*.md /usr/local/share/doc/shardcast/"
    } >"$d/install.sh"
    enables=()
    for i in "${!I_HOST[@]}"; do
        [ "${I_HOST[$i]}" = "$h" ] || continue
        role="${I_ROLE[$i]}" inst="${I_INST[$i]}" prof="${I_PROF[$i]}"
        unit="shardcast-$role@$inst.service"
        case " $roles " in *" $role "*) ;; *) roles+=" $role" ;; esac
        {
            echo "# Generated by deploy/rollout.sh from $(basename "$TOPOLOGY") line ${I_LINE[$i]}:"
            echo "# $h $role $inst, profile $prof (/etc/shardcast/$inst.$role.profile), CPUAffinity ${I_AFF[$i]}."
            echo "# Read after the profile; a key here overrides the profile's."
            printf '%s' "${I_ENV[$i]}"
        } >"$d/etc/shardcast/$inst.$role.env"
        ln -sfn "profiles/$prof.env" "$d/etc/shardcast/$inst.$role.profile"
        mkdir -p "$d/etc/systemd/system/$unit.d"
        # The stop must outlast the end phase: --eos-timeout-ms (publisher) or
        # --drain-timeout-ms (subscriber), then the reports.
        case "$role" in pub) tkey=SHARDCAST_PUB_EOS_TIMEOUT_MS ;; sub) tkey=SHARDCAST_SUB_DRAIN_TIMEOUT_MS ;; esac
        tms=$(setting "$i" "$tkey")
        {
            echo "# Generated by deploy/rollout.sh from $(basename "$TOPOLOGY") line ${I_LINE[$i]}."
            echo "# Every CPU in the instance's CPU lists, plus a housekeeping core."
            echo "[Service]"
            echo "CPUAffinity="
            echo "CPUAffinity=${I_AFF[$i]}"
            if [ -n "$tms" ] && [ "$tms" -gt 5000 ] 2>/dev/null; then
                echo "# $tkey=$tms: the end phase plus 25 s for the reports."
                echo "TimeoutStopSec=$(((tms + 999) / 1000 + 25))s"
            fi
        } >"$d/etc/systemd/system/$unit.d/10-cpu.conf"
        {
            echo "install -m 0600 etc/shardcast/$inst.$role.env /etc/shardcast/$inst.$role.env"
            echo "ln -sfn profiles/$prof.env /etc/shardcast/$inst.$role.profile"
            echo "install -d -m 0755 /etc/systemd/system/$unit.d"
            echo "install -m 0644 etc/systemd/system/$unit.d/10-cpu.conf /etc/systemd/system/$unit.d/10-cpu.conf"
        } >>"$d/install.sh"
        enables+=("$unit")
    done
    {
        echo "systemctl daemon-reload"
        [ ${#enables[@]} -eq 0 ] || echo "systemctl enable ${enables[*]}"
    } >>"$d/install.sh"
    chmod 0755 "$d/install.sh"
    echo "$h:${roles:- (tune only)} -> $d"
done

# ---- deploy ------------------------------------------------------------------

# Quote for the shell, readably: as is when safe, else in single quotes.
q() {
    if [[ "$1" =~ ^[A-Za-z0-9_./:@=,+-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}
FAILED=0
# Run a shell command line (print it; run it unless --dry-run).
run() {
    echo "+ $1"
    [ "$DRY" = 1 ] && return 0
    # stdin from /dev/null: ssh would otherwise eat the caller's loop input.
    if ! bash -c "$1" </dev/null; then
        echo "rollout.sh: failed: $1" >&2
        FAILED=$((FAILED + 1))
        return 1
    fi
}
remote() { run "$SSH $(q "$1") $(q "$2")"; }
as_root() { printf '%s' "${SUDO:+$SUDO }$1"; }

echo
echo "== install on every host =="
for h in "${HOSTS[@]}"; do
    remote "$h" "rm -rf $RDIR && mkdir -p $RDIR" || continue
    run "tar -C $(q "$OUT/$h") -cf - . | $SSH $(q "$h") $(q "tar -C $RDIR -xf -")" || continue
    bins=()
    for i in "${!I_HOST[@]}"; do
        [ "${I_HOST[$i]}" = "$h" ] || continue
        b="$BIN_DIR/shardcast-${I_ROLE[$i]}"
        case " ${bins[*]:-} " in *" $(q "$b") "*) ;; *) bins+=("$(q "$b")") ;; esac
    done
    if [ ${#bins[@]} -gt 0 ]; then
        run "$SCP ${bins[*]} $(q "$h"):$RDIR/usr/local/bin/" || continue
    fi
    remote "$h" "$(as_root "sh $RDIR/install.sh")" || continue
done
for t in "${!T_HOST[@]}"; do
    # Check mode only: the output is for the operator; warnings do not stop us.
    run "$SSH $(q "${T_HOST[$t]}") $(q "/usr/local/sbin/shardcast-tune-host ${T_ARGS[$t]}") || true"
done

if [ "$INSTALL_ONLY" = 1 ]; then
    echo
    echo "installed; nothing started (--install-only)"
    [ "$FAILED" = 0 ] || exit 1
    exit 0
fi

units_of() { # role: "host unit" lines
    for i in "${!I_HOST[@]}"; do
        [ "${I_ROLE[$i]}" = "$1" ] && echo "${I_HOST[$i]} shardcast-$1@${I_INST[$i]}.service"
    done
    return 0
}

echo
echo "== stop the publishers (end-of-stream: subscribers finish their reports) =="
while read -r h unit; do
    remote "$h" "$(as_root "systemctl stop $unit")" || true
done < <(units_of pub)

echo
echo "== start the subscribers first (they wait for their publishers) =="
while read -r h unit; do
    remote "$h" "$(as_root "systemctl reset-failed $unit") 2>/dev/null; $(as_root "systemctl restart $unit")" || true
done < <(units_of sub)

echo
echo "== then the publishers (--wait-subscribers finds their subscribers there) =="
while read -r h unit; do
    remote "$h" "$(as_root "systemctl reset-failed $unit") 2>/dev/null; $(as_root "systemctl restart $unit")" || true
done < <(units_of pub)

echo
echo "== check: every unit active after ${SETTLE} s =="
[ "$DRY" = 1 ] || sleep "$SETTLE"
while read -r h unit; do
    if ! remote "$h" "systemctl is-active --quiet $unit"; then
        [ "$DRY" = 1 ] || run "$SSH $(q "$h") $(q "systemctl status --no-pager $unit; journalctl --no-pager -n 30 -u $unit")" || true
    fi
done < <(units_of sub; units_of pub)

echo
if [ "$DRY" = 1 ]; then
    echo "dry run: nothing was run; the generated files are in $OUT"
elif [ "$FAILED" -gt 0 ]; then
    echo "rollout.sh: $FAILED step(s) failed" >&2
    exit 1
else
    echo "rolled out: $(units_of sub | wc -l) subscriber(s), $(units_of pub | wc -l) publisher(s)"
fi
