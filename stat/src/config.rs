//! Flags resolved into a checked configuration.

use crate::cli::Flags;
use crate::http::Target;
use serde::Serialize;
use shardcast_agent::exit::UsageError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the view is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The terminal view, redrawn in place (ANSI clear and home).
    Live,
    /// Plain text, one snapshot after another, nothing redrawn (`--once`).
    Plain,
    /// CSV lines (`--csv`).
    Csv,
}

/// One endpoint to watch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// As given on the command line (how the view names it).
    pub name: String,
    /// The URL scraped.
    pub url: String,
    /// Parsed.
    #[serde(skip)]
    pub target: Target,
}

/// The resolved configuration (what `--print-config` shows).
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// The endpoints, in the order given.
    pub endpoints: Vec<Endpoint>,
    /// Between scrapes.
    #[serde(rename = "interval_ms", serialize_with = "millis")]
    pub interval: Duration,
    /// Per scrape.
    #[serde(rename = "timeout_ms", serialize_with = "millis")]
    pub timeout: Duration,
    /// How it prints.
    pub mode: Mode,
    /// Refreshes before it stops (`None`: until a signal).
    pub count: Option<u64>,
    /// The stage of the stream lines' latency.
    pub stage: String,
    /// Where the last snapshot goes.
    pub report_json: Option<PathBuf>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

impl Config {
    /// Check the flags, or name the one at fault.
    pub fn resolve(f: &Flags) -> Result<Config, UsageError> {
        let mut endpoints = Vec::new();
        for e in &f.endpoints {
            let e = e.trim();
            if e.is_empty() {
                continue;
            }
            let target = Target::parse(e).map_err(|m| UsageError::new("ENDPOINT", m))?;
            endpoints.push(Endpoint {
                name: e.to_string(),
                url: target.url(),
                target,
            });
        }
        if endpoints.is_empty() {
            return Err(UsageError::new(
                "ENDPOINT",
                "no endpoint given (HOST:PORT or http://HOST:PORT/metrics)",
            ));
        }
        if f.stage.trim().is_empty() {
            return Err(UsageError::new("--stage", "an empty stage name"));
        }
        if let Some(p) = &f.report_json {
            if p.as_os_str().is_empty() {
                return Err(UsageError::new("--report-json", "an empty path"));
            }
        }
        let mode = if f.csv {
            Mode::Csv
        } else if f.once {
            Mode::Plain
        } else {
            Mode::Live
        };
        Ok(Config {
            endpoints,
            interval: Duration::from_millis(f.interval_ms),
            timeout: Duration::from_millis(f.timeout_ms),
            mode,
            count: if f.once { Some(1) } else { f.count },
            stage: f.stage.trim().to_string(),
            report_json: f.report_json.clone(),
        })
    }

    /// The output files, for clearing a previous run's.
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

    fn flags(args: &[&str]) -> Flags {
        Flags::try_parse_from(std::iter::once("shardcast-stat").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn modes_and_counts() {
        let c = Config::resolve(&flags(&["127.0.0.1:9464"])).unwrap();
        assert_eq!((c.mode, c.count), (Mode::Live, None));
        assert_eq!(c.endpoints[0].url, "http://127.0.0.1:9464/metrics");
        let c = Config::resolve(&flags(&["--once", "a:1", "http://b:2/x"])).unwrap();
        assert_eq!((c.mode, c.count), (Mode::Plain, Some(1)));
        assert_eq!(c.endpoints.len(), 2);
        assert_eq!(c.endpoints[1].url, "http://b:2/x");
        let c = Config::resolve(&flags(&["--csv", "--count", "2", "a:1,b:2"])).unwrap();
        assert_eq!((c.mode, c.count), (Mode::Csv, Some(2)));
        assert_eq!(c.endpoints.len(), 2);
    }

    #[test]
    fn bad_values_name_their_flag() {
        let e = Config::resolve(&flags(&["nohost"])).unwrap_err();
        assert_eq!(e.flag, "ENDPOINT");
        assert!(e.to_string().contains("nohost"), "{e}");
        for bad in [
            &["--interval-ms", "0", "a:1"][..],
            &["--count", "0", "a:1"],
            &["--once", "--count", "2", "a:1"],
            &["--timeout-ms", "0", "a:1"],
            &[],
        ] {
            let args = std::iter::once("shardcast-stat").chain(bad.iter().copied());
            assert!(Flags::try_parse_from(args).is_err(), "{bad:?}");
        }
    }
}
