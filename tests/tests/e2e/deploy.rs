//! deploy/: the profiles, the systemd units, tune-host.sh and rollout.sh,
//! checked against the real binaries. A profile key that is not a flag twin,
//! a value a binary refuses, or an instance file generated from the topology
//! that a binary would not start with fails here, not on a host.
//!
//! Nothing here touches the host: tune-host.sh runs in check mode on the
//! real /proc and /sys, and applies only to a fake tree (TUNE_HOST_ROOT);
//! rollout.sh runs with --dry-run, or with ssh and scp replaced by a script
//! that only logs.

use crate::support::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use wait_timeout::ChildExt;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .canonicalize()
        .expect("deploy/ exists")
}

/// `KEY=VALUE` lines of an environment file as the profiles and instance
/// files write them (systemd's `EnvironmentFile=` syntax without quoting:
/// comments and blank lines skipped).
fn env_file(path: &Path) -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: '{l}' is not KEY=VALUE", path.display()));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// What a finished command left.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn both(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Run `program args` with `env` set and every inherited `SHARDCAST_*`
/// variable removed (so the caller's environment cannot leak into a
/// profile check), failing the test after [`PROCESS_TIMEOUT`].
fn run_env(program: &Path, args: &[&str], env: &[(String, String)]) -> Out {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("SHARDCAST_") || k == "TUNE_HOST_ROOT" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let status = match child.wait_timeout(PROCESS_TIMEOUT).expect("wait") {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {args:?} did not exit within {PROCESS_TIMEOUT:?}",
                program.display()
            );
        }
    };
    Out {
        code: status.code(),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

fn bash(script: &Path, args: &[&str], env: &[(String, String)]) -> Out {
    let mut v = vec![script.to_str().expect("utf-8 path")];
    v.extend_from_slice(args);
    run_env(Path::new("bash"), &v, env)
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// The environment twins a binary declares, from its `--help`
/// (`[env: SHARDCAST_SUB_RCVHWM=]`).
fn twins(bin: &Path) -> BTreeSet<String> {
    let out = run_env(bin, &["--help"], &[]);
    assert_eq!(
        out.code,
        Some(0),
        "{} --help: {}",
        bin.display(),
        out.both()
    );
    let set: BTreeSet<String> = out
        .stdout
        .split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.split(['=', ']'])
                .next()
                .expect("a name")
                .trim()
                .to_string()
        })
        .collect();
    assert!(
        set.len() > 10,
        "{} --help shows few env twins: {set:?}",
        bin.display()
    );
    set
}

/// Parse a CPU list (`0-3,6`).
fn cpu_list(s: &str) -> Vec<usize> {
    let mut v = Vec::new();
    for part in s.trim().split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (usize, usize) = (
            lo.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad CPU list {s}")),
            hi.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad CPU list {s}")),
        );
        assert!(lo <= hi, "backwards range in {s}");
        v.extend(lo..=hi);
    }
    v
}

/// The CPUs this process may run on.
fn local_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(cpu_list)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec![0])
}

/// Check that the printed configuration holds the value of every
/// `PREFIX<FLAG>` entry whose flag is a top-level key of the same name
/// (`SHARDCAST_SUB_RCVHWM=10000` -> `"rcvhwm": 10000`); returns the keys
/// compared. `*_CPUS` entries are left out (callers replace them).
fn compare_config(
    what: &str,
    cfg: &serde_json::Value,
    entries: &[(String, String)],
    prefix: &str,
) -> Vec<String> {
    let mut compared = Vec::new();
    for (k, v) in entries {
        let Some(flag) = k.strip_prefix(prefix) else {
            continue;
        };
        if flag.ends_with("_CPUS") {
            continue;
        }
        let field = flag.to_lowercase();
        let Some(got) = cfg.get(&field) else { continue };
        let same = match got {
            serde_json::Value::Number(n) => n
                .as_f64()
                .zip(v.parse::<f64>().ok())
                .is_some_and(|(a, b)| a == b),
            serde_json::Value::String(s) => s == v,
            serde_json::Value::Bool(b) => b.to_string() == *v,
            _ => continue,
        };
        assert!(
            same,
            "{what}: {k}={v} but the printed configuration has \"{field}\": {got}"
        );
        compared.push(field);
    }
    compared
}

fn print_config(
    what: &str,
    bin: &Path,
    args: &[&str],
    env: &[(String, String)],
) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--print-config");
    let out = run_env(bin, &a, env);
    assert_eq!(
        out.code,
        Some(0),
        "{what}: {} --print-config refused the environment {env:?}:\n{}",
        bin.display(),
        out.both()
    );
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: --print-config is not JSON ({e}):\n{}", out.stdout))
}

