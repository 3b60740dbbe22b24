//! `--metrics-bind` (issue 15): a running subscriber serves Prometheus
//! metrics that a real Prometheus parser accepts, whose counters grow while
//! data flows, and whose last scrape (during `--metrics-linger-ms`) agrees
//! with the run's `--report-json`.
//!
//! The parser is the Prometheus Python client's OpenMetrics parser (the
//! format `prometheus-client` writes and Prometheus scrapes). Without it the
//! test skips and says why, unless `SHARDCAST_REQUIRE_PROMETHEUS=1` (CI).

use crate::support::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Prints `[[type, sample, labels, value], ...]` for the exposition on stdin.
const PARSE: &str = r#"
import sys, json
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([fam.type, s.name, s.labels, s.value])
print(json.dumps(out))
"#;

/// A Python that has the Prometheus client (the Debian package installs
/// it for /usr/bin/python3, which need not be the first on PATH).
fn python_with_parser() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import prometheus_client.openmetrics.parser"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// One parsed sample.
#[derive(Debug)]
struct Sample {
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed by the Prometheus client.
struct Scrape(Vec<Sample>);

impl Scrape {
    /// Sum of the samples called `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.name == name)
    }
}

/// GET /metrics over plain HTTP/1.0; the body, or `None` if the endpoint
/// did not answer 200.
pub(crate) fn get_metrics(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
}

/// Scrape and parse; a parse error fails the test (the exposition is
/// invalid).
fn scrape(py: &str, addr: SocketAddr) -> Scrape {
    let body = get_metrics(addr).unwrap_or_else(|| panic!("no 200 from http://{addr}/metrics"));
    let mut child = Command::new(py)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the parser");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "the Prometheus parser rejected the scrape: {}\n--- scrape:\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(String, String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).expect("parser JSON");
    Scrape(
        rows.into_iter()
            .map(|(kind, name, labels, value)| Sample {
                kind,
                name,
                labels,
                value,
            })
            .collect(),
    )
}

/// Scrape until `cond` holds (a deadline, never a sleep for delivery).
fn scrape_until(py: &str, addr: SocketAddr, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = None;
    poll_until(what, || {
        let s = scrape(py, addr);
        let ok = cond(&s);
        last = Some(s);
        ok
    });
    last.expect("scraped at least once")
}

/// The parser, or `None` (the test skips, and says why) unless
/// `SHARDCAST_REQUIRE_PROMETHEUS=1`, which fails the test without it.
fn parser_or_skip() -> Option<&'static str> {
    let py = python_with_parser();
    if py.is_none() {
        let why =
            "no python3 with the prometheus_client module (Debian: python3-prometheus-client)";
        assert!(
            std::env::var("SHARDCAST_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
            "SHARDCAST_REQUIRE_PROMETHEUS=1 but {why}"
        );
        eprintln!("skipping metrics e2e: {why}");
    }
    py
}

