//! Command-line flags of `shardcast-stat`. Every flag but `--print-config`
//! has an environment twin `SHARDCAST_STAT_<FLAG>` (the endpoints:
//! `SHARDCAST_STAT_ENDPOINTS`, comma-separated). Flag names are a
//! contract: add, never rename.

use clap::Parser;
use std::path::PathBuf;

/// shardcast-stat: a live view of running shardcast processes, read from
/// their Prometheus metrics endpoints (shardcast-sub --metrics-bind). Per
/// process and per stream: message rate, lost, recovered, duplicates,
/// malformed, queue depths, latency p50/p99/max, snail state; any other
/// family the endpoint serves is listed as it is. One HTTP GET per
/// endpoint per interval: it never slows the process it watches.
///
/// Rates are counter deltas between two scrapes, so every mode scrapes
/// once, waits --interval-ms, and shows the second scrape against the
/// first. Percentiles are estimates from the histogram buckets
/// (interpolated linearly inside a bucket, as Prometheus's
/// histogram_quantile does), over the observations made between the two
/// scrapes when there are any, else over everything the histogram holds;
/// max is the top of the highest bucket in use ("<=") unless the endpoint
/// exports a max. An endpoint that does not answer is shown as down.
///
/// Exit codes: 0; 1 when no endpoint answered the last scrape (each is
/// named); 2 for a bad flag.
#[derive(Debug, Parser)]
#[command(name = "shardcast-stat", version, about, long_about)]
pub struct Flags {
    /// Metrics endpoints: HOST:PORT or http://HOST:PORT[/PATH] (the path
    /// defaults to /metrics); one or more, one process each.
    #[arg(value_name = "ENDPOINT", required = true, num_args = 1..,
          value_delimiter = ',', env = "SHARDCAST_STAT_ENDPOINTS")]
    pub endpoints: Vec<String>,

    /// Time between scrapes, ms: the refresh of the view and the window
    /// rates are measured over.
    #[arg(long, default_value_t = 1000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(10..=3_600_000),
          env = "SHARDCAST_STAT_INTERVAL_MS")]
    pub interval_ms: u64,

    /// Give up on a scrape after this long, ms (connecting, sending and
    /// reading together); the endpoint is then shown as down.
    #[arg(long, default_value_t = 1000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=60_000),
          env = "SHARDCAST_STAT_TIMEOUT_MS")]
    pub timeout_ms: u64,

    /// Print one plain-text snapshot and exit: two scrapes --interval-ms
    /// apart (the rates need both), then the view of the second.
    #[arg(long, conflicts_with = "count", env = "SHARDCAST_STAT_ONCE")]
    pub once: bool,

    /// CSV for logs: a header line, then one line per stream per refresh
    /// (process-wide values on the `all` line, or on the only stream's).
    #[arg(long, env = "SHARDCAST_STAT_CSV")]
    pub csv: bool,

    /// Stop after N refreshes (default: until SIGINT/SIGTERM).
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..),
          env = "SHARDCAST_STAT_COUNT")]
    pub count: Option<u64>,

    /// The latency stage the stream lines (CSV, --report-json streams[])
    /// show, when the histogram has a `stage` label; the terminal view
    /// shows every stage.
    #[arg(
        long,
        default_value = "end_to_end",
        value_name = "STAGE",
        env = "SHARDCAST_STAT_STAGE"
    )]
    pub stage: String,

    /// Write the last snapshot as JSON here at the end.
    #[arg(long, value_name = "FILE", env = "SHARDCAST_STAT_REPORT_JSON")]
    pub report_json: Option<PathBuf>,

    /// Print the effective configuration as JSON and exit.
    #[arg(long)]
    pub print_config: bool,
}
