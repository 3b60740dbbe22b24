//! `shardcast-sub`: the Black Box subscriber of the ZeroMQ Guide, chapter 5.
//!
//! ```text
//!  stream 0 ──tcp──► [I/O thread 0] ─► shard-0 (SUB) ─┐ inproc PUSH ┌─► worker-0
//!  stream 1 ──tcp──► [I/O thread 1] ─► shard-1 (SUB) ─┴─────────────┴─► worker-1 ...
//!                                       ▲ monitor: snail, reports, signals
//! ```
//!
//! One shard per `--connect`: its own SUB socket, its own thread and its own
//! ZeroMQ I/O thread (the SUB lives on a context of its own with one I/O
//! thread, named `zmq-io-N` and pinned with `--io-cpus`). Shards validate,
//! sequence-check and age-check every record and fan frames out over inproc
//! PUSH to the worker pool. The main thread is the monitor: it watches the
//! counters the agents publish, croaks for the Suicidal Snail, and stops
//! everything at end-of-stream, `--duration` or a signal.

pub mod cli;
pub mod config;
mod exporter;
mod forensic;
pub mod links;
mod metrics;
pub mod report;
pub mod shard;
pub mod sizing;
pub mod snapshot;

mod assemble;
mod monitor;
mod wiring;

use config::Config;
use links::Link;
use metrics::Metrics;
use report::Report;
use shardcast_agent::cpu;
use shardcast_agent::exit::{self, SetupError};
use shardcast_agent::signals::StopSignal;
use shardcast_agent::watch::Board;
use shardcast_workers::itch_book::ItchBookSummary;
use shardcast_workers::{Books, WorkKind};
use snapshot::{EndReason, RunSnapshot};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a run failed before or outside the pipeline (exit code 1).
pub type RunError = SetupError;

/// What the run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// The merged books (empty unless `--work book`).
    pub books: Books,
    /// The merged ITCH books by symbol (empty unless `--work itch-book`).
    pub itch_books: BTreeMap<String, ItchBookSummary>,
    /// Exit code: 0 when the run ended cleanly; 3 when the snail croaked;
    /// 1 when an agent failed or stopped before end-of-stream, the workers
    /// did not drain, an output file could not be written, or a publisher
    /// refused our CURVE handshake.
    pub exit_code: u8,
    /// `--metrics-bind`: the endpoint, still serving (the report's totals
    /// now) until [`Outcome::linger_metrics`] or a drop closes it.
    pub metrics: Option<exporter::Exporter>,
}

/// Build the pipeline, run it to its end, and report. Every thread it
/// started has stopped when it returns, and every libzmq context is closed,
/// unless an agent failed to stop (then its context is left to the OS).
pub fn run(cfg: &Config, signal: &StopSignal) -> Result<Outcome, RunError> {
    let (n_shards, n_workers) = (cfg.shards.len(), cfg.workers);
    if let Some(w) = cpu::thread_budget_warning(
        cfg.busy_threads(),
        &if cfg.inline {
            format!("{n_shards} shards working inline + {n_shards} I/O")
        } else {
            format!("{n_shards} shards + {n_shards} I/O + {n_workers} workers")
        },
    ) {
        eprintln!("shardcast-sub: {w}");
    }
    let wired = wiring::Wired::build(cfg)?;
    let t0 = shardcast_agent::clock::now_ns();
    let mut metrics = Metrics::new(t0, cfg.warmup, cfg.hdr_log.as_deref(), cfg.stats_interval)?;
    let board = Arc::new(Board::new(n_shards, n_workers));
    let exporter = match cfg.metrics_bind {
        Some(bind) => {
            let e = exporter::Exporter::start(cfg, bind, &board)?;
            metrics.publish_latency_to(e.latency_cell());
            Some(e)
        }
        None => None,
    };
    let mut agents = wired.spawn(cfg, &board, &metrics)?;

    let mut watched = monitor::watch(cfg, &board, &mut agents, &mut metrics, signal);
    let stopped = monitor::stop_and_drain(cfg, &board, &mut agents, &mut metrics, &mut watched);

    // Every agent has stopped (or is missing): what they recorded is in.
    let lost_now = stopped
        .shards
        .iter()
        .flatten()
        .map(|r| r.tracker.totals().lost)
        .sum();
    let (latency, log_ok) = metrics.finish(lost_now);
    let links = agents.links.iter().map(Link::report).collect();
    drop(std::mem::take(&mut agents.links));
    agents.contexts.close(stopped.all_joined);

    let run = RunSnapshot {
        end: watched.end,
        croak: board.croak.event(),
        croak_queues: watched.croak_queues,
        placement: watched.placement,
        oversized: watched.oversized,
        drained: stopped.drained,
        wall: watched.started.elapsed(),
        links,
    };
    let (mut report, books) =
        assemble::report(cfg, run, &stopped.shards, stopped.workers, &latency, log_ok);
    if let Some(e) = &exporter {
        e.finish(&report, &stopped.shards, &latency);
    }
    forensic::on_croak(cfg, &mut report, metrics.recent());
    write_latency_files(cfg, &mut report, &latency);
    let exit_code = exit_code(&report);
    Ok(Outcome {
        report,
        books: books.books,
        itch_books: books.itch,
        exit_code,
        metrics: exporter,
    })
}