/// The address of a `... metrics at http://ADDR/metrics` line.
pub(crate) fn metrics_addr(line: &str) -> SocketAddr {
    line.split("http://")
        .nth(1)
        .and_then(|r| r.strip_suffix("/metrics"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

#[test]
fn scrapes_parse_grow_and_end_equal_to_the_report() {
    let Some(py) = parser_or_skip() else {
        return;
    };
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let sub_json = dir.path().join("sub.json");
    let count = 60_000u64;
    let count_s = count.to_string();
    let publ = start_pub(
        2,
        &[
            "--rate",
            "20000",
            "--count",
            &count_s,
            "--wait-subscribers",
            "1",
        ],
    );
    let sub = start_sub(
        &publ.endpoints,
        &[
            "--workers",
            "2",
            "--max-lag-ms",
            "30000",
            "--metrics-bind",
            "127.0.0.1:0",
            // Long enough for any machine; the test ends it with SIGTERM.
            "--metrics-linger-ms",
            "60000",
            "--report-json",
            &path_str(&sub_json),
        ],
    );
    let addr = metrics_addr(&sub.wait_line("metrics at http://"));

    // While data flows: two valid scrapes, the second ahead of the first.
    let received = |s: &Scrape| s.sum("shardcast_received_total", &[]);
    let first = scrape_until(py, addr, "a scrape with records received", |s| {
        received(s) > 0.0
    });
    assert_eq!(first.sum("shardcast_build_info", &[]), 1.0);
    assert!(first.0.iter().any(|s| s.kind == "histogram"
        && s.name == "shardcast_latency_seconds_bucket"
        && s.labels.get("le").map(String::as_str) == Some("+Inf")));
    let n1 = received(&first);
    let second = scrape_until(py, addr, "a scrape with more records received", |s| {
        received(s) > n1
    });
    assert!(
        second.sum("shardcast_processed_total", &[]) >= first.sum("shardcast_processed_total", &[])
    );

    // The run ends; the report is written; the endpoint lingers with the
    // report's totals (the end-only families say they are in).
    poll_until("the report written", || sub_json.exists());
    let last = scrape_until(py, addr, "the final totals", |s| {
        s.has("shardcast_duplicates_total")
    });
    sub.signal(libc::SIGTERM); // ends the linger
    let (st, err, _) = sub.wait();
    assert!(st.success(), "subscriber failed: {st:?}\n{err}");
    let (pst, perr, _) = publ.proc.wait();
    assert!(pst.success(), "publisher failed: {pst:?}\n{perr}");

    let r = read_json(&sub_json);
    assert_eq!(u(&r, "received"), count, "the run itself delivered all");
    let eq = |metric: &str, want: u64| {
        assert_eq!(
            last.sum(metric, &[]),
            want as f64,
            "{metric} against the report"
        )
    };
    eq("shardcast_received_total", u(&r, "received"));
    eq("shardcast_lost_total", u(&r, "lost"));
    eq("shardcast_duplicates_total", u(&r, "duplicates"));
    eq("shardcast_malformed_total", u(&r, "malformed"));
    eq("shardcast_processed_total", u(&r, "processed"));
    assert!(last.has("shardcast_recovered_total"));
    eq("shardcast_recovered_total", u(&r, "recovered"));
    eq("shardcast_slow_records_total", u(&r["slow"], "count"));
    eq("shardcast_snail_croaks_total", 0);
    let e2e = [("stage", "end_to_end")];
    assert_eq!(
        last.sum("shardcast_latency_seconds_count", &e2e),
        u(&r["latency_ns"]["end_to_end"], "count") as f64
    );
    assert_eq!(
        last.sum(
            "shardcast_latency_seconds_bucket",
            &[("stage", "end_to_end"), ("le", "+Inf")]
        ),
        u(&r["latency_ns"]["end_to_end"], "count") as f64
    );
    for shard in ["0", "1"] {
        assert!(last.sum("shardcast_received_total", &[("shard", shard)]) > 0.0);
    }
}

/// `shardcast-record --metrics-bind`: a real recorder of a real publisher
/// (two streams, `--serve` asked once) serves scrapes the parser accepts,
/// whose counters grow while data flows, and whose last scrape (during
/// `--metrics-linger-ms`) equals the recorder's `--report-json`.
#[test]
fn recorder_scrapes_parse_grow_and_end_equal_to_the_report() {
    let Some(py) = parser_or_skip() else {
        return;
    };
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (rec_dir, rec_json) = (tmp.path().join("rec"), tmp.path().join("rec.json"));
    let count = 60_000u64; // both streams together: 3 s at --rate 20000
    let publ = start_pub(
        2,
        &[
            "--rate",
            "20000",
            "--count",
            &count.to_string(),
            "--wait-subscribers",
            "1",
            "--publisher-id",
            "1",
        ],
    );
    let mut args: Vec<String> = Vec::new();
    for ep in &publ.endpoints {
        args.extend(["--connect".into(), ep.clone()]);
    }
    for a in [
        "--dir",
        &path_str(&rec_dir),
        "--max-lag-ms",
        "30000",
        "--serve",
        "tcp://127.0.0.1:*",
        "--metrics-bind",
        "127.0.0.1:0",
        // Long enough for any machine; the test ends it with SIGTERM.
        "--metrics-linger-ms",
        "60000",
        "--report-json",
        &path_str(&rec_json),
    ] {
        args.push(a.to_string());
    }
    let rec = Proc::spawn("shardcast-record", record_bin(), &args);
    // Printed in this order: --serve's endpoint, then the metrics address.
    let serve_ep = rec
        .wait_line("serving recordings on ")
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let addr = metrics_addr(&rec.wait_line("metrics at http://"));

    // One --serve request, answered while the recording runs.
    rec.wait_line("recording p1-s0");
    let ctx = zmq::Context::new();
    let dealer = ctx.socket(zmq::DEALER).unwrap();
    dealer.set_linger(0).unwrap();
    dealer.connect(&serve_ep).unwrap();
    let req = shardcast_recorder::serve::Request {
        key: shardcast_proto::seq::SourceKey {
            publisher_id: 1,
            stream_id: 0,
        },
        wait_ms: 5_000,
        session: 0,
        from_seq: 1,
        to_seq: 100,
        request_id: 1,
    };
    let got = shardcast_recorder::serve::fetch(&dealer, &req, Duration::from_secs(30)).unwrap();
    assert_eq!(
        got.last.expect("a final reply").status,
        shardcast_recorder::serve::Status::Done
    );

    // While data flows (the end-only families are not in yet): two valid
    // scrapes, the second ahead of the first.
    let recorded = |s: &Scrape| s.sum("shardcast_recorded_total", &[]);
    let first = scrape_until(py, addr, "a scrape with records recorded", |s| {
        recorded(s) > 0.0 && !s.has("shardcast_duplicates_total")
    });
    assert_eq!(first.sum("shardcast_build_info", &[]), 1.0);
    assert_eq!(
        first.sum("shardcast_build_info", &[("role", "shardcast-record")]),
        1.0
    );
    assert_eq!(first.sum("shardcast_serve_requests_total", &[]), 1.0);
    assert_eq!(
        first.sum("shardcast_serve_replies_total", &[("status", "done")]),
        1.0
    );
    let (n1, f1) = (
        recorded(&first),
        first.sum("shardcast_frames_received_total", &[]),
    );
    let second = scrape_until(py, addr, "a scrape with more records recorded", |s| {
        recorded(s) > n1
    });
    assert!(second.sum("shardcast_frames_received_total", &[]) >= f1);

    // The run ends (every stream's end-of-stream); the report is written;
    // the endpoint lingers with the report's totals.
    poll_until("the report written", || rec_json.exists());
    let last = scrape_until(py, addr, "the final totals", |s| {
        s.has("shardcast_duplicates_total")
    });
    rec.signal(libc::SIGTERM); // ends the linger
    let (st, err, _) = rec.wait();
    assert!(st.success(), "recorder failed: {st:?}\n{err}");
    let (pst, perr, _) = publ.proc.wait();
    assert!(pst.success(), "publisher failed: {pst:?}\n{perr}");

    let r = read_json(&rec_json);
    assert_eq!(u(&r, "recorded"), count, "the run itself recorded all");
    let eq = |metric: &str, labels: &[(&str, &str)], want: u64| {
        assert_eq!(
            last.sum(metric, labels),
            want as f64,
            "{metric}{labels:?} against the report"
        )
    };
    eq("shardcast_recorded_total", &[], u(&r, "recorded"));
    eq("shardcast_lost_total", &[], u(&r, "lost"));
    eq("shardcast_duplicates_total", &[], u(&r, "duplicates"));
    eq("shardcast_malformed_total", &[], u(&r, "malformed"));
    eq("shardcast_slow_records_total", &[], u(&r, "slow"));
    eq("shardcast_snail_croaks_total", &[], 0);
    eq("shardcast_frames_recorded_total", &[], u(&r, "frames"));
    eq("shardcast_recorded_bytes_total", &[], u(&r, "bytes"));
    eq(
        "shardcast_segments_created_total",
        &[],
        u(&r, "segments_created"),
    );
    eq("shardcast_segment_files", &[], u(&r, "segments"));
    let recorders = r["recorders"].as_array().unwrap();
    let frames: u64 = recorders.iter().map(|x| u(x, "frames")).sum();
    eq("shardcast_frames_received_total", &[], frames);
    for s in r["streams"].as_array().unwrap() {
        let i = u(s, "recorder").to_string();
        eq(
            "shardcast_recorded_total",
            &[("recorder", &i)],
            u(s, "recorded"),
        );
    }
    eq(
        "shardcast_serve_requests_total",
        &[],
        u(&r["serve"], "requests"),
    );
    eq(
        "shardcast_serve_replies_total",
        &[("status", "done")],
        u(&r["serve"], "done"),
    );
}

/// `shardcast-pub --metrics-bind`: a real publisher (two streams, the
/// retransmit server on) and subscriber; the publisher's scrapes parse,
/// grow while data flows, and the last one (during `--metrics-linger-ms`)
/// equals the publisher's `--report-json`, `sent` per stream.
#[test]
fn publisher_scrapes_parse_grow_and_end_equal_to_the_report() {
    let Some(py) = parser_or_skip() else {
        return;
    };
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let pub_json = tmp.path().join("pub.json");
    // The metrics line comes before the streams' "bound" lines, which
    // start_pub waits for (and reads past): the port is chosen here.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let count = 60_000u64; // both streams together: 3 s at --rate 20000
    let publ = start_pub(
        2,
        &[
            "--rate",
            "20000",
            "--count",
            &count.to_string(),
            "--wait-subscribers",
            "1",
            "--retransmit-bind",
            "tcp://127.0.0.1:*",
            "--metrics-bind",
            &bind,
            // Long enough for any machine; the test ends it with SIGTERM.
            "--metrics-linger-ms",
            "60000",
            "--report-json",
            &path_str(&pub_json),
        ],
    );
    let addr: SocketAddr = bind.parse().unwrap();
    let sub = start_sub(&publ.endpoints, &["--max-lag-ms", "30000"]);

    // While data flows (no report yet): two valid scrapes, the second
    // ahead of the first.
    let sent = |s: &Scrape| s.sum("shardcast_sent_total", &[]);
    let first = scrape_until(py, addr, "a scrape with records sent", |s| {
        sent(s) > 0.0 && !pub_json.exists()
    });
    assert_eq!(
        first.sum("shardcast_build_info", &[("role", "shardcast-pub")]),
        1.0
    );
    for stream in ["0", "1"] {
        let one = [("stream", stream)];
        assert_eq!(first.sum("shardcast_subscribers", &one), 1.0);
        assert!(first.0.iter().any(|s| s.kind == "gauge"
            && s.name == "shardcast_behind_schedule_seconds"
            && s.labels.get("stream").map(String::as_str) == Some(stream)));
    }
    assert!(first.has("shardcast_retransmit_requests_total"));
    let (n1, f1) = (sent(&first), first.sum("shardcast_frames_sent_total", &[]));
    let second = scrape_until(py, addr, "a scrape with more records sent", |s| {
        sent(s) > n1
    });
    assert!(second.sum("shardcast_frames_sent_total", &[]) > f1);

    // The run ends; the report is written after the endpoint switched to
    // the report's totals; the endpoint lingers.
    poll_until("the report written", || pub_json.exists());
    let last = scrape(py, addr);
    publ.proc.signal(libc::SIGTERM); // ends the linger
    let (pst, perr, _) = publ.proc.wait();
    assert!(pst.success(), "publisher failed: {pst:?}\n{perr}");
    let (st, err, _) = sub.wait();
    assert!(st.success(), "subscriber failed: {st:?}\n{err}");

    let r = read_json(&pub_json);
    assert_eq!(u(&r, "sent"), count, "the run itself sent all");
    assert_eq!(sent(&last), count as f64);
    for s in r["streams"].as_array().unwrap() {
        let i = u(s, "stream_id").to_string();
        let one = [("stream", i.as_str())];
        for (metric, key) in [
            ("shardcast_sent_total", "sent"),
            ("shardcast_frames_sent_total", "frames"),
            ("shardcast_heartbeats_sent_total", "heartbeats"),
            ("shardcast_last_sequence", "last_seq"),
        ] {
            assert_eq!(
                last.sum(metric, &one),
                u(s, key) as f64,
                "{metric} of stream {i} against the report"
            );
        }
    }
    assert_eq!(
        last.sum("shardcast_retransmit_requests_total", &[]),
        u(&r["retransmit"], "requests") as f64
    );
}

/// `shardcast-relay --metrics-bind`: a real publisher -> relay ->
/// subscriber; the relay's scrapes parse, grow while data flows, and the
/// last one (during `--metrics-linger-ms`) equals its `--report-json`.
#[test]
fn relay_scrapes_parse_grow_and_end_equal_to_the_report() {
    let Some(py) = parser_or_skip() else {
        return;
    };
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let relay_json = tmp.path().join("relay.json");
    let count = 60_000u64;
    let publ = start_pub(
        1,
        &[
            "--rate",
            "20000",
            "--count",
            &count.to_string(),
            "--wait-subscribers",
            "1",
        ],
    );
    let args: Vec<String> = [
        "--connect",
        &publ.endpoints[0],
        "--bind",
        "tcp://127.0.0.1:*",
        "--metrics-bind",
        "127.0.0.1:0",
        // Long enough for any machine; the test ends it with SIGTERM.
        "--metrics-linger-ms",
        "60000",
        "--report-json",
        &path_str(&relay_json),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let relay = Proc::spawn("shardcast-relay", relay_bin(), &args);
    let down = relay_endpoint(&relay, 0);
    let addr = metrics_addr(&relay.wait_line("metrics at http://"));
    let sub = start_sub(&[down], &["--id", "watcher", "--workers", "0"]);
    let received = |s: &Scrape| s.sum("shardcast_received_total", &[]);
    let first = scrape_until(py, addr, "a scrape with records relayed", |s| {
        received(s) > 0.0
    });
    assert_eq!(
        first.sum("shardcast_build_info", &[("role", "shardcast-relay")]),
        1.0
    );
    assert_eq!(first.sum("shardcast_subscribers", &[("hop", "0")]), 1.0);
    assert_eq!(
        first.sum("shardcast_subscribers_named", &[("hop", "0")]),
        1.0
    );
    let n1 = received(&first);
    let second = scrape_until(py, addr, "a scrape with more records relayed", |s| {
        received(s) > n1
    });
    assert!(
        second.sum("shardcast_frames_forwarded_total", &[])
            >= first.sum("shardcast_frames_forwarded_total", &[])
    );
    let (st, err, _) = sub.wait();
    assert!(st.success(), "subscriber failed: {err}");
    // The report is written after the endpoint switched to its numbers.
    poll_until("the report written", || relay_json.exists());
    let last = scrape_until(py, addr, "the final numbers", |_| true);
    relay.signal(libc::SIGTERM); // ends the linger
    let (st, err, _) = relay.wait();
    assert!(st.success(), "relay failed: {st:?}\n{err}");
    let (pst, perr, _) = publ.proc.wait();
    assert!(pst.success(), "publisher failed: {perr}");

    let r = read_json(&relay_json);
    assert_eq!(u(&r, "received"), count, "the relay took all: {r}");
    let eq = |metric: &str, labels: &[(&str, &str)], want: u64| {
        assert_eq!(
            last.sum(metric, labels),
            want as f64,
            "{metric}{labels:?} against the report"
        )
    };
    eq(
        "shardcast_received_total",
        &[("hop", "0")],
        u(&r, "received"),
    );
    eq("shardcast_frames_received_total", &[], u(&r, "frames_in"));
    eq("shardcast_frames_forwarded_total", &[], u(&r, "frames_out"));
    eq("shardcast_lost_total", &[], u(&r, "lost"));
    eq("shardcast_slow_records_total", &[], u(&r, "slow"));
    eq("shardcast_snail_croaks_total", &[], 0);
    let hop = &r["hops"][0];
    eq("shardcast_subscribers", &[], u(hop, "subscribers"));
    eq("shardcast_blocked_sends_total", &[], u(hop, "blocked"));
    let lag_s = r["max_lag_ms"].as_f64().unwrap() / 1e3;
    assert!(
        (last.sum("shardcast_max_lag_seconds", &[("hop", "0")]) - lag_s).abs() < 1e-6,
        "max lag against the report: {lag_s}"
    );
}
