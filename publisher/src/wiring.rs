//! Sockets built from the resolved configuration: one XPUB per stream, each
//! on its own context with one (pinnable) I/O thread, options set, bound,
//! and the ZAP handler in place first when CURVE is on. Every socket option
//! the publisher sets is here.

use crate::config::{is_multicast, Config, StreamPlan, WhenFull};
use crate::peers::PeerWatch;
use shardcast_agent::curve::{self, Zap, ZapReport};
use shardcast_agent::exit::{zerr, SetupError};
use shardcast_agent::zmqx::{self, socket_with_own_io_thread};

/// How long a waiting stream blocks on its XPUB before it looks at the clock.
const SUB_POLL_MS: i32 = 50;

/// `--when-full block`: a send waiting for room gives up after this long
/// to look at signals and peers, then waits again.
pub(crate) const SEND_WAIT_MS: i32 = 20;
/// Largest message a peer may send a stream (`ZMQ_MAXMSGSZ`): a
/// subscription is 1 byte plus its prefix (a symbol prefix is at most 9
/// bytes: 8 and a NUL), and the limit also applies to handshake commands,
/// of which CURVE's INITIATE is the largest (about 300 bytes). libzmq cuts
/// off a peer that sends more, so one subscription costs the trie a few
/// tens of KiB at most (`peers` bounds the total per connection).
pub(crate) const MAX_MESSAGE_BYTES: i64 = 1024;

/// One stream's bound socket: what its thread owns.
pub(crate) struct Bound {
    /// The XPUB.
    pub(crate) sock: zmq::Socket,
    /// Its resolved endpoint.
    pub(crate) endpoint: String,
    /// Its peers, from its socket monitor and its subscription events.
    pub(crate) peers: PeerWatch,
    /// Line B (`--bind-b`): the same frames on a socket of its own.
    pub(crate) line_b: Option<LineB>,
}

/// A stream's line B: a PUB on a context (and I/O thread) of its own.
pub(crate) struct LineB {
    /// The PUB.
    pub(crate) sock: zmq::Socket,
    /// Its resolved endpoint.
    pub(crate) endpoint: String,
}

/// Every stream's bound socket, with what must outlive the sockets.
pub(crate) struct Wired {
    /// Per stream, in `--bind` order.
    pub(crate) sockets: Vec<Bound>,
    ctxs: Vec<zmq::Context>,
    zap: Option<Zap>,
}

impl Wired {
    /// After every stream thread has closed its socket: stop the ZAP handler
    /// (it closes its sockets before the contexts end), then end the
    /// contexts. Returns whom the handler let in.
    pub(crate) fn finish(self) -> Option<ZapReport> {
        let zap = self.zap.map(Zap::finish);
        drop(self.ctxs);
        zap
    }
}

/// Build, configure and bind every stream's socket.
pub(crate) fn wire(cfg: &Config) -> Result<Wired, SetupError> {
    let n = cfg.streams.len();
    raise_descriptor_limit();
    // Each stream: its own context with one I/O thread, pinned on its own.
    let mut owns = Vec::with_capacity(n);
    for plan in &cfg.streams {
        let own = socket_with_own_io_thread(zmq::XPUB, &plan.index.to_string(), plan.io_cpu)?;
        if let Some(c) = plan.io_cpu {
            for (name, _) in &own.threads {
                eprintln!("shardcast-pub: {name} pinned to CPU {c}");
            }
        }
        owns.push(own);
    }
    // Line B of each stream (--bind-b): its own context and I/O thread.
    let mut owns_b = Vec::with_capacity(n);
    for plan in &cfg.streams {
        owns_b.push(match &plan.bind_b {
            Some(_) => Some(socket_with_own_io_thread(
                zmq::PUB,
                &format!("{}b", plan.index),
                plan.io_cpu,
            )?),
            None => None,
        });
    }
    // The ZAP handler is bound in every stream's context before any stream
    // binds: libzmq lets every peer in while no handler is there. It runs
    // for plain-text streams too: it gives each connection the User-Id by
    // which subscribers are counted (see `peers`).
    let ctxs: Vec<&zmq::Context> = owns
        .iter()
        .map(|o| &o.ctx)
        .chain(owns_b.iter().flatten().map(|o| &o.ctx))
        .collect();
    let allow = cfg.curve.as_ref().map(|c| c.allow.clone());
    let zap = Some(Zap::start(&ctxs, allow, "shardcast-pub")?);
    let mut sockets = Vec::with_capacity(n);
    let mut ctxs = Vec::with_capacity(n);
    for ((plan, own), own_b) in cfg.streams.iter().zip(owns).zip(owns_b) {
        let (sock, endpoint) = bind_stream(cfg, plan, own.socket)?;
        let line_b = match (own_b, &plan.bind_b) {
            (Some(b), Some(ep)) => {
                let (sock, endpoint) = bind_line_b(cfg, plan, ep, b.socket)?;
                ctxs.push(b.ctx);
                Some(LineB { sock, endpoint })
            }
            _ => None,
        };
        let monitor = if is_multicast(&plan.bind) {
            None
        } else {
            Some(watch_connections(&own.ctx, &sock, plan.index)?)
        };
        let peers = PeerWatch::new(monitor, cfg.max_subscriptions, cfg.max_peers_per_host).named(
            "shardcast-pub",
            plan.index,
            &cfg.expect_subscribers,
        );
        sockets.push(Bound {
            sock,
            endpoint,
            peers,
            line_b,
        });
        ctxs.push(own.ctx);
    }
    Ok(Wired { sockets, ctxs, zap })
}

