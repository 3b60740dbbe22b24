//! Micro-benchmarks of what sits on the per-message path. Run with
//! `cargo bench -p shardcast-bench`; CI keeps them compiling
//! (`cargo bench --no-run`).

// criterion_group! and criterion_main! generate undocumented functions.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shardcast_agent::stats;
use shardcast_agent::zmqx::Msg;
use shardcast_proto::feed::{symbol_name, Feed};
use shardcast_proto::shard::{stream_for, worker_for};
use shardcast_proto::wire::{self, Frame, Payload, Quote, RecordMeta, Symbol};

fn meta(seq: u64) -> RecordMeta {
    RecordMeta {
        symbol: Symbol::new("AAPL").unwrap(),
        publisher_id: 1,
        stream_id: 0,
        session: 7,
        seq,
        send_ts_ns: 1_700_000_000_000_000_000,
        intended_ts_ns: 1_700_000_000_000_000_000,
        sym_seq: 0,
    }
}

const QUOTE: Payload = Payload::Quote(Quote {
    bid_px: 1_000_000,
    ask_px: 1_000_100,
    bid_sz: 300,
    ask_sz: 500,
});

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    let mut buf = [0u8; 128];
    g.bench_function("encode quote 100 B", |b| {
        let mut seq = 0;
        b.iter(|| {
            seq += 1;
            wire::encode(&mut buf, &meta(seq), black_box(&QUOTE), 100).unwrap()
        })
    });
    let n = wire::encode(&mut buf, &meta(1), &QUOTE, 100).unwrap();
    let frame = buf[..n].to_vec();
    g.bench_function("parse + read quote 100 B", |b| {
        b.iter(|| {
            let f = Frame::parse(black_box(&frame)).unwrap();
            let r = f.records().next().unwrap();
            (r.seq(), r.payload())
        })
    });
    g.bench_function("digest 100 B (xxh3)", |b| {
        b.iter(|| wire::digest(black_box(&frame)))
    });
    // A batch of 64: the per-record cost when frames carry many records.
    let mut batch = vec![0u8; wire::BATCH_HEADER_LEN + 64 * 100];
    let mut off = wire::BATCH_HEADER_LEN;
    for s in 1..=64 {
        off += wire::encode(&mut batch[off..], &meta(s), &QUOTE, 100).unwrap();
    }
    wire::encode_batch_header(&mut batch, 64).unwrap();
    g.throughput(Throughput::Elements(64));
    g.bench_function("parse batch of 64, read every record", |b| {
        b.iter(|| {
            let f = Frame::parse(black_box(&batch)).unwrap();
            f.records().map(|r| r.seq()).sum::<u64>()
        })
    });
    g.finish();
}

fn sharding(c: &mut Criterion) {
    let syms: Vec<Symbol> = (0..1024).map(symbol_name).collect();
    let mut g = c.benchmark_group("sharding");
    g.throughput(Throughput::Elements(syms.len() as u64));
    g.bench_function("stream_for x1024", |b| {
        b.iter(|| syms.iter().map(|s| stream_for(s, 4)).sum::<usize>())
    });
    g.bench_function("worker_for x1024", |b| {
        b.iter(|| syms.iter().map(|s| worker_for(s, 6)).sum::<usize>())
    });
    g.finish();
    let mut feed = Feed::new(1, 500).unwrap();
    c.bench_function("feed next_event", |b| b.iter(|| feed.next_event()));
}

