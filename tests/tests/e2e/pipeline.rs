//! The pipeline delivers everything, in order per symbol, exactly once.

use crate::support::*;
use shardcast_proto::feed::Feed;
use shardcast_proto::wire::Payload;
use shardcast_workers::Books;

/// Two streams, keyed fan-out, `--work book`, a fixed rate:
/// every message arrives, both streams complete, and the final books equal
/// the books computed from the same seed.
#[test]
fn two_streams_keyed_books_equal_the_books_of_the_seed() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let books_json = dir.path().join("books.json");
    let (count, seed, symbols) = (20_000u64, 42u64, 40u32);
    let (count_s, seed_s, symbols_s) = (count.to_string(), seed.to_string(), symbols.to_string());
    let run = run_pipeline(
        2,
        &[
            "--rate",
            "20000",
            "--count",
            &count_s,
            "--seed",
            &seed_s,
            "--symbols",
            &symbols_s,
            "--wait-subscribers",
            "1",
        ],
        &[
            "--fanout",
            "keyed",
            "--work",
            "book",
            "--workers",
            "2",
            "--max-lag-ms",
            "30000",
            "--books-out",
            &path_str(&books_json),
        ],
    );
    assert!(
        run.sub_stdout.contains("end-to-end latency"),
        "summary printed: {}",
        run.sub_stdout
    );
    let (p, s) = (run.publ, run.sub);
    assert_eq!(u(&p, "sent"), count);
    assert_eq!(u(&s, "received"), count);
    assert_eq!(u(&s, "processed"), count);
    assert_eq!(u(&s, "lost"), 0);
    assert_eq!(u(&s, "duplicates"), 0);
    assert_eq!(u(&s, "malformed"), 0);
    assert_eq!(s["streams_complete"], true);
    assert_eq!(s["streams"].as_array().unwrap().len(), 2);
    assert_eq!(u(&s["latency_ns"]["end_to_end"], "count"), count);
    for st in s["streams"].as_array().unwrap() {
        assert_eq!(u(st, "first_seq"), 1, "no message lost to the slow joiner");
        assert_eq!(st["checksum_ok"], true);
    }

    // The books a subscriber must end with, from the seed alone.
    let mut feed = Feed::new(seed, symbols).unwrap();
    let names = feed.symbols().to_vec();
    let mut expected = Books::new();
    for _ in 0..count {
        let ev = feed.next_event();
        let book = expected.book(names[ev.symbol as usize]);
        match ev.payload {
            Payload::Quote(q) => book.quote(&q),
            Payload::Trade(t) => book.trade(&t),
            _ => unreachable!("the feed only makes quotes and trades"),
        }
    }
    let got = read_json(&books_json);
    let want = serde_json::to_value(expected.snapshot()).unwrap();
    assert_eq!(got.as_object().unwrap().len(), expected.len());
    assert_eq!(
        got, want,
        "final books differ from the books of seed {seed}"
    );
}

