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
mod forensic;
pub mod links;
mod metrics;
pub mod report;
mod shard;
pub mod sizing;

use config::{is_multicast, Config};
use links::Link;
use metrics::Metrics;
use report::{
    AgentReport, Forensics, HwmReport, Placement, QueueState, Report, SlowReport, SnailReport,
    StreamReport,
};
use shard::{run_shard, ShardResult, ShardSetup};
use shardcast_agent::cpu::{self, spawn_agent};
use shardcast_agent::curve;
use shardcast_agent::exit::{ioerr, zerr, SetupError};
use shardcast_agent::hist::{StageHists, STAGE_NAMES};
use shardcast_agent::signals::StopSignal;
use shardcast_agent::stats::LatencySummary;
use shardcast_agent::watch::{Croak, StageCounters};
use shardcast_agent::zmqx::socket_with_own_io_thread;
use shardcast_proto::snail::LagMode;
use shardcast_proto::wire::{DecodeError, Symbol, CONTROL_TOPIC};
use shardcast_workers::{run_worker, Books, OnSlow, WorkKind, WorkerResult, WorkerSetup};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle agent blocks in libzmq before it looks at its stop flag.
const POLL_MS: i32 = 50;
/// How often the monitor looks at the agents.
const MONITOR_TICK: Duration = Duration::from_millis(5);
/// How long stopped agents get to hand back their results.
const JOIN_GRACE: Duration = Duration::from_secs(5);

/// Why a run failed before or outside the pipeline (exit code 1).
pub type RunError = SetupError;

/// State shared between the monitor and the agents.
struct Shared {
    shards: Vec<StageCounters>,
    workers: Vec<StageCounters>,
    croak: Croak,
    stop_shards: AtomicBool,
    stop_workers: AtomicBool,
}

/// What the run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// The merged books (empty unless `--work book`).
    pub books: Books,
    /// Exit code: 0, or 3 when the snail croaked.
    pub exit_code: u8,
}

