//! The reader thread of a recorded or live source: reads the [`Source`] in
//! exchange order, routes each message ([`Router`]) and hands the messages
//! to the stream threads in blocks, over one bounded queue per stream.
//!
//! Why one reader and not one per stream: the source is one ordered
//! sequence (and a gzip stream can only be read once, in order); reading it
//! once and fanning out keeps each symbol's messages in exchange order on
//! its stream, and costs one read, one classification and one copy per
//! message.
//!
//! Memory is bounded: a stream has at most [`QUEUE_BLOCKS`] blocks queued,
//! one in its hands and one being filled, each [`BLOCK_BYTES`] long, and an
//! emptied block goes back to the reader to be filled again, so after the
//! first few blocks nothing is allocated. When a stream's queue is full the
//! reader waits for it (back-pressure reaches the file), but first hands
//! every other stream its partly filled block, so no stream waits for
//! messages that sit in the reader while another stream is behind.

use crate::route::{push_entry, Route, RouteStats, Router, ENTRY_HEADER};
use crate::source::{Next, Source};
use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use serde_json::{Map, Value};
use shardcast_agent::signals::StopSignal;
use shardcast_proto::itch::Frame;
use shardcast_proto::wire::Symbol;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Bytes of one block: ~800 ITCH messages, one queue operation for all of
/// them, and small enough that 32 of them per stream stay in L2/L3.
pub const BLOCK_BYTES: usize = 32 << 10;
/// Blocks a stream may have queued: 1 MiB, ~25 000 messages read ahead.
pub const QUEUE_BLOCKS: usize = 32;

/// One block of messages for one stream ([`crate::route::Entries`]).
pub(crate) struct Block {
    /// Entries, as [`push_entry`] wrote them.
    pub(crate) bytes: Vec<u8>,
    /// The schedule's anchor: the timestamp of the first message the
    /// source routed anywhere (known before any block is handed over).
    pub(crate) anchor_ts: u64,
}

/// A stream thread's end of the reader: its queue of blocks, and the way
/// back for the blocks it has emptied. Dropping it tells the reader that
/// the stream takes no more (it ended by `--duration`, a signal, ...).
pub(crate) struct StreamInput {
    rx: Receiver<Block>,
    recycle: Sender<Vec<u8>>,
    live: Arc<AtomicUsize>,
}

impl StreamInput {
    /// The next block if one is queued.
    #[inline]
    pub(crate) fn try_next(&self) -> Result<Block, TryRecvError> {
        self.rx.try_recv()
    }

    /// The next block, waiting at most `wait`.
    pub(crate) fn next_within(&self, wait: Duration) -> Result<Block, RecvTimeoutError> {
        self.rx.recv_timeout(wait)
    }

    /// Hand an emptied block back to the reader to be filled again.
    #[inline]
    pub(crate) fn give_back(&self, mut bytes: Vec<u8>) {
        bytes.clear();
        // Never full: it holds at most the blocks this stream has.
        let _ = self.recycle.try_send(bytes);
    }
}

impl Drop for StreamInput {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Release);
    }
}

/// The reader's end of one stream.
struct Outlet {
    tx: Sender<Block>,
    recycle: Receiver<Vec<u8>>,
    /// The block being filled.
    block: Vec<u8>,
    /// False once the stream has dropped its input: its messages are
    /// dropped here (and counted).
    alive: bool,
}

impl Outlet {
    /// An empty block: a recycled one, or (the first few times) a new one.
    fn fresh(&self) -> Vec<u8> {
        self.recycle
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BLOCK_BYTES))
    }

    /// Hand the block being filled over without waiting; false when the
    /// queue is full (the block stays). The reader is the queue's only
    /// sender, so a queue that is not full now has room when it sends.
    fn try_ship(&mut self, anchor_ts: u64) -> bool {
        if self.tx.is_full() && self.alive && !self.block.is_empty() {
            return false;
        }
        self.ship(anchor_ts);
        true
    }

    /// Hand the block over, waiting for room (or for the stream to go).
    fn ship(&mut self, anchor_ts: u64) {
        if self.block.is_empty() || !self.alive {
            return;
        }
        let next = self.fresh();
        let bytes = std::mem::replace(&mut self.block, next);
        if self.tx.send(Block { bytes, anchor_ts }).is_err() {
            self.alive = false;
        }
    }
}

