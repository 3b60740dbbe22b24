//! Sockets and threads, built from the resolved configuration (the way
//! ripgrep's `HiArgs` builds the real objects from flags). Every socket
//! option the subscriber sets is set here: [`inproc_options`] for the
//! shard-to-worker hops, [`sub_options`] for each stream's SUB.
//!
//! All sockets are made and wired before any thread starts, so a wiring
//! error is reported with nothing running; each socket is then moved to its
//! one owner thread.

use crate::config::{is_multicast, Config, ShardPlan};
use crate::links::Link;
use crate::metrics::Metrics;
use crate::shard::{
    run_shard, CatchUpLink, RecoverLink, RecoverSetup, ShardResult, ShardSetup, ShardSockets,
};
use crate::RunError;
use shardcast_agent::clock::now_ns;
use shardcast_agent::cpu::spawn_agent;
use shardcast_agent::curve;
use shardcast_agent::exit::{ioerr, zerr};
use shardcast_agent::presence;
use shardcast_agent::watch::Board;
use shardcast_agent::zmqx::socket_with_own_io_thread;
use shardcast_proto::wire::CONTROL_TOPIC;
use shardcast_workers::{run_worker, WorkerCore, WorkerResult, WorkerSetup};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

/// How long an idle agent blocks in libzmq before it looks at its stop flag.
const POLL_MS: i32 = 50;

/// The libzmq contexts of a run: one for the inproc hops (no I/O thread),
/// one per stream (one I/O thread each).
pub struct Contexts {
    inproc: zmq::Context,
    streams: Vec<zmq::Context>,
}

impl Contexts {
    /// End the contexts. Terminating a context waits for every socket on it
    /// to close, so it is only done when every agent joined (their sockets
    /// closed with them); if one did not stop in time it still holds a
    /// socket, and the contexts are left for the OS to reclaim instead of
    /// hanging the caller.
    pub fn close(self, every_agent_joined: bool) {
        if every_agent_joined {
            drop(self.inproc);
            drop(self.streams);
        } else {
            std::mem::forget(self.inproc);
            std::mem::forget(self.streams);
        }
    }
}

/// Every socket of the run, wired, before any thread starts.
pub struct Wired {
    contexts: Contexts,
    pulls: Vec<zmq::Socket>,
    shards: Vec<ShardSockets>,
    links: Vec<Link>,
}

/// The running agents.
pub struct Agents {
    /// Shard threads, by index; inline (`--workers 0`), each also hands
    /// back its work's result.
    pub shards: Vec<JoinHandle<(ShardResult, Option<WorkerResult>)>>,
    /// Worker threads, by index.
    pub workers: Vec<JoinHandle<WorkerResult>>,
    /// Each shard's connection monitor (owned by the monitor thread).
    pub links: Vec<Link>,
    /// Closed last, after every socket.
    pub contexts: Contexts,
}

/// Options of every inproc socket (shard PUSH, worker PULL).
fn inproc_options(s: &zmq::Socket, cfg: &Config) -> Result<(), RunError> {
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
}

/// Options of one shard's SUB, before it connects.
fn sub_options(sub: &zmq::Socket, cfg: &Config, plan: &ShardPlan) -> Result<(), RunError> {
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
            curve::make_client(sub, &c.keys, &c.server)
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
    // --id: the presence topic names us to the publisher (or relay); it
    // matches no frame. libzmq sends it with the other subscriptions when
    // the socket connects (and again on each reconnect).
    if let Some(id) = &cfg.id {
        sub.set_subscribe(&presence::topic(id))
            .map_err(zerr(format!(
                "subscribing to the presence topic of --id {id}"
            )))?;
    }
    // The control topic carries heartbeats, end-of-stream and batches, and
    // is what a publisher's --wait-subscribers counts.
    sub.set_subscribe(CONTROL_TOPIC)
        .map_err(zerr("subscribing to the control topic"))?;
    if cfg.subscribe.is_empty() {
        sub.set_subscribe(b"").map_err(zerr("subscribing"))?;
    }
    // --subscribe: only these symbols (the publisher filters single-record
    // frames; its batches carry every symbol and start with the control
    // topic, and the shard leaves the others out).
    for p in &cfg.subscribe {
        sub.set_subscribe(p.as_bytes())
            .map_err(zerr(format!("subscribing to --subscribe {p}")))?;
    }
    Ok(())
}

