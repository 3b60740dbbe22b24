//! What hot threads tell the monitor, without locks on the hot path.
//!
//! Each agent owns a [`AgentCounters`]: it keeps plain local counters and
//! publishes them with relaxed stores (a plain `mov` on x86), padded to their
//! own cache lines so agents never false-share. Every counter has one writer,
//! the agent that owns it, except a worker's `enqueued`, which every shard
//! adds to (once per receive round). The monitor thread reads them for live
//! lines, alarms and reports. The [`Board`] bundles what the agents and the
//! monitor share: every agent's counters, the croak switch and the stop flags.
//!
//! The Suicidal Snail's croak is a [`Croak`]: the first over-limit message
//! latches its details once (a cold path, so a mutex is fine there) and the
//! monitor turns it into the alarm, the report and exit code 3.

use crossbeam::utils::CachePadded;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters of one agent (a shard or a worker).
#[derive(Debug, Default)]
pub struct AgentCounters {
    /// Records handled (a shard: forwarded to workers; a worker: processed).
    pub done: CachePadded<AtomicU64>,
    /// Frames handled.
    pub frames: CachePadded<AtomicU64>,
    /// Records older than the lag limit.
    pub slow: CachePadded<AtomicU64>,
    /// Largest message age seen (receive or work-start time minus send
    /// time), ns.
    pub max_lag_ns: CachePadded<AtomicU64>,
    /// Last data sequence seen.
    pub last_seq: CachePadded<AtomicU64>,
    /// Sequence numbers lost so far (shards; published once a second).
    pub lost: CachePadded<AtomicU64>,
    /// Records handed to this worker so far under keyed fan-out (added to
    /// by every shard, once per receive round): with `done`, the depth of
    /// the worker's queue.
    pub enqueued: CachePadded<AtomicU64>,
}

impl AgentCounters {
    /// Publish a counter value (owner thread only).
    #[inline]
    pub fn publish(cell: &AtomicU64, value: u64) {
        cell.store(value, Ordering::Relaxed);
    }

    /// Add to a counter several threads write (once per message, not per
    /// record).
    #[inline]
    pub fn add(cell: &AtomicU64, n: u64) {
        cell.fetch_add(n, Ordering::Relaxed);
    }

    /// Read a counter.
    #[inline]
    pub fn read(cell: &AtomicU64) -> u64 {
        cell.load(Ordering::Relaxed)
    }
}

/// Which kind of agent saw a message too old (the report's `stage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// A shard (SUB) thread, at receive: the network or the shard is behind.
    Shard,
    /// A worker, at the start of its work: the inproc queue is behind.
    Worker,
}

impl AgentKind {
    /// Lower-case name, as in thread names (`shard-0`) and reports.
    pub fn name(&self) -> &'static str {
        match self {
            AgentKind::Shard => "shard",
            AgentKind::Worker => "worker",
        }
    }
}

/// The message that was too old.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SlowEvent {
    /// Kind of agent that saw it.
    pub stage: AgentKind,
    /// Index of the shard or worker.
    pub index: usize,
    /// Its age, ns.
    pub lag_ns: u64,
    /// Publisher id.
    pub publisher_id: u32,
    /// Stream id.
    pub stream_id: u16,
    /// Sequence number.
    pub seq: u64,
    /// Symbol bytes.
    #[serde(skip)]
    pub symbol: [u8; 8],
    /// When it was seen (ns, CLOCK_REALTIME).
    pub at_ns: u64,
    /// Raised by the monitor's watchdog (a worker that made no progress
    /// with records queued for it), not by a record: `lag_ns` is how long
    /// it was stuck, and the record fields are zero.
    pub watchdog: bool,
}

/// The croak switch: latches the first over-limit event.
#[derive(Debug, Default)]
pub struct Croak {
    raised: AtomicBool,
    event: Mutex<Option<SlowEvent>>,
}

impl Croak {
    /// Latch `event` unless an earlier one was latched.
    #[cold]
    pub fn raise(&self, event: SlowEvent) {
        if self.raised.load(Ordering::Relaxed) {
            return;
        }
        let mut slot = self.event.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(event);
            self.raised.store(true, Ordering::Release);
        }
    }

    /// Whether the snail croaked.
    #[inline]
    pub fn raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// The latched event.
    pub fn event(&self) -> Option<SlowEvent> {
        *self.event.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the agents and the monitor share: one [`AgentCounters`] per agent,
/// the croak switch, and the stop flags (shards stop first, then workers
/// drain what was forwarded).
#[derive(Debug)]
pub struct Board {
    /// Per shard.
    pub shards: Vec<AgentCounters>,
    /// Per worker.
    pub workers: Vec<AgentCounters>,
    /// The Suicidal Snail's switch.
    pub croak: Croak,
    /// Tells the shards to stop.
    pub stop_shards: AtomicBool,
    /// Tells the workers to stop.
    pub stop_workers: AtomicBool,
}

impl Board {
    /// A board for `shards` shards and `workers` workers.
    pub fn new(shards: usize, workers: usize) -> Board {
        Board {
            shards: (0..shards).map(|_| AgentCounters::default()).collect(),
            workers: (0..workers).map(|_| AgentCounters::default()).collect(),
            croak: Croak::default(),
            stop_shards: AtomicBool::new(false),
            stop_workers: AtomicBool::new(false),
        }
    }

    /// Sum of one counter over the shards.
    pub fn shards_sum(&self, pick: impl Fn(&AgentCounters) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|c| AgentCounters::read(pick(c)))
            .sum()
    }

    /// Sum of one counter over the workers.
    pub fn workers_sum(&self, pick: impl Fn(&AgentCounters) -> &AtomicU64) -> u64 {
        self.workers
            .iter()
            .map(|c| AgentCounters::read(pick(c)))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(lag: u64) -> SlowEvent {
        SlowEvent {
            stage: AgentKind::Worker,
            index: 1,
            lag_ns: lag,
            publisher_id: 1,
            stream_id: 0,
            seq: 9,
            symbol: *b"AAA\0\0\0\0\0",
            at_ns: 5,
            watchdog: false,
        }
    }

    #[test]
    fn croak_latches_the_first_event_only() {
        let c = Croak::default();
        assert!(!c.raised());
        assert_eq!(c.event(), None);
        c.raise(ev(10));
        c.raise(ev(20));
        assert!(c.raised());
        assert_eq!(c.event().unwrap().lag_ns, 10);
    }
}
