//! `--retransmit-bind` / `--retransmit-from`: gap repair through the relay.
//!
//! A subscriber behind relays cannot reach the publisher's retransmission
//! service (nor a recorder) on the far network; the relay can. It binds a
//! ROUTER downstream and passes every range request (docs/RECORDING.md
//! section 6) upstream on a DEALER, and every reply back to the peer that
//! asked. The servers answer exactly one envelope (`[peer, request]`), so
//! the relay does not stack envelopes: it gives each request an id of its
//! own (bytes 40..48 of the request), remembers whose it was, and puts the
//! peer's id back into each reply header (bytes 8..16) before it sends it
//! on. Servers and clients of any version see the protocol they know, and
//! relays chain (the next relay's `--retransmit-bind` is this one's
//! `--retransmit-from`).
//!
//! Defence: one peer may have `--retransmit-peer-requests` requests in
//! progress; more are answered BUSY at once, so one peer cannot take every
//! place the upstream server gives the relay. An unreadable request is
//! answered BAD_REQUEST without going upstream. A request with no final
//! reply after [`EXPIRE`] is forgotten (counted `expired`).

use crate::report::RetransmitReport;
use shardcast_agent::exit::{zerr, SetupError};
use shardcast_proto::range::{BadRequest, Reply, Request, Status, MAX_WAIT_MS};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A request without a final reply this long after it went upstream is
/// forgotten (the longest wait a request may ask for, and a margin).
const EXPIRE: Duration = Duration::from_millis(MAX_WAIT_MS as u64 + 30_000);

/// Largest request accepted downstream (a request is 48 bytes).
const MAX_REQUEST_BYTES: i64 = 256;

/// Offset of the request id in a request, and in a reply header.
const REQUEST_ID_AT: usize = 40;
const REPLY_ID_AT: usize = 8;

/// What the proxy counts, read by the main thread at the end.
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    forwarded: AtomicU64,
    replies: AtomicU64,
    busy: AtomicU64,
    bad_requests: AtomicU64,
    orphan_replies: AtomicU64,
    expired: AtomicU64,
}

struct Pending {
    peer: Vec<u8>,
    request_id: u64,
    since: Instant,
}

/// The proxy: its sockets and the requests in flight.
pub struct Proxy {
    router: zmq::Socket,
    dealer: zmq::Socket,
    _ctx: zmq::Context,
    endpoint: String,
    from: String,
    peer_requests: usize,
    pending: HashMap<u64, Pending>,
    next_id: u64,
}

impl Proxy {
    /// Bind `bind` and connect `from`, on a context of its own.
    pub fn start(bind: &str, from: &str, peer_requests: u32) -> Result<Proxy, SetupError> {
        let ctx = zmq::Context::new();
        let router = ctx
            .socket(zmq::ROUTER)
            .map_err(zerr("creating the --retransmit-bind ROUTER"))?;
        router
            .set_maxmsgsize(MAX_REQUEST_BYTES)
            .map_err(zerr("setting ZMQ_MAXMSGSZ (--retransmit-bind)"))?;
        router
            .set_linger(0)
            .map_err(zerr("setting ZMQ_LINGER (--retransmit-bind)"))?;
        router.bind(bind).map_err(zerr(format!(
            "binding --retransmit-bind {bind} (address in use, or not local?)"
        )))?;
        let endpoint = router
            .get_last_endpoint()
            .ok()
            .and_then(|e| e.ok())
            .unwrap_or_else(|| bind.to_string());
        let dealer = ctx
            .socket(zmq::DEALER)
            .map_err(zerr("creating the --retransmit-from DEALER"))?;
        dealer
            .set_linger(0)
            .map_err(zerr("setting ZMQ_LINGER (--retransmit-from)"))?;
        dealer
            .connect(from)
            .map_err(zerr(format!("connecting --retransmit-from {from}")))?;
        eprintln!("shardcast-relay: passing retransmission requests from {endpoint} to {from}");
        Ok(Proxy {
            router,
            dealer,
            _ctx: ctx,
            endpoint,
            from: from.to_string(),
            peer_requests: peer_requests as usize,
            pending: HashMap::new(),
            next_id: 1,
        })
    }