/// What the reader tells the run when the source is done.
#[derive(Debug)]
pub(crate) struct SourceOutcome {
    /// The source's `kind`.
    pub(crate) kind: &'static str,
    /// What the router counted.
    pub(crate) stats: RouteStats,
    /// Bytes of ITCH read.
    pub(crate) bytes: u64,
    /// Records handed to the streams (a market-wide message once per
    /// stream).
    pub(crate) handed: u64,
    /// Messages not handed over because their stream had already ended.
    pub(crate) dropped: u64,
    /// How reading ended: "end" (the whole source), "count" (`--count`
    /// messages), "stopped" (every stream ended first, or a signal), or
    /// "error".
    pub(crate) end: &'static str,
    /// The read error, if reading ended on one.
    pub(crate) error: Option<String>,
    /// The source's own report keys.
    pub(crate) extra: Map<String, Value>,
}

/// The reader's ends of the streams' queues ([`channels`]).
pub(crate) struct Queues {
    txs: Vec<Sender<Block>>,
    pools: Vec<Receiver<Vec<u8>>>,
    /// Streams whose [`StreamInput`] still exists.
    live: Arc<AtomicUsize>,
}

/// One queue per stream: the reader's ends and the streams' ends.
pub(crate) fn channels(streams: usize) -> (Queues, Vec<StreamInput>) {
    let live = Arc::new(AtomicUsize::new(streams));
    let mut txs = Vec::with_capacity(streams);
    let mut pools = Vec::with_capacity(streams);
    let mut inputs = Vec::with_capacity(streams);
    for _ in 0..streams {
        let (tx, rx) = channel::bounded(QUEUE_BLOCKS);
        // Room for every block the stream can ever hold at once, so giving
        // one back never fails.
        let (recycle, pool) = channel::bounded(QUEUE_BLOCKS + 4);
        txs.push(tx);
        pools.push(pool);
        inputs.push(StreamInput {
            rx,
            recycle,
            live: Arc::clone(&live),
        });
    }
    (Queues { txs, pools, live }, inputs)
}

/// The reader: reads `src` to its end (or `count` messages), routing every
/// message onto the streams' queues.
pub(crate) struct Reader<S> {
    src: S,
    router: Router,
    outlets: Vec<Outlet>,
    count: Option<u64>,
    live: Arc<AtomicUsize>,
    signal: StopSignal,
    handed: u64,
    dropped: u64,
}

impl<S: Source> Reader<S> {
    /// A reader of `src` onto the queues from [`channels`], stopping after
    /// `count` messages if given.
    pub(crate) fn new(src: S, queues: Queues, count: Option<u64>, signal: StopSignal) -> Reader<S> {
        let Queues { txs, pools, live } = queues;
        let n = txs.len();
        Reader {
            src,
            router: Router::new(n),
            outlets: txs
                .into_iter()
                .zip(pools)
                .map(|(tx, recycle)| Outlet {
                    tx,
                    recycle,
                    block: Vec::with_capacity(BLOCK_BYTES),
                    alive: true,
                })
                .collect(),
            count,
            live,
            signal,
            handed: 0,
            dropped: 0,
        }
    }

    /// Read to the end; hand over what is packed; close the queues (the
    /// streams see the end of the source).
    pub(crate) fn run(mut self) -> SourceOutcome {
        let (end, error) = self.read();
        let anchor = self.router.stats().anchor_ts.unwrap_or(0);
        for o in &mut self.outlets {
            o.ship(anchor);
        }
        let extra = self.src.report();
        SourceOutcome {
            kind: self.src.kind(),
            stats: self.router.stats().clone(),
            bytes: self.src.bytes(),
            handed: self.handed,
            dropped: self.dropped,
            end,
            error,
            extra,
        }
        // Dropping `self.outlets` closes every queue: end of source.
    }