/// Keys that name a host, an address or a CPU: instance-file material.
fn host_specific(key: &str) -> bool {
    key.ends_with("_CPUS")
        || [
            "SHARDCAST_PUB_BIND",
            "SHARDCAST_SUB_CONNECT",
            "SHARDCAST_SUB_IFACE",
            "SHARDCAST_SUB_ALARM",
            "SHARDCAST_PUB_PUBLISHER_ID",
        ]
        .contains(&key)
        || key.contains("CURVE")
}

fn profiles() -> Vec<(String, PathBuf)> {
    let dir = deploy_dir().join("profiles");
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("deploy/profiles")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "env"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    v.sort();
    let names: Vec<&str> = v.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["low-latency", "throughput"] {
        assert!(
            names.contains(&want),
            "no deploy/profiles/{want}.env: {names:?}"
        );
    }
    v
}

#[test]
fn profiles_are_flag_twins_whose_values_both_binaries_take() {
    let (pub_twins, sub_twins) = (twins(pub_bin()), twins(sub_bin()));
    let pub_default = print_config(
        "defaults",
        pub_bin(),
        &["--bind", "tcp://127.0.0.1:5556"],
        &[],
    );
    let sub_default = print_config(
        "defaults",
        sub_bin(),
        &["--connect", "tcp://127.0.0.1:5556"],
        &[],
    );
    for (name, path) in profiles() {
        let entries = env_file(&path);
        assert!(!entries.is_empty(), "{name}: empty profile");
        let mut seen = BTreeSet::new();
        for (k, _) in &entries {
            assert!(seen.insert(k.clone()), "{name}: {k} is set twice");
            let known = if k.starts_with("SHARDCAST_PUB_") {
                pub_twins.contains(k)
            } else if k.starts_with("SHARDCAST_SUB_") {
                sub_twins.contains(k)
            } else {
                false
            };
            assert!(
                known,
                "{name}: {k} is not a flag twin of shardcast-pub or shardcast-sub (see --help)"
            );
            assert!(
                !host_specific(k),
                "{name}: {k} names a host, address or CPU: it belongs in the instance file"
            );
        }
        let pub_env: Vec<_> = entries
            .iter()
            .filter(|(k, _)| k.starts_with("SHARDCAST_PUB_"))
            .cloned()
            .collect();
        let sub_env: Vec<_> = entries
            .iter()
            .filter(|(k, _)| k.starts_with("SHARDCAST_SUB_"))
            .cloned()
            .collect();
        assert!(
            !pub_env.is_empty() && !sub_env.is_empty(),
            "{name}: both ends are tuned"
        );

        let what = format!("{name} (publisher)");
        let cfg = print_config(
            &what,
            pub_bin(),
            &["--bind", "tcp://127.0.0.1:5556"],
            &pub_env,
        );
        let compared = compare_config(&what, &cfg, &pub_env, "SHARDCAST_PUB_");
        // `--batch 64` prints the same `batch` as the default `auto` (at
        // most 64 records a frame); `batch_auto` tells them apart.
        let changed: Vec<&String> = compared
            .iter()
            .filter(|f| {
                let auto = format!("{f}_auto");
                cfg[f.as_str()] != pub_default[f.as_str()] || cfg[&auto] != pub_default[&auto]
            })
            .collect();
        assert!(
            changed.len() >= 3,
            "{what}: the printed configuration shows only {changed:?} of the profile's values \
             away from the defaults (compared {compared:?})"
        );

        let what = format!("{name} (subscriber)");
        let cfg = print_config(
            &what,
            sub_bin(),
            &["--connect", "tcp://127.0.0.1:5556"],
            &sub_env,
        );
        let compared = compare_config(&what, &cfg, &sub_env, "SHARDCAST_SUB_");
        let changed: Vec<&String> = compared
            .iter()
            .filter(|f| cfg[f.as_str()] != sub_default[f.as_str()])
            .collect();
        assert!(
            changed.len() >= 3,
            "{what}: the printed configuration shows only {changed:?} of the profile's values \
             away from the defaults (compared {compared:?})"
        );

        // The subscriber's own sizing agrees with the profile's HWMs at the
        // rate it says it was sized for (exit 1 and `warning:` otherwise).
        let out = run_env(sub_bin(), &["--explain-hwm"], &sub_env);
        assert_eq!(
            out.code,
            Some(0),
            "{name}: --explain-hwm finds the profile contradicts its lag budget:\n{}",
            out.both()
        );
        assert!(!out.stdout.contains("warning:"), "{name}:\n{}", out.stdout);
        assert!(
            out.stdout.contains("memory ceiling"),
            "{name}:\n{}",
            out.stdout
        );
        println!(
            "{name}: {} keys, all flag twins; publisher and subscriber accept them; --explain-hwm:\n{}",
            entries.len(),
            out.stdout
        );
    }
}

