//! Slow consumers: the clock-robust (relative) snail, the worker
//! stage check, the forensic report and operator alarm, and --explain-hwm.

use crate::support::*;
use std::time::Duration;

/// A publisher whose clock is off by `offset_ms`, sending `count` messages
/// at `rate` to one subscriber.
fn offset_pub(offset_ms: i64, rate: u64, count: u64) -> Publisher {
    start_pub(
        1,
        &[
            "--rate",
            &rate.to_string(),
            "--count",
            &count.to_string(),
            "--wait-subscribers",
            "1",
            "--clock-offset-ms",
            &offset_ms.to_string(),
        ],
    )
}

#[test]
fn a_clock_offset_croaks_absolute_mode_but_not_relative_mode() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    // The publisher's clock runs 5 s behind ours: every message looks 5 s
    // old. Absolute mode must take that for lag (limit 1 s) ...
    let publ = offset_pub(-5000, 5000, 5000);
    let abs_json = dir.path().join("abs.json");
    let sub = start_sub(&publ.endpoints, &["--report-json", &path_str(&abs_json)]);
    let (st, err, _) = sub.wait();
    assert_eq!(st.code(), Some(3), "absolute mode croaks: {err}");
    let s = read_json(&abs_json);
    assert_eq!(s["slow"]["mode"], "absolute");
    assert!(u(&s["snail"], "lag_ns") > 4_000_000_000, "{}", s["snail"]);
    drop(publ);

    // ... relative mode sees a constant offset, not a backlog.
    let publ = offset_pub(-5000, 5000, 5000);
    let rel_json = dir.path().join("rel.json");
    let sub = start_sub(
        &publ.endpoints,
        &[
            "--snail-mode",
            "relative",
            "--report-json",
            &path_str(&rel_json),
        ],
    );
    let (st, err, _) = sub.wait();
    assert!(st.success(), "relative mode runs clean: {err}");
    assert!(publ.proc.wait().0.success());
    let s = read_json(&rel_json);
    assert_eq!(s["slow"]["mode"], "relative");
    assert_eq!(s["slow"]["window_s"], 60.0);
    assert_eq!(u(&s["slow"], "count"), 0);
    assert!(s["snail"].is_null());
    assert_eq!(s["streams_complete"], true);
    assert_eq!(u(&s, "received"), 5000);
    assert_eq!(u(&s["suspect_reasons"], "ts_future"), 0);
}

#[test]
fn a_stuck_worker_is_caught_in_relative_mode_with_forensics_and_an_alarm() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (sub_json, forensics) = (dir.path().join("sub.json"), dir.path().join("snail.json"));
    // The operator's endpoint.
    let ctx = zmq::Context::new();
    let operator = ctx.socket(zmq::PULL).unwrap();
    operator.set_linger(0).unwrap();
    operator.bind("tcp://127.0.0.1:*").unwrap();
    let alarm_ep = operator.get_last_endpoint().unwrap().unwrap();
    operator
        .set_rcvtimeo(PROCESS_TIMEOUT.as_millis() as i32)
        .unwrap();

    // The publisher's clock is 3 s ahead (ages look negative); worker 0
    // stops for 3 s after 500 records while the shard and worker 1 keep
    // up: only a check on the worker stage can see it, and only from
    // outside the worker (it takes no record to judge).
    let publ = offset_pub(3000, 5000, 100_000);
    let sub = start_sub(
        &publ.endpoints,
        &[
            "--snail-mode",
            "relative",
            "--max-lag-ms",
            "300",
            "--workers",
            "2",
            "--stall-worker-ms",
            "3000",
            "--stall-after",
            "500",
            "--snail-report",
            &path_str(&forensics),
            "--alarm",
            &alarm_ep,
            "--report-json",
            &path_str(&sub_json),
        ],
    );
    let (st, err, _) = sub.wait();
    assert_eq!(st.code(), Some(3), "{err}");
    assert!(
        err.contains("SNAIL ALARM: worker-0 has taken no record for"),
        "{err}"
    );
    let written = err.find("forensic report written").expect(&err);
    let alarmed = err.find("snail alarm sent").expect(&err);
    assert!(written < alarmed, "the report is written before the alarm");

    let s = read_json(&sub_json);
    assert_eq!(s["end_reason"], "snail");
    assert_eq!(s["snail"]["stage"], "worker");
    assert_eq!(s["snail"]["mode"], "relative");
    assert_eq!(s["snail"]["detected_by"], "watchdog");
    let lag = u(&s["snail"], "lag_ns");
    assert!(lag > 300_000_000, "over the limit: {lag}");
    assert_eq!(u(&s["shards"][0], "slow"), 0, "the shard kept up");

    let f = read_json(&forensics);
    assert_eq!(f["kind"], "shardcast.snail_report");
    assert_eq!(f["snail"]["agent"], "worker-0");
    assert_eq!(u(&f["hwm"], "rcvhwm"), 100_000);
    assert_eq!(u(&f["hwm"], "inproc_hwm"), 1000);
    let queues = f["snail"]["queues"].as_array().unwrap();
    let w0 = queues.iter().find(|q| q["agent"] == "worker-0").unwrap();
    let w1 = queues.iter().find(|q| q["agent"] == "worker-1").unwrap();
    assert!(u(w0, "backlog") > 0, "worker-0 is behind: {w0}");
    assert!(
        u(w0, "backlog") > u(w1, "backlog"),
        "the stuck worker holds the backlog: {queues:?}"
    );
    assert!(u(&f["streams"][0], "last_seq") >= 500);
    assert!(!f["recent_latency"].as_array().unwrap().is_empty());
    assert!(f["recent_latency"][0]["stages"]["queue"]["count"].is_u64());
    assert!(f["placement"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["thread"] == "worker-0"));
    assert_eq!(u(&f["links"][0], "connects"), 1);

    let msg = operator.recv_bytes(0).expect("the alarm arrives");
    let a: serde_json::Value = serde_json::from_slice(&msg).unwrap();
    assert_eq!(a["kind"], "shardcast.alarm");
    assert_eq!(a["version"], 1);
    assert_eq!(a["reason"], "snail");
    assert_eq!(a["stage"], "worker");
    assert_eq!(a["agent"], "worker-0");
    assert_eq!(a["exit_code"], 3);
    assert_eq!(a["snail_report"], path_str(&forensics));
    assert!(u(&a, "pid") > 0);
    eprintln!(
        "relative snail: worker-0 caught at {:.1} ms of queueing (limit 300 ms)",
        lag as f64 / 1e6
    );
}

