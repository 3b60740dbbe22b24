//! The raw libzmq baseline: a plain PUB -> SUB pair written with the `zmq`
//! crate and nothing else, so shardcast's figures have a same-machine,
//! same-run reference (like libzmq's local_thr/remote_thr, but PUB/SUB and
//! with percentiles-ready counts instead of one mean).
//!
//! `raw-zmq pub --bind EP --count N --size B` waits for one subscription
//! (XPUB, so no message is lost to the slow joiner), sends N messages of B
//! bytes flat out (the first 8 bytes carry a sequence number), then repeats
//! an `END` frame until the subscriber leaves. `raw-zmq sub --connect EP`
//! counts, checks sequence gaps, and prints JSON: received, lost, elapsed_s
//! (first to last message) and msgs_per_sec.

use clap::{Parser, Subcommand};
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
        /// Message size, bytes (at least 8).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(8..))]
        size: u64,
        /// ZMQ_SNDHWM.
        #[arg(long, default_value_t = 100_000)]
        sndhwm: i32,
    },
    /// Receive until END; print JSON.
    Sub {
        /// Endpoint to connect to.
        #[arg(long)]
        connect: String,
        /// ZMQ_RCVHWM.
        #[arg(long, default_value_t = 100_000)]
        rcvhwm: i32,
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
            let mut buf = vec![0u8; size as usize];
            for seq in 1..=count {
                buf[..8].copy_from_slice(&seq.to_le_bytes());
                xpub.send(&buf[..], 0)?;
            }
            // END until the subscriber unsubscribes (it leaves on END), at
            // most 5 s: a lossy PUB can drop a single END for a full pipe.
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
        Role::Sub { connect, rcvhwm } => {
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
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                received += 1;
                if msg.len() >= 8 {
                    let mut s = [0u8; 8];
                    s.copy_from_slice(&msg[..8]);
                    let seq = u64::from_le_bytes(s);
                    if seq > expected {
                        lost += seq - expected;
                    }
                    expected = seq + 1;
                }
            }
            let elapsed = first.map_or(0.0, |f| (last - f).as_secs_f64());
            let rate = if elapsed > 0.0 {
                received as f64 / elapsed
            } else {
                0.0
            };
            println!(
                "{}",
                serde_json::json!({
                    "role": "raw-zmq-sub",
                    "received": received,
                    "lost": lost,
                    "elapsed_s": elapsed,
                    "msgs_per_sec": rate,
                })
            );
        }
    }
    Ok(())
}
