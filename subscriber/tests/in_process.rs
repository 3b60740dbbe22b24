//! The subscriber library driven in-process, against a publisher made of a
//! raw libzmq XPUB in this test: `run` must end at end-of-stream and leave
//! no thread (agents, libzmq I/O and reaper threads) behind. Alone in its
//! test binary, so no other test's threads come and go meanwhile.

use clap::Parser;
use shardcast_agent::signals::StopSignal;
use shardcast_proto::wire::{self, Payload, Quote, RecordMeta, StreamChecksum, Symbol};
use shardcast_subscriber::{cli::Flags, config::Config, run};
use std::time::{Duration, Instant};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn record(seq: u64, payload: Payload) -> Vec<u8> {
    let now = shardcast_agent::clock::now_ns();
    let meta = RecordMeta {
        symbol: if seq == 0 || matches!(payload, Payload::EndOfStream { .. }) {
            Symbol::CONTROL
        } else {
            Symbol::new("AAA").unwrap()
        },
        publisher_id: 9,
        stream_id: 0,
        session: 1,
        seq,
        send_ts_ns: now,
        intended_ts_ns: now,
        sym_seq: 0,
    };
    let mut buf = vec![0u8; 128];
    let n = wire::encode(&mut buf, &meta, &payload, 0).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn run_ends_at_end_of_stream_and_leaves_no_thread_behind() {
    let before = threads();
    let ctx = zmq::Context::new();
    let xpub = ctx.socket(zmq::XPUB).unwrap();
    xpub.set_linger(1000).unwrap();
    xpub.set_rcvtimeo(100).unwrap();
    xpub.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = xpub.get_last_endpoint().unwrap().unwrap();
    let publisher = std::thread::spawn(move || {
        // The handshake: the subscriber's control-topic subscription.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no subscriber within 30 s");
            if let Ok(m) = xpub.recv_bytes(0) {
                if m == [1, 0] {
                    break;
                }
            }
        }
        let mut sum = StreamChecksum::default();
        let q = Quote {
            bid_px: 10,
            ask_px: 11,
            bid_sz: 1,
            ask_sz: 1,
        };
        for seq in 1..=100 {
            let r = record(seq, Payload::Quote(q));
            sum.add(wire::digest(&r));
            xpub.send(&r[..], 0).unwrap();
        }
        let eos = record(
            100,
            Payload::EndOfStream {
                last_seq: 100,
                checksum: sum.0,
            },
        );
        // Until the subscriber leaves (it unsubscribes once it has it).
        loop {
            xpub.send(&eos[..], 0).unwrap();
            if let Ok(m) = xpub.recv_bytes(0) {
                if m == [0, 0] {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the subscriber never left");
        }
    });
    let flags = Flags::parse_from([
        "shardcast-sub",
        "--connect",
        &endpoint,
        "--work",
        "checksum",
        "--duration",
        "30",
    ]);
    let cfg = Config::resolve(&flags).unwrap();
    let outcome = run(&cfg, &StopSignal::manual()).unwrap();
    publisher.join().unwrap();
    drop(ctx);
    let r = &outcome.report;
    assert_eq!(outcome.exit_code, 0, "{}", r.summary());
    assert_eq!(r.end_reason.name(), "end-of-stream");
    assert_eq!((r.counters.received, r.counters.lost), (100, 0));
    assert!(r.streams_complete);
    assert_eq!(threads(), before, "threads left behind by run");
}
