//! `--retransmit-bind`: the publisher's retransmission service. Each
//! stream keeps the frames it sent last, as sent, in a [`Ring`] (the last
//! `--retransmit-depth` records, bounded in bytes too); one server thread
//! answers "stream S, session E, sequences A..B" from those rings over a
//! ROUTER, in the range protocol the recorder's `--serve` speaks
//! (`shardcast_proto::range`, docs/RECORDING.md section 6), so one client
//! talks to both: the publisher for what is recent, the recorder for what
//! is older.
//!
//! What the stream threads pay: one lock, one `memcpy` of the frame and one
//! unlock per *frame* sent (not per record). The lock is a `std` mutex per
//! stream; the server holds it only to copy out at most
//! [`SERVER_BYTES_PER_LOCK`] bytes (a few microseconds) into its own
//! buffer, and builds its messages after letting go. The server thread
//! runs at nice 10, like the recorder's, so under CPU contention the
//! stream threads win.
//!
//! Measured (shardcast-pub flat out, 10 M messages of 100 B, no subscriber,
//! whole-process CPU per message, six runs each on a loaded 2-core VM;
//! `/usr/bin/time shardcast-pub --bind tcp://127.0.0.1:* --rate 0 --count
//! 10000000 --batch B [--retransmit-bind tcp://127.0.0.1:* --retransmit-depth
//! 100000]`): `--batch 1`, 245 ns without the ring, 266 ns with it (median;
//! the lock and copy per frame, here per record); `--batch auto` (64 records
//! a frame), 107 ns and 130 ns. The lock is not what costs there (one per 64
//! records): it is writing every byte sent once more, into a ring larger
//! than the caches (about 20 ns per 100-byte record). A zero-copy ring
//! (keeping a reference to libzmq's message instead of a copy) would save
//! that; it moves the frees onto the stream thread instead.
//!
//! Rate limits (ZeroMQ Guide seed 004's rule//! Rate limits (ZeroMQ Guide seed 004's rule, a peer that floods must not
//! hurt the others): every peer (a ROUTER routing id, i.e. a connection)
//! has a budget of requests per second and bytes per second (token
//! buckets holding one second's worth); a request beyond it is answered
//! REFUSED (status 6) at once and counted. At most
//! `--retransmit-max-peers` peers are tracked; a new one beyond that
//! replaces the one seen least recently.

use crate::config::Retransmit;
use shardcast_agent::exit::{zerr, SetupError};
use shardcast_proto::range::{
    BadRequest, Reply, Request, Status, FRAMES_PER_MESSAGE, MAX_ACTIVE, REPLY_LEN,
};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most bytes of frames the server copies out of a ring under one lock
/// (and so the most one DATA message of the publisher holds, besides a
/// single larger frame): copying 64 KiB takes a few microseconds, the
/// longest a stream thread can wait for its ring.
pub const SERVER_BYTES_PER_LOCK: usize = 64 << 10;

/// Largest request a peer may send (`ZMQ_MAXMSGSZ`): a request is 48
/// bytes; libzmq cuts off a peer that sends more.
const MAX_REQUEST_BYTES: i64 = 256;

/// Messages queued to one peer before its requests wait their turn
/// (`ZMQ_SNDHWM` with `ZMQ_ROUTER_MANDATORY`): memory per slow peer is
/// bounded by this many DATA messages.
const PEER_SNDHWM: i32 = 16;

/// Requests of one peer in progress at once; more are answered BUSY, so
/// one peer never holds every one of the [`MAX_ACTIVE`] places.
pub const MAX_ACTIVE_PER_PEER: usize = 4;

/// A request whose peer has taken nothing for this long (its pipe full: a
/// peer that does not read its answers) is given up and counted
/// (`abandoned`), freeing its place.
const STALL: Duration = Duration::from_secs(2);

/// One frame held in a ring.
#[derive(Clone, Copy, Debug)]
struct Slot {
    off: usize,
    len: usize,
    first: u64,
    last: u64,
    send_ns: u64,
}

