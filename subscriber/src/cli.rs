//! Command-line flags of `shardcast-sub`. Every flag has an environment twin
//! `SHARDCAST_SUB_<FLAG>` (the deploy/ profiles use them). Flag names are a
//! contract: add, never rename.

use clap::{Parser, ValueEnum};
use shardcast_agent::cpu::{cpu_list_arg, CpuList};
use shardcast_agent::exit::{non_negative_seconds, positive_seconds, DAY_MS, MAX_MS};
use shardcast_agent::idle::Idle;
use shardcast_agent::lag::OnSlow;
use shardcast_agent::zmqx::endpoint_arg;
use shardcast_proto::snail::LagMode;
use shardcast_workers::WorkKind;

/// Fan-out from shards to workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Fanout {
    /// inproc PUSH/PULL: every worker pulls from every shard, libzmq
    /// balances. The Guide's pattern, for stateless work.
    Push,
    /// Each symbol goes to one worker (hash of the symbol), so per-symbol
    /// order holds. Needed by stateful work such as `book`.
    Keyed,
}

/// shardcast-sub: the Black Box subscriber. One shard (SUB socket, thread and
/// ZeroMQ I/O thread) per --connect; shards fan out over inproc to a pool of
/// worker threads; the Suicidal Snail croaks when the subscriber falls behind.
#[derive(Debug, Parser)]
#[command(name = "shardcast-sub", version, about, long_about = None)]
pub struct Flags {
    /// Publisher stream to subscribe to; one shard per occurrence.
    #[arg(long, required_unless_present = "explain_hwm", value_name = "ENDPOINT", value_parser = endpoint_arg,
          env = "SHARDCAST_SUB_CONNECT", value_delimiter = ',')]
    pub connect: Vec<String>,

    /// Receive only the symbols starting with PREFIX (repeatable; at most
    /// 8 bytes, printable ASCII): subscriptions the publisher applies to
    /// single-record frames (`--batch 1`; its batches carry every symbol and
    /// the shard leaves the others out). Loss is then checked per symbol
    /// (each record's per-symbol sequence, PROTOCOL.md section 4): the
    /// stream's holes are the symbols not selected, never counted lost, and
    /// with --recover-from a symbol's gap is repaired from the stream range
    /// between its two records. A symbol's loss after its last record
    /// cannot be seen (end-of-stream carries the stream's last sequence,
    /// not each symbol's).
    #[arg(long, value_name = "PREFIX", value_parser = symbol_prefix,
          env = "SHARDCAST_SUB_SUBSCRIBE", value_delimiter = ',')]
    pub subscribe: Vec<String>,

    /// Name this subscriber to the publishers and relays it reads
    /// (presence): every stream socket (each --connect, and its --connect-b
    /// line) also subscribes to the presence topic of NAME (PROTOCOL.md
    /// section 3), which matches no frame. A publisher or relay then logs
    /// it connecting and leaving by name, with its address, lists it in
    /// its report's `subscribers`, and warns when an id it expects
    /// (`--expect-subscribers`) is missing. 1 to 64 characters of
    /// `A-Z a-z 0-9 . _ - : @ /`.
    #[arg(long, value_name = "NAME", value_parser = shardcast_agent::presence::id_arg,
          env = "SHARDCAST_SUB_ID")]
    pub id: Option<String>,

    /// Line B of an A/B pair (by position: shard i also reads line B
    /// endpoint i, the publisher's `--bind-b`), on its own socket and I/O
    /// thread. The shard arbitrates by sequence: the first copy of a record
    /// is taken, the second dropped; a record lost on one line only is not
    /// a loss. On a gap, the other line is given --line-wait-ms to fill it
    /// before --recover-from is asked. The report's `shards[].lines` says
    /// what each line did.
    #[arg(long, value_name = "ENDPOINT", value_parser = endpoint_arg,
          env = "SHARDCAST_SUB_CONNECT_B", value_delimiter = ',')]
    pub connect_b: Vec<String>,

    /// --connect-b: how long a gap on one line waits for the other line to
    /// fill it (the lines' skew is normally microseconds; a line that is
    /// past the gap without filling it ends the wait at once).
    #[arg(long, default_value_t = 50, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=DAY_MS),
          env = "SHARDCAST_SUB_LINE_WAIT_MS")]
    pub line_wait_ms: u64,

    /// Local interface or address each shard connects from (by position, one
    /// per --connect, or one for all), so each stream rides its own NIC.
    #[arg(
        long,
        value_name = "IFACE|ADDR",
        env = "SHARDCAST_SUB_IFACE",
        value_delimiter = ','
    )]
    pub iface: Vec<String>,

    /// Worker threads. 0: none; each shard does the work itself, inline,
    /// with no inproc hop (one thread per stream besides its I/O thread:
    /// for machines with few cores). Keyed work stays correct inline
    /// because a publisher sends each symbol on one stream.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=64),
          env = "SHARDCAST_SUB_WORKERS")]
    pub workers: u32,

    /// Fan-out from shards to workers.
    #[arg(long, value_enum, default_value_t = Fanout::Keyed, env = "SHARDCAST_SUB_FANOUT")]
    pub fanout: Fanout,

    /// Work done per record.
    #[arg(long, value_enum, default_value_t = WorkKind::Book, env = "SHARDCAST_SUB_WORK")]
    pub work: WorkKind,

    /// Extra busy work per record, in ns (simulates a heavy consumer); at
    /// most a minute.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "NS",
        value_parser = clap::value_parser!(u64).range(0..=60_000_000_000),
        env = "SHARDCAST_SUB_WORK_NS"
    )]
    pub work_ns: u64,

    /// CPUs for the shard threads, in shard order (e.g. 2,3).
    #[arg(long, value_name = "LIST", value_parser = cpu_list_arg, env = "SHARDCAST_SUB_SHARD_CPUS")]
    pub shard_cpus: Option<CpuList>,

    /// CPUs for the worker threads, in worker order (e.g. 4-7).
    #[arg(long, value_name = "LIST", value_parser = cpu_list_arg, env = "SHARDCAST_SUB_WORKER_CPUS")]
    pub worker_cpus: Option<CpuList>,

    /// CPUs for the ZeroMQ I/O threads, one per shard, in shard order.
    #[arg(long, value_name = "LIST", value_parser = cpu_list_arg, env = "SHARDCAST_SUB_IO_CPUS")]
    pub io_cpus: Option<CpuList>,

    /// SUB receive high-water mark, in messages (ZMQ_RCVHWM). The default is
    /// one second of the Guide's 100K msg/s feed: the snail's lag budget.
    /// 0 means no limit (libzmq's meaning): memory is then unbounded.
    #[arg(
        long,
        default_value_t = 100_000,
        value_name = "MSGS",
        env = "SHARDCAST_SUB_RCVHWM"
    )]
    pub rcvhwm: i32,

    /// SUB kernel receive buffer, bytes (ZMQ_RCVBUF); 0 keeps the OS default.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "BYTES",
        env = "SHARDCAST_SUB_RCVBUF"
    )]
    pub rcvbuf: i32,

    /// High-water mark of each inproc hop (applied at both ends, so the
    /// queue holds up to twice this many frames).
    /// The default holds about 2.5 s of the Guide's 100K msg/s stream at the
    /// default --coalesce when the subscriber is behind (see --explain-hwm).
    #[arg(long, default_value_t = 1_000, value_name = "FRAMES",
          value_parser = clap::value_parser!(i32).range(1..), env = "SHARDCAST_SUB_INPROC_HWM")]
    pub inproc_hwm: i32,

    /// Most frames a shard takes from its SUB (only ones already queued,
    /// never waiting) before handing what it packed to the workers: one
    /// inproc message per worker instead of one per frame. 1 turns packing
    /// off.
    #[arg(long, default_value_t = 64, value_name = "FRAMES",
          value_parser = clap::value_parser!(u32).range(1..=1024), env = "SHARDCAST_SUB_COALESCE")]
    pub coalesce: u32,

    /// Largest frame accepted (ZMQ_MAXMSGSZ); a peer sending more is
    /// disconnected by libzmq.
    #[arg(long, default_value_t = shardcast_proto::wire::MAX_FRAME_LEN as i64, value_name = "BYTES",
          value_parser = clap::value_parser!(i64).range(1..), env = "SHARDCAST_SUB_MAX_MSG_SIZE")]
    pub max_msg_size: i64,

    /// The Suicidal Snail's limit: a message older than this at a shard or at
    /// a worker means the subscriber cannot keep up. At most a day.
    #[arg(long, default_value_t = 1000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=DAY_MS), env = "SHARDCAST_SUB_MAX_LAG_MS")]
    pub max_lag_ms: u64,

    /// What to do past --max-lag-ms.
    #[arg(long, value_enum, default_value_t = OnSlow::Croak, env = "SHARDCAST_SUB_ON_SLOW")]
    pub on_slow: OnSlow,

    /// How the snail judges lag: `absolute` for synchronised clocks,
    /// `relative` when publisher and subscriber clocks may differ.
    #[arg(long, value_enum, default_value_t = LagMode::Absolute, env = "SHARDCAST_SUB_SNAIL_MODE")]
    pub snail_mode: LagMode,

    /// Relative mode: how long the smallest delay is remembered. A backlog
    /// growing slower than --max-lag-ms per window is absorbed; clock drift
    /// faster than that is seen as lag. At most a year.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS", value_parser = positive_seconds,
          allow_negative_numbers = true, env = "SHARDCAST_SUB_SNAIL_WINDOW")]
    pub snail_window: f64,

    /// A send time further ahead of our clock than this is implausible:
    /// counted as `ts_future`, delivered, but not timed or judged. It also
    /// widens the past bound: a record older than max(1 h, this run) plus
    /// this is counted as `ts_ancient`, likewise. At most a day.
    #[arg(
        long,
        default_value_t = 10_000,
        value_name = "MS",
        value_parser = clap::value_parser!(u64).range(0..=DAY_MS),
        env = "SHARDCAST_SUB_MAX_CLOCK_SKEW_MS"
    )]
    pub max_clock_skew_ms: u64,

    /// When the snail croaks, first write a forensic report here (JSON:
    /// the event, queue depths, HWMs, last sequences, recent histograms,
    /// thread placement).
    #[arg(long, value_name = "FILE", env = "SHARDCAST_SUB_SNAIL_REPORT")]
    pub snail_report: Option<std::path::PathBuf>,

    /// When the snail croaks, send one alarm message (JSON, see
    /// docs/PROTOCOL.md) over a PUSH socket connected to this endpoint
    /// before exiting; the operator binds a PULL there.
    #[arg(long, value_name = "ENDPOINT", value_parser = endpoint_arg, env = "SHARDCAST_SUB_ALARM")]
    pub alarm: Option<String>,

    /// Most symbols each worker keeps a book for (work = book); records of
    /// further new symbols are counted as `unknown_symbol` and dropped, so a
    /// peer inventing symbols cannot grow memory without bound.
    #[arg(long, default_value_t = 500_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..), env = "SHARDCAST_SUB_MAX_SYMBOLS")]
    pub max_symbols: u64,

    /// Print the queue sizes and the memory ceiling that --rcvhwm,
    /// --inproc-hwm, --coalesce, --rcvbuf and --max-symbols imply at
    /// --expected-rate and --expected-msg-size, judged against --max-lag-ms;
    /// warn where they contradict it; then exit (1 if there are warnings).
    #[arg(long, help_heading = "Sizing")]
    pub explain_hwm: bool,

    /// --explain-hwm: messages per second per stream.
    #[arg(long, default_value_t = 100_000, value_name = "MSGS_PER_S", help_heading = "Sizing",
          value_parser = clap::value_parser!(u64).range(1..), env = "SHARDCAST_SUB_EXPECTED_RATE")]
    pub expected_rate: u64,

    /// --explain-hwm: bytes per message on the wire.
    #[arg(long, default_value_t = 100, value_name = "BYTES", help_heading = "Sizing",
          value_parser = clap::value_parser!(u64).range(1..), env = "SHARDCAST_SUB_EXPECTED_MSG_SIZE")]
    pub expected_msg_size: u64,

    /// How shard and worker threads wait.
    #[arg(long, value_enum, default_value_t = Idle::Block, env = "SHARDCAST_SUB_IDLE")]
    pub idle: Idle,

    /// Stop after this many seconds, at most a year (otherwise at
    /// end-of-stream on every shard, or on SIGINT/SIGTERM).
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds, allow_negative_numbers = true,
          env = "SHARDCAST_SUB_DURATION")]
    pub duration: Option<f64>,

    /// Write the JSON report here.
    #[arg(long, value_name = "FILE", env = "SHARDCAST_SUB_REPORT_JSON")]
    pub report_json: Option<std::path::PathBuf>,

    /// Write the percentile distribution of every stage here (HdrHistogram's
    /// .hgrm text, microseconds), plus FILE-stem.STAGE.hgrm per stage.
    #[arg(long, value_name = "FILE", env = "SHARDCAST_SUB_HGRM")]
    pub hgrm: Option<std::path::PathBuf>,

    /// Write an HdrHistogram interval log here: one histogram per stage per
    /// second (tags wire, queue, work, end_to_end; values in ns).
    #[arg(long, value_name = "FILE", env = "SHARDCAST_SUB_HDR_LOG")]
    pub hdr_log: Option<std::path::PathBuf>,

    /// Plot latency by percentile, one line per stage, to FILE.svg or FILE.png.
    #[arg(long, value_name = "FILE.svg|png", env = "SHARDCAST_SUB_PLOT")]
    pub plot: Option<std::path::PathBuf>,

    /// Leave the first seconds out of the histograms (records are still
    /// counted, and checked by the snail). At most a year.
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS", value_parser = non_negative_seconds,
          allow_negative_numbers = true, env = "SHARDCAST_SUB_WARMUP")]
    pub warmup: f64,

    /// Print a plain progress line every S seconds (for logs); without it, a
    /// live line is shown only when stderr is a terminal. At most a year.
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds,
          allow_negative_numbers = true, env = "SHARDCAST_SUB_STATS_INTERVAL")]
    pub stats_interval: Option<f64>,

    /// Serve Prometheus metrics (OpenMetrics text) at
    /// http://ADDR:PORT/metrics while the run lasts, from a thread of its
    /// own that reads only what the monitor keeps (README, "Monitoring").
    /// Port 0: the OS picks one; the address is printed on stderr.
    #[arg(long, value_name = "ADDR:PORT", env = "SHARDCAST_SUB_METRICS_BIND")]
    pub metrics_bind: Option<std::net::SocketAddr>,

    /// Keep the metrics endpoint up this long after the run, with the
    /// report's final totals, so a last scrape sees them.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "MS",
        env = "SHARDCAST_SUB_METRICS_LINGER_MS"
    )]
    pub metrics_linger_ms: u64,

    /// Write the final books (--work book or itch-book; otherwise `{}`) here
    /// at the end of the run, as JSON keyed by symbol.
    ///
    /// --work itch-book: one object per ITCH symbol (trailing spaces
    /// trimmed), the order-by-order book at the end: bid_px, bid_sz, ask_px,
    /// ask_sz (best level: price in 1/10000, total shares at it; null when
    /// the side is empty), orders, bid_levels, ask_levels, trades, volume,
    /// last_px, broken_trades, trading_state, halted. See README, "Real
    /// data".
    ///
    /// --work book: one object keyed by symbol (sorted), each value the book built from
    /// every record the workers processed for that symbol (duplicates
    /// dropped, lost records missing, warm-up included): bid_px, ask_px
    /// (latest quote), last_px, high, low (trades), all integers in 1/10000
    /// currency units; bid_sz, ask_sz (latest quote, shares); quotes,
    /// trades (records applied); volume (sum of trade sizes, shares);
    /// notional (sum of px x size in 1/10000 units, a decimal string); vwap
    /// (currency units, a float; null when volume is 0). Quote fields are 0
    /// until a quote was applied and trade fields until a trade was: tell
    /// by `quotes` and `trades`. See README, "Books file".
    #[arg(long, value_name = "FILE", env = "SHARDCAST_SUB_BOOKS_OUT")]
    pub books_out: Option<std::path::PathBuf>,

    /// After the last shard ends, how long workers may take to drain (at
    /// most a year).
    #[arg(
        long,
        default_value_t = 5000,
        value_name = "MS",
        value_parser = clap::value_parser!(u64).range(0..=MAX_MS),
        env = "SHARDCAST_SUB_DRAIN_TIMEOUT_MS"
    )]
    pub drain_timeout_ms: u64,

    /// A recorder's `--serve` endpoint (shardcast-record): a stream this
    /// subscriber joins mid-stream is caught up from it. The live stream
    /// queues while the shard fetches everything before its first live
    /// record (this session, from sequence 1), hands that to the workers
    /// in order (neither timed nor judged by the snail), then goes on with
    /// the live records, dropping those the recording already gave. The
    /// report's `streams[].caught_up` says what came.
    #[arg(long, value_name = "ENDPOINT", value_parser = endpoint_arg, env = "SHARDCAST_SUB_CATCH_UP")]
    pub catch_up: Option<String>,

    /// --catch-up: how long one stream's catch-up may take, every reply
    /// together (at most a day); the live stream waits meanwhile, within
    /// --rcvhwm.
    #[arg(
        long,
        default_value_t = 30_000,
        value_name = "MS",
        value_parser = clap::value_parser!(u64).range(1..=DAY_MS),
        env = "SHARDCAST_SUB_CATCH_UP_TIMEOUT_MS"
    )]
    pub catch_up_timeout_ms: u64,

    /// Where a gap is repaired from (repeatable, asked in the order
    /// given): the publisher's `--retransmit-bind` endpoint first, then a
    /// recorder's `--serve` endpoint as the deeper source (both speak the
    /// range protocol of docs/RECORDING.md section 6). On a gap the shard
    /// stops reading its stream (later records wait, in order, in its SUB
    /// queue), fetches the missing range, hands it to the workers in
    /// sequence, then goes on. What no source has within
    /// --reorder-window-ms is counted in `lost` with an alarm naming the
    /// range; the report's `recovered` counts what was repaired.
    #[arg(long, value_name = "ENDPOINT", value_parser = endpoint_arg,
          value_delimiter = ',', env = "SHARDCAST_SUB_RECOVER_FROM")]
    pub recover_from: Vec<String>,

    /// --recover-from: the largest gap (records) the shard repairs; a
    /// larger one is counted as lost at once (repairing it would hold the
    /// live stream longer than the lag budget). Default: one second of the
    /// Guide's feed, --expected-rate x --max-lag-ms.
    #[arg(long, value_name = "RECORDS", value_parser = clap::value_parser!(u64).range(1..),
          env = "SHARDCAST_SUB_REORDER_WINDOW")]
    pub reorder_window: Option<u64>,

    /// --recover-from: how long the repair of one gap may hold the live
    /// stream, every source together. Default: --max-lag-ms.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=DAY_MS),
          env = "SHARDCAST_SUB_REORDER_WINDOW_MS")]
    pub reorder_window_ms: Option<u64>,

    /// CURVE: this subscriber's secret key file (from shardcast-keygen; its
    /// public half must be in the publisher's --curve-allow). Every shard
    /// then connects encrypted. Needs the system libzmq build.
    #[arg(
        long,
        value_name = "FILE",
        requires = "curve_server_key",
        help_heading = "Security",
        env = "SHARDCAST_SUB_CURVE_KEY"
    )]
    pub curve_key: Option<std::path::PathBuf>,

    /// CURVE: the publisher's public key (Z85 text, or its NAME.pub file).
    #[arg(
        long,
        value_name = "KEY|FILE",
        requires = "curve_key",
        help_heading = "Security",
        env = "SHARDCAST_SUB_CURVE_SERVER_KEY"
    )]
    pub curve_server_key: Option<String>,

    /// Multicast (pgm://, epgm:// endpoints): the stream's rate in kbit/s
    /// (ZMQ_RATE). With --pgm-recovery-ms it sizes the receive window that
    /// repairs losses, so give the publisher's --pgm-rate.
    #[arg(long, default_value_t = 1_000_000, value_name = "KBIT_S", help_heading = "Multicast",
          value_parser = clap::value_parser!(i32).range(1..), env = "SHARDCAST_SUB_PGM_RATE")]
    pub pgm_rate: i32,

    /// Multicast: recovery interval in ms (ZMQ_RECOVERY_IVL); give the
    /// publisher's --pgm-recovery-ms.
    #[arg(long, default_value_t = 10_000, value_name = "MS", help_heading = "Multicast",
          value_parser = clap::value_parser!(i32).range(1..), env = "SHARDCAST_SUB_PGM_RECOVERY_MS")]
    pub pgm_recovery_ms: i32,

    /// Print the effective configuration as JSON and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Fault injection (testing): stall worker 0 once for this long (at
    /// most a year).
    #[arg(
        long,
        value_name = "MS",
        help_heading = "Fault injection",
        value_parser = clap::value_parser!(u64).range(0..=MAX_MS),
        env = "SHARDCAST_SUB_STALL_WORKER_MS"
    )]
    pub stall_worker_ms: Option<u64>,

    /// Fault injection: the stall starts after worker 0 processed this many records.
    #[arg(
        long,
        default_value_t = 1,
        value_name = "RECORDS",
        help_heading = "Fault injection",
        env = "SHARDCAST_SUB_STALL_AFTER"
    )]
    pub stall_after: u64,
}

/// A `--subscribe` prefix: 1 to 8 printable ASCII bytes (a symbol's).
fn symbol_prefix(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > shardcast_proto::wire::SYMBOL_LEN {
        return Err(format!("{s:?}: a symbol prefix is 1 to 8 characters"));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{s:?}: a symbol prefix is printable ASCII, no spaces"
        ));
    }
    Ok(s.to_string())
}
