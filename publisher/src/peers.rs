//! Who is connected to a stream and who is subscribed: the publisher's
//! defence against peers that forge subscription events, flood
//! subscriptions, or hold connections open without finishing a handshake.
//!
//! **Counting subscribers per connection.** `ZMQ_XPUB_VERBOSER` hands up
//! every subscribe and unsubscribe of every peer, repeats and unsubscribes
//! for topics never subscribed included, so counting events lets one peer
//! count twice or cancel another. Every stream socket therefore has a ZAP
//! domain, so even a plain-text handshake goes through our ZAP handler,
//! which gives each connection a User-Id of its own (`agent::curve::Zap`);
//! libzmq attaches it to every message from that connection, subscription
//! events included. A subscriber is a connection that subscribed to the
//! control topic and has not unsubscribed: repeats are one, an unsubscribe
//! only ever removes its own connection. When a connection ends, libzmq makes
//! up an unsubscribe for each topic it held, *without* a User-Id: those
//! cannot be forged (a peer's own messages always carry its id), so each is
//! one counted subscriber gone, which one unknown ([`Roster::count`]).
//!
//! **Bounding what one peer can cost.** libzmq keeps every subscription in a
//! trie (about 32 bytes per prefix byte) updated on the stream's thread. The
//! stream's `ZMQ_MAXMSGSZ` bounds one subscription's size (a larger one cuts
//! the peer off inside libzmq); [`Roster`] bounds how many one connection
//! holds (`--max-subscriptions`): past it, every connection from that peer's
//! address is cut off (the connection itself cannot be named to libzmq, its
//! address can). Connections per source address are bounded too
//! (`--max-peers-per-host`), so half-open handshakes cannot use up the
//! descriptor table (`--handshake-timeout-ms` ends them).
//!
//! Cutting a connection off is `shutdown(2)` on its descriptor, learnt from
//! the socket monitor's `ACCEPTED` event: libzmq sees the end of the stream
//! and closes it itself, so no descriptor is closed under libzmq's feet.

use serde::Serialize;
use shardcast_agent::presence::{self, Change, Presence};
use shardcast_proto::wire::CONTROL_TOPIC;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

/// Most prefix bytes one connection's subscriptions may add up to (libzmq's
/// trie costs about 32 bytes per prefix byte, so about 2 MiB); past it the
/// connection is treated as past `--max-subscriptions`.
pub const MAX_PREFIX_BYTES_PER_PEER: u64 = 64 << 10;

/// Connections whose budgets are remembered at most; past it the budgets
/// start afresh (see `Roster::charge`).
pub const MAX_TRACKED: usize = 65_536;

/// What the roster refused or ignored, for the report (`streams[].peers`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerReport {
    /// Connections accepted (TCP, before any handshake).
    pub connections: u64,
    /// Connections cut off at once: their address already had
    /// `--max-peers-per-host` connections.
    pub connections_refused: u64,
    /// Connections cut off because a connection from their address held
    /// more than `--max-subscriptions` subscriptions.
    pub connections_cut: u64,
    /// Upstream messages past a connection's allowance
    /// (`--max-subscriptions` messages, 64 KiB of prefixes).
    pub subscriptions_refused: u64,
    /// Unsubscribes from a connection for a topic it never subscribed to
    /// (ignored; forged, or a confused client).
    pub unsubscribes_ignored: u64,
    /// Subscription events without a connection id on a stream that has
    /// one (libzmq's own, for connections that ended).
    pub departures: u64,
}

/// What the stream should do about a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Nothing.
    None,
    /// Cut off every connection from this address.
    Host(IpAddr),
}

/// What one connection has sent upstream, as far as it costs us.
#[derive(Debug, Default)]
struct Budget {
    /// Messages it sent (subscribe, unsubscribe, anything): cumulative,
    /// never given back, so unsubscribing cannot buy room for more.
    messages: u32,
    /// Their prefixes' bytes, likewise.
    bytes: u64,
    /// Its address (`Peer-Address`), once seen.
    address: Option<IpAddr>,
}

