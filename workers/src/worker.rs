//! The worker agent: PULL frames from every shard over inproc, do the work,
//! time it.

use crate::book::Books;
use hdrhistogram::Histogram;
use shardcast_agent::clock::{now_ns, spin_for};
use shardcast_agent::stats;
use shardcast_agent::watch::{Croak, SlowEvent, Stage, StageCounters};
use shardcast_agent::zmqx::Msg;
use shardcast_proto::shard::worker_for;
use shardcast_proto::snail::{age_ns, LagLimit};
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
    /// Intended send time to work done, ns.
    pub end_to_end: Histogram<u64>,
    /// Books (only for [`WorkKind::Book`]).
    pub books: Books,
    /// Frames that failed to parse (the shard validates, so this stays 0
    /// unless something is badly wrong).
    pub malformed: u64,
    /// Largest age of a record at work start, ns.
    pub max_lag_ns: u64,
}

/// Run a worker until `stop` is set. `pull` must have a receive timeout when
/// `idle` is [`Idle::Block`], so the loop notices `stop`.
pub fn run_worker(
    setup: WorkerSetup,
    mut pull: zmq::Socket,
    counters: &StageCounters,
    croak: &Croak,
    stop: &AtomicBool,
) -> WorkerResult {
    let flags = match setup.idle {
        Idle::Block => 0,
        Idle::Spin => zmq::DONTWAIT,
    };
    let mut res = WorkerResult {
        processed: 0,
        frames: 0,
        checksum: 0,
        end_to_end: stats::new_histogram(),
        books: Books::new(),
        malformed: 0,
        max_lag_ns: 0,
    };
    let mut checksum = StreamChecksum::default();
    let mut slow = 0u64;
    let mut max_age = 0i64;
    let mut stall = setup.stall;
    let mut msg = Msg::new();
    while !stop.load(Ordering::Relaxed) {
        match msg.recv(&mut pull, flags) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {
                if setup.idle == Idle::Spin {
                    std::hint::spin_loop();
                }
                continue;
            }
            Err(_) => break,
        }
        let Ok(frame) = Frame::parse(msg.bytes()) else {
            res.malformed += 1;
            continue;
        };
        res.frames += 1;
        let start = now_ns();
        for rec in frame.records() {
            if let Some(n) = setup.keyed_workers {
                if n > 1 && worker_for(&rec.symbol(), n) != setup.index {
                    continue;
                }
            }
            let age = age_ns(start, rec.send_ts_ns());
            if age > max_age {
                max_age = age;
                StageCounters::publish(&counters.max_lag_ns, age as u64);
            }
            if setup.limit.is_over(age) {
                slow += 1;
                if setup.on_slow == OnSlow::Croak {
                    croak.raise(SlowEvent {
                        stage: Stage::Worker,
                        index: setup.index,
                        lag_ns: age as u64,
                        publisher_id: rec.publisher_id(),
                        stream_id: rec.stream_id(),
                        seq: rec.seq(),
                        symbol: rec.symbol().0,
                        at_ns: start,
                    });
                }
            }
            match setup.work {
                WorkKind::Book => match rec.payload() {
                    Payload::Quote(q) => res.books.book(rec.symbol()).quote(&q),
                    Payload::Trade(t) => res.books.book(rec.symbol()).trade(&t),
                    Payload::Heartbeat | Payload::EndOfStream { .. } => {}
                },
                WorkKind::Checksum => checksum.add(rec.digest()),
                WorkKind::None => {}
            }
            spin_for(setup.work_ns);
            let done = now_ns();
            stats::record(
                &mut res.end_to_end,
                done.saturating_sub(rec.intended_ts_ns()),
            );
            res.processed += 1;
        }
        StageCounters::publish(&counters.done, res.processed);
        StageCounters::publish(&counters.frames, res.frames);
        StageCounters::publish(&counters.slow, slow);
        if let Some((after, pause)) = stall {
            if res.processed >= after {
                stall = None;
                std::thread::sleep(pause);
            }
        }
    }
    res.checksum = checksum.0;
    res.max_lag_ns = max_age.max(0) as u64;
    res
}
