//! Faults: processes killed, frozen, stalled or told to stop at awkward
//! moments. Each test fails if the behaviour regresses: a restart counted
//! wrong, a publisher held up by a dead peer, a report or latency file left
//! incomplete by a signal, a shutdown that waits forever on a vanished peer.
//!
//! Every wait is a handshake on a line a process prints (or, once, a kernel
//! queue read from /proc) with a deadline; wall-clock limits appear only as
//! hang guards, and the figures the tests measure are printed on stderr
//! (`cargo test ... -- --nocapture` shows them).

use crate::support::*;
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const STAGES: [&str; 4] = ["wire", "queue", "work", "end_to_end"];
/// A `--stats-interval` progress line (not the summary, which is on stdout).
const STATS_LINE: &str = "msg/s  lost ";

// ---------------------------------------------------------------------------
// 1. The publisher dies (SIGKILL) and comes back.
// ---------------------------------------------------------------------------

/// A publisher SIGKILLed mid-stream and restarted on the same endpoints with
/// the same publisher id: the subscriber reconnects by itself, counts one
/// restart per stream, counts nothing twice, receives the second session
/// whole and ends by its end-of-stream.
#[test]
fn a_publisher_killed_and_restarted_is_one_restart_and_nothing_counted_twice() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (pub_json, sub_json) = (dir.path().join("pub2.json"), dir.path().join("sub.json"));
    let common = [
        "--publisher-id",
        "7",
        "--rate",
        "10000",
        "--wait-subscribers",
        "1",
    ];
    let mut a1 = common.to_vec();
    a1.extend(["--duration", "60"]);
    let pub1 = start_pub(2, &a1);
    let endpoints = pub1.endpoints.clone();
    let sub = start_sub(
        &endpoints,
        &[
            "--stats-interval",
            "0.5",
            "--report-json",
            &path_str(&sub_json),
        ],
    );
    // Data has reached the workers (a progress line covers a whole second
    // of it): session 1 is well under way.
    pub1.proc.wait_line("first data message sent");
    sub.wait_line(STATS_LINE);
    let killed_at = Instant::now();
    pub1.proc.signal(libc::SIGKILL);
    let (st, err, _) = pub1.proc.wait();
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{err}");

    // Same endpoints: the ports the OS gave the first run. Binding them again
    // right away works because libzmq sets SO_REUSEADDR on its listeners
    // (the killed run's connections linger in TIME_WAIT); start_pub_on waits
    // for the "bound" lines, so a failed bind fails here.
    let count: u64 = 20_000;
    let mut a2 = common.to_vec();
    let (count_s, pj) = (count.to_string(), path_str(&pub_json));
    a2.extend(["--count", &count_s, "--report-json", &pj]);
    let pub2 = start_pub_on(&endpoints, &a2);
    assert_eq!(pub2.endpoints, endpoints, "the same ports, bound again");
    let bound_at = Instant::now();
    // The subscriber's SUB sockets reconnect on their own (libzmq retries
    // every 100 ms) and subscribe again; that is what the new run waits for.
    let present: Vec<String> = (0..endpoints.len())
        .map(|i| format!("stream {i}: 1 subscriber(s) present"))
        .collect();
    pub2.proc.wait_lines(&present);
    let rejoined_at = Instant::now();
    let (st, err, _) = sub.wait();
    let ended_at = Instant::now();
    assert!(st.success(), "the subscriber ends normally: {st:?}\n{err}");
    let (pst, perr, _) = pub2.proc.wait();
    assert!(pst.success(), "{perr}");
    let p = read_json(&pub_json);
    let s = read_json(&sub_json);
    eprintln!(
        "faults/restart: kill -> second run bound {} ms, -> subscriber back on every stream {} ms (reconnect {} ms); second run to subscriber's end {} ms; session 1 part {} records",
        (bound_at - killed_at).as_millis(),
        (rejoined_at - killed_at).as_millis(),
        (rejoined_at - bound_at).as_millis(),
        (ended_at - rejoined_at).as_millis(),
        u(&s, "received") - u(&p, "sent"),
    );

    assert_eq!(u(&p, "sent"), count);
    assert_eq!(
        s["end_reason"], "end-of-stream",
        "ended by the second session's end-of-stream"
    );
    assert_eq!(s["streams_complete"], true, "{s}");
    assert_eq!(u(&s, "duplicates"), 0, "nothing counted twice");
    assert_eq!(u(&s, "lost"), 0, "a restart is not a gap");
    assert_eq!(u(&s, "missed_before_join"), 0);
    assert_eq!(u(&s, "malformed"), 0);
    assert_eq!(
        u(&s, "restarts"),
        endpoints.len() as u64,
        "one restart per stream (a stream is its own sequence space)"
    );
    assert_eq!(
        u(&s, "processed"),
        u(&s, "received"),
        "each record worked once"
    );
    let streams = s["streams"].as_array().unwrap();
    assert_eq!(streams.len(), endpoints.len(), "one source per stream: {s}");
    for st in streams {
        let i = u(st, "stream_id") as usize;
        let ps = &p["streams"][i];
        assert_eq!(u(st, "publisher_id"), 7);
        assert_eq!(u(st, "restarts"), 1, "exactly one restart: {st}");
        assert_eq!(
            u(st, "session"),
            u(&p, "session"),
            "the current session is the second run's: {st}"
        );
        assert_eq!(st["complete"], true, "the second session is whole: {st}");
        assert_eq!(u(st, "first_seq"), 1);
        assert_eq!(u(st, "last_seq"), u(ps, "last_seq"));
        assert_eq!(st["checksum_ok"], true);
        // Counters are cumulative over sessions. The second session is
        // complete, so exactly its `sent` records are in `received`; with no
        // loss, duplicate or late join, the rest is an unbroken prefix
        // 1..=k of the first session, each record once.
        let (received, sent2) = (u(st, "received"), u(ps, "sent"));
        assert!(
            received > sent2,
            "stream {i}: something of session 1 was received before the kill ({received} vs {sent2})"
        );
        assert_eq!(u(st, "duplicates"), 0);
        assert_eq!(u(st, "lost"), 0);
    }
    assert_eq!(
        u(&s, "received"),
        streams.iter().map(|x| u(x, "received")).sum::<u64>()
    );
}

