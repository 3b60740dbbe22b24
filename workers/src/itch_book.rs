//! Order-by-order books from raw NASDAQ TotalView-ITCH 5.0 messages
//! (`--work itch-book`).
//!
//! [`ItchBooks::apply`] takes one message's bytes (what follows the 2-byte
//! length prefix in a day file, as the record carries it) and keeps:
//!
//! * every live order by its reference number (one hash map for all
//!   symbols: NASDAQ reference numbers are unique for the day across the
//!   whole feed, and `E`, `C`, `X`, `D` and `U` name only the reference);
//! * per symbol (by stock locate code), the price levels of each side,
//!   aggregated from the orders (price -> total shares and order count),
//!   and trade statistics;
//! * the locate -> symbol map from the Stock Directory (`R`).
//!
//! # What changes the book
//!
//! | message | effect |
//! |---|---|
//! | `A`, `F` | a new order rests at its price and side |
//! | `E` | the order loses the executed shares (gone at zero) |
//! | `C` | the order loses the executed shares, printable or not: the shares did execute |
//! | `X` | the order loses the cancelled shares (gone at zero) |
//! | `D` | the order is gone |
//! | `U` | the original order is gone; the new reference rests with the original's side and symbol, at the new price and shares |
//! | `P`, `Q`, `B` | nothing: they are not displayed orders (statistics only) |
//! | `H` | the symbol's trading state |
//!
//! # What counts as a trade and as volume
//!
//! A *print* adds 1 to `trades`, its shares to `volume`, and sets `last_px`:
//!
//! * `E`: at the resting order's display price;
//! * `C` with printable `Y`: at the message's execution price. A
//!   non-printable `C` (`N`) is left out, as the specification asks: its
//!   shares are reported again elsewhere (in a cross, by the `Q`), and
//!   counting both would count them twice;
//! * `P`: a non-displayed order's execution, at its price;
//! * `Q`: a cross, with its total shares at the cross price, when it
//!   matched shares; a `Q` of zero shares (a cross that did not execute) is
//!   no print.
//!
//! `B` (broken trade) counts in `broken_trades`; what it broke is not
//! taken back out of `volume` (the book keeps no history of prints).
//! An `E`, `C`, `X`, `D` or `U` naming an order that is not live counts
//! `unknown_order` and changes nothing, not even the statistics (an `E` has
//! no price of its own). An execution or cancel of more shares than the
//! order has left removes the order and counts `overfill`; a print still
//! counts the shares the exchange reported.
//!
//! Nothing here panics on any input: malformed and unknown messages are
//! counted and skipped ([`ItchStats`]).

use rustc_hash::FxHashMap;
use serde::Serialize;
use shardcast_proto::itch::{self, Check, Side, View};
use std::collections::btree_map::Entry;
use std::collections::{hash_map, BTreeMap};

/// One live order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Order {
    /// The stock locate code of its symbol.
    pub locate: u16,
    /// Bid or offer.
    pub side: Side,
    /// Display price, 1/10000.
    pub price: u32,
    /// Shares still resting.
    pub shares: u32,
}

/// One price level: the orders resting at a price on one side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Level {
    /// Total shares resting at the price.
    pub shares: u64,
    /// Number of orders resting at the price. The level exists while this
    /// is above zero (an order of zero shares still holds its level).
    pub orders: u32,
}

/// One symbol's book and statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolBook {
    /// The symbol, space-padded, from the Stock Directory (or, if none
    /// came, from the first message naming the stock).
    pub stock: Option<[u8; 8]>,
    /// Bids by price.
    pub bids: BTreeMap<u32, Level>,
    /// Offers by price.
    pub asks: BTreeMap<u32, Level>,
    /// Orders resting.
    pub orders: u64,
    /// Prints (see the module doc).
    pub trades: u64,
    /// Shares printed.
    pub volume: u64,
    /// Price of the last print.
    pub last_px: Option<u32>,
    /// `B` messages for this symbol.
    pub broken_trades: u64,
    /// The last `H` trading state (`H`, `P`, `Q` or `T`).
    pub trading_state: Option<u8>,
    /// Its per-symbol sequence: messages of it known missed.
    pub seq: crate::book::SymSeq,
}

