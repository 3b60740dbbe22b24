//! Command-line flags of `shardcast-relay`. Every flag has an environment
//! twin `SHARDCAST_RELAY_<FLAG>`. Flags shared with `shardcast-sub` (the
//! upstream side: a relay is a consumer) and `shardcast-pub` (the
//! downstream side: a relay is a publisher) have their names and meanings.
//! Flag names are a contract: add, never rename.

use clap::Parser;
use shardcast_agent::cpu::{cpu_list_arg, CpuList};
use shardcast_agent::exit::{positive_seconds, DAY_MS};
use shardcast_agent::idle::Idle;
use shardcast_agent::lag::OnSlow;
use shardcast_agent::zmqx::endpoint_arg;
use shardcast_proto::snail::LagMode;
use shardcast_publisher::config::WhenFull;

/// What a relay does once every stream it relays has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OnEos {
    /// Pass end-of-stream on, wait until the downstream subscribers have
    /// left (at most --eos-timeout-ms), then end (exit 0).
    Exit,
    /// Pass it on and stay: the publisher's next session goes through too
    /// (a long-lived relay between sites).
    Stay,
}

/// shardcast-relay: forwards shardcast streams unchanged from upstream
/// (--connect, an XSUB each) to downstream (--bind, an XPUB each, by
/// position), one pinned thread per stream. Subscriptions go upstream, so
/// filtering happens as close to the source as it can; the relay subscribes
/// upstream only once --wait-subscribers subscribers are there downstream,
/// so a publisher waiting for subscribers waits for the ones behind it. It
/// checks sequences and lag on the way like a subscriber, and the
/// Suicidal Snail croaks (exit 3) when it falls behind.
#[derive(Debug, Parser)]
#[command(name = "shardcast-relay", version, about, long_about = None)]
pub struct Flags {
    /// Upstream stream (a publisher's --bind, or another relay's); one relay
    /// thread per occurrence.
    #[arg(long, required = true, value_name = "ENDPOINT", value_parser = endpoint_arg,
          env = "SHARDCAST_RELAY_CONNECT", value_delimiter = ',')]
    pub connect: Vec<String>,

    /// Downstream endpoint of each --connect, by position (tcp://, ipc://,
    /// or epgm:// / pgm:// with the system libzmq build: one multicast send
    /// reaches every subscriber on the LAN).
    #[arg(long, required = true, value_name = "ENDPOINT", value_parser = endpoint_arg,
          env = "SHARDCAST_RELAY_BIND", value_delimiter = ',')]
    pub bind: Vec<String>,

    /// This relay's name, announced upstream like a subscriber's --id
    /// (presence, PROTOCOL.md section 3).
    #[arg(long, value_name = "NAME", value_parser = shardcast_agent::presence::id_arg,
          env = "SHARDCAST_RELAY_ID")]
    pub id: Option<String>,

    /// Subscribe upstream only once this many subscribers are subscribed
    /// downstream on the stream (counted as shardcast-pub counts them), so
    /// the publisher's --wait-subscribers waits for the subscribers behind
    /// the relay and a chain started in any order loses nothing at start.
    /// 0: subscribe to everything upstream at once. Multicast downstream
    /// (no subscriptions come back): at once, whatever this says.
    #[arg(
        long,
        default_value_t = 1,
        value_name = "N",
        env = "SHARDCAST_RELAY_WAIT_SUBSCRIBERS"
    )]
    pub wait_subscribers: u32,

    /// Subscribers expected downstream by name (their --id), comma-separated
    /// or repeated: each stream warns when one of them is not connected
    /// once it forwards, and again whenever one leaves; the report lists
    /// those missing at the end (`missing_subscribers`).
    #[arg(long, value_name = "ID,...", value_parser = shardcast_agent::presence::id_arg,
          value_delimiter = ',', env = "SHARDCAST_RELAY_EXPECT_SUBSCRIBERS")]
    pub expect_subscribers: Vec<String>,

    /// What a downstream subscriber's full queue does (as shardcast-pub):
    /// `drop` skips that subscriber (it sees a gap, nobody else waits);
    /// `block` waits until every subscriber has room, holding the stream
    /// back, and the snail croaks once a frame has waited longer than
    /// --max-lag-ms.
    #[arg(long, value_enum, default_value_t = WhenFull::Drop, env = "SHARDCAST_RELAY_WHEN_FULL")]
    pub when_full: WhenFull,

    /// What the relay does once every stream it relays has ended.
    #[arg(long, value_enum, default_value_t = OnEos::Exit, env = "SHARDCAST_RELAY_ON_EOS")]
    pub on_eos: OnEos,

    /// --on-eos exit: once every stream ended, how long to wait for the
    /// downstream subscribers to leave before closing anyway (at most a day).
    #[arg(long, default_value_t = 5000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=DAY_MS), env = "SHARDCAST_RELAY_EOS_TIMEOUT_MS")]
    pub eos_timeout_ms: u64,

    /// CPUs for the relay threads, in --connect order (e.g. 2,3).
    #[arg(long, value_name = "LIST", value_parser = cpu_list_arg, env = "SHARDCAST_RELAY_CPUS")]
    pub cpus: Option<CpuList>,

    /// CPUs for the ZeroMQ I/O threads, one per --connect, in order.
    #[arg(long, value_name = "LIST", value_parser = cpu_list_arg, env = "SHARDCAST_RELAY_IO_CPUS")]
    pub io_cpus: Option<CpuList>,

    /// Upstream receive high-water mark, messages (ZMQ_RCVHWM); 0: no limit.
    #[arg(long, default_value_t = 100_000, value_name = "MSGS",
          value_parser = clap::value_parser!(i32).range(0..), env = "SHARDCAST_RELAY_RCVHWM")]
    pub rcvhwm: i32,

    /// Upstream kernel receive buffer, bytes (ZMQ_RCVBUF); 0 keeps the OS
    /// default.
    #[arg(long, default_value_t = 0, value_name = "BYTES",
          value_parser = clap::value_parser!(i32).range(0..), env = "SHARDCAST_RELAY_RCVBUF")]
    pub rcvbuf: i32,

    /// Downstream send high-water mark per subscriber, messages
    /// (ZMQ_SNDHWM); 0 means no limit (unbounded memory).
    #[arg(long, default_value_t = 100_000, value_name = "MSGS",
          value_parser = clap::value_parser!(i32).range(0..), env = "SHARDCAST_RELAY_SNDHWM")]
    pub sndhwm: i32,

    /// Downstream kernel send buffer, bytes (ZMQ_SNDBUF); 0 keeps the OS
    /// default.
    #[arg(long, default_value_t = 0, value_name = "BYTES",
          value_parser = clap::value_parser!(i32).range(0..), env = "SHARDCAST_RELAY_SNDBUF")]
    pub sndbuf: i32,

    /// Largest upstream frame accepted (ZMQ_MAXMSGSZ); a peer sending more
    /// is disconnected by libzmq. At most 64 MiB.
    #[arg(long, default_value_t = shardcast_proto::wire::MAX_FRAME_LEN as i64, value_name = "BYTES",
          value_parser = clap::value_parser!(i64).range(1..=(64 << 20)),
          env = "SHARDCAST_RELAY_MAX_MSG_SIZE")]
    pub max_msg_size: i64,

    /// The Suicidal Snail's limit: a record older than this when the relay
    /// receives it (or a frame held back this long by --when-full block)
    /// means the relay cannot keep up. At most a day.
    #[arg(long, default_value_t = 1000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=DAY_MS), env = "SHARDCAST_RELAY_MAX_LAG_MS")]
    pub max_lag_ms: u64,

    /// What to do past --max-lag-ms: croak (exit 3) or warn and go on.
    #[arg(long, value_enum, default_value_t = OnSlow::Croak, env = "SHARDCAST_RELAY_ON_SLOW")]
    pub on_slow: OnSlow,

    /// How the snail judges lag (as shardcast-sub).
    #[arg(long, value_enum, default_value_t = LagMode::Absolute, env = "SHARDCAST_RELAY_SNAIL_MODE")]
    pub snail_mode: LagMode,

    /// Relative mode: how long the smallest delay is remembered, seconds.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS", value_parser = positive_seconds,
          allow_negative_numbers = true, env = "SHARDCAST_RELAY_SNAIL_WINDOW")]
    pub snail_window: f64,

    /// A send time further ahead of our clock than this is not judged
    /// (counted as ts_future), as shardcast-sub. At most a day.
    #[arg(long, default_value_t = 10_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=DAY_MS), env = "SHARDCAST_RELAY_MAX_CLOCK_SKEW_MS")]
    pub max_clock_skew_ms: u64,

    /// How a relay thread waits for frames and subscriptions: `block`
    /// (poll) or `spin` (a core each).
    #[arg(long, value_enum, default_value_t = Idle::Block, env = "SHARDCAST_RELAY_IDLE")]
    pub idle: Idle,

    /// Stop after this many seconds (also on SIGINT/SIGTERM, and with
    /// --on-eos exit once every stream ended).
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds, allow_negative_numbers = true,
          env = "SHARDCAST_RELAY_DURATION")]
    pub duration: Option<f64>,

    /// Serve retransmissions downstream on this endpoint (a ROUTER): every
    /// request of the range protocol (docs/RECORDING.md section 6) is
    /// passed on to --retransmit-from and its answers back, so a subscriber
    /// behind relays repairs gaps with `--recover-from` pointed here.
    #[arg(long, value_name = "ENDPOINT", value_parser = endpoint_arg, requires = "retransmit_from",
          help_heading = "Retransmission", env = "SHARDCAST_RELAY_RETRANSMIT_BIND")]
    pub retransmit_bind: Option<String>,

    /// Where --retransmit-bind's requests go: the publisher's
    /// --retransmit-bind, a recorder's --serve, or the next relay's
    /// --retransmit-bind upstream.
    #[arg(long, value_name = "ENDPOINT", value_parser = endpoint_arg, requires = "retransmit_bind",
          help_heading = "Retransmission", env = "SHARDCAST_RELAY_RETRANSMIT_FROM")]
    pub retransmit_from: Option<String>,

    /// Requests one downstream peer may have in progress through the relay;
    /// more are answered BUSY at once (one peer cannot take every place).
    #[arg(long, default_value_t = 4, value_name = "N", help_heading = "Retransmission",
          value_parser = clap::value_parser!(u32).range(1..=1024),
          env = "SHARDCAST_RELAY_RETRANSMIT_PEER_REQUESTS")]
    pub retransmit_peer_requests: u32,

    /// Multicast downstream (pgm://, epgm://): send rate limit in kbit/s
    /// (ZMQ_RATE), as shardcast-pub.
    #[arg(long, default_value_t = 1_000_000, value_name = "KBIT_S", help_heading = "Multicast",
          value_parser = clap::value_parser!(i32).range(1..), env = "SHARDCAST_RELAY_PGM_RATE")]
    pub pgm_rate: i32,

    /// Multicast downstream: how long sent data is kept for repair on a
    /// receiver's NAK (ZMQ_RECOVERY_IVL), as shardcast-pub.
    #[arg(long, default_value_t = 10_000, value_name = "MS", help_heading = "Multicast",
          value_parser = clap::value_parser!(i32).range(1..), env = "SHARDCAST_RELAY_PGM_RECOVERY_MS")]
    pub pgm_recovery_ms: i32,

    /// Multicast downstream: IP TTL of multicast packets
    /// (ZMQ_MULTICAST_HOPS); 1 keeps them on the local network.
    #[arg(long, default_value_t = 1, value_name = "HOPS", help_heading = "Multicast",
          value_parser = clap::value_parser!(i32).range(1..=255), env = "SHARDCAST_RELAY_MULTICAST_HOPS")]
    pub multicast_hops: i32,

    /// Most subscription messages one downstream connection may send, as
    /// shardcast-pub; past it every connection from its address is cut off.
    #[arg(long, default_value_t = 10_000, value_name = "N", help_heading = "Defence",
          value_parser = clap::value_parser!(u32).range(1..), env = "SHARDCAST_RELAY_MAX_SUBSCRIPTIONS")]
    pub max_subscriptions: u32,

    /// Most downstream connections from one source address at a time, as
    /// shardcast-pub.
    #[arg(long, default_value_t = 256, value_name = "N", help_heading = "Defence",
          value_parser = clap::value_parser!(u32).range(1..), env = "SHARDCAST_RELAY_MAX_PEERS_PER_HOST")]
    pub max_peers_per_host: u32,

    /// A downstream connection that has not finished its handshake within
    /// this long is closed (ZMQ_HANDSHAKE_IVL), as shardcast-pub.
    #[arg(long, default_value_t = 5000, value_name = "MS", help_heading = "Defence",
          value_parser = clap::value_parser!(u64).range(1..=3_600_000), env = "SHARDCAST_RELAY_HANDSHAKE_TIMEOUT_MS")]
    pub handshake_timeout_ms: u64,

    /// CURVE upstream: this relay's secret key file (from shardcast-keygen;
    /// its public half must be in the upstream's --curve-allow). Every hop
    /// then connects encrypted. Needs the system libzmq build.
    #[arg(
        long,
        value_name = "FILE",
        requires = "curve_server_key",
        help_heading = "Security",
        env = "SHARDCAST_RELAY_CURVE_KEY"
    )]
    pub curve_key: Option<std::path::PathBuf>,

    /// CURVE upstream: the upstream's public key (Z85 text, or its NAME.pub
    /// file).
    #[arg(
        long,
        value_name = "KEY|FILE",
        requires = "curve_key",
        help_heading = "Security",
        env = "SHARDCAST_RELAY_CURVE_SERVER_KEY"
    )]
    pub curve_server_key: Option<String>,

    /// CURVE downstream: the secret key file the relay serves its streams
    /// with (it may be the same as --curve-key); only subscribers whose
    /// public key is in --curve-allow get in. Needs the system libzmq build.
    #[arg(
        long,
        value_name = "FILE",
        requires = "curve_allow",
        help_heading = "Security",
        env = "SHARDCAST_RELAY_CURVE_SECRET_KEY"
    )]
    pub curve_secret_key: Option<std::path::PathBuf>,

    /// CURVE downstream: files of subscriber public keys allowed in (lines
    /// of `KEY [NAME]`, or NAME.pub files); repeatable. Others are refused
    /// and logged with their address.
    #[arg(
        long,
        value_name = "FILE",
        requires = "curve_secret_key",
        help_heading = "Security",
        env = "SHARDCAST_RELAY_CURVE_ALLOW",
        value_delimiter = ','
    )]
    pub curve_allow: Vec<std::path::PathBuf>,

    /// Serve Prometheus metrics (OpenMetrics text) at
    /// http://ADDR:PORT/metrics while the run lasts, from a thread of its
    /// own that reads only what the relay threads publish for the monitor
    /// (README, "Relays"). Port 0: the OS picks one; the address is
    /// printed on stderr.
    #[arg(long, value_name = "ADDR:PORT", env = "SHARDCAST_RELAY_METRICS_BIND")]
    pub metrics_bind: Option<std::net::SocketAddr>,

    /// Keep the metrics endpoint up this long after the run, with the
    /// report's final numbers, so a last scrape sees them.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "MS",
        env = "SHARDCAST_RELAY_METRICS_LINGER_MS"
    )]
    pub metrics_linger_ms: u64,

    /// Write the JSON report here at the end.
    #[arg(long, value_name = "FILE", env = "SHARDCAST_RELAY_REPORT_JSON")]
    pub report_json: Option<std::path::PathBuf>,

    /// Print the resolved configuration as JSON and exit.
    #[arg(long)]
    pub print_config: bool,
}
