//! The `shardcast-itchgen` binary: flags, their environment twins, exit
//! codes, the report, and gzip output read back through the framer.

use flate2::read::GzDecoder;
use shardcast_proto::itch::{Check, FileFramer, Frame};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

fn itchgen(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shardcast-itchgen"));
    c.args(args);
    // Whatever the calling shell exported must not leak into the flags.
    for (k, _) in std::env::vars() {
        if k.starts_with("SHARDCAST_ITCHGEN_") {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied());
    c.output().expect("run shardcast-itchgen")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.itch50");
    let out = out.to_str().unwrap();
    for (args, flag) in [
        (vec!["--out", out, "--messages", "0"], "--messages"),
        (vec!["--out", out, "--messages", "50"], "--messages"),
        (vec!["--out", out, "--symbols", "0"], "--symbols"),
        (vec!["--out", out, "--symbols", "70000"], "--symbols"),
        (vec!["--out", out, "--span-secs", "80000"], "--span-secs"),
        (vec!["--out", out, "--span-secs", "-1"], "--span-secs"),
        (vec!["--out", out, "--start-secs", "86400"], "--start-secs"),
        (vec!["--messages", "1000"], "--out"),
        (vec!["--out", out, "--bogus"], "--bogus"),
    ] {
        let o = itchgen(&args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(flag), "{args:?}: {}", stderr(&o));
    }
    assert!(!Path::new(out).exists(), "a usage error writes nothing");
}

#[test]
fn print_config_shows_the_resolved_configuration_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.itch50.gz");
    let o = itchgen(
        &["--out", out.to_str().unwrap(), "--print-config"],
        &[("SHARDCAST_ITCHGEN_SPAN_SECS", "2.5")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let cfg: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(cfg["gzip"], true);
    assert_eq!(cfg["span_ns"], 2_500_000_000u64);
    assert_eq!(cfg["messages"], 1_000_000);
    assert_eq!(cfg["symbols"], 100);
    assert!(!out.exists());
}

#[test]
fn a_gzipped_day_reads_back_with_the_reported_counts() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("day.itch50.gz");
    let plain = dir.path().join("day.itch50");
    let rep = dir.path().join("report.json");
    // Every flag through its environment twin, the booleans included.
    let env = [
        ("SHARDCAST_ITCHGEN_MESSAGES", "30000"),
        ("SHARDCAST_ITCHGEN_SYMBOLS", "110"),
        ("SHARDCAST_ITCHGEN_SEED", "4"),
        ("SHARDCAST_ITCHGEN_SPAN_SECS", "10"),
        ("SHARDCAST_ITCHGEN_START_SECS", "36000"),
        ("SHARDCAST_ITCHGEN_UNKNOWN_TYPE", "true"),
        ("SHARDCAST_ITCHGEN_TRUNCATE_TAIL", "true"),
        ("SHARDCAST_ITCHGEN_REPORT_JSON", rep.to_str().unwrap()),
    ];
    let o = itchgen(&["--out", gz.to_str().unwrap()], &env);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = report(&rep);
    assert_eq!(r["messages"], 30_000);
    assert_eq!(r["symbols"], 110);
    assert_eq!(r["unknown"], 1);
    assert_eq!(r["truncated"], 1);
    assert_eq!(r["first_ts"], 36_000_000_000_000u64);
    assert_eq!(r["last_ts"], 36_010_000_000_000u64);
    assert_eq!(r["complete"], true);
    assert_eq!(r["by_type"]["z"], 1);

    // Read it back the way the publisher will: gzip, then the framer.
    let mut ff = FileFramer::new(GzDecoder::new(std::fs::File::open(&gz).unwrap()));
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let (mut messages, mut unknown, mut truncated) = (0u64, 0, 0);
    while let Some(f) = ff.next_frame().unwrap() {
        match f {
            Frame::Message(m) => {
                messages += 1;
                *by_type.entry(char::from(m[0]).to_string()).or_default() += 1;
                match f.check() {
                    Check::Ok(_) => {}
                    Check::Unknown(_) => unknown += 1,
                    c => panic!("{c:?}"),
                }
            }
            Frame::Truncated(_) => truncated += 1,
        }
    }
    assert_eq!((messages, unknown, truncated), (30_000, 1, 1));
    let want: BTreeMap<String, u64> = serde_json::from_value(r["by_type"].clone()).unwrap();
    assert_eq!(by_type, want);
    assert_eq!(ff.bytes_consumed(), r["bytes"].as_u64().unwrap());

    // The same flags without gzip: the same bytes.
    let o = itchgen(&["--out", plain.to_str().unwrap()], &env);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut GzDecoder::new(std::fs::File::open(&gz).unwrap()),
        &mut unzipped,
    )
    .unwrap();
    assert_eq!(std::fs::read(&plain).unwrap(), unzipped);
}
