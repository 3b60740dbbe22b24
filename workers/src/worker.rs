//! The worker agent: PULL frames from every shard over inproc, do the work,
//! time it.

use crate::book::Books;
use crate::LagCheck;
use shardcast_agent::clock::{now_ns, spin_for};
use shardcast_agent::hist::{Stage as LatencyStage, StageRecorder};
use shardcast_agent::watch::{Croak, Stage, StageCounters};
use shardcast_agent::zmqx::Msg;
use shardcast_proto::shard::worker_for;
use shardcast_proto::snail::{age_ns, LagLimit, LagMode};
use shardcast_proto::wire::{Frame, Payload, StreamChecksum};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What a worker does with each record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkKind {
    /// Per-symbol top of book and trade statistics. Needs keyed fan-out so
    /// each symbol's records reach one worker, in order.
    Book,
    /// Nothing but timing: measures the pipeline itself.
    None,
    /// Fold every record into a checksum: proves exactly-once delivery
    /// (the sum over workers equals the publishers' stream checksums).
    Checksum,
}

impl WorkKind {
    /// Command-line name.
    pub fn name(&self) -> &'static str {
        match self {
            WorkKind::Book => "book",
            WorkKind::None => "none",
            WorkKind::Checksum => "checksum",
        }
    }

    /// Whether the work keeps per-symbol state and so needs keyed fan-out.
    pub fn needs_keyed(&self) -> bool {
        matches!(self, WorkKind::Book)
    }
}

/// What to do when a message is older than the lag limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnSlow {
    /// The Suicidal Snail: alarm, report, exit code 3.
    Croak,
    /// Count and warn (rate-limited), carry on.
    Warn,
}

/// How an agent waits for its next frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idle {
    /// Block in libzmq (with a timeout, to notice stop): frees the core,
    /// costs a wake-up per idle period.
    Block,
    /// Poll without blocking: lowest latency, burns the core.
    Spin,
}

/// What one receive attempt gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// A frame is in the message.
    Frame,
    /// Nothing yet (receive timeout, nothing to poll, or a signal
    /// interrupted the call): look at the stop flag and try again.
    Nothing,
    /// The socket failed with this error: stop.
    Failed(zmq::Error),
}

impl Idle {
    /// The flags a receive or send uses under this strategy.
    #[inline]
    pub fn flags(self) -> i32 {
        match self {
            Idle::Block => 0,
            Idle::Spin => zmq::DONTWAIT,
        }
    }

