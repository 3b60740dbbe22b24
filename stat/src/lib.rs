//! `shardcast-stat`: a live view of running shardcast processes from
//! their Prometheus metrics endpoints (issue 15, "A live view").
//!
//! * [`http`]: one `GET` per endpoint per interval, with a deadline;
//! * [`expo`]: the text exposition parsed (Prometheus 0.0.4 and
//!   OpenMetrics 1.0);
//! * [`quantile`]: p50/p99/max estimated from histogram buckets as
//!   Prometheus's `histogram_quantile` does;
//! * [`view`]: a scrape against the one before it made into rows (rates
//!   are counter deltas over the time between the two);
//! * [`render`]: the terminal view, plain text, CSV;
//! * [`run`]: scrape, wait, scrape, show, until `--count` or a signal.
//!
//! It reads nothing but the endpoints, holds no connection open between
//! scrapes, and an endpoint that does not answer is shown as down.

pub mod cli;
pub mod config;
pub mod expo;
pub mod http;
pub mod quantile;
pub mod render;
pub mod view;

pub use config::{Config, Mode};
pub use render::Snapshot;

use shardcast_agent::signals::StopSignal;
use std::io::{self, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use view::Scraped;

/// Why a run failed (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Standard output could not be written (other than closed by its
    /// reader, which ends the run quietly).
    #[error("writing standard output: {0}")]
    Output(io::Error),
}

/// The most "other" lines per process on the terminal view.
const LIVE_OTHER_LINES: usize = 12;

