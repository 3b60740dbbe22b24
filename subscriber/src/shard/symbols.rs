//! `--subscribe`: a shard that selects symbols checks sequences per symbol.
//!
//! With a symbol selection (prefix subscriptions, filtered at the publisher
//! for single-record frames: PROTOCOL.md section 3) the stream's own
//! sequence has holes that are no loss: the records of the symbols not
//! selected. Every data record also carries its symbol's own sequence
//! (`sym_seq`, PROTOCOL.md section 4), so the shard checks that one
//! instead, per (source, symbol): a jump is loss of that symbol, and the
//! stream sequences between the symbol's two records bound where the
//! missing records are (what `--recover-from` is asked for).

use rustc_hash::FxHashMap;
use shardcast_proto::seq::{Counters, SourceKey};
use shardcast_proto::wire::{first_header, Kind, Symbol, SYMBOL_LEN};

/// Where one symbol of one source stands.
#[derive(Clone, Copy, Debug, Default)]
struct SymbolState {
    session: u64,
    /// The last per-symbol sequence taken.
    sym_seq: u32,
    /// The stream sequence of that record.
    seq: u64,
}

/// A symbol's gap: its records after `sym_seq` up to the one the live
/// record carries lie in stream sequences `from..=to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SymbolGap {
    pub key: SourceKey,
    pub session: u64,
    pub symbol: u64,
    /// The per-symbol sequence still missing from (the last taken + 1).
    pub sym_from: u32,
    /// The per-symbol sequence of the live record (exclusive).
    pub sym_to: u32,
    /// Stream sequences that hold the missing records.
    pub from: u64,
    pub to: u64,
}

/// The selection and the per-symbol sequence state of a shard.
#[derive(Debug)]
pub struct Selection {
    prefixes: Vec<Vec<u8>>,
    state: FxHashMap<(SourceKey, u64), SymbolState>,
    /// Per source: received, lost, duplicates, missed_before_join, as the
    /// selection sees them (the report's counters of a selecting shard).
    counters: Vec<(SourceKey, Counters)>,
    /// Per source: the session, the highest stream sequence taken, and
    /// whether a source confirmed that nothing of the selection followed
    /// it before end-of-stream (the tail check).
    tails: Vec<Tail>,
}

/// See [`Selection::tails`].
#[derive(Clone, Copy, Debug)]
struct Tail {
    key: SourceKey,
    session: u64,
    max_seq: u64,
    verified: bool,
}

/// Most (source, symbol) pairs tracked: a peer inventing symbols cannot
/// grow memory without bound (records past it are taken unchecked).
pub const MAX_SYMBOLS: usize = 1 << 20;

impl Selection {
    /// A selection of the symbols starting with one of `prefixes`.
    pub fn new(prefixes: &[String]) -> Selection {
        Selection {
            prefixes: prefixes.iter().map(|p| p.as_bytes().to_vec()).collect(),
            state: FxHashMap::default(),
            counters: Vec::new(),
            tails: Vec::new(),
        }
    }

    /// Whether `symbol` is selected.
    #[inline]
    pub fn selects(&self, symbol: &[u8; SYMBOL_LEN]) -> bool {
        self.prefixes.iter().any(|p| symbol.starts_with(p))
    }

