//! The recorder agent: one SUB socket on one stream, in a thread of its
//! own. It validates every frame, sequence-checks and age-checks every
//! record, and appends each frame that brought something new to its
//! source's segments, exactly as received, with its receive time.
//!
//! The decisions are the subscriber shard's, made with the same pieces
//! (`proto::wire::Frame::parse`, `proto::seq::Tracker`, `agent::lag`):
//! `subscriber::shard::ShardCore` itself is built around the fan-out to
//! workers (outboxes, packing, sends), none of which a recorder has, so
//! [`RecorderCore`] holds the part they share.
//!
//! What is recorded: every valid frame holding at least one data record
//! the sequence rules accept as new, and every heartbeat and end-of-stream
//! the tracker takes. A frame of duplicates only, a malformed frame, or
//! one from a source another recorder thread records, is not.
//!
//! Hot path: per frame, one parse, per record one verdict, one digest and
//! one lag check, then one copy into the stream's write buffer. No
//! allocation, lock, system call or formatting, except once per source (its
//! writer is opened, its first frame announced) and when a buffer is
//! written.

use crate::format::{stream_dir_name, FrameInfo};
use crate::writer::{StreamWriter, WriteError, WriterOptions, WriterStats};
use shardcast_agent::clock::now_ns;
use shardcast_agent::idle::{Idle, Received};
use shardcast_agent::lag::{LagCheck, OnSlow};
use shardcast_agent::watch::{AgentCounters, AgentKind, Board, SlowEvent};
use shardcast_agent::zmqx::Msg;
use shardcast_proto::seq::{SourceKey, Tracker, Verdict};
use shardcast_proto::snail::{age_ns, LagLimit, LagMode};
use shardcast_proto::wire::{DecodeError, Frame, Kind, Payload};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// Frames taken from the SUB per round, only ones already queued, before
/// the flush clock is looked at.
const ROUND: usize = 256;

/// A recorder thread's configuration.
#[derive(Clone, Debug)]
pub struct RecorderSetup {
    /// Index (position of its `--connect`).
    pub index: usize,
    /// The recording directory.
    pub dir: PathBuf,
    /// Writer options.
    pub writer: WriterOptions,
    /// Longest wait of a buffered frame, ns.
    pub flush_ns: u64,
    /// The snail's limit.
    pub limit: LagLimit,
    /// Croak or warn.
    pub on_slow: OnSlow,
    /// Wait strategy.
    pub idle: Idle,
}

/// One source a recorder thread recorded.
#[derive(Clone, Debug)]
pub struct StreamOutcome {
    /// The source.
    pub key: SourceKey,
    /// Its directory.
    pub dir: PathBuf,
    /// What its writer wrote.
    pub stats: WriterStats,
    /// The segment it ended in.
    pub segment: u64,
}

/// What a recorder thread hands back.
#[derive(Debug)]
pub struct RecorderResult {
    /// Index.
    pub index: usize,
    /// Sequence state of every source seen (including sources another
    /// thread records: see `foreign`).
    pub tracker: Tracker,
    /// The sources this thread recorded.
    pub streams: Vec<StreamOutcome>,
    /// Frames received, valid or not.
    pub frames: u64,
    /// Malformed frames by [`DecodeError::index`].
    pub malformed: [u64; DecodeError::REASONS.len()],
    /// Valid frames not recorded because they held only duplicates.
    pub duplicate_frames: u64,
    /// Frames of a source another recorder thread records (the same stream
    /// connected twice): not recorded here.
    pub foreign_frames: u64,
    /// Sources this thread saw but another records.
    pub foreign_sources: Vec<SourceKey>,
    /// End-of-stream records from a source nothing else was taken from.
    pub eos_unknown: u64,
    /// Data records with a send time too far ahead (not judged).
    pub ts_future: u64,
    /// Data records older than this recorder could have been sent (not
    /// judged).
    pub ts_ancient: u64,
    /// Records over the lag limit.
    pub slow: u64,
    /// Largest lag seen, ns.
    pub max_lag_ns: u64,
    /// Whether every source it saw sent end-of-stream.
    pub ended: bool,
    /// What stopped it early, if anything did.
    pub error: Option<RecorderError>,
}

/// Why a recorder thread stopped early (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// libzmq failed a receive. Remedy: look at the error.
    #[error("receiving: {0}")]
    Zmq(zmq::Error),
    /// A write failed (disk full: see [`WriteError::DiskFull`]).
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// The sources claimed by recorder threads: each source is written by one
/// thread only (two `--connect`s to one stream would otherwise interleave
/// two writers in one file). Locked once per new source, never per frame.
#[derive(Debug, Default)]
pub struct Claims(Mutex<Vec<SourceKey>>);

