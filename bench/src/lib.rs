//! shardcast's benchmark tooling: the raw libzmq baseline (`raw-zmq`), the
//! flat-out comparison (`thr-compare`), the rate sweep (`sweep`) and the
//! criterion micro-benchmarks (`benches/`). This library holds what the
//! binaries share: running the sibling binaries and recording the machine.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
        "- command: `{command}`\\n- git: {}\\n- rustc: {}\\n- libzmq: {maj}.{min}.{pat}\\n- CPU: {cpu}, {cores} cores available\\n- kernel: {}\\n- host: {}\\n",
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
