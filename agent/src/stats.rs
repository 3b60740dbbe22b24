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

/// Write `h` as HdrHistogram's percentile distribution (the `.hgrm` text of
/// `outputPercentileDistribution`, five ticks per half distance), values
/// divided by `unit_ratio` (1000.0 turns ns into us). HdrHistogram's own
/// plotter reads this format.
pub fn write_hgrm(
    w: &mut impl std::io::Write,
    h: &Histogram<u64>,
    unit_ratio: f64,
) -> std::io::Result<()> {
    let digits = usize::from(h.sigfig());
    writeln!(
        w,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / unit_ratio;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                writeln!(
                    w,
                    "{value:>12.digits$} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(w, "{value:>12.digits$} {q:>2.12} {total:>10}")?;
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / unit_ratio,
            h.stdev() / unit_ratio,
            h.max() as f64 / unit_ratio,
        )
    };
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    writeln!(
        w,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    )?;
    writeln!(
        w,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        h.len()
    )?;
    writeln!(
        w,
        "#[Buckets = {:>12}, SubBuckets     = {sub_buckets:>12}]",
        h.buckets()
    )
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

    #[test]
    fn hgrm_has_hdrhistograms_layout_and_totals() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            record(&mut h, v * 1000);
        }
        let mut out = Vec::new();
        write_hgrm(&mut out, &h, 1000.0).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().trim_start().starts_with("Value"));
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() > 20);
        // Values, percentiles and counts never go down; the last row is 100%.
        for pair in rows.windows(2) {
            assert!(
                pair[1][0] >= pair[0][0] && pair[1][1] >= pair[0][1] && pair[1][2] >= pair[0][2]
            );
        }
        let last = rows.last().unwrap();
        assert_eq!((last[1], last[2]), (1.0, 1000.0));
        assert!(text.contains("Total count    =         1000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
    }
}