/// Scrape every endpoint at once (a thread each), each within the
/// timeout.
fn scrape_all(cfg: &Config) -> Vec<Result<Scraped, String>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = cfg
            .endpoints
            .iter()
            .map(|e| {
                s.spawn(move || {
                    let start = Instant::now();
                    let body = http::get(&e.target, cfg.timeout)?;
                    let at = Instant::now();
                    let exp = expo::parse(&body);
                    if exp.families.is_empty() {
                        return Err(match exp.errors.first() {
                            Some(err) => format!(
                                "not a metrics exposition (line {}: {})",
                                err.line, err.message
                            ),
                            None => "an empty exposition".into(),
                        });
                    }
                    Ok(Scraped {
                        exp,
                        at,
                        took: at - start,
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the scrape thread panicked".into()))
            })
            .collect()
    })
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What is kept of an endpoint's earlier scrapes.
#[derive(Clone, Debug, Default)]
struct Memory {
    /// The last good scrape (rates are measured against it).
    last: Option<Scraped>,
    /// The last good scrape whose histograms differ from `last`'s (the
    /// recent latency is measured against it).
    hist_base: Option<Scraped>,
}

impl Memory {
    /// Take in a good scrape, after it has been shown.
    fn update(&mut self, now: Scraped) {
        if let Some(last) = self.last.take() {
            if view::histograms_differ(&last.exp, &now.exp) {
                self.hist_base = Some(last);
            }
        }
        self.last = Some(now);
    }
}

/// The snapshot of one round against what is kept of each endpoint's
/// earlier scrapes; then the round's good scrapes are kept.
fn snapshot(
    cfg: &Config,
    refresh: u64,
    round: Vec<Result<Scraped, String>>,
    memory: &mut [Memory],
) -> Snapshot {
    let processes = cfg
        .endpoints
        .iter()
        .zip(round)
        .zip(memory.iter_mut())
        .map(|((e, now), mem)| {
            // The base of the recent latency: the last scrape with other
            // histograms than now's.
            let hist_before = match (&now, &mem.last) {
                (Ok(n), Some(last)) if view::histograms_differ(&last.exp, &n.exp) => Some(last),
                _ => mem.hist_base.as_ref(),
            };
            let v = view::build(
                &e.name,
                &e.url,
                now.as_ref().map_err(String::as_str),
                mem.last.as_ref(),
                hist_before,
                &cfg.stage,
            );
            if let Ok(n) = now {
                mem.update(n);
            }
            v
        })
        .collect();
    Snapshot {
        refresh,
        time_unix_s: unix_now(),
        interval_ms: cfg.interval.as_millis() as u64,
        processes,
    }
}

/// Sleep until `deadline` in short steps; `false` if a signal came first.
fn wait_until(deadline: Instant, stop: &StopSignal) -> bool {
    loop {
        if stop.raised() {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Prints snapshots as the mode says.
struct Printer<'a> {
    mode: Mode,
    out: &'a mut dyn Write,
    drawn: bool,
}

impl Printer<'_> {
    fn start(&mut self) -> io::Result<()> {
        if self.mode == Mode::Csv {
            writeln!(self.out, "{}", render::CSV_HEADER)?;
        }
        self.out.flush()
    }

    fn show(&mut self, s: &Snapshot) -> io::Result<()> {
        match self.mode {
            Mode::Live => {
                // Home, each line clearing its rest, then clear below: the
                // frame is replaced in place, without a blank flash.
                let mut frame = String::new();
                if !self.drawn {
                    frame += "\x1b[H\x1b[2J";
                    self.drawn = true;
                }
                frame += "\x1b[H";
                for l in render::text(s, Some(LIVE_OTHER_LINES)) {
                    frame += &l;
                    frame += "\x1b[K\n";
                }
                frame += "\x1b[J";
                self.out.write_all(frame.as_bytes())?;
            }
            Mode::Plain => {
                for l in render::text(s, None) {
                    writeln!(self.out, "{l}")?;
                }
            }
            Mode::Csv => {
                for l in render::csv(s) {
                    writeln!(self.out, "{l}")?;
                }
            }
        }
        self.out.flush()
    }
}

/// Watch the endpoints: scrape, then every `--interval-ms` scrape again
/// and show the view, `--count` times or until `stop`. Returns the last
/// snapshot (the first scrape's, without rates, if a signal came before
/// the second).
pub fn run(cfg: &Config, stop: &StopSignal, out: &mut dyn Write) -> Result<Snapshot, RunError> {
    let mut p = Printer {
        mode: cfg.mode,
        out,
        drawn: false,
    };
    let mut memory: Vec<Memory> = vec![Memory::default(); cfg.endpoints.len()];
    // A reader that went away (`| head`) ends the run; nothing to say.
    let quiet_end = |e: &io::Error| e.kind() == io::ErrorKind::BrokenPipe;
    if let Err(e) = p.start() {
        return if quiet_end(&e) {
            Ok(Snapshot::default())
        } else {
            Err(RunError::Output(e))
        };
    }
    let mut next = Instant::now() + cfg.interval;
    let mut snap = snapshot(cfg, 0, scrape_all(cfg), &mut memory);
    if cfg.mode == Mode::Live {
        if let Err(e) = p.show(&snap) {
            return if quiet_end(&e) {
                Ok(snap)
            } else {
                Err(RunError::Output(e))
            };
        }
    }
    let mut refresh = 0;
    while cfg.count.map_or(true, |c| refresh < c) {
        if !wait_until(next, stop) {
            break;
        }
        next += cfg.interval;
        refresh += 1;
        snap = snapshot(cfg, refresh, scrape_all(cfg), &mut memory);
        // A round that overran the interval (slow endpoints) is not
        // followed by a burst of catch-up rounds.
        let now = Instant::now();
        if next < now {
            next = now + cfg.interval;
        }
        if let Err(e) = p.show(&snap) {
            return if quiet_end(&e) {
                Ok(snap)
            } else {
                Err(RunError::Output(e))
            };
        }
    }
    Ok(snap)
}

/// The endpoints that did not answer, each with why: `Some` when none
/// did (the run then exits 1, naming them).
pub fn all_down(s: &Snapshot) -> Option<String> {
    if s.processes.is_empty() || s.processes.iter().any(|p| p.up) {
        return None;
    }
    Some(
        s.processes
            .iter()
            .map(|p| {
                format!(
                    "{} ({})",
                    p.endpoint,
                    p.error.as_deref().unwrap_or("no answer")
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scraped(hist: u64, received: u64) -> Scraped {
        let text = format!(
            "# TYPE shardcast_received counter\n\
             shardcast_received_total{{shard=\"0\"}} {received}\n\
             # TYPE shardcast_latency_seconds histogram\n\
             shardcast_latency_seconds_bucket{{le=\"0.001\"}} {hist}\n\
             shardcast_latency_seconds_bucket{{le=\"+Inf\"}} {hist}\n"
        );
        Scraped {
            exp: expo::parse(&text),
            at: Instant::now(),
            took: Duration::ZERO,
        }
    }

    fn received(s: &Scraped) -> f64 {
        s.exp
            .samples("shardcast_received_total")
            .next()
            .unwrap()
            .value
    }

    #[test]
    fn recent_latency_holds_between_the_endpoint_s_own_updates() {
        // The endpoint rebuilds its histogram less often than it is
        // scraped: A and B show the same buckets, C new ones, D C's again.
        let mut m = Memory::default();
        m.update(scraped(10, 1));
        m.update(scraped(10, 2));
        assert!(m.hist_base.is_none(), "no change yet");
        let c = scraped(25, 3);
        assert!(view::histograms_differ(
            &m.last.as_ref().unwrap().exp,
            &c.exp
        ));
        m.update(c);
        // C and then D are measured against B (the last scrape before the
        // change): the 15 observations of the latest update, not nothing.
        assert_eq!(received(m.hist_base.as_ref().unwrap()), 2.0);
        m.update(scraped(25, 4));
        assert_eq!(received(m.hist_base.as_ref().unwrap()), 2.0);
    }
}