/// The subscribers of one stream, from its subscription events (sans-IO).
///
/// `subscribed` must hold every connection libzmq holds a control-topic
/// subscription for, refused ones included (libzmq applied it before we
/// saw it): libzmq's id-less unsubscribes for ended connections are counted
/// against it, so one it lacked would make a real subscriber uncounted.
#[derive(Debug)]
pub struct Roster {
    max_subscriptions: u32,
    budgets: HashMap<Box<str>, Budget>,
    /// Connections subscribed to the control topic.
    subscribed: HashSet<Box<str>>,
    /// Control-topic unsubscribes libzmq made up for connections that
    /// ended: each one of `subscribed` that left, which one unknown.
    departed: u64,
    /// Symbol prefix subscriptions libzmq holds (topics other than the
    /// control topic and the empty prefix), by topic, with the connections
    /// holding them: while any is held, `--batch auto` sends every record
    /// alone so that the XPUB's prefix filtering applies to it.
    selective: HashMap<Box<[u8]>, HashSet<Box<str>>>,
    report: PeerReport,
}

impl Roster {
    /// A roster that allows `max_subscriptions` subscription messages per
    /// connection.
    pub fn new(max_subscriptions: u32) -> Roster {
        Roster {
            max_subscriptions,
            budgets: HashMap::new(),
            subscribed: HashSet::new(),
            departed: 0,
            selective: HashMap::new(),
            report: PeerReport::default(),
        }
    }

    /// Take one XPUB event: `event[0]` is 1 (subscribe) or 0 (unsubscribe),
    /// the rest the topic; `user` the connection's ZAP User-Id (`None`: made
    /// up by libzmq for a connection that ended); `address` its peer address.
    pub fn on_subscription(
        &mut self,
        event: &[u8],
        user: Option<&str>,
        address: Option<IpAddr>,
    ) -> Cut {
        let Some((&kind, topic)) = event.split_first() else {
            return Cut::None;
        };
        let control = topic == CONTROL_TOPIC;
        // A presence topic (`--id`) names a subscriber and selects nothing.
        if !control && !topic.is_empty() && !presence::is_presence(topic) {
            self.on_selective(kind, topic, user);
        }
        let Some(user) = user else {
            // libzmq's own unsubscribe for a connection that ended.
            if kind == 0 {
                self.report.departures += 1;
                if control {
                    self.departed += 1;
                    self.forget_if_empty();
                }
            }
            return Cut::None;
        };
        // The count first: libzmq has already applied this event.
        match (kind, control) {
            (1, true) => {
                self.subscribed.insert(user.into());
            }
            (0, true) => {
                if self.subscribed.remove(user) {
                    self.forget_if_empty();
                } else {
                    self.report.unsubscribes_ignored += 1;
                }
            }
            _ => {}
        }
        self.charge(user, topic.len() as u64, address)
    }

    /// Track a symbol prefix (un)subscription. An unsubscribe from a
    /// connection that does not hold the topic is forged or confused and
    /// changes nothing; libzmq's own (no id, for a connection that ended)
    /// removes one holder of the topic, which one unknown: if it was a
    /// live one, that holder's own unsubscribe is later ignored, so the
    /// error only ever keeps a topic held (fewer records packed, nothing
    /// lost by a filtering subscriber).
    fn on_selective(&mut self, kind: u8, topic: &[u8], user: Option<&str>) {
        match (kind, user) {
            (1, Some(user)) => {
                self.selective
                    .entry(topic.into())
                    .or_default()
                    .insert(user.into());
            }
            (0, Some(user)) => {
                if let Some(holders) = self.selective.get_mut(topic) {
                    holders.remove(user);
                }
            }
            (0, None) => {
                if let Some(holders) = self.selective.get_mut(topic) {
                    if let Some(any) = holders.iter().next().cloned() {
                        holders.remove(&any);
                    }
                }
            }
            _ => {}
        }
        if self.selective.get(topic).is_some_and(HashSet::is_empty) {
            self.selective.remove(topic);
        }
    }

    /// Whether any connection holds a symbol prefix subscription (filters
    /// at the publisher) now.
    pub fn filtering(&self) -> bool {
        !self.selective.is_empty()
    }

    /// Charge one upstream message to its connection's budget; past it, cut
    /// the connection's host off.
    fn charge(&mut self, user: &str, bytes: u64, address: Option<IpAddr>) -> Cut {
        if !self.budgets.contains_key(user) && self.budgets.len() >= MAX_TRACKED {
            // Connection churn must not grow this without bound: start the
            // budgets afresh (each connection can again send its allowance;
            // the per-host connection bound limits how many do at once).
            self.budgets.clear();
        }
        let b = self.budgets.entry(user.into()).or_default();
        if b.address.is_none() {
            b.address = address;
        }
        b.messages = b.messages.saturating_add(1);
        b.bytes = b.bytes.saturating_add(bytes);
        if b.messages > self.max_subscriptions || b.bytes > MAX_PREFIX_BYTES_PER_PEER {
            self.report.subscriptions_refused += 1;
            return b.address.map_or(Cut::None, Cut::Host);
        }
        Cut::None
    }

