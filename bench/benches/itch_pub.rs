//! The publisher's per-message work on an ITCH source (issue 12), each half
//! on one core: the reader thread's (frame, classify and count, look up the
//! locate code's stream, pack into that stream's block) and a stream
//! thread's (encode the ITCH record, digest it for the stream checksum,
//! batch it). Run with `cargo bench -p shardcast-bench --bench itch_pub`;
//! throughput is in messages (elements) per second.
//!
//! The input is a generated day (`shardcast-itchgen`, 1 M messages, 100
//! symbols), as in `benches/itch.rs`.

// criterion_group! and criterion_main! generate undocumented functions.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shardcast_itchgen::{Config, Generator};
use shardcast_proto::itch::{Frame, Framer};
use shardcast_proto::wire::{self, BatchWriter, RecordMeta, Symbol, BATCH_HEADER_LEN};
use shardcast_proto::wire::{StreamChecksum, ITCH_RECORD_MAX};
use shardcast_publisher::route::{push_entry, Entries, Route, Router, ENTRY_HEADER};

const MESSAGES: u64 = 1_000_000;
/// The reader's block size (`publisher/src/reader.rs`).
const BLOCK_BYTES: usize = 32 << 10;

fn day() -> Vec<u8> {
    let cfg = Config {
        messages: MESSAGES,
        symbols: 100,
        unknown_type: true,
        ..Config::default()
    };
    let mut g = Generator::new(&cfg);
    let mut buf = Vec::with_capacity(40 << 20);
    while g.step(&mut buf) {}
    buf
}

/// What the reader thread does with a whole day onto `streams` streams;
/// a full block is "handed over" by clearing it (the queue is measured by
/// the end-to-end run, not here).
fn read_and_route(buf: &[u8], streams: usize, blocks: &mut [Vec<u8>]) -> u64 {
    let mut r = Router::new(streams);
    let mut handed = 0u64;
    let mut pack = |block: &mut Vec<u8>, s: &Symbol, m: &[u8]| {
        if block.len() + ENTRY_HEADER + m.len() > BLOCK_BYTES {
            block.clear();
        }
        push_entry(block, s, m);
        handed += 1;
    };
    for f in Framer::new(buf) {
        let route = r.route(f);
        let Frame::Message(m) = f else { continue };
        match route {
            Route::One(k, s) => pack(&mut blocks[usize::from(k)], &s, m),
            Route::All => {
                for b in blocks.iter_mut() {
                    pack(b, &Symbol::MARKET_WIDE, m);
                }
            }
            Route::Skip => {}
        }
    }
    handed
}

fn reader(c: &mut Criterion) {
    let buf = day();
    let mut g = c.benchmark_group("itch_pub");
    g.throughput(Throughput::Elements(MESSAGES));
    g.sample_size(20);
    for streams in [1usize, 2] {
        let mut blocks = vec![Vec::with_capacity(BLOCK_BYTES); streams];
        g.bench_function(
            format!("reader: frame + route + pack, {streams} streams (1M msgs)"),
            |b| b.iter(|| read_and_route(black_box(&buf), streams, &mut blocks)),
        );
    }
    g.finish();
}

fn stream(c: &mut Criterion) {
    // Stream 0 of 2's share of the day, in blocks as the reader hands them.
    let buf = day();
    let mut r = Router::new(2);
    let mut blocks: Vec<Vec<u8>> = vec![Vec::with_capacity(BLOCK_BYTES)];
    let mut n = 0u64;
    for f in Framer::new(&buf) {
        let route = r.route(f);
        let Frame::Message(m) = f else { continue };
        let s = match route {
            Route::One(0, s) => s,
            Route::All => Symbol::MARKET_WIDE,
            _ => continue,
        };
        let last = blocks.last_mut().unwrap();
        if last.len() + ENTRY_HEADER + m.len() > BLOCK_BYTES {
            blocks.push(Vec::with_capacity(BLOCK_BYTES));
        }
        push_entry(blocks.last_mut().unwrap(), &s, m);
        n += 1;
    }
    let mut g = c.benchmark_group("itch_pub");
    g.throughput(Throughput::Elements(n));
    g.sample_size(20);
    // --batch auto at --speed max: frames of 64 records.
    let mut out = BatchWriter::new(true, BATCH_HEADER_LEN + 64 * ITCH_RECORD_MAX);
    g.bench_function(
        format!("stream: encode ITCH record + digest, batches of 64 ({n} msgs)"),
        |b| {
            b.iter(|| {
                let mut checksum = StreamChecksum::default();
                let mut seq = 0u64;
                for block in &blocks {
                    for (symbol, msg) in Entries::new(block) {
                        seq += 1;
                        let meta = RecordMeta {
                            symbol,
                            publisher_id: 1,
                            stream_id: 0,
                            session: 7,
                            seq,
                            send_ts_ns: seq,
                            intended_ts_ns: seq,
                            sym_seq: 0,
                        };
                        let rec = out.encode_itch(&meta, msg).expect("room for 64");
                        checksum.add(wire::digest(rec));
                        if out.count() == 64 {
                            black_box(out.frame());
                            out.clear();
                        }
                    }
                }
                out.clear();
                checksum
            })
        },
    );
    g.finish();
}

criterion_group!(benches, reader, stream);
criterion_main!(benches);
