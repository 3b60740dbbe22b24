//! `shardcast-moldsim`: a MoldUDP64 exchange for tests. It plays an ITCH
//! day file as a live feed and answers re-requests from the same file; it
//! is a test tool (issue 12 asks for one), not a product feature.
//!
//! * [`Day`]: the file in memory. ITCH files put a 2-byte big-endian length
//!   before every message, which is exactly a MoldUDP64 message block, so a
//!   packet is a header followed by a contiguous slice of the file.
//! * [`plan_packet`]: where a packet ends: at `--max-packet` bytes,
//!   `--max-messages`, and at the edges of the `--drop-seq` ranges (so the
//!   dropped messages are exactly those).
//! * [`run`]: the feed (`--to`, on the calling thread) and the re-request
//!   server (`--serve`, its own thread), then the [`Report`].
//!
//! Loss is deterministic: `--drop-every N` drops data packets N, 2N, ...,
//! `--drop-seq` drops the packets holding those messages; heartbeats, end
//! of session and answers are never dropped. The server answers every
//! request of its session for messages the file has, with one packet of at
//! most `--max-packet` bytes from the requested sequence number on (as
//! NASDAQ's servers do: a receiver asks again for the rest), whether or
//! not the feed has sent them yet.

pub mod cli;
pub mod config;
mod report;

pub use config::Config;
pub use report::{FeedReport, Report, ServerReport};

