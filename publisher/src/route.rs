//! Routing a recorded or live ITCH 5.0 feed onto streams, and the blocks
//! that carry it from the reader thread to the stream threads. No I/O, no
//! clock, no allocation per message: unit-tested and benchmarked on its own
//! (`bench/benches/itch_pub.rs`).
//!
//! * [`Router`] classifies each frame of the source (table loads in
//!   [`itch::check`], no `match` on the type letter: an indirect jump per
//!   message mispredicts on every change of type), counts it, learns the
//!   locate-code-to-symbol map from Stock Directory (`R`) messages and says
//!   where the message goes: to the one stream that owns its symbol (the
//!   synthetic feed's stable hash, [`stream_for`], on the record symbol), to
//!   every stream (market-wide: locate 0), or nowhere (unknown types,
//!   malformed frames, a locate no `R` has named).
//! * A **block** is a `Vec<u8>` of entries `[len: u16 LE][symbol: 8][message:
//!   len bytes]` ([`push_entry`], [`Entries`]): the reader packs many
//!   messages into one block per stream and hands blocks over a bounded
//!   queue, so the hand-over costs one queue operation per block, not per
//!   message, and blocks are recycled, not allocated.

use shardcast_proto::itch::{self, Check, Frame, MsgType};
use shardcast_proto::shard::stream_for;
use shardcast_proto::wire::{Symbol, SYMBOL_LEN};

/// Where one message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// To this stream, as a record of this symbol.
    One(u16, Symbol),
    /// To every stream, as a record of [`Symbol::MARKET_WIDE`].
    All,
    /// Nowhere (counted in [`RouteStats`]).
    Skip,
}

/// No stream yet: the locate code has not been named by a Stock Directory.
const UNMAPPED: u16 = u16::MAX;

#[derive(Clone, Copy)]
struct Locate {
    symbol: Symbol,
    stream: u16,
}

/// What the router has seen. Every complete frame is exactly one of: a
/// message of a known type at its fixed length (in `by_type`), of a type
/// ITCH 5.0 does not define (in `by_type` and `unknown_by_type`), or
/// malformed; so `messages == sum(by_type) + malformed - truncated`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteStats {
    /// Complete frames (length prefix and the bytes it announced).
    pub messages: u64,
    /// Complete, classifiable messages by type byte (unknown types too).
    pub by_type: [u64; 256],
    /// Messages of a type ITCH 5.0 does not define: skipped by their length
    /// prefix, never sent.
    pub unknown: u64,
    /// `unknown` by type byte.
    pub unknown_by_type: [u64; 256],
    /// Frames that cannot be trusted: a known type whose length disagrees
    /// with its fixed length, an empty frame, or the truncated tail. Never
    /// sent.
    pub malformed: u64,
    /// Of `malformed`: the input ended inside a message (0 or 1).
    pub truncated: u64,
    /// First timestamp of a classifiable message, ns since midnight.
    pub first_ts: Option<u64>,
    /// Last timestamp of a classifiable message.
    pub last_ts: Option<u64>,
    /// Timestamp of the first message routed somewhere: the schedule's
    /// anchor (`--speed`), due at the streams' start.
    pub anchor_ts: Option<u64>,
    /// Messages routed to one stream.
    pub routed: u64,
    /// Market-wide messages (stock locate 0), each sent on every stream.
    pub market_wide: u64,
    /// Messages of a known type whose locate code no Stock Directory had
    /// named: no symbol, so no stream; never sent.
    pub unrouted: u64,
    /// Locate codes a Stock Directory has named (each counted once).
    pub symbols: u64,
}

impl Default for RouteStats {
    fn default() -> RouteStats {
        RouteStats {
            messages: 0,
            by_type: [0; 256],
            unknown: 0,
            unknown_by_type: [0; 256],
            malformed: 0,
            truncated: 0,
            first_ts: None,
            last_ts: None,
            anchor_ts: None,
            routed: 0,
            market_wide: 0,
            unrouted: 0,
            symbols: 0,
        }
    }
}

/// Classifies, counts and routes the frames of an ITCH source onto
/// `streams` streams. Feed it every frame in source order.
pub struct Router {
    streams: usize,
    /// Indexed by stock locate: a flat table (640 KiB), so routing is one
    /// load, no hashing per message.
    locates: Box<[Locate]>,
    stats: RouteStats,
}

