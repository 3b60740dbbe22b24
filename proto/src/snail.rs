//! The Suicidal Snail's arithmetic (ZeroMQ Guide ch.5): how old is a message,
//! and is that too old. Time is passed in; this module reads no clock.
//!
//! Two ways to judge age:
//! * **absolute**: age = receive time - send time. Exact on one host or with
//!   PTP; wrong by the clock offset between hosts otherwise.
//! * **relative**: lag = age - the smallest age seen from the same source in
//!   a sliding window ([`DelayFloor`]). A constant offset between two clocks
//!   shifts every age by the same amount, so it cancels; a growing backlog
//!   raises ages above the floor and is caught. The price: a backlog that
//!   builds more slowly than `max_lag / window` is absorbed into the floor,
//!   and a subscriber that starts already behind never sees that first lag.
//!
//! A send time no clock could have written is not lag: one further ahead of
//! ours than the skew limit ([`LagLimit::is_future`]) or older than anything
//! this receiver could have been sent ([`LagLimit::is_ancient`]) is counted
//! by the caller, never judged, and never fed to a [`DelayFloor`].

/// Age of a message in ns: `now - sent`, negative when the sender's clock is
/// ahead of ours.
#[inline]
pub fn age_ns(now_ns: u64, sent_ns: u64) -> i64 {
    now_ns.wrapping_sub(sent_ns) as i64
}

/// How lag is judged (`--snail-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum LagMode {
    /// Receive time minus send time: needs synchronised clocks (one host,
    /// PTP, good NTP). The Guide's method B.
    Absolute,
    /// Age above the smallest age seen from the same source within
    /// --snail-window (at the shard), and time in our own queue (at the
    /// worker): a constant clock offset between hosts does not count, a
    /// growing backlog does.
    Relative,
}

impl LagMode {
    /// Name used in reports and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            LagMode::Absolute => "absolute",
            LagMode::Relative => "relative",
        }
    }
}

/// The lag limit of one stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LagLimit {
    /// Largest acceptable lag, ns.
    pub max_lag_ns: u64,
    /// How lag is judged.
    pub mode: LagMode,
    /// Relative mode: the floor's window, ns.
    pub window_ns: u64,
    /// A send time further than this ahead of our clock is implausible (a
    /// broken or hostile clock): such a record is counted, and neither
    /// judged nor allowed to move a relative floor.
    pub max_skew_ns: u64,
}

impl LagLimit {
    /// An absolute limit of `max_lag_ms` milliseconds (window 60 s, skew
    /// 10 s).
    pub fn absolute_ms(max_lag_ms: u64) -> LagLimit {
        LagLimit {
            max_lag_ns: max_lag_ms.saturating_mul(1_000_000),
            mode: LagMode::Absolute,
            window_ns: 60_000_000_000,
            max_skew_ns: 10_000_000_000,
        }
    }

    /// Whether a lag (an age, or an age above the floor) is over the limit.
    #[inline]
    pub fn is_over(&self, lag_ns: i64) -> bool {
        lag_ns > 0 && lag_ns as u64 > self.max_lag_ns
    }

    /// Whether `age` says the sender's clock is implausibly far ahead.
    #[inline]
    pub fn is_future(&self, age_ns: i64) -> bool {
        age_ns < 0 && age_ns.unsigned_abs() > self.max_skew_ns
    }

    /// Whether `age` is too old to be lag, for a receiver that has been
    /// receiving for `up_ns`: older than `max(ANCIENT_MIN_NS, up_ns)` plus
    /// the skew limit.
    ///
    /// Why this cannot hide real lag: a PUB socket never sends a subscriber
    /// what was sent before the subscription reached it, so a real record
    /// is at most as old as the receiver's own run (plus the clocks'
    /// offset, which `max_skew_ns` bounds). A subscriber minutes or hours
    /// behind, or frozen for a day, is still judged; `send_ts_ns = 1`, a
    /// zeroed or corrupt stamp, is not. The one-hour floor keeps relative
    /// mode's promise for a receiver that just started: a publisher clock
    /// up to an hour behind ours is a constant offset, cancelled by the
    /// floor, not an absurd stamp.
    #[inline]
    pub fn is_ancient(&self, age_ns: i64, up_ns: u64) -> bool {
        age_ns > 0 && age_ns as u64 > up_ns.max(ANCIENT_MIN_NS).saturating_add(self.max_skew_ns)
    }
}

