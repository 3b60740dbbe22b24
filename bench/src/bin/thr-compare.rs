//! One stream, flat out, N messages of B bytes over TCP loopback: raw libzmq
//! PUB/SUB (`raw-zmq`) against shardcast (`shardcast-pub` -> `shardcast-sub`,
//! one worker doing no work) and shardcast with batching, in one run,
//! alternating, so the ratios compare like with like on a noisy machine.
//!
//! Throughput is measured where it matters, at the subscriber: messages
//! received over the time from the first to the last. An XPUB sending flat out
//! drops what a slower subscriber cannot take, so losses are shown too.
//!
//! Usage: `thr-compare [--runs 3] [--count 1000000] [--size 100] [--batch 64]`
//! (the sibling binaries must be built: see scripts/thr-compare).

use clap::Parser;
use shardcast_bench::{finish, median, read_json, sibling, spawn, throughput_sub_args, word_after};
use std::path::PathBuf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Compare shardcast's single-stream throughput with raw libzmq PUB/SUB.
#[derive(Parser)]
struct Flags {
    /// Rounds (each runs every variant once).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Messages per run.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Message size, bytes.
    #[arg(long, default_value_t = 100)]
    size: u64,
    /// Records per frame in the batched variant.
    #[arg(long, default_value_t = 64)]
    batch: u32,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

struct Sample {
    rate: f64,
    received: u64,
    lost: u64,
}

fn raw(f: &Flags) -> Sample {
    let bin = sibling("raw-zmq");
    let mut p = spawn(
        &bin,
        &[
            "pub".into(),
            "--bind".into(),
            "tcp://127.0.0.1:*".into(),
            "--count".into(),
            f.count.to_string(),
            "--size".into(),
            f.size.to_string(),
        ],
    );
    let ep = word_after(&mut p, "bound ");
    let s = spawn(&bin, &["sub".into(), "--connect".into(), ep]);
    let (out, code) = finish(s);
    assert_eq!(code, Some(0), "raw-zmq sub failed");
    assert_eq!(finish(p).1, Some(0), "raw-zmq pub failed");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("raw-zmq JSON");
    Sample {
        rate: v["msgs_per_sec"].as_f64().unwrap_or(0.0),
        received: v["received"].as_u64().unwrap_or(0),
        lost: v["lost"].as_u64().unwrap_or(0),
    }
}

fn shardcast(f: &Flags, batch: u32) -> Sample {
    let dir = std::env::temp_dir().join(format!("thr-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let report = dir.join("sub.json");
    let mut p = spawn(
        &sibling("shardcast-pub"),
        &[
            "--bind",
            "tcp://127.0.0.1:*",
            "--rate",
            "0",
            "--count",
            &f.count.to_string(),
            "--size",
            &f.size.to_string(),
            "--batch",
            &batch.to_string(),
            "--wait-subscribers",
            "1",
        ]
        .map(String::from),
    );
    let ep = word_after(&mut p, "stream 0 bound ");
    let s = spawn(
        &sibling("shardcast-sub"),
        &throughput_sub_args(&ep, &report),
    );
    assert_eq!(finish(s).1, Some(0), "shardcast-sub failed");
    assert_eq!(finish(p).1, Some(0), "shardcast-pub failed");
    let v = read_json(&report);
    Sample {
        rate: v["msgs_per_sec"].as_f64().unwrap_or(0.0),
        received: v["received"].as_u64().unwrap_or(0),
        lost: v["lost"].as_u64().unwrap_or(0),
    }
}

fn main() {
    let f = Flags::parse();
    println!(
        "one stream, flat out, {} x {} B messages over TCP loopback, {} rounds",
        f.count, f.size, f.runs
    );
    println!("| round | raw libzmq msg/s (lost) | shardcast msg/s (lost) | ratio | shardcast --batch {} msg/s (lost) | ratio |", f.batch);
    println!("|---|---|---|---|---|---|");
    let (mut r_raw, mut r_one, mut r_batch) = (Vec::new(), Vec::new(), Vec::new());
    let mut rows = Vec::new();
    for round in 1..=f.runs {
        let a = raw(&f);
        let b = shardcast(&f, 1);
        let c = shardcast(&f, f.batch);
        println!(
            "| {round} | {:.0} ({}) | {:.0} ({}) | {:.2} | {:.0} ({}) | {:.2} |",
            a.rate,
            a.lost,
            b.rate,
            b.lost,
            b.rate / a.rate,
            c.rate,
            c.lost,
            c.rate / a.rate
        );
        rows.push(serde_json::json!({
            "round": round,
            "raw": {"msgs_per_sec": a.rate, "received": a.received, "lost": a.lost},
            "shardcast": {"msgs_per_sec": b.rate, "received": b.received, "lost": b.lost},
            "shardcast_batch": {"msgs_per_sec": c.rate, "received": c.received, "lost": c.lost},
        }));
        r_raw.push(a.rate);
        r_one.push(b.rate / a.rate);
        r_batch.push(c.rate / a.rate);
    }
    let (m_raw, m_one, m_batch) = (median(r_raw), median(r_one), median(r_batch));
    println!(
        "\nmedian: raw libzmq {m_raw:.0} msg/s; shardcast {m_one:.2} x raw; shardcast --batch {} {m_batch:.2} x raw",
        f.batch
    );
    if let Some(path) = &f.json {
        let v = serde_json::json!({
            "count": f.count, "size": f.size, "batch": f.batch, "rounds": rows,
            "median": {"raw_msgs_per_sec": m_raw, "shardcast_ratio": m_one, "shardcast_batch_ratio": m_batch},
        });
        shardcast_bench::write_file(path, serde_json::to_vec_pretty(&v).expect("json"))
            .expect("write --json");
    }
}