/// Attach a socket monitor to stream `index`'s socket for accepted and
/// ended connections, and return the end the stream thread reads.
fn watch_connections(
    ctx: &zmq::Context,
    sock: &zmq::Socket,
    index: usize,
) -> Result<zmq::Socket, SetupError> {
    let events = zmq::SocketEvent::ACCEPTED.to_raw()
        | zmq::SocketEvent::DISCONNECTED.to_raw()
        | zmq::SocketEvent::CLOSED.to_raw();
    let addr = format!("inproc://shardcast-pub-monitor-{index}");
    zmqx::monitor_pair(ctx, sock, &addr, events as i32)
}

/// Raise this process's descriptor limit from its soft value to its hard
/// one: each subscriber is one descriptor, and the usual soft limit (1024)
/// is reached by a few hundred half-open connections. deploy/ says what the
/// hard limit should be.
fn raise_descriptor_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Set one stream's options, bind it, and say how it is protected.
fn bind_stream(
    cfg: &Config,
    plan: &StreamPlan,
    mut s: zmq::Socket,
) -> Result<(zmq::Socket, String), SetupError> {
    s.set_sndhwm(cfg.sndhwm)
        .map_err(zerr("setting ZMQ_SNDHWM (--sndhwm)"))?;
    if cfg.sndbuf > 0 {
        s.set_sndbuf(cfg.sndbuf)
            .map_err(zerr("setting ZMQ_SNDBUF (--sndbuf)"))?;
    }
    // Nothing is queued at close but what the end phase's linger covers.
    s.set_linger(0).map_err(zerr("setting ZMQ_LINGER"))?;
    // A waiting stream blocks this long for a subscription event, then
    // looks at the clock (--wait-timeout) and at signals.
    s.set_rcvtimeo(SUB_POLL_MS)
        .map_err(zerr("setting ZMQ_RCVTIMEO"))?;
    let multicast = is_multicast(&plan.bind);
    if multicast {
        s.set_rate(cfg.pgm_rate)
            .map_err(zerr("setting ZMQ_RATE (--pgm-rate)"))?;
        s.set_recovery_ivl(cfg.pgm_recovery_ms)
            .map_err(zerr("setting ZMQ_RECOVERY_IVL (--pgm-recovery-ms)"))?;
        s.set_multicast_hops(cfg.multicast_hops)
            .map_err(zerr("setting ZMQ_MULTICAST_HOPS (--multicast-hops)"))?;
    }
    if let Some(c) = &cfg.curve {
        curve::make_server(&s, &c.keys).map_err(zerr(
            "making the stream a CURVE server (--curve-secret-key)",
        ))?;
    }
    if cfg.when_full == WhenFull::Block {
        // At a subscriber's HWM a send waits instead of dropping; it waits
        // in slices of SEND_WAIT_MS, so the stream still sees signals and
        // reads its socket monitor and subscriptions while it waits.
        zmqx::set_int_option(&mut s, zmqx::XPUB_NODROP, 1)
            .map_err(zerr("setting ZMQ_XPUB_NODROP (--when-full block)"))?;
        s.set_sndtimeo(SEND_WAIT_MS)
            .map_err(zerr("setting ZMQ_SNDTIMEO (--when-full block)"))?;
    }
    // Every subscribe and unsubscribe reaches us, not only the first and
    // last per topic: that is how subscribers are counted.
    zmqx::set_int_option(&mut s, zmqx::XPUB_VERBOSER, 1)
        .map_err(zerr("setting ZMQ_XPUB_VERBOSER"))?;
    if !multicast {
        // Every handshake through our ZAP handler, plain text too: it names
        // each connection (see `peers`).
        s.set_zap_domain(curve::ZAP_DOMAIN)
            .map_err(zerr("setting ZMQ_ZAP_DOMAIN"))?;
        s.set_maxmsgsize(MAX_MESSAGE_BYTES)
            .map_err(zerr("setting ZMQ_MAXMSGSZ"))?;
        s.set_handshake_ivl(cfg.handshake_timeout.as_millis().min(i32::MAX as u128) as i32)
            .map_err(zerr("setting ZMQ_HANDSHAKE_IVL (--handshake-timeout-ms)"))?;
    }
    s.bind(&plan.bind).map_err(zerr(format!(
        "binding stream {} to {} (check --bind: address in use, or not local?)",
        plan.index, plan.bind
    )))?;
    let endpoint = s
        .get_last_endpoint()
        .ok()
        .and_then(|e| e.ok())
        .unwrap_or_else(|| plan.bind.clone());
    eprintln!(
        "shardcast-pub: stream {} bound {} (cpu {}, io cpu {})",
        plan.index,
        endpoint,
        plan.cpu.map_or("any".into(), |c| c.to_string()),
        plan.io_cpu.map_or("any".into(), |c| c.to_string())
    );
    announce_protection(cfg, plan, &endpoint, multicast);
    Ok((s, endpoint))
}

