//! Per-symbol top of book and trade statistics.

use rustc_hash::FxHashMap;
use serde::Serialize;
use shardcast_proto::wire::{Quote, Symbol, Trade, PRICE_SCALE};
use std::collections::BTreeMap;

/// One symbol's state: the latest top of book and running trade statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Book {
    /// Best bid price.
    pub bid_px: i64,
    /// Size at the bid.
    pub bid_sz: u32,
    /// Best ask price.
    pub ask_px: i64,
    /// Size at the ask.
    pub ask_sz: u32,
    /// Quotes applied.
    pub quotes: u64,
    /// Trades applied.
    pub trades: u64,
    /// Shares traded.
    pub volume: u64,
    /// Sum of price x size (for VWAP), in price units.
    pub notional: i128,
    /// Last trade price.
    pub last_px: i64,
    /// Highest trade price.
    pub high: i64,
    /// Lowest trade price.
    pub low: i64,
    /// Its per-symbol sequence: records of it known missed.
    pub seq: SymSeq,
}

/// A symbol's per-symbol sequence (PROTOCOL.md section 4): each data record
/// carries its number among its symbol's records, so the worker that owns
/// the symbol sees a record missed (lost on the wire and not repaired) as a
/// jump, and knows exactly which book is wrong: it is *stale* from then on
/// (`--books-out` says `stale: true`), however the stream goes on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SymSeq {
    /// The last per-symbol sequence applied (0: none carried yet).
    pub last: u32,
    /// Records of the symbol missed (jumps over it).
    pub missed: u64,
}

impl SymSeq {
    /// Note the record numbered `s` (0: the publisher does not carry
    /// per-symbol sequences; nothing is judged). A number at or below the
    /// last is a new session (it starts from 1 again) and is followed; the
    /// first number seen is where this subscriber joined, not a loss.
    #[inline]
    pub fn see(&mut self, s: u32) {
        if s == 0 {
            return;
        }
        if self.last != 0 && s > self.last {
            self.missed += u64::from(s - self.last - 1);
        }
        self.last = s;
    }

    /// Whether a record of the symbol was missed: its book is wrong.
    pub fn stale(&self) -> bool {
        self.missed > 0
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Book {
    /// Apply a quote: it replaces the top of book.
    #[inline]
    pub fn quote(&mut self, q: &Quote) {
        self.bid_px = q.bid_px;
        self.bid_sz = q.bid_sz;
        self.ask_px = q.ask_px;
        self.ask_sz = q.ask_sz;
        self.quotes += 1;
    }

    /// Apply a trade.
    #[inline]
    pub fn trade(&mut self, t: &Trade) {
        if self.trades == 0 {
            self.high = t.px;
            self.low = t.px;
        } else {
            self.high = self.high.max(t.px);
            self.low = self.low.min(t.px);
        }
        self.trades += 1;
        self.volume += u64::from(t.sz);
        self.notional += i128::from(t.px) * i128::from(t.sz);
        self.last_px = t.px;
    }

    /// Volume-weighted average price in currency units (not ticks).
    pub fn vwap(&self) -> Option<f64> {
        (self.volume > 0).then(|| self.notional as f64 / self.volume as f64 / PRICE_SCALE as f64)
    }
}

/// A book as written to `--books-out` (integers exact, VWAP for humans).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BookSnapshot {
    /// Best bid price (1/10_000 units).
    pub bid_px: i64,
    /// Bid size.
    pub bid_sz: u32,
    /// Best ask price.
    pub ask_px: i64,
    /// Ask size.
    pub ask_sz: u32,
    /// Quotes applied.
    pub quotes: u64,
    /// Trades applied.
    pub trades: u64,
    /// Shares traded.
    pub volume: u64,
    /// Sum of price x size, as a decimal string (it can exceed 2^53).
    pub notional: String,
    /// VWAP in currency units.
    pub vwap: Option<f64>,
    /// Last trade price.
    pub last_px: i64,
    /// High.
    pub high: i64,
    /// Low.
    pub low: i64,
    /// A record of this symbol was missed (lost, not repaired): the book is
    /// wrong. Written only when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// How many records of this symbol were missed (written when stale).
    #[serde(skip_serializing_if = "is_zero")]
    pub missed: u64,
}

impl From<&Book> for BookSnapshot {
    fn from(b: &Book) -> BookSnapshot {
        BookSnapshot {
            bid_px: b.bid_px,
            bid_sz: b.bid_sz,
            ask_px: b.ask_px,
            ask_sz: b.ask_sz,
            quotes: b.quotes,
            trades: b.trades,
            volume: b.volume,
            notional: b.notional.to_string(),
            vwap: b.vwap(),
            last_px: b.last_px,
            high: b.high,
            low: b.low,
            stale: b.seq.stale(),
            missed: b.seq.missed,
        }
    }
}

/// Books of many symbols, keyed by the symbol's eight bytes.
#[derive(Clone, Debug, Default)]
pub struct Books {
    map: FxHashMap<u64, (Symbol, Book)>,
}

impl Books {
    /// No books.
    pub fn new() -> Books {
        Books::default()
    }

