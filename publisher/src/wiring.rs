//! Sockets built from the resolved configuration: one XPUB per stream, each
//! on its own context with one (pinnable) I/O thread, options set, bound,
//! and the ZAP handler in place first when CURVE is on. Every socket option
//! the publisher sets is here.

use crate::config::{is_multicast, Config, StreamPlan};
use shardcast_agent::curve::{self, Zap, ZapReport};
use shardcast_agent::exit::{zerr, SetupError};
use shardcast_agent::zmqx::{self, socket_with_own_io_thread};

/// How long a waiting stream blocks on its XPUB before it looks at the clock.
const SUB_POLL_MS: i32 = 50;

/// Every stream's bound socket, with what must outlive the sockets.
pub(crate) struct Wired {
    /// Per stream, in `--bind` order: the socket and its resolved endpoint.
    pub(crate) sockets: Vec<(zmq::Socket, String)>,
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
    // The ZAP handler is bound in every stream's context before any stream
    // binds: libzmq lets every peer in while no handler is there.
    let zap = match &cfg.curve {
        Some(c) => {
            let ctxs: Vec<&zmq::Context> = owns.iter().map(|o| &o.ctx).collect();
            Some(Zap::start(&ctxs, c.allow.clone(), "shardcast-pub")?)
        }
        None => None,
    };
    let mut sockets = Vec::with_capacity(n);
    let mut ctxs = Vec::with_capacity(n);
    for (plan, own) in cfg.streams.iter().zip(owns) {
        ctxs.push(own.ctx);
        sockets.push(bind_stream(cfg, plan, own.socket)?);
    }
    Ok(Wired { sockets, ctxs, zap })
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
    // Every subscribe and unsubscribe reaches us, not only the first and
    // last per topic: that is how subscribers are counted.
    zmqx::set_int_option(&mut s, zmqx::XPUB_VERBOSER, 1)
        .map_err(zerr("setting ZMQ_XPUB_VERBOSER"))?;
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