impl Outcome {
    /// `--metrics-linger-ms`: keep the metrics endpoint up for `linger`
    /// (or until `stop`), then close it. The address it served, if any.
    pub fn linger_metrics(
        &mut self,
        linger: std::time::Duration,
        stop: impl Fn() -> bool,
    ) -> Option<std::net::SocketAddr> {
        let e = self.metrics.take()?;
        let addr = e.addr();
        e.linger(linger, stop);
        Some(addr)
    }

    /// What `--books-out` holds for the run's `--work`: the ITCH books
    /// under `itch-book`, the synthetic books otherwise (`{}` when the
    /// work keeps none).
    pub fn books_file(&self, work: WorkKind) -> BooksFile<'_> {
        if work == WorkKind::ItchBook {
            BooksFile::Itch(&self.itch_books)
        } else {
            BooksFile::Synthetic(self.books.snapshot())
        }
    }
}

/// The `--books-out` file: a JSON object keyed by symbol, its values
/// the books of the run's `--work` (README, "Books file" and "Real data").
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum BooksFile<'a> {
    /// `--work book` (and work that keeps no book: `{}`).
    Synthetic(BTreeMap<String, shardcast_workers::BookSnapshot>),
    /// `--work itch-book`.
    Itch(&'a BTreeMap<String, ItchBookSummary>),
}

/// `--plot` and `--hgrm`; a file that cannot be written clears `files_ok`.
fn write_latency_files(
    cfg: &Config,
    report: &mut Report,
    latency: &shardcast_agent::hist::StageHists,
) {
    if let Some(path) = &cfg.plot {
        let title = format!(
            "shardcast-sub: latency by percentile ({} records, {} stream(s))",
            report.counters.received,
            report.streams.len()
        );
        if let Err(e) = metrics::write_plot(path, latency, &title) {
            eprintln!(
                "shardcast-sub: error: writing --plot {}: {e}",
                path.display()
            );
            report.files_ok = false;
        }
    }
    if let Some(path) = &cfg.hgrm {
        if let Err(e) = metrics::write_hgrm(path, latency) {
            eprintln!(
                "shardcast-sub: error: writing --hgrm {}: {e}",
                path.display()
            );
            report.files_ok = false;
        }
    }
}

/// The exit code a report stands for (see [`Outcome::exit_code`]).
fn exit_code(report: &Report) -> u8 {
    let refused = report
        .links
        .iter()
        .any(|l| l.auth_refused > 0 || l.handshake_failed > 0);
    match report.end_reason {
        EndReason::Snail => exit::SNAIL,
        EndReason::Error => exit::FAILURE,
        _ if !report.drained || !report.files_ok || refused => exit::FAILURE,
        _ => exit::OK,
    }
}

impl Report {
    /// The human summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let e2e = self
            .latency_ns
            .get("end_to_end")
            .copied()
            .unwrap_or_default();
        let itch = match &self.itch {
            Some(i) => format!(
                "\nshardcast-sub: itch books: {} messages, {} symbols, {} live orders; unknown order {}, \
                 duplicate order {}, overfill {}, unknown type {}, malformed {}, bad side {}",
                i.messages,
                i.symbols,
                i.live_orders,
                i.unknown_order,
                i.duplicate_order,
                i.overfill,
                i.unknown_type,
                i.malformed,
                i.bad_side
            ),
            None => String::new(),
        };
        format!(
            "shardcast-sub: ended by {}; {} streams: received {} msgs in {:.3} s = {:.0} msg/s; lost {}, duplicates {}, malformed {}, \
             restarts {}, missed before join {}; streams complete: {}\n\
             shardcast-sub: end-to-end latency (intended send -> work done): {}{itch}",
            self.end_reason,
            self.streams.len(),
            self.counters.received,
            self.elapsed_s,
            self.msgs_per_sec,
            self.counters.lost,
            self.counters.duplicates,
            self.malformed,
            self.counters.restarts,
            self.counters.missed_before_join,
            self.streams_complete,
            e2e.line()
        )
    }
}
