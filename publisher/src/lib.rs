//! `shardcast-pub`: a paced, sharded market-data publisher: a synthetic
//! feed, or a NASDAQ TotalView-ITCH 5.0 source (`--source itch:PATH`).
//!
//! One stream per `--bind`: its own XPUB socket, its own thread and its own
//! ZeroMQ I/O thread. Every stream thread runs the same deterministic feed
//! (so content depends only on the seed) and sends the events whose symbol
//! hashes to it. Message `i` of the feed falls due at `t0 + i/rate` and is
//! stamped with that intended time: a publisher that falls behind shows it as
//! latency downstream instead of silently stretching the schedule (no
//! coordinated omission).
//!
//! With an ITCH source, one more thread, `reader`, reads the source once,
//! in order ([`source`]), routes every message to the stream owning its
//! symbol ([`route`]) and hands them over in blocks on bounded queues; the
//! streams play them at `--speed` ([`schedule`]), each message one record
//! of kind `Itch` carrying its bytes unchanged.
//!
//! XPUB rather than PUB: it behaves the same for data, and it lets the
//! publisher see subscriptions, which is how `--wait-subscribers` defeats the
//! slow joiner without a sleep.

pub mod cli;
pub mod config;
pub mod exporter;
pub mod mold;
pub mod peers;
mod reader;
pub mod replay;
mod report;
pub mod retransmit;
pub mod route;
pub mod schedule;
pub mod source;
mod stream;
mod symseq;
pub mod tenths;
mod wiring;

pub use report::{EndReason, ItchSourceReport, Report, Security, SourceReport, StreamReport};

use config::{Config, SourceSpec};
use reader::{Reader, SourceOutcome};
use retransmit::Ring;
use shardcast_agent::clock::now_ns;
use shardcast_agent::cpu::{self, spawn_agent};
use shardcast_agent::exit::{ioerr, SetupError};
use shardcast_agent::signals::StopSignal;
use shardcast_proto::feed::Feed;
use shardcast_proto::shard::stream_for;
use source::{ItchFile, Source};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use stream::{Input, Start, Stream, StreamResult};

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
    /// `--source` could not be opened. Remedy: check the path (and that
    /// the file is readable).
    #[error("--source {spec}: {error}")]
    SourceOpen {
        /// The source as given.
        spec: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// Reading the source failed part-way (a corrupt or cut gzip stream, a
    /// disk error). What came before was sent and ended properly; the
    /// report says how far it got (`source.error`, `source.messages`).
    #[error(
        "reading --source {spec}: {error}; the streams ended after the messages read before it"
    )]
    SourceRead {
        /// The source as given.
        spec: String,
        /// The read error.
        error: String,
        /// The run's report.
        report: Box<Report>,
    },
    /// The reader thread panicked.
    #[error("the source reader thread panicked")]
    ReaderPanicked,
}

impl RunError {
    /// The report a failed run still has (`--wait-timeout`, a read error
    /// in the source), if any.
    pub fn into_report(self) -> Option<Report> {
        match self {
            RunError::WaitTimeout { report, .. } | RunError::SourceRead { report, .. } => {
                Some(*report)
            }
            _ => None,
        }
    }
}

/// What the streams send: the synthetic feed, or the messages of a source.
enum Origin<S> {
    Synthetic(Feed),
    Source(S),
    /// A recording, one input per stream (no reader thread).
    Recording(Vec<replay::ReplayInput>),
}

/// Run the publisher to its end: open the source, wire the sockets, run
/// one thread per stream (and the source's reader), and assemble the
/// report once every stream has ended.
pub fn run(cfg: &Config, signal: &StopSignal) -> Result<Report, RunError> {
    run_metered(cfg, signal, None)
}

/// [`run`], the stream threads (and the retransmit server) publishing
/// their counts to `live` for `--metrics-bind` ([`exporter::Exporter`]).
pub fn run_metered(
    cfg: &Config,
    signal: &StopSignal,
    live: Option<&Arc<exporter::Live>>,
) -> Result<Report, RunError> {
    match &cfg.source {
        // Built once up front, so a bad --symbols fails before binding.
        SourceSpec::Synthetic => run_with::<ItchFile>(
            cfg,
            signal,
            Origin::Synthetic(Feed::new(cfg.seed, cfg.symbols)?),
            live,
        ),
        // Opened before binding: a missing file is an error before any
        // subscriber can connect.
        SourceSpec::Itch { path, gzip } => {
            let src = ItchFile::open(path, *gzip).map_err(|error| RunError::SourceOpen {
                spec: format!("itch:{}", path.display()),
                error,
            })?;
            run_with(cfg, signal, Origin::Source(src), live)
        }
        // Bound (and joined) before the streams: datagrams that come while
        // subscribers are awaited wait in the socket's buffer.
        // Opened before binding, like a file: a missing or mismatched
        // recording is an error before any subscriber can connect.
        SourceSpec::Recording { dir } => {
            let speed = cfg.speed.unwrap_or(schedule::Speed::Max);
            let inputs =
                replay::open(dir, cfg.streams.len(), &cfg.replay, speed).map_err(|error| {
                    RunError::SourceOpen {
                        spec: format!("recording:{}", dir.display()),
                        error: std::io::Error::other(error.to_string()),
                    }
                })?;
            run_with::<ItchFile>(cfg, signal, Origin::Recording(inputs), live)
        }
        SourceSpec::MoldUdp64 { endpoint } => {
            let mc = cfg
                .mold
                .clone()
                .unwrap_or_else(|| mold::MoldConfig::new(*endpoint, None));
            let src = mold::Receiver::open(mc).map_err(|error| RunError::SourceOpen {
                spec: format!("moldudp64:{endpoint}"),
                error,
            })?;
            // Tests wait for this line (the OS's port for port 0).
            eprintln!(
                "shardcast-pub: source moldudp64: receiving on {} ({}); re-requests {}",
                src.stats().local_addr,
                endpoint,
                src.config()
                    .rerequest
                    .map_or("off (no --rerequest)".to_string(), |a| format!("to {a}")),
            );
            run_with(cfg, signal, Origin::Source(src), live)
        }
    }
}

