//! The raw libzmq baseline: a plain XPUB -> SUB pair written with the `zmq`
//! crate and nothing else, so shardcast's figures have a same-machine,
//! same-run reference (like libzmq's local_thr/remote_thr, but PUB/SUB and
//! with percentiles-ready counts instead of one mean).
//!
//! `raw-zmq pub --bind EP --count N --size B [--rate R]` waits for one
//! subscription (XPUB, so no message is lost to the slow joiner), sends N
//! messages of B bytes, flat out or paced exactly like shardcast-pub
//! (message i due at t0 + i/R, sleeping until then), then repeats an `END`
//! frame until the subscriber leaves. Bytes 0..8 carry the sequence number,
//! 8..16 the intended send time (CLOCK_REALTIME ns; the send time when flat
//! out). `raw-zmq sub --connect EP` counts, checks gaps, times each message
//! from its intended send time (coordinated-omission-correct, like
//! shardcast's end_to_end) and prints JSON: received, lost, elapsed_s (first
//! to last message), msgs_per_sec, latency_ns percentiles.

use clap::{Parser, Subcommand};
use shardcast_agent::clock::now_ns;
use shardcast_agent::stats;
use std::time::{Duration, Instant};

// mimalloc, as in every shardcast binary, so allocation is not a difference.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Raw libzmq PUB/SUB throughput baseline.
#[derive(Parser)]
struct Flags {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Publish N messages flat out.
    Pub {
        /// Endpoint to bind (tcp://127.0.0.1:* picks a port, printed on stderr).
        #[arg(long)]
        bind: String,
        /// Messages to send.
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// Message size, bytes (at least 16: sequence and intended time).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(16..))]
        size: u64,
        /// ZMQ_SNDHWM.
        #[arg(long, default_value_t = 100_000)]
        sndhwm: i32,
        /// Messages per second (0: flat out).
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// Receive until END; print JSON.
    Sub {
        /// Endpoint to connect to.
        #[arg(long)]
        connect: String,
        /// ZMQ_RCVHWM.
        #[arg(long, default_value_t = 100_000)]
        rcvhwm: i32,
        /// Leave the first N messages out of the latency histogram.
        #[arg(long, default_value_t = 0)]
        warmup_count: u64,
        /// Write the latency distribution (.hgrm, microseconds) here.
        #[arg(long)]
        hgrm: Option<std::path::PathBuf>,
    },
}

const END: &[u8] = b"END";

fn main() -> Result<(), zmq::Error> {
    let ctx = zmq::Context::new();
    match Flags::parse().role {
        Role::Pub {
            bind,
            count,
            size,
            sndhwm,
            rate,
        } => {
            let xpub = ctx.socket(zmq::XPUB)?;
            xpub.set_sndhwm(sndhwm)?;
            xpub.set_xpub_verbose(true)?;
            xpub.bind(&bind)?;
            let ep = xpub.get_last_endpoint()?.unwrap_or(bind);
            eprintln!("raw-zmq: bound {ep}");
            // One subscription is the start signal.
            loop {
                let m = xpub.recv_bytes(0)?;
                if m.first() == Some(&1) {
                    break;
                }
            }
            let mut buf = vec![0u8; size.max(16) as usize];
            if rate > 0 {
                // SAFETY: only this thread's timer slack changes (1 ns: sleeps
                // wake on time), as in shardcast-pub.
                unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
            }
            let t0 = now_ns();
            for seq in 1..=count {
                let intended = if rate > 0 {
                    let due = t0 + ((seq - 1) as u128 * 1_000_000_000 / rate as u128) as u64;
                    let now = now_ns();
                    if now < due {
                        std::thread::sleep(Duration::from_nanos(due - now));
                    }
                    due
                } else {
                    now_ns()
                };
                buf[..8].copy_from_slice(&seq.to_le_bytes());
                buf[8..16].copy_from_slice(&intended.to_le_bytes());
                xpub.send(&buf[..size as usize], 0)?;
            }
            // END until the subscriber unsubscribes (it leaves on END), at
            // most 5 s: a lossy XPUB can drop a single END for a full pipe.
            xpub.set_rcvtimeo(100)?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                xpub.send(END, 0)?;
                if let Ok(m) = xpub.recv_bytes(0) {
                    if m.first() == Some(&0) {
                        break;
                    }
                }
            }
        }
        Role::Sub {
            connect,
            rcvhwm,
            warmup_count,
            hgrm,
        } => {
            let mut hist = stats::new_histogram();
            let sub = ctx.socket(zmq::SUB)?;
            sub.set_rcvhwm(rcvhwm)?;
            sub.set_subscribe(b"")?;
            sub.connect(&connect)?;
            let mut msg = zmq::Message::new();
            let (mut received, mut lost, mut expected) = (0u64, 0u64, 1u64);
            let (mut first, mut last) = (None, Instant::now());
            loop {
                sub.recv(&mut msg, 0)?;
                if &msg[..] == END {
                    break;
                }
                let t = now_ns();
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                received += 1;
                if msg.len() >= 16 {
                    let word = |i: usize| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&msg[i..i + 8]);
                        u64::from_le_bytes(b)
                    };
                    let (seq, intended) = (word(0), word(8));
                    if seq > expected {
                        lost += seq - expected;
                    }
                    expected = seq + 1;
                    if seq > warmup_count {
                        stats::record(&mut hist, t.saturating_sub(intended));
                    }
                }
            }
            let elapsed = first.map_or(0.0, |f| (last - f).as_secs_f64());
            let rate = if elapsed > 0.0 {
                received as f64 / elapsed
            } else {
                0.0
            };
            if let Some(path) = hgrm {
                let mut f = std::io::BufWriter::new(
                    std::fs::File::create(&path).map_err(|_| zmq::Error::EINVAL)?,
                );
                stats::write_hgrm(&mut f, &hist, 1000.0).map_err(|_| zmq::Error::EINVAL)?;
            }
            println!(
                "{}",
                serde_json::json!({
                    "role": "raw-zmq-sub",
                    "received": received,
                    "lost": lost,
                    "elapsed_s": elapsed,
                    "msgs_per_sec": rate,
                    "latency_ns": { "end_to_end": stats::LatencySummary::of(&hist) },
                })
            );
        }
    }
    Ok(())
}
