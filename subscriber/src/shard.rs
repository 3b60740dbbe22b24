//! The shard agent: one SUB socket on one stream; validate, sequence-check and
//! age-check every record, then hand records to workers over inproc, packed
//! per worker (single-record frames) or as they came (publisher batches, not
//! copied).

use shardcast_agent::clock::now_ns;
use shardcast_agent::hist::{Stage as LatencyStage, StageRecorder};
use shardcast_agent::watch::{Croak, Stage, StageCounters};
use shardcast_agent::zmqx::Msg;
use shardcast_proto::seq::{SourceKey, Tracker, Verdict};
use shardcast_proto::shard::worker_for;
use shardcast_proto::snail::{age_ns, LagLimit, LagMode};
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
    /// Data records whose send time was further ahead of our clock than
    /// the skew limit: delivered, but neither timed nor judged by the snail.
    pub ts_future: u64,
}

/// Records of single-record frames waiting to go to one worker as a batch.
struct Outbox {
    buf: Vec<u8>,
    count: usize,
    first_rx_ns: u64,
}

impl Outbox {
    fn new() -> Outbox {
        Outbox {
            buf: vec![0; wire::BATCH_HEADER_LEN],
            count: 0,
            first_rx_ns: 0,
        }
    }
}

/// Most bytes packed into one inproc hop.
const OUTBOX_BYTES: usize = 256 << 10;

/// Run a shard until every source it saw ended, or `stop` is set.
///
/// The inproc hop to a worker costs far more than reading a frame (about
/// 0.5 us per 100-byte message against about 0.05 us through a crossbeam
/// channel on our 2-core machines (2 M against 20 M msg/s): see
/// bench/benches/hot_path.rs), so the shard does not pay it per message.
/// After each frame it waited for, it takes up to `coalesce - 1` more that
/// are *already* queued on its SUB (never waiting for one), packs the
/// single-record frames among them into one batch per worker, in arrival
/// order, and sends each batch as one message. Batch frames from the
/// publisher go on as they are, without a copy.
#[allow(clippy::too_many_arguments)]
pub fn run_shard(
    setup: ShardSetup,
    mut sub: zmq::Socket,
    mut outs: Vec<zmq::Socket>,
    counters: &StageCounters,
    workers: &[StageCounters],
    croak: &Croak,
    stop: &AtomicBool,
    mut latency: StageRecorder,
    coalesce: usize,
) -> ShardResult {
    let mut sh = Shard {
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
        },
        lag: LagCheck::new(Stage::Shard, setup.index, setup.limit, setup.on_slow),
        boxes: (0..outs.len()).map(|_| Outbox::new()).collect(),
        scratch: Vec::new(),
        last_seq: 0,
        enqueued: vec![
            0;
            if setup.keyed_workers.is_some() {
                outs.len()
            } else {
                0
            }
        ],
    };
    let mut msg = Msg::new();
    'run: while !stop.load(Ordering::Relaxed) {
        match setup.idle.recv(&mut msg, &mut sub) {
            Received::Frame => {}
            Received::Nothing => {
                if latency.tick(now_ns()) {
                    StageCounters::publish(&counters.lost, sh.res.tracker.totals().lost);
                }
                continue;
            }
            Received::Failed(e) => {
                sh.res.error = Some(e);
                break;
            }
        }
        let mut taken = 0;
        loop {
            let now = now_ns();
            if latency.tick(now) {
                StageCounters::publish(&counters.lost, sh.res.tracker.totals().lost);
            }
            let step = sh.frame(
                &mut msg,
                now,
                &mut outs,
                &mut latency,
                counters,
                croak,
                stop,
            );
            if let Err(e) = step {
                sh.res.error = e;
                break 'run;
            }
            if sh.res.ended {
                break;
            }
            taken += 1;
            if taken >= coalesce {
                break;
            }
            // More without waiting: only what is already here.
            match msg.recv(&mut sub, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => break,
                Err(e) => {
                    sh.res.error = Some(e);
                    break 'run;
                }
            }
        }
        if let Err(e) = sh.flush_all(&mut outs, stop) {
            sh.res.error = e;
            break;
        }
        StageCounters::publish(&counters.done, sh.res.forwarded);
        StageCounters::publish(&counters.frames, sh.res.frames);
        StageCounters::publish(&counters.slow, sh.lag.slow());
        if sh.last_seq != 0 {
            StageCounters::publish(&counters.last_seq, sh.last_seq);
        }
        sh.publish_enqueued(workers);
        if sh.res.ended {
            break;
        }
    }
    sh.publish_enqueued(workers);
    let mut res = sh.res;
    res.warmup_records = latency.warmup_records;
    latency.flush();
    res.slow = sh.lag.slow();
    res.max_lag_ns = sh.lag.max_age_ns();
    res
}

/// A shard's working state.
struct Shard {
    setup: ShardSetup,
    res: ShardResult,
    lag: LagCheck,
    boxes: Vec<Outbox>,
    // For the rare batch that mixes new records with duplicates: reused, so
    // it allocates once.
    scratch: Vec<u8>,
    last_seq: u64,
    /// Keyed fan-out: records given to each worker since the last publish.
    enqueued: Vec<u64>,
}

impl Shard {
    /// Add what this shard gave each worker to the worker's `enqueued`
    /// (shared by every shard, hence an add, once per receive round).
    fn publish_enqueued(&mut self, workers: &[StageCounters]) {
        for (n, c) in self.enqueued.iter_mut().zip(workers) {
            if *n != 0 {
                StageCounters::add(&c.enqueued, *n);
                *n = 0;
            }
        }
    }

