//! Command-line flags of `shardcast-pub`. Every flag has an environment twin
//! `SHARDCAST_PUB_<FLAG>`. Flag names are a contract: add, never rename.

use crate::config::{batch_arg, source_arg, Batch, Pace, SourceSpec, WhenFull};
use crate::schedule::{speed_arg, Speed};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use shardcast_agent::cpu::{cpu_list_arg, CpuList};
use shardcast_agent::exit::{positive_seconds, DAY_MS, MAX_MS};
use shardcast_agent::zmqx::endpoint_arg;

/// shardcast-pub: streams a deterministic synthetic market-data feed, or a
/// NASDAQ TotalView-ITCH 5.0 day file (--source itch:PATH), over one XPUB
/// socket per --bind, symbols sharded across streams, paced against the
/// clock with the intended send time stamped on every message.
#[derive(Debug, Parser)]
#[command(name = "shardcast-pub", version, about, long_about = None)]
pub struct Flags {
    /// Endpoint of one stream (its own XPUB socket, which publishes like a PUB
    /// and shows subscriptions); repeat for more streams.
    #[arg(long, required = true, value_name = "ENDPOINT", value_parser = endpoint_arg,
          env = "SHARDCAST_PUB_BIND", value_delimiter = ',')]
    pub bind: Vec<String>,

    /// Line B of a stream, by position: stream i is also sent, identically
    /// (same frames, sequences and session), on the i-th --bind-b, a socket
    /// of its own on its own ZeroMQ I/O thread (typically another NIC), so
    /// a subscriber reading both (A/B arbitration) loses only what both
    /// lines lose. Give one per --bind, or none. Line B never holds a
    /// stream back: it drops for a slow subscriber even under
    /// --when-full block, and --wait-subscribers counts line A only.
    /// Heartbeats and end-of-stream go on both lines.
    #[arg(long, value_name = "ENDPOINT", value_parser = endpoint_arg,
          env = "SHARDCAST_PUB_BIND_B", value_delimiter = ',')]
    pub bind_b: Vec<String>,

    /// Publisher id carried by every message (unique per publisher).
    #[arg(long, default_value_t = 1, env = "SHARDCAST_PUB_PUBLISHER_ID")]
    pub publisher_id: u32,

    /// Session id (default: the start time in ns, so a restart is a new session).
    #[arg(long, env = "SHARDCAST_PUB_SESSION")]
    pub session: Option<u64>,

    /// Where the messages come from: `synthetic` (the seeded feed of
    /// --symbols, --seed and --size at --rate) or `itch:PATH`, a NASDAQ
    /// TotalView-ITCH 5.0 file (2-byte big-endian length, message, ...;
    /// read through gzip when PATH ends in .gz).
    ///
    /// An ITCH file is played at --speed: every message goes to the stream
    /// owning its symbol (from the Stock Directory `R` messages, by the same
    /// hash as the synthetic feed), market-wide ones (stock locate 0) to
    /// every stream as symbol `~MARKET`, each record carrying the message's
    /// bytes unchanged. Unknown types are skipped and counted by type;
    /// malformed and truncated messages are counted; the end of the file
    /// ends the streams (end-of-stream). --count N reads only the first N
    /// messages; --duration still bounds the run. --rate, --burst,
    /// --symbols, --seed and --size belong to the synthetic feed: given
    /// with an ITCH source they are an error.
    ///
    /// `moldudp64:udp://[IFACE_ADDR;]GROUP_OR_ADDR:PORT` takes a live
    /// MoldUDP64 feed of ITCH 5.0 (a multicast group joined on the
    /// interface with that address, or a unicast address bound), routed
    /// the same way and sent as it arrives, in the exchange's order: gaps
    /// are asked for at --rerequest, and the end of the session ends the
    /// streams.
    ///
    /// `recording:DIR` replays what shardcast-record recorded in DIR: its
    /// recorded stream i on stream i (give one --bind per recorded stream),
    /// as a new session (sequences from 1), each record's payload
    /// byte-identical, at --speed (anchored on the recorded intended send
    /// times), within --from-seq, --to-seq and --from-time, only --symbols
    /// LIST if given; duplicates in the recording are replayed once and
    /// damaged entries never.
    #[arg(long, default_value = "synthetic", value_name = "synthetic|itch:PATH|moldudp64:udp://...|recording:DIR",
          value_parser = source_arg, env = "SHARDCAST_PUB_SOURCE")]
    pub source: SourceSpec,

    /// How an ITCH source is played: `1` keeps the file's own timing (its
    /// timestamps, ns since midnight), N (a positive number) plays it N
    /// times faster, `max` as fast as the subscribers take it.
    ///
    /// The schedule is anchored at the start: message i is due at
    /// t0 + (ts_i - ts_0) / N, so it never drifts, and every record carries
    /// that due time as its intended send time (late sends show as
    /// behind_schedule_ns and downstream latency). `max` has no schedule
    /// and implies --when-full block (nothing is lost; the replay runs at
    /// the slowest subscriber's pace) unless --when-full is given. At `max`
    /// every queue on the way fills (the subscriber's too), so records are
    /// as old as those queues are long: give subscribers a --max-lag-ms
    /// that covers them (e.g. 60000), or their snail croaks.
    /// Only with --source itch:.
    #[arg(long, default_value = "1", value_name = "1|N|max", value_parser = speed_arg,
          env = "SHARDCAST_PUB_SPEED")]
    pub speed: Speed,

    /// The MoldUDP64 re-request server of a --source moldudp64: feed
    /// (HOST:PORT): a gap is asked for there in request packets and filled
    /// from its answers before later messages go on. Without it a gap
    /// waits one --rerequest-timeout-ms for late packets, then is counted
    /// unrecovered (report: source.unrecovered) and skipped.
    #[arg(long, value_name = "HOST:PORT", env = "SHARDCAST_PUB_REREQUEST")]
    pub rerequest: Option<String>,

    /// How long a re-request waits for its answer before it is sent again, ms.
    #[arg(long, default_value_t = 200, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=60_000),
          env = "SHARDCAST_PUB_REREQUEST_TIMEOUT_MS")]
    pub rerequest_timeout_ms: u64,

    /// Re-requests sent for one missing range before it is given up
    /// (counted unrecovered, logged); after a range the server answered
    /// nothing for, one per range until it answers again.
    #[arg(long, default_value_t = 5, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1000),
          env = "SHARDCAST_PUB_REREQUEST_TRIES")]
    pub rerequest_tries: u32,

    /// Most messages one re-request asks for (a server answers with one
    /// packet's worth; the rest is asked for next).
    #[arg(long, default_value_t = 256, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=65_534),
          env = "SHARDCAST_PUB_REREQUEST_MAX")]
    pub rerequest_max: u16,

    /// Instruments in the synthetic feed (a count, 1 to 456976); with
    /// --source recording:DIR, the symbols to replay (a comma-separated
    /// list, e.g. AAPL,MSFT: the rest is left out and counted).
    #[arg(long, default_value = "100", value_name = "N|LIST", value_parser = symbols_arg,
          env = "SHARDCAST_PUB_SYMBOLS")]
    pub symbols: SymbolsArg,

    /// --source recording: start at this recorded sequence number (of the
    /// last session recorded, on every stream).
    #[arg(long, value_name = "SEQ", value_parser = clap::value_parser!(u64).range(1..),
          env = "SHARDCAST_PUB_FROM_SEQ")]
    pub from_seq: Option<u64>,

    /// --source recording: stop after this recorded sequence number
    /// (inclusive; of the last session recorded, on every stream).
    #[arg(long, value_name = "SEQ", value_parser = clap::value_parser!(u64).range(1..),
          env = "SHARDCAST_PUB_TO_SEQ")]
    pub to_seq: Option<u64>,

    /// --source recording: start at the first frame the recorder received
    /// at or after this time: ns since the epoch, or RFC 3339
    /// (2026-11-28T14:30:00Z).
    #[arg(long, value_name = "TIME", value_parser = crate::replay::time_arg,
          env = "SHARDCAST_PUB_FROM_TIME")]
    pub from_time: Option<u64>,

    /// Feed seed: the same seed gives the same messages.
    #[arg(long, default_value_t = 1, env = "SHARDCAST_PUB_SEED")]
    pub seed: u64,

    /// Message size in bytes (padded); at least 80, the largest record.
    #[arg(long, default_value_t = 100, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(80..=65_535), env = "SHARDCAST_PUB_SIZE")]
    pub size: u32,

    /// Messages per second across all streams; 0 sends flat out.
    #[arg(
        long,
        default_value_t = 100_000,
        value_name = "MSG_PER_S",
        allow_negative_numbers = true,
        env = "SHARDCAST_PUB_RATE"
    )]
    pub rate: u64,

    /// Messages fall due in bursts of this many (the average rate holds).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..),
          env = "SHARDCAST_PUB_BURST")]
    pub burst: u64,

    /// Pack up to N messages of a stream per ZeroMQ frame, flushing as soon
    /// as the next message is not yet due (batching never adds waiting).
    ///
    /// `auto` (the default) packs only what is already due, up to 64
    /// records (fewer when --size is large: a frame stays within 4 MiB): a
    /// stream that keeps its schedule sends every record alone, as with 1; a
    /// stream that is behind (or flat out) packs what is queued. A lone
    /// record always goes as a bare record frame, and while any connection
    /// holds a symbol prefix subscription (a SUB filtering at the
    /// publisher) every record goes alone, so its filtering still works. On
    /// pgm/epgm streams, where subscriptions are not seen, `auto` is 1.
    /// 1 = one message per frame, with symbol prefix filtering at the XPUB;
    /// N > 1 = every data frame is a batch, with no filtering at the XPUB.
    #[arg(long, default_value = "auto", value_name = "auto|N", value_parser = batch_arg,
          env = "SHARDCAST_PUB_BATCH")]
    pub batch: Batch,

    /// What a stream does when a subscriber's queue is full: `drop` (it
    /// skips that subscriber, who sees a gap; a slow subscriber never holds
    /// up the others: the mode for live feeds) or `block` (ZMQ_XPUB_NODROP:
    /// it waits until every subscriber has room, so nothing is lost and the
    /// stream runs at the slowest subscriber's pace).
    ///
    /// In block mode a paced stream falls behind its schedule rather than
    /// dropping: the intended send time keeps the schedule, so a subscriber
    /// that holds it up more than --max-lag-ms still croaks as a snail.
    /// Any connected subscriber holds the stream back, counted or not (a
    /// peer that never reads stalls it: use CURVE with --curve-allow on
    /// networks you do not trust). Heartbeats and end-of-stream are never
    /// waited for; end-of-stream repeats until delivered (--eos-timeout-ms).
    #[arg(long, value_enum, default_value_t = WhenFull::Drop, env = "SHARDCAST_PUB_WHEN_FULL")]
    pub when_full: WhenFull,

    /// Send this many messages (across streams), then end-of-stream.
    #[arg(long, env = "SHARDCAST_PUB_COUNT")]
    pub count: Option<u64>,

    /// Send for this many seconds, then end-of-stream (at most a year).
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds, allow_negative_numbers = true,
          env = "SHARDCAST_PUB_DURATION")]
    pub duration: Option<f64>,

    /// Send high-water mark, messages (ZMQ_SNDHWM); past it the socket drops
    /// for that subscriber, which sees a gap. 0 means no limit (unbounded
    /// memory).
    #[arg(long, default_value_t = 100_000, value_name = "MSGS",
          value_parser = clap::value_parser!(i32).range(0..), env = "SHARDCAST_PUB_SNDHWM")]
    pub sndhwm: i32,

    /// Kernel send buffer, bytes (ZMQ_SNDBUF); 0 keeps the OS default.
    #[arg(long, default_value_t = 0, value_name = "BYTES",
          value_parser = clap::value_parser!(i32).range(0..), env = "SHARDCAST_PUB_SNDBUF")]
    pub sndbuf: i32,

    /// Before the first message, wait until N subscribers are subscribed on
    /// every stream (counted from XPUB subscription events).
    #[arg(
        long,
        default_value_t = 0,
        value_name = "N",
        env = "SHARDCAST_PUB_WAIT_SUBSCRIBERS"
    )]
    pub wait_subscribers: u32,

    /// Give up waiting for subscribers after this many seconds (at most a
    /// year): exit 1, with a report whose end_reason is "wait-timeout".
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds, allow_negative_numbers = true,
          env = "SHARDCAST_PUB_WAIT_TIMEOUT")]
    pub wait_timeout: Option<f64>,

    /// Subscribers expected by name (their `shardcast-sub --id`; presence,
    /// PROTOCOL.md section 3), comma-separated or repeated. Each stream
    /// warns on stderr when one of them is not connected once it starts
    /// sending, and again whenever one leaves; the report lists those
    /// missing at the end (`missing_subscribers`). It does not hold the
    /// start back: --wait-subscribers does. Named subscribers are logged
    /// and reported (`subscribers`, `subscriber_events`) without it too.
    /// Not for pgm:// or epgm:// streams, which see no subscriptions.
    #[arg(long, value_name = "ID,...", value_parser = shardcast_agent::presence::id_arg,
          value_delimiter = ',', env = "SHARDCAST_PUB_EXPECT_SUBSCRIBERS")]
    pub expect_subscribers: Vec<String>,

    /// Heartbeat a stream that sent nothing for this long (at most a year).
    #[arg(long, default_value_t = 100, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_MS), env = "SHARDCAST_PUB_HEARTBEAT_MS")]
    pub heartbeat_ms: u64,

    /// End phase limit: how long end-of-stream repeats until every counted
    /// subscriber has left.
    ///
    /// End-of-stream is sent at least once and repeated every --heartbeat-ms
    /// until every counted subscriber (a peer subscribed to the 0x00 control
    /// topic, as shardcast-sub is) has left (unsubscribed or disconnected),
    /// for at most this long (epgm: always this long, nothing is
    /// acknowledged); the socket then closes with a linger of this long,
    /// capped at 1000 ms, for frames still queued. At most a year.
    #[arg(
        long,
        default_value_t = 5000,
        value_name = "MS",
        value_parser = clap::value_parser!(u64).range(0..=MAX_MS),
        env = "SHARDCAST_PUB_EOS_TIMEOUT_MS"
    )]
    pub eos_timeout_ms: u64,

    /// How stream threads wait for the next message to fall due.
    #[arg(long, value_enum, default_value_t = Pace::Sleep, env = "SHARDCAST_PUB_PACE")]
    pub pace: Pace,

    /// CPUs for the stream threads, in stream order.
    #[arg(long, value_name = "LIST", value_parser = cpu_list_arg, env = "SHARDCAST_PUB_CPUS")]
    pub cpus: Option<CpuList>,

    /// CPUs for the ZeroMQ I/O threads, one per stream.
    #[arg(long, value_name = "LIST", value_parser = cpu_list_arg, env = "SHARDCAST_PUB_IO_CPUS")]
    pub io_cpus: Option<CpuList>,

    /// Write the JSON report here.
    #[arg(long, value_name = "FILE", env = "SHARDCAST_PUB_REPORT_JSON")]
    pub report_json: Option<std::path::PathBuf>,

    /// CURVE: this publisher's secret key file (from shardcast-keygen).
    /// Every stream is then encrypted, and only subscribers whose public key
    /// is in --curve-allow can connect. Needs the system libzmq build.
    #[arg(
        long,
        value_name = "FILE",
        requires = "curve_allow",
        help_heading = "Security",
        env = "SHARDCAST_PUB_CURVE_SECRET_KEY"
    )]
    pub curve_secret_key: Option<std::path::PathBuf>,

    /// CURVE: files of subscriber public keys allowed to connect (lines of
    /// `KEY [NAME]`, or shardcast-keygen's NAME.pub files); repeatable.
    /// Others are refused and logged with their address.
    #[arg(
        long,
        value_name = "FILE",
        requires = "curve_secret_key",
        help_heading = "Security",
        env = "SHARDCAST_PUB_CURVE_ALLOW",
        value_delimiter = ','
    )]
    pub curve_allow: Vec<std::path::PathBuf>,

    /// Multicast (pgm://, epgm:// streams): send rate limit in kbit/s
    /// (ZMQ_RATE). PGM sends no faster than this, and it bounds what
    /// receivers can repair; libzmq's default (100 kbit/s) is far below a
    /// market-data feed.
    #[arg(long, default_value_t = 1_000_000, value_name = "KBIT_S", help_heading = "Multicast",
          value_parser = clap::value_parser!(i32).range(1..), env = "SHARDCAST_PUB_PGM_RATE")]
    pub pgm_rate: i32,

    /// Multicast: how long sent data is kept for repair on a receiver's NAK
    /// (ZMQ_RECOVERY_IVL); a receiver losing data older than this sees a gap.
    #[arg(long, default_value_t = 10_000, value_name = "MS", help_heading = "Multicast",
          value_parser = clap::value_parser!(i32).range(1..), env = "SHARDCAST_PUB_PGM_RECOVERY_MS")]
    pub pgm_recovery_ms: i32,

    /// Multicast: IP TTL of multicast packets (ZMQ_MULTICAST_HOPS); 1 keeps
    /// them on the local network.
    #[arg(long, default_value_t = 1, value_name = "HOPS", help_heading = "Multicast",
          value_parser = clap::value_parser!(i32).range(1..=255), env = "SHARDCAST_PUB_MULTICAST_HOPS")]
    pub multicast_hops: i32,

    /// Most subscription messages one connection may send (subscribes and
    /// unsubscribes together, never given back; also at most 64 KiB of
    /// prefixes); past it, every connection from that peer's address is cut
    /// off (a subscription flood costs the publisher memory and time on the
    /// stream's thread).
    #[arg(long, default_value_t = 10_000, value_name = "N", help_heading = "Defence",
          value_parser = clap::value_parser!(u32).range(1..), env = "SHARDCAST_PUB_MAX_SUBSCRIPTIONS")]
    pub max_subscriptions: u32,

    /// Most connections from one source address at a time; more are cut
    /// off as they arrive (half-open handshakes cannot use up descriptors).
    #[arg(long, default_value_t = 256, value_name = "N", help_heading = "Defence",
          value_parser = clap::value_parser!(u32).range(1..), env = "SHARDCAST_PUB_MAX_PEERS_PER_HOST")]
    pub max_peers_per_host: u32,

    /// A connection that has not finished the ZMTP handshake (and the CURVE
    /// one) within this long is closed (ZMQ_HANDSHAKE_IVL; libzmq's default
    /// is 30000).
    #[arg(long, default_value_t = 5000, value_name = "MS", help_heading = "Defence",
          value_parser = clap::value_parser!(u64).range(1..=3_600_000), env = "SHARDCAST_PUB_HANDSHAKE_TIMEOUT_MS")]
    pub handshake_timeout_ms: u64,

    /// Serve retransmissions on this endpoint (a ROUTER, one for all
    /// streams): "stream S, session E, sequences A..B" from an in-memory
    /// ring of the last --retransmit-depth records each stream sent, in
    /// the range protocol of shardcast-record --serve (docs/RECORDING.md
    /// section 6; session 0 is the current one). A range older than the
    /// ring is answered NOT_AVAILABLE with the first sequence still held.
    #[arg(long, value_name = "ENDPOINT", value_parser = endpoint_arg, help_heading = "Retransmission",
          env = "SHARDCAST_PUB_RETRANSMIT_BIND")]
    pub retransmit_bind: Option<String>,

    /// Records each stream keeps for retransmission (its ring; bounded in
    /// bytes too: N x the record size, stated at start and in
    /// --print-config). Default: one second of the feed, the lag budget the
    /// HWM defaults follow: --rate records (all streams together: one
    /// stream may carry all of it), or 100000 (the Guide's feed) when there
    /// is no rate (flat out, an ITCH source, a replay).
    #[arg(long, value_name = "N", help_heading = "Retransmission",
          value_parser = clap::value_parser!(u64).range(1..=100_000_000),
          env = "SHARDCAST_PUB_RETRANSMIT_DEPTH")]
    pub retransmit_depth: Option<u64>,

    /// How long the retransmission service stays up after every stream has
    /// ended (its end phase done), for late repairs, ms. A signal ends it.
    #[arg(long, default_value_t = 1000, value_name = "MS", help_heading = "Retransmission",
          value_parser = clap::value_parser!(u64).range(0..=MAX_MS),
          env = "SHARDCAST_PUB_RETRANSMIT_LINGER_MS")]
    pub retransmit_linger_ms: u64,

    /// Requests per second one requester (a connection) may make; more are
    /// answered REFUSED and counted (a flooding peer must not hurt the
    /// others). A second's worth may come at once.
    #[arg(long, default_value_t = 500, value_name = "N", help_heading = "Retransmission",
          value_parser = clap::value_parser!(u64).range(1..=10_000_000),
          env = "SHARDCAST_PUB_RETRANSMIT_PEER_REQUESTS_PER_SEC")]
    pub retransmit_peer_requests_per_sec: u64,

    /// Bytes of frames per second one requester may be sent; past it its
    /// requests in progress wait and new ones are answered REFUSED.
    #[arg(long, default_value_t = 64 << 20, value_name = "BYTES", help_heading = "Retransmission",
          value_parser = clap::value_parser!(u64).range(1024..),
          env = "SHARDCAST_PUB_RETRANSMIT_PEER_BYTES_PER_SEC")]
    pub retransmit_peer_bytes_per_sec: u64,

    /// Requesters whose budgets are tracked at once; a new one beyond
    /// this replaces the one seen least recently.
    #[arg(long, default_value_t = 1024, value_name = "N", help_heading = "Retransmission",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000),
          env = "SHARDCAST_PUB_RETRANSMIT_MAX_PEERS")]
    pub retransmit_max_peers: u32,

    /// Serve Prometheus metrics (OpenMetrics text) at
    /// http://ADDR:PORT/metrics while the run lasts, from a thread of its
    /// own that reads only the counts the stream threads publish once per
    /// housekeeping round (README, "Monitoring"). Port 0: the OS picks one;
    /// the address is printed on stderr.
    #[arg(long, value_name = "ADDR:PORT", env = "SHARDCAST_PUB_METRICS_BIND")]
    pub metrics_bind: Option<std::net::SocketAddr>,

    /// Keep the metrics endpoint up this long after the run, with the
    /// report's final totals, so a last scrape sees them.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "MS",
        env = "SHARDCAST_PUB_METRICS_LINGER_MS"
    )]
    pub metrics_linger_ms: u64,

    /// Print the effective configuration as JSON and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Fault injection: add this to every timestamp sent, as if this
    /// host's clock were off by it (negative: behind), at most a day either
    /// way. Pacing is unchanged.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "MS",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(i64).range(-(DAY_MS as i64)..=DAY_MS as i64),
        help_heading = "Fault injection",
        env = "SHARDCAST_PUB_CLOCK_OFFSET_MS"
    )]
    pub clock_offset_ms: i64,

    /// Ids of the flags given on the command line or in the environment
    /// (not defaulted), filled by [`Flags::parse_explicit`]: a flag that
    /// does not apply to the chosen --source is an error only when given.
    #[arg(skip)]
    pub explicit: Vec<String>,
}

