//! Flags resolved into a checked configuration.

use crate::cli::{Flags, SymbolsArg};
use crate::mold::MoldConfig;
use crate::replay::ReplayRange;
use crate::schedule::Speed;
use serde::Serialize;
use shardcast_agent::cpu;
use shardcast_agent::curve::{self, Allowlist, KeyPair};
use shardcast_agent::exit::UsageError;
pub use shardcast_agent::zmqx::is_multicast;
use shardcast_proto::mold::UdpEndpoint;
use shardcast_proto::wire::{
    BATCH_HEADER_LEN, ITCH_RECORD_MAX, MAX_BATCH, MAX_FRAME_LEN, MAX_RECORD_LEN,
};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// How a stream thread waits for its next message to fall due (`--pace`).
/// One enum for the flag, the configuration and `--print-config`: clap and
/// serde both name the variants `sleep` and `spin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Pace {
    /// Sleep (with 1 ns timer slack): frees the core; wakes a few
    /// microseconds late, which shows as schedule lag, never hidden.
    Sleep,
    /// Busy-wait: on time to the clock's resolution, one full core per stream.
    Spin,
}

/// What a stream does when a subscriber's queue is full (`--when-full`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Skip that subscriber (it sees a gap); never wait. Live feeds.
    Drop,
    /// Wait until every subscriber has room (ZMQ_XPUB_NODROP); lose nothing.
    Block,
}

/// `--batch`: records per frame, fixed or packed from what is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    /// Pack what is already due, up to [`AUTO_BATCH`] records; a lone
    /// record goes bare; no packing while a peer filters by symbol.
    Auto,
    /// Up to N records per frame (1: every record its own frame).
    Records(u32),
}

/// Most records `--batch auto` packs into one frame: enough to amortise
/// libzmq's per-frame costs (PROTOCOL.md 10), few enough that a frame of
/// 100 B records (6.4 KB) is still one small write.
pub const AUTO_BATCH: usize = 64;

/// Parse `--batch`: `auto` or 1..=1024.
pub fn batch_arg(s: &str) -> Result<Batch, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(Batch::Auto);
    }
    match s.parse::<u32>() {
        Ok(n) if (1..=MAX_BATCH as u32).contains(&n) => Ok(Batch::Records(n)),
        _ => Err(format!(
            "`auto` or a number of records from 1 to {MAX_BATCH}"
        )),
    }
}

/// `--source`: where the messages come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceSpec {
    /// The seeded synthetic feed (`--symbols`, `--seed`, `--size`, `--rate`).
    Synthetic,
    /// A NASDAQ TotalView-ITCH 5.0 file (`itch:PATH`).
    Itch {
        /// The file.
        path: PathBuf,
        /// Read through gzip (PATH ends in `.gz`).
        gzip: bool,
    },
    /// A live MoldUDP64 feed of ITCH 5.0
    /// (`moldudp64:udp://[IFACE_ADDR;]GROUP_OR_ADDR:PORT`), its gaps asked
    /// for at `--rerequest`.
    #[serde(rename = "moldudp64")]
    MoldUdp64 {
        /// Where the feed is received.
        #[serde(serialize_with = "crate::mold::display")]
        endpoint: UdpEndpoint,
    },
    /// A shardcast recording (`recording:DIR`, from shardcast-record).
    Recording {
        /// The recording's directory.
        dir: PathBuf,
    },
}

/// Parse `--source`: `synthetic`, `itch:PATH` or
/// `moldudp64:udp://[IFACE_ADDR;]GROUP_OR_ADDR:PORT`.
pub fn source_arg(s: &str) -> Result<SourceSpec, String> {
    if s == "synthetic" {
        return Ok(SourceSpec::Synthetic);
    }
    if let Some(dir) = s.strip_prefix("recording:") {
        return match dir {
            "" => Err("recording:DIR: name the directory shardcast-record wrote".into()),
            d => Ok(SourceSpec::Recording {
                dir: PathBuf::from(d),
            }),
        };
    }
    if let Some(ep) = s.strip_prefix("moldudp64:") {
        return UdpEndpoint::parse(ep).map(|endpoint| SourceSpec::MoldUdp64 { endpoint });
    }
    match s.strip_prefix("itch:") {
        Some(path) if !path.is_empty() => Ok(SourceSpec::Itch {
            path: PathBuf::from(path),
            gzip: path.ends_with(".gz"),
        }),
        _ => Err(
            "`synthetic`, `itch:PATH` (a TotalView-ITCH 5.0 file, gzipped if PATH ends in .gz) or \
             `moldudp64:udp://[IFACE_ADDR;]GROUP_OR_ADDR:PORT` (a live MoldUDP64 feed) or \
             `recording:DIR` (a shardcast-record recording)"
                .into(),
        ),
    }
}

