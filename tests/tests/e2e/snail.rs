//! The Suicidal Snail.

use crate::support::*;

/// Work far above the message interval with `--max-lag-ms 200`: the
/// subscriber croaks with exit code 3, one alarm line, and a `snail` section.
#[test]
fn a_subscriber_that_cannot_keep_up_croaks() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let sub_json = dir.path().join("sub.json");
    // 20K msg/s is one message every 50 us; 1 ms of work per message makes
    // the backlog grow twentyfold.
    let publ = start_pub(
        1,
        &[
            "--rate",
            "20000",
            "--count",
            "400000",
            "--wait-subscribers",
            "1",
        ],
    );
    let sub = start_sub(
        &publ.endpoints,
        &[
            "--work-ns",
            "1000000",
            "--max-lag-ms",
            "200",
            "--workers",
            "1",
            "--report-json",
            &path_str(&sub_json),
        ],
    );
    let (st, err, _) = sub.wait();
    assert_eq!(
        st.code(),
        Some(3),
        "exit code 3 for the snail; stderr:\n{err}"
    );
    let alarm = err
        .lines()
        .find(|l| l.contains("SNAIL ALARM"))
        .unwrap_or_else(|| panic!("an alarm line on stderr:\n{err}"));
    assert!(alarm.contains("ms old (limit 200 ms"), "{alarm}");
    assert!(
        alarm.contains("queues:") && alarm.contains("last seq"),
        "{alarm}"
    );
    let s = read_json(&sub_json);
    let snail = &s["snail"];
    assert!(snail.is_object(), "snail section present: {s}");
    assert!(["shard", "worker"].contains(&snail["stage"].as_str().unwrap()));
    assert!(u(snail, "lag_ns") > 200_000_000);
    assert_eq!(u(snail, "max_lag_ms"), 200);
    assert!(!snail["queues"].as_array().unwrap().is_empty());
    assert_eq!(s["end_reason"], "snail");
    // The publisher is unaffected by its subscriber's death; stop it.
    publ.proc.signal(libc::SIGTERM);
    assert!(publ.proc.wait().0.success());
}

/// The same overload with `--on-slow warn`: warnings, no croak, every
/// message processed.
#[test]
fn on_slow_warn_survives_and_counts() {
    let _g = serial();
    let run = run_pipeline(
        1,
        &[
            "--rate",
            "20000",
            "--count",
            "3000",
            "--wait-subscribers",
            "1",
        ],
        &[
            "--work-ns",
            "500000",
            "--max-lag-ms",
            "200",
            "--on-slow",
            "warn",
            "--workers",
            "1",
        ],
    );
    let err = &run.sub_stderr;
    assert!(err.contains("warning: slow consumer"), "{err}");
    assert!(!err.contains("SNAIL ALARM"));
    let s = run.sub;
    assert!(s["snail"].is_null());
    assert!(u(&s["slow"], "count") > 0);
    assert!(u(&s["slow"], "max_lag_ns") > 200_000_000);
    assert_eq!(u(&s, "received"), 3000);
    assert_eq!(u(&s, "processed"), 3000);
}