/// `[Service]`/`[Unit]` key/value pairs of a unit file, in order.
fn unit_entries(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn seconds(v: &str) -> u64 {
    v.trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("'{v}' is not whole seconds"))
}

/// `systemd-analyze verify` on unit files (with ExecStart= pointed at the
/// built binaries, which the verifier wants to exist), if it is installed.
/// Drop-in directories next to the units are verified with them.
fn verify_units(dir: &Path, units: &[String]) {
    let have = Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        println!("systemd-analyze is not installed: unit syntax not verified");
        return;
    }
    let mut args = vec!["verify".to_string(), "--man=no".to_string()];
    args.extend(
        units
            .iter()
            .map(|u| dir.join(u).to_str().unwrap().to_string()),
    );
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_env(Path::new("systemd-analyze"), &a, &[]);
    let ours: Vec<&str> = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .filter(|l| l.contains("shardcast"))
        .collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify complains about our units:\n{}",
        out.both()
    );
    println!("systemd-analyze verify: {units:?} clean");
}

/// Copy the unit templates into `dir`, with ExecStart= pointed at the built
/// binaries.
fn stage_units(dir: &Path) {
    for (role, bin) in [("pub", pub_bin()), ("sub", sub_bin())] {
        let name = format!("shardcast-{role}@.service");
        let text = std::fs::read_to_string(deploy_dir().join("systemd").join(&name)).unwrap();
        let text = text.replace(
            &format!("/usr/local/bin/shardcast-{role}"),
            bin.to_str().unwrap(),
        );
        std::fs::write(dir.join(&name), text).unwrap();
    }
}

#[test]
fn units_take_everything_from_the_environment_and_outlast_the_end_phase() {
    let pub_cfg = print_config(
        "defaults",
        pub_bin(),
        &["--bind", "tcp://127.0.0.1:5556"],
        &[],
    );
    let sub_cfg = print_config(
        "defaults",
        sub_bin(),
        &["--connect", "tcp://127.0.0.1:5556"],
        &[],
    );
    // The stop must outlast the default end phase: the publisher's
    // end-of-stream window plus its 1 s linger, the subscriber's drain.
    let pub_end = pub_cfg["eos_timeout"]["secs"].as_u64().unwrap() + 1;
    let sub_end = sub_cfg["drain_timeout"]["secs"].as_u64().unwrap();
    for (role, bin, end) in [("pub", pub_bin(), pub_end), ("sub", sub_bin(), sub_end)] {
        let name = format!("shardcast-{role}@.service");
        let e = unit_entries(&deploy_dir().join("systemd").join(&name));
        let get = |k: &str| -> Vec<&str> {
            e.iter()
                .filter(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(
            get("ExecStart"),
            [format!("/usr/local/bin/shardcast-{role}").as_str()],
            "{name}: no flags on the command line, all from the environment"
        );
        assert_eq!(
            get("EnvironmentFile"),
            [
                format!("/etc/shardcast/%i.{role}.profile").as_str(),
                format!("/etc/shardcast/%i.{role}.env").as_str()
            ],
            "{name}: the profile first, the instance file overriding it"
        );
        let twins = twins(bin);
        for v in get("Environment") {
            let key = v.split('=').next().unwrap();
            assert!(
                twins.contains(key),
                "{name}: Environment={v}: not a flag twin"
            );
        }
        assert_eq!(get("Restart"), ["on-failure"], "{name}");
        let prevent: Vec<&str> = get("RestartPreventExitStatus")
            .iter()
            .flat_map(|v| v.split_whitespace())
            .collect();
        assert!(
            prevent.contains(&"2"),
            "{name}: bad flags (exit 2) are not restarted"
        );
        if role == "sub" {
            // The snail (exit 3) is restarted, within the start limit.
            assert!(!prevent.contains(&"3"), "{name}");
        }
        assert!(
            !get("StartLimitBurst").is_empty(),
            "{name}: restarts are limited"
        );
        assert_eq!(get("KillSignal"), ["SIGTERM"], "{name}");
        let stop = seconds(get("TimeoutStopSec")[0]);
        assert!(
            stop >= end + 10,
            "{name}: TimeoutStopSec={stop}s leaves no room after the {end} s end phase for the reports"
        );
        assert!(
            get("CPUAffinity").is_empty(),
            "{name}: CPUAffinity= is per instance (drop-in)"
        );
        assert_eq!(get("NoNewPrivileges"), ["yes"], "{name}");
        assert_eq!(get("ProtectSystem"), ["strict"], "{name}");
    }
    let dir = tempfile::tempdir().unwrap();
    stage_units(dir.path());
    verify_units(
        dir.path(),
        &[
            "shardcast-pub@test.service".into(),
            "shardcast-sub@test.service".into(),
        ],
    );
}

/// tune-host.sh, never with --apply on the real host.
fn tune_host(root: Option<&Path>, args: &[&str]) -> Out {
    assert!(
        root.is_some() || !args.contains(&"--apply"),
        "the test applies only to a fake tree"
    );
    let env: Vec<(String, String)> = root
        .map(|r| vec![kv("TUNE_HOST_ROOT", r.to_str().unwrap())])
        .unwrap_or_default();
    bash(&deploy_dir().join("tune-host.sh"), args, &env)
}

fn status_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.starts_with("OK ") || l.starts_with("WARN ") || l.starts_with("n/a "))
        .collect()
}