    fn read(&mut self) -> (&'static str, Option<String>) {
        let Reader {
            src,
            router,
            outlets,
            count,
            live,
            signal,
            handed,
            dropped,
        } = self;
        loop {
            if count.is_some_and(|c| router.stats().messages >= c) {
                return ("count", None);
            }
            let frame = match src.next() {
                Ok(Next::Frame(f)) => f,
                Ok(Next::End) => return ("end", None),
                Ok(Next::Idle) => {
                    if signal.raised() || live.load(Ordering::Acquire) == 0 {
                        return ("stopped", None);
                    }
                    let anchor = router.stats().anchor_ts.unwrap_or(0);
                    for o in outlets.iter_mut() {
                        o.try_ship(anchor);
                    }
                    continue;
                }
                Err(e) => return ("error", Some(e.to_string())),
            };
            let route = router.route(frame);
            let Frame::Message(msg) = frame else {
                continue;
            };
            let anchor = router.stats().anchor_ts.unwrap_or(0);
            match route {
                Route::Skip => {}
                Route::One(k, symbol) => {
                    push(
                        outlets,
                        usize::from(k),
                        &symbol,
                        msg,
                        anchor,
                        handed,
                        dropped,
                    );
                }
                Route::All => {
                    for k in 0..outlets.len() {
                        push(
                            outlets,
                            k,
                            &Symbol::MARKET_WIDE,
                            msg,
                            anchor,
                            handed,
                            dropped,
                        );
                    }
                }
            }
            if live.load(Ordering::Relaxed) == 0 {
                // Every stream has ended (--duration, a signal): reading
                // on would only count what nobody sends.
                return ("stopped", None);
            }
        }
    }
}

/// Append `msg` to stream `k`'s block, handing the block over first when
/// it has no room. Before waiting for a full queue, every other stream gets
/// its partly filled block.
#[inline]
fn push(
    outlets: &mut [Outlet],
    k: usize,
    symbol: &Symbol,
    msg: &[u8],
    anchor: u64,
    handed: &mut u64,
    dropped: &mut u64,
) {
    if !outlets[k].alive {
        *dropped += 1;
        return;
    }
    if outlets[k].block.len() + ENTRY_HEADER + msg.len() > BLOCK_BYTES
        && !outlets[k].try_ship(anchor)
    {
        for (i, o) in outlets.iter_mut().enumerate() {
            if i != k {
                o.try_ship(anchor);
            }
        }
        outlets[k].ship(anchor);
    }
    let o = &mut outlets[k];
    if !o.alive {
        *dropped += 1;
        return;
    }
    push_entry(&mut o.block, symbol, msg);
    *handed += 1;
}