/// `--fanout push` with several workers processes every
/// message exactly once: counts match, and the workers' checksums sum to
/// the publisher's stream checksums (a record processed twice, or skipped,
/// would change the sum).
#[test]
fn push_fanout_processes_every_message_exactly_once() {
    let _g = serial();
    let count = 30_000u64;
    let count_s = count.to_string();
    let run = run_pipeline(
        2,
        &[
            "--rate",
            "30000",
            "--count",
            &count_s,
            "--wait-subscribers",
            "1",
        ],
        &[
            "--fanout",
            "push",
            "--work",
            "checksum",
            "--workers",
            "3",
            "--max-lag-ms",
            "30000",
        ],
    );
    let (p, s) = (run.publ, run.sub);
    assert_eq!(u(&s, "received"), count);
    assert_eq!(u(&s, "processed"), count);
    assert_eq!(u(&s, "duplicates"), 0);
    let workers = s["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 3);
    let per_worker: u64 = workers.iter().map(|w| u(w, "records")).sum();
    assert_eq!(per_worker, count);
    assert!(
        workers.iter().all(|w| u(w, "records") > 0),
        "PUSH spreads work over every worker: {workers:?}"
    );
    let published = p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .fold(0u64, |acc, st| acc.wrapping_add(u(st, "checksum")));
    assert_eq!(u(&s, "processed_checksum"), published);
}

/// With `--wait-subscribers` the very first message arrives.
#[test]
fn wait_subscribers_delivers_the_very_first_message() {
    let _g = serial();
    let run = run_pipeline(
        1,
        &[
            "--rate",
            "1000",
            "--count",
            "200",
            "--wait-subscribers",
            "1",
        ],
        &[],
    );
    let s = run.sub;
    let stream = &s["streams"][0];
    assert_eq!(u(stream, "first_seq"), 1);
    assert_eq!(u(&s, "missed_before_join"), 0);
    assert_eq!(u(&s, "received"), 200);
    assert_eq!(s["streams_complete"], true);
}

/// The slow joiner: without `--wait-subscribers`,
/// a subscriber started after the first message was sent (the publisher's
/// own line says so: a handshake, not a sleep) never sees it. shardcast
/// reports what it missed as `missed_before_join`, not as `lost`, and does
/// not call the stream complete.
#[test]
fn without_wait_the_slow_joiner_misses_the_start_and_says_so() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (pub_json, sub_json) = (dir.path().join("pub.json"), dir.path().join("sub.json"));
    let publ = start_pub(
        1,
        &[
            "--rate",
            "2000",
            "--count",
            "6000",
            "--report-json",
            &path_str(&pub_json),
        ],
    );
    publ.proc.wait_line("first data message sent");
    let sub = start_sub(&publ.endpoints, &["--report-json", &path_str(&sub_json)]);
    let (st, err, _) = sub.wait();
    assert!(st.success(), "{err}");
    assert!(publ.proc.wait().0.success());
    let p = read_json(&pub_json);
    let s = read_json(&sub_json);
    let stream = &s["streams"][0];
    let first = u(stream, "first_seq");
    assert!(first > 1, "seq 1 was sent before the subscriber existed");
    assert_eq!(u(&s, "missed_before_join"), first - 1);
    assert_eq!(u(&s, "lost"), 0, "missing the start is not loss");
    assert_eq!(s["streams_complete"], false);
    assert_eq!(
        u(&s, "received") + u(&s, "missed_before_join"),
        u(&p, "sent")
    );
}

/// `--wait-timeout` gives up on every stream: nothing is sent, exit 1, and
/// the message names the flag.
#[test]
fn wait_timeout_gives_up_without_sending() {
    let _g = serial();
    let publ = start_pub(
        2,
        &[
            "--wait-subscribers",
            "1",
            "--wait-timeout",
            "0.3",
            "--rate",
            "1000",
            "--duration",
            "60",
        ],
    );
    let (st, err, _) = publ.proc.wait();
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("--wait-timeout"), "{err}");
    assert!(
        !err.contains("first data message sent"),
        "no stream sent data:\n{err}"
    );
}

/// A publisher waiting for 2 subscribers (at most `wait_timeout` seconds)
/// with 1 subscriber connected and counted, so that end-of-stream, if the
/// publisher sent one, would reach it. Returns the subscriber and the path
/// of its report (in the returned directory).
fn one_of_two_subscribers(wait_timeout: &str) -> (Publisher, Proc, tempfile::TempDir) {
    // Built before the publisher starts, so its --wait-timeout is not spent
    // on a build.
    let _ = sub_bin();
    let dir = tempfile::tempdir().unwrap();
    let sub_json = path_str(&dir.path().join("sub.json"));
    let publ = start_pub(
        1,
        &[
            "--wait-subscribers",
            "2",
            "--wait-timeout",
            wait_timeout,
            "--rate",
            "1000",
            "--duration",
            "60",
        ],
    );
    let sub = start_sub(&publ.endpoints, &["--report-json", &sub_json]);
    publ.proc.wait_line("stream 0: 1 of 2 subscribers so far");
    (publ, sub, dir)
}

