//! `shardcast-record`: records shardcast streams to disk, and the library
//! that reads the recordings (docs/RECORDING.md).
//!
//! ```text
//!  stream 0 ──tcp──► [zmq-io-0] ─► recorder-0 (SUB) ─► DIR/p1-s0/0000…0001.seg + .idx
//!  stream 1 ──tcp──► [zmq-io-1] ─► recorder-1 (SUB) ─► DIR/p1-s1/…
//!                                   ▲ main: snail, signals, --duration, report
//!  DIR ◄── serve (ROUTER, --serve, nice 10, byte budget) ◄── catch-up clients
//! ```
//!
//! * [`format`]: the bytes of segments, entries and indexes (no I/O).
//! * [`writer`]: appending to one stream's segments (buffered, indexed,
//!   rolled, careful about a full disk).
//! * [`recover`]: verifying and repairing a recording before appending.
//! * [`reader`]: the public reading API (replay and catch-up read with it).
//! * [`serve`]: the `--serve` protocol (messages, the server, a client).
//! * [`record`]: the recorder agent (one per `--connect`).
//! * [`cli`], [`config`], [`report`]: flags, resolved configuration, report.
//! * [`exporter`]: `--metrics-bind` (Prometheus metrics at `/metrics`).

pub mod cli;
pub mod config;
pub mod exporter;
pub mod format;
pub mod reader;
pub mod record;
pub mod recover;
pub mod report;
pub mod serve;
pub mod writer;

#[cfg(test)]
mod tests;

use config::Config;
use record::{run_recorder, Claims, RecorderError, RecorderResult, RecorderSetup};
use report::{
    EndReason, RecorderReport, RecoveredTail, Report, ServeReport, SnailReport, StreamReport,
};
use serve::ServeCounters;
use shardcast_agent::cpu::{self, spawn_agent};
use shardcast_agent::exit::{self, ioerr, zerr, SetupError};
use shardcast_agent::signals::StopSignal;
use shardcast_agent::watch::Board;
use shardcast_agent::zmqx::socket_with_own_io_thread;
use shardcast_proto::wire::{DecodeError, CONTROL_TOPIC};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle recorder blocks in libzmq before it looks at stop.
const POLL_MS: i32 = 50;
/// The monitor's tick.
const TICK: Duration = Duration::from_millis(5);

struct Serving {
    handle: JoinHandle<Result<(), zmq::Error>>,
    stop: Arc<AtomicBool>,
    counters: Arc<ServeCounters>,
    endpoint: String,
    _ctx: zmq::Context,
}

/// What a run hands back: the report, and the metrics endpoint.
#[derive(Debug)]
pub struct Outcome {
    /// The report (`--report-json`).
    pub report: Report,
    /// `--metrics-bind`: the endpoint, still serving (the report's totals
    /// now) until [`Outcome::linger_metrics`] or a drop closes it.
    pub metrics: Option<exporter::Exporter>,
}

impl Outcome {
    /// `--metrics-linger-ms`: keep the metrics endpoint up for `linger`
    /// (or until `stop`), then close it. The address it served, if any.
    pub fn linger_metrics(
        &mut self,
        linger: Duration,
        stop: impl Fn() -> bool,
    ) -> Option<std::net::SocketAddr> {
        let e = self.metrics.take()?;
        let addr = e.addr();
        e.linger(linger, stop);
        Some(addr)
    }
}

