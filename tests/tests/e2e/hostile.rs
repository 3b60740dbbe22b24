//! Bytes that are not shardcast messages, from a raw XPUB peer, are
//! counted as malformed under their reason; nothing crashes; good messages
//! still flow, on the same socket and on other shards.

use crate::support::*;
use shardcast_proto::wire::{self, Payload, Quote, RecordMeta, StreamChecksum, Symbol};

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn record(seq: u64, payload: Payload, symbol: Symbol) -> Vec<u8> {
    let now = now_ns();
    let meta = RecordMeta {
        symbol,
        publisher_id: 99,
        stream_id: 0,
        session: 7,
        seq,
        send_ts_ns: now,
        intended_ts_ns: now,
        sym_seq: 0,
    };
    let mut buf = vec![0u8; 256];
    let n = wire::encode(&mut buf, &meta, &payload, 100).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn garbage_is_counted_by_reason_and_good_messages_still_flow() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let sub_json = dir.path().join("sub.json");

    // The raw peer: an XPUB so that the subscription is the handshake.
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::XPUB).unwrap();
    raw.set_rcvtimeo(LINE_TIMEOUT.as_millis() as i32).unwrap();
    raw.bind("tcp://127.0.0.1:*").unwrap();
    let raw_ep = raw.get_last_endpoint().unwrap().unwrap();

    let publ = start_pub(
        1,
        &[
            "--rate",
            "10000",
            "--count",
            "2000",
            "--wait-subscribers",
            "1",
        ],
    );
    let sub = start_sub(
        &[publ.endpoints[0].clone(), raw_ep],
        &[
            "--report-json",
            &path_str(&sub_json),
            "--max-lag-ms",
            "30000",
        ],
    );
    // Wait until the subscriber's subscription reached the raw peer.
    raw.recv_bytes(0).expect("subscription from the subscriber");

    let quote = Payload::Quote(Quote {
        bid_px: 1,
        ask_px: 2,
        bid_sz: 3,
        ask_sz: 4,
    });
    let sym = Symbol::new("ZZZ").unwrap();
    let good = record(1, quote, sym);
    let mut v2 = good.clone();
    v2[10] = 2;
    let mut kind = good.clone();
    kind[11] = 77;
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"junk");
    let mut seq0 = good.clone();
    seq0[32..40].fill(0);
    let mut batch = vec![0u8; wire::BATCH_HEADER_LEN];
    wire::encode_batch_header(&mut batch, 3).unwrap();
    batch.extend_from_slice(&good); // says 3 records, holds 1
    let garbage: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "short"),
        (b"AAPL".to_vec(), "short"),
        (
            b"this is not a shardcast message, it is a sentence".to_vec(),
            "foreign",
        ),
        (
            (0..200u32).map(|i| (i * 37 % 251) as u8 + 1).collect(),
            "foreign",
        ),
        (v2, "version"),
        (kind, "unknown_kind"),
        (trailing, "bad_length"),
        (batch, "short"),
        (seq0, "bad_sequence"),
    ];
    for (g, _) in &garbage {
        raw.send(&g[..], 0).unwrap();
    }
    // Then a small valid stream on the same socket: two quotes and an
    // end-of-stream carrying their checksum.
    let second = record(2, quote, sym);
    let mut sum = StreamChecksum::default();
    sum.add(wire::digest(&good));
    sum.add(wire::digest(&second));
    raw.send(&good[..], 0).unwrap();
    raw.send(&second[..], 0).unwrap();
    raw.send(
        &record(
            2,
            Payload::EndOfStream {
                last_seq: 2,
                checksum: sum.0,
            },
            Symbol::CONTROL,
        )[..],
        0,
    )
    .unwrap();

    let (st, err, _) = sub.wait();
    assert!(st.success(), "{err}");
    assert!(publ.proc.wait().0.success());
    let s = read_json(&sub_json);
    assert_eq!(u(&s, "malformed"), garbage.len() as u64);
    for reason in wire::DecodeError::REASONS {
        let want = garbage.iter().filter(|(_, r)| *r == reason).count() as u64;
        assert_eq!(u(&s["malformed_reasons"], reason), want, "reason {reason}");
    }
    assert_eq!(u(&s, "received"), 2000 + 2);
    assert_eq!(u(&s, "processed"), 2000 + 2);
    assert_eq!(
        s["streams_complete"], true,
        "both the publisher's and the raw peer's stream"
    );
    raw.set_linger(0).unwrap();
}

