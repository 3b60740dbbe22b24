//! Running the real binaries: build lookup, stderr handshakes, hard timeouts.
//!
//! Nothing here sleeps to wait for delivery: tests wait for a line the
//! process prints when a state is reached (bound, subscribed, first message
//! sent), and every wait has a deadline after which the test fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

/// Generous: CI machines are small and shared. A test that needs this long
/// is broken, not slow.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(90);
pub const LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// End-to-end tests run one at a time: several pipelines competing for two
/// cores would measure the machine, not shardcast (and could starve a
/// subscriber into croaking).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn build(package: &str, bin: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    escargot::CargoBuild::new()
        .manifest_path(manifest)
        .package(package)
        .bin(bin)
        .current_release()
        .current_target()
        .run()
        .unwrap_or_else(|e| panic!("building {bin}: {e}"))
        .path()
        .to_path_buf()
}

pub fn pub_bin() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build("shardcast-publisher", "shardcast-pub"))
}

pub fn sub_bin() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build("shardcast-subscriber", "shardcast-sub"))
}

pub fn record_bin() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build("shardcast-recorder", "shardcast-record"))
}

pub fn relay_bin() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build("shardcast-relay", "shardcast-relay"))
}

/// The downstream endpoint a relay bound for hop `i` (from its "hop I: A ->
/// B" line, so the OS picks free ports).
pub fn relay_endpoint(relay: &Proc, i: usize) -> String {
    relay
        .wait_line(&format!("hop {i}: tcp://"))
        .split(" -> ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("downstream endpoint")
        .to_string()
}

pub fn stat_bin() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build("shardcast-stat", "shardcast-stat"))
}

/// The binaries built against the system libzmq (CURVE, PGM), as the README
/// says: `cargo build --config .cargo/system-libzmq.toml`, into their own
/// target directory. `Err` says why they cannot be had (no libzmq3-dev):
/// tests then skip, unless SHARDCAST_REQUIRE_SYSTEM_ZMQ=1 (CI) makes that a
/// failure.
pub struct SystemBins {
    pub publ: PathBuf,
    pub sub: PathBuf,
    pub keygen: PathBuf,
    pub relay: PathBuf,
}

pub fn system_bins() -> Result<&'static SystemBins, String> {
    static B: OnceLock<Result<SystemBins, String>> = OnceLock::new();
    B.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = root.join("target/system-libzmq");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let release = !cfg!(debug_assertions);
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--config")
            .arg(root.join(".cargo/system-libzmq.toml"))
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .args([
                "--locked",
                "-p",
                "shardcast-publisher",
                "-p",
                "shardcast-subscriber",
                "-p",
                "shardcast-relay",
            ]);
        if release {
            cmd.arg("--release");
        }
        let out = cmd.output().map_err(|e| format!("running cargo: {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(15).collect();
            return Err(format!(
                "the system-libzmq build failed (is libzmq3-dev installed?):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        let dir = target.join(if release { "release" } else { "debug" });
        Ok(SystemBins {
            publ: dir.join("shardcast-pub"),
            sub: dir.join("shardcast-sub"),
            keygen: dir.join("shardcast-keygen"),
            relay: dir.join("shardcast-relay"),
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The system-libzmq binaries, or `None` after printing why the calling
/// test is skipped; panics instead when SHARDCAST_REQUIRE_SYSTEM_ZMQ=1.
pub fn system_bins_or_skip(test: &str) -> Option<&'static SystemBins> {
    match system_bins() {
        Ok(b) => Some(b),
        Err(why) if std::env::var_os("SHARDCAST_REQUIRE_SYSTEM_ZMQ").is_some_and(|v| v == "1") => {
            panic!("{test}: needs the system libzmq build (SHARDCAST_REQUIRE_SYSTEM_ZMQ=1): {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: needs the system libzmq build: {why}");
            None
        }
    }
}

/// A running process whose stderr lines are collected and can be awaited.
pub struct Proc {
    pub name: &'static str,
    child: Child,
    lines: Receiver<String>,
    all: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(name: &'static str, bin: &Path, args: &[String]) -> Proc {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let (tx, rx) = mpsc::channel();
        let all = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let all2 = Arc::clone(&all);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                all2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("piped stdout");
        let stdout2 = Arc::clone(&stdout);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                stdout2.lock().unwrap().push(line);
            }
        });
        Proc {
            name,
            child,
            lines: rx,
            all,
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for a stderr line containing `needle`; returns it.
    pub fn wait_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => panic!(
                    "{}: no line containing {needle:?} within {LINE_TIMEOUT:?}; stderr so far:\n{}",
                    self.name,
                    self.stderr()
                ),
            }
        }
    }

    /// Wait until a stderr line containing each of `needles` has come, in
    /// any order (streams print their lines independently).
    pub fn wait_lines(&self, needles: &[String]) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        let mut missing: Vec<&String> = needles.iter().collect();
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => missing.retain(|n| !l.contains(n.as_str())),
                Err(_) => panic!(
                    "{}: no lines containing {missing:?} within {LINE_TIMEOUT:?}; stderr so far:\n{}",
                    self.name,
                    self.stderr()
                ),
            }
        }
    }

    /// Everything printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.all.lock().unwrap().join("\n")
    }

    /// Wait for exit (the test fails if it takes longer than
    /// [`PROCESS_TIMEOUT`]); returns the status and stderr.
    pub fn wait(mut self) -> (ExitStatus, String, String) {
        let status = match self.child.wait_timeout(PROCESS_TIMEOUT).expect("wait") {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {PROCESS_TIMEOUT:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
        };
        // Let the reader threads see end-of-file.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if Arc::strong_count(&self.all) == 1 && Arc::strong_count(&self.stdout) == 1 {
                break;
            }
            std::thread::yield_now();
        }
        let out = self.stdout.lock().unwrap().join("\n");
        (status, self.stderr(), out)
    }

    /// Send a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A failing test must not leave processes behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A publisher with its bound endpoints (read from its "bound" lines, so
