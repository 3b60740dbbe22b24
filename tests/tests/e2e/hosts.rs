//! Hosts on one machine: the publisher and two subscribers each in their own
//! network namespace (deploy/netns.sh), joined by veth links. Proves from
//! the kernel's own per-interface byte counters that stream 0 and stream 1
//! ride different links to the two-NIC subscriber and that a third host
//! gets both over a shared LAN; and proves from /proc, while the processes
//! run, that every busy thread is allowed exactly its CPU and last ran
//! there.
//!
//! Needs root and `ip netns`. Without them the test prints `SKIPPED: ...`
//! and passes, unless SHARDCAST_REQUIRE_NETNS=1 (CI), where it fails.

use crate::support::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HOSTS: [&str; 4] = ["pub", "sub1", "sub2", "sw"];
/// Bytes per message: large next to TCP/IP and framing overhead, so the
/// counters can be compared with payload bytes.
const SIZE: u64 = 1000;
const RATE: u64 = 10_000;
/// Three seconds at RATE: long enough to read placement while data flows.
const COUNT: u64 = 30_000;

fn netns_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/netns.sh")
}

/// Runs `deploy/netns.sh ARGS`; panics with its stderr if it fails.
fn netns(args: &[&str]) -> String {
    let out = Command::new(netns_sh())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running deploy/netns.sh {args:?}: {e}"));
    assert!(
        out.status.success(),
        "deploy/netns.sh {args:?} failed ({:?}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Why namespaces cannot be used here, if they cannot: not root, no `ip`,
/// or the kernel/container refuses a namespace (probed by making one).
pub(crate) fn netns_unavailable(prefix: &str) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN)".into());
    }
    let probe = format!("{prefix}-probe");
    let add = match Command::new("ip").args(["netns", "add", &probe]).output() {
        Ok(o) => o,
        Err(e) => return Some(format!("cannot run ip (iproute2): {e}")),
    };
    let _ = Command::new("ip").args(["netns", "del", &probe]).output();
    (!add.status.success()).then(|| {
        format!(
            "'ip netns add' failed: {}",
            String::from_utf8_lossy(&add.stderr).trim()
        )
    })
}

/// Removes the topology when the test ends, passing or failing. Declared
/// before the processes, so it drops after them: their namespaces would
/// otherwise outlive `ip netns del` while they run.
pub(crate) struct Topology {
    prefix: String,
}

impl Topology {
    pub(crate) fn up(prefix: &str) -> Topology {
        let t = Topology {
            prefix: prefix.to_string(),
        };
        netns(&["up", "--prefix", prefix]);
        t
    }

    pub(crate) fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// `(iface -> (rx bytes, tx bytes))` of every host, from the kernel.
    pub(crate) fn counters(&self) -> BTreeMap<(String, String), (u64, u64)> {
        let mut all = BTreeMap::new();
        for host in HOSTS {
            let text = netns(&["counters", host, "--prefix", &self.prefix]);
            for line in text.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                assert_eq!(f.len(), 3, "counters line {line:?}");
                let n = |s: &str| -> u64 { s.parse().unwrap_or_else(|_| panic!("{line:?}")) };
                all.insert((host.to_string(), f[0].to_string()), (n(f[1]), n(f[2])));
            }
        }
        all
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = Command::new(netns_sh())
            .args(["down", "--prefix", &self.prefix])
            .status();
    }
}

