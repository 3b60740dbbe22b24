//! What one refresh shows of one process: its scrape made into rows, with
//! rates from the scrape before it.
//!
//! Nothing here knows which binary serves the endpoint. Rows come from
//! the families the scrape has, by name:
//!
//! * streams: a row per value of the `stream` label (or `shard`, one per
//!   `--connect` of `shardcast-sub`) found on the message counter
//!   (`shardcast_received_total`, `shardcast_sent_total`,
//!   `shardcast_recorded_total` or `shardcast_messages_total`, the first
//!   present) and on `shardcast_lost_total`, `shardcast_recovered_total`,
//!   `shardcast_duplicates_total`, `shardcast_malformed_total`,
//!   `shardcast_last_sequence`. A family without the label counts for the
//!   whole process: on the only stream row, or on the `all` row (which
//!   sums every stream, and is there when there are two or more);
//! * latency: every histogram (and summary) family, a row per label set,
//!   quantiles estimated from the buckets;
//! * queues: every gauge whose name says `queue` or `backlog`;
//! * snail: `shardcast_snail_croaks_total`, `shardcast_slow_records_total`;
//! * other: every other family, sample by sample, counters with a rate.

use crate::expo::{parse_value, Exposition, Family, Kind, Sample};
use crate::quantile::{self, Bucket, MaxEstimate};
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The message counters, in order of preference: the first one the scrape
/// has gives the stream rows' `rate` and `messages`.
pub const MESSAGE_COUNTERS: [&str; 4] = [
    "shardcast_received_total",
    "shardcast_sent_total",
    "shardcast_recorded_total",
    "shardcast_messages_total",
];
const LOST: &str = "shardcast_lost_total";
const RECOVERED: &str = "shardcast_recovered_total";
const DUPLICATES: &str = "shardcast_duplicates_total";
const MALFORMED: &str = "shardcast_malformed_total";
const LAST_SEQUENCE: &str = "shardcast_last_sequence";
const QUEUE_DEPTH: &str = "shardcast_queue_depth";
const BACKLOG: &str = "shardcast_workers_backlog";
const CROAKS: &str = "shardcast_snail_croaks_total";
const SLOW: &str = "shardcast_slow_records_total";
/// The latency histogram the stream rows' percentiles come from, when the
/// scrape has it (else the first histogram in seconds).
pub const LATENCY: &str = "shardcast_latency_seconds";
/// Labels that name a stream, in order of preference.
const STREAM_LABELS: [&str; 2] = ["stream", "shard"];

/// A successful scrape.
#[derive(Clone, Debug)]
pub struct Scraped {
    /// The parsed exposition.
    pub exp: Exposition,
    /// When the answer was in.
    pub at: Instant,
    /// How long the GET took.
    pub took: Duration,
}

/// Whether two scrapes' histogram (and gauge histogram) samples differ:
/// an endpoint that rebuilds its histograms less often than it is scraped
/// (`shardcast-sub`: once a second) shows the same buckets to several
/// scrapes, and the recent latency is measured against the last scrape
/// that saw other buckets, not against one that saw the same.
pub fn histograms_differ(a: &Exposition, b: &Exposition) -> bool {
    fn samples(e: &Exposition) -> Vec<(&str, &Labels, u64)> {
        e.families
            .iter()
            .filter(|f| matches!(f.kind, Kind::Histogram | Kind::GaugeHistogram))
            .flat_map(|f| f.samples.iter())
            .map(|s| (s.name.as_str(), &s.labels, s.value.to_bits()))
            .collect()
    }
    samples(a) != samples(b)
}

/// How a latency row's numbers were obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// Bucket estimates over the observations the histogram gained since
    /// the last scrape that saw it different: the endpoint's latest
    /// update(s), about one interval (or one of its own refreshes, if it
    /// rebuilds its histograms less often than it is scraped).
    Recent,
    /// Bucket estimates over everything the histogram holds (since the
    /// process started counting): no earlier scrape, or nothing new in the
    /// interval.
    Total,
    /// The endpoint's own quantile gauges (a summary).
    Exported,
}

/// How a `max` is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxIs {
    /// Exported by the endpoint (a max gauge, or a summary's quantile 1).
    Exact,
    /// The bound of the highest bucket in use: the max is at most this.
    AtMost,
    /// Observations above the highest finite bound: the max is beyond it.
    Above,
}