    /// The book of `symbol`, created on first sight (the only allocation,
    /// once per symbol).
    #[inline]
    pub fn book(&mut self, symbol: Symbol) -> &mut Book {
        &mut self
            .map
            .entry(symbol.as_u64())
            .or_insert_with(|| (symbol, Book::default()))
            .1
    }

    /// The book of `symbol`, created on first sight unless `limit` books
    /// exist already: `None` then, so a peer inventing symbols cannot grow
    /// memory without bound (the caller counts an `unknown_symbol`).
    #[inline]
    pub fn book_within(&mut self, symbol: Symbol, limit: usize) -> Option<&mut Book> {
        let full = self.map.len() >= limit;
        match self.map.entry(symbol.as_u64()) {
            std::collections::hash_map::Entry::Occupied(e) => Some(&mut e.into_mut().1),
            std::collections::hash_map::Entry::Vacant(_) if full => None,
            std::collections::hash_map::Entry::Vacant(e) => {
                Some(&mut e.insert((symbol, Book::default())).1)
            }
        }
    }

    /// Memory one symbol's book takes in the map at worst, bytes: the entry
    /// plus hashbrown's control byte, at its lowest load (7/8 full, then
    /// doubled: 7/16).
    pub fn bytes_per_symbol() -> usize {
        (std::mem::size_of::<(u64, (Symbol, Book))>() + 1) * 16 / 7
    }

    /// Look a book up.
    pub fn get(&self, symbol: &Symbol) -> Option<&Book> {
        self.map.get(&symbol.as_u64()).map(|(_, b)| b)
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no books.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Move every book of `other` in (symbols are disjoint across keyed
    /// workers; if not, `other` wins).
    pub fn merge(&mut self, other: Books) {
        self.map.extend(other.map);
    }

    /// Snapshots sorted by symbol, for `--books-out`.
    pub fn snapshot(&self) -> BTreeMap<String, BookSnapshot> {
        self.map
            .values()
            .map(|(s, b)| (s.to_string(), BookSnapshot::from(b)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_symbols_past_the_limit_are_refused_known_ones_served() {
        let mut b = Books::new();
        let s = |n: &str| Symbol::new(n).unwrap();
        assert!(b.book_within(s("A"), 2).is_some());
        assert!(b.book_within(s("B"), 2).is_some());
        assert!(b.book_within(s("C"), 2).is_none());
        assert!(b.book_within(s("A"), 2).is_some());
        assert_eq!(b.len(), 2);
    }

    use super::*;
    use shardcast_proto::wire::Side;

    #[test]
    fn trades_build_vwap_high_low() {
        let mut b = Book::default();
        b.trade(&Trade {
            px: 10 * PRICE_SCALE,
            sz: 100,
            side: Side::Buy,
        });
        b.trade(&Trade {
            px: 20 * PRICE_SCALE,
            sz: 300,
            side: Side::Sell,
        });
        assert_eq!((b.trades, b.volume), (2, 400));
        assert_eq!((b.high, b.low), (20 * PRICE_SCALE, 10 * PRICE_SCALE));
        assert_eq!(b.vwap(), Some(17.5));
        assert_eq!(Book::default().vwap(), None);
    }

    #[test]
    fn quotes_replace_the_top_of_book() {
        let mut books = Books::new();
        let s = Symbol::new("AAA").unwrap();
        for px in [100, 101] {
            books.book(s).quote(&Quote {
                bid_px: px,
                ask_px: px + 2,
                bid_sz: 1,
                ask_sz: 2,
            });
        }
        let b = books.get(&s).unwrap();
        assert_eq!((b.bid_px, b.ask_px, b.quotes), (101, 103, 2));
        assert_eq!(books.snapshot()["AAA"].bid_px, 101);
    }
}
