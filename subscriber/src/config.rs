//! Flags resolved into a checked configuration (stage two of parsing):
//! cross-flag rules, CPU plans, the thread budget.

use crate::cli::{Fanout, Flags};
use serde::Serialize;
use shardcast_agent::cpu;
use shardcast_agent::curve::{self, KeyPair, PublicKey};
use shardcast_agent::exit::UsageError;
use shardcast_agent::idle::Idle;
use shardcast_agent::lag::OnSlow;
pub use shardcast_agent::zmqx::is_multicast;
use shardcast_proto::snail::{LagLimit, LagMode};
use shardcast_workers::WorkKind;
use std::path::PathBuf;
use std::time::Duration;

/// One shard's connection.
#[derive(Clone, Debug, Serialize)]
pub struct ShardPlan {
    /// Shard index.
    pub index: usize,
    /// The publisher endpoint as given.
    pub endpoint: String,
    /// What is passed to libzmq (with the source interface, if any).
    pub connect: String,
    /// Shard thread CPU.
    pub cpu: Option<usize>,
    /// ZeroMQ I/O thread CPU.
    pub io_cpu: Option<usize>,
    /// `--connect-b`: line B's endpoint, if this shard has one.
    pub connect_b: Option<String>,
}

/// The resolved configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Shards.
    pub shards: Vec<ShardPlan>,
    /// Worker count (inline: one per shard, the shard itself).
    pub workers: usize,
    /// `--workers 0`: the shards do the work themselves; no worker threads,
    /// no inproc hop.
    pub inline: bool,
    /// Worker CPUs, by worker index.
    pub worker_cpus: Vec<Option<usize>>,
    /// Keyed (true) or push fan-out.
    pub keyed: bool,
    /// Work kind.
    pub work: WorkKind,
    /// Busy work per record, ns.
    pub work_ns: u64,
    /// ZMQ_RCVHWM.
    pub rcvhwm: i32,
    /// ZMQ_RCVBUF (0 = OS default).
    pub rcvbuf: i32,
    /// inproc HWM at each end.
    pub inproc_hwm: i32,
    /// Frames a shard may pack into one inproc hop.
    pub coalesce: usize,
    /// ZMQ_MAXMSGSZ.
    pub max_msg_size: i64,
    /// Snail limit, ms.
    pub max_lag_ms: u64,
    /// Croak or warn.
    pub on_slow: OnSlow,
    /// Wait strategy.
    pub idle: Idle,
    /// Run limit.
    pub duration: Option<Duration>,
    /// Report path.
    pub report_json: Option<PathBuf>,
    /// Books path.
    pub books_out: Option<PathBuf>,
    /// `.hgrm` path.
    pub hgrm: Option<PathBuf>,
    /// Interval log path.
    pub hdr_log: Option<PathBuf>,
    /// Plot path (.svg).
    pub plot: Option<PathBuf>,
    /// Warm-up left out of the histograms.
    pub warmup: Duration,
    /// Plain progress lines every so often.
    pub stats_interval: Option<Duration>,
    /// `--metrics-bind`.
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// `--metrics-linger-ms`.
    pub metrics_linger: Duration,
    /// Worker drain limit.
    pub drain_timeout: Duration,
    /// `--catch-up`: a recorder's serve endpoint.
    pub catch_up: Option<String>,
    /// `--catch-up-timeout-ms`.
    pub catch_up_timeout: Duration,
    /// `--line-wait-ms`.
    pub line_wait: Duration,
    /// `--subscribe`: the symbol prefixes selected (empty: everything).
    pub subscribe: Vec<String>,
    /// `--id`: the name this subscriber announces (presence); `null`
    /// when none.
    pub id: Option<String>,
    /// `--recover-from`, in the order asked.
    pub recover_from: Vec<String>,
    /// `--reorder-window` (resolved): the largest gap repaired, records.
    pub reorder_window: u64,
    /// `--reorder-window-ms` (resolved).
    pub reorder_window_time: Duration,
    /// Fault injection: (after records, stall) for worker 0.
    pub stall_worker: Option<(u64, Duration)>,
    /// How the snail judges lag.
    pub snail_mode: LagMode,
    /// Relative mode's window.
    pub snail_window: Duration,
    /// Largest believable lead of a sender's clock over ours, ms.
    pub max_clock_skew_ms: u64,
    /// Forensic report path.
    pub snail_report: Option<PathBuf>,
    /// Operator endpoint for the alarm message.
    pub alarm: Option<String>,
    /// Books per worker.
    pub max_symbols: usize,
    /// CURVE client keys; `None`: plain text.
    pub curve: Option<CurveClient>,
    /// ZMQ_RATE for pgm/epgm shards, kbit/s.
    pub pgm_rate: i32,
    /// ZMQ_RECOVERY_IVL for pgm/epgm shards, ms.
    pub pgm_recovery_ms: i32,
}