/// Flags of the synthetic feed, by clap id and as written: given with
/// `--source itch:` they are an error, not silently ignored.
const SYNTHETIC_ONLY: [(&str, &str); 5] = [
    ("rate", "--rate"),
    ("burst", "--burst"),
    ("symbols", "--symbols"),
    ("seed", "--seed"),
    ("size", "--size"),
];

/// Flags of a replay, by clap id and as written: given with another source
/// they are an error.
const REPLAY_ONLY: [(&str, &str); 3] = [
    ("from_seq", "--from-seq"),
    ("to_seq", "--to-seq"),
    ("from_time", "--from-time"),
];

/// Flags of a live MoldUDP64 feed, by clap id and as written: given with
/// another source they are an error.
const MOLD_ONLY: [(&str, &str); 4] = [
    ("rerequest", "--rerequest"),
    ("rerequest_timeout_ms", "--rerequest-timeout-ms"),
    ("rerequest_tries", "--rerequest-tries"),
    ("rerequest_max", "--rerequest-max"),
];

/// Flags of the retransmission service, by clap id and as written: given
/// without `--retransmit-bind` they are an error.
const RETRANSMIT_ONLY: [(&str, &str); 5] = [
    ("retransmit_depth", "--retransmit-depth"),
    ("retransmit_linger_ms", "--retransmit-linger-ms"),
    (
        "retransmit_peer_requests_per_sec",
        "--retransmit-peer-requests-per-sec",
    ),
    (
        "retransmit_peer_bytes_per_sec",
        "--retransmit-peer-bytes-per-sec",
    ),
    ("retransmit_max_peers", "--retransmit-max-peers"),
];

/// Records a ring holds by default when there is no --rate: one second of
/// the Guide's 100 K msg/s feed.
pub const GUIDE_RATE: u64 = 100_000;

/// The retransmission service (`--retransmit-bind`) and its sizing.
#[derive(Clone, Debug, Serialize)]
pub struct Retransmit {
    /// Endpoint of the ROUTER.
    pub bind: String,
    /// Records each stream's ring keeps.
    pub depth: u64,
    /// Where `depth` came from.
    pub depth_rule: String,
    /// Bytes of frames each ring keeps at most: `depth` x (largest record
    /// + batch header) + one largest frame (a frame never wraps).
    pub ring_bytes: usize,
    /// Bytes of each ring's frame index (40 per frame, `depth` frames).
    pub index_bytes: usize,
    /// Memory of every ring together, at most.
    pub total_bytes: usize,
    /// How long the service stays up after the streams end.
    pub linger: Duration,
    /// Requests per second per requester.
    pub peer_requests_per_sec: u64,
    /// Bytes per second per requester.
    pub peer_bytes_per_sec: u64,
    /// Requesters tracked at once.
    pub max_peers: usize,
}

/// `--retransmit-*` resolved; `None` without `--retransmit-bind`. `record`
/// is the largest record, `frame` the largest frame a stream sends.
fn retransmit_config(
    f: &Flags,
    streams: usize,
    rate: u64,
    batch: usize,
    record: usize,
    frame: usize,
) -> Result<Option<Retransmit>, UsageError> {
    let Some(bind) = &f.retransmit_bind else {
        if let Some(&(_, flag)) = RETRANSMIT_ONLY.iter().find(|(id, _)| f.given(id)) {
            return Err(UsageError::new(
                flag,
                "sizes the retransmission service; give --retransmit-bind ENDPOINT too, or drop it",
            ));
        }
        return Ok(None);
    };
    if is_multicast(bind) {
        return Err(UsageError::new(
            "--retransmit-bind",
            "a ROUTER needs connections (tcp://, ipc://); pgm:// and epgm:// carry no requests",
        ));
    }
    let (depth, depth_rule) = match f.retransmit_depth {
        Some(n) => (n, "--retransmit-depth".to_string()),
        None if rate > 0 => (
            rate.max(batch as u64),
            format!("one second of --rate {rate} (the lag budget)"),
        ),
        None => (
            GUIDE_RATE.max(batch as u64),
            format!("one second of the Guide's feed ({GUIDE_RATE} msg/s; no --rate)"),
        ),
    };
    if depth < batch as u64 {
        return Err(UsageError::new(
            "--retransmit-depth",
            format!(
                "{depth} records cannot hold one frame of --batch {batch}; give at least {batch}"
            ),
        ));
    }
    let per = |n: u64, each: usize| {
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .saturating_mul(each)
    };
    let ring_bytes = per(depth, record + BATCH_HEADER_LEN).saturating_add(frame);
    let index_bytes = per(depth, 40);
    Ok(Some(Retransmit {
        bind: bind.clone(),
        depth,
        depth_rule,
        ring_bytes,
        index_bytes,
        total_bytes: ring_bytes
            .saturating_add(index_bytes)
            .saturating_mul(streams),
        linger: Duration::from_millis(f.retransmit_linger_ms),
        peer_requests_per_sec: f.retransmit_peer_requests_per_sec,
        peer_bytes_per_sec: f.retransmit_peer_bytes_per_sec,
        max_peers: f.retransmit_max_peers as usize,
    }))
}

