//! One stream thread, in three phases: wait for subscribers (and for every
//! other stream), send the feed on schedule, then the end phase
//! (end-of-stream until every subscriber has it). A stream that never
//! started skips the last two: it sends nothing at all.
//!
//! What it sends is its [`Input`]: its own symbols' events of the synthetic
//! feed (which every stream runs whole), or the ITCH messages the reader
//! thread routed to it, in blocks, played at `--speed`.

use crate::config::{is_multicast, Config, Pace, WhenFull};
use crate::exporter::Live;
use crate::peers::PeerWatch;
use crate::reader::{Block, StreamInput};
use crate::replay::{ReplayInput, ReplayStats};
use crate::report::{EndReason, LineReport, Lines, StreamReport};
use crate::retransmit::{self, Ring};
use crate::route::Entries;
use crate::schedule::{Schedule, Speed};
use crate::symseq::{self, SymSeqs};
use crate::tenths::Tenths;
use crate::wiring::{Bound, LineB};
use crossbeam::channel::{RecvTimeoutError, TryRecvError};
use hdrhistogram::Histogram;
use shardcast_agent::clock::now_ns;
use shardcast_agent::presence::PresenceReport;
use shardcast_agent::signals::StopSignal;
use shardcast_agent::stats;
use shardcast_agent::zmqx::Msg;
use shardcast_proto::feed::Feed;
use shardcast_proto::itch;
use shardcast_proto::seq::SourceKey;
use shardcast_proto::wire::{
    self, BatchWriter, Payload, RecordMeta, StreamChecksum, Symbol, ITCH_RECORD_MAX,
};
use shardcast_recorder::reader::Event;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Look at signals and subscriptions every this many feed events.
const HOUSEKEEPING_EVERY: u64 = 1024;

/// What a stream sends.
pub(crate) enum Input {
    /// The synthetic feed: every stream runs it whole and sends the events
    /// whose symbol `stream_of` gives to it.
    Synthetic {
        /// The feed.
        feed: Feed,
        /// Stream of each of the feed's symbols.
        stream_of: Arc<Vec<u16>>,
    },
    /// The messages of an ITCH source the reader thread routed to this
    /// stream, in source order.
    Itch(StreamInput),
    /// A recorded stream (`--source recording:DIR`), read by this thread.
    Replay(ReplayInput),
}

/// What a stream playing a source (an ITCH source or a replay) keeps
/// between records: its schedule, where it is in it, and its sequence.
struct Paced {
    /// `None` at `--speed max`.
    schedule: Option<Schedule>,
    /// `--duration`'s end.
    deadline: Option<u64>,
    t0: u64,
    /// When the last frame went (heartbeats are due after silence).
    last_frame_ns: u64,
    /// `--speed max`: the send time of the frame being packed.
    frame_ns: u64,
    /// Last sequence sent.
    seq: u64,
    checksum: StreamChecksum,
    /// Lags by position in the run (a numeric `--speed`).
    tenths: Option<Tenths>,
}

impl Paced {
    fn new(cfg: &Config, t0: u64, scheduled: bool) -> Paced {
        Paced {
            schedule: None,
            deadline: cfg.duration.map(|d| t0.saturating_add(d.as_nanos() as u64)),
            t0,
            last_frame_ns: t0,
            frame_ns: t0,
            seq: 0,
            checksum: StreamChecksum::default(),
            tenths: scheduled.then(Tenths::new),
        }
    }
}

/// A stream waiting for the reader looks at signals, the deadline and its
/// heartbeat at least this often.
const SOURCE_WAIT: Duration = Duration::from_millis(10);

/// What the streams share to start together, or not at all.
pub(crate) struct Start {
    ready: AtomicUsize,
    /// Decided once, by the first stream past the barrier, for all of them:
    /// streams never disagree on whether the run started.
    begin: OnceLock<Begin>,
    /// Set when a stream gave up waiting for subscribers: no stream sends.
    abort: AtomicBool,
}

impl Start {
    pub(crate) fn new() -> Start {
        Start {
            ready: AtomicUsize::new(0),
            begin: OnceLock::new(),
            abort: AtomicBool::new(false),
        }
    }
}

#[derive(Clone, Copy)]
enum Begin {
    /// Every stream starts its schedule at this t0 (ns).
    At(u64),
    /// The run never starts: a wait timed out, or a signal came first.
    Never(EndReason),
}

/// What a stream thread hands back to `run`.
pub(crate) struct StreamResult {
    pub(crate) report: StreamReport,
    pub(crate) behind: Histogram<u64>,
    /// The same lags by position in the run (an ITCH source at a numeric
    /// `--speed`; `None` otherwise).
    pub(crate) tenths: Option<Tenths>,
    pub(crate) first_due_ns: u64,
    pub(crate) last_send_ns: u64,
    /// `(seen, wanted)` subscribers when this stream's wait timed out.
    pub(crate) waited_out: Option<(u32, u32)>,
    /// A replay: the recorded stream played, and what was read and sent.
    pub(crate) replay: Option<(SourceKey, ReplayStats)>,
    pub(crate) end_reason: EndReason,
}

