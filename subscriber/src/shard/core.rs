//! The shard's decisions, without sockets (sans-IO, in quinn-proto's
//! manner): [`ShardCore`] takes `(now, bytes)` for each received frame and
//! queues what must be sent, in order, as [`Send`]s. The I/O loop
//! (`super::run_shard`) only receives, hands frames in, and sends what the
//! core asks for. Time is passed in, so every decision here is tested
//! deterministically below.
//!
//! What it decides: whether a frame is valid (a bad one is counted by reason
//! and dropped whole), each record's sequence verdict (new, duplicate,
//! implausible), each record's lag for the Suicidal Snail, which worker owns
//! each record (keyed fan-out), packing single-record frames per worker,
//! dropping duplicates out of publisher batches, the order frames leave in,
//! and when the shard has reached the end of every stream it saw.

use shardcast_agent::hist::{Stage, StageRecorder};
use shardcast_agent::lag::{LagCheck, OnSlow};
use shardcast_agent::watch::{AgentCounters, AgentKind, SlowEvent};
use shardcast_proto::seq::{SourceKey, Tracker, Verdict};
use shardcast_proto::shard::{worker_for, STAMP_FLAGS, STAMP_NO_JUDGE};
use shardcast_proto::snail::{age_ns, LagLimit, LagMode};
use shardcast_proto::wire::{
    BatchWriter, DecodeError, Frame, Kind, Payload, MAX_BATCH, MAX_RECORD_LEN,
};

/// Most bytes packed into one inproc hop before it is sent.
const OUTBOX_BYTES: usize = 256 << 10;

/// A shard's configuration.
#[derive(Clone, Copy, Debug)]
pub struct ShardSetup {
    /// Shard index.
    pub index: usize,
    /// `Some(n)` under keyed fan-out to `n` workers (one PUSH per worker);
    /// `None` under push fan-out (one PUSH, libzmq balances).
    pub keyed_workers: Option<usize>,
    /// The snail's limit at this stage.
    pub limit: LagLimit,
    /// Croak or warn.
    pub on_slow: OnSlow,
}

/// One thing the I/O loop must send, in the order the core queued them.
/// After sending one, the loop reports it with [`ShardCore::sent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Send {
    /// Worker `worker`'s packed single records as one batch frame
    /// ([`ShardCore::packed`]), stamped with the receive time of its first
    /// record.
    Packed {
        /// The worker (index into the shard's PUSH sockets).
        worker: usize,
        /// The stamp.
        rx_ns: u64,
    },
    /// The frame just handed in, as it came (no copy), to every worker
    /// whose bit is set in `workers` (push fan-out: bit 0, the one PUSH).
    Whole {
        /// Bit `w` set: send to worker `w`.
        workers: u64,
        /// The stamp (the frame's receive time).
        rx_ns: u64,
        /// New records in it.
        records: usize,
    },
    /// The frame just handed in less its duplicates ([`ShardCore::rebuilt`]).
    Rebuilt {
        /// Bit `w` set: send to worker `w`.
        workers: u64,
        /// The stamp (the frame's receive time).
        rx_ns: u64,
        /// Records in it.
        records: usize,
    },
}

/// What a shard hands back when it stops.
#[derive(Debug)]
pub struct ShardResult {
    /// Sequence state of every source seen.
    pub tracker: Tracker,
    /// Frames received, valid or not.
    pub frames: u64,
    /// Malformed frames by [`DecodeError::index`].
    pub malformed: [u64; DecodeError::REASONS.len()],
    /// Data records forwarded to workers.
    pub forwarded: u64,
    /// Records older than the lag limit at receive.
    pub slow: u64,
    /// Largest age of a data record at receive, ns.
    pub max_lag_ns: u64,
    /// First and last data receive time, ns (0 if none).
    pub first_rx_ns: u64,
    /// See `first_rx_ns`.
    pub last_rx_ns: u64,
    /// Whether every source it saw sent end-of-stream.
    pub ended: bool,
    /// The libzmq error that stopped the shard early, if one did.
    pub error: Option<zmq::Error>,
    /// Records received during the warm-up (counted, not timed).
    pub warmup_records: u64,
    /// New data records whose send time was further ahead of our clock
    /// than the skew limit: delivered, but neither timed nor judged by the
    /// snail.
    pub ts_future: u64,
    /// New data records whose send time was older than anything this shard
    /// could have been sent ([`LagLimit::is_ancient`]): delivered, but
    /// neither timed nor judged by the snail.
    pub ts_ancient: u64,
    /// End-of-stream records from a source that had sent no data or
    /// heartbeat this shard took: counted, not obeyed.
    pub eos_unknown: u64,
    /// `--catch-up`: what each source joined mid-stream was caught up with
    /// (filled by the shard's I/O loop).
    pub caught_up: Vec<CaughtUp>,
    /// `--recover-from`: what the repairs did.
    pub recovery: super::RecoveryResult,
    /// `--connect-b`: what each line did.
    pub lines: Option<super::LinesReport>,
    /// `--subscribe`: the per-symbol view of each source (its counters are
    /// the report's for a selecting shard).
    pub selection: Option<super::symbols::Selection>,
}

