//! Text for a snapshot: the terminal view (also `--once`'s plain text)
//! and CSV lines.

use crate::view::{LatencyRow, MaxIs, ProcessView, SampleRow, Window};
use serde::Serialize;

/// Everything one refresh shows (and what `--report-json` writes).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// Refreshes so far (0: the first scrape, which has no rates yet).
    pub refresh: u64,
    /// Wall-clock time of the refresh, Unix seconds.
    pub time_unix_s: f64,
    /// `--interval-ms`.
    pub interval_ms: u64,
    /// One per endpoint, in the order given.
    pub processes: Vec<ProcessView>,
}

/// `-` for a missing value.
const NONE: &str = "-";

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| NONE.to_string(), f)
}

/// A count: integers without a fraction, anything else as it is.
pub fn count(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// Per second, one decimal.
pub fn per_s(v: f64) -> String {
    format!("{v:.1}")
}

/// Seconds as a duration with its unit (`ns`, `us`, `ms`, `s`).
pub fn duration(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        format!("{v}")
    } else if a == 0.0 {
        "0".into()
    } else if a < 1e-6 {
        format!("{:.0}ns", v * 1e9)
    } else if a < 1e-3 {
        format!("{:.1}us", v * 1e6)
    } else if a < 1.0 {
        format!("{:.2}ms", v * 1e3)
    } else {
        format!("{v:.3}s")
    }
}

fn max_text(v: Option<f64>, is: Option<MaxIs>, seconds: bool) -> String {
    let Some(v) = v else {
        return NONE.into();
    };
    let n = if seconds { duration(v) } else { count(v) };
    match is {
        Some(MaxIs::AtMost) => format!("<={n}"),
        Some(MaxIs::Above) => format!(">{n}"),
        _ => n,
    }
}

/// Columns padded to their widest cell: the first left-aligned, the rest
/// right-aligned, two spaces between.
fn table(rows: &[Vec<String>], indent: &str) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let mut line = indent.to_string();
            for (c, cell) in r.iter().enumerate() {
                if c == 0 {
                    line += &format!("{cell:<w$}", w = width[0]);
                } else {
                    line += &format!("  {cell:>w$}", w = width[c]);
                }
            }
            line.trim_end().to_string()
        })
        .collect()
}

/// `shardcast_latency_seconds` → `latency`.
fn short(name: &str) -> &str {
    let n = name.strip_prefix("shardcast_").unwrap_or(name);
    n.strip_suffix("_seconds").unwrap_or(n)
}

fn sample_text(r: &SampleRow) -> String {
    let name = r.name.strip_prefix("shardcast_").unwrap_or(&r.name);
    let mut s = if r.labels.is_empty() {
        format!("{name} {}", count(r.value))
    } else {
        format!("{name}{{{}}} {}", r.labels, count(r.value))
    };
    if let Some(rate) = r.rate_per_s {
        s += &format!(" ({}/s)", per_s(rate));
    }
    s
}

fn latency_rows(rows: &[LatencyRow]) -> Vec<Vec<String>> {
    let mut out = vec![["histogram", "window", "count", "p50", "p99", "max"]
        .map(String::from)
        .to_vec()];
    for l in rows {
        let name = if l.labels.is_empty() {
            short(&l.family).to_string()
        } else {
            format!("{} {}", short(&l.family), l.labels)
        };
        let q = |v: Option<f64>| opt(v, |x| if l.seconds { duration(x) } else { count(x) });
        let window = match l.window {
            Window::Recent => "recent",
            Window::Total => "total",
            Window::Exported => "exported",
        };
        out.push(vec![
            name,
            window.into(),
            opt(l.count, count),
            q(l.p50),
            q(l.p99),
            max_text(l.max, l.max_is, l.seconds),
        ]);
    }
    out
}