/// What a ring holds (report `streams[].retransmit`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct RingReport {
    /// Records held.
    pub records: u64,
    /// Frames held.
    pub frames: u64,
    /// Bytes of frames held.
    pub bytes: u64,
    /// First data sequence held (0: none).
    pub first_seq: u64,
    /// Last data sequence held (0: none).
    pub last_seq: u64,
    /// Capacity: most records held (`--retransmit-depth`).
    pub depth: u64,
    /// Capacity: bytes of frames held at most.
    pub capacity_bytes: u64,
    /// Frames appended over the run.
    pub appended_frames: u64,
    /// Frames pushed out (oldest first) to make room.
    pub evicted_frames: u64,
}

struct RingInner {
    buf: Box<[u8]>,
    frames: VecDeque<Slot>,
    /// Where the next frame goes (it never wraps inside a frame).
    head: usize,
    records: u64,
    bytes: u64,
    depth: u64,
    /// The stream's last data sequence appended (0: none yet).
    last_seq: u64,
    /// The stream has ended: nothing more will come.
    closed: bool,
    appended: u64,
    evicted: u64,
}

/// One stream's ring of the frames it sent last: at most `depth` records
/// and `capacity` bytes, the oldest frames pushed out first. Shared by the
/// stream thread (appends) and the server thread (copies out).
pub struct Ring {
    inner: Mutex<RingInner>,
}

/// Where a read of a ring starts.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Frames were copied; the last one ends at this sequence.
    Copied {
        /// Frames copied.
        frames: usize,
        /// Last sequence of the last frame copied.
        last: u64,
    },
    /// The sequence wanted is older than anything held: the ring starts at
    /// `oldest` (0: it holds nothing).
    Before {
        /// First sequence held.
        oldest: u64,
    },
    /// The sequence wanted is not sent yet (`closed`: and never will be).
    NotYet {
        /// The stream ended.
        closed: bool,
    },
}

/// A frame copied out of a ring: `scratch[range]`, its sequences and when
/// it was sent.
#[derive(Clone, Debug)]
pub struct Copied {
    /// Bytes in the scratch buffer.
    pub range: std::ops::Range<usize>,
    /// First sequence of the frame.
    pub first: u64,
    /// Last sequence of the frame.
    pub last: u64,
    /// When it was sent (its first record's `send_ts_ns`).
    pub send_ns: u64,
}

