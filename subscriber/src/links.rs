//! What happens to each shard's connection, from libzmq's socket monitor:
//! connects, disconnects, retries, and the one case libzmq never recovers
//! from by itself, a peer cut off for a protocol error.
//!
//! libzmq 4.3 tears a connection down when a frame exceeds ZMQ_MAXMSGSZ
//! (`--max-msg-size`) or the peer breaks ZMTP, and then, unlike after a
//! network error, does **not** reconnect (`session_base_t::engine_error`
//! terminates the session on `protocol_error`). The monitor event is the
//! same `DISCONNECTED` either way; what tells them apart is that a network
//! error is followed at once by `CONNECT_RETRIED` (the reconnect timer is
//! armed in the same I/O-thread step). So: a disconnect with no retry within
//! [`CUT_OFF_AFTER`] is a cut-off, counted as an `oversized` malformed frame
//! (the only protocol error a ZMTP peer can make after the handshake) and
//! reported with its remedy.
//!
//! A CURVE handshake the publisher's ZAP handler refuses (our key is not in
//! its allowlist), or one that fails for a protocol reason (one side uses
//! CURVE and the other not), is also final: libzmq reports it as
//! `HANDSHAKE_FAILED_AUTH` / `HANDSHAKE_FAILED_PROTOCOL` and never retries.
//! Those are counted apart from cut-offs and logged with their remedy.

use serde::Serialize;
use shardcast_agent::exit::SetupError;
use std::time::{Duration, Instant};

/// How long after a disconnect a reconnect must have been scheduled.
/// libzmq arms it within microseconds; this only has to outlast a busy
/// monitor tick.
pub const CUT_OFF_AFTER: Duration = Duration::from_millis(500);

/// Events a shard's monitor asks for.
fn events() -> i32 {
    (zmq::SocketEvent::CONNECTED.to_raw()
        | zmq::SocketEvent::CONNECT_RETRIED.to_raw()
        | zmq::SocketEvent::DISCONNECTED.to_raw()
        | zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw()
        | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH.to_raw()
        | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL.to_raw()) as i32
}

/// The 32-bit value of a monitor event (a ZAP status, a protocol error).
fn event_value(head: &[u8]) -> u32 {
    head.get(2..6)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

/// A shard connection's history, as reported.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LinkReport {
    /// TCP connections made (the first, and each reconnect).
    pub connects: u64,
    /// Connections lost (publisher gone, network, or protocol error).
    pub disconnects: u64,
    /// Reconnect attempts libzmq scheduled.
    pub retries: u64,
    /// Connections libzmq dropped for good after a protocol error (a frame
    /// over --max-msg-size).
    pub cut_off: u64,
    /// CURVE handshakes the publisher refused (our key is not in its
    /// --curve-allow); libzmq does not retry them.
    pub auth_refused: u64,
    /// Handshakes that failed for a protocol reason (e.g. CURVE on one side
    /// only); libzmq does not retry them.
    pub handshake_failed: u64,
}

/// The monitor side of one shard's SUB socket (owned by the main thread).
pub struct Link {
    pair: zmq::Socket,
    endpoint: String,
    report: LinkReport,
    /// When the last unexplained disconnect happened.
    pending_since: Option<Instant>,
    /// The last handshake failed for good (refused or protocol error).
    refused: bool,
}

impl Link {
    /// Start monitoring `sub` (before it connects, so nothing is missed).
    pub fn watch(
        ctx: &zmq::Context,
        sub: &zmq::Socket,
        index: usize,
        endpoint: &str,
    ) -> Result<Link, SetupError> {
        let addr = format!("inproc://shardcast-monitor-{index}");
        let pair = shardcast_agent::zmqx::monitor_pair(ctx, sub, &addr, events())?;
        Ok(Link {
            pair,
            endpoint: endpoint.to_string(),
            report: LinkReport::default(),
            pending_since: None,
            refused: false,
        })
    }

    /// Take in the events so far; returns how many new cut-offs there are
    /// (each also logged once, with its remedy).
    pub fn poll(&mut self, shard: usize, max_msg_size: i64) -> u64 {
        let mut new_cuts = 0;
        while let Ok(parts) = self.pair.recv_multipart(zmq::DONTWAIT) {
            let Some(head) = parts.first().filter(|h| h.len() >= 2) else {
                continue;
            };
            match zmq::SocketEvent::from_raw(u16::from_ne_bytes([head[0], head[1]])) {
                zmq::SocketEvent::CONNECTED => {
                    self.report.connects += 1;
                    self.pending_since = None;
                }
                zmq::SocketEvent::CONNECT_RETRIED => {
                    self.report.retries += 1;
                    self.pending_since = None;
                }
                zmq::SocketEvent::DISCONNECTED => {
                    self.report.disconnects += 1;
                    // After a failed handshake the disconnect is explained.
                    if !self.refused {
                        self.pending_since = Some(Instant::now());
                    }
                }
                zmq::SocketEvent::HANDSHAKE_SUCCEEDED => self.refused = false,
                zmq::SocketEvent::HANDSHAKE_FAILED_AUTH => {
                    let status = event_value(head);
                    self.report.auth_refused += 1;
                    self.refused = true;
                    self.pending_since = None;
                    eprintln!(
                        "shardcast-sub: error: shard-{shard}: the publisher at {} refused our CURVE key (ZAP \
                         status {status}); we receive nothing from it and libzmq will not retry. Remedy: have \
                         its operator add our NAME.pub (--curve-key) to its --curve-allow, then restart.",
                        self.endpoint
                    );
                }
                zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL => {
                    let code = event_value(head);
                    self.report.handshake_failed += 1;
                    self.refused = true;
                    self.pending_since = None;
                    eprintln!(
                        "shardcast-sub: error: shard-{shard}: the handshake with {} failed (ZMTP protocol error \
                         {code:#x}) and libzmq will not retry. Remedy: both ends must agree on security: \
                         CURVE needs --curve-key/--curve-server-key here and --curve-secret-key there, or \
                         neither.",
                        self.endpoint
                    );
                }
                _ => {}
            }
        }
        if self
            .pending_since
            .is_some_and(|t| t.elapsed() >= CUT_OFF_AFTER)
        {
            self.pending_since = None;
            self.report.cut_off += 1;
            new_cuts += 1;
            eprintln!(
                "shardcast-sub: error: shard-{shard}: libzmq cut {} off for a protocol error and will not \
                 reconnect: it sent a frame over --max-msg-size {max_msg_size} bytes (or is not a ZeroMQ peer). \
                 Remedy: if that publisher is yours, raise --max-msg-size above its largest batch; otherwise \
                 stop that peer. Counted as malformed reason `oversized`.",
                self.endpoint
            );
        }
        new_cuts
    }

    /// Whether the connection was cut off or refused and nothing
    /// reconnected since.
    pub fn is_dead(&self) -> bool {
        self.refused || (self.report.cut_off > 0 && self.report.connects <= self.report.disconnects)
    }

    /// The history so far.
    pub fn report(&self) -> LinkReport {
        self.report
    }
}
