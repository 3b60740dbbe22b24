//! The worker agent: PULL frames from every shard over inproc, do the work,
//! time it.
//!
//! The per-record logic is [`WorkerCore`], which performs no I/O (the clock
//! is passed in), so it is tested without sockets; [`run_worker`] only
//! receives and hands what arrives to it.

use crate::book::Books;
use crate::itch_book::ItchBooks;
use shardcast_agent::clock::{now_ns, spin_for};
use shardcast_agent::hist::{Stage, StageRecorder};
use shardcast_agent::idle::{Idle, Received};
use shardcast_agent::lag::{LagCheck, OnSlow};
use shardcast_agent::watch::{AgentCounters, AgentKind, Board, Croak};
use shardcast_agent::zmqx::Msg;
use shardcast_proto::shard::{worker_for, STAMP_FLAGS, STAMP_NO_JUDGE, STAMP_NO_TIME};
use shardcast_proto::snail::{age_ns, LagLimit, LagMode};
use shardcast_proto::wire::{Frame, Payload, StreamChecksum};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What a worker does with each record (`--work`). A new kind of work is a
/// variant here and an arm in [`WorkerCore::frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkKind {
    /// Per-symbol top of book and trade statistics (VWAP, volume, count).
    /// Needs keyed fan-out so each symbol's records reach one worker, in
    /// order.
    Book,
    /// Nothing but timing: measures the pipeline itself.
    None,
    /// Fold every record into a checksum: proves exactly-once processing
    /// (the sum over workers equals the publishers' stream checksums).
    Checksum,
    /// Order-by-order books from NASDAQ TotalView-ITCH 5.0 records
    /// (`shardcast-pub --source itch:PATH`): every order live by reference,
    /// price levels per symbol, prints and halts. Needs keyed fan-out.
    #[serde(rename = "itch-book")]
    ItchBook,
}

impl WorkKind {
    /// Command-line name.
    pub fn name(&self) -> &'static str {
        match self {
            WorkKind::Book => "book",
            WorkKind::None => "none",
            WorkKind::Checksum => "checksum",
            WorkKind::ItchBook => "itch-book",
        }
    }

    /// Whether the work keeps per-symbol state and so needs keyed fan-out.
    pub fn needs_keyed(&self) -> bool {
        matches!(self, WorkKind::Book | WorkKind::ItchBook)
    }
}

/// A worker's configuration.
#[derive(Clone, Copy, Debug)]
pub struct WorkerSetup {
    /// Worker index.
    pub index: usize,
    /// `Some(n)` under keyed fan-out with `n` workers: a worker skips the
    /// records of a shared batch that other workers own.
    pub keyed_workers: Option<usize>,
    /// The work.
    pub work: WorkKind,
    /// Extra busy work per record, ns (simulates a heavy consumer).
    pub work_ns: u64,
    /// The snail's lag limit at this stage.
    pub limit: LagLimit,
    /// Croak or warn.
    pub on_slow: OnSlow,
    /// Wait strategy.
    pub idle: Idle,
    /// Fault injection for tests: stall once for `.1` after `.0` records.
    pub stall: Option<(u64, Duration)>,
    /// Most symbols with a book (work = book); records of further new
    /// symbols are counted as `unknown_symbol` and not booked.
    pub max_symbols: usize,
}

/// What a worker hands back when it stops.
#[derive(Debug, Default)]
pub struct WorkerResult {
    /// Records processed.
    pub processed: u64,
    /// Frames received.
    pub frames: u64,
    /// Checksum of processed records (only for [`WorkKind::Checksum`]).
    pub checksum: u64,
    /// Books (only for [`WorkKind::Book`]).
    pub books: Books,
    /// Inproc messages that were not a stamp and a valid frame (the shard
    /// validates, so this stays 0 unless something is badly wrong; the
    /// report shows it per worker).
    pub malformed: u64,
    /// Largest age of a record at work start, ns.
    pub max_lag_ns: u64,
    /// Records older than the lag limit at work start.
    pub slow: u64,
    /// Records whose intended send time was after their completion (the
    /// publisher's clock is ahead of ours): recorded as 1 ns, counted here.
    pub clock_ahead: u64,
    /// Why the worker stopped early, if it did.
    pub error: Option<zmq::Error>,
    /// Records processed during the warm-up (counted, not timed).
    pub warmup_records: u64,
    /// Records of a new symbol refused because `max_symbols` books exist.
    pub unknown_symbol: u64,
    /// ITCH books (only for [`WorkKind::ItchBook`]): this worker's symbols,
    /// and its counters (`ItchBooks::stats`).
    pub itch: ItchBooks,
    /// Data records of a kind the work cannot use: a synthetic quote or
    /// trade under `itch-book`, an ITCH record under `book`. Counted and
    /// skipped: a publisher started with the wrong `--source` must show in
    /// the report, not crash the worker or corrupt a book.
    pub wrong_kind: u64,
}

