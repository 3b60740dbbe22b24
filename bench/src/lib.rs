//! shardcast's benchmark tooling: the raw libzmq baseline (`raw-zmq`), the
//! flat-out comparison (`thr-compare`), the rate sweep (`sweep`), the
//! lossless highest-rate search (`lossless`) and the criterion
//! micro-benchmarks (`benches/`). This library holds what the binaries
//! share: running the sibling binaries, searching a rate, and recording the
//! machine.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A binary built beside the running one (`cargo build --release --bins`
/// puts them all in one folder); exits 2 naming the build command if absent.
pub fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let p = exe.parent().expect("exe dir").join(name);
    if !p.exists() {
        eprintln!(
            "{} not found; build everything first: cargo build --release --bins",
            p.display()
        );
        std::process::exit(2);
    }
    p
}

/// Start `bin` with piped stdout and stderr.
pub fn spawn(bin: &Path, args: &[String]) -> Child {
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()))
}

/// Write a results file the way every shardcast output is written
/// (`shardcast_agent::files`: atomic replace, never through a link).
pub fn write_file(
    path: impl AsRef<Path>,
    bytes: impl AsRef<[u8]>,
) -> Result<(), shardcast_agent::files::OutputError> {
    shardcast_agent::files::write(path.as_ref(), bytes.as_ref())
}

/// Start `bin` with piped stdout and stderr written to the file `log`.
pub fn spawn_logged(bin: &Path, args: &[String], log: &Path) -> Child {
    let err = shardcast_agent::files::create_stream(log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()))
}

