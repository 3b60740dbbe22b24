//! The monitor: the main thread while the agents run. It watches the board
//! (the Suicidal Snail's watchdog, slow warnings, queue sampling, the live
//! line), decides when the run ends, then stops the shards, lets the workers
//! drain, and joins everyone. It hands plain snapshots to report assembly.

use crate::config::Config;
use crate::forensic;
use crate::metrics::Metrics;
use crate::shard::ShardResult;
use crate::snapshot::{EndReason, Placement, QueueState};
use crate::wiring::Agents;
use shardcast_agent::clock::now_ns;
use shardcast_agent::cpu;
use shardcast_agent::lag::OnSlow;
use shardcast_agent::signals::StopSignal;
use shardcast_agent::watch::{AgentCounters, AgentKind, Board, SlowEvent};
use shardcast_workers::WorkerResult;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the monitor looks at the agents while records flow.
const MONITOR_TICK: Duration = Duration::from_millis(5);
/// How often it looks while nothing moves (a quiet feed, or everything
/// stuck): an idle subscriber wakes 20 times a second, not 200 (issue 11:
/// no idle CPU burnt), still far inside the snail's lag budget and a
/// signal's expected response time.
const QUIET_TICK: Duration = Duration::from_millis(50);
/// How long stopped agents get to hand back their results.
const JOIN_GRACE: Duration = Duration::from_secs(5);

/// What the monitor saw while the agents ran.
#[derive(Debug)]
pub struct Watched {
    /// Why it ended.
    pub end: EndReason,
    /// Where each thread ran, sampled once the run had settled.
    pub placement: Vec<Placement>,
    /// The queues when the snail croaked (empty otherwise).
    pub croak_queues: Vec<QueueState>,
    /// Frames the shards' connections were cut off for (over
    /// --max-msg-size), from the socket monitors.
    pub oversized: u64,
    /// When the monitor started.
    pub started: Instant,
}

/// What the agents handed back, and how the stop went.
#[derive(Debug)]
pub struct Stopped {
    /// Per shard; `None` for one that crashed or did not stop.
    pub shards: Vec<Option<ShardResult>>,
    /// Per worker; `None` for one that crashed or did not stop.
    pub workers: Vec<Option<WorkerResult>>,
    /// The workers processed everything the shards forwarded.
    pub drained: bool,
    /// Every agent joined (so its sockets are closed).
    pub all_joined: bool,
}

/// Watch the running agents until the run ends: end-of-stream on every
/// shard, `--duration`, a signal, or the snail's croak.
pub fn watch(
    cfg: &Config,
    board: &Board,
    agents: &mut Agents,
    metrics: &mut Metrics,
    signal: &StopSignal,
) -> Watched {
    let mut w = Watched {
        end: EndReason::EndOfStream,
        placement: Vec::new(),
        croak_queues: Vec::new(),
        oversized: 0,
        started: Instant::now(),
    };
    let mut warn = SlowWarner::new(cfg);
    let mut watchdog = Watchdog::new(cfg);
    let mut seen = u64::MAX;
    loop {
        // Records the shards forwarded (heartbeats are not records): while
        // they move, the fast tick.
        let forwarded = board.shards_sum(|c| &c.done);
        let tick = if forwarded == seen {
            QUIET_TICK
        } else {
            MONITOR_TICK
        };
        seen = forwarded;
        std::thread::sleep(tick);
        warn.tick(board);
        metrics.tick(now_ns(), board.shards_sum(|c| &c.lost));
        w.oversized += poll_links(cfg, agents);
        watchdog.tick(board, cfg.on_slow);
        if board.croak.raised() {
            // The queues as they were when it happened: the forensic part.
            w.croak_queues = queues(board, cfg.keyed);
            w.end = EndReason::Snail;
            break;
        }
        if signal.raised() {
            w.end = EndReason::Signal;
            break;
        }
        if cfg.duration.is_some_and(|d| w.started.elapsed() >= d) {
            w.end = EndReason::Duration;
            break;
        }
        // A shard whose only connection libzmq cut off can never end: it
        // counts as done (and is reported as stopped before end-of-stream).
        if agents
            .shards
            .iter()
            .zip(&agents.links)
            .all(|(h, l)| h.is_finished() || l.is_dead())
        {
            break;
        }
        if w.placement.is_empty() && w.started.elapsed() > Duration::from_millis(200) {
            w.placement = placement();
        }
    }
    if w.placement.is_empty() {
        w.placement = placement();
    }
    if w.end == EndReason::Snail {
        croak_alarm(cfg, board);
    }
    w
}