/// A record of the raw peer's stream with a given send time.
fn record_at(seq: u64, payload: Payload, symbol: Symbol, publisher_id: u32, ts: u64) -> Vec<u8> {
    let meta = RecordMeta {
        symbol,
        publisher_id,
        stream_id: 0,
        session: 7,
        seq,
        send_ts_ns: ts,
        intended_ts_ns: ts,
        sym_seq: 0,
    };
    let mut buf = vec![0u8; 256];
    let n = wire::encode(&mut buf, &meta, &payload, 100).unwrap();
    buf.truncate(n);
    buf
}

const QUOTE: Payload = Payload::Quote(Quote {
    bid_px: 100,
    ask_px: 101,
    bid_sz: 5,
    ask_sz: 7,
});

/// A raw XPUB peer (the subscription is its handshake) that never drops:
/// no send HWM, so a flood arrives whole.
fn raw_peer(ctx: &zmq::Context) -> (zmq::Socket, String) {
    let raw = ctx.socket(zmq::XPUB).unwrap();
    raw.set_rcvtimeo(LINE_TIMEOUT.as_millis() as i32).unwrap();
    raw.set_sndhwm(0).unwrap();
    raw.set_linger(0).unwrap();
    raw.bind("tcp://127.0.0.1:*").unwrap();
    let ep = raw.get_last_endpoint().unwrap().unwrap();
    (raw, ep)
}

#[test]
fn absurd_fields_are_counted_by_reason_and_the_stream_survives_them() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (sub_json, books) = (dir.path().join("sub.json"), dir.path().join("books.json"));
    let ctx = zmq::Context::new();
    let (raw, raw_ep) = raw_peer(&ctx);
    let sub = start_sub(
        &[raw_ep],
        &[
            "--workers",
            "1",
            "--max-symbols",
            "100",
            "--max-lag-ms",
            "30000",
            "--books-out",
            &path_str(&books),
            "--report-json",
            &path_str(&sub_json),
        ],
    );
    raw.recv_bytes(0).expect("subscription from the subscriber");
    let now = now_ns();
    let mut sum = StreamChecksum::default();
    for seq in 1..=300u64 {
        let sym = Symbol::new(&format!("X{seq:04}")).unwrap();
        // One record from an hour in the future: delivered, not timed.
        let ts = if seq == 151 {
            now + 3_600_000_000_000
        } else {
            now
        };
        let r = record_at(seq, QUOTE, sym, 99, ts);
        sum.add(wire::digest(&r));
        raw.send(&r[..], 0).unwrap();
        if seq == 150 {
            // A jump of 2^63 in the middle of the stream: dropped, and the
            // records after it are not taken for duplicates.
            raw.send(&record_at(1 << 63, QUOTE, sym, 99, now)[..], 0)
                .unwrap();
        }
    }
    let eos = Payload::EndOfStream {
        last_seq: 300,
        checksum: sum.0,
    };
    raw.send(&record_at(300, eos, Symbol::CONTROL, 99, now)[..], 0)
        .unwrap();
    let (st, err, _) = sub.wait();
    assert!(st.success(), "{err}");
    let s = read_json(&sub_json);
    let reasons = &s["suspect_reasons"];
    assert_eq!(u(reasons, "seq_jump"), 1, "{reasons}");
    assert_eq!(u(reasons, "ts_future"), 1, "{reasons}");
    // 300 distinct symbols, books for 100 of them.
    assert_eq!(u(reasons, "unknown_symbol"), 200, "{reasons}");
    assert_eq!(u(reasons, "refused_source"), 0);
    assert_eq!(u(&s, "received"), 300);
    assert_eq!((u(&s, "lost"), u(&s, "duplicates")), (0, 0));
    assert_eq!(s["streams_complete"], true, "checksum and sequence whole");
    assert_eq!(read_json(&books).as_object().unwrap().len(), 100);
}