/// One stream.
#[derive(Clone, Debug, Serialize)]
pub struct StreamPlan {
    /// Stream id (its --bind position).
    pub index: usize,
    /// Endpoint to bind.
    pub bind: String,
    /// Line B's endpoint (`--bind-b`), if any.
    pub bind_b: Option<String>,
    /// Stream thread CPU.
    pub cpu: Option<usize>,
    /// I/O thread CPU.
    pub io_cpu: Option<usize>,
}

/// The resolved configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Streams.
    pub streams: Vec<StreamPlan>,
    /// Where the messages come from.
    pub source: SourceSpec,
    /// `--speed` of an ITCH source (`None` for the synthetic feed; `max`
    /// for a live feed, sent as it arrives).
    pub speed: Option<Speed>,
    /// The MoldUDP64 receiver of a `moldudp64:` source.
    pub mold: Option<MoldConfig>,
    /// What a replay (`--source recording:DIR`) plays.
    pub replay: ReplayRange,
    /// Publisher id.
    pub publisher_id: u32,
    /// Session id (None: derived from the clock at start).
    pub session: Option<u64>,
    /// Symbols of the synthetic feed (0 with a replay's `--symbols LIST`).
    pub symbols: u32,
    /// Seed.
    pub seed: u64,
    /// Record size.
    pub size: usize,
    /// Messages per second, all streams (0: flat out).
    pub rate: u64,
    /// Burst size.
    pub burst: u64,
    /// Most records per frame (`--batch N`; [`AUTO_BATCH`] or fewer for
    /// `auto`).
    pub batch: usize,
    /// `--batch auto`: pack only what is due, bare lone records, no packing
    /// while a peer filters by symbol.
    pub batch_auto: bool,
    /// `--when-full`.
    pub when_full: WhenFull,
    /// Message limit: feed events across streams (synthetic), or messages
    /// read from the source (ITCH).
    pub count: Option<u64>,
    /// Time limit.
    pub duration: Option<Duration>,
    /// ZMQ_SNDHWM.
    pub sndhwm: i32,
    /// ZMQ_SNDBUF.
    pub sndbuf: i32,
    /// Subscribers to wait for.
    pub wait_subscribers: u32,
    /// Wait limit.
    pub wait_timeout: Option<Duration>,
    /// `--expect-subscribers`: ids (`shardcast-sub --id`) each stream
    /// expects, in order given, without repeats.
    pub expect_subscribers: Vec<String>,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// End phase limit: how long end-of-stream repeats until every counted
    /// subscriber has left; also the close linger, capped at 1 s.
    pub eos_timeout: Duration,
    /// Fault injection: ns added to every timestamp sent.
    pub clock_offset_ns: i64,
    /// Wait strategy.
    pub pace: Pace,
    /// Report path.
    pub report_json: Option<PathBuf>,
    /// CURVE server keys and allowlist; `None`: plain text.
    pub curve: Option<CurveServer>,
    /// ZMQ_RATE for pgm/epgm streams, kbit/s.
    pub pgm_rate: i32,
    /// ZMQ_RECOVERY_IVL for pgm/epgm streams, ms.
    pub pgm_recovery_ms: i32,
    /// ZMQ_MULTICAST_HOPS for pgm/epgm streams.
    pub multicast_hops: i32,
    /// Most subscriptions per connection.
    pub max_subscriptions: u32,
    /// Most connections per source address.
    pub max_peers_per_host: u32,
    /// ZMQ_HANDSHAKE_IVL.
    pub handshake_timeout: Duration,
    /// The retransmission service (`--retransmit-bind`), if on.
    pub retransmit: Option<Retransmit>,
    /// `--metrics-bind`.
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// `--metrics-linger-ms`.
    pub metrics_linger: Duration,
}

