//! `shardcast-relay`: forwards shardcast streams from one network to
//! another, unchanged (ZeroMQ Guide ch.2, "intermediaries"; the XSUB/XPUB
//! proxy, made a consumer that checks what it carries).
//!
//! ```text
//!  pub stream 0 ─tcp─► [XSUB ─hop-0─ XPUB] ─tcp/epgm─► subscribers, relays
//!  pub stream 1 ─tcp─► [XSUB ─hop-1─ XPUB] ─tcp/epgm─► ...
//!        ▲ subscriptions (first sub / last unsub per topic, once
//!        │ --wait-subscribers are there downstream)
//!  retransmit server ◄─DEALER─ [proxy] ─ROUTER─◄ subscribers' --recover-from
//!                                ▲ main: snail, signals, --duration, report
//! ```
//!
//! * [`hop`]: one relay thread per `--connect` (its own sockets, its own
//!   ZeroMQ I/O thread, pinned like the subscriber's shards).
//! * [`fetch`]: `--retransmit-bind`, gap repair through the relay.
//! * [`exporter`]: `--metrics-bind` (Prometheus metrics at `/metrics`).
//! * [`cli`], [`config`], [`report`]: flags, resolved configuration, report.

pub mod cli;
pub mod config;
pub mod exporter;
pub mod fetch;
pub mod hop;
pub mod report;

use config::{Config, HopPlan};
use hop::{Hop, HopResult, HopSetup};
use report::{EndReason, HopReport, Report, RetransmitReport, SnailReport, StreamReport};
use shardcast_agent::cpu::{self, spawn_agent};
use shardcast_agent::curve::{self, Zap};
use shardcast_agent::exit::{self, ioerr, zerr, SetupError};
use shardcast_agent::presence;
use shardcast_agent::presence::MergedPresence;
use shardcast_agent::signals::StopSignal;
use shardcast_agent::stats::{self, LatencySummary};
use shardcast_agent::watch::Board;
use shardcast_agent::zmqx::{self, socket_with_own_io_thread};
use shardcast_proto::wire::DecodeError;
use shardcast_publisher::config::WhenFull;
use shardcast_publisher::peers::PeerWatch;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The monitor's tick.
const TICK: Duration = Duration::from_millis(5);

/// A blocked downstream send waits this long per try, then looks at
/// subscriptions, stop and the snail (`--when-full block`).
const SEND_WAIT_MS: i32 = 20;

/// Largest message a downstream peer may send (a subscription, a
/// handshake command), as the publisher's streams.
const MAX_DOWNSTREAM_MESSAGE: i64 = 1024;

/// What a run hands back: the report, and the metrics endpoint.
#[derive(Debug)]
pub struct Outcome {
    /// The report (`--report-json`).
    pub report: Report,
    /// `--metrics-bind`: the endpoint, still serving (the report's numbers
    /// now) until [`Outcome::linger_metrics`] or a drop closes it.
    pub metrics: Option<exporter::Exporter>,
}

impl Outcome {
    /// `--metrics-linger-ms`: keep the metrics endpoint up for `linger`
    /// (or until `stop`), then close it.
    pub fn linger_metrics(&mut self, linger: Duration, stop: impl Fn() -> bool) {
        if let Some(e) = self.metrics.take() {
            e.linger(linger, stop);
        }
    }
}

struct Wired {
    hop: HopPlan,
    xsub: zmq::Socket,
    xpub: zmq::Socket,
    peers: PeerWatch,
    endpoint: String,
}