// ---------------------------------------------------------------------------
// 2. The subscriber dies (SIGKILL): the publisher does not notice in its rate.
// ---------------------------------------------------------------------------

/// A subscriber SIGKILLed mid-stream costs the publisher nothing: every
/// message is sent on schedule, and the end phase ends at once because the
/// dead peer's disconnect counts as its unsubscription (it does not wait
/// for `--eos-timeout-ms`, set here far beyond the test's run).
#[test]
fn a_killed_subscriber_does_not_hold_up_the_publisher() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let pub_json = dir.path().join("pub.json");
    let count: u64 = 40_000;
    let rate: u64 = 10_000;
    let publ = start_pub(
        2,
        &[
            "--rate",
            &rate.to_string(),
            "--count",
            &count.to_string(),
            "--wait-subscribers",
            "1",
            // Longer than the hang guard: if the end phase had to time out,
            // the test would fail rather than pass slowly.
            "--eos-timeout-ms",
            "600000",
            "--report-json",
            &path_str(&pub_json),
        ],
    );
    let sub = start_sub(&publ.endpoints, &["--stats-interval", "0.5"]);
    publ.proc.wait_line("first data message sent");
    sub.wait_line(STATS_LINE);
    let killed_at = Instant::now();
    sub.signal(libc::SIGKILL);
    let (st, _, _) = sub.wait();
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    let (pst, perr, _) = publ.proc.wait();
    let pub_done = killed_at.elapsed();
    assert!(
        pst.success(),
        "the publisher ends normally: {pst:?}\n{perr}"
    );
    let p = read_json(&pub_json);
    let (elapsed_s, max_behind_ms) = (
        p["elapsed_s"].as_f64().unwrap(),
        p["max_behind_ms"].as_f64().unwrap(),
    );
    eprintln!(
        "faults/dead subscriber: publisher sent {} in {elapsed_s:.3} s, behind schedule p99 {} us, max {max_behind_ms:.3} ms; ended {} ms after the kill",
        u(&p, "sent"),
        u(&p["behind_schedule_ns"], "p99") / 1000,
        pub_done.as_millis()
    );
    assert_eq!(p["end_reason"], "count");
    assert_eq!(u(&p, "sent"), count, "every message was sent");
    // The run lasts count/rate = 4 s by schedule and the kill comes after
    // the first progress line (about 1.3 s in). A publisher blocked by the
    // dead peer would fall behind by the length of the block, seconds for a
    // block lasting to the end; this one is late by scheduling noise only
    // (tens of ms on a busy 2-core box), so a quarter of the run separates
    // the two without timing anything tightly.
    assert!(
        elapsed_s < (count / rate) as f64 * 1.25,
        "kept the rate: {elapsed_s} s"
    );
    assert!(
        max_behind_ms < 1000.0 * elapsed_s / 4.0,
        "never blocked: max behind {max_behind_ms} ms in a {elapsed_s} s run"
    );
    for s in p["streams"].as_array().unwrap() {
        assert_eq!(u(s, "send_errors"), 0);
        assert_eq!(
            s["eos_acknowledged"], true,
            "the disconnect counted as leaving: {s}"
        );
        assert_eq!(u(s, "subscribers"), 0);
    }
    assert_eq!(
        p["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| u(s, "sent"))
            .sum::<u64>(),
        count
    );
}

