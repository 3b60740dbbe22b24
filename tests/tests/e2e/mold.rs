//! A live feed (issue 12, acceptance 3): a generated ITCH day sent as
//! MoldUDP64 over loopback UDP by the test exchange (`shardcast-moldsim`)
//! with packets dropped on purpose, into `shardcast-pub --source
//! moldudp64:...`, through the Black Box. With the re-request server up
//! every gap is recovered and the subscriber gets the whole day; with it
//! down the exchange gap is counted `unrecovered` and the run still ends
//! normally at the end of the session.
//!
//! Every wait is on a line a process prints (the server's `bound`, the
//! publisher's `receiving on` and `subscriber(s) present`) or on a process
//! exiting, each with a deadline.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn build(package: &str, bin: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    escargot::CargoBuild::new()
        .manifest_path(manifest)
        .package(package)
        .bin(bin)
        .current_release()
        .current_target()
        .run()
        .unwrap_or_else(|e| panic!("building {bin}: {e}"))
        .path()
        .to_path_buf()
}

fn moldsim_bin() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build("shardcast-moldsim", "shardcast-moldsim"))
}

fn itchgen_bin() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build("shardcast-itchgen", "shardcast-itchgen"))
}

/// A generated day and the generator's report.
struct Day {
    file: PathBuf,
    gen: Value,
}

fn generate(dir: &Path, messages: u64) -> Day {
    let file = dir.join("day.itch50");
    let report = dir.join("gen.json");
    let (st, err, _) = run(
        itchgen_bin(),
        &[
            "--out",
            &path_str(&file),
            "--messages",
            &messages.to_string(),
            "--symbols",
            "60",
            "--seed",
            "7",
            "--report-json",
            &path_str(&report),
        ],
    );
    assert!(st.success(), "itchgen: {err}");
    Day {
        file,
        gen: read_json(&report),
    }
}

/// A line the process printed, whether it came already or is still to come.
fn line_with(p: &Proc, needle: &str) -> String {
    match p.stderr().lines().find(|l| l.contains(needle)) {
        Some(l) => l.to_string(),
        None => p.wait_line(needle),
    }
}

/// What follows `marker` on `line`, up to the next space.
fn word_after(line: &str, marker: &str) -> String {
    line.split(marker)
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {marker:?} in {line:?}"))
        .trim_end_matches([',', ';', ')'])
        .to_string()
}

/// The re-request server, as its own process (so that the publisher can be
/// told its address before the feed starts).
fn start_server(day: &Day, report: &Path) -> (Proc, String) {
    let p = Proc::spawn(
        "moldsim --serve",
        moldsim_bin(),
        &[
            "--file".into(),
            path_str(&day.file),
            "--serve".into(),
            "127.0.0.1:0".into(),
            "--report-json".into(),
            path_str(report),
        ],
    );
    let addr = word_after(&p.wait_line("re-request server bound "), "bound ");
    (p, addr)
}

/// The reports of one live run.
struct Live {
    publ: Value,
    sub: Value,
    sim: Value,
    pub_stderr: String,
}

