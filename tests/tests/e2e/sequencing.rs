//! Records that are valid but lie (issue 10, findings 4 to 7). A hostile
//! publisher written here (a raw XPUB; records encoded with
//! `shardcast_proto::wire`) sends a real-looking stream with one lie in it
//! to the real `shardcast-sub`: an ancient timestamp, a first record far
//! ahead, an end-of-stream from nowhere, a record of another session. The
//! subscriber must not croak, end, or rewrite the stream's history for it,
//! and must count the lie under `suspect_reasons`.
//!
//! One XPUB to one SUB over TCP keeps order, and with no send HWM it drops
//! nothing, so every assertion below is exact.

use crate::support::*;
use shardcast_proto::wire::{self, Payload, Quote, RecordMeta, StreamChecksum, Symbol};

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

const QUOTE: Payload = Payload::Quote(Quote {
    bid_px: 100,
    ask_px: 101,
    bid_sz: 5,
    ask_sz: 7,
});

/// One record of `publisher_id`'s stream 0.
fn record(publisher_id: u32, session: u64, seq: u64, ts: u64, payload: Payload) -> Vec<u8> {
    let symbol = match payload {
        Payload::Quote(_) | Payload::Trade(_) => Symbol::new(&format!("S{}", seq % 50)).unwrap(),
        _ => Symbol::CONTROL,
    };
    let meta = RecordMeta {
        symbol,
        publisher_id,
        stream_id: 0,
        session,
        seq,
        send_ts_ns: ts,
        intended_ts_ns: ts,
        sym_seq: 0,
    };
    let mut buf = vec![0u8; 256];
    let n = wire::encode(&mut buf, &meta, &payload, 0).unwrap();
    buf.truncate(n);
    buf
}

fn eos(publisher_id: u32, session: u64, last_seq: u64, checksum: u64) -> Vec<u8> {
    let payload = Payload::EndOfStream { last_seq, checksum };
    record(publisher_id, session, last_seq, now_ns(), payload)
}

/// The hostile publisher: a raw XPUB on an OS-chosen port that never drops.
struct Liar {
    raw: zmq::Socket,
    endpoint: String,
    _ctx: zmq::Context,
}

impl Liar {
    fn bind() -> Liar {
        let ctx = zmq::Context::new();
        let raw = ctx.socket(zmq::XPUB).unwrap();
        raw.set_rcvtimeo(LINE_TIMEOUT.as_millis() as i32).unwrap();
        raw.set_sndhwm(0).unwrap();
        raw.set_linger(0).unwrap();
        raw.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = raw.get_last_endpoint().unwrap().unwrap();
        Liar {
            raw,
            endpoint,
            _ctx: ctx,
        }
    }

    /// Wait until both of the subscriber's subscriptions (the control topic
    /// and the empty prefix, PROTOCOL.md 3) have reached us: everything sent
    /// after this is delivered.
    fn wait_subscribed(&self) {
        let (mut control, mut all) = (false, false);
        while !(control && all) {
            let m = self
                .raw
                .recv_bytes(0)
                .expect("subscriptions from the subscriber");
            control |= m == [1, 0];
            all |= m == [1];
        }
    }

    fn send(&self, rec: &[u8]) {
        self.raw.send(rec, 0).unwrap();
    }

    /// Send data records `seqs` of a stream, stamped now, adding each to
    /// `sum`.
    fn stream(
        &self,
        publisher_id: u32,
        session: u64,
        seqs: impl Iterator<Item = u64>,
        sum: &mut StreamChecksum,
    ) {
        for seq in seqs {
            let r = record(publisher_id, session, seq, now_ns(), QUOTE);
            sum.add(wire::digest(&r));
            self.send(&r);
        }
    }
}