// ---------------------------------------------------------------------------
// 3. SIGTERM at any time: reports and latency files complete and valid.
// ---------------------------------------------------------------------------

/// The subscriber's output files in a temporary directory.
struct SubFiles {
    _dir: tempfile::TempDir,
    json: PathBuf,
    hgrm: PathBuf,
    hlog: PathBuf,
    svg: PathBuf,
}

impl SubFiles {
    fn new() -> SubFiles {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        SubFiles {
            json: p.join("sub.json"),
            hgrm: p.join("lat.hgrm"),
            hlog: p.join("lat.hlog"),
            svg: p.join("lat.svg"),
            _dir: dir,
        }
    }

    /// `--report-json`, `--hgrm`, `--hdr-log`, `--plot` and `extra`.
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for (flag, path) in [
            ("--report-json", &self.json),
            ("--hgrm", &self.hgrm),
            ("--hdr-log", &self.hlog),
            ("--plot", &self.svg),
        ] {
            v.push(flag.into());
            v.push(path_str(path));
        }
        v
    }

    /// Every file is there, whole and consistent with the others; returns
    /// the report.
    fn check(&self) -> serde_json::Value {
        let s = read_json(&self.json);
        assert!(
            !self.json.with_extension("json.tmp").exists(),
            "no temporary report left behind"
        );
        assert!(s["end_reason"].is_string(), "{s}");
        for key in [
            "received",
            "lost",
            "duplicates",
            "out_of_order",
            "missed_before_join",
            "restarts",
            "malformed",
            "processed",
            "warmup_records",
        ] {
            u(&s, key);
        }
        for key in ["streams_complete", "drained", "files_ok"] {
            assert!(s[key].is_boolean(), "{key} in {s}");
        }
        assert_eq!(s["files_ok"], true, "the latency files were written: {s}");
        assert!(s["elapsed_s"].is_number());
        for key in ["streams", "shards", "workers", "placement"] {
            assert!(s[key].is_array(), "{key} in {s}");
        }
        let counts: Vec<u64> = STAGES
            .iter()
            .map(|st| {
                let l = &s["latency_ns"][*st];
                let ps: Vec<u64> = ["min", "p50", "p90", "p99", "p999", "p9999", "max"]
                    .iter()
                    .map(|k| u(l, k))
                    .collect();
                assert!(ps.windows(2).all(|w| w[0] <= w[1]), "{st}: {ps:?}");
                assert!(l["mean"].is_number(), "{st}: {l}");
                u(l, "count")
            })
            .collect();

        // .hgrm: one block per stage, every row numeric, the JSON's counts;
        // and one file per stage beside it.
        let text = std::fs::read_to_string(&self.hgrm).unwrap();
        assert_eq!(
            hgrm_blocks(&text),
            STAGES
                .iter()
                .zip(&counts)
                .map(|(s, c)| (s.to_string(), *c))
                .collect::<Vec<_>>()
        );
        let stem = self.hgrm.with_extension("");
        for (st, c) in STAGES.iter().zip(&counts) {
            let one = PathBuf::from(format!("{}.{st}.hgrm", stem.display()));
            let text =
                std::fs::read_to_string(&one).unwrap_or_else(|e| panic!("{}: {e}", one.display()));
            let blocks = hgrm_blocks(&format!("#[Stage: {st};]\n{text}"));
            assert_eq!(blocks, vec![(st.to_string(), *c)]);
        }

        // Interval log: every entry decodes; per stage they sum to the JSON.
        let bytes = std::fs::read(&self.hlog).unwrap();
        let mut sums: BTreeMap<String, u64> = BTreeMap::new();
        let mut de = Deserializer::new();
        for entry in IntervalLogIterator::new(&bytes) {
            if let LogEntry::Interval(iv) = entry.expect("a valid interval log") {
                let tag = iv.tag().expect("tagged").as_str().to_string();
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(iv.encoded_histogram())
                    .expect("base64");
                let h: hdrhistogram::Histogram<u64> = de
                    .deserialize(&mut std::io::Cursor::new(raw))
                    .expect("a histogram");
                *sums.entry(tag).or_default() += h.len();
            }
        }
        for (st, c) in STAGES.iter().zip(&counts) {
            assert_eq!(
                sums.get(*st).copied().unwrap_or(0),
                *c,
                "{st} in the interval log"
            );
        }

        // The plot: a whole SVG document.
        let svg = std::fs::read_to_string(&self.svg).unwrap();
        assert!(svg.starts_with("<svg"), "an SVG document");
        assert!(svg.trim_end().ends_with("</svg>"), "a whole SVG document");
        for (st, c) in STAGES.iter().zip(&counts) {
            // The plot leaves out stages with nothing recorded.
            assert_eq!(
                svg.contains(st),
                *c > 0,
                "the legend names {st} iff it has data"
            );
        }
        s
    }
}