/// Namespaces left by an earlier run of this test that was killed (its pid
/// is in the prefix and no longer alive): remove them, or they pile up. A
/// run killed with SIGKILL also leaves its pipeline behind (subscribers then
/// wait for an end-of-stream that never comes): those processes, found by
/// `ip netns pids` in that run's namespaces, are killed first.
pub(crate) fn remove_stale_topologies() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut dead = std::collections::BTreeSet::new();
    for name in text.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some((prefix, host)) = name.rsplit_once('-') else {
            continue;
        };
        if !HOSTS.contains(&host) {
            continue;
        }
        let Some(pid) = prefix
            .strip_prefix("sct")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            dead.insert(prefix.to_string());
            let pids = Command::new("ip").args(["netns", "pids", name]).output();
            let pids = pids.map(|o| o.stdout).unwrap_or_default();
            for p in String::from_utf8_lossy(&pids).split_whitespace() {
                if let Ok(p) = p.parse::<i32>() {
                    eprintln!("hosts: killing pid {p}, left in {name} by a killed run");
                    // SAFETY: kill(2) with a pid read from the namespace.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
        }
    }
    for prefix in dead {
        eprintln!("hosts: removing a stale topology {prefix}-* from a killed run");
        let _ = Command::new(netns_sh())
            .args(["down", "--prefix", &prefix])
            .status();
    }
}

/// The CPUs this test may use, in order, from its own affinity (the machine
/// may give it fewer or other CPUs than 0..n).
fn allowed_cpus() -> Vec<usize> {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let list = s
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .trim()
        .to_string();
    parse_cpu_list(&list)
}

fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => out.push(part.parse().unwrap()),
        }
    }
    out
}

/// One thread of another process, read from /proc.
#[derive(Debug, Clone)]
struct Task {
    tid: u32,
    comm: String,
    allowed: String,
    last_cpu: usize,
}

/// Every thread of `pid`: its name and last CPU from `task/*/stat` (comm is
/// field 2, in parentheses, and may hold spaces or ')', so fields are
/// counted after the last ')': processor, field 39, is the 37th after it),
/// its allowed CPUs from `task/*/status`.
fn tasks(pid: u32) -> Result<Vec<Task>, String> {
    let dir = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A thread may end between the listing and the reads: skip it.
        let (Ok(stat), Ok(status)) = (
            std::fs::read_to_string(entry.path().join("stat")),
            std::fs::read_to_string(entry.path().join("status")),
        ) else {
            continue;
        };
        let (open, close) = (
            stat.find('(').ok_or("no ( in stat")?,
            stat.rfind(')').ok_or("no ) in stat")?,
        );
        let comm = stat[open + 1..close].to_string();
        let last_cpu = stat[close + 1..]
            .split_whitespace()
            .nth(36)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("no processor field in {stat:?}"))?;
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .ok_or("no Cpus_allowed_list")?
            .trim()
            .to_string();
        out.push(Task {
            tid,
            comm,
            allowed,
            last_cpu,
        });
    }
    out.sort_by(|a, b| a.comm.cmp(&b.comm));
    Ok(out)
}

/// Where a thread must be: allowed exactly `cpu`, and (when `ran`) last seen
/// running on it. Reapers only run when sockets close, so for them only the
/// allowed set is asserted.
struct Want {
    host: &'static str,
    pid: u32,
    thread: String,
    cpu: usize,
    ran: bool,
}

fn placement_table(wants: &[Want], seen: &BTreeMap<u32, Vec<Task>>) -> (String, Vec<String>) {
    let mut table = format!(
        "{:<5} {:<14} {:>8} {:>8} {:>8} {:>9}\n",
        "host", "thread", "tid", "want", "allowed", "last cpu"
    );
    let mut wrong = Vec::new();
    for w in wants {
        let t = seen
            .get(&w.pid)
            .and_then(|ts| ts.iter().find(|t| t.comm == w.thread));
        match t {
            Some(t) => {
                table += &format!(
                    "{:<5} {:<14} {:>8} {:>8} {:>8} {:>9}\n",
                    w.host, t.comm, t.tid, w.cpu, t.allowed, t.last_cpu
                );
                if t.allowed != w.cpu.to_string() {
                    wrong.push(format!(
                        "{} {} allowed {} (want exactly {})",
                        w.host, w.thread, t.allowed, w.cpu
                    ));
                } else if w.ran && t.last_cpu != w.cpu {
                    wrong.push(format!(
                        "{} {} last ran on {} (want {})",
                        w.host, w.thread, t.last_cpu, w.cpu
                    ));
                }
            }
            None => {
                table += &format!("{:<5} {:<14} (missing)\n", w.host, w.thread);
                wrong.push(format!("{} has no thread named {}", w.host, w.thread));
            }
        }
    }
    (table, wrong)
}