/// CURVE settings of a subscriber.
#[derive(Clone, Debug, Serialize)]
pub struct CurveClient {
    /// Our key pair (the secret half is never printed).
    pub keys: KeyPair,
    /// The publisher's public key.
    pub server: PublicKey,
}

fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

/// The first IPv4 address of the interface `name` (getifaddrs(3)).
pub fn interface_address(name: &str) -> Option<std::net::Ipv4Addr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below and
    // only read in between; each ifa_addr is checked for null and family
    // before it is read as a sockaddr_in.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut found = None;
        let mut cur = list;
        while !cur.is_null() {
            let ifa = &*cur;
            let addr = ifa.ifa_addr;
            if !addr.is_null()
                && i32::from((*addr).sa_family) == libc::AF_INET
                && std::ffi::CStr::from_ptr(ifa.ifa_name).to_bytes() == name.as_bytes()
            {
                let sin = &*(addr as *const libc::sockaddr_in);
                found = Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
                break;
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(list);
        found
    }
}

/// Join a source interface/address to a tcp endpoint the way libzmq wants:
/// `tcp://SRC:PORT;DST:PORT` (the source needs a port; 0 lets the OS pick).
pub fn with_source(endpoint: &str, iface: &str) -> Result<String, String> {
    let Some(rest) = endpoint.strip_prefix("tcp://") else {
        return Err(if is_multicast(endpoint) {
            format!(
                "a pgm/epgm endpoint names its interface itself (epgm://IFACE;GROUP:PORT): leave --iface \
                 out for '{endpoint}'"
            )
        } else {
            format!("a source interface only applies to tcp:// endpoints, not '{endpoint}'")
        });
    };
    // libzmq takes a source *address* only: given an interface name it
    // connects nowhere, silently. So a name is turned into its address here.
    let resolved;
    // IPv6 (bracketed or with several colons) and IPv4[:port] pass as is.
    let iface = if iface.starts_with('[')
        || iface.matches(':').count() > 1
        || iface.split(':').next().is_some_and(is_ip)
    {
        iface
    } else {
        let (name, port) = match iface.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (iface, None),
        };
        let addr = interface_address(name).ok_or_else(|| {
            format!("'{name}' is neither an IP address nor an interface with an IPv4 address on this host")
        })?;
        resolved = match port {
            Some(p) => format!("{addr}:{p}"),
            None => addr.to_string(),
        };
        &resolved
    };
    // A source needs a port: `10.0.0.2` gets `:0`; `10.0.0.2:0` and
    // `[fe80::1]:0` are taken as given; a bare IPv6 address is bracketed.
    let src = if iface.starts_with('[') {
        if iface.contains("]:") {
            iface.to_string()
        } else {
            format!("{iface}:0")
        }
    } else {
        match iface.matches(':').count() {
            0 => format!("{iface}:0"),
            1 => iface.to_string(),
            _ => format!("[{iface}]:0"),
        }
    };
    Ok(format!("tcp://{src};{rest}"))
}

