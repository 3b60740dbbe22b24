//! The lossless highest rate: for one stream of B-byte messages over TCP
//! loopback, the highest paced rate each side carries with zero loss, found
//! by a rate search, in one run: raw libzmq (`raw-zmq` with
//! `ZMQ_XPUB_NODROP`, so its publisher blocks instead of dropping; HWM 1000
//! at both ends), shardcast one record per frame, and shardcast with
//! `--batch` (both `shardcast-pub` -> `shardcast-sub`, one worker, `--work
//! none`, as `thr-compare` runs them). Each round runs the three searches
//! with their trials interleaved (raw, shardcast, batched, raw, ...), so
//! the ratios compare like with like on a noisy machine; the raw publisher
//! is also run once flat out with NODROP, as a cross-check.
//!
//! A trial at target rate R sends for `--duration` S seconds, paced (message
//! i due at t0 + i/R, the publisher stopping at the first message due at or
//! after t0 + S: R x S messages). It PASSES when the publisher reported
//! what it sent and, at the subscriber: received == sent (shardcast: and
//! processed == sent), lost == 0, the stream is complete (end-of-stream with
//! the last sequence seen, every sequence up to it received once; shardcast:
//! `streams_complete`), and the receive rate (received over first to last
//! message) is at least 98% of R, so the rate was carried, not queued. A
//! trial not finished within 2S + 10 s fails. See [`RateSearch`] for the
//! search: the answer is the highest passing rate, to `--resolution`.
//!
//! Usage: `lossless [--runs 3] [--duration 5] [--size 100] [--batch 64]
//! [--resolution 0.02] [--out DIR] [--report-json FILE]` (the sibling
//! binaries must be built: see scripts/lossless).

use clap::Parser;
use serde_json::{json, Value};
use shardcast_bench::{
    environment, finish_by, median, read_json, results_dir, sibling, spawn, spawn_logged,
    throughput_sub_args, word_after, RateSearch,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A trial's receive rate must reach this fraction of its target.
const RATE_FRACTION: f64 = 0.98;

/// Find the highest zero-loss rate of raw libzmq (NODROP) and of shardcast.
#[derive(Parser)]
struct Flags {
    /// Rounds (each runs every search once, trials interleaved).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Seconds each trial sends for (R x S messages at rate R).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Message size, bytes (at least 80, shardcast's largest record).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(80..))]
    size: u64,
    /// Records per frame in the batched shardcast variant.
    #[arg(long, default_value_t = 64)]
    batch: u32,
    /// ZMQ_SNDHWM and ZMQ_RCVHWM of the raw NODROP pair.
    #[arg(long, default_value_t = 1000)]
    raw_hwm: i32,
    /// First rate each search tries, msg/s.
    #[arg(long, default_value_t = 1_000_000)]
    search_from: u64,
    /// Lowest rate a search tries, msg/s.
    #[arg(long, default_value_t = 10_000)]
    search_min: u64,
    /// Highest rate a search tries, msg/s.
    #[arg(long, default_value_t = 64_000_000)]
    search_max: u64,
    /// Bisect until the lowest failing rate is within this fraction of the
    /// highest passing one.
    #[arg(long, default_value_t = 0.02)]
    resolution: f64,
    /// Most trials per search.
    #[arg(long, default_value_t = 20)]
    search_steps: usize,
    /// Results folder (default bench/results/<date>-<host>): lossless.md,
    /// lossless.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the results JSON here.
    #[arg(long)]
    report_json: Option<PathBuf>,
}

/// One trial, judged.
struct Trial {
    /// Target rate, msg/s (0: flat out).
    rate: u64,
    sent: u64,
    received: u64,
    lost: u64,
    complete: bool,
    /// Receive rate at the subscriber, first to last message.
    msgs_per_sec: f64,
    pass: bool,
    why: String,
}

impl Trial {
    fn failed(rate: u64, why: String) -> Trial {
        Trial {
            rate,
            sent: 0,
            received: 0,
            lost: 0,
            complete: false,
            msgs_per_sec: 0.0,
            pass: false,
            why,
        }
    }

    /// Judge what the subscriber saw against what the publisher sent.
    fn judged(rate: u64, sent: u64, sub: &Value, complete: bool, extra: Option<String>) -> Trial {
        let received = sub["received"].as_u64().unwrap_or(0);
        let lost = sub["lost"].as_u64().unwrap_or(u64::MAX);
        let msgs_per_sec = sub["msgs_per_sec"].as_f64().unwrap_or(0.0);
        let mut why = Vec::new();
        if sent == 0 {
            why.push("nothing sent".to_string());
        }
        if received != sent {
            why.push(format!("received {received} of {sent}"));
        }
        if lost > 0 {
            why.push(format!("lost {lost}"));
        }
        if !complete {
            why.push("incomplete".to_string());
        }
        why.extend(extra);
        if rate > 0 && msgs_per_sec < RATE_FRACTION * rate as f64 {
            why.push(format!("rate {msgs_per_sec:.0} < {RATE_FRACTION} x target"));
        }
        Trial {
            rate,
            sent,
            received,
            lost,
            complete,
            msgs_per_sec,
            pass: why.is_empty(),
            why: why.join(", "),
        }
    }

    fn json(&self) -> Value {
        json!({
            "rate": self.rate, "sent": self.sent, "received": self.received,
            "lost": self.lost, "complete": self.complete,
            "msgs_per_sec": self.msgs_per_sec, "pass": self.pass, "why": self.why,
        })
    }
}

fn deadline(f: &Flags) -> Instant {
    Instant::now() + Duration::from_secs_f64(2.0 * f.duration + 10.0)
}

/// The last line of a log, for a failure's reason.
fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.lines().last().map(str::to_string))
        .unwrap_or_default()
}