/// The smallest age [`LagLimit::is_ancient`] takes for absurd, ns: one hour.
pub const ANCIENT_MIN_NS: u64 = 3_600_000_000_000;

/// Buckets of a [`DelayFloor`] window: the floor forgets in steps of
/// `window / FLOOR_BUCKETS`.
pub const FLOOR_BUCKETS: usize = 8;

/// The smallest age seen in a sliding window, kept as per-bucket minima so
/// an update is one compare and, once per bucket length, a roll over 8
/// values. This is what relative mode subtracts: the floor is the transit
/// time plus the clock offset, as well as either can be known.
#[derive(Clone, Copy, Debug)]
pub struct DelayFloor {
    mins: [i64; FLOOR_BUCKETS],
    /// Index of the current bucket.
    cur: usize,
    /// End of the current bucket, ns (0 before the first sample).
    cur_end_ns: u64,
    /// Minimum over every bucket.
    floor: i64,
}

impl Default for DelayFloor {
    fn default() -> DelayFloor {
        DelayFloor {
            mins: [i64::MAX; FLOOR_BUCKETS],
            cur: 0,
            cur_end_ns: 0,
            floor: i64::MAX,
        }
    }
}

impl DelayFloor {
    /// Take in an age seen at `now_ns` and return the lag above the floor
    /// (never negative: the age is part of its own window).
    #[inline]
    pub fn lag(&mut self, now_ns: u64, age_ns: i64, window_ns: u64) -> i64 {
        if now_ns >= self.cur_end_ns {
            self.roll(now_ns, window_ns);
        }
        let m = &mut self.mins[self.cur];
        if age_ns < *m {
            *m = age_ns;
            if age_ns < self.floor {
                self.floor = age_ns;
            }
        }
        age_ns.saturating_sub(self.floor)
    }

    /// The current floor, if any age was seen.
    pub fn floor(&self) -> Option<i64> {
        (self.floor != i64::MAX).then_some(self.floor)
    }