/// One stream of a process.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StreamRow {
    /// `LABEL=VALUE` (`shard=0`), or `all`.
    pub stream: String,
    /// Messages per second between the last two scrapes.
    pub rate_per_s: Option<f64>,
    /// Messages so far (the message counter).
    pub messages: Option<f64>,
    /// Sequence numbers lost.
    pub lost: Option<f64>,
    /// Messages recovered (when the endpoint has the family).
    pub recovered: Option<f64>,
    /// Duplicates.
    pub duplicates: Option<f64>,
    /// Malformed frames (every reason).
    pub malformed: Option<f64>,
    /// Last sequence number seen.
    pub last_sequence: Option<f64>,
    /// Records queued to workers (sum of `shardcast_queue_depth`).
    pub queued: Option<f64>,
    /// The deepest single queue.
    pub queue_max: Option<f64>,
    /// Records forwarded that no worker has processed yet.
    pub backlog: Option<f64>,
    /// Latency p50 of the selected stage, seconds (bucket estimate).
    pub p50_s: Option<f64>,
    /// Latency p99, seconds (bucket estimate).
    pub p99_s: Option<f64>,
    /// Latency max, seconds (see `max_is`).
    pub max_s: Option<f64>,
    /// How `max_s` is known.
    pub max_is: Option<MaxIs>,
}

/// One histogram (or summary) series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencyRow {
    /// The family (`shardcast_latency_seconds`).
    pub family: String,
    /// Its labels but `le`/`quantile`, `k=v` joined by commas.
    pub labels: String,
    /// Whether the values are seconds (shown as durations).
    pub seconds: bool,
    /// What the numbers cover.
    pub window: Window,
    /// Observations in the window.
    pub count: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest observation (see `max_is`).
    pub max: Option<f64>,
    /// How `max` is known.
    pub max_is: Option<MaxIs>,
}

/// One sample of a gauge or counter shown as it is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SampleRow {
    /// Sample name.
    pub name: String,
    /// Labels, `k=v` joined by commas.
    pub labels: String,
    /// Value.
    pub value: f64,
    /// Per second between the last two scrapes (counters).
    pub rate_per_s: Option<f64>,
}

/// The Suicidal Snail and slow records.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snail {
    /// Croaks (0 or 1 for shardcast-sub: a croak ends the run).
    pub croaks: Option<f64>,
    /// Records older than `--max-lag-ms` when seen.
    pub slow_records: Option<f64>,
    /// Slow records per second between the last two scrapes.
    pub slow_per_s: Option<f64>,
}

impl Snail {
    /// `croaked`, `ok`, or `-` when the endpoint has no croak counter.
    pub fn state(&self) -> &'static str {
        match self.croaks {
            Some(c) if c > 0.0 => "croaked",
            Some(_) => "ok",
            None => "-",
        }
    }
}

/// One endpoint at one refresh.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProcessView {
    /// The endpoint as given.
    pub endpoint: String,
    /// The URL scraped.
    pub url: String,
    /// Whether it answered with a scrape.
    pub up: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
    /// `role` of its build info (`shardcast-sub`).
    pub role: Option<String>,
    /// `version` of its build info.
    pub version: Option<String>,
    /// How long the scrape took, ms.
    pub scrape_ms: Option<f64>,
    /// Seconds between the scrape the rates come from and this one (none:
    /// no rates yet).
    pub window_s: Option<f64>,
    /// The label that names streams (`shard`, `stream`), if any family has
    /// one.
    pub stream_label: Option<String>,
    /// Streams (and `all`).
    pub streams: Vec<StreamRow>,
    /// Histograms and summaries.
    pub latency: Vec<LatencyRow>,
    /// Queue and backlog gauges.
    pub queues: Vec<SampleRow>,
    /// Snail state, when the endpoint has either family.
    pub snail: Option<Snail>,
    /// Every other family's samples.
    pub other: Vec<SampleRow>,
    /// Lines of the scrape that could not be read.
    pub unparsed_lines: usize,
    /// The first of them, with its line number.
    pub first_unparsed: Option<String>,
}

/// `k=v,k=v` of a sample's labels but those in `skip`.
fn label_text(labels: &[(String, String)], skip: &[&str]) -> String {
    labels
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn sorted_labels(labels: &[(String, String)], skip: &[&str]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = labels
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .cloned()
        .collect();
    v.sort();
    v
}

/// Which rows a value goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RowKey {
    Stream(String),
    All,
}