/// Within a frame, `done` is published every this many records (a relaxed
/// store to the worker's own cache line; the monitor reads it every 5 ms).
pub const PUBLISH_EVERY: u64 = 64;

/// A worker's decisions and state, without sockets: what to do with each
/// message from a shard.
#[derive(Debug)]
pub struct WorkerCore {
    setup: WorkerSetup,
    res: WorkerResult,
    checksum: StreamChecksum,
    lag: LagCheck,
    latency: StageRecorder,
    /// When the worker started: a send time older than the time since then
    /// (and an hour) cannot be lag ([`LagLimit::is_ancient`]).
    start_ns: u64,
}

impl WorkerCore {
    /// A worker core recording its latencies into `latency`, started at
    /// `start_ns`.
    pub fn new(setup: WorkerSetup, latency: StageRecorder, start_ns: u64) -> WorkerCore {
        WorkerCore {
            setup,
            res: WorkerResult::default(),
            checksum: StreamChecksum::default(),
            lag: LagCheck::new(AgentKind::Worker, setup.index, setup.limit, setup.on_slow),
            latency,
            start_ns,
        }
    }

    /// Read the first part of a message from a shard: the shard's receive
    /// time (8 bytes, little-endian ns), which must be followed by the
    /// frame. Anything else is counted as malformed (`None`).
    #[inline]
    pub fn stamp(&mut self, part: &[u8], more: bool) -> Option<u64> {
        match (more, <[u8; 8]>::try_from(part)) {
            (true, Ok(b)) => Some(u64::from_le_bytes(b)),
            _ => {
                self.res.malformed += 1;
                None
            }
        }
    }