    /// Receive the next frame into `msg`, waiting the way this strategy
    /// waits (blocking up to the socket's receive timeout, or one poll).
    #[inline]
    pub fn recv(self, msg: &mut Msg, socket: &mut zmq::Socket) -> Received {
        match msg.recv(socket, self.flags()) {
            Ok(()) => Received::Frame,
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {
                if self == Idle::Spin {
                    std::hint::spin_loop();
                }
                Received::Nothing
            }
            Err(e) => Received::Failed(e),
        }
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
#[derive(Debug)]
pub struct WorkerResult {
    /// Records processed.
    pub processed: u64,
    /// Frames received.
    pub frames: u64,
    /// Checksum of processed records (only for [`WorkKind::Checksum`]).
    pub checksum: u64,
    /// Books (only for [`WorkKind::Book`]).
    pub books: Books,
    /// Frames that failed to parse (the shard validates, so this stays 0
    /// unless something is badly wrong).
    pub malformed: u64,
    /// Largest age of a record at work start, ns.
    pub max_lag_ns: u64,
    /// Records whose intended send time was after their completion (the
    /// publisher's clock is ahead of ours): recorded as 1 ns, counted here.
    pub clock_ahead: u64,
    /// Why the worker stopped early, if it did.
    pub error: Option<zmq::Error>,
    /// Records processed during the warm-up (counted, not timed).
    pub warmup_records: u64,
    /// Records of a new symbol refused because `max_symbols` books exist.
    pub unknown_symbol: u64,
}

/// Run a worker until `stop` is set. `pull` must have a receive timeout when
/// `idle` is [`Idle::Block`], so the loop notices `stop`.
///
/// Each message from a shard has two parts: the shard's receive time (8
/// bytes, little-endian ns; small enough to travel inline, no allocation)
/// and the frame. Per record the worker records `queue` (shard receive to
/// the record's start), `work` (the record's handling) and `end_to_end`
/// (intended send time to done) into `latency`.
pub fn run_worker(
    setup: WorkerSetup,
    mut pull: zmq::Socket,
    counters: &StageCounters,
    croak: &Croak,
    stop: &AtomicBool,
    mut latency: StageRecorder,
) -> WorkerResult {
    let mut res = WorkerResult {
        processed: 0,
        frames: 0,
        checksum: 0,
        books: Books::new(),
        malformed: 0,
        max_lag_ns: 0,
        clock_ahead: 0,
        error: None,
        warmup_records: 0,
        unknown_symbol: 0,
    };
    let mut checksum = StreamChecksum::default();
    let mut lag = LagCheck::new(Stage::Worker, setup.index, setup.limit, setup.on_slow);
    let mut stall = setup.stall;
    let max_symbols = setup.max_symbols;
    let mut msg = Msg::new();
    let mut stamp = Msg::new();
    while !stop.load(Ordering::Relaxed) {
        match setup.idle.recv(&mut stamp, &mut pull) {
            Received::Frame => {}
            Received::Nothing => {
                let _ = latency.tick(now_ns());
                continue;
            }
            Received::Failed(e) => {
                res.error = Some(e);
                break;
            }
        }
        // The rest of a multipart message is already here: no waiting.
        let rx_ns = match (stamp.more(), <[u8; 8]>::try_from(stamp.bytes())) {
            (true, Ok(b)) => u64::from_le_bytes(b),
            _ => {
                res.malformed += 1;
                continue;
            }
        };
        if let Err(e) = msg.recv(&mut pull, 0) {
            res.error = Some(e);
            break;
        }
        let Ok(frame) = Frame::parse(msg.bytes()) else {
            res.malformed += 1;
            continue;
        };
        res.frames += 1;
        let start = now_ns();
        let _ = latency.tick(start);
        let mut prev = start;
        for rec in frame.records() {
            if let Some(n) = setup.keyed_workers {
                if n > 1 && worker_for(&rec.symbol(), n) != setup.index {
                    continue;
                }
            }
            // Relative mode judges this stage by its time in our queue:
            // both ends of that are our clock, so no offset can fool it (the
            // shard judges the network part against its floor).
            let age = match setup.limit.mode {
                LagMode::Absolute => age_ns(start, rec.send_ts_ns()),
                LagMode::Relative => start.saturating_sub(rx_ns) as i64,
            };
            lag.observe(start, age, &rec, counters, croak);
            match setup.work {
                WorkKind::Book => match rec.payload() {
                    Payload::Quote(q) => match res.books.book_within(rec.symbol(), max_symbols) {
                        Some(b) => b.quote(&q),
                        None => res.unknown_symbol += 1,
                    },
                    Payload::Trade(t) => match res.books.book_within(rec.symbol(), max_symbols) {
                        Some(b) => b.trade(&t),
                        None => res.unknown_symbol += 1,
                    },
                    Payload::Heartbeat | Payload::EndOfStream { .. } => {}
                },
                WorkKind::Checksum => checksum.add(rec.digest()),
                WorkKind::None => {}
            }
            spin_for(setup.work_ns);
            let done = now_ns();
            let intended = rec.intended_ts_ns();
            if done < intended {
                res.clock_ahead += 1;
            }
            if latency.in_warmup(done) {
                latency.warmup_records += 1;
            } else {
                // This record started when the previous one finished: the
                // wait behind earlier records of its batch is queueing too.
                latency.record(LatencyStage::Queue, prev.saturating_sub(rx_ns));
                latency.record(LatencyStage::Work, done - prev);
                latency.record(LatencyStage::EndToEnd, done.saturating_sub(intended));
            }
            prev = done;
            res.processed += 1;
        }
        StageCounters::publish(&counters.done, res.processed);
        StageCounters::publish(&counters.frames, res.frames);
        StageCounters::publish(&counters.slow, lag.slow());
        if let Some((after, pause)) = stall {
            if res.processed >= after {
                stall = None;
                std::thread::sleep(pause);
            }
        }
    }
    res.warmup_records = latency.warmup_records;
    latency.flush();
    res.checksum = checksum.0;
    res.max_lag_ns = lag.max_age_ns();
    res
}
