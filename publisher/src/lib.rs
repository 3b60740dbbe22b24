//! `shardcast-pub`: a paced, sharded synthetic market-data publisher.
//!
//! One stream per `--bind`: its own XPUB socket, its own thread and its own
//! ZeroMQ I/O thread. Every stream thread runs the same deterministic feed
//! (so content depends only on the seed) and sends the events whose symbol
//! hashes to it. Message `i` of the feed falls due at `t0 + i/rate` and is
//! stamped with that intended time: a publisher that falls behind shows it as
//! latency downstream instead of silently stretching the schedule (no
//! coordinated omission).
//!
//! XPUB rather than PUB: it behaves the same for data, and it lets the
//! publisher see subscriptions, which is how `--wait-subscribers` defeats the
//! slow joiner without a sleep.

pub mod cli;
pub mod config;
pub mod peers;
mod report;
mod stream;
mod wiring;

pub use report::{EndReason, Report, Security, StreamReport};

use config::Config;
use shardcast_agent::clock::now_ns;
use shardcast_agent::cpu::{self, spawn_agent};
use shardcast_agent::exit::{ioerr, SetupError};
use shardcast_agent::signals::StopSignal;
use shardcast_proto::feed::Feed;
use shardcast_proto::shard::stream_for;
use std::sync::Arc;
use stream::{Start, Stream, StreamResult};

/// Why a run failed (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Building or running the sockets and threads failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// Subscribers did not arrive within --wait-timeout.
    #[error("stream {stream}: {seen} of {wanted} subscribers arrived within --wait-timeout; is the subscriber pointed at this endpoint?")]
    WaitTimeout {
        /// Stream index.
        stream: usize,
        /// Subscribers seen.
        seen: u32,
        /// Subscribers wanted.
        wanted: u32,
        /// The run's report (`end_reason` "wait-timeout", nothing sent),
        /// written like any other: a failed run leaves its own report, not
        /// a previous run's (issue 10, finding 10).
        report: Box<Report>,
    },
    /// A stream thread panicked.
    #[error("stream thread {0} panicked")]
    Panicked(usize),
    /// The feed could not be built.
    #[error("{0}")]
    Feed(#[from] shardcast_proto::feed::BadSymbolCount),
}

impl RunError {
    /// The report a failed run still has (`--wait-timeout`), if any.
    pub fn into_report(self) -> Option<Report> {
        match self {
            RunError::WaitTimeout { report, .. } => Some(*report),
            _ => None,
        }
    }
}

/// Run the publisher to its end: wire the sockets, run one thread per
/// stream, and assemble the report once every stream has ended.
pub fn run(cfg: &Config, signal: &StopSignal) -> Result<Report, RunError> {
    let n = cfg.streams.len();
    if let Some(w) = cpu::thread_budget_warning(2 * n, &format!("{n} streams + {n} I/O")) {
        eprintln!("shardcast-pub: {w}");
    }
    // Build the feed once up front, so a bad --symbols fails before binding.
    let feed = Feed::new(cfg.seed, cfg.symbols)?;
    let session = cfg.session.unwrap_or_else(now_ns);
    let mut wired = wiring::wire(cfg)?;
    let sockets = std::mem::take(&mut wired.sockets);
    let results = run_streams(cfg, feed, session, sockets, signal)?;
    // Every stream socket closed with its thread (after end-of-stream and
    // linger); only then the ZAP handler and the contexts.
    let zap = wired.finish();
    let waited_out = results
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.waited_out.map(|w| (i, w)));
    let report = Report::assemble(cfg, session, results, zap);
    match waited_out {
        Some((stream, (seen, wanted))) => Err(RunError::WaitTimeout {
            stream,
            seen,
            wanted,
            report: Box::new(report),
        }),
        None => Ok(report),
    }
}

/// One named, pinned thread per stream, all running the same feed; joins
/// them all and returns their results in stream order.
fn run_streams(
    cfg: &Config,
    feed: Feed,
    session: u64,
    sockets: Vec<wiring::Bound>,
    signal: &StopSignal,
) -> Result<Vec<StreamResult>, RunError> {
    let n = cfg.streams.len();
    // Which stream each symbol of the feed belongs to, computed once.
    let stream_of: Arc<Vec<u16>> = Arc::new(
        feed.symbols()
            .iter()
            .map(|s| stream_for(s, n) as u16)
            .collect(),
    );
    let start = Arc::new(Start::new());
    let mut handles = Vec::with_capacity(n);
    for (plan, bound) in cfg.streams.iter().zip(sockets) {
        let cfg = cfg.clone();
        let feed = feed.clone();
        let stream_of = Arc::clone(&stream_of);
        let start = Arc::clone(&start);
        let signal = signal.clone();
        let index = plan.index;
        let h = spawn_agent(format!("stream-{index}"), plan.cpu, move || {
            Stream::new(&cfg, index, session, bound, &signal).run(feed, &stream_of, &start)
        })
        .map_err(ioerr("starting a stream thread"))?;
        handles.push(h);
    }
    let mut results = Vec::with_capacity(n);
    for (i, h) in handles.into_iter().enumerate() {
        results.push(h.join().map_err(|_| RunError::Panicked(i))?);
    }
    Ok(results)
}