impl Wired {
    /// Make and wire every socket of the run.
    pub fn build(cfg: &Config) -> Result<Wired, RunError> {
        // The inproc context: shard-to-worker hops only, so no I/O thread.
        let inproc = zmq::Context::new();
        inproc
            .set_io_threads(0)
            .map_err(zerr("setting ZMQ_IO_THREADS"))?;
        let pulls = Self::worker_pulls(cfg, &inproc)?;
        let mut shards = Vec::with_capacity(cfg.shards.len());
        let mut streams = Vec::with_capacity(cfg.shards.len());
        let mut links = Vec::with_capacity(cfg.shards.len());
        for plan in &cfg.shards {
            let outs = Self::shard_pushes(cfg, &inproc, plan.index, &pulls)?;
            // Each shard's SUB lives on a context of its own with one I/O
            // thread, so streams never share an I/O thread and each can be
            // pinned to its core.
            let own = socket_with_own_io_thread(zmq::SUB, &plan.index.to_string(), plan.io_cpu)?;
            if let Some(c) = plan.io_cpu {
                for (name, _) in &own.threads {
                    eprintln!("shardcast-sub: {name} pinned to CPU {c}");
                }
            }
            sub_options(&own.socket, cfg, plan)?;
            links.push(Link::watch(
                &own.ctx,
                &own.socket,
                plan.index,
                &plan.endpoint,
            )?);
            own.socket.connect(&plan.connect).map_err(zerr(format!(
                "connecting shard {} to {} (check --connect/--iface)",
                plan.index, plan.connect
            )))?;
            let catch_up = match &cfg.catch_up {
                Some(ep) => {
                    // On the stream's own context: its I/O thread carries
                    // the history, as it carries the stream.
                    let d = own
                        .ctx
                        .socket(zmq::DEALER)
                        .map_err(zerr("creating the --catch-up DEALER"))?;
                    d.set_linger(0).map_err(zerr("setting ZMQ_LINGER"))?;
                    let ms = i32::try_from(cfg.catch_up_timeout.as_millis()).unwrap_or(i32::MAX);
                    d.set_sndtimeo(ms).map_err(zerr("setting ZMQ_SNDTIMEO"))?;
                    d.connect(ep)
                        .map_err(zerr(format!("connecting --catch-up to {ep}")))?;
                    Some(CatchUpLink {
                        dealer: d,
                        timeout: cfg.catch_up_timeout,
                    })
                }
                None => None,
            };
            let sub_b = match &plan.connect_b {
                Some(ep) => {
                    // Its own context, so its own I/O thread (on its own
                    // NIC, typically): a stall of one line's I/O thread
                    // must not hold the other.
                    let b = socket_with_own_io_thread(
                        zmq::SUB,
                        &format!("{}b", plan.index),
                        plan.io_cpu,
                    )?;
                    sub_options(&b.socket, cfg, plan)?;
                    b.socket.connect(ep).map_err(zerr(format!(
                        "connecting shard {} line B to {ep} (check --connect-b)",
                        plan.index
                    )))?;
                    eprintln!(
                        "shardcast-sub: shard-{} line B connected to {ep}",
                        plan.index
                    );
                    streams.push(b.ctx);
                    Some(b.socket)
                }
                None => None,
            };
            let recover = if cfg.recover_from.is_empty() {
                None
            } else {
                let mut links = Vec::with_capacity(cfg.recover_from.len());
                for ep in &cfg.recover_from {
                    // On the stream's own context, as --catch-up.
                    let d = own
                        .ctx
                        .socket(zmq::DEALER)
                        .map_err(zerr("creating a --recover-from DEALER"))?;
                    d.set_linger(0).map_err(zerr("setting ZMQ_LINGER"))?;
                    // A source not connected (yet) must not hold a repair
                    // past its window: the send gives up with it.
                    let ms = i32::try_from(cfg.reorder_window_time.as_millis()).unwrap_or(i32::MAX);
                    d.set_sndtimeo(ms).map_err(zerr("setting ZMQ_SNDTIMEO"))?;
                    d.connect(ep)
                        .map_err(zerr(format!("connecting --recover-from to {ep}")))?;
                    links.push(RecoverLink {
                        endpoint: ep.clone(),
                        dealer: d,
                    });
                }
                Some(RecoverSetup {
                    links,
                    window: cfg.reorder_window,
                    timeout: cfg.reorder_window_time,
                })
            };
            shards.push(ShardSockets {
                sub: own.socket,
                outs,
                catch_up,
                recover,
                sub_b,
                line_wait: cfg.line_wait,
                subscribe: cfg.subscribe.clone(),
            });
            streams.push(own.ctx);
        }
        Ok(Wired {
            contexts: Contexts { inproc, streams },
            pulls,
            shards,
            links,
        })
    }

    /// One PULL per worker; bound under keyed fan-out (shards connect to
    /// the worker that owns a symbol).
    fn worker_pulls(cfg: &Config, ctx: &zmq::Context) -> Result<Vec<zmq::Socket>, RunError> {
        if cfg.inline {
            return Ok(Vec::new());
        }
        (0..cfg.workers)
            .map(|w| {
                let pull = ctx
                    .socket(zmq::PULL)
                    .map_err(zerr("creating worker PULL"))?;
                inproc_options(&pull, cfg)?;
                if cfg.keyed {
                    pull.bind(&format!("inproc://shardcast-worker-{w}"))
                        .map_err(zerr("binding worker PULL"))?;
                }
                Ok(pull)
            })
            .collect()
    }

