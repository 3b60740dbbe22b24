//! The books a generated day must leave, computed from the generator's own
//! order state (its live orders and the prints it wrote), never from
//! `workers::itch_book`: the independent reference the tests compare
//! `ItchBooks` and `--books-out` with.

use crate::Generator;
use shardcast_proto::itch::Side;
use shardcast_workers::itch_book::ItchBookSummary;
use std::collections::BTreeMap;

/// Every symbol's book as it must be after the generator's day, keyed like
/// `--books-out`: levels aggregated here from the live orders, statistics
/// as the generator counted them.
pub fn reference_books(g: &Generator) -> BTreeMap<String, ItchBookSummary> {
    // (locate, side) -> price -> (shares, orders)
    let mut levels: BTreeMap<(u16, bool), BTreeMap<u32, (u64, u64)>> = BTreeMap::new();
    for (_, o) in g.orders() {
        let l = levels
            .entry((o.locate, o.side == Side::Buy))
            .or_default()
            .entry(o.price)
            .or_default();
        l.0 += u64::from(o.shares);
        l.1 += 1;
    }
    let empty = BTreeMap::new();
    g.symbols()
        .iter()
        .map(|s| {
            let bids = levels.get(&(s.locate, true)).unwrap_or(&empty);
            let asks = levels.get(&(s.locate, false)).unwrap_or(&empty);
            let best_bid = bids.iter().next_back();
            let best_ask = asks.iter().next();
            let orders: u64 = bids.values().chain(asks.values()).map(|l| l.1).sum();
            debug_assert_eq!(orders, s.live_orders().len() as u64);
            let summary = ItchBookSummary {
                bid_px: best_bid.map(|(&p, _)| p),
                bid_sz: best_bid.map(|(_, l)| l.0),
                ask_px: best_ask.map(|(&p, _)| p),
                ask_sz: best_ask.map(|(_, l)| l.0),
                orders,
                bid_levels: bids.len(),
                ask_levels: asks.len(),
                trades: s.trades,
                volume: s.volume,
                last_px: s.last_px,
                broken_trades: s.broken_trades,
                trading_state: Some(char::from(s.trading_state)),
                halted: s.trading_state != b'T',
                // The reference is built from the day itself: nothing missed.
                stale: false,
                missed: 0,
            };
            (s.name.clone(), summary)
        })
        .collect()
}