/// The rows of a process: how to pick each family's samples for a row.
struct Rows<'a> {
    /// The stream label, if any per-stream family has it.
    key: Option<&'a str>,
    /// More than one stream row (so process-wide values go on `all`).
    many: bool,
}

impl Rows<'_> {
    /// The samples of a row among `samples` (of one family): those with
    /// the row's stream when the family has the label; all of them on the
    /// `all` row, and on the only stream row when the family has no stream
    /// label.
    fn pick<'s>(&self, samples: &[&'s Sample], row: &RowKey) -> Option<Vec<&'s Sample>> {
        if samples.is_empty() {
            return None;
        }
        let labelled = self
            .key
            .is_some_and(|k| samples.iter().any(|s| s.label(k).is_some()));
        match row {
            RowKey::All => Some(samples.to_vec()),
            RowKey::Stream(v) if labelled => {
                let k = self.key.unwrap_or_default();
                let m: Vec<&Sample> = samples
                    .iter()
                    .copied()
                    .filter(|s| s.label(k) == Some(v.as_str()))
                    .collect();
                (!m.is_empty()).then_some(m)
            }
            RowKey::Stream(_) if !self.many => Some(samples.to_vec()),
            RowKey::Stream(_) => None,
        }
    }

    fn sum(&self, exp: &Exposition, name: &str, row: &RowKey) -> Option<f64> {
        let samples: Vec<&Sample> = exp.samples(name).collect();
        self.pick(&samples, row)
            .map(|m| m.iter().map(|s| s.value).sum())
    }

    fn max(&self, exp: &Exposition, name: &str, row: &RowKey) -> Option<f64> {
        let samples: Vec<&Sample> = exp.samples(name).collect();
        self.pick(&samples, row)
            .map(|m| m.iter().map(|s| s.value).fold(f64::NEG_INFINITY, f64::max))
    }
}

/// Per second from two readings of a counter, `None` when either is
/// missing or it went down (a restart).
fn rate(now: Option<f64>, before: Option<f64>, window_s: Option<f64>) -> Option<f64> {
    let (n, b, w) = (now?, before?, window_s?);
    (n >= b && w > 0.0).then(|| (n - b) / w)
}

/// A label set, sorted.
type Labels = Vec<(String, String)>;

/// One histogram series: its labels (no `le`) and cumulative buckets.
#[derive(Clone, Debug)]
struct Series {
    labels: Vec<(String, String)>,
    buckets: Vec<Bucket>,
}

/// The series of histogram family `fam`.
fn histogram_series(fam: &Family) -> Vec<Series> {
    let bucket_name = format!("{}_bucket", fam.name);
    let mut out: Vec<Series> = Vec::new();
    for s in fam.samples.iter().filter(|s| s.name == bucket_name) {
        let Some(le) = s.label("le").and_then(parse_value) else {
            continue;
        };
        let labels = sorted_labels(&s.labels, &["le"]);
        let b = Bucket { le, count: s.value };
        match out.iter_mut().find(|x| x.labels == labels) {
            Some(x) => x.buckets.push(b),
            None => out.push(Series {
                labels,
                buckets: vec![b],
            }),
        }
    }
    out
}

/// Bucket counts of several series added up by bound (PromQL's
/// `sum by (le)`).
fn merge(series: &[&Series]) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for s in series {
        for b in &s.buckets {
            match out.iter_mut().find(|x| x.le == b.le) {
                Some(x) => x.count += b.count,
                None => out.push(*b),
            }
        }
    }
    out
}

