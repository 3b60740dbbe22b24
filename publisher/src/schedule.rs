//! `--speed`: when a message of a recorded source (an ITCH day file) falls
//! due. No I/O and no clock: times are passed in, so the arithmetic is
//! tested exactly.
//!
//! The schedule is **anchored**: message `i` is due at
//! `t0 + (ts_i - ts_0) / speed`, computed from the start each time, never as
//! "the previous due time plus a gap". A sum of gaps would accumulate the
//! rounding of every division (and any lateness, if it were measured from
//! the actual sends), so a long day would drift; the anchored form is off
//! by less than a nanosecond at any point of a day, however long it runs.

use serde::{Serialize, Serializer};

/// Slowest `--speed`: a thousandth of real time. Keeps the schedule of a
/// whole day (86 400 s) within u64 nanoseconds with a wide margin.
pub const MIN_SPEED: f64 = 0.001;
/// Fastest numeric `--speed` (beyond it, use `max`).
pub const MAX_SPEED: f64 = 1_000_000.0;

/// `--speed`: how a recorded source is played.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// As fast as the subscribers take it: no schedule (the intended send
    /// time is the send time, as with `--rate 0`).
    Max,
    /// The source's own timing, this many times faster (1: real time).
    Times(f64),
}

impl Speed {
    /// The factor, or `None` for [`Speed::Max`].
    pub fn factor(self) -> Option<f64> {
        match self {
            Speed::Max => None,
            Speed::Times(x) => Some(x),
        }
    }
}

/// Parse `--speed`: `max`, or a positive number from [`MIN_SPEED`] to
/// [`MAX_SPEED`] (`1`, `10`, `2.5`).
pub fn speed_arg(s: &str) -> Result<Speed, String> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(Speed::Max);
    }
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && (MIN_SPEED..=MAX_SPEED).contains(&x) => Ok(Speed::Times(x)),
        _ => Err(format!(
            "`max` or a number from {MIN_SPEED} to {MAX_SPEED} (1 = the source's own timing, 10 = ten times faster)"
        )),
    }
}

// `"max"` or the number: what the flag took, in --print-config and the report.
impl Serialize for Speed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Speed::Max => s.serialize_str("max"),
            Speed::Times(x) => s.serialize_f64(*x),
        }
    }
}

/// The due times of one run: `t0` (ns, the publisher's clock) is when the
/// source's first timestamp `anchor_ts` falls due.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    t0: u64,
    anchor_ts: u64,
    /// 1 / speed, so a due time costs a multiplication.
    per_ns: f64,
    /// Exactly real time: integer arithmetic, no rounding at all.
    real_time: bool,
}

impl Schedule {
    /// The schedule that plays source timestamps `anchor_ts..` from `t0`,
    /// `speed` times faster than they were recorded.
    pub fn new(t0: u64, anchor_ts: u64, speed: f64) -> Schedule {
        Schedule {
            t0,
            anchor_ts,
            per_ns: 1.0 / speed,
            real_time: speed == 1.0,
        }
    }

    /// When the message stamped `ts` (source ns) is due: `t0 + (ts -
    /// anchor_ts) / speed`. A stamp before the anchor (a file whose clock
    /// steps back) is due at `t0`: it goes at once, it cannot be earlier.
    #[inline]
    pub fn due(&self, ts: u64) -> u64 {
        let since = ts.saturating_sub(self.anchor_ts);
        let offset = if self.real_time {
            since
        } else {
            // Exact for any offset within a day at any speed: a day is
            // 8.64e13 ns, far inside f64's 2^53 exact integers, and the
            // product rounds once, to within a nanosecond.
            (since as f64 * self.per_ns) as u64
        };
        self.t0.saturating_add(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_takes_max_and_positive_numbers_only() {
        assert_eq!(speed_arg("max"), Ok(Speed::Max));
        assert_eq!(speed_arg("MAX"), Ok(Speed::Max));
        assert_eq!(speed_arg("1"), Ok(Speed::Times(1.0)));
        assert_eq!(speed_arg("10"), Ok(Speed::Times(10.0)));
        assert_eq!(speed_arg("0.5"), Ok(Speed::Times(0.5)));
        for bad in ["0", "-1", "nan", "inf", "1e300", "0.0001", "fast", ""] {
            assert!(speed_arg(bad).is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_value(Speed::Max).unwrap(), "max");
        assert_eq!(serde_json::to_value(Speed::Times(10.0)).unwrap(), 10.0);
        assert_eq!(Speed::Max.factor(), None);
        assert_eq!(Speed::Times(2.0).factor(), Some(2.0));
    }

    #[test]
    fn real_time_keeps_the_files_own_gaps_exactly() {
        let s = Schedule::new(1_000, 34_200_000_000_000, 1.0);
        assert_eq!(s.due(34_200_000_000_000), 1_000);
        assert_eq!(s.due(34_200_000_000_001), 1_001);
        assert_eq!(
            s.due(34_200_000_000_000 + 3_600_000_000_007),
            3_600_000_001_007
        );
    }

    #[test]
    fn n_times_faster_divides_the_offset_from_the_anchor() {
        let s = Schedule::new(5_000, 100, 10.0);
        assert_eq!(s.due(100), 5_000);
        assert_eq!(s.due(1_100), 5_100);
        // Five seconds of the file in half a second.
        assert_eq!(s.due(100 + 5_000_000_000), 5_000 + 500_000_000);
        let slow = Schedule::new(0, 0, 0.5);
        assert_eq!(slow.due(1_000), 2_000);
    }

    #[test]
    fn the_anchored_schedule_never_drifts_over_a_whole_day() {
        // Summing per-message gaps at speed 3 would round 10^6 times; the
        // anchored due time of every message stays within 1 ns of exact.
        let (anchor, speed) = (4 * 3_600_000_000_000u64, 3.0);
        let s = Schedule::new(7, anchor, speed);
        let day = 20 * 3_600_000_000_000u64;
        let step = day / 1_000_000;
        let mut worst = 0u64;
        for i in 0..=1_000_000u64 {
            let ts = anchor + i * step;
            let exact = 7 + (u128::from(i * step) / 3) as u64;
            worst = worst.max(s.due(ts).abs_diff(exact));
        }
        assert!(worst <= 1, "drifted {worst} ns");
        assert_eq!(s.due(anchor + day), 7 + day / 3);
    }

    #[test]
    fn a_stamp_before_the_anchor_is_due_at_once() {
        let s = Schedule::new(1_000, 50_000, 2.0);
        assert_eq!(s.due(0), 1_000);
        assert_eq!(s.due(49_999), 1_000);
        let max = Schedule::new(u64::MAX - 1, 0, MIN_SPEED);
        assert_eq!(max.due(86_400_000_000_000), u64::MAX, "saturates");
    }
}
