//! The deterministic synthetic market-data feed.
//!
//! What makes it realistic enough to benchmark a market-data pipeline:
//! * **skewed activity**: the symbol of each event is drawn from a Zipf
//!   distribution (exponent [`ZIPF_EXPONENT`]), so a few symbols carry most of
//!   the traffic, as on a real exchange;
//! * **prices random-walk** around a spread of a few ticks, per symbol;
//! * **about ten quotes per trade** ([`TRADE_EVERY`]); a trade prints at the
//!   touch of the current quote.
//!
//! The sequence of events is a pure function of `(seed, symbols)`: timing and
//! sharding never change content, so a test can recompute exactly what a
//! publisher sent (and the books a subscriber must end with).

use crate::wire::{Payload, Quote, Side, Symbol, Trade, PRICE_SCALE};
use rand::{Rng, SeedableRng};
use rand_distr::weighted::WeightedAliasIndex;
use rand_distr::Distribution;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Zipf exponent of symbol activity.
pub const ZIPF_EXPONENT: f64 = 1.1;
/// One event in this many is a trade (so ~10 quotes per trade).
pub const TRADE_EVERY: u32 = 11;
/// Most symbols a feed can have (symbols are named from 3 to 4 letters).
pub const MAX_SYMBOLS: u32 = 26 * 26 * 26 * 26;

/// One market event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Index of the symbol in [`Feed::symbols`].
    pub symbol: u32,
    /// Quote or trade.
    pub payload: Payload<'static>,
}

#[derive(Clone, Copy, Debug)]
struct Instrument {
    mid: i64,
    tick: i64,
    half_spread_ticks: i64,
}

/// A deterministic feed generator.
#[derive(Clone, Debug)]
pub struct Feed {
    rng: Xoshiro256PlusPlus,
    /// Zipf weights `1 / rank^s` as an alias table: O(1) per draw, where
    /// sampling Zipf directly costs a `powf` and a rejection loop (most of
    /// a publisher's per-message time: see bench/benches/hot_path.rs).
    activity: WeightedAliasIndex<f64>,
    symbols: Vec<Symbol>,
    instruments: Vec<Instrument>,
}

/// Why a feed cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadSymbolCount(pub u32);

impl std::fmt::Display for BadSymbolCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} symbols requested; between 1 and {MAX_SYMBOLS} are supported",
            self.0
        )
    }
}

impl std::error::Error for BadSymbolCount {}

/// The name of symbol `i`: three or four capital letters ("AAA", "AAB", ...),
/// independent of the seed so names stay stable across runs.
pub fn symbol_name(i: u32) -> Symbol {
    let mut n = i;
    let len = if n < 26 * 26 * 26 { 3 } else { 4 };
    let mut out = [0u8; 8];
    for slot in out[..len].iter_mut().rev() {
        *slot = b'A' + (n % 26) as u8;
        n /= 26;
    }
    Symbol(out)
}

impl Feed {
    /// A feed of `symbols` instruments from `seed`.
    pub fn new(seed: u64, symbols: u32) -> Result<Feed, BadSymbolCount> {
        if symbols == 0 || symbols > MAX_SYMBOLS {
            return Err(BadSymbolCount(symbols));
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let weights: Vec<f64> = (1..=symbols)
            .map(|rank| (rank as f64).powf(-ZIPF_EXPONENT))
            .collect();
        let activity = WeightedAliasIndex::new(weights).map_err(|_| BadSymbolCount(symbols))?;
        let names = (0..symbols).map(symbol_name).collect();
        let instruments = (0..symbols)
            .map(|_| {
                // $5 to $500, one-cent ticks, one to three ticks of half-spread.
                let dollars = rng.random_range(5..500);
                Instrument {
                    mid: dollars * PRICE_SCALE,
                    tick: PRICE_SCALE / 100,
                    half_spread_ticks: rng.random_range(1..=3),
                }
            })
            .collect();
        Ok(Feed {
            rng,
            activity,
            symbols: names,
            instruments,
        })
    }

    /// The symbols, by index.
    pub fn symbols(&self) -> &[Symbol] {
        &self.symbols
    }

    /// The next event.
    #[inline]
    pub fn next_event(&mut self) -> Event {
        // Index 0 (rank 1) is the busiest symbol.
        let symbol = self.activity.sample(&mut self.rng) as u32;
        let inst = &mut self.instruments[symbol as usize];
        let payload = if self.rng.random_range(0..TRADE_EVERY) == 0 {
            let buy = self.rng.random_bool(0.5);
            let half = inst.half_spread_ticks * inst.tick;
            Payload::Trade(Trade {
                px: if buy {
                    inst.mid + half
                } else {
                    inst.mid - half
                },
                sz: 100 * self.rng.random_range(1..=5),
                side: if buy { Side::Buy } else { Side::Sell },
            })
        } else {
            let step = self.rng.random_range(-2i64..=2) * inst.tick;
            // Keep the bid positive: a walk that would cross zero reflects.
            let floor = (inst.half_spread_ticks + 1) * inst.tick;
            inst.mid = (inst.mid + step).max(floor);
            if self.rng.random_range(0..8) == 0 {
                inst.half_spread_ticks = self.rng.random_range(1..=3);
            }
            let half = inst.half_spread_ticks * inst.tick;
            Payload::Quote(Quote {
                bid_px: inst.mid - half,
                ask_px: inst.mid + half,
                bid_sz: 100 * self.rng.random_range(1..=20),
                ask_sz: 100 * self.rng.random_range(1..=20),
            })
        };
        Event { symbol, payload }
    }
}

impl Iterator for Feed {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        Some(self.next_event())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_feed_other_seed_other_feed() {
        let a: Vec<Event> = Feed::new(7, 50).unwrap().take(1000).collect();
        let b: Vec<Event> = Feed::new(7, 50).unwrap().take(1000).collect();
        let c: Vec<Event> = Feed::new(8, 50).unwrap().take(1000).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn activity_is_skewed_and_trades_are_a_tenth() {
        let n = 100_000;
        let mut per_symbol = vec![0u32; 100];
        let mut trades = 0;
        for ev in Feed::new(1, 100).unwrap().take(n) {
            per_symbol[ev.symbol as usize] += 1;
            if let Payload::Trade(_) = ev.payload {
                trades += 1;
            }
        }
        let top5: u32 = per_symbol[..5].iter().sum();
        assert!(
            top5 as usize > n / 3,
            "top 5 of 100 symbols carry {top5} of {n}"
        );
        assert!(
            (n / 14..n / 9).contains(&trades),
            "{trades} trades in {n} events"
        );
    }

    #[test]
    fn quotes_are_sane() {
        for ev in Feed::new(3, 10).unwrap().take(50_000) {
            if let Payload::Quote(q) = ev.payload {
                assert!(q.bid_px > 0 && q.bid_px < q.ask_px, "{q:?}");
                assert!(q.bid_sz > 0 && q.ask_sz > 0);
            }
        }
    }

    #[test]
    fn names_are_stable_and_unique() {
        assert_eq!(symbol_name(0).as_str(), "AAA");
        assert_eq!(symbol_name(27).as_str(), "ABB");
        assert_eq!(symbol_name(26 * 26 * 26).as_str(), "BAAA");
        let mut names: Vec<Symbol> = (0..20_000).map(symbol_name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 20_000);
    }

    #[test]
    fn bad_symbol_counts_are_refused() {
        assert!(Feed::new(1, 0).is_err());
        assert!(Feed::new(1, MAX_SYMBOLS + 1).is_err());
    }
}
