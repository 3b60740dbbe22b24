//! NASDAQ TotalView-ITCH 5.0: framing and type dispatch (issue 12's target:
//! at least 50 M messages/s on one core), and order-by-order books. Run with
//! `cargo bench -p shardcast-bench --bench itch`; throughput is reported
//! in messages (elements) per second.
//!
//! The input is a generated day (`shardcast-itchgen`, 1 M messages, 100
//! symbols, ~31 MB): larger than the caches, like a day file streamed
//! from disk.

// criterion_group! and criterion_main! generate undocumented functions.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shardcast_itchgen::{Config, Generator};
use shardcast_proto::itch::{self, Check, FileFramer, Frame, Framer};
use shardcast_workers::itch_book::ItchBooks;

const MESSAGES: u64 = 1_000_000;

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

/// What the publisher does per message: frame it, classify it against the
/// type table, and read what routing needs (the locate code and the
/// timestamp), counting by type.
#[inline]
fn dispatch(frame: Frame<'_>, by_type: &mut [u64; 256]) -> u64 {
    match frame {
        Frame::Message(m) => match itch::check(m) {
            Check::Ok(k) => {
                by_type[usize::from(k.byte())] += 1;
                u64::from(itch::stock_locate(m).unwrap_or(0)) ^ itch::timestamp(m).unwrap_or(0)
            }
            Check::Unknown(t) => {
                by_type[usize::from(t)] += 1;
                0
            }
            Check::Malformed | Check::Truncated => 0,
        },
        Frame::Truncated(_) => 0,
    }
}

fn framing(c: &mut Criterion) {
    let buf = day();
    let mut g = c.benchmark_group("itch");
    g.throughput(Throughput::Elements(MESSAGES));
    g.sample_size(20);
    g.bench_function("frame only (1M msgs)", |b| {
        b.iter(|| Framer::new(black_box(&buf)).count())
    });
    g.bench_function("frame + check + dispatch (1M msgs)", |b| {
        b.iter(|| {
            let mut by_type = [0u64; 256];
            let mut acc = 0u64;
            for f in Framer::new(black_box(&buf)) {
                acc ^= dispatch(f, &mut by_type);
            }
            (acc, by_type[usize::from(b'A')])
        })
    });
    g.bench_function("file framer from a reader + dispatch (1M msgs)", |b| {
        b.iter(|| {
            let mut by_type = [0u64; 256];
            let mut acc = 0u64;
            let mut ff = FileFramer::new(black_box(&buf[..]));
            while let Ok(Some(f)) = ff.next_frame() {
                acc ^= dispatch(f, &mut by_type);
            }
            (acc, by_type[usize::from(b'A')])
        })
    });
    g.bench_function("frame + view (1M msgs)", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for f in Framer::new(black_box(&buf)) {
                if let Frame::Message(m) = f {
                    if let Ok(itch::View::AddOrder(a)) = itch::view(m) {
                        acc = acc.wrapping_add(u64::from(a.price()));
                    }
                }
            }
            acc
        })
    });
    g.finish();
}

fn books(c: &mut Criterion) {
    let buf = day();
    let msgs: Vec<&[u8]> = Framer::new(&buf)
        .filter_map(|f| match f {
            Frame::Message(m) => Some(m),
            Frame::Truncated(_) => None,
        })
        .collect();
    let mut g = c.benchmark_group("itch");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.sample_size(10);
    g.bench_function("ItchBooks::apply, a whole day (1M msgs)", |b| {
        b.iter_batched(
            ItchBooks::new,
            |mut books| {
                for m in &msgs {
                    books.apply(m);
                }
                books
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, framing, books);
criterion_main!(benches);
