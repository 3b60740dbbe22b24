//! Bad flags exit 2 with a message naming the flag.

use crate::support::*;

fn assert_usage_error(bin: &std::path::Path, args: &[&str], flag: &str) {
    let (st, err, _) = run(bin, args);
    assert_eq!(st.code(), Some(2), "{args:?} should exit 2; stderr:\n{err}");
    assert!(
        err.contains(flag),
        "{args:?}: the message names {flag}:\n{err}"
    );
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let ep = "tcp://127.0.0.1:5999";
    let sub = sub_bin();
    let publ = pub_bin();
    assert_usage_error(sub, &["--connect", ep, "--work", "bogus"], "--work");
    assert_usage_error(sub, &["--connect", ""], "--connect");
    assert_usage_error(sub, &["--connect", "tcp://"], "--connect");
    assert_usage_error(publ, &["--bind", ep, "--rate", "-1"], "--rate");
    assert_usage_error(publ, &["--bind", ""], "--bind");
    assert_usage_error(
        sub,
        &["--connect", ep, "--shard-cpus", "99999"],
        "--shard-cpus",
    );
    assert_usage_error(
        sub,
        &["--connect", ep, "--worker-cpus", "0-99999"],
        "--worker-cpus",
    );
    assert_usage_error(sub, &["--connect", ep, "--io-cpus", "x"], "--io-cpus");
    assert_usage_error(publ, &["--bind", ep, "--cpus", "99999"], "--cpus");
    assert_usage_error(
        sub,
        &["--connect", ep, "--fanout", "push", "--work", "book"],
        "--fanout",
    );
    // 0 is inline work (no worker threads); past 64 is refused.
    assert_usage_error(sub, &["--connect", ep, "--workers", "65"], "--workers");
    assert_usage_error(sub, &["--connect", ep, "--duration", "-3"], "--duration");
    assert_usage_error(publ, &["--bind", ep, "--size", "12"], "--size");
    assert_usage_error(sub, &["--connect", ep, "--no-such-flag"], "--no-such-flag");
    // Presence names: 1 to 64 of A-Za-z0-9._-:@/ (they go into log lines
    // and reports unquoted).
    assert_usage_error(sub, &["--connect", ep, "--id", "a b"], "--id");
    assert_usage_error(sub, &["--connect", ep, "--id="], "--id");
    assert_usage_error(sub, &["--connect", ep, "--id", &"x".repeat(65)], "--id");
    assert_usage_error(
        publ,
        &["--bind", ep, "--expect-subscribers", "a,b;c"],
        "--expect-subscribers",
    );
}

#[test]
fn print_config_shows_the_resolved_configuration() {
    let (st, err, out) = run(
        sub_bin(),
        &[
            "--connect",
            "tcp://127.0.0.1:1",
            "--iface",
            "127.0.0.1",
            "--print-config",
        ],
    );
    assert!(st.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["shards"][0]["connect"], "tcp://127.0.0.1:0;127.0.0.1:1");
    assert_eq!(v["max_lag_ms"], 1000);
    assert_eq!(v["work"], "book");
    assert_eq!(v["id"], serde_json::Value::Null, "no --id");
    let (st, err, out) = run(
        sub_bin(),
        &[
            "--connect",
            "tcp://127.0.0.1:1",
            "--id",
            "desk-1",
            "--print-config",
        ],
    );
    assert!(st.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["id"], "desk-1");
}