    fn counters(&mut self, key: SourceKey) -> &mut Counters {
        let i = match self.counters.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.counters.push((key, Counters::default()));
                self.counters.len() - 1
            }
        };
        &mut self.counters[i].1
    }

    /// The counters of `key` as the selection sees them.
    pub fn counters_of(&self, key: SourceKey) -> Option<Counters> {
        self.counters.iter().find(|(k, _)| *k == key).map(|c| c.1)
    }

    /// Loss over every source.
    pub fn lost(&self) -> u64 {
        self.counters.iter().map(|c| c.1.lost).sum()
    }

    /// Account for data record (`session`, `seq`, `symbol`, `sym_seq`) of
    /// `key`; `false`: a duplicate (its symbol's sequence is not past the
    /// last taken), to drop. A record without a per-symbol sequence
    /// (`sym_seq` 0: an older publisher) is taken unchecked. A `fetched`
    /// record (a repair) the shard has already is left out uncounted: it
    /// is no duplicate on the wire.
    #[inline]
    pub fn on_data(
        &mut self,
        key: SourceKey,
        session: u64,
        seq: u64,
        (symbol, sym_seq): (u64, u32),
        fetched: bool,
    ) -> bool {
        if sym_seq == 0 {
            self.taken_at(key, session, seq);
            self.counters(key).received += 1;
            return true;
        }
        let full = self.state.len() >= MAX_SYMBOLS;
        let st = match self.state.get_mut(&(key, symbol)) {
            Some(st) => st,
            None if full => {
                self.counters(key).received += 1;
                return true;
            }
            None => self.state.entry((key, symbol)).or_default(),
        };
        let (missed, lost) = if st.session != session || st.sym_seq == 0 {
            // The symbol's first record of the session (live, or fetched:
            // a symbol whose records so far were all dropped shows first
            // in a repaired range or the tail): what came before it is
            // counted as before this subscriber joined.
            *st = SymbolState {
                session,
                sym_seq: 0,
                seq: 0,
            };
            (u64::from(sym_seq - 1), 0)
        } else if sym_seq <= st.sym_seq {
            if !fetched {
                self.counters(key).duplicates += 1;
            }
            return false;
        } else {
            (0, u64::from(sym_seq - st.sym_seq - 1))
        };
        st.sym_seq = sym_seq;
        st.seq = seq;
        self.taken_at(key, session, seq);
        let c = self.counters(key);
        c.missed_before_join += missed;
        c.lost += lost;
        c.received += 1;
        true
    }

    /// The gap of the symbol of the frame in `bytes` (its first record):
    /// some of its records are missing before it.
    #[inline]
    pub(crate) fn gap_before(&self, bytes: &[u8]) -> Option<SymbolGap> {
        let h = first_header(bytes)?;
        if !Kind::from_u8(h.kind)?.is_data() {
            return None;
        }
        let key = SourceKey {
            publisher_id: h.publisher_id.get(),
            stream_id: h.stream_id.get(),
        };
        let symbol = Symbol(h.symbol).as_u64();
        let st = self.state.get(&(key, symbol))?;
        let (session, sym_seq) = (h.session.get(), h.sym_seq.get());
        let seq = h.seq.get();
        (st.session == session && st.sym_seq != 0 && sym_seq > st.sym_seq + 1 && seq > st.seq + 1)
            .then_some(SymbolGap {
                key,
                session,
                symbol,
                sym_from: st.sym_seq + 1,
                sym_to: sym_seq,
                from: st.seq + 1,
                to: seq - 1,
            })
    }

    fn taken_at(&mut self, key: SourceKey, session: u64, seq: u64) {
        match self.tails.iter_mut().find(|t| t.key == key) {
            Some(t) if t.session == session => t.max_seq = t.max_seq.max(seq),
            Some(t) => {
                *t = Tail {
                    key,
                    session,
                    max_seq: seq,
                    verified: false,
                }
            }
            None => self.tails.push(Tail {
                key,
                session,
                max_seq: seq,
                verified: false,
            }),
        }
    }

    /// The tail to check before the end-of-stream in `bytes`: the stream
    /// sequences after the last record taken, up to the last one sent. A
    /// selected symbol's records there (dropped with nothing of the symbol
    /// after them) show in no per-symbol sequence: only a source that has
    /// the range can say whether there were any.
    pub(crate) fn tail_before(&self, bytes: &[u8]) -> Option<(SourceKey, u64, u64, u64)> {
        let h = first_header(bytes)?;
        if Kind::from_u8(h.kind)? != Kind::EndOfStream {
            return None;
        }
        let key = SourceKey {
            publisher_id: h.publisher_id.get(),
            stream_id: h.stream_id.get(),
        };
        let t = self.tails.iter().find(|t| t.key == key)?;
        let (session, last) = (h.session.get(), h.seq.get());
        (t.session == session && !t.verified && last > t.max_seq).then_some((
            key,
            session,
            t.max_seq + 1,
            last,
        ))
    }

    /// A source answered for the whole tail of `key`: everything of the
    /// selection up to end-of-stream was taken.
    pub(crate) fn tail_verified(&mut self, key: SourceKey) {
        if let Some(t) = self.tails.iter_mut().find(|t| t.key == key) {
            t.verified = true;
        }
    }

    /// Whether the selection of `key` is known whole up to end-of-stream:
    /// its tail was checked with a source (or nothing was sent after the
    /// last record taken).
    pub fn tail_ok(&self, key: SourceKey, eos_last_seq: Option<u64>) -> bool {
        self.tails
            .iter()
            .find(|t| t.key == key)
            .is_some_and(|t| t.verified || eos_last_seq == Some(t.max_seq))
    }

    /// The last per-symbol sequence taken of `symbol` of `key`.
    pub(crate) fn last(&self, key: SourceKey, symbol: u64) -> u32 {
        self.state.get(&(key, symbol)).map_or(0, |s| s.sym_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: SourceKey = SourceKey {
        publisher_id: 1,
        stream_id: 0,
    };

    #[test]
    fn per_symbol_jumps_are_loss_and_the_streams_holes_are_not() {
        let mut s = Selection::new(&["AAB".into()]);
        let (a, b) = (1, 2);
        // Stream seqs jump (other symbols' records), per-symbol ones do not.
        assert!(s.on_data(K, 7, 5, (a, 1), false));
        assert!(s.on_data(K, 7, 9, (b, 1), false));
        assert!(s.on_data(K, 7, 40, (a, 2), false));
        assert_eq!(s.counters_of(K).unwrap().lost, 0);
        // a's 3 and 4 missing.
        assert!(s.on_data(K, 7, 90, (a, 5), false));
        assert_eq!(s.counters_of(K).unwrap().lost, 2);
        // A repeat is a duplicate.
        assert!(!s.on_data(K, 7, 90, (a, 5), false));
        // A fetched copy is left out uncounted; a fetched record of a
        // symbol not seen yet is its first.
        assert!(!s.on_data(K, 7, 90, (a, 5), true));
        assert!(s.on_data(K, 7, 91, (9, 1), true));
        assert_eq!(s.counters_of(K).unwrap().duplicates, 1);
        // A late joiner's first record of a symbol: missed, not lost.
        assert!(s.on_data(K, 7, 95, (3, 4), false));
        let c = s.counters_of(K).unwrap();
        assert_eq!((c.missed_before_join, c.received), (3, 6));
        // A new session starts the symbol over.
        assert!(s.on_data(K, 8, 1, (a, 1), false));
        assert_eq!(s.counters_of(K).unwrap().lost, 2);
    }

    #[test]
    fn prefixes_select_by_the_start_of_the_symbol() {
        let s = Selection::new(&["AAB".into(), "MS".into()]);
        let sym = |n: &str| Symbol::new(n).unwrap().0;
        assert!(s.selects(&sym("AAB")));
        assert!(s.selects(&sym("MSFT")));
        assert!(!s.selects(&sym("AAC")));
    }
}
