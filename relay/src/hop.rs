//! One relay thread ("hop"): an XSUB on the upstream stream, an XPUB on the
//! downstream endpoint, and everything between them.
//!
//! ```text
//!  upstream XPUB ◄─subscriptions─ [XSUB] ◄─first sub / last unsub─┐
//!                                   │                              │
//!       frames ──────────────────► [XSUB] ─parse, sequence, lag─► [XPUB] ──► subscribers
//!                                                                  │
//!                                     PeerWatch (count, presence, defence)
//! ```
//!
//! **Data, upstream to downstream.** Every frame is forwarded as received:
//! the same libzmq message goes out (no copy, no re-encoding), so sequence
//! numbers, sessions, checksums and end-of-stream reach the subscribers
//! exactly as the publisher sent them. On the way the hop does what a
//! subscriber's shard does with the same pieces (`proto::wire::Frame`,
//! `proto::seq::Tracker`, `agent::lag`): it counts loss and duplicates, and
//! the Suicidal Snail judges each record's age. A malformed frame is
//! counted and dropped (it would only be dropped downstream too). A
//! multipart message, which shardcast never sends, goes on whole, never
//! split, and is counted (`multipart`).
//!
//! **Subscriptions, downstream to upstream.** The XPUB hands up every
//! subscription event (`ZMQ_XPUB_VERBOSER`, one ZAP User-Id per
//! connection, as the publisher's streams), which [`PeerWatch`] counts and
//! defends against as the publisher does. The hop keeps, per topic, the
//! connections holding it, and sends upstream the first subscribe and the
//! last unsubscribe of each topic: prefix filtering happens at the
//! publisher whenever every subscriber filters. None of it goes upstream
//! until `--wait-subscribers` subscribers are counted: the publisher's own
//! `--wait-subscribers` then waits for the subscribers behind the relay.
//!
//! Hot path per frame: one receive, one parse, per record a verdict, a
//! digest, a lag check and a histogram record, one send of the same
//! message. No allocation (libzmq's own aside), lock, formatting or extra
//! system call; the `zmq_poll` that waits is once per round of up to
//! [`ROUND`] frames.

use hdrhistogram::Histogram;
use shardcast_agent::clock::now_ns;
use shardcast_agent::idle::Idle;
use shardcast_agent::lag::{LagCheck, OnSlow};
use shardcast_agent::presence::PresenceReport;
use shardcast_agent::stats;
use shardcast_agent::watch::{AgentCounters, AgentKind, Board, SlowEvent};
use shardcast_agent::zmqx::Msg;
use shardcast_proto::seq::{SourceKey, Tracker, Verdict};
use shardcast_proto::snail::{age_ns, LagLimit, LagMode};
use shardcast_proto::wire::{DecodeError, Frame, Kind, Payload, CONTROL_TOPIC};
use shardcast_publisher::config::WhenFull;
use shardcast_publisher::peers::{PeerReport, PeerWatch};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Frames taken per round, only ones already queued, before subscriptions,
/// the monitor and the stop flag are looked at.
pub const ROUND: usize = 256;

/// How long a waiting hop blocks in `zmq_poll` before it looks at the stop
/// flag and its housekeeping.
const POLL_MS: i64 = 20;

/// Housekeeping (socket monitor, expected subscribers, counters for the
/// monitor) at most this often while frames flow.
const HOUSEKEEPING_NS: u64 = 10_000_000;

/// Most distinct topics forwarded upstream at once (PeerWatch bounds what
/// one connection may subscribe; this bounds them all together).
const MAX_TOPICS: usize = 65_536;

/// One hop's configuration.
#[derive(Clone, Debug)]
pub struct HopSetup {
    /// Index (position of its `--connect`).
    pub index: usize,
    /// Upstream endpoint (for log lines).
    pub connect: String,
    /// Downstream subscribers needed before subscribing upstream.
    pub wait_subscribers: u32,
    /// Subscribe upstream at start (see `HopPlan::subscribe_at_start`).
    pub subscribe_at_start: bool,
    /// The relay's own presence topic (`--id`), announced upstream with it.
    pub presence_topic: Option<Vec<u8>>,
    /// Downstream HWM policy.
    pub when_full: WhenFull,
    /// The snail's limit.
    pub limit: LagLimit,
    /// Croak or warn.
    pub on_slow: OnSlow,
    /// Wait strategy.
    pub idle: Idle,
    /// End once every source ended (`--on-eos exit`), after the downstream
    /// subscribers left or `eos_timeout` passed.
    pub exit_on_eos: bool,
    /// `--eos-timeout-ms`.
    pub eos_timeout: std::time::Duration,
    /// Downstream is multicast: nobody is counted there.
    pub multicast: bool,
    /// What the hop publishes for `--metrics-bind` besides the board.
    pub gauges: std::sync::Arc<crate::exporter::HopGauges>,
}

