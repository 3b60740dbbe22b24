//! The publisher's retransmission service (`--retransmit-bind`) and its
//! per-symbol sequences, with real processes: a raw SUB takes the stream,
//! raw DEALER clients ask for ranges while the publisher holds its end
//! phase for that SUB (no sleeps: the SUB's end-of-stream is the handshake,
//! and closing the SUB lets the publisher end).

use crate::support::*;
use shardcast_proto::range::{BadRequest, Reply, Request, Status, REQUEST_LEN};
use shardcast_proto::seq::SourceKey;
use shardcast_proto::wire::{Frame, Kind};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

const RECORDS: u64 = 5000;
const DEPTH: u64 = 1000;

/// What came back for one request: the DATA messages' `(time, frame)`
/// pairs, their headers, and the final reply.
type Answer = (Vec<(u64, Vec<u8>)>, Vec<Reply>, Reply);

/// Every reply to request `id` on `dealer`, through its final one.
fn collect(dealer: &zmq::Socket, id: u64) -> Answer {
    let deadline = Instant::now() + LINE_TIMEOUT;
    let (mut frames, mut data) = (Vec::new(), Vec::new());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "request {id}: no final reply in time");
        if dealer
            .poll(zmq::POLLIN, left.as_millis() as i64)
            .unwrap_or(0)
            == 0
        {
            continue;
        }
        let parts = dealer.recv_multipart(0).unwrap();
        let r = Reply::decode(&parts[0]).expect("a reply header");
        if r.request_id != id {
            continue;
        }
        if !r.is_final() {
            let n = usize::from(r.count);
            assert_eq!(parts.len(), n + 2, "{r:?}");
            assert_eq!(parts[1].len(), 8 * n);
            for (i, f) in parts[2..].iter().enumerate() {
                let t = u64::from_le_bytes(parts[1][8 * i..8 * i + 8].try_into().unwrap());
                frames.push((t, f.clone()));
            }
            data.push(r);
            continue;
        }
        return (frames, data, r);
    }
}

fn dealer(ctx: &zmq::Context, ep: &str) -> zmq::Socket {
    let d = ctx.socket(zmq::DEALER).unwrap();
    d.set_linger(0).unwrap();
    d.set_sndtimeo(10_000).unwrap();
    d.connect(ep).unwrap();
    d
}

fn ask(d: &zmq::Socket, req: &Request) {
    d.send(&req.encode()[..], 0).unwrap();
}