    /// Account for one received frame and pack or forward its new data.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn frame(
        &mut self,
        msg: &mut Msg,
        now: u64,
        outs: &mut [zmq::Socket],
        latency: &mut StageRecorder,
        counters: &StageCounters,
        croak: &Croak,
        stop: &AtomicBool,
    ) -> Result<(), Option<zmq::Error>> {
        self.res.frames += 1;
        let warmup = latency.in_warmup(now);
        let mut accepted = [0u64; MAX_BATCH / 64];
        let (mut new, mut dups, mut saw_eos) = (0usize, 0usize, false);
        let mut workers_mask = 0u64;
        let mut single_target = None;
        let batched;
        {
            let frame = match Frame::parse(msg.bytes()) {
                Ok(f) => f,
                Err(e) => {
                    self.res.malformed[e.index()] += 1;
                    return Ok(());
                }
            };
            batched = frame.is_batch();
            for (i, rec) in frame.records().enumerate() {
                let key = SourceKey {
                    publisher_id: rec.publisher_id(),
                    stream_id: rec.stream_id(),
                };
                let Some(st) = self.res.tracker.source(key) else {
                    dups += 1;
                    continue;
                };
                match rec.kind() {
                    Kind::Quote | Kind::Trade => {
                        let age = age_ns(now, rec.send_ts_ns());
                        let future = self.setup.limit.is_future(age);
                        if future {
                            // A broken or hostile clock: judging it would
                            // hide real lag (and, relative, move the floor).
                            self.res.ts_future += 1;
                        } else {
                            let lag = match self.setup.limit.mode {
                                LagMode::Absolute => age,
                                LagMode::Relative => {
                                    st.floor.lag(now, age, self.setup.limit.window_ns)
                                }
                            };
                            self.lag.observe(now, lag, &rec, counters, croak);
                        }
                        match st.on_data(rec.session(), rec.seq(), || rec.digest()) {
                            Verdict::New => {
                                new += 1;
                                accepted[i / 64] |= 1 << (i % 64);
                                if warmup {
                                    latency.warmup_records += 1;
                                } else if !future {
                                    latency.record(
                                        LatencyStage::Wire,
                                        now.saturating_sub(rec.send_ts_ns()),
                                    );
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
                                single_target = Some(w);
                                self.last_seq = rec.seq();
                            }
                            // Dropped: left out of a batch that goes on.
                            Verdict::Duplicate | Verdict::Implausible => dups += 1,
                        }
                    }
                    Kind::Heartbeat => {
                        st.on_heartbeat(rec.session(), rec.seq());
                    }
                    Kind::EndOfStream => {
                        if let Payload::EndOfStream { last_seq, checksum } = rec.payload() {
                            st.on_eos(rec.session(), last_seq, checksum);
                        }
                        saw_eos = true;
                    }
                }
            }
            if new > 0 && batched && dups > 0 {
                rebuild_without_duplicates(&frame, &accepted, new, &mut self.scratch);
            }
        }
        if new > 0 {
            if self.res.first_rx_ns == 0 {
                self.res.first_rx_ns = now;
            }
            self.res.last_rx_ns = now;
            if !batched {
                // One new record: pack it for its worker.
                let w = single_target.unwrap_or(0);
                let b = &mut self.boxes[w];
                if b.count == 0 {
                    b.first_rx_ns = now;
                }
                b.buf.extend_from_slice(msg.bytes());
                b.count += 1;
                if b.count >= MAX_BATCH || b.buf.len() >= OUTBOX_BYTES {
                    self.flush(w, outs, stop)?;
                }
            } else {
                // A publisher batch goes on whole (order: what was packed
                // before it goes first).
                self.flush_all(outs, stop)?;
                if dups > 0 {
                    *msg = Msg::from_slice(&self.scratch).map_err(Some)?;
                }
                forward(msg, now, outs, workers_mask, self.setup, stop)?;
                self.res.forwarded += new as u64;
            }
        }
        if saw_eos && self.res.tracker.all_ended() {
            self.flush_all(outs, stop)?;
            self.res.ended = true;
        }
        Ok(())
    }

    /// Send worker `w`'s packed records as one batch frame.
    fn flush(
        &mut self,
        w: usize,
        outs: &mut [zmq::Socket],
        stop: &AtomicBool,
    ) -> Result<(), Option<zmq::Error>> {
        let b = &mut self.boxes[w];
        if b.count == 0 {
            return Ok(());
        }
        // count <= MAX_BATCH fits the u16 field.
        let _ = wire::encode_batch_header(&mut b.buf, b.count as u16);
        let mut m = Msg::from_slice(&b.buf).map_err(Some)?;
        send_stamped(
            &b.first_rx_ns.to_le_bytes(),
            &mut m,
            &mut outs[w],
            self.setup.idle,
            stop,
        )?;
        self.res.forwarded += b.count as u64;
        b.buf.truncate(wire::BATCH_HEADER_LEN);
        b.count = 0;
        Ok(())
    }

    fn flush_all(
        &mut self,
        outs: &mut [zmq::Socket],
        stop: &AtomicBool,
    ) -> Result<(), Option<zmq::Error>> {
        for w in 0..self.boxes.len() {
            self.flush(w, outs, stop)?;
        }
        Ok(())
    }
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
