//! The MoldUDP64 receiver behind `--source moldudp64:udp://...`: ITCH
//! messages off a live feed, handed on strictly in the exchange's order.
//!
//! One UDP socket takes the feed (a unicast address bound, or a multicast
//! group joined on the given interface); a second, connected to
//! `--rerequest`, sends MoldUDP64 request packets and takes the server's
//! answers (connected, so the kernel drops anything else sent to it, and a
//! server that is not there shows as `ECONNREFUSED` instead of silence).
//! The caller pulls with [`Receiver::next_message`], which never blocks for longer
//! than [`POLL`], so the caller sees its stop flag in time.
//!
//! # Order and gaps
//!
//! The receiver tracks the session (the first packet's; packets of any
//! other session are counted and ignored) and `expected`, the next
//! sequence number to hand on (1 at the start: ITCH books need the whole
//! day, so a receiver that joins late asks for everything before). A packet
//! that starts beyond `expected` is a gap: it is copied aside (at most
//! [`HOLD_PACKETS`] packets and [`HOLD_BYTES`]; past that, later packets are
//! dropped and asked for again when their turn comes) and the missing range
//! is asked for, one request at a time of at most `request_max` messages.
//! Each answer that moves `expected` on sends the next request at once, so
//! a server that answers with less than asked (one packet's worth, as
//! NASDAQ's do) costs one round trip, not a timeout. A request unanswered
//! within `request_timeout` is sent again, at most `request_tries` times in
//! all; then the range up to the next message we hold (or know of) is given
//! up: counted `unrecovered`, logged, and skipped (after a range the server
//! answered nothing for, later ranges get one try each until it answers
//! again: a dead server costs one timeout per gap). Without a re-request
//! server a gap waits one `request_timeout` for late (reordered) packets and
//! is then given up. Held packets are released as soon as `expected`
//! reaches them.
//!
//! So at any time every sequence number below `expected` was either handed
//! on once or counted unrecovered: `messages + unrecovered == next_seq - 1`.
//!
//! # Cost
//!
//! The live path does no allocation and no copy: a packet is received into
//! one buffer and its messages are handed out as slices of it. Only a packet
//! that arrives ahead of a gap is copied, into a slot reused afterwards.

use crate::source::{self, Source};
use serde::Serialize;
use serde_json::{Map, Value};
use shardcast_proto::itch::Frame;
use shardcast_proto::mold::{Kind, Packet, Request, Session, UdpEndpoint, FIRST_SEQ, MAX_DATAGRAM};
use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

/// Longest [`Receiver::next_message`] waits for a datagram before returning
/// [`Next::Idle`].
pub const POLL: Duration = Duration::from_millis(10);
/// Most packets held aside while a gap is filled.
pub const HOLD_PACKETS: usize = 4096;
/// Most bytes held aside while a gap is filled (with [`HOLD_PACKETS`], it
/// bounds the receiver's memory whatever the feed does).
pub const HOLD_BYTES: usize = 32 << 20;
/// The kernel receive buffer asked for on the feed socket: ~1/4 s of a busy
/// feed, so a receiver descheduled for a moment loses nothing (the kernel
/// caps it at `net.core.rmem_max`; the report says what was granted).
pub const RCVBUF: usize = 8 << 20;
/// Unrecovered ranges logged one line each; further ones are only counted.
const LOG_RANGES: u64 = 20;
/// Unrecovered ranges kept for the report.
const REPORT_RANGES: usize = 64;

/// How the receiver is set up (from `--source moldudp64:...` and the
/// `--rerequest*` flags).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MoldConfig {
    /// The feed.
    #[serde(serialize_with = "display")]
    pub endpoint: UdpEndpoint,
    /// The re-request server; `None`: gaps are given up after one timeout.
    pub rerequest: Option<SocketAddr>,
    /// How long a request waits for an answer before it is sent again.
    pub request_timeout: Duration,
    /// Requests sent for one range (the first included) before it is given up.
    pub request_tries: u32,
    /// Most messages one request asks for.
    pub request_max: u16,
    /// Most packets held aside while a gap is filled (at most
    /// [`HOLD_PACKETS`]).
    pub hold_packets: usize,
}

/// Serialize with `Display` (an endpoint as the text it was given as).
pub(crate) fn display<S: serde::Serializer, T: std::fmt::Display>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl MoldConfig {
    /// Defaults for everything but where the feed and the server are.
    pub fn new(endpoint: UdpEndpoint, rerequest: Option<SocketAddr>) -> MoldConfig {
        MoldConfig {
            endpoint,
            rerequest,
            request_timeout: Duration::from_millis(200),
            request_tries: 5,
            request_max: 256,
            hold_packets: HOLD_PACKETS,
        }
    }
}

