//! `--serve`: recorded ranges on request, over a ROUTER socket
//! (docs/RECORDING.md, "Serving", is the normative description).
//!
//! A client (a DEALER) sends one [`Request`]: stream, session, from
//! sequence A to B. The recorder answers with DATA messages holding the
//! recorded frames, exactly as recorded, and ends with one final status:
//! DONE, PARTIAL (the recording does not reach B yet), NOT_AVAILABLE (it
//! has nothing from A on), BAD_REQUEST or BUSY.
//!
//! The server is its own thread, reading the recording's files (never the
//! recorder threads' memory), and cannot starve the recording: it sends at
//! most `--serve-bytes-per-sec`, at most [`MAX_ACTIVE`] requests at once,
//! at most [`FRAMES_PER_MESSAGE`] frames per message, never blocks on a
//! slow client (`ZMQ_ROUTER_MANDATORY`: a full pipe is `EAGAIN`, and the
//! request waits its turn), and runs at a lower CPU priority (nice 10)
//! than the recorder threads.

use crate::reader::{Cursor, Event, Range, Recording};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

// The protocol's codec lives in `shardcast_proto::range`, shared with the
// publisher's retransmission service (`--retransmit-bind`); re-exported
// here so `shardcast_recorder::serve::{Request, Reply, ...}` keeps working.
use shardcast_proto::range::u64_at;
pub use shardcast_proto::range::{
    BadRequest, Reply, Request, Status, BYTES_PER_MESSAGE, FRAMES_PER_MESSAGE, MAX_ACTIVE,
    MAX_WAIT_MS, OP_FETCH, REPLY_LEN, REPLY_MAGIC, REQUEST_LEN, REQUEST_MAGIC, SERVE_VERSION,
};

/// What the server counted (report `serve`).
#[derive(Debug, Default)]
pub struct ServeCounters {
    /// Requests received.
    pub requests: AtomicU64,
    /// DATA messages sent.
    pub messages: AtomicU64,
    /// Frames sent.
    pub frames: AtomicU64,
    /// Bytes of frames sent.
    pub bytes: AtomicU64,
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
    /// Requests dropped because the client went away.
    pub gone: AtomicU64,
    /// Damaged entries skipped while serving.
    pub corrupt: AtomicU64,
}

/// One request being served.
struct Active {
    peer: Vec<u8>,
    req: Request,
    session: u64,
    /// `None` until the stream and session are in the recording (a
    /// request may come before the recorder's first write of them).
    cursor: Option<Cursor>,
    /// A message built but not yet taken by the socket (the client's
    /// pipe was full).
    pending: Option<Vec<zmq::Message>>,
    /// The recording, to open the cursor once the stream is there.
    dir: std::path::PathBuf,
    /// Data sent so far: records in range, last seq, missing seqs.
    records: u64,
    last_seq: u64,
    next_expected: u64,
    missing: u64,
    /// When waiting for records not recorded yet ends.
    wait_until: Instant,
    /// The final status, once known (sent after any pending data).
    fin: Option<Status>,
    /// The last look found nothing new (waiting for the recorder): the
    /// server then polls every 10 ms instead of every 1 ms.
    waiting: bool,
}

/// The server's thread body: serve `router` (bound) from the recording at
/// `dir` until `stop` is set.
pub fn run_server(
    mut router: zmq::Socket,
    dir: std::path::PathBuf,
    bytes_per_sec: u64,
    stop: &AtomicBool,
    counters: &ServeCounters,
) -> Result<(), zmq::Error> {
    // nice 10: under CPU contention the kernel favours the recorder
    // threads, whose lag the snail judges.
    shardcast_agent::cpu::lower_thread_priority(10);
    let mut active: Vec<Active> = Vec::new();
    let mut tokens: i64 = 0;
    let cap = (bytes_per_sec / 10).max(BYTES_PER_MESSAGE as u64) as i64;
    let mut last = Instant::now();
    let mut progressed = false;
    while !stop.load(Ordering::Relaxed) {
        let busy = active
            .iter()
            .any(|a| a.pending.is_some() || a.fin.is_some() || !a.waiting);
        // While the last round sent something and the budget allows, go
        // straight on (a 1 ms poll per message capped serving at ~1000
        // messages a second); when the clients' pipes were all full, or
        // the budget is spent, give them a moment.
        let timeout = match (busy && tokens > 0, progressed) {
            (true, true) => 0,
            (true, false) => 1,
            (false, _) => 10,
        };
        if router.poll(zmq::POLLIN, timeout)? > 0 {
            take_requests(&mut router, &dir, &mut active, counters)?;
        }
        let now = Instant::now();
        let refill = (now - last).as_secs_f64() * bytes_per_sec as f64;
        last = now;
        tokens = (tokens + refill as i64).min(cap);
        let sent_before = counters.messages.load(Ordering::Relaxed);
        let mut i = 0;
        while i < active.len() {
            if tokens <= 0 {
                break;
            }
            match serve_one(&mut router, &mut active[i], &mut tokens, now, counters)? {
                true => {
                    active.swap_remove(i);
                }
                false => i += 1,
            }
        }
        progressed = counters.messages.load(Ordering::Relaxed) != sent_before;
    }
    Ok(())
}

