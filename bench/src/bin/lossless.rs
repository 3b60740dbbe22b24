//! The lossless highest rate, block mode flat out, latency at a fixed rate
//! and idle CPU: for one stream of B-byte messages over TCP loopback, in one
//! run, raw libzmq (`raw-zmq` with `ZMQ_XPUB_NODROP`, so its publisher
//! blocks instead of dropping; HWM 1000 at both ends) against shardcast
//! (`shardcast-pub` -> `shardcast-sub` with the benchmark's subscriber
//! settings: one worker, `--fanout push`, `--work none`, as `thr-compare`
//! runs them, plus `--sub-args`). Four parts, each selectable with `--only`:
//!
//! - `search`: the highest paced rate each side carries with zero loss (drop
//!   mode, the figure for live feeds), found by a rate search: raw NODROP,
//!   shardcast one record per frame (`--batch 1`), shardcast `--batch N`
//!   and shardcast with default flags (no `--batch`). Each round runs the
//!   four searches with their trials interleaved (raw, shardcast, batched,
//!   default, raw, ...), so the ratios compare like with like on a noisy
//!   machine.
//! - `block`: block mode flat out, the same mode as raw NODROP flat out:
//!   shardcast `--rate 0 --when-full block` with `--batch 1`, `--batch N`
//!   and default flags, each for `--duration` S seconds; the rate is what
//!   the subscriber received over first to last message, and the trial must
//!   be lossless (the judgement below without the rate condition).
//! - `latency`: raw NODROP and shardcast with default flags, both paced at
//!   `--latency-rate` (100 K msg/s) for S seconds, alternating (raw first in
//!   odd rounds, shardcast first in even ones); end-to-end latency from the
//!   intended send time (raw: its subscriber's `latency_ns.end_to_end`;
//!   shardcast: the subscriber report's `latency_ns.end_to_end`).
//! - `idle`: once per run, a subscriber with its default flags (plus
//!   `--sub-args`) on a quiet feed (one message a second; shardcast adds a
//!   heartbeat after every 100 ms without data), its process CPU time
//!   (utime + stime, all threads) over `--idle-window` seconds starting 1 s
//!   after the publisher sent its first message; raw-zmq sub likewise as the
//!   reference.
//!
//! Raw NODROP is also run once per round flat out (parts `search` and
//! `block`): the reference of the block mode figures.
//!
//! A trial at target rate R sends for `--duration` S seconds, paced (message
//! i due at t0 + i/R, the publisher stopping at the first message due at or
//! after t0 + S: R x S messages). It PASSES when the publisher reported
//! what it sent and, at the subscriber: received == sent (shardcast: and
//! processed == sent), lost == 0, the stream is complete (end-of-stream with
//! the last sequence seen, every sequence up to it received once; shardcast:
//! `streams_complete`), and, when paced, the receive rate (received over
//! first to last message) is at least 98% of R, so the rate was carried,
//! not queued. A trial not finished within 2S + 10 s fails. See
//! [`RateSearch`] for the search: the answer is the highest passing rate,
//! to `--resolution`. Medians are taken over rounds; block mode and latency
//! medians only over passing trials (the count is shown).
//!
//! Usage: `lossless [--runs 3] [--duration 5] [--size 100] [--batch 64]
//! [--resolution 0.02] [--latency-rate 100000] [--idle-window 10]
//! [--sub-args "..."] [--only search,block,latency,idle] [--out DIR]
//! [--report-json FILE]` (the sibling binaries must be built: see
//! scripts/lossless).

use clap::{Parser, ValueEnum};
use serde_json::{json, Map, Value};
use shardcast_bench::{
    environment, finish_by, median, read_json, results_dir, sibling, spawn, spawn_logged,
    throughput_sub_args, word_after, RateSearch,
};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A trial's receive rate must reach this fraction of its target.
const RATE_FRACTION: f64 = 0.98;

/// The idle window starts this long after the publisher's first message.
const IDLE_SETTLE_S: f64 = 1.0;

/// The endpoint in a command line shown in the results (and replaced by
/// the real one where a command is run from a template).
const EP: &str = "<endpoint>";

/// The parts of the benchmark (`--only`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    /// The paced rate searches (drop mode): raw, one record per frame,
    /// batched, default flags.
    Search,
    /// Block mode flat out against raw NODROP flat out.
    Block,
    /// End-to-end latency at --latency-rate, raw and default flags.
    Latency,
    /// CPU time of an idle subscriber, shardcast and raw.
    Idle,
}

/// Find the highest zero-loss rate of raw libzmq (NODROP) and of shardcast;
/// block mode flat out; latency at a fixed rate; idle CPU.
#[derive(Parser)]
struct Flags {
    /// Rounds (each runs every search once, trials interleaved, and the
    /// block mode and latency trials once each).
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
    /// Rate of the latency trials, msg/s (both sides paced at it).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    latency_rate: u64,
    /// Seconds of the idle CPU window.
    #[arg(long, default_value_t = 10.0)]
    idle_window: f64,
    /// Extra arguments appended to every shardcast-sub, split on white
    /// space (no quoting); a flag given here replaces the benchmark's own
    /// setting of it (e.g. "--workers 2 --idle spin").
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    sub_args: String,
    /// Run only these parts (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Part>,
    /// Results folder (default bench/results/<date>-<host>): lossless.md,
    /// lossless.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the results JSON here.
    #[arg(long)]
    report_json: Option<PathBuf>,
}