/// The exchange side of a run: what the feed did and what repairing it
/// took (the report's `source` section for a MoldUDP64 source).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MoldStats {
    /// The session (trimmed), once the first packet came.
    pub session: Option<String>,
    /// Well-formed packets of the session, feed and answers.
    pub packets: u64,
    /// Of `packets`, those from the re-request server.
    pub answers: u64,
    /// Messages handed on, in sequence.
    pub messages: u64,
    /// Bytes of those messages as message blocks (length fields included,
    /// as an ITCH file counts them).
    pub bytes: u64,
    /// Heartbeats.
    pub heartbeats: u64,
    /// Whether the session's end was seen and everything before it handed
    /// on or given up.
    pub end_of_session: bool,
    /// Times messages were found missing (a packet, heartbeat or end of
    /// session beyond what had come).
    pub gaps: u64,
    /// Request packets sent (retries included).
    pub requests: u64,
    /// Messages asked for, summed over every request sent.
    pub rerequested: u64,
    /// Messages handed on that had been missing (answers, or late packets).
    pub recovered: u64,
    /// Messages given up: never came, within the tries.
    pub unrecovered: u64,
    /// The first given-up ranges, `[first, last]` inclusive.
    pub unrecovered_ranges: Vec<[u64; 2]>,
    /// Messages received again after they were handed on or held.
    pub duplicates: u64,
    /// Datagrams that are not well-formed packets (dropped whole).
    pub malformed_packets: u64,
    /// Packets of another session (ignored).
    pub foreign_session: u64,
    /// Packets dropped because the hold was full (asked for again later).
    pub hold_overflow: u64,
    /// Most packets held at once.
    pub held_max: u64,
    /// Errors sending to or receiving from the re-request server
    /// (`ECONNREFUSED`: nobody there).
    pub request_errors: u64,
    /// The next sequence number expected (one past the last handed on or
    /// given up).
    pub next_seq: u64,
    /// The feed socket's address (with the port the OS chose for port 0).
    pub local_addr: String,
    /// The kernel receive buffer granted, bytes.
    pub rcvbuf: u64,
}

/// What [`Receiver::next_message`] hands out.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<'a> {
    /// The next message in sequence (the ITCH bytes of one message block).
    Message(&'a [u8]),
    /// Nothing for [`POLL`]: check the stop flag and call again.
    Idle,
    /// The session ended and everything before its end was handed on or
    /// given up. Every later call says so again.
    End,
}

/// Where the message being handed out lives.
#[derive(Clone, Copy, Debug)]
enum Buf {
    Live,
    Slot(usize),
}

/// The packet being handed out: the next block's offset in its buffer,
/// its sequence number, the blocks left, and the frontier when the packet
/// came (messages below it had been missing: recovered).
#[derive(Clone, Copy, Debug)]
struct Cursor {
    buf: Buf,
    pos: usize,
    seq: u64,
    left: u16,
    recover_below: u64,
}

/// A packet held aside, ahead of a gap.
#[derive(Clone, Copy, Debug)]
struct Held {
    seq: u64,
    end: u64,
    slot: usize,
    recover_below: u64,
}

/// The request outstanding for the gap at `at`.
#[derive(Clone, Copy, Debug)]
struct Pending {
    at: u64,
    tries: u32,
    deadline: Instant,
}

/// A MoldUDP64 receiver: see the module documentation.
#[derive(Debug)]
pub struct Receiver {
    cfg: MoldConfig,
    feed: UdpSocket,
    req: Option<UdpSocket>,
    live: Box<[u8]>,
    slots: Vec<Vec<u8>>,
    free: Vec<usize>,
    held: VecDeque<Held>,
    held_bytes: usize,
    cur: Option<Cursor>,
    // A slot whose last message was handed out; freed on the next call,
    // once the caller's borrow of it has ended.
    spent: Option<usize>,
    session: Option<Session>,
    expected: u64,
    // One past the highest sequence number any packet, heartbeat or end of
    // session has shown to exist.
    frontier: u64,
    eos: Option<u64>,
    pending: Option<Pending>,
    // Without a server: when the gap at `expected` is given up.
    grace: Option<(u64, Instant)>,
    // Whether the server answered nothing while the last range given up
    // was asked for; `answers` when the current range was first asked for.
    server_silent: bool,
    answers_at_request: u64,
    stats: MoldStats,
}