/// Recover the recording, wire the sockets, record until the run ends,
/// and report. Every thread it started has stopped when it returns, except
/// the `--metrics-bind` endpoint's (see [`Outcome::metrics`]).
pub fn run(cfg: &Config, signal: &StopSignal) -> Result<Outcome, SetupError> {
    let n = cfg.recorders.len();
    if let Some(w) =
        cpu::thread_budget_warning(cfg.busy_threads(), &format!("{n} recorders + {n} I/O"))
    {
        eprintln!("shardcast-record: {w}");
    }
    let recovered = recover(cfg)?;
    std::fs::create_dir_all(&cfg.dir)
        .map_err(ioerr(format!("creating --dir {}", cfg.dir.display())))?;
    let mut contexts = Vec::with_capacity(n);
    let mut subs = Vec::with_capacity(n);
    for plan in &cfg.recorders {
        let own = socket_with_own_io_thread(zmq::SUB, &plan.index.to_string(), plan.io_cpu)?;
        if let Some(c) = plan.io_cpu {
            for (name, _) in &own.threads {
                eprintln!("shardcast-record: {name} pinned to CPU {c}");
            }
        }
        sub_options(&own.socket, cfg)?;
        own.socket.connect(&plan.endpoint).map_err(zerr(format!(
            "connecting recorder-{} to {} (--connect)",
            plan.index, plan.endpoint
        )))?;
        subs.push(own.socket);
        contexts.push(own.ctx);
    }
    let serving = match &cfg.serve {
        Some(ep) => Some(start_serving(cfg, ep)?),
        None => None,
    };
    let board = Arc::new(Board::new(n, 0));
    let metrics = match cfg.metrics_bind {
        Some(bind) => Some(exporter::Exporter::start(
            bind,
            &board,
            serving.as_ref().map(|s| Arc::clone(&s.counters)),
        )?),
        None => None,
    };
    let claims = Arc::new(Claims::default());
    let t0 = Instant::now();
    let mut handles: Vec<Option<JoinHandle<RecorderResult>>> = Vec::with_capacity(n);
    for (plan, sub) in cfg.recorders.iter().zip(subs) {
        let setup = RecorderSetup {
            index: plan.index,
            dir: cfg.dir.clone(),
            writer: cfg.writer_options(),
            flush_ns: cfg.flush.as_nanos() as u64,
            limit: cfg.lag_limit(),
            on_slow: cfg.on_slow,
            idle: cfg.idle,
        };
        let (b, c) = (Arc::clone(&board), Arc::clone(&claims));
        let h = spawn_agent(format!("recorder-{}", plan.index), plan.cpu, move || {
            run_recorder(setup, sub, &b, &c)
        })
        .map_err(ioerr("starting a recorder thread"))?;
        if let Some(c) = plan.cpu {
            eprintln!(
                "shardcast-record: recorder-{} pinned to CPU {c}",
                plan.index
            );
        }
        eprintln!(
            "shardcast-record: recorder-{} subscribed to {}",
            plan.index, plan.endpoint
        );
        handles.push(Some(h));
    }
    let mut results: Vec<Option<RecorderResult>> = (0..n).map(|_| None).collect();
    let reason = watch(cfg, signal, &board, &mut handles, &mut results, t0);
    board.stop_shards.store(true, Ordering::Relaxed);
    for (i, h) in handles.iter_mut().enumerate() {
        if let Some(h) = h.take() {
            results[i] = Some(h.join().unwrap_or_else(|_| panic!("recorder-{i} panicked")));
        }
    }
    let elapsed = t0.elapsed();
    // Every buffer is written: what was recorded is readable, so late
    // repairs and catch-ups can still be answered for --serve-linger-ms.
    if serving.is_some() && !cfg.serve_linger.is_zero() && reason != EndReason::Signal {
        eprintln!(
            "shardcast-record: recording ended; serving for {} ms more (--serve-linger-ms)",
            cfg.serve_linger.as_millis()
        );
        let until = Instant::now() + cfg.serve_linger;
        while Instant::now() < until && !signal.raised() {
            let left = until.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(Duration::from_millis(POLL_MS as u64)));
        }
    }
    let serve = serving.map(stop_serving);
    drop(contexts);
    let results: Vec<RecorderResult> = results.into_iter().map(|r| r.expect("joined")).collect();
    let report = assemble(cfg, reason, &board, results, recovered, serve, elapsed);
    if let Some(m) = &metrics {
        m.finish(&report);
    }
    Ok(Outcome { report, metrics })
}