/// `(stage, total count)` of each block of an `.hgrm` file, checking that
/// every row between a block's header and its footer is numeric.
fn hgrm_blocks(text: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stage = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#[Stage: ") {
            let name = rest.split(';').next().unwrap().trim_end_matches(']');
            stage = Some(name.to_string());
        } else if let Some(rest) = line.split("Total count    =").nth(1) {
            let total = rest.trim().trim_end_matches(']').trim().parse().unwrap();
            out.push((stage.take().expect("a block per stage"), total));
        } else if !line.is_empty() && !line.starts_with('#') && !line.starts_with("Value") {
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert!(
                (3..=4).contains(&cols.len()) && cols[..3].iter().all(|c| c.parse::<f64>().is_ok()),
                "a percentile row: {line:?}"
            );
        }
    }
    out
}

/// SIGTERM right after the subscriber says its shard is connected, before
/// any data (the publisher waits for a second subscriber that never comes).
#[test]
fn subscriber_sigterm_before_any_data_writes_valid_files() {
    let _g = serial();
    let files = SubFiles::new();
    let publ = start_pub(1, &["--rate", "10000", "--wait-subscribers", "2"]);
    let args = files.args(&[]);
    let sub = start_sub(
        &publ.endpoints,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    sub.wait_line("shard-0 connected");
    let t = Instant::now();
    sub.signal(libc::SIGTERM);
    let (st, err, _) = sub.wait();
    eprintln!(
        "faults/sigterm before data: subscriber exited {} ms after SIGTERM",
        t.elapsed().as_millis()
    );
    assert!(st.success(), "exit 0 on a signal: {st:?}\n{err}");
    let s = files.check();
    assert_eq!(s["end_reason"], "signal");
    assert_eq!(u(&s, "received"), 0);
    assert_eq!(u(&s["latency_ns"]["end_to_end"], "count"), 0);
    assert_eq!(s["streams_complete"], false);
    // The publisher, still waiting, stops on its own SIGTERM.
    publ.proc.signal(libc::SIGTERM);
    let (pst, perr, _) = publ.proc.wait();
    assert!(pst.success(), "{perr}");
}

/// SIGTERM mid-stream, after the first progress line.
#[test]
fn subscriber_sigterm_mid_stream_writes_valid_files() {
    let _g = serial();
    let files = SubFiles::new();
    let publ = start_pub(
        2,
        &[
            "--rate",
            "10000",
            "--duration",
            "60",
            "--wait-subscribers",
            "1",
        ],
    );
    let args = files.args(&["--stats-interval", "0.5"]);
    let sub = start_sub(
        &publ.endpoints,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    sub.wait_line(STATS_LINE);
    let t = Instant::now();
    sub.signal(libc::SIGTERM);
    let (st, err, _) = sub.wait();
    eprintln!(
        "faults/sigterm mid-stream: subscriber exited {} ms after SIGTERM",
        t.elapsed().as_millis()
    );
    assert!(st.success(), "exit 0 on a signal: {st:?}\n{err}");
    let s = files.check();
    assert_eq!(s["end_reason"], "signal");
    assert!(u(&s, "received") > 0);
    assert_eq!(s["drained"], true);
    assert_eq!(
        u(&s, "processed"),
        u(&s["latency_ns"]["end_to_end"], "count"),
        "every processed record timed"
    );
    assert_eq!(u(&s, "lost"), 0);
    assert_eq!(s["streams_complete"], false, "cut short");
    publ.proc.signal(libc::SIGTERM);
    let (pst, perr, _) = publ.proc.wait();
    assert!(pst.success(), "{perr}");
}

/// SIGTERM while the publisher is in its end phase and the subscriber is
/// far behind (1 ms of work per record against a flat-out publisher), so it
/// has not had end-of-stream yet.
#[test]
fn subscriber_sigterm_during_the_publishers_end_phase_writes_valid_files() {
    let _g = serial();
    let files = SubFiles::new();
    let dir = tempfile::tempdir().unwrap();
    let pub_json = dir.path().join("pub.json");
    let publ = start_pub(
        1,
        &[
            "--rate",
            "0",
            "--count",
            "50000",
            // One record per frame: the drain budget counts queued frames
            // as records.
            "--batch",
            "1",
            "--sndhwm",
            "1000",
            "--sndbuf",
            "65536",
            "--wait-subscribers",
            "1",
            "--eos-timeout-ms",
            "600000",
            "--report-json",
            &path_str(&pub_json),
        ],
    );
    let args = files.args(&[
        "--rcvhwm",
        "1000",
        "--rcvbuf",
        "65536",
        "--inproc-hwm",
        "100",
        "--coalesce",
        "1",
        "--workers",
        "1",
        "--work-ns",
        "1000000",
        "--on-slow",
        "warn",
        "--max-lag-ms",
        "600000",
    ]);
    let sub = start_sub(
        &publ.endpoints,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    publ.proc.wait_line("end phase (count)");
    let t = Instant::now();
    sub.signal(libc::SIGTERM);
    let (st, err, _) = sub.wait();
    eprintln!(
        "faults/sigterm in end phase: subscriber exited {} ms after SIGTERM",
        t.elapsed().as_millis()
    );
    assert!(st.success(), "exit 0 on a signal: {st:?}\n{err}");
    let s = files.check();
    assert_eq!(s["end_reason"], "signal");
    assert_eq!(s["drained"], true);
    assert!(u(&s, "received") > 0);
    assert_eq!(
        s["streams"][0]["eos"], false,
        "stopped before end-of-stream reached it: {s}"
    );
    // Its leaving is what ends the publisher's end phase.
    let (pst, perr, _) = publ.proc.wait();
    assert!(pst.success(), "{perr}");
    let p = read_json(&pub_json);
    assert_eq!(u(&p, "sent"), 50_000);
    assert_eq!(p["streams"][0]["eos_acknowledged"], true);
}

/// Publisher SIGTERM while it waits for its first subscriber: nothing sent,
/// a valid report, exit 0 (a signal is a normal end).
#[test]
fn publisher_sigterm_before_any_subscriber_reports_and_exits_0() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let pub_json = dir.path().join("pub.json");
    let publ = start_pub(
        2,
        &[
            "--rate",
            "10000",
            "--count",
            "1000",
            "--wait-subscribers",
            "1",
            "--report-json",
            &path_str(&pub_json),
        ],
    );
    publ.proc.signal(libc::SIGTERM);
    let (st, err, out) = publ.proc.wait();
    assert!(st.success(), "{st:?}\n{err}");
    assert!(!err.contains("first data message sent"), "{err}");
    assert!(out.contains("ended by signal"), "{out}");
    let p = read_json(&pub_json);
    check_pub_report_keys(&p, 2);
    assert_eq!(p["end_reason"], "signal");
    assert_eq!(u(&p, "sent"), 0);
    for s in p["streams"].as_array().unwrap() {
        assert_eq!(u(s, "last_seq"), 0);
        // Stopped before its start, a stream sends no end-of-stream (issue
        // 9, defect 1: one with last seq 0 made a stream that never was
        // look complete), so none is acknowledged.
        assert_eq!(u(s, "eos_sent"), 0, "{s}");
        assert_eq!(s["eos_acknowledged"], false, "{s}");
    }
}

/// Publisher SIGTERM mid-stream with a healthy subscriber: it stops sending,
/// ends every stream properly, reports, exits 0; the subscriber has it all.
#[test]
fn publisher_sigterm_mid_stream_reports_and_exits_0() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let pub_json = dir.path().join("pub.json");
    let sub_json = dir.path().join("sub.json");
    let count: u64 = 1_000_000;
    let publ = start_pub(
        2,
        &[
            "--rate",
            "10000",
            "--count",
            &count.to_string(),
            "--batch",
            "8",
            "--wait-subscribers",
            "1",
            "--report-json",
            &path_str(&pub_json),
        ],
    );
    let sub = start_sub(
        &publ.endpoints,
        &[
            "--stats-interval",
            "0.5",
            "--report-json",
            &path_str(&sub_json),
        ],
    );
    sub.wait_line(STATS_LINE);
    publ.proc.signal(libc::SIGTERM);
    let (st, err, _) = publ.proc.wait();
    assert!(st.success(), "{st:?}\n{err}");
    let p = read_json(&pub_json);
    check_pub_report(&p, 2);
    assert_eq!(p["end_reason"], "signal");
    let sent = u(&p, "sent");
    assert!(sent > 0 && sent < count, "cut short: {sent}");
    for s in p["streams"].as_array().unwrap() {
        assert_eq!(u(s, "last_seq"), u(s, "sent"));
        assert_eq!(s["eos_acknowledged"], true, "{s}");
    }
    let (sst, serr, _) = sub.wait();
    assert!(sst.success(), "{serr}");
    let s = read_json(&sub_json);
    assert_eq!(s["end_reason"], "end-of-stream");
    assert_eq!(u(&s, "received"), sent);
    assert_eq!(s["streams_complete"], true);
}

/// The report of a publisher whose streams started: its keys, and every
/// stream sent end-of-stream.
fn check_pub_report(p: &serde_json::Value, streams: usize) {
    check_pub_report_keys(p, streams);
    for s in p["streams"].as_array().expect("streams") {
        assert!(u(s, "eos_sent") >= 1, "end-of-stream went out: {s}");
    }
}

/// The publisher report's keys and their consistency.
fn check_pub_report_keys(p: &serde_json::Value, streams: usize) {
    assert_eq!(p["role"], "shardcast-pub");
    assert!(p["end_reason"].is_string());
    for key in ["sent", "rate", "session", "publisher_id"] {
        u(p, key);
    }
    for key in ["elapsed_s", "msgs_per_sec", "max_behind_ms"] {
        assert!(p[key].is_number(), "{key} in {p}");
    }
    for key in ["p50", "p99", "max", "count"] {
        u(&p["behind_schedule_ns"], key);
    }
    let ss = p["streams"].as_array().expect("streams");
    assert_eq!(ss.len(), streams);
    for s in ss {
        for key in [
            "sent",
            "frames",
            "heartbeats",
            "last_seq",
            "checksum",
            "eos_sent",
            "send_errors",
        ] {
            u(s, key);
        }
        assert!(s["eos_acknowledged"].is_boolean());
        assert!(s["subscribers"].is_i64());
    }
    assert_eq!(ss.iter().map(|s| u(s, "sent")).sum::<u64>(), u(p, "sent"));
}

/// SIGTERM the moment a process is started, before it can have installed
/// its handler (or just after): the default action kills it outright, or
/// the handler turns it into an orderly stop. Either is acceptable; a hang,
/// a failure exit, or a half-written report is not. Both binaries wait for
/// something that never comes, so a signal lost during start-up hangs them
/// into the hang guard.
#[test]
fn sigterm_at_start_up_kills_or_stops_cleanly_never_half_way() {
    let _g = serial();
    let mut outcomes = BTreeMap::<&str, u32>::new();
    for round in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("report.json");
        let j = path_str(&json);
        let (name, bin, args): (&str, _, Vec<&str>) = if round % 2 == 0 {
            (
                "pub",
                pub_bin(),
                vec![
                    "--bind",
                    "tcp://127.0.0.1:*",
                    "--wait-subscribers",
                    "1",
                    "--report-json",
                    &j,
                ],
            )
        } else {
            (
                "sub",
                sub_bin(),
                vec!["--connect", "tcp://127.0.0.1:9", "--report-json", &j],
            )
        };
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let p = Proc::spawn("at start-up", bin, &v);
        p.signal(libc::SIGTERM);
        let (st, err, _) = p.wait();
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        if st.signal() == Some(libc::SIGTERM) {
            assert!(
                leftovers.is_empty(),
                "{name} killed before it wrote anything: {leftovers:?}"
            );
            *outcomes.entry("killed").or_default() += 1;
        } else {
            assert!(st.success(), "{name}: {st:?}\n{err}");
            assert_eq!(read_json(&json)["end_reason"], "signal");
            assert_eq!(leftovers.len(), 1, "{leftovers:?}");
            *outcomes.entry("stopped").or_default() += 1;
        }
    }
    eprintln!("faults/sigterm at start-up: {outcomes:?}");
}

