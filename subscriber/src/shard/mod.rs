//! The shard agent: one SUB socket on one stream. It receives frames, hands
//! them to its [`ShardCore`] (which validates, sequence-checks and
//! age-checks every record and decides what goes where), and sends what the
//! core asks for to the workers over inproc PUSH.
//!
//! The inproc hop to a worker costs far more than reading a frame (about
//! 0.5 us per 100-byte message against about 0.05 us through a crossbeam
//! channel on our 2-core machines (2 M against 20 M msg/s): see
//! bench/benches/hot_path.rs), so the shard does not pay it per message.
//! After each frame it waited for, it takes up to `coalesce - 1` more that
//! are *already* queued on its SUB (never waiting for one); the core packs
//! the single-record frames among them into one batch per worker, in arrival
//! order, sent as one message per worker at the end of the round. Batch
//! frames from the publisher go on as they are, without a copy.

mod core;

pub use self::core::{Send, ShardCore, ShardResult, ShardSetup};
use shardcast_agent::clock::now_ns;
use shardcast_agent::hist::StageRecorder;
use shardcast_agent::idle::{Idle, IoError, Received};
use shardcast_agent::watch::{AgentCounters, Board};
use shardcast_agent::zmqx::Msg;
use std::sync::atomic::{AtomicBool, Ordering};

/// A shard's sockets: its SUB and its PUSH sockets to the workers (one per
/// worker under keyed fan-out, one under push fan-out).
pub struct ShardSockets {
    /// The stream.
    pub sub: zmq::Socket,
    /// To the workers.
    pub outs: Vec<zmq::Socket>,
}

/// Run shard `setup.index` until every source it saw ended, or the board's
/// `stop_shards` is set. Takes up to `coalesce` frames per receive round.
pub fn run_shard(
    setup: ShardSetup,
    idle: Idle,
    coalesce: usize,
    mut io: ShardSockets,
    board: &Board,
    latency: StageRecorder,
) -> ShardResult {
    let counters = &board.shards[setup.index];
    let mut core = ShardCore::new(setup, io.outs.len(), latency, now_ns());
    let mut msg = Msg::new();
    let mut shard = Io {
        idle,
        stop: &board.stop_shards,
        counters,
    };
    let error = loop {
        if shard.stop.load(Ordering::Relaxed) {
            break None;
        }
        match idle.recv(&mut msg, &mut io.sub) {
            Received::Frame => {}
            Received::Nothing => {
                shard.tick(&mut core, now_ns());
                continue;
            }
            Received::Failed(e) => break Some(e),
        }
        let round = shard.round(&mut core, &mut msg, &mut io, board, coalesce);
        core.publish(counters, &board.workers);
        if let Err(e) = round {
            break e.zmq();
        }
        if core.ended() {
            break None;
        }
    };
    core.publish(counters, &board.workers);
    core.finish(error)
}

/// What the I/O loop needs besides its sockets.
struct Io<'a> {
    idle: Idle,
    stop: &'a AtomicBool,
    counters: &'a AgentCounters,
}

impl Io<'_> {
    /// Let the core's latency recorder move on; once a second, publish the
    /// loss count for the monitor's live line.
    #[inline]
    fn tick(&self, core: &mut ShardCore, now: u64) {
        if core.tick(now) {
            AgentCounters::publish(&self.counters.lost, core.lost());
        }
    }

    /// One receive round: the frame in `msg`, then up to `coalesce - 1`
    /// more that are already queued, then whatever is still packed.
    fn round(
        &mut self,
        core: &mut ShardCore,
        msg: &mut Msg,
        io: &mut ShardSockets,
        board: &Board,
        coalesce: usize,
    ) -> Result<(), IoError> {
        let mut taken = 0;
        loop {
            let now = now_ns();
            self.tick(core, now);
            core.on_frame(now, msg.bytes());
            if let Some(ev) = core.take_croak() {
                board.croak.raise(ev);
            }
            self.drain(core, msg, &mut io.outs)?;
            if core.ended() {
                return Ok(());
            }
            taken += 1;
            if taken >= coalesce {
                break;
            }
            // More without waiting: only what is already here.
            match msg.recv(&mut io.sub, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => break,
                Err(e) => return Err(IoError::Failed(e)),
            }
        }
        core.flush();
        self.drain(core, msg, &mut io.outs)
    }

    /// Send what the core queued, in order.
    #[inline]
    fn drain(
        &mut self,
        core: &mut ShardCore,
        msg: &mut Msg,
        outs: &mut [zmq::Socket],
    ) -> Result<(), IoError> {
        while let Some(s) = core.next_send() {
            match s {
                Send::Packed { worker, rx_ns } => {
                    let mut m = Msg::from_slice(core.packed(worker))?;
                    self.send_stamped(rx_ns, &mut m, &mut outs[worker])?;
                }
                Send::Whole { workers, rx_ns, .. } => self.forward(msg, rx_ns, workers, outs)?,
                Send::Rebuilt { workers, rx_ns, .. } => {
                    let mut m = Msg::from_slice(core.rebuilt())?;
                    self.forward(&mut m, rx_ns, workers, outs)?;
                }
            }
            core.sent(s);
        }
        Ok(())
    }

    /// Hand a frame to every worker whose bit is set in `workers`; copies
    /// for several workers are reference-counted shares of one buffer (each
    /// worker skips the records it does not own).
    #[inline]
    fn forward(
        &mut self,
        msg: &mut Msg,
        rx_ns: u64,
        workers: u64,
        outs: &mut [zmq::Socket],
    ) -> Result<(), IoError> {
        let mut rest = workers;
        while rest != 0 {
            let w = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            if rest == 0 {
                self.send_stamped(rx_ns, msg, &mut outs[w])?;
            } else {
                let mut copy = msg.share();
                self.send_stamped(rx_ns, &mut copy, &mut outs[w])?;
            }
        }
        Ok(())
    }

    /// Send the receive time (8 bytes, inline in libzmq: no allocation) and
    /// the frame as one two-part message. libzmq accepts a multipart message
    /// whole or not at all, so only the first part can wait.
    #[inline]
    fn send_stamped(
        &mut self,
        rx_ns: u64,
        msg: &mut Msg,
        out: &mut zmq::Socket,
    ) -> Result<(), IoError> {
        let mut head = Msg::from_slice(&rx_ns.to_le_bytes())?;
        self.idle.send(&mut head, out, zmq::SNDMORE, self.stop)?;
        self.idle.send(msg, out, 0, self.stop)
    }
}