/// A host as /proc, /sys and /etc show it, small and badly tuned: 4 CPUs on
/// one node, powersave, C6 enabled, THP defrag always, a NIC eth9 whose IRQs
/// 40 and 41 may land on the cores to pin (2,3), irqbalance running.
fn fake_host(root: &Path) {
    let w = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("{text}\n")).unwrap();
    };
    for (k, v) in [
        ("net/core/rmem_max", "212992"),
        ("net/core/wmem_max", "212992"),
        ("net/core/rmem_default", "212992"),
        ("net/core/netdev_max_backlog", "1000"),
        ("net/core/busy_poll", "0"),
        ("net/core/busy_read", "0"),
        ("net/ipv4/tcp_rmem", "4096\t131072\t6291456"),
        ("net/ipv4/tcp_wmem", "4096\t16384\t4194304"),
        ("kernel/numa_balancing", "1"),
        ("kernel/hostname", "fakehost"),
    ] {
        w(&format!("proc/sys/{k}"), v);
    }
    w(
        "proc/cmdline",
        "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet",
    );
    w("proc/77/comm", "irqbalance");
    w("sys/devices/system/cpu/online", "0-3");
    w("sys/devices/system/cpu/isolated", "");
    w("sys/devices/system/cpu/nohz_full", "(null)");
    for c in 0..4 {
        w(
            &format!("sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"),
            "powersave",
        );
        for (i, name, lat) in [(0, "POLL", 0), (1, "C1", 2), (2, "C6", 133)] {
            let d = format!("sys/devices/system/cpu/cpu{c}/cpuidle/state{i}");
            w(&format!("{d}/name"), name);
            w(&format!("{d}/latency"), &lat.to_string());
            w(&format!("{d}/disable"), "0");
        }
    }
    w(
        "sys/kernel/mm/transparent_hugepage/enabled",
        "always [madvise] never",
    );
    w(
        "sys/kernel/mm/transparent_hugepage/defrag",
        "[always] defer defer+madvise madvise never",
    );
    w("sys/class/net/eth9/device/numa_node", "0");
    w("sys/devices/system/node/node0/cpulist", "0-3");
    for (irq, aff) in [(40, "0-3"), (41, "2"), (42, "0")] {
        w(&format!("sys/class/net/eth9/device/msi_irqs/{irq}"), "msix");
        w(&format!("proc/irq/{irq}/smp_affinity_list"), aff);
    }
}

/// Every file under `root` with its content.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut m = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                m.insert(p.clone(), std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    m
}