impl SymbolBook {
    fn side(&mut self, side: Side) -> &mut BTreeMap<u32, Level> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    fn add(&mut self, side: Side, price: u32, shares: u32) {
        let l = self.side(side).entry(price).or_default();
        l.shares += u64::from(shares);
        l.orders += 1;
        self.orders += 1;
    }

    /// Take `shares` off a level; `gone`: the order left it too.
    fn reduce(&mut self, side: Side, price: u32, shares: u32, gone: bool) {
        // One search of the level map, whether the level stays or goes.
        if let Entry::Occupied(mut e) = self.side(side).entry(price) {
            let l = e.get_mut();
            l.shares = l.shares.saturating_sub(u64::from(shares));
            if gone {
                l.orders = l.orders.saturating_sub(1);
                if l.orders == 0 {
                    e.remove();
                }
            }
        }
        if gone {
            self.orders = self.orders.saturating_sub(1);
        }
    }

    fn print(&mut self, shares: u64, price: u32) {
        self.trades += 1;
        self.volume += shares;
        self.last_px = Some(price);
    }

    /// Best bid: (price, total shares at it).
    pub fn best_bid(&self) -> Option<(u32, u64)> {
        self.bids.iter().next_back().map(|(&p, l)| (p, l.shares))
    }

    /// Best offer: (price, total shares at it).
    pub fn best_ask(&self) -> Option<(u32, u64)> {
        self.asks.iter().next().map(|(&p, l)| (p, l.shares))
    }

    /// Whether the last trading state is anything but trading (`T`):
    /// halted (`H`), paused (`P`) or quotation only (`Q`). A symbol with
    /// no `H` yet is not halted.
    pub fn halted(&self) -> bool {
        matches!(self.trading_state, Some(s) if s != b'T')
    }

    /// The summary written to `--books-out`.
    pub fn summary(&self) -> ItchBookSummary {
        let bid = self.best_bid();
        let ask = self.best_ask();
        ItchBookSummary {
            bid_px: bid.map(|b| b.0),
            bid_sz: bid.map(|b| b.1),
            ask_px: ask.map(|a| a.0),
            ask_sz: ask.map(|a| a.1),
            orders: self.orders,
            bid_levels: self.bids.len(),
            ask_levels: self.asks.len(),
            trades: self.trades,
            volume: self.volume,
            last_px: self.last_px,
            broken_trades: self.broken_trades,
            trading_state: self.trading_state.map(char::from),
            halted: self.halted(),
            stale: self.seq.stale(),
            missed: self.seq.missed,
        }
    }
}

/// A symbol's book as written to `--books-out` (a JSON object keyed by
/// symbol, trailing spaces trimmed). Prices are ITCH's, in 1/10000 of a
/// dollar; a side with no order has `null` price and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ItchBookSummary {
    /// Best bid price.
    pub bid_px: Option<u32>,
    /// Total shares resting at the best bid.
    pub bid_sz: Option<u64>,
    /// Best offer price.
    pub ask_px: Option<u32>,
    /// Total shares resting at the best offer.
    pub ask_sz: Option<u64>,
    /// Orders resting at the end.
    pub orders: u64,
    /// Bid price levels.
    pub bid_levels: usize,
    /// Offer price levels.
    pub ask_levels: usize,
    /// Prints: `E`, printable `C`, `P`, and `Q` with shares.
    pub trades: u64,
    /// Shares printed.
    pub volume: u64,
    /// Price of the last print (`null`: none yet).
    pub last_px: Option<u32>,
    /// Broken trades (`B`).
    pub broken_trades: u64,
    /// The last trading state from `H` (`null`: none came).
    pub trading_state: Option<char>,
    /// Whether that state is anything but `T` (trading).
    pub halted: bool,
    /// A message of this symbol was missed (lost, not repaired): the book
    /// is wrong. Written only when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// How many messages of this symbol were missed (written when stale).
    #[serde(skip_serializing_if = "is_zero")]
    pub missed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Counters over every message applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ItchStats {
    /// Messages given to [`ItchBooks::apply`].
    pub messages: u64,
    /// Messages of a type ITCH 5.0 does not define (skipped).
    pub unknown_type: u64,
    /// Messages whose length disagrees with their type's (skipped).
    pub malformed: u64,
    /// `E`, `C`, `X`, `D`, `U` naming an order that is not live.
    pub unknown_order: u64,
    /// Adds (or a replace's new reference) reusing a live reference: the
    /// old order is replaced.
    pub duplicate_order: u64,
    /// Executions or cancels of more shares than the order had.
    pub overfill: u64,
    /// Adds or trades whose side byte is neither `B` nor `S` (skipped).
    pub bad_side: u64,
}