/// Start the reader thread (`reader`, not pinned: it is one of the
/// publisher's threads with little to do per message).
pub(crate) fn spawn<S: Source + 'static>(
    reader: Reader<S>,
) -> std::io::Result<std::thread::JoinHandle<SourceOutcome>> {
    std::thread::Builder::new()
        .name("reader".into())
        .spawn(move || reader.run())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Entries;
    use shardcast_proto::itch::{self, pad_stock};

    /// A source over frames held in memory.
    struct Mem {
        buf: Vec<u8>,
        pos: usize,
        idle_every: Option<usize>,
        calls: usize,
    }

    impl Source for Mem {
        fn kind(&self) -> &'static str {
            "mem"
        }
        fn next(&mut self) -> std::io::Result<Next<'_>> {
            self.calls += 1;
            if self.idle_every.is_some_and(|n| self.calls % n == 0) {
                return Ok(Next::Idle);
            }
            let mut f = itch::Framer::new(&self.buf[self.pos..]);
            Ok(match f.next() {
                Some(frame) => {
                    self.pos += f.position();
                    Next::Frame(frame)
                }
                None => Next::End,
            })
        }
        fn bytes(&self) -> u64 {
            self.pos as u64
        }
    }

    fn framed(msgs: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            out.extend_from_slice(&(m.len() as u16).to_be_bytes());
            out.extend_from_slice(m);
        }
        out
    }

    fn directory(locate: u16, stock: &str) -> Vec<u8> {
        let mut m = vec![0u8; 39];
        m[0] = b'R';
        m[1..3].copy_from_slice(&locate.to_be_bytes());
        m[11..19].copy_from_slice(&pad_stock(stock));
        m
    }

    fn delete(locate: u16, ts: u64, order_ref: u64) -> Vec<u8> {
        let mut m = vec![0u8; 19];
        m[0] = b'D';
        m[1..3].copy_from_slice(&locate.to_be_bytes());
        m[5..11].copy_from_slice(&ts.to_be_bytes()[2..]);
        m[11..19].copy_from_slice(&order_ref.to_be_bytes());
        m
    }

    fn system(ts: u64) -> Vec<u8> {
        let mut m = vec![0u8; 12];
        m[0] = b'S';
        m[5..11].copy_from_slice(&ts.to_be_bytes()[2..]);
        m[11] = b'O';
        m
    }

    /// Drain every stream's queue until the reader closes it, each on its
    /// own thread (as the streams do: one slow drain must not hold up the
    /// others' queues).
    fn drain(inputs: Vec<StreamInput>) -> Vec<Vec<(Symbol, Vec<u8>)>> {
        let handles: Vec<_> = inputs
            .into_iter()
            .map(|i| {
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Ok(b) = i.next_within(Duration::from_secs(10)) {
                        got.extend(Entries::new(&b.bytes).map(|(s, m)| (s, m.to_vec())));
                        i.give_back(b.bytes);
                    }
                    got
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn every_message_reaches_its_symbols_stream_in_order_and_market_wide_reaches_all() {
        let mut msgs = vec![system(1)];
        let names: Vec<String> = (0..50).map(|i| format!("S{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            msgs.push(directory(i as u16 + 1, n));
        }
        // Enough deletes to fill many blocks per stream.
        for j in 0..20_000u64 {
            msgs.push(delete((j % 50) as u16 + 1, 100 + j, j));
        }
        msgs.push(system(1_000_000));
        let (queues, inputs) = channels(3);
        let signal = StopSignal::manual();
        let r = Reader::new(
            Mem {
                buf: framed(&msgs),
                pos: 0,
                idle_every: Some(997),
                calls: 0,
            },
            queues,
            None,
            signal,
        );
        let h = spawn(r).unwrap();
        let got = drain(inputs);
        let out = h.join().unwrap();
        assert_eq!(out.end, "end");
        assert_eq!(out.stats.messages, msgs.len() as u64);
        assert_eq!(
            out.handed,
            msgs.len() as u64 + 2 * 2,
            "2 market-wide x 3 streams"
        );
        for (k, stream) in got.iter().enumerate() {
            // Market-wide first and last on every stream.
            assert_eq!(stream.first().unwrap(), &(Symbol::MARKET_WIDE, system(1)));
            assert_eq!(
                stream.last().unwrap(),
                &(Symbol::MARKET_WIDE, system(1_000_000))
            );
            let mut last_ref = [None::<u64>; 51];
            for (s, m) in &stream[1..stream.len() - 1] {
                let want = shardcast_proto::shard::stream_for(s, 3);
                assert_eq!(want, k, "{s} on stream {k}");
                if m[0] == b'D' {
                    let locate = usize::from(u16::from_be_bytes([m[1], m[2]]));
                    let r = u64::from_be_bytes(m[11..19].try_into().unwrap());
                    assert!(last_ref[locate] < Some(r), "in order");
                    last_ref[locate] = Some(r);
                }
            }
        }
        let total: usize = got.iter().map(Vec::len).sum();
        assert_eq!(total as u64, out.handed);
    }

    #[test]
    fn count_ends_the_source_and_a_gone_stream_stops_the_reader() {
        let msgs: Vec<Vec<u8>> = std::iter::once(directory(1, "A"))
            .chain((0..100_000).map(|j| delete(1, j, j)))
            .collect();
        let (queues, inputs) = channels(1);
        let r = Reader::new(
            Mem {
                buf: framed(&msgs),
                pos: 0,
                idle_every: None,
                calls: 0,
            },
            queues,
            Some(1_000),
            StopSignal::manual(),
        );
        let out = spawn(r).unwrap();
        let got = drain(inputs);
        let out = out.join().unwrap();
        assert_eq!((out.end, out.stats.messages), ("count", 1_000));
        assert_eq!(got[0].len(), 1_000);

        // The stream goes away before reading anything: the reader stops
        // instead of blocking on its full queue for ever.
        let (queues, inputs) = channels(1);
        let r = Reader::new(
            Mem {
                buf: framed(&msgs),
                pos: 0,
                idle_every: None,
                calls: 0,
            },
            queues,
            None,
            StopSignal::manual(),
        );
        drop(inputs);
        let out = spawn(r).unwrap().join().unwrap();
        assert_eq!(out.end, "stopped");
        assert!(out.stats.messages < 100_001);
    }
}
