//! The shard agent: one SUB socket on one stream; validate, sequence-check and
//! age-check every record, then hand frames to workers over inproc without
//! copying them.

use shardcast_agent::clock::now_ns;
use shardcast_agent::hist::{Stage as LatencyStage, StageRecorder};
use shardcast_agent::watch::{Croak, Stage, StageCounters};
use shardcast_agent::zmqx::Msg;
use shardcast_proto::seq::{SourceKey, Tracker, Verdict};
use shardcast_proto::shard::worker_for;
use shardcast_proto::snail::LagLimit;
use shardcast_proto::wire::{self, DecodeError, Frame, Kind, Payload, MAX_BATCH};
use shardcast_workers::{Idle, LagCheck, OnSlow, Received};
use std::sync::atomic::{AtomicBool, Ordering};

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
    /// Wait strategy.
    pub idle: Idle,
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
    /// Why the shard stopped early, if it did.
    pub error: Option<zmq::Error>,
    /// Records received during the warm-up (counted, not timed).
    pub warmup_records: u64,
}

/// Run a shard until every source it saw ended, or `stop` is set.
pub fn run_shard(
    setup: ShardSetup,
    mut sub: zmq::Socket,
    mut outs: Vec<zmq::Socket>,
    counters: &StageCounters,
    croak: &Croak,
    stop: &AtomicBool,
    mut latency: StageRecorder,
) -> ShardResult {
    let mut res = ShardResult {
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
    };
    // Scratch for the rare batch that mixes new records with duplicates:
    // reused, so it allocates once.
    let mut scratch: Vec<u8> = Vec::new();
    let mut lag = LagCheck::new(Stage::Shard, setup.index, setup.limit, setup.on_slow);
    let mut msg = Msg::new();
    while !stop.load(Ordering::Relaxed) {
        match setup.idle.recv(&mut msg, &mut sub) {
            Received::Frame => {}
            Received::Nothing => {
                if latency.tick(now_ns()) {
                    StageCounters::publish(&counters.lost, res.tracker.totals().lost);
                }
                continue;
            }
            Received::Failed(e) => {
                res.error = Some(e);
                break;
            }
        }
        let now = now_ns();
        if latency.tick(now) {
            StageCounters::publish(&counters.lost, res.tracker.totals().lost);
        }
        let warmup = latency.in_warmup(now);
        res.frames += 1;
        let mut accepted = [0u64; MAX_BATCH / 64];
        let mut new = 0usize;
        let mut dups = 0usize;
        let mut saw_eos = false;
        let mut workers_mask = 0u64;
        let mut last_seq = 0u64;
        match Frame::parse(msg.bytes()) {
            Err(e) => res.malformed[e.index()] += 1,
            Ok(frame) => {
                let batched = frame.is_batch();
                for (i, rec) in frame.records().enumerate() {
                    let key = SourceKey {
                        publisher_id: rec.publisher_id(),
                        stream_id: rec.stream_id(),
                    };
                    let Some(st) = res.tracker.source(key) else {
                        dups += 1;
                        continue;
                    };
                    match rec.kind() {
                        Kind::Quote | Kind::Trade => {
                            lag.observe(now, &rec, counters, croak);
                            match st.on_data(rec.session(), rec.seq(), || rec.digest()) {
                                Verdict::New => {
                                    new += 1;
                                    if warmup {
                                        latency.warmup_records += 1;
                                    } else {
                                        latency.record(
                                            LatencyStage::Wire,
                                            now.saturating_sub(rec.send_ts_ns()),
                                        );
                                    }
                                    accepted[i / 64] |= 1 << (i % 64);
                                    if let Some(n) = setup.keyed_workers {
                                        workers_mask |= 1 << worker_for(&rec.symbol(), n);
                                    }
                                }
                                Verdict::Duplicate => dups += 1,
                            }
                            last_seq = rec.seq();
                        }
                        Kind::Heartbeat => st.on_heartbeat(rec.session(), rec.seq()),
                        Kind::EndOfStream => {
                            if let Payload::EndOfStream { last_seq, checksum } = rec.payload() {
                                st.on_eos(rec.session(), last_seq, checksum);
                            }
                            saw_eos = true;
                        }
                    }
                }
                if new > 0 && dups > 0 && batched {
                    rebuild_without_duplicates(&frame, &accepted, new, &mut scratch);
                }
            }
        }
        if new > 0 {
            if res.first_rx_ns == 0 {
                res.first_rx_ns = now;
            }
            res.last_rx_ns = now;
            if dups > 0 {
                // Rare: a single duplicate record is simply not forwarded
                // (new == 0); a mixed batch goes out as its rebuilt copy.
                match Msg::from_slice(&scratch) {
                    Ok(m) => msg = m,
                    Err(e) => {
                        res.error = Some(e);
                        break;
                    }
                }
            }
            if let Err(e) = forward(&mut msg, now, &mut outs, workers_mask, setup, stop) {
                // None: stopped while waiting for a full worker queue.
                res.error = e;
                break;
            }
            res.forwarded += new as u64;
            StageCounters::publish(&counters.done, res.forwarded);
        }
        if last_seq != 0 {
            StageCounters::publish(&counters.last_seq, last_seq);
        }
        StageCounters::publish(&counters.frames, res.frames);
        StageCounters::publish(&counters.slow, lag.slow());
        if saw_eos && res.tracker.all_ended() {
            res.ended = true;
            break;
        }
    }
    res.warmup_records = latency.warmup_records;
    latency.flush();
    res.slow = lag.slow();
    res.max_lag_ns = lag.max_age_ns();
    res
}

