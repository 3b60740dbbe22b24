//! Command-line flags of `shardcast-record`. Every flag has an environment
//! twin `SHARDCAST_RECORD_<FLAG>`. Flags shared with `shardcast-sub` have
//! its names and meanings. Flag names are a contract: add, never rename.

use clap::Parser;
use shardcast_agent::cpu::{cpu_list_arg, CpuList};
use shardcast_agent::exit::{positive_seconds, DAY_MS};
use shardcast_agent::idle::Idle;
use shardcast_agent::lag::OnSlow;
use shardcast_agent::zmqx::endpoint_arg;
use shardcast_proto::snail::LagMode;

/// shardcast-record: records every frame of shardcast streams, exactly as
/// received, with its receive time, into checksummed, indexed segment
/// files; one recorder thread (SUB socket, pinned) per --connect. The
/// Suicidal Snail croaks (exit 3) when it falls behind.
#[derive(Debug, Parser)]
#[command(name = "shardcast-record", version, about, long_about = None)]
pub struct Flags {
    /// Publisher stream to record; one recorder thread per occurrence.
    #[arg(long, required = true, value_name = "ENDPOINT", value_parser = endpoint_arg,
          env = "SHARDCAST_RECORD_CONNECT", value_delimiter = ',')]
    pub connect: Vec<String>,

    /// Recording directory: one subdirectory per stream
    /// (`p<publisher>-s<stream>`), created if missing. An existing
    /// recording is verified (a torn tail truncated) and appended to.
    #[arg(long, value_name = "DIR", env = "SHARDCAST_RECORD_DIR")]
    pub dir: std::path::PathBuf,

    /// A segment file rolls before it would grow past this many bytes.
    #[arg(long, default_value_t = 128 << 20, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(4096..=(1u64 << 40)),
          env = "SHARDCAST_RECORD_SEGMENT_BYTES")]
    pub segment_bytes: u64,

    /// Bytes each stream buffers before a write (one system call per
    /// buffer, not per frame).
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(4096..=(1u64 << 30)),
          env = "SHARDCAST_RECORD_BUFFER_BYTES")]
    pub buffer_bytes: u64,

    /// Longest time a received frame waits in the buffer before it is
    /// written (what `--serve` and other readers of a live recording can
    /// see lags by at most this).
    #[arg(long, default_value_t = 20, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=60_000),
          env = "SHARDCAST_RECORD_FLUSH_MS")]
    pub flush_ms: u64,

    /// An index point at least every this many bytes of a segment.
    #[arg(long, default_value_t = 64 << 10, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(512..=(1u64 << 30)),
          env = "SHARDCAST_RECORD_INDEX_BYTES")]
    pub index_bytes: u64,

    /// CPUs for the recorder threads, in --connect order (e.g. 2,3).
    #[arg(long, value_name = "LIST", value_parser = cpu_list_arg, env = "SHARDCAST_RECORD_CPUS")]
    pub cpus: Option<CpuList>,

    /// CPUs for the ZeroMQ I/O threads, one per --connect, in order.
    #[arg(long, value_name = "LIST", value_parser = cpu_list_arg, env = "SHARDCAST_RECORD_IO_CPUS")]
    pub io_cpus: Option<CpuList>,

    /// SUB receive high-water mark, in messages (ZMQ_RCVHWM); 0: no limit.
    #[arg(long, default_value_t = 100_000, value_name = "MSGS",
          value_parser = clap::value_parser!(i32).range(0..), env = "SHARDCAST_RECORD_RCVHWM")]
    pub rcvhwm: i32,

    /// SUB kernel receive buffer, bytes (ZMQ_RCVBUF); 0 keeps the OS default.
    #[arg(long, default_value_t = 0, value_name = "BYTES",
          value_parser = clap::value_parser!(i32).range(0..), env = "SHARDCAST_RECORD_RCVBUF")]
    pub rcvbuf: i32,

    /// Largest frame accepted (ZMQ_MAXMSGSZ); a peer sending more is
    /// disconnected by libzmq. At most 64 MiB (the largest entry).
    #[arg(long, default_value_t = shardcast_proto::wire::MAX_FRAME_LEN as i64, value_name = "BYTES",
          value_parser = clap::value_parser!(i64).range(1..=(64 << 20)),
          env = "SHARDCAST_RECORD_MAX_MSG_SIZE")]
    pub max_msg_size: i64,

    /// The Suicidal Snail's limit: a record older than this when the
    /// recorder receives it means the recorder cannot keep up. At most a day.
    #[arg(long, default_value_t = 1000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=DAY_MS), env = "SHARDCAST_RECORD_MAX_LAG_MS")]
    pub max_lag_ms: u64,

    /// What to do past --max-lag-ms: croak (exit 3) or warn and go on.
    #[arg(long, value_enum, default_value_t = OnSlow::Croak, env = "SHARDCAST_RECORD_ON_SLOW")]
    pub on_slow: OnSlow,

    /// How the snail judges lag (as shardcast-sub).
    #[arg(long, value_enum, default_value_t = LagMode::Absolute, env = "SHARDCAST_RECORD_SNAIL_MODE")]
    pub snail_mode: LagMode,

    /// Relative mode: how long the smallest delay is remembered, seconds.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS", value_parser = positive_seconds,
          allow_negative_numbers = true, env = "SHARDCAST_RECORD_SNAIL_WINDOW")]
    pub snail_window: f64,

    /// A send time further ahead of our clock than this is not judged
    /// (counted as ts_future), as shardcast-sub. At most a day.
    #[arg(long, default_value_t = 10_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=DAY_MS), env = "SHARDCAST_RECORD_MAX_CLOCK_SKEW_MS")]
    pub max_clock_skew_ms: u64,

    /// How a recorder thread waits for frames.
    #[arg(long, value_enum, default_value_t = Idle::Block, env = "SHARDCAST_RECORD_IDLE")]
    pub idle: Idle,

    /// Stop after this many seconds (also ends at end-of-stream of every
    /// stream, or SIGINT/SIGTERM).
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds, allow_negative_numbers = true,
          env = "SHARDCAST_RECORD_DURATION")]
    pub duration: Option<f64>,

    /// Serve recorded ranges on this ROUTER endpoint (docs/RECORDING.md,
    /// "Serving"); `tcp://127.0.0.1:*` picks a port (printed).
    #[arg(long, value_name = "ENDPOINT", value_parser = endpoint_arg, env = "SHARDCAST_RECORD_SERVE")]
    pub serve: Option<String>,

    /// Most bytes per second `--serve` sends, all requests together, so
    /// serving cannot take the disk and CPU the recording needs.
    #[arg(long, default_value_t = 200 << 20, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1024..),
          env = "SHARDCAST_RECORD_SERVE_BYTES_PER_SEC")]
    pub serve_bytes_per_sec: u64,

    /// --serve: keep serving this long after the recording ends (every
    /// stream's end-of-stream, --duration), so a subscriber still
    /// repairing a gap (`shardcast-sub --recover-from`) or catching up
    /// gets its answer; a signal ends it at once. 0: stop with the
    /// recording. At most a day.
    #[arg(long, default_value_t = 0, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=86_400_000),
          env = "SHARDCAST_RECORD_SERVE_LINGER_MS")]
    pub serve_linger_ms: u64,

    /// Serve Prometheus metrics (OpenMetrics text) at
    /// http://ADDR:PORT/metrics while the run lasts, from a thread of its
    /// own that reads only what the recorder threads publish for the
    /// monitor (README, "Monitoring"). Port 0: the OS picks one; the
    /// address is printed on stderr.
    #[arg(long, value_name = "ADDR:PORT", env = "SHARDCAST_RECORD_METRICS_BIND")]
    pub metrics_bind: Option<std::net::SocketAddr>,

    /// Keep the metrics endpoint up this long after the run, with the
    /// report's final totals, so a last scrape sees them.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "MS",
        env = "SHARDCAST_RECORD_METRICS_LINGER_MS"
    )]
    pub metrics_linger_ms: u64,

    /// Write the JSON report here at the end.
    #[arg(long, value_name = "FILE", env = "SHARDCAST_RECORD_REPORT_JSON")]
    pub report_json: Option<std::path::PathBuf>,

    /// Print the resolved configuration as JSON and exit.
    #[arg(long)]
    pub print_config: bool,
}