impl Ring {
    /// A ring of at most `depth` records in `capacity` bytes. `capacity`
    /// must hold the stream's largest frame (the configuration sees to it).
    pub fn new(depth: u64, capacity: usize) -> Ring {
        Ring {
            inner: Mutex::new(RingInner {
                buf: vec![0u8; capacity].into_boxed_slice(),
                // Each frame holds a record at least: never more than
                // `depth` frames (plus one while a frame is being made
                // room for), so up to 2^20 frames this never grows on the
                // hot path; a deeper ring grows it at most a few times
                // (doubling), while it first fills.
                frames: VecDeque::with_capacity(depth.min(1 << 20) as usize + 1),
                head: 0,
                records: 0,
                bytes: 0,
                depth,
                last_seq: 0,
                closed: false,
                appended: 0,
                evicted: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RingInner> {
        // A panic while holding it (none is possible: plain arithmetic and
        // copies) would not leave the ring inconsistent enough to matter.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `frame` (records `first..=last`, sent at `send_ns`), pushing
    /// out the oldest frames as needed. The stream thread calls this once
    /// per data frame sent: one lock, one copy, no allocation.
    #[inline]
    pub fn append(&self, frame: &[u8], first: u64, last: u64, send_ns: u64) {
        let mut r = self.lock();
        let len = frame.len();
        if len > r.buf.len() {
            debug_assert!(false, "a frame larger than its ring");
            return;
        }
        let n = last + 1 - first;
        // Room by records, then by bytes.
        while !r.frames.is_empty() && r.records + n > r.depth {
            r.evict();
        }
        let off = loop {
            let Some(oldest) = r.frames.front().map(|s| s.off) else {
                break 0;
            };
            let head = r.head;
            if head > oldest {
                // Free space is head..end and 0..oldest.
                if len <= r.buf.len() - head {
                    break head;
                }
                if len <= oldest {
                    break 0;
                }
            } else if head + len <= oldest {
                break head;
            }
            r.evict();
        };
        r.buf[off..off + len].copy_from_slice(frame);
        r.head = off + len;
        r.frames.push_back(Slot {
            off,
            len,
            first,
            last,
            send_ns,
        });
        r.records += n;
        r.bytes += len as u64;
        r.last_seq = last;
        r.appended += 1;
    }

    /// The stream has ended: requests waiting for more are answered now.
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// Copy frames holding `from..=to` into `scratch` (cleared first), at
    /// most [`FRAMES_PER_MESSAGE`] frames and [`SERVER_BYTES_PER_LOCK`]
    /// bytes (one frame at least), into `out`.
    pub fn read(&self, from: u64, to: u64, scratch: &mut Vec<u8>, out: &mut Vec<Copied>) -> Read {
        scratch.clear();
        out.clear();
        let r = self.lock();
        let Some(front) = r.frames.front() else {
            return match r.last_seq {
                0 => Read::NotYet { closed: r.closed },
                _ => Read::Before { oldest: 0 },
            };
        };
        if from < front.first {
            return Read::Before {
                oldest: front.first,
            };
        }
        let i = r.frames.partition_point(|s| s.last < from);
        let mut last = 0;
        for s in r.frames.range(i..) {
            if s.first > to
                || out.len() >= FRAMES_PER_MESSAGE
                || (!out.is_empty() && scratch.len() + s.len > SERVER_BYTES_PER_LOCK)
            {
                break;
            }
            let at = scratch.len();
            scratch.extend_from_slice(&r.buf[s.off..s.off + s.len]);
            out.push(Copied {
                range: at..at + s.len,
                first: s.first,
                last: s.last,
                send_ns: s.send_ns,
            });
            last = s.last;
        }
        if out.is_empty() {
            return Read::NotYet { closed: r.closed };
        }
        Read::Copied {
            frames: out.len(),
            last,
        }
    }

    /// The stream's last data sequence appended (0: none).
    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    /// What it holds now.
    pub fn report(&self) -> RingReport {
        let r = self.lock();
        RingReport {
            records: r.records,
            frames: r.frames.len() as u64,
            bytes: r.bytes,
            first_seq: r.frames.front().map_or(0, |s| s.first),
            last_seq: r.frames.back().map_or(0, |s| s.last),
            depth: r.depth,
            capacity_bytes: r.buf.len() as u64,
            appended_frames: r.appended,
            evicted_frames: r.evicted,
        }
    }
}

impl RingInner {
    fn evict(&mut self) {
        if let Some(s) = self.frames.pop_front() {
            self.records -= s.last + 1 - s.first;
            self.bytes -= s.len as u64;
            self.evicted += 1;
        }
        if self.frames.is_empty() {
            self.head = 0;
        }
    }
}

/// What the server counted (report `retransmit`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests received (every one, refused ones too).
    pub requests: AtomicU64,
    /// Records inside requested ranges sent.
    pub served_records: AtomicU64,
    /// Frames sent.
    pub served_frames: AtomicU64,
    /// Bytes of frames sent.
    pub served_bytes: AtomicU64,
    /// DATA messages sent.
    pub messages: AtomicU64,
    /// Requests answered DONE.
    pub done: AtomicU64,
    /// Requests answered PARTIAL.
    pub partial: AtomicU64,
    /// Requests answered NOT_AVAILABLE.
    pub not_available: AtomicU64,
    /// Requests answered BAD_REQUEST.
    pub bad_requests: AtomicU64,
    /// Requests answered BUSY.
    pub busy: AtomicU64,
    /// Requests answered REFUSED (a peer over its rate limit).
    pub refused: AtomicU64,
    /// Requests dropped because the peer went away.
    pub gone: AtomicU64,
    /// Requests given up because the peer took nothing for 2 s.
    pub abandoned: AtomicU64,
    /// Final replies that could not be queued (the peer's pipe was full:
    /// a peer that does not read its answers), counted and dropped.
    pub replies_dropped: AtomicU64,
    /// Distinct peers seen.
    pub peers: AtomicU64,
    /// Peers forgotten to make room (more than `--retransmit-max-peers`).
    pub peers_evicted: AtomicU64,
}

/// The report's `retransmit` section.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RetransmitReport {
    /// The bound endpoint (resolved).
    pub endpoint: String,
    /// Records each stream's ring holds at most.
    pub depth: u64,
    /// Bytes each stream's ring holds at most.
    pub ring_bytes: u64,
    /// Per peer: requests per second allowed.
    pub peer_requests_per_sec: u64,
    /// Per peer: bytes per second allowed.
    pub peer_bytes_per_sec: u64,
    /// Requests received.
    pub requests: u64,
    /// Records inside the requested ranges sent.
    pub served_records: u64,
    /// Frames sent.
    pub served_frames: u64,
    /// Bytes of frames sent.
    pub served_bytes: u64,
    /// DATA messages sent.
    pub messages: u64,
    /// Requests answered DONE.
    pub done: u64,
    /// Requests answered PARTIAL.
    pub partial: u64,
    /// Requests answered NOT_AVAILABLE.
    pub not_available: u64,
    /// Requests answered BAD_REQUEST.
    pub bad_requests: u64,
    /// Requests answered BUSY.
    pub busy: u64,
    /// Requests answered REFUSED: the peer was over its rate limit.
    pub refused: u64,
    /// Requests dropped because the peer went away.
    pub gone: u64,
    /// Requests given up because the peer took nothing for 2 s (it does
    /// not read its answers).
    pub abandoned: u64,
    /// Final replies dropped because the peer's queue was full.
    pub replies_dropped: u64,
    /// Distinct peers (connections) seen.
    pub peers: u64,
    /// Peers forgotten to stay within `--retransmit-max-peers`.
    pub peers_evicted: u64,
}

impl RetransmitReport {
    /// From the server's counters.
    pub fn new(endpoint: String, cfg: &Retransmit, c: &Counters) -> RetransmitReport {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RetransmitReport {
            endpoint,
            depth: cfg.depth,
            ring_bytes: cfg.ring_bytes as u64,
            peer_requests_per_sec: cfg.peer_requests_per_sec,
            peer_bytes_per_sec: cfg.peer_bytes_per_sec,
            requests: g(&c.requests),
            served_records: g(&c.served_records),
            served_frames: g(&c.served_frames),
            served_bytes: g(&c.served_bytes),
            messages: g(&c.messages),
            done: g(&c.done),
            partial: g(&c.partial),
            not_available: g(&c.not_available),
            bad_requests: g(&c.bad_requests),
            busy: g(&c.busy),
            refused: g(&c.refused),
            gone: g(&c.gone),
            abandoned: g(&c.abandoned),
            replies_dropped: g(&c.replies_dropped),
            peers: g(&c.peers),
            peers_evicted: g(&c.peers_evicted),
        }
    }
}

/// A token bucket holding one second's worth.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
}

impl Bucket {
    fn full(rate: u64) -> Bucket {
        Bucket {
            tokens: rate as f64,
            rate: rate as f64,
        }
    }

    fn refill(&mut self, secs: f64) {
        self.tokens = (self.tokens + secs * self.rate).min(self.rate);
    }
}

/// One peer's budgets.
#[derive(Clone, Copy, Debug)]
struct Peer {
    requests: Bucket,
    bytes: Bucket,
    seen: Instant,
}

/// The peers' budgets, at most `max` of them.
struct Peers {
    map: HashMap<Vec<u8>, Peer>,
    max: usize,
    requests_per_sec: u64,
    bytes_per_sec: u64,
}

impl Peers {
    fn get(&mut self, id: &[u8], now: Instant, c: &Counters) -> &mut Peer {
        if !self.map.contains_key(id) {
            c.peers.fetch_add(1, Ordering::Relaxed);
            if self.map.len() >= self.max {
                // Forget the peer seen least recently (a scan, only when a
                // new peer comes and the table is full).
                if let Some(k) = self
                    .map
                    .iter()
                    .min_by_key(|(_, p)| p.seen)
                    .map(|(k, _)| k.clone())
                {
                    self.map.remove(&k);
                    c.peers_evicted.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.map.insert(
                id.to_vec(),
                Peer {
                    requests: Bucket::full(self.requests_per_sec),
                    bytes: Bucket::full(self.bytes_per_sec),
                    seen: now,
                },
            );
        }
        let p = self.map.get_mut(id).expect("inserted above");
        let secs = now.saturating_duration_since(p.seen).as_secs_f64();
        p.requests.refill(secs);
        p.bytes.refill(secs);
        p.seen = now;
        p
    }
}

/// One request being served.
struct Active {
    peer: Vec<u8>,
    req: Request,
    stream: usize,
    /// Next sequence to send.
    next: u64,
    /// Last sequence wanted (resolved: `to_seq`, or the last sent when the
    /// request came for `to_seq` 0).
    to: u64,
    records: u64,
    last_sent: u64,
    /// Sequences of the range the ring lost while the request was served.
    missing: u64,
    wait_until: Instant,
    /// When the peer last took a message of it (or the request came).
    progress: Instant,
    pending: Option<Vec<zmq::Message>>,
    fin: Option<Status>,
}

/// The server: its bound ROUTER, the rings, and what it counts.
pub struct Server {
    router: zmq::Socket,
    /// Keeps the socket's context (and its I/O thread) alive.
    _ctx: zmq::Context,
    endpoint: String,
    rings: Vec<Arc<Ring>>,
    publisher_id: u32,
    session: u64,
    peers: Peers,
}

impl Server {
    /// Bind `cfg.bind` on a context of its own (one I/O thread).
    pub fn bind(
        cfg: &Retransmit,
        rings: Vec<Arc<Ring>>,
        publisher_id: u32,
        session: u64,
    ) -> Result<Server, SetupError> {
        let ctx = zmq::Context::new();
        let router = ctx
            .socket(zmq::ROUTER)
            .map_err(zerr("making the retransmit ROUTER (--retransmit-bind)"))?;
        router
            .set_router_mandatory(true)
            .map_err(zerr("setting ZMQ_ROUTER_MANDATORY (--retransmit-bind)"))?;
        router
            .set_sndhwm(PEER_SNDHWM)
            .map_err(zerr("setting ZMQ_SNDHWM (--retransmit-bind)"))?;
        router
            .set_maxmsgsize(MAX_REQUEST_BYTES)
            .map_err(zerr("setting ZMQ_MAXMSGSZ (--retransmit-bind)"))?;
        router
            .set_linger(0)
            .map_err(zerr("setting ZMQ_LINGER (--retransmit-bind)"))?;
        router.bind(&cfg.bind).map_err(zerr(format!(
            "binding the retransmit service to {} (check --retransmit-bind: address in use, or not local?)",
            cfg.bind
        )))?;
        let endpoint = router
            .get_last_endpoint()
            .ok()
            .and_then(|e| e.ok())
            .unwrap_or_else(|| cfg.bind.clone());
        Ok(Server {
            router,
            _ctx: ctx,
            endpoint,
            rings,
            publisher_id,
            session,
            peers: Peers {
                map: HashMap::new(),
                max: cfg.max_peers,
                requests_per_sec: cfg.peer_requests_per_sec,
                bytes_per_sec: cfg.peer_bytes_per_sec,
            },
        })
    }

    /// The bound endpoint (the OS's port for `:*` or `:0`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Serve until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool, c: &Counters) -> Result<(), zmq::Error> {
        // nice 10: under CPU contention the kernel favours the stream threads.
        shardcast_agent::cpu::lower_thread_priority(10);
        let mut active: Vec<Active> = Vec::new();
        let mut scratch = Vec::with_capacity(SERVER_BYTES_PER_LOCK + (1 << 16));
        let mut copied = Vec::with_capacity(FRAMES_PER_MESSAGE);
        let mut progressed = false;
        while !stop.load(Ordering::Relaxed) {
            let timeout = match (active.is_empty(), progressed) {
                (true, _) => 10,
                (false, true) => 0,
                (false, false) => 1,
            };
            match self.router.poll(zmq::POLLIN, timeout) {
                Ok(n) if n > 0 => self.take_requests(&mut active, c)?,
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            let sent_before = c.messages.load(Ordering::Relaxed) + c.done.load(Ordering::Relaxed);
            let mut i = 0;
            while i < active.len() {
                if self.serve_one(&mut active[i], now, &mut scratch, &mut copied, c)? {
                    active.swap_remove(i);
                } else {
                    i += 1;
                }
            }
            progressed =
                c.messages.load(Ordering::Relaxed) + c.done.load(Ordering::Relaxed) != sent_before;
        }
        Ok(())
    }

    /// Queue a final reply; `false` when the peer's pipe is full.
    fn send_reply(&mut self, peer: &[u8], r: &Reply, c: &Counters) -> Result<bool, zmq::Error> {
        match self.router.send(peer, zmq::SNDMORE | zmq::DONTWAIT) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => return Ok(false),
            Err(zmq::Error::EHOSTUNREACH) => {
                c.gone.fetch_add(1, Ordering::Relaxed);
                return Ok(true);
            }
            Err(e) => return Err(e),
        }
        self.router.send(&r.encode()[..], 0)?;
        Ok(true)
    }

    /// A final reply sent at once, or dropped (counted) when the peer does
    /// not read its answers: a flooder's refusals never pile up here.
    fn answer(&mut self, peer: &[u8], r: Reply, c: &Counters) -> Result<(), zmq::Error> {
        if !self.send_reply(peer, &r, c)? {
            c.replies_dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Take every request waiting (at most 1024 per call, so serving goes
    /// on under a flood; libzmq reads peers fairly).
    fn take_requests(&mut self, active: &mut Vec<Active>, c: &Counters) -> Result<(), zmq::Error> {
        for _ in 0..1024 {
            let parts = match self.router.recv_multipart(zmq::DONTWAIT) {
                Ok(p) => p,
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return Ok(()),
                Err(e) => return Err(e),
            };
            c.requests.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            let peer = parts[0].clone();
            let body = parts.last().map(|p| p.as_slice()).unwrap_or_default();
            let decoded = match Request::decode(body) {
                Ok(r) if parts.len() == 2 => Ok(r),
                Ok(r) => Err((r.request_id, BadRequest::Malformed)),
                Err(e) => Err(e),
            };
            // The budget first: a flooder's garbage costs it as much as
            // its good requests.
            let p = self.peers.get(&peer, now, c);
            let over = p.requests.tokens < 1.0 || p.bytes.tokens <= 0.0;
            if !over {
                p.requests.tokens -= 1.0;
            }
            let req = match decoded {
                Err((id, _)) | Ok(Request { request_id: id, .. }) if over => {
                    c.refused.fetch_add(1, Ordering::Relaxed);
                    self.answer(&peer, Reply::fin(Status::Refused, id, 0, 0, 0), c)?;
                    continue;
                }
                Err((id, why)) => {
                    c.bad_requests.fetch_add(1, Ordering::Relaxed);
                    self.answer(
                        &peer,
                        Reply::fin(Status::BadRequest, id, 0, 0, why as u64),
                        c,
                    )?;
                    continue;
                }
                Ok(r) => r,
            };
            let stream = usize::from(req.key.stream_id);
            if req.key.publisher_id != self.publisher_id
                || stream >= self.rings.len()
                || (req.session != 0 && req.session != self.session)
            {
                // Not ours: no waiting changes that.
                c.not_available.fetch_add(1, Ordering::Relaxed);
                let r = Reply::fin(Status::NotAvailable, req.request_id, 0, 0, 0);
                self.answer(&peer, r, c)?;
                continue;
            }
            if active.len() >= MAX_ACTIVE
                || active.iter().filter(|a| a.peer == peer).count() >= MAX_ACTIVE_PER_PEER
            {
                c.busy.fetch_add(1, Ordering::Relaxed);
                let r = Reply::fin(Status::Busy, req.request_id, self.session, 0, 0);
                self.answer(&peer, r, c)?;
                continue;
            }
            let to = match req.to_seq {
                0 => self.rings[stream].last_seq(),
                t => t,
            };
            active.push(Active {
                peer,
                req,
                stream,
                next: req.from_seq,
                to,
                records: 0,
                last_sent: 0,
                missing: 0,
                wait_until: now + Duration::from_millis(u64::from(req.wait_ms)),
                progress: now,
                pending: None,
                fin: None,
            });
        }
        Ok(())
    }

    /// One step of request `a`: send its pending message, or build the
    /// next one, or settle and send its final reply. `true` when done.
    fn serve_one(
        &mut self,
        a: &mut Active,
        now: Instant,
        scratch: &mut Vec<u8>,
        copied: &mut Vec<Copied>,
        c: &Counters,
    ) -> Result<bool, zmq::Error> {
        if a.pending.is_none() && a.fin.is_none() {
            let p = self.peers.get(&a.peer, now, c);
            if p.bytes.tokens <= 0.0 {
                // Over its byte budget: the request waits for the refill.
                return Ok(false);
            }
            self.build(a, now, scratch, copied, c);
        }
        if let Some(parts) = a.pending.take() {
            match self.router.send(&a.peer[..], zmq::SNDMORE | zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) => {
                    a.pending = Some(parts);
                    if now.saturating_duration_since(a.progress) >= STALL {
                        c.abandoned.fetch_add(1, Ordering::Relaxed);
                        return Ok(true);
                    }
                    return Ok(false);
                }
                Err(zmq::Error::EHOSTUNREACH) => {
                    c.gone.fetch_add(1, Ordering::Relaxed);
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
            let n = parts.len();
            let mut bytes = 0;
            for (i, p) in parts.into_iter().enumerate() {
                if i >= 2 {
                    bytes += p.len();
                }
                self.router
                    .send(p, if i + 1 < n { zmq::SNDMORE } else { 0 })?;
            }
            self.peers.get(&a.peer, now, c).bytes.tokens -= bytes as f64;
            a.progress = now;
            c.messages.fetch_add(1, Ordering::Relaxed);
            c.served_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            c.served_frames
                .fetch_add(n.saturating_sub(2) as u64, Ordering::Relaxed);
            return Ok(false);
        }
        let Some(status) = a.fin else {
            return Ok(false);
        };
        let r = match status {
            Status::NotAvailable => Reply::fin(status, a.req.request_id, self.session, a.next, 0),
            _ => Reply {
                status,
                count: 0,
                request_id: a.req.request_id,
                session: self.session,
                a: a.last_sent,
                b: a.records,
                c: a.missing,
            },
        };
        if !self.send_reply(&a.peer, &r, c)? {
            if now.saturating_duration_since(a.progress) >= STALL {
                c.abandoned.fetch_add(1, Ordering::Relaxed);
                return Ok(true);
            }
            return Ok(false);
        }
        let counter = match status {
            Status::Done => &c.done,
            Status::NotAvailable => &c.not_available,
            _ => &c.partial,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Copy the next frames of `a`'s range out of its ring into a DATA
    /// message (`a.pending`), or settle its final status.
    fn build(
        &mut self,
        a: &mut Active,
        now: Instant,
        scratch: &mut Vec<u8>,
        copied: &mut Vec<Copied>,
        c: &Counters,
    ) {
        if a.next > a.to {
            a.fin = Some(Status::Done);
            return;
        }
        match self.rings[a.stream].read(a.next, a.to, scratch, copied) {
            Read::Before { oldest } if a.records == 0 && a.missing == 0 => {
                // The range starts before the ring: NOT_AVAILABLE, `a` =
                // the first sequence held, where the client may take the
                // rest from (and go to a deeper source for the beginning).
                a.next = oldest;
                a.fin = Some(Status::NotAvailable);
            }
            Read::Before { oldest } => {
                // The ring moved past the request while it was served (a
                // slow client, a fast stream): what it lost is counted in
                // DONE's `c`, and serving goes on from what it holds.
                let resume = if oldest == 0 { a.to + 1 } else { oldest };
                let skip_to = resume.min(a.to + 1);
                a.missing += skip_to - a.next;
                a.next = skip_to;
            }
            Read::NotYet { closed } => {
                if closed || now >= a.wait_until {
                    a.fin = Some(Status::Partial);
                }
            }
            Read::Copied { last, .. } => {
                let (mut lo, mut hi, mut records) = (u64::MAX, 0, 0);
                let mut times = Vec::with_capacity(8 * copied.len());
                let mut parts = Vec::with_capacity(copied.len() + 2);
                for f in copied.iter() {
                    let (first, end) = (f.first.max(a.next), f.last.min(a.to));
                    if first <= end {
                        lo = lo.min(first);
                        hi = hi.max(end);
                        records += end + 1 - first;
                    }
                    times.extend_from_slice(&f.send_ns.to_le_bytes());
                }
                let header = Reply {
                    status: Status::Data,
                    count: copied.len() as u16,
                    request_id: a.req.request_id,
                    session: self.session,
                    a: if lo == u64::MAX { 0 } else { lo },
                    b: hi,
                    c: 0,
                };
                parts.push(zmq::Message::from(&header.encode()[..REPLY_LEN]));
                parts.push(zmq::Message::from(&times[..]));
                for f in copied.iter() {
                    parts.push(zmq::Message::from(&scratch[f.range.clone()]));
                }
                a.records += records;
                if hi > 0 {
                    a.last_sent = hi;
                }
                a.next = last + 1;
                c.served_records.fetch_add(records, Ordering::Relaxed);
                a.pending = Some(parts);
                if a.next > a.to {
                    a.fin = Some(Status::Done);
                }
            }
        }
    }
}

/// The first sequence of a data frame as sent (a batch, byte 0 = `0x00`,
/// or a lone record, whose symbol never starts with one): its first
/// record's `seq` (header offset 32) and `send_ts_ns` (offset 40). The
/// caller knows it holds at least one record.
#[inline]
pub fn frame_first(frame: &[u8]) -> (u64, u64) {
    let at = if frame[0] == 0 {
        shardcast_proto::wire::BATCH_HEADER_LEN
    } else {
        0
    };
    let u = |o: usize| {
        let mut v = [0u8; 8];
        v.copy_from_slice(&frame[at + o..at + o + 8]);
        u64::from_le_bytes(v)
    };
    (u(32), u(40))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(first: u64, n: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[0] = first as u8;
        v[1] = n as u8;
        v
    }

    #[test]
    fn a_ring_keeps_the_last_depth_records_and_bytes_and_reads_whole_frames() {
        let ring = Ring::new(10, 100);
        let (mut s, mut out) = (Vec::new(), Vec::new());
        assert_eq!(
            ring.read(1, 5, &mut s, &mut out),
            Read::NotYet { closed: false }
        );
        // Frames of 3 records, 20 bytes: seq 1..=3, 4..=6, ...
        for k in 0..5u64 {
            ring.append(&frame(1 + 3 * k, 3, 20), 1 + 3 * k, 3 + 3 * k, 100 + k);
        }
        // 15 records sent, depth 10: frames 7..=9, 10..=12, 13..=15 (9 records).
        let r = ring.report();
        assert_eq!(
            (r.records, r.frames, r.first_seq, r.last_seq),
            (9, 3, 7, 15)
        );
        assert_eq!(
            ring.read(6, 8, &mut s, &mut out),
            Read::Before { oldest: 7 }
        );
        // 8..=10: the frames holding them, whole (7..=9 and 10..=12).
        assert_eq!(
            ring.read(8, 10, &mut s, &mut out),
            Read::Copied {
                frames: 2,
                last: 12
            }
        );
        assert_eq!(out[0].first, 7);
        assert_eq!(out[1].send_ns, 103);
        assert_eq!(&s[out[1].range.clone()], &frame(10, 3, 20)[..]);
        assert_eq!(
            ring.read(16, 20, &mut s, &mut out),
            Read::NotYet { closed: false }
        );
        ring.close();
        assert_eq!(
            ring.read(16, 20, &mut s, &mut out),
            Read::NotYet { closed: true }
        );
        // Bytes bound: 100 bytes hold at most four 25-byte frames; the
        // ring wraps without splitting a frame.
        let ring = Ring::new(1000, 100);
        for k in 0..20u64 {
            ring.append(&frame(k + 1, 1, 25 + (k as usize % 3)), k + 1, k + 1, k);
            let r = ring.report();
            assert!(r.bytes <= 100 && r.frames >= 1, "{r:?}");
            assert_eq!(r.last_seq, k + 1);
            let first = r.first_seq;
            assert_eq!(
                ring.read(first, k + 1, &mut s, &mut out),
                Read::Copied {
                    frames: (k + 2 - first) as usize,
                    last: k + 1
                }
            );
            for (i, f) in out.iter().enumerate() {
                let want = first + i as u64;
                assert_eq!(s[f.range.start], want as u8, "frame bytes intact");
                assert_eq!(f.range.len(), 25 + ((want - 1) as usize % 3));
            }
        }
    }

    #[test]
    fn the_first_seq_and_send_time_come_from_the_first_record() {
        let meta = shardcast_proto::wire::RecordMeta {
            symbol: shardcast_proto::wire::Symbol::new("AB").unwrap(),
            publisher_id: 1,
            stream_id: 0,
            session: 2,
            seq: 41,
            send_ts_ns: 99,
            intended_ts_ns: 98,
            sym_seq: 1,
        };
        let p = shardcast_proto::wire::Payload::Trade(shardcast_proto::Trade {
            px: 1,
            sz: 1,
            side: shardcast_proto::Side::Buy,
        });
        let mut w = shardcast_proto::wire::BatchWriter::new(true, 1024);
        w.encode(&meta, &p, 0).unwrap();
        assert_eq!(frame_first(w.frame()), (41, 99));
        assert_eq!(frame_first(w.frame_or_lone_record()), (41, 99));
    }
}