/// Order-by-order books of every symbol (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct ItchBooks {
    orders: FxHashMap<u64, Order>,
    // Indexed by locate code: one load per message instead of a hash. A
    // u16 bounds it (65 536 entries at most, a few MiB, whatever the input).
    books: Vec<SymbolBook>,
    stats: ItchStats,
}

impl ItchBooks {
    /// No orders, no symbols.
    pub fn new() -> ItchBooks {
        ItchBooks::default()
    }

    fn book(&mut self, locate: u16) -> &mut SymbolBook {
        let i = usize::from(locate);
        if i >= self.books.len() {
            self.books.resize_with(i + 1, SymbolBook::default);
        }
        &mut self.books[i]
    }

    /// The book of a locate code, with a name from the message if the
    /// directory gave none.
    fn named(&mut self, locate: u16, stock: [u8; 8]) -> &mut SymbolBook {
        let b = self.book(locate);
        b.stock.get_or_insert(stock);
        b
    }

    /// Note the per-symbol sequence `s` of the record that carried `msg`
    /// (see [`crate::book::SymSeq`]). Market-wide messages (locate 0) go to
    /// every stream, each numbering its own copy, so they are not judged.
    #[inline]
    pub fn see_sym_seq(&mut self, msg: &[u8], s: u32) {
        if s == 0 || msg.len() < 3 {
            return;
        }
        let locate = u16::from_be_bytes([msg[1], msg[2]]);
        if locate != 0 {
            self.book(locate).seq.see(s);
        }
    }

    /// Apply one message (the bytes after its length prefix). Returns how
    /// it was classified; anything but [`Check::Ok`] changed nothing but
    /// the counters.
    pub fn apply(&mut self, msg: &[u8]) -> Check {
        self.stats.messages += 1;
        let v = match itch::view(msg) {
            Ok(v) => v,
            Err(c) => {
                match c {
                    Check::Unknown(_) => self.stats.unknown_type += 1,
                    _ => self.stats.malformed += 1,
                }
                return c;
            }
        };
        match v {
            View::StockDirectory(r) => self.book(r.locate()).stock = Some(r.stock()),
            View::TradingAction(h) => {
                self.named(h.locate(), h.stock()).trading_state = Some(h.state());
            }
            View::AddOrder(a) => match a.side() {
                Some(side) => {
                    self.named(a.locate(), a.stock());
                    self.add(a.order_ref(), a.locate(), side, a.price(), a.shares());
                }
                None => self.stats.bad_side += 1,
            },
            View::Executed(e) => {
                if let Some(o) = self.take(e.order_ref(), e.shares()) {
                    self.book(o.locate).print(u64::from(e.shares()), o.price);
                }
            }
            View::ExecutedWithPrice(c) => {
                if let Some(o) = self.take(c.order_ref(), c.shares()) {
                    if c.printable() {
                        self.book(o.locate).print(u64::from(c.shares()), c.price());
                    }
                }
            }
            View::Cancel(x) => {
                self.take(x.order_ref(), x.shares());
            }
            View::Delete(d) => {
                self.take(d.order_ref(), u32::MAX);
            }
            View::Replace(u) => {
                if let Some(o) = self.remove(u.original_ref()) {
                    self.add(u.new_ref(), o.locate, o.side, u.price(), u.shares());
                }
            }
            View::Trade(p) => match Side::from_byte(p.side_byte()) {
                // NASDAQ has sent `B` as a P's side since July 2014
                // whatever the resting side: the side does not change the
                // print, but a byte that is no side at all is not a P we
                // understand.
                Some(_) => self
                    .named(p.locate(), p.stock())
                    .print(u64::from(p.shares()), p.price()),
                None => self.stats.bad_side += 1,
            },
            View::CrossTrade(q) => {
                let b = self.named(q.locate(), q.stock());
                if q.shares() > 0 {
                    b.print(q.shares(), q.price());
                }
            }
            View::BrokenTrade(b) => self.book(b.locate()).broken_trades += 1,
            View::SystemEvent(_) | View::OperationalHalt(_) | View::Other(..) => {}
        }
        // `view` succeeded, so the first byte is a known type.
        msg.first()
            .and_then(|&t| itch::MsgType::from_byte(t))
            .map_or(Check::Malformed, Check::Ok)
    }