    /// Pass requests and replies until `stop`; the report at the end.
    pub fn run(mut self, stop: &AtomicBool, c: &Counters) -> RetransmitReport {
        let error = loop {
            if stop.load(Ordering::Relaxed) {
                break None;
            }
            let (down, up) = {
                let mut items = [
                    self.router.as_poll_item(zmq::POLLIN),
                    self.dealer.as_poll_item(zmq::POLLIN),
                ];
                match zmq::poll(&mut items, 20) {
                    Ok(_) | Err(zmq::Error::EINTR) => {}
                    Err(e) => break Some(format!("polling: {e}")),
                }
                (items[0].is_readable(), items[1].is_readable())
            };
            if down {
                if let Err(e) = self.requests(c) {
                    break Some(format!("taking requests: {e}"));
                }
            }
            if up {
                if let Err(e) = self.replies(c) {
                    break Some(format!("passing replies: {e}"));
                }
            }
            self.expire(c);
        };
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RetransmitReport {
            endpoint: self.endpoint,
            from: self.from,
            requests: r(&c.requests),
            forwarded: r(&c.forwarded),
            replies: r(&c.replies),
            busy: r(&c.busy),
            bad_requests: r(&c.bad_requests),
            orphan_replies: r(&c.orphan_replies),
            expired: r(&c.expired),
            error,
        }
    }

    fn requests(&mut self, c: &Counters) -> Result<(), zmq::Error> {
        for _ in 0..1024 {
            let mut parts = match self.router.recv_multipart(zmq::DONTWAIT) {
                Ok(p) => p,
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return Ok(()),
                Err(e) => return Err(e),
            };
            c.requests.fetch_add(1, Ordering::Relaxed);
            let peer = parts[0].clone();
            let decoded = match parts.last().map(|b| Request::decode(b)) {
                Some(Ok(r)) if parts.len() == 2 => Ok(r),
                Some(Ok(r)) => Err((r.request_id, BadRequest::Malformed)),
                Some(Err(e)) => Err(e),
                None => Err((0, BadRequest::Malformed)),
            };
            let req = match decoded {
                Ok(r) => r,
                Err((id, why)) => {
                    c.bad_requests.fetch_add(1, Ordering::Relaxed);
                    self.answer(&peer, Reply::fin(Status::BadRequest, id, 0, 0, why as u64))?;
                    continue;
                }
            };
            let mine = self.pending.values().filter(|p| p.peer == peer).count();
            if mine >= self.peer_requests {
                c.busy.fetch_add(1, Ordering::Relaxed);
                self.answer(&peer, Reply::fin(Status::Busy, req.request_id, 0, 0, 0))?;
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let body = parts.pop().expect("two parts");
            let mut body = body;
            body[REQUEST_ID_AT..REQUEST_ID_AT + 8].copy_from_slice(&id.to_le_bytes());
            match self.dealer.send(body, zmq::DONTWAIT) {
                Ok(()) => {
                    c.forwarded.fetch_add(1, Ordering::Relaxed);
                    self.pending.insert(
                        id,
                        Pending {
                            peer,
                            request_id: req.request_id,
                            since: Instant::now(),
                        },
                    );
                }
                Err(zmq::Error::EAGAIN) => {
                    // The upstream server's queue is full: ask again later.
                    c.busy.fetch_add(1, Ordering::Relaxed);
                    self.answer(&peer, Reply::fin(Status::Busy, req.request_id, 0, 0, 0))?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn replies(&mut self, c: &Counters) -> Result<(), zmq::Error> {
        for _ in 0..1024 {
            let mut parts = match self.dealer.recv_multipart(zmq::DONTWAIT) {
                Ok(p) => p,
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return Ok(()),
                Err(e) => return Err(e),
            };
            let Some(reply) = parts.first().and_then(|h| Reply::decode(h)) else {
                c.orphan_replies.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let Some(p) = self.pending.get(&reply.request_id) else {
                c.orphan_replies.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let peer = p.peer.clone();
            parts[0][REPLY_ID_AT..REPLY_ID_AT + 8].copy_from_slice(&p.request_id.to_le_bytes());
            if reply.is_final() {
                self.pending.remove(&reply.request_id);
            }
            c.replies.fetch_add(1, Ordering::Relaxed);
            self.router.send(&peer[..], zmq::SNDMORE)?;
            self.router.send_multipart(parts, 0)?;
        }
        Ok(())
    }

    fn answer(&mut self, peer: &[u8], r: Reply) -> Result<(), zmq::Error> {
        self.router.send(peer, zmq::SNDMORE)?;
        self.router.send(&r.encode()[..], 0)
    }

    fn expire(&mut self, c: &Counters) {
        let before = self.pending.len();
        self.pending.retain(|_, p| p.since.elapsed() < EXPIRE);
        let gone = before - self.pending.len();
        if gone > 0 {
            c.expired.fetch_add(gone as u64, Ordering::Relaxed);
        }
    }
}