/// Verify and repair an existing recording; `None` when there was none.
fn recover(cfg: &Config) -> Result<Option<RecoveredTail>, SetupError> {
    let found = recover::recover_all(&cfg.dir, cfg.index_bytes).map_err(|e| SetupError::Io {
        context: format!("recovering the recording in --dir {}", cfg.dir.display()),
        source: std::io::Error::other(e.to_string()),
    })?;
    if found.is_empty() {
        return Ok(None);
    }
    let mut t = RecoveredTail::default();
    for r in found {
        eprintln!(
            "shardcast-record: recovered p{}-s{}: last segment {} verified, {} valid records, \
             {} bytes of torn tail truncated, {} damaged stretches left in place",
            r.publisher_id,
            r.stream_id,
            r.segment,
            r.valid_records,
            r.truncated_bytes,
            r.corrupt.len()
        );
        t.truncated_bytes += r.truncated_bytes;
        t.valid_records += r.valid_records;
        t.corrupt.extend(r.corrupt.iter().cloned());
        t.streams.push(r);
    }
    Ok(Some(t))
}

/// Options of one recorder's SUB, before it connects (as the subscriber's).
fn sub_options(sub: &zmq::Socket, cfg: &Config) -> Result<(), SetupError> {
    sub.set_rcvhwm(cfg.rcvhwm)
        .map_err(zerr("setting ZMQ_RCVHWM (--rcvhwm)"))?;
    if cfg.rcvbuf > 0 {
        sub.set_rcvbuf(cfg.rcvbuf)
            .map_err(zerr("setting ZMQ_RCVBUF (--rcvbuf)"))?;
    }
    sub.set_maxmsgsize(cfg.max_msg_size)
        .map_err(zerr("setting ZMQ_MAXMSGSZ (--max-msg-size)"))?;
    sub.set_linger(0).map_err(zerr("setting ZMQ_LINGER"))?;
    sub.set_rcvtimeo(POLL_MS)
        .map_err(zerr("setting ZMQ_RCVTIMEO"))?;
    // The control topic carries heartbeats, end-of-stream and batches, and
    // is what a publisher's --wait-subscribers counts.
    sub.set_subscribe(CONTROL_TOPIC)
        .map_err(zerr("subscribing to the control topic"))?;
    sub.set_subscribe(b"").map_err(zerr("subscribing"))?;
    Ok(())
}

fn start_serving(cfg: &Config, ep: &str) -> Result<Serving, SetupError> {
    let ctx = zmq::Context::new();
    let router = ctx
        .socket(zmq::ROUTER)
        .map_err(zerr("creating the --serve ROUTER"))?;
    // EAGAIN instead of a silent drop when a client's pipe is full (the
    // request waits its turn) and EHOSTUNREACH for a client gone.
    router
        .set_router_mandatory(true)
        .map_err(zerr("setting ZMQ_ROUTER_MANDATORY"))?;
    // A few messages per client in flight (each at most 64 frames, 256
    // KiB): memory per client is bounded, and a slow client only slows
    // its own request.
    router
        .set_sndhwm(16)
        .map_err(zerr("setting --serve ZMQ_SNDHWM"))?;
    router
        .set_rcvhwm(256)
        .map_err(zerr("setting --serve ZMQ_RCVHWM"))?;
    router
        .set_maxmsgsize(4096)
        .map_err(zerr("setting --serve ZMQ_MAXMSGSZ"))?;
    router
        .set_linger(0)
        .map_err(zerr("setting --serve ZMQ_LINGER"))?;
    router
        .bind(ep)
        .map_err(zerr(format!("binding --serve {ep}")))?;
    let endpoint = router
        .get_last_endpoint()
        .ok()
        .and_then(|e| e.ok())
        .unwrap_or_else(|| ep.to_string());
    eprintln!("shardcast-record: serving recordings on {endpoint}");
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(ServeCounters::default());
    let (s, c, dir, rate) = (
        Arc::clone(&stop),
        Arc::clone(&counters),
        cfg.dir.clone(),
        cfg.serve_bytes_per_sec,
    );
    let handle = std::thread::Builder::new()
        .name("serve".into())
        .spawn(move || serve::run_server(router, dir, rate, &s, &c))
        .map_err(ioerr("starting the serve thread"))?;
    Ok(Serving {
        handle,
        stop,
        counters,
        endpoint,
        _ctx: ctx,
    })
}