impl Receiver {
    /// Bind (and join) the feed socket and connect the request socket.
    pub fn open(cfg: MoldConfig) -> io::Result<Receiver> {
        let ep = cfg.endpoint;
        // A multicast receiver binds the group's address, so it gets that
        // group's datagrams and not every group's on the port; SO_REUSEADDR
        // lets a second receiver (a backup) join the same group on the host.
        let feed = udp_socket(ep.addr, ep.is_multicast(), RCVBUF)?;
        if ep.is_multicast() {
            feed.join_multicast_v4(ep.addr.ip(), &ep.iface.unwrap_or(Ipv4Addr::UNSPECIFIED))?;
        }
        feed.set_nonblocking(true)?;
        let req = match cfg.rerequest {
            None => None,
            Some(server) => {
                let local = SocketAddrV4::new(ep.iface.unwrap_or(Ipv4Addr::UNSPECIFIED), 0);
                let s = udp_socket(local, false, 1 << 20)?;
                s.connect(server)?;
                s.set_nonblocking(true)?;
                Some(s)
            }
        };
        let hold = cfg.hold_packets.min(HOLD_PACKETS);
        let stats = MoldStats {
            next_seq: FIRST_SEQ,
            local_addr: feed.local_addr()?.to_string(),
            rcvbuf: rcvbuf(&feed),
            ..MoldStats::default()
        };
        Ok(Receiver {
            cfg,
            feed,
            req,
            live: vec![0u8; MAX_DATAGRAM + 1].into_boxed_slice(),
            slots: Vec::new(),
            free: Vec::new(),
            held: VecDeque::with_capacity(hold),
            held_bytes: 0,
            cur: None,
            spent: None,
            session: None,
            expected: FIRST_SEQ,
            frontier: FIRST_SEQ,
            eos: None,
            pending: None,
            grace: None,
            server_silent: false,
            answers_at_request: 0,
            stats,
        })
    }