/// Build the pipeline, run it to its end, and report.
pub fn run(cfg: &Config, signal: &StopSignal) -> Result<Outcome, RunError> {
    let n_shards = cfg.shards.len();
    let n_workers = cfg.workers;
    if let Some(w) = cpu::thread_budget_warning(
        cfg.busy_threads(),
        &format!("{n_shards} shards + {n_shards} I/O + {n_workers} workers"),
    ) {
        eprintln!("shardcast-sub: {w}");
    }

    // The inproc context: shard-to-worker hops only, so no I/O thread.
    let ctx = zmq::Context::new();
    ctx.set_io_threads(0)
        .map_err(zerr("setting ZMQ_IO_THREADS"))?;

    let shared = Arc::new(Shared {
        shards: (0..n_shards).map(|_| StageCounters::default()).collect(),
        workers: (0..n_workers).map(|_| StageCounters::default()).collect(),
        croak: Croak::default(),
        stop_shards: AtomicBool::new(false),
        stop_workers: AtomicBool::new(false),
    });

    // All sockets are made and wired here, so a wiring error is reported
    // before any thread starts; each is then moved to its one owner thread.
    let inproc = |s: &zmq::Socket| -> Result<(), RunError> {
        s.set_linger(0).map_err(zerr("inproc ZMQ_LINGER"))?;
        s.set_sndhwm(cfg.inproc_hwm)
            .map_err(zerr("inproc ZMQ_SNDHWM"))?;
        s.set_rcvhwm(cfg.inproc_hwm)
            .map_err(zerr("inproc ZMQ_RCVHWM"))?;
        // A timeout, not a hang: blocked agents wake up to look at stop.
        s.set_sndtimeo(POLL_MS)
            .map_err(zerr("inproc ZMQ_SNDTIMEO"))?;
        s.set_rcvtimeo(POLL_MS)
            .map_err(zerr("inproc ZMQ_RCVTIMEO"))?;
        Ok(())
    };
    let mut pulls = Vec::with_capacity(n_workers);
    for w in 0..n_workers {
        let pull = ctx
            .socket(zmq::PULL)
            .map_err(zerr("creating worker PULL"))?;
        inproc(&pull)?;
        if cfg.keyed {
            pull.bind(&format!("inproc://shardcast-worker-{w}"))
                .map_err(zerr("binding worker PULL"))?;
        }
        pulls.push(pull);
    }
    let mut shard_outs: Vec<Vec<zmq::Socket>> = Vec::with_capacity(n_shards);
    for s in 0..n_shards {
        let mut outs = Vec::new();
        if cfg.keyed {
            for w in 0..n_workers {
                let push = ctx.socket(zmq::PUSH).map_err(zerr("creating shard PUSH"))?;
                inproc(&push)?;
                push.connect(&format!("inproc://shardcast-worker-{w}"))
                    .map_err(zerr("connecting shard PUSH"))?;
                outs.push(push);
            }
        } else {
            let push = ctx.socket(zmq::PUSH).map_err(zerr("creating shard PUSH"))?;
            inproc(&push)?;
            push.bind(&format!("inproc://shardcast-shard-{s}"))
                .map_err(zerr("binding shard PUSH"))?;
            for pull in &pulls {
                // Black Box step 2 (BB-4 #7): every worker pulls from every shard.
                pull.connect(&format!("inproc://shardcast-shard-{s}"))
                    .map_err(zerr("connecting worker PULL"))?;
            }
            outs.push(push);
        }
        shard_outs.push(outs);
    }
    // Each shard's SUB lives on a context of its own with one I/O thread, so
    // streams never share an I/O thread and each can be pinned to its core.
    // The shard thread also owns PUSH sockets on the inproc context above.
    let mut subs = Vec::with_capacity(n_shards);
    let mut stream_ctxs = Vec::with_capacity(n_shards);
    let mut links = Vec::with_capacity(n_shards);
    for plan in &cfg.shards {
        let own = socket_with_own_io_thread(zmq::SUB, &plan.index.to_string(), plan.io_cpu)?;
        let (sctx, sub, threads) = (own.ctx, own.socket, own.threads);
        if let Some(c) = plan.io_cpu {
            for (name, _) in &threads {
                eprintln!("shardcast-sub: {name} pinned to CPU {c}");
            }
        }
        sub.set_rcvhwm(cfg.rcvhwm)
            .map_err(zerr("setting ZMQ_RCVHWM (--rcvhwm)"))?;
        if cfg.rcvbuf > 0 {
            sub.set_rcvbuf(cfg.rcvbuf)
                .map_err(zerr("setting ZMQ_RCVBUF (--rcvbuf)"))?;
        }
        sub.set_maxmsgsize(cfg.max_msg_size)
            .map_err(zerr("setting ZMQ_MAXMSGSZ (--max-msg-size)"))?;
        sub.set_linger(0).map_err(zerr("setting ZMQ_LINGER"))?;
        if is_multicast(&plan.connect) {
            sub.set_rate(cfg.pgm_rate)
                .map_err(zerr("setting ZMQ_RATE (--pgm-rate)"))?;
            sub.set_recovery_ivl(cfg.pgm_recovery_ms)
                .map_err(zerr("setting ZMQ_RECOVERY_IVL (--pgm-recovery-ms)"))?;
        }
        // Say how the stream is protected, every time (see the publisher).
        match &cfg.curve {
            Some(c) => {
                curve::make_client(&sub, &c.keys, &c.server)
                    .map_err(zerr("making the shard a CURVE client (--curve-key)"))?;
                eprintln!(
                    "shardcast-sub: shard-{}: CURVE: encrypted; publisher key {}, our key {}",
                    plan.index,
                    c.server.z85(),
                    c.keys.public.z85()
                );
            }
            None => eprintln!(
                "shardcast-sub: shard-{}: PLAIN TEXT: {} is neither encrypted nor authenticated \
                 (use --curve-key and --curve-server-key)",
                plan.index, plan.endpoint
            ),
        }
        sub.set_rcvtimeo(POLL_MS)
            .map_err(zerr("setting ZMQ_RCVTIMEO"))?;
        // The control topic carries heartbeats, end-of-stream and batches,
        // and is what a publisher's --wait-subscribers counts.
        sub.set_subscribe(CONTROL_TOPIC)
            .map_err(zerr("subscribing to the control topic"))?;
        sub.set_subscribe(b"").map_err(zerr("subscribing"))?;
        links.push(Link::watch(&sctx, &sub, plan.index, &plan.endpoint)?);
        sub.connect(&plan.connect).map_err(zerr(format!(
            "connecting shard {} to {} (check --connect/--iface)",
            plan.index, plan.connect
        )))?;
        subs.push(sub);
        stream_ctxs.push(sctx);
    }

    let t0 = shardcast_agent::clock::now_ns();
    let mut metrics = Metrics::new(t0, cfg.warmup, cfg.hdr_log.as_deref(), cfg.stats_interval)?;
    let limit = cfg.lag_limit();
    let keyed_workers = cfg.keyed.then_some(n_workers);
    let coalesce = cfg.coalesce;
    let mut worker_handles: Vec<JoinHandle<WorkerResult>> = Vec::with_capacity(n_workers);
    for (w, pull) in pulls.into_iter().enumerate() {
        let setup = WorkerSetup {
            index: w,
            keyed_workers,
            work: cfg.work,
            work_ns: cfg.work_ns,
            limit,
            on_slow: cfg.on_slow,
            idle: cfg.idle,
            stall: if w == 0 { cfg.stall_worker } else { None },
            max_symbols: cfg.max_symbols,
        };
        let sh = Arc::clone(&shared);
        let rec = metrics.recorder();
        let h = spawn_agent(format!("worker-{w}"), cfg.worker_cpus[w], move || {
            run_worker(
                setup,
                pull,
                &sh.workers[w],
                &sh.croak,
                &sh.stop_workers,
                rec,
            )
        })
        .map_err(ioerr("starting a worker thread"))?;
        worker_handles.push(h);
    }
    let mut shard_handles: Vec<JoinHandle<ShardResult>> = Vec::with_capacity(n_shards);
    for ((plan, sub), outs) in cfg.shards.iter().zip(subs).zip(shard_outs) {
        let setup = ShardSetup {
            index: plan.index,
            keyed_workers,
            limit,
            on_slow: cfg.on_slow,
            idle: cfg.idle,
        };
        let sh = Arc::clone(&shared);
        let i = plan.index;
        let rec = metrics.recorder();
        let h = spawn_agent(format!("shard-{i}"), plan.cpu, move || {
            run_shard(
                setup,
                sub,
                outs,
                &sh.shards[i],
                &sh.workers,
                &sh.croak,
                &sh.stop_shards,
                rec,
                coalesce,
            )
        })
        .map_err(ioerr("starting a shard thread"))?;
        shard_handles.push(h);
    }
    for plan in &cfg.shards {
        eprintln!(
            "shardcast-sub: shard-{} connected to {} (cpu {}, io cpu {})",
            plan.index,
            plan.connect,
            fmt_cpu(plan.cpu),
            fmt_cpu(plan.io_cpu)
        );
    }

    // The monitor.
    let started = Instant::now();
    let mut end_reason = "end-of-stream";
    let mut warn = SlowWarner::new(cfg);
    let mut watchdog = Watchdog::new(cfg);
    let mut placement = Vec::new();
    let mut oversized = 0u64;
    let mut croak_queues = Vec::new();
    loop {
        std::thread::sleep(MONITOR_TICK);
        warn.tick(&shared);
        metrics.tick(shardcast_agent::clock::now_ns(), total_lost(&shared));
        for (i, l) in links.iter_mut().enumerate() {
            oversized += l.poll(i, cfg.max_msg_size);
        }
        watchdog.tick(&shared, cfg.on_slow);
        if shared.croak.raised() {
            // The queues as they were when it happened: the forensic part.
            croak_queues = queues(&shared, cfg.keyed);
            end_reason = "snail";
            break;
        }
        if signal.raised() {
            end_reason = "signal";
            break;
        }
        if cfg.duration.is_some_and(|d| started.elapsed() >= d) {
            end_reason = "duration";
            break;
        }
        // A shard whose only connection libzmq cut off can never end: it
        // counts as done (and is reported as stopped before end-of-stream).
        if shard_handles
            .iter()
            .zip(&links)
            .all(|(h, l)| h.is_finished() || l.is_dead())
        {
            break;
        }
        if placement.is_empty() && started.elapsed() > Duration::from_millis(200) {
            placement = snapshot_placement();
        }
    }
    if placement.is_empty() {
        placement = snapshot_placement();
    }
    if end_reason == "snail" {
        croak_alarm(cfg, &shared);
    }

    // Stop the shards, then let the workers drain what was forwarded.
    shared.stop_shards.store(true, Ordering::Relaxed);
    let shard_results = join_all(shard_handles);
    for (i, r) in shard_results.iter().enumerate() {
        match r {
            None => eprintln!("shardcast-sub: error: shard-{i} crashed or did not stop"),
            Some(ShardResult { error: Some(e), .. }) => {
                eprintln!("shardcast-sub: error: shard-{i} failed: {e}")
            }
            // Stopped by the monitor while blocked on a full worker queue.
            Some(r) if end_reason == "end-of-stream" && !r.ended => {
                eprintln!("shardcast-sub: error: shard-{i} stopped before end-of-stream")
            }
            Some(_) => continue,
        }
        if end_reason != "snail" {
            end_reason = "error";
        }
    }
    let forwarded: u64 = shard_results.iter().flatten().map(|r| r.forwarded).sum();
    let mut drained = true;
    if end_reason != "snail" {
        let drain_deadline = Instant::now() + cfg.drain_timeout;
        loop {
            let done: u64 = shared
                .workers
                .iter()
                .map(|c| StageCounters::read(&c.done))
                .sum();
            if done >= forwarded || shared.croak.raised() {
                break;
            }
            if Instant::now() >= drain_deadline {
                drained = false;
                eprintln!(
                    "shardcast-sub: error: workers processed {done} of {forwarded} forwarded records within --drain-timeout-ms {}; the rest is lost",
                    cfg.drain_timeout.as_millis()
                );
                break;
            }
            // No watchdog here: a shard stopped while blocked on a full
            // worker queue counted records as handed over that never left
            // it, and the drain limit already bounds this phase.
            warn.tick(&shared);
            metrics.tick(shardcast_agent::clock::now_ns(), total_lost(&shared));
            std::thread::sleep(MONITOR_TICK);
        }
        if shared.croak.raised() {
            end_reason = "snail";
            croak_queues = queues(&shared, cfg.keyed);
            croak_alarm(cfg, &shared);
        }
    }
    shared.stop_workers.store(true, Ordering::Relaxed);
    let worker_results = join_all(worker_handles);
    for (i, r) in worker_results.iter().enumerate() {
        match r {
            None => eprintln!("shardcast-sub: error: worker-{i} crashed or did not stop"),
            Some(WorkerResult { error: Some(e), .. }) => {
                eprintln!("shardcast-sub: error: worker-{i} failed: {e}")
            }
            Some(_) => continue,
        }
        if end_reason != "snail" {
            end_reason = "error";
        }
    }
    // Every socket was owned by an agent; any agent that did not stop in
    // time still holds its socket, and terminating the context would wait on
    // it forever. The process is about to end, so let the OS reclaim it.
    std::mem::forget(ctx);
    std::mem::forget(stream_ctxs);

    // Every agent has stopped (or is missing): what they recorded is in.
    let lost_now = shard_results
        .iter()
        .flatten()
        .map(|r| r.tracker.totals().lost)
        .sum();
    let (latency, log_ok) = metrics.finish(lost_now);
    for (i, l) in links.iter_mut().enumerate() {
        oversized += l.poll(i, cfg.max_msg_size);
    }
    let link_reports: Vec<_> = links.iter().map(Link::report).collect();
    let (mut report, books) = build_report(
        cfg,
        &shared,
        end_reason,
        shard_results,
        worker_results,
        started.elapsed(),
        &latency,
    );
    report.placement = placement;
    report.files_ok = log_ok;
    report.links = link_reports;
    *report.malformed_reasons.entry("oversized").or_default() += oversized;
    report.malformed += oversized;
    if let Some(snail) = &mut report.snail {
        snail.queues = croak_queues;
        // The forensic report and the alarm come before anything else is
        // written: if a later step fails or hangs, they are already out.
        let forensics = Forensics {
            kind: "shardcast.snail_report",
            version: 1,
            host: forensic::host_name(),
            pid: std::process::id(),
            snail: snail.clone(),
            hwm: HwmReport {
                rcvhwm: cfg.rcvhwm,
                rcvbuf: cfg.rcvbuf,
                inproc_hwm: cfg.inproc_hwm,
                coalesce: cfg.coalesce,
                max_msg_size: cfg.max_msg_size,
            },
            streams: report.streams.clone(),
            shards: report.shards.clone(),
            workers: report.workers.clone(),
            links: report.links.clone(),
            recent_latency: metrics.recent(),
            latency_ns: report.latency_ns.clone(),
            placement: report.placement.clone(),
        };
        let written = cfg
            .snail_report
            .as_deref()
            .map(|p| forensic::write_report(p, &forensics));
        if written == Some(false) {
            report.files_ok = false;
        }
        if let Some(ep) = &cfg.alarm {
            forensic::send_alarm(
                ep,
                &forensic::Alarm {
                    kind: "shardcast.alarm",
                    version: 1,
                    role: "shardcast-sub",
                    host: forensics.host.clone(),
                    pid: forensics.pid,
                    reason: "snail",
                    snail,
                    exit_code: shardcast_agent::exit::SNAIL,
                    snail_report: cfg
                        .snail_report
                        .as_ref()
                        .filter(|_| written == Some(true))
                        .map(|p| p.display().to_string()),
                },
            );
        }
    }
    if let Some(path) = &cfg.plot {
        let title = format!(
            "shardcast-sub: latency by percentile ({} records, {} stream(s))",
            report.counters.received,
            report.streams.len()
        );
        if let Err(e) = metrics::write_plot(path, &latency, &title) {
            eprintln!(
                "shardcast-sub: error: writing --plot {}: {e}",
                path.display()
            );
            report.files_ok = false;
        }
    }
    if let Some(path) = &cfg.hgrm {
        if let Err(e) = metrics::write_hgrm(path, &latency) {
            eprintln!(
                "shardcast-sub: error: writing --hgrm {}: {e}",
                path.display()
            );
            report.files_ok = false;
        }
    }
    report.drained = drained;
    let exit_code = if end_reason == "snail" {
        shardcast_agent::exit::SNAIL
    } else if end_reason == "error"
        || !drained
        || !report.files_ok
        || report
            .links
            .iter()
            .any(|l| l.auth_refused > 0 || l.handshake_failed > 0)
    {
        shardcast_agent::exit::FAILURE
    } else {
        shardcast_agent::exit::OK
    };
    Ok(Outcome {
        report,
        books,
        exit_code,
    })
}