use flate2::read::GzDecoder;
use shardcast_agent::signals::StopSignal;
use shardcast_proto::itch::{Frame, Framer};
use shardcast_proto::mold::{self, Header, Request, Session, HEADER_LEN};
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a run failed (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `--file` could not be read. Remedy: check the path (and that a
    /// `.gz` file is gzip).
    #[error("reading --file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// A socket could not be made, bound or sent on; `flag` says which.
    #[error("{flag}: {context}: {source}")]
    Socket {
        /// `--to` or `--serve`.
        flag: &'static str,
        /// What was being done.
        context: String,
        /// The OS error.
        source: io::Error,
    },
    /// The server thread panicked.
    #[error("the re-request server thread panicked")]
    Panicked,
}

/// An ITCH day in memory: complete messages only (a truncated tail is
/// left out and counted).
#[derive(Debug, Clone)]
pub struct Day {
    bytes: Vec<u8>,
    // starts[i]: offset of message i's block (sequence number i + 1);
    // starts[messages] = the end.
    starts: Vec<usize>,
    truncated: u64,
}

impl Day {
    /// Read a day file, through gzip if `gzip`.
    pub fn load(path: &std::path::Path, gzip: bool) -> io::Result<Day> {
        let f = std::fs::File::open(path)?;
        let mut bytes = Vec::new();
        if gzip {
            GzDecoder::new(f).read_to_end(&mut bytes)?;
        } else {
            io::BufReader::new(f).read_to_end(&mut bytes)?;
        }
        Ok(Day::from_bytes(bytes))
    }

    /// A day from its bytes (length-prefixed messages).
    pub fn from_bytes(mut bytes: Vec<u8>) -> Day {
        let mut starts = Vec::new();
        let mut truncated = 0;
        // The end of the last whole message: a truncated tail is not sent.
        let mut end = 0;
        let mut fr = Framer::new(&bytes);
        loop {
            let at = fr.position();
            match fr.next() {
                Some(Frame::Message(_)) => {
                    starts.push(at);
                    end = fr.position();
                }
                Some(Frame::Truncated(_)) => {
                    truncated = 1;
                    break;
                }
                None => break,
            }
        }
        bytes.truncate(end);
        starts.push(end);
        Day {
            bytes,
            starts,
            truncated,
        }
    }

    /// Complete messages: sequence numbers `1..=messages()`.
    pub fn messages(&self) -> u64 {
        (self.starts.len() - 1) as u64
    }

    /// A truncated message at the end of the file (not sent): 0 or 1.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Bytes of messages `[seq, end)` as message blocks, prefixes
    /// included; empty if out of range.
    pub fn blocks(&self, seq: u64, end: u64) -> &[u8] {
        let idx = |s: u64| usize::try_from(s.saturating_sub(1)).ok();
        match (idx(seq), idx(end)) {
            (Some(a), Some(b)) if seq >= 1 && a <= b => {
                let (Some(&x), Some(&y)) = (self.starts.get(a), self.starts.get(b)) else {
                    return &[];
                };
                &self.bytes[x..y]
            }
            _ => &[],
        }
    }

    /// The block length of message `seq` (prefix included).
    fn block_len(&self, seq: u64) -> usize {
        self.blocks(seq, seq + 1).len()
    }
}

/// Where the packet starting at `seq` ends (exclusive): at most
/// `max_messages` messages and `max_packet` bytes (a first message that is
/// alone too long still goes, alone), never past `limit`, and never across
/// the edge of a `drop` range.
pub fn plan_packet(
    day: &Day,
    seq: u64,
    limit: u64,
    max_packet: usize,
    max_messages: u16,
    drop: &[[u64; 2]],
) -> u64 {
    let mut limit = limit.min(day.messages() + 1);
    // The first drop range that ends at or after seq.
    if let Some(r) = drop.iter().find(|r| r[1] >= seq) {
        limit = if r[0] <= seq {
            limit.min(r[1] + 1)
        } else {
            limit.min(r[0])
        };
    }
    let mut end = seq;
    let mut len = HEADER_LEN;
    while end < limit && end - seq < u64::from(max_messages) {
        let b = day.block_len(end);
        if end > seq && len + b > max_packet {
            break;
        }
        len += b;
        end += 1;
    }
    end
}

/// Whether message `seq` is in a `--drop-seq` range.
fn in_drop(drop: &[[u64; 2]], seq: u64) -> bool {
    drop.iter().any(|r| r[0] <= seq && seq <= r[1])
}

/// Header plus blocks of `[seq, end)` into `buf`.
fn build(buf: &mut Vec<u8>, session: Session, day: &Day, seq: u64, end: u64) {
    buf.clear();
    let h = Header {
        session,
        seq,
        count: (end - seq) as u16,
    };
    buf.extend_from_slice(&h.encode());
    buf.extend_from_slice(day.blocks(seq, end));
}

/// Play the feed and/or serve re-requests, as `cfg` says, until the feed's
/// end of session (and `--linger-secs`), `--duration`, or a signal.
pub fn run(cfg: &Config, signal: &StopSignal) -> Result<Report, RunError> {
    let started = Instant::now();
    let day = Day::load(&cfg.file, cfg.gzip).map_err(|source| RunError::Read {
        path: cfg.file.display().to_string(),
        source,
    })?;
    let day = Arc::new(day);
    let stop = Arc::new(AtomicBool::new(false));
    let server = match cfg.serve {
        None => None,
        Some(addr) => {
            let sock = UdpSocket::bind(addr).map_err(|source| RunError::Socket {
                flag: "--serve",
                context: format!("binding {addr}"),
                source,
            })?;
            let bound = sock.local_addr().map_err(|source| RunError::Socket {
                flag: "--serve",
                context: "reading the bound address".into(),
                source,
            })?;
            // Tests wait for this line, then point the receiver here.
            eprintln!("shardcast-moldsim: re-request server bound {bound}");
            let (cfg2, day2, stop2, signal2) = (
                cfg.clone(),
                Arc::clone(&day),
                Arc::clone(&stop),
                signal.clone(),
            );
            let h = std::thread::Builder::new()
                .name("moldsim-serve".into())
                .spawn(move || serve(&cfg2, &day2, sock, bound, &stop2, &signal2))
                .map_err(|source| RunError::Socket {
                    flag: "--serve",
                    context: "starting the server thread".into(),
                    source,
                })?;
            Some(h)
        }
    };
    let feed = cfg.to.map(|to| send(cfg, &day, to, signal));
    if let Some(h) = server {
        let deadline = match (&feed, cfg.duration) {
            (Some(_), _) => Some(Instant::now() + cfg.linger),
            (None, d) => d.map(|d| started + d),
        };
        // The server stops itself at a signal; here only its deadline.
        while !h.is_finished() {
            if deadline.is_some_and(|d| Instant::now() >= d) || signal.raised() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        let served = h.join().map_err(|_| RunError::Panicked)??;
        return Ok(Report::new(
            cfg,
            &day,
            feed.transpose()?,
            Some(served),
            started,
        ));
    }
    Ok(Report::new(cfg, &day, feed.transpose()?, None, started))
}

/// The feed: every message of the day in packets, paced at `--rate`,
/// heartbeats when idle, the injected loss, then end of session.
fn send(
    cfg: &Config,
    day: &Day,
    to: mold::UdpEndpoint,
    signal: &StopSignal,
) -> Result<FeedReport, RunError> {
    let serr = |context: String| {
        move |source| RunError::Socket {
            flag: "--to",
            context,
            source,
        }
    };
    let local = SocketAddr::from((to.iface.unwrap_or(Ipv4Addr::UNSPECIFIED), 0));
    let sock = UdpSocket::bind(local).map_err(serr(format!("binding {local}")))?;
    if to.is_multicast() {
        sock.set_multicast_ttl_v4(cfg.multicast_hops)
            .map_err(serr("setting the multicast TTL".into()))?;
        if let Some(iface) = to.iface {
            multicast_if(&sock, iface).map_err(serr(format!("sending from interface {iface}")))?;
        }
    }
    let dest = SocketAddr::V4(to.addr);
    let mut r = FeedReport {
        to: to.to_string(),
        ..FeedReport::default()
    };
    let n = day.messages();
    eprintln!(
        "shardcast-moldsim: sending {n} messages of session {} to {to}",
        cfg.session
    );
    let mut buf = Vec::with_capacity(cfg.max_packet.max(HEADER_LEN + 2 + 65_535));
    let t0 = Instant::now();
    let mut last = t0;
    let mut seq = 1u64;
    let mut packet_no = 0u64;
    let send_to = |b: &[u8]| -> Result<(), RunError> {
        sock.send_to(b, dest)
            .map(|_| ())
            .map_err(serr(format!("sending to {to}")))
    };
    while seq <= n {
        if signal.raised() {
            r.stopped_by_signal = true;
            break;
        }
        if cfg.rate > 0 {
            let due = t0
                + Duration::from_nanos(
                    (u128::from(seq - 1) * 1_000_000_000 / u128::from(cfg.rate)) as u64,
                );
            loop {
                let now = Instant::now();
                if now >= due || signal.raised() {
                    break;
                }
                if now >= last + cfg.heartbeat {
                    send_to(&mold::heartbeat(cfg.session, seq))?;
                    r.heartbeats += 1;
                    last = now;
                }
                let wake = due.min(last + cfg.heartbeat);
                std::thread::sleep(
                    wake.saturating_duration_since(now)
                        .min(Duration::from_millis(10)),
                );
            }
        }
        let end = plan_packet(
            day,
            seq,
            n + 1,
            cfg.max_packet,
            cfg.max_messages,
            &cfg.drop_seq,
        );
        packet_no += 1;
        let count = end - seq;
        let dropped =
            (cfg.drop_every > 0 && packet_no % cfg.drop_every == 0) || in_drop(&cfg.drop_seq, seq);
        if dropped {
            r.packets_dropped += 1;
            r.messages_dropped += count;
            let ranges = &mut r.dropped_ranges;
            match ranges.last_mut() {
                Some(l) if l[1] + 1 == seq => l[1] = end - 1,
                _ => {
                    if ranges.len() < 64 {
                        ranges.push([seq, end - 1]);
                    }
                }
            }
        } else {
            build(&mut buf, cfg.session, day, seq, end);
            send_to(&buf)?;
            r.packets_sent += 1;
            r.messages_sent += count;
        }
        last = Instant::now();
        seq = end;
    }
    r.next_seq = seq;
    for i in 0..cfg.eos_count {
        if i > 0 {
            std::thread::sleep(cfg.eos_interval);
        }
        send_to(&mold::end_of_session(cfg.session, seq))?;
        r.end_of_session_sent += 1;
    }
    r.elapsed_s = t0.elapsed().as_secs_f64();
    eprintln!(
        "shardcast-moldsim: feed done: {} packets sent, {} dropped ({} messages), end of session at {seq}",
        r.packets_sent, r.packets_dropped, r.messages_dropped
    );
    Ok(r)
}

/// `IP_MULTICAST_IF`: send multicast from the interface with this address.
fn multicast_if(sock: &UdpSocket, iface: Ipv4Addr) -> io::Result<()> {
    let a = libc::in_addr {
        s_addr: u32::from(iface).to_be(),
    };
    // SAFETY: setsockopt reads one in_addr from our stack.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&a as *const libc::in_addr).cast(),
            std::mem::size_of::<libc::in_addr>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The re-request server: one answer packet per good request.
fn serve(
    cfg: &Config,
    day: &Day,
    sock: UdpSocket,
    bound: SocketAddr,
    stop: &AtomicBool,
    signal: &StopSignal,
) -> Result<ServerReport, RunError> {
    // The timeout is how often the stop flags are looked at.
    sock.set_read_timeout(Some(Duration::from_millis(10)))
        .map_err(|source| RunError::Socket {
            flag: "--serve",
            context: "setting a read timeout".into(),
            source,
        })?;
    let mut r = ServerReport {
        bound: bound.to_string(),
        ..ServerReport::default()
    };
    let mut inbuf = [0u8; 2048];
    let mut out = Vec::with_capacity(cfg.max_packet.max(HEADER_LEN + 2 + 65_535));
    let n = day.messages();
    while !stop.load(Ordering::Relaxed) && !signal.raised() {
        let (len, from) = match sock.recv_from(&mut inbuf) {
            Ok(v) => v,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(source) => {
                return Err(RunError::Socket {
                    flag: "--serve",
                    context: "receiving a request".into(),
                    source,
                })
            }
        };
        r.requests += 1;
        let req = match Request::parse(&inbuf[..len]) {
            Ok(q) => q,
            Err(_) => {
                r.refused_malformed += 1;
                continue;
            }
        };
        if req.session != cfg.session {
            r.refused_session += 1;
            continue;
        }
        if req.seq > n {
            r.refused_beyond += 1;
            continue;
        }
        let limit = req.seq.saturating_add(u64::from(req.count)).min(n + 1);
        let end = plan_packet(day, req.seq, limit, cfg.max_packet, cfg.max_messages, &[]);
        build(&mut out, cfg.session, day, req.seq, end);
        match sock.send_to(&out, from) {
            Ok(_) => {
                r.answered += 1;
                r.messages_answered += end - req.seq;
                r.messages_requested += u64::from(req.count);
            }
            // The receiver's socket may be gone; that is its business.
            Err(_) => r.send_errors += 1,
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_proto::mold::Packet;

    /// A day of `n` messages, message `i` (1-based) being `i % 7 + 1` bytes.
    fn day(n: u64, truncated: bool) -> Day {
        let mut b = Vec::new();
        for i in 1..=n {
            let len = (i % 7 + 1) as usize;
            b.extend_from_slice(&(len as u16).to_be_bytes());
            b.extend(std::iter::repeat(i as u8).take(len));
        }
        if truncated {
            b.extend_from_slice(&[0, 30, 1, 2]);
        }
        Day::from_bytes(b)
    }

    #[test]
    fn a_day_indexes_its_messages_and_leaves_a_truncated_tail_out() {
        let d = day(10, true);
        assert_eq!((d.messages(), d.truncated()), (10, 1));
        assert_eq!(d.blocks(1, 2), &[0, 2, 1, 1]);
        assert_eq!(d.blocks(3, 3), &[] as &[u8]);
        assert_eq!(d.blocks(10, 11).len(), 2 + 4);
        assert_eq!(d.blocks(11, 12), &[] as &[u8]);
        assert_eq!(d.blocks(0, 2), &[] as &[u8]);
        assert_eq!(day(0, false).messages(), 0);
    }

    #[test]
    fn packets_stop_at_their_size_count_and_drop_range_edges() {
        let d = day(100, false);
        // 5 messages at most.
        assert_eq!(plan_packet(&d, 1, 101, 1400, 5, &[]), 6);
        // Bytes: header 20 + blocks of 4, 5, 6 = 35; a fourth (7) passes 40.
        assert_eq!(plan_packet(&d, 1, 101, 40, 64, &[]), 4);
        // A first message larger than the packet still goes, alone.
        assert_eq!(plan_packet(&d, 1, 101, 21, 64, &[]), 2);
        // Up to a drop range, through it alone, then on.
        let drop = [[10, 12], [50, 50]];
        assert_eq!(plan_packet(&d, 1, 101, 1400, 64, &drop), 10);
        assert_eq!(plan_packet(&d, 10, 101, 1400, 64, &drop), 13);
        assert_eq!(plan_packet(&d, 13, 101, 1400, 64, &drop), 50);
        assert_eq!(plan_packet(&d, 50, 101, 1400, 64, &drop), 51);
        assert_eq!(plan_packet(&d, 51, 101, 1400, 64, &drop), 101);
        // Never past the end or the limit.
        assert_eq!(plan_packet(&d, 99, 1000, 1400, 64, &[]), 101);
        assert_eq!(plan_packet(&d, 5, 7, 1400, 64, &[]), 7);
    }

    #[test]
    fn a_built_packet_carries_the_files_blocks_under_a_moldudp64_header() {
        let d = day(20, false);
        let mut buf = Vec::new();
        let s = Session::from_name("T1").unwrap();
        build(&mut buf, s, &d, 3, 6);
        let p = Packet::parse(&buf).unwrap();
        assert_eq!((p.header().seq, p.header().count), (3, 3));
        let m: Vec<(u64, Vec<u8>)> = p.messages().map(|(q, m)| (q, m.to_vec())).collect();
        assert_eq!(m, vec![(3, vec![3; 4]), (4, vec![4; 5]), (5, vec![5; 6])]);
    }
}