/// Raw libzmq, XPUB with NODROP -> SUB, at `rate` (0: flat out).
fn raw(f: &Flags, rate: u64, tmp: &Path) -> Trial {
    let bin = sibling("raw-zmq");
    let hwm = f.raw_hwm.to_string();
    let mut publ = spawn(
        &bin,
        &[
            "pub",
            "--bind",
            "tcp://127.0.0.1:*",
            "--count",
            &u64::MAX.to_string(),
            "--duration",
            &f.duration.to_string(),
            "--rate",
            &rate.to_string(),
            "--size",
            &f.size.to_string(),
            "--sndhwm",
            &hwm,
            "--nodrop",
        ]
        .map(String::from),
    );
    let ep = word_after(&mut publ, "bound ");
    let log = tmp.join("raw-sub.log");
    let sub = spawn_logged(
        &bin,
        &["sub", "--connect", &ep, "--rcvhwm", &hwm].map(String::from),
        &log,
    );
    let (out, st) = finish_by(sub, deadline(f));
    let (pout, pst) = finish_by(publ, Instant::now() + Duration::from_secs(15));
    match (st, pst) {
        (None, _) => Trial::failed(rate, "timed out".into()),
        (Some(s), _) if !s.success() => {
            Trial::failed(rate, format!("raw-zmq sub {s}: {}", last_line(&log)))
        }
        (_, p) if !p.is_some_and(|p| p.success()) => {
            Trial::failed(rate, format!("raw-zmq pub ended {p:?}"))
        }
        _ => {
            let v: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
            let p: Value = serde_json::from_str(pout.trim()).unwrap_or(Value::Null);
            let sent = p["sent"].as_u64().unwrap_or(0);
            let complete = v["complete"] == true && v["last_seq"].as_u64() == Some(sent);
            Trial::judged(rate, sent, &v, complete, None)
        }
    }
}