    /// The feed socket's address (the OS's port for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.feed.local_addr()
    }

    /// What happened so far.
    pub fn stats(&self) -> &MoldStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &MoldConfig {
        &self.cfg
    }

    /// The next message in sequence, [`Next::Idle`] after [`POLL`] with
    /// nothing to hand out, or [`Next::End`]. Errors are the feed socket's
    /// (the request socket's are counted, never returned).
    pub fn next_message(&mut self) -> io::Result<Next<'_>> {
        if let Some(slot) = self.spent.take() {
            self.free_slot(slot);
        }
        loop {
            if let Some((buf, start, end)) = self.advance() {
                let bytes = match buf {
                    Buf::Live => self.live.get(start..end),
                    Buf::Slot(i) => self.slots.get(i).and_then(|s| s.get(start..end)),
                };
                // advance() checked the range against the parsed packet.
                return Ok(Next::Message(bytes.unwrap_or_default()));
            }
            if self.release_held() {
                continue;
            }
            if let Some(eos) = self.eos {
                if self.expected >= eos {
                    self.stats.end_of_session = true;
                    return Ok(Next::End);
                }
            }
            let now = Instant::now();
            if self.repair(now) {
                continue;
            }
            if !self.receive(now)? {
                return Ok(Next::Idle);
            }
        }
    }

    /// Hand out the current packet's next message, if any: its buffer and
    /// byte range.
    fn advance(&mut self) -> Option<(Buf, usize, usize)> {
        let c = self.cur.as_mut()?;
        let buf: &[u8] = match c.buf {
            Buf::Live => &self.live,
            Buf::Slot(i) => self.slots.get(i).map(Vec::as_slice).unwrap_or_default(),
        };
        let len = buf
            .get(c.pos..c.pos + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        let Some(len) = len.filter(|_| c.left > 0) else {
            // Not reached (a cursor is dropped with its last message, and
            // its packet was parsed whole), but a cursor with nothing to
            // give must not stay, nor keep its slot.
            let b = c.buf;
            self.cur = None;
            if let Buf::Slot(i) = b {
                self.free_slot(i);
            }
            return None;
        };
        let (start, end) = (c.pos + 2, c.pos + 2 + len);
        let seq = c.seq;
        c.pos = end;
        c.seq += 1;
        c.left -= 1;
        let (b, recover_below) = (c.buf, c.recover_below);
        if c.left == 0 {
            // Freed at the next call, after the caller is done with it.
            if let Buf::Slot(i) = b {
                self.spent = Some(i);
            }
            self.cur = None;
        }
        self.expected = seq + 1;
        self.stats.next_seq = self.expected;
        self.stats.messages += 1;
        self.stats.bytes += (end - start + 2) as u64;
        if seq < recover_below {
            self.stats.recovered += 1;
        }
        Some((b, start, end))
    }

    /// Make the first held packet at or before `expected` current; `false`
    /// if there is none.
    fn release_held(&mut self) -> bool {
        while let Some(&h) = self.held.front() {
            if h.seq > self.expected {
                return false;
            }
            self.held.pop_front();
            let len = self.slots.get(h.slot).map_or(0, Vec::len);
            self.held_bytes -= len;
            if h.end <= self.expected {
                self.stats.duplicates += h.end - h.seq;
                self.free_slot(h.slot);
                continue;
            }
            let Some(c) = self
                .slots
                .get(h.slot)
                .and_then(|b| cursor_at(b, Buf::Slot(h.slot), self.expected, h.recover_below))
            else {
                self.free_slot(h.slot);
                continue;
            };
            self.stats.duplicates += self.expected - h.seq;
            self.cur = Some(c);
            return true;
        }
        false
    }

    /// Messages are missing at `expected`: ask for them, ask again, or give
    /// them up. `true` if `expected` moved (something may be released).
    fn repair(&mut self, now: Instant) -> bool {
        if self.expected >= self.frontier {
            self.pending = None;
            self.grace = None;
            return false;
        }
        // The missing range: up to the first held packet, or what is known.
        let gap_end = self
            .held
            .front()
            .map_or(self.frontier, |h| h.seq.min(self.frontier));
        if self.req.is_none() {
            match self.grace {
                Some((at, deadline)) if at == self.expected => {
                    if now < deadline {
                        return false;
                    }
                    self.give_up(gap_end);
                    true
                }
                _ => {
                    self.grace = Some((self.expected, now + self.cfg.request_timeout));
                    false
                }
            }
        } else {
            match self.pending {
                Some(p) if p.at == self.expected => {
                    if now < p.deadline {
                        return false;
                    }
                    // A server that answered nothing for the last range
                    // given up gets one try per range, not all of them: a
                    // dead server costs one timeout per gap.
                    let tries = if self.server_silent {
                        1
                    } else {
                        self.cfg.request_tries
                    };
                    if p.tries >= tries {
                        self.server_silent = self.answers_at_request == self.stats.answers;
                        self.pending = None;
                        self.give_up(gap_end);
                        return true;
                    }
                    self.request(gap_end, p.tries + 1, now);
                    false
                }
                // No request yet, or the last one's answer moved us on:
                // ask for the next part at once.
                _ => {
                    self.request(gap_end, 1, now);
                    false
                }
            }
        }
    }

    /// Send one request for `[expected, gap_end)`, at most `request_max`.
    fn request(&mut self, gap_end: u64, tries: u32, now: Instant) {
        if tries == 1 {
            self.answers_at_request = self.stats.answers;
        }
        let count = (gap_end - self.expected).min(u64::from(self.cfg.request_max)) as u16;
        self.pending = Some(Pending {
            at: self.expected,
            tries,
            deadline: now + self.cfg.request_timeout,
        });
        // A gap seen before the first packet (impossible: the frontier only
        // moves with a packet of our session) has no session to ask in.
        let (Some(session), Some(sock)) = (self.session, self.req.as_ref()) else {
            return;
        };
        let r = Request {
            session,
            seq: self.expected,
            count,
        };
        self.stats.requests += 1;
        self.stats.rerequested += u64::from(count);
        if sock.send(&r.encode()).is_err() {
            // ECONNREFUSED from an earlier ICMP, or a full buffer: the
            // timeout and the tries handle it like a lost request.
            self.stats.request_errors += 1;
        }
    }

    /// Give up `[expected, end)`.
    fn give_up(&mut self, end: u64) {
        let (first, last) = (self.expected, end - 1);
        let n = end - self.expected;
        self.stats.unrecovered += n;
        let ranges = self.stats.unrecovered_ranges.len() as u64;
        if ranges < LOG_RANGES {
            eprintln!(
                "shardcast-pub: moldudp64: gave up {n} messages, sequence {first} to {last}: \
                 {} (counted as unrecovered)",
                if self.req.is_some() {
                    "the re-request server did not send them"
                } else {
                    "no --rerequest server to ask"
                }
            );
        } else if ranges == LOG_RANGES {
            eprintln!(
                "shardcast-pub: moldudp64: further unrecovered ranges are counted, not logged"
            );
        }
        if self.stats.unrecovered_ranges.len() < REPORT_RANGES {
            self.stats.unrecovered_ranges.push([first, last]);
        }
        self.expected = end;
        self.stats.next_seq = end;
        self.grace = None;
    }

    /// Wait (until [`POLL`] or the repair deadline) for a datagram and take
    /// it in; `false` on a timeout.
    fn receive(&mut self, now: Instant) -> io::Result<bool> {
        // A busy feed has a datagram waiting already: take it without a
        // poll (one system call a packet, not two). Not while a request is
        // out, so that its answer goes ahead of the feed.
        if self.pending.is_none() {
            match self.feed.recv(&mut self.live) {
                Ok(n) => {
                    self.accept(n, false);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        let mut wait = POLL;
        let deadline = self.pending.map(|p| p.deadline).or(self.grace.map(|g| g.1));
        if let Some(d) = deadline {
            wait = wait.min(d.saturating_duration_since(now));
        }
        let mut fds = [
            libc::pollfd {
                fd: self.feed.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.req.as_ref().map_or(-1, |s| s.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Rounded up: a deadline 0.4 ms away must not become a busy loop.
        let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: poll reads and writes the two pollfds of this local array
        // (a negative fd is ignored by poll).
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(true);
            }
            return Err(e);
        }
        if rc == 0 {
            return Ok(false);
        }
        // Answers first: they are what the held packets wait for.
        if fds[1].revents != 0 {
            if let Some(sock) = &self.req {
                match sock.recv(&mut self.live) {
                    Ok(n) => {
                        self.accept(n, true);
                        return Ok(true);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => self.stats.request_errors += 1,
                }
            }
        }
        if fds[0].revents != 0 {
            match self.feed.recv(&mut self.live) {
                Ok(n) => self.accept(n, false),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Take in the datagram of `n` bytes in the live buffer.
    fn accept(&mut self, n: usize, answer: bool) {
        let Some(dgram) = self.live.get(..n) else {
            self.stats.malformed_packets += 1;
            return;
        };
        let Ok(p) = Packet::parse(dgram) else {
            self.stats.malformed_packets += 1;
            return;
        };
        let h = p.header();
        match self.session {
            None => {
                self.session = Some(h.session);
                self.stats.session = Some(h.session.to_string());
                eprintln!("shardcast-pub: moldudp64: session {}", h.session);
            }
            Some(s) if s != h.session => {
                self.stats.foreign_session += 1;
                return;
            }
            Some(_) => {}
        }
        self.stats.packets += 1;
        if answer {
            self.stats.answers += 1;
            self.server_silent = false;
        }
        // Parse checked it fits.
        let end = h.end_seq().unwrap_or(h.seq);
        let before = self.frontier.max(self.expected);
        if h.seq > before {
            self.stats.gaps += 1;
        }
        self.frontier = self.frontier.max(end);
        match h.kind() {
            Kind::Heartbeat => self.stats.heartbeats += 1,
            Kind::EndOfSession => {
                self.eos = Some(self.eos.map_or(h.seq, |e| e.max(h.seq)));
            }
            Kind::Messages(count) => {
                if end <= self.expected {
                    self.stats.duplicates += u64::from(count);
                } else if h.seq <= self.expected {
                    if let Some(c) = cursor_at(dgram, Buf::Live, self.expected, before) {
                        self.stats.duplicates += self.expected - h.seq;
                        self.cur = Some(c);
                    }
                } else {
                    self.hold(n, h.seq, end, before);
                }
            }
        }
    }

    /// Copy the live packet aside (it starts beyond `expected`).
    fn hold(&mut self, n: usize, seq: u64, end: u64, recover_below: u64) {
        let at = self.held.partition_point(|h| h.seq < seq);
        if let Some(h) = self.held.get(at) {
            if h.seq == seq && h.end >= end {
                self.stats.duplicates += end - seq;
                return;
            }
        }
        if self.held.len() >= self.cfg.hold_packets.min(HOLD_PACKETS)
            || self.held_bytes + n > HOLD_BYTES
        {
            self.stats.hold_overflow += 1;
            return;
        }
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Vec::new());
                self.slots.len() - 1
            }
        };
        if let Some(buf) = self.slots.get_mut(slot) {
            buf.clear();
            buf.extend_from_slice(self.live.get(..n).unwrap_or_default());
        }
        self.held_bytes += n;
        self.held.insert(
            at,
            Held {
                seq,
                end,
                slot,
                recover_below,
            },
        );
        self.stats.held_max = self.stats.held_max.max(self.held.len() as u64);
    }

    fn free_slot(&mut self, slot: usize) {
        if !self.free.contains(&slot) {
            self.free.push(slot);
        }
    }
}

impl Source for Receiver {
    fn kind(&self) -> &'static str {
        "moldudp64"
    }

    #[inline]
    fn next(&mut self) -> io::Result<source::Next<'_>> {
        Ok(match self.next_message()? {
            Next::Message(m) => source::Next::Frame(Frame::Message(m)),
            Next::Idle => source::Next::Idle,
            Next::End => source::Next::End,
        })
    }

    fn bytes(&self) -> u64 {
        self.stats.bytes
    }

    fn report(&self) -> Map<String, Value> {
        let mut m = match serde_json::to_value(&self.stats) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        // The reader reports these itself, with the same meaning: once.
        m.remove("messages");
        m.remove("bytes");
        m.insert("endpoint".into(), self.cfg.endpoint.to_string().into());
        m.insert(
            "rerequest".into(),
            self.cfg.rerequest.map(|a| a.to_string()).into(),
        );
        m
    }
}

/// A cursor on the message `seq` of the well-formed packet `buf` (which
/// holds `seq`).
fn cursor_at(buf: &[u8], which: Buf, seq: u64, recover_below: u64) -> Option<Cursor> {
    let p = Packet::parse(buf).ok()?;
    let h = p.header();
    let mut msgs = p.messages();
    let skip = seq.checked_sub(h.seq)?;
    for _ in 0..skip {
        msgs.next()?;
    }
    let pos = buf.len() - msgs.remaining_bytes().len();
    Some(Cursor {
        buf: which,
        pos,
        seq,
        left: u16::try_from(msgs.len()).ok()?,
        recover_below,
    })
}

/// A UDP socket bound to `addr`, with `SO_REUSEADDR` if asked and a receive
/// buffer of about `rcvbuf` bytes (what the kernel grants).
fn udp_socket(addr: SocketAddrV4, reuse: bool, rcvbuf: usize) -> io::Result<UdpSocket> {
    // SAFETY: socket(2) returns a new descriptor or -1; from_raw_fd takes
    // ownership of a valid one (closed on every error path by its drop).
    let sock = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        UdpSocket::from_raw_fd(fd)
    };
    let fd = sock.as_raw_fd();
    if reuse {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    }
    // Best effort: a smaller buffer than asked is reported, not an error.
    let _ = setsockopt_int(
        fd,
        libc::SOL_SOCKET,
        libc::SO_RCVBUF,
        i32::try_from(rcvbuf).unwrap_or(i32::MAX),
    );
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: bind reads a sockaddr_in of the size given, from our stack.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

fn setsockopt_int(fd: i32, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: setsockopt reads one c_int from our stack.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The socket's receive buffer, bytes (the kernel's figure, which counts
/// its bookkeeping too).
fn rcvbuf(sock: &UdpSocket) -> u64 {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        u64::try_from(v).unwrap_or(0)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    //! Over real loopback sockets: the test is the exchange (a plain UDP
    //! socket sending hand-built packets) and, where a test needs one, the
    //! re-request server (a thread answering from the same messages).

    use super::*;
    use shardcast_proto::mold::{end_of_session, heartbeat, PacketWriter};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const SESSION: &str = "TEST000001";

    fn session() -> Session {
        Session::from_name(SESSION).unwrap()
    }

    fn msg(seq: u64) -> Vec<u8> {
        format!("message {seq}").into_bytes()
    }

    /// A packet of messages `seqs` (consecutive).
    fn packet(seqs: std::ops::RangeInclusive<u64>) -> Vec<u8> {
        let mut buf = vec![0u8; 1400];
        let mut w = PacketWriter::new(&mut buf, session(), *seqs.start()).unwrap();
        for s in seqs {
            w.push(&msg(s)).unwrap();
        }
        w.finish().to_vec()
    }

    fn receiver(rerequest: Option<SocketAddr>, tweak: impl FnOnce(&mut MoldConfig)) -> Receiver {
        let ep = UdpEndpoint::parse("udp://127.0.0.1:0").unwrap();
        let mut cfg = MoldConfig::new(ep, rerequest);
        // Long enough that an answering server is never retried on a busy
        // machine; the tests of silence shorten it.
        cfg.request_timeout = Duration::from_secs(1);
        cfg.request_tries = 3;
        tweak(&mut cfg);
        Receiver::open(cfg).unwrap()
    }

    /// The exchange's socket, sending to the receiver.
    struct Exchange {
        sock: UdpSocket,
        to: SocketAddr,
    }

    impl Exchange {
        fn to(rx: &Receiver) -> Exchange {
            Exchange {
                sock: UdpSocket::bind("127.0.0.1:0").unwrap(),
                to: rx.local_addr().unwrap(),
            }
        }

        fn send(&self, b: &[u8]) {
            self.sock.send_to(b, self.to).unwrap();
        }
    }

    /// A re-request server thread answering from messages `1..=last`, at
    /// most `per_answer` messages per answer (one packet per request, as
    /// NASDAQ's servers do). Stops when dropped.
    struct Server {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<u64>>,
    }

    impl Server {
        fn start(last: u64, per_answer: u16) -> Server {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(5)))
                .unwrap();
            let addr = sock.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let stop2 = Arc::clone(&stop);
            let thread = std::thread::spawn(move || {
                let mut requests = 0;
                let mut buf = [0u8; 64];
                while !stop2.load(Ordering::Relaxed) {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let r = Request::parse(&buf[..n]).unwrap();
                    assert_eq!(r.session, session());
                    requests += 1;
                    let end = (r.seq + u64::from(r.count.min(per_answer))).min(last + 1);
                    if r.seq < end {
                        sock.send_to(&packet(r.seq..=end - 1), from).unwrap();
                    }
                }
                requests
            });
            Server {
                addr,
                stop,
                thread: Some(thread),
            }
        }

        fn requests(mut self) -> u64 {
            self.stop.store(true, Ordering::Relaxed);
            self.thread.take().unwrap().join().unwrap()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Every message until the end of the session (the test fails after
    /// 10 s without it).
    fn drain(rx: &mut Receiver) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "no end of session; got {} messages, {:?}",
                got.len(),
                rx.stats()
            );
            match rx.next_message().unwrap() {
                Next::Message(m) => got.push(m.to_vec()),
                Next::Idle => {}
                Next::End => break,
            }
        }
        // And it stays ended.
        assert_eq!(rx.next_message().unwrap(), Next::End);
        let st = rx.stats();
        assert_eq!(
            st.messages + st.unrecovered,
            st.next_seq - 1,
            "every sequence number below next_seq is handed on or given up: {st:?}"
        );
        got
    }

    fn msgs(seqs: impl IntoIterator<Item = u64>) -> Vec<Vec<u8>> {
        seqs.into_iter().map(msg).collect()
    }

    #[test]
    fn packets_in_order_are_handed_on_as_they_come_with_no_request() {
        let server = Server::start(6, 100);
        let mut rx = receiver(Some(server.addr), |_| {});
        let ex = Exchange::to(&rx);
        ex.send(&packet(1..=2));
        ex.send(&heartbeat(session(), 3));
        ex.send(&packet(3..=5));
        ex.send(&packet(6..=6));
        ex.send(&end_of_session(session(), 7));
        assert_eq!(drain(&mut rx), msgs(1..=6));
        let st = rx.stats().clone();
        assert_eq!(server.requests(), 0);
        assert_eq!(st.session.as_deref(), Some(SESSION));
        assert_eq!((st.packets, st.heartbeats, st.messages), (5, 1, 6));
        assert_eq!(
            (st.gaps, st.requests, st.recovered, st.unrecovered),
            (0, 0, 0, 0)
        );
        assert!(st.end_of_session);
        assert_eq!(st.next_seq, 7);
    }

    #[test]
    fn a_lost_stretch_is_asked_for_in_chunks_and_the_held_packets_follow_in_order() {
        // The server answers at most 2 messages a request: 3..=8 takes
        // three answers, each asking for the next at once.
        let server = Server::start(12, 2);
        let mut rx = receiver(Some(server.addr), |c| c.request_max = 4);
        let ex = Exchange::to(&rx);
        ex.send(&packet(1..=2));
        // 3..=8 lost.
        ex.send(&packet(9..=10));
        ex.send(&packet(11..=12));
        ex.send(&end_of_session(session(), 13));
        assert_eq!(drain(&mut rx), msgs(1..=12));
        let st = rx.stats().clone();
        assert_eq!((st.gaps, st.recovered, st.unrecovered), (1, 6, 0));
        assert_eq!(st.answers, 3);
        assert_eq!(st.requests, 3);
        assert!(st.rerequested >= 6);
        // 11..=12 is held too unless the answers came before it was read.
        assert!((1..=2).contains(&st.held_max), "{st:?}");
        assert_eq!(server.requests(), 3);
    }

    #[test]
    fn reordered_packets_are_put_back_in_order_without_a_server() {
        // A gap waits this long for a late packet before it is given up.
        let mut rx = receiver(None, |c| c.request_timeout = Duration::from_secs(5));
        let ex = Exchange::to(&rx);
        ex.send(&packet(1..=1));
        ex.send(&packet(3..=4));
        ex.send(&packet(2..=2));
        ex.send(&end_of_session(session(), 5));
        assert_eq!(drain(&mut rx), msgs(1..=4));
        let st = rx.stats();
        assert_eq!((st.gaps, st.recovered, st.unrecovered), (1, 1, 0));
        assert_eq!(st.requests, 0);
    }

    #[test]
    fn a_gap_the_server_never_answers_is_given_up_after_the_tries_and_the_feed_goes_on() {
        // A server socket that never reads: requests vanish.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut rx = receiver(Some(silent.local_addr().unwrap()), |c| {
            c.request_timeout = Duration::from_millis(50)
        });
        let ex = Exchange::to(&rx);
        ex.send(&packet(1..=1));
        ex.send(&packet(4..=5));
        ex.send(&packet(7..=7));
        ex.send(&end_of_session(session(), 8));
        assert_eq!(drain(&mut rx), msgs([1, 4, 5, 7]));
        let st = rx.stats();
        assert_eq!((st.gaps, st.recovered, st.unrecovered), (2, 0, 3));
        assert_eq!(st.unrecovered_ranges, vec![[2, 3], [6, 6]]);
        // Three tries for the first range; the server answered none, so
        // one for the next.
        assert_eq!(st.requests, 4);
        assert!(st.end_of_session);
    }

    #[test]
    fn a_server_that_is_not_there_is_counted_not_a_failure() {
        // A port nobody listens on: the kernel answers with ICMP, which
        // the connected request socket reports as ECONNREFUSED.
        let gone = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut rx = receiver(Some(gone), |c| {
            c.request_tries = 2;
            c.request_timeout = Duration::from_millis(50);
        });
        let ex = Exchange::to(&rx);
        ex.send(&packet(1..=1));
        ex.send(&packet(3..=3));
        ex.send(&end_of_session(session(), 4));
        assert_eq!(drain(&mut rx), msgs([1, 3]));
        let st = rx.stats();
        assert_eq!((st.unrecovered, st.requests), (1, 2));
        assert!(st.request_errors >= 1, "{st:?}");
    }

    #[test]
    fn a_heartbeat_or_end_of_session_beyond_what_came_is_a_gap_and_is_filled() {
        let server = Server::start(5, 100);
        let mut rx = receiver(Some(server.addr), |_| {});
        let ex = Exchange::to(&rx);
        ex.send(&packet(1..=1));
        ex.send(&heartbeat(session(), 4));
        // 4 and 5 lost too; the end says the session had 5.
        ex.send(&end_of_session(session(), 6));
        assert_eq!(drain(&mut rx), msgs(1..=5));
        let st = rx.stats();
        assert_eq!((st.gaps, st.recovered, st.unrecovered), (2, 4, 0));
        assert_eq!(st.heartbeats, 1);
    }

    #[test]
    fn duplicates_other_sessions_and_damaged_datagrams_are_counted_and_skipped() {
        let mut rx = receiver(None, |_| {});
        let ex = Exchange::to(&rx);
        ex.send(&packet(1..=2));
        ex.send(&packet(1..=2));
        ex.send(&packet(2..=3));
        let mut other = packet(4..=4);
        other[..10].copy_from_slice(b"OTHER00001");
        ex.send(&other);
        let mut cut = packet(4..=4);
        cut.pop();
        ex.send(&cut);
        ex.send(b"not a packet");
        ex.send(&packet(4..=4));
        ex.send(&end_of_session(session(), 5));
        assert_eq!(drain(&mut rx), msgs(1..=4));
        let st = rx.stats();
        assert_eq!(st.duplicates, 3);
        assert_eq!(st.foreign_session, 1);
        assert_eq!(st.malformed_packets, 2);
        assert_eq!((st.gaps, st.unrecovered), (0, 0));
    }

    #[test]
    fn a_full_hold_drops_later_packets_which_are_asked_for_in_their_turn() {
        let server = Server::start(6, 100);
        let mut rx = receiver(Some(server.addr), |c| c.hold_packets = 1);
        let ex = Exchange::to(&rx);
        ex.send(&packet(1..=1));
        // 2 lost; 3 is held; 4 and 5 find the hold full.
        ex.send(&packet(3..=3));
        ex.send(&packet(4..=4));
        ex.send(&packet(5..=5));
        ex.send(&packet(6..=6));
        ex.send(&end_of_session(session(), 7));
        assert_eq!(drain(&mut rx), msgs(1..=6));
        let st = rx.stats();
        // How many found the hold full depends on whether the answer for 2
        // came before them; each that did was asked for in its turn.
        assert_eq!(st.held_max, 1);
        assert_eq!(st.unrecovered, 0);
        assert!(st.requests > st.hold_overflow.min(1), "{st:?}");
    }

    #[test]
    fn a_receiver_that_starts_late_asks_for_the_session_from_its_first_message() {
        let server = Server::start(6, 100);
        let mut rx = receiver(Some(server.addr), |_| {});
        let ex = Exchange::to(&rx);
        ex.send(&packet(5..=6));
        ex.send(&end_of_session(session(), 7));
        assert_eq!(drain(&mut rx), msgs(1..=6));
        assert_eq!(rx.stats().recovered, 4);
    }
}
