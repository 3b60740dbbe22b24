#!/usr/bin/env bash
# Bounded fuzz run, as CI does it (.ci/run; see docs/FUZZING.md): install the
# pinned cargo-fuzz unless present, then fuzz the `decode` target for
# FUZZ_SECONDS (default 60) starting from the committed corpus. New inputs go
# to a temporary directory, never into the committed corpus. A crash, a hang
# (an input over 10 s) or more than 2 GiB of memory exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds=${FUZZ_SECONDS:-60}

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# The default toolchain (stable in CI) and no sanitizer: cargo-fuzz then needs
# only stable -C flags, and the findings that matter in this safe-Rust code
# (panics, overflows, failed checks) need no sanitizer. AddressSanitizer
# (FUZZ_TOOLCHAIN=nightly FUZZ_SANITIZER=address) more than doubles the build
# and cuts executions sixfold, which put this step over its 4-minute budget
# (docs/FUZZING.md has the timings).
toolchain=()
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
    toolchain=("+$FUZZ_TOOLCHAIN")
fi
sanitizer=${FUZZ_SANITIZER:-none}

# cargo-fuzz has no --locked: check the fuzz crate's lockfile up front.
cargo "${toolchain[@]}" fetch --locked --manifest-path fuzz/Cargo.toml

new=$(mktemp -d)
trap 'rm -rf "$new"' EXIT
echo "fuzzing decode for ${seconds}s (toolchain ${FUZZ_TOOLCHAIN:-default}, sanitizer $sanitizer)"
cargo "${toolchain[@]}" fuzz run --sanitizer "$sanitizer" decode "$new" fuzz/corpus/decode -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10
echo "fuzz: no crash in ${seconds}s; $(find "$new" -type f | wc -l) new inputs (not kept)"
