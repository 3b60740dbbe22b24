//! Gap repair (issue 14): `shardcast-sub --recover-from` repairs what the
//! PUB dropped before its workers see past it.
//!
//! Loss is injected for real, as in `backpressure`: one record per frame,
//! small HWMs and buffers, and a worker stalled for 1.5 s, so the shard
//! stops reading, its SUB queue fills and the publisher's XPUB drops.
//!
//! * `a_gap_is_repaired_from_the_recorder`: the recorder (which kept up)
//!   is the source: `lost` 0, `recovered` > 0, complete, the books equal
//!   those of a subscriber that lost nothing, and the repair is timed.
//! * `a_gap_no_source_has_is_named_and_the_stream_goes_on`: the only
//!   source does not answer: every dropped record is counted exactly in
//!   `lost`, an alarm names each range, the symbols hit are listed and
//!   their books marked stale, and the stream ends normally.

use crate::replay::start_record;
use crate::support::*;
use std::path::Path;

/// A free TCP endpoint on loopback.
fn free_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("tcp://127.0.0.1:{port}")
}

/// The publisher's flags of the loss scenario: `count` records, one per
/// frame, a small send HWM and buffer so that a stalled subscriber makes
/// the XPUB drop, waiting for `subscribers`. Every subscriber gets that
/// small queue, the recorder too: at 5 K msg/s its 1000 messages are
/// 200 ms of slack, which a recorder on a busy 2-core machine needs.
fn lossy_pub_args(count: &str, subscribers: &str, report: &Path) -> Vec<String> {
    [
        "--rate",
        "5000",
        "--count",
        count,
        "--batch",
        "1",
        "--sndhwm",
        "1000",
        "--sndbuf",
        "65536",
        "--wait-subscribers",
        subscribers,
        "--eos-timeout-ms",
        "30000",
        "--report-json",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([path_str(report)])
    .collect()
}

/// The subscriber's flags of the loss scenario: small queues and one worker
/// stalled for 1.5 s after its first record; the snail only warns (the
/// stall is the point).
fn stalled_sub_args(books: &Path, report: &Path) -> Vec<String> {
    [
        "--rcvhwm",
        "1000",
        "--rcvbuf",
        "65536",
        "--inproc-hwm",
        "100",
        "--workers",
        "1",
        "--work",
        "book",
        "--stall-worker-ms",
        "1500",
        "--stall-after",
        "1",
        "--on-slow",
        "warn",
        "--max-lag-ms",
        "60000",
        "--books-out",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([path_str(books), "--report-json".into(), path_str(report)])
    .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_gap_is_repaired_from_the_recorder() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let serve = free_endpoint();
    let count = "20000";
    let publ = start_pub(1, &strs(&lossy_pub_args(count, "2", &p("pub.json"))));
    let rec = start_record(
        &publ.endpoints,
        &p("rec"),
        &[
            "--serve",
            &serve,
            // Repairs may still be asked for after the stream ended: it
            // serves until the test is done with it (a signal ends that).
            "--serve-linger-ms",
            "600000",
            "--report-json",
            &path_str(&p("rec.json")),
        ],
    );
    let mut args = stalled_sub_args(&p("books.json"), &p("sub.json"));
    args.extend(["--recover-from".into(), serve.clone()]);
    // A repair may wait for the recorder to write what it has (its
    // --flush-ms) on a busy machine: give it time.
    args.extend(["--reorder-window-ms".into(), "20000".into()]);
    let sub = start_sub(&publ.endpoints, &strs(&args));
    let (st, err, _) = sub.wait();
    assert!(st.success(), "recovering subscriber: {err}");
    rec.wait_line("serving for");
    rec.signal(libc::SIGTERM);
    let (st, rerr, _) = rec.wait();
    assert!(st.success(), "recorder: {rerr}");
    let (st, perr, _) = publ.proc.wait();
    assert!(st.success(), "publisher: {perr}");
    let r = read_json(&p("rec.json"));
    assert_eq!(u(&r, "lost"), 0, "the recorder kept up: {r}");

    let s = assert_repaired(tmp.path(), count, &err, "the recorder");
    assert_eq!(s["stale_symbol_count"], 0, "{s}");
}

/// Checks of a stalled subscriber that repaired its gaps (its report
/// `sub.json` and books `books.json` in `dir`) from `source`, against a
/// reference run of the same seeded feed with the default queues and
/// nothing stalled: nothing lost, everything received and processed once,
/// complete, every gap repaired, the books equal; prints the repair times.
fn assert_repaired(dir: &Path, count: &str, err: &str, source: &str) -> serde_json::Value {
    let reference_books = dir.join("whole-books.json");
    let reference = run_pipeline(
        1,
        &[
            "--rate",
            "0",
            "--count",
            count,
            "--when-full",
            "block",
            "--wait-subscribers",
            "1",
        ],
        &["--work", "book", "--books-out", &path_str(&reference_books)],
    );
    assert_eq!(u(&reference.sub, "lost"), 0, "{}", reference.sub);
    let s = read_json(&dir.join("sub.json"));
    let sent: u64 = count.parse().unwrap();
    assert!(
        u(&s, "recovered") > 0,
        "the PUB dropped while the worker stalled, and it was repaired: {s}"
    );
    assert_eq!(u(&s, "lost"), 0, "{err}\n{s}");
    assert_eq!(u(&s, "received"), sent, "{s}");
    assert_eq!(u(&s, "processed"), sent, "{s}");
    assert_eq!(s["streams_complete"], true, "{s}");
    let st0 = &s["streams"][0];
    assert_eq!(u(st0, "recovered"), u(&s, "recovered"), "{st0}");
    let rc = &st0["recovery"];
    assert!(
        u(rc, "gaps") > 0 && u(rc, "repaired") == u(rc, "gaps"),
        "{rc}"
    );
    assert_eq!(u(rc, "unrecovered"), 0, "{rc}");
    assert_eq!(u(&rc["sources"][0], "records"), u(&s, "recovered"), "{rc}");
    let lat = &s["latency_ns"]["recovery"];
    assert!(
        u(lat, "count") > 0 && u(lat, "p99") > 0,
        "repairs are timed: {lat}"
    );
    assert_eq!(
        read_json(&dir.join("books.json")),
        read_json(&reference_books),
        "the repaired books equal those of a run that lost nothing"
    );
    eprintln!(
        "recovery from {source}: recovered {} records in {} gaps; repair p50 {} us, p99 {} us, max {} us",
        u(&s, "recovered"),
        u(rc, "gaps"),
        u(lat, "p50") / 1000,
        u(lat, "p99") / 1000,
        u(lat, "max") / 1000
    );
    s
}

#[test]
fn a_gap_no_source_has_is_named_and_the_stream_goes_on() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let count = "20000";
    let publ = start_pub(1, &strs(&lossy_pub_args(count, "1", &p("pub.json"))));
    let mut args = stalled_sub_args(&p("books.json"), &p("sub.json"));
    // Nobody listens there: every request goes unanswered.
    args.extend(["--recover-from".into(), free_endpoint()]);
    args.extend(["--reorder-window-ms".into(), "100".into()]);
    let sub = start_sub(&publ.endpoints, &strs(&args));
    let (st, err, _) = sub.wait();
    assert!(st.success(), "{err}");
    let (st, perr, _) = publ.proc.wait();
    assert!(st.success(), "publisher: {perr}");
    let s = read_json(&p("sub.json"));
    let sent: u64 = count.parse().unwrap();
    let lost = u(&s, "lost");
    assert!(lost > 0, "the PUB dropped while the worker stalled: {s}");
    assert_eq!(u(&s, "recovered"), 0, "{s}");
    assert_eq!(
        u(&s, "received") + lost,
        sent,
        "each loss counted once: {s}"
    );
    assert_eq!(
        s["streams"][0]["eos"], true,
        "the stream went on to its end: {s}"
    );
    let rc = &s["streams"][0]["recovery"];
    assert_eq!(u(rc, "unrecovered"), lost, "{rc}");
    assert!(u(&rc["sources"][0], "timeouts") > 0, "{rc}");
    let ranges = rc["lost_ranges"].as_array().unwrap();
    assert!(!ranges.is_empty(), "{rc}");
    // The symbols those records belonged to are named: their books are
    // stale (a jump in their per-symbol sequence), and each counts what it
    // missed; every lost record is one symbol's (those whose later records
    // never came cannot be named: at most the loss).
    let stale = s["stale_symbols"].as_array().unwrap();
    assert!(!stale.is_empty(), "{s}");
    assert_eq!(u(&s, "stale_symbol_count"), stale.len() as u64, "{s}");
    let books = read_json(&p("books.json"));
    let mut missed = 0;
    for (name, b) in books.as_object().unwrap() {
        let listed = stale.iter().any(|n| n == name);
        assert_eq!(b["stale"] == true, listed, "{name}: {b}");
        missed += b.get("missed").map_or(0, |m| m.as_u64().unwrap());
    }
    assert!(missed > 0 && missed <= lost, "missed {missed}, lost {lost}");
    let [a, b] = [
        ranges[0][0].as_u64().unwrap(),
        ranges[0][1].as_u64().unwrap(),
    ];
    assert!(
        err.contains("ALARM: lost publisher") && err.contains(&format!("seq {a}..={b}")),
        "an alarm names the range: {err}"
    );
}

/// Acceptance 1 with the publisher's own ring as the source: the same
/// stall, repaired from `--retransmit-bind`, the books equal a run that
/// lost nothing, and the repair time is reported.
#[test]
fn a_gap_is_repaired_from_the_publishers_ring() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let ring = free_endpoint();
    let count = "20000";
    let mut pa = lossy_pub_args(count, "1", &p("pub.json"));
    // Deep enough for the whole stall (the default is one second of the
    // rate, and the stall is 1.5 s).
    pa.extend(["--retransmit-bind".into(), ring.clone()]);
    pa.extend(["--retransmit-depth".into(), "40000".into()]);
    let publ = start_pub(1, &strs(&pa));
    let mut args = stalled_sub_args(&p("books.json"), &p("sub.json"));
    args.extend(["--recover-from".into(), ring.clone()]);
    args.extend(["--reorder-window-ms".into(), "20000".into()]);
    let sub = start_sub(&publ.endpoints, &strs(&args));
    let (st, err, _) = sub.wait();
    assert!(st.success(), "recovering subscriber: {err}");
    let (st, perr, _) = publ.proc.wait();
    assert!(st.success(), "publisher: {perr}");

    let s = assert_repaired(tmp.path(), count, &err, "the ring");
    let pr = read_json(&p("pub.json"));
    let served = u(&pr["retransmit"], "served_records");
    assert!(
        served >= u(&s, "recovered"),
        "the ring served it: {}",
        pr["retransmit"]
    );
}

