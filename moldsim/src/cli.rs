//! Command-line flags of `shardcast-moldsim`. Every flag but
//! `--print-config` has an environment twin `SHARDCAST_MOLDSIM_<FLAG>`.
//! Flag names are a contract: add, never rename.

use clap::Parser;
use shardcast_agent::exit::positive_seconds;
use std::path::PathBuf;

/// shardcast-moldsim: a test tool that plays a NASDAQ TotalView-ITCH 5.0
/// file as a live MoldUDP64 feed (--to), with deterministic injected packet
/// loss, heartbeats and an end of session, and/or serves MoldUDP64
/// re-requests from the same file (--serve). Run it once with both, or as
/// two processes (one --serve, one --to), or with --to alone for a feed
/// whose re-request server is down.
#[derive(Debug, Parser)]
#[command(name = "shardcast-moldsim", version, about, long_about = None)]
pub struct Flags {
    /// The ITCH day file (2-byte big-endian length before each message, as
    /// NASDAQ's files and MoldUDP64's message blocks are); `.gz` is read
    /// through gzip. Held in memory whole: a tool for test days.
    #[arg(long, value_name = "PATH", env = "SHARDCAST_MOLDSIM_FILE")]
    pub file: PathBuf,

    /// Send the feed to `udp://[IFACE_ADDR;]GROUP_OR_ADDR:PORT` (a
    /// multicast group is sent to from the interface with that address).
    #[arg(long, value_name = "ENDPOINT", env = "SHARDCAST_MOLDSIM_TO")]
    pub to: Option<String>,

    /// Serve re-requests on this UDP `ADDR:PORT` (port 0: the OS picks;
    /// the bound address is printed: `re-request server bound ADDR`).
    /// Without --to it serves until SIGINT/SIGTERM or --duration.
    #[arg(long, value_name = "ADDR:PORT", env = "SHARDCAST_MOLDSIM_SERVE")]
    pub serve: Option<String>,

    /// The MoldUDP64 session name (at most 10 printable characters).
    #[arg(long, default_value = "MOLDSIM001", env = "SHARDCAST_MOLDSIM_SESSION")]
    pub session: String,

    /// Messages per second (0: flat out). Packets go out when their first
    /// message is due.
    #[arg(
        long,
        default_value_t = 100_000,
        value_name = "MSG_PER_S",
        env = "SHARDCAST_MOLDSIM_RATE"
    )]
    pub rate: u64,

    /// Largest packet, bytes (header included; a single message longer than
    /// that goes alone, as long as it needs).
    #[arg(long, default_value_t = 1400, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(64..=65_507),
          env = "SHARDCAST_MOLDSIM_MAX_PACKET")]
    pub max_packet: u32,

    /// Most messages in one packet.
    #[arg(long, default_value_t = 64, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=65_534),
          env = "SHARDCAST_MOLDSIM_MAX_MESSAGES")]
    pub max_messages: u16,

    /// Drop every Nth data packet of the feed (N, 2N, ...; 0: none).
    /// Heartbeats, end of session and answers are never dropped.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "N",
        env = "SHARDCAST_MOLDSIM_DROP_EVERY"
    )]
    pub drop_every: u64,

    /// Drop exactly these messages, by sequence number: `A-B,C,...`
    /// (inclusive; packets are cut at the ranges' edges).
    #[arg(long, value_name = "A-B,...", env = "SHARDCAST_MOLDSIM_DROP_SEQ")]
    pub drop_seq: Option<String>,

    /// Send a heartbeat when nothing was sent for this long, ms.
    #[arg(long, default_value_t = 1000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=3_600_000),
          env = "SHARDCAST_MOLDSIM_HEARTBEAT_MS")]
    pub heartbeat_ms: u64,

    /// End-of-session packets sent after the last message (the spec's "for
    /// a short while in place of heartbeats").
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000),
          env = "SHARDCAST_MOLDSIM_EOS_COUNT")]
    pub eos_count: u32,

    /// Interval between end-of-session packets, ms.
    #[arg(long, default_value_t = 100, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=60_000),
          env = "SHARDCAST_MOLDSIM_EOS_INTERVAL_MS")]
    pub eos_interval_ms: u64,

    /// With --to and --serve: keep serving this long after the last end of
    /// session, seconds.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS", value_parser = positive_seconds,
          allow_negative_numbers = true, env = "SHARDCAST_MOLDSIM_LINGER_SECS")]
    pub linger_secs: f64,

    /// With --serve alone: stop serving after this long, seconds (default:
    /// at SIGINT/SIGTERM).
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds,
          allow_negative_numbers = true, env = "SHARDCAST_MOLDSIM_DURATION")]
    pub duration: Option<f64>,

    /// Multicast TTL of the feed.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=255),
          env = "SHARDCAST_MOLDSIM_MULTICAST_HOPS")]
    pub multicast_hops: u32,

    /// Write the JSON report here: what was sent, dropped and answered.
    #[arg(long, value_name = "FILE", env = "SHARDCAST_MOLDSIM_REPORT_JSON")]
    pub report_json: Option<PathBuf>,

    /// Print the effective configuration as JSON and exit.
    #[arg(long)]
    pub print_config: bool,
}
