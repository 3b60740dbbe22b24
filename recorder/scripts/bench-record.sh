#!/usr/bin/env bash
# Recording throughput: shardcast-pub at a fixed rate of 100-byte messages
# into shardcast-record, both on this machine; passes when the recorder
# lost nothing and recorded every stream whole (issue 13: >= 1 M msg/s of
# 100 B, lossless, on a 2-core machine).
#
#   recorder/scripts/bench-record.sh [RATE] [COUNT] [STREAMS]
#
# Defaults: 1000000 msg/s, 5000000 messages (5 s), 1 stream. The recording
# goes to a temporary directory (about 100 MiB per million messages) that is
# removed afterwards; set KEEP=1 to keep it, DIR=... to choose where.
set -euo pipefail
RATE=${1:-1000000}
COUNT=${2:-5000000}
STREAMS=${3:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" \
    -p shardcast-publisher -p shardcast-recorder >&2
BIN=$TARGET/release
WORK=${DIR:-$(mktemp -d)}
mkdir -p "$WORK"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
binds=() connects=()
for i in $(seq 0 $((STREAMS - 1))); do
    port=$((27100 + i))
    binds+=(--bind "tcp://127.0.0.1:$port")
    connects+=(--connect "tcp://127.0.0.1:$port")
done
"$BIN/shardcast-pub" "${binds[@]}" --rate "$RATE" --size 100 --count "$COUNT" \
    --wait-subscribers 1 --publisher-id 1 --report-json "$WORK/pub.json" >/dev/null 2>"$WORK/pub.err" &
PUB=$!
"$BIN/shardcast-record" "${connects[@]}" --dir "$WORK/rec" --report-json "$WORK/rec.json" >/dev/null 2>"$WORK/rec.err" || {
    echo "shardcast-record failed (exit $?):" >&2; cat "$WORK/rec.err" >&2; kill "$PUB" 2>/dev/null; exit 1; }
wait "$PUB"
python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
p, r = json.load(open(f"{w}/pub.json")), json.load(open(f"{w}/rec.json"))
ok = r["lost"] == 0 and r["streams_complete"] and r["recorded"] == p["sent"]
print(f"publisher: {p['sent']} msgs at {p['msgs_per_sec']:.0f} msg/s (asked {p['rate']})")
print(f"recorder:  recorded {r['recorded']} records, {r['frames']} frames, {r['bytes']} bytes, "
      f"{r['writes']} writes, {r['segments']} segments; lost {r['lost']}, "
      f"streams_complete {r['streams_complete']}, max lag {r['max_lag_ms']:.1f} ms")
print("PASS: lossless" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