/// A subscriber of the liar's stream writing its report to `json`.
fn subscriber(liar: &Liar, json: &std::path::Path, extra: &[&str]) -> Proc {
    let json = path_str(json);
    // A generous limit: the lies below are decades old, and a slow CI
    // machine must not croak for real.
    let mut args = vec!["--max-lag-ms", "30000", "--report-json", &json];
    args.extend_from_slice(extra);
    start_sub(std::slice::from_ref(&liar.endpoint), &args)
}

/// Issue 10, finding 4: a single duplicate record stamped `send_ts_ns = 1`
/// croaked the snail (exit 3) in both lag modes. A dropped record is not
/// judged; a new record stamped in 1970 is delivered, counted as
/// `ts_ancient`, and not judged either.
#[test]
fn one_ancient_timestamp_does_not_kill_the_subscriber() {
    let _g = serial();
    for mode in ["absolute", "relative"] {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("sub.json");
        let liar = Liar::bind();
        let sub = subscriber(&liar, &json, &["--snail-mode", mode]);
        liar.wait_subscribed();
        let mut sum = StreamChecksum::default();
        liar.stream(99, 7, 1..=500, &mut sum);
        // The duplicate from 1970, then a new record from 1970.
        liar.send(&record(99, 7, 500, 1, QUOTE));
        let ancient = record(99, 7, 501, 1, QUOTE);
        sum.add(wire::digest(&ancient));
        liar.send(&ancient);
        liar.stream(99, 7, 502..=1000, &mut sum);
        liar.send(&eos(99, 7, 1000, sum.0));

        let (st, err, _) = sub.wait();
        assert!(st.success(), "{mode}: {st:?}\n{err}");
        let s = read_json(&json);
        assert_eq!(s["end_reason"], "end-of-stream", "{mode}");
        assert!(s["snail"].is_null(), "{mode}: {}", s["snail"]);
        assert_eq!(u(&s["slow"], "count"), 0, "{mode}");
        assert_eq!(u(&s["suspect_reasons"], "ts_ancient"), 1, "{mode}");
        assert_eq!(u(&s["suspect_reasons"], "ts_future"), 0, "{mode}");
        assert_eq!(
            (u(&s, "received"), u(&s, "duplicates")),
            (1000, 1),
            "{mode}"
        );
        assert_eq!(u(&s, "processed"), 1000, "{mode}: delivered all the same");
        assert_eq!(s["streams_complete"], true, "{mode}");
    }
}

/// Issue 10, finding 5: a session's first record (or heartbeat) claiming
/// seq 2^62 made all 3,000 real records of the session duplicates,
/// `missed_before_join` 4.6e18, with no suspect reason. It is a jump like
/// any other now: dropped, counted as `seq_jump`.
#[test]
fn a_sessions_first_record_is_not_trusted_blindly() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("sub.json");
    let liar = Liar::bind();
    let sub = subscriber(&liar, &json, &[]);
    liar.wait_subscribed();
    // Publisher 99's first record is data, 98's a heartbeat.
    liar.send(&record(99, 7, 1 << 62, now_ns(), QUOTE));
    liar.send(&record(98, 7, 1 << 62, now_ns(), Payload::Heartbeat));
    let (mut a, mut b) = (StreamChecksum::default(), StreamChecksum::default());
    for chunk in 0..30u64 {
        let seqs = chunk * 100 + 1..=chunk * 100 + 100;
        liar.stream(99, 7, seqs.clone(), &mut a);
        liar.stream(98, 7, seqs, &mut b);
    }
    liar.send(&eos(99, 7, 3000, a.0));
    liar.send(&eos(98, 7, 3000, b.0));

    let (st, err, _) = sub.wait();
    assert!(st.success(), "{st:?}\n{err}");
    let s = read_json(&json);
    assert_eq!(u(&s, "received"), 6000, "{s}");
    assert_eq!(u(&s, "processed"), 6000);
    assert_eq!((u(&s, "duplicates"), u(&s, "missed_before_join")), (0, 0));
    assert_eq!(u(&s["suspect_reasons"], "seq_jump"), 2);
    assert_eq!(s["streams_complete"], true, "{s}");
}

