//! Fuzz target `decode`: arbitrary bytes as one received frame, through the
//! wire decoder and the sequence tracker (see `../exercise.rs` and
//! docs/FUZZING.md).

#![no_main]

use libfuzzer_sys::fuzz_target;

// Shared with proto/tests/fuzz_corpus.rs; the summary it returns is for that
// replay, the fuzzer only cares about panics.
#[path = "../exercise.rs"]
#[allow(dead_code)]
mod exercise;

fuzz_target!(|data: &[u8]| {
    let _ = exercise::exercise(data);
});
