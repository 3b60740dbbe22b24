//! Which stream carries a symbol and which worker owns it.
//!
//! Both are pure functions of the symbol's eight bytes, so every process (and
//! every implementation in another language) agrees without coordination.
//! The two use differently seeded xxh3 hashes: both map a hash onto a range
//! by its high bits, so with one hash a stream (a contiguous slice of hash
//! values) would feed only the workers whose slices overlap it, and keyed
//! fan-out would leave workers idle.

use crate::wire::Symbol;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Seed of the symbol-to-stream hash (part of the protocol: see PROTOCOL.md).
pub const STREAM_HASH_SEED: u64 = 0;
/// Seed of the symbol-to-worker hash (local to a subscriber).
pub const WORKER_HASH_SEED: u64 = 0x5348_4152_4443_4153; // "SHARDCAS"

/// The stream (0-based) that carries `symbol` when a publisher has `streams`
/// streams. Stable across releases: changing it is a protocol change.
#[inline]
pub fn stream_for(symbol: &Symbol, streams: usize) -> usize {
    reduce(xxh3_64_with_seed(&symbol.0, STREAM_HASH_SEED), streams)
}

/// The worker (0-based) that owns `symbol` under keyed fan-out.
#[inline]
pub fn worker_for(symbol: &Symbol, workers: usize) -> usize {
    reduce(xxh3_64_with_seed(&symbol.0, WORKER_HASH_SEED), workers)
}

/// Flags in the top bits of the receive time a shard stamps on what it
/// hands a worker (receive times are far below 2^62 ns, the year 2116):
/// the records were received now but are not live. Mask them off with
/// [`STAMP_FLAGS`] before using the time.
///
/// Not judged by the snail: history fetched for a catch-up, and live
/// records that queued while it was fetched (their age is the catch-up's,
/// not the subscriber's pace).
pub const STAMP_NO_JUDGE: u64 = 1 << 63;
/// Not timed: history fetched for a catch-up (its send times are from
/// before this subscriber joined; its latency would be the recording's age).
pub const STAMP_NO_TIME: u64 = 1 << 62;
/// Both stamp flags.
pub const STAMP_FLAGS: u64 = STAMP_NO_JUDGE | STAMP_NO_TIME;

/// Map a 64-bit hash onto `0..n` without a division (Lemire's multiply-shift).
#[inline]
fn reduce(hash: u64, n: usize) -> usize {
    debug_assert!(n > 0);
    ((hash as u128 * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(i: usize) -> Symbol {
        Symbol::new(&format!("S{i}")).unwrap()
    }

    #[test]
    fn assignment_is_stable() {
        // Pinned values: if these change, the protocol changed.
        let aapl = Symbol::new("AAPL").unwrap();
        let first = stream_for(&aapl, 4);
        for _ in 0..10 {
            assert_eq!(stream_for(&aapl, 4), first);
        }
        assert!(first < 4);
        assert_eq!(stream_for(&aapl, 1), 0);
        assert_eq!(worker_for(&aapl, 1), 0);
    }

    #[test]
    fn spreads_symbols_over_streams_and_workers() {
        let n = 4000;
        let mut streams = [0usize; 4];
        let mut workers = [0usize; 3];
        for i in 0..n {
            streams[stream_for(&sym(i), 4)] += 1;
            workers[worker_for(&sym(i), 3)] += 1;
        }
        for c in streams {
            assert!(c > n / 4 * 8 / 10, "stream share too uneven: {streams:?}");
        }
        for c in workers {
            assert!(c > n / 3 * 8 / 10, "worker share too uneven: {workers:?}");
        }
    }

    #[test]
    fn workers_of_one_stream_are_not_correlated_with_the_stream() {
        // Every worker must receive symbols from stream 0 of 2.
        let mut seen = [false; 2];
        for i in 0..200 {
            let s = sym(i);
            if stream_for(&s, 2) == 0 {
                seen[worker_for(&s, 2)] = true;
            }
        }
        assert_eq!(seen, [true, true]);
    }
}