/// the OS picks free ports and nothing races for one).
pub struct Publisher {
    pub proc: Proc,
    pub endpoints: Vec<String>,
}

pub fn start_pub(streams: usize, args: &[&str]) -> Publisher {
    let binds = vec!["tcp://127.0.0.1:*".to_string(); streams];
    start_pub_on(&binds, args)
}

/// A publisher bound to the given endpoints, one stream each (for a restart
/// on the endpoints an earlier publisher was given by the OS).
pub fn start_pub_on(binds: &[String], args: &[&str]) -> Publisher {
    start_pub_bin(pub_bin(), binds, args)
}

/// A publisher from the binary `bin` (e.g. the system-libzmq build).
pub fn start_pub_bin(bin: &Path, binds: &[String], args: &[&str]) -> Publisher {
    let streams = binds.len();
    let mut v: Vec<String> = Vec::new();
    for b in binds {
        v.push("--bind".into());
        v.push(b.clone());
    }
    v.extend(args.iter().map(|s| s.to_string()));
    let proc = Proc::spawn("shardcast-pub", bin, &v);
    let endpoints = (0..streams)
        .map(|i| {
            let line = proc.wait_line(&format!("stream {i} bound "));
            let rest = line.split(" bound ").nth(1).expect("bound line");
            rest.split_whitespace()
                .next()
                .expect("endpoint")
                .to_string()
        })
        .collect();
    Publisher { proc, endpoints }
}

pub fn start_sub(connect: &[String], args: &[&str]) -> Proc {
    start_sub_bin(sub_bin(), connect, args)
}

/// A subscriber from the binary `bin` (e.g. the system-libzmq build).
pub fn start_sub_bin(bin: &Path, connect: &[String], args: &[&str]) -> Proc {
    let mut v: Vec<String> = Vec::new();
    for ep in connect {
        v.push("--connect".into());
        v.push(ep.clone());
    }
    v.extend(args.iter().map(|s| s.to_string()));
    Proc::spawn("shardcast-sub", bin, &v)
}

/// Run a binary to completion with `args`.
pub fn run(bin: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    Proc::spawn("command", bin, &v).wait()
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

pub fn u(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an unsigned integer in {v}"))
}

/// Resident set size of a process, bytes (from /proc/PID/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_string()
}

/// What [`run_pipeline`] hands back.
pub struct Outcome {
    /// The publisher's `--report-json`.
    pub publ: serde_json::Value,
    /// The subscriber's `--report-json`.
    pub sub: serde_json::Value,
    /// The subscriber's stderr and stdout.
    pub sub_stderr: String,
    pub sub_stdout: String,
}

/// Run a publisher with `streams` streams and a subscriber connected to all
/// of them, both to completion, each writing its report; both must exit 0.
pub fn run_pipeline(streams: usize, pub_args: &[&str], sub_args: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let (pub_json, sub_json) = (dir.path().join("pub.json"), dir.path().join("sub.json"));
    let (pj, sj) = (path_str(&pub_json), path_str(&sub_json));
    let mut pa = pub_args.to_vec();
    pa.extend(["--report-json", &pj]);
    let publ = start_pub(streams, &pa);
    let mut sa = sub_args.to_vec();
    sa.extend(["--report-json", &sj]);
    let sub = start_sub(&publ.endpoints, &sa);
    let (st, sub_stderr, sub_stdout) = sub.wait();
    assert!(st.success(), "subscriber failed: {st:?}\n{sub_stderr}");
    let (pst, perr, _) = publ.proc.wait();
    assert!(pst.success(), "publisher failed: {pst:?}\n{perr}");
    Outcome {
        publ: read_json(&pub_json),
        sub: read_json(&sub_json),
        sub_stderr,
        sub_stdout,
    }
}

/// Freezes a process with SIGSTOP; on drop (the test passing or failing)
/// kills it and lets it run again, so a stopped process never outlives its
/// test. `Proc`'s own drop then reaps it.
pub struct Frozen<'a>(&'a Proc);

pub fn freeze(p: &Proc) -> Frozen<'_> {
    p.signal(libc::SIGSTOP);
    Frozen(p)
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.signal(libc::SIGKILL);
        self.0.signal(libc::SIGCONT);
    }
}

/// Poll `cond` until it holds, failing the test after [`LINE_TIMEOUT`].
/// For states no process prints a line about (kernel socket queues); it
/// checks every 5 ms and waits for nothing else.
pub fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LINE_TIMEOUT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {LINE_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Bytes waiting in the kernel send queue of established IPv4 TCP
/// connections whose local port is `port` (the largest, if several), from
/// /proc/net/tcp. A peer that stopped reading shows as a send queue that
/// fills up to the socket's send buffer.
pub fn tcp_send_queue(port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/tcp").ok()?;
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl local_address rem_address st tx_queue:rx_queue ...
            let local_port = u16::from_str_radix(f.get(1)?.split(':').nth(1)?, 16).ok()?;
            let established = *f.get(3)? == "01";
            let tx = u64::from_str_radix(f.get(4)?.split(':').next()?, 16).ok()?;
            (local_port == port && established).then_some(tx)
        })
        .max()
}

/// The port of a `tcp://host:port` endpoint.
pub fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {endpoint}"))
}