impl Flags {
    /// Whether `part` runs.
    fn runs_part(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }

    /// `--sub-args`, split.
    fn extra_sub_args(&self) -> Vec<String> {
        self.sub_args.split_whitespace().map(String::from).collect()
    }
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
    /// The subscriber's end-to-end latency summary (ns), `Null` if none.
    latency: Value,
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
            latency: Value::Null,
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
            latency: sub["latency_ns"]["end_to_end"].clone(),
            pass: why.is_empty(),
            why: why.join(", "),
        }
    }

    /// A latency percentile (ns) of the summary, if there is one.
    fn lat(&self, key: &str) -> Option<f64> {
        self.latency[key].as_f64()
    }

    fn json(&self) -> Value {
        let mut v = json!({
            "rate": self.rate, "sent": self.sent, "received": self.received,
            "lost": self.lost, "complete": self.complete,
            "msgs_per_sec": self.msgs_per_sec, "pass": self.pass, "why": self.why,
        });
        if !self.latency.is_null() {
            v["latency_ns"] = self.latency.clone();
        }
        v
    }

    /// The received rate as a table cell, marked when the trial failed.
    fn rate_cell(&self) -> String {
        if self.pass {
            format!("{:.0}", self.msgs_per_sec)
        } else {
            format!("{:.0} (FAIL: {})", self.msgs_per_sec, self.why)
        }
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

/// A command line as shown in the results (`bin args...`).
fn shown(bin: &str, args: &[String]) -> String {
    format!("{bin} {}", args.join(" "))
}

/// Arguments of raw-zmq pub, NODROP with HWM --raw-hwm, at `rate` (0: flat
/// out) for --duration.
fn raw_pub_args(f: &Flags, rate: u64) -> Vec<String> {
    [
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
        &f.raw_hwm.to_string(),
        "--nodrop",
    ]
    .map(String::from)
    .to_vec()
}

/// Arguments of raw-zmq sub with HWM --raw-hwm.
fn raw_sub_args(f: &Flags, ep: &str) -> Vec<String> {
    ["sub", "--connect", ep, "--rcvhwm", &f.raw_hwm.to_string()]
        .map(String::from)
        .to_vec()
}

/// Raw libzmq, XPUB with NODROP -> SUB, at `rate` (0: flat out).
fn raw(f: &Flags, rate: u64, tmp: &Path) -> Trial {
    let bin = sibling("raw-zmq");
    let mut publ = spawn(&bin, &raw_pub_args(f, rate));
    let ep = word_after(&mut publ, "bound ");
    let log = tmp.join("raw-sub.log");
    let sub = spawn_logged(&bin, &raw_sub_args(f, &ep), &log);
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

/// How a shardcast publisher runs in one trial.
#[derive(Clone, Copy)]
struct PubMode {
    /// Target rate, msg/s (0: flat out).
    rate: u64,
    /// `--batch N`; `None` gives no `--batch` (the publisher's default).
    batch: Option<u32>,
    /// `--when-full block` (otherwise the default, drop).
    block: bool,
}

/// Arguments of shardcast-pub for one trial, reporting to `report`.
fn pub_args(f: &Flags, m: PubMode, report: &str) -> Vec<String> {
    let mut a: Vec<String> = [
        "--bind",
        "tcp://127.0.0.1:*",
        "--rate",
        &m.rate.to_string(),
        "--duration",
        &f.duration.to_string(),
        "--size",
        &f.size.to_string(),
    ]
    .map(String::from)
    .to_vec();
    if let Some(b) = m.batch {
        a.extend(["--batch".to_string(), b.to_string()]);
    }
    if m.block {
        a.extend(["--when-full", "block"].map(String::from));
    }
    a.extend(
        [
            "--wait-subscribers",
            "1",
            "--wait-timeout",
            "30",
            "--report-json",
            report,
        ]
        .map(String::from),
    );
    a
}

/// `base` (pairs of `--flag value`, or lone flags) with `extra` appended;
/// a flag of `base` that `extra` also gives is left out of `base`
/// (shardcast-sub refuses a flag given twice).
fn merged_args(base: Vec<String>, extra: &[String]) -> Vec<String> {
    let given = |flag: &str| {
        extra
            .iter()
            .any(|e| e == flag || e.starts_with(&format!("{flag}=")))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < base.len() {
        let has_value = base.get(i + 1).is_some_and(|v| !v.starts_with("--"));
        let n = if has_value { 2 } else { 1 };
        if !given(&base[i]) {
            out.extend_from_slice(&base[i..i + n]);
        }
        i += n;
    }
    out.extend_from_slice(extra);
    out
}

/// The benchmark's subscriber settings ([`throughput_sub_args`]) plus
/// `--sub-args`.
fn bench_sub_args(f: &Flags, ep: &str, report: &Path) -> Vec<String> {
    merged_args(throughput_sub_args(ep, report), &f.extra_sub_args())
}

/// shardcast-pub -> shardcast-sub (the benchmark's subscriber settings) in
/// mode `m`.
fn shardcast(f: &Flags, m: PubMode, tmp: &Path) -> Trial {
    let (pj, sj, log) = (
        tmp.join("pub.json"),
        tmp.join("sub.json"),
        tmp.join("sub.log"),
    );
    let _ = std::fs::remove_file(&pj);
    let _ = std::fs::remove_file(&sj);
    let rate = m.rate;
    let mut publ = spawn(
        &sibling("shardcast-pub"),
        &pub_args(f, m, pj.to_str().expect("utf-8 path")),
    );
    let ep = word_after(&mut publ, "stream 0 bound ");
    let sub = spawn_logged(
        &sibling("shardcast-sub"),
        &bench_sub_args(f, &ep, &sj),
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

/// What a search or a block mode trial runs: raw NODROP, or shardcast with
/// `--batch N` (`None`: default flags).
#[derive(Clone, Copy)]
enum Kind {
    Raw,
    Shardcast(Option<u32>),
}

/// One side's search in one round.
struct Side {
    key: &'static str,
    kind: Kind,
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

/// Median of a list, `None` when it is empty.
fn median_of(v: Vec<f64>) -> Option<f64> {
    (!v.is_empty()).then(|| median(v))
}

/// A number or "n/a", for the results.
fn or_na(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.digits$}"))
}

/// Nanoseconds as microseconds, or "n/a".
fn us(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{:.1}", x / 1000.0))
}

/// The block mode variants: (key, --batch) as in the searches.
fn block_variants(b: u32) -> [(&'static str, Option<u32>); 3] {
    [
        ("shardcast", Some(1)),
        ("shardcast_batch", Some(b)),
        ("shardcast_default", None),
    ]
}

/// Label of a shardcast variant, for the results.
fn label(batch: Option<u32>) -> String {
    match batch {
        Some(1) => "shardcast --batch 1".to_string(),
        Some(b) => format!("shardcast --batch {b}"),
        None => "shardcast default flags".to_string(),
    }
}

/// One round's block mode trials, against that round's raw flat out.
struct BlockRound {
    trials: Vec<(&'static str, Option<u32>, Trial)>,
}

/// CPU time of a process's threads: total ticks and ticks per thread name.
struct CpuSample {
    at: Instant,
    total: u64,
    threads: BTreeMap<String, u64>,
}

/// utime + stime (clock ticks) from a `/proc/.../stat` line.
fn stat_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name (which may hold spaces and parentheses):
    // state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Sample the CPU time of process `pid` and of each of its threads
/// (grouped by thread name).
fn cpu_sample(pid: u32) -> Option<CpuSample> {
    let at = Instant::now();
    let total = stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let mut threads = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in dir.flatten() {
            let p = e.path();
            let (Ok(stat), Ok(comm)) = (
                std::fs::read_to_string(p.join("stat")),
                std::fs::read_to_string(p.join("comm")),
            ) else {
                continue;
            };
            if let Some(t) = stat_ticks(&stat) {
                *threads.entry(comm.trim().to_string()).or_insert(0) += t;
            }
        }
    }
    Some(CpuSample { at, total, threads })
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is touched.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// One idle CPU measurement.
struct Idle {
    /// The subscriber's command (endpoint as a placeholder).
    command: String,
    /// The publisher's command.
    pub_command: String,
    /// Seconds the window lasted.
    window_s: f64,
    /// CPU seconds the subscriber used in it (all threads).
    cpu_s: f64,
    /// CPU seconds per thread name.
    threads: BTreeMap<String, f64>,
    ok: bool,
    why: String,
}

impl Idle {
    fn failed(command: String, pub_command: String, why: String) -> Idle {
        Idle {
            command,
            pub_command,
            window_s: 0.0,
            cpu_s: 0.0,
            threads: BTreeMap::new(),
            ok: false,
            why,
        }
    }

    /// CPU time as a percentage of one core.
    fn percent(&self) -> f64 {
        if self.window_s > 0.0 {
            100.0 * self.cpu_s / self.window_s
        } else {
            0.0
        }
    }

    fn json(&self) -> Value {
        json!({
            "command": self.command, "publisher_command": self.pub_command,
            "window_s": self.window_s, "cpu_s": self.cpu_s,
            "percent_of_one_core": self.percent(), "threads_cpu_s": self.threads,
            "ok": self.ok, "why": self.why,
        })
    }

    /// The measurement as a table cell pair: CPU s and % of a core.
    fn cells(&self) -> (String, String) {
        if self.ok {
            (
                format!("{:.3}", self.cpu_s),
                format!("{:.2}", self.percent()),
            )
        } else {
            (format!("FAIL: {}", self.why), "n/a".to_string())
        }
    }
}

/// Read a publisher's stderr until `bound` (return the word after it), then
/// in the background: signal `first` on the channel when a line contains
/// it, and drain the rest.
fn watch_publisher(child: &mut Child, bound: &str, first: &str) -> (String, mpsc::Receiver<()>) {
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let (tx, rx) = mpsc::channel();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.split(bound).nth(1) {
            let ep = rest.split_whitespace().next().unwrap_or("").to_string();
            let first = first.to_string();
            std::thread::spawn(move || {
                for l in lines.map_while(Result::ok) {
                    if l.contains(&first) {
                        let _ = tx.send(());
                    }
                }
            });
            return (ep, rx);
        }
    }
    (String::new(), rx)
}

/// Measure the idle CPU time of a subscriber: start the publisher
/// (`pub_bin pub_args`, printing `bound` then `first` on stderr), then the
/// subscriber (`sub_bin sub_args`, [`EP`] replaced by the endpoint); from
/// `IDLE_SETTLE_S`
/// after the first message, sample its CPU time over `--idle-window`.
fn idle(
    f: &Flags,
    (pub_bin, pub_args): (&str, Vec<String>),
    (bound, first): (&str, &str),
    (sub_bin, sub_args): (&str, Vec<String>),
    log: &Path,
) -> Idle {
    let command = shown(sub_bin, &sub_args);
    let pub_command = shown(pub_bin, &pub_args);
    let fail = |why: String| Idle::failed(command.clone(), pub_command.clone(), why);
    let mut publ = spawn(&sibling(pub_bin), &pub_args);
    let (ep, first_rx) = watch_publisher(&mut publ, bound, first);
    if ep.is_empty() {
        let _ = finish_by(publ, Instant::now());
        return fail(format!("{pub_bin} printed no '{bound}' line"));
    }
    let sub_args: Vec<String> = sub_args
        .into_iter()
        .map(|a| if a == EP { ep.clone() } else { a })
        .collect();
    let mut sub = spawn_logged(&sibling(sub_bin), &sub_args, log);
    let window = Duration::from_secs_f64(f.idle_window);
    // Wait for the first message; a subscriber that exits first (bad
    // flags) fails the measurement at once.
    let waited = Instant::now() + Duration::from_secs(30);
    let first = loop {
        match first_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(()) => break Ok(()),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(format!("{pub_bin} ended before its first message"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Ok(Some(st)) = sub.try_wait() {
            break Err(format!("{sub_bin} exited ({st}): {}", last_line(log)));
        }
        if Instant::now() >= waited {
            break Err(format!("{pub_bin} sent no first message within 30 s"));
        }
    };
    let measured = match first {
        Err(why) => Err(why),
        Ok(()) => {
            std::thread::sleep(Duration::from_secs_f64(IDLE_SETTLE_S));
            let a = cpu_sample(sub.id());
            std::thread::sleep(window);
            let b = cpu_sample(sub.id());
            match (a, b, sub.try_wait()) {
                (_, _, Ok(Some(st))) => Err(format!(
                    "{sub_bin} exited ({st}) during the window: {}",
                    last_line(log)
                )),
                (Some(a), Some(b), _) => Ok((a, b)),
                _ => Err(format!("could not read /proc/{}/stat", sub.id())),
            }
        }
    };
    let end = Instant::now() + window + Duration::from_secs(15);
    let (_, st) = finish_by(sub, end);
    // A failed measurement ends the publisher at once (it may be waiting
    // for a subscriber that is gone).
    let grace = Duration::from_secs(if measured.is_ok() { 15 } else { 0 });
    let (_, pst) = finish_by(publ, Instant::now() + grace);
    let (a, b) = match measured {
        Err(why) => return fail(why),
        Ok(s) => s,
    };
    if !st.is_some_and(|s| s.success()) {
        return fail(format!("{sub_bin} ended {st:?}: {}", last_line(log)));
    }
    if !pst.is_some_and(|s| s.success()) {
        return fail(format!("{pub_bin} ended {pst:?}"));
    }
    let tck = clock_ticks();
    let threads = b
        .threads
        .iter()
        .map(|(name, t)| {
            let before = a.threads.get(name).copied().unwrap_or(0);
            (name.clone(), t.saturating_sub(before) as f64 / tck)
        })
        .collect();
    Idle {
        command,
        pub_command,
        window_s: (b.at - a.at).as_secs_f64(),
        cpu_s: b.total.saturating_sub(a.total) as f64 / tck,
        threads,
        ok: true,
        why: String::new(),
    }
}

/// The idle measurements: shardcast-sub with its default flags (plus
/// `--sub-args`), then raw-zmq sub, each on a feed of one message a second.
fn idle_pair(f: &Flags, tmp: &Path) -> (Idle, Idle) {
    let secs = (IDLE_SETTLE_S + f.idle_window + 3.0).ceil().to_string();
    let shard_sub = merged_args(
        ["--connect", EP].map(String::from).to_vec(),
        &f.extra_sub_args(),
    );
    let shard = idle(
        f,
        (
            "shardcast-pub",
            [
                "--bind",
                "tcp://127.0.0.1:*",
                "--rate",
                "1",
                "--duration",
                &secs,
                "--size",
                &f.size.to_string(),
                "--wait-subscribers",
                "1",
                "--wait-timeout",
                "30",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ("stream 0 bound ", "first data message sent"),
        ("shardcast-sub", shard_sub),
        &tmp.join("idle-sub.log"),
    );
    let raw = idle(
        f,
        (
            "raw-zmq",
            [
                "pub",
                "--bind",
                "tcp://127.0.0.1:*",
                "--count",
                &u64::MAX.to_string(),
                "--rate",
                "1",
                "--duration",
                &secs,
                "--size",
                &f.size.to_string(),
            ]
            .map(String::from)
            .to_vec(),
        ),
        ("bound ", "subscribed; sending"),
        (
            "raw-zmq",
            ["sub", "--connect", EP].map(String::from).to_vec(),
        ),
        &tmp.join("idle-raw-sub.log"),
    );
    (shard, raw)
}

/// One round's latency pair.
struct LatencyRound {
    raw: Trial,
    shardcast: Trial,
}

impl LatencyRound {
    /// shardcast's p99 over raw's, when both passed.
    fn p99_ratio(&self) -> Option<f64> {
        if !(self.raw.pass && self.shardcast.pass) {
            return None;
        }
        match (self.raw.lat("p99"), self.shardcast.lat("p99")) {
            (Some(r), Some(s)) if r > 0.0 => Some(s / r),
            _ => None,
        }
    }
}

/// Latency percentiles shown: (JSON key, label).
const PERCENTILES: [(&str, &str); 4] = [
    ("p50", "p50"),
    ("p99", "p99"),
    ("p999", "p99.9"),
    ("max", "max"),
];

fn main() {
    let f = Flags::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let dir = f.out.clone().unwrap_or_else(results_dir);
    std::fs::create_dir_all(&dir).expect("results folder");
    let tmp = std::env::temp_dir().join(format!("lossless-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let b = f.batch;
    let (do_search, do_block, do_latency, do_idle) = (
        f.runs_part(Part::Search),
        f.runs_part(Part::Block),
        f.runs_part(Part::Latency),
        f.runs_part(Part::Idle),
    );
    let mut md = format!(
        "| round | raw NODROP flat out msg/s | raw NODROP lossless msg/s | shardcast lossless msg/s | ratio | shardcast --batch {b} lossless msg/s | ratio | shardcast default flags lossless msg/s | ratio |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    let (mut flat_v, mut raw_v, mut one_v, mut bat_v, mut def_v) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut one_r, mut bat_r, mut def_r) = (vec![], vec![], vec![]);
    let mut flats: Vec<Trial> = Vec::new();
    let mut blocks: Vec<BlockRound> = Vec::new();
    let mut lats: Vec<LatencyRound> = Vec::new();
    let mut rounds = Vec::new();
    for round in 1..=f.runs {
        let mut v = json!({"round": round});
        if do_search || do_block {
            eprintln!("lossless: round {round}: raw libzmq NODROP flat out");
            let flat = raw(&f, 0, &tmp);
            eprintln!(
                "lossless:   {:.0} msg/s {}",
                flat.msgs_per_sec,
                if flat.pass { "lossless" } else { &flat.why }
            );
            v["raw_nodrop_flat_out"] = flat.json();
            flats.push(flat);
        }
        if do_block {
            let mut br = BlockRound { trials: vec![] };
            let mut bj = json!({});
            for (key, batch) in block_variants(b) {
                let m = PubMode {
                    rate: 0,
                    batch,
                    block: true,
                };
                let t = shardcast(&f, m, &tmp);
                eprintln!(
                    "lossless: round {round}: block mode flat out, {}: {:.0} msg/s received, {}",
                    label(batch),
                    t.msgs_per_sec,
                    if t.pass { "lossless" } else { &t.why }
                );
                bj[key] = t.json();
                br.trials.push((key, batch, t));
            }
            let flat = flats.last().expect("raw flat out ran");
            for (key, _, t) in &br.trials {
                bj[format!("{key}_ratio")] = json!((flat.pass && t.pass)
                    .then(|| t.msgs_per_sec / flat.msgs_per_sec.max(f64::MIN_POSITIVE)));
            }
            v["block_flat_out"] = bj;
            blocks.push(br);
        }
        if do_search {
            let flat = flats.last().expect("raw flat out ran");
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
                ("raw", Kind::Raw),
                ("shardcast", Kind::Shardcast(Some(1))),
                ("shardcast_batch", Kind::Shardcast(Some(b))),
                ("shardcast_default", Kind::Shardcast(None)),
            ]
            .map(|(key, kind)| Side {
                key,
                kind,
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
                    let t = match side.kind {
                        Kind::Raw => raw(&f, rate, &tmp),
                        Kind::Shardcast(batch) => shardcast(
                            &f,
                            PubMode {
                                rate,
                                batch,
                                block: false,
                            },
                            &tmp,
                        ),
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
            let [r, one, bat, def] = &sides;
            let (ro, rb, rd) = (
                ratio(one.highest(), r.highest()),
                ratio(bat.highest(), r.highest()),
                ratio(def.highest(), r.highest()),
            );
            let row = format!(
                "| {round} | {} | {} | {} | {ro:.2} | {} | {rb:.2} | {} | {rd:.2} |\n",
                flat.rate_cell(),
                r.cell(),
                one.cell(),
                bat.cell(),
                def.cell()
            );
            md.push_str(&row);
            flat_v.push(flat.msgs_per_sec);
            raw_v.push(r.highest() as f64);
            one_v.push(one.highest() as f64);
            bat_v.push(bat.highest() as f64);
            def_v.push(def.highest() as f64);
            one_r.push(ro);
            bat_r.push(rb);
            def_r.push(rd);
            v["shardcast_ratio"] = json!(ro);
            v["shardcast_batch_ratio"] = json!(rb);
            v["shardcast_default_ratio"] = json!(rd);
            for s in &sides {
                v[s.key] = s.json();
            }
        }
        if do_latency {
            let rate = f.latency_rate;
            let run_raw = || raw(&f, rate, &tmp);
            let run_shard = || {
                shardcast(
                    &f,
                    PubMode {
                        rate,
                        batch: None,
                        block: false,
                    },
                    &tmp,
                )
            };
            let (raw_t, shard_t) = if round % 2 == 1 {
                let r = run_raw();
                (r, run_shard())
            } else {
                let s = run_shard();
                (run_raw(), s)
            };
            for (name, t) in [("raw", &raw_t), ("shardcast default flags", &shard_t)] {
                eprintln!(
                    "lossless: round {round}: latency at {rate} msg/s, {name}: p50 {} us, p99 {} us, {}",
                    us(t.lat("p50")),
                    us(t.lat("p99")),
                    if t.pass { "PASS" } else { &t.why }
                );
            }
            let lr = LatencyRound {
                raw: raw_t,
                shardcast: shard_t,
            };
            v["latency"] = json!({
                "rate": rate, "raw": lr.raw.json(), "shardcast_default": lr.shardcast.json(),
                "p99_ratio": lr.p99_ratio(),
            });
            lats.push(lr);
        }
        rounds.push(v);
    }

    // The paced searches.
    let mut med = Map::new();
    let mut summary = Vec::new();
    let sub_note = if f.sub_args.trim().is_empty() {
        String::new()
    } else {
        format!(", plus --sub-args `{}`", f.sub_args.trim())
    };
    let mut sections = String::new();
    if do_search {
        for (k, v) in [
            ("raw_nodrop_flat_out_msgs_per_sec", flat_v),
            ("raw_msgs_per_sec", raw_v),
            ("shardcast_msgs_per_sec", one_v),
            ("shardcast_batch_msgs_per_sec", bat_v),
            ("shardcast_ratio", one_r),
            ("shardcast_batch_ratio", bat_r),
            ("shardcast_default_msgs_per_sec", def_v),
            ("shardcast_default_ratio", def_r),
        ] {
            med.insert(k.into(), json!(median(v)));
        }
        let n = |k: &str| med[k].as_f64().unwrap_or(0.0);
        let line = format!(
            "median of {} rounds: raw libzmq NODROP lossless {:.0} msg/s (flat out {:.0}); shardcast {:.0} msg/s = {:.2} x raw; shardcast --batch {b} {:.0} msg/s = {:.2} x raw; shardcast default flags {:.0} msg/s = {:.2} x raw",
            f.runs,
            n("raw_msgs_per_sec"),
            n("raw_nodrop_flat_out_msgs_per_sec"),
            n("shardcast_msgs_per_sec"),
            n("shardcast_ratio"),
            n("shardcast_batch_msgs_per_sec"),
            n("shardcast_batch_ratio"),
            n("shardcast_default_msgs_per_sec"),
            n("shardcast_default_ratio"),
        );
        summary.push(format!("- lossless paced (drop mode, rate search): {line}"));
        let criterion = format!(
            "A trial at rate R sends {} s paced (R x {} messages of {} B, one stream, TCP loopback) and passes when received == sent (shardcast: and processed == sent), lost == 0, the stream is complete, and the receive rate is at least {RATE_FRACTION} x R. Each search starts at {} msg/s, doubles after a pass (halves after a failure) until it has a pass and a failure, then bisects until the lowest failure is within {}% of the highest pass (bounds {}..{} msg/s, at most {} trials). Raw: XPUB with ZMQ_XPUB_NODROP -> SUB, HWM {} at both ends. shardcast: one worker, --fanout push, --work none, default HWMs{sub_note}.",
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
        let pj = "<pub.json>";
        let cmds = [
            shown("raw-zmq", &raw_pub_args(&f, 0)).replace("--rate 0", "--rate R"),
            shown("raw-zmq", &raw_sub_args(&f, EP)),
            shown(
                "shardcast-pub",
                &pub_args(
                    &f,
                    PubMode {
                        rate: 0,
                        batch: Some(1),
                        block: false,
                    },
                    pj,
                ),
            )
            .replace("--rate 0", "--rate R")
            .replace("--batch 1", "[--batch 1 | --batch N | no --batch]"),
            shown(
                "shardcast-sub",
                &bench_sub_args(&f, EP, Path::new("<sub.json>")),
            ),
        ];
        sections.push_str(&format!(
            "## Lossless paced, drop mode (rate search)\n\n{criterion}\n\nProcesses of a trial:\n\n```\n{}\n```\n\n{md}\n{line}\n\n",
            cmds.join("\n")
        ));
    }

    // Block mode flat out.
    let mut block_json = Value::Null;
    if do_block {
        let mut t = format!(
            "| round | raw NODROP flat out msg/s |{}\n|---|---|{}\n",
            block_variants(b)
                .iter()
                .map(|(_, batch)| format!(" {} block msg/s | ratio |", label(*batch)))
                .collect::<String>(),
            "---|---|".repeat(3)
        );
        for (i, (br, flat)) in blocks.iter().zip(&flats).enumerate() {
            t.push_str(&format!("| {} | {} |", i + 1, flat.rate_cell()));
            for (_, _, tr) in &br.trials {
                let r = (flat.pass && tr.pass).then(|| tr.msgs_per_sec / flat.msgs_per_sec);
                t.push_str(&format!(" {} | {} |", tr.rate_cell(), or_na(r, 2)));
            }
            t.push('\n');
        }
        let flat_pass: Vec<f64> = flats
            .iter()
            .filter(|t| t.pass)
            .map(|t| t.msgs_per_sec)
            .collect();
        let flat_n = flat_pass.len();
        let raw_med = median_of(flat_pass);
        let mut bmed = json!({
            "raw_nodrop_flat_out_msgs_per_sec": raw_med,
            "raw_nodrop_flat_out_passed": flat_n,
        });
        let mut parts = vec![format!(
            "raw NODROP flat out {} msg/s ({flat_n} of {} lossless)",
            or_na(raw_med, 0),
            flats.len()
        )];
        for (k, (key, batch)) in block_variants(b).into_iter().enumerate() {
            let (mut rates, mut ratios) = (vec![], vec![]);
            for (br, flat) in blocks.iter().zip(&flats) {
                let tr = &br.trials[k].2;
                if tr.pass {
                    rates.push(tr.msgs_per_sec);
                    if flat.pass {
                        ratios.push(tr.msgs_per_sec / flat.msgs_per_sec);
                    }
                }
            }
            let n = rates.len();
            let (rm, qm) = (median_of(rates), median_of(ratios));
            bmed[format!("{key}_msgs_per_sec")] = json!(rm);
            bmed[format!("{key}_ratio")] = json!(qm);
            bmed[format!("{key}_passed")] = json!(n);
            parts.push(format!(
                "{} {} msg/s = {} x raw ({n} of {} lossless)",
                label(batch),
                or_na(rm, 0),
                or_na(qm, 2),
                blocks.len()
            ));
        }
        let line = format!(
            "median of {} rounds, block mode flat out: {}",
            f.runs,
            parts.join("; ")
        );
        summary.push(format!("- {line}"));
        let cmds = [
            shown("raw-zmq", &raw_pub_args(&f, 0)),
            shown("raw-zmq", &raw_sub_args(&f, EP)),
            shown(
                "shardcast-pub",
                &pub_args(
                    &f,
                    PubMode {
                        rate: 0,
                        batch: Some(1),
                        block: true,
                    },
                    "<pub.json>",
                ),
            )
            .replace(
                "--batch 1",
                &format!("[--batch 1 | --batch {b} | no --batch]"),
            ),
            shown(
                "shardcast-sub",
                &bench_sub_args(&f, EP, Path::new("<sub.json>")),
            ),
        ];
        sections.push_str(&format!(
            "## Block mode, flat out\n\nEach side sends flat out for {} s, its publisher waiting for the subscriber instead of dropping (raw: ZMQ_XPUB_NODROP, HWM {}; shardcast: --when-full block, default HWMs). The rate is what the subscriber received over first to last message; a trial passes when it is lossless (received == sent, lost == 0, complete; shardcast: processed == sent). Ratios are to the same round's raw NODROP flat out; medians are over passing trials.\n\nProcesses of a trial:\n\n```\n{}\n```\n\n{t}\n{line}\n\n",
            f.duration,
            f.raw_hwm,
            cmds.join("\n")
        ));
        block_json = json!({"median": bmed});
    }

    // Latency at --latency-rate.
    let mut latency_json = Value::Null;
    if do_latency {
        let rate = f.latency_rate;
        let mut t = String::from("| round | side | msg/s received |");
        for (_, l) in PERCENTILES {
            t.push_str(&format!(" {l} us |"));
        }
        t.push_str(" p99 shardcast / raw |\n|---|---|---|");
        t.push_str(&"---|".repeat(PERCENTILES.len() + 1));
        t.push('\n');
        for (i, lr) in lats.iter().enumerate() {
            for (name, tr, r) in [
                ("raw NODROP", &lr.raw, String::new()),
                (
                    "shardcast default flags",
                    &lr.shardcast,
                    or_na(lr.p99_ratio(), 2),
                ),
            ] {
                t.push_str(&format!("| {} | {name} | {} |", i + 1, tr.rate_cell()));
                for (k, _) in PERCENTILES {
                    t.push_str(&format!(" {} |", us(tr.lat(k))));
                }
                t.push_str(&format!(" {r} |\n"));
            }
        }
        let side_med = |pick: fn(&LatencyRound) -> &Trial| {
            let ok: Vec<&Trial> = lats.iter().map(pick).filter(|t| t.pass).collect();
            let mut m = json!({"passed": ok.len()});
            for (k, _) in PERCENTILES {
                m[format!("{k}_ns")] =
                    json!(median_of(ok.iter().filter_map(|t| t.lat(k)).collect()));
            }
            m
        };
        let (rm, sm) = (side_med(|l| &l.raw), side_med(|l| &l.shardcast));
        let qm = median_of(lats.iter().filter_map(LatencyRound::p99_ratio).collect());
        let g = |m: &Value, k: &str| m[k].as_f64();
        let line = format!(
            "median of {} rounds at {rate} msg/s: p99 raw libzmq {} us, shardcast default flags {} us = {} x raw (p50 raw {} us, shardcast {} us; {} and {} of {} trials passed)",
            f.runs,
            us(g(&rm, "p99_ns")),
            us(g(&sm, "p99_ns")),
            or_na(qm, 2),
            us(g(&rm, "p50_ns")),
            us(g(&sm, "p50_ns")),
            rm["passed"],
            sm["passed"],
            lats.len()
        );
        summary.push(format!("- latency: {line}"));
        let cmds = [
            shown("raw-zmq", &raw_pub_args(&f, rate)),
            shown("raw-zmq", &raw_sub_args(&f, EP)),
            shown(
                "shardcast-pub",
                &pub_args(
                    &f,
                    PubMode {
                        rate,
                        batch: None,
                        block: false,
                    },
                    "<pub.json>",
                ),
            ),
            shown(
                "shardcast-sub",
                &bench_sub_args(&f, EP, Path::new("<sub.json>")),
            ),
        ];
        sections.push_str(&format!(
            "## Latency at {rate} msg/s\n\nBoth sides paced at {rate} msg/s for {} s ({} B, one stream), alternating (raw first in odd rounds); end-to-end latency from each message's intended send time to its receipt (raw: at its SUB; shardcast: work done at the worker, the report's latency_ns.end_to_end), every message timed. A trial passes as in the rate search (lossless, the rate carried); medians are over passing trials.\n\nProcesses of a trial:\n\n```\n{}\n```\n\n{t}\n{line}\n\n",
            f.duration,
            f.size,
            cmds.join("\n")
        ));
        latency_json = json!({
            "rate": rate, "raw": rm, "shardcast_default": sm, "p99_ratio": qm,
        });
    }

    // Idle CPU.
    let mut idle_json = Value::Null;
    if do_idle {
        eprintln!(
            "lossless: idle CPU over {} s: shardcast-sub, then raw-zmq sub",
            f.idle_window
        );
        let (shard, rawi) = idle_pair(&f, &tmp);
        let mut t = String::from(
            "| subscriber | window s | CPU s | % of one core | busiest threads (CPU s) |\n|---|---|---|---|---|\n",
        );
        let shard_name = if f.sub_args.trim().is_empty() {
            "shardcast-sub, default flags".to_string()
        } else {
            format!("shardcast-sub, default flags + `{}`", f.sub_args.trim())
        };
        for (name, m) in [(shard_name.as_str(), &shard), ("raw-zmq sub", &rawi)] {
            let (c, p) = m.cells();
            let mut th: Vec<(&String, &f64)> = m.threads.iter().collect();
            th.sort_by(|a, b| b.1.total_cmp(a.1));
            let th = th
                .iter()
                .take(4)
                .map(|(n, s)| format!("{n} {s:.3}"))
                .collect::<Vec<_>>()
                .join(", ");
            t.push_str(&format!(
                "| {name} | {:.1} | {c} | {p} | {th} |\n",
                m.window_s
            ));
            eprintln!("lossless:   {name}: {c} CPU s, {p}% of a core");
        }
        let pct = |m: &Idle| m.ok.then(|| m.percent());
        let line = format!(
            "idle CPU over {} s of a quiet feed (1 msg/s): {shard_name} {} CPU s = {}% of one core; raw-zmq sub {} CPU s = {}%",
            f.idle_window,
            or_na(shard.ok.then_some(shard.cpu_s), 3),
            or_na(pct(&shard), 2),
            or_na(rawi.ok.then_some(rawi.cpu_s), 3),
            or_na(pct(&rawi), 2),
        );
        summary.push(format!("- idle: {line}"));
        sections.push_str(&format!(
            "## Idle CPU\n\nEach subscriber, with its default flags{sub_note}, receives a quiet feed: one {} B message a second (shardcast-pub also sends a heartbeat after 100 ms without data). Its process CPU time (utime + stime of all its threads, /proc/PID/stat, in clock ticks of 1/{} s) is sampled {IDLE_SETTLE_S} s after the publisher sent its first message and again {} s later.\n\nProcesses:\n\n```\n{}\n{}\n{}\n{}\n```\n\n{t}\n{line}\n\n",
            f.size,
            clock_ticks(),
            f.idle_window,
            shard.pub_command,
            shard.command,
            rawi.pub_command,
            rawi.command,
        ));
        idle_json = json!({
            "window_s": f.idle_window, "settle_s": IDLE_SETTLE_S, "feed_msgs_per_sec": 1,
            "shardcast_sub": shard.json(), "raw_sub": rawi.json(),
        });
    }

    let env = environment(&command);
    let report = format!(
        "# Lossless highest rate\n\n{env}\n## Summary ({} B, one stream, TCP loopback)\n\n{}\n\n{sections}",
        f.size,
        summary.join("\n")
    );
    print!("{report}");
    shardcast_bench::write_file(dir.join("lossless.md"), &report).expect("lossless.md");
    let only: Vec<String> = f
        .only
        .iter()
        .map(|p| format!("{p:?}").to_lowercase())
        .collect();
    let mut v = json!({
        "command": command, "duration_s": f.duration, "size": f.size, "batch": b,
        "raw_hwm": f.raw_hwm, "rate_fraction": RATE_FRACTION,
        "search": {"from": f.search_from, "min": f.search_min, "max": f.search_max,
                   "resolution": f.resolution, "max_trials": f.search_steps},
        "rounds": rounds, "median": med,
        "sub_args": f.sub_args, "only": only,
    });
    for (k, x) in [
        ("block_flat_out", block_json),
        ("latency", latency_json),
        ("idle", idle_json),
    ] {
        if !x.is_null() {
            v[k] = x;
        }
    }
    let bytes = serde_json::to_vec_pretty(&v).expect("json");
    shardcast_bench::write_file(dir.join("lossless.json"), &bytes).expect("lossless.json");
    if let Some(path) = &f.report_json {
        shardcast_bench::write_file(path, &bytes).expect("write --report-json");
    }
    let _ = std::fs::remove_dir_all(&tmp);
    println!("results in {}", dir.display());
}

#[cfg(test)]
mod tests {
    use super::{merged_args, stat_ticks};

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn sub_args_replace_the_benchmarks_own_flags() {
        let base = s(&[
            "--connect",
            "e",
            "--workers",
            "1",
            "--flag",
            "--work",
            "none",
        ]);
        assert_eq!(
            merged_args(base.clone(), &s(&["--workers", "2", "--idle=spin"])),
            s(&[
                "--connect",
                "e",
                "--flag",
                "--work",
                "none",
                "--workers",
                "2",
                "--idle=spin"
            ])
        );
        assert_eq!(
            merged_args(base.clone(), &s(&["--work=book", "--flag"])),
            s(&["--connect", "e", "--workers", "1", "--work=book", "--flag"])
        );
        assert_eq!(merged_args(base.clone(), &[]), base);
    }

    #[test]
    fn stat_ticks_skip_a_command_name_with_spaces() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0";
        assert_eq!(stat_ticks(stat), Some(12));
        assert_eq!(stat_ticks("garbage"), None);
    }
}