    fn add(&mut self, order_ref: u64, locate: u16, side: Side, price: u32, shares: u32) {
        let old = self.orders.insert(
            order_ref,
            Order {
                locate,
                side,
                price,
                shares,
            },
        );
        if let Some(o) = old {
            self.stats.duplicate_order += 1;
            self.book(o.locate).reduce(o.side, o.price, o.shares, true);
        }
        self.book(locate).add(side, price, shares);
    }

    /// Remove an order whole; `None` (counted) if it is not live.
    fn remove(&mut self, order_ref: u64) -> Option<Order> {
        let Some(o) = self.orders.remove(&order_ref) else {
            self.stats.unknown_order += 1;
            return None;
        };
        self.book(o.locate).reduce(o.side, o.price, o.shares, true);
        Some(o)
    }

    /// Take `shares` off an order (all of it for `u32::MAX`, a delete);
    /// returns the order as it was, `None` (counted) if it is not live.
    fn take(&mut self, order_ref: u64, shares: u32) -> Option<Order> {
        // One hash lookup whether the order stays or goes: deletes and
        // executions are most of a day's messages.
        let hash_map::Entry::Occupied(mut e) = self.orders.entry(order_ref) else {
            self.stats.unknown_order += 1;
            return None;
        };
        let before = *e.get();
        if shares < before.shares {
            e.get_mut().shares -= shares;
            self.book(before.locate)
                .reduce(before.side, before.price, shares, false);
        } else {
            if shares > before.shares && shares != u32::MAX {
                self.stats.overfill += 1;
            }
            e.remove();
            self.book(before.locate)
                .reduce(before.side, before.price, before.shares, true);
        }
        Some(before)
    }

    /// The counters.
    pub fn stats(&self) -> ItchStats {
        self.stats
    }

    /// A live order.
    pub fn order(&self, order_ref: u64) -> Option<&Order> {
        self.orders.get(&order_ref)
    }

    /// Every live order with its reference number, in no order.
    pub fn orders(&self) -> impl Iterator<Item = (u64, &Order)> {
        self.orders.iter().map(|(&r, o)| (r, o))
    }

    /// Number of live orders, all symbols.
    pub fn live_orders(&self) -> usize {
        self.orders.len()
    }

    /// The book of a locate code, if anything created it.
    pub fn book_of(&self, locate: u16) -> Option<&SymbolBook> {
        self.books.get(usize::from(locate))
    }

