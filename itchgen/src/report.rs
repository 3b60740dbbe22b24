//! The generator's report (`--report-json`). Keys are a contract: add,
//! never rename or drop.

use crate::config::Config;
use crate::day::GenStats;
use serde::Serialize;
use std::collections::BTreeMap;

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The day file.
    pub out: String,
    /// Whether it is gzipped.
    pub gzip: bool,
    /// Whether the whole day was written (false: stopped by a signal).
    pub complete: bool,
    /// Complete messages written, the unknown one included.
    pub messages: u64,
    /// Complete messages by type letter (types with none are left out).
    pub by_type: BTreeMap<String, u64>,
    /// Symbols in the directory.
    pub symbols: u32,
    /// First timestamp, ns since midnight (`null`: nothing written).
    pub first_ts: Option<u64>,
    /// Last complete message's timestamp.
    pub last_ts: Option<u64>,
    /// Messages of a type ITCH 5.0 does not define.
    pub unknown: u64,
    /// Truncated messages at the end (not in `messages`).
    pub truncated: u64,
    /// Bytes of ITCH (before gzip): prefixes, messages and the tail.
    pub bytes: u64,
    /// Orders resting at the end of the day.
    pub live_orders: u64,
    /// Seed.
    pub seed: u64,
}

impl Report {
    /// The report of a run of `cfg` that wrote `stats`.
    pub fn new(cfg: &Config, stats: &GenStats, live_orders: u64, complete: bool) -> Report {
        let by_type = stats
            .by_type
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(t, &n)| (char::from(t as u8).to_string(), n))
            .collect();
        Report {
            out: cfg.out.display().to_string(),
            gzip: cfg.gzip,
            complete,
            messages: stats.messages,
            by_type,
            symbols: cfg.symbols,
            first_ts: stats.first_ts,
            last_ts: stats.last_ts,
            unknown: stats.unknown,
            truncated: stats.truncated,
            bytes: stats.bytes,
            live_orders,
            seed: cfg.seed,
        }
    }

    /// One line for stdout.
    pub fn summary(&self) -> String {
        format!(
            "shardcast-itchgen: {} {} messages ({:.1} MB of ITCH{}) for {} symbols to {}; \
             unknown {}, truncated {}, timestamps {} to {} ns",
            if self.complete {
                "wrote"
            } else {
                "stopped after"
            },
            self.messages,
            self.bytes as f64 / 1e6,
            if self.gzip { ", gzipped" } else { "" },
            self.symbols,
            self.out,
            self.unknown,
            self.truncated,
            self.first_ts.unwrap_or(0),
            self.last_ts.unwrap_or(0),
        )
    }
}