/// Wire the sockets, relay until the run ends, and report. Every thread it
/// started has stopped when it returns.
pub fn run(cfg: &Config, signal: &StopSignal) -> Result<Outcome, SetupError> {
    let n = cfg.hops.len();
    if let Some(w) =
        cpu::thread_budget_warning(cfg.busy_threads(), &format!("{n} relays + {n} I/O"))
    {
        eprintln!("shardcast-relay: {w}");
    }
    let mut owns = Vec::with_capacity(n);
    for plan in &cfg.hops {
        let own = socket_with_own_io_thread(zmq::XSUB, &plan.index.to_string(), plan.io_cpu)?;
        if let Some(c) = plan.io_cpu {
            for (name, _) in &own.threads {
                eprintln!("shardcast-relay: {name} pinned to CPU {c}");
            }
        }
        owns.push(own);
    }
    // The ZAP handler before any XPUB binds: it names every downstream
    // connection (how subscribers are counted, as the publisher does).
    let ctx_refs: Vec<&zmq::Context> = owns.iter().map(|o| &o.ctx).collect();
    let allow = cfg.curve_downstream.as_ref().map(|c| c.allow.clone());
    let zap = Zap::start(&ctx_refs, allow, "shardcast-relay")?;
    let mut wired = Vec::with_capacity(n);
    let mut contexts = Vec::with_capacity(n);
    for (plan, own) in cfg.hops.iter().zip(owns) {
        upstream_options(&own.socket, cfg)?;
        let (xpub, endpoint, monitor) = bind_downstream(cfg, plan, &own.ctx)?;
        own.socket.connect(&plan.connect).map_err(zerr(format!(
            "connecting hop {} to {} (--connect)",
            plan.index, plan.connect
        )))?;
        eprintln!(
            "shardcast-relay: hop {}: {} -> {} (cpu {}, io cpu {}){}",
            plan.index,
            plan.connect,
            endpoint,
            plan.cpu.map_or("any".into(), |c| c.to_string()),
            plan.io_cpu.map_or("any".into(), |c| c.to_string()),
            if plan.subscribe_at_start {
                String::new()
            } else {
                format!(
                    "; subscribing upstream once {} subscriber(s) are here",
                    cfg.wait_subscribers
                )
            }
        );
        let protection = |on: bool, how: &str| {
            if on {
                how.to_string()
            } else {
                "PLAIN TEXT".into()
            }
        };
        eprintln!(
            "shardcast-relay: hop {}: upstream {}, downstream {}",
            plan.index,
            protection(
                cfg.curve_upstream.is_some(),
                "CURVE: encrypted, the upstream's key checked"
            ),
            protection(
                cfg.curve_downstream.is_some(),
                "CURVE: encrypted, only --curve-allow keys let in"
            ),
        );
        let peers = PeerWatch::new(monitor, cfg.max_subscriptions, cfg.max_peers_per_host).named(
            "shardcast-relay",
            plan.index,
            &cfg.expect_subscribers,
        );
        wired.push(Wired {
            hop: plan.clone(),
            xsub: own.socket,
            xpub,
            peers,
            endpoint,
        });
        contexts.push(own.ctx);
    }
    let proxy = match &cfg.retransmit {
        Some(r) => Some(start_proxy(r)?),
        None => None,
    };
    let board = Arc::new(Board::new(n, 0));
    let gauges: Vec<Arc<exporter::HopGauges>> = (0..n).map(|_| Arc::default()).collect();
    let metrics = match cfg.metrics_bind {
        Some(bind) => Some(exporter::Exporter::start(bind, &board, &gauges)?),
        None => None,
    };
    let t0 = Instant::now();
    let mut handles: Vec<Option<JoinHandle<HopResult>>> = Vec::with_capacity(n);
    let mut endpoints = Vec::with_capacity(n);
    for w in wired {
        let setup = HopSetup {
            index: w.hop.index,
            connect: w.hop.connect.clone(),
            wait_subscribers: cfg.wait_subscribers,
            subscribe_at_start: w.hop.subscribe_at_start,
            presence_topic: cfg.id.as_deref().map(presence::topic),
            when_full: cfg.when_full,
            limit: cfg.lag_limit(),
            on_slow: cfg.on_slow,
            idle: cfg.idle,
            exit_on_eos: cfg.on_eos == cli::OnEos::Exit,
            eos_timeout: cfg.eos_timeout,
            multicast: w.hop.multicast,
            gauges: Arc::clone(&gauges[w.hop.index]),
        };
        endpoints.push(w.endpoint);
        let b = Arc::clone(&board);
        let (xsub, xpub, peers) = (w.xsub, w.xpub, w.peers);
        let h = spawn_agent(format!("relay-{}", w.hop.index), w.hop.cpu, move || {
            Hop::new(setup, xsub, xpub, peers, &b).run()
        })
        .map_err(ioerr("starting a relay thread"))?;
        if let Some(c) = w.hop.cpu {
            eprintln!("shardcast-relay: relay-{} pinned to CPU {c}", w.hop.index);
        }
        handles.push(Some(h));
    }
    let mut results: Vec<Option<HopResult>> = (0..n).map(|_| None).collect();
    let reason = watch(cfg, signal, &board, &mut handles, &mut results, t0);
    board.stop_shards.store(true, Ordering::Relaxed);
    for (i, h) in handles.iter_mut().enumerate() {
        if let Some(h) = h.take() {
            results[i] = Some(h.join().unwrap_or_else(|_| panic!("relay-{i} panicked")));
        }
    }
    let elapsed = t0.elapsed();
    let retransmit = proxy.map(|(stop, h)| {
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap_or_else(|_| RetransmitReport {
            error: Some("the retransmit proxy panicked".into()),
            ..RetransmitReport::default()
        })
    });
    let zap = zap.finish();
    let security = cfg.curve_downstream.is_some().then_some(zap);
    drop(contexts);
    let results: Vec<HopResult> = results.into_iter().map(|r| r.expect("joined")).collect();
    let mut report = assemble(cfg, reason, &board, results, endpoints, retransmit, elapsed);
    report.security = security;
    if let Some(m) = &metrics {
        m.finish(&report);
    }
    Ok(Outcome { report, metrics })
}

