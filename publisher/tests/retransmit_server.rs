//! The retransmission server in process, over real sockets (ipc): a ring
//! filled by the test, a DEALER asking. What the e2e test cannot do
//! deterministically: records that come while a request waits.

use shardcast_proto::range::{Reply, Request, Status};
use shardcast_proto::seq::SourceKey;
use shardcast_proto::wire::{BatchWriter, Payload, RecordMeta, Symbol, Trade};
use shardcast_publisher::config::Retransmit;
use shardcast_publisher::retransmit::{frame_first, Counters, Ring, Server};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn frame(seq: u64) -> Vec<u8> {
    let meta = RecordMeta {
        symbol: Symbol::new("AB").unwrap(),
        publisher_id: 1,
        stream_id: 0,
        session: 9,
        seq,
        send_ts_ns: 1000 + seq,
        intended_ts_ns: 1000 + seq,
        sym_seq: seq as u32,
    };
    let mut w = BatchWriter::new(true, 1024);
    w.encode(
        &meta,
        &Payload::Trade(Trade {
            px: 1,
            sz: 1,
            side: shardcast_proto::Side::Buy,
        }),
        0,
    )
    .unwrap();
    w.frame_or_lone_record().to_vec()
}

fn append(ring: &Ring, seq: u64) {
    let f = frame(seq);
    let (first, t) = frame_first(&f);
    ring.append(&f, first, first, t);
}

/// Replies to `id` until the final one: (frames, final).
fn answer(d: &zmq::Socket, id: u64) -> (usize, Reply) {
    let mut frames = 0;
    loop {
        let parts = d.recv_multipart(0).expect("a reply within the timeout");
        let r = Reply::decode(&parts[0]).unwrap();
        assert_eq!(r.request_id, id);
        if r.is_final() {
            return (frames, r);
        }
        frames += usize::from(r.count);
    }
}

#[test]
fn a_request_waits_for_records_not_sent_yet_and_ends_partial_past_wait_ms() {
    let dir = tempfile::tempdir().unwrap();
    let ep = format!("ipc://{}/rt", dir.path().display());
    let cfg = Retransmit {
        bind: ep.clone(),
        depth: 100,
        depth_rule: "test".into(),
        ring_bytes: 100 * 80,
        index_bytes: 0,
        total_bytes: 0,
        linger: Duration::ZERO,
        peer_requests_per_sec: 100,
        peer_bytes_per_sec: 1 << 20,
        max_peers: 4,
    };
    let ring = Arc::new(Ring::new(cfg.depth, cfg.ring_bytes));
    for s in 1..=10 {
        append(&ring, s);
    }
    let server = Server::bind(&cfg, vec![Arc::clone(&ring)], 1, 9).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let t = {
        let (stop, counters) = (Arc::clone(&stop), Arc::clone(&counters));
        std::thread::spawn(move || server.run(&stop, &counters))
    };
    let ctx = zmq::Context::new();
    let d = ctx.socket(zmq::DEALER).unwrap();
    d.set_rcvtimeo(30_000).unwrap();
    d.set_linger(0).unwrap();
    d.connect(&ep).unwrap();
    let req = |id, from, to, wait_ms| Request {
        key: SourceKey {
            publisher_id: 1,
            stream_id: 0,
        },
        wait_ms,
        session: 0,
        from_seq: from,
        to_seq: to,
        request_id: id,
    };
    // 5..=15 while only 1..=10 are sent: it waits (up to 30 s) for 11..=15.
    d.send(&req(1, 5, 15, 30_000).encode()[..], 0).unwrap();
    // The first reply (frames 5..=10) says the request is in progress.
    let first = d.recv_multipart(0).unwrap();
    let r = Reply::decode(&first[0]).unwrap();
    assert_eq!((r.status, r.a, r.b, r.session), (Status::Data, 5, 10, 9));
    for s in 11..=15 {
        append(&ring, s);
    }
    let (frames, fin) = answer(&d, 1);
    assert!(frames >= 5);
    assert_eq!((fin.status, fin.a, fin.b, fin.c), (Status::Done, 15, 11, 0));
    // 16..=20 never come: PARTIAL once wait_ms has passed, nothing sent.
    d.send(&req(2, 16, 20, 20).encode()[..], 0).unwrap();
    let (frames, fin) = answer(&d, 2);
    assert_eq!((frames, fin.status, fin.b), (0, Status::Partial, 0));
    // The stream ends: a request past its end is PARTIAL at once.
    ring.close();
    d.send(&req(3, 16, 20, 60_000).encode()[..], 0).unwrap();
    let (_, fin) = answer(&d, 3);
    assert_eq!(fin.status, Status::Partial);
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap().unwrap();
    assert_eq!(counters.requests.load(Ordering::Relaxed), 3);
    assert_eq!(counters.done.load(Ordering::Relaxed), 1);
    assert_eq!(counters.partial.load(Ordering::Relaxed), 2);
}