#[test]
fn a_missing_operator_does_not_hang_the_croak() {
    let _g = serial();
    // Nothing listens on the alarm endpoint: the alarm gives up after its
    // timeout and the subscriber still exits 3 with its report.
    let dir = tempfile::tempdir().unwrap();
    let sub_json = dir.path().join("sub.json");
    let publ = offset_pub(-5000, 2000, 2000);
    let sub = start_sub(
        &publ.endpoints,
        &[
            "--alarm",
            "tcp://127.0.0.1:9",
            "--report-json",
            &path_str(&sub_json),
        ],
    );
    let (st, err, _) = sub.wait();
    assert_eq!(st.code(), Some(3), "{err}");
    assert!(
        err.contains("sending the alarm to --alarm tcp://127.0.0.1:9"),
        "{err}"
    );
    assert_eq!(read_json(&sub_json)["end_reason"], "snail");
}

#[test]
fn explain_hwm_sizes_the_queues_and_flags_contradictions() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("sizing.json");
    let (st, out, stdout) = run(
        sub_bin(),
        &["--explain-hwm", "--report-json", &path_str(&json)],
    );
    assert!(st.success(), "defaults fit the Guide's feed: {out}{stdout}");
    assert!(stdout.contains("memory ceiling"), "{stdout}");
    let s = read_json(&json);
    assert_eq!(u(&s, "budget_records"), 100_000);
    assert!(u(&s, "ceiling_bytes") > 0);
    assert!(s["warnings"].as_array().unwrap().is_empty());

    // A queue too small for the lag budget: messages would be lost before
    // the snail could see the lag.
    let (st, _, stdout) = run(
        sub_bin(),
        &[
            "--explain-hwm",
            "--rcvhwm",
            "100",
            "--inproc-hwm",
            "10",
            "--rcvbuf",
            "8192",
        ],
    );
    assert_eq!(st.code(), Some(1));
    assert!(
        stdout.contains("warning:") && stdout.contains("before the snail sees the lag"),
        "{stdout}"
    );
    // No limit at all.
    let (st, _, stdout) = run(sub_bin(), &["--explain-hwm", "--rcvhwm", "0"]);
    assert_eq!(st.code(), Some(1));
    assert!(stdout.contains("memory ceiling: none"), "{stdout}");
}

/// What a running subscriber touches whatever its load, on top of its
/// start-up size: histogram sets for every agent (each a few hundred KiB,
/// paged in as records arrive and at each hand-over), mimalloc's per-thread
/// segments, the report. Measured: 2 MiB before the first record, 17 to 23
/// MiB a second into a 1K msg/s run. Memory bounds add this to the queues'
/// ceiling from --explain-hwm.
pub const RUN_FOOTPRINT: u64 = 32 << 20;

/// The process-memory ceiling `shardcast-sub --explain-hwm` gives for a
/// subscriber run with `flags` (sizing flags such as --expected-rate go in
/// `sizing`).
pub fn explain_ceiling(dir: &std::path::Path, sizing: &[&str], flags: &[&str]) -> u64 {
    let json = dir.join("sizing.json");
    let mut args = vec!["--explain-hwm"];
    args.extend_from_slice(sizing);
    args.extend_from_slice(flags);
    let path = path_str(&json);
    args.extend_from_slice(&["--report-json", &path]);
    run(sub_bin(), &args);
    u(&read_json(&json), "ceiling_bytes")
}

/// Largest resident size of each process while `until` is false, sampled
/// every 20 ms (measures; delivery is awaited elsewhere by handshakes).
pub fn peak_rss(pids: &[u32], mut done: impl FnMut() -> bool) -> Vec<(u64, u64)> {
    let mut first: Vec<Option<u64>> = vec![None; pids.len()];
    let mut peak = vec![0u64; pids.len()];
    let deadline = std::time::Instant::now() + PROCESS_TIMEOUT;
    while !done() && std::time::Instant::now() < deadline {
        for (i, pid) in pids.iter().enumerate() {
            if let Some(r) = rss_bytes(*pid) {
                first[i] = first[i].or(Some(r));
                peak[i] = peak[i].max(r);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    first
        .into_iter()
        .zip(peak)
        .map(|(f, p)| (f.unwrap_or(0), p))
        .collect()
}