/// The view as lines of text. `max_other` caps the "other" lines (the
/// terminal view has a screen to fit; `None`: all of them).
pub fn text(s: &Snapshot, max_other: Option<usize>) -> Vec<String> {
    let mut out = vec![format!(
        "shardcast-stat  refresh {}  every {} ms  (p50/p99/max: estimates from histogram buckets)",
        s.refresh, s.interval_ms
    )];
    for p in &s.processes {
        out.push(String::new());
        if !p.up {
            out.push(format!(
                "{}  DOWN  {}",
                p.endpoint,
                p.error.as_deref().unwrap_or("no answer")
            ));
            continue;
        }
        let who = match (&p.role, &p.version) {
            (Some(r), Some(v)) => format!("{r} {v}"),
            (Some(r), None) => r.clone(),
            _ => "?".into(),
        };
        let rates = match p.window_s {
            Some(w) => format!("rates over {w:.2} s"),
            None => "rates after the next scrape".into(),
        };
        out.push(format!(
            "{}  {who}  up  scrape {:.1} ms  {rates}",
            p.endpoint,
            p.scrape_ms.unwrap_or(0.0)
        ));
        if p.unparsed_lines > 0 {
            out.push(format!(
                "  warning: {} lines not understood ({})",
                p.unparsed_lines,
                p.first_unparsed.as_deref().unwrap_or("")
            ));
        }
        if !p.streams.is_empty() {
            let mut rows = vec![[
                "stream",
                "rate/s",
                "messages",
                "lost",
                "recovered",
                "dups",
                "malformed",
                "last_seq",
            ]
            .map(String::from)
            .to_vec()];
            for r in &p.streams {
                rows.push(vec![
                    r.stream.clone(),
                    opt(r.rate_per_s, per_s),
                    opt(r.messages, count),
                    opt(r.lost, count),
                    opt(r.recovered, count),
                    opt(r.duplicates, count),
                    opt(r.malformed, count),
                    opt(r.last_sequence, count),
                ]);
            }
            out.extend(table(&rows, "  "));
        }
        if !p.latency.is_empty() {
            out.extend(table(&latency_rows(&p.latency), "  "));
        }
        if !p.queues.is_empty() {
            let q: Vec<String> = p.queues.iter().map(sample_text).collect();
            out.push(format!("  queues  {}", q.join("  ")));
        }
        if let Some(sn) = &p.snail {
            let mut line = format!("  snail   {}", sn.state());
            if let Some(c) = sn.croaks {
                line += &format!("  croaks {}", count(c));
            }
            if let Some(slow) = sn.slow_records {
                line += &format!("  slow records {}", count(slow));
                if let Some(r) = sn.slow_per_s {
                    line += &format!(" ({}/s)", per_s(r));
                }
            }
            out.push(line);
        }
        let cap = max_other.unwrap_or(usize::MAX);
        for (i, o) in p.other.iter().enumerate() {
            if i == cap {
                out.push(format!(
                    "  other   ... {} more (--once or --report-json shows all)",
                    p.other.len() - cap
                ));
                break;
            }
            out.push(format!("  other   {}", sample_text(o)));
        }
    }
    out
}

/// The CSV header line.
pub const CSV_HEADER: &str = "time_unix_s,endpoint,up,stream,rate_per_s,messages,lost,recovered,duplicates,malformed,last_sequence,queued,queue_max,backlog,p50_s,p99_s,max_s,max_is,snail,slow_records,error";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_num(v: Option<f64>) -> String {
    v.map_or_else(String::new, |x| format!("{x}"))
}