/// Take in every shard connection's monitor events; returns new cut-offs.
fn poll_links(cfg: &Config, agents: &mut Agents) -> u64 {
    agents
        .links
        .iter_mut()
        .enumerate()
        .map(|(i, l)| l.poll(i, cfg.max_msg_size))
        .sum()
}

/// Stop the shards, let the workers drain what was forwarded (unless the
/// snail croaked: then nothing more is worth waiting for), stop the workers,
/// and join everyone.
pub fn stop_and_drain(
    cfg: &Config,
    board: &Board,
    agents: &mut Agents,
    metrics: &mut Metrics,
    w: &mut Watched,
) -> Stopped {
    board.stop_shards.store(true, Ordering::Relaxed);
    let (shards, inline): (Vec<_>, Vec<_>) = join_all(std::mem::take(&mut agents.shards))
        .into_iter()
        .map(|r| match r {
            Some((s, w)) => (Some(s), w),
            None => (None, None),
        })
        .unzip();
    for (i, r) in shards.iter().enumerate() {
        match r {
            None => eprintln!("shardcast-sub: error: shard-{i} crashed or did not stop"),
            Some(ShardResult { error: Some(e), .. }) => {
                eprintln!("shardcast-sub: error: shard-{i} failed: {e}")
            }
            // Stopped by the monitor while blocked on a full worker queue.
            Some(r) if w.end == EndReason::EndOfStream && !r.ended => {
                eprintln!("shardcast-sub: error: shard-{i} stopped before end-of-stream")
            }
            Some(_) => continue,
        }
        w.end.fail();
    }
    let forwarded: u64 = shards.iter().flatten().map(|r| r.forwarded).sum();
    let mut drained = true;
    if w.end != EndReason::Snail {
        drained = drain(cfg, board, metrics, forwarded);
        if board.croak.raised() {
            w.end = EndReason::Snail;
            w.croak_queues = queues(board, cfg.keyed);
            croak_alarm(cfg, board);
        }
    }
    board.stop_workers.store(true, Ordering::Relaxed);
    let workers = if cfg.inline {
        inline
    } else {
        join_all(std::mem::take(&mut agents.workers))
    };
    for (i, r) in workers.iter().enumerate() {
        match r {
            None => eprintln!("shardcast-sub: error: worker-{i} crashed or did not stop"),
            Some(WorkerResult { error: Some(e), .. }) => {
                eprintln!("shardcast-sub: error: worker-{i} failed: {e}")
            }
            Some(_) => continue,
        }
        w.end.fail();
    }
    w.oversized += poll_links(cfg, agents);
    let all_joined = shards.iter().all(Option::is_some) && workers.iter().all(Option::is_some);
    Stopped {
        shards,
        workers,
        drained,
        all_joined,
    }
}