/// What the subscriber of [`one_of_two_subscribers`] says once stopped:
/// it heard of no stream, so nothing is complete.
fn assert_subscriber_saw_no_stream(sub: Proc, dir: &tempfile::TempDir) {
    // Had end-of-stream come, the subscriber would have ended by itself
    // (and the publisher's end phase waited for that before it exited).
    sub.signal(libc::SIGTERM);
    let (st, err, _) = sub.wait();
    assert!(st.success(), "{err}");
    let s = read_json(&dir.path().join("sub.json"));
    assert_eq!(s["end_reason"], "signal", "{s}");
    assert_eq!(u(&s, "received"), 0);
    assert_eq!(
        s["streams_complete"], false,
        "a stream that never started is not complete: {s}"
    );
}

/// Issue 9, defect 1: on --wait-timeout expiry the publisher exited 1 but
/// first sent end-of-stream with last seq 0, so a subscriber that had
/// connected reported `received: 0, streams_complete: true`, a complete
/// empty stream that never was.
#[test]
fn wait_timeout_expiry_sends_no_end_of_stream_to_a_connected_subscriber() {
    let _g = serial();
    let (publ, sub, dir) = one_of_two_subscribers("3");
    let (pst, perr, _) = publ.proc.wait();
    assert_eq!(pst.code(), Some(1), "{perr}");
    assert!(perr.contains("--wait-timeout"), "{perr}");
    assert_subscriber_saw_no_stream(sub, &dir);
    assert!(
        perr.contains("stream 0: never started (wait-timeout); no end-of-stream sent"),
        "{perr}"
    );
    assert!(!perr.contains("end phase"), "{perr}");
}

/// The same defect by another way in: SIGTERM while the streams still wait
/// for subscribers. The publisher ends cleanly (exit 0, report written) and
/// sends no end-of-stream.
#[test]
fn sigterm_before_the_start_sends_no_end_of_stream_to_a_connected_subscriber() {
    let _g = serial();
    let (publ, sub, dir) = one_of_two_subscribers("60");
    publ.proc.signal(libc::SIGTERM);
    let (pst, perr, pout) = publ.proc.wait();
    assert!(pst.success(), "{perr}");
    assert!(pout.contains("ended by signal"), "{pout}");
    assert_subscriber_saw_no_stream(sub, &dir);
    assert!(
        perr.contains("stream 0: never started (signal); no end-of-stream sent"),
        "{perr}"
    );
    assert!(!perr.contains("end phase"), "{perr}");
}

/// A shard that never heard from its publisher proves nothing: the run is
/// not complete even though every stream that was heard is.
#[test]
fn a_silent_shard_means_the_streams_are_not_complete() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let sub_json = dir.path().join("sub.json");
    let publ = start_pub(
        1,
        &[
            "--rate",
            "1000",
            "--count",
            "100",
            "--wait-subscribers",
            "1",
        ],
    );
    // Port 9 (discard) on loopback: nothing listens there.
    let connect = [publ.endpoints[0].clone(), "tcp://127.0.0.1:9".to_string()];
    let sub = start_sub(
        &connect,
        &["--duration", "2", "--report-json", &path_str(&sub_json)],
    );
    let (st, err, _) = sub.wait();
    assert!(st.success(), "{err}");
    assert!(publ.proc.wait().0.success());
    let s = read_json(&sub_json);
    assert_eq!(u(&s, "received"), 100);
    assert_eq!(s["streams"][0]["complete"], true);
    assert_eq!(s["streams_complete"], false);
    assert_eq!(s["end_reason"], "duration");
}