impl Flags {
    /// Parse the process's arguments (clap exits 2 on a bad flag, naming
    /// it) and note which flags were given.
    pub fn parse_explicit() -> Flags {
        Self::try_parse_explicit_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// [`Self::parse_explicit`] from `args` (the first is the program name).
    pub fn try_parse_explicit_from<I, T>(args: I) -> Result<Flags, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut cmd = Flags::command();
        let m = cmd.try_get_matches_from_mut(args)?;
        let mut f = Flags::from_arg_matches(&m).map_err(|e| e.format(&mut cmd))?;
        f.explicit = m
            .ids()
            .filter(|id| {
                matches!(
                    m.value_source(id.as_str()),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
            })
            .map(|id| id.as_str().to_string())
            .collect();
        Ok(f)
    }

    /// Whether the flag with this id (`"rate"`) was given.
    pub fn given(&self, id: &str) -> bool {
        self.explicit.iter().any(|e| e == id)
    }
}

/// `--symbols`: a count (the synthetic feed) or a list (a replay's filter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SymbolsArg {
    /// A number: instruments in the synthetic feed.
    Count(u32),
    /// Comma-separated symbols (1 to 8 graphic ASCII characters each).
    List(Vec<String>),
}

/// Parse `--symbols`: a number from 1 to 456976, or a comma-separated list
/// of symbols.
pub fn symbols_arg(s: &str) -> Result<SymbolsArg, String> {
    if let Ok(n) = s.parse::<u32>() {
        return if (1..=456_976).contains(&n) {
            Ok(SymbolsArg::Count(n))
        } else {
            Err(format!(
                "{n}: a count from 1 to 456976, or a list of symbols"
            ))
        };
    }
    let list: Vec<String> = s.split(',').map(|x| x.trim().to_string()).collect();
    match list
        .iter()
        .find(|x| shardcast_proto::wire::Symbol::new(x).is_none())
    {
        Some(bad) => Err(format!(
            "'{bad}' is not a symbol (1 to 8 graphic ASCII characters); give a count or a comma-separated list"
        )),
        None => Ok(SymbolsArg::List(list)),
    }
}