fn send_reply(router: &mut zmq::Socket, peer: &[u8], r: &Reply) -> Result<bool, zmq::Error> {
    match router.send(peer, zmq::SNDMORE | zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => return Ok(false),
        Err(zmq::Error::EHOSTUNREACH) => return Ok(true),
        Err(e) => return Err(e),
    }
    router.send(&r.encode()[..], 0)?;
    Ok(true)
}

fn take_requests(
    router: &mut zmq::Socket,
    dir: &std::path::Path,
    active: &mut Vec<Active>,
    counters: &ServeCounters,
) -> Result<(), zmq::Error> {
    loop {
        let parts = match router.recv_multipart(zmq::DONTWAIT) {
            Ok(p) => p,
            Err(zmq::Error::EAGAIN) => return Ok(()),
            Err(e) => return Err(e),
        };
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let peer = parts[0].clone();
        let body = parts.last().map(|p| p.as_slice()).unwrap_or_default();
        let quick = |status: Status, request_id: u64, session: u64, a: u64, c: u64| Reply {
            status,
            count: 0,
            request_id,
            session,
            a,
            b: 0,
            c,
        };
        let req = match Request::decode(body) {
            Ok(r) if parts.len() == 2 => r,
            Ok(r) => {
                counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                let _ = send_reply(
                    router,
                    &peer,
                    &quick(Status::BadRequest, r.request_id, 0, 0, 1),
                )?;
                continue;
            }
            Err((id, why)) => {
                counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                let _ = send_reply(
                    router,
                    &peer,
                    &quick(Status::BadRequest, id, 0, 0, why as u64),
                )?;
                continue;
            }
        };
        if active.len() >= MAX_ACTIVE {
            counters.busy.fetch_add(1, Ordering::Relaxed);
            let _ = send_reply(router, &peer, &quick(Status::Busy, req.request_id, 0, 0, 0))?;
            continue;
        }
        let wait_until = Instant::now() + Duration::from_millis(u64::from(req.wait_ms));
        let (session, cursor) = match open_request(dir, &req) {
            Ok((session, cursor)) => (session, Some(cursor)),
            // Not there yet: the request waits (up to wait_ms) for the
            // recorder to write the stream's first records.
            Err(u) if !u.definitive && req.wait_ms > 0 => (0, None),
            Err(u) => {
                counters.not_available.fetch_add(1, Ordering::Relaxed);
                let r = quick(
                    Status::NotAvailable,
                    req.request_id,
                    u.session,
                    u.first_seq,
                    0,
                );
                let _ = send_reply(router, &peer, &r)?;
                continue;
            }
        };
        let waiting = cursor.is_none();
        active.push(Active {
            peer,
            req,
            session,
            cursor,
            dir: dir.to_path_buf(),
            pending: None,
            records: 0,
            last_seq: 0,
            next_expected: req.from_seq,
            missing: 0,
            wait_until,
            fin: None,
            waiting,
        });
    }
}

/// Why a request cannot be served (yet).
#[derive(Clone, Copy, Debug)]
struct Unavailable {
    /// The session resolved (0: none).
    session: u64,
    /// Its first recorded data sequence (0: none).
    first_seq: u64,
    /// The recording of the session starts after `from_seq`: waiting will
    /// not change that. Otherwise the stream or session (or its first data
    /// record) is not recorded yet.
    definitive: bool,
}