#[test]
fn tune_host_checks_this_host_and_applies_only_to_a_fake_tree() {
    // This host, check mode: it runs wherever files are missing, one status
    // line per check, and changes nothing.
    let rmem = std::fs::read_to_string("/proc/sys/net/core/rmem_max").ok();
    let args = [
        "--nic",
        "lo",
        "--nic",
        "nosuch0",
        "--cpus",
        "0",
        "--profile",
        "low-latency",
    ];
    let out = tune_host(None, &args);
    assert_eq!(out.code, Some(0), "{}", out.both());
    assert!(out.stderr.is_empty(), "no errors:\n{}", out.both());
    let lines = status_lines(&out.stdout);
    assert!(lines.len() >= 15, "a line per check:\n{}", out.stdout);
    for l in &lines {
        if !l.starts_with("n/a") {
            assert!(
                l.contains(": current ") && l.contains("; recommended "),
                "an OK/WARN line gives the current and the recommended value: {l}"
            );
        }
    }
    assert!(
        out.stdout
            .contains("n/a   nosuch0: no /sys/class/net/nosuch0 (no such interface on this host)"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("\nSET ") && !out.stdout.contains("\nFAIL "));
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/core/rmem_max").ok(),
        rmem
    );
    let warned = lines.iter().any(|l| l.starts_with("WARN"));
    let strict = tune_host(None, &[&args[..], &["--strict"]].concat());
    assert_eq!(
        strict.code,
        Some(if warned { 1 } else { 0 }),
        "{}",
        strict.both()
    );
    println!("tune-host.sh on this host:\n{}", out.stdout);

    assert_eq!(tune_host(None, &["--bogus"]).code, Some(2));
    assert_eq!(tune_host(None, &["--cpus", "2-x"]).code, Some(2));
    let help = tune_host(None, &["--help"]);
    assert_eq!(help.code, Some(0));
    assert!(help.stdout.contains("--apply") && help.stdout.contains("Exit status"));

    // Nothing there at all: every check n/a, no error.
    let empty = tempfile::tempdir().unwrap();
    let out = tune_host(Some(empty.path()), &["--nic", "eth0", "--cpus", "1"]);
    assert_eq!(out.code, Some(0), "{}", out.both());
    assert!(out.stderr.is_empty(), "{}", out.both());
    assert!(
        status_lines(&out.stdout)
            .iter()
            .all(|l| l.starts_with("n/a")),
        "{}",
        out.stdout
    );

    // A fake badly tuned host: check finds it, changes nothing.
    let fake = tempfile::tempdir().unwrap();
    let root = fake.path();
    fake_host(root);
    let before = snapshot(root);
    let args = ["--nic", "eth9", "--cpus", "2,3", "--profile", "low-latency"];
    let out = tune_host(Some(root), &[&args[..], &["--strict"]].concat());
    assert_eq!(out.code, Some(1), "--strict with warnings:\n{}", out.both());
    for want in [
        "WARN  net.core.rmem_max: current 212992; recommended >= 16777216",
        "WARN  net.ipv4.tcp_rmem: current 4096 131072 6291456; recommended 4096 131072 16777216",
        "WARN  net.core.busy_poll: current 0; recommended 50",
        "WARN  cpu governor: current 4 of 4 CPUs not performance",
        "WARN  C-states on cores 2-3: current 2 deep states enabled: C6(133us)",
        "WARN  isolcpus: current none; recommended includes 2-3",
        "WARN  THP defrag: current always; recommended madvise",
        "OK    THP enabled: current madvise",
        "WARN  irqbalance: current running",
        "OK    eth9 NUMA node: current 0 (cores 0-3)",
        "WARN  eth9 IRQs: current 2 of 3 IRQs may run on pinned cores (IRQ 40 -> 0-3); recommended 0-1",
        "isolcpus=managed_irq,domain,2-3 nohz_full=2-3 rcu_nocbs=2-3 irqaffinity=0-1",
    ] {
        assert!(out.stdout.contains(want), "missing '{want}' in:\n{}", out.stdout);
    }
    assert_eq!(snapshot(root), before, "check mode wrote nothing");

    // --apply: what can be applied at runtime is, the rest is advice.
    let out = tune_host(Some(root), &[&args[..], &["--apply"]].concat());
    assert_eq!(out.code, Some(0), "{}", out.both());
    let read = |rel: &str| {
        std::fs::read_to_string(root.join(rel))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("proc/sys/net/core/rmem_max"), "16777216");
    assert_eq!(read("proc/sys/net/core/wmem_max"), "16777216");
    assert_eq!(read("proc/sys/net/ipv4/tcp_rmem"), "4096 131072 16777216");
    assert_eq!(read("proc/sys/net/core/busy_poll"), "50");
    assert_eq!(read("proc/sys/kernel/numa_balancing"), "0");
    for c in 0..4 {
        assert_eq!(
            read(&format!(
                "sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
            )),
            "performance"
        );
        // C6 off on the pinned cores only.
        let want = if c >= 2 { "1" } else { "0" };
        assert_eq!(
            read(&format!(
                "sys/devices/system/cpu/cpu{c}/cpuidle/state2/disable"
            )),
            want
        );
        assert_eq!(
            read(&format!(
                "sys/devices/system/cpu/cpu{c}/cpuidle/state1/disable"
            )),
            "0"
        );
    }
    assert_eq!(read("sys/kernel/mm/transparent_hugepage/defrag"), "madvise");
    assert_eq!(read("proc/irq/40/smp_affinity_list"), "0-1");
    assert_eq!(read("proc/irq/41/smp_affinity_list"), "0-1");
    assert_eq!(
        read("proc/irq/42/smp_affinity_list"),
        "0",
        "an IRQ already off the pinned cores is left alone"
    );
    assert_eq!(
        read("proc/cmdline"),
        "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet"
    );

    // Left: what needs a reboot, irqbalance, and clock sync.
    let out = tune_host(Some(root), &args);
    assert_eq!(out.code, Some(0), "{}", out.both());
    let left: Vec<&str> = status_lines(&out.stdout)
        .into_iter()
        .filter(|l| l.starts_with("WARN"))
        .map(|l| l[6..].split(':').next().unwrap())
        .collect();
    assert_eq!(
        left,
        [
            "isolcpus",
            "nohz_full",
            "rcu_nocbs",
            "irqbalance",
            "clock sync"
        ],
        "{}",
        out.stdout
    );
}

/// One instance of a topology file, parsed independently of rollout.sh.
#[derive(Debug)]
struct Instance {
    host: String,
    role: String,
    name: String,
    profile: String,
    affinity: Vec<usize>,
    env: Vec<(String, String)>,
}