/// The upstream XSUB's options, before it connects.
fn upstream_options(s: &zmq::Socket, cfg: &Config) -> Result<(), SetupError> {
    s.set_rcvhwm(cfg.rcvhwm)
        .map_err(zerr("setting ZMQ_RCVHWM (--rcvhwm)"))?;
    if cfg.rcvbuf > 0 {
        s.set_rcvbuf(cfg.rcvbuf)
            .map_err(zerr("setting ZMQ_RCVBUF (--rcvbuf)"))?;
    }
    s.set_maxmsgsize(cfg.max_msg_size)
        .map_err(zerr("setting ZMQ_MAXMSGSZ (--max-msg-size)"))?;
    s.set_linger(0).map_err(zerr("setting ZMQ_LINGER"))?;
    if let Some(c) = &cfg.curve_upstream {
        curve::make_client(s, &c.keys, &c.server)
            .map_err(zerr("making the hop a CURVE client (--curve-key)"))?;
    }
    Ok(())
}

/// Make, set up and bind one hop's downstream XPUB (with its socket
/// monitor when it has connections).
fn bind_downstream(
    cfg: &Config,
    plan: &HopPlan,
    ctx: &zmq::Context,
) -> Result<(zmq::Socket, String, Option<zmq::Socket>), SetupError> {
    let mut s = ctx
        .socket(zmq::XPUB)
        .map_err(zerr("creating a downstream XPUB"))?;
    s.set_sndhwm(cfg.sndhwm)
        .map_err(zerr("setting ZMQ_SNDHWM (--sndhwm)"))?;
    if cfg.sndbuf > 0 {
        s.set_sndbuf(cfg.sndbuf)
            .map_err(zerr("setting ZMQ_SNDBUF (--sndbuf)"))?;
    }
    s.set_linger(0).map_err(zerr("setting ZMQ_LINGER"))?;
    if plan.multicast {
        s.set_rate(cfg.pgm_rate)
            .map_err(zerr("setting ZMQ_RATE (--pgm-rate)"))?;
        s.set_recovery_ivl(cfg.pgm_recovery_ms)
            .map_err(zerr("setting ZMQ_RECOVERY_IVL (--pgm-recovery-ms)"))?;
        s.set_multicast_hops(cfg.multicast_hops)
            .map_err(zerr("setting ZMQ_MULTICAST_HOPS (--multicast-hops)"))?;
    }
    if cfg.when_full == WhenFull::Block {
        zmqx::set_int_option(&mut s, zmqx::XPUB_NODROP, 1)
            .map_err(zerr("setting ZMQ_XPUB_NODROP (--when-full block)"))?;
        s.set_sndtimeo(SEND_WAIT_MS)
            .map_err(zerr("setting ZMQ_SNDTIMEO (--when-full block)"))?;
    }
    zmqx::set_int_option(&mut s, zmqx::XPUB_VERBOSER, 1)
        .map_err(zerr("setting ZMQ_XPUB_VERBOSER"))?;
    if let Some(c) = &cfg.curve_downstream {
        curve::make_server(&s, &c.keys).map_err(zerr(
            "making the downstream a CURVE server (--curve-secret-key)",
        ))?;
    }
    let monitor = if plan.multicast {
        None
    } else {
        s.set_zap_domain(curve::ZAP_DOMAIN)
            .map_err(zerr("setting ZMQ_ZAP_DOMAIN"))?;
        s.set_maxmsgsize(MAX_DOWNSTREAM_MESSAGE)
            .map_err(zerr("setting ZMQ_MAXMSGSZ"))?;
        s.set_handshake_ivl(cfg.handshake_timeout.as_millis().min(i32::MAX as u128) as i32)
            .map_err(zerr("setting ZMQ_HANDSHAKE_IVL (--handshake-timeout-ms)"))?;
        let events = zmq::SocketEvent::ACCEPTED.to_raw()
            | zmq::SocketEvent::DISCONNECTED.to_raw()
            | zmq::SocketEvent::CLOSED.to_raw();
        let addr = format!("inproc://shardcast-relay-monitor-{}", plan.index);
        Some(zmqx::monitor_pair(ctx, &s, &addr, events as i32)?)
    };
    s.bind(&plan.bind).map_err(zerr(format!(
        "binding hop {} to {} (check --bind: address in use, or not local?)",
        plan.index, plan.bind
    )))?;
    let endpoint = s
        .get_last_endpoint()
        .ok()
        .and_then(|e| e.ok())
        .unwrap_or_else(|| plan.bind.clone());
    Ok((s, endpoint, monitor))
}

