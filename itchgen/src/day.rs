//! The day model: what a generated ITCH 5.0 day contains, and the
//! generator's own state (live orders, per-symbol statistics), which tests
//! read to build a reference book without running the book under test.
//!
//! # The shape of a day
//!
//! Time runs over `[start, start + span]`; every message has a timestamp
//! no earlier than the one before. In order:
//!
//! 1. **Preamble** at the start: System Event `O` (start of messages) and
//!    `S` (start of system hours), the MWCB decline levels (`V`), a Stock
//!    Directory (`R`) for every symbol (locate codes 1..=N) and a trading
//!    state `T` (`H`) for each.
//! 2. **Order flow** ("body"): each message picks a symbol by a Zipf law
//!    (exponent 1, ranks shuffled by the seed: a few symbols carry most of
//!    the day), then an action: adds (`A`, and `F` for a sixth of them)
//!    dominate, deletes (`D`) and replaces (`U`) most of the rest, partial
//!    cancels (`X`), executions (`E` ~3%, printable `C` ~0.5%) and
//!    non-displayed trades (`P` ~2%). Books stay a realistic depth: adds
//!    slow down as a symbol's book fills. Prices walk in one-cent ticks
//!    around a per-symbol mid ($5 to $500). Message density over time
//!    bursts five-fold in the first and last 5% of market hours, and is
//!    low before the open and after the close.
//! 3. **Scheduled events** at fixed fractions of the span: the opening at
//!    10% (`S` `Q`, preceded by imbalance `I` messages, then a cross per
//!    top symbol: resting orders executed non-printable `C`, then a `Q`),
//!    one scripted order lifecycle using every order message (`F`, `E`,
//!    printable `C`, `X`, `U`, `D`, then a `P` and a broken trade `B`), a
//!    halt and resumption (`H`), an operational halt and resumption (`h`),
//!    one each of `K`, `Y`, `L`, `J`, `N`, `O`, `W`, a halt that lasts to
//!    the end (`H` `H`), the closing crosses and `S` `M` at 90%, `S` `E` at
//!    95% and `S` `C` as the very last message, at `start + span`.
//!    Optionally one message of a type ITCH 5.0 does not define (`z`) at
//!    50%, and after everything a truncated message.
//!
//! Every scheduled event has a fixed number of messages, so the day has
//! exactly `messages` complete messages (the unknown one included): the
//! order flow gets what the schedule leaves.
//!
//! The generator never matches orders: executions pick resting orders
//! near the mid, and a book may cross. It is a test tool; what it
//! promises is that every message is consistent with its own order state.

use crate::config::Config;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rustc_hash::FxHashMap;
use shardcast_proto::itch::{self, pad_stock, Body, Header, Message, Side};
use std::collections::VecDeque;

/// One cent in ITCH's price units (1/10000 of a dollar).
pub const TICK: u32 = 100;

/// The type byte of the unknown message (`--unknown-type`).
pub const UNKNOWN_TYPE: u8 = b'z';

/// Length of the unknown message: a full ITCH header and nine more bytes.
pub const UNKNOWN_LEN: usize = 20;

/// Symbols that get an opening and a closing cross (the most active).
pub const CROSS_SYMBOLS: usize = 5;

/// Orders a cross executes (or, where the book is thin, adds).
const CROSS_FILLS: usize = 2;

/// A live order, as the generator left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveOrder {
    /// Locate code of its symbol.
    pub locate: u16,
    /// Bid or offer.
    pub side: Side,
    /// Display price, 1/10000.
    pub price: u32,
    /// Shares still resting.
    pub shares: u32,
    // Position in its symbol's list of live orders (for O(1) removal).
    slot: usize,
}

/// One symbol of the day and the statistics of the prints the generator
/// wrote for it, counted by the rules of `workers::itch_book` (E, printable
/// C, P, and Q with shares are prints; a non-printable C is not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolState {
    /// Its locate code (1..=symbols).
    pub locate: u16,
    /// Its name without padding.
    pub name: String,
    /// Prints written.
    pub trades: u64,
    /// Shares printed.
    pub volume: u64,
    /// Price of the last print.
    pub last_px: Option<u32>,
    /// Broken trades (`B`) written for it.
    pub broken_trades: u64,
    /// Its trading state (`T` after the preamble; `H` while halted).
    pub trading_state: u8,
    mid: u32,
    live: Vec<u64>,
}

impl SymbolState {
    /// References of its live orders (in no particular order).
    pub fn live_orders(&self) -> &[u64] {
        &self.live
    }
}