/// One stream thread.
pub(crate) struct Stream<'a> {
    cfg: &'a Config,
    index: usize,
    session: u64,
    sock: zmq::Socket,
    endpoint: String,
    peers: PeerWatch,
    signal: &'a StopSignal,
    announced: bool,
    send_errors: u64,
    /// Most records the next frame may hold: `--batch`, or 1 while
    /// `--batch auto` sees a connection filtering by symbol prefix.
    limit: usize,
    /// `--retransmit-bind`: the ring every data frame sent is kept in.
    ring: Option<Arc<Ring>>,
    /// `--bind-b`: line B, and what went on it.
    line_b: Option<(LineB, LineReport)>,
    /// `--metrics-bind`: where this stream publishes its counts, once per
    /// housekeeping round.
    live: Option<Arc<Live>>,
    /// How late the last record sent was against its due time, ns (0 with
    /// no schedule).
    lag_ns: u64,
    /// Named subscribers (`--id`) present, for the metrics: recounted only
    /// when a presence event came (`presence_events` moved).
    named: u64,
    /// Presence events seen so far, kept and dropped.
    presence_events: u64,
}

impl<'a> Stream<'a> {
    /// Stream `index` on its bound socket.
    pub(crate) fn new(
        cfg: &'a Config,
        index: usize,
        session: u64,
        bound: Bound,
        signal: &'a StopSignal,
        ring: Option<Arc<Ring>>,
    ) -> Stream<'a> {
        Stream {
            cfg,
            index,
            session,
            sock: bound.sock,
            endpoint: bound.endpoint,
            peers: bound.peers,
            signal,
            announced: false,
            send_errors: 0,
            limit: cfg.batch,
            ring,
            line_b: bound.line_b.map(|b| {
                let r = LineReport {
                    endpoint: b.endpoint.clone(),
                    ..LineReport::default()
                };
                (b, r)
            }),
            live: None,
            lag_ns: 0,
            named: 0,
            presence_events: 0,
        }
    }

    /// Publish this stream's counts to `live` (`--metrics-bind`).
    pub(crate) fn metered(mut self, live: Option<Arc<Live>>) -> Stream<'a> {
        self.live = live;
        self
    }

    /// Publish the counts so far for a scrape: a few relaxed stores, at
    /// most once per housekeeping round (never per record).
    fn publish(&self, rep: &StreamReport, behind: &Histogram<u64>, subs: i64) {
        if let Some(l) = self.live.as_ref().and_then(|l| l.stream(self.index)) {
            l.publish(rep, self.lag_ns, behind.max(), subs);
            l.publish_named(self.named);
        }
    }

    /// The whole life of the stream.
    pub(crate) fn run(&mut self, input: Input, start: &Start) -> StreamResult {
        if self.cfg.pace == Pace::Sleep {
            // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer
            // slack; 1 ns makes sleeps wake on time instead of up to 50 us late.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        }
        let mut res = StreamResult {
            report: StreamReport {
                stream_id: self.index,
                endpoint: self.endpoint.clone(),
                sent: 0,
                frames: 0,
                batched_frames: 0,
                blocked: 0,
                blocked_ns: 0,
                unsent_at_stop: 0,
                heartbeats: 0,
                last_seq: 0,
                checksum: 0,
                eos_sent: 0,
                eos_acknowledged: false,
                subscribers: 0,
                send_errors: 0,
                peers: Default::default(),
                presence: PresenceReport::default(),
                retransmit: None,
                lines: None,
            },
            behind: stats::new_histogram(),
            tenths: None,
            first_due_ns: 0,
            last_send_ns: 0,
            waited_out: None,
            replay: None,
            end_reason: EndReason::Signal,
        };
        let mut subs = 0i64;
        match self.wait_for_start(start, &mut subs, &mut res) {
            Begin::At(t0) => {
                res.first_due_ns = t0;
                // --expect-subscribers: who is missing as sending starts
                // (then at each housekeeping round), once what the XPUB
                // holds is taken in. A subscriber's subscriptions come
                // together when it connects (libzmq sends them at once, in
                // trie order: its presence topic right after the control
                // topic by which it was counted).
                self.poll_subscriptions(&mut subs, zmq::DONTWAIT);
                self.peers.warn_missing();
                res.end_reason = match input {
                    Input::Synthetic { feed, stream_of } => {
                        self.send_loop(t0, feed, &stream_of, &mut subs, &mut res)
                    }
                    Input::Itch(source) => self.send_loop_itch(t0, source, &mut subs, &mut res),
                    Input::Replay(input) => self.send_loop_replay(t0, input, &mut subs, &mut res),
                };
                // Presence as sending ended, with what the XPUB holds now
                // (no end-of-stream went out yet, so no subscriber left
                // for it): the end phase's departures are the run's normal
                // end, not events.
                self.poll_subscriptions(&mut subs, zmq::DONTWAIT);
                res.report.presence = PresenceReport::from(self.peers.presence());
                self.publish(&res.report, &res.behind, subs);
                // Requests waiting for records past the last are answered
                // now; the ring still serves what it holds.
                if let Some(r) = &self.ring {
                    r.close();
                }
                self.end_phase(&mut subs, &mut res);
                self.publish(&res.report, &res.behind, subs);
            }
            Begin::Never(reason) => {
                // Issue 9, defect 1: end-of-stream (last seq 0) from a stream
                // that never started told a connected subscriber "complete,
                // and empty". Silence leaves it incomplete, which is the truth.
                res.end_reason = reason;
                res.report.presence = PresenceReport::from(self.peers.presence());
                eprintln!(
                    "shardcast-pub: stream {}: never started ({reason}); no end-of-stream sent",
                    self.index
                );
            }
        }
        res.report.subscribers = subs;
        res.report.send_errors = self.send_errors;
        res.report.peers = self.peers.report();
        res.report.retransmit = self.ring.as_ref().map(|r| r.report());
        res.report.lines = self.line_b.as_ref().map(|(_, b)| Lines { b: b.clone() });
        res
    }

    /// Slow joiner: wait until this stream has --wait-subscribers (never
    /// sleep it away), then for every other stream, and learn the shared
    /// decision: one t0 for all, or no start at all.
    fn wait_for_start(&mut self, start: &Start, subs: &mut i64, res: &mut StreamResult) -> Begin {
        let cfg = self.cfg;
        let wanted = i64::from(cfg.wait_subscribers);
        let wait_started = Instant::now();
        let mut told = 0;
        while *subs < wanted && !self.signal.raised() {
            if cfg
                .wait_timeout
                .is_some_and(|t| wait_started.elapsed() >= t)
            {
                res.waited_out = Some(((*subs).max(0) as u32, cfg.wait_subscribers));
                start.abort.store(true, Ordering::Release);
                break;
            }
            if start.abort.load(Ordering::Acquire) {
                break;
            }
            self.poll_subscriptions(subs, 0);
            if let Some(l) = self.live.as_ref().and_then(|l| l.stream(self.index)) {
                l.publish_subscribers(*subs);
                l.publish_named(self.named);
            }
            if *subs != told && *subs < wanted {
                // Progress, for operators and as a test handshake: this
                // subscriber is counted, the wait goes on.
                told = *subs;
                eprintln!(
                    "shardcast-pub: stream {}: {told} of {wanted} subscribers so far; waiting (--wait-subscribers)",
                    self.index
                );
            }
        }
        if wanted > 0 && *subs >= wanted {
            eprintln!(
                "shardcast-pub: stream {}: {} subscriber(s) present",
                self.index, subs
            );
        }
        // All streams start together, at one t0. `ready` is raised after
        // `abort` is stored, so whoever sees every stream ready sees the abort.
        start.ready.fetch_add(1, Ordering::AcqRel);
        while start.ready.load(Ordering::Acquire) < cfg.streams.len()
            && !self.signal.raised()
            && !start.abort.load(Ordering::Acquire)
        {
            std::thread::sleep(Duration::from_micros(100));
        }
        *start.begin.get_or_init(|| {
            if start.abort.load(Ordering::Acquire) {
                Begin::Never(EndReason::WaitTimeout)
            } else if self.signal.raised() {
                Begin::Never(EndReason::Signal)
            } else {
                Begin::At(now_ns())
            }
        })
    }

    /// Send this stream's events of the feed on schedule until the count,
    /// the duration or a signal ends it; flushes the last partial batch.
    /// Leaves the last sequence and checksum in `res.report`.
    fn send_loop(
        &mut self,
        t0: u64,
        mut feed: Feed,
        stream_of: &[u16],
        subs: &mut i64,
        res: &mut StreamResult,
    ) -> EndReason {
        let cfg = self.cfg;
        let me = self.index as u16;
        let deadline = cfg.duration.map(|d| t0.saturating_add(d.as_nanos() as u64));
        // Holds `--batch` records of `--size` bytes (every record's minimum
        // is below 80, --size's floor), so encoding below never runs out.
        let mut out = BatchWriter::new(
            cfg.batch > 1,
            wire::BATCH_HEADER_LEN * usize::from(cfg.batch > 1) + cfg.batch * cfg.size,
        );
        let mut seq = 0u64;
        let mut sym_seqs = SymSeqs::dense(feed.symbols().len());
        let mut checksum = StreamChecksum::default();
        let mut last_frame_ns = t0;
        let mut i = 0u64;
        let rep = &mut res.report;
        let reason = loop {
            if cfg.count.is_some_and(|c| i >= c) {
                break EndReason::Count;
            }
            if i % HOUSEKEEPING_EVERY == 0 {
                if let Some(r) = self.housekeeping(t0, i, deadline, subs) {
                    break r;
                }
                self.publish(rep, &res.behind, *subs);
            }
            let ev = feed.next_event();
            i += 1;
            if stream_of[ev.symbol as usize] != me {
                // Another stream's event: it only advances the shared feed.
                continue;
            }
            // The schedule is only computed for this stream's own events.
            let due = t0 + cfg.due_offset_ns(i - 1);
            if cfg.rate > 0 && deadline.is_some_and(|d| due >= d) {
                break EndReason::Duration;
            }
            if cfg.rate > 0 {
                let now = now_ns();
                if now < due {
                    // The next message is not due: what is packed goes now,
                    // so batching never adds waiting.
                    if self.send_frame(&mut out, rep) {
                        last_frame_ns = now;
                    }
                    if !self.idle_until(due, &mut last_frame_ns, seq, &mut rep.heartbeats) {
                        break EndReason::Signal;
                    }
                }
            }
            let send = now_ns();
            let intended = if cfg.rate > 0 { due } else { send };
            let slot = ev.symbol;
            let sym_seq = sym_seqs.peek(slot);
            let meta = self.meta(
                feed.symbols()[ev.symbol as usize],
                seq + 1,
                sym_seq,
                send,
                intended,
            );
            // Cannot fail: the writer holds `batch` records of `size` bytes
            // and is sent when it holds `batch`.
            let Ok(record) = out.encode(&meta, &ev.payload, cfg.size) else {
                debug_assert!(false, "record does not fit the batch writer");
                continue;
            };
            seq += 1;
            sym_seqs.consume(slot, sym_seq);
            checksum.add(wire::digest(record));
            rep.sent += 1;
            if cfg.rate > 0 {
                self.lag_ns = send.saturating_sub(due);
                stats::record(&mut res.behind, self.lag_ns);
            }
            res.last_send_ns = send;
            if out.count() >= self.limit && self.send_frame(&mut out, rep) {
                last_frame_ns = send;
            }
        };
        self.send_frame(&mut out, rep);
        rep.last_seq = seq;
        rep.checksum = checksum.0;
        reason
    }

    /// Send the ITCH messages the reader routed to this stream until the
    /// source ends (the reader closes the queue), `--duration` or a signal;
    /// flushes the last partial batch. At `--speed N` message `i` is due at
    /// `t0 + (ts_i - ts_0) / N` (the schedule of `schedule`) and stamped
    /// with that intended time; at `--speed max` it goes as soon as the
    /// stream can send it (blocking for room, `--when-full block`), stamped
    /// with its send time. Leaves the last sequence and checksum in
    /// `res.report`.
    fn send_loop_itch(
        &mut self,
        t0: u64,
        source: StreamInput,
        subs: &mut i64,
        res: &mut StreamResult,
    ) -> EndReason {
        let cfg = self.cfg;
        let speed = cfg.speed.and_then(Speed::factor);
        // Holds `--batch` of the longest ITCH record, so encoding below
        // never runs out before the batch is sent.
        let mut out = BatchWriter::new(
            cfg.batch > 1,
            wire::BATCH_HEADER_LEN * usize::from(cfg.batch > 1) + cfg.batch * ITCH_RECORD_MAX,
        );
        let mut p = Paced::new(cfg, t0, speed.is_some());
        let mut sym_seqs = SymSeqs::itch();
        let mut since_housekeeping = 0u64;
        let rep = &mut res.report;
        let reason = 'run: loop {
            let block = match source.try_next() {
                Ok(b) => b,
                Err(TryRecvError::Disconnected) => break EndReason::EndOfSource,
                Err(TryRecvError::Empty) => {
                    // The reader is behind, or the source is quiet: what is
                    // packed goes now (batching never adds waiting), then
                    // the stream waits as an idle stream does.
                    if self.send_frame(&mut out, rep) {
                        p.last_frame_ns = now_ns();
                    }
                    self.publish(rep, &res.behind, *subs);
                    match self.wait_for_block(
                        &source,
                        p.deadline,
                        &mut p.last_frame_ns,
                        p.seq,
                        rep,
                        subs,
                    ) {
                        Ok(b) => b,
                        Err(reason) => break reason,
                    }
                }
            };
            p.schedule = speed.map(|x| Schedule::new(t0, block.anchor_ts, x));
            for (symbol, msg) in Entries::new(&block.bytes) {
                if since_housekeeping >= HOUSEKEEPING_EVERY {
                    since_housekeeping = 0;
                    if let Some(r) = self.housekeeping_itch(p.deadline, subs) {
                        break 'run r;
                    }
                    self.publish(rep, &res.behind, *subs);
                }
                since_housekeeping += 1;
                // Only ITCH 5.0 types at their fixed lengths come here, so
                // the header (and its timestamp) is there.
                let (due, send) =
                    match self.pace(&mut p, itch::timestamp(msg).unwrap_or(0), &mut out, rep) {
                        Ok(t) => t,
                        Err(r) => break 'run r,
                    };
                let slot = sym_seqs.slot_at_locate(symseq::locate(msg), symbol);
                let sym_seq = sym_seqs.peek(slot);
                let meta = self.meta(symbol, p.seq + 1, sym_seq, send, due.unwrap_or(send));
                // Cannot fail: the writer holds `batch` of the longest
                // record and is sent when it holds `batch`; the router
                // never routes a message shorter than the ITCH header.
                let Ok(record) = out.encode_itch(&meta, msg) else {
                    debug_assert!(false, "ITCH record does not fit the batch writer");
                    continue;
                };
                sym_seqs.consume(slot, sym_seq);
                let digest = wire::digest(record);
                self.sent_one(&mut p, digest, due, send, &mut out, rep, &mut res.behind);
                res.last_send_ns = send;
            }
            source.give_back(block.bytes);
        };
        self.send_frame(&mut out, rep);
        rep.last_seq = p.seq;
        rep.checksum = p.checksum.0;
        res.tenths = p.tenths;
        // Tell the reader now, not after the end phase, that this stream
        // takes nothing more: it must not wait on this stream's full queue.
        drop(source);
        reason
    }

    /// Replay this stream's recorded stream (`--source recording:DIR`, see
    /// `replay`) until it ends, `--duration` or a signal: each selected
    /// record re-stamped as this stream's (new session, next sequence, send
    /// and intended time), its payload unchanged, due at `--speed` on the
    /// recorded intended times (at `max`: as fast as the subscribers take
    /// it). A damaged entry is reported and skipped; a read error ends the
    /// stream (reported). Leaves the last sequence and checksum in
    /// `res.report`, the replay's counts in `res.replay`.
    fn send_loop_replay(
        &mut self,
        t0: u64,
        input: ReplayInput,
        subs: &mut i64,
        res: &mut StreamResult,
    ) -> EndReason {
        let cfg = self.cfg;
        let ReplayInput {
            key,
            mut cursor,
            anchor_ts,
            mut select,
            speed,
        } = input;
        let mut p = Paced::new(cfg, t0, speed.factor().is_some());
        p.schedule = speed.factor().map(|x| Schedule::new(t0, anchor_ts, x));
        // Recorded records vary in length (a synthetic --size, an ITCH
        // message): the frame goes when `--batch` records are in or the
        // next one would not fit, and any one record fits an empty frame.
        let mut out = BatchWriter::new(
            cfg.batch > 1,
            wire::BATCH_HEADER_LEN * usize::from(cfg.batch > 1)
                + (cfg.batch * 256).max(wire::MAX_RECORD_LEN),
        );
        let mut since_housekeeping = 0u64;
        let mut sym_seqs = SymSeqs::keyed();
        let mut stats = ReplayStats::default();
        let rep = &mut res.report;
        let reason = 'run: loop {
            let ev = match cursor.next() {
                Ok(Some(ev)) => ev,
                Ok(None) => break EndReason::EndOfSource,
                Err(e) => {
                    eprintln!(
                        "shardcast-pub: stream {}: error: reading the recording: {e}; the stream ends here",
                        self.index
                    );
                    stats.corrupt += 1;
                    break EndReason::EndOfSource;
                }
            };
            let f = match ev {
                Event::Frame(f) => f,
                Event::Corrupt(c) => {
                    stats.corrupt += 1;
                    eprintln!(
                        "shardcast-pub: stream {}: recording damaged: {} bytes at offset {} of {} ({:?}): skipped, never replayed",
                        self.index,
                        c.bytes,
                        c.offset,
                        c.path.display(),
                        c.damage
                    );
                    continue;
                }
            };
            stats.frames += 1;
            for rec in f.records_in_range() {
                if since_housekeeping >= HOUSEKEEPING_EVERY {
                    since_housekeeping = 0;
                    if let Some(r) = self.housekeeping_itch(p.deadline, subs) {
                        break 'run r;
                    }
                    self.publish(rep, &res.behind, *subs);
                }
                since_housekeeping += 1;
                let symbol = rec.symbol();
                if !select.keep(rec.session(), rec.seq(), &symbol, &mut stats) {
                    continue;
                }
                let recorded = rec.intended_ts_ns();
                let (due, send) = match self.pace(&mut p, recorded, &mut out, rep) {
                    Ok(t) => t,
                    Err(r) => break 'run r,
                };
                if out.len() + rec.bytes.len() > out.capacity() && self.send_frame(&mut out, rep) {
                    p.last_frame_ns = send;
                }
                let slot = sym_seqs.slot(symbol);
                let sym_seq = sym_seqs.peek(slot);
                let meta = self.meta(symbol, p.seq + 1, sym_seq, send, due.unwrap_or(send));
                // The recorded length as the padding: the body and its
                // padding come out byte for byte as they were recorded.
                let Ok(record) = out.encode(&meta, &rec.payload(), rec.bytes.len()) else {
                    debug_assert!(false, "recorded record does not fit the batch writer");
                    continue;
                };
                sym_seqs.consume(slot, sym_seq);
                let digest = wire::digest(record);
                self.sent_one(&mut p, digest, due, send, &mut out, rep, &mut res.behind);
                res.last_send_ns = send;
                stats.records += 1;
                stats.first_intended_ns.get_or_insert(recorded);
                stats.last_intended_ns = Some(recorded);
            }
        };
        self.send_frame(&mut out, rep);
        rep.last_seq = p.seq;
        rep.checksum = p.checksum.0;
        res.tenths = p.tenths;
        res.replay = Some((key, stats));
        reason
    }

    /// When a record of source time `ts` goes, and when it was due. At a
    /// numeric `--speed` it is due at its schedule's time (`Err` past
    /// `--duration`): the stream sends what is packed and waits for it
    /// (`Err` on a signal). At `max` it goes now: one clock read per frame,
    /// not per record (the records of a frame are packed within
    /// microseconds, and a read per record was a tenth of the publisher's
    /// time: perf, 10 M messages).
    #[inline]
    fn pace(
        &mut self,
        p: &mut Paced,
        ts: u64,
        out: &mut BatchWriter,
        rep: &mut StreamReport,
    ) -> Result<(Option<u64>, u64), EndReason> {
        let Some(s) = p.schedule else {
            if out.is_empty() {
                p.frame_ns = now_ns();
            }
            return Ok((None, p.frame_ns));
        };
        let due = s.due(ts);
        if p.deadline.is_some_and(|d| due >= d) {
            return Err(EndReason::Duration);
        }
        let mut now = now_ns();
        if now < due {
            if self.send_frame(out, rep) {
                p.last_frame_ns = now;
            }
            if !self.idle_until(due, &mut p.last_frame_ns, p.seq, &mut rep.heartbeats) {
                return Err(EndReason::Signal);
            }
            now = now_ns();
        }
        Ok((Some(due), now))
    }

    /// A record (of digest `digest`) was packed into `out`: count it, time
    /// it against its due time, and send the frame once it holds `--batch`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn sent_one(
        &mut self,
        p: &mut Paced,
        digest: u64,
        due: Option<u64>,
        send: u64,
        out: &mut BatchWriter,
        rep: &mut StreamReport,
        behind: &mut Histogram<u64>,
    ) {
        p.seq += 1;
        p.checksum.add(digest);
        rep.sent += 1;
        if let Some(due) = due {
            let lag = send.saturating_sub(due);
            self.lag_ns = lag;
            stats::record(behind, lag);
            if let Some(t) = p.tenths.as_mut() {
                t.record(due - p.t0, lag);
            }
        }
        if out.count() >= self.limit && self.send_frame(out, rep) {
            p.last_frame_ns = send;
        }
    }

    /// Wait for the reader's next block the way a paced stream waits for
    /// its next message: a heartbeat after --heartbeat-ms of silence, the
    /// signal and the deadline looked at every [`SOURCE_WAIT`], peers read.
    /// `Err` ends the stream: the source ended, the duration, or a signal.
    fn wait_for_block(
        &mut self,
        source: &StreamInput,
        deadline: Option<u64>,
        last_frame_ns: &mut u64,
        seq: u64,
        rep: &mut StreamReport,
        subs: &mut i64,
    ) -> Result<Block, EndReason> {
        let hb = self.cfg.heartbeat.as_nanos() as u64;
        loop {
            if self.signal.raised() {
                return Err(EndReason::Signal);
            }
            let now = now_ns();
            if deadline.is_some_and(|d| now >= d) {
                return Err(EndReason::Duration);
            }
            if last_frame_ns.saturating_add(hb) <= now {
                if self.send_control(Payload::Heartbeat, seq, zmq::DONTWAIT) {
                    rep.heartbeats += 1;
                }
                *last_frame_ns = now;
            }
            match source.next_within(SOURCE_WAIT) {
                Ok(b) => return Ok(b),
                Err(RecvTimeoutError::Disconnected) => return Err(EndReason::EndOfSource),
                Err(RecvTimeoutError::Timeout) => self.poll_subscriptions(subs, zmq::DONTWAIT),
            }
        }
    }

    /// Every [`HOUSEKEEPING_EVERY`] ITCH records: a signal or the duration
    /// (by the clock: at `--speed max` there is no schedule to read it
    /// from) ends the loop; otherwise drain subscription events.
    fn housekeeping_itch(&mut self, deadline: Option<u64>, subs: &mut i64) -> Option<EndReason> {
        if self.signal.raised() {
            return Some(EndReason::Signal);
        }
        if deadline.is_some_and(|d| now_ns() >= d) {
            return Some(EndReason::Duration);
        }
        self.poll_subscriptions(subs, zmq::DONTWAIT);
        self.peers.warn_missing();
        None
    }

    /// Every [`HOUSEKEEPING_EVERY`] events: a signal or the duration ends
    /// the loop; otherwise drain subscription events.
    fn housekeeping(
        &mut self,
        t0: u64,
        i: u64,
        deadline: Option<u64>,
        subs: &mut i64,
    ) -> Option<EndReason> {
        if self.signal.raised() {
            return Some(EndReason::Signal);
        }
        let past = match self.cfg.rate {
            0 => now_ns(),
            _ => t0 + self.cfg.due_offset_ns(i),
        };
        if deadline.is_some_and(|d| past >= d) {
            return Some(EndReason::Duration);
        }
        self.poll_subscriptions(subs, zmq::DONTWAIT);
        self.peers.warn_missing();
        None
    }

    /// End phase. End-of-stream is repeated every heartbeat interval until
    /// every counted subscriber has unsubscribed (a shardcast subscriber
    /// leaves once it has end-of-stream from all its streams), or until
    /// --eos-timeout-ms. Sending it once is not enough: a subscriber that is
    /// behind has its pipe at the HWM, and libzmq then takes that pipe out
    /// of the eligible set until the reader drains it, so a single
    /// end-of-stream would be dropped for exactly the subscriber that needs
    /// it most. ZMQ_XPUB_NODROP does not help: its HWM check only looks at
    /// eligible pipes.
    fn end_phase(&mut self, subs: &mut i64, res: &mut StreamResult) {
        let cfg = self.cfg;
        let last_seq = res.report.last_seq;
        // Once per stream, outside the send loop: operators see when data
        // stopped and the end phase began, and tests use it as the handshake
        // for "the publisher is in its end phase".
        eprintln!(
            "shardcast-pub: stream {}: end phase ({}): end-of-stream (last seq {last_seq}) repeats until every subscriber has left, at most {} ms",
            self.index,
            res.end_reason,
            cfg.eos_timeout.as_millis()
        );
        let multicast = is_multicast(&cfg.streams[self.index].bind);
        let ended_at = Instant::now();
        let poll_ms = cfg
            .heartbeat
            .min(cfg.eos_timeout)
            .as_millis()
            .clamp(1, i32::MAX as u128) as i32;
        let _ = self.sock.set_rcvtimeo(poll_ms);
        let deadline = ended_at + cfg.eos_timeout;
        loop {
            if self.send_eos(last_seq, res.report.checksum) {
                res.report.eos_sent += 1;
            }
            // Count from what the XPUB has to say now, not from the last
            // housekeeping round: a subscriber that joined since must get it.
            self.poll_subscriptions(subs, zmq::DONTWAIT);
            // Multicast receivers send nothing back: repeat end-of-stream
            // for the whole --eos-timeout-ms and claim no acknowledgement.
            if *subs <= 0 && !multicast {
                res.report.eos_acknowledged = true;
                break;
            }
            if ended_at.elapsed() >= cfg.eos_timeout {
                break;
            }
            let until = (Instant::now() + cfg.heartbeat).min(deadline);
            while (*subs > 0 || multicast) && Instant::now() < until {
                self.poll_subscriptions(subs, 0);
            }
        }
        if multicast {
            eprintln!(
                "shardcast-pub: stream {}: multicast end-of-stream repeated {} times over {} ms; PGM receivers \
                 do not acknowledge it",
                self.index,
                res.report.eos_sent,
                cfg.eos_timeout.as_millis()
            );
        } else if !res.report.eos_acknowledged {
            eprintln!(
                "shardcast-pub: stream {}: {} subscriber(s) still connected {} ms after end-of-stream; they may not have received it (see --eos-timeout-ms)",
                self.index,
                subs,
                cfg.eos_timeout.as_millis()
            );
        }
        // A short linger for frames still queued to subscribers we do not
        // count (raw SUB sockets).
        let _ = self
            .sock
            .set_linger(cfg.eos_timeout.as_millis().min(1000) as i32);
        if let Some((b, _)) = &self.line_b {
            let _ = b
                .sock
                .set_linger(cfg.eos_timeout.as_millis().min(1000) as i32);
        }
    }

    /// The header of a record of this stream; `sym_seq` 0 for control
    /// records (PROTOCOL.md section 4: not carried).
    fn meta(&self, symbol: Symbol, seq: u64, sym_seq: u32, send: u64, intended: u64) -> RecordMeta {
        RecordMeta {
            sym_seq,
            symbol,
            publisher_id: self.cfg.publisher_id,
            stream_id: self.index as u16,
            session: self.session,
            seq,
            send_ts_ns: send.wrapping_add_signed(self.cfg.clock_offset_ns),
            intended_ts_ns: intended.wrapping_add_signed(self.cfg.clock_offset_ns),
        }
    }

    /// Take in connection and subscription events (see `peers`: one count
    /// per connection subscribed to the control topic) and set `subs`.
    fn poll_subscriptions(&mut self, subs: &mut i64, flags: i32) {
        self.refresh_peers(flags);
        *subs = self.peers.count() as i64;
    }

    /// Take in peer events and follow them: `--batch auto` packs nothing
    /// while a connection filters by symbol prefix, so the XPUB's filtering
    /// applies to every record.
    fn refresh_peers(&mut self, flags: i32) {
        self.peers.poll(&mut self.sock, flags);
        self.limit = if self.cfg.batch_auto && self.peers.filtering() {
            1
        } else {
            self.cfg.batch
        };
        // Every connect and disconnect of a named subscriber is one event,
        // kept or dropped: recount only when there was one.
        let p = self.peers.presence();
        let events = p.events().len() as u64 + p.events_dropped();
        if events != self.presence_events {
            self.presence_events = events;
            self.named = p.subscribers().len() as u64;
        }
    }

    /// Send what `out` holds as one frame (`--batch auto`: a lone record
    /// bare), count it, then clear it; false when empty.
    fn send_frame(&mut self, out: &mut BatchWriter, rep: &mut StreamReport) -> bool {
        if out.is_empty() {
            return false;
        }
        let records = out.count();
        let bytes = if self.cfg.batch_auto {
            out.frame_or_lone_record()
        } else {
            out.frame()
        };
        if let Some(ring) = &self.ring {
            // Kept before it is sent, as it is sent: one lock and one copy
            // per frame (retransmit.rs says why that is all it costs).
            let (first, send_ns) = retransmit::frame_first(bytes);
            ring.append(bytes, first, first + records as u64 - 1, send_ns);
        }
        let sent = Msg::from_slice(bytes).and_then(|mut msg| self.send_msg(&mut msg, records, rep));
        if sent.is_err() {
            self.send_errors += 1;
        }
        if let Some((b, r)) = &mut self.line_b {
            // The same bytes on line B: one more libzmq message per frame
            // (what a second line costs), never waited for.
            match Msg::from_slice(bytes).and_then(|mut m| m.send(&mut b.sock, zmq::DONTWAIT)) {
                Ok(()) => {
                    r.sent += 1;
                    r.records += records as u64;
                }
                Err(_) => r.dropped += 1,
            }
        }
        rep.frames += 1;
        rep.batched_frames += u64::from(records > 1);
        if !self.announced {
            // Once per run; tests and operators use this line as the "data is
            // flowing" handshake.
            self.announced = true;
            eprintln!(
                "shardcast-pub: stream {}: first data message sent (seq 1)",
                self.index
            );
        }
        out.clear();
        true
    }

    /// Send one data frame of `records` records. Drop mode (a PUB): it never
    /// waits; at a subscriber's HWM libzmq drops it for that subscriber,
    /// who sees the gap in the sequence numbers, and says nothing of it.
    /// Block mode (ZMQ_XPUB_NODROP): at a full queue libzmq refuses it with
    /// EAGAIN instead, and we wait for room in slices of SEND_WAIT_MS,
    /// looking at signals and peers between them (a subscriber that leaves
    /// must be able to free the stream). An error is something else (out of
    /// memory, a closed context).
    fn send_msg(
        &mut self,
        msg: &mut Msg,
        records: usize,
        rep: &mut StreamReport,
    ) -> Result<(), zmq::Error> {
        match msg.send(&mut self.sock, zmq::DONTWAIT) {
            Err(zmq::Error::EAGAIN) if self.cfg.when_full == WhenFull::Block => {}
            done => return done,
        }
        let started = now_ns();
        rep.blocked += 1;
        let done = loop {
            if self.signal.raised() {
                rep.unsent_at_stop += records as u64;
                break Ok(());
            }
            self.refresh_peers(zmq::DONTWAIT);
            match msg.send(&mut self.sock, 0) {
                Err(zmq::Error::EAGAIN) => continue,
                done => break done,
            }
        };
        rep.blocked_ns += now_ns().saturating_sub(started);
        done
    }

    /// End-of-stream, its header `seq` and body `last_seq` from one value:
    /// receivers reject the record when they differ (`eos_seq_mismatch`).
    fn send_eos(&mut self, last_seq: u64, checksum: u64) -> bool {
        self.send_control(
            Payload::EndOfStream { last_seq, checksum },
            last_seq,
            zmq::DONTWAIT,
        )
    }

    fn send_control(&mut self, payload: Payload, last_seq: u64, flags: i32) -> bool {
        let mut buf = [0u8; 128];
        let now = now_ns();
        let meta = self.meta(Symbol::CONTROL, last_seq, 0, now, now);
        let Ok(n) = wire::encode(&mut buf, &meta, &payload, 0) else {
            return false;
        };
        if let Some((b, r)) = &mut self.line_b {
            // Heartbeats and end-of-stream go on both lines.
            match Msg::from_slice(&buf[..n]).and_then(|mut m| m.send(&mut b.sock, zmq::DONTWAIT)) {
                Ok(()) => r.control += 1,
                Err(_) => r.dropped += 1,
            }
        }
        Msg::from_slice(&buf[..n])
            .and_then(|mut m| m.send(&mut self.sock, flags))
            .is_ok()
    }

    /// Wait until `due`, heartbeating if the stream would otherwise stay
    /// silent longer than --heartbeat-ms. Returns false on a signal.
    fn idle_until(
        &mut self,
        due: u64,
        last_frame_ns: &mut u64,
        seq: u64,
        heartbeats: &mut u64,
    ) -> bool {
        const MAX_NAP_NS: u64 = 10_000_000; // look at signals at least every 10 ms
        let hb = self.cfg.heartbeat.as_nanos() as u64;
        loop {
            let now = now_ns();
            if now >= due {
                return true;
            }
            if self.signal.raised() {
                return false;
            }
            let hb_at = last_frame_ns.saturating_add(hb);
            if hb_at <= now {
                if self.send_control(Payload::Heartbeat, seq, zmq::DONTWAIT) {
                    *heartbeats += 1;
                }
                *last_frame_ns = now;
                continue;
            }
            let until = due.min(hb_at).min(now + MAX_NAP_NS);
            if until - now >= 1_000_000 {
                // A millisecond or more to spare: read the socket monitor,
                // whose events libzmq's I/O thread must be able to hand
                // over (housekeeping alone comes only every 1024 events).
                self.peers.poll_connections();
            }
            match self.cfg.pace {
                Pace::Spin => std::hint::spin_loop(),
                Pace::Sleep => std::thread::sleep(Duration::from_nanos(until - now)),
            }
        }
    }
}