/// [`run`] with its source open.
fn run_with<S: Source + 'static>(
    cfg: &Config,
    signal: &StopSignal,
    origin: Origin<S>,
    live: Option<&Arc<exporter::Live>>,
) -> Result<Report, RunError> {
    let n = cfg.streams.len();
    let reading = matches!(origin, Origin::Source(_));
    // Line B's I/O threads are as busy as line A's; the retransmit server
    // mostly sleeps and is not counted.
    let lines_b = cfg.streams.iter().filter(|s| s.bind_b.is_some()).count();
    let busy = 2 * n + lines_b + usize::from(reading);
    let what = format!(
        "{n} streams + {} I/O{}",
        n + lines_b,
        if reading { " + reader" } else { "" }
    );
    if let Some(w) = cpu::thread_budget_warning(busy, &what) {
        eprintln!("shardcast-pub: {w}");
    }
    let session = cfg.session.unwrap_or_else(now_ns);
    let mut wired = wiring::wire(cfg)?;
    let service = Service::start(cfg, session)?;
    if let (Some(l), Some(s)) = (live, &service) {
        l.set_retransmit(&s.counters);
    }
    let sockets = std::mem::take(&mut wired.sockets);
    let (inputs, reader) = match origin {
        Origin::Synthetic(feed) => {
            // Which stream each symbol of the feed belongs to, computed once.
            let stream_of: Arc<Vec<u16>> = Arc::new(
                feed.symbols()
                    .iter()
                    .map(|s| stream_for(s, n) as u16)
                    .collect(),
            );
            let inputs = (0..n)
                .map(|_| Input::Synthetic {
                    feed: feed.clone(),
                    stream_of: Arc::clone(&stream_of),
                })
                .collect();
            (inputs, None)
        }
        Origin::Source(src) => {
            let (queues, inputs) = reader::channels(n);
            // The reader starts at once: it reads ahead (a few MiB) while
            // the streams wait for their subscribers.
            let r = Reader::new(src, queues, cfg.count, signal.clone());
            let h = reader::spawn(r).map_err(ioerr("starting the source reader thread"))?;
            (inputs.into_iter().map(Input::Itch).collect(), Some(h))
        }
        Origin::Recording(inputs) => (inputs.into_iter().map(Input::Replay).collect(), None),
    };
    let rings = service.as_ref().map(|s| s.rings.clone());
    let results = run_streams(cfg, inputs, session, sockets, signal, rings, live);
    // The service outlives the streams by --retransmit-linger-ms (late
    // repairs), then stops; stopped at once when a stream thread failed.
    let retransmit = match service {
        Some(s) => Some(s.finish(results.is_ok(), signal)?),
        None => None,
    };
    let results = results?;
    // Every stream has dropped its queue by now, so the reader has ended
    // (or ends at its next hand-over).
    let source = join_reader(reader)?;
    // Every stream socket closed with its thread (after end-of-stream and
    // linger); only then the ZAP handler and the contexts.
    let zap = wired.finish();
    let waited_out = results
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.waited_out.map(|w| (i, w)));
    let read_error = source.as_ref().and_then(|s| s.error.clone());
    let source_report = match (source, &cfg.source) {
        (Some(o), _) => SourceReport::itch(o),
        (None, SourceSpec::Recording { dir }) => SourceReport::recording(dir, &results),
        (None, _) => SourceReport::synthetic(),
    };
    let report = Report::assemble(cfg, session, results, zap, source_report, retransmit);
    match (waited_out, read_error) {
        (Some((stream, (seen, wanted))), _) => Err(RunError::WaitTimeout {
            stream,
            seen,
            wanted,
            report: Box::new(report),
        }),
        (None, Some(error)) => Err(RunError::SourceRead {
            spec: match &cfg.source {
                SourceSpec::Itch { path, .. } => format!("itch:{}", path.display()),
                SourceSpec::Synthetic => "synthetic".into(),
                SourceSpec::MoldUdp64 { endpoint } => format!("moldudp64:{endpoint}"),
                SourceSpec::Recording { dir } => format!("recording:{}", dir.display()),
            },
            error,
            report: Box::new(report),
        }),
        (None, None) => Ok(report),
    }
}