/// One catch-up (`--catch-up`): a source this shard joined mid-stream, and
/// what the recorder gave it of what came before.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CaughtUp {
    /// The source.
    #[serde(skip)]
    pub key: SourceKey,
    /// Its session.
    pub session: u64,
    /// Sequences asked for: `from_seq..=to_seq` (to: the one before the
    /// first live record).
    pub from_seq: u64,
    /// See `from_seq`.
    pub to_seq: u64,
    /// Records applied from the recording.
    pub records: u64,
    /// Recorded frames received.
    pub frames: u64,
    /// From the first live record to the last fetched one applied, ns.
    pub elapsed_ns: u64,
    /// How it ended: `done` (everything asked for), `partial` (the
    /// recording did not reach `to_seq` in time), `not_available` (the
    /// recording has nothing of it), `busy`, `timeout`, `stopped`, or
    /// `error: ...` (a reply this subscriber could not use).
    pub status: String,
}

/// Records of single-record frames waiting to go to one worker as a batch.
#[derive(Debug)]
struct Outbox {
    writer: BatchWriter,
    first_rx_ns: u64,
    /// Stamp flags of what it holds (`STAMP_*`), ORed.
    flags: u64,
}

/// A shard's state and decisions.
#[derive(Debug)]
pub struct ShardCore {
    setup: ShardSetup,
    res: ShardResult,
    lag: LagCheck,
    latency: StageRecorder,
    boxes: Vec<Outbox>,
    /// For the rare batch that mixes new records with duplicates: reused,
    /// grown (cold path) only when a larger batch needs it.
    scratch: BatchWriter,
    /// Queued sends and the next one to hand out (a reused vector: at most
    /// one per worker plus one per frame, so no allocation after start-up).
    sends: Vec<Send>,
    next: usize,
    last_seq: u64,
    /// Keyed fan-out: records given to each worker since the last publish.
    enqueued: Vec<u64>,
    /// When the shard started receiving: a record older than the time since
    /// then (and an hour) cannot be lag ([`LagLimit::is_ancient`]).
    start_ns: u64,
    /// After a catch-up: a source's records sent before the time given
    /// queued while history was fetched, so the snail does not judge them
    /// (a handful of entries at most: one per source caught up).
    grace: Vec<(SourceKey, u64)>,
    /// `--subscribe`: the symbols selected, checked per symbol.
    selection: Option<super::symbols::Selection>,
}

/// How [`ShardCore::take_frame`] treats a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Taken {
    /// From the stream.
    Live,
    /// Fetched from a recorder or a publisher's ring: only data records in
    /// `min..=max` are taken (a fetched frame is whole, so it may hold
    /// records on either side of the range); control records are ignored.
    /// Never judged by the snail (they are late by nature) nor timed at
    /// the wire stage; `flags` tells the workers the rest.
    Fetched { min: u64, max: u64, flags: u64 },
}

impl ShardCore {
    /// A core for a shard with `outs` PUSH sockets (one per worker under
    /// keyed fan-out, one under push), recording wire latency into
    /// `latency`, started at `start_ns` (when its SUB has just subscribed).
    pub fn new(setup: ShardSetup, outs: usize, latency: StageRecorder, start_ns: u64) -> ShardCore {
        ShardCore {
            setup,
            res: ShardResult {
                tracker: Tracker::new(),
                frames: 0,
                malformed: [0; DecodeError::REASONS.len()],
                forwarded: 0,
                slow: 0,
                max_lag_ns: 0,
                first_rx_ns: 0,
                last_rx_ns: 0,
                ended: false,
                error: None,
                warmup_records: 0,
                ts_future: 0,
                ts_ancient: 0,
                eos_unknown: 0,
                caught_up: Vec::new(),
                recovery: Default::default(),
                lines: None,
                selection: None,
            },
            lag: LagCheck::new(AgentKind::Shard, setup.index, setup.limit, setup.on_slow),
            latency,
            // Room for one record past the flush threshold, so a push never
            // fails: the box is flushed as soon as it reaches the threshold.
            boxes: (0..outs)
                .map(|_| Outbox {
                    writer: BatchWriter::new(true, OUTBOX_BYTES + MAX_RECORD_LEN),
                    first_rx_ns: 0,
                    flags: 0,
                })
                .collect(),
            scratch: BatchWriter::new(true, 0),
            sends: Vec::with_capacity(outs + 1),
            next: 0,
            last_seq: 0,
            enqueued: vec![
                0;
                if setup.keyed_workers.is_some() {
                    outs
                } else {
                    0
                }
            ],
            start_ns,
            grace: Vec::new(),
            selection: None,
        }
    }

    /// `--subscribe`: this shard receives only the symbols starting with
    /// `prefixes`, so its loss is checked per symbol (see
    /// [`super::symbols`]); what a fetched range holds of other symbols is
    /// left out.
    pub fn select(&mut self, prefixes: &[String]) {
        if !prefixes.is_empty() {
            self.selection = Some(super::symbols::Selection::new(prefixes));
        }
    }

    /// The symbol selection, if any.
    pub(crate) fn selection(&self) -> Option<&super::symbols::Selection> {
        self.selection.as_ref()
    }

    /// The symbol selection, to note a checked tail.
    pub(crate) fn selection_mut(&mut self) -> Option<&mut super::symbols::Selection> {
        self.selection.as_mut()
    }

    /// Handle one received frame: account for it, pack or queue its new
    /// data. Call [`Self::next_send`] until `None` before the next frame.
    #[inline]
    pub fn on_frame(&mut self, now: u64, bytes: &[u8]) {
        self.take_frame(now, bytes, Taken::Live)
    }