/// Acceptance 2: a gap older than the ring, with no deeper source: the
/// ring says where it begins, what is before it is lost for good, counted
/// exactly, named in an alarm, and its symbols are stale; the stream goes
/// on to its end.
#[test]
fn a_gap_older_than_the_ring_is_lost_named_and_stale() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let ring = free_endpoint();
    let count = "20000";
    let mut pa = lossy_pub_args(count, "1", &p("pub.json"));
    pa.extend(["--retransmit-bind".into(), ring.clone()]);
    pa.extend(["--retransmit-depth".into(), "100".into()]);
    let publ = start_pub(1, &strs(&pa));
    let mut args = stalled_sub_args(&p("books.json"), &p("sub.json"));
    args.extend(["--recover-from".into(), ring.clone()]);
    let sub = start_sub(&publ.endpoints, &strs(&args));
    let (st, err, _) = sub.wait();
    assert!(st.success(), "{err}");
    let (st, perr, _) = publ.proc.wait();
    assert!(st.success(), "publisher: {perr}");
    let s = read_json(&p("sub.json"));
    let sent: u64 = count.parse().unwrap();
    let lost = u(&s, "lost");
    assert!(
        lost > 0,
        "the stall's gap is far older than 100 records: {s}"
    );
    assert_eq!(
        u(&s, "received") + lost,
        sent,
        "each loss counted once: {s}"
    );
    assert_eq!(s["streams"][0]["eos"], true, "the stream went on: {s}");
    let rc = &s["streams"][0]["recovery"];
    assert_eq!(u(rc, "unrecovered"), lost, "{rc}");
    assert!(u(&rc["sources"][0], "not_available") > 0, "{rc}");
    assert!(
        err.contains("ALARM: lost publisher") && err.contains("not available (holds from"),
        "the alarm names the range and what the ring said: {err}"
    );
    assert!(u(&s, "stale_symbol_count") > 0, "{s}");
}