#[test]
fn an_oversized_frame_cuts_only_its_peer_off_and_is_counted() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let sub_json = dir.path().join("sub.json");
    let ctx = zmq::Context::new();
    let (raw, raw_ep) = raw_peer(&ctx);
    let publ = start_pub(
        1,
        &[
            "--rate",
            "10000",
            "--count",
            "3000",
            // Bare records only: a batch of ours (when the publisher falls
            // behind) would pass 1000 bytes too.
            "--batch",
            "1",
            "--wait-subscribers",
            "1",
        ],
    );
    let sub = start_sub(
        &[publ.endpoints[0].clone(), raw_ep],
        &[
            "--max-msg-size",
            "1000",
            "--max-lag-ms",
            "30000",
            "--report-json",
            &path_str(&sub_json),
        ],
    );
    raw.recv_bytes(0).expect("subscription from the subscriber");
    raw.send(&vec![7u8; 2000][..], 0).unwrap();
    let (st, err, _) = sub.wait();
    // The good stream is whole; the cut-off shard could not end.
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("over --max-msg-size 1000 bytes") && err.contains("Remedy"),
        "{err}"
    );
    assert!(publ.proc.wait().0.success());
    let s = read_json(&sub_json);
    assert_eq!(u(&s["malformed_reasons"], "oversized"), 1);
    assert_eq!(u(&s["links"][1], "cut_off"), 1);
    assert_eq!(u(&s["links"][0], "cut_off"), 0);
    let good = &s["streams"][0];
    assert_eq!(u(good, "shard"), 0);
    assert_eq!(good["complete"], true, "{good}");
    assert_eq!(u(&s, "received"), 3000);
}

/// Junk frames in the flood test.
const JUNK: u64 = 400_000;