#[test]
fn ranges_come_back_as_sent_older_ones_say_where_the_ring_starts_and_a_flood_is_refused() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("pub.json");
    let publ = start_pub(
        1,
        &[
            "--retransmit-bind",
            "tcp://127.0.0.1:*",
            "--retransmit-depth",
            &DEPTH.to_string(),
            "--retransmit-linger-ms",
            "0",
            "--retransmit-peer-requests-per-sec",
            "200",
            "--rate",
            "0",
            "--count",
            &RECORDS.to_string(),
            "--symbols",
            "50",
            "--wait-subscribers",
            "1",
            "--wait-timeout",
            "60",
            // The SUB below holds the end phase open while the clients ask.
            "--eos-timeout-ms",
            "60000",
            "--report-json",
            &path_str(&report),
        ],
    );
    let line = publ.proc.wait_line("retransmit: serving on ");
    let rt = line
        .split("serving on ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .expect("endpoint")
        .to_string();
    let ctx = zmq::Context::new();
    // A plain SUB, counted by --wait-subscribers (the control topic).
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.set_rcvhwm(0).unwrap();
    sub.set_rcvtimeo(30_000).unwrap();
    sub.set_subscribe(b"").unwrap();
    sub.set_subscribe(b"\0").unwrap();
    sub.connect(&publ.endpoints[0]).unwrap();
    // Every data frame as the SUB got it, by its first seq; the session.
    let mut got: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut sym_last: HashMap<u64, u32> = HashMap::new();
    let mut next = 1;
    'stream: loop {
        let msg = sub.recv_bytes(0).expect("the stream, then end-of-stream");
        let frame = Frame::parse(&msg).unwrap();
        let mut first = None;
        for r in frame.records() {
            if r.kind() == Kind::EndOfStream {
                break 'stream;
            }
            if !r.kind().is_data() {
                continue;
            }
            assert_eq!(r.seq(), next, "the SUB lost nothing");
            next += 1;
            first.get_or_insert(r.seq());
            // Per-symbol sequences: 1, 2, 3, ... per symbol.
            let n = sym_last.entry(r.symbol().as_u64()).or_insert(0);
            assert_eq!(r.sym_seq(), *n + 1, "{}", r.symbol().as_str());
            *n += 1;
        }
        if let Some(f) = first {
            got.insert(f, msg);
        }
    }
    assert_eq!(next, RECORDS + 1);
    let session = Frame::parse(got.values().next().unwrap())
        .unwrap()
        .records()
        .next()
        .unwrap()
        .session();
    let key = SourceKey {
        publisher_id: 1,
        stream_id: 0,
    };
    let req = |id: u64, from: u64, to: u64| Request {
        key,
        wait_ms: 0,
        session: 0,
        from_seq: from,
        to_seq: to,
        request_id: id,
    };
    let client = dealer(&ctx, &rt);

    // 1. Inside the ring: whole frames, byte for byte what the SUB got,
    // their records covering exactly the range.
    ask(&client, &req(1, 4500, 4600));
    let (frames, data, fin) = collect(&client, 1);
    assert_eq!(fin.status, Status::Done, "{fin:?}");
    assert_eq!((fin.a, fin.b, fin.c, fin.session), (4600, 101, 0, session));
    assert_eq!(data.first().unwrap().a, 4500);
    let mut seqs = Vec::new();
    for (t, f) in &frames {
        let parsed = Frame::parse(f).unwrap();
        let first = parsed.records().next().unwrap();
        assert_eq!(
            got.get(&first.seq()),
            Some(f),
            "the frame of seq {} as the SUB got it",
            first.seq()
        );
        assert_eq!(*t, first.send_ts_ns(), "its time is its send time");
        seqs.extend(
            parsed
                .records()
                .map(|r| r.seq())
                .filter(|s| (4500..=4600).contains(s)),
        );
    }
    assert_eq!(seqs, (4500..=4600).collect::<Vec<_>>());

    // 2. Through the last record (to_seq 0), in the current session named.
    ask(
        &client,
        &Request {
            session,
            ..req(2, 4990, 0)
        },
    );
    let (_, _, fin) = collect(&client, 2);
    assert_eq!((fin.status, fin.a, fin.b), (Status::Done, RECORDS, 11));

    // 3. Before the ring: NOT_AVAILABLE, and where the ring starts; from
    // there it serves.
    ask(&client, &req(3, 1, 10));
    let (frames, _, fin) = collect(&client, 3);
    assert_eq!(fin.status, Status::NotAvailable, "{fin:?}");
    assert!(frames.is_empty());
    let oldest = fin.a;
    assert!(
        oldest > RECORDS - DEPTH && oldest <= RECORDS - DEPTH + 64,
        "the ring holds the last {DEPTH} records in whole frames: starts at {oldest}"
    );
    ask(&client, &req(4, oldest, oldest + 5));
    let (_, _, fin) = collect(&client, 4);
    assert_eq!((fin.status, fin.a, fin.c), (Status::Done, oldest + 5, 0));

    // 4. Another session, stream or publisher: not available (a = 0).
    for (id, r) in [
        (
            5,
            Request {
                session: session + 1,
                ..req(5, 4500, 4501)
            },
        ),
        (
            6,
            Request {
                key: SourceKey {
                    stream_id: 3,
                    ..key
                },
                ..req(6, 4500, 4501)
            },
        ),
        (
            7,
            Request {
                key: SourceKey {
                    publisher_id: 2,
                    ..key
                },
                ..req(7, 4500, 4501)
            },
        ),
    ] {
        ask(&client, &r);
        let (_, _, fin) = collect(&client, id);
        assert_eq!((fin.status, fin.a), (Status::NotAvailable, 0), "{r:?}");
    }

    // 5. Past the end of a stream that has ended: PARTIAL at once, nothing.
    ask(
        &client,
        &Request {
            wait_ms: 50,
            ..req(8, RECORDS + 1, RECORDS + 10)
        },
    );
    let (frames, _, fin) = collect(&client, 8);
    assert_eq!((fin.status, fin.b), (Status::Partial, 0));
    assert!(frames.is_empty());

    // 6. Bad requests say why.
    client.send(&[0u8; REQUEST_LEN - 1][..], 0).unwrap();
    let (_, _, fin) = collect(&client, 0);
    assert_eq!(
        (fin.status, fin.c),
        (Status::BadRequest, BadRequest::Malformed as u64)
    );
    ask(&client, &req(9, 0, 5));
    let (_, _, fin) = collect(&client, 9);
    assert_eq!(
        (fin.status, fin.c),
        (Status::BadRequest, BadRequest::Range as u64)
    );

    // 7. A flood from one peer (thousands of requests, never reading an
    // answer) while another asks: the other is served, the flood refused.
    let flood = dealer(&ctx, &rt);
    let flood_n = 3000u64;
    for i in 0..flood_n {
        ask(&flood, &req(100_000 + i, 4900, 4910));
    }
    let other = dealer(&ctx, &rt);
    ask(&other, &req(10, 4700, 4800));
    let (frames, _, fin) = collect(&other, 10);
    assert_eq!((fin.status, fin.a, fin.b), (Status::Done, 4800, 101));
    assert!(!frames.is_empty());
    // The flooder's answers: it reads them now, past the refusals too.
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && refused == 0 {
        if flood.poll(zmq::POLLIN, 1000).unwrap_or(0) > 0 {
            let parts = flood.recv_multipart(0).unwrap();
            if Reply::decode(&parts[0]).is_some_and(|r| r.status == Status::Refused) {
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the flooder sees REFUSED");

    // Let the publisher end: the SUB leaves, the end phase is over.
    drop(sub);
    let (status, stderr, _) = publ.proc.wait();
    assert!(status.success(), "{stderr}");
    let v = read_json(&report);
    let r = &v["retransmit"];
    assert_eq!(r["endpoint"], rt.as_str());
    assert_eq!(u(r, "depth"), DEPTH);
    // How much of the flood reached the server before the publisher ended
    // depends on the queues (the DEALER and ROUTER HWMs hold it back), so
    // the counts are bounded by what did arrive: most of it refused.
    assert!(u(r, "requests") >= u(r, "refused") + 10, "{r}");
    assert!(
        u(r, "refused") >= 500,
        "a 200/s budget cannot take {flood_n} requests at once: {r}"
    );
    assert!(u(r, "served_records") >= 101 + 11 + 6 + 101, "{r}");
    assert!(u(r, "served_frames") > 0, "{r}");
    assert!(u(r, "not_available") >= 4, "{r}");
    assert_eq!(u(r, "bad_requests"), 2, "{r}");
    assert!(u(r, "peers") >= 3, "{r}");
    for k in [
        "busy",
        "partial",
        "done",
        "gone",
        "abandoned",
        "replies_dropped",
    ] {
        assert!(r.get(k).is_some(), "{k}");
    }
    let ring = &v["streams"][0]["retransmit"];
    assert_eq!(u(ring, "last_seq"), RECORDS);
    assert_eq!(u(ring, "first_seq"), oldest);
    assert!(u(ring, "records") <= DEPTH && u(ring, "records") > DEPTH - 64);
    eprintln!(
        "retransmit: ring {}..={} ({} records, {} bytes); requests {}, refused {}, served {} records in {} frames",
        u(ring, "first_seq"),
        u(ring, "last_seq"),
        u(ring, "records"),
        u(ring, "bytes"),
        u(r, "requests"),
        u(r, "refused"),
        u(r, "served_records"),
        u(r, "served_frames")
    );
}

/// Every data frame `sub` gets until end-of-stream, by its first seq, and
/// the last seq end-of-stream names.
fn frames_until_eos(sub: &zmq::Socket, line: &str) -> (BTreeMap<u64, Vec<u8>>, u64) {
    let mut got = BTreeMap::new();
    loop {
        let msg = sub
            .recv_bytes(0)
            .unwrap_or_else(|e| panic!("line {line}: no end-of-stream: {e}"));
        let frame = Frame::parse(&msg).unwrap();
        let first = frame.records().next().unwrap();
        match first.kind() {
            Kind::EndOfStream => return (got, first.seq()),
            k if k.is_data() => {
                got.insert(first.seq(), msg);
            }
            _ => {}
        }
    }
}

#[test]
fn line_b_carries_the_same_frames_as_line_a() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("pub.json");
    let publ = start_pub(
        1,
        &[
            "--bind-b",
            "tcp://127.0.0.1:*",
            "--rate",
            "20000",
            "--count",
            "4000",
            "--wait-subscribers",
            "1",
            "--wait-timeout",
            "60",
            "--eos-timeout-ms",
            "60000",
            "--report-json",
            &path_str(&report),
        ],
    );
    let line = publ.proc.wait_line("stream 0 line B bound ");
    let b_ep = line
        .split(" bound ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    let ctx = zmq::Context::new();
    let sub = |ep: &str| {
        let s = ctx.socket(zmq::SUB).unwrap();
        s.set_rcvhwm(0).unwrap();
        s.set_rcvtimeo(30_000).unwrap();
        s.set_subscribe(b"").unwrap();
        s.set_subscribe(b"\0").unwrap();
        s.connect(ep).unwrap();
        s
    };
    // B first: A's subscription is what starts the stream (--wait-subscribers
    // counts line A only), so B is normally there from the start; the test
    // needs only that what B has is A's.
    let sub_b = sub(&b_ep);
    let sub_a = sub(&publ.endpoints[0]);
    let (a, a_last) = frames_until_eos(&sub_a, "A");
    let (b, b_last) = frames_until_eos(&sub_b, "B");
    assert_eq!(
        (a_last, b_last),
        (4000, 4000),
        "end-of-stream on both lines"
    );
    assert!(!b.is_empty(), "line B carried data");
    for (first, frame) in &b {
        assert_eq!(
            a.get(first),
            Some(frame),
            "B's frame of seq {first} is A's, byte for byte"
        );
    }
    // From where B joined, it has every frame A has.
    let from = *b.keys().next().unwrap();
    assert_eq!(
        a.range(from..).map(|(k, _)| *k).collect::<Vec<_>>(),
        b.keys().copied().collect::<Vec<_>>()
    );
    drop((sub_a, sub_b));
    let (status, stderr, _) = publ.proc.wait();
    assert!(status.success(), "{stderr}");
    let v = read_json(&report);
    let lb = &v["streams"][0]["lines"]["b"];
    assert_eq!(lb["endpoint"], b_ep.as_str());
    assert_eq!(u(lb, "sent"), u(&v["streams"][0], "frames"), "{lb}");
    assert_eq!(u(lb, "records"), 4000);
    assert_eq!(u(lb, "dropped"), 0);
    assert!(u(lb, "control") >= 1, "end-of-stream went on line B");
    eprintln!(
        "A/B: line A {} frames, line B {} of them (from seq {from}), all byte-identical",
        a.len(),
        b.len()
    );
}
