//! The Suicidal Snail's check at one stage of one agent (a shard on receive,
//! a worker at work start).

use shardcast_agent::watch::{Croak, SlowEvent, Stage, StageCounters};
use shardcast_proto::snail::LagLimit;
use shardcast_proto::wire::Record;

use crate::OnSlow;

/// Tracks the ages one agent sees and latches the croak when one is over
/// the limit.
#[derive(Clone, Copy, Debug)]
pub struct LagCheck {
    stage: Stage,
    index: usize,
    limit: LagLimit,
    croak: bool,
    max_age: i64,
    slow: u64,
}

impl LagCheck {
    /// A check for agent `index` of `stage`.
    pub fn new(stage: Stage, index: usize, limit: LagLimit, on_slow: OnSlow) -> LagCheck {
        LagCheck {
            stage,
            index,
            limit,
            croak: on_slow == OnSlow::Croak,
            max_age: 0,
            slow: 0,
        }
    }

    /// The limit this check judges by.
    pub fn limit(&self) -> &LagLimit {
        &self.limit
    }

    /// Judge `rec`, seen at `now` with lag `age` (its age, or in relative
    /// mode its age above the floor): publish a new largest lag, count it if
    /// over the limit, and croak (first time only) if so configured.
    #[inline]
    pub fn observe(
        &mut self,
        now: u64,
        age: i64,
        rec: &Record<'_>,
        counters: &StageCounters,
        croak: &Croak,
    ) {
        if age > self.max_age {
            self.max_age = age;
            StageCounters::publish(&counters.max_lag_ns, age as u64);
        }
        if self.limit.is_over(age) {
            self.slow += 1;
            if self.croak {
                croak.raise(SlowEvent {
                    stage: self.stage,
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
        }
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
