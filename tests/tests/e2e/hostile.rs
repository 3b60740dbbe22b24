//! Acceptance 6: bytes that are not shardcast messages, from a raw PUB, are
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