/// Resolve the session and open a cursor.
fn open_request(dir: &std::path::Path, req: &Request) -> Result<(u64, Cursor), Unavailable> {
    let none = Unavailable {
        session: req.session,
        first_seq: 0,
        definitive: false,
    };
    let stream = Recording::open(dir)
        .and_then(|r| r.stream(req.key))
        .map_err(|_| none)?;
    let sessions = stream.sessions().map_err(|_| none)?;
    let info = if req.session == 0 {
        sessions.last()
    } else {
        sessions.iter().find(|s| s.session == req.session)
    };
    let Some(info) = info.copied() else {
        return Err(none);
    };
    // The recording starts after from_seq (a late start, or loss at the
    // start): it cannot serve the range whole.
    if info.first_seq == 0 || info.first_seq > req.from_seq {
        return Err(Unavailable {
            session: info.session,
            first_seq: info.first_seq,
            definitive: info.first_seq != 0,
        });
    }
    let cursor = stream
        .read(&Range {
            session: Some(info.session),
            from_seq: Some(req.from_seq),
            to_seq: (req.to_seq != 0).then_some(req.to_seq),
            follow: true,
            ..Range::default()
        })
        .map_err(|_| Unavailable {
            session: info.session,
            first_seq: info.first_seq,
            definitive: false,
        })?;
    Ok((info.session, cursor))
}

/// Send one message of request `a`; `true` when the request is finished
/// (its final reply sent, or its client gone).
fn serve_one(
    router: &mut zmq::Socket,
    a: &mut Active,
    tokens: &mut i64,
    now: Instant,
    counters: &ServeCounters,
) -> Result<bool, zmq::Error> {
    if a.cursor.is_none() {
        match open_request(&a.dir, &a.req) {
            Ok((session, cursor)) => {
                a.session = session;
                a.cursor = Some(cursor);
            }
            Err(u) if !u.definitive && now < a.wait_until => return Ok(false),
            Err(u) => {
                let r = Reply {
                    status: Status::NotAvailable,
                    count: 0,
                    request_id: a.req.request_id,
                    session: u.session,
                    a: u.first_seq,
                    b: 0,
                    c: 0,
                };
                if !send_reply(router, &a.peer, &r)? {
                    return Ok(false);
                }
                counters.not_available.fetch_add(1, Ordering::Relaxed);
                return Ok(true);
            }
        }
    }
    if a.pending.is_none() && a.fin.is_none() {
        build(a, now, counters);
    }
    if let Some(parts) = a.pending.take() {
        match router.send(&a.peer[..], zmq::SNDMORE | zmq::DONTWAIT) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => {
                // The client's pipe is full: its turn comes again.
                a.pending = Some(parts);
                return Ok(false);
            }
            Err(zmq::Error::EHOSTUNREACH) => {
                counters.gone.fetch_add(1, Ordering::Relaxed);
                return Ok(true);
            }
            Err(e) => return Err(e),
        }
        let n = parts.len();
        let mut bytes = 0;
        for (i, p) in parts.into_iter().enumerate() {
            bytes += p.len();
            router.send(p, if i + 1 < n { zmq::SNDMORE } else { 0 })?;
        }
        *tokens -= bytes as i64;
        counters.messages.fetch_add(1, Ordering::Relaxed);
        counters.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        counters
            .frames
            .fetch_add(n.saturating_sub(2) as u64, Ordering::Relaxed);
        return Ok(false);
    }
    let Some(status) = a.fin else {
        return Ok(false);
    };
    let r = Reply {
        status,
        count: 0,
        request_id: a.req.request_id,
        session: a.session,
        a: a.last_seq,
        b: a.records,
        c: a.missing,
    };
    if !send_reply(router, &a.peer, &r)? {
        return Ok(false);
    }
    match status {
        Status::Done => counters.done.fetch_add(1, Ordering::Relaxed),
        _ => counters.partial.fetch_add(1, Ordering::Relaxed),
    };
    Ok(true)
}