impl Router {
    /// A router onto `streams` streams (1 to 65535).
    pub fn new(streams: usize) -> Router {
        assert!(
            (1..usize::from(UNMAPPED)).contains(&streams),
            "1 to 65534 streams"
        );
        Router {
            streams,
            locates: vec![
                Locate {
                    symbol: Symbol::CONTROL,
                    stream: UNMAPPED,
                };
                1 << 16
            ]
            .into_boxed_slice(),
            stats: RouteStats::default(),
        }
    }

    /// What has been seen so far.
    pub fn stats(&self) -> &RouteStats {
        &self.stats
    }

    /// Count `frame` and say where it goes. A Stock Directory (`R`) names
    /// its locate code first, so it is routed to its own symbol's stream.
    #[inline]
    pub fn route(&mut self, frame: Frame<'_>) -> Route {
        let Frame::Message(m) = frame else {
            self.stats.truncated += 1;
            self.stats.malformed += 1;
            return Route::Skip;
        };
        self.stats.messages += 1;
        match itch::check(m) {
            Check::Ok(t) => {
                self.stats.by_type[usize::from(t.byte())] += 1;
                // A known type at its fixed length holds the whole header.
                let (locate, ts) = header(m);
                self.saw(ts);
                if t == MsgType::StockDirectory {
                    self.learn(locate, m);
                }
                if locate == 0 {
                    self.stats.market_wide += 1;
                    self.anchor(ts);
                    return Route::All;
                }
                let l = self.locates[usize::from(locate)];
                if l.stream == UNMAPPED {
                    self.stats.unrouted += 1;
                    return Route::Skip;
                }
                self.stats.routed += 1;
                self.anchor(ts);
                Route::One(l.stream, l.symbol)
            }
            Check::Unknown(t) => {
                self.stats.by_type[usize::from(t)] += 1;
                self.stats.unknown += 1;
                self.stats.unknown_by_type[usize::from(t)] += 1;
                if m.len() >= itch::HEADER_LEN {
                    self.saw(header(m).1);
                }
                Route::Skip
            }
            Check::Malformed | Check::Truncated => {
                self.stats.malformed += 1;
                Route::Skip
            }
        }
    }

    #[inline]
    fn saw(&mut self, ts: u64) {
        if self.stats.first_ts.is_none() {
            self.stats.first_ts = Some(ts);
        }
        self.stats.last_ts = Some(ts);
    }

    #[inline]
    fn anchor(&mut self, ts: u64) {
        if self.stats.anchor_ts.is_none() {
            self.stats.anchor_ts = Some(ts);
        }
    }

    /// A Stock Directory names `locate`: its symbol and stream from now on.
    /// An all-space stock unnames it.
    #[cold]
    fn learn(&mut self, locate: u16, m: &[u8]) {
        if locate == 0 {
            return;
        }
        let Some(stock) = m
            .get(11..11 + SYMBOL_LEN)
            .and_then(|s| s.first_chunk::<SYMBOL_LEN>())
        else {
            return;
        };
        let slot = &mut self.locates[usize::from(locate)];
        match Symbol::from_itch_stock(stock) {
            Some(symbol) => {
                if slot.stream == UNMAPPED {
                    self.stats.symbols += 1;
                }
                *slot = Locate {
                    symbol,
                    stream: stream_for(&symbol, self.streams) as u16,
                };
            }
            None => slot.stream = UNMAPPED,
        }
    }
}

/// Stock locate and timestamp of a message of at least
/// [`itch::HEADER_LEN`] bytes (0s otherwise: callers check the length).
#[inline]
fn header(m: &[u8]) -> (u16, u64) {
    match m.first_chunk::<{ itch::HEADER_LEN }>() {
        Some(h) => (
            u16::from_be_bytes([h[1], h[2]]),
            u64::from_be_bytes([0, 0, h[5], h[6], h[7], h[8], h[9], h[10]]),
        ),
        None => (0, 0),
    }
}

/// Bytes of an entry before its message: the length and the symbol.
pub const ENTRY_HEADER: usize = 2 + SYMBOL_LEN;