/// The retransmission service while it runs: the rings (one per stream),
/// its thread and what it counts.
struct Service {
    rings: Vec<Arc<Ring>>,
    endpoint: String,
    stop: Arc<AtomicBool>,
    counters: Arc<retransmit::Counters>,
    thread: JoinHandle<Result<(), zmq::Error>>,
    cfg: config::Retransmit,
}

impl Service {
    /// Bind and start the service (`None` without `--retransmit-bind`).
    fn start(cfg: &Config, session: u64) -> Result<Option<Service>, RunError> {
        let Some(rc) = &cfg.retransmit else {
            return Ok(None);
        };
        let rings: Vec<Arc<Ring>> = (0..cfg.streams.len())
            .map(|_| Arc::new(Ring::new(rc.depth, rc.ring_bytes)))
            .collect();
        let server = retransmit::Server::bind(rc, rings.clone(), cfg.publisher_id, session)?;
        let endpoint = server.endpoint().to_string();
        // Tests wait for this line (the OS's port for :* or :0).
        eprintln!(
            "shardcast-pub: retransmit: serving on {endpoint}; each stream keeps its last {} records ({}), \
             at most {:.1} MiB per stream ({:.1} MiB of frames + {:.1} MiB of index), {:.1} MiB in all; \
             per requester {} requests/s and {:.1} MiB/s",
            rc.depth,
            rc.depth_rule,
            (rc.ring_bytes + rc.index_bytes) as f64 / 1048576.0,
            rc.ring_bytes as f64 / 1048576.0,
            rc.index_bytes as f64 / 1048576.0,
            rc.total_bytes as f64 / 1048576.0,
            rc.peer_requests_per_sec,
            rc.peer_bytes_per_sec as f64 / 1048576.0,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(retransmit::Counters::default());
        let thread = {
            let (stop, counters) = (Arc::clone(&stop), Arc::clone(&counters));
            std::thread::Builder::new()
                .name("retransmit".into())
                .spawn(move || server.run(&stop, &counters))
                .map_err(ioerr("starting the retransmit thread"))?
        };
        Ok(Some(Service {
            rings,
            endpoint,
            stop,
            counters,
            thread,
            cfg: rc.clone(),
        }))
    }

    /// After the streams: linger (unless `linger` is false or a signal came),
    /// stop, join, and say what was served.
    fn finish(
        self,
        linger: bool,
        signal: &StopSignal,
    ) -> Result<retransmit::RetransmitReport, RunError> {
        if linger && !self.cfg.linger.is_zero() && !signal.raised() {
            eprintln!(
                "shardcast-pub: retransmit: every stream has ended; serving {} ms more for late repairs \
                 (--retransmit-linger-ms)",
                self.cfg.linger.as_millis()
            );
            let until = std::time::Instant::now() + self.cfg.linger;
            while std::time::Instant::now() < until && !signal.raised() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("shardcast-pub: retransmit: error: {e}; the service stopped"),
            Err(_) => eprintln!("shardcast-pub: retransmit: the service thread panicked"),
        }
        Ok(retransmit::RetransmitReport::new(
            self.endpoint,
            &self.cfg,
            &self.counters,
        ))
    }
}

fn join_reader(
    reader: Option<JoinHandle<SourceOutcome>>,
) -> Result<Option<SourceOutcome>, RunError> {
    match reader {
        None => Ok(None),
        Some(h) => h.join().map(Some).map_err(|_| RunError::ReaderPanicked),
    }
}

/// One named, pinned thread per stream, each sending its input; joins them
/// all and returns their results in stream order.
fn run_streams(
    cfg: &Config,
    inputs: Vec<Input>,
    session: u64,
    sockets: Vec<wiring::Bound>,
    signal: &StopSignal,
    rings: Option<Vec<Arc<Ring>>>,
    live: Option<&Arc<exporter::Live>>,
) -> Result<Vec<StreamResult>, RunError> {
    let n = cfg.streams.len();
    let start = Arc::new(Start::new());
    let mut handles = Vec::with_capacity(n);
    for ((plan, bound), input) in cfg.streams.iter().zip(sockets).zip(inputs) {
        let cfg = cfg.clone();
        let start = Arc::clone(&start);
        let signal = signal.clone();
        let index = plan.index;
        let ring = rings.as_ref().map(|r| Arc::clone(&r[index]));
        let live = live.cloned();
        let h = spawn_agent(format!("stream-{index}"), plan.cpu, move || {
            Stream::new(&cfg, index, session, bound, &signal, ring)
                .metered(live)
                .run(input, &start)
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