impl Config {
    /// The rules between flags that clap cannot express.
    fn check(f: &Flags) -> Result<(), UsageError> {
        let n = f.connect.len();
        if f.work.needs_keyed() && f.fanout != Fanout::Keyed {
            return Err(UsageError::new(
                "--fanout",
                format!(
                    "--work {} keeps per-symbol state and needs every record of a symbol \
                     at one worker, in order; use --fanout keyed (or --work none/checksum \
                     with --fanout push)",
                    f.work.name()
                ),
            ));
        }
        if !f.iface.is_empty() && f.iface.len() != 1 && f.iface.len() != n {
            return Err(UsageError::new(
                "--iface",
                format!(
                    "{} values for {n} --connect endpoints; give one per --connect, in order, or one for all",
                    f.iface.len()
                ),
            ));
        }
        if let Some(p) = &f.plot {
            if !matches!(p.extension().and_then(|e| e.to_str()), Some("svg" | "png")) {
                return Err(UsageError::new(
                    "--plot",
                    format!("'{}': name a .svg or .png file", p.display()),
                ));
            }
        }
        if f.rcvhwm < 0 {
            return Err(UsageError::new("--rcvhwm", "must be 0 (no limit) or more"));
        }
        if f.rcvbuf < 0 {
            return Err(UsageError::new(
                "--rcvbuf",
                "must be 0 (OS default) or more",
            ));
        }
        let snail_window = Duration::from_secs_f64(f.snail_window);
        if f.snail_mode == LagMode::Relative && snail_window.as_millis() <= f.max_lag_ms as u128 {
            return Err(UsageError::new(
                "--snail-window",
                format!(
                    "{} s is not longer than --max-lag-ms {}: the floor would forget before a backlog \
                     could reach the limit; use a window several times the lag budget (default 60 s)",
                    f.snail_window, f.max_lag_ms
                ),
            ));
        }
        Ok(())
    }

    /// Resolve flags, or say which flag is wrong and why.
    pub fn resolve(f: &Flags) -> Result<Config, UsageError> {
        Self::check(f)?;
        let n = f.connect.len();
        let work = f.work;
        let keyed = f.fanout == Fanout::Keyed;
        let snail_window = Duration::from_secs_f64(f.snail_window);
        let shard_cpus = cpu::plan_cpus(
            "--shard-cpus",
            f.shard_cpus.as_ref().map(|c| &c.0[..]),
            n,
            "shard",
        )?;
        let io_cpus = cpu::plan_cpus(
            "--io-cpus",
            f.io_cpus.as_ref().map(|c| &c.0[..]),
            n,
            "shard",
        )?;
        // Inline (`--workers 0`): each shard is its own worker, so the
        // workers' counters, results and report rows are one per shard.
        let inline = f.workers == 0;
        if inline && f.worker_cpus.is_some() {
            return Err(UsageError::new(
                "--worker-cpus",
                "--workers 0 starts no worker thread: the shards do the work (pin them with --shard-cpus)",
            ));
        }
        let workers = if inline { n } else { f.workers as usize };
        let worker_cpus = if inline {
            vec![None; n]
        } else {
            cpu::plan_cpus(
                "--worker-cpus",
                f.worker_cpus.as_ref().map(|c| &c.0[..]),
                workers,
                "worker",
            )?
        };
        let multicast = f.connect.iter().any(|c| is_multicast(c));
        if multicast && !curve::pgm_available() {
            return Err(UsageError::new(
                "--connect",
                curve::system_libzmq_remedy("PGM (pgm://, epgm://)"),
            ));
        }
        let curve = curve_client(f, multicast)?;
        let shards = shard_plans(f, &shard_cpus, &io_cpus)?;
        Ok(Config {
            shards,
            workers,
            inline,
            worker_cpus,
            keyed,
            work,
            work_ns: f.work_ns,
            rcvhwm: f.rcvhwm,
            rcvbuf: f.rcvbuf,
            inproc_hwm: f.inproc_hwm,
            coalesce: f.coalesce as usize,
            max_msg_size: f.max_msg_size,
            max_lag_ms: f.max_lag_ms,
            on_slow: f.on_slow,
            idle: f.idle,
            duration: f.duration.map(Duration::from_secs_f64),
            report_json: f.report_json.clone(),
            books_out: f.books_out.clone(),
            hgrm: f.hgrm.clone(),
            hdr_log: f.hdr_log.clone(),
            plot: f.plot.clone(),
            warmup: Duration::from_secs_f64(f.warmup),
            stats_interval: f.stats_interval.map(Duration::from_secs_f64),
            metrics_bind: f.metrics_bind,
            metrics_linger: Duration::from_millis(f.metrics_linger_ms),
            drain_timeout: Duration::from_millis(f.drain_timeout_ms),
            catch_up: f.catch_up.clone(),
            catch_up_timeout: Duration::from_millis(f.catch_up_timeout_ms),
            recover_from: f.recover_from.clone(),
            line_wait: Duration::from_millis(f.line_wait_ms),
            subscribe: f.subscribe.clone(),
            id: f.id.clone(),
            // One second of the feed at the lag budget, the rule the HWM
            // defaults follow (--explain-hwm).
            reorder_window: f
                .reorder_window
                .unwrap_or_else(|| (f.expected_rate.saturating_mul(f.max_lag_ms) / 1000).max(1)),
            reorder_window_time: Duration::from_millis(
                f.reorder_window_ms.unwrap_or(f.max_lag_ms).max(1),
            ),
            stall_worker: f
                .stall_worker_ms
                .map(|ms| (f.stall_after, Duration::from_millis(ms))),
            snail_mode: f.snail_mode,
            snail_window,
            max_clock_skew_ms: f.max_clock_skew_ms,
            snail_report: f.snail_report.clone(),
            alarm: f.alarm.clone(),
            max_symbols: usize::try_from(f.max_symbols).unwrap_or(usize::MAX),
            curve,
            pgm_rate: f.pgm_rate,
            pgm_recovery_ms: f.pgm_recovery_ms,
        })
    }

