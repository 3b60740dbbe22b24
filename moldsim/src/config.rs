//! Flags resolved into a checked configuration.

use crate::cli::Flags;
use serde::Serialize;
use shardcast_agent::exit::UsageError;
use shardcast_proto::mold::{Session, UdpEndpoint};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The resolved configuration (what `--print-config` shows).
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// The ITCH file.
    pub file: PathBuf,
    /// Read through gzip (`.gz`).
    pub gzip: bool,
    /// Where the feed goes, if anywhere.
    #[serde(serialize_with = "opt_display")]
    pub to: Option<UdpEndpoint>,
    /// Where the re-request server listens, if it runs.
    pub serve: Option<SocketAddr>,
    /// Session name.
    #[serde(serialize_with = "display")]
    pub session: Session,
    /// Messages per second (0: flat out).
    pub rate: u64,
    /// Largest packet, bytes.
    pub max_packet: usize,
    /// Most messages per packet.
    pub max_messages: u16,
    /// Drop every Nth data packet (0: none).
    pub drop_every: u64,
    /// Messages dropped by sequence number: sorted, merged, inclusive.
    pub drop_seq: Vec<[u64; 2]>,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// End-of-session packets.
    pub eos_count: u32,
    /// Between end-of-session packets.
    pub eos_interval: Duration,
    /// Serving after the feed ended (with --to).
    pub linger: Duration,
    /// Serving limit (--serve alone).
    pub duration: Option<Duration>,
    /// Multicast TTL.
    pub multicast_hops: u32,
    /// Report path.
    pub report_json: Option<PathBuf>,
}

fn display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn opt_display<S: serde::Serializer, T: std::fmt::Display>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// Parse `--drop-seq`: `A-B,C,...`, sequence numbers from 1, each range
/// `A <= B`; returned sorted with overlapping and touching ranges merged.
pub fn drop_ranges(s: &str) -> Result<Vec<[u64; 2]>, String> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let num = |x: &str| {
            x.trim()
                .parse::<u64>()
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| format!("'{x}' in '{part}' is not a sequence number (1 or more)"))
        };
        let (a, b) = (num(a)?, num(b)?);
        if a > b {
            return Err(format!("'{part}': the range ends before it starts"));
        }
        v.push([a, b]);
    }
    if v.is_empty() {
        return Err("no range given (A-B,C,...)".into());
    }
    v.sort_unstable();
    let mut merged: Vec<[u64; 2]> = Vec::with_capacity(v.len());
    for r in v {
        match merged.last_mut() {
            Some(last) if r[0] <= last[1].saturating_add(1) => last[1] = last[1].max(r[1]),
            _ => merged.push(r),
        }
    }
    Ok(merged)
}

impl Config {
    /// Check the flags together, or name the flag at fault.
    pub fn resolve(f: &Flags) -> Result<Config, UsageError> {
        if f.file.as_os_str().is_empty() {
            return Err(UsageError::new("--file", "an empty path"));
        }
        let to =
            f.to.as_deref()
                .map(UdpEndpoint::parse)
                .transpose()
                .map_err(|e| UsageError::new("--to", e))?;
        let serve = f
            .serve
            .as_deref()
            .map(|s| {
                s.parse::<SocketAddr>()
                    .map_err(|_| UsageError::new("--serve", format!("'{s}' is not ADDR:PORT")))
            })
            .transpose()?;
        if to.is_none() && serve.is_none() {
            return Err(UsageError::new(
                "--to",
                "nothing to do: give --to (send the feed), --serve (answer re-requests), or both",
            ));
        }
        let session = Session::from_name(&f.session).ok_or_else(|| {
            UsageError::new(
                "--session",
                format!(
                    "'{}': 1 to 10 printable ASCII characters, no spaces",
                    f.session
                ),
            )
        })?;
        let drop_seq = match &f.drop_seq {
            None => Vec::new(),
            Some(s) => drop_ranges(s).map_err(|e| UsageError::new("--drop-seq", e))?,
        };
        Ok(Config {
            gzip: f.file.extension().is_some_and(|e| e == "gz"),
            file: f.file.clone(),
            to,
            serve,
            session,
            rate: f.rate,
            max_packet: f.max_packet as usize,
            max_messages: f.max_messages,
            drop_every: f.drop_every,
            drop_seq,
            heartbeat: Duration::from_millis(f.heartbeat_ms),
            eos_count: f.eos_count,
            eos_interval: Duration::from_millis(f.eos_interval_ms),
            linger: Duration::from_secs_f64(f.linger_secs),
            duration: f.duration.map(Duration::from_secs_f64),
            multicast_hops: f.multicast_hops,
            report_json: f.report_json.clone(),
        })
    }

    /// Output files with their flags (cleared before a run).
    pub fn outputs(&self) -> Vec<(&'static str, &Path)> {
        self.report_json
            .as_deref()
            .map(|p| ("--report-json", p))
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn resolve(args: &[&str]) -> Result<Config, UsageError> {
        let mut v = vec!["shardcast-moldsim", "--file", "day.itch"];
        v.extend_from_slice(args);
        Config::resolve(&Flags::try_parse_from(v).unwrap())
    }

    #[test]
    fn drop_ranges_are_sorted_merged_and_checked() {
        assert_eq!(
            drop_ranges("10-12, 3,4-5,11-20,30").unwrap(),
            vec![[3, 5], [10, 20], [30, 30]]
        );
        for bad in ["", "0-3", "5-4", "a-3", "3-", "-3"] {
            assert!(drop_ranges(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (args, flag) in [
            (
                vec!["--serve", "127.0.0.1:0", "--session", "ELEVENCHARS"],
                "--session",
            ),
            (vec!["--to", "127.0.0.1:5"], "--to"),
            (vec!["--serve", "localhost"], "--serve"),
            (
                vec!["--to", "udp://127.0.0.1:5", "--drop-seq", "9-1"],
                "--drop-seq",
            ),
            (vec![], "--to"),
        ] {
            let e = resolve(&args).unwrap_err();
            assert_eq!(e.flag, flag, "{args:?}: {e}");
        }
        let c = resolve(&["--to", "udp://127.0.0.1:5", "--serve", "127.0.0.1:0"]).unwrap();
        assert_eq!(c.session.to_string(), "MOLDSIM001");
        assert!(!c.gzip);
        let err = Flags::try_parse_from(["shardcast-moldsim", "--file", "x", "--max-packet", "10"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--max-packet"), "{err}");
    }
}