/// Seconds to the nanosecond, without trailing zeros.
fn csv_seconds(v: Option<f64>) -> String {
    v.map_or_else(String::new, |x| {
        if !x.is_finite() {
            return format!("{x}");
        }
        let s = format!("{x:.9}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-" || s == "-0" {
            "0".into()
        } else {
            s.to_string()
        }
    })
}

/// CSV lines of a snapshot: one per stream of each process that is up,
/// one per process that is down (`up` 0, `error` why).
pub fn csv(s: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    let time = format!("{:.3}", s.time_unix_s);
    for p in &s.processes {
        let ep = csv_field(&p.endpoint);
        if !p.up {
            let mut cells = vec![time.clone(), ep, "0".into()];
            cells.extend(std::iter::repeat(String::new()).take(17));
            cells.push(csv_field(p.error.as_deref().unwrap_or("no answer")));
            out.push(cells.join(","));
            continue;
        }
        let snail = p.snail.as_ref();
        for r in &p.streams {
            let max_is = match r.max_is {
                Some(MaxIs::Exact) => "exact",
                Some(MaxIs::AtMost) => "at_most",
                Some(MaxIs::Above) => "above",
                None => "",
            };
            let cells = [
                time.clone(),
                ep.clone(),
                "1".into(),
                csv_field(&r.stream),
                r.rate_per_s.map_or_else(String::new, |x| format!("{x:.3}")),
                csv_num(r.messages),
                csv_num(r.lost),
                csv_num(r.recovered),
                csv_num(r.duplicates),
                csv_num(r.malformed),
                csv_num(r.last_sequence),
                csv_num(r.queued),
                csv_num(r.queue_max),
                csv_num(r.backlog),
                csv_seconds(r.p50_s),
                csv_seconds(r.p99_s),
                csv_seconds(r.max_s),
                max_is.into(),
                snail.map_or_else(String::new, |s| s.state().replace('-', "")),
                csv_num(snail.and_then(|s| s.slow_records)),
                String::new(),
            ];
            out.push(cells.join(","));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{Snail, StreamRow};

    fn snap() -> Snapshot {
        Snapshot {
            refresh: 2,
            time_unix_s: 1.5,
            interval_ms: 1000,
            processes: vec![
                ProcessView {
                    endpoint: "127.0.0.1:9464".into(),
                    up: true,
                    role: Some("shardcast-sub".into()),
                    version: Some("0.1.0".into()),
                    scrape_ms: Some(0.4),
                    window_s: Some(1.0),
                    streams: vec![StreamRow {
                        stream: "shard=0".into(),
                        rate_per_s: Some(20000.0),
                        messages: Some(123456.0),
                        lost: Some(0.0),
                        p50_s: Some(2.5e-5),
                        p99_s: Some(4.9e-5),
                        max_s: Some(5e-5),
                        max_is: Some(MaxIs::AtMost),
                        ..StreamRow::default()
                    }],
                    latency: vec![LatencyRow {
                        family: "shardcast_latency_seconds".into(),
                        labels: "stage=end_to_end".into(),
                        seconds: true,
                        window: Window::Recent,
                        count: Some(200.0),
                        p50: Some(2.5e-5),
                        p99: Some(4.9e-5),
                        max: Some(5e-5),
                        max_is: Some(MaxIs::AtMost),
                    }],
                    snail: Some(Snail {
                        croaks: Some(0.0),
                        slow_records: Some(0.0),
                        slow_per_s: Some(0.0),
                    }),
                    ..ProcessView::default()
                },
                ProcessView {
                    endpoint: "127.0.0.1:1".into(),
                    error: Some("Connection refused, really".into()),
                    ..ProcessView::default()
                },
            ],
        }
    }

    #[test]
    fn the_terminal_text() {
        let t = text(&snap(), None).join("\n");
        assert!(t.contains("127.0.0.1:9464  shardcast-sub 0.1.0  up"), "{t}");
        assert!(t.contains("shard=0"), "{t}");
        assert!(t.contains("20000.0"), "{t}");
        assert!(t.contains("latency stage=end_to_end"), "{t}");
        assert!(t.contains("25.0us"), "{t}");
        assert!(t.contains("<=50.0us"), "{t}");
        assert!(t.contains("snail   ok  croaks 0"), "{t}");
        assert!(
            t.contains("127.0.0.1:1  DOWN  Connection refused, really"),
            "{t}"
        );
    }

    #[test]
    fn csv_lines_have_the_header_s_columns() {
        let cols = CSV_HEADER.split(',').count();
        let lines = csv(&snap());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].split(',').count(), cols, "{}", lines[0]);
        assert!(lines[0].starts_with("1.500,127.0.0.1:9464,1,shard=0,20000.000,123456,0,"));
        assert!(
            lines[0].contains(",0.000025,0.000049,0.00005,at_most,ok,0,"),
            "{}",
            lines[0]
        );
        // The error has a comma: quoted.
        assert!(
            lines[1].ends_with(",\"Connection refused, really\""),
            "{}",
            lines[1]
        );
        assert!(lines[1].starts_with("1.500,127.0.0.1:1,0,"));
    }

    #[test]
    fn csv_seconds_to_the_nanosecond() {
        assert_eq!(csv_seconds(Some(0.00022964211618257263)), "0.000229642");
        assert_eq!(csv_seconds(Some(0.01)), "0.01");
        assert_eq!(csv_seconds(Some(0.0)), "0");
        assert_eq!(csv_seconds(Some(2.0)), "2");
        assert_eq!(csv_seconds(None), "");
    }

    #[test]
    fn units() {
        assert_eq!(duration(4.2e-7), "420ns");
        assert_eq!(duration(2.5e-5), "25.0us");
        assert_eq!(duration(0.0125), "12.50ms");
        assert_eq!(duration(2.0), "2.000s");
        assert_eq!(duration(0.0), "0");
        assert_eq!(count(12.0), "12");
        assert_eq!(count(1.5), "1.5");
        assert_eq!(count(f64::NAN), "NaN");
    }
}