    /// Once nobody is left, every id remembered as subscribed belongs to a
    /// connection that ended: forget them (so churn does not accumulate).
    /// Budgets are kept: dropping to zero must not buy anyone more room.
    fn forget_if_empty(&mut self) {
        if self.count() == 0 {
            self.subscribed.clear();
            self.departed = 0;
        }
    }

    /// Connections subscribed to the control topic now.
    pub fn count(&self) -> u64 {
        (self.subscribed.len() as u64).saturating_sub(self.departed)
    }

    /// What it refused and ignored.
    pub fn report(&self) -> PeerReport {
        self.report
    }

    /// Count an accepted connection, refused or not.
    pub fn on_accepted(&mut self, refused: bool) {
        self.report.connections += 1;
        if refused {
            self.report.connections_refused += 1;
        }
    }

    /// Count connections cut off for a subscription flood.
    pub fn on_cut(&mut self, n: u64) {
        self.report.connections_cut += n;
    }
}

/// Most events taken per poll while the stream is sending, so a flood of
/// subscription events cannot hold the schedule up for long; the rest wait
/// for the next housekeeping round.
const MAX_EVENTS_PER_POLL: usize = 1024;

/// A stream's peers: its socket monitor (connections by descriptor and
/// address) and its [`Roster`]. Owned by the stream thread.
pub struct PeerWatch {
    roster: Roster,
    /// The socket monitor's PAIR (`None` on pgm/epgm, where there are no
    /// connections).
    monitor: Option<zmq::Socket>,
    /// Open connections: descriptor to peer address and port (checked again
    /// before a cut, so a descriptor reused meanwhile is left alone).
    fds: HashMap<i32, SocketAddr>,
    per_host: HashMap<IpAddr, u32>,
    max_per_host: u32,
    /// Refusals not logged yet, and when the last line was (a host retrying
    /// in a loop gets one line a second, with a count, not one per try).
    unlogged: u64,
    last_log: Option<std::time::Instant>,
    /// Named subscribers (`--id`), from the same events.
    presence: Presence,
    /// Log line prefix (`shardcast-pub`, `shardcast-relay`).
    role: &'static str,
    /// The socket's stream index, for log lines.
    stream: usize,
}

impl PeerWatch {
    /// Watch the peers of one stream socket (a monitor is already attached
    /// to it at `monitor`, if any).
    pub fn new(
        monitor: Option<zmq::Socket>,
        max_subscriptions: u32,
        max_per_host: u32,
    ) -> PeerWatch {
        PeerWatch {
            roster: Roster::new(max_subscriptions),
            monitor,
            fds: HashMap::new(),
            per_host: HashMap::new(),
            max_per_host,
            unlogged: 0,
            last_log: None,
            presence: Presence::new(&[]),
            role: "shardcast-pub",
            stream: 0,
        }
    }

    /// Name the socket for log lines (`role`: the binary; `stream`: its
    /// index) and expect the subscribers `expected` (`--expect-subscribers`).
    pub fn named(mut self, role: &'static str, stream: usize, expected: &[String]) -> PeerWatch {
        self.role = role;
        self.stream = stream;
        self.presence = Presence::new(expected);
        self
    }

    /// The named subscribers (`--id`) and their comings and goings.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    /// Warn, once each, about expected subscribers (`--expect-subscribers`)
    /// missing now; call it when the stream starts and then now and then
    /// (a departure warns again).
    #[cold]
    pub fn warn_missing(&mut self) {
        for id in self.presence.newly_missing() {
            eprintln!(
                "{}: stream {}: WARNING: expected subscriber {id} is not connected (--expect-subscribers)",
                self.role, self.stream
            );
        }
    }

    /// Subscribers counted now.
    pub fn count(&self) -> u64 {
        self.roster.count()
    }

    /// Whether a connection filters by symbol prefix now (see
    /// [`Roster::filtering`]).
    pub fn filtering(&self) -> bool {
        self.roster.filtering()
    }

    /// What was refused or ignored.
    pub fn report(&self) -> PeerReport {
        self.roster.report()
    }