/// The snail's check on workers that are not taking records at all: a
/// worker that sleeps, spins or blocks sees no record, so its own check
/// cannot fire. The monitor sees its `done` counter stand still while
/// records wait for it (keyed: handed to it and not processed; push: any
/// backlog while no worker progresses). The time it has stood still is a
/// lower bound of the age of the record at the head of its queue, measured
/// on our own clock alone, so it holds in either lag mode.
struct Watchdog {
    keyed: bool,
    limit: Duration,
    /// Per worker: last `done` seen, and since when it has not moved while
    /// records waited.
    last: Vec<(u64, Option<Instant>)>,
    warned: Vec<bool>,
}

impl Watchdog {
    fn new(cfg: &Config) -> Watchdog {
        Watchdog {
            keyed: cfg.keyed,
            limit: Duration::from_millis(cfg.max_lag_ms),
            last: vec![(0, None); cfg.workers],
            warned: vec![false; cfg.workers],
        }
    }

    /// Look at the workers; croak (or warn) for one stuck past the limit.
    fn tick(&mut self, sh: &Shared, on_slow: OnSlow) {
        let forwarded: u64 = sh.shards.iter().map(|c| StageCounters::read(&c.done)).sum();
        let done: Vec<u64> = sh
            .workers
            .iter()
            .map(|c| StageCounters::read(&c.done))
            .collect();
        let total_backlog = forwarded.saturating_sub(done.iter().sum());
        let anyone_moved = done.iter().zip(&self.last).any(|(d, (prev, _))| d != prev);
        let now = Instant::now();
        for (w, c) in sh.workers.iter().enumerate() {
            let waiting = if self.keyed {
                StageCounters::read(&c.enqueued) > done[w]
            } else {
                total_backlog > 0 && !anyone_moved
            };
            let (prev, since) = &mut self.last[w];
            if done[w] != *prev || !waiting {
                *prev = done[w];
                *since = None;
                self.warned[w] = false;
                continue;
            }
            let since = *since.get_or_insert(now);
            let stuck = now - since;
            if stuck <= self.limit {
                continue;
            }
            match on_slow {
                OnSlow::Croak => sh.croak.raise(shardcast_agent::watch::SlowEvent {
                    stage: shardcast_agent::watch::Stage::Worker,
                    index: w,
                    lag_ns: stuck.as_nanos() as u64,
                    publisher_id: 0,
                    stream_id: 0,
                    seq: 0,
                    symbol: [0; 8],
                    at_ns: shardcast_agent::clock::now_ns(),
                    watchdog: true,
                }),
                OnSlow::Warn if !self.warned[w] => {
                    self.warned[w] = true;
                    eprintln!(
                        "shardcast-sub: warning: slow consumer: worker-{w} has taken no record for {:.0} ms with records queued for it",
                        stuck.as_secs_f64() * 1e3
                    );
                }
                OnSlow::Warn => {}
            }
        }
    }
}