fn stop_serving(s: Serving) -> ServeReport {
    s.stop.store(true, Ordering::Relaxed);
    let error = match s.handle.join() {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("the serve thread panicked".into()),
    };
    let c = &s.counters;
    let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    ServeReport {
        endpoint: s.endpoint,
        requests: r(&c.requests),
        messages: r(&c.messages),
        frames: r(&c.frames),
        bytes: r(&c.bytes),
        done: r(&c.done),
        partial: r(&c.partial),
        not_available: r(&c.not_available),
        bad_requests: r(&c.bad_requests),
        busy: r(&c.busy),
        gone: r(&c.gone),
        corrupt: r(&c.corrupt),
        error,
    }
}

/// The monitor: wait until every recorder ended, one failed, the snail
/// croaked, `--duration` passed or a signal came.
fn watch(
    cfg: &Config,
    signal: &StopSignal,
    board: &Board,
    handles: &mut [Option<JoinHandle<RecorderResult>>],
    results: &mut [Option<RecorderResult>],
    t0: Instant,
) -> EndReason {
    loop {
        if board.croak.raised() {
            if let Some(ev) = board.croak.event() {
                eprintln!(
                    "shardcast-record: SNAIL ALARM: recorder-{} is {:.1} ms behind (limit {} ms) \
                     at publisher {} stream {} seq {}: the recorder cannot keep up",
                    ev.index,
                    ev.lag_ns as f64 / 1e6,
                    cfg.max_lag_ms,
                    ev.publisher_id,
                    ev.stream_id,
                    ev.seq
                );
            }
            return EndReason::Snail;
        }
        if signal.raised() {
            return EndReason::Signal;
        }
        if cfg.duration.is_some_and(|d| t0.elapsed() >= d) {
            return EndReason::Duration;
        }
        for (i, h) in handles.iter_mut().enumerate() {
            if h.as_ref().is_some_and(|h| h.is_finished()) {
                let r = h.take().expect("present").join();
                let r = r.unwrap_or_else(|_| panic!("recorder-{i} panicked"));
                if let Some(e) = &r.error {
                    eprintln!("shardcast-record: error: recorder-{i}: {e}");
                    let disk_full = matches!(e, RecorderError::Write(w) if w.is_disk_full());
                    results[i] = Some(r);
                    return if disk_full {
                        EndReason::DiskFull
                    } else {
                        EndReason::Error
                    };
                }
                results[i] = Some(r);
            }
        }
        if handles.iter().all(Option::is_none) {
            return EndReason::EndOfStream;
        }
        std::thread::sleep(TICK);
    }
}