/// Append one message for `symbol` to a block. The caller keeps the block
/// within its capacity (so this never allocates), and messages within
/// `u16::MAX` bytes (every ITCH message is: its length prefix is a u16).
#[inline]
pub fn push_entry(block: &mut Vec<u8>, symbol: &Symbol, msg: &[u8]) {
    debug_assert!(msg.len() <= usize::from(u16::MAX));
    block.extend_from_slice(&(msg.len() as u16).to_le_bytes());
    block.extend_from_slice(&symbol.0);
    block.extend_from_slice(msg);
}

/// The entries of a block, in the order they were pushed: `(symbol,
/// message)`. Stops at the first entry that does not fit (never the case
/// for a block built by [`push_entry`]).
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Entries<'a> {
    /// The entries of `block`.
    pub fn new(block: &'a [u8]) -> Entries<'a> {
        Entries { rest: block }
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = (Symbol, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<(Symbol, &'a [u8])> {
        let (head, rest) = self.rest.split_first_chunk::<ENTRY_HEADER>()?;
        let n = usize::from(u16::from_le_bytes([head[0], head[1]]));
        let msg = rest.get(..n)?;
        let mut symbol = [0u8; SYMBOL_LEN];
        symbol.copy_from_slice(&head[2..]);
        self.rest = &rest[n..];
        Some((Symbol(symbol), msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_proto::itch::{pad_stock, Body, Header, Message};

    fn msg(locate: u16, ts: u64, body: Body) -> Vec<u8> {
        let mut out = Vec::new();
        Message::new(
            Header {
                locate,
                tracking: 0,
                timestamp: ts,
            },
            body,
        )
        .encode(&mut out);
        // `encode` writes the length prefix too: keep the message only.
        out.split_off(itch::PREFIX_LEN)
    }

    fn directory(locate: u16, stock: &str, ts: u64) -> Vec<u8> {
        let mut m = vec![0u8; 39];
        m[0] = b'R';
        m[1..3].copy_from_slice(&locate.to_be_bytes());
        m[5..11].copy_from_slice(&ts.to_be_bytes()[2..]);
        m[11..19].copy_from_slice(&pad_stock(stock));
        m
    }

    fn add(locate: u16, ts: u64, order_ref: u64) -> Vec<u8> {
        msg(
            locate,
            ts,
            Body::AddOrder {
                order_ref,
                side: itch::Side::Buy,
                shares: 100,
                stock: pad_stock("X"),
                price: 1_000_000,
                attribution: None,
            },
        )
    }

    fn system(ts: u64) -> Vec<u8> {
        msg(0, ts, Body::SystemEvent { event: b'O' })
    }

    #[test]
    fn a_symbol_goes_to_the_stream_its_name_hashes_to_once_its_directory_came() {
        let mut r = Router::new(4);
        // Before its directory: no symbol, nowhere to go.
        assert_eq!(r.route(Frame::Message(&add(7, 10, 1))), Route::Skip);
        assert_eq!(r.stats().unrouted, 1);
        let aapl = Symbol::new("AAPL").unwrap();
        let want = Route::One(stream_for(&aapl, 4) as u16, aapl);
        assert_eq!(
            want,
            Route::One(2, aapl),
            "PROTOCOL.md 6: AAPL is stream 2 of 4"
        );
        // The directory itself goes to its symbol's stream.
        assert_eq!(r.route(Frame::Message(&directory(7, "AAPL", 11))), want);
        for i in 0..3 {
            assert_eq!(r.route(Frame::Message(&add(7, 12 + i, 2 + i))), want);
        }
        let msft = Symbol::new("MSFT").unwrap();
        r.route(Frame::Message(&directory(9, "MSFT", 20)));
        assert_eq!(
            r.route(Frame::Message(&add(9, 21, 9))),
            Route::One(0, msft),
            "PROTOCOL.md 6: MSFT is stream 0 of 4"
        );
        let st = r.stats();
        assert_eq!((st.routed, st.unrouted, st.symbols), (6, 1, 2));
        assert_eq!(st.by_type[usize::from(b'A')], 5);
        assert_eq!(st.by_type[usize::from(b'R')], 2);
        assert_eq!(st.anchor_ts, Some(11), "the first message routed anywhere");
        assert_eq!((st.first_ts, st.last_ts), (Some(10), Some(21)));
    }

    #[test]
    fn market_wide_messages_go_to_every_stream() {
        let mut r = Router::new(2);
        assert_eq!(r.route(Frame::Message(&system(5))), Route::All);
        assert_eq!(r.stats().market_wide, 1);
        assert_eq!(r.stats().anchor_ts, Some(5));
        // A directory for locate 0 names nothing: still market-wide.
        assert_eq!(r.route(Frame::Message(&directory(0, "ZZZ", 6))), Route::All);
        assert_eq!(r.stats().symbols, 0);
    }

    #[test]
    fn unknown_malformed_and_truncated_frames_are_counted_and_go_nowhere() {
        let mut r = Router::new(2);
        let mut unknown = vec![0u8; 20];
        unknown[0] = b'z';
        unknown[5..11].copy_from_slice(&77u64.to_be_bytes()[2..]);
        assert_eq!(r.route(Frame::Message(&unknown)), Route::Skip);
        let mut short_add = add(1, 1, 1);
        short_add.pop();
        assert_eq!(r.route(Frame::Message(&short_add)), Route::Skip);
        assert_eq!(r.route(Frame::Message(&[])), Route::Skip);
        assert_eq!(
            r.route(Frame::Message(&[0x01])),
            Route::Skip,
            "unknown, no header"
        );
        assert_eq!(r.route(Frame::Truncated(&[0, 36, b'A'])), Route::Skip);
        let st = r.stats();
        assert_eq!(st.messages, 4, "the truncated tail is not a message");
        assert_eq!((st.unknown, st.malformed, st.truncated), (2, 3, 1));
        assert_eq!(st.unknown_by_type[usize::from(b'z')], 1);
        assert_eq!(st.unknown_by_type[1], 1);
        assert_eq!(st.by_type[usize::from(b'z')], 1);
        assert_eq!(
            st.by_type[usize::from(b'A')],
            0,
            "a malformed A is not an A"
        );
        assert_eq!((st.first_ts, st.last_ts), (Some(77), Some(77)));
        assert_eq!(st.anchor_ts, None, "nothing routed");
        let sum: u64 = st.by_type.iter().sum();
        assert_eq!(st.messages, sum + st.malformed - st.truncated);
    }

    #[test]
    fn a_directory_renaming_a_locate_moves_it_and_a_blank_one_unnames_it() {
        let mut r = Router::new(4);
        r.route(Frame::Message(&directory(3, "AAPL", 1)));
        r.route(Frame::Message(&directory(3, "MSFT", 2)));
        let msft = Symbol::new("MSFT").unwrap();
        assert_eq!(r.route(Frame::Message(&add(3, 3, 1))), Route::One(0, msft));
        assert_eq!(r.stats().symbols, 1, "one locate code");
        r.route(Frame::Message(&directory(3, "", 4)));
        assert_eq!(r.route(Frame::Message(&add(3, 5, 2))), Route::Skip);
    }

    #[test]
    fn one_stream_takes_everything() {
        let mut r = Router::new(1);
        for (i, s) in ["A", "B", "C", "D"].iter().enumerate() {
            let locate = i as u16 + 1;
            r.route(Frame::Message(&directory(locate, s, 1)));
            let Route::One(k, _) = r.route(Frame::Message(&add(locate, 2, 1))) else {
                panic!("routed");
            };
            assert_eq!(k, 0);
        }
    }

    #[test]
    fn blocks_give_back_what_was_pushed_in_order() {
        let mut block = Vec::with_capacity(1024);
        let a = Symbol::new("AAPL").unwrap();
        let messages = [add(1, 1, 1), system(2), directory(2, "MSFT", 3)];
        for m in &messages {
            push_entry(&mut block, &a, m);
        }
        push_entry(&mut block, &Symbol::MARKET_WIDE, &messages[1]);
        let got: Vec<(Symbol, &[u8])> = Entries::new(&block).collect();
        assert_eq!(got.len(), 4);
        for (g, m) in got.iter().zip(&messages) {
            assert_eq!((g.0, g.1), (a, &m[..]));
        }
        assert_eq!(got[3], (Symbol::MARKET_WIDE, &messages[1][..]));
        // A cut block yields what is whole and stops.
        let cut = &block[..block.len() - 1];
        assert_eq!(Entries::new(cut).count(), 3);
        assert_eq!(Entries::new(&[]).count(), 0);
    }
}