    /// Every output file a run writes, with its flag (`--hdr-log` is
    /// written as the run goes; the others at its end).
    pub fn outputs(&self) -> Vec<(&'static str, &std::path::Path)> {
        [
            ("--report-json", &self.report_json),
            ("--books-out", &self.books_out),
            ("--hgrm", &self.hgrm),
            ("--hdr-log", &self.hdr_log),
            ("--plot", &self.plot),
            ("--snail-report", &self.snail_report),
        ]
        .into_iter()
        .filter_map(|(flag, p)| p.as_deref().map(|p| (flag, p)))
        .collect()
    }

    /// The snail's limit, for shards and workers alike.
    pub fn lag_limit(&self) -> LagLimit {
        LagLimit {
            max_lag_ns: self.max_lag_ms.saturating_mul(1_000_000),
            mode: self.snail_mode,
            window_ns: self.snail_window.as_nanos() as u64,
            max_skew_ns: self.max_clock_skew_ms.saturating_mul(1_000_000),
        }
    }

    /// Busy threads: a shard and an I/O thread per stream (and one more
    /// I/O thread per line B), plus the workers (none inline).
    pub fn busy_threads(&self) -> usize {
        let lines_b = self.shards.iter().filter(|s| s.connect_b.is_some()).count();
        2 * self.shards.len() + lines_b + if self.inline { 0 } else { self.workers }
    }
}

/// `--curve-key` and `--curve-server-key`, read and checked.
fn curve_client(f: &Flags, multicast: bool) -> Result<Option<CurveClient>, UsageError> {
    Ok(match (&f.curve_key, &f.curve_server_key) {
        (Some(key), Some(server)) => {
            curve::need_curve("--curve-key")?;
            if multicast {
                return Err(UsageError::new(
                    "--curve-key",
                    "libzmq cannot encrypt pgm:// or epgm:// streams (CURVE needs a connection); use tcp://",
                ));
            }
            Some(CurveClient {
                keys: curve::read_key_pair("--curve-key", key)?,
                server: curve::read_public_key("--curve-server-key", server)?,
            })
        }
        _ => None,
    })
}