fn read_topology(path: &Path) -> Vec<Instance> {
    let mut v: Vec<Instance> = Vec::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let (k, val) = t.split_once('=').expect("KEY=VALUE");
            v.last_mut()
                .expect("a setting after an instance")
                .env
                .push((k.into(), val.into()));
            continue;
        }
        let f: Vec<&str> = t.split_whitespace().collect();
        if f[0] == "tune" {
            continue;
        }
        assert_eq!(f.len(), 5, "instance line: {t}");
        v.push(Instance {
            host: f[0].into(),
            role: f[1].into(),
            name: f[2].into(),
            profile: f[3].into(),
            affinity: cpu_list(f[4]),
            env: Vec::new(),
        });
    }
    v
}

/// A directory with both binaries, for --bin-dir.
fn bin_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, bin) in [("shardcast-pub", pub_bin()), ("shardcast-sub", sub_bin())] {
        std::os::unix::fs::symlink(bin, d.path().join(name)).unwrap();
    }
    d
}

#[test]
fn rollout_dry_run_writes_instance_files_the_binaries_accept() {
    let topology = deploy_dir().join("topology.example");
    let instances = read_topology(&topology);
    let hosts: BTreeSet<&str> = instances.iter().map(|i| i.host.as_str()).collect();
    assert!(
        instances.iter().filter(|i| i.role == "pub").count() >= 1
            && instances.iter().filter(|i| i.role == "sub").count() >= 3
            && hosts.len() >= 4,
        "the example has a publisher host and three subscriber hosts: {instances:?}"
    );
    let bins = bin_dir();
    let out_dir = tempfile::tempdir().unwrap();
    let out = bash(
        &deploy_dir().join("rollout.sh"),
        &[
            topology.to_str().unwrap(),
            "--dry-run",
            "--out",
            out_dir.path().to_str().unwrap(),
            "--bin-dir",
            bins.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.both());
    println!("rollout.sh --dry-run:\n{}", out.stdout);
    let stdout = &out.stdout;
    assert!(!stdout.contains("pre-flight skipped"), "{stdout}");

    let locals = local_cpus();
    for inst in &instances {
        let who = format!("{} {} {}", inst.host, inst.role, inst.name);
        assert!(
            stdout.contains(&format!("ok    {who} (profile {})", inst.profile)),
            "rollout.sh's own pre-flight passed {who}:\n{stdout}"
        );
        let etc = out_dir.path().join(&inst.host).join("etc");
        // The instance file is the topology's settings.
        let env_path = etc.join(format!("shardcast/{}.{}.env", inst.name, inst.role));
        assert_eq!(
            env_file(&env_path),
            inst.env,
            "{who}: {}",
            env_path.display()
        );
        // The profile link points at a profile that is there.
        let link = etc.join(format!("shardcast/{}.{}.profile", inst.name, inst.role));
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            PathBuf::from(format!("profiles/{}.env", inst.profile)),
            "{who}"
        );
        let profile = env_file(&link);
        // The drop-in carries the affinity, which holds every CPU list.
        let unit = format!("shardcast-{}@{}.service", inst.role, inst.name);
        let dropin =
            std::fs::read_to_string(etc.join(format!("systemd/system/{unit}.d/10-cpu.conf")))
                .unwrap();
        let aff_line = dropin
            .lines()
            .rfind(|l| l.starts_with("CPUAffinity="))
            .expect("CPUAffinity= in the drop-in");
        assert_eq!(
            cpu_list(&aff_line["CPUAffinity=".len()..]),
            inst.affinity,
            "{who}"
        );
        assert!(
            dropin.contains("\nCPUAffinity=\n"),
            "{who}: the drop-in resets, then sets"
        );

        // The binary takes profile + instance file, the instance overriding.
        // CPU lists name the target host's CPUs: checked against the
        // affinity, then replaced by as many of ours.
        let prefix = format!("SHARDCAST_{}_", inst.role.to_uppercase());
        let mut merged: Vec<(String, String)> = Vec::new();
        for (k, v) in profile.iter().chain(inst.env.iter()) {
            if !k.starts_with(&prefix) {
                continue;
            }
            let v = if k.ends_with("_CPUS") {
                let cpus = cpu_list(v);
                for c in &cpus {
                    assert!(
                        inst.affinity.contains(c),
                        "{who}: {k}={v}: CPU {c} outside CPUAffinity {:?}",
                        inst.affinity
                    );
                }
                (0..cpus.len())
                    .map(|i| locals[i % locals.len()].to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                v.clone()
            };
            merged.retain(|(mk, _)| mk != k);
            merged.push((k.clone(), v));
        }
        let bin = if inst.role == "pub" {
            pub_bin()
        } else {
            sub_bin()
        };
        let cfg = print_config(&who, bin, &[], &merged);
        let compared = compare_config(&who, &cfg, &merged, &prefix);
        let get = |k: &str| -> Option<Vec<String>> {
            merged
                .iter()
                .find(|(mk, _)| mk == k)
                .map(|(_, v)| v.split(',').map(str::to_string).collect())
        };
        if inst.role == "pub" {
            let binds = get("SHARDCAST_PUB_BIND").expect("a publisher binds");
            let streams = cfg["streams"].as_array().unwrap();
            assert_eq!(streams.len(), binds.len(), "{who}");
            for (s, b) in streams.iter().zip(&binds) {
                assert_eq!(s["bind"], b.as_str(), "{who}");
                assert!(
                    s["cpu"].is_u64() && s["io_cpu"].is_u64(),
                    "{who}: pinned: {s}"
                );
            }
        } else {
            let connects = get("SHARDCAST_SUB_CONNECT").expect("a subscriber connects");
            let ifaces = get("SHARDCAST_SUB_IFACE").unwrap_or_default();
            let shards = cfg["shards"].as_array().unwrap();
            assert_eq!(shards.len(), connects.len(), "{who}");
            for (i, (s, c)) in shards.iter().zip(&connects).enumerate() {
                assert_eq!(s["endpoint"], c.as_str(), "{who}");
                if let Some(src) = ifaces.get(if ifaces.len() == 1 { 0 } else { i }) {
                    let conn = s["connect"].as_str().unwrap();
                    assert!(
                        conn.contains(&format!("{src}:0;")),
                        "{who}: shard {i} connects from {src}: {conn}"
                    );
                }
                assert!(
                    s["cpu"].is_u64() && s["io_cpu"].is_u64(),
                    "{who}: pinned: {s}"
                );
            }
            assert!(
                cfg["worker_cpus"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|c| c.is_u64()),
                "{who}: workers pinned"
            );
        }
        println!("{who}: accepted; compared {compared:?}");
    }

    // Commands: printed, in order: install everywhere, stop the publishers,
    // then subscribers, then publishers.
    let cmds: Vec<&str> = stdout.lines().filter(|l| l.starts_with("+ ")).collect();
    let pos = |needle: &str| -> Vec<usize> {
        cmds.iter()
            .enumerate()
            .filter(|(_, c)| c.contains(needle))
            .map(|(i, _)| i)
            .collect()
    };
    for h in &hosts {
        assert_eq!(
            pos(&format!(
                "{h} 'sudo sh /var/tmp/shardcast-rollout/install.sh'"
            ))
            .len(),
            1,
            "{h} is installed once:\n{stdout}"
        );
    }
    let installs = pos("install.sh");
    let stops = pos("systemctl stop shardcast-pub@");
    let sub_starts = pos("systemctl restart shardcast-sub@");
    let pub_starts = pos("systemctl restart shardcast-pub@");
    let n = |role: &str| instances.iter().filter(|i| i.role == role).count();
    assert_eq!(
        (stops.len(), pub_starts.len()),
        (n("pub"), n("pub")),
        "{stdout}"
    );
    assert_eq!(sub_starts.len(), n("sub"), "{stdout}");
    assert!(installs.iter().max() < stops.iter().min(), "{stdout}");
    assert!(stops.iter().max() < sub_starts.iter().min(), "{stdout}");
    assert!(
        sub_starts.iter().max() < pub_starts.iter().min(),
        "{stdout}"
    );
    assert!(stdout.contains("dry run: nothing was run"), "{stdout}");

    // The generated units with their drop-ins, as systemd would load them.
    let units = tempfile::tempdir().unwrap();
    stage_units(units.path());
    let mut names = Vec::new();
    for inst in &instances {
        let unit = format!("shardcast-{}@{}.service", inst.role, inst.name);
        let from = out_dir
            .path()
            .join(&inst.host)
            .join(format!("etc/systemd/system/{unit}.d"));
        let to = units.path().join(format!("{unit}.d"));
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(from.join("10-cpu.conf"), to.join("10-cpu.conf")).unwrap();
        if !names.contains(&unit) {
            names.push(unit);
        }
    }
    verify_units(units.path(), &names);
}

#[test]
fn rollout_refuses_a_bad_topology_and_runs_its_steps_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let bins = bin_dir();
    let rollout = deploy_dir().join("rollout.sh");
    let bad = dir.path().join("bad.topology");
    std::fs::write(
        &bad,
        "h1 pub feed low-latency 1-3\n\
         \x20   SHARDCAST_PUB_BIND=tcp://10.0.0.1:5556\n\
         \x20   SHARDCAST_PUB_CPUS=2,3,4\n\
         \x20   SHARDCAST_SUB_WORKERS=2\n\
         h2 sub feed nosuch 1-3\n\
         \x20   SHARDCAST_SUB_CONNECT=tcp://10.0.0.1:5556\n",
    )
    .unwrap();
    let out = bash(
        &rollout,
        &[
            bad.to_str().unwrap(),
            "--dry-run",
            "--out",
            dir.path().join("o").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, Some(2), "{}", out.both());
    for want in [
        "bad.topology:3: SHARDCAST_PUB_CPUS=2,3,4: CPUs 4 are outside the instance's CPU affinity 1-3",
        "bad.topology:4: SHARDCAST_SUB_WORKERS is not for a pub instance",
        "bad.topology:5: profile 'nosuch'",
        "nothing was done",
    ] {
        assert!(out.stderr.contains(want), "missing '{want}':\n{}", out.both());
    }
    assert!(
        !out.stdout.contains("+ "),
        "no command printed:\n{}",
        out.stdout
    );

    // A value the binary refuses is caught before any host is touched.
    let refused = dir.path().join("refused.topology");
    std::fs::write(
        &refused,
        "h2 sub feed throughput 1-3\n\
         \x20   SHARDCAST_SUB_CONNECT=tcp://10.0.0.1:5556\n\
         \x20   SHARDCAST_SUB_WORKERS=65\n\
         \x20   SHARDCAST_SUB_NO_SUCH_FLAG=1\n",
    )
    .unwrap();
    let out = bash(
        &rollout,
        &[
            refused.to_str().unwrap(),
            "--dry-run",
            "--bin-dir",
            bins.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, Some(2), "{}", out.both());
    assert!(
        out.stderr.contains("SHARDCAST_SUB_NO_SUCH_FLAG")
            && out.stderr.contains("is not a flag twin"),
        "{}",
        out.both()
    );
    assert!(
        out.stderr.contains("'--workers"),
        "the binary's own message: {}",
        out.both()
    );

    // The real path, with ssh and scp replaced by a logger: the commands
    // run, in order, and a unit that is not active fails the rollout.
    let log = dir.path().join("ssh.log");
    let fake = dir.path().join("fake-ssh");
    std::fs::write(
        &fake,
        "#!/bin/sh\n\
         host=\"$1\"; shift\n\
         cat >/dev/null\n\
         echo \"$host $*\" >> \"$FAKE_LOG\"\n\
         case \"$host $*\" in \"$FAKE_DOWN\"*) exit 3 ;; esac\n\
         exit 0\n",
    )
    .unwrap();
    let fake_scp = dir.path().join("fake-scp");
    std::fs::write(&fake_scp, "#!/bin/sh\necho \"scp $*\" >> \"$FAKE_LOG\"\n").unwrap();
    for f in [&fake, &fake_scp] {
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(f)
            .status()
            .unwrap();
    }
    let topology = deploy_dir().join("topology.example");
    let run = |down: &str| {
        let _ = std::fs::remove_file(&log);
        let out = bash(
            &rollout,
            &[
                topology.to_str().unwrap(),
                "--out",
                dir.path().join("out").to_str().unwrap(),
                "--bin-dir",
                bins.path().to_str().unwrap(),
                "--settle",
                "0",
            ],
            &[
                kv("SSH", fake.to_str().unwrap()),
                kv("SCP", fake_scp.to_str().unwrap()),
                kv("FAKE_LOG", log.to_str().unwrap()),
                kv("FAKE_DOWN", down),
            ],
        );
        (out, std::fs::read_to_string(&log).unwrap_or_default())
    };
    let (out, log_text) = run("none");
    assert_eq!(out.code, Some(0), "{}", out.both());
    let lines: Vec<&str> = log_text.lines().collect();
    let first = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no '{needle}' in:\n{log_text}"))
    };
    let last = |needle: &str| lines.iter().rposition(|l| l.contains(needle)).unwrap();
    assert!(
        last("install.sh") < first("systemctl stop shardcast-pub@"),
        "{log_text}"
    );
    assert!(
        last("systemctl stop shardcast-pub@") < first("systemctl restart shardcast-sub@"),
        "{log_text}"
    );
    assert!(
        last("systemctl restart shardcast-sub@") < first("systemctl restart shardcast-pub@"),
        "{log_text}"
    );
    assert!(
        last("systemctl restart shardcast-pub@") < first("is-active"),
        "{log_text}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("is-active")).count(),
        5,
        "{log_text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("scp ") && l.contains("shardcast-sub sub-a.example:")),
        "{log_text}"
    );
    assert!(!log_text.contains("journalctl"), "{log_text}");

    let (out, log_text) = run("sub-c.example systemctl is-active");
    assert_eq!(
        out.code,
        Some(1),
        "a unit that is not active fails the rollout:\n{}",
        out.both()
    );
    assert!(
        log_text.contains(
            "sub-c.example systemctl status --no-pager shardcast-sub@bulk.service; journalctl"
        ),
        "{log_text}"
    );
}