/// Issue 10, finding 8: `--duration 1e300` panicked (exit 101) turning into
/// a `Duration`, and the millisecond flags took values whose deadlines
/// overflow `Instant` (or, for --clock-offset-ms and --max-lag-ms, mean
/// nothing). Every time flag of both binaries: absurd values exit 2 naming
/// the flag; the largest sane value is taken.
#[test]
fn huge_float_flags_exit_2_naming_the_flag() {
    let ep = "tcp://127.0.0.1:5999";
    let seconds = ["1e300", "inf", "-inf", "nan", "-1", "31536001", "1e20"];
    let unsigned_ms = [
        "1e300",
        "inf",
        "nan",
        "-1",
        "31536000001",
        "18446744073709551615",
        "99999999999999999999999",
    ];
    let day_ms = ["86400001", "18446744073709551615", "1e300", "-1"];
    // (binary, base args, flag, absurd values, largest value taken)
    type Case<'a> = (
        &'a std::path::Path,
        [&'a str; 2],
        &'a str,
        Vec<&'a str>,
        &'a str,
    );
    let mut cases: Vec<Case> = Vec::new();
    let (p, s) = (pub_bin(), sub_bin());
    let (pb, sb) = (["--bind", ep], ["--connect", ep]);
    let mut positive = seconds.to_vec();
    positive.push("1e-300");
    for flag in ["--duration", "--wait-timeout"] {
        cases.push((p, pb, flag, positive.clone(), "31536000"));
    }
    for flag in ["--duration", "--stats-interval", "--snail-window"] {
        cases.push((s, sb, flag, positive.clone(), "31536000"));
    }
    cases.push((s, sb, "--warmup", seconds.to_vec(), "31536000"));
    for flag in ["--heartbeat-ms", "--eos-timeout-ms"] {
        cases.push((p, pb, flag, unsigned_ms.to_vec(), "31536000000"));
    }
    for flag in ["--drain-timeout-ms", "--stall-worker-ms"] {
        cases.push((s, sb, flag, unsigned_ms.to_vec(), "31536000000"));
    }
    for flag in ["--max-lag-ms", "--max-clock-skew-ms"] {
        cases.push((s, sb, flag, day_ms.to_vec(), "86400000"));
    }
    cases.push((
        s,
        sb,
        "--work-ns",
        vec!["60000000001", "18446744073709551615", "1e300", "-1"],
        "60000000000",
    ));
    cases.push((
        p,
        pb,
        "--clock-offset-ms",
        vec![
            "86400001",
            "-86400001",
            "9223372036854775807",
            "-9223372036854775808",
            "1e300",
            "nan",
        ],
        "-86400000",
    ));
    for (bin, base, flag, bad, largest) in cases {
        for v in bad {
            // `--flag=VALUE`, so that clap takes `-inf` as the value.
            assert_usage_error(bin, &[base[0], base[1], &format!("{flag}={v}")], flag);
        }
        let (st, err, _) = run(bin, &[base[0], base[1], flag, largest, "--print-config"]);
        assert!(st.success(), "{flag} {largest} is taken: {err}");
    }
}

/// `shardcast-relay`'s own rules: one --bind per --connect, no endpoint
/// both upstream and downstream, the retransmission pair given together,
/// ids checked, CPUs checked; each exits 2 naming the flag.
#[test]
fn relay_bad_flags_exit_2_naming_the_flag() {
    let relay = relay_bin();
    let (up, down) = ("tcp://127.0.0.1:5998", "tcp://127.0.0.1:5997");
    assert_usage_error(relay, &["--connect", up], "--bind");
    assert_usage_error(
        relay,
        &[
            "--connect",
            up,
            "--bind",
            down,
            "--bind",
            "tcp://127.0.0.1:5996",
        ],
        "--bind",
    );
    assert_usage_error(relay, &["--connect", up, "--bind", up], "--bind");
    assert_usage_error(relay, &["--connect", up, "--bind", "inproc://x"], "--bind");
    assert_usage_error(
        relay,
        &[
            "--connect",
            up,
            "--bind",
            down,
            "--retransmit-bind",
            "tcp://127.0.0.1:5995",
        ],
        "--retransmit-from",
    );
    assert_usage_error(
        relay,
        &["--connect", up, "--bind", down, "--id", "bad id"],
        "--id",
    );
    assert_usage_error(
        relay,
        &["--connect", up, "--bind", down, "--cpus", "99999"],
        "--cpus",
    );
    assert_usage_error(
        relay,
        &["--connect", up, "--bind", down, "--when-full", "maybe"],
        "--when-full",
    );
}