impl Claims {
    fn claim(&self, key: SourceKey) -> bool {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if v.contains(&key) {
            false
        } else {
            v.push(key);
            true
        }
    }
}

/// A writer slot: `None` when another thread records the source.
type Slot = (SourceKey, Option<StreamWriter>);

/// A recorder's decisions and files, without the socket.
#[derive(Debug)]
pub struct RecorderCore {
    setup: RecorderSetup,
    res: RecorderResult,
    lag: LagCheck,
    writers: Vec<Slot>,
    last: usize,
    start_ns: u64,
    last_flush_ns: u64,
}

impl RecorderCore {
    /// A core started at `start_ns`.
    pub fn new(setup: RecorderSetup, start_ns: u64) -> RecorderCore {
        RecorderCore {
            lag: LagCheck::new(AgentKind::Shard, setup.index, setup.limit, setup.on_slow),
            res: RecorderResult {
                index: setup.index,
                tracker: Tracker::new(),
                streams: Vec::new(),
                frames: 0,
                malformed: [0; DecodeError::REASONS.len()],
                duplicate_frames: 0,
                foreign_frames: 0,
                foreign_sources: Vec::new(),
                eos_unknown: 0,
                ts_future: 0,
                ts_ancient: 0,
                slow: 0,
                max_lag_ns: 0,
                ended: false,
                error: None,
            },
            setup,
            writers: Vec::new(),
            last: 0,
            start_ns,
            last_flush_ns: start_ns,
        }
    }

    /// Handle one received frame: judge it, and record it if it brought
    /// something new.
    #[inline]
    pub fn on_frame(&mut self, now: u64, bytes: &[u8], claims: &Claims) -> Result<(), WriteError> {
        self.res.frames += 1;
        let frame = match Frame::parse(bytes) {
            Ok(f) => f,
            Err(e) => {
                self.res.malformed[e.index()] += 1;
                return Ok(());
            }
        };
        let (mut new, mut control, mut saw_eos) = (0u32, false, false);
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
                                control = true;
                            }
                        }
                        // Obeying an end-of-stream from a source we know
                        // nothing of would let one forged record end us.
                        _ => self.res.eos_unknown += 1,
                    }
                    continue;
                }
                Kind::Heartbeat => {
                    if let Some(st) = self.res.tracker.source(key) {
                        control |= st.on_heartbeat(rec.session(), rec.seq());
                    }
                    continue;
                }
                _ => {}
            }
            let Some(st) = self.res.tracker.source(key) else {
                continue;
            };
            // The verdict first: a duplicate is never judged.
            if st.on_data(rec.session(), rec.seq(), || rec.digest()) != Verdict::New {
                continue;
            }
            new += 1;
            let age = age_ns(now, rec.send_ts_ns());
            let limit = &self.setup.limit;
            if limit.is_future(age) {
                self.res.ts_future += 1;
            } else if limit.is_ancient(age, now.saturating_sub(self.start_ns)) {
                self.res.ts_ancient += 1;
            } else {
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
        if new == 0 && !control {
            self.res.duplicate_frames += 1;
            return Ok(());
        }
        let info = FrameInfo::of(&frame);
        match self.writer(info.key, claims)? {
            Some(w) => w.append(now, bytes, &info),
            None => {
                self.res.foreign_frames += 1;
                Ok(())
            }
        }
    }

    /// The writer of `key`, opened on first sight (cold); `None` when
    /// another thread records it.
    #[inline]
    fn writer(
        &mut self,
        key: SourceKey,
        claims: &Claims,
    ) -> Result<Option<&mut StreamWriter>, WriteError> {
        if self.last >= self.writers.len() || self.writers[self.last].0 != key {
            match self.writers.iter().position(|(k, _)| *k == key) {
                Some(i) => self.last = i,
                None => self.open(key, claims)?,
            }
        }
        Ok(self.writers[self.last].1.as_mut())
    }

    #[cold]
    fn open(&mut self, key: SourceKey, claims: &Claims) -> Result<(), WriteError> {
        let name = stream_dir_name(key);
        let slot = if claims.claim(key) {
            let dir = self.setup.dir.join(&name);
            let w = StreamWriter::open(&dir, key, self.setup.writer)?;
            eprintln!(
                "shardcast-record: recorder-{}: recording {name} into {} (segment {})",
                self.setup.index,
                dir.display(),
                w.segment()
            );
            Some(w)
        } else {
            eprintln!(
                "shardcast-record: recorder-{}: {name} is recorded by another recorder thread \
                 (the same stream given twice to --connect?); not recording it here",
                self.setup.index
            );
            self.res.foreign_sources.push(key);
            None
        };
        self.writers.push((key, slot));
        self.last = self.writers.len() - 1;
        Ok(())
    }

    /// Write what is buffered if the flush interval has passed (or
    /// `force`).
    #[inline]
    pub fn maybe_flush(&mut self, now: u64, force: bool) -> Result<(), WriteError> {
        if !force && now.saturating_sub(self.last_flush_ns) < self.setup.flush_ns {
            return Ok(());
        }
        self.last_flush_ns = now;
        for (_, w) in self.writers.iter_mut() {
            if let Some(w) = w {
                if w.pending() {
                    w.flush()?;
                }
            }
        }
        Ok(())
    }

    /// The croak latched since the last call.
    #[inline]
    pub fn take_croak(&mut self) -> Option<SlowEvent> {
        self.lag.take_croak()
    }

    /// Whether every source seen ended.
    pub fn ended(&self) -> bool {
        self.res.ended
    }

    /// Publish counters for the monitor (and `--metrics-bind`): `done` is
    /// the data records on disk so far.
    pub fn publish(&self, c: &AgentCounters) {
        let recorded = self.writers.iter().filter_map(|(_, w)| w.as_ref());
        AgentCounters::publish(&c.done, recorded.map(|w| w.stats().records).sum());
        AgentCounters::publish(&c.frames, self.res.frames);
        AgentCounters::publish(&c.slow, self.lag.slow());
        AgentCounters::publish(&c.max_lag_ns, self.lag.max_age_ns());
        AgentCounters::publish(&c.lost, self.res.tracker.totals().lost);
    }

    /// Stop: close every writer (flush, fsync) and hand over the results.
    pub fn finish(mut self, error: Option<RecorderError>) -> RecorderResult {
        let mut error = error;
        for (key, w) in self.writers.drain(..) {
            let Some(w) = w else { continue };
            let segment = w.segment();
            let dir = self.setup.dir.join(stream_dir_name(key));
            // A writer that failed already holds its error; closing it
            // again only says so.
            let stats = w.stats();
            let stats = match w.close() {
                Ok(s) => s,
                Err(e) => {
                    if error.is_none() {
                        error = Some(RecorderError::Write(e));
                    }
                    stats
                }
            };
            self.res.streams.push(StreamOutcome {
                key,
                dir,
                stats,
                segment,
            });
        }
        self.res.slow = self.lag.slow();
        self.res.max_lag_ns = self.lag.max_age_ns();
        self.res.error = error;
        self.res
    }
}