    /// Every book that saw something, with its locate code.
    pub fn books(&self) -> impl Iterator<Item = (u16, &SymbolBook)> {
        self.books
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != SymbolBook::default())
            .map(|(i, b)| (i as u16, b))
    }

    /// The summaries for `--books-out`, keyed by symbol with its padding
    /// trimmed. A locate code no message named gets `#<locate>`; a second
    /// locate code claiming a symbol already listed gets `<symbol>#<locate>`
    /// (a real feed never does either).
    pub fn summary(&self) -> BTreeMap<String, ItchBookSummary> {
        let mut out = BTreeMap::new();
        for (locate, b) in self.books() {
            let name = match &b.stock {
                Some(s) => String::from_utf8_lossy(itch::trim_stock(s)).into_owned(),
                None => format!("#{locate}"),
            };
            let key = if out.contains_key(&name) {
                format!("{name}#{locate}")
            } else {
                name
            };
            out.insert(key, b.summary());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_proto::itch::{pad_stock, Body, Header, Message, MAX_LEN};

    fn msg(locate: u16, body: Body) -> Vec<u8> {
        let mut b = [0u8; MAX_LEN];
        let n = Message::new(
            Header {
                locate,
                tracking: 0,
                timestamp: 1,
            },
            body,
        )
        .write(&mut b);
        b[..n].to_vec()
    }

    fn directory(locate: u16, name: &str) -> Vec<u8> {
        msg(
            locate,
            Body::StockDirectory {
                stock: pad_stock(name),
                market_category: b'Q',
                financial_status: b'N',
                round_lot_size: 100,
                round_lots_only: b'N',
                issue_classification: b'C',
                issue_subtype: *b"  ",
                authenticity: b'P',
                short_sale_threshold: b'N',
                ipo_flag: b'N',
                luld_tier: b'1',
                etp_flag: b'N',
                etp_leverage: 0,
                inverse: b'N',
            },
        )
    }

    fn add(locate: u16, r: u64, side: Side, shares: u32, price: u32) -> Vec<u8> {
        msg(
            locate,
            Body::AddOrder {
                order_ref: r,
                side,
                shares,
                stock: pad_stock("AAPL"),
                price,
                attribution: None,
            },
        )
    }

    fn apply_all(b: &mut ItchBooks, msgs: &[Vec<u8>]) {
        for m in msgs {
            b.apply(m);
        }
    }

    #[test]
    fn a_day_in_one_symbol() {
        let mut b = ItchBooks::new();
        apply_all(
            &mut b,
            &[
                directory(7, "AAPL"),
                add(7, 1, Side::Buy, 100, 1_000_000),
                add(7, 2, Side::Buy, 200, 1_000_000),
                add(7, 3, Side::Buy, 50, 999_900),
                msg(
                    7,
                    Body::AddOrder {
                        order_ref: 4,
                        side: Side::Sell,
                        shares: 300,
                        stock: pad_stock("AAPL"),
                        price: 1_000_100,
                        attribution: Some(*b"GSCO"),
                    },
                ),
                // E: 40 of order 1 at its price.
                msg(
                    7,
                    Body::Executed {
                        order_ref: 1,
                        shares: 40,
                        match_number: 1,
                    },
                ),
                // C non-printable: shares leave the book, no print.
                msg(
                    7,
                    Body::ExecutedWithPrice {
                        order_ref: 2,
                        shares: 50,
                        match_number: 2,
                        printable: false,
                        price: 1_000_050,
                    },
                ),
                // C printable: a print at its own price.
                msg(
                    7,
                    Body::ExecutedWithPrice {
                        order_ref: 4,
                        shares: 100,
                        match_number: 3,
                        printable: true,
                        price: 1_000_080,
                    },
                ),
                msg(
                    7,
                    Body::Cancel {
                        order_ref: 2,
                        shares: 25,
                    },
                ),
                msg(7, Body::Delete { order_ref: 3 }),
                // U: order 1 (buy, 60 left) becomes order 10, 500 @ 99.98.
                msg(
                    7,
                    Body::Replace {
                        original_ref: 1,
                        new_ref: 10,
                        shares: 500,
                        price: 999_800,
                    },
                ),
                msg(
                    7,
                    Body::Trade {
                        order_ref: 0,
                        side: Side::Buy,
                        shares: 70,
                        stock: pad_stock("AAPL"),
                        price: 1_000_010,
                        match_number: 4,
                    },
                ),
                msg(
                    7,
                    Body::CrossTrade {
                        shares: 1_000,
                        stock: pad_stock("AAPL"),
                        price: 1_000_020,
                        match_number: 5,
                        cross_type: b'C',
                    },
                ),
                msg(
                    7,
                    Body::CrossTrade {
                        shares: 0,
                        stock: pad_stock("AAPL"),
                        price: 1_000_030,
                        match_number: 6,
                        cross_type: b'H',
                    },
                ),
                msg(7, Body::BrokenTrade { match_number: 4 }),
                msg(
                    7,
                    Body::TradingAction {
                        stock: pad_stock("AAPL"),
                        state: b'H',
                        reserved: b' ',
                        reason: *b"T1  ",
                    },
                ),
            ],
        );
        let s = &b.summary()["AAPL"];
        // Bids: order 2 (200 - 50 - 25 = 125 @ 100.00), order 10 (500 @ 99.98).
        assert_eq!(
            (s.bid_px, s.bid_sz, s.bid_levels),
            (Some(1_000_000), Some(125), 2)
        );
        // Asks: order 4, 300 - 100 = 200 @ 100.01.
        assert_eq!(
            (s.ask_px, s.ask_sz, s.ask_levels),
            (Some(1_000_100), Some(200), 1)
        );
        assert_eq!(s.orders, 3);
        // Prints: E 40, C 100, P 70, Q 1000; not the non-printable C, not the empty Q.
        assert_eq!((s.trades, s.volume, s.last_px), (4, 1_210, Some(1_000_020)));
        assert_eq!(s.broken_trades, 1);
        assert_eq!((s.trading_state, s.halted), (Some('H'), true));
        assert_eq!(
            b.order(10).map(|o| (o.side, o.shares)),
            Some((Side::Buy, 500))
        );
        assert_eq!(b.stats().unknown_order, 0);
    }

    #[test]
    fn unknown_orders_are_counted_never_fatal() {
        let mut b = ItchBooks::new();
        apply_all(
            &mut b,
            &[
                msg(
                    1,
                    Body::Executed {
                        order_ref: 99,
                        shares: 1,
                        match_number: 1,
                    },
                ),
                msg(
                    1,
                    Body::ExecutedWithPrice {
                        order_ref: 99,
                        shares: 1,
                        match_number: 1,
                        printable: true,
                        price: 5,
                    },
                ),
                msg(
                    1,
                    Body::Cancel {
                        order_ref: 99,
                        shares: 1,
                    },
                ),
                msg(1, Body::Delete { order_ref: 99 }),
                msg(
                    1,
                    Body::Replace {
                        original_ref: 99,
                        new_ref: 100,
                        shares: 1,
                        price: 1,
                    },
                ),
            ],
        );
        assert_eq!(b.stats().unknown_order, 5);
        assert_eq!(b.live_orders(), 0);
        assert!(b.summary().is_empty(), "{:?}", b.summary());
    }

    #[test]
    fn overfills_and_duplicates_keep_levels_consistent() {
        let mut b = ItchBooks::new();
        apply_all(
            &mut b,
            &[
                add(1, 1, Side::Sell, 100, 500),
                add(1, 2, Side::Sell, 0, 500),
                msg(
                    1,
                    Body::Executed {
                        order_ref: 1,
                        shares: 150,
                        match_number: 1,
                    },
                ),
                // Reference 2 reused: the old order goes first.
                add(1, 2, Side::Buy, 10, 400),
            ],
        );
        let st = b.stats();
        assert_eq!((st.overfill, st.duplicate_order), (1, 1));
        let s = &b.summary()["AAPL"];
        assert_eq!(
            (s.ask_levels, s.ask_px, s.bid_sz, s.orders),
            (0, None, Some(10), 1)
        );
        assert_eq!((s.trades, s.volume), (1, 150));
    }

    #[test]
    fn unknown_and_malformed_messages_are_counted() {
        let mut b = ItchBooks::new();
        assert_eq!(b.apply(b"z123"), Check::Unknown(b'z'));
        assert_eq!(b.apply(b""), Check::Malformed);
        assert_eq!(b.apply(&[b'A'; 30]), Check::Malformed);
        let st = b.stats();
        assert_eq!((st.messages, st.unknown_type, st.malformed), (3, 1, 2));
    }

    #[test]
    fn summary_keys_trim_padding_and_name_the_nameless() {
        let mut b = ItchBooks::new();
        apply_all(
            &mut b,
            &[
                directory(1, "A"),
                directory(2, "BRK.A"),
                directory(3, "A"),
                msg(9, Body::BrokenTrade { match_number: 1 }),
            ],
        );
        let keys: Vec<String> = b.summary().into_keys().collect();
        assert_eq!(keys, vec!["#9", "A", "A#3", "BRK.A"]);
        let json = serde_json::to_value(&b.summary()["A"]).unwrap();
        assert_eq!(json["bid_px"], serde_json::Value::Null);
        assert_eq!(json["trading_state"], serde_json::Value::Null);
    }

    /// A message from a few small numbers: references, prices and
    /// locates collide, so orders really live, die and get reused.
    fn small(t: u8, r: u64, shares: u32, price: u32, buy: bool, locate: u16) -> Vec<u8> {
        let side = if buy { Side::Buy } else { Side::Sell };
        let stock = pad_stock("S");
        let body = match t {
            b'A' | b'F' => Body::AddOrder {
                order_ref: r,
                side,
                shares,
                stock,
                price,
                attribution: (t == b'F').then_some(*b"MPID"),
            },
            b'E' => Body::Executed {
                order_ref: r,
                shares,
                match_number: 1,
            },
            b'C' => Body::ExecutedWithPrice {
                order_ref: r,
                shares,
                match_number: 1,
                printable: buy,
                price,
            },
            b'X' => Body::Cancel {
                order_ref: r,
                shares,
            },
            b'D' => Body::Delete { order_ref: r },
            b'U' => Body::Replace {
                original_ref: r,
                new_ref: (r + 1) % 8,
                shares,
                price,
            },
            b'P' => Body::Trade {
                order_ref: 0,
                side,
                shares,
                stock,
                price,
                match_number: 1,
            },
            b'Q' => Body::CrossTrade {
                shares: u64::from(shares),
                stock,
                price,
                match_number: 1,
                cross_type: b'O',
            },
            b'B' => Body::BrokenTrade { match_number: r },
            b'H' => Body::TradingAction {
                stock,
                state: b'H',
                reserved: b' ',
                reason: *b"    ",
            },
            _ => return directory(locate, "S"),
        };
        msg(locate, body)
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_messages_never_panic(
            msgs in proptest::collection::vec(
                (proptest::sample::select(b"AFECXDUPQBHR".to_vec()), 0u64..8, 0u32..300,
                 0u32..4, proptest::bool::ANY, 0u16..3,
                 proptest::option::weighted(0.1, proptest::collection::vec(proptest::num::u8::ANY, 0..60))),
                0..300),
        ) {
            let mut b = ItchBooks::new();
            for (t, r, shares, price, buy, locate, raw) in msgs {
                // Now and then raw bytes of the same type: any length, any
                // field, any side byte.
                let m = match raw {
                    Some(mut raw) => {
                        if let Some(first) = raw.first_mut() {
                            *first = t;
                        }
                        raw
                    }
                    None => small(t, r, shares, price, buy, locate),
                };
                b.apply(&m);
            }
            // Levels always add up to the orders resting, and the live
            // orders to the books' counts.
            let mut total = 0;
            for (loc, book) in b.books() {
                let n: u64 = book.bids.values().chain(book.asks.values()).map(|l| u64::from(l.orders)).sum();
                proptest::prop_assert_eq!(n, book.orders);
                let sz: u64 = book.bids.values().chain(book.asks.values()).map(|l| l.shares).sum();
                let live: u64 = b.orders().map(|(_, o)| o).filter(|o| o.locate == loc).map(|o| u64::from(o.shares)).sum();
                proptest::prop_assert_eq!(sz, live);
                total += book.orders;
            }
            proptest::prop_assert_eq!(total, b.live_orders() as u64);
            let _ = b.summary();
        }
    }
}
