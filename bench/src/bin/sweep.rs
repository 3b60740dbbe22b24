//! The rate sweep: drives the real `shardcast-pub` and `shardcast-sub`
//! processes over rate x message size x streams x workers, and in the same
//! run a raw libzmq XPUB->SUB pair (`raw-zmq`) at the same rate and size, so
//! every shardcast figure has a ratio beside it. Each point runs a warm-up
//! (left out of the histograms) then a measured phase. A point FAILS when
//! the achieved rate is under the target, anything was lost, the stream was
//! not complete, or p99 is over the SLO. `--search-steps N` then looks for
//! the highest rate that passes (one stream, one worker, and raw alike).
//!
//! Results go to `--out` (default `bench/results/<date>-<host>/`): the
//! environment, one `.hgrm`, JSON and SVG plot per point, `results.json` and
//! `summary.md`.

use clap::Parser;
use serde_json::{json, Value};
use shardcast_bench::{
    bound_endpoints, environment, finish, read_json, results_dir, sibling, spawn, word_after,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sweep shardcast against raw libzmq over rates, sizes, streams, workers.
#[derive(Parser)]
struct Flags {
    /// Target rates, msg/s across all streams.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000u64, 100_000])]
    rates: Vec<u64>,
    /// Message sizes, bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [100u64])]
    sizes: Vec<u64>,
    /// Stream counts.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    streams: Vec<usize>,
    /// Worker counts.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    workers: Vec<usize>,
    /// Warm-up seconds per point (sent, not timed).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Measured seconds per point.
    #[arg(long, default_value_t = 3.0)]
    measure: f64,
    /// A point fails when its end-to-end p99 is above this, microseconds.
    #[arg(long, default_value_t = 5_000.0)]
    slo_p99_us: f64,
    /// Steps of the search for the highest passing rate (0: no search).
    #[arg(long, default_value_t = 0)]
    search_steps: usize,
    /// First rate the search tries.
    #[arg(long, default_value_t = 200_000)]
    search_from: u64,
    /// Runs per point, raw and shardcast alternating; the run with the
    /// median p99 stands for the point (these machines are noisy).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Results folder (default bench/results/<date>-<host>).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Point {
    rate: u64,
    size: u64,
    streams: usize,
    workers: usize,
}

struct Outcome {
    achieved: f64,
    lost: u64,
    latency: Value,
    pass: bool,
    why: String,
}

impl Outcome {
    /// Judge a subscriber report (shardcast's or raw-zmq's: both carry
    /// `msgs_per_sec`, `lost` and `latency_ns.end_to_end`) against `target`.
    fn judged(f: &Flags, target: u64, report: &Value, complete: bool) -> Outcome {
        let latency = report["latency_ns"]["end_to_end"].clone();
        let achieved = report["msgs_per_sec"].as_f64().unwrap_or(0.0);
        let lost = report["lost"].as_u64().unwrap_or(u64::MAX);
        let (pass, why) = judge(f, target, achieved, lost, complete, &latency);
        Outcome {
            achieved,
            lost,
            latency,
            pass,
            why,
        }
    }

    /// A run whose process failed: nothing measured.
    fn failed(why: String) -> Outcome {
        Outcome {
            achieved: 0.0,
            lost: 0,
            latency: Value::Null,
            pass: false,
            why,
        }
    }
}

fn ns(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

fn judge(
    f: &Flags,
    target: u64,
    achieved: f64,
    lost: u64,
    complete: bool,
    lat: &Value,
) -> (bool, String) {
    let mut why = Vec::new();
    if achieved < 0.98 * target as f64 {
        why.push(format!("rate {achieved:.0} < target"));
    }
    if lost > 0 {
        why.push(format!("lost {lost}"));
    }
    if !complete {
        why.push("incomplete".to_string());
    }
    if ns(lat, "p99") / 1e3 > f.slo_p99_us {
        why.push(format!("p99 {:.0} us > SLO", ns(lat, "p99") / 1e3));
    }
    (why.is_empty(), why.join(", "))
}

fn count_for(f: &Flags, rate: u64) -> u64 {
    ((f.warmup + f.measure) * rate as f64) as u64
}

fn run_shardcast(f: &Flags, p: Point, dir: &Path) -> Outcome {
    let name = format!(
        "shardcast-r{}-s{}-n{}-w{}",
        p.rate, p.size, p.streams, p.workers
    );
    let mut pa: Vec<String> = Vec::new();
    for _ in 0..p.streams {
        pa.extend(["--bind".into(), "tcp://127.0.0.1:*".into()]);
    }
    pa.extend(
        [
            "--rate",
            &p.rate.to_string(),
            "--count",
            &count_for(f, p.rate).to_string(),
            "--size",
            &p.size.to_string(),
            "--symbols",
            "500",
            "--wait-subscribers",
            "1",
        ]
        .map(String::from),
    );
    let mut publ = spawn(&sibling("shardcast-pub"), &pa);
    let eps = bound_endpoints(&mut publ, p.streams);
    let mut sa: Vec<String> = Vec::new();
    for ep in eps {
        sa.extend(["--connect".into(), ep]);
    }
    let file = |ext: &str| {
        dir.join(format!("{name}.{ext}"))
            .to_string_lossy()
            .into_owned()
    };
    sa.extend(
        [
            "--workers",
            &p.workers.to_string(),
            "--fanout",
            "keyed",
            "--work",
            "book",
            "--warmup",
            &f.warmup.to_string(),
            "--on-slow",
            "warn",
            "--max-lag-ms",
            "60000",
            "--hgrm",
            &file("hgrm"),
            "--plot",
            &file("svg"),
            "--report-json",
            &file("json"),
        ]
        .map(String::from),
    );
    let sub = spawn(&sibling("shardcast-sub"), &sa);
    let (_, code) = finish(sub);
    let _ = finish(publ);
    if code != Some(0) {
        return Outcome::failed(format!("subscriber exited {code:?}"));
    }
    let s = read_json(Path::new(&file("json")));
    let complete = s["streams_complete"] == true;
    Outcome::judged(f, p.rate, &s, complete)
}

fn run_raw(f: &Flags, rate: u64, size: u64, dir: &Path) -> Outcome {
    let name = format!("raw-r{rate}-s{size}");
    let bin = sibling("raw-zmq");
    let mut publ = spawn(
        &bin,
        &[
            "pub",
            "--bind",
            "tcp://127.0.0.1:*",
            "--rate",
            &rate.to_string(),
            "--count",
            &count_for(f, rate).to_string(),
            "--size",
            &size.to_string(),
        ]
        .map(String::from),
    );
    let ep = word_after(&mut publ, "bound ");
    let hgrm = dir.join(format!("{name}.hgrm"));
    let warm = ((f.warmup * rate as f64) as u64).to_string();
    let sub = spawn(
        &bin,
        &[
            "sub",
            "--connect",
            &ep,
            "--warmup-count",
            &warm,
            "--hgrm",
            &hgrm.to_string_lossy(),
        ]
        .map(String::from),
    );
    let (out, code) = finish(sub);
    let _ = finish(publ);
    let v: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
    let _ = shardcast_bench::write_file(dir.join(format!("{name}.json")), &out);
    if code != Some(0) {
        return Outcome::failed(format!("raw-zmq sub exited {code:?}"));
    }
    // A raw PUB/SUB pair has no end-of-stream to prove completeness with.
    Outcome::judged(f, rate, &v, true)
}

/// Highest passing rate: double until a failure, then bisect.
fn search(f: &Flags, mut run: impl FnMut(u64) -> bool) -> Option<u64> {
    let (mut lo, mut hi): (Option<u64>, Option<u64>) = (None, None);
    let mut rate = f.search_from;
    for _ in 0..f.search_steps {
        if run(rate) {
            lo = Some(rate);
        } else {
            hi = Some(rate);
        }
        rate = match (lo, hi) {
            (Some(l), Some(h)) => (l + h) / 2,
            (Some(l), None) => l * 2,
            (None, Some(h)) => h / 2,
            (None, None) => unreachable!("one of them was just set"),
        };
    }
    lo
}

fn p99_of(o: &Outcome) -> f64 {
    ns(&o.latency, "p99")
}

/// The run with the median p99.
fn median_run(mut runs: Vec<Outcome>) -> Outcome {
    runs.sort_by(|a, b| p99_of(a).total_cmp(&p99_of(b)));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

fn median_run_ref(runs: &[Outcome]) -> &Outcome {
    let mut idx: Vec<usize> = (0..runs.len()).collect();
    idx.sort_by(|&a, &b| p99_of(&runs[a]).total_cmp(&p99_of(&runs[b])));
    &runs[idx[idx.len() / 2]]
}

fn us(v: &Value, k: &str) -> String {
    format!("{:.1}", ns(v, k) / 1e3)
}

fn main() {
    let f = Flags::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let dir = f.out.clone().unwrap_or_else(results_dir);
    std::fs::create_dir_all(&dir).expect("results folder");
    let mut points = Vec::new();
    for &rate in &f.rates {
        for &size in &f.sizes {
            for &streams in &f.streams {
                for &workers in &f.workers {
                    points.push(Point {
                        rate,
                        size,
                        streams,
                        workers,
                    });
                }
            }
        }
    }
    let mut raw: BTreeMap<(u64, u64), Vec<Outcome>> = BTreeMap::new();
    let mut rows = Vec::new();
    let mut md = String::from(
        "| rate msg/s | size B | streams | workers | shardcast msg/s | lost | p50 us | p99 us | p99.9 us | max us | raw p99 us | p99 / raw | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in points {
        let mut runs = Vec::with_capacity(f.rounds as usize);
        for round in 1..=f.rounds as usize {
            let raws = raw.entry((p.rate, p.size)).or_default();
            if raws.len() < round {
                eprintln!(
                    "sweep: raw libzmq at {} msg/s, {} B (round {round})",
                    p.rate, p.size
                );
                raws.push(run_raw(&f, p.rate, p.size, &dir));
            }
            eprintln!(
                "sweep: shardcast at {} msg/s, {} B, {} stream(s), {} worker(s) (round {round})",
                p.rate, p.size, p.streams, p.workers
            );
            runs.push(run_shardcast(&f, p, &dir));
        }
        let o = median_run(runs);
        let r = median_run_ref(&raw[&(p.rate, p.size)]);
        let ratio = ns(&o.latency, "p99") / ns(&r.latency, "p99").max(1.0);
        let verdict = if o.pass {
            "PASS".to_string()
        } else {
            format!("FAIL ({})", o.why)
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {:.2} | {} |\n",
            p.rate,
            p.size,
            p.streams,
            p.workers,
            o.achieved,
            o.lost,
            us(&o.latency, "p50"),
            us(&o.latency, "p99"),
            us(&o.latency, "p999"),
            us(&o.latency, "max"),
            us(&r.latency, "p99"),
            ratio,
            verdict
        ));
        rows.push(json!({
            "rate": p.rate, "size": p.size, "streams": p.streams, "workers": p.workers,
            "shardcast": {"msgs_per_sec": o.achieved, "lost": o.lost, "end_to_end_ns": o.latency, "pass": o.pass, "why": o.why},
            "raw": {"msgs_per_sec": r.achieved, "lost": r.lost, "end_to_end_ns": r.latency, "pass": r.pass, "why": r.why},
            "p99_ratio": ratio,
        }));
    }
    let mut search_result = Value::Null;
    if f.search_steps > 0 {
        let size = f.sizes[0];
        eprintln!("sweep: searching the highest passing rate ({size} B, 1 stream, 1 worker)");
        let sc = search(&f, |rate| {
            run_shardcast(
                &f,
                Point {
                    rate,
                    size,
                    streams: 1,
                    workers: 1,
                },
                &dir,
            )
            .pass
        });
        let rw = search(&f, |rate| run_raw(&f, rate, size, &dir).pass);
        md.push_str(&format!(
            "\nHighest passing rate ({size} B, 1 stream, 1 worker; zero loss, p99 under {} us; {} search steps from {}): shardcast {}, raw libzmq {}.\n",
            f.slo_p99_us,
            f.search_steps,
            f.search_from,
            sc.map_or("none".into(), |r| format!("{r} msg/s")),
            rw.map_or("none".into(), |r| format!("{r} msg/s")),
        ));
        search_result =
            json!({"shardcast": sc, "raw": rw, "steps": f.search_steps, "from": f.search_from});
    }
    let env = environment(&command);
    shardcast_bench::write_file(dir.join("ENV.md"), format!("# Environment\n\n{env}"))
        .expect("ENV.md");
    shardcast_bench::write_file(
        dir.join("summary.md"),
        format!("# shardcast sweep\n\n{env}\nEnd-to-end latency from the intended send time (coordinated-omission-correct), after {} s of warm-up, over {} s. Raw: a plain libzmq PUB->SUB pair at the same rate and size. Each point is the median-p99 run of {} (raw and shardcast alternating).\n\n{md}", f.warmup, f.measure, f.rounds),
    )
    .expect("summary.md");
    shardcast_bench::write_file(
        dir.join("results.json"),
        serde_json::to_vec_pretty(
            &json!({"command": command, "points": rows, "search": search_result}),
        )
        .expect("json"),
    )
    .expect("results.json");
    println!("{md}");
    println!("results in {}", dir.display());
}