fn assemble(
    cfg: &Config,
    reason: EndReason,
    board: &Board,
    results: Vec<RecorderResult>,
    recovered: Option<RecoveredTail>,
    serve: Option<ServeReport>,
    elapsed: Duration,
) -> Report {
    let mut malformed_reasons: BTreeMap<&'static str, u64> =
        DecodeError::REASONS.iter().map(|r| (*r, 0)).collect();
    let mut streams = Vec::new();
    let mut recorders = Vec::new();
    let (mut lost, mut missed, mut dups) = (0u64, 0u64, 0u64);
    let (mut slow, mut max_lag, mut ts_future, mut ts_ancient, mut eos_unknown) =
        (0, 0u64, 0, 0, 0);
    let mut error = None;
    for r in &results {
        for (i, n) in r.malformed.iter().enumerate() {
            *malformed_reasons
                .get_mut(DecodeError::REASONS[i])
                .expect("every reason") += n;
        }
        slow += r.slow;
        max_lag = max_lag.max(r.max_lag_ns);
        ts_future += r.ts_future;
        ts_ancient += r.ts_ancient;
        eos_unknown += r.eos_unknown;
        if error.is_none() {
            error = r.error.as_ref().map(|e| e.to_string());
        }
        recorders.push(RecorderReport {
            index: r.index,
            endpoint: cfg.recorders[r.index].endpoint.clone(),
            frames: r.frames,
            malformed: r.malformed.iter().sum(),
            duplicate_frames: r.duplicate_frames,
            foreign_frames: r.foreign_frames,
            ended: r.ended,
            error: r.error.as_ref().map(|e| e.to_string()),
        });
        // A source another thread records is that thread's to report.
        for st in r.tracker.streams() {
            if r.foreign_sources.contains(&st.key()) {
                continue;
            }
            let c = st.counters();
            lost += c.lost;
            missed += c.missed_before_join;
            dups += c.duplicates;
            let out = r.streams.iter().find(|s| s.key == st.key());
            let stats = out.map(|o| o.stats).unwrap_or_default();
            let dir = cfg.dir.join(format::stream_dir_name(st.key()));
            streams.push(StreamReport {
                publisher_id: st.key().publisher_id,
                stream_id: st.key().stream_id,
                dir: dir.display().to_string(),
                recorder: r.index,
                session: st.session(),
                first_seq: st.first_seq(),
                last_seq: st.last_seq(),
                recorded: stats.records,
                frames: stats.frames,
                bytes: stats.bytes,
                segments: reader::list_segments(&dir).map_or(0, |v| v.len() as u64),
                segments_created: stats.segments_created,
                lost: c.lost,
                missed_before_join: c.missed_before_join,
                duplicates: c.duplicates,
                eos_last_seq: st.eos().map(|e| e.last_seq),
                complete: st.complete(),
            });
        }
    }
    streams.sort_by_key(|s| (s.publisher_id, s.stream_id));
    let sum = |f: fn(&StreamReport) -> u64| streams.iter().map(f).sum::<u64>();
    let recorded = sum(|s| s.recorded);
    let segments = reader::Recording::open(&cfg.dir)
        .and_then(|r| r.streams().map(|v| (r, v)))
        .map(|(r, keys)| {
            keys.iter()
                .filter_map(|k| r.stream(*k).ok()?.segments().ok())
                .map(|v| v.len() as u64)
                .sum()
        })
        .unwrap_or(0);
    let snail = (reason == EndReason::Snail)
        .then(|| board.croak.event())
        .flatten()
        .map(|ev| SnailReport {
            lag_ms: ev.lag_ns as f64 / 1e6,
            recorder: ev.index,
            publisher_id: ev.publisher_id,
            stream_id: ev.stream_id,
            seq: ev.seq,
        });
    let secs = elapsed.as_secs_f64();
    Report {
        role: "shardcast-record",
        version: env!("CARGO_PKG_VERSION"),
        end_reason: reason,
        dir: cfg.dir.display().to_string(),
        elapsed_s: secs,
        recorded,
        recorded_per_sec: if secs > 0.0 {
            recorded as f64 / secs
        } else {
            0.0
        },
        frames: sum(|s| s.frames),
        lost,
        missed_before_join: missed,
        duplicates: dups,
        malformed: malformed_reasons.values().sum(),
        malformed_reasons,
        segments,
        segments_created: sum(|s| s.segments_created),
        bytes: sum(|s| s.bytes),
        writes: results
            .iter()
            .flat_map(|r| r.streams.iter())
            .map(|s| s.stats.writes)
            .sum(),
        streams_complete: !streams.is_empty() && streams.iter().all(|s| s.complete),
        recovered_tail: recovered,
        max_lag_ms: max_lag as f64 / 1e6,
        max_lag_limit_ms: cfg.max_lag_ms,
        slow,
        ts_future,
        ts_ancient,
        eos_unknown,
        snail,
        streams,
        recorders,
        serve,
        error,
    }
}

/// The exit code for a report (docs/RECORDING.md, "Exit codes"): 0 for
/// end-of-stream, `--duration` or a signal; 1 for a failure, a full disk
/// included; 3 when the snail croaked.
pub fn exit_code(r: &Report) -> u8 {
    match r.end_reason {
        EndReason::Snail => exit::SNAIL,
        EndReason::DiskFull | EndReason::Error => exit::FAILURE,
        _ if r.error.is_some() => exit::FAILURE,
        _ => exit::OK,
    }
}