/// shardcast-pub -> shardcast-sub (one worker, --work none) at `rate`.
fn shardcast(f: &Flags, rate: u64, batch: u32, tmp: &Path) -> Trial {
    let (pj, sj, log) = (
        tmp.join("pub.json"),
        tmp.join("sub.json"),
        tmp.join("sub.log"),
    );
    let _ = std::fs::remove_file(&pj);
    let _ = std::fs::remove_file(&sj);
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let mut publ = spawn(
        &sibling("shardcast-pub"),
        &[
            "--bind",
            "tcp://127.0.0.1:*",
            "--rate",
            &rate.to_string(),
            "--duration",
            &f.duration.to_string(),
            "--size",
            &f.size.to_string(),
            "--batch",
            &batch.to_string(),
            "--wait-subscribers",
            "1",
            "--wait-timeout",
            "30",
            "--report-json",
            &path(&pj),
        ]
        .map(String::from),
    );
    let ep = word_after(&mut publ, "stream 0 bound ");
    let sub = spawn_logged(
        &sibling("shardcast-sub"),
        &throughput_sub_args(&ep, &sj),
        &log,
    );
    let (_, st) = finish_by(sub, deadline(f));
    let (_, pst) = finish_by(publ, Instant::now() + Duration::from_secs(15));
    match (st, pst) {
        (None, _) => Trial::failed(rate, "timed out".into()),
        (Some(s), _) if !s.success() => {
            Trial::failed(rate, format!("shardcast-sub {s}: {}", last_line(&log)))
        }
        (_, p) if !p.is_some_and(|p| p.success()) => {
            Trial::failed(rate, format!("shardcast-pub ended {p:?}"))
        }
        _ => {
            let (s, p) = (read_json(&sj), read_json(&pj));
            let sent = p["sent"].as_u64().unwrap_or(0);
            let processed = s["processed"].as_u64().unwrap_or(0);
            let extra = (processed != sent).then(|| format!("processed {processed} of {sent}"));
            Trial::judged(rate, sent, &s, s["streams_complete"] == true, extra)
        }
    }
}

/// One side's search in one round.
struct Side {
    key: &'static str,
    batch: Option<u32>,
    search: RateSearch,
    trials: Vec<Trial>,
}

impl Side {
    /// The highest passing rate (0 if none).
    fn highest(&self) -> u64 {
        self.search.lo.unwrap_or(0)
    }