    /// Take in connection events only (cheap; the stream calls it while it
    /// waits for its next message too, so the monitor never backs up).
    pub fn poll_connections(&mut self) {
        self.poll_monitor();
    }

    /// Take in connection events, then subscription events from `xpub`:
    /// with `flags == 0`, wait for one (up to the socket's receive timeout);
    /// with `DONTWAIT`, take what is there, at most [`MAX_EVENTS_PER_POLL`].
    pub fn poll(&mut self, xpub: &mut zmq::Socket, flags: i32) {
        self.poll_forward(xpub, flags, &mut |_, _| {});
    }

    /// [`PeerWatch::poll`], handing each event, with its connection's
    /// User-Id, to `forward` once counted (a relay sends it on upstream).
    /// Returns the events taken.
    pub fn poll_forward(
        &mut self,
        xpub: &mut zmq::Socket,
        flags: i32,
        forward: &mut dyn FnMut(&[u8], Option<&str>),
    ) -> usize {
        self.poll_monitor();
        let mut m = zmq::Message::new();
        let mut taken = 0;
        for _ in 0..MAX_EVENTS_PER_POLL {
            if xpub.recv(&mut m, flags).is_err() {
                break;
            }
            taken += 1;
            let address = m.gets("Peer-Address").and_then(|a| a.parse().ok());
            let user = m.gets("User-Id").map(str::to_owned);
            if let Cut::Host(ip) = self.roster.on_subscription(&m, user.as_deref(), address) {
                self.cut_host(ip);
            }
            if m.get(1..).is_some_and(presence::is_presence) {
                let change = self.presence.on_subscription(
                    &m,
                    user.as_deref(),
                    address,
                    std::time::SystemTime::now(),
                );
                self.log_presence(&change);
            }
            forward(&m, user.as_deref());
            if flags == 0 {
                break;
            }
        }
        taken
    }

    #[cold]
    fn log_presence(&self, change: &Change) {
        let (ev, verb) = match change {
            Change::None => return,
            Change::Connected(e) => (e, "connected from"),
            Change::Disconnected(e) => (e, "disconnected, was at"),
        };
        eprintln!(
            "{}: stream {}: subscriber {} {verb} {}",
            self.role,
            self.stream,
            ev.id,
            ev.address.as_deref().unwrap_or("an unknown address")
        );
    }

    /// Connections accepted and gone, from the socket monitor.
    fn poll_monitor(&mut self) {
        let Some(mon) = &self.monitor else { return };
        let mut accepted = Vec::new();
        let mut ended = Vec::new();
        while let Ok(parts) = mon.recv_multipart(zmq::DONTWAIT) {
            let Some(head) = parts.first().filter(|h| h.len() >= 6) else {
                continue;
            };
            let event = u16::from_ne_bytes([head[0], head[1]]);
            let fd = i32::from_ne_bytes([head[2], head[3], head[4], head[5]]);
            match zmq::SocketEvent::from_raw(event) {
                zmq::SocketEvent::ACCEPTED => accepted.push(fd),
                zmq::SocketEvent::DISCONNECTED | zmq::SocketEvent::CLOSED => {
                    accepted.retain(|a| *a != fd);
                    ended.push(fd);
                }
                _ => {}
            }
        }
        for fd in ended {
            self.forget(fd);
        }
        // Only connections still open after every event queued so far:
        // a descriptor closed meanwhile may already belong to another.
        for fd in accepted {
            self.on_accepted(fd);
        }
    }

    fn on_accepted(&mut self, fd: i32) {
        let Some(peer) = peer_addr(fd) else { return };
        let ip = peer.ip();
        let n = self.per_host.entry(ip).or_default();
        let refused = *n >= self.max_per_host;
        if refused {
            cut(fd);
            self.log_refusal(ip);
        } else {
            *n += 1;
            self.fds.insert(fd, peer);
        }
        self.roster.on_accepted(refused);
    }