    /// Handle one recorded frame fetched for a catch-up (`--catch-up`): its
    /// data records up to `max_seq` go to the workers like live ones, in
    /// order, sequence-checked; records above `max_seq` (the live stream
    /// has them) and control records are left out. Nothing in it is judged
    /// by the snail or timed, and the workers are told so
    /// ([`STAMP_FLAGS`]). Call [`Self::next_send`] until `None` after it.
    pub fn on_history_frame(&mut self, now: u64, bytes: &[u8], max_seq: u64) {
        let (min, max, flags) = (1, max_seq, STAMP_FLAGS);
        self.take_frame(now, bytes, Taken::Fetched { min, max, flags })
    }

    /// Handle one frame fetched to repair a gap (`--recover-from`): its
    /// data records in `min..=max` (the gap) go to the workers in order,
    /// sequence-checked, ahead of the live record that revealed the gap;
    /// the rest of the frame and its control records are left out. Not
    /// judged by the snail (a repaired record is late by nature; the
    /// repair's own time is the `recovery` latency) nor timed at the wire,
    /// but timed end to end by the workers: its latency is real and shows.
    pub fn on_recovered_frame(&mut self, now: u64, bytes: &[u8], min: u64, max: u64) {
        let flags = STAMP_NO_JUDGE;
        self.take_frame(now, bytes, Taken::Fetched { min, max, flags })
    }

    /// The current session of `key` and the last sequence accounted for in
    /// it, once something of the session was taken.
    pub fn position(&mut self, key: SourceKey) -> Option<(u64, u64)> {
        let st = self.res.tracker.existing(key)?;
        st.joined().then(|| (st.session(), st.last_seq()))
    }

    /// After a catch-up of `key` that ended at `until_ns`: its records sent
    /// before then waited for the catch-up, so they are not judged.
    pub fn grace(&mut self, key: SourceKey, until_ns: u64) {
        self.grace.retain(|(k, _)| *k != key);
        self.grace.push((key, until_ns));
    }

    /// Whether `key` has a sequence state (a record of it was taken).
    pub fn knows(&self, key: SourceKey) -> bool {
        self.res.tracker.streams().iter().any(|s| s.key() == key)
    }

    /// A record sent at `send_ts` by `key` that queued during a catch-up.
    #[inline]
    fn in_grace(grace: &mut Vec<(SourceKey, u64)>, key: SourceKey, send_ts: u64) -> bool {
        if grace.is_empty() {
            return false;
        }
        match grace.iter().position(|&(k, _)| k == key) {
            Some(i) if send_ts < grace[i].1 => true,
            // A source's records come in order: the first one sent after
            // the catch-up ends its grace.
            Some(i) => {
                grace.swap_remove(i);
                false
            }
            None => false,
        }
    }

    #[inline]
    fn take_frame(&mut self, now: u64, bytes: &[u8], taken: Taken) {
        debug_assert!(self.next_send_pending().is_none(), "sends drained first");
        let (history, mut flags) = match taken {
            Taken::Live => (None, 0),
            Taken::Fetched { min, max, flags } => (Some((min, max)), flags),
        };
        self.res.frames += 1;
        let warmup = self.latency.in_warmup(now);
        let mut accepted = [0u64; MAX_BATCH / 64];
        let (mut new, mut dups, mut saw_eos) = (0usize, 0usize, false);
        let mut workers_mask = 0u64;
        let mut single_target = 0;
        let frame = match Frame::parse(bytes) {
            Ok(f) => f,
            Err(e) => {
                self.res.malformed[e.index()] += 1;
                return;
            }
        };
        let batched = frame.is_batch();
        for (i, rec) in frame.records().enumerate() {
            let key = SourceKey {
                publisher_id: rec.publisher_id(),
                stream_id: rec.stream_id(),
            };
            if let Some((min, max)) = history {
                // What is fetched is data only, and only what live lacks:
                // left out here, not counted (no duplicate on the wire).
                if !rec.kind().is_data() || rec.seq() < min || rec.seq() > max {
                    dups += 1;
                    continue;
                }
            }
            if rec.kind() == Kind::EndOfStream {
                saw_eos = true;
                match self.res.tracker.existing(key) {
                    Some(st) if st.joined() => {
                        if let Payload::EndOfStream { last_seq, checksum } = rec.payload() {
                            st.on_eos(rec.session(), last_seq, checksum);
                        }
                    }
                    // From a source that sent no data or heartbeat we took:
                    // obeying it would let one forged record end a shard
                    // whose real stream has not arrived yet.
                    _ => self.res.eos_unknown += 1,
                }
                continue;
            }
            let Some(st) = self.res.tracker.source(key) else {
                dups += 1;
                continue;
            };
            if rec.kind() == Kind::Heartbeat {
                st.on_heartbeat(rec.session(), rec.seq());
                continue;
            }
            // Data. The verdict comes first: a record that is dropped is
            // never judged (one old duplicate must not croak the snail).
            let verdict = st.on_data(rec.session(), rec.seq(), || rec.digest());
            if let Some(sel) = &mut self.selection {
                // A selecting shard: the stream's holes are the symbols not
                // selected, so the per-symbol sequence decides (a repaired
                // record is older than the stream's position, and would be
                // a stream "duplicate"). Other symbols (in a publisher
                // batch, which carries every symbol, or a fetched range)
                // are left out.
                let sym = rec.symbol();
                let at = (sym.as_u64(), rec.sym_seq());
                if !sel.selects(&sym.0)
                    || !sel.on_data(key, rec.session(), rec.seq(), at, history.is_some())
                {
                    dups += 1;
                    continue;
                }
            } else {
                match verdict {
                    Verdict::New => {}
                    // Dropped: left out of a batch that goes on.
                    Verdict::Duplicate | Verdict::Implausible => {
                        dups += 1;
                        continue;
                    }
                }
            }
            new += 1;
            accepted[i / 64] |= 1 << (i % 64);
            let age = age_ns(now, rec.send_ts_ns());
            let limit = &self.setup.limit;
            // A broken or hostile clock: judging its stamp would hide real
            // lag or invent it (and, relative, move the floor).
            let judged =
                history.is_none() && !Self::in_grace(&mut self.grace, key, rec.send_ts_ns());
            if !judged {
                flags |= STAMP_NO_JUDGE;
            }
            let sane = if history.is_some() {
                false
            } else if limit.is_future(age) {
                self.res.ts_future += 1;
                false
            } else if limit.is_ancient(age, now.saturating_sub(self.start_ns)) {
                self.res.ts_ancient += 1;
                false
            } else {
                true
            };
            if sane && judged {
                let lag = match limit.mode {
                    LagMode::Absolute => age,
                    LagMode::Relative => st.floor.lag(now, age, limit.window_ns),
                };
                self.lag.observe(now, lag, &rec);
            }
            if history.is_some() {
                // History is neither warm-up nor timed.
            } else if warmup {
                self.latency.warmup_records += 1;
            } else if sane {
                self.latency
                    .record(Stage::Wire, now.saturating_sub(rec.send_ts_ns()));
            }
            let w = match self.setup.keyed_workers {
                Some(n) => {
                    let w = worker_for(&rec.symbol(), n);
                    self.enqueued[w] += 1;
                    w
                }
                None => 0,
            };
            workers_mask |= 1 << w;
            single_target = w;
            self.last_seq = rec.seq();
        }
        if new > 0 {
            if self.res.first_rx_ns == 0 {
                self.res.first_rx_ns = now;
            }
            self.res.last_rx_ns = now;
            if !batched {
                self.pack(single_target, now, flags, bytes);
            } else {
                // A publisher batch goes on whole; what was packed before
                // it goes first, so each worker sees arrival order.
                self.flush();
                let (workers, rx_ns, records) = (workers_mask, now | flags, new);
                if dups > 0 {
                    rebuild_without_duplicates(&frame, bytes.len(), &accepted, &mut self.scratch);
                    self.sends.push(Send::Rebuilt {
                        workers,
                        rx_ns,
                        records,
                    });
                } else {
                    self.sends.push(Send::Whole {
                        workers,
                        rx_ns,
                        records,
                    });
                }
            }
        }
        if saw_eos && self.res.tracker.all_ended() {
            self.flush();
            self.res.ended = true;
        }
    }

