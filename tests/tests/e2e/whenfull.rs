//! `--when-full block` loses nothing to a subscriber that cannot keep up,
//! and `--batch auto` (the default) packs what is queued without breaking
//! symbol prefix filtering at the publisher (issue 11).

use crate::support::*;
use shardcast_proto::feed::{symbol_name, Feed};
use shardcast_proto::wire::{Frame, Kind};

#[test]
fn block_mode_waits_for_a_slow_subscriber_and_loses_nothing() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (pub_json, sub_json) = (dir.path().join("pub.json"), dir.path().join("sub.json"));
    let count: u64 = 200_000;
    // Small queues everywhere and a worker at 2 us a record: flat out, the
    // publisher outruns it by far, so in drop mode (the backpressure test)
    // this loses records; in block mode it must wait instead.
    let publ = start_pub(
        1,
        &[
            "--rate",
            "0",
            "--count",
            &count.to_string(),
            "--batch",
            "1",
            "--sndhwm",
            "1000",
            "--sndbuf",
            "65536",
            "--when-full",
            "block",
            "--wait-subscribers",
            "1",
            "--eos-timeout-ms",
            "30000",
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
            "--inproc-hwm",
            "100",
            "--workers",
            "1",
            "--work",
            "none",
            "--work-ns",
            "2000",
            "--on-slow",
            "warn",
            "--max-lag-ms",
            "60000",
            "--report-json",
            &path_str(&sub_json),
        ],
    );
    let (st, err, _) = sub.wait();
    assert!(st.success(), "{err}");
    let (pst, perr, _) = publ.proc.wait();
    assert!(pst.success(), "{perr}");
    let (p, s) = (read_json(&pub_json), read_json(&sub_json));
    assert_eq!(p["when_full"], "block");
    assert_eq!(u(&p, "sent"), count);
    assert!(
        u(&p["streams"][0], "blocked") > 0 && u(&p["streams"][0], "blocked_ns") > 0,
        "the publisher had to wait for room: {}",
        p["streams"][0]
    );
    assert_eq!(u(&p["streams"][0], "unsent_at_stop"), 0);
    assert_eq!((u(&s, "received"), u(&s, "lost")), (count, 0), "{err}");
    assert_eq!(u(&s, "processed"), count);
    assert_eq!(s["streams_complete"], true);
}

/// Flat out with default flags: frames hold many records, and the stream
/// is whole.
#[test]
fn auto_batching_packs_what_is_queued_by_default() {
    let _g = serial();
    let count: u64 = 200_000;
    let out = run_pipeline(
        1,
        &[
            "--rate",
            "0",
            "--count",
            &count.to_string(),
            "--when-full",
            "block",
            "--wait-subscribers",
            "1",
        ],
        // Flat out, the queues may hold more than a second: not a snail.
        &["--on-slow", "warn", "--max-lag-ms", "60000"],
    );
    let (p, s) = (&out.publ, &out.sub);
    let stream = &p["streams"][0];
    assert_eq!(u(p, "sent"), count);
    assert!(
        u(stream, "batched_frames") > 0 && u(stream, "frames") < count / 2,
        "flat out, auto batching packs: {stream}"
    );
    assert_eq!((u(s, "received"), u(s, "lost")), (count, 0));
    assert_eq!(s["streams_complete"], true);
}

/// A raw SUB that filters by symbol prefix gets every record of its symbol,
/// each in its own frame, even flat out with default flags: while it is
/// subscribed, auto batching packs nothing.
#[test]
fn auto_batching_keeps_prefix_filtering_for_a_filtering_subscriber() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (pub_json, sub_json) = (dir.path().join("pub.json"), dir.path().join("sub.json"));
    let count: u64 = 100_000;
    let publ = start_pub(
        1,
        &[
            "--rate",
            "0",
            "--count",
            &count.to_string(),
            "--when-full",
            "block",
            "--wait-subscribers",
            "2",
            "--eos-timeout-ms",
            "30000",
            "--report-json",
            &path_str(&pub_json),
        ],
    );
    // The filter first, then the control topic: subscriptions of one
    // connection arrive in order, so once the publisher counts this peer
    // (control topic), it has seen the filter too.
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::SUB).unwrap();
    raw.set_rcvtimeo(30_000).unwrap();
    raw.set_rcvhwm(0).unwrap();
    let symbol = symbol_name(0);
    raw.set_subscribe(&[&symbol.0[..3], &[0u8]].concat())
        .unwrap();
    raw.set_subscribe(&[0u8]).unwrap();
    raw.connect(&publ.endpoints[0]).unwrap();
    let sub = start_sub(&publ.endpoints, &["--report-json", &path_str(&sub_json)]);

    let (mut mine, mut batches, mut others) = (0u64, 0u64, 0u64);
    loop {
        let msg = raw
            .recv_bytes(0)
            .expect("end-of-stream within 30 s (the publisher never waits on us for long)");
        let frame = Frame::parse(&msg).expect("a valid frame");
        if frame.is_batch() {
            batches += 1;
        }
        let mut eos = false;
        for r in frame.records() {
            match r.kind() {
                Kind::EndOfStream => eos = true,
                Kind::Heartbeat => {}
                _ if r.symbol() == symbol => mine += 1,
                _ => others += 1,
            }
        }
        if eos {
            break;
        }
    }
    drop(raw);
    let (st, err, _) = sub.wait();
    assert!(st.success(), "{err}");
    let (pst, perr, _) = publ.proc.wait();
    assert!(pst.success(), "{perr}");

    let mut feed = Feed::new(1, 100).unwrap();
    let expected = (0..count).filter(|_| feed.next_event().symbol == 0).count() as u64;
    assert!(expected > 0);
    assert_eq!(
        (mine, others, batches),
        (expected, 0, 0),
        "every record of {symbol:?} alone in its frame, nothing else"
    );
    let (p, s) = (read_json(&pub_json), read_json(&sub_json));
    assert_eq!(u(&p["streams"][0], "batched_frames"), 0);
    assert_eq!(u(&p["streams"][0], "frames"), count);
    assert_eq!((u(&s, "received"), u(&s, "lost")), (count, 0));
    assert_eq!(s["streams_complete"], true);
}