/// What a hop hands back.
#[derive(Debug)]
pub struct HopResult {
    /// Index.
    pub index: usize,
    /// Sequence state of every source seen.
    pub tracker: Tracker,
    /// Frames received (valid or not, every part of a multipart message
    /// once).
    pub frames_in: u64,
    /// Frames forwarded downstream.
    pub frames_out: u64,
    /// Data records received that were new (not duplicates).
    pub records: u64,
    /// Multipart messages forwarded whole, unparsed.
    pub multipart: u64,
    /// Malformed frames by [`DecodeError::index`] (dropped).
    pub malformed: [u64; DecodeError::REASONS.len()],
    /// End-of-stream records from a source nothing else came from.
    pub eos_unknown: u64,
    /// Data records with a send time too far ahead (not judged).
    pub ts_future: u64,
    /// Data records older than the hop could have been sent (not judged).
    pub ts_ancient: u64,
    /// Records over the lag limit.
    pub slow: u64,
    /// Largest lag seen, ns.
    pub max_lag_ns: u64,
    /// Sends that found a downstream queue full (`--when-full block`).
    pub blocked: u64,
    /// Time spent waiting for room downstream, ns.
    pub blocked_ns: u64,
    /// Seconds from the start to the first upstream subscription (`None`:
    /// never subscribed).
    pub subscribed_after_s: Option<f64>,
    /// Times the hop subscribed upstream (it unsubscribes when its last
    /// downstream subscriber leaves, and subscribes again when one comes).
    pub announcements: u64,
    /// Subscription messages sent upstream.
    pub upstream_subscriptions: u64,
    /// Downstream subscribers counted at the end.
    pub subscribers: u64,
    /// Most downstream subscribers counted at once.
    pub max_subscribers: u64,
    /// What the downstream defences refused or ignored.
    pub peers: PeerReport,
    /// Named downstream subscribers and their comings and goings.
    pub presence: PresenceReport,
    /// Age of each new data record when it arrived (intended send time to
    /// receipt), ns.
    pub arrival: Histogram<u64>,
    /// Whether every source seen ended.
    pub ended: bool,
    /// What stopped it early, if anything did.
    pub error: Option<String>,
}

/// The topics the downstream connections hold, and which of them went
/// upstream (sans-IO: the hop sends what [`Topics::on_event`] returns).
#[derive(Debug, Default)]
pub struct Topics {
    held: HashMap<Box<[u8]>, HashSet<Box<str>>>,
    /// Whether the hop has subscribed upstream (what is held is upstream).
    pub announced: bool,
}

impl Topics {
    /// Take one XPUB subscription event (`event[0]` 1 or 0, then the
    /// topic) from connection `user` (`None`: libzmq's own unsubscribe for
    /// an ended connection, which removes one holder, which one unknown).
    /// Returns the message to send upstream, if any.
    pub fn on_event(&mut self, event: &[u8], user: Option<&str>) -> Option<Vec<u8>> {
        let (&kind, topic) = event.split_first()?;
        match kind {
            1 => {
                if !self.held.contains_key(topic) && self.held.len() >= MAX_TOPICS {
                    return None;
                }
                let holders = self.held.entry(topic.into()).or_default();
                let first = holders.is_empty();
                holders.insert(user.unwrap_or("").into());
                (first && self.announced).then(|| event.to_vec())
            }
            0 => {
                let holders = self.held.get_mut(topic)?;
                match user {
                    Some(u) => {
                        // Not this connection's: forged or confused.
                        if !holders.remove(u) {
                            return None;
                        }
                    }
                    None => {
                        let any = holders.iter().next().cloned()?;
                        holders.remove(&any);
                    }
                }
                if !holders.is_empty() {
                    return None;
                }
                self.held.remove(topic);
                self.announced.then(|| event.to_vec())
            }
            _ => None,
        }
    }