    /// Pack a single-record frame for worker `w`; queue the box when full.
    #[inline]
    fn pack(&mut self, w: usize, now: u64, flags: u64, record: &[u8]) {
        let b = &mut self.boxes[w];
        if b.writer.is_empty() {
            b.first_rx_ns = now;
            b.flags = 0;
        }
        b.flags |= flags;
        let pushed = b.writer.push(record);
        debug_assert!(pushed, "a box is flushed before it can refuse a record");
        if b.writer.count() >= MAX_BATCH || b.writer.len() >= OUTBOX_BYTES {
            self.sends.push(Send::Packed {
                worker: w,
                rx_ns: b.first_rx_ns | b.flags,
            });
        }
    }

    /// Queue every box that holds records (end of a receive round, before a
    /// publisher batch, at end-of-stream).
    pub fn flush(&mut self) {
        for (w, b) in self.boxes.iter().enumerate() {
            let queued = self.sends[self.next..]
                .iter()
                .any(|s| matches!(s, Send::Packed { worker, .. } if *worker == w));
            if !b.writer.is_empty() && !queued {
                self.sends.push(Send::Packed {
                    worker: w,
                    rx_ns: b.first_rx_ns | b.flags,
                });
            }
        }
    }

    fn next_send_pending(&self) -> Option<Send> {
        self.sends.get(self.next).copied()
    }

    /// The next thing to send, in order; `None` when all are handed out.
    #[inline]
    pub fn next_send(&mut self) -> Option<Send> {
        let s = self.next_send_pending();
        match s {
            Some(_) => self.next += 1,
            None => {
                self.sends.clear();
                self.next = 0;
            }
        }
        s
    }

    /// Worker `w`'s packed frame, for a [`Send::Packed`].
    #[inline]
    pub fn packed(&mut self, w: usize) -> &[u8] {
        self.boxes[w].writer.frame()
    }

    /// The last batch less its duplicates, for a [`Send::Rebuilt`].
    #[inline]
    pub fn rebuilt(&mut self) -> &[u8] {
        self.scratch.frame()
    }

    /// `s` went out: count its records as forwarded.
    #[inline]
    pub fn sent(&mut self, s: Send) {
        match s {
            Send::Packed { worker, .. } => {
                let b = &mut self.boxes[worker].writer;
                self.res.forwarded += b.count() as u64;
                b.clear();
            }
            Send::Whole { records, .. } | Send::Rebuilt { records, .. } => {
                self.res.forwarded += records as u64;
            }
        }
    }

    /// Whether every source this shard saw has ended (and what was packed
    /// was queued).
    pub fn ended(&self) -> bool {
        self.res.ended
    }

    /// Move the latency recorder to `now`'s interval; true once a second.
    #[inline]
    pub fn tick(&mut self, now: u64) -> bool {
        self.latency.tick(now)
    }

