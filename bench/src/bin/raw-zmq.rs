//! The raw libzmq baseline: a plain XPUB -> SUB pair written with the `zmq`
//! crate and nothing else, so shardcast's figures have a same-machine,
//! same-run reference (like libzmq's local_thr/remote_thr, but PUB/SUB and
//! with percentiles-ready counts instead of one mean).
//!
//! `raw-zmq pub --bind EP --count N --size B [--rate R] [--duration S]
//! [--nodrop]` waits for one subscription (XPUB, so no message is lost to the
//! slow joiner), sends N messages of B bytes (or, with `--duration`, until S
//! seconds have passed: by the clock flat out, by the schedule when paced, as
//! shardcast-pub does; `subscribed; sending` on stderr marks the start), flat out or paced exactly like shardcast-pub
//! (message i due at t0 + i/R, sleeping until then), then repeats an `END`
//! frame carrying the last sequence until the subscriber leaves, and prints
//! JSON: sent, elapsed_s, msgs_per_sec. `--nodrop` sets `ZMQ_XPUB_NODROP`:
//! a full queue then blocks the sender instead of dropping, so nothing is
//! lost and the rate is what the subscriber sustains. Bytes 0..8 carry the
//! sequence number, 8..16 the intended send time (CLOCK_REALTIME ns; the
//! send time when flat out). `raw-zmq sub --connect EP` counts, checks gaps,
//! times each message from its intended send time (coordinated-omission-
//! correct, like shardcast's end_to_end) and prints JSON: received, lost,
//! out_of_order, last_seq (from END), complete (END seen, every sequence up
//! to it received once), elapsed_s (first to last message), msgs_per_sec,
//! latency_ns percentiles.

use clap::{Parser, Subcommand};
use shardcast_agent::clock::now_ns;
use shardcast_agent::stats;
use shardcast_agent::zmqx::set_int_option;
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
    /// Publish N messages (or for --duration seconds), flat out or paced.
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
        /// Stop after this many seconds (flat out: by the clock; paced: when
        /// the next message would fall due after it), or at --count.
        #[arg(long)]
        duration: Option<f64>,
        /// ZMQ_XPUB_NODROP: block when the subscriber's queue is full
        /// instead of dropping (lossless; the sender slows to the receiver).
        #[arg(long)]
        nodrop: bool,
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

/// The end frame: `END` then the last sequence sent (u64, little-endian).
/// No data message is this short (they are 16 bytes at least).
const END: &[u8] = b"END";
const END_LEN: usize = END.len() + 8;

/// `ZMQ_XPUB_NODROP` (zmq.h), which the `zmq` crate has no setter for.
const XPUB_NODROP: u32 = 69;

fn main() -> Result<(), zmq::Error> {
    let ctx = zmq::Context::new();
    match Flags::parse().role {
        Role::Pub {
            bind,
            count,
            size,
            sndhwm,
            rate,
            duration,
            nodrop,
        } => {
            let mut xpub = ctx.socket(zmq::XPUB)?;
            xpub.set_sndhwm(sndhwm)?;
            xpub.set_xpub_verbose(true)?;
            if nodrop {
                set_int_option(&mut xpub, XPUB_NODROP, 1)?;
            }
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
            // A marker for harnesses that time from the first message (the
            // first is sent at once, paced or not).
            eprintln!("raw-zmq: subscribed; sending");
            let mut buf = vec![0u8; size.max(16) as usize];
            if rate > 0 {
                // SAFETY: only this thread's timer slack changes (1 ns: sleeps
                // wake on time), as in shardcast-pub.
                unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
            }
            let t0 = now_ns();
            let deadline = duration.map(|d| t0 + (d * 1e9) as u64);
            let mut sent = 0u64;
            for seq in 1..=count {
                let intended = if rate > 0 {
                    let due = t0 + ((seq - 1) as u128 * 1_000_000_000 / rate as u128) as u64;
                    if deadline.is_some_and(|d| due >= d) {
                        break;
                    }
                    let now = now_ns();
                    if now < due {
                        std::thread::sleep(Duration::from_nanos(due - now));
                    }
                    due
                } else {
                    let now = now_ns();
                    if deadline.is_some_and(|d| now >= d) {
                        break;
                    }
                    now
                };
                buf[..8].copy_from_slice(&seq.to_le_bytes());
                buf[8..16].copy_from_slice(&intended.to_le_bytes());
                xpub.send(&buf[..size as usize], 0)?;
                sent = seq;
            }
            let elapsed = (now_ns() - t0) as f64 / 1e9;
            // END until the subscriber unsubscribes (it leaves on END), at
            // most 5 s: a lossy XPUB can drop a single END for a full pipe,
            // and a NODROP one must not block on it (hence DONTWAIT).
            let mut end = [0u8; END_LEN];
            end[..END.len()].copy_from_slice(END);
            end[END.len()..].copy_from_slice(&sent.to_le_bytes());
            xpub.set_rcvtimeo(100)?;
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                match xpub.send(&end[..], zmq::DONTWAIT) {
                    Ok(()) | Err(zmq::Error::EAGAIN) => {}
                    Err(e) => return Err(e),
                }
                if let Ok(m) = xpub.recv_bytes(0) {
                    if m.first() == Some(&0) {
                        break;
                    }
                }
            }
            println!(
                "{}",
                serde_json::json!({
                    "role": "raw-zmq-pub",
                    "sent": sent,
                    "elapsed_s": elapsed,
                    "msgs_per_sec": if elapsed > 0.0 { sent as f64 / elapsed } else { 0.0 },
                    "rate": rate,
                    "nodrop": nodrop,
                    "sndhwm": sndhwm,
                })
            );
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
            let mut out_of_order = 0u64;
            let (mut first, mut last) = (None, Instant::now());
            let last_seq = loop {
                sub.recv(&mut msg, 0)?;
                if msg.len() == END_LEN && msg.starts_with(END) {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&msg[END.len()..]);
                    break u64::from_le_bytes(b);
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
                    if seq < expected {
                        out_of_order += 1;
                        continue;
                    }
                    if seq > expected {
                        lost += seq - expected;
                    }
                    expected = seq + 1;
                    if seq > warmup_count {
                        stats::record(&mut hist, t.saturating_sub(intended));
                    }
                }
            };
            // Whatever went missing after the last message received.
            lost += (last_seq + 1).saturating_sub(expected);
            let complete = last_seq == received && lost == 0 && out_of_order == 0;
            let elapsed = first.map_or(0.0, |f| (last - f).as_secs_f64());
            let rate = if elapsed > 0.0 {
                received as f64 / elapsed
            } else {
                0.0
            };
            if let Some(path) = hgrm {
                let mut f = Vec::new();
                stats::write_hgrm(&mut f, &hist, 1000.0).map_err(|_| zmq::Error::EINVAL)?;
                shardcast_agent::files::write(&path, &f).map_err(|e| {
                    eprintln!("raw-zmq: error: writing --hgrm {}: {e}", path.display());
                    zmq::Error::EINVAL
                })?;
            }
            println!(
                "{}",
                serde_json::json!({
                    "role": "raw-zmq-sub",
                    "received": received,
                    "lost": lost,
                    "out_of_order": out_of_order,
                    "last_seq": last_seq,
                    "complete": complete,
                    "elapsed_s": elapsed,
                    "msgs_per_sec": rate,
                    "latency_ns": { "end_to_end": stats::LatencySummary::of(&hist) },
                })
            );
        }
    }
    Ok(())
}
