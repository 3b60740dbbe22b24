//! Schedule lag by position in the run, for issue 12's check that a long
//! replay does not fall further behind as it goes: "`behind_schedule_ns`
//! p99 in the last tenth of the run no larger than in the first".
//!
//! The run's length is known only at its end (a gzipped day file cannot be
//! measured before it is read), so samples go into [`BUCKETS`] histograms
//! by their due offset from the start, each `width` ns wide; a sample past
//! the last bucket doubles the width, merging buckets pairwise. At the end
//! the buckets lie within a sixteenth to a thirty-second of the run each,
//! and a "tenth" is the buckets wholly inside it (at least one). No I/O, no
//! clock; recording never allocates (the histograms have fixed bounds).

use hdrhistogram::Histogram;
use shardcast_agent::stats;

/// Buckets kept: a tenth of the run is then two to three whole buckets.
pub const BUCKETS: usize = 32;

/// Lag histograms by due offset (see the module).
#[derive(Debug)]
pub struct Tenths {
    width: u64,
    buckets: Vec<Histogram<u64>>,
    /// The largest due offset recorded.
    end: u64,
}

impl Default for Tenths {
    fn default() -> Tenths {
        Tenths::new()
    }
}

impl Tenths {
    /// Empty, 1 ms per bucket to start with.
    pub fn new() -> Tenths {
        Tenths {
            width: 1_000_000,
            buckets: (0..BUCKETS).map(|_| stats::new_histogram()).collect(),
            end: 0,
        }
    }

    /// Record `lag_ns` for a record due `offset_ns` after the start.
    #[inline]
    pub fn record(&mut self, offset_ns: u64, lag_ns: u64) {
        while offset_ns / self.width >= BUCKETS as u64 {
            self.widen();
        }
        self.end = self.end.max(offset_ns);
        stats::record(&mut self.buckets[(offset_ns / self.width) as usize], lag_ns);
    }

    /// Double the width: bucket `i` becomes buckets `2i` and `2i + 1`.
    #[cold]
    fn widen(&mut self) {
        for i in 0..BUCKETS / 2 {
            let (lo, hi) = (2 * i, 2 * i + 1);
            let merged = {
                let mut h = std::mem::replace(&mut self.buckets[lo], stats::new_histogram());
                let _ = h.add(&self.buckets[hi]);
                h
            };
            self.buckets[hi].reset();
            self.buckets[i] = merged;
        }
        for b in &mut self.buckets[BUCKETS / 2..] {
            b.reset();
        }
        self.width = self.width.saturating_mul(2);
    }

    /// Lags of the first tenth of the run (offsets `[0, end / 10)`) and of
    /// the last (`[end - end / 10, end]`), each as the whole buckets inside
    /// it (at least the first, or the last, bucket). Empty when nothing was
    /// recorded.
    pub fn first_and_last(&self) -> (Histogram<u64>, Histogram<u64>) {
        let (mut first, mut last) = (stats::new_histogram(), stats::new_histogram());
        let tenth = self.end / 10;
        let last_bucket = (self.end / self.width) as usize;
        for (i, b) in self.buckets.iter().enumerate().take(last_bucket + 1) {
            let (lo, hi) = (i as u64 * self.width, (i as u64 + 1) * self.width);
            if i == 0 || hi <= tenth {
                let _ = first.add(b);
            }
            if i == last_bucket || lo >= self.end - tenth {
                let _ = last.add(b);
            }
        }
        (first, last)
    }

    /// Fold another stream's lags in, bucket by bucket (the coarser width
    /// wins; widths are both 1 ms times a power of two).
    pub fn merge(&mut self, other: &Tenths) {
        while self.width < other.width {
            self.widen();
        }
        let ratio = self.width / other.width;
        for (i, b) in other.buckets.iter().enumerate() {
            let j = (i as u64 / ratio) as usize;
            let _ = self.buckets[j].add(b);
        }
        self.end = self.end.max(other.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_and_last_tenths_keep_their_own_lags_as_the_run_grows() {
        let mut t = Tenths::new();
        // 100 s of run, one sample every 10 ms: lag 1 us in the first
        // tenth, 5 us in the middle, 100 us in the last tenth.
        let end = 100_000_000_000u64;
        for k in 0..=10_000u64 {
            let off = k * 10_000_000;
            let lag = if off < end / 10 {
                1_000
            } else if off > end - end / 10 {
                100_000
            } else {
                5_000
            };
            t.record(off, lag);
        }
        let (first, last) = t.first_and_last();
        assert!(first.len() > 300 && first.len() <= 1_001, "{}", first.len());
        assert_eq!(first.max(), 1_000, "nothing from the middle");
        assert!(last.len() > 300 && last.len() <= 1_001, "{}", last.len());
        assert!(last.min() >= 100_000 - 100, "nothing from the middle");
        assert!(t.width <= end / 16 && t.width > end / 32 / 2);
    }

    #[test]
    fn streams_merge_across_widths_and_an_empty_run_is_empty() {
        let mut a = Tenths::new();
        let mut b = Tenths::new();
        a.record(0, 10);
        a.record(1_000_000_000, 10);
        b.record(0, 20);
        b.record(40_000_000, 20);
        a.merge(&b);
        let (first, last) = a.first_and_last();
        assert_eq!(first.len(), 3, "both streams' starts (and b's 40 ms)");
        assert_eq!(last.len(), 1);
        let (f, l) = Tenths::new().first_and_last();
        assert_eq!((f.len(), l.len()), (0, 0));
    }
}