/// CURVE settings of a publisher.
#[derive(Clone, Debug, Serialize)]
pub struct CurveServer {
    /// Our key pair (the secret half is never printed).
    pub keys: KeyPair,
    /// Subscriber keys allowed in.
    pub allow: Allowlist,
}

/// The receiver's settings from `--rerequest*`.
fn mold_config(f: &Flags, endpoint: UdpEndpoint) -> Result<MoldConfig, UsageError> {
    if f.given("speed") {
        return Err(UsageError::new(
            "--speed",
            "a live feed (--source moldudp64:) is sent as it arrives; --speed plays a recorded file",
        ));
    }
    let rerequest = match &f.rerequest {
        None => None,
        Some(s) => Some(
            s.to_socket_addrs()
                .ok()
                .and_then(|mut a| a.find(SocketAddr::is_ipv4))
                .ok_or_else(|| {
                    UsageError::new(
                        "--rerequest",
                        format!("'{s}' is not HOST:PORT with an IPv4 address"),
                    )
                })?,
        ),
    };
    let mut m = MoldConfig::new(endpoint, rerequest);
    m.request_timeout = Duration::from_millis(f.rerequest_timeout_ms);
    m.request_tries = f.rerequest_tries;
    m.request_max = f.rerequest_max;
    Ok(m)
}

