//! Quantiles from cumulative histogram buckets, estimated as Prometheus's
//! `histogram_quantile` does (promql/quantile.go, `bucketQuantile`): find
//! the bucket the rank falls in and interpolate linearly inside it,
//! assuming its observations spread evenly between its lower and upper
//! bound. They are estimates: never finer than the buckets.

/// One cumulative bucket: observations `<= le`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// Upper bound (`le`), `f64::INFINITY` for `+Inf`.
    pub le: f64,
    /// Observations at or below it (cumulative).
    pub count: f64,
}

/// Sorted by bound, buckets of the same bound merged, counts made
/// monotonic (as Prometheus does for scrapes caught between updates).
fn normalize(buckets: &[Bucket]) -> Vec<Bucket> {
    let mut b: Vec<Bucket> = buckets.iter().copied().filter(|b| !b.le.is_nan()).collect();
    b.sort_by(|x, y| x.le.total_cmp(&y.le));
    let mut merged: Vec<Bucket> = Vec::with_capacity(b.len());
    for x in b {
        match merged.last_mut() {
            Some(last) if last.le == x.le => last.count += x.count,
            _ => merged.push(x),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for x in &mut merged {
        if x.count < max {
            x.count = max;
        } else {
            max = x.count;
        }
    }
    merged
}

/// The `q` quantile (0 to 1) of the observations in `buckets`, or NaN
/// when it has no answer: no `+Inf` bucket, fewer than two buckets, or no
/// observations. A rank in the `+Inf` bucket answers with the highest
/// finite bound; a rank in the first bucket interpolates from 0 (or
/// answers its bound when that is 0 or less).
pub fn histogram_quantile(q: f64, buckets: &[Bucket]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let b = normalize(buckets);
    if b.len() < 2 || b.last().is_some_and(|l| l.le != f64::INFINITY) {
        return f64::NAN;
    }
    let observations = b[b.len() - 1].count;
    if observations <= 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // The first bucket (the +Inf one left out) whose count reaches the rank.
    let i = b[..b.len() - 1]
        .iter()
        .position(|x| x.count >= rank)
        .unwrap_or(b.len() - 1);
    if i == b.len() - 1 {
        return b[b.len() - 2].le;
    }
    if i == 0 && b[0].le <= 0.0 {
        return b[0].le;
    }
    let end = b[i].le;
    let mut count = b[i].count;
    let mut start = 0.0;
    if i > 0 {
        start = b[i - 1].le;
        count -= b[i - 1].count;
        rank -= b[i - 1].count;
    }
    start + (end - start) * (rank / count)
}

/// What the buckets say about the largest observation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaxEstimate {
    /// At most this: the bound of the highest bucket with observations.
    AtMost(f64),
    /// Above this: observations in the `+Inf` bucket, beyond the highest
    /// finite bound.
    Above(f64),
}

/// The largest observation as far as the buckets tell, or `None` when
/// they hold none.
pub fn max_estimate(buckets: &[Bucket]) -> Option<MaxEstimate> {
    let b = normalize(buckets);
    let total = b.last()?.count;
    if total <= 0.0 {
        return None;
    }
    // The first bucket that already holds every observation.
    let i = b.iter().position(|x| x.count >= total)?;
    if b[i].le == f64::INFINITY {
        let below = if i > 0 { b[i - 1].le } else { 0.0 };
        Some(MaxEstimate::Above(below))
    } else {
        Some(MaxEstimate::AtMost(b[i].le))
    }
}

/// `now - before` bucket by bucket (the observations made in between), or
/// `None` when the two do not have the same bounds or a count went down
/// (the process restarted).
pub fn delta(now: &[Bucket], before: &[Bucket]) -> Option<Vec<Bucket>> {
    let (n, b) = (normalize(now), normalize(before));
    if n.len() != b.len() {
        return None;
    }
    n.iter()
        .zip(&b)
        .map(|(x, y)| {
            (x.le == y.le && x.count >= y.count).then_some(Bucket {
                le: x.le,
                count: x.count - y.count,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bk(v: &[(f64, f64)]) -> Vec<Bucket> {
        v.iter().map(|&(le, count)| Bucket { le, count }).collect()
    }

    const INF: f64 = f64::INFINITY;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn interpolates_inside_the_bucket_as_prometheus_does() {
        // Answers worked out by hand from bucketQuantile's steps.
        let b = bk(&[(0.1, 10.0), (0.2, 30.0), (0.4, 90.0), (INF, 100.0)]);
        // rank 50: in (0.2, 0.4], 20 of its 60 -> 0.2 + 0.2 * 20/60.
        assert!(close(histogram_quantile(0.5, &b), 0.2 + 0.2 * 20.0 / 60.0));
        // rank 5: in the first bucket, from 0 -> 0.05.
        assert!(close(histogram_quantile(0.05, &b), 0.05));
        // rank 10: exactly the first bucket's top.
        assert!(close(histogram_quantile(0.1, &b), 0.1));
        // rank 99: in +Inf -> the highest finite bound.
        assert_eq!(histogram_quantile(0.99, &b), 0.4);
        assert_eq!(histogram_quantile(1.0, &b), 0.4);
        // rank 90 is reached at 0.4 itself.
        assert!(close(histogram_quantile(0.9, &b), 0.4));
    }

    #[test]
    fn edges_of_the_buckets() {
        // A rank exactly at a bucket's top answers that top; a rank in the
        // +Inf bucket answers the highest finite bound (0.2 here).
        let b = bk(&[(0.1, 50.0), (0.2, 70.0), (INF, 100.0)]);
        assert!(close(histogram_quantile(0.0, &b), 0.0));
        assert!(close(histogram_quantile(0.25, &b), 0.05));
        assert!(close(histogram_quantile(0.5, &b), 0.1));
        assert!(close(histogram_quantile(0.6, &b), 0.15));
        assert_eq!(histogram_quantile(0.8, &b), 0.2);
        // Negative first bound: its bound is the answer.
        let neg = bk(&[(-0.2, 1.0), (0.1, 2.0), (INF, 2.0)]);
        assert_eq!(histogram_quantile(0.3, &neg), -0.2);
    }

    #[test]
    fn no_answer_without_inf_observations_or_two_buckets() {
        assert!(histogram_quantile(0.5, &bk(&[(0.1, 1.0), (0.2, 2.0)])).is_nan());
        assert!(histogram_quantile(0.5, &bk(&[(INF, 3.0)])).is_nan());
        assert!(histogram_quantile(0.5, &bk(&[(0.1, 0.0), (INF, 0.0)])).is_nan());
        assert!(histogram_quantile(0.5, &[]).is_nan());
        assert!(histogram_quantile(f64::NAN, &bk(&[(0.1, 1.0), (INF, 1.0)])).is_nan());
        assert_eq!(
            histogram_quantile(-1.0, &bk(&[(0.1, 1.0), (INF, 1.0)])),
            f64::NEG_INFINITY
        );
        assert_eq!(
            histogram_quantile(2.0, &bk(&[(0.1, 1.0), (INF, 1.0)])),
            f64::INFINITY
        );
    }

    #[test]
    fn unsorted_duplicate_and_non_monotonic_buckets_are_mended() {
        // Written out of order, with a count that dips (a scrape between
        // two updates): sorted and made monotonic first.
        let b = bk(&[(INF, 100.0), (0.2, 25.0), (0.1, 30.0), (0.4, 90.0)]);
        // After mending: 0.1: 30, 0.2: 30, 0.4: 90, +Inf: 100. Rank 50 is
        // in (0.2, 0.4]: 20 of 60.
        assert!(close(histogram_quantile(0.5, &b), 0.2 + 0.2 * 20.0 / 60.0));
    }

    #[test]
    fn max_is_the_top_of_the_highest_bucket_in_use() {
        let b = bk(&[(0.1, 10.0), (0.2, 30.0), (0.4, 30.0), (INF, 30.0)]);
        assert_eq!(max_estimate(&b), Some(MaxEstimate::AtMost(0.2)));
        let over = bk(&[(0.1, 10.0), (0.2, 30.0), (INF, 31.0)]);
        assert_eq!(max_estimate(&over), Some(MaxEstimate::Above(0.2)));
        assert_eq!(max_estimate(&bk(&[(0.1, 0.0), (INF, 0.0)])), None);
        assert_eq!(max_estimate(&[]), None);
    }

    #[test]
    fn delta_is_what_came_in_between() {
        let before = bk(&[(0.1, 10.0), (INF, 12.0)]);
        let now = bk(&[(0.1, 15.0), (INF, 20.0)]);
        assert_eq!(delta(&now, &before), Some(bk(&[(0.1, 5.0), (INF, 8.0)])));
        // A restart (counts went down) or other bounds: no delta.
        assert_eq!(delta(&before, &now), None);
        assert_eq!(delta(&now, &bk(&[(0.2, 1.0), (INF, 2.0)])), None);
        assert_eq!(delta(&now, &bk(&[(INF, 2.0)])), None);
    }
}