/// `--on-slow warn`: at most one warning line a second, only when more
/// messages went over the limit since the last one.
struct SlowWarner {
    enabled: bool,
    keyed: bool,
    max_lag_ms: u64,
    last: Option<Instant>,
    warned: u64,
}

impl SlowWarner {
    fn new(cfg: &Config) -> SlowWarner {
        SlowWarner {
            enabled: cfg.on_slow == OnSlow::Warn,
            keyed: cfg.keyed,
            max_lag_ms: cfg.max_lag_ms,
            last: None,
            warned: 0,
        }
    }

    fn tick(&mut self, sh: &Shared) {
        if !self.enabled
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let slow = total_slow(sh);
        if slow > self.warned {
            eprintln!(
                "shardcast-sub: warning: slow consumer: {} messages over {} ms so far (max lag {:.1} ms); {}",
                slow,
                self.max_lag_ms,
                max_lag(sh) as f64 / 1e6,
                queue_line(sh, self.keyed)
            );
            self.warned = slow;
            self.last = Some(Instant::now());
        }
    }
}

fn fmt_cpu(c: Option<usize>) -> String {
    c.map_or_else(|| "any".into(), |c| c.to_string())
}

fn total_slow(sh: &Shared) -> u64 {
    sh.shards
        .iter()
        .chain(&sh.workers)
        .map(|c| StageCounters::read(&c.slow))
        .sum()
}