/// Counts of what was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenStats {
    /// Complete messages, the unknown one included.
    pub messages: u64,
    /// Complete messages by type byte.
    pub by_type: [u64; 256],
    /// Messages of a type ITCH 5.0 does not define.
    pub unknown: u64,
    /// Truncated messages at the end (0 or 1).
    pub truncated: u64,
    /// Bytes written (length prefixes and the truncated tail included).
    pub bytes: u64,
    /// Timestamp of the first message, ns since midnight.
    pub first_ts: Option<u64>,
    /// Timestamp of the last complete message.
    pub last_ts: Option<u64>,
}

impl Default for GenStats {
    fn default() -> GenStats {
        GenStats {
            messages: 0,
            by_type: [0; 256],
            unknown: 0,
            truncated: 0,
            bytes: 0,
            first_ts: None,
            last_ts: None,
        }
    }
}

/// A scheduled event (see the module doc), due at a fraction of the span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Imbalance,
    Open,
    Ipo,
    RegSho,
    Participant,
    Lifecycle,
    Collar,
    Halt,
    OperationalHalt,
    OperationalResume,
    RetailInterest,
    Unknown,
    Dlcr,
    Resume,
    MwcbStatus,
    FinalHalt,
    Close,
    EndSystem,
    EndMessages,
}

impl Event {
    /// Exactly how many messages the event writes.
    fn size(self, cross: usize) -> u64 {
        let c = cross as u64;
        match self {
            Event::Imbalance => c,
            Event::Open | Event::Close => 1 + c * (CROSS_FILLS as u64 + 1),
            Event::Lifecycle => 8,
            _ => 1,
        }
    }
}