/// The fan-out hop: one 100-byte frame from a shard thread to a worker
/// thread, as shardcast does it (inproc PUSH/PULL, the Guide's pattern)
/// against a bounded crossbeam channel carrying the same bytes.
fn fanout_hop(c: &mut Criterion) {
    const N: u64 = 10_000;
    let mut g = c.benchmark_group("fanout hop (100 B, one producer, one consumer)");
    g.throughput(Throughput::Elements(N));
    g.sample_size(20);
    let ctx = zmq::Context::new();
    let mut round = 0u64;
    g.bench_function("inproc PUSH/PULL", |b| {
        b.iter_batched(
            || {
                // A fresh endpoint each round: closing is asynchronous in
                // libzmq, so the last round's name may still be bound.
                round += 1;
                let ep = format!("inproc://bench-hop-{round}");
                let mut push = ctx.socket(zmq::PUSH).unwrap();
                let pull = ctx.socket(zmq::PULL).unwrap();
                push.set_sndhwm(10_000).unwrap();
                pull.set_rcvhwm(10_000).unwrap();
                pull.bind(&ep).unwrap();
                push.connect(&ep).unwrap();
                let consumer = std::thread::spawn(move || {
                    let mut pull = pull;
                    let mut m = Msg::new();
                    for _ in 0..N {
                        m.recv(&mut pull, 0).unwrap();
                    }
                });
                let msg = [7u8; 100];
                (
                    move || {
                        for _ in 0..N {
                            Msg::from_slice(&msg).unwrap().send(&mut push, 0).unwrap();
                        }
                    },
                    consumer,
                )
            },
            |(mut produce, consumer)| {
                produce();
                consumer.join().unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("crossbeam bounded channel", |b| {
        b.iter_batched(
            || {
                let (tx, rx) = crossbeam::channel::bounded::<[u8; 100]>(10_000);
                let consumer = std::thread::spawn(move || {
                    for _ in 0..N {
                        black_box(rx.recv().unwrap());
                    }
                });
                (tx, consumer)
            },
            |(tx, consumer)| {
                for _ in 0..N {
                    tx.send([7u8; 100]).unwrap();
                }
                consumer.join().unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn histogram(c: &mut Criterion) {
    let mut h = stats::new_histogram();
    let mut v = 1u64;
    c.bench_function("histogram record (1 ns..60 s, 3 digits)", |b| {
        b.iter(|| {
            v = v
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            stats::record(&mut h, black_box(v >> 40));
        })
    });
}

/// The publisher's frame path end to end over TCP loopback, per record:
/// encode into the stream's `BatchWriter`, send with `ZMQ_XPUB_NODROP`
/// (`--when-full block`), receive and parse at a SUB. One record per frame
/// (`--batch 1`) against frames of 64 (what `--batch auto` sends when the
/// stream is behind or flat out): the per-frame costs auto batching saves.
fn publisher_frames(c: &mut Criterion) {
    const N: u64 = 64_000;
    let mut g =
        c.benchmark_group("publisher frames (100 B records, XPUB NODROP -> SUB, tcp loopback)");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    let ctx = zmq::Context::new();
    for per_frame in [1usize, 64] {
        let name = if per_frame == 1 {
            "--batch 1".to_string()
        } else {
            format!("{per_frame} records a frame (auto, behind)")
        };
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut xpub = ctx.socket(zmq::XPUB).unwrap();
                    shardcast_agent::zmqx::set_int_option(
                        &mut xpub,
                        shardcast_agent::zmqx::XPUB_NODROP,
                        1,
                    )
                    .unwrap();
                    xpub.set_sndhwm(1000).unwrap();
                    xpub.bind("tcp://127.0.0.1:*").unwrap();
                    let ep = xpub.get_last_endpoint().unwrap().unwrap();
                    let sub = ctx.socket(zmq::SUB).unwrap();
                    sub.set_rcvhwm(1000).unwrap();
                    sub.set_subscribe(b"").unwrap();
                    sub.connect(&ep).unwrap();
                    // The subscription is the handshake: nothing is sent
                    // before the SUB is there.
                    xpub.recv_bytes(0).unwrap();
                    let consumer = std::thread::spawn(move || {
                        let mut sub = sub;
                        let mut m = Msg::new();
                        let mut got = 0u64;
                        while got < N {
                            m.recv(&mut sub, 0).unwrap();
                            got += Frame::parse(m.bytes()).unwrap().len() as u64;
                        }
                        sub
                    });
                    (xpub, consumer)
                },
                |(mut xpub, consumer)| {
                    let mut out = wire::BatchWriter::new(
                        per_frame > 1,
                        wire::BATCH_HEADER_LEN + per_frame * 100,
                    );
                    for seq in 1..=N {
                        out.encode(&meta(seq), &QUOTE, 100).unwrap();
                        if out.count() >= per_frame {
                            Msg::from_slice(out.frame_or_lone_record())
                                .unwrap()
                                .send(&mut xpub, 0)
                                .unwrap();
                            out.clear();
                        }
                    }
                    drop(consumer.join().unwrap());
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    codec,
    sharding,
    fanout_hop,
    histogram,
    publisher_frames
);
criterion_main!(benches);