    /// The answer as a table cell.
    fn cell(&self) -> String {
        match (self.search.lo, self.search.hi) {
            (None, _) => format!("none (fails at {})", self.search.min),
            (Some(l), None) => format!(">= {l} (search max)"),
            (Some(l), Some(h)) if !self.search.resolved() => {
                format!("{l} (unresolved: fails at {h})")
            }
            (Some(l), Some(_)) => l.to_string(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "highest_lossless_msgs_per_sec": self.search.lo,
            "lowest_failing_msgs_per_sec": self.search.hi,
            "resolved": self.search.resolved(),
            "trials": self.trials.iter().map(Trial::json).collect::<Vec<_>>(),
        })
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b > 0 {
        a as f64 / b as f64
    } else {
        0.0
    }
}

fn main() {
    let f = Flags::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let dir = f.out.clone().unwrap_or_else(results_dir);
    std::fs::create_dir_all(&dir).expect("results folder");
    let tmp = std::env::temp_dir().join(format!("lossless-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let b = f.batch;
    let mut md = format!(
        "| round | raw NODROP flat out msg/s | raw NODROP lossless msg/s | shardcast lossless msg/s | ratio | shardcast --batch {b} lossless msg/s | ratio |\n|---|---|---|---|---|---|---|\n"
    );
    print!("{md}");
    let (mut flat_v, mut raw_v, mut one_v, mut bat_v) = (vec![], vec![], vec![], vec![]);
    let (mut one_r, mut bat_r) = (vec![], vec![]);
    let mut rounds = Vec::new();
    for round in 1..=f.runs {
        eprintln!("lossless: round {round}: raw libzmq NODROP flat out");
        let flat = raw(&f, 0, &tmp);
        eprintln!(
            "lossless:   {:.0} msg/s {}",
            flat.msgs_per_sec,
            if flat.pass { "lossless" } else { &flat.why }
        );
        let new = || {
            RateSearch::new(
                f.search_from,
                f.search_min,
                f.search_max,
                f.resolution,
                f.search_steps,
            )
        };
        let mut sides = [
            ("raw", None),
            ("shardcast", Some(1)),
            ("shardcast_batch", Some(b)),
        ]
        .map(|(key, batch)| Side {
            key,
            batch,
            search: new(),
            trials: Vec::new(),
        });
        loop {
            let mut ran = false;
            for side in sides.iter_mut() {
                let Some(rate) = side.search.next() else {
                    continue;
                };
                ran = true;
                let t = match side.batch {
                    None => raw(&f, rate, &tmp),
                    Some(batch) => shardcast(&f, rate, batch, &tmp),
                };
                eprintln!(
                    "lossless: round {round}: {} at {rate} msg/s: {:.0} msg/s received, {}",
                    side.key,
                    t.msgs_per_sec,
                    if t.pass { "PASS" } else { &t.why }
                );
                side.search.record(rate, t.pass);
                side.trials.push(t);
            }
            if !ran {
                break;
            }
        }
        let [r, one, bat] = &sides;
        let (ro, rb) = (
            ratio(one.highest(), r.highest()),
            ratio(bat.highest(), r.highest()),
        );
        let flat_cell = if flat.pass {
            format!("{:.0}", flat.msgs_per_sec)
        } else {
            format!("{:.0} (FAIL: {})", flat.msgs_per_sec, flat.why)
        };
        let row = format!(
            "| {round} | {flat_cell} | {} | {} | {ro:.2} | {} | {rb:.2} |\n",
            r.cell(),
            one.cell(),
            bat.cell()
        );
        print!("{row}");
        md.push_str(&row);
        flat_v.push(flat.msgs_per_sec);
        raw_v.push(r.highest() as f64);
        one_v.push(one.highest() as f64);
        bat_v.push(bat.highest() as f64);
        one_r.push(ro);
        bat_r.push(rb);
        let mut v = json!({"round": round, "raw_nodrop_flat_out": flat.json(),
            "shardcast_ratio": ro, "shardcast_batch_ratio": rb});
        for s in &sides {
            v[s.key] = s.json();
        }
        rounds.push(v);
    }
    let med = json!({
        "raw_nodrop_flat_out_msgs_per_sec": median(flat_v),
        "raw_msgs_per_sec": median(raw_v),
        "shardcast_msgs_per_sec": median(one_v),
        "shardcast_batch_msgs_per_sec": median(bat_v),
        "shardcast_ratio": median(one_r),
        "shardcast_batch_ratio": median(bat_r),
    });
    let n = |k: &str| med[k].as_f64().unwrap_or(0.0);
    let line = format!(
        "\nmedian of {} rounds: raw libzmq NODROP lossless {:.0} msg/s (flat out {:.0}); shardcast {:.0} msg/s = {:.2} x raw; shardcast --batch {b} {:.0} msg/s = {:.2} x raw\n",
        f.runs,
        n("raw_msgs_per_sec"),
        n("raw_nodrop_flat_out_msgs_per_sec"),
        n("shardcast_msgs_per_sec"),
        n("shardcast_ratio"),
        n("shardcast_batch_msgs_per_sec"),
        n("shardcast_batch_ratio"),
    );
    print!("{line}");
    md.push_str(&line);
    let criterion = format!(
        "A trial at rate R sends {} s paced (R x {} messages of {} B, one stream, TCP loopback) and passes when received == sent (shardcast: and processed == sent), lost == 0, the stream is complete, and the receive rate is at least {RATE_FRACTION} x R. Each search starts at {} msg/s, doubles after a pass (halves after a failure) until it has a pass and a failure, then bisects until the lowest failure is within {}% of the highest pass (bounds {}..{} msg/s, at most {} trials). Raw: XPUB with ZMQ_XPUB_NODROP -> SUB, HWM {} at both ends. shardcast: one worker, --fanout push, --work none, default HWMs.",
        f.duration,
        f.duration,
        f.size,
        f.search_from,
        f.resolution * 100.0,
        f.search_min,
        f.search_max,
        f.search_steps,
        f.raw_hwm
    );
    let env = environment(&command);
    shardcast_bench::write_file(
        dir.join("lossless.md"),
        format!("# Lossless highest rate\n\n{env}\n{criterion}\n\n{md}"),
    )
    .expect("lossless.md");
    let v = json!({
        "command": command, "duration_s": f.duration, "size": f.size, "batch": b,
        "raw_hwm": f.raw_hwm, "rate_fraction": RATE_FRACTION,
        "search": {"from": f.search_from, "min": f.search_min, "max": f.search_max,
                   "resolution": f.resolution, "max_trials": f.search_steps},
        "rounds": rounds, "median": med,
    });
    let bytes = serde_json::to_vec_pretty(&v).expect("json");
    shardcast_bench::write_file(dir.join("lossless.json"), &bytes).expect("lossless.json");
    if let Some(path) = &f.report_json {
        shardcast_bench::write_file(path, &bytes).expect("write --report-json");
    }
    let _ = std::fs::remove_dir_all(&tmp);
    println!("results in {}", dir.display());
}
