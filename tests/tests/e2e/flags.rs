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
    assert_usage_error(sub, &["--connect", ep, "--workers", "0"], "--workers");
    assert_usage_error(sub, &["--connect", ep, "--duration", "-3"], "--duration");
    assert_usage_error(publ, &["--bind", ep, "--size", "12"], "--size");
    assert_usage_error(sub, &["--connect", ep, "--no-such-flag"], "--no-such-flag");
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
}