    /// Subscribe messages for every topic held, `extra` (the relay's own
    /// name) among them, the control topic last: a publisher counts this
    /// connection once its control subscription arrives, and the
    /// subscriptions of one connection arrive in order, so by then every
    /// data topic is in its filter and the first records reach us.
    pub fn all(&self, extra: Option<&[u8]>) -> Vec<Vec<u8>> {
        let sub = |t: &[u8]| {
            let mut m = Vec::with_capacity(t.len() + 1);
            m.push(1);
            m.extend_from_slice(t);
            m
        };
        let mut v: Vec<Vec<u8>> = self
            .held
            .keys()
            .filter(|t| ***t != *CONTROL_TOPIC)
            .map(|t| sub(t))
            .collect();
        v.sort();
        v.extend(extra.map(sub));
        if self.held.contains_key(CONTROL_TOPIC) {
            v.push(sub(CONTROL_TOPIC));
        }
        v
    }
}

/// A hop: its sockets and state.
pub struct Hop<'a> {
    setup: HopSetup,
    xsub: zmq::Socket,
    xpub: zmq::Socket,
    peers: PeerWatch,
    topics: Topics,
    res: HopResult,
    lag: LagCheck,
    board: &'a Board,
    start_ns: u64,
    t0: Instant,
}

impl<'a> Hop<'a> {
    /// A hop on connected `xsub` and bound `xpub`, with `peers` watching
    /// `xpub`.
    pub fn new(
        setup: HopSetup,
        xsub: zmq::Socket,
        xpub: zmq::Socket,
        peers: PeerWatch,
        board: &'a Board,
    ) -> Hop<'a> {
        let start_ns = now_ns();
        Hop {
            lag: LagCheck::new(AgentKind::Shard, setup.index, setup.limit, setup.on_slow),
            res: HopResult {
                index: setup.index,
                tracker: Tracker::new(),
                frames_in: 0,
                frames_out: 0,
                records: 0,
                multipart: 0,
                malformed: [0; DecodeError::REASONS.len()],
                eos_unknown: 0,
                ts_future: 0,
                ts_ancient: 0,
                slow: 0,
                max_lag_ns: 0,
                blocked: 0,
                blocked_ns: 0,
                subscribed_after_s: None,
                announcements: 0,
                upstream_subscriptions: 0,
                subscribers: 0,
                max_subscribers: 0,
                peers: PeerReport::default(),
                presence: PresenceReport::default(),
                arrival: stats::new_histogram(),
                ended: false,
                error: None,
            },
            setup,
            xsub,
            xpub,
            peers,
            topics: Topics::default(),
            board,
            start_ns,
            t0: Instant::now(),
        }
    }

    /// Relay until every source ended, the board says stop, or a socket
    /// fails.
    pub fn run(mut self) -> HopResult {
        if self.setup.subscribe_at_start {
            // Nobody downstream will ask (multicast), or --wait-subscribers
            // 0: everything, now.
            self.topics.on_event(b"\x01", Some("relay"));
            self.topics.on_event(b"\x01\x00", Some("relay"));
            if let Err(e) = self.announce() {
                self.res.error = Some(format!("subscribing upstream: {e}"));
                return self.finish();
            }
        }
        let mut msg = Msg::new();
        let mut last_housekeeping = 0u64;
        let timeout = match self.setup.idle {
            Idle::Block => POLL_MS,
            Idle::Spin => 0,
        };
        let error = 'run: loop {
            if self.board.stop_shards.load(Ordering::Relaxed) {
                break None;
            }
            let (up, down) = {
                let mut items = [
                    self.xsub.as_poll_item(zmq::POLLIN),
                    self.xpub.as_poll_item(zmq::POLLIN),
                ];
                match zmq::poll(&mut items, timeout) {
                    Ok(_) | Err(zmq::Error::EINTR) => {}
                    Err(e) => break Some(format!("polling: {e}")),
                }
                (items[0].is_readable(), items[1].is_readable())
            };
            if down {
                if let Err(e) = self.subscriptions() {
                    break Some(format!("forwarding subscriptions upstream: {e}"));
                }
            }
            let mut now = now_ns();
            if up {
                for _ in 0..ROUND {
                    match msg.recv(&mut self.xsub, zmq::DONTWAIT) {
                        Ok(()) => {}
                        Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => break,
                        Err(e) => break 'run Some(format!("receiving: {e}")),
                    }
                    now = now_ns();
                    if let Err(e) = self.on_message(now, &mut msg) {
                        break 'run e;
                    }
                    if let Some(ev) = self.lag.take_croak() {
                        self.board.croak.raise(ev);
                    }
                }
            }
            if now.saturating_sub(last_housekeeping) >= HOUSEKEEPING_NS {
                last_housekeeping = now;
                self.housekeeping();
            }
            if self.res.ended && self.setup.exit_on_eos {
                self.drain(Instant::now() + self.setup.eos_timeout);
                break None;
            }
        };
        self.res.error = error;
        self.finish()
    }

    /// One message from upstream: a frame (judged, then forwarded) or a
    /// multipart message (forwarded whole).
    #[inline]
    fn on_message(&mut self, now: u64, msg: &mut Msg) -> Result<(), Option<String>> {
        self.res.frames_in += 1;
        if msg.more() {
            return self.forward_multipart(msg);
        }
        let verdict = self.judge(now, msg.bytes());
        match verdict {
            Judged::Forward => self.forward(msg, now),
            Judged::Drop => Ok(()),
        }
    }

    /// Judge one frame as a subscriber shard would: sequence verdicts, the
    /// snail's lag check, the arrival histogram.
    #[inline]
    fn judge(&mut self, now: u64, bytes: &[u8]) -> Judged {
        let frame = match Frame::parse(bytes) {
            Ok(f) => f,
            Err(e) => {
                self.res.malformed[e.index()] += 1;
                return Judged::Drop;
            }
        };
        let mut saw_eos = false;
        for rec in frame.records() {
            let key = SourceKey {
                publisher_id: rec.publisher_id(),
                stream_id: rec.stream_id(),
            };
            match rec.kind() {
                Kind::EndOfStream => {
                    saw_eos = true;
                    match self.res.tracker.existing(key) {
                        Some(st) if st.joined() => {
                            if let Payload::EndOfStream { last_seq, checksum } = rec.payload() {
                                st.on_eos(rec.session(), last_seq, checksum);
                            }
                        }
                        // Not ours to end on; still the subscribers' to see.
                        _ => self.res.eos_unknown += 1,
                    }
                    continue;
                }
                Kind::Heartbeat => {
                    if let Some(st) = self.res.tracker.source(key) {
                        st.on_heartbeat(rec.session(), rec.seq());
                    }
                    continue;
                }
                _ => {}
            }
            let Some(st) = self.res.tracker.source(key) else {
                continue;
            };
            if st.on_data(rec.session(), rec.seq(), || rec.digest()) != Verdict::New {
                continue;
            }
            self.res.records += 1;
            let age = age_ns(now, rec.send_ts_ns());
            let limit = &self.setup.limit;
            if limit.is_future(age) {
                self.res.ts_future += 1;
            } else if limit.is_ancient(age, now.saturating_sub(self.start_ns)) {
                self.res.ts_ancient += 1;
            } else {
                stats::record(&mut self.res.arrival, age.max(0) as u64);
                let lag = match limit.mode {
                    LagMode::Absolute => age,
                    LagMode::Relative => st.floor.lag(now, age, limit.window_ns),
                };
                self.lag.observe(now, lag, &rec);
            }
        }
        if saw_eos && self.res.tracker.all_ended() {
            self.res.ended = true;
        }
        Judged::Forward
    }

    /// Send `msg` downstream (it is left empty); with `--when-full block`,
    /// wait for room, still taking subscriptions and looking at stop, and
    /// croak once the frame has waited past the lag limit.
    #[inline]
    fn forward(&mut self, msg: &mut Msg, now: u64) -> Result<(), Option<String>> {
        match msg.send(&mut self.xpub, zmq::DONTWAIT) {
            Ok(()) => {
                self.res.frames_out += 1;
                Ok(())
            }
            Err(zmq::Error::EAGAIN) => self.forward_blocked(msg, now),
            Err(e) => Err(Some(format!("sending downstream: {e}"))),
        }
    }

    #[cold]
    fn forward_blocked(&mut self, msg: &mut Msg, since: u64) -> Result<(), Option<String>> {
        self.res.blocked += 1;
        // The frame's age is what the snail judges: from its first
        // record's intended send time in absolute mode; from when it started
        // waiting in relative mode (the sender's clock may differ), for a
        // multipart message, or a frame without a believable time.
        let stamped = (self.setup.limit.mode == LagMode::Absolute)
            .then(|| Frame::parse(msg.bytes()).ok())
            .flatten()
            .and_then(|f| f.records().next().map(|r| r.send_ts_ns()));
        let sent_ns = stamped.filter(|t| *t > 0 && *t <= since).unwrap_or(since);
        let mut croaked = false;
        let result = loop {
            if self.board.stop_shards.load(Ordering::Relaxed) {
                break Err(None);
            }
            // ZMQ_SNDTIMEO bounds this wait (block mode sets it).
            match msg.send(&mut self.xpub, 0) {
                Ok(()) => {
                    self.res.frames_out += 1;
                    break Ok(());
                }
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {}
                Err(e) => break Err(Some(format!("sending downstream: {e}"))),
            }
            if let Err(e) = self.subscriptions() {
                break Err(Some(format!("forwarding subscriptions upstream: {e}")));
            }
            let now = now_ns();
            let held = now.saturating_sub(sent_ns);
            if !croaked && self.setup.limit.is_over(held as i64) {
                croaked = true;
                self.held_too_long(now, held, msg);
            }
        };
        self.res.blocked_ns += now_ns().saturating_sub(since);
        result
    }

    /// A frame held back past the limit by a full downstream queue: the
    /// relay cannot deliver as fast as the stream comes (the snail).
    #[cold]
    fn held_too_long(&mut self, now: u64, held: u64, msg: &mut Msg) {
        self.res.slow += 1;
        if self.setup.on_slow != OnSlow::Croak {
            return;
        }
        let Ok(frame) = Frame::parse(msg.bytes()) else {
            return;
        };
        let Some(rec) = frame.records().next() else {
            return;
        };
        self.board.croak.raise(SlowEvent {
            stage: AgentKind::Shard,
            index: self.setup.index,
            lag_ns: held,
            publisher_id: rec.publisher_id(),
            stream_id: rec.stream_id(),
            seq: rec.seq(),
            symbol: rec.symbol().0,
            at_ns: now,
            watchdog: true,
        });
    }

    /// A multipart message: every part on, in order, never split.
    #[cold]
    fn forward_multipart(&mut self, msg: &mut Msg) -> Result<(), Option<String>> {
        self.res.multipart += 1;
        loop {
            let more = msg.more();
            let flags = if more { zmq::SNDMORE } else { 0 };
            if let Err(e) = msg.send(&mut self.xpub, flags) {
                return Err(Some(format!("sending a multipart message downstream: {e}")));
            }
            self.res.frames_out += 1;
            if !more {
                return Ok(());
            }
            if let Err(e) = msg.recv(&mut self.xsub, 0) {
                return Err(Some(format!("receiving a multipart message: {e}")));
            }
            self.res.frames_in += 1;
        }
    }

    /// Take the downstream subscription events queued, forward what
    /// changes upstream, announce or withdraw the hop.
    fn subscriptions(&mut self) -> Result<(), zmq::Error> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let topics = &mut self.topics;
        self.peers
            .poll_forward(&mut self.xpub, zmq::DONTWAIT, &mut |m, user| {
                if let Some(up) = topics.on_event(m, user) {
                    out.push(up);
                }
            });
        for m in &out {
            self.xsub.send(&m[..], 0)?;
            self.res.upstream_subscriptions += 1;
        }
        let n = self.peers.count();
        self.res.max_subscribers = self.res.max_subscribers.max(n);
        if self.setup.subscribe_at_start {
            return Ok(());
        }
        if !self.topics.announced && n >= u64::from(self.setup.wait_subscribers.max(1)) {
            eprintln!(
                "shardcast-relay: hop {}: {n} subscriber(s) downstream: subscribing upstream to {}",
                self.setup.index, self.setup.connect
            );
            self.announce()?;
        } else if self.topics.announced && n == 0 {
            // Every downstream topic went upstream as an unsubscribe with
            // its last holder; the relay's own name goes too, so the
            // publisher counts nobody here.
            self.topics.announced = false;
            if let Some(t) = &self.setup.presence_topic {
                let mut m = vec![0u8];
                m.extend_from_slice(t);
                self.xsub.send(m, 0)?;
                self.res.upstream_subscriptions += 1;
            }
            eprintln!(
                "shardcast-relay: hop {}: no subscriber downstream: unsubscribed upstream",
                self.setup.index
            );
        }
        Ok(())
    }

    /// Subscribe upstream to every topic held downstream, the relay's own
    /// name too.
    fn announce(&mut self) -> Result<(), zmq::Error> {
        self.topics.announced = true;
        self.res.announcements += 1;
        if self.res.subscribed_after_s.is_none() {
            self.res.subscribed_after_s = Some(self.t0.elapsed().as_secs_f64());
        }
        for m in self.topics.all(self.setup.presence_topic.as_deref()) {
            self.xsub.send(m, 0)?;
            self.res.upstream_subscriptions += 1;
        }
        Ok(())
    }

    fn housekeeping(&mut self) {
        self.peers.poll_connections();
        if self.topics.announced {
            self.peers.warn_missing();
        }
        let c: &AgentCounters = &self.board.shards[self.setup.index];
        AgentCounters::publish(&c.done, self.res.records);
        AgentCounters::publish(&c.frames, self.res.frames_in);
        AgentCounters::publish(&c.slow, self.lag.slow() + self.res.slow);
        AgentCounters::publish(&c.max_lag_ns, self.lag.max_age_ns());
        AgentCounters::publish(&c.lost, self.res.tracker.totals().lost);
        AgentCounters::publish(&c.enqueued, self.res.frames_out);
        let g = &self.setup.gauges;
        AgentCounters::publish(&g.subscribers, self.peers.count());
        AgentCounters::publish(&g.named, self.peers.presence().present_count() as u64);
        AgentCounters::publish(&g.blocked, self.res.blocked);
    }

    fn finish(mut self) -> HopResult {
        self.housekeeping();
        self.res.slow += self.lag.slow();
        self.res.max_lag_ns = self.lag.max_age_ns();
        self.res.subscribers = self.peers.count();
        self.res.peers = self.peers.report();
        self.res.presence = PresenceReport::from(self.peers.presence());
        self.res
    }

    /// Wait (taking subscriptions, forwarding nothing more) until the
    /// downstream subscribers have left or `until` passes: the end phase of
    /// `--on-eos exit`, so what was forwarded last, end-of-stream included,
    /// is delivered before the relay closes. Multicast: nobody can say they
    /// got it, so the whole time.
    fn drain(&mut self, until: Instant) {
        self.housekeeping();
        loop {
            let counted = self.peers.count() > 0 || self.setup.multicast;
            if Instant::now() >= until || !counted {
                return;
            }
            if self.board.stop_shards.load(Ordering::Relaxed) {
                return;
            }
            let _ = self.xpub.poll(zmq::POLLIN, POLL_MS);
            let _ = self.subscriptions();
            self.peers.poll_connections();
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Judged {
    Forward,
    Drop,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_go_upstream_once_announced_first_subscribe_and_last_unsubscribe_only() {
        let mut t = Topics::default();
        assert_eq!(
            t.on_event(b"\x01\x00", Some("a")),
            None,
            "not announced yet"
        );
        assert_eq!(t.on_event(b"\x01", Some("a")), None);
        t.announced = true;
        assert_eq!(
            t.all(Some(b"\x00SCIr")),
            vec![
                b"\x01".to_vec(),
                b"\x01\x00SCIr".to_vec(),
                b"\x01\x00".to_vec()
            ],
            "the control topic last"
        );
        // A second subscriber on the same topics: nothing new upstream.
        assert_eq!(t.on_event(b"\x01\x00", Some("b")), None);
        assert_eq!(
            t.on_event(b"\x01AAPL", Some("b")),
            Some(b"\x01AAPL".to_vec())
        );
        // A forger's unsubscribe changes nothing.
        assert_eq!(t.on_event(b"\x00AAPL", Some("x")), None);
        assert_eq!(t.on_event(b"\x00\x00", Some("a")), None, "b holds it");
        // b's connection ends: libzmq's id-less unsubscribes.
        assert_eq!(t.on_event(b"\x00AAPL", None), Some(b"\x00AAPL".to_vec()));
        assert_eq!(t.on_event(b"\x00\x00", None), Some(b"\x00\x00".to_vec()));
        assert_eq!(t.on_event(b"\x00\x00", None), None, "nobody holds it");
    }
}
