//! `--explain-hwm`: from the expected rate and message size and the snail's
//! lag budget, what each queue of the subscriber holds (in messages, in
//! milliseconds of the stream, in bytes), the memory ceiling they imply,
//! and where the settings contradict the lag budget.
//!
//! The per-message costs are libzmq 4.3's: a queued message is a 64-byte
//! `zmq_msg_t` in its pipe, plus, above 33 bytes (the inline limit), a
//! heap block of the payload and a 40-byte header that malloc rounds up;
//! [`HEAP_OVERHEAD`] covers header and rounding.

use crate::config::Config;
use serde::Serialize;
use shardcast_agent::lag::OnSlow;
use shardcast_workers::{Books, WorkKind};

/// Bytes of a `zmq_msg_t` in a pipe.
pub const MSG_T: u64 = 64;
/// Largest payload libzmq keeps inside the `zmq_msg_t`.
pub const INLINE_MAX: u64 = 33;
/// libzmq's content header plus malloc rounding, per heap payload.
pub const HEAP_OVERHEAD: u64 = 56;

/// Bytes one queued message of `payload` bytes costs in libzmq.
pub fn queued_bytes(payload: u64) -> u64 {
    if payload <= INLINE_MAX {
        MSG_T
    } else {
        MSG_T + payload + HEAP_OVERHEAD
    }
}

/// One queue in the path of a stream.
#[derive(Clone, Debug, Serialize)]
pub struct Hop {
    /// What it is.
    pub name: String,
    /// Where it lives: `process` (counts toward RSS) or `kernel`.
    pub memory: &'static str,
    /// Records it can hold for one stream.
    pub records: u64,
    /// Milliseconds of one stream at the expected rate.
    pub ms: f64,
    /// Bytes for every shard together (and, for inproc, every worker).
    pub bytes: u64,
}

/// The whole explanation.
#[derive(Clone, Debug, Serialize)]
pub struct Sizing {
    /// Streams (shards).
    pub shards: usize,
    /// Workers.
    pub workers: usize,
    /// Messages per second per stream.
    pub rate: u64,
    /// Bytes per message.
    pub msg_size: u64,
    /// The snail's lag budget, ms.
    pub max_lag_ms: u64,
    /// Records a stream sends within the lag budget.
    pub budget_records: u64,
    /// The queues, in the order a message meets them.
    pub hops: Vec<Hop>,
    /// Milliseconds of one stream all our queues hold together.
    pub buffered_ms: f64,
    /// Process memory the queues and books can take at most, bytes
    /// (`null` when a queue is unbounded).
    pub ceiling_bytes: Option<u64>,
    /// Kernel socket buffers on top, bytes.
    pub kernel_bytes: u64,
    /// Of the ceiling, the books (--max-symbols per worker), bytes.
    pub books_bytes: u64,
    /// `--work itch-book`: the books hold every order live at once, which
    /// the feed decides, not a flag, so they are outside the ceiling.
    pub itch_books_unbounded: bool,
    /// Settings that contradict the lag budget or bound nothing.
    pub warnings: Vec<String>,
}