/// The schedule: (fraction of the span, event), in time order.
fn schedule(unknown: bool) -> Vec<(f64, Event)> {
    let mut s: Vec<(f64, Event)> = vec![
        (0.05, Event::Ipo),
        (0.08, Event::Imbalance),
        (0.10, Event::Open),
        (0.20, Event::RegSho),
        (0.25, Event::Participant),
        (0.30, Event::Lifecycle),
        (0.35, Event::Collar),
        (0.40, Event::Halt),
        (0.42, Event::OperationalHalt),
        (0.44, Event::OperationalResume),
        (0.50, Event::RetailInterest),
        (0.55, Event::Dlcr),
        (0.60, Event::Resume),
        (0.65, Event::MwcbStatus),
        (0.80, Event::FinalHalt),
        (0.88, Event::Imbalance),
        (0.90, Event::Close),
        (0.95, Event::EndSystem),
        (1.00, Event::EndMessages),
    ];
    if unknown {
        s.push((0.50, Event::Unknown));
        // Stable: the unknown message follows the N at the same time.
        s.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    s
}

/// Messages of the preamble for `symbols` symbols.
fn preamble_size(symbols: u32) -> u64 {
    3 + 2 * u64::from(symbols)
}

fn cross_symbols(symbols: u32) -> usize {
    CROSS_SYMBOLS.min(symbols as usize)
}

/// The fewest messages a day of `symbols` symbols can have: the preamble
/// and every scheduled event, with no order flow at all.
pub fn min_messages(symbols: u32, unknown: bool) -> u64 {
    let c = cross_symbols(symbols);
    preamble_size(symbols)
        + schedule(unknown)
            .iter()
            .map(|(_, e)| e.size(c))
            .sum::<u64>()
}

/// Message density over the span, as (end of segment, relative density):
/// quiet before the open (10%) and after the close (90%), five-fold bursts
/// in the first and last 5% of market hours.
const DENSITY: [(f64, f64); 5] = [
    (0.10, 0.3),
    (0.15, 5.0),
    (0.85, 1.0),
    (0.90, 5.0),
    (1.00, 0.3),
];

/// The fraction of the span by which a fraction `u` of the messages has
/// been sent (the inverse of the density's cumulative distribution).
fn time_of(u: f64) -> f64 {
    let total: f64 = segments().map(|(a, b, d)| (b - a) * d).sum();
    let mut mass = u.clamp(0.0, 1.0) * total;
    for (a, b, d) in segments() {
        let m = (b - a) * d;
        if mass <= m {
            return a + mass / d;
        }
        mass -= m;
    }
    1.0
}

fn segments() -> impl Iterator<Item = (f64, f64, f64)> {
    let mut start = 0.0;
    DENSITY.iter().map(move |&(end, d)| {
        let s = start;
        start = end;
        (s, end, d)
    })
}

/// The deterministic day generator: same [`Config`] (seed included), same
/// bytes. Call [`Generator::step`] until it returns `false`.
#[derive(Clone, Debug)]
pub struct Generator {
    rng: Xoshiro256PlusPlus,
    total: u64,
    start_ns: u64,
    span_ns: u64,
    truncate_tail: bool,
    symbols: Vec<SymbolState>,
    // Cumulative Zipf weights over `by_rank` (symbol indices by activity).
    cdf: Vec<f64>,
    by_rank: Vec<usize>,
    orders: FxHashMap<u64, LiveOrder>,
    next_ref: u64,
    next_match: u64,
    events: VecDeque<(f64, Event)>,
    // Messages the events still to come will write.
    reserve: u64,
    preamble_done: bool,
    tail_done: bool,
    stats: GenStats,
}

impl Generator {
    /// A generator for the day `cfg` describes. `cfg` must be resolved
    /// ([`Config::resolve`] checks `messages >= min_messages`); a smaller
    /// count still makes a valid day, with more messages than asked.
    pub fn new(cfg: &Config) -> Generator {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
        let n = cfg.symbols.clamp(1, u32::from(u16::MAX));
        let symbols: Vec<SymbolState> = (0..n)
            .map(|i| {
                // $5 to $500, on a cent.
                let mid = rng.random_range(500..=50_000u32) * TICK;
                SymbolState {
                    locate: (i + 1) as u16,
                    name: symbol_name(i),
                    trades: 0,
                    volume: 0,
                    last_px: None,
                    broken_trades: 0,
                    trading_state: b'T',
                    mid,
                    live: Vec::new(),
                }
            })
            .collect();
        // Activity rank -> symbol: shuffled, so the busiest symbol is not
        // always the first in the directory.
        let mut by_rank: Vec<usize> = (0..symbols.len()).collect();
        for i in (1..by_rank.len()).rev() {
            let j = rng.random_range(0..=i);
            by_rank.swap(i, j);
        }
        let mut acc = 0.0;
        let cdf = (1..=by_rank.len())
            .map(|rank| {
                acc += 1.0 / rank as f64;
                acc
            })
            .collect();
        let events: VecDeque<(f64, Event)> = schedule(cfg.unknown_type).into();
        let c = cross_symbols(n);
        let reserve = events.iter().map(|(_, e)| e.size(c)).sum();
        Generator {
            rng,
            total: cfg.messages,
            start_ns: cfg.start_ns,
            span_ns: cfg.span_ns,
            truncate_tail: cfg.truncate_tail,
            symbols,
            cdf,
            by_rank,
            orders: FxHashMap::default(),
            next_ref: 1,
            next_match: 1,
            events,
            reserve,
            preamble_done: false,
            tail_done: false,
            stats: GenStats::default(),
        }
    }

    /// Append the next message(s) to `out`, length-prefixed: the preamble,
    /// a scheduled event, one order-flow message, or the truncated tail.
    /// `false` when the day is over (nothing appended).
    pub fn step(&mut self, out: &mut Vec<u8>) -> bool {
        if !self.preamble_done {
            self.preamble(out);
            self.preamble_done = true;
            return true;
        }
        if self.stats.messages + self.reserve < self.total {
            let u = (self.stats.messages as f64 + self.rng.random::<f64>()) / self.total as f64;
            let x = time_of(u);
            if let Some(&(at, ev)) = self.events.front() {
                if at <= x {
                    self.event(out, at, ev);
                    return true;
                }
            }
            self.order_flow(out, x);
            return true;
        }
        if let Some(&(at, ev)) = self.events.front() {
            self.event(out, at, ev);
            return true;
        }
        if self.truncate_tail && !self.tail_done {
            self.tail_done = true;
            self.tail(out);
            return true;
        }
        false
    }

    /// What was written so far.
    pub fn stats(&self) -> &GenStats {
        &self.stats
    }

    /// The symbols, in locate order (locate `i + 1` at index `i`).
    pub fn symbols(&self) -> &[SymbolState] {
        &self.symbols
    }

    /// Every live order with its reference number, in no order.
    pub fn orders(&self) -> impl Iterator<Item = (u64, &LiveOrder)> {
        self.orders.iter().map(|(&r, o)| (r, o))
    }

    /// A live order.
    pub fn order(&self, order_ref: u64) -> Option<&LiveOrder> {
        self.orders.get(&order_ref)
    }

    // ---- writing

    fn ts_at(&self, x: f64) -> u64 {
        let t = self.start_ns + (x.clamp(0.0, 1.0) * self.span_ns as f64) as u64;
        // Never earlier than the last message, never past the end.
        t.max(self.stats.last_ts.unwrap_or(0))
            .min(self.start_ns + self.span_ns)
    }

    fn emit(&mut self, out: &mut Vec<u8>, locate: u16, timestamp: u64, body: Body) {
        let m = Message::new(
            Header {
                locate,
                tracking: 0,
                timestamp,
            },
            body,
        );
        let n = m.encode(out);
        self.count(m.msg_type().byte(), n, timestamp);
    }

    fn count(&mut self, t: u8, bytes: usize, ts: u64) {
        let s = &mut self.stats;
        s.messages += 1;
        s.by_type[usize::from(t)] += 1;
        s.bytes += bytes as u64;
        s.first_ts.get_or_insert(ts);
        s.last_ts = Some(ts);
    }

    fn preamble(&mut self, out: &mut Vec<u8>) {
        let t0 = self.start_ns;
        let mut k = 0u64;
        // One microsecond apart, as the directory is sent before the open.
        let mut next = || {
            k += 1;
            t0 + (k - 1) * 1_000
        };
        self.emit(out, 0, next(), Body::SystemEvent { event: b'O' });
        self.emit(out, 0, next(), Body::SystemEvent { event: b'S' });
        // Levels 1..3 of the S&P 500 decline, Price(8): 7%, 13%, 20% below
        // a 4000.00 close.
        self.emit(
            out,
            0,
            next(),
            Body::MwcbDecline {
                level1: 372_000_000_000,
                level2: 348_000_000_000,
                level3: 320_000_000_000,
            },
        );
        for i in 0..self.symbols.len() {
            let (locate, stock) = (self.symbols[i].locate, pad_stock(&self.symbols[i].name));
            let tier = if i % 3 == 0 { b'1' } else { b'2' };
            self.emit(
                out,
                locate,
                next(),
                Body::StockDirectory {
                    stock,
                    market_category: b'Q',
                    financial_status: b'N',
                    round_lot_size: 100,
                    round_lots_only: b'N',
                    issue_classification: b'C',
                    issue_subtype: *b"Z ",
                    authenticity: b'P',
                    short_sale_threshold: b'N',
                    ipo_flag: b'N',
                    luld_tier: tier,
                    etp_flag: b'N',
                    etp_leverage: 0,
                    inverse: b'N',
                },
            );
        }
        for i in 0..self.symbols.len() {
            let ts = next();
            self.trading_action(out, i, ts, b'T');
        }
    }

    fn trading_action(&mut self, out: &mut Vec<u8>, i: usize, ts: u64, state: u8) {
        let s = &mut self.symbols[i];
        s.trading_state = state;
        let (locate, stock) = (s.locate, pad_stock(&s.name));
        let reason = if state == b'T' { *b"    " } else { *b"T1  " };
        self.emit(
            out,
            locate,
            ts,
            Body::TradingAction {
                stock,
                state,
                reserved: b' ',
                reason,
            },
        );
    }

    fn tail(&mut self, out: &mut Vec<u8>) {
        // An Add Order cut after 20 of its 36 bytes, as a file copied
        // while it was still being written ends.
        let mut b = [0u8; itch::MAX_LEN];
        let m = Message::new(
            Header {
                locate: 1,
                tracking: 0,
                timestamp: self.start_ns + self.span_ns,
            },
            Body::AddOrder {
                order_ref: self.next_ref,
                side: Side::Buy,
                shares: 100,
                stock: pad_stock(&self.symbols[0].name),
                price: TICK,
                attribution: None,
            },
        );
        let n = m.write(&mut b);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&b[..20]);
        self.stats.truncated += 1;
        self.stats.bytes += 22;
    }

    // ---- scheduled events

    fn event(&mut self, out: &mut Vec<u8>, at: f64, ev: Event) {
        self.events.pop_front();
        self.reserve -= ev.size(cross_symbols(self.symbols.len() as u32));
        let ts = self.ts_at(at);
        let n = self.symbols.len();
        let cross: Vec<usize> = self.by_rank[..cross_symbols(n as u32)].to_vec();
        // Symbols the halts use: away from the busiest, when there are
        // enough symbols.
        let halted = n / 2;
        let final_halt = n - 1;
        let quiet = self.by_rank[n - 1];
        let stock_of = |g: &Generator, i: usize| pad_stock(&g.symbols[i].name);
        match ev {
            Event::Imbalance => {
                for i in cross {
                    let (locate, mid) = (self.symbols[i].locate, self.symbols[i].mid);
                    let stock = stock_of(self, i);
                    let cross_type = if at < 0.5 { b'O' } else { b'C' };
                    self.emit(
                        out,
                        locate,
                        ts,
                        Body::Imbalance {
                            paired: 10_000,
                            imbalance: 1_200,
                            direction: b'B',
                            stock,
                            far: mid + TICK,
                            near: mid,
                            reference: mid,
                            cross_type,
                            variation: b'L',
                        },
                    );
                }
            }
            Event::Open | Event::Close => {
                let open = ev == Event::Open;
                if open {
                    self.emit(out, 0, ts, Body::SystemEvent { event: b'Q' });
                }
                for i in cross {
                    self.cross(out, i, ts, if open { b'O' } else { b'C' });
                }
                if !open {
                    self.emit(out, 0, ts, Body::SystemEvent { event: b'M' });
                }
            }
            Event::Ipo => {
                let (locate, stock) = (self.symbols[quiet].locate, stock_of(self, quiet));
                self.emit(
                    out,
                    locate,
                    ts,
                    Body::IpoQuoting {
                        stock,
                        release_time: (self.start_ns / 1_000_000_000) as u32 + 3_600,
                        qualifier: b'A',
                        price: 2_000_000,
                    },
                );
            }
            Event::RegSho => {
                let (locate, stock) = (self.symbols[quiet].locate, stock_of(self, quiet));
                self.emit(
                    out,
                    locate,
                    ts,
                    Body::RegSho {
                        stock,
                        action: b'1',
                    },
                );
            }
            Event::Participant => {
                let i = self.by_rank[0];
                let (locate, stock) = (self.symbols[i].locate, stock_of(self, i));
                self.emit(
                    out,
                    locate,
                    ts,
                    Body::ParticipantPosition {
                        mpid: *b"NITE",
                        stock,
                        primary: b'Y',
                        mode: b'N',
                        state: b'A',
                    },
                );
            }
            Event::Lifecycle => self.lifecycle(out, ts),
            Event::Collar => {
                let (locate, mid) = (self.symbols[halted].locate, self.symbols[halted].mid);
                let stock = stock_of(self, halted);
                self.emit(
                    out,
                    locate,
                    ts,
                    Body::LuldCollar {
                        stock,
                        reference: mid,
                        upper: mid + mid / 10,
                        lower: mid - mid / 10,
                        extension: 0,
                    },
                );
            }
            Event::Halt => self.trading_action(out, halted, ts, b'H'),
            Event::Resume => self.trading_action(out, halted, ts, b'T'),
            Event::FinalHalt => self.trading_action(out, final_halt, ts, b'H'),
            Event::OperationalHalt | Event::OperationalResume => {
                let (locate, stock) = (self.symbols[quiet].locate, stock_of(self, quiet));
                let action = if ev == Event::OperationalHalt {
                    b'H'
                } else {
                    b'T'
                };
                self.emit(
                    out,
                    locate,
                    ts,
                    Body::OperationalHalt {
                        stock,
                        market: b'Q',
                        action,
                    },
                );
            }
            Event::RetailInterest => {
                let i = self.by_rank[0];
                let (locate, stock) = (self.symbols[i].locate, stock_of(self, i));
                self.emit(out, locate, ts, Body::RetailInterest { stock, flag: b'A' });
            }
            Event::Unknown => {
                let mut b = [0u8; UNKNOWN_LEN];
                b[0] = UNKNOWN_TYPE;
                b[5..11].copy_from_slice(&ts.to_be_bytes()[2..]);
                out.extend_from_slice(&(UNKNOWN_LEN as u16).to_be_bytes());
                out.extend_from_slice(&b);
                self.count(UNKNOWN_TYPE, UNKNOWN_LEN + 2, ts);
                self.stats.unknown += 1;
            }
            Event::Dlcr => {
                let (locate, mid) = (self.symbols[quiet].locate, self.symbols[quiet].mid);
                let stock = stock_of(self, quiet);
                self.emit(
                    out,
                    locate,
                    ts,
                    Body::Dlcr {
                        stock,
                        open_eligibility: b'Y',
                        min_price: mid - mid / 5,
                        max_price: mid + mid / 5,
                        near_price: mid,
                        near_time: ts / 1_000_000_000,
                        lower_collar: mid - mid / 10,
                        upper_collar: mid + mid / 10,
                    },
                );
            }
            Event::MwcbStatus => self.emit(out, 0, ts, Body::MwcbStatus { level: b'1' }),
            Event::EndSystem => self.emit(out, 0, ts, Body::SystemEvent { event: b'E' }),
            Event::EndMessages => self.emit(out, 0, ts, Body::SystemEvent { event: b'C' }),
        }
    }

    /// A cross on symbol `i`: [`CROSS_FILLS`] resting orders executed in
    /// full, non-printable, at the cross price (or new orders added where
    /// the book has none left), then the `Q` with the shares matched.
    fn cross(&mut self, out: &mut Vec<u8>, i: usize, ts: u64, cross_type: u8) {
        let price = self.symbols[i].mid;
        let locate = self.symbols[i].locate;
        let mut matched = 0u64;
        for _ in 0..CROSS_FILLS {
            match self.pick_order(i) {
                Some(r) => {
                    let shares = self.orders[&r].shares;
                    self.remove_order(r);
                    let match_number = self.next_match();
                    matched += u64::from(shares);
                    self.emit(
                        out,
                        locate,
                        ts,
                        Body::ExecutedWithPrice {
                            order_ref: r,
                            shares,
                            match_number,
                            printable: false,
                            price,
                        },
                    );
                }
                None => {
                    let shares = self.lot();
                    self.add(out, i, ts, Side::Buy, price - TICK, shares, None);
                }
            }
        }
        let match_number = self.next_match();
        let s = &mut self.symbols[i];
        if matched > 0 {
            s.trades += 1;
            s.volume += matched;
            s.last_px = Some(price);
        }
        let stock = pad_stock(&s.name);
        self.emit(
            out,
            locate,
            ts,
            Body::CrossTrade {
                shares: matched,
                stock,
                price,
                match_number,
                cross_type,
            },
        );
    }

    /// One order through every order message, on the busiest symbol: `F`
    /// 500, `E` 100, printable `C` 100, `X` 100, `U` to 300 at a new price,
    /// `D`; then a `P`, and a `B` breaking the `E`.
    fn lifecycle(&mut self, out: &mut Vec<u8>, ts: u64) {
        let i = self.by_rank[0];
        let (locate, mid) = (self.symbols[i].locate, self.symbols[i].mid);
        let price = mid - TICK;
        let r = self.add(out, i, ts, Side::Buy, price, 500, Some(*b"GSCO"));
        let e_match = self.next_match();
        self.execute(out, r, 100, e_match, None, ts);
        let c_match = self.next_match();
        self.execute(out, r, 100, c_match, Some(price + TICK / 2), ts);
        self.reduce(r, 100);
        self.emit(
            out,
            locate,
            ts,
            Body::Cancel {
                order_ref: r,
                shares: 100,
            },
        );
        let r2 = self.replace(out, r, 300, price - TICK, ts);
        self.remove_order(r2);
        self.emit(out, locate, ts, Body::Delete { order_ref: r2 });
        self.trade(out, i, ts);
        self.symbols[i].broken_trades += 1;
        self.emit(
            out,
            locate,
            ts,
            Body::BrokenTrade {
                match_number: e_match,
            },
        );
    }

    // ---- order flow

    fn next_match(&mut self) -> u64 {
        self.next_match += 1;
        self.next_match - 1
    }

    /// A symbol index, by the Zipf law over activity ranks.
    fn pick_symbol(&mut self) -> usize {
        let total = self.cdf.last().copied().unwrap_or(1.0);
        let x = self.rng.random::<f64>() * total;
        let rank = self
            .cdf
            .partition_point(|&c| c < x)
            .min(self.by_rank.len() - 1);
        self.by_rank[rank]
    }

    /// A live order of symbol `i`: the one nearest the mid of three drawn
    /// at random (executions happen at the top of the book, mostly).
    fn pick_near_mid(&mut self, i: usize) -> Option<u64> {
        let s = &self.symbols[i];
        if s.live.is_empty() {
            return None;
        }
        let mut best: Option<(u32, u64)> = None;
        for _ in 0..3 {
            let r = s.live[self.rng.random_range(0..s.live.len())];
            let d = self.orders[&r].price.abs_diff(s.mid);
            match best {
                Some((bd, _)) if bd <= d => {}
                _ => best = Some((d, r)),
            }
        }
        best.map(|b| b.1)
    }

    /// Any live order of symbol `i`.
    fn pick_order(&mut self, i: usize) -> Option<u64> {
        let s = &self.symbols[i];
        if s.live.is_empty() {
            None
        } else {
            Some(s.live[self.rng.random_range(0..s.live.len())])
        }
    }

    /// Shares of a new order: round lots of 100 to 1000, one in ten an odd
    /// lot.
    fn lot(&mut self) -> u32 {
        if self.rng.random_bool(0.1) {
            self.rng.random_range(1..100)
        } else {
            100 * self.rng.random_range(1..=10)
        }
    }

    #[allow(clippy::too_many_arguments)] // one message's fields
    fn add(
        &mut self,
        out: &mut Vec<u8>,
        i: usize,
        ts: u64,
        side: Side,
        price: u32,
        shares: u32,
        attribution: Option<[u8; 4]>,
    ) -> u64 {
        let r = self.next_ref;
        self.next_ref += 1;
        let s = &mut self.symbols[i];
        s.live.push(r);
        let locate = s.locate;
        let stock = pad_stock(&s.name);
        self.orders.insert(
            r,
            LiveOrder {
                locate,
                side,
                price,
                shares,
                slot: s.live.len() - 1,
            },
        );
        self.emit(
            out,
            locate,
            ts,
            Body::AddOrder {
                order_ref: r,
                side,
                shares,
                stock,
                price,
                attribution,
            },
        );
        r
    }

    fn remove_order(&mut self, r: u64) -> Option<LiveOrder> {
        let o = self.orders.remove(&r)?;
        let live = &mut self.symbols[usize::from(o.locate) - 1].live;
        live.swap_remove(o.slot);
        if let Some(&moved) = live.get(o.slot) {
            if let Some(m) = self.orders.get_mut(&moved) {
                m.slot = o.slot;
            }
        }
        Some(o)
    }

    /// Take `shares` off order `r`; gone at zero.
    fn reduce(&mut self, r: u64, shares: u32) {
        let Some(o) = self.orders.get_mut(&r) else {
            return;
        };
        if shares < o.shares {
            o.shares -= shares;
        } else {
            self.remove_order(r);
        }
    }

    /// `E` (at the order's price) or, with `price`, a printable `C`.
    fn execute(
        &mut self,
        out: &mut Vec<u8>,
        r: u64,
        shares: u32,
        match_number: u64,
        price: Option<u32>,
        ts: u64,
    ) {
        let o = self.orders[&r];
        self.reduce(r, shares);
        let s = &mut self.symbols[usize::from(o.locate) - 1];
        s.trades += 1;
        s.volume += u64::from(shares);
        s.last_px = Some(price.unwrap_or(o.price));
        let body = match price {
            None => Body::Executed {
                order_ref: r,
                shares,
                match_number,
            },
            Some(price) => Body::ExecutedWithPrice {
                order_ref: r,
                shares,
                match_number,
                printable: true,
                price,
            },
        };
        self.emit(out, o.locate, ts, body);
    }

    /// `U`: order `r` becomes a new reference with `shares` at `price`.
    fn replace(&mut self, out: &mut Vec<u8>, r: u64, shares: u32, price: u32, ts: u64) -> u64 {
        let Some(o) = self.remove_order(r) else {
            return 0;
        };
        let new_ref = self.next_ref;
        self.next_ref += 1;
        let live = &mut self.symbols[usize::from(o.locate) - 1].live;
        live.push(new_ref);
        self.orders.insert(
            new_ref,
            LiveOrder {
                locate: o.locate,
                side: o.side,
                price,
                shares,
                slot: live.len() - 1,
            },
        );
        self.emit(
            out,
            o.locate,
            ts,
            Body::Replace {
                original_ref: r,
                new_ref,
                shares,
                price,
            },
        );
        new_ref
    }

    /// `P`: a non-displayed order executed at the mid.
    fn trade(&mut self, out: &mut Vec<u8>, i: usize, ts: u64) {
        let shares = self.lot();
        let side = if self.rng.random_bool(0.5) {
            Side::Buy
        } else {
            Side::Sell
        };
        let match_number = self.next_match();
        let s = &mut self.symbols[i];
        let (locate, price, stock) = (s.locate, s.mid, pad_stock(&s.name));
        s.trades += 1;
        s.volume += u64::from(shares);
        s.last_px = Some(price);
        self.emit(
            out,
            locate,
            ts,
            Body::Trade {
                order_ref: 0,
                side,
                shares,
                stock,
                price,
                match_number,
            },
        );
    }

    /// One message of order flow at time fraction `x`.
    fn order_flow(&mut self, out: &mut Vec<u8>, x: f64) {
        let ts = self.ts_at(x);
        let i = self.pick_symbol();
        // The mid drifts a tick now and then, never under $1.
        if self.rng.random_bool(0.05) {
            let s = &mut self.symbols[i];
            s.mid = if self.rng.random_bool(0.5) {
                s.mid + TICK
            } else {
                (s.mid - TICK).max(100 * TICK)
            };
        }
        let live = self.symbols[i].live.len();
        let trading = self.symbols[i].trading_state == b'T';
        // Adds slow down as the book fills, so depth stays realistic
        // (tens to hundreds of orders) over any length of day.
        let add_w = match live {
            0..=19 => 0.60,
            20..=299 => 0.46,
            _ => 0.30,
        };
        const REST: [(f64, u8); 6] = [
            (0.33, b'D'),
            (0.10, b'U'),
            (0.05, b'X'),
            (0.03, b'E'),
            (0.005, b'C'),
            (0.02, b'P'),
        ];
        let total = add_w + REST.iter().map(|r| r.0).sum::<f64>();
        let mut pick = self.rng.random::<f64>() * total - add_w;
        let mut action = b'A';
        if pick >= 0.0 {
            action = b'D';
            for (w, a) in REST {
                if pick < w {
                    action = a;
                    break;
                }
                pick -= w;
            }
        }
        // A halted symbol prints nothing: its executions become deletes.
        if !trading && matches!(action, b'E' | b'C' | b'P') {
            action = b'D';
        }
        if live == 0 && action != b'P' {
            action = b'A';
        }
        match action {
            b'A' => {
                let side = if self.rng.random_bool(0.5) {
                    Side::Buy
                } else {
                    Side::Sell
                };
                // Most orders near the touch: 1 + min of two draws in 0..15.
                let off = 1 + self
                    .rng
                    .random_range(0..15u32)
                    .min(self.rng.random_range(0..15u32));
                let mid = self.symbols[i].mid;
                let price = match side {
                    Side::Buy => mid.saturating_sub(off * TICK).max(TICK),
                    Side::Sell => mid + off * TICK,
                };
                let shares = self.lot();
                let attribution = self.rng.random_bool(1.0 / 6.0).then_some(*b"MPID");
                self.add(out, i, ts, side, price, shares, attribution);
            }
            b'D' => {
                if let Some(r) = self.pick_order(i) {
                    self.remove_order(r);
                    let locate = self.symbols[i].locate;
                    self.emit(out, locate, ts, Body::Delete { order_ref: r });
                }
            }
            b'X' => {
                if let Some(r) = self.pick_order(i) {
                    let have = self.orders[&r].shares;
                    let shares = if have > 1 {
                        self.rng.random_range(1..have)
                    } else {
                        have
                    };
                    self.reduce(r, shares);
                    let locate = self.symbols[i].locate;
                    self.emit(
                        out,
                        locate,
                        ts,
                        Body::Cancel {
                            order_ref: r,
                            shares,
                        },
                    );
                }
            }
            b'U' => {
                if let Some(r) = self.pick_order(i) {
                    let o = self.orders[&r];
                    let ticks = self.rng.random_range(0..=4u32);
                    let price = (o.price + ticks * TICK).saturating_sub(2 * TICK).max(TICK);
                    let shares = self.lot();
                    self.replace(out, r, shares, price, ts);
                }
            }
            b'E' | b'C' => {
                if let Some(r) = self.pick_near_mid(i) {
                    let have = self.orders[&r].shares;
                    let shares = if have > 1 && self.rng.random_bool(0.4) {
                        self.rng.random_range(1..have)
                    } else {
                        have
                    };
                    let m = self.next_match();
                    // A C executes at a price other than the display
                    // price: half a cent of price improvement.
                    let price =
                        (action == b'C').then(|| self.orders[&r].price.max(TICK) - TICK / 2);
                    self.execute(out, r, shares, m, price, ts);
                }
            }
            _ => self.trade(out, i, ts),
        }
    }
}