// ---------------------------------------------------------------------------
// 4. No thread blocks forever when a peer vanished or froze.
// ---------------------------------------------------------------------------

/// A subscriber whose publisher was SIGKILLed (no end-of-stream will ever
/// come) still stops on SIGTERM with a valid report.
#[test]
fn a_subscriber_whose_publisher_died_stops_on_sigterm() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let sub_json = dir.path().join("sub.json");
    let publ = start_pub(
        2,
        &[
            "--rate",
            "10000",
            "--duration",
            "60",
            "--wait-subscribers",
            "1",
        ],
    );
    let sub = start_sub(
        &publ.endpoints,
        &[
            "--stats-interval",
            "0.5",
            "--report-json",
            &path_str(&sub_json),
        ],
    );
    sub.wait_line(STATS_LINE);
    publ.proc.signal(libc::SIGKILL);
    let (pst, _, _) = publ.proc.wait();
    assert_eq!(pst.signal(), Some(libc::SIGKILL));
    let t = Instant::now();
    sub.signal(libc::SIGTERM);
    let (st, err, _) = sub.wait();
    eprintln!(
        "faults/dead publisher: subscriber exited {} ms after SIGTERM",
        t.elapsed().as_millis()
    );
    assert!(st.success(), "{st:?}\n{err}");
    let s = read_json(&sub_json);
    assert_eq!(s["end_reason"], "signal");
    assert!(u(&s, "received") > 0);
    assert_eq!(u(&s, "processed"), u(&s, "received"));
    assert_eq!(s["drained"], true);
    assert_eq!(s["streams_complete"], false, "no end-of-stream came");
    assert!(s["streams"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["eos"] == false));
}

