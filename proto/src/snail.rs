//! The Suicidal Snail's arithmetic (ZeroMQ Guide ch.5): how old is a message,
//! and is that too old. Time is passed in; this module reads no clock.

/// Age of a message in ns: `now - sent`, negative when the sender's clock is
/// ahead of ours.
#[inline]
pub fn age_ns(now_ns: u64, sent_ns: u64) -> i64 {
    now_ns.wrapping_sub(sent_ns) as i64
}

/// How lag is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LagMode {
    /// Lag is the raw age `receive time - send time`; needs synchronised clocks
    /// (same host, PTP or good NTP). The Guide's method B.
    Absolute,
}

impl LagMode {
    /// Name used in reports.
    pub fn name(&self) -> &'static str {
        match self {
            LagMode::Absolute => "absolute",
        }
    }
}

/// The lag limit of one stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LagLimit {
    /// Largest acceptable age, ns.
    pub max_lag_ns: u64,
    /// How age is judged.
    pub mode: LagMode,
}

impl LagLimit {
    /// An absolute limit of `max_lag_ms` milliseconds.
    pub fn absolute_ms(max_lag_ms: u64) -> LagLimit {
        LagLimit {
            max_lag_ns: max_lag_ms.saturating_mul(1_000_000),
            mode: LagMode::Absolute,
        }
    }

    /// `Some(age)` when a message sent at `sent_ns` and seen at `now_ns` is
    /// older than the limit.
    #[inline]
    pub fn exceeded(&self, now_ns: u64, sent_ns: u64) -> Option<u64> {
        let age = age_ns(now_ns, sent_ns);
        self.is_over(age).then_some(age as u64)
    }

    /// Whether an age (from [`age_ns`]) is over the limit.
    #[inline]
    pub fn is_over(&self, age_ns: i64) -> bool {
        age_ns > 0 && age_ns as u64 > self.max_lag_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceeds_only_past_the_limit() {
        let l = LagLimit::absolute_ms(1000);
        assert_eq!(l.max_lag_ns, 1_000_000_000);
        assert_eq!(l.exceeded(2_000_000_000, 1_000_000_000), None);
        assert!(!l.is_over(1_000_000_000));
        assert!(l.is_over(1_000_000_001));
        assert_eq!(
            l.exceeded(2_000_000_001, 1_000_000_000),
            Some(1_000_000_001)
        );
    }

    #[test]
    fn a_clock_ahead_of_ours_is_not_lag() {
        let l = LagLimit::absolute_ms(1);
        assert_eq!(age_ns(5, 10), -5);
        assert_eq!(l.exceeded(5, 10_000_000_000), None);
    }
}
