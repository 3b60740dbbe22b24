//! The Suicidal Snail's check at one stage of one agent (a shard on receive,
//! a worker at work start), and what to do about a message over the limit.
//!
//! The check is plain arithmetic on the agent's own state: it publishes
//! nothing and raises nothing itself. The agent's I/O loop takes the latched
//! croak ([`LagCheck::take_croak`]) and raises it on the shared
//! [`Croak`](crate::watch::Croak), so the decision can be tested without
//! threads.

use crate::watch::{AgentKind, SlowEvent};
use shardcast_proto::snail::LagLimit;
use shardcast_proto::wire::Record;

/// What to do when a message is older than the lag limit (`--on-slow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnSlow {
    /// The Suicidal Snail: alarm on stderr, JSON report with a `snail`
    /// section, exit code 3.
    Croak,
    /// Count and warn (at most once a second), carry on.
    Warn,
}

/// Tracks the ages one agent sees and latches the first one over the limit.
#[derive(Clone, Copy, Debug)]
pub struct LagCheck {
    kind: AgentKind,
    index: usize,
    limit: LagLimit,
    croak: bool,
    max_age: i64,
    slow: u64,
    /// The first over-limit event, until the agent takes it.
    pending: Option<SlowEvent>,
    /// Whether one was latched already: the snail croaks once.
    latched: bool,
}

impl LagCheck {
    /// A check for agent `index` of `kind`.
    pub fn new(kind: AgentKind, index: usize, limit: LagLimit, on_slow: OnSlow) -> LagCheck {
        LagCheck {
            kind,
            index,
            limit,
            croak: on_slow == OnSlow::Croak,
            max_age: 0,
            slow: 0,
            pending: None,
            latched: false,
        }
    }

    /// Judge `rec`, seen at `now` with lag `age` (its age, or in relative
    /// mode its age above the floor): keep the largest lag, count it if over
    /// the limit, and latch the croak (first time only) if so configured.
    #[inline]
    pub fn observe(&mut self, now: u64, age: i64, rec: &Record<'_>) {
        self.max_age = self.max_age.max(age);
        if self.limit.is_over(age) {
            self.slow += 1;
            if self.croak && !self.latched {
                self.latch(now, age, rec);
            }
        }
    }

    #[cold]
    fn latch(&mut self, now: u64, age: i64, rec: &Record<'_>) {
        self.latched = true;
        self.pending = Some(SlowEvent {
            stage: self.kind,
            index: self.index,
            lag_ns: age as u64,
            publisher_id: rec.publisher_id(),
            stream_id: rec.stream_id(),
            seq: rec.seq(),
            symbol: rec.symbol().0,
            at_ns: now,
            watchdog: false,
        });
    }

    /// The croak latched since the last call, if any: the agent raises it.
    #[inline]
    pub fn take_croak(&mut self) -> Option<SlowEvent> {
        self.pending.take()
    }

    /// Records over the limit so far.
    pub fn slow(&self) -> u64 {
        self.slow
    }

    /// Largest age seen, ns.
    pub fn max_age_ns(&self) -> u64 {
        self.max_age.max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_proto::snail::LagMode;
    use shardcast_proto::wire::{encode, Frame, Payload, RecordMeta, Symbol};

    fn limit() -> LagLimit {
        LagLimit {
            max_lag_ns: 1_000,
            mode: LagMode::Absolute,
            window_ns: 0,
            max_skew_ns: 1_000_000,
        }
    }

    fn check(on_slow: OnSlow, ages: &[i64]) -> LagCheck {
        let mut buf = [0u8; 128];
        let meta = RecordMeta {
            symbol: Symbol::new("AAA").unwrap(),
            publisher_id: 1,
            stream_id: 0,
            session: 1,
            seq: 7,
            send_ts_ns: 0,
            intended_ts_ns: 0,
            sym_seq: 0,
        };
        let n = encode(&mut buf, &meta, &Payload::Heartbeat, 0).unwrap();
        let frame = Frame::parse(&buf[..n]).unwrap();
        let rec = frame.records().next().unwrap();
        let mut c = LagCheck::new(AgentKind::Worker, 2, limit(), on_slow);
        for (i, a) in ages.iter().enumerate() {
            c.observe(i as u64, *a, &rec);
        }
        c
    }

    #[test]
    fn croak_latches_the_first_over_limit_record_once() {
        let mut c = check(OnSlow::Croak, &[10, 2_000, 5_000]);
        assert_eq!(c.slow(), 2);
        assert_eq!(c.max_age_ns(), 5_000);
        let ev = c.take_croak().expect("latched");
        assert_eq!((ev.lag_ns, ev.seq, ev.index, ev.at_ns), (2_000, 7, 2, 1));
        assert_eq!(c.take_croak(), None, "taken once");
    }

    #[test]
    fn warn_counts_but_never_croaks() {
        let mut c = check(OnSlow::Warn, &[2_000, -5]);
        assert_eq!(c.slow(), 1);
        assert_eq!(c.take_croak(), None);
    }
}