    /// The snail's croak latched since the last call, for the shared switch.
    #[inline]
    pub fn take_croak(&mut self) -> Option<SlowEvent> {
        self.lag.take_croak()
    }

    /// Data records handed to the workers so far.
    pub fn forwarded(&self) -> u64 {
        self.res.forwarded
    }

    /// Sequence numbers lost so far (published once a second).
    pub fn lost(&self) -> u64 {
        match &self.selection {
            Some(sel) => sel.lost(),
            None => self.res.tracker.totals().lost,
        }
    }

    /// Publish this shard's counters, and add what it gave each worker to
    /// the worker's `enqueued` (once per receive round).
    #[inline]
    pub fn publish(&mut self, counters: &AgentCounters, workers: &[AgentCounters]) {
        AgentCounters::publish(&counters.done, self.res.forwarded);
        AgentCounters::publish(&counters.frames, self.res.frames);
        AgentCounters::publish(&counters.slow, self.lag.slow());
        AgentCounters::publish(&counters.max_lag_ns, self.lag.max_age_ns());
        if self.last_seq != 0 {
            AgentCounters::publish(&counters.last_seq, self.last_seq);
        }
        for (n, c) in self.enqueued.iter_mut().zip(workers) {
            if *n != 0 {
                AgentCounters::add(&c.enqueued, *n);
                *n = 0;
            }
        }
    }

    /// Stop: hand over the latency still held and the results.
    pub fn finish(mut self, error: Option<zmq::Error>) -> ShardResult {
        self.res.warmup_records = self.latency.warmup_records;
        self.latency.flush();
        self.res.slow = self.lag.slow();
        self.res.max_lag_ns = self.lag.max_age_ns();
        self.res.error = error;
        self.res.selection = self.selection;
        self.res
    }
}