/// Wait, up to --drain-timeout-ms, for the workers to process the
/// `forwarded` records; false (and an error line) when they did not.
fn drain(cfg: &Config, board: &Board, metrics: &mut Metrics, forwarded: u64) -> bool {
    let mut warn = SlowWarner::new(cfg);
    let deadline = Instant::now() + cfg.drain_timeout;
    loop {
        let done = board.workers_sum(|c| &c.done);
        if done >= forwarded || board.croak.raised() {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "shardcast-sub: error: workers processed {done} of {forwarded} forwarded records within --drain-timeout-ms {}; the rest is lost",
                cfg.drain_timeout.as_millis()
            );
            return false;
        }
        // No watchdog here: a shard stopped while blocked on a full worker
        // queue counted records as handed over that never left it, and the
        // drain limit already bounds this phase.
        warn.tick(board);
        metrics.tick(now_ns(), board.shards_sum(|c| &c.lost));
        std::thread::sleep(MONITOR_TICK);
    }
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
    fn tick(&mut self, board: &Board, on_slow: OnSlow) {
        let forwarded = board.shards_sum(|c| &c.done);
        let done: Vec<u64> = board
            .workers
            .iter()
            .map(|c| AgentCounters::read(&c.done))
            .collect();
        let total_backlog = forwarded.saturating_sub(done.iter().sum());
        let anyone_moved = done.iter().zip(&self.last).any(|(d, (prev, _))| d != prev);
        let now = Instant::now();
        for (w, c) in board.workers.iter().enumerate() {
            let waiting = if self.keyed {
                AgentCounters::read(&c.enqueued) > done[w]
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
            let stuck = now - *since.get_or_insert(now);
            if stuck <= self.limit {
                continue;
            }
            match on_slow {
                OnSlow::Croak => board.croak.raise(SlowEvent {
                    stage: AgentKind::Worker,
                    index: w,
                    lag_ns: stuck.as_nanos() as u64,
                    publisher_id: 0,
                    stream_id: 0,
                    seq: 0,
                    symbol: [0; 8],
                    at_ns: now_ns(),
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

    fn tick(&mut self, board: &Board) {
        if !self.enabled
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let slow = board.shards_sum(|c| &c.slow) + board.workers_sum(|c| &c.slow);
        if slow > self.warned {
            eprintln!(
                "shardcast-sub: warning: slow consumer: {} messages over {} ms so far (max lag {:.1} ms); {}",
                slow,
                self.max_lag_ms,
                max_lag(board) as f64 / 1e6,
                queue_line(board, self.keyed)
            );
            self.warned = slow;
            self.last = Some(Instant::now());
        }
    }
}

fn max_lag(board: &Board) -> u64 {
    board
        .shards
        .iter()
        .chain(&board.workers)
        .map(|c| AgentCounters::read(&c.max_lag_ns))
        .max()
        .unwrap_or(0)
}

/// Every queue now: per shard what it forwarded, per worker what it
/// processed (and, keyed, its backlog), and the workers' total backlog.
pub fn queues(board: &Board, keyed: bool) -> Vec<QueueState> {
    let forwarded = board.shards_sum(|c| &c.done);
    let processed = board.workers_sum(|c| &c.done);
    let mut q: Vec<QueueState> = board
        .shards
        .iter()
        .enumerate()
        .map(|(i, c)| QueueState {
            agent: format!("shard-{i}"),
            records: AgentCounters::read(&c.done),
            last_seq: Some(AgentCounters::read(&c.last_seq)),
            backlog: None,
        })
        .collect();
    q.extend(board.workers.iter().enumerate().map(|(i, c)| {
        let done = AgentCounters::read(&c.done);
        QueueState {
            agent: format!("worker-{i}"),
            records: done,
            last_seq: None,
            // Under push fan-out libzmq picks the worker: only the total is
            // known.
            backlog: keyed.then(|| AgentCounters::read(&c.enqueued).saturating_sub(done)),
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

/// The queues as one line, for warnings and the alarm.
fn queue_line(board: &Board, keyed: bool) -> String {
    queues(board, keyed)
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
fn croak_alarm(cfg: &Config, board: &Board) {
    if let Some(ev) = board.croak.event() {
        eprintln!(
            "{}",
            forensic::alarm_line(cfg, &ev, &queue_line(board, cfg.keyed))
        );
    }
}

fn placement() -> Vec<Placement> {
    cpu::placement()
        .into_iter()
        .map(|(thread, cpu)| Placement { thread, cpu })
        .collect()
}