type ProxyThread = (Arc<AtomicBool>, JoinHandle<RetransmitReport>);

fn start_proxy(r: &config::RetransmitProxy) -> Result<ProxyThread, SetupError> {
    let proxy = fetch::Proxy::start(&r.bind, &r.from, r.peer_requests)?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let h = std::thread::Builder::new()
        .name("retransmit".into())
        .spawn(move || proxy.run(&s, &fetch::Counters::default()))
        .map_err(ioerr("starting the retransmit proxy thread"))?;
    Ok((stop, h))
}

/// The monitor: wait until every hop ended, one failed, the snail croaked,
/// `--duration` passed or a signal came.
fn watch(
    cfg: &Config,
    signal: &StopSignal,
    board: &Board,
    handles: &mut [Option<JoinHandle<HopResult>>],
    results: &mut [Option<HopResult>],
    t0: Instant,
) -> EndReason {
    loop {
        if board.croak.raised() {
            if let Some(ev) = board.croak.event() {
                let what = if ev.watchdog {
                    "a frame was held back that long by a full downstream queue (--when-full block)"
                } else {
                    "records arrive that late"
                };
                eprintln!(
                    "shardcast-relay: SNAIL ALARM: hop {} is {:.1} ms behind (limit {} ms) at publisher {} \
                     stream {} seq {}: {what}; the relay cannot keep up",
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
                let r = r.unwrap_or_else(|_| panic!("relay-{i} panicked"));
                if let Some(e) = &r.error {
                    eprintln!("shardcast-relay: error: hop {i}: {e}");
                    results[i] = Some(r);
                    return EndReason::Error;
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
    results: Vec<HopResult>,
    endpoints: Vec<String>,
    retransmit: Option<RetransmitReport>,
    elapsed: Duration,
) -> Report {
    let mut malformed_reasons: BTreeMap<&'static str, u64> =
        DecodeError::REASONS.iter().map(|r| (*r, 0)).collect();
    let mut streams = Vec::new();
    let mut hops = Vec::new();
    let mut arrival = stats::new_histogram();
    let mut error = None;
    for (r, endpoint) in results.iter().zip(endpoints) {
        for (i, n) in r.malformed.iter().enumerate() {
            *malformed_reasons
                .get_mut(DecodeError::REASONS[i])
                .expect("every reason") += n;
        }
        let _ = arrival.add(&r.arrival);
        if error.is_none() {
            error = r.error.clone();
        }
        for st in r.tracker.streams() {
            let c = st.counters();
            streams.push(StreamReport {
                publisher_id: st.key().publisher_id,
                stream_id: st.key().stream_id,
                hop: r.index,
                session: st.session(),
                first_seq: st.first_seq(),
                last_seq: st.last_seq(),
                lost: c.lost,
                missed_before_join: c.missed_before_join,
                duplicates: c.duplicates,
                complete: st.complete(),
            });
        }
        hops.push(HopReport {
            index: r.index,
            connect: cfg.hops[r.index].connect.clone(),
            bind: endpoint,
            frames_in: r.frames_in,
            frames_out: r.frames_out,
            records: r.records,
            malformed: r.malformed.iter().sum(),
            multipart: r.multipart,
            blocked: r.blocked,
            blocked_ns: r.blocked_ns,
            subscribed_after_s: r.subscribed_after_s,
            announcements: r.announcements,
            upstream_subscriptions: r.upstream_subscriptions,
            subscribers: r.subscribers,
            max_subscribers: r.max_subscribers,
            peers: r.peers,
            presence: r.presence.clone(),
            ended: r.ended,
            error: r.error.clone(),
        });
    }
    streams.sort_by_key(|s| (s.publisher_id, s.stream_id, s.hop));
    // As the publisher's: a relay's hops are its streams.
    let presence = MergedPresence::merge(
        results.iter().map(|r| (r.index, &r.presence)),
        &cfg.expect_subscribers,
    );
    let sum = |f: fn(&HopResult) -> u64| results.iter().map(f).sum::<u64>();
    let snail = (reason == EndReason::Snail)
        .then(|| board.croak.event())
        .flatten()
        .map(|ev| SnailReport {
            lag_ms: ev.lag_ns as f64 / 1e6,
            hop: ev.index,
            publisher_id: ev.publisher_id,
            stream_id: ev.stream_id,
            seq: ev.seq,
            held_downstream: ev.watchdog,
        });
    let totals = |f: fn(&StreamReport) -> u64| streams.iter().map(f).sum::<u64>();
    Report {
        role: "shardcast-relay",
        version: env!("CARGO_PKG_VERSION"),
        id: cfg.id.clone(),
        end_reason: reason,
        elapsed_s: elapsed.as_secs_f64(),
        received: sum(|r| r.records),
        frames_in: sum(|r| r.frames_in),
        frames_out: sum(|r| r.frames_out),
        lost: totals(|s| s.lost),
        missed_before_join: totals(|s| s.missed_before_join),
        duplicates: totals(|s| s.duplicates),
        malformed: malformed_reasons.values().sum(),
        malformed_reasons,
        streams_complete: !streams.is_empty() && streams.iter().all(|s| s.complete),
        max_lag_ms: results.iter().map(|r| r.max_lag_ns).max().unwrap_or(0) as f64 / 1e6,
        max_lag_limit_ms: cfg.max_lag_ms,
        slow: sum(|r| r.slow),
        ts_future: sum(|r| r.ts_future),
        ts_ancient: sum(|r| r.ts_ancient),
        eos_unknown: sum(|r| r.eos_unknown),
        snail,
        latency_ns: BTreeMap::from([("arrival", LatencySummary::of(&arrival))]),
        subscribers: presence.subscribers,
        subscriber_events: presence.subscriber_events,
        subscriber_events_dropped: presence.subscriber_events_dropped,
        missing_subscribers: presence.missing_subscribers,
        streams,
        hops,
        retransmit,
        security: None,
        error,
    }
}

/// The exit code for a report: 0 for end-of-stream, `--duration` or a
/// signal; 1 for a failure; 3 when the snail croaked.
pub fn exit_code(r: &Report) -> u8 {
    match r.end_reason {
        EndReason::Snail => exit::SNAIL,
        EndReason::Error => exit::FAILURE,
        _ if r.error.is_some() => exit::FAILURE,
        _ => exit::OK,
    }
}