/// Run recorder `setup.index` on `sub` until every source it saw ended,
/// the board's `stop_shards` is set, or a write fails.
pub fn run_recorder(
    setup: RecorderSetup,
    mut sub: zmq::Socket,
    board: &Board,
    claims: &Claims,
) -> RecorderResult {
    let counters = &board.shards[setup.index];
    let idle = setup.idle;
    let mut core = RecorderCore::new(setup, now_ns());
    let mut msg = Msg::new();
    let error = loop {
        if board.stop_shards.load(Ordering::Relaxed) {
            break None;
        }
        match idle.recv(&mut msg, &mut sub) {
            Received::Frame => {}
            Received::Nothing => {
                // Quiet: write what waits, so readers of the live
                // recording see it.
                if let Err(e) = core.maybe_flush(now_ns(), false) {
                    break Some(RecorderError::Write(e));
                }
                core.publish(counters);
                continue;
            }
            Received::Failed(e) => break Some(RecorderError::Zmq(e)),
        }
        let mut now = now_ns();
        let mut failed = None;
        for taken in 1.. {
            if let Err(e) = core.on_frame(now, msg.bytes(), claims) {
                failed = Some(RecorderError::Write(e));
                break;
            }
            if let Some(ev) = core.take_croak() {
                board.croak.raise(ev);
            }
            if core.ended() || taken >= ROUND {
                break;
            }
            match msg.recv(&mut sub, zmq::DONTWAIT) {
                Ok(()) => now = now_ns(),
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => break,
                Err(e) => {
                    failed = Some(RecorderError::Zmq(e));
                    break;
                }
            }
        }
        if failed.is_some() {
            break failed;
        }
        if let Err(e) = core.maybe_flush(now, false) {
            break Some(RecorderError::Write(e));
        }
        core.publish(counters);
        if core.ended() {
            break None;
        }
    };
    core.publish(counters);
    core.finish(error)
}