/// Copy the accepted records of a batch into `out` as a new batch.
#[cold]
fn rebuild_without_duplicates(
    frame: &Frame<'_>,
    frame_len: usize,
    accepted: &[u64; MAX_BATCH / 64],
    out: &mut BatchWriter,
) {
    if out.capacity() < frame_len {
        *out = BatchWriter::new(true, frame_len);
    }
    out.clear();
    for (i, rec) in frame.records().enumerate() {
        if accepted[i / 64] & (1 << (i % 64)) != 0 {
            // Fewer records than a frame that fits `out`: they fit.
            let pushed = out.push(rec.bytes);
            debug_assert!(pushed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_agent::hist::StageCollector;
    use shardcast_proto::wire::{encode, Quote, RecordMeta, Symbol, BATCH_HEADER_LEN};

    const T0: u64 = 1_000_000_000;

    fn setup(keyed: Option<usize>) -> ShardSetup {
        ShardSetup {
            index: 0,
            keyed_workers: keyed,
            limit: LagLimit::absolute_ms(1_000),
            on_slow: OnSlow::Croak,
        }
    }

    /// A core with `outs` PUSH sockets; the collector must outlive it.
    fn core(keyed: Option<usize>, outs: usize) -> (ShardCore, StageCollector) {
        let c = StageCollector::new(0, 0);
        (ShardCore::new(setup(keyed), outs, c.recorder(), T0), c)
    }

    fn record(symbol: &str, seq: u64, payload: Payload) -> Vec<u8> {
        record_from(7, 1, T0, symbol, seq, payload)
    }

    /// A record of publisher `publisher`, session `session`, sent at `ts`.
    fn record_from(
        publisher: u32,
        session: u64,
        ts: u64,
        symbol: &str,
        seq: u64,
        payload: Payload,
    ) -> Vec<u8> {
        let meta = RecordMeta {
            symbol: Symbol::new(symbol).unwrap_or(Symbol::CONTROL),
            publisher_id: publisher,
            stream_id: 0,
            session,
            seq,
            send_ts_ns: ts,
            intended_ts_ns: ts,
            sym_seq: 0,
        };
        let mut buf = vec![0u8; 256];
        let n = encode(&mut buf, &meta, &payload, 0).unwrap();
        buf.truncate(n);
        buf
    }

    const QUOTE: Payload = Payload::Quote(Quote {
        bid_px: 1,
        ask_px: 2,
        bid_sz: 3,
        ask_sz: 4,
    });

    fn quote(symbol: &str, seq: u64) -> Vec<u8> {
        record(symbol, seq, QUOTE)
    }

    fn eos(last_seq: u64, checksum: u64) -> Vec<u8> {
        record("", last_seq, Payload::EndOfStream { last_seq, checksum })
    }

    fn batch(records: &[Vec<u8>]) -> Vec<u8> {
        let mut w = BatchWriter::new(true, 1 << 16);
        for r in records {
            assert!(w.push(r));
        }
        w.frame().to_vec()
    }

    /// Every send the core queued, with the frame each one carries.
    fn drain(core: &mut ShardCore, frame: &[u8]) -> Vec<(Send, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(s) = core.next_send() {
            let bytes = match s {
                Send::Packed { worker, .. } => core.packed(worker).to_vec(),
                Send::Whole { .. } => frame.to_vec(),
                Send::Rebuilt { .. } => core.rebuilt().to_vec(),
            };
            core.sent(s);
            out.push((s, bytes));
        }
        out
    }

    fn seqs(frame: &[u8]) -> Vec<u64> {
        Frame::parse(frame)
            .unwrap()
            .records()
            .map(|r| r.seq())
            .collect()
    }

    /// `--catch-up`: history goes to the workers in order, stamped
    /// untimed and unjudged, capped at the last sequence live lacks; the
    /// live frame after it continues the sequence with nothing lost,
    /// duplicated or missed, and no croak although the history is old.
    #[test]
    fn history_fills_the_start_of_a_stream_unjudged_then_live_goes_on() {
        let (mut core, _c) = core(None, 1);
        let old = 1; // sent at 1 ns: a second before T0, the limit
        let hist = |seq| record_from(7, 1, old, "AAA", seq, QUOTE);
        // The recording's frames: 1..3 batched (with 4, which live has),
        // then a heartbeat, which history leaves out.
        let h1 = batch(&[hist(1), hist(2), hist(3), hist(4)]);
        let now = T0 + 5;
        core.on_history_frame(now, &h1, 3);
        let sent = drain(&mut core, &h1);
        assert_eq!(sent.len(), 1);
        let Send::Rebuilt { rx_ns, records, .. } = sent[0].0 else {
            panic!("{:?}", sent[0].0)
        };
        assert_eq!((rx_ns, records), (now | STAMP_FLAGS, 3));
        assert_eq!(seqs(&sent[0].1), [1, 2, 3]);
        let hb = record_from(7, 1, old, "", 3, Payload::Heartbeat);
        core.on_history_frame(now, &hb, 3);
        core.flush();
        assert!(drain(&mut core, &hb).is_empty());
        // After the catch-up: a queued live record sent before its end is
        // not judged; one sent after is, and ends the grace.
        let key = SourceKey {
            publisher_id: 7,
            stream_id: 0,
        };
        core.grace(key, T0);
        let live = record_from(7, 1, old, "AAA", 4, QUOTE);
        core.on_frame(T0 + 10, &live);
        core.flush();
        let sent = drain(&mut core, &live);
        assert_eq!(sent.len(), 1);
        assert!(
            matches!(sent[0].0, Send::Packed { rx_ns, .. } if rx_ns & STAMP_FLAGS == STAMP_NO_JUDGE)
        );
        assert!(core.take_croak().is_none(), "a queued record is no snail");
        let fresh = record_from(7, 1, T0 + 20, "AAA", 5, QUOTE);
        core.on_frame(T0 + 30, &fresh);
        core.flush();
        let sent = drain(&mut core, &fresh);
        assert!(matches!(sent[0].0, Send::Packed { rx_ns, .. } if rx_ns & STAMP_FLAGS == 0));
        let late = record_from(7, 1, T0 + 40, "AAA", 6, QUOTE);
        core.on_frame(T0 + 3_000_000_000, &late);
        assert!(
            core.take_croak().is_some(),
            "the grace ended at the first record after it"
        );
        let r = core.finish(None);
        let c = r.tracker.totals();
        assert_eq!(
            (c.received, c.lost, c.duplicates, c.missed_before_join),
            (6, 0, 0, 0)
        );
    }

    #[test]
    fn batch_dedupe_forwards_only_the_new_records_of_an_overlapping_batch() {
        let (mut core, _c) = core(None, 1);
        let first = batch(&[quote("AAA", 1), quote("BBB", 2), quote("CCC", 3)]);
        core.on_frame(T0, &first);
        let sent = drain(&mut core, &first);
        assert!(matches!(sent[..], [(Send::Whole { records: 3, .. }, _)]));
        // A resent batch overlapping the first: only 4 and 5 are new.
        let second = batch(&[
            quote("BBB", 2),
            quote("CCC", 3),
            quote("AAA", 4),
            quote("DDD", 5),
        ]);
        core.on_frame(T0 + 1, &second);
        let sent = drain(&mut core, &second);
        assert_eq!(sent.len(), 1);
        assert!(matches!(sent[0].0, Send::Rebuilt { records: 2, .. }));
        assert_eq!(seqs(&sent[0].1), [4, 5]);
        // Wholly duplicate: nothing goes.
        core.on_frame(T0 + 2, &second);
        assert!(drain(&mut core, &second).is_empty());
        let r = core.finish(None);
        assert_eq!((r.forwarded, r.frames), (5, 3));
        assert_eq!(r.tracker.totals().duplicates, 2 + 4);
    }

    #[test]
    fn keyed_routing_packs_each_record_for_the_worker_that_owns_its_symbol() {
        let n = 3;
        let (mut core, _c) = core(Some(n), n);
        let syms = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH"];
        for (i, s) in syms.iter().enumerate() {
            let f = quote(s, i as u64 + 1);
            core.on_frame(T0, &f);
            assert!(drain(&mut core, &f).is_empty(), "packed, not sent yet");
        }
        core.flush();
        let sent = drain(&mut core, &[]);
        let mut seen = 0;
        for (s, bytes) in &sent {
            let Send::Packed { worker, rx_ns } = *s else {
                panic!("only packed frames: {s:?}");
            };
            assert_eq!(rx_ns, T0);
            for rec in Frame::parse(bytes).unwrap().records() {
                assert_eq!(worker_for(&rec.symbol(), n), worker, "{:?}", rec.symbol());
                seen += 1;
            }
        }
        assert_eq!(seen, syms.len());
        let owners: std::collections::BTreeSet<_> = syms
            .iter()
            .map(|s| worker_for(&Symbol::new(s).unwrap(), n))
            .collect();
        assert_eq!(
            sent.len(),
            owners.len(),
            "one frame per worker that owns some"
        );
        assert_eq!(core.finish(None).forwarded, syms.len() as u64);
    }

    #[test]
    fn keyed_batch_goes_whole_to_every_worker_owning_one_of_its_symbols() {
        let (mut core, _c) = core(Some(2), 2);
        let syms = ["AAA", "BBB", "CCC", "DDD"];
        let recs: Vec<_> = syms
            .iter()
            .enumerate()
            .map(|(i, s)| quote(s, i as u64 + 1))
            .collect();
        let f = batch(&recs);
        core.on_frame(T0, &f);
        let want = syms.iter().fold(0u64, |m, s| {
            m | 1 << worker_for(&Symbol::new(s).unwrap(), 2)
        });
        let sent = drain(&mut core, &f);
        assert!(
            matches!(sent[..], [(Send::Whole { workers, records: 4, .. }, _)] if workers == want),
            "{sent:?}"
        );
    }

    #[test]
    fn flush_order_packed_records_leave_before_a_later_publisher_batch() {
        let (mut core, _c) = core(None, 1);
        let one = quote("AAA", 1);
        core.on_frame(T0, &one);
        assert!(drain(&mut core, &one).is_empty());
        let two = batch(&[quote("BBB", 2), quote("CCC", 3)]);
        core.on_frame(T0 + 5, &two);
        let sent = drain(&mut core, &two);
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert_eq!(
            sent[0].0,
            Send::Packed {
                worker: 0,
                rx_ns: T0
            }
        );
        assert_eq!(seqs(&sent[0].1), [1]);
        assert!(matches!(sent[1].0, Send::Whole { rx_ns, .. } if rx_ns == T0 + 5));
        assert_eq!(seqs(&sent[1].1), [2, 3]);
    }

    #[test]
    fn a_full_box_is_sent_before_it_refuses_a_record() {
        let (mut core, _c) = core(None, 1);
        let mut sends = Vec::new();
        for seq in 1..=MAX_BATCH as u64 + 1 {
            let f = quote("AAA", seq);
            core.on_frame(T0, &f);
            sends.extend(drain(&mut core, &f));
        }
        assert_eq!(sends.len(), 1);
        assert_eq!(seqs(&sends[0].1).len(), MAX_BATCH);
        core.flush();
        assert_eq!(seqs(&drain(&mut core, &[])[0].1), [MAX_BATCH as u64 + 1]);
    }

    #[test]
    fn end_of_stream_flushes_what_is_packed_and_ends_the_shard() {
        let (mut core, _c) = core(None, 1);
        let mut checksum = shardcast_proto::wire::StreamChecksum::default();
        for seq in 1..=2 {
            let f = quote("AAA", seq);
            checksum.add(shardcast_proto::wire::digest(&f));
            core.on_frame(T0, &f);
            assert!(drain(&mut core, &f).is_empty());
        }
        assert!(!core.ended());
        let e = eos(2, checksum.0);
        core.on_frame(T0, &e);
        let sent = drain(&mut core, &e);
        assert_eq!(sent.len(), 1);
        assert_eq!(seqs(&sent[0].1), [1, 2]);
        assert!(core.ended());
        let r = core.finish(None);
        let st = &r.tracker.streams()[0];
        assert!(st.complete(), "{:?}", st.counters());
        assert_eq!(r.forwarded, 2);
    }

    #[test]
    fn end_of_stream_before_the_last_records_is_not_complete() {
        let (mut core, _c) = core(None, 1);
        let f = quote("AAA", 1);
        core.on_frame(T0, &f);
        let e = eos(3, 0);
        core.on_frame(T0, &e);
        drain(&mut core, &e);
        assert!(core.ended(), "every source sent end-of-stream");
        let r = core.finish(None);
        assert!(!r.tracker.streams()[0].complete());
        assert_eq!(r.tracker.totals().lost, 2);
    }

    #[test]
    fn malformed_frames_are_counted_by_reason_and_send_nothing() {
        let (mut core, _c) = core(None, 1);
        let mut bad = quote("AAA", 1);
        bad[8] ^= 0xff; // the magic
        core.on_frame(T0, &bad);
        core.on_frame(T0, &[0u8; 3]);
        assert!(drain(&mut core, &bad).is_empty());
        let r = core.finish(None);
        assert_eq!(r.frames, 2);
        assert_eq!(r.malformed.iter().sum::<u64>(), 2);
        assert_eq!(r.malformed[DecodeError::Short.index()], 1);
        assert_eq!(BATCH_HEADER_LEN, 8);
    }

    #[test]
    fn a_record_over_the_lag_limit_latches_one_croak() {
        let (mut core, _c) = core(None, 1);
        let late = T0 + 2_000_000_000; // 2 s after send, limit 1 s
        for seq in 1..=2 {
            let f = quote("AAA", seq);
            core.on_frame(late, &f);
            drain(&mut core, &f);
        }
        let ev = core.take_croak().expect("croaked");
        assert_eq!((ev.seq, ev.lag_ns), (1, 2_000_000_000));
        assert_eq!(core.take_croak(), None);
        assert_eq!(core.finish(None).slow, 2);
    }

    /// Issue 10, finding 4: one duplicate stamped `send_ts_ns = 1` croaked
    /// the snail in both lag modes. A dropped record is not judged; an
    /// ancient stamp on a new one is counted, not judged, and moves no
    /// floor; a record minutes behind still croaks.
    #[test]
    fn one_ancient_timestamp_does_not_kill_the_subscriber() {
        const S: u64 = 1_000_000_000;
        let start = 1_700_000_000 * S;
        let now = start + S;
        for mode in [LagMode::Absolute, LagMode::Relative] {
            let c = StageCollector::new(0, 0);
            let mut limit = LagLimit::absolute_ms(1_000);
            limit.mode = mode;
            let setup = ShardSetup {
                limit,
                ..setup(None)
            };
            let mut core = ShardCore::new(setup, 1, c.recorder(), start);
            let feed = |core: &mut ShardCore, seq: u64, ts: u64| {
                let f = record_from(7, 1, ts, "AAA", seq, QUOTE);
                core.on_frame(now, &f);
                drain(core, &f);
                core.take_croak()
            };
            assert_eq!(feed(&mut core, 1, now), None);
            // The record: a duplicate from 1970.
            assert_eq!(feed(&mut core, 1, 1), None, "{mode:?}");
            // A duplicate ten minutes old is dropped, so not judged either.
            assert_eq!(feed(&mut core, 1, now - 600 * S), None, "{mode:?}");
            // A new record from 1970: delivered, counted, not judged.
            assert_eq!(feed(&mut core, 2, 1), None, "{mode:?}");
            // It did not drag the relative floor: a fresh record is on time.
            assert_eq!(feed(&mut core, 3, now), None, "{mode:?}");
            // Ten minutes behind is lag.
            let ev = feed(&mut core, 4, now - 600 * S).expect("minutes behind croaks");
            assert_eq!((ev.seq, ev.lag_ns), (4, 600 * S), "{mode:?}");
            core.flush();
            drain(&mut core, &[]);
            let r = core.finish(None);
            assert_eq!((r.ts_ancient, r.ts_future, r.slow), (1, 0, 1), "{mode:?}");
            assert_eq!((r.forwarded, r.tracker.totals().duplicates), (4, 2));
        }
    }

    /// Issue 10, finding 5, through the shard: a first record claiming seq
    /// 2^62 is dropped, and the real records after it all go on.
    #[test]
    fn a_sessions_first_record_is_not_trusted_blindly() {
        let (mut core, _c) = core(None, 1);
        for seq in [1 << 62, 1, 2, 3] {
            let f = quote("AAA", seq);
            core.on_frame(T0, &f);
            drain(&mut core, &f);
        }
        core.flush();
        assert_eq!(seqs(&drain(&mut core, &[])[0].1), [1, 2, 3]);
        let r = core.finish(None);
        let t = r.tracker.totals();
        assert_eq!((t.received, t.duplicates, t.missed_before_join), (3, 0, 0));
        assert_eq!(t.seq_jumps, 1);
    }

    /// Issue 10, finding 6: an end-of-stream from a source never seen,
    /// arriving first, ended the shard with nothing received.
    #[test]
    fn one_end_of_stream_from_a_source_never_seen_does_not_end_the_shard() {
        let (mut core, _c) = core(None, 1);
        let stranger = record_from(
            99,
            5,
            T0,
            "",
            0,
            Payload::EndOfStream {
                last_seq: 0,
                checksum: 0,
            },
        );
        core.on_frame(T0, &stranger);
        assert!(drain(&mut core, &stranger).is_empty());
        assert!(!core.ended(), "counted, not obeyed");
        // Nor from a source whose only record was dropped (a jump).
        let jump = quote("AAA", 1 << 62);
        core.on_frame(T0, &jump);
        let early = eos(0, 0);
        core.on_frame(T0, &early);
        assert!(!core.ended());
        // The real stream, then its end-of-stream, ends the shard.
        let mut checksum = shardcast_proto::wire::StreamChecksum::default();
        for seq in 1..=3 {
            let f = quote("AAA", seq);
            checksum.add(shardcast_proto::wire::digest(&f));
            core.on_frame(T0, &f);
            drain(&mut core, &f);
        }
        let e = eos(3, checksum.0);
        core.on_frame(T0, &e);
        drain(&mut core, &e);
        assert!(core.ended());
        let r = core.finish(None);
        assert_eq!((r.eos_unknown, r.forwarded), (2, 3));
        assert_eq!(r.tracker.streams().len(), 1, "the stranger got no state");
        assert!(r.tracker.streams()[0].complete());
    }

    /// Issue 10, finding 7, through the shard: a record of another session
    /// mid-stream goes on (it could be a restart's first) but changes
    /// nothing of the current session, which ends complete.
    #[test]
    fn one_foreign_session_record_does_not_rewrite_history() {
        let (mut core, _c) = core(None, 1);
        let mut checksum = shardcast_proto::wire::StreamChecksum::default();
        for seq in 1..=6 {
            if seq == 4 {
                let foreign = record_from(7, 2, T0, "ZZZ", 9, QUOTE);
                core.on_frame(T0, &foreign);
                drain(&mut core, &foreign);
            }
            let f = quote("AAA", seq);
            checksum.add(shardcast_proto::wire::digest(&f));
            core.on_frame(T0, &f);
            drain(&mut core, &f);
        }
        let e = eos(6, checksum.0);
        core.on_frame(T0, &e);
        drain(&mut core, &e);
        assert!(core.ended());
        let r = core.finish(None);
        let st = &r.tracker.streams()[0];
        let c = st.counters();
        assert_eq!((c.restarts, c.missed_before_join, c.lost), (0, 0, 0));
        assert_eq!((c.session_unconfirmed, c.received, r.forwarded), (1, 7, 7));
        assert!(st.complete(), "{c:?}");
    }
}