    /// Shard `s`'s PUSH sockets: one per worker under keyed fan-out; one,
    /// bound, under push fan-out, which every worker's PULL connects to
    /// (the Guide's Black Box: every worker pulls from every shard, and
    /// libzmq balances).
    fn shard_pushes(
        cfg: &Config,
        ctx: &zmq::Context,
        s: usize,
        pulls: &[zmq::Socket],
    ) -> Result<Vec<zmq::Socket>, RunError> {
        if cfg.inline {
            return Ok(Vec::new());
        }
        let push = || -> Result<zmq::Socket, RunError> {
            let p = ctx.socket(zmq::PUSH).map_err(zerr("creating shard PUSH"))?;
            inproc_options(&p, cfg)?;
            Ok(p)
        };
        if cfg.keyed {
            return (0..cfg.workers)
                .map(|w| {
                    let p = push()?;
                    p.connect(&format!("inproc://shardcast-worker-{w}"))
                        .map_err(zerr("connecting shard PUSH"))?;
                    Ok(p)
                })
                .collect();
        }
        let p = push()?;
        let addr = format!("inproc://shardcast-shard-{s}");
        p.bind(&addr).map_err(zerr("binding shard PUSH"))?;
        for pull in pulls {
            pull.connect(&addr)
                .map_err(zerr("connecting worker PULL"))?;
        }
        Ok(vec![p])
    }

    /// Start the workers, then the shards, each a named agent pinned where
    /// the plan says. If one cannot start, those already running are
    /// stopped and joined before the error is returned.
    pub fn spawn(
        self,
        cfg: &Config,
        board: &Arc<Board>,
        metrics: &Metrics,
    ) -> Result<Agents, RunError> {
        let mut agents = Agents {
            shards: Vec::with_capacity(cfg.shards.len()),
            workers: Vec::with_capacity(cfg.workers),
            links: self.links,
            contexts: self.contexts,
        };
        match Self::start(cfg, board, metrics, self.pulls, self.shards, &mut agents) {
            Ok(()) => Ok(agents),
            Err(e) => {
                board.stop_shards.store(true, Ordering::Relaxed);
                board.stop_workers.store(true, Ordering::Relaxed);
                let joined = agents
                    .shards
                    .into_iter()
                    .map(|h| h.join().is_ok())
                    .chain(agents.workers.into_iter().map(|h| h.join().is_ok()))
                    .all(|ok| ok);
                drop(agents.links);
                agents.contexts.close(joined);
                Err(e)
            }
        }
    }

    fn start(
        cfg: &Config,
        board: &Arc<Board>,
        metrics: &Metrics,
        pulls: Vec<zmq::Socket>,
        shards: Vec<ShardSockets>,
        agents: &mut Agents,
    ) -> Result<(), RunError> {
        let limit = cfg.lag_limit();
        let keyed_workers = cfg.keyed.then_some(cfg.workers);
        let worker_setup = |w: usize| WorkerSetup {
            index: w,
            // Inline, a shard's worker takes every record the shard took.
            keyed_workers: if cfg.inline { None } else { keyed_workers },
            work: cfg.work,
            work_ns: cfg.work_ns,
            limit,
            on_slow: cfg.on_slow,
            idle: cfg.idle,
            stall: if w == 0 { cfg.stall_worker } else { None },
            max_symbols: cfg.max_symbols,
        };
        for (w, pull) in pulls.into_iter().enumerate() {
            let setup = worker_setup(w);
            let board = Arc::clone(board);
            let rec = metrics.recorder();
            let h = spawn_agent(format!("worker-{w}"), cfg.worker_cpus[w], move || {
                run_worker(setup, pull, &board, rec)
            })
            .map_err(ioerr("starting a worker thread"))?;
            agents.workers.push(h);
        }
        let (idle, coalesce) = (cfg.idle, cfg.coalesce);
        for (plan, io) in cfg.shards.iter().zip(shards) {
            let setup = ShardSetup {
                index: plan.index,
                // Inline: one "worker", the shard itself, which counts what
                // it hands itself as that worker's `enqueued`.
                keyed_workers: if cfg.inline { Some(1) } else { keyed_workers },
                limit,
                on_slow: cfg.on_slow,
            };
            let board = Arc::clone(board);
            let rec = metrics.recorder();
            let inline = cfg
                .inline
                .then(|| (worker_setup(plan.index), metrics.recorder()));
            let h = spawn_agent(format!("shard-{}", plan.index), plan.cpu, move || {
                let inline = inline.map(|(setup, rec)| WorkerCore::new(setup, rec, now_ns()));
                run_shard(setup, idle, coalesce, io, &board, rec, inline)
            })
            .map_err(ioerr("starting a shard thread"))?;
            agents.shards.push(h);
            eprintln!(
                "shardcast-sub: shard-{} connected to {} (cpu {}, io cpu {})",
                plan.index,
                plan.connect,
                fmt_cpu(plan.cpu),
                fmt_cpu(plan.io_cpu)
            );
        }
        Ok(())
    }
}

fn fmt_cpu(c: Option<usize>) -> String {
    c.map_or_else(|| "any".into(), |c| c.to_string())
}
