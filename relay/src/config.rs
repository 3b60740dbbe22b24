//! Flags resolved into a checked configuration (stage two of parsing).

use crate::cli::{Flags, OnEos};
use serde::Serialize;
use shardcast_agent::curve::{self, Allowlist, KeyPair, PublicKey};
use shardcast_agent::exit::UsageError;
use shardcast_agent::idle::Idle;
use shardcast_agent::lag::OnSlow;
use shardcast_agent::zmqx::is_multicast;
use shardcast_agent::{cpu, zmqx};
use shardcast_proto::snail::{LagLimit, LagMode};
use shardcast_publisher::config::{CurveServer, WhenFull};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One relay thread: an upstream stream and where it goes.
#[derive(Clone, Debug, Serialize)]
pub struct HopPlan {
    /// Index (position of its `--connect`).
    pub index: usize,
    /// Upstream endpoint.
    pub connect: String,
    /// Downstream endpoint.
    pub bind: String,
    /// Whether downstream is multicast (no subscriptions come back).
    pub multicast: bool,
    /// Whether the relay subscribes upstream at start (`--wait-subscribers
    /// 0`, or multicast on either side) rather than once subscribers come.
    pub subscribe_at_start: bool,
    /// Relay thread CPU.
    pub cpu: Option<usize>,
    /// ZeroMQ I/O thread CPU.
    pub io_cpu: Option<usize>,
}

/// `--retransmit-bind` and `--retransmit-from`.
#[derive(Clone, Debug, Serialize)]
pub struct RetransmitProxy {
    /// Downstream ROUTER endpoint.
    pub bind: String,
    /// Upstream server.
    pub from: String,
    /// Requests one peer may have in progress.
    pub peer_requests: u32,
}

/// CURVE upstream: the relay as a client.
#[derive(Clone, Debug, Serialize)]
pub struct CurveClient {
    /// Our key pair (the secret half is never printed).
    pub keys: KeyPair,
    /// The upstream's public key.
    pub server: PublicKey,
}

/// The resolved configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Relay threads.
    pub hops: Vec<HopPlan>,
    /// `--id`.
    pub id: Option<String>,
    /// Downstream subscribers needed before subscribing upstream.
    pub wait_subscribers: u32,
    /// `--expect-subscribers`.
    pub expect_subscribers: Vec<String>,
    /// Downstream HWM policy.
    pub when_full: WhenFull,
    /// What happens once every stream ended.
    pub on_eos: OnEos,
    /// How long to wait for downstream subscribers to leave after the end.
    pub eos_timeout: Duration,
    /// ZMQ_RCVHWM upstream.
    pub rcvhwm: i32,
    /// ZMQ_RCVBUF upstream (0 = OS default).
    pub rcvbuf: i32,
    /// ZMQ_SNDHWM downstream.
    pub sndhwm: i32,
    /// ZMQ_SNDBUF downstream (0 = OS default).
    pub sndbuf: i32,
    /// ZMQ_MAXMSGSZ upstream.
    pub max_msg_size: i64,
    /// Snail limit, ms.
    pub max_lag_ms: u64,
    /// Croak or warn.
    pub on_slow: OnSlow,
    /// How lag is judged.
    pub snail_mode: LagMode,
    /// Relative mode's window.
    pub snail_window: Duration,
    /// Largest believable lead of a sender's clock, ms.
    pub max_clock_skew_ms: u64,
    /// Wait strategy.
    pub idle: Idle,
    /// Run limit.
    pub duration: Option<Duration>,
    /// Retransmission pass-through.
    pub retransmit: Option<RetransmitProxy>,
    /// ZMQ_RATE, kbit/s (multicast downstream).
    pub pgm_rate: i32,
    /// ZMQ_RECOVERY_IVL, ms (multicast downstream).
    pub pgm_recovery_ms: i32,
    /// ZMQ_MULTICAST_HOPS (multicast downstream).
    pub multicast_hops: i32,
    /// Subscription messages per downstream connection.
    pub max_subscriptions: u32,
    /// Downstream connections per source address.
    pub max_peers_per_host: u32,
    /// ZMQ_HANDSHAKE_IVL downstream.
    pub handshake_timeout: Duration,
    /// CURVE upstream (`--curve-key`, `--curve-server-key`).
    pub curve_upstream: Option<CurveClient>,
    /// CURVE downstream (`--curve-secret-key`, `--curve-allow`).
    pub curve_downstream: Option<CurveServer>,
    /// `--metrics-bind`.
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// `--metrics-linger-ms`.
    pub metrics_linger: Duration,
    /// Report path.
    pub report_json: Option<PathBuf>,
}