/// One plan per `--connect`: its source interface and CPUs.
fn shard_plans(
    f: &Flags,
    shard_cpus: &[Option<usize>],
    io_cpus: &[Option<usize>],
) -> Result<Vec<ShardPlan>, UsageError> {
    let mut shards = Vec::with_capacity(f.connect.len());
    for (i, ep) in f.connect.iter().enumerate() {
        let connect = match f.iface.get(if f.iface.len() == 1 { 0 } else { i }) {
            Some(iface) => with_source(ep, iface).map_err(|m| UsageError::new("--iface", m))?,
            None => ep.clone(),
        };
        shards.push(ShardPlan {
            index: i,
            endpoint: ep.clone(),
            connect,
            cpu: shard_cpus[i],
            io_cpu: io_cpus[i],
            connect_b: f.connect_b.get(i).cloned(),
        });
    }
    if f.connect_b.len() > f.connect.len() {
        return Err(UsageError::new(
            "--connect-b",
            format!(
                "{} line B endpoints for {} streams: --connect-b goes by position, at most one per --connect",
                f.connect_b.len(),
                f.connect.len()
            ),
        ));
    }
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn resolve(args: &[&str]) -> Result<Config, UsageError> {
        let mut v = vec!["shardcast-sub"];
        v.extend_from_slice(args);
        Config::resolve(&Flags::try_parse_from(v).unwrap())
    }

    #[test]
    fn book_work_refuses_push_fanout() {
        let e = resolve(&["--connect", "tcp://127.0.0.1:1", "--fanout", "push"]).unwrap_err();
        assert_eq!(e.flag, "--fanout");
        assert!(resolve(&[
            "--connect",
            "tcp://127.0.0.1:1",
            "--fanout",
            "push",
            "--work",
            "none"
        ])
        .is_ok());
    }

    #[test]
    fn itch_book_work_needs_keyed_fanout() {
        let c = resolve(&["--connect", "tcp://127.0.0.1:1", "--work", "itch-book"]).unwrap();
        assert_eq!((c.work, c.keyed), (WorkKind::ItchBook, true));
        let e = resolve(&[
            "--connect",
            "tcp://127.0.0.1:1",
            "--work",
            "itch-book",
            "--fanout",
            "push",
        ])
        .unwrap_err();
        assert_eq!(e.flag, "--fanout");
        assert!(e.to_string().contains("itch-book"), "{e}");
    }

    #[test]
    fn iface_pairs_with_connect() {
        let c = resolve(&[
            "--connect",
            "tcp://10.0.0.1:5556",
            "--connect",
            "tcp://10.0.1.1:5556",
            "--iface",
            "10.0.0.2",
            "--iface",
            "lo:0",
        ])
        .unwrap();
        assert_eq!(c.shards[0].connect, "tcp://10.0.0.2:0;10.0.0.1:5556");
        // An interface name becomes its address: libzmq takes no names.
        assert_eq!(c.shards[1].connect, "tcp://127.0.0.1:0;10.0.1.1:5556");
        assert!(with_source("tcp://10.0.0.1:5", "nosuch0").is_err());
        assert_eq!(
            with_source("tcp://[::1]:5", "::1").unwrap(),
            "tcp://[::1]:0;[::1]:5"
        );
        assert_eq!(
            with_source("tcp://[::1]:5", "[::1]").unwrap(),
            "tcp://[::1]:0;[::1]:5"
        );
        assert_eq!(
            with_source("tcp://[::1]:5", "[::1]:7").unwrap(),
            "tcp://[::1]:7;[::1]:5"
        );
        let e = resolve(&[
            "--connect",
            "tcp://a:1",
            "--connect",
            "tcp://b:1",
            "--connect",
            "tcp://c:1",
            "--iface",
            "x",
            "--iface",
            "y",
        ])
        .unwrap_err();
        assert_eq!(e.flag, "--iface");
    }

    #[test]
    fn no_workers_means_the_shards_work_inline() {
        let c = resolve(&[
            "--connect",
            "tcp://a:1",
            "--connect",
            "tcp://a:2",
            "--workers",
            "0",
        ])
        .unwrap();
        assert!(c.inline);
        assert_eq!(c.workers, 2, "one worker row per shard");
        assert_eq!(c.busy_threads(), 4, "2 shards + 2 I/O threads, no workers");
        let e = resolve(&[
            "--connect",
            "tcp://a:1",
            "--workers",
            "0",
            "--worker-cpus",
            "0",
        ])
        .unwrap_err();
        assert_eq!(e.flag, "--worker-cpus");
    }

    /// `--id` (presence): a valid name is taken (and printed by
    /// --print-config); anything else is a usage error naming --id.
    #[test]
    fn the_id_is_a_presence_name() {
        let c = resolve(&["--connect", "tcp://a:1", "--id", "desk-1.ny4"]).unwrap();
        assert_eq!(c.id.as_deref(), Some("desk-1.ny4"));
        assert_eq!(serde_json::to_value(&c).unwrap()["id"], "desk-1.ny4");
        let c = resolve(&["--connect", "tcp://a:1"]).unwrap();
        assert_eq!(
            serde_json::to_value(&c).unwrap()["id"],
            serde_json::Value::Null
        );
        let long = "x".repeat(65);
        for bad in ["", "a b", "caf\u{e9}", "x\ty", long.as_str()] {
            let e = Flags::try_parse_from(["shardcast-sub", "--connect", "tcp://a:1", "--id", bad])
                .unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
            assert!(e.to_string().contains("--id"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn cpu_lists_must_cover_every_thread() {
        let e = resolve(&[
            "--connect",
            "tcp://a:1",
            "--workers",
            "2",
            "--worker-cpus",
            "0",
        ])
        .unwrap_err();
        assert_eq!(e.flag, "--worker-cpus");
    }
}
