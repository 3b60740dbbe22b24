//! Command-line flags of `shardcast-itchgen`. Every flag has an environment
//! twin `SHARDCAST_ITCHGEN_<FLAG>`. Flag names are a contract: add, never
//! rename.

use clap::Parser;
use shardcast_agent::exit::positive_seconds;
use std::path::PathBuf;

/// shardcast-itchgen: writes a deterministic NASDAQ TotalView-ITCH 5.0 day
/// (length-prefixed messages, as NASDAQ's day files are) for tests and
/// benchmarks: a symbol directory, system events, order flow with a
/// realistic mix, bursts at the open and close, every message type.
#[derive(Debug, Parser)]
#[command(name = "shardcast-itchgen", version, about, long_about = None)]
pub struct Flags {
    /// The day file to write; a name ending in `.gz` is written gzipped.
    #[arg(long, value_name = "PATH", env = "SHARDCAST_ITCHGEN_OUT")]
    pub out: PathBuf,

    /// Complete messages in the day (the unknown one included), at least
    /// what the symbol directory and the scheduled events take.
    #[arg(long, default_value_t = 1_000_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100_000_000_000),
          env = "SHARDCAST_ITCHGEN_MESSAGES")]
    pub messages: u64,

    /// Symbols in the directory (stock locate codes 1..=N).
    #[arg(long, default_value_t = 100, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=65_535),
          env = "SHARDCAST_ITCHGEN_SYMBOLS")]
    pub symbols: u32,

    /// Seed: the same seed and flags give the same bytes.
    #[arg(long, default_value_t = 1, env = "SHARDCAST_ITCHGEN_SEED")]
    pub seed: u64,

    /// Seconds from the first message's timestamp to the last's (at most
    /// what is left of the day after --start-secs).
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS", value_parser = positive_seconds,
          allow_negative_numbers = true, env = "SHARDCAST_ITCHGEN_SPAN_SECS")]
    pub span_secs: f64,

    /// Timestamp of the first message, seconds after midnight (default
    /// 09:30:00).
    #[arg(long, default_value_t = 34_200, value_name = "SECONDS",
          value_parser = clap::value_parser!(u32).range(0..86_400),
          env = "SHARDCAST_ITCHGEN_START_SECS")]
    pub start_secs: u32,

    /// Include one message of a type ITCH 5.0 does not define (`z`,
    /// 20 bytes) halfway through the day.
    #[arg(long, env = "SHARDCAST_ITCHGEN_UNKNOWN_TYPE")]
    pub unknown_type: bool,

    /// End the file with a truncated message (a length prefix announcing
    /// 36 bytes, then 20).
    #[arg(long, env = "SHARDCAST_ITCHGEN_TRUNCATE_TAIL")]
    pub truncate_tail: bool,

    /// Write the JSON report here: messages, by_type, symbols, first_ts,
    /// last_ts, unknown, truncated.
    #[arg(long, value_name = "FILE", env = "SHARDCAST_ITCHGEN_REPORT_JSON")]
    pub report_json: Option<PathBuf>,

    /// Print the effective configuration as JSON and exit.
    #[arg(long)]
    pub print_config: bool,
}