/// Copy the accepted records of a batch into `out` as a new batch frame.
#[cold]
fn rebuild_without_duplicates(
    frame: &Frame<'_>,
    accepted: &[u64; MAX_BATCH / 64],
    count: usize,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.resize(wire::BATCH_HEADER_LEN, 0);
    // `count` <= MAX_BATCH, so it fits the u16 count field.
    let _ = wire::encode_batch_header(out, count as u16);
    for (i, rec) in frame.records().enumerate() {
        if accepted[i / 64] & (1 << (i % 64)) != 0 {
            out.extend_from_slice(rec.bytes);
        }
    }
}

/// Hand a frame to the workers, each copy preceded by the receive time
/// `rx_ns` as an 8-byte part (inline in libzmq: no allocation). `Err(None)`:
/// stopped while blocked on a full queue; `Err(Some(e))`: libzmq failed.
///
/// Keyed: the frame goes to each worker owning one of its symbols; batches
/// shared by several workers are sent as reference-counted copies of one
/// buffer (each worker skips the records it does not own). Push: one send,
/// libzmq picks the worker.
#[inline]
fn forward(
    msg: &mut Msg,
    rx_ns: u64,
    outs: &mut [zmq::Socket],
    mask: u64,
    setup: ShardSetup,
    stop: &AtomicBool,
) -> Result<(), Option<zmq::Error>> {
    let stamp = rx_ns.to_le_bytes();
    if setup.keyed_workers.is_none() {
        return send_stamped(&stamp, msg, &mut outs[0], setup.idle, stop);
    }
    let mut rest = mask;
    while rest != 0 {
        let w = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        if rest == 0 {
            send_stamped(&stamp, msg, &mut outs[w], setup.idle, stop)?;
        } else {
            let mut copy = msg.share();
            send_stamped(&stamp, &mut copy, &mut outs[w], setup.idle, stop)?;
        }
    }
    Ok(())
}

/// Send the stamp and the frame as one two-part message. libzmq accepts a
/// multipart message whole or not at all, so only the first part can wait.
#[inline]
fn send_stamped(
    stamp: &[u8; 8],
    msg: &mut Msg,
    out: &mut zmq::Socket,
    idle: Idle,
    stop: &AtomicBool,
) -> Result<(), Option<zmq::Error>> {
    let mut head = Msg::from_slice(stamp).map_err(Some)?;
    send_blocking(&mut head, out, zmq::SNDMORE, idle, stop)?;
    send_blocking(msg, out, 0, idle, stop)
}

/// Send, waiting while the worker's queue is full (inproc PUSH blocks at its
/// HWM: that back-pressure is what makes a slow worker visible upstream as
/// lag and, past the PUB's HWM, as gaps). Gives up only when stopped.
#[inline]
fn send_blocking(
    msg: &mut Msg,
    out: &mut zmq::Socket,
    flags: i32,
    idle: Idle,
    stop: &AtomicBool,
) -> Result<(), Option<zmq::Error>> {
    loop {
        match msg.send(out, flags | idle.flags()) {
            Ok(()) => return Ok(()),
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {
                if stop.load(Ordering::Relaxed) {
                    return Err(None);
                }
            }
            Err(e) => return Err(Some(e)),
        }
    }
}