/// Acceptance 4: subscribers that select 10 of 500 symbols (prefix
/// subscriptions, filtered at the publisher: `--batch 1`) check loss per
/// symbol: the stream's holes (the 490 others) are no loss, and a real gap
/// in a selected symbol (the stalled one's PUB queue overflowing) is seen
/// in that symbol's own sequence and repaired from the publisher's ring.
#[test]
fn a_subscriber_selecting_symbols_sees_no_phantom_loss_and_repairs_real_gaps() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let ring = free_endpoint();
    // Symbols 100..109 of the feed's Zipf ranking (about 1.2% of it): the
    // first ten would carry 40% and swamp the small queues below.
    let selected = "ADW,ADX,ADY,ADZ,AEA,AEB,AEC,AED,AEE,AEF";
    // Small queues everywhere, so that the stalled subscriber's 2% of the
    // stream overflows them while its worker stalls.
    let publ = start_pub(
        1,
        &[
            "--symbols",
            "500",
            "--rate",
            "100000",
            "--count",
            "300000",
            "--batch",
            "1",
            "--sndhwm",
            "100",
            "--sndbuf",
            "16384",
            "--wait-subscribers",
            "2",
            "--eos-timeout-ms",
            "30000",
            "--retransmit-bind",
            &ring,
            "--retransmit-depth",
            "300000",
        ],
    );
    // Without a source, a selecting subscriber cannot know whether its
    // symbols had records after their last ones it took (PROTOCOL.md 3):
    // it asks the ring about the tail before it takes end-of-stream.
    let whole = start_sub(
        &publ.endpoints,
        &[
            "--subscribe",
            selected,
            "--recover-from",
            &ring,
            "--work",
            "book",
            "--books-out",
            &path_str(&p("whole-books.json")),
            "--report-json",
            &path_str(&p("whole.json")),
        ],
    );
    let stalled = start_sub(
        &publ.endpoints,
        &[
            "--subscribe",
            selected,
            "--recover-from",
            &ring,
            "--reorder-window-ms",
            "20000",
            "--rcvhwm",
            "100",
            "--rcvbuf",
            "16384",
            "--inproc-hwm",
            "10",
            "--workers",
            "1",
            "--work",
            "book",
            "--stall-worker-ms",
            "1500",
            "--stall-after",
            "1",
            "--on-slow",
            "warn",
            "--max-lag-ms",
            "60000",
            "--books-out",
            &path_str(&p("books.json")),
            "--report-json",
            &path_str(&p("sub.json")),
        ],
    );
    let (st, err, _) = stalled.wait();
    assert!(st.success(), "stalled subscriber: {err}");
    let (st, werr, _) = whole.wait();
    assert!(st.success(), "{werr}");
    let (st, perr, _) = publ.proc.wait();
    assert!(st.success(), "{perr}");

    // No phantom loss: the 490 symbols never sent to it are not lost.
    let w = read_json(&p("whole.json"));
    let wb = read_json(&p("whole-books.json"));
    let books = wb.as_object().unwrap();
    assert_eq!(books.len(), 10, "only the selected symbols: {wb}");
    let applied: u64 = books
        .values()
        .map(|b| u(b, "quotes") + u(b, "trades"))
        .sum();
    assert_eq!(u(&w, "received"), applied, "{w}");
    assert!(applied > 0 && applied < 300_000 / 10, "{w}");
    assert_eq!(
        (
            u(&w, "lost"),
            u(&w, "missed_before_join"),
            u(&w, "duplicates")
        ),
        (0, 0, 0),
        "{w}"
    );
    assert_eq!(w["streams_complete"], true, "{w}");

    // A real gap in its symbols: seen and repaired.
    let s = read_json(&p("sub.json"));
    assert!(
        u(&s, "recovered") > 0,
        "the stall made the PUB drop: {err}\n{s}"
    );
    assert_eq!(u(&s, "lost"), 0, "{err}\n{s}");
    assert_eq!(u(&s, "received"), applied, "{err}\n{s}");
    assert_eq!(s["streams_complete"], true, "{s}");
    assert_eq!(read_json(&p("books.json")), wb, "repaired books");
    eprintln!(
        "selection: {applied} records of 10 symbols; the stalled one recovered {} in {} gaps",
        u(&s, "recovered"),
        u(&s["streams"][0]["recovery"], "gaps")
    );
}