#[test]
fn a_garbage_and_source_flood_is_counted_and_memory_stays_bounded() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let sub_json = dir.path().join("sub.json");
    let flags = [
        "--rcvhwm",
        "1000",
        "--inproc-hwm",
        "100",
        "--workers",
        "1",
        "--work",
        "checksum",
        "--max-lag-ms",
        "30000",
    ];
    let ceiling =
        crate::defence::explain_ceiling(dir.path(), &["--expected-msg-size", "512"], &flags);

    let ctx = zmq::Context::new();
    let (raw, raw_ep) = raw_peer(&ctx);
    let mut args = flags.to_vec();
    let json = path_str(&sub_json);
    args.extend_from_slice(&["--report-json", &json]);
    let sub = start_sub(&[raw_ep], &args);
    raw.recv_bytes(0).expect("subscription from the subscriber");
    let pid = sub.pid();
    let sampler = std::thread::spawn(move || {
        crate::defence::peak_rss(&[pid], || rss_bytes(pid).is_none())[0]
    });
    // 400,000 frames of junk up to 512 bytes: about 100 MB, far more than
    // the bound below, so queueing it would show.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut junk = vec![0u8; 512];
    let mut junk_bytes = 0u64;
    for _ in 0..JUNK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (x % 512) as usize + 1;
        for (i, b) in junk[..n].iter_mut().enumerate() {
            *b = (x >> (i % 8 * 8)) as u8 | 1;
        }
        raw.send(&junk[..n], 0).unwrap();
        junk_bytes += n as u64;
    }
    // 5,000 publishers, one record each: 4,096 are followed, the rest
    // refused; then end-of-stream for each followed one.
    let now = now_ns();
    let sym = Symbol::new("ZZZ").unwrap();
    let mut sums = Vec::new();
    for p in 0..5000u32 {
        let r = record_at(1, QUOTE, sym, 1000 + p, now);
        sums.push(wire::digest(&r));
        raw.send(&r[..], 0).unwrap();
    }
    for p in 0..4096u32 {
        let eos = Payload::EndOfStream {
            last_seq: 1,
            checksum: sums[p as usize],
        };
        raw.send(&record_at(1, eos, Symbol::CONTROL, 1000 + p, now)[..], 0)
            .unwrap();
    }
    let (st, err, _) = sub.wait();
    assert!(st.success(), "{err}");
    let (first, peak) = sampler.join().unwrap();
    let s = read_json(&sub_json);
    assert_eq!(u(&s["suspect_reasons"], "refused_source"), 5000 - 4096);
    assert_eq!(u(&s, "received"), 4096);
    assert_eq!(u(&s, "processed"), 4096);
    assert_eq!(s["streams_complete"], true);
    // Every junk byte is odd, so no frame can start with a valid header or
    // the batch marker 0x00: each one is malformed.
    assert_eq!(u(&s, "malformed"), JUNK);
    // The queues' ceiling plus what any run touches (RUN_FOOTPRINT; the
    // 4,096 followed sources take about 2 MiB of it): the bound does not
    // grow with the flood, and is far below what queueing it would take.
    let growth = peak.saturating_sub(first);
    let bound = ceiling + crate::defence::RUN_FOOTPRINT;
    eprintln!(
        "garbage flood: {} MiB of junk in {JUNK} frames; subscriber RSS growth {} KiB, bound {} KiB (--explain-hwm ceiling {} KiB + run footprint)",
        junk_bytes >> 20,
        growth >> 10,
        bound >> 10,
        ceiling >> 10
    );
    assert!(bound < junk_bytes / 2, "the bound can catch queueing");
    assert!(first > 0 && growth < bound, "grew {growth} (bound {bound})");
}

#[test]
fn a_publisher_flooding_far_above_its_rate_does_not_starve_another_stream() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (sub_json, flood_json) = (dir.path().join("sub.json"), dir.path().join("flood.json"));
    let good = start_pub(
        1,
        &[
            "--publisher-id",
            "1",
            "--rate",
            "10000",
            "--count",
            "20000",
            "--wait-subscribers",
            "1",
        ],
    );
    let flood = start_pub(
        1,
        &[
            "--publisher-id",
            "2",
            "--rate",
            "0",
            "--count",
            "2000000",
            "--wait-subscribers",
            "1",
            "--report-json",
            &path_str(&flood_json),
        ],
    );
    let sub = start_sub(
        &[good.endpoints[0].clone(), flood.endpoints[0].clone()],
        &[
            "--max-lag-ms",
            "60000",
            "--on-slow",
            "warn",
            "--report-json",
            &path_str(&sub_json),
        ],
    );
    let (st, err, _) = sub.wait();
    assert!(st.success(), "{err}");
    assert!(good.proc.wait().0.success());
    assert!(flood.proc.wait().0.success());
    let s = read_json(&sub_json);
    let streams = s["streams"].as_array().unwrap();
    let by = |p: u64| streams.iter().find(|x| u(x, "publisher_id") == p).unwrap();
    let (g, f) = (by(1), by(2));
    assert_eq!(g["complete"], true, "the paced stream is whole: {g}");
    assert_eq!(u(g, "lost"), 0);
    assert_eq!(u(g, "received"), 20000);
    let fr = read_json(&flood_json);
    eprintln!(
        "flood: {:.0} msg/s offered by the flooding publisher, {} received, {} lost; the 10K msg/s stream lost 0",
        fr["msgs_per_sec"].as_f64().unwrap(),
        u(f, "received"),
        u(f, "lost")
    );
    assert!(fr["msgs_per_sec"].as_f64().unwrap() > 100_000.0);
}