/// Wait for `child` until `deadline`; past it, kill it and return `None`.
/// Its stdout (small: a JSON line) is read once it has exited.
pub fn finish_by(mut child: Child, deadline: Instant) -> (String, Option<ExitStatus>) {
    loop {
        match child.try_wait().expect("try_wait") {
            Some(st) => {
                let mut out = String::new();
                if let Some(mut s) = child.stdout.take() {
                    let _ = s.read_to_string(&mut out);
                }
                return (out, Some(st));
            }
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return (String::new(), None);
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The default results folder, `bench/results/<date>-<host>`.
pub fn results_dir() -> PathBuf {
    let date = command_line("date", &["+%F"]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    PathBuf::from(format!("bench/results/{date}-{host}"))
}

/// The search for the highest rate that passes a trial: start at `from`;
/// double after a pass (halve after a failure) until one trial passes and
/// one fails (or `max`/`min` is reached); then bisect between the highest
/// pass `lo` and the lowest failure `hi` until `hi - lo <= resolution * lo`.
/// At most `max_trials` trials. Every trial after the bracket lies strictly
/// between `lo` and `hi`, so `lo < hi` always holds.
#[derive(Clone, Debug)]
pub struct RateSearch {
    /// First rate tried.
    pub from: u64,
    /// Lowest rate tried.
    pub min: u64,
    /// Highest rate tried.
    pub max: u64,
    /// Stop when `hi - lo <= resolution * lo`.
    pub resolution: f64,
    /// Stop after this many trials.
    pub max_trials: usize,
    /// Highest passing rate so far.
    pub lo: Option<u64>,
    /// Lowest failing rate so far.
    pub hi: Option<u64>,
    /// Trials run.
    pub trials: usize,
}

impl RateSearch {
    /// A search not yet started.
    pub fn new(from: u64, min: u64, max: u64, resolution: f64, max_trials: usize) -> Self {
        RateSearch {
            from: from.clamp(min, max),
            min,
            max,
            resolution,
            max_trials,
            lo: None,
            hi: None,
            trials: 0,
        }
    }

    /// The next rate to try, or `None` when the search is over.
    pub fn next(&self) -> Option<u64> {
        if self.trials >= self.max_trials {
            return None;
        }
        match (self.lo, self.hi) {
            (None, None) => Some(self.from),
            (Some(l), None) => (l < self.max).then(|| l.saturating_mul(2).min(self.max)),
            (None, Some(h)) => (h > self.min).then(|| (h / 2).max(self.min)),
            (Some(l), Some(h)) => {
                let mid = l + (h - l) / 2;
                ((h - l) as f64 > self.resolution * l as f64 && mid > l).then_some(mid)
            }
        }
    }

    /// Record the outcome of a trial at `rate`.
    pub fn record(&mut self, rate: u64, pass: bool) {
        self.trials += 1;
        if pass {
            self.lo = Some(self.lo.map_or(rate, |l| l.max(rate)));
        } else {
            self.hi = Some(self.hi.map_or(rate, |h| h.min(rate)));
        }
    }

    /// Whether the answer is known to the resolution: a pass and a failure
    /// within `resolution` of each other.
    pub fn resolved(&self) -> bool {
        matches!((self.lo, self.hi), (Some(l), Some(h)) if (h - l) as f64 <= self.resolution * l as f64)
    }
}

/// The subscriber of a one-stream throughput run: one worker, push fan-out,
/// no work, and a snail that only warns (a throughput run measures what
/// arrives, not how late), reporting to `report`.
pub fn throughput_sub_args(endpoint: &str, report: &Path) -> Vec<String> {
    [
        "--connect",
        endpoint,
        "--workers",
        "1",
        "--fanout",
        "push",
        "--work",
        "none",
        "--on-slow",
        "warn",
        "--max-lag-ms",
        "60000",
        "--report-json",
        report.to_str().expect("utf-8 path"),
    ]
    .map(String::from)
    .to_vec()
}

/// Read stderr until a line containing `marker` (30 s at most); return the
/// word after it. The rest of stderr is drained in the background so the
/// child never blocks on a full pipe.
pub fn word_after(child: &mut Child, marker: &str) -> String {
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in lines.by_ref() {
        let line = line.expect("stderr line");
        if let Some(rest) = line.split(marker).nth(1) {
            let word = rest.split_whitespace().next().expect("word").to_string();
            std::thread::spawn(move || lines.for_each(drop));
            return word;
        }
        assert!(Instant::now() < deadline, "no '{marker}' line");
    }
    panic!("child exited before printing '{marker}'");
}

/// Wait for `child`; return its stdout and whether it exited 0.
pub fn finish(mut child: Child) -> (String, Option<i32>) {
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    let st = child.wait().expect("wait");
    (out, st.code())
}

/// Read a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Median of a non-empty list.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The machine and build a result was measured on, as markdown lines.
pub fn environment(command: &str) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let (maj, min, pat) = zmq::version();
    format!(
        "- command: `{command}`\n- git: {}\n- rustc: {}\n- libzmq: {maj}.{min}.{pat}\n- CPU: {cpu}, {cores} cores available\n- kernel: {}\n- host: {}\n",
        command_line("git", &["rev-parse", "--short", "HEAD"]),
        command_line("rustc", &["--version"]),
        command_line("uname", &["-r"]),
        command_line("hostname", &[]),
    )
}

/// Read a publisher's stderr until it has printed the bound endpoint of each
/// of its `n` streams; return them in stream order. The rest of stderr is
/// drained in the background.
pub fn bound_endpoints(child: &mut Child, n: usize) -> Vec<String> {
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut eps = vec![String::new(); n];
    let mut found = 0;
    for line in lines.by_ref() {
        let line = line.expect("stderr line");
        if let Some((head, rest)) = line.split_once(" bound ") {
            let i: usize = head
                .rsplit(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("stream index");
            eps[i] = rest
                .split_whitespace()
                .next()
                .expect("endpoint")
                .to_string();
            found += 1;
            if found == n {
                std::thread::spawn(move || lines.for_each(drop));
                return eps;
            }
        }
    }
    panic!("publisher exited before binding {n} streams");
}

#[cfg(test)]
mod tests {
    use super::RateSearch;

    /// Run a search against a machine whose true capacity is `cap`.
    fn run(mut s: RateSearch, cap: u64) -> RateSearch {
        while let Some(r) = s.next() {
            s.record(r, r <= cap);
        }
        s
    }

    #[test]
    fn brackets_upwards_then_bisects_to_the_resolution() {
        let s = run(
            RateSearch::new(1_000_000, 10_000, 64_000_000, 0.02, 40),
            3_200_000,
        );
        let (lo, hi) = (s.lo.unwrap(), s.hi.unwrap());
        assert!(lo <= 3_200_000 && hi > 3_200_000, "{lo} {hi}");
        assert!(s.resolved());
        assert!((hi - lo) as f64 <= 0.02 * lo as f64);
    }

    #[test]
    fn brackets_downwards_when_the_first_trial_fails() {
        let s = run(
            RateSearch::new(1_000_000, 10_000, 64_000_000, 0.05, 40),
            90_000,
        );
        assert!(s.lo.unwrap() <= 90_000 && s.hi.unwrap() > 90_000);
        assert!(s.resolved());
    }

    #[test]
    fn stops_at_the_bounds_and_the_trial_cap() {
        let s = run(
            RateSearch::new(1_000_000, 10_000, 4_000_000, 0.02, 40),
            u64::MAX,
        );
        assert_eq!((s.lo, s.hi), (Some(4_000_000), None));
        assert!(!s.resolved());
        let s = run(RateSearch::new(1_000_000, 10_000, 4_000_000, 0.02, 40), 0);
        assert_eq!((s.lo, s.hi), (None, Some(10_000)));
        let s = run(
            RateSearch::new(1_000_000, 10_000, 64_000_000, 0.0, 5),
            3_333_333,
        );
        assert_eq!(s.trials, 5);
    }
}