impl Config {
    /// Resolve flags, or name the flag at fault.
    pub fn resolve(f: &Flags) -> Result<Config, UsageError> {
        let n = f.bind.len();
        let itch = !matches!(f.source, SourceSpec::Synthetic);
        let recording = matches!(f.source, SourceSpec::Recording { .. });
        if !recording {
            if let Some(&(_, flag)) = REPLAY_ONLY.iter().find(|(id, _)| f.given(id)) {
                return Err(UsageError::new(
                    flag,
                    "selects what a replay plays (--source recording:DIR); drop it",
                ));
            }
        }
        let replay_symbols = match (&f.symbols, recording) {
            (SymbolsArg::List(v), true) => Some(v.clone()),
            (SymbolsArg::Count(_), true) if f.given("symbols") => {
                return Err(UsageError::new(
                    "--symbols",
                    "with --source recording: it lists the symbols to replay (AAPL,MSFT), not a count",
                ))
            }
            (SymbolsArg::List(_), false) => {
                return Err(UsageError::new(
                    "--symbols",
                    "a list of symbols filters a replay (--source recording:DIR); the synthetic feed takes a count",
                ))
            }
            _ => None,
        };
        if itch {
            if let Some(&(_, flag)) = SYNTHETIC_ONLY
                .iter()
                .find(|(id, _)| f.given(id) && !(recording && *id == "symbols"))
            {
                return Err(UsageError::new(
                    flag,
                    "belongs to the synthetic feed; an ITCH source has its own symbols, message sizes and \
                     timing (--speed). Drop it, or use --source synthetic",
                ));
            }
        } else if f.given("speed") {
            return Err(UsageError::new(
                "--speed",
                "plays an ITCH source (--source itch:PATH); the synthetic feed is paced by --rate",
            ));
        }
        let mold = match &f.source {
            SourceSpec::MoldUdp64 { endpoint } => Some(mold_config(f, *endpoint)?),
            _ => {
                if let Some(&(_, flag)) = MOLD_ONLY.iter().find(|(id, _)| f.given(id)) {
                    return Err(UsageError::new(
                        flag,
                        "belongs to a live MoldUDP64 feed (--source moldudp64:udp://...); drop it",
                    ));
                }
                None
            }
        };
        // A live feed has its own timing: it is sent as it arrives, with
        // no schedule (`max`), and like any live feed drops for a slow
        // subscriber unless --when-full block is given.
        let speed = if mold.is_some() {
            Some(Speed::Max)
        } else {
            itch.then_some(f.speed)
        };
        // A replay at full speed waits for the slowest subscriber instead
        // of dropping: `max` means "as fast as they take it", all of it.
        let when_full = if speed == Some(Speed::Max) && mold.is_none() && !f.given("when_full") {
            WhenFull::Block
        } else {
            f.when_full
        };
        // The longest record a data frame holds: --size, or an ITCH record.
        let record = if itch {
            ITCH_RECORD_MAX
        } else {
            f.size as usize
        };
        let cpus = cpu::plan_cpus("--cpus", f.cpus.as_ref().map(|c| &c.0[..]), n, "stream")?;
        let io = cpu::plan_cpus(
            "--io-cpus",
            f.io_cpus.as_ref().map(|c| &c.0[..]),
            n,
            "stream",
        )?;
        let (batch, batch_auto) = match f.batch {
            // Auto on multicast is 1: PGM carries no subscriptions back, so
            // a receiver filtering by prefix could not be seen.
            Batch::Auto if f.bind.iter().any(|b| is_multicast(b)) => (1, false),
            Batch::Auto => (
                AUTO_BATCH.min((MAX_FRAME_LEN - BATCH_HEADER_LEN) / record),
                true,
            ),
            Batch::Records(n) => (n as usize, false),
        };
        if batch > MAX_BATCH {
            return Err(UsageError::new("--batch", format!("at most {MAX_BATCH}")));
        }
        let frame = BATCH_HEADER_LEN + batch * record;
        // The largest frame a stream sends: a replay's records vary in
        // length (its batch writer holds any one record; stream.rs).
        let largest_frame = if recording {
            BATCH_HEADER_LEN + (batch * 256).max(MAX_RECORD_LEN)
        } else {
            frame
        };
        let rate = if itch { 0 } else { f.rate };
        let retransmit = retransmit_config(f, n, rate, batch, record, largest_frame)?;
        if frame > MAX_FRAME_LEN {
            return Err(UsageError::new(
                "--batch",
                format!(
                    "--batch {batch} x --size {} makes {frame}-byte frames, above the {MAX_FRAME_LEN}-byte \
                     limit subscribers accept by default; use a smaller batch",
                    record
                ),
            ));
        }
        if !f.bind_b.is_empty() && f.bind_b.len() != n {
            return Err(UsageError::new(
                "--bind-b",
                format!(
                    "{} given for {n} streams: give one line B endpoint per --bind, by position, or none",
                    f.bind_b.len()
                ),
            ));
        }
        if let Some(b) = f.bind_b.iter().find(|b| is_multicast(b)) {
            return Err(UsageError::new(
                "--bind-b",
                format!("{b}: line B is tcp:// or ipc:// (a PGM stream has no second line)"),
            ));
        }
        let multicast = f.bind.iter().any(|b| is_multicast(b));
        if multicast && !f.bind_b.is_empty() {
            return Err(UsageError::new(
                "--bind-b",
                "a pgm:// or epgm:// stream has no line B; use tcp:// streams",
            ));
        }
        if multicast && !curve::pgm_available() {
            return Err(UsageError::new(
                "--bind",
                curve::system_libzmq_remedy("PGM (pgm://, epgm://)"),
            ));
        }
        if multicast && !f.expect_subscribers.is_empty() {
            return Err(UsageError::new(
                "--expect-subscribers",
                "PGM carries no subscriptions back to the publisher, so a pgm:// or epgm:// stream cannot \
                 see who is subscribed; use tcp:// streams",
            ));
        }
        if multicast && f.wait_subscribers > 0 {
            return Err(UsageError::new(
                "--wait-subscribers",
                "PGM carries no subscriptions back to the publisher, so a pgm:// or epgm:// stream cannot \
                 count subscribers; start the subscribers first and drop --wait-subscribers",
            ));
        }
        let curve = match &f.curve_secret_key {
            None => None,
            Some(path) => {
                curve::need_curve("--curve-secret-key")?;
                if multicast {
                    return Err(UsageError::new(
                        "--curve-secret-key",
                        "CURVE needs a connection per subscriber (tcp://, ipc://); libzmq cannot encrypt \
                         pgm:// or epgm:// streams. Encrypt multicast below ZeroMQ (IPsec/MACsec) or use tcp://",
                    ));
                }
                Some(CurveServer {
                    keys: curve::read_key_pair("--curve-secret-key", path)?,
                    allow: Allowlist::read("--curve-allow", &f.curve_allow)?,
                })
            }
        };
        Ok(Config {
            streams: (0..n)
                .map(|i| StreamPlan {
                    index: i,
                    bind: f.bind[i].clone(),
                    bind_b: f.bind_b.get(i).cloned(),
                    cpu: cpus[i],
                    io_cpu: io[i],
                })
                .collect(),
            source: f.source.clone(),
            speed,
            mold,
            publisher_id: f.publisher_id,
            session: f.session,
            symbols: match f.symbols {
                SymbolsArg::Count(n) => n,
                SymbolsArg::List(_) => 0,
            },
            replay: ReplayRange {
                from_seq: f.from_seq,
                to_seq: f.to_seq,
                from_time_ns: f.from_time,
                symbols: replay_symbols,
            },
            seed: f.seed,
            size: f.size as usize,
            // An ITCH source has its own timing: no rate.
            rate: if itch { 0 } else { f.rate },
            burst: f.burst,
            batch,
            batch_auto,
            when_full,
            count: f.count,
            duration: f.duration.map(Duration::from_secs_f64),
            sndhwm: f.sndhwm,
            sndbuf: f.sndbuf,
            wait_subscribers: f.wait_subscribers,
            wait_timeout: f.wait_timeout.map(Duration::from_secs_f64),
            expect_subscribers: {
                let mut ids: Vec<String> = Vec::with_capacity(f.expect_subscribers.len());
                for id in &f.expect_subscribers {
                    if !ids.contains(id) {
                        ids.push(id.clone());
                    }
                }
                ids
            },
            heartbeat: Duration::from_millis(f.heartbeat_ms),
            eos_timeout: Duration::from_millis(f.eos_timeout_ms),
            clock_offset_ns: f.clock_offset_ms.saturating_mul(1_000_000),
            pace: f.pace,
            report_json: f.report_json.clone(),
            curve,
            pgm_rate: f.pgm_rate,
            pgm_recovery_ms: f.pgm_recovery_ms,
            multicast_hops: f.multicast_hops,
            max_subscriptions: f.max_subscriptions,
            max_peers_per_host: f.max_peers_per_host,
            handshake_timeout: Duration::from_millis(f.handshake_timeout_ms),
            retransmit,
            metrics_bind: f.metrics_bind,
            metrics_linger: Duration::from_millis(f.metrics_linger_ms),
        })
    }