    /// Do the work for every record of `bytes` this worker owns, received by
    /// the shard at `rx_ns`. `clock` is read once before the first record
    /// and once after each. Per record it records `queue` (shard receive to
    /// the record's start), `work` (the record's handling) and `end_to_end`
    /// (intended send time to done).
    ///
    /// A frame of a thousand slow records can take longer than the lag
    /// limit, so the snail does not wait for its end: each record is judged
    /// at its own start (behind the records before it), a croak is raised on
    /// `croak` as soon as its record is judged, and `done` is published to
    /// `counters` every [`PUBLISH_EVERY`] records, so the monitor's watchdog
    /// sees a worker that is working through a long frame as moving.
    pub fn frame(
        &mut self,
        rx_ns: u64,
        bytes: &[u8],
        clock: &mut impl FnMut() -> u64,
        croak: &Croak,
        counters: &AgentCounters,
    ) {
        let Ok(frame) = Frame::parse(bytes) else {
            self.res.malformed += 1;
            return;
        };
        self.res.frames += 1;
        // A shard's catch-up hands over history and the live records that
        // queued meanwhile with flags in the stamp (`STAMP_*`).
        let judge = rx_ns & STAMP_NO_JUDGE == 0;
        let timed = rx_ns & STAMP_NO_TIME == 0;
        let rx_ns = rx_ns & !STAMP_FLAGS;
        let start = clock();
        let _ = self.latency.tick(start);
        let mut prev = start;
        let setup = self.setup;
        for rec in frame.records() {
            if let Some(n) = setup.keyed_workers {
                if n > 1 && worker_for(&rec.symbol(), n) != setup.index {
                    continue;
                }
            }
            // Relative mode judges this stage by its time in our queue:
            // both ends of that are our clock, so no offset can fool it (the
            // shard judges the network part against its floor).
            // An absurdly old send time is no lag (the shard counted it as
            // `ts_ancient`); judging it would croak on a corrupt stamp.
            let age = match setup.limit.mode {
                _ if !judge => None,
                LagMode::Absolute => Some(age_ns(prev, rec.send_ts_ns())).filter(|&a| {
                    !setup
                        .limit
                        .is_ancient(a, prev.saturating_sub(self.start_ns))
                }),
                LagMode::Relative => Some(prev.saturating_sub(rx_ns) as i64),
            };
            if let Some(age) = age {
                self.lag.observe(prev, age, &rec);
                if let Some(ev) = self.lag.take_croak() {
                    croak.raise(ev);
                }
            }
            match setup.work {
                WorkKind::Book => {
                    let booked = match rec.payload() {
                        Payload::Quote(q) => self
                            .res
                            .books
                            .book_within(rec.symbol(), setup.max_symbols)
                            .map(|b| {
                                b.seq.see(rec.sym_seq());
                                b.quote(&q)
                            }),
                        Payload::Trade(t) => self
                            .res
                            .books
                            .book_within(rec.symbol(), setup.max_symbols)
                            .map(|b| {
                                b.seq.see(rec.sym_seq());
                                b.trade(&t)
                            }),
                        Payload::Itch(_) => {
                            self.res.wrong_kind += 1;
                            Some(())
                        }
                        Payload::Heartbeat | Payload::EndOfStream { .. } => Some(()),
                    };
                    if booked.is_none() {
                        self.res.unknown_symbol += 1;
                    }
                }
                // The record's body is the exchange's message as the day
                // file had it: applied in place from the receive buffer,
                // nothing copied or decoded beyond what the book reads.
                WorkKind::ItchBook => match rec.itch() {
                    Some(msg) => {
                        self.res.itch.apply(msg);
                        self.res.itch.see_sym_seq(msg, rec.sym_seq());
                    }
                    None if rec.kind().is_data() => self.res.wrong_kind += 1,
                    None => {}
                },
                WorkKind::Checksum => self.checksum.add(rec.digest()),
                WorkKind::None => {}
            }
            spin_for(setup.work_ns);
            let done = clock();
            let intended = rec.intended_ts_ns();
            // Untimed: history, whose send times are from before we joined.
            if timed {
                if done < intended {
                    self.res.clock_ahead += 1;
                }
                if self.latency.in_warmup(done) {
                    self.latency.warmup_records += 1;
                } else {
                    // This record started when the previous one finished:
                    // the wait behind earlier records of its batch is
                    // queueing too.
                    self.latency
                        .record(Stage::Queue, prev.saturating_sub(rx_ns));
                    self.latency.record(Stage::Work, done - prev);
                    self.latency
                        .record(Stage::EndToEnd, done.saturating_sub(intended));
                }
            }
            prev = done;
            self.res.processed += 1;
            if self.res.processed % PUBLISH_EVERY == 0 {
                AgentCounters::publish(&counters.done, self.res.processed);
            }
        }
    }

    /// Nothing arrived: let the latency recorder move to `now`'s interval.
    #[inline]
    pub fn idle(&mut self, now: u64) {
        let _ = self.latency.tick(now);
    }

    /// Records processed so far.
    pub fn processed(&self) -> u64 {
        self.res.processed
    }

    /// Publish this worker's counters for the monitor.
    #[inline]
    pub fn publish(&self, counters: &AgentCounters) {
        AgentCounters::publish(&counters.done, self.res.processed);
        AgentCounters::publish(&counters.frames, self.res.frames);
        AgentCounters::publish(&counters.slow, self.lag.slow());
        AgentCounters::publish(&counters.max_lag_ns, self.lag.max_age_ns());
    }

    /// Stop: hand over the latency still held and the results.
    pub fn finish(mut self, error: Option<zmq::Error>) -> WorkerResult {
        self.res.warmup_records = self.latency.warmup_records;
        self.latency.flush();
        self.res.checksum = self.checksum.0;
        self.res.max_lag_ns = self.lag.max_age_ns();
        self.res.slow = self.lag.slow();
        self.res.error = error;
        self.res
    }
}