/// The executable a pid runs, to show that `ip netns exec` ran the binary in
/// place (same pid) rather than as a child.
fn exe(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default()
}

/// Spawn `bin args` inside namespace `ns`. `ip netns exec` enters the
/// namespace and execs the command in place, so the child's pid is the
/// binary's (checked below from /proc/PID/exe).
pub(crate) fn spawn_in(name: &'static str, ns: &str, bin: &Path, args: &[String]) -> Proc {
    let mut v = vec!["netns".to_string(), "exec".into(), ns.into(), path_str(bin)];
    v.extend(args.iter().cloned());
    Proc::spawn(name, Path::new("ip"), &v)
}

pub(crate) fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn two_streams_ride_two_links_and_every_thread_sits_on_its_cpu() {
    let _g = serial();
    let started = Instant::now();
    let prefix = format!("sct{}", std::process::id());
    if let Some(why) = netns_unavailable(&prefix) {
        if std::env::var("SHARDCAST_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!("SHARDCAST_REQUIRE_NETNS=1 but network namespaces are unavailable: {why}");
        }
        eprintln!(
            "\n*** SKIPPED: hosts::two_streams_ride_two_links_and_every_thread_sits_on_its_cpu: {why} \
             (run as root with iproute2; SHARDCAST_REQUIRE_NETNS=1 makes this a failure) ***\n"
        );
        return;
    }
    remove_stale_topologies();
    // Build the binaries before the clock of the run starts.
    let (pub_bin, sub_bin) = (pub_bin(), sub_bin());

    let cpus = allowed_cpus();
    let a = cpus[0];
    let b = *cpus.get(1).unwrap_or(&a);
    let ab = format!("{a},{b}");
    let ba = format!("{b},{a}");

    let built = Instant::now();
    let topo = Topology::up(&prefix);
    let before = topo.counters();

    let dir = tempfile::tempdir().unwrap();
    let json = |n: &str| path_str(&dir.path().join(n));
    let (pub_json, sub1_json, sub2_json) = (json("pub.json"), json("sub1.json"), json("sub2.json"));

    // Stream 0 on NIC a0, stream 1 on NIC b0; stream-N threads on a,b and
    // their I/O threads crosswise on b,a.
    let publ = spawn_in(
        "shardcast-pub",
        &topo.ns("pub"),
        pub_bin,
        &strings(&[
            "--bind",
            "tcp://10.77.1.1:5556",
            "--bind",
            "tcp://10.77.2.1:5556",
            "--size",
            &SIZE.to_string(),
            "--rate",
            &RATE.to_string(),
            "--count",
            &COUNT.to_string(),
            "--wait-subscribers",
            "2",
            "--cpus",
            &ab,
            "--io-cpus",
            &ba,
            "--report-json",
            &pub_json,
        ]),
    );
    publ.wait_lines(&strings(&["stream 0 bound ", "stream 1 bound "]));

    let connect = [
        "--connect",
        "tcp://10.77.1.1:5556",
        "--connect",
        "tcp://10.77.2.1:5556",
    ];
    // The snail is not under test; a busy 2-core machine must not turn a
    // scheduling hiccup into a croak.
    let calm = ["--on-slow", "warn"];
    let mut s1 = strings(&connect);
    s1.extend(strings(&[
        "--iface",
        "10.77.1.2",
        "--iface",
        "10.77.2.2",
        "--shard-cpus",
        &ab,
        "--io-cpus",
        &ba,
        "--workers",
        "2",
        "--worker-cpus",
        &ab,
        "--report-json",
        &sub1_json,
    ]));
    s1.extend(strings(&calm));
    let sub1 = spawn_in("shardcast-sub (sub1)", &topo.ns("sub1"), sub_bin, &s1);
    let mut s2 = strings(&connect);
    s2.extend(strings(&["--workers", "1", "--report-json", &sub2_json]));
    s2.extend(strings(&calm));
    let sub2 = spawn_in("shardcast-sub (sub2)", &topo.ns("sub2"), sub_bin, &s2);
    let connected = strings(&["shard-0 connected to", "shard-1 connected to"]);
    sub1.wait_lines(&connected);
    sub2.wait_lines(&connected);

    // Data flows once both subscribers are on both streams.
    publ.wait_lines(&strings(&[
        "stream 0: first data message sent",
        "stream 1: first data message sent",
    ]));

    for (p, bin) in [(&publ, pub_bin), (&sub1, sub_bin), (&sub2, sub_bin)] {
        assert_eq!(
            exe(p.pid()),
            std::fs::canonicalize(bin).unwrap(),
            "{}: pid {} is not the binary ('ip netns exec' forked?)",
            p.name,
            p.pid()
        );
    }

    // Placement, read from outside while the processes run.
    let (pp, s1p) = (publ.pid(), sub1.pid());
    let want = |host, pid, thread: &str, cpu, ran| Want {
        host,
        pid,
        thread: thread.to_string(),
        cpu,
        ran,
    };
    let wants = vec![
        want("pub", pp, "stream-0", a, true),
        want("pub", pp, "stream-1", b, true),
        want("pub", pp, "zmq-io-0", b, true),
        want("pub", pp, "zmq-io-1", a, true),
        want("pub", pp, "zmq-reaper-0", b, false),
        want("pub", pp, "zmq-reaper-1", a, false),
        want("sub1", s1p, "shard-0", a, true),
        want("sub1", s1p, "shard-1", b, true),
        want("sub1", s1p, "zmq-io-0", b, true),
        want("sub1", s1p, "zmq-io-1", a, true),
        want("sub1", s1p, "zmq-reaper-0", b, false),
        want("sub1", s1p, "zmq-reaper-1", a, false),
        want("sub1", s1p, "worker-0", a, true),
        want("sub1", s1p, "worker-1", b, true),
    ];
    // An I/O thread pinned by another thread moves to its CPU when it next
    // wakes, so re-read until every thread has run since (bounded: data is
    // flowing, they wake thousands of times a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (table, wrong) = loop {
        let mut seen = BTreeMap::new();
        for pid in [pp, s1p] {
            match tasks(pid) {
                Ok(t) => {
                    seen.insert(pid, t);
                }
                Err(e) => panic!("reading threads of pid {pid}: {e} (did it exit early?)"),
            }
        }
        let (table, wrong) = placement_table(&wants, &seen);
        if wrong.is_empty() || Instant::now() >= deadline {
            break (table, wrong);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "\nthread placement (from /proc/PID/task/*/{{stat,status}}, while running):\n{table}"
    );
    assert!(wrong.is_empty(), "misplaced threads: {wrong:#?}\n{table}");
    if a == b {
        eprintln!("hosts: only CPU {a} is available: every thread shares it");
    }

    let (st, err1, _) = sub1.wait();
    assert!(st.success(), "sub1 failed: {st:?}\n{err1}");
    let (st, err2, _) = sub2.wait();
    assert!(st.success(), "sub2 failed: {st:?}\n{err2}");
    let (st, perr, _) = publ.wait();
    assert!(st.success(), "publisher failed: {st:?}\n{perr}");

    let after = topo.counters();
    let delta = |host: &str, iface: &str| -> (u64, u64) {
        let k = (host.to_string(), iface.to_string());
        let (r1, t1) = after[&k];
        let (r0, t0) = before.get(&k).copied().unwrap_or((0, 0));
        (r1 - r0, t1 - t0)
    };
    let mut table = format!(
        "{:<5} {:<6} {:>12} {:>12}\n",
        "host", "iface", "rx bytes", "tx bytes"
    );
    for (host, iface) in after.keys() {
        if iface == "lo" {
            continue;
        }
        let (rx, tx) = delta(host, iface);
        table += &format!("{host:<5} {iface:<6} {rx:>12} {tx:>12}\n");
    }
    eprintln!("per-NIC bytes during the run (kernel counters, deltas):\n{table}");

    let p = read_json(Path::new(&pub_json));
    let r1 = read_json(Path::new(&sub1_json));
    let r2 = read_json(Path::new(&sub2_json));
    assert_eq!(u(&p, "sent"), COUNT);
    for (name, r) in [("sub1", &r1), ("sub2", &r2)] {
        assert_eq!(u(r, "received"), COUNT, "{name} received everything: {r}");
        assert_eq!(u(r, "lost"), 0, "{name}: {r}");
        assert_eq!(r["streams_complete"], true, "{name}: {}", r["streams"]);
    }
    // Payload bytes per stream, as received (per stream id).
    let payload = |r: &serde_json::Value, stream: u64| -> u64 {
        r["streams"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| u(s, "stream_id") == stream)
            .map(|s| u(s, "received"))
            .sum::<u64>()
            * SIZE
    };
    let (p0, p1) = (payload(&r1, 0), payload(&r1, 1));
    eprintln!("payload bytes: stream 0 {p0}, stream 1 {p1} ({SIZE} B per message)");
    assert!(
        p0 > 0 && p1 > 0,
        "both streams carried data: {}",
        r1["streams"]
    );
    assert_eq!(
        payload(&r2, 0) + payload(&r2, 1),
        p0 + p1,
        "sub2 got both streams whole"
    );
    // sub1's shard 0 read stream 0 (over a0) and shard 1 stream 1 (over b0).
    for s in r1["streams"].as_array().unwrap() {
        assert_eq!(
            u(s, "shard"),
            u(s, "stream_id"),
            "shard N reads stream N: {s}"
        );
    }

    let (_, a0_tx) = delta("pub", "a0");
    let (_, b0_tx) = delta("pub", "b0");
    let (_, c0_tx) = delta("pub", "c0");
    let (s1a_rx, _) = delta("sub1", "a0");
    let (s1b_rx, _) = delta("sub1", "b0");
    let (s1c_rx, s1c_tx) = delta("sub1", "c0");
    let (s2c_rx, _) = delta("sub2", "c0");
    assert!(
        a0_tx >= p0,
        "pub a0 carried stream 0: {a0_tx} < {p0}\n{table}"
    );
    assert!(
        a0_tx < p0 + p1 / 2,
        "pub a0 did not carry stream 1: {a0_tx} vs {p0} + {p1}\n{table}"
    );
    assert!(
        b0_tx >= p1,
        "pub b0 carried stream 1: {b0_tx} < {p1}\n{table}"
    );
    assert!(
        b0_tx < p1 + p0 / 2,
        "pub b0 did not carry stream 0: {b0_tx} vs {p1} + {p0}\n{table}"
    );
    assert!(s1a_rx >= p0 && s1b_rx >= p1, "sub1 received them\n{table}");
    assert!(
        c0_tx >= p0 + p1 && s2c_rx >= p0 + p1,
        "both streams reached sub2 over LAN C\n{table}"
    );
    // Only broadcast chatter (ARP) reaches sub1's c0.
    let small = 64 * 1024;
    assert!(
        s1c_rx < small && s1c_tx < small,
        "sub1's c0 carried no stream ({s1c_rx} rx, {s1c_tx} tx)\n{table}"
    );
    drop(topo);
    eprintln!(
        "hosts: done in {:.1} s ({:.1} s of it building the binaries)",
        started.elapsed().as_secs_f64(),
        (built - started).as_secs_f64()
    );
}
