//! Latency histograms and their summaries.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram records: 60 s. Larger values are clamped to it
/// (and still counted), so recording never fails and never allocates.
pub const MAX_TRACKABLE_NS: u64 = 60_000_000_000;
/// Significant decimal digits kept by every histogram.
pub const SIGFIGS: u8 = 3;

/// A histogram with fixed bounds (1 ns .. 60 s, 3 digits): its storage is
/// allocated once here and recording into it never allocates.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_NS, SIGFIGS)
        .expect("constant histogram bounds are valid")
}

/// Record one latency, clamped into the histogram's range.
#[inline]
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.clamp(1, MAX_TRACKABLE_NS));
}

/// The percentiles every report gives (never a mean alone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Largest value.
    pub max: u64,
    /// Smallest value.
    pub min: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Values recorded.
    pub count: u64,
}

impl LatencySummary {
    /// Summarise a histogram (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            min: h.min(),
            mean: h.mean(),
            count: h.len(),
        }
    }

    /// One human line, in microseconds.
    pub fn line(&self) -> String {
        let us = |ns: u64| ns as f64 / 1000.0;
        format!(
            "p50 {:.1} us  p90 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  p99.99 {:.1} us  max {:.1} us  (n={})",
            us(self.p50),
            us(self.p90),
            us(self.p99),
            us(self.p999),
            us(self.p9999),
            us(self.max),
            self.count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_monotone_and_clamps() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            record(&mut h, v * 1000);
        }
        record(&mut h, u64::MAX);
        record(&mut h, 0);
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 10_002);
        assert!(s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.p999);
        assert!(s.p999 <= s.p9999 && s.p9999 <= s.max);
        assert!(s.max >= MAX_TRACKABLE_NS);
        assert_eq!(LatencySummary::of(&new_histogram()).count, 0);
    }
}