/// The kernel's TCP receive buffer: `(typical, most)` bytes. With
/// `ZMQ_RCVBUF` set the kernel gives twice what was asked (bookkeeping);
/// left to the OS it starts at `net.ipv4.tcp_rmem`'s default and autotunes
/// toward its max only while the reader keeps up, so a reader that stopped
/// sits near the default.
fn kernel_rcvbuf(rcvbuf: i32) -> (u64, u64) {
    if rcvbuf > 0 {
        return (2 * rcvbuf as u64, 2 * rcvbuf as u64);
    }
    let fields: Vec<u64> = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem")
        .ok()
        .map(|s| {
            s.split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    match fields[..] {
        [_, default, max] => (default, max),
        _ => (131_072, 6 << 20),
    }
}

/// Every queue a record can wait in on its way to a worker, with what it
/// holds at `rate` and `msg_size`.
fn hops(cfg: &Config, rate: u64, msg_size: u64) -> Vec<Hop> {
    let shards = cfg.shards.len().max(1) as u64;
    let workers = cfg.workers as u64;
    let ms_of = |records: u64| records as f64 * 1000.0 / rate as f64;
    let mut hops = Vec::new();
    let (kbuf, _) = kernel_rcvbuf(cfg.rcvbuf);
    // ZMTP adds a 2-byte (short) or 9-byte (long) frame header.
    let wire = msg_size + if msg_size < 256 { 2 } else { 9 };
    let k_records = kbuf / wire;
    hops.push(Hop {
        name: format!(
            "kernel TCP receive buffer ({})",
            if cfg.rcvbuf > 0 {
                "--rcvbuf x2"
            } else {
                "tcp_rmem default"
            }
        ),
        memory: "kernel",
        records: k_records,
        ms: ms_of(k_records),
        bytes: kbuf * shards,
    });
    let sub_records = cfg.rcvhwm.max(0) as u64;
    hops.push(Hop {
        name: "SUB queue (--rcvhwm), per shard".into(),
        memory: "process",
        records: sub_records,
        ms: ms_of(sub_records),
        bytes: sub_records * queued_bytes(msg_size) * shards,
    });
    // Each shard-to-worker pipe holds --inproc-hwm messages at each end; a
    // message packs up to --coalesce records (what was already queued when
    // the shard looked: full batches exactly when the subscriber is behind).
    let pipe_msgs = 2 * cfg.inproc_hwm as u64;
    let per_msg = cfg.coalesce as u64;
    let inproc_records = pipe_msgs * per_msg * workers;
    let inproc_payload = 8 + per_msg * msg_size;
    hops.push(Hop {
        name: format!(
            "inproc to {workers} worker(s): 2 x --inproc-hwm msgs x --coalesce {}",
            cfg.coalesce
        ),
        memory: "process",
        records: inproc_records,
        ms: ms_of(inproc_records),
        bytes: shards * workers * pipe_msgs * (queued_bytes(inproc_payload) + MSG_T),
    });
    hops
}

/// Work out the sizes for `cfg` at `rate` messages/s per stream of
/// `msg_size` bytes.
pub fn explain(cfg: &Config, rate: u64, msg_size: u64) -> Sizing {
    let shards = cfg.shards.len().max(1) as u64;
    let workers = cfg.workers as u64;
    let mut warnings = Vec::new();
    let (_, kmax) = kernel_rcvbuf(cfg.rcvbuf);
    let hops = hops(cfg, rate, msg_size);
    let sub_bounded = cfg.rcvhwm > 0;
    let books = if cfg.work == WorkKind::Book {
        cfg.max_symbols as u64 * Books::bytes_per_symbol() as u64 * workers
    } else {
        0
    };
    let process: u64 = hops
        .iter()
        .filter(|h| h.memory == "process")
        .map(|h| h.bytes)
        .sum::<u64>()
        + books;
    let buffered_ms: f64 = hops.iter().map(|h| h.ms).sum();
    let budget_records = rate.saturating_mul(cfg.max_lag_ms) / 1000;
    let lag = cfg.max_lag_ms as f64;

    if !sub_bounded {
        warnings.push(
            "--rcvhwm 0 means no limit: a stalled subscriber grows without bound instead of \
             dropping; give it a limit (about the lag budget: --rcvhwm {budget_records})"
                .replace("{budget_records}", &budget_records.to_string()),
        );
    }
    if msg_size > cfg.max_msg_size as u64 {
        warnings.push(format!(
            "--expected-msg-size {msg_size} is over --max-msg-size {}: libzmq would cut every \
             publisher off; raise --max-msg-size",
            cfg.max_msg_size
        ));
    }
    if sub_bounded && buffered_ms < lag {
        warnings.push(format!(
            "all queues together hold {buffered_ms:.0} ms of the stream, less than --max-lag-ms {}: \
             a subscriber falling behind loses messages (gaps) before the snail sees the lag; \
             raise --rcvhwm to at least {budget_records} or lower --max-lag-ms",
            cfg.max_lag_ms
        ));
    }
    // Under --on-slow croak nothing older than the budget is ever used, so
    // queues far past it are memory spent for nothing. (Kernel buffers are
    // left out: they autotune, and --rcvbuf is their knob.)
    let process_ms: f64 = hops
        .iter()
        .filter(|h| h.memory == "process")
        .map(|h| h.ms)
        .sum();
    if sub_bounded && cfg.on_slow == OnSlow::Croak && process_ms > 4.0 * lag {
        let worst = hops
            .iter()
            .filter(|h| h.memory == "process")
            .max_by(|a, b| a.ms.total_cmp(&b.ms))
            .map_or("", |h| h.name.as_str());
        warnings.push(format!(
            "the subscriber's queues hold {process_ms:.0} ms of the stream, more than 4 x --max-lag-ms {}: \
             the snail croaks long before they fill, so most of their memory is never used; \
             the largest is the {worst}: lower it (--rcvhwm about {budget_records}, or --inproc-hwm)",
            cfg.max_lag_ms
        ));
    }
    Sizing {
        shards: shards as usize,
        workers: workers as usize,
        rate,
        msg_size,
        max_lag_ms: cfg.max_lag_ms,
        budget_records,
        hops,
        buffered_ms,
        ceiling_bytes: sub_bounded.then_some(process),
        kernel_bytes: kmax * shards,
        books_bytes: books,
        itch_books_unbounded: cfg.work == WorkKind::ItchBook,
        warnings,
    }
}

impl Sizing {
    /// The explanation for a person.
    pub fn text(&self) -> String {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let mut out = format!(
            "shardcast-sub sizing: {} stream(s) x {} msg/s x {} B, {} worker(s), lag budget {} ms \
             ({} messages per stream)\n\n{:<64} {:>9} {:>9} {:>8}  where\n",
            self.shards,
            self.rate,
            self.msg_size,
            self.workers,
            self.max_lag_ms,
            self.budget_records,
            "queue",
            "records",
            "ms",
            "MiB"
        );
        for h in &self.hops {
            out += &format!(
                "{:<64} {:>9} {:>9.1} {:>8.1}  {}\n",
                h.name,
                h.records,
                h.ms,
                mib(h.bytes),
                h.memory
            );
        }
        if self.books_bytes > 0 {
            out += &format!(
                "{:<64} {:>9} {:>9} {:>8.1}  process\n",
                "books: --max-symbols per worker, all workers",
                "-",
                "-",
                mib(self.books_bytes)
            );
        }
        if self.itch_books_unbounded {
            out +=
                "itch books: every order live at once (tens of bytes each), as many as the feed \
                    leaves resting: not bounded by a flag, not in the ceiling below\n";
        }
        out += &format!(
            "\none stream is buffered for {:.0} ms in all (lag budget {} ms)\n",
            self.buffered_ms, self.max_lag_ms
        );
        match self.ceiling_bytes {
            Some(c) => {
                out += &format!(
                    "memory ceiling: {:.1} MiB of process memory (queues and books), plus up to {:.1} MiB of kernel buffers\n",
                    mib(c),
                    mib(self.kernel_bytes)
                )
            }
            None => out += "memory ceiling: none (a queue is unbounded)\n",
        }
        for w in &self.warnings {
            out += &format!("warning: {w}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Flags;
    use clap::Parser;

    fn cfg(args: &[&str]) -> Config {
        let mut v = vec!["shardcast-sub", "--explain-hwm"];
        v.extend_from_slice(args);
        Config::resolve(&Flags::try_parse_from(v).unwrap()).unwrap()
    }

    #[test]
    fn defaults_fit_the_guides_feed_and_budget() {
        let s = explain(&cfg(&[]), 100_000, 100);
        assert_eq!(s.budget_records, 100_000);
        assert_eq!(s.hops[1].records, 100_000);
        assert!((s.hops[1].ms - 1000.0).abs() < 1e-9);
        // 100K x (64 + 100 + 56) bytes in the SUB queue alone.
        assert_eq!(s.hops[1].bytes, 22_000_000);
        assert!(s.ceiling_bytes.unwrap() > s.hops[1].bytes);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert!(s.text().contains("memory ceiling"));
    }

    #[test]
    fn settings_that_contradict_the_budget_are_named() {
        let small = explain(
            &cfg(&["--rcvhwm", "1000", "--inproc-hwm", "10", "--rcvbuf", "4096"]),
            100_000,
            100,
        );
        assert!(small.buffered_ms < 1000.0);
        assert!(small
            .warnings
            .iter()
            .any(|w| w.contains("before the snail")));
        let big = explain(&cfg(&["--rcvhwm", "10000000"]), 100_000, 100);
        assert!(big
            .warnings
            .iter()
            .any(|w| w.contains("never used") && w.contains("SUB queue")));
        let inproc = explain(&cfg(&["--inproc-hwm", "100000"]), 100_000, 100);
        assert!(inproc
            .warnings
            .iter()
            .any(|w| w.contains("never used") && w.contains("inproc")));
        let warn = explain(
            &cfg(&["--rcvhwm", "10000000", "--on-slow", "warn"]),
            100_000,
            100,
        );
        assert!(warn.warnings.is_empty(), "warn mode uses deep queues");
        let none = explain(&cfg(&["--rcvhwm", "0"]), 100_000, 100);
        assert_eq!(none.ceiling_bytes, None);
        assert!(none.warnings.iter().any(|w| w.contains("no limit")));
        let huge = explain(&cfg(&["--max-msg-size", "64"]), 1000, 100);
        assert!(huge.warnings.iter().any(|w| w.contains("--max-msg-size")));
    }

    /// ITCH books grow with the orders the feed leaves resting: no flag
    /// bounds them, so the sizing says so instead of counting them in.
    #[test]
    fn itch_books_are_named_outside_the_ceiling() {
        let s = explain(&cfg(&["--work", "itch-book"]), 100_000, 100);
        assert!(s.itch_books_unbounded);
        assert_eq!(s.books_bytes, 0);
        assert!(s.text().contains("itch books: every order live at once"));
        assert!(!explain(&cfg(&[]), 100_000, 100).itch_books_unbounded);
    }

    #[test]
    fn small_messages_stay_inline() {
        assert_eq!(queued_bytes(33), MSG_T);
        assert_eq!(queued_bytes(34), MSG_T + 34 + HEAP_OVERHEAD);
    }
}