/// Run worker `setup.index` until the board's `stop_workers` is set. `pull`
/// must have a receive timeout when `idle` is [`Idle::Block`], so the loop
/// notices stop.
///
/// Each message from a shard has two parts: the shard's receive time (8
/// bytes, little-endian ns; small enough to travel inline, no allocation)
/// and the frame.
pub fn run_worker(
    setup: WorkerSetup,
    mut pull: zmq::Socket,
    board: &Board,
    latency: StageRecorder,
) -> WorkerResult {
    let counters = &board.workers[setup.index];
    let mut core = WorkerCore::new(setup, latency, now_ns());
    let mut stall = setup.stall;
    let mut msg = Msg::new();
    let mut stamp = Msg::new();
    let mut error = None;
    while !board.stop_workers.load(Ordering::Relaxed) {
        match setup.idle.recv(&mut stamp, &mut pull) {
            Received::Frame => {}
            Received::Nothing => {
                core.idle(now_ns());
                continue;
            }
            Received::Failed(e) => {
                error = Some(e);
                break;
            }
        }
        let more = stamp.more();
        let Some(rx_ns) = core.stamp(stamp.bytes(), more) else {
            continue;
        };
        // The rest of a multipart message is already here: no waiting.
        if let Err(e) = msg.recv(&mut pull, 0) {
            error = Some(e);
            break;
        }
        core.frame(rx_ns, msg.bytes(), &mut now_ns, &board.croak, counters);
        core.publish(counters);
        if let Some((after, pause)) = stall {
            if core.processed() >= after {
                stall = None;
                std::thread::sleep(pause);
            }
        }
    }
    core.finish(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_agent::hist::StageCollector;
    use shardcast_proto::itch;
    use shardcast_proto::wire::{encode, encode_batch_header, Quote, RecordMeta, Symbol};

    fn setup(index: usize, keyed: Option<usize>, work: WorkKind) -> WorkerSetup {
        WorkerSetup {
            index,
            keyed_workers: keyed,
            work,
            work_ns: 0,
            limit: LagLimit::absolute_ms(1_000),
            on_slow: OnSlow::Croak,
            idle: Idle::Block,
            stall: None,
            max_symbols: 2,
        }
    }

    fn quote(symbol: &str, seq: u64, ts: u64) -> Vec<u8> {
        let meta = RecordMeta {
            symbol: Symbol::new(symbol).unwrap(),
            publisher_id: 1,
            stream_id: 0,
            session: 1,
            seq,
            send_ts_ns: ts,
            intended_ts_ns: ts,
            sym_seq: 0,
        };
        let q = Payload::Quote(Quote {
            bid_px: 100,
            ask_px: 101,
            bid_sz: 1,
            ask_sz: 2,
        });
        let mut buf = vec![0u8; 128];
        let n = encode(&mut buf, &meta, &q, 0).unwrap();
        buf.truncate(n);
        buf
    }

    fn batch(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![0u8; shardcast_proto::wire::BATCH_HEADER_LEN];
        encode_batch_header(&mut out, records.len() as u16).unwrap();
        for r in records {
            out.extend_from_slice(r);
        }
        out
    }

    fn core(s: WorkerSetup) -> (WorkerCore, StageCollector) {
        let c = StageCollector::new(0, 0);
        (WorkerCore::new(s, c.recorder(), 0), c)
    }

    #[test]
    fn keyed_worker_skips_the_records_other_workers_own() {
        let syms = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"];
        let recs: Vec<_> = syms.iter().map(|s| quote(s, 1, 10)).collect();
        let frame = batch(&recs);
        let mut total = 0;
        for w in 0..2 {
            let (mut core, _c) = core(setup(w, Some(2), WorkKind::None));
            core.frame(
                5,
                &frame,
                &mut || 20,
                &Croak::default(),
                &AgentCounters::default(),
            );
            let mine = syms
                .iter()
                .filter(|s| worker_for(&Symbol::new(s).unwrap(), 2) == w)
                .count() as u64;
            assert_eq!(core.processed(), mine);
            total += core.processed();
        }
        assert_eq!(total, syms.len() as u64, "every record once");
    }

    #[test]
    fn a_bad_stamp_or_frame_is_counted_not_processed() {
        let (mut core, _c) = core(setup(0, None, WorkKind::Checksum));
        assert_eq!(core.stamp(&[1, 2, 3], true), None);
        assert_eq!(core.stamp(&7u64.to_le_bytes(), false), None);
        assert_eq!(core.stamp(&7u64.to_le_bytes(), true), Some(7));
        core.frame(
            7,
            b"not a frame",
            &mut || 20,
            &Croak::default(),
            &AgentCounters::default(),
        );
        let r = core.finish(None);
        assert_eq!((r.malformed, r.processed, r.frames), (3, 0, 0));
    }

    #[test]
    fn books_stop_at_max_symbols_and_count_the_rest() {
        let (mut core, _c) = core(setup(0, None, WorkKind::Book));
        let frame = batch(&[quote("AAA", 1, 1), quote("BBB", 2, 1), quote("CCC", 3, 1)]);
        core.frame(
            1,
            &frame,
            &mut || 2,
            &Croak::default(),
            &AgentCounters::default(),
        );
        let r = core.finish(None);
        assert_eq!((r.processed, r.unknown_symbol, r.books.len()), (3, 1, 2));
    }

    #[test]
    fn a_record_finished_before_its_intended_time_is_clock_ahead() {
        let (mut core, _c) = core(setup(0, None, WorkKind::None));
        core.frame(
            1,
            &quote("AAA", 1, 1_000),
            &mut || 500,
            &Croak::default(),
            &AgentCounters::default(),
        );
        assert_eq!(core.finish(None).clock_ahead, 1);
    }

    /// The snail must not wait for the end of a long frame: the first late
    /// record croaks while the rest of its frame is still being worked.
    #[test]
    fn a_late_record_croaks_before_the_rest_of_its_frame_is_worked() {
        let croak = Croak::default();
        let (mut core, _c) = core(setup(0, None, WorkKind::None));
        let frame = batch(&[quote("AAA", 1, 1), quote("BBB", 2, 1), quote("CCC", 3, 1)]);
        let late = 2_000_000_001; // 2 s after send, limit 1 s
        let mut seen = Vec::new();
        let mut clock = || {
            seen.push(croak.raised());
            late
        };
        core.frame(late, &frame, &mut clock, &croak, &AgentCounters::default());
        // Read before the first record, then after each one.
        assert_eq!(seen, [false, true, true, true]);
        assert_eq!(croak.event().unwrap().seq, 1);
    }

    /// Issue 10, finding 4: a record stamped `send_ts_ns = 1` croaked the
    /// snail. Older than the worker's run (and an hour), a stamp is no lag;
    /// ten minutes is, on a worker up for one second.
    #[test]
    fn one_ancient_timestamp_does_not_kill_the_worker() {
        const S: u64 = 1_000_000_000;
        let start = 1_700_000_000 * S;
        let now = start + S;
        let croak = Croak::default();
        let c = StageCollector::new(0, 0);
        let mut core = WorkerCore::new(setup(0, None, WorkKind::None), c.recorder(), start);
        let frame = batch(&[quote("AAA", 1, 1), quote("BBB", 2, 0)]);
        core.frame(now, &frame, &mut || now, &croak, &AgentCounters::default());
        assert!(!croak.raised());
        let late = quote("CCC", 3, now - 600 * S);
        core.frame(now, &late, &mut || now, &croak, &AgentCounters::default());
        assert_eq!(
            croak.event().map(|e| e.seq),
            Some(3),
            "minutes behind croaks"
        );
        assert_eq!(core.finish(None).processed, 3, "delivered all the same");
    }

    /// A record waits behind the records before it in its frame: it is
    /// judged at its own start, so the third of three 600 ms records is over
    /// a 1 s limit although the frame started on time.
    #[test]
    fn a_record_is_judged_at_its_own_start_not_its_frames() {
        let croak = Croak::default();
        let (mut core, _c) = core(setup(0, None, WorkKind::None));
        let frame = batch(&[quote("AAA", 1, 1), quote("BBB", 2, 1), quote("CCC", 3, 1)]);
        // Frame start, then each record's end: 0, 0.6, 1.2, 1.8 s.
        let mut times = (0..).map(|i| i * 600_000_000);
        let mut clock = || times.next().unwrap();
        core.frame(0, &frame, &mut clock, &croak, &AgentCounters::default());
        assert_eq!(croak.event().map(|e| e.seq), Some(3));
    }

    /// An ITCH record: `msg` (one ITCH message, as a day file holds it)
    /// as the body, the stock trimmed as the symbol.
    fn itch_record(symbol: &str, seq: u64, msg: &[u8]) -> Vec<u8> {
        let meta = RecordMeta {
            symbol: Symbol::new(symbol).unwrap(),
            publisher_id: 1,
            stream_id: 0,
            session: 1,
            seq,
            send_ts_ns: 1,
            intended_ts_ns: 1,
            sym_seq: 0,
        };
        let mut buf = vec![0u8; 256];
        let n = encode(&mut buf, &meta, &Payload::Itch(msg), 0).unwrap();
        buf.truncate(n);
        buf
    }

    fn itch_msg(locate: u16, body: itch::Body) -> Vec<u8> {
        let mut b = [0u8; itch::MAX_LEN];
        let n = itch::Message::new(
            itch::Header {
                locate,
                tracking: 0,
                timestamp: 1,
            },
            body,
        )
        .write(&mut b);
        b[..n].to_vec()
    }

    fn itch_add(locate: u16, stock: &str, order_ref: u64, price: u32) -> Vec<u8> {
        itch_msg(
            locate,
            itch::Body::AddOrder {
                order_ref,
                side: itch::Side::Buy,
                shares: 100,
                stock: itch::pad_stock(stock),
                price,
                attribution: None,
            },
        )
    }

    /// Each keyed worker books exactly the ITCH records of the symbols it
    /// owns, executions (which name only the order) included.
    #[test]
    fn itch_book_workers_book_their_own_symbols_only() {
        let syms = ["AAPL", "MSFT", "QQQ", "SPY", "TSLA", "ZVZZT"];
        let mut recs = Vec::new();
        for (i, s) in syms.iter().enumerate() {
            let locate = i as u16 + 1;
            let r = i as u64 + 1;
            let add = itch_add(locate, s, r, 10_000 * u32::from(locate));
            let exec = itch_msg(
                locate,
                itch::Body::Executed {
                    order_ref: r,
                    shares: 40,
                    match_number: r,
                },
            );
            for m in [add, exec] {
                let seq = recs.len() as u64 + 1;
                recs.push(itch_record(s, seq, &m));
            }
        }
        let frame = batch(&recs);
        let mut seen = std::collections::BTreeMap::new();
        for w in 0..2 {
            let (mut core, _c) = core(setup(w, Some(2), WorkKind::ItchBook));
            core.frame(
                5,
                &frame,
                &mut || 20,
                &Croak::default(),
                &AgentCounters::default(),
            );
            let r = core.finish(None);
            let summary = r.itch.summary();
            let mine: Vec<_> = syms
                .iter()
                .filter(|s| worker_for(&Symbol::new(s).unwrap(), 2) == w)
                .collect();
            assert_eq!(summary.len(), mine.len(), "worker {w}: {summary:?}");
            assert_eq!(r.itch.stats().messages, 2 * mine.len() as u64);
            assert_eq!(r.itch.stats().unknown_order, 0);
            assert_eq!(r.wrong_kind, 0);
            for (name, b) in summary {
                assert_eq!((b.bid_sz, b.trades, b.volume), (Some(60), 1, 40));
                assert!(seen.insert(name, w).is_none(), "one symbol, one worker");
            }
        }
        assert_eq!(seen.len(), syms.len());
    }

    /// The wrong feed for the work is counted and skipped, never a panic:
    /// a quote under `itch-book`, an ITCH record under `book`.
    #[test]
    fn a_record_the_work_cannot_use_is_counted_as_wrong_kind() {
        let add = itch_record("AAPL", 2, &itch_add(1, "AAPL", 1, 100));
        let frame = batch(&[quote("AAA", 1, 1), add]);
        for work in [WorkKind::ItchBook, WorkKind::Book] {
            let (mut core, _c) = core(setup(0, None, work));
            core.frame(
                1,
                &frame,
                &mut || 2,
                &Croak::default(),
                &AgentCounters::default(),
            );
            let r = core.finish(None);
            assert_eq!((r.processed, r.wrong_kind), (2, 1), "{work:?}");
            match work {
                WorkKind::ItchBook => {
                    assert_eq!(r.itch.stats().messages, 1);
                    assert!(r.books.is_empty());
                }
                _ => {
                    assert_eq!(r.itch.stats().messages, 0);
                    assert_eq!(r.books.len(), 1);
                }
            }
        }
    }

    #[test]
    fn a_long_frame_publishes_progress_before_its_end() {
        let counters = AgentCounters::default();
        let (mut core, _c) = core(setup(0, None, WorkKind::None));
        let recs: Vec<_> = (1..=PUBLISH_EVERY + 5)
            .map(|s| quote("AAA", s, 1))
            .collect();
        core.frame(0, &batch(&recs), &mut || 2, &Croak::default(), &counters);
        assert_eq!(AgentCounters::read(&counters.done), PUBLISH_EVERY);
        core.publish(&counters);
        assert_eq!(AgentCounters::read(&counters.done), PUBLISH_EVERY + 5);
    }
}