/// Read up to one message's worth of frames from the cursor into
/// `a.pending`, or settle the final status.
fn build(a: &mut Active, now: Instant, counters: &ServeCounters) {
    let mut rx = Vec::with_capacity(FRAMES_PER_MESSAGE * 8);
    let mut frames: Vec<zmq::Message> = Vec::new();
    let (mut lo, mut hi, mut bytes) = (u64::MAX, 0u64, 0usize);
    let cursor = a.cursor.as_mut().expect("opened before building");
    while frames.len() < FRAMES_PER_MESSAGE && bytes < BYTES_PER_MESSAGE {
        match cursor.next() {
            Ok(Some(Event::Frame(f))) => {
                for r in f.records_in_range() {
                    let s = r.seq();
                    if s > a.next_expected {
                        a.missing += s - a.next_expected;
                    }
                    a.next_expected = a.next_expected.max(s + 1);
                    a.records += 1;
                    a.last_seq = a.last_seq.max(s);
                    lo = lo.min(s);
                    hi = hi.max(s);
                }
                rx.extend_from_slice(&f.rx_ns.to_le_bytes());
                bytes += f.bytes.len();
                frames.push(zmq::Message::from(f.bytes));
                if a.req.to_seq != 0 && f.info.last_seq >= a.req.to_seq {
                    a.fin = Some(Status::Done);
                    break;
                }
            }
            Ok(Some(Event::Corrupt(_))) => {
                counters.corrupt.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => {
                if cursor.finished() || a.req.to_seq == 0 {
                    a.fin = Some(Status::Done);
                } else if now >= a.wait_until {
                    a.fin = Some(Status::Partial);
                } else {
                    // Not recorded yet: look again next round.
                }
                break;
            }
            Err(_) => {
                a.fin = Some(Status::Partial);
                break;
            }
        }
    }
    if a.fin == Some(Status::Done) && a.req.to_seq != 0 && a.next_expected <= a.req.to_seq {
        a.missing += a.req.to_seq + 1 - a.next_expected;
        a.next_expected = a.req.to_seq + 1;
    }
    a.waiting = frames.is_empty() && a.fin.is_none();
    if frames.is_empty() {
        return;
    }
    let header = Reply {
        status: Status::Data,
        count: frames.len() as u16,
        request_id: a.req.request_id,
        session: a.session,
        a: if lo == u64::MAX { 0 } else { lo },
        b: hi,
        c: 0,
    };
    let mut parts = Vec::with_capacity(frames.len() + 2);
    parts.push(zmq::Message::from(&header.encode()[..]));
    parts.push(zmq::Message::from(&rx[..]));
    parts.extend(frames);
    a.pending = Some(parts);
}

/// What [`fetch`] collected.
#[derive(Debug, Default)]
pub struct Fetched {
    /// `(rx_ns, frame)` in the order served.
    pub frames: Vec<(u64, Vec<u8>)>,
    /// The final reply.
    pub last: Option<Reply>,
}

/// A simple blocking client: send `req` on `dealer` (connected to a
/// recorder's `--serve`) and collect every reply until the final one, or
/// fail after `timeout`. A reference for the wire format as much as a
/// helper: a catch-up client applies frames as they come instead.
pub fn fetch(dealer: &zmq::Socket, req: &Request, timeout: Duration) -> Result<Fetched, String> {
    loop {
        match dealer.send(&req.encode()[..], 0) {
            Ok(()) => break,
            Err(zmq::Error::EINTR) => continue,
            Err(e) => return Err(format!("sending the request: {e}")),
        }
    }
    let deadline = Instant::now() + timeout;
    let mut out = Fetched::default();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no final reply within {timeout:?}"));
        }
        // EINTR (a signal such as SIGCHLD in a process that has children)
        // is not an error: look again.
        match dealer.poll(zmq::POLLIN, left.as_millis().max(1) as i64) {
            Ok(0) | Err(zmq::Error::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        let parts = match dealer.recv_multipart(zmq::DONTWAIT) {
            Ok(p) => p,
            Err(zmq::Error::EINTR) | Err(zmq::Error::EAGAIN) => continue,
            Err(e) => return Err(e.to_string()),
        };
        let reply = Reply::decode(&parts[0]).ok_or("a reply header that does not decode")?;
        if reply.request_id != req.request_id {
            continue;
        }
        if reply.status == Status::Data {
            let n = reply.count as usize;
            if parts.len() != n + 2 || parts[1].len() != 8 * n {
                return Err(format!(
                    "a DATA message of {} parts for {n} frames",
                    parts.len()
                ));
            }
            for (i, f) in parts[2..].iter().enumerate() {
                out.frames.push((u64_at(&parts[1], 8 * i), f.clone()));
            }
        } else {
            out.last = Some(reply);
            return Ok(out);
        }
    }
}