/// A publisher whose only subscriber is frozen (SIGSTOP: the TCP connection
/// is up, the peer reads nothing, every queue on the way is full) still
/// stops on SIGTERM within its end-phase bound: `--eos-timeout-ms` of
/// repeating end-of-stream, then a linger of at most 1 s.
#[test]
fn a_publisher_with_a_frozen_subscriber_stops_within_its_eos_timeout() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let pub_json = dir.path().join("pub.json");
    let eos_timeout_ms: u64 = 1000;
    let publ = start_pub(
        1,
        &[
            "--rate",
            "20000",
            "--duration",
            "60",
            "--sndhwm",
            "1000",
            "--sndbuf",
            "65536",
            "--wait-subscribers",
            "1",
            "--eos-timeout-ms",
            &eos_timeout_ms.to_string(),
            "--report-json",
            &path_str(&pub_json),
        ],
    );
    let sub = start_sub(
        &publ.endpoints,
        &[
            "--rcvhwm",
            "1000",
            "--rcvbuf",
            "65536",
            "--stats-interval",
            "0.5",
        ],
    );
    sub.wait_line(STATS_LINE);
    let frozen = freeze(&sub);
    // Queues full: the kernel send queue of the publisher's connection fills
    // only when the peer's receive buffer is full and it reads nothing. At
    // 20K msg/s of 100 bytes this takes a few tens of ms.
    let port = port_of(&publ.endpoints[0]);
    poll_until("the frozen subscriber's queues fill up", || {
        tcp_send_queue(port).is_some_and(|q| q >= 65536)
    });
    let t = Instant::now();
    publ.proc.signal(libc::SIGTERM);
    let (st, err, _) = publ.proc.wait();
    let took = t.elapsed();
    drop(frozen);
    eprintln!(
        "faults/frozen subscriber: publisher exited {} ms after SIGTERM (eos timeout {eos_timeout_ms} ms + linger)",
        took.as_millis()
    );
    assert!(st.success(), "{st:?}\n{err}");
    assert!(
        err.contains("still connected"),
        "it says the subscriber may not have end-of-stream: {err}"
    );
    let p = read_json(&pub_json);
    check_pub_report(&p, 1);
    assert_eq!(p["end_reason"], "signal");
    let s = &p["streams"][0];
    assert_eq!(s["eos_acknowledged"], false, "{s}");
    assert_eq!(u(s, "subscribers"), 1, "{s}");
    // Bounded by the end phase, not by the frozen peer. The slack is wide
    // (a loaded 2-core box); an unbounded wait would be minutes.
    let bound = Duration::from_millis(eos_timeout_ms + eos_timeout_ms.min(1000));
    assert!(
        took < bound + Duration::from_secs(10),
        "took {took:?}, bound {bound:?} + slack"
    );
    assert!(
        took >= Duration::from_millis(eos_timeout_ms),
        "it did give end-of-stream its time: {took:?}"
    );
}