    #[cold]
    fn log_refusal(&mut self, ip: IpAddr) {
        self.unlogged += 1;
        if self
            .last_log
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1))
        {
            return;
        }
        eprintln!(
            "{}: refused {} connection(s), the last from {ip}: it already has {} (--max-peers-per-host)",
            self.role, self.unlogged, self.max_per_host
        );
        self.unlogged = 0;
        self.last_log = Some(std::time::Instant::now());
    }

    fn forget(&mut self, fd: i32) {
        if let Some(peer) = self.fds.remove(&fd) {
            if let Some(n) = self.per_host.get_mut(&peer.ip()) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Cut off every connection from `ip` (a subscription flood).
    #[cold]
    fn cut_host(&mut self, ip: IpAddr) {
        let fds: Vec<(i32, SocketAddr)> = self
            .fds
            .iter()
            .filter(|(_, a)| a.ip() == ip)
            .map(|(fd, a)| (*fd, *a))
            .collect();
        for (fd, peer) in &fds {
            // Still the same connection? A descriptor closed meanwhile may
            // already be another's.
            if peer_addr(*fd) == Some(*peer) {
                cut(*fd);
            }
            self.forget(*fd);
        }
        if !fds.is_empty() {
            eprintln!(
                "{}: cut off {} connection(s) from {ip}: one held more than --max-subscriptions subscriptions",
                self.role,
                fds.len()
            );
        }
        self.roster.on_cut(fds.len() as u64);
    }
}

/// The address and port of the peer on `fd`, or `None` if it is gone.
fn peer_addr(fd: i32) -> Option<SocketAddr> {
    // SAFETY: getpeername writes at most `len` bytes into `addr`, a
    // sockaddr_storage, which is large enough for any address family.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let rc = unsafe {
        libc::getpeername(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a: &libc::sockaddr_in =
                unsafe { &*(&addr as *const libc::sockaddr_storage).cast() };
            let ip = IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes());
            Some(SocketAddr::new(ip, u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 =
                unsafe { &*(&addr as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::new(
                IpAddr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
            ))
        }
        _ => None,
    }
}

/// End a connection libzmq owns without closing its descriptor under it:
/// after `shutdown(2)` libzmq reads end-of-stream and closes it itself.
fn cut(fd: i32) {
    // SAFETY: shutdown on a descriptor only changes the connection's state;
    // on a descriptor that is no longer a socket it fails harmlessly.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &[u8] = b"\x01\x00";
    const UNSUB: &[u8] = b"\x00\x00";

    fn ip() -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, 2]))
    }

    #[test]
    fn a_symbol_prefix_subscription_is_filtering_until_its_holders_leave() {
        let mut r = Roster::new(100);
        // shardcast-sub's two subscriptions filter nothing.
        r.on_subscription(SUB, Some("sub"), ip());
        r.on_subscription(b"\x01", Some("sub"), ip());
        assert!(!r.filtering());
        r.on_subscription(b"\x01AAPL", Some("a"), ip());
        r.on_subscription(b"\x01AAPL", Some("a"), ip());
        r.on_subscription(b"\x01AAPL", Some("b"), ip());
        assert!(r.filtering());
        // A forger's unsubscribe cancels nobody's filter.
        r.on_subscription(b"\x00AAPL", Some("forger"), ip());
        assert!(r.filtering());
        r.on_subscription(b"\x00AAPL", Some("a"), ip());
        assert!(r.filtering(), "b still filters");
        // A presence subscription (`--id`) names a subscriber, selects nothing.
        let mut named = Roster::new(100);
        let mut ev = vec![1u8];
        ev.extend(shardcast_agent::presence::topic("desk-1"));
        named.on_subscription(&ev, Some("n"), ip());
        assert!(!named.filtering());
        // b's connection ends: libzmq unsubscribes for it, without an id.
        r.on_subscription(b"\x00AAPL", None, None);
        assert!(!r.filtering());
        // A stray id-less unsubscribe of a topic nobody holds is harmless.
        r.on_subscription(b"\x00MSFT", None, None);
        assert!(!r.filtering());
    }

    #[test]
    fn an_id_less_departure_never_clears_a_topic_someone_still_holds() {
        let mut r = Roster::new(100);
        r.on_subscription(b"\x01IBM", Some("dead"), ip());
        r.on_subscription(b"\x01IBM", Some("live"), ip());
        // "dead" ended; libzmq's unsubscribe may take "live" out instead.
        r.on_subscription(b"\x00IBM", None, None);
        assert!(r.filtering(), "one holder is left");
    }

    /// Issue 10, finding 1: one peer subscribing twice counted as two.
    #[test]
    fn one_peer_subscribing_twice_counts_once() {
        let mut r = Roster::new(100);
        r.on_subscription(SUB, Some("1"), ip());
        r.on_subscription(SUB, Some("1"), ip());
        assert_eq!(r.count(), 1);
        r.on_subscription(SUB, Some("2"), ip());
        assert_eq!(r.count(), 2);
    }

    /// Issue 10, finding 1: forged unsubscribes cancelled real subscribers
    /// and drove the count below zero.
    #[test]
    fn forged_unsubscribes_cancel_nobody_else() {
        let mut r = Roster::new(100);
        r.on_subscription(SUB, Some("real"), ip());
        for _ in 0..3 {
            r.on_subscription(UNSUB, Some("forger"), ip());
        }
        assert_eq!(r.count(), 1);
        assert_eq!(r.report().unsubscribes_ignored, 3);
        // Its own unsubscribe removes the forger only, once.
        r.on_subscription(SUB, Some("forger"), ip());
        r.on_subscription(UNSUB, Some("forger"), ip());
        r.on_subscription(UNSUB, Some("forger"), ip());
        assert_eq!(r.count(), 1);
    }

    #[test]
    fn a_connection_that_ends_is_one_subscriber_gone() {
        let mut r = Roster::new(100);
        r.on_subscription(SUB, Some("a"), ip());
        r.on_subscription(SUB, Some("b"), ip());
        // libzmq's made-up unsubscribes carry no id.
        r.on_subscription(b"\x00AAA", None, None);
        assert_eq!(r.count(), 2, "another topic: not a subscriber leaving");
        r.on_subscription(UNSUB, None, None);
        assert_eq!(r.count(), 1);
        r.on_subscription(UNSUB, Some("a"), ip());
        assert_eq!(r.count(), 0);
        assert!(r.subscribed.is_empty() && r.departed == 0, "forgotten");
    }

    /// Issue 10, finding 2: subscriptions were unbounded per peer.
    #[test]
    fn subscriptions_past_the_limit_cut_the_peers_host_off() {
        let mut r = Roster::new(3);
        for i in 0..3u8 {
            assert_eq!(r.on_subscription(&[1, b'A', i], Some("f"), ip()), Cut::None);
        }
        assert_eq!(
            r.on_subscription(b"\x01B", Some("f"), ip()),
            Cut::Host(ip().unwrap())
        );
        assert_eq!(r.report().subscriptions_refused, 1);
        // Another connection has its own allowance.
        assert_eq!(r.on_subscription(SUB, Some("g"), ip()), Cut::None);
        // Few but long prefixes are bounded by their bytes.
        let mut long = vec![1u8];
        long.extend(std::iter::repeat(b'L').take(1000));
        let mut r = Roster::new(1000);
        for _ in 0..MAX_PREFIX_BYTES_PER_PEER / 1000 {
            assert_eq!(r.on_subscription(&long, Some("h"), ip()), Cut::None);
        }
        assert_eq!(
            r.on_subscription(&long, Some("h"), ip()),
            Cut::Host(ip().unwrap())
        );
    }

    /// Review of finding 2: unsubscribing (even a topic never held) must
    /// not give a connection room for more subscriptions.
    #[test]
    fn unsubscribing_buys_no_room_for_more_subscriptions() {
        let mut r = Roster::new(4);
        for _ in 0..2 {
            assert_eq!(r.on_subscription(b"\x01A", Some("f"), ip()), Cut::None);
            assert_eq!(r.on_subscription(b"\x00ZZZ", Some("f"), ip()), Cut::None);
        }
        assert_eq!(
            r.on_subscription(b"\x01B", Some("f"), ip()),
            Cut::Host(ip().unwrap())
        );
    }

    /// Review of finding 1: a control subscription refused for its budget
    /// is already in libzmq's trie, and libzmq reports its departure when
    /// the connection is cut: it must be counted, or that departure would
    /// uncount a real subscriber.
    #[test]
    fn a_refused_control_subscription_still_balances_its_departure() {
        let mut r = Roster::new(2);
        r.on_subscription(SUB, Some("real"), Some(IpAddr::from([127, 0, 0, 1])));
        r.on_subscription(b"\x01A", Some("f"), ip());
        r.on_subscription(b"\x01B", Some("f"), ip());
        assert_eq!(
            r.on_subscription(SUB, Some("f"), ip()),
            Cut::Host(ip().unwrap())
        );
        // The cut: libzmq's id-less unsubscribes for f's topics.
        for t in [&b"\x00A"[..], b"\x00B", UNSUB] {
            r.on_subscription(t, None, None);
        }
        assert_eq!(r.count(), 1, "the real subscriber is still counted");
    }
}