/// Issue 10, finding 6: one end-of-stream from a source never seen arrived
/// first; the shard decided every source it saw had ended and exited 0
/// with `received 0` while the real stream flowed. It is counted as
/// `eos_unknown`, creates no source, and the real stream ends the run.
#[test]
fn one_end_of_stream_from_a_source_never_seen_does_not_end_the_shard() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("sub.json");
    let liar = Liar::bind();
    let sub = subscriber(&liar, &json, &[]);
    liar.wait_subscribed();
    liar.send(&eos(555, 1, 0, 0));
    let mut sum = StreamChecksum::default();
    liar.stream(99, 7, 1..=3000, &mut sum);
    liar.send(&eos(99, 7, 3000, sum.0));

    let (st, err, _) = sub.wait();
    assert!(st.success(), "{st:?}\n{err}");
    let s = read_json(&json);
    assert_eq!(s["end_reason"], "end-of-stream");
    assert_eq!(u(&s, "received"), 3000, "{s}");
    assert_eq!(u(&s["suspect_reasons"], "eos_unknown"), 1);
    let streams = s["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "the stranger is no source: {s}");
    assert_eq!(u(&streams[0], "publisher_id"), 99);
    assert_eq!(s["streams_complete"], true);
}

/// Issue 10, finding 7: one record of another session in the middle of a
/// stream gave `restarts 2`, `missed_before_join 1505` and an incomplete
/// stream, though every record arrived. A restart is taken only once the
/// new session's next record continues it; the lone record is counted as
/// `session_unconfirmed` (delivered, in no session). A real restart on
/// another source of the same peer, at the same time, is still one restart
/// with its new session whole.
#[test]
fn one_foreign_session_record_does_not_rewrite_history() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("sub.json");
    let liar = Liar::bind();
    let sub = subscriber(&liar, &json, &["--work", "checksum"]);
    liar.wait_subscribed();
    let mut sum = StreamChecksum::default();
    let mut old = StreamChecksum::default();
    let mut restarted = StreamChecksum::default();
    liar.stream(99, 7, 1..=1500, &mut sum);
    liar.stream(98, 1, 1..=500, &mut old);
    liar.send(&record(99, 8, 1505, now_ns(), QUOTE));
    liar.stream(99, 7, 1501..=3000, &mut sum);
    // Publisher 98 restarts (a new session from seq 1).
    liar.stream(98, 2, 1..=500, &mut restarted);
    liar.send(&eos(99, 7, 3000, sum.0));
    liar.send(&eos(98, 2, 500, restarted.0));

    let (st, err, _) = sub.wait();
    assert!(st.success(), "{st:?}\n{err}");
    let s = read_json(&json);
    let streams = s["streams"].as_array().unwrap();
    let by = |p: u64| streams.iter().find(|x| u(x, "publisher_id") == p).unwrap();
    let (lied_to, real) = (by(99), by(98));
    assert_eq!(u(lied_to, "restarts"), 0, "{lied_to}");
    assert_eq!(u(lied_to, "session"), 7);
    assert_eq!(
        (u(lied_to, "missed_before_join"), u(lied_to, "lost")),
        (0, 0)
    );
    assert_eq!(u(lied_to, "duplicates"), 0);
    assert_eq!(lied_to["complete"], true, "{lied_to}");
    assert_eq!(u(lied_to, "session_unconfirmed"), 1);
    assert_eq!(
        u(lied_to, "received"),
        3001,
        "the lone record was delivered"
    );
    assert_eq!((u(real, "restarts"), u(real, "session")), (1, 2), "{real}");
    assert_eq!((u(real, "missed_before_join"), u(real, "lost")), (0, 0));
    assert_eq!(real["complete"], true, "the new session is whole: {real}");
    assert_eq!(u(&s["suspect_reasons"], "session_unconfirmed"), 1);
    assert_eq!(s["streams_complete"], true);
    assert_eq!(
        u(&s, "processed"),
        u(&s, "received"),
        "each record worked once"
    );
}