/// A subscriber whose only worker is stuck (fault injection: a 10-minute
/// stall) still ends on SIGTERM: the drain gives up after
/// `--drain-timeout-ms`, the worker's join after the 5 s grace, and the
/// report says so (exit 1: workers that did not drain or stop are a
/// failure, per the exit-code table).
#[test]
fn a_subscriber_with_a_stuck_worker_still_ends_on_sigterm() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let sub_json = dir.path().join("sub.json");
    let publ = start_pub(
        1,
        &[
            "--rate",
            "10000",
            "--duration",
            "60",
            "--sndbuf",
            "65536",
            "--wait-subscribers",
            "1",
        ],
    );
    let sub = start_sub(
        &publ.endpoints,
        &[
            "--workers",
            "1",
            "--stall-worker-ms",
            "600000",
            "--stall-after",
            "1",
            "--inproc-hwm",
            "100",
            "--drain-timeout-ms",
            "500",
            "--on-slow",
            "warn",
            "--max-lag-ms",
            "600000",
            "--rcvhwm",
            "1000",
            "--rcvbuf",
            "65536",
            "--report-json",
            &path_str(&sub_json),
        ],
    );
    // The worker stalls after its first record; the shard then blocks on
    // the worker's full queue, the SUB's queue and the kernel buffers fill,
    // and the publisher's send queue grows. A healthy worker keeps that
    // queue near empty at this rate, so a full one means the worker is stuck.
    // (No progress line to wait for: a shard blocked on a full worker queue
    // hands over no histograms, so the progress lines stop.)
    let port = port_of(&publ.endpoints[0]);
    poll_until("the stuck worker backs the pipeline up", || {
        tcp_send_queue(port).is_some_and(|q| q >= 65536)
    });
    let t = Instant::now();
    sub.signal(libc::SIGTERM);
    let (st, err, _) = sub.wait();
    let took = t.elapsed();
    eprintln!(
        "faults/stuck worker: subscriber exited {} ms after SIGTERM",
        took.as_millis()
    );
    assert_eq!(st.code(), Some(1), "{st:?}\n{err}");
    assert!(err.contains("did not stop"), "{err}");
    let s = read_json(&sub_json);
    assert_eq!(s["end_reason"], "error", "{s}");
    assert_eq!(s["drained"], false);
    assert!(u(&s, "received") > 0);
    publ.proc.signal(libc::SIGTERM);
    let (pst, perr, _) = publ.proc.wait();
    assert!(pst.success(), "{perr}");
}