/// The name of symbol `i`: four capital letters from `AAAA` with a letter
/// pattern that spreads across the alphabet, so stream hashing sees
/// varied names; stable across seeds.
pub fn symbol_name(i: u32) -> String {
    // A bijection on 0..26^4 (multiplication by a number prime to 26^4),
    // so names are unique for every locate code a day can have.
    let mut n = (u64::from(i) * 7_919) % 456_976;
    let mut b = [b'A'; 4];
    for slot in b.iter_mut().rev() {
        *slot = b'A' + (n % 26) as u8;
        n /= 26;
    }
    String::from_utf8_lossy(&b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn density_maps_counts_to_times_monotonically() {
        assert_eq!(time_of(0.0), 0.0);
        assert!((time_of(1.0) - 1.0).abs() < 1e-12);
        let mut last = 0.0;
        for k in 0..=1000 {
            let t = time_of(k as f64 / 1000.0);
            assert!(t >= last);
            last = t;
        }
        // The open burst: 5% of the time holds 0.25 of 1.26 units of
        // mass, against 0.05 for 5% of the middle of the day.
        let total: f64 = segments().map(|(a, b, d)| (b - a) * d).sum();
        assert!((total - 1.26).abs() < 1e-12);
        let share = |x: f64| {
            let mut m = 0.0;
            for (s, e, d) in segments() {
                m += (x.min(e) - s).max(0.0) * d;
            }
            m / total
        };
        assert!((share(0.15) - share(0.10) - 0.25 / 1.26).abs() < 1e-9);
        assert!((share(0.55) - share(0.50) - 0.05 / 1.26).abs() < 1e-9);
        assert!((time_of(share(0.5)) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn symbol_names_are_unique() {
        let mut names: Vec<String> = (0..65_535).map(symbol_name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 65_535);
    }

    #[test]
    fn the_day_has_exactly_the_messages_asked_for() {
        for (messages, symbols, unknown) in
            [(1_000, 3, true), (5_000, 120, false), (2_000, 1, true)]
        {
            let cfg = Config {
                messages: messages.max(min_messages(symbols, unknown)),
                symbols,
                unknown_type: unknown,
                truncate_tail: true,
                ..Config::default()
            };
            let mut g = Generator::new(&cfg);
            let mut out = Vec::new();
            while g.step(&mut out) {}
            let st = g.stats();
            assert_eq!(st.messages, cfg.messages);
            assert_eq!(st.bytes, out.len() as u64);
            assert_eq!(st.first_ts, Some(cfg.start_ns));
            assert_eq!(st.last_ts, Some(cfg.start_ns + cfg.span_ns));
            for t in itch::TYPES {
                assert!(st.by_type[usize::from(t)] > 0, "no {} message", t as char);
            }
            assert_eq!(st.unknown, u64::from(unknown));
        }
    }

    #[test]
    fn the_smallest_day_has_no_order_flow_and_all_its_events() {
        let cfg = Config {
            messages: min_messages(2, false),
            symbols: 2,
            ..Config::default()
        };
        let mut g = Generator::new(&cfg);
        let mut out = Vec::new();
        while g.step(&mut out) {}
        assert_eq!(g.stats().messages, cfg.messages);
    }
}