    /// Every output file a run writes, with its flag (the report only).
    pub fn outputs(&self) -> Vec<(&'static str, &std::path::Path)> {
        self.report_json
            .as_deref()
            .map(|p| ("--report-json", p))
            .into_iter()
            .collect()
    }

    /// Offset from the start at which global message `i` falls due, ns.
    /// Messages are due in bursts of `burst`; the average rate holds.
    #[inline]
    pub fn due_offset_ns(&self, i: u64) -> u64 {
        if self.rate == 0 {
            return 0;
        }
        let burst_start = i - i % self.burst;
        (u128::from(burst_start) * 1_000_000_000 / u128::from(self.rate)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    fn cfg(args: &[&str]) -> Config {
        let mut v = vec!["shardcast-pub", "--bind", "tcp://127.0.0.1:*"];
        v.extend_from_slice(args);
        Config::resolve(&Flags::try_parse_from(v).unwrap()).unwrap()
    }

    #[test]
    fn schedule_is_fixed_rate_and_bursts_keep_the_average() {
        let c = cfg(&["--rate", "1000"]);
        assert_eq!(c.due_offset_ns(0), 0);
        assert_eq!(c.due_offset_ns(1), 1_000_000);
        assert_eq!(c.due_offset_ns(1000), 1_000_000_000);
        let b = cfg(&["--rate", "1000", "--burst", "10"]);
        assert_eq!(b.due_offset_ns(9), 0);
        assert_eq!(b.due_offset_ns(10), 10_000_000);
        assert_eq!(b.due_offset_ns(1000), 1_000_000_000);
        assert_eq!(cfg(&["--rate", "0"]).due_offset_ns(12345), 0);
    }

    #[test]
    fn pace_takes_sleep_and_spin_from_the_flag_or_its_env_twin() {
        assert_eq!(cfg(&[]).pace, Pace::Sleep);
        assert_eq!(cfg(&["--pace", "spin"]).pace, Pace::Spin);
        assert_eq!(cfg(&["--pace", "sleep"]).pace, Pace::Sleep);
        let err = Flags::try_parse_from([
            "shardcast-pub",
            "--bind",
            "tcp://127.0.0.1:*",
            "--pace",
            "nap",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--pace") && err.contains("sleep") && err.contains("spin"),
            "{err}"
        );
        let pace = Flags::command()
            .get_arguments()
            .find(|a| a.get_id() == "pace")
            .and_then(|a| a.get_env().map(|e| e.to_owned()));
        assert_eq!(
            pace.as_deref(),
            Some(std::ffi::OsStr::new("SHARDCAST_PUB_PACE"))
        );
        assert_eq!(serde_json::to_value(Pace::Spin).unwrap(), "spin");
    }

    /// `--expect-subscribers` (presence): ids comma-separated or
    /// repeated, kept in order without repeats, shown by --print-config;
    /// a bad id is a usage error naming the flag.
    #[test]
    fn expected_subscribers_are_presence_ids() {
        let c = cfg(&[
            "--expect-subscribers",
            "a,b",
            "--expect-subscribers",
            "a,risk@ny4/2",
        ]);
        assert_eq!(c.expect_subscribers, ["a", "b", "risk@ny4/2"]);
        assert_eq!(
            serde_json::to_value(&c).unwrap()["expect_subscribers"],
            serde_json::json!(["a", "b", "risk@ny4/2"])
        );
        assert!(cfg(&[]).expect_subscribers.is_empty());
        for bad in ["a,,b", "a b", "x".repeat(65).as_str()] {
            let e = Flags::try_parse_from([
                "shardcast-pub",
                "--bind",
                "tcp://127.0.0.1:*",
                "--expect-subscribers",
                bad,
            ])
            .unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
            assert!(
                e.to_string().contains("--expect-subscribers"),
                "{bad:?}: {e}"
            );
        }
    }

    fn itch_cfg(args: &[&str]) -> Result<Config, UsageError> {
        let mut v = vec!["shardcast-pub", "--bind", "tcp://127.0.0.1:*"];
        v.extend_from_slice(args);
        Config::resolve(&Flags::try_parse_explicit_from(v).unwrap())
    }

    #[test]
    fn source_is_synthetic_by_default_or_an_itch_file_gzipped_by_its_name() {
        assert_eq!(cfg(&[]).source, SourceSpec::Synthetic);
        assert_eq!(cfg(&[]).speed, None);
        let c = itch_cfg(&["--source", "itch:/data/day.itch.gz"]).unwrap();
        assert_eq!(
            c.source,
            SourceSpec::Itch {
                path: "/data/day.itch.gz".into(),
                gzip: true
            }
        );
        assert_eq!(c.speed, Some(Speed::Times(1.0)));
        assert_eq!((c.rate, c.when_full), (0, WhenFull::Drop));
        let plain = itch_cfg(&["--source", "itch:day.itch", "--speed", "10"]).unwrap();
        assert_eq!(
            plain.source,
            SourceSpec::Itch {
                path: "day.itch".into(),
                gzip: false
            }
        );
        assert_eq!(plain.speed, Some(Speed::Times(10.0)));
        let json = serde_json::to_value(&plain).unwrap();
        assert_eq!(json["source"]["kind"], "itch");
        assert_eq!(json["source"]["path"], "day.itch");
        assert_eq!(json["speed"], 10.0);
        for bad in ["itch:", "itch", "nasdaq:x", ""] {
            assert!(source_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn speed_max_implies_block_unless_when_full_is_given() {
        let c = itch_cfg(&["--source", "itch:d.itch", "--speed", "max"]).unwrap();
        assert_eq!((c.speed, c.when_full), (Some(Speed::Max), WhenFull::Block));
        let c = itch_cfg(&[
            "--source",
            "itch:d.itch",
            "--speed",
            "max",
            "--when-full",
            "drop",
        ])
        .unwrap();
        assert_eq!(c.when_full, WhenFull::Drop, "an explicit flag wins");
        // auto batches of the longest ITCH record.
        assert_eq!((c.batch, c.batch_auto), (AUTO_BATCH, true));
    }

    #[test]
    fn a_moldudp64_source_takes_the_rerequest_flags_and_no_speed() {
        let c = itch_cfg(&[
            "--source",
            "moldudp64:udp://10.0.0.2;233.54.12.111:26477",
            "--rerequest",
            "127.0.0.1:9",
            "--rerequest-tries",
            "3",
        ])
        .unwrap();
        // Sent as it arrives, and dropping for a slow subscriber unless
        // told to block, like any live feed.
        assert_eq!((c.speed, c.when_full), (Some(Speed::Max), WhenFull::Drop));
        let m = c.mold.clone().unwrap();
        assert_eq!(m.endpoint.to_string(), "udp://10.0.0.2;233.54.12.111:26477");
        assert_eq!(m.rerequest, Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!((m.request_tries, m.request_max), (3, 256));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["source"]["kind"], "moldudp64");
        assert_eq!(
            json["source"]["endpoint"],
            "udp://10.0.0.2;233.54.12.111:26477"
        );
        assert!(itch_cfg(&["--source", "moldudp64:udp://127.0.0.1:0"])
            .unwrap()
            .mold
            .is_some_and(|m| m.rerequest.is_none()));
        for (args, flag) in [
            (
                vec!["--source", "moldudp64:udp://127.0.0.1:0", "--speed", "max"],
                "--speed",
            ),
            (
                vec!["--source", "moldudp64:udp://127.0.0.1:0", "--rate", "5"],
                "--rate",
            ),
            (
                vec![
                    "--source",
                    "moldudp64:udp://127.0.0.1:0",
                    "--rerequest",
                    "nowhere",
                ],
                "--rerequest",
            ),
            (
                vec!["--source", "itch:d.itch", "--rerequest", "127.0.0.1:9"],
                "--rerequest",
            ),
            (vec!["--rerequest-tries", "2"], "--rerequest-tries"),
        ] {
            let err = itch_cfg(&args).unwrap_err();
            assert_eq!(err.flag, flag, "{args:?}");
        }
        for bad in [
            "moldudp64:",
            "moldudp64:127.0.0.1:5",
            "moldudp64:udp://eth0;239.1.1.1:5",
        ] {
            assert!(source_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn synthetic_flags_given_with_an_itch_source_name_themselves() {
        for (flag, value) in [
            ("--rate", "1000"),
            ("--burst", "10"),
            ("--symbols", "5"),
            ("--seed", "2"),
            ("--size", "200"),
        ] {
            let err = itch_cfg(&["--source", "itch:d.itch", flag, value]).unwrap_err();
            assert_eq!(err.flag, flag);
        }
        // Defaults are not "given"; --count and --duration apply to both.
        assert!(itch_cfg(&["--source", "itch:d.itch", "--count", "5", "--duration", "1"]).is_ok());
        let err = itch_cfg(&["--speed", "10"]).unwrap_err();
        assert_eq!(err.flag, "--speed");
        assert!(itch_cfg(&["--rate", "5"]).is_ok());
    }

    #[test]
    fn retransmit_sizes_from_the_rate_and_its_flags_need_the_bind() {
        let c = cfg(&["--retransmit-bind", "tcp://127.0.0.1:*", "--rate", "50000"]);
        let r = c.retransmit.clone().unwrap();
        assert_eq!(r.depth, 50_000, "one second of --rate");
        assert_eq!(r.ring_bytes, 50_000 * (100 + 8) + 8 + 64 * 100);
        assert_eq!(r.index_bytes, 50_000 * 40);
        assert_eq!(r.total_bytes, r.ring_bytes + r.index_bytes);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["retransmit"]["depth"], 50_000);
        assert!(cfg(&[]).retransmit.is_none());
        let flat = cfg(&["--retransmit-bind", "tcp://127.0.0.1:*", "--rate", "0"]);
        assert_eq!(flat.retransmit.unwrap().depth, GUIDE_RATE);
        for (args, flag) in [
            (vec!["--retransmit-depth", "10"], "--retransmit-depth"),
            (
                vec!["--retransmit-linger-ms", "10"],
                "--retransmit-linger-ms",
            ),
            (
                vec!["--retransmit-peer-requests-per-sec", "10"],
                "--retransmit-peer-requests-per-sec",
            ),
            (
                vec![
                    "--retransmit-bind",
                    "tcp://127.0.0.1:*",
                    "--retransmit-depth",
                    "10",
                    "--batch",
                    "64",
                ],
                "--retransmit-depth",
            ),
            (
                vec![
                    "--bind-b",
                    "tcp://127.0.0.1:*",
                    "--bind-b",
                    "tcp://127.0.0.1:*",
                ],
                "--bind-b",
            ),
        ] {
            assert_eq!(itch_cfg(&args).unwrap_err().flag, flag, "{args:?}");
        }
        let ab = cfg(&["--bind-b", "tcp://127.0.0.1:*"]);
        assert_eq!(ab.streams[0].bind_b.as_deref(), Some("tcp://127.0.0.1:*"));
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (args, flag) in [
            (vec!["--rate", "-1"], "--rate"),
            (vec!["--size", "10"], "--size"),
            (vec!["--batch", "0"], "--batch"),
            (vec!["--batch", "sometimes"], "--batch"),
            (vec!["--batch", "1025"], "--batch"),
            (vec!["--when-full", "wait"], "--when-full"),
            (vec!["--duration", "0"], "--duration"),
            (vec!["--source", "nasdaq"], "--source"),
            (vec!["--speed", "0"], "--speed"),
            (vec!["--speed", "fast"], "--speed"),
            (vec!["--retransmit-depth", "0"], "--retransmit-depth"),
            (vec!["--retransmit-bind", "nowhere"], "--retransmit-bind"),
            (vec!["--bind-b", "nowhere"], "--bind-b"),
        ] {
            let mut v = vec!["shardcast-pub", "--bind", "tcp://127.0.0.1:*"];
            v.extend_from_slice(&args);
            let err = Flags::try_parse_from(v).unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
    }
}