/// Set up and bind stream `plan`'s line B: the stream's options, but a
/// PUB that always drops for a slow subscriber (`--when-full block`
/// applies to line A only: a line B nobody reads must never hold the
/// stream back), and no subscriber counting.
fn bind_line_b(
    cfg: &Config,
    plan: &StreamPlan,
    ep: &str,
    s: zmq::Socket,
) -> Result<(zmq::Socket, String), SetupError> {
    s.set_sndhwm(cfg.sndhwm)
        .map_err(zerr("setting ZMQ_SNDHWM on line B (--sndhwm)"))?;
    if cfg.sndbuf > 0 {
        s.set_sndbuf(cfg.sndbuf)
            .map_err(zerr("setting ZMQ_SNDBUF on line B (--sndbuf)"))?;
    }
    s.set_linger(0)
        .map_err(zerr("setting ZMQ_LINGER on line B"))?;
    if let Some(c) = &cfg.curve {
        curve::make_server(&s, &c.keys)
            .map_err(zerr("making line B a CURVE server (--curve-secret-key)"))?;
    }
    // Through the ZAP handler like line A (the CURVE allowlist applies).
    s.set_zap_domain(curve::ZAP_DOMAIN)
        .map_err(zerr("setting ZMQ_ZAP_DOMAIN on line B"))?;
    s.set_maxmsgsize(MAX_MESSAGE_BYTES)
        .map_err(zerr("setting ZMQ_MAXMSGSZ on line B"))?;
    s.set_handshake_ivl(cfg.handshake_timeout.as_millis().min(i32::MAX as u128) as i32)
        .map_err(zerr(
            "setting ZMQ_HANDSHAKE_IVL on line B (--handshake-timeout-ms)",
        ))?;
    s.bind(ep).map_err(zerr(format!(
        "binding line B of stream {} to {ep} (check --bind-b: address in use, or not local?)",
        plan.index
    )))?;
    let endpoint = s
        .get_last_endpoint()
        .ok()
        .and_then(|e| e.ok())
        .unwrap_or_else(|| ep.to_string());
    eprintln!(
        "shardcast-pub: stream {} line B bound {} ({})",
        plan.index,
        endpoint,
        if cfg.curve.is_some() {
            "CURVE"
        } else {
            "PLAIN TEXT"
        }
    );
    Ok((s, endpoint))
}

/// Say how the stream is protected, every time: a plain-text stream on an
/// untrusted network should never be a surprise.
fn announce_protection(cfg: &Config, plan: &StreamPlan, endpoint: &str, multicast: bool) {
    match &cfg.curve {
        Some(c) => eprintln!(
            "shardcast-pub: stream {}: CURVE: encrypted; subscribers authenticated against {} key(s) \
             in --curve-allow; our public key {}",
            plan.index,
            c.allow.len(),
            c.keys.public.z85()
        ),
        None if multicast => eprintln!(
            "shardcast-pub: stream {}: PLAIN TEXT multicast (PGM): anyone on the network segment can \
             read it; ZMQ_RATE {} kbit/s, recovery {} ms",
            plan.index, cfg.pgm_rate, cfg.pgm_recovery_ms
        ),
        None => eprintln!(
            "shardcast-pub: stream {}: PLAIN TEXT: anyone who can reach {endpoint} can subscribe and \
             read it (encrypt with --curve-secret-key and --curve-allow)",
            plan.index
        ),
    }
}