fn total_lost(sh: &Shared) -> u64 {
    sh.shards.iter().map(|c| StageCounters::read(&c.lost)).sum()
}

fn max_lag(sh: &Shared) -> u64 {
    sh.shards
        .iter()
        .chain(&sh.workers)
        .map(|c| StageCounters::read(&c.max_lag_ns))
        .max()
        .unwrap_or(0)
}

fn queues(sh: &Shared, keyed: bool) -> Vec<QueueState> {
    let forwarded: u64 = sh.shards.iter().map(|c| StageCounters::read(&c.done)).sum();
    let processed: u64 = sh
        .workers
        .iter()
        .map(|c| StageCounters::read(&c.done))
        .sum();
    let mut q: Vec<QueueState> = sh
        .shards
        .iter()
        .enumerate()
        .map(|(i, c)| QueueState {
            agent: format!("shard-{i}"),
            records: StageCounters::read(&c.done),
            last_seq: Some(StageCounters::read(&c.last_seq)),
            backlog: None,
        })
        .collect();
    q.extend(sh.workers.iter().enumerate().map(|(i, c)| {
        let done = StageCounters::read(&c.done);
        QueueState {
            agent: format!("worker-{i}"),
            records: done,
            last_seq: None,
            // Under push fan-out libzmq picks the worker: only the total is
            // known.
            backlog: keyed.then(|| StageCounters::read(&c.enqueued).saturating_sub(done)),
        }
    }));
    q.push(QueueState {
        agent: "workers".into(),
        records: processed,
        last_seq: None,
        backlog: Some(forwarded.saturating_sub(processed)),
    });
    q
}