/// Publisher (`--source moldudp64`, one stream, lossless toward the
/// subscriber), subscriber, then the feed with `feed_args`; all three must
/// exit 0.
fn live_run(
    dir: &Path,
    day: &Day,
    pub_args: &[&str],
    feed_args: &[&str],
    sub_args: &[&str],
) -> Live {
    let (pj, sj, fj) = (
        dir.join("pub.json"),
        dir.join("sub.json"),
        dir.join("feed.json"),
    );
    let mut pa = vec![
        "--source",
        "moldudp64:udp://127.0.0.1:0",
        // Toward the subscriber nothing is lost: what this test measures
        // is the exchange side.
        "--when-full",
        "block",
        "--wait-subscribers",
        "1",
    ];
    pa.extend_from_slice(pub_args);
    let pjs = path_str(&pj);
    pa.extend(["--report-json", &pjs]);
    let publ = start_pub(1, &pa);
    let feed_addr = word_after(
        &line_with(&publ.proc, "moldudp64: receiving on "),
        "receiving on ",
    );
    let sjs = path_str(&sj);
    let mut sa = vec!["--max-lag-ms", "30000", "--report-json", &sjs];
    sa.extend_from_slice(sub_args);
    let sub = start_sub(&publ.endpoints, &sa);
    line_with(&publ.proc, "subscriber(s) present");
    let mut fa: Vec<String> = [
        "--file",
        &path_str(&day.file),
        "--to",
        &format!("udp://{feed_addr}"),
        "--heartbeat-ms",
        "50",
        "--eos-count",
        "20",
        "--eos-interval-ms",
        "25",
        "--report-json",
        &path_str(&fj),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    fa.extend(feed_args.iter().map(|s| s.to_string()));
    let feed = Proc::spawn("moldsim --to", moldsim_bin(), &fa);
    let (fst, ferr, _) = feed.wait();
    assert!(fst.success(), "feed: {fst:?}\n{ferr}");
    let (pst, perr, _) = publ.proc.wait();
    assert!(pst.success(), "publisher: {pst:?}\n{perr}");
    let (sst, serr, _) = sub.wait();
    assert!(sst.success(), "subscriber: {sst:?}\n{serr}");
    Live {
        publ: read_json(&pj),
        sub: read_json(&sj),
        sim: read_json(&fj),
        pub_stderr: perr,
    }
}

fn by_type(v: &Value) -> BTreeMap<String, u64> {
    serde_json::from_value(v["by_type"].clone()).unwrap_or_else(|e| panic!("by_type: {e} in {v}"))
}

/// The subscriber got everything the publisher sent, once, in order.
fn assert_whole(l: &Live) {
    let s = &l.sub;
    assert_eq!(u(s, "lost"), 0, "{s}");
    assert_eq!(u(s, "duplicates"), 0);
    assert_eq!(u(s, "malformed"), 0);
    assert_eq!(s["streams_complete"], true, "{s}");
    assert_eq!(u(s, "received"), u(&l.publ, "sent"));
}

#[test]
fn a_lossy_feed_with_its_re_request_server_up_is_recovered_whole() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let day = generate(dir.path(), 40_000);
    let (server, addr) = start_server(&day, &dir.path().join("server.json"));
    let books = dir.path().join("books.json");
    let live = live_run(
        dir.path(),
        &day,
        &["--rerequest", &addr],
        // Every 9th packet, and one long stretch of ~30 packets, at a
        // steady pace a debug build keeps up with on two shared cores
        // (what the kernel drops anyway is repaired like the rest).
        &[
            "--drop-every",
            "9",
            "--drop-seq",
            "20000-21999",
            "--rate",
            "50000",
        ],
        &["--work", "itch-book", "--books-out", &path_str(&books)],
    );
    server.signal(libc::SIGTERM);
    let (sst, serr, _) = server.wait();
    assert!(sst.success(), "server: {serr}");
    let served = read_json(&dir.path().join("server.json"));

    let feed = &live.sim["feed"];
    let dropped = u(feed, "messages_dropped");
    assert!(u(feed, "packets_dropped") > 30 && dropped >= 2000, "{feed}");
    let src = &live.publ["source"];
    assert_eq!(src["kind"], "moldudp64", "{src}");
    assert_eq!(u(src, "unrecovered"), 0, "{src}\n{}", live.pub_stderr);
    assert!(u(src, "recovered") >= dropped, "{src}");
    assert!(u(src, "gaps") >= u(feed, "packets_dropped") / 2, "{src}");
    assert!(u(src, "rerequested") >= dropped, "{src}");
    assert_eq!(src["end_of_session"], true);
    assert_eq!(u(src, "next_seq"), u(&day.gen, "messages") + 1);
    // The whole day, type by type, as the generator wrote it.
    assert_eq!(u(src, "messages"), u(&day.gen, "messages"));
    assert_eq!(by_type(src), by_type(&day.gen));
    let sv = &served["server"];
    assert!(
        u(sv, "answered") > 0 && u(sv, "messages_answered") >= dropped,
        "{sv}"
    );
    assert_whole(&live);

    // The books equal those of the same day played losslessly from the file.
    let ref_books = dir.path().join("ref_books.json");
    let source = format!("itch:{}", path_str(&day.file));
    let lossless = run_pipeline(
        1,
        &[
            "--source",
            &source,
            "--speed",
            "max",
            "--wait-subscribers",
            "1",
        ],
        &[
            "--work",
            "itch-book",
            "--max-lag-ms",
            "30000",
            "--books-out",
            &path_str(&ref_books),
        ],
    );
    assert_eq!(u(&lossless.sub, "lost"), 0);
    let (got, want) = (read_json(&books), read_json(&ref_books));
    assert_eq!(got.as_object().map(|m| m.len()), Some(60));
    assert_eq!(got, want, "the live run's books differ from the file's");
    eprintln!(
        "mold: {} messages; feed dropped {} packets ({dropped} messages); gaps {}, requests {}, \
         rerequested {}, recovered {}, answers {}",
        u(src, "messages"),
        u(feed, "packets_dropped"),
        u(src, "gaps"),
        u(src, "requests"),
        u(src, "rerequested"),
        u(src, "recovered"),
        u(src, "answers"),
    );
}

#[test]
fn with_the_re_request_server_down_the_gap_is_counted_unrecovered_and_the_run_ends_normally() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let day = generate(dir.path(), 20_000);
    // The server's address, held by a socket that never answers: requests
    // go nowhere.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let live = live_run(
        dir.path(),
        &day,
        &[
            "--rerequest",
            &addr,
            "--rerequest-timeout-ms",
            "100",
            "--rerequest-tries",
            "2",
        ],
        &["--drop-seq", "5000-5099", "--rate", "20000"],
        &[],
    );
    let feed = &live.sim["feed"];
    assert_eq!(u(feed, "messages_dropped"), 100, "{feed}");
    let src = &live.publ["source"];
    let total = u(&day.gen, "messages");
    // The dropped stretch, and anything the kernel dropped besides.
    let unrecovered = u(src, "unrecovered");
    assert!(unrecovered >= 100, "{src}");
    assert_eq!(u(src, "messages") + unrecovered, total, "{src}");
    assert!(
        src["unrecovered_ranges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r[0].as_u64() <= Some(5000) && r[1].as_u64() >= Some(5099)),
        "{src}"
    );
    assert!(u(src, "gaps") >= 1 && u(src, "requests") >= 1, "{src}");
    assert_eq!(u(src, "recovered"), 0);
    assert_eq!(src["end_of_session"], true);
    assert!(
        live.pub_stderr.contains("sequence 5000 to 5099") || live.pub_stderr.contains("to 5099:"),
        "the missing range is logged:\n{}",
        live.pub_stderr
    );
    // The exchange's gap is not shardcast's: the subscriber got all that
    // was published, and the streams ended complete.
    assert_whole(&live);
    drop(silent);
}
