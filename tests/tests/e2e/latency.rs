//! Measurement: the latency files agree with the JSON report, and the
//! stages tell a stalled worker from a slow network (coordinated omission
//! handled: time is measured from the intended send time).

use crate::support::*;
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use std::collections::BTreeMap;

const STAGES: [&str; 4] = ["wire", "queue", "work", "end_to_end"];

/// Total count of each stage in the `.hgrm` file (its `Total count` lines,
/// in block order) and the largest "TotalCount" column value per block.
fn hgrm_totals(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.split("Total count    =").nth(1))
        .map(|rest| rest.trim().trim_end_matches(']').trim().parse().unwrap())
        .collect()
}

#[test]
fn hgrm_interval_log_and_json_agree() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (hgrm, hlog) = (dir.path().join("lat.hgrm"), dir.path().join("lat.hlog"));
    let svg = dir.path().join("lat.svg");
    let run = run_pipeline(
        2,
        &[
            "--rate",
            "20000",
            "--count",
            "60000",
            "--wait-subscribers",
            "1",
        ],
        &[
            "--warmup",
            "0.5",
            "--max-lag-ms",
            "30000",
            "--hgrm",
            &path_str(&hgrm),
            "--hdr-log",
            &path_str(&hlog),
            "--plot",
            &path_str(&svg),
        ],
    );
    let s = run.sub;
    assert_eq!(s["files_ok"], true);
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg"), "an SVG document");
    for st in STAGES {
        assert!(plot.contains(st), "the legend names {st}");
    }
    let lat = &s["latency_ns"];
    let json_counts: Vec<u64> = STAGES.iter().map(|st| u(&lat[*st], "count")).collect();
    // Stages present, percentiles monotone.
    for st in STAGES {
        let l = &lat[st];
        let ps: Vec<u64> = ["min", "p50", "p90", "p99", "p999", "p9999", "max"]
            .iter()
            .map(|k| u(l, k))
            .collect();
        assert!(ps.windows(2).all(|w| w[0] <= w[1]), "{st}: {ps:?}");
        assert!(u(l, "count") > 0, "{st} recorded");
    }
    // Every record is timed once at each stage, bar the warm-up.
    let received = u(&s, "received");
    let warmup = u(&s, "warmup_records");
    assert!(warmup > 0, "the warm-up left records out");
    assert_eq!(
        json_counts[0] + warmup,
        received,
        "wire: all received records"
    );
    for c in &json_counts[1..] {
        assert!(
            *c <= received && *c >= json_counts[0] / 2,
            "worker stages: {json_counts:?}"
        );
    }
    assert_eq!(json_counts[1], json_counts[2]);
    assert_eq!(json_counts[2], json_counts[3]);

    // .hgrm: one block per stage, the same counts; per-stage files too.
    let text = std::fs::read_to_string(&hgrm).unwrap();
    assert_eq!(hgrm_totals(&text), json_counts);
    for (st, want) in STAGES.iter().zip(&json_counts) {
        assert!(text.contains(&format!("#[Stage: {st};")));
        let one = std::fs::read_to_string(dir.path().join(format!("lat.{st}.hgrm"))).unwrap();
        assert_eq!(hgrm_totals(&one), vec![*want]);
    }

    // Interval log: per-second tagged histograms summing to the same counts.
    let bytes = std::fs::read(&hlog).unwrap();
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    let mut intervals = 0;
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(iv) = entry.expect("valid interval log") {
            let tag = iv.tag().expect("tagged").as_str().to_string();
            let raw = base64::engine::general_purpose::STANDARD
                .decode(iv.encoded_histogram())
                .expect("base64");
            let h: hdrhistogram::Histogram<u64> = de
                .deserialize(&mut std::io::Cursor::new(raw))
                .expect("histogram");
            assert!(
                iv.duration().as_secs_f64() <= 1.0 + 1e-9,
                "one second per interval"
            );
            *sums.entry(tag).or_default() += h.len();
            intervals += 1;
        }
    }
    assert!(
        intervals >= 8,
        "a few seconds of four stages: {intervals} entries"
    );
    for (st, want) in STAGES.iter().zip(&json_counts) {
        assert_eq!(
            sums.get(*st).copied().unwrap_or(0),
            *want,
            "{st} in the interval log"
        );
    }
}

/// A worker stalled for 400 ms: the wait shows in `queue` and `end_to_end`,
/// not in `wire`, because the shard keeps receiving on time while the
/// worker's queue absorbs the backlog.
#[test]
fn a_stalled_worker_shows_in_queue_and_end_to_end_not_in_wire() {
    let _g = serial();
    let stall_ns = 400_000_000u64;
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("stall.png");
    let run = run_pipeline(
        1,
        &[
            "--rate",
            "5000",
            "--count",
            "10000",
            "--wait-subscribers",
            "1",
        ],
        &[
            "--workers",
            "1",
            "--stall-worker-ms",
            "400",
            "--stall-after",
            "2000",
            "--max-lag-ms",
            "30000",
            "--on-slow",
            "warn",
            "--plot",
            &path_str(&png),
        ],
    );
    let image = std::fs::read(&png).unwrap();
    assert!(image.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG image");
    let lat = &run.sub["latency_ns"];
    assert_eq!(u(&run.sub, "lost"), 0);
    assert!(
        u(&lat["queue"], "max") >= stall_ns * 9 / 10,
        "queue: {}",
        lat["queue"]
    );
    assert!(
        u(&lat["end_to_end"], "max") >= stall_ns * 9 / 10,
        "e2e: {}",
        lat["end_to_end"]
    );
    assert!(
        u(&lat["wire"], "max") < stall_ns / 2,
        "wire is not the worker's stall: {}",
        lat["wire"]
    );
}