fn queue_line(sh: &Shared, keyed: bool) -> String {
    queues(sh, keyed)
        .iter()
        .map(|q| match (q.last_seq, q.backlog) {
            (Some(s), _) => format!("{} forwarded {} last seq {}", q.agent, q.records, s),
            (None, Some(b)) => format!("{} processed {} backlog {}", q.agent, q.records, b),
            _ => format!("{} processed {}", q.agent, q.records),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Suicidal Snail's loud part: one alarm line on stderr.
fn croak_alarm(cfg: &Config, sh: &Shared) {
    if let Some(ev) = sh.croak.event().filter(|e| e.watchdog) {
        eprintln!(
            "shardcast-sub: SNAIL ALARM: {}-{} has taken no record for {:.1} ms with records queued for it \
             (limit {} ms, measured on this host's clock): queues: {}; exiting with code {}",
            ev.stage.name(),
            ev.index,
            ev.lag_ns as f64 / 1e6,
            cfg.max_lag_ms,
            queue_line(sh, cfg.keyed),
            shardcast_agent::exit::SNAIL
        );
    } else if let Some(ev) = sh.croak.event() {
        eprintln!(
            "shardcast-sub: SNAIL ALARM: {}-{} saw a message {:.1} ms old (limit {} ms, {}): \
             publisher {} stream {} seq {} symbol {}; queues: {}; exiting with code {}",
            ev.stage.name(),
            ev.index,
            ev.lag_ns as f64 / 1e6,
            cfg.max_lag_ms,
            lag_basis(cfg, ev.stage),
            ev.publisher_id,
            ev.stream_id,
            ev.seq,
            Symbol(ev.symbol),
            queue_line(sh, cfg.keyed),
            shardcast_agent::exit::SNAIL
        );
    }
}

/// What a lag was measured against, for the alarm line.
fn lag_basis(cfg: &Config, stage: shardcast_agent::watch::Stage) -> &'static str {
    match (cfg.snail_mode, stage) {
        (LagMode::Absolute, _) => "absolute: receive time minus send time",
        (LagMode::Relative, shardcast_agent::watch::Stage::Shard) => {
            "relative: age above the stream's smallest age in the window"
        }
        (LagMode::Relative, shardcast_agent::watch::Stage::Worker) => {
            "relative: time in this subscriber's worker queue"
        }
    }
}

fn snapshot_placement() -> Vec<Placement> {
    cpu::placement()
        .into_iter()
        .map(|(thread, cpu)| Placement { thread, cpu })
        .collect()
}

/// Join agents that finish within the grace period; a stuck one is reported
/// as missing rather than hanging the process.
fn join_all<T>(handles: Vec<JoinHandle<T>>) -> Vec<Option<T>> {
    let deadline = Instant::now() + JOIN_GRACE;
    while Instant::now() < deadline && !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(MONITOR_TICK);
    }
    handles
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            if h.is_finished() {
                let r = h.join().ok();
                if r.is_none() {
                    eprintln!("shardcast-sub: error: agent {i} panicked; its counts are missing from the report");
                }
                r
            } else {
                eprintln!("shardcast-sub: agent {i} did not stop within {JOIN_GRACE:?}; its counts are missing from the report");
                None
            }
        })
        .collect()
}