fn finite(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// p50, p99, max and count of buckets, over the interval when `before`
/// gives a usable delta with observations in it, else over the total.
fn estimate(now: &[Bucket], before: Option<&[Bucket]>) -> Estimate {
    let interval = before
        .and_then(|b| quantile::delta(now, b))
        .filter(|d| d.iter().map(|b| b.count).fold(0.0, f64::max) > 0.0);
    let (window, b) = match &interval {
        Some(d) => (Window::Recent, d.as_slice()),
        None => (Window::Total, now),
    };
    let count = b.iter().find(|x| x.le == f64::INFINITY).map(|x| x.count);
    let (max, max_is) = match quantile::max_estimate(b) {
        Some(MaxEstimate::AtMost(v)) => (Some(v), Some(MaxIs::AtMost)),
        Some(MaxEstimate::Above(v)) => (Some(v), Some(MaxIs::Above)),
        None => (None, None),
    };
    Estimate {
        window,
        count,
        p50: finite(quantile::histogram_quantile(0.5, b)),
        p99: finite(quantile::histogram_quantile(0.99, b)),
        max,
        max_is,
    }
}

struct Estimate {
    window: Window,
    count: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
    max_is: Option<MaxIs>,
}

fn is_seconds(fam: &Family) -> bool {
    fam.name.ends_with("_seconds") || fam.unit.as_deref() == Some("seconds")
}

/// A max the endpoint exports for histogram `fam`'s series `labels`: a
/// gauge `F_max`, or `B_max_seconds` for `F` = `B_seconds`.
fn exported_max(exp: &Exposition, fam: &Family, labels: &[(String, String)]) -> Option<f64> {
    exported_max_names(fam).iter().find_map(|n| {
        exp.samples(n)
            .find(|s| sorted_labels(&s.labels, &[]) == labels)
            .map(|s| s.value)
    })
}

fn exported_max_names(fam: &Family) -> Vec<String> {
    let mut names = vec![format!("{}_max", fam.name)];
    if let Some(base) = fam.name.strip_suffix("_seconds") {
        names.push(format!("{base}_max_seconds"));
    }
    names
}

/// The view of one endpoint: `now` (`Err`: why it is down) against
/// `before`, the scrape before it (rates), and `hist_before`, the last
/// scrape whose histograms differ from `now`'s ([`histograms_differ`]:
/// the recent latency). `stage` picks the latency series of the stream
/// rows when the histogram has a `stage` label.
pub fn build(
    endpoint: &str,
    url: &str,
    now: Result<&Scraped, &str>,
    before: Option<&Scraped>,
    hist_before: Option<&Scraped>,
    stage: &str,
) -> ProcessView {
    let mut v = ProcessView {
        endpoint: endpoint.to_string(),
        url: url.to_string(),
        ..ProcessView::default()
    };
    let now = match now {
        Ok(n) => n,
        Err(e) => {
            v.error = Some(e.to_string());
            return v;
        }
    };
    let exp = &now.exp;
    let prev = before.filter(|b| b.at < now.at);
    let hist_prev = hist_before.filter(|b| b.at < now.at);
    let window_s = prev.map(|b| (now.at - b.at).as_secs_f64());
    v.up = true;
    v.scrape_ms = Some(now.took.as_secs_f64() * 1e3);
    v.window_s = window_s;
    v.unparsed_lines = exp.errors.len();
    v.first_unparsed = exp
        .errors
        .first()
        .map(|e| format!("line {}: {}", e.line, e.message));

    let mut used: BTreeSet<String> = BTreeSet::new();

    // Build info.
    if let Some(info) = exp
        .families
        .iter()
        .flat_map(|f| f.samples.iter())
        .find(|s| s.name.ends_with("build_info"))
    {
        v.role = info.label("role").map(str::to_string);
        v.version = info.label("version").map(str::to_string);
        used.insert(info.name.clone());
    }

    // Streams.
    let messages = MESSAGE_COUNTERS.iter().copied().find(|n| exp.has(n));
    let per_stream: Vec<&str> = messages
        .into_iter()
        .chain([LOST, RECOVERED, DUPLICATES, MALFORMED, LAST_SEQUENCE])
        .collect();
    let key = STREAM_LABELS.into_iter().find(|k| {
        per_stream
            .iter()
            .any(|n| exp.samples(n).any(|s| s.label(k).is_some()))
    });
    let mut streams: BTreeSet<(u64, String)> = BTreeSet::new();
    if let Some(k) = key {
        for n in &per_stream {
            for s in exp.samples(n) {
                if let Some(val) = s.label(k) {
                    // Numbers in numeric order, then names.
                    let order = val.parse::<u64>().unwrap_or(u64::MAX);
                    streams.insert((order, val.to_string()));
                }
            }
        }
    }
    let rows = Rows {
        key,
        many: streams.len() > 1,
    };
    let mut keys: Vec<RowKey> = streams
        .into_iter()
        .map(|(_, s)| RowKey::Stream(s))
        .collect();
    let any_stream_family =
        per_stream.iter().any(|n| exp.has(n)) || exp.has(QUEUE_DEPTH) || exp.has(BACKLOG);
    if keys.len() > 1 || (keys.is_empty() && any_stream_family) {
        keys.push(RowKey::All);
    }
    v.stream_label = key.map(str::to_string);

    // The latency histogram of the stream rows.
    let lat_fam = exp
        .families
        .iter()
        .find(|f| f.name == LATENCY && f.kind == Kind::Histogram)
        .or_else(|| {
            exp.families
                .iter()
                .find(|f| f.kind == Kind::Histogram && is_seconds(f))
        });
    let lat_series: Vec<Series> = lat_fam.map(histogram_series).unwrap_or_default();
    let lat_before: Vec<Series> = match (lat_fam, hist_prev) {
        (Some(f), Some(p)) => p
            .exp
            .families
            .iter()
            .find(|g| g.name == f.name)
            .map(histogram_series)
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let staged = |s: &&Series| {
        let has_stage = lat_series
            .iter()
            .any(|x| x.labels.iter().any(|(k, _)| k == "stage"));
        !has_stage || s.labels.iter().any(|(k, val)| k == "stage" && val == stage)
    };
    let series_for = |all: &[Series], row: &RowKey| -> Option<Vec<Bucket>> {
        let cands: Vec<&Series> = all.iter().filter(staged).collect();
        if cands.is_empty() {
            return None;
        }
        let labelled =
            key.is_some_and(|k| cands.iter().any(|s| s.labels.iter().any(|(l, _)| l == k)));
        let chosen: Vec<&Series> = match row {
            RowKey::All => cands,
            RowKey::Stream(val) if labelled => {
                let k = key.unwrap_or_default();
                cands
                    .into_iter()
                    .filter(|s| s.labels.iter().any(|(l, x)| l == k && x == val))
                    .collect()
            }
            RowKey::Stream(_) if !rows.many => cands,
            RowKey::Stream(_) => Vec::new(),
        };
        (!chosen.is_empty()).then(|| merge(&chosen))
    };

    let before_exp = prev.map(|p| &p.exp);
    for row in &keys {
        let name = match row {
            RowKey::Stream(s) => format!("{}={s}", key.unwrap_or("stream")),
            RowKey::All => "all".to_string(),
        };
        let msgs = messages.and_then(|m| rows.sum(exp, m, row));
        let msgs_before = match (messages, before_exp) {
            (Some(m), Some(b)) => rows.sum(b, m, row),
            _ => None,
        };
        let mut r = StreamRow {
            stream: name,
            rate_per_s: rate(msgs, msgs_before, window_s),
            messages: msgs,
            lost: rows.sum(exp, LOST, row),
            recovered: rows.sum(exp, RECOVERED, row),
            duplicates: rows.sum(exp, DUPLICATES, row),
            malformed: rows.sum(exp, MALFORMED, row),
            last_sequence: rows.sum(exp, LAST_SEQUENCE, row),
            queued: rows.sum(exp, QUEUE_DEPTH, row),
            queue_max: rows.max(exp, QUEUE_DEPTH, row),
            backlog: rows.sum(exp, BACKLOG, row),
            ..StreamRow::default()
        };
        if let Some(now_b) = series_for(&lat_series, row) {
            let before_b = series_for(&lat_before, row);
            let e = estimate(&now_b, before_b.as_deref());
            r.p50_s = e.p50;
            r.p99_s = e.p99;
            r.max_s = e.max;
            r.max_is = e.max_is;
        }
        v.streams.push(r);
    }
    used.extend(per_stream.iter().map(|s| s.to_string()));
    used.extend([QUEUE_DEPTH.to_string(), BACKLOG.to_string()]);

    // Latency: every histogram and summary series.
    for fam in &exp.families {
        match fam.kind {
            Kind::Histogram | Kind::GaugeHistogram => {
                let before_series: Vec<Series> = hist_prev
                    .and_then(|p| p.exp.families.iter().find(|g| g.name == fam.name))
                    .map(histogram_series)
                    .unwrap_or_default();
                for s in histogram_series(fam) {
                    let b = before_series
                        .iter()
                        .find(|x| x.labels == s.labels)
                        .map(|x| x.buckets.as_slice());
                    let e = estimate(&s.buckets, b);
                    let (max, max_is) = match exported_max(exp, fam, &s.labels) {
                        Some(m) => (Some(m), Some(MaxIs::Exact)),
                        None => (e.max, e.max_is),
                    };
                    v.latency.push(LatencyRow {
                        family: fam.name.clone(),
                        labels: label_text(&s.labels, &[]),
                        seconds: is_seconds(fam),
                        window: e.window,
                        count: e.count,
                        p50: e.p50,
                        p99: e.p99,
                        max,
                        max_is,
                    });
                }
                used.extend(fam.samples.iter().map(|s| s.name.clone()));
                used.extend(exported_max_names(fam));
            }
            Kind::Summary => {
                let mut groups: Vec<(Labels, Vec<&Sample>)> = Vec::new();
                for s in fam.samples.iter().filter(|s| s.name == fam.name) {
                    let labels = sorted_labels(&s.labels, &["quantile"]);
                    match groups.iter_mut().find(|g| g.0 == labels) {
                        Some(g) => g.1.push(s),
                        None => groups.push((labels, vec![s])),
                    }
                }
                for (labels, samples) in groups {
                    let q = |want: f64| {
                        samples
                            .iter()
                            .find(|s| s.label("quantile").and_then(parse_value) == Some(want))
                            .and_then(|s| finite(s.value))
                    };
                    let count = exp
                        .samples(&format!("{}_count", fam.name))
                        .find(|s| sorted_labels(&s.labels, &[]) == labels)
                        .map(|s| s.value);
                    let max = q(1.0);
                    v.latency.push(LatencyRow {
                        family: fam.name.clone(),
                        labels: label_text(&labels, &[]),
                        seconds: is_seconds(fam),
                        window: Window::Exported,
                        count,
                        p50: q(0.5),
                        p99: q(0.99),
                        max,
                        max_is: max.map(|_| MaxIs::Exact),
                    });
                }
                used.extend(fam.samples.iter().map(|s| s.name.clone()));
            }
            _ => {}
        }
    }

    // Queues: the gauges that say so.
    let sample_rows = |fam: &Family| -> Vec<SampleRow> {
        fam.samples
            .iter()
            .filter(|s| !s.name.ends_with("_created"))
            .map(|s| {
                let before = before_exp.and_then(|b| {
                    b.samples(&s.name)
                        .find(|x| sorted_labels(&x.labels, &[]) == sorted_labels(&s.labels, &[]))
                        .map(|x| x.value)
                });
                SampleRow {
                    name: s.name.clone(),
                    labels: label_text(&s.labels, &[]),
                    value: s.value,
                    rate_per_s: if fam.kind == Kind::Counter {
                        rate(Some(s.value), before, window_s)
                    } else {
                        None
                    },
                }
            })
            .collect()
    };
    for fam in &exp.families {
        let gaugeish = matches!(fam.kind, Kind::Gauge | Kind::Unknown);
        if gaugeish && (fam.name.contains("queue") || fam.name.contains("backlog")) {
            v.queues.extend(sample_rows(fam));
            used.extend(fam.samples.iter().map(|s| s.name.clone()));
        }
    }

    // Snail.
    let croaks = rows.sum(exp, CROAKS, &RowKey::All);
    let slow = rows.sum(exp, SLOW, &RowKey::All);
    if croaks.is_some() || slow.is_some() {
        let slow_before = before_exp.and_then(|b| rows.sum(b, SLOW, &RowKey::All));
        v.snail = Some(Snail {
            croaks,
            slow_records: slow,
            slow_per_s: rate(slow, slow_before, window_s),
        });
    }
    used.extend([CROAKS.to_string(), SLOW.to_string()]);

    // Everything else.
    for fam in &exp.families {
        if fam.samples.iter().all(|s| used.contains(&s.name)) {
            continue;
        }
        v.other.extend(
            sample_rows(fam)
                .into_iter()
                .filter(|r| !used.contains(&r.name)),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expo::parse;

    /// A shardcast-sub scrape with two shards, two workers, latency by
    /// stage; `k` scales the counters.
    fn sub_scrape(k: u64) -> String {
        let e2e = |le: &str, n: u64| {
            format!("shardcast_latency_seconds_bucket{{le=\"{le}\",stage=\"end_to_end\"}} {n}\n")
        };
        let mut s = format!(
            "# TYPE shardcast_build info\n\
             shardcast_build_info{{version=\"0.1.0\",role=\"shardcast-sub\"}} 1\n\
             # TYPE shardcast_received counter\n\
             shardcast_received_total{{shard=\"0\"}} {}\n\
             shardcast_received_total{{shard=\"1\"}} {}\n\
             # TYPE shardcast_lost counter\n\
             shardcast_lost_total{{shard=\"0\"}} 0\n\
             shardcast_lost_total{{shard=\"1\"}} 3\n\
             # TYPE shardcast_processed counter\n\
             shardcast_processed_total{{worker=\"0\"}} {}\n\
             # TYPE shardcast_slow_records counter\n\
             shardcast_slow_records_total 0\n\
             # TYPE shardcast_snail_croaks counter\n\
             shardcast_snail_croaks_total 0\n\
             # TYPE shardcast_duplicates counter\n\
             shardcast_duplicates_total 2\n\
             # TYPE shardcast_queue_depth gauge\n\
             shardcast_queue_depth{{worker=\"0\"}} 4\n\
             shardcast_queue_depth{{worker=\"1\"}} 6\n\
             # TYPE shardcast_workers_backlog gauge\n\
             shardcast_workers_backlog 10\n\
             # TYPE shardcast_latency_seconds histogram\n\
             # UNIT shardcast_latency_seconds seconds\n",
            1000 * k,
            500 * k,
            1500 * k
        );
        s += &e2e("1e-5", 0);
        s += &e2e("2.5e-5", 50 * k);
        s += &e2e("5e-5", 100 * k);
        s += &e2e("+Inf", 100 * k);
        s += "shardcast_latency_seconds_count{stage=\"end_to_end\"} ";
        s += &format!(
            "{}\nshardcast_latency_seconds_sum{{stage=\"end_to_end\"}} 0.1\n",
            100 * k
        );
        s += "# EOF\n";
        s
    }

    fn scraped(text: &str, at: Instant) -> Scraped {
        Scraped {
            exp: parse(text),
            at,
            took: Duration::from_millis(1),
        }
    }

    #[test]
    fn streams_rates_latency_queues_snail_and_the_rest() {
        let t0 = Instant::now();
        let a = scraped(&sub_scrape(1), t0);
        let b = scraped(&sub_scrape(3), t0 + Duration::from_secs(2));
        let v = build(
            "h:1",
            "http://h:1/metrics",
            Ok(&b),
            Some(&a),
            Some(&a),
            "end_to_end",
        );
        assert!(v.up);
        assert_eq!(v.role.as_deref(), Some("shardcast-sub"));
        assert_eq!(v.stream_label.as_deref(), Some("shard"));
        let names: Vec<&str> = v.streams.iter().map(|r| r.stream.as_str()).collect();
        assert_eq!(names, ["shard=0", "shard=1", "all"]);
        let (s0, s1, all) = (&v.streams[0], &v.streams[1], &v.streams[2]);
        // 1000 -> 3000 in 2 s.
        assert_eq!(s0.rate_per_s, Some(1000.0));
        assert_eq!(s1.rate_per_s, Some(500.0));
        assert_eq!(all.rate_per_s, Some(1500.0));
        assert_eq!(
            (s0.lost, s1.lost, all.lost),
            (Some(0.0), Some(3.0), Some(3.0))
        );
        // Process-wide: on `all` only.
        assert_eq!((s0.duplicates, all.duplicates), (None, Some(2.0)));
        assert_eq!(s0.recovered, None);
        assert_eq!(
            (all.queued, all.queue_max, all.backlog),
            (Some(10.0), Some(6.0), Some(10.0))
        );
        // Latency: the interval's 200 observations, half at or below 25 us.
        assert_eq!(all.p50_s, Some(2.5e-5));
        assert!((all.p99_s.unwrap() - (2.5e-5 + 2.5e-5 * 98.0 / 100.0)).abs() < 1e-12);
        assert_eq!((all.max_s, all.max_is), (Some(5e-5), Some(MaxIs::AtMost)));
        assert_eq!(s0.p50_s, None);
        let lat = &v.latency[0];
        assert_eq!(lat.labels, "stage=end_to_end");
        assert_eq!((lat.window, lat.count), (Window::Recent, Some(200.0)));
        assert!(lat.seconds);
        let q: Vec<(&str, f64)> = v
            .queues
            .iter()
            .map(|r| (r.labels.as_str(), r.value))
            .collect();
        assert_eq!(q, [("worker=0", 4.0), ("worker=1", 6.0), ("", 10.0)]);
        let snail = v.snail.as_ref().unwrap();
        assert_eq!(snail.state(), "ok");
        assert_eq!(snail.slow_per_s, Some(0.0));
        // The rest: processed per worker, with its rate.
        assert_eq!(v.other.len(), 1);
        assert_eq!(v.other[0].name, "shardcast_processed_total");
        assert_eq!(v.other[0].rate_per_s, Some(1500.0));
    }

    #[test]
    fn one_scrape_has_no_rates_and_latency_over_the_total() {
        let a = scraped(&sub_scrape(1), Instant::now());
        let v = build("h:1", "u", Ok(&a), None, None, "end_to_end");
        assert!(v.streams.iter().all(|r| r.rate_per_s.is_none()));
        assert_eq!(v.window_s, None);
        assert_eq!(v.latency[0].window, Window::Total);
        assert_eq!(v.latency[0].count, Some(100.0));
    }

    #[test]
    fn nothing_new_in_the_interval_falls_back_to_the_total() {
        let t0 = Instant::now();
        let a = scraped(&sub_scrape(1), t0);
        let b = scraped(&sub_scrape(1), t0 + Duration::from_secs(1));
        let v = build("h:1", "u", Ok(&b), Some(&a), Some(&a), "end_to_end");
        assert_eq!(v.latency[0].window, Window::Total);
        assert_eq!(v.streams[0].rate_per_s, Some(0.0));
    }

    #[test]
    fn a_restart_gives_no_rate() {
        let t0 = Instant::now();
        let a = scraped(&sub_scrape(3), t0);
        let b = scraped(&sub_scrape(1), t0 + Duration::from_secs(1));
        let v = build("h:1", "u", Ok(&b), Some(&a), Some(&a), "end_to_end");
        assert_eq!(v.streams[0].rate_per_s, None);
        assert_eq!(v.latency[0].window, Window::Total);
    }

    #[test]
    fn a_single_stream_carries_the_process_wide_values() {
        let text = "\
# TYPE shardcast_sent counter
shardcast_sent_total{stream=\"0\"} 10
# TYPE shardcast_malformed counter
shardcast_malformed_total{reason=\"short\"} 1
shardcast_malformed_total{reason=\"magic\"} 2
# TYPE shardcast_latency_seconds histogram
shardcast_latency_seconds_bucket{le=\"0.001\"} 4
shardcast_latency_seconds_bucket{le=\"+Inf\"} 4
# TYPE shardcast_latency_max_seconds gauge
shardcast_latency_max_seconds 0.0007
# TYPE shardcast_behind_schedule gauge
shardcast_behind_schedule{stream=\"0\"} 0
";
        let a = scraped(text, Instant::now());
        let v = build("h:1", "u", Ok(&a), None, None, "end_to_end");
        assert_eq!(v.stream_label.as_deref(), Some("stream"));
        assert_eq!(v.streams.len(), 1);
        let r = &v.streams[0];
        assert_eq!(r.stream, "stream=0");
        assert_eq!((r.messages, r.malformed), (Some(10.0), Some(3.0)));
        assert_eq!(r.p50_s, Some(0.0005));
        // The exported max wins over the bucket bound in the latency table.
        assert_eq!(v.latency[0].max, Some(0.0007));
        assert_eq!(v.latency[0].max_is, Some(MaxIs::Exact));
        // The max gauge is not shown again under other.
        let other: Vec<&str> = v.other.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(other, ["shardcast_behind_schedule"]);
    }

    #[test]
    fn summaries_use_their_own_quantiles_and_a_down_endpoint_says_why() {
        let text = "\
# TYPE rpc_seconds summary
rpc_seconds{quantile=\"0.5\"} 0.01
rpc_seconds{quantile=\"0.99\"} 0.2
rpc_seconds{quantile=\"1\"} 0.5
rpc_seconds_count 7
rpc_seconds_sum 1
";
        let a = scraped(text, Instant::now());
        let v = build("h:1", "u", Ok(&a), None, None, "end_to_end");
        assert!(v.streams.is_empty());
        let l = &v.latency[0];
        assert_eq!((l.p50, l.p99, l.max), (Some(0.01), Some(0.2), Some(0.5)));
        assert_eq!((l.window, l.count), (Window::Exported, Some(7.0)));
        assert!(v.other.is_empty());

        let d = build(
            "h:1",
            "u",
            Err("connection refused"),
            None,
            None,
            "end_to_end",
        );
        assert!(!d.up);
        assert_eq!(d.error.as_deref(), Some("connection refused"));
    }
}
