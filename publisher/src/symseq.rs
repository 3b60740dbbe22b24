//! Per-symbol sequence numbers (PROTOCOL.md section 4, "Per-symbol
//! sequence"; like CME's RptSeq): every data record carries, besides its
//! stream `seq`, its number among the data records of its symbol on its
//! stream and session, 1, 2, 3, ... A number is consumed when the record
//! is encoded, like `seq`: a frame the PUB drops leaves a per-symbol gap too.
//!
//! One [`SymSeqs`] per stream thread, never shared. The hot path is one
//! array index (synthetic feed: the feed's symbol index; ITCH: the stock
//! locate, checked against the symbol it last carried) and an add; a
//! symbol seen for the first time costs one hash-map insert (an
//! allocation only when the map grows: at most once per distinct symbol,
//! amortised, never per message).

use rustc_hash::FxHashMap;
use shardcast_proto::wire::Symbol;

/// The number after `n`: it wraps from `u32::MAX` to 1, never to 0 (0 on
/// the wire means "not carried").
#[inline]
pub(crate) fn next(n: u32) -> u32 {
    n.wrapping_add(1).max(1)
}

/// No symbol cached for a stock locate yet.
const NO_SLOT: u32 = u32::MAX;

/// The per-symbol counters of one stream.
pub(crate) struct SymSeqs {
    /// Last number given, by slot.
    counts: Vec<u32>,
    /// Slot of each symbol (keyed streams: ITCH, replay).
    slots: FxHashMap<u64, u32>,
    /// ITCH: per stock locate, the symbol it last carried and its slot, so
    /// a record costs one compare instead of a hash lookup (a locate can
    /// be renamed by a later Stock Directory: the compare catches that).
    locates: Vec<(u64, u32)>,
}

impl SymSeqs {
    /// Counters for `n` symbols known up front, slot = the symbol's index
    /// (the synthetic feed: `ev.symbol`).
    pub(crate) fn dense(n: usize) -> SymSeqs {
        SymSeqs {
            counts: vec![0; n],
            slots: FxHashMap::default(),
            locates: Vec::new(),
        }
    }

    /// Counters keyed by symbol, grown as symbols appear (replay).
    pub(crate) fn keyed() -> SymSeqs {
        SymSeqs::dense(0)
    }

    /// Counters keyed by symbol with a stock-locate cache (ITCH).
    pub(crate) fn itch() -> SymSeqs {
        SymSeqs {
            locates: vec![(0, NO_SLOT); 1 << 16],
            ..SymSeqs::keyed()
        }
    }

    /// The slot of `symbol` (keyed counters), made on first sight.
    #[inline]
    pub(crate) fn slot(&mut self, symbol: Symbol) -> u32 {
        let counts = &mut self.counts;
        *self.slots.entry(symbol.as_u64()).or_insert_with(|| {
            counts.push(0);
            (counts.len() - 1) as u32
        })
    }

    /// The slot of `symbol`, carried by an ITCH message of stock `locate`.
    #[inline]
    pub(crate) fn slot_at_locate(&mut self, locate: u16, symbol: Symbol) -> u32 {
        let key = symbol.as_u64();
        let cached = self.locates[usize::from(locate)];
        if cached.1 != NO_SLOT && cached.0 == key {
            return cached.1;
        }
        let slot = self.slot(symbol);
        self.locates[usize::from(locate)] = (key, slot);
        slot
    }

    /// The number the next record of `slot` gets (not yet consumed).
    #[inline]
    pub(crate) fn peek(&self, slot: u32) -> u32 {
        next(self.counts[slot as usize])
    }

    /// Record `n` (from [`Self::peek`]) as given: the record was encoded.
    #[inline]
    pub(crate) fn consume(&mut self, slot: u32, n: u32) {
        self.counts[slot as usize] = n;
    }
}

/// The stock locate of an ITCH message (bytes 1..3, big-endian); 0 for a
/// message too short to have one (never routed to a stream).
#[inline]
pub(crate) fn locate(msg: &[u8]) -> u16 {
    match msg {
        [_, a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap()
    }

    #[test]
    fn numbers_run_from_1_per_symbol_and_wrap_past_0() {
        let mut d = SymSeqs::dense(3);
        let mut got = Vec::new();
        for i in [0u32, 1, 0, 2, 0, 1] {
            let n = d.peek(i);
            d.consume(i, n);
            got.push(n);
        }
        assert_eq!(got, [1, 1, 2, 1, 3, 2]);
        assert_eq!(next(u32::MAX), 1, "0 is never given: it means not carried");
        // Peeking alone consumes nothing (a record not encoded).
        assert_eq!(d.peek(2), 2);
        assert_eq!(d.peek(2), 2);
    }

    #[test]
    fn keyed_and_locate_counters_follow_the_symbol_not_the_locate() {
        let mut k = SymSeqs::itch();
        let (a, b) = (sym("AAPL"), sym("MSFT"));
        let take = |k: &mut SymSeqs, loc, s| {
            let slot = k.slot_at_locate(loc, s);
            let n = k.peek(slot);
            k.consume(slot, n);
            n
        };
        assert_eq!(take(&mut k, 5, a), 1);
        assert_eq!(take(&mut k, 5, a), 2);
        assert_eq!(take(&mut k, 6, b), 1);
        // Locate 5 renamed to MSFT: MSFT's count goes on.
        assert_eq!(take(&mut k, 5, b), 2);
        // AAPL under another locate keeps its own count too.
        assert_eq!(take(&mut k, 7, a), 3);
        assert_eq!(take(&mut k, 0, sym("~MARKET")), 1);
        assert_eq!(locate(&[b'A', 0x01, 0x02, 0]), 0x0102);
        assert_eq!(locate(b"A"), 0);
    }
}