impl Config {
    /// Check and resolve the flags; the error names the flag at fault.
    pub fn resolve(f: &Flags) -> Result<Config, UsageError> {
        let n = f.connect.len();
        if f.bind.len() != n {
            return Err(UsageError::new(
                "--bind",
                format!(
                    "give one --bind per --connect (by position): {} --connect, {} --bind",
                    n,
                    f.bind.len()
                ),
            ));
        }
        // `:*` and `:0` ask the OS for a port: never the same twice.
        let fixed = |e: &String| !(e.ends_with(":*") || e.ends_with(":0"));
        for (i, b) in f.bind.iter().enumerate().filter(|(_, b)| fixed(b)) {
            if f.bind[..i].contains(b) {
                return Err(UsageError::new("--bind", format!("{b} is given twice")));
            }
            if f.connect.contains(b) {
                return Err(UsageError::new(
                    "--bind",
                    format!("{b} is also a --connect endpoint: a relay would feed itself"),
                ));
            }
            if b.starts_with("inproc://") {
                return Err(UsageError::new(
                    "--bind",
                    "inproc:// reaches nothing outside this process; use tcp://, ipc:// or epgm://",
                ));
            }
        }
        let multicast = f.bind.iter().chain(&f.connect).any(|e| is_multicast(e));
        if multicast && !curve::pgm_available() {
            return Err(UsageError::new(
                if f.bind.iter().any(|e| is_multicast(e)) {
                    "--bind"
                } else {
                    "--connect"
                },
                curve::system_libzmq_remedy("PGM (pgm://, epgm://)"),
            ));
        }
        if !f.expect_subscribers.is_empty() && f.bind.iter().all(|b| is_multicast(b)) {
            return Err(UsageError::new(
                "--expect-subscribers",
                "PGM carries no subscriptions back, so a pgm:// or epgm:// --bind cannot see who is \
                 subscribed; use tcp:// downstream",
            ));
        }
        let retransmit = match (&f.retransmit_bind, &f.retransmit_from) {
            (Some(bind), Some(from)) => {
                for (flag, ep) in [("--retransmit-bind", bind), ("--retransmit-from", from)] {
                    zmqx::check_endpoint(flag, ep)?;
                    if is_multicast(ep) {
                        return Err(UsageError::new(
                            flag,
                            "requests need connections (tcp://, ipc://); pgm:// and epgm:// carry none",
                        ));
                    }
                }
                if fixed(bind) && (f.bind.contains(bind) || f.connect.contains(bind)) {
                    return Err(UsageError::new(
                        "--retransmit-bind",
                        format!("{bind} is also a stream endpoint"),
                    ));
                }
                Some(RetransmitProxy {
                    bind: bind.clone(),
                    from: from.clone(),
                    peer_requests: f.retransmit_peer_requests,
                })
            }
            // clap's `requires` sees to the pair.
            _ => None,
        };
        let curve_upstream = match (&f.curve_key, &f.curve_server_key) {
            (Some(key), Some(server)) => {
                curve::need_curve("--curve-key")?;
                if f.connect.iter().any(|c| is_multicast(c)) {
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
        };
        let curve_downstream = match &f.curve_secret_key {
            Some(path) => {
                curve::need_curve("--curve-secret-key")?;
                if f.bind.iter().any(|b| is_multicast(b)) {
                    return Err(UsageError::new(
                        "--curve-secret-key",
                        "CURVE needs a connection per subscriber (tcp://, ipc://); libzmq cannot encrypt \
                         pgm:// or epgm:// streams",
                    ));
                }
                Some(CurveServer {
                    keys: curve::read_key_pair("--curve-secret-key", path)?,
                    allow: Allowlist::read("--curve-allow", &f.curve_allow)?,
                })
            }
            None => None,
        };
        let cpus = cpu::plan_cpus("--cpus", f.cpus.as_ref().map(|c| &c.0[..]), n, "relay")?;
        let io = cpu::plan_cpus("--io-cpus", f.io_cpus.as_ref().map(|c| &c.0[..]), n, "I/O")?;
        Ok(Config {
            hops: (0..n)
                .map(|i| {
                    let down = is_multicast(&f.bind[i]);
                    let up = is_multicast(&f.connect[i]);
                    HopPlan {
                        index: i,
                        connect: f.connect[i].clone(),
                        bind: f.bind[i].clone(),
                        multicast: down,
                        subscribe_at_start: f.wait_subscribers == 0 || down || up,
                        cpu: cpus[i],
                        io_cpu: io[i],
                    }
                })
                .collect(),
            id: f.id.clone(),
            wait_subscribers: f.wait_subscribers,
            expect_subscribers: f.expect_subscribers.clone(),
            when_full: f.when_full,
            on_eos: f.on_eos,
            eos_timeout: Duration::from_millis(f.eos_timeout_ms),
            rcvhwm: f.rcvhwm,
            rcvbuf: f.rcvbuf,
            sndhwm: f.sndhwm,
            sndbuf: f.sndbuf,
            max_msg_size: f.max_msg_size,
            max_lag_ms: f.max_lag_ms,
            on_slow: f.on_slow,
            snail_mode: f.snail_mode,
            snail_window: Duration::from_secs_f64(f.snail_window),
            max_clock_skew_ms: f.max_clock_skew_ms,
            idle: f.idle,
            duration: f.duration.map(Duration::from_secs_f64),
            retransmit,
            pgm_rate: f.pgm_rate,
            pgm_recovery_ms: f.pgm_recovery_ms,
            multicast_hops: f.multicast_hops,
            max_subscriptions: f.max_subscriptions,
            max_peers_per_host: f.max_peers_per_host,
            handshake_timeout: Duration::from_millis(f.handshake_timeout_ms),
            curve_upstream,
            curve_downstream,
            metrics_bind: f.metrics_bind,
            metrics_linger: Duration::from_millis(f.metrics_linger_ms),
            report_json: f.report_json.clone(),
        })
    }

    /// The snail's limit.
    pub fn lag_limit(&self) -> LagLimit {
        LagLimit {
            max_lag_ns: self.max_lag_ms.saturating_mul(1_000_000),
            mode: self.snail_mode,
            window_ns: self.snail_window.as_nanos().min(u128::from(u64::MAX)) as u64,
            max_skew_ns: self.max_clock_skew_ms.saturating_mul(1_000_000),
        }
    }

    /// Output files (cleared before the run).
    pub fn outputs(&self) -> Vec<(&'static str, &Path)> {
        self.report_json
            .iter()
            .map(|p| ("--report-json", p.as_path()))
            .collect()
    }

    /// Busy threads: relay threads and their I/O threads.
    pub fn busy_threads(&self) -> usize {
        self.hops.len() * 2
    }
}