fn build_report(
    cfg: &Config,
    sh: &Shared,
    end_reason: &'static str,
    shards: Vec<Option<ShardResult>>,
    workers: Vec<Option<WorkerResult>>,
    wall: Duration,
    latency: &StageHists,
) -> (Report, Books) {
    let mut streams = Vec::new();
    let mut malformed_reasons: BTreeMap<&'static str, u64> =
        DecodeError::REASONS.iter().map(|r| (*r, 0)).collect();
    let mut totals = shardcast_proto::seq::Counters::default();
    let mut refused = 0;
    let mut ts_future = 0;
    let mut first_rx = u64::MAX;
    let mut last_rx = 0;
    let mut shard_reports = Vec::new();
    for (i, r) in shards.iter().enumerate() {
        let plan = &cfg.shards[i];
        let Some(r) = r else {
            continue;
        };
        for (k, n) in r.malformed.iter().enumerate() {
            *malformed_reasons
                .entry(DecodeError::REASONS[k])
                .or_default() += n;
        }
        refused += r.tracker.refused();
        ts_future += r.ts_future;
        if r.first_rx_ns != 0 {
            first_rx = first_rx.min(r.first_rx_ns);
            last_rx = last_rx.max(r.last_rx_ns);
        }
        totals += r.tracker.totals();
        for st in r.tracker.streams() {
            streams.push(StreamReport {
                shard: i,
                publisher_id: st.key().publisher_id,
                stream_id: st.key().stream_id,
                session: st.session(),
                first_seq: st.first_seq(),
                last_seq: st.last_seq(),
                counters: st.counters(),
                eos: st.ended(),
                eos_last_seq: st.eos().map(|e| e.last_seq),
                checksum_ok: st.eos().is_some_and(|e| e.checksum == st.checksum()),
                complete: st.complete(),
            });
        }
        shard_reports.push(AgentReport {
            name: format!("shard-{i}"),
            cpu: plan.cpu,
            records: r.forwarded,
            frames: r.frames,
            slow: r.slow,
            max_lag_ns: r.max_lag_ns,
            checksum: None,
            endpoint: Some(plan.endpoint.clone()),
            error: r.error.map(|e| e.to_string()),
        });
    }
    let mut books = Books::new();
    let mut processed = 0;
    let mut clock_ahead = 0;
    let mut unknown_symbol = 0;
    let mut checksum = 0u64;
    let mut worker_reports = Vec::new();
    let mut slow = SlowReport {
        max_lag_ms: cfg.max_lag_ms,
        on_slow: match cfg.on_slow {
            OnSlow::Croak => "croak",
            OnSlow::Warn => "warn",
        },
        mode: cfg.snail_mode.name(),
        window_s: (cfg.snail_mode == LagMode::Relative).then_some(cfg.snail_window.as_secs_f64()),
        ..SlowReport::default()
    };
    for s in shard_reports.iter() {
        slow.count += s.slow;
        slow.max_lag_ns = slow.max_lag_ns.max(s.max_lag_ns);
    }
    for (i, w) in workers.into_iter().enumerate() {
        let Some(w) = w else { continue };
        processed += w.processed;
        clock_ahead += w.clock_ahead;
        unknown_symbol += w.unknown_symbol;
        checksum = checksum.wrapping_add(w.checksum);
        let wslow = StageCounters::read(&sh.workers[i].slow);
        slow.count += wslow;
        slow.max_lag_ns = slow.max_lag_ns.max(w.max_lag_ns);
        worker_reports.push(AgentReport {
            name: format!("worker-{i}"),
            cpu: cfg.worker_cpus[i],
            records: w.processed,
            frames: w.frames,
            slow: wslow,
            max_lag_ns: w.max_lag_ns,
            checksum: (cfg.work == WorkKind::Checksum).then_some(w.checksum),
            endpoint: None,
            error: w.error.map(|e| e.to_string()),
        });
        books.merge(w.books);
    }
    let elapsed_s = if last_rx > first_rx {
        (last_rx - first_rx) as f64 / 1e9
    } else {
        wall.as_secs_f64()
    };
    let snail = if end_reason == "snail" {
        sh.croak.event().map(|ev| SnailReport {
            stage: ev.stage.name(),
            agent: format!("{}-{}", ev.stage.name(), ev.index),
            lag_ns: ev.lag_ns,
            max_lag_ms: cfg.max_lag_ms,
            mode: slow.mode,
            publisher_id: ev.publisher_id,
            stream_id: ev.stream_id,
            seq: ev.seq,
            symbol: Symbol(ev.symbol).to_string(),
            at_ns: ev.at_ns,
            detected_by: if ev.watchdog { "watchdog" } else { "record" },
            queues: queues(sh, cfg.keyed),
        })
    } else {
        None
    };
    let malformed = malformed_reasons.values().sum();
    let latency_ns: BTreeMap<&'static str, LatencySummary> = STAGE_NAMES
        .iter()
        .zip(latency.iter())
        .map(|(name, h)| (*name, LatencySummary::of(h)))
        .collect();
    let warmup_records = shards.iter().flatten().map(|r| r.warmup_records).sum();
    let report = Report {
        role: "shardcast-sub",
        version: env!("CARGO_PKG_VERSION"),
        end_reason,
        counters: totals,
        malformed,
        malformed_reasons,
        refused_sources: refused,
        suspect_reasons: BTreeMap::from([
            ("seq_jump", totals.seq_jumps),
            ("ts_future", ts_future),
            ("unknown_symbol", unknown_symbol),
            ("refused_source", refused),
        ]),
        processed,
        clock_ahead,
        elapsed_s,
        msgs_per_sec: if elapsed_s > 0.0 {
            totals.received as f64 / elapsed_s
        } else {
            0.0
        },
        // Every shard must have seen at least one stream, whole: a shard
        // that heard nothing has proven nothing.
        streams_complete: shards.iter().all(|r| {
            r.as_ref()
                .is_some_and(|r| r.error.is_none() && !r.tracker.streams().is_empty())
        }) && streams.iter().all(|s| s.complete),
        streams,
        shards: shard_reports,
        links: Vec::new(),
        workers: worker_reports,
        latency_ns,
        slow,
        snail,
        processed_checksum: (cfg.work == WorkKind::Checksum).then_some(checksum),
        drained: true,
        warmup_records,
        files_ok: true,
        placement: Vec::new(),
    };
    (report, books)
}

impl Report {
    /// The human summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let e2e = self
            .latency_ns
            .get("end_to_end")
            .copied()
            .unwrap_or_default();
        format!(
            "shardcast-sub: ended by {}; {} streams: received {} msgs in {:.3} s = {:.0} msg/s; lost {}, duplicates {}, malformed {}, \
             restarts {}, missed before join {}; streams complete: {}\n\
             shardcast-sub: end-to-end latency (intended send -> work done): {}",
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