    #[cold]
    fn roll(&mut self, now_ns: u64, window_ns: u64) {
        let bucket = (window_ns / FLOOR_BUCKETS as u64).max(1);
        if self.cur_end_ns == 0 {
            self.cur_end_ns = now_ns + bucket;
            return;
        }
        // Expire every bucket that ended; all of them after a long silence.
        let steps = ((now_ns - self.cur_end_ns) / bucket + 1).min(FLOOR_BUCKETS as u64);
        for _ in 0..steps {
            self.cur = (self.cur + 1) % FLOOR_BUCKETS;
            self.mins[self.cur] = i64::MAX;
        }
        self.cur_end_ns = now_ns - (now_ns - self.cur_end_ns) % bucket + bucket;
        self.floor = self.mins.iter().copied().min().unwrap_or(i64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    #[test]
    fn exceeds_only_past_the_limit() {
        let l = LagLimit::absolute_ms(1000);
        assert_eq!(l.max_lag_ns, 1_000_000_000);
        assert!(!l.is_over(age_ns(2_000_000_000, 1_000_000_000)));
        assert!(!l.is_over(1_000_000_000));
        assert!(l.is_over(1_000_000_001));
        assert!(l.is_over(age_ns(2_000_000_001, 1_000_000_000)));
    }

    #[test]
    fn a_clock_ahead_of_ours_is_not_lag() {
        let l = LagLimit::absolute_ms(1);
        assert_eq!(age_ns(5, 10), -5);
        assert!(!l.is_over(age_ns(5, 10_000_000_000)));
        assert!(!l.is_future(-(10 * S as i64)));
        assert!(l.is_future(-(10 * S as i64) - 1));
        assert!(!l.is_future(5));
    }

    #[test]
    fn an_ancient_stamp_is_not_lag_but_minutes_and_long_runs_are() {
        let l = LagLimit::absolute_ms(1000);
        let skew = l.max_skew_ns as i64;
        let hour = ANCIENT_MIN_NS as i64;
        // send_ts_ns = 1 seen today, by a receiver up one second.
        assert!(l.is_ancient(age_ns(1_700_000_000 * S, 1), S));
        // Minutes behind is lag, however young the receiver.
        assert!(!l.is_ancient(10 * 60 * S as i64, 0));
        assert!(!l.is_ancient(hour + skew, 0));
        assert!(l.is_ancient(hour + skew + 1, 0));
        // A receiver up two hours (frozen, say) can be two hours behind.
        assert!(!l.is_ancient(2 * hour, 2 * hour as u64));
        assert!(l.is_ancient(2 * hour + skew + 1, 2 * hour as u64));
        // Negative and zero ages are never ancient; nothing overflows.
        assert!(!l.is_ancient(-1, 0) && !l.is_ancient(0, u64::MAX));
        assert!(!l.is_ancient(i64::MAX, u64::MAX));
    }

    /// Feed ages `offset + backlog(t)` every ms for `secs`; return the
    /// largest lag the floor reported.
    fn run(floor: &mut DelayFloor, t0: u64, secs: u64, age: impl Fn(u64) -> i64) -> i64 {
        let mut worst = 0;
        for i in 0..secs * 1000 {
            let now = t0 + i * MS;
            worst = worst.max(floor.lag(now, age(now - t0), 60 * S));
        }
        worst
    }

    #[test]
    fn a_constant_clock_offset_is_not_lag() {
        // The publisher's clock is 5 s behind ours (ages look 5 s old) or
        // 3 s ahead (ages look negative): with 0.1 to 0.3 ms of jitter, the
        // relative lag stays at the jitter.
        for offset in [5 * S as i64, -3 * S as i64] {
            let mut f = DelayFloor::default();
            let worst = run(&mut f, 1_000 * S, 120, |t| {
                offset + 100_000 + (t % 3) as i64 * 100_000
            });
            assert!(worst <= 200_000, "offset {offset}: lag {worst}");
            assert!(LagLimit::absolute_ms(1000).is_over(5 * S as i64));
        }
    }

    #[test]
    fn a_growing_backlog_is_lag_whatever_the_offset() {
        // From 10 s on, the consumer falls behind by 0.5 s per second.
        let mut f = DelayFloor::default();
        let offset = 7 * S as i64;
        let t0 = 50 * S;
        let mut crossed = None;
        for i in 0..20_000u64 {
            let now = t0 + i * MS;
            let t = i * MS;
            let backlog = t.saturating_sub(10 * S) as i64 / 2;
            if f.lag(now, offset + backlog, 60 * S) > S as i64 && crossed.is_none() {
                crossed = Some(t);
            }
        }
        // Lag passes 1 s when the backlog does: 2 s after it starts.
        let t = crossed.expect("the backlog is caught");
        assert!((12 * S..12 * S + 10 * MS).contains(&t), "caught at {t}");
    }

    #[test]
    fn the_floor_forgets_after_the_window() {
        // A low floor from long ago (an offset that was corrected by NTP)
        // stops counting one window later.
        let mut f = DelayFloor::default();
        let t0 = 10 * S;
        assert_eq!(f.lag(t0, 100, 60 * S), 0);
        assert_eq!(f.floor(), Some(100));
        assert_eq!(f.lag(t0 + 30 * S, 2 * S as i64, 60 * S), 2 * S as i64 - 100);
        assert_eq!(f.lag(t0 + 70 * S, 2 * S as i64, 60 * S), 0);
        // After a silence longer than the window, nothing old is left.
        assert_eq!(f.lag(t0 + 500 * S, 3 * S as i64, 60 * S), 0);
        assert_eq!(f.floor(), Some(3 * S as i64));
    }
}
