//! Flags resolved into a checked configuration.

use crate::cli::Flags;
use crate::day::min_messages;
use serde::Serialize;
use shardcast_agent::exit::UsageError;
use std::path::{Path, PathBuf};

/// Nanoseconds in a day: ITCH timestamps count from midnight.
pub const DAY_NS: u64 = 86_400_000_000_000;

/// The resolved configuration (what `--print-config` shows).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The day file.
    pub out: PathBuf,
    /// Whether it is written gzipped (`out` ends in `.gz`).
    pub gzip: bool,
    /// Complete messages, the unknown one included.
    pub messages: u64,
    /// Symbols.
    pub symbols: u32,
    /// Seed.
    pub seed: u64,
    /// First timestamp, ns since midnight.
    pub start_ns: u64,
    /// Last timestamp minus the first, ns.
    pub span_ns: u64,
    /// Include one message of an unknown type.
    pub unknown_type: bool,
    /// End with a truncated message.
    pub truncate_tail: bool,
    /// Report path.
    pub report_json: Option<PathBuf>,
}

impl Default for Config {
    /// The flags' defaults, writing `day.itch50`: for tests and benches
    /// that build a day in memory.
    fn default() -> Config {
        Config {
            out: PathBuf::from("day.itch50"),
            gzip: false,
            messages: 1_000_000,
            symbols: 100,
            seed: 1,
            start_ns: 34_200 * 1_000_000_000,
            span_ns: 60 * 1_000_000_000,
            unknown_type: false,
            truncate_tail: false,
            report_json: None,
        }
    }
}

/// Whether `path` names a gzip file (by its `.gz` extension).
pub fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

impl Config {
    /// Check the flags together: the day must fit before midnight and the
    /// message count must hold the directory and the scheduled events.
    pub fn resolve(f: &Flags) -> Result<Config, UsageError> {
        let start_ns = u64::from(f.start_secs) * 1_000_000_000;
        // positive_seconds bounds it to a year: no overflow.
        let span_ns = (f.span_secs * 1e9).round() as u64;
        if span_ns == 0 || start_ns + span_ns >= DAY_NS {
            return Err(UsageError::new(
                "--span-secs",
                format!(
                    "{} s from --start-secs {} goes past midnight; ITCH timestamps are ns since \
                     midnight: at most {} s",
                    f.span_secs,
                    f.start_secs,
                    (DAY_NS - start_ns - 1) / 1_000_000_000
                ),
            ));
        }
        let min = min_messages(f.symbols, f.unknown_type);
        if f.messages < min {
            return Err(UsageError::new(
                "--messages",
                format!(
                    "{} is too few for --symbols {}: the directory and the day's scheduled events \
                     take {min}; ask for at least that, or fewer symbols",
                    f.messages, f.symbols
                ),
            ));
        }
        if f.out.as_os_str().is_empty() {
            return Err(UsageError::new("--out", "an empty path"));
        }
        Ok(Config {
            gzip: is_gzip(&f.out),
            out: f.out.clone(),
            messages: f.messages,
            symbols: f.symbols,
            seed: f.seed,
            start_ns,
            span_ns,
            unknown_type: f.unknown_type,
            truncate_tail: f.truncate_tail,
            report_json: f.report_json.clone(),
        })
    }

    /// Output files with their flags (cleared before a run).
    pub fn outputs(&self) -> Vec<(&'static str, &Path)> {
        let mut v = vec![("--out", self.out.as_path())];
        if let Some(p) = &self.report_json {
            v.push(("--report-json", p.as_path()));
        }
        v
    }
}
