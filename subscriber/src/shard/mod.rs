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
use shardcast_agent::watch::{AgentCounters, Board, Croak};
use shardcast_agent::zmqx::Msg;
use shardcast_workers::{WorkerCore, WorkerResult};
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
///
/// With `inline` (`--workers 0`) the shard has no worker sockets: it hands
/// what the core would send to its own [`WorkerCore`], in the same order,
/// and returns that core's result too. Its counters are
/// `board.workers[setup.index]`.
pub fn run_shard(
    setup: ShardSetup,
    idle: Idle,
    coalesce: usize,
    mut io: ShardSockets,
    board: &Board,
    latency: StageRecorder,
    inline: Option<WorkerCore>,
) -> (ShardResult, Option<WorkerResult>) {
    let counters = &board.shards[setup.index];
    let outs = if inline.is_some() { 1 } else { io.outs.len() };
    let mut core = ShardCore::new(setup, outs, latency, now_ns());
    let mut msg = Msg::new();
    let mut shard = Io {
        idle,
        stop: &board.stop_shards,
        counters,
        inline: inline.map(|core| Inline {
            core,
            // Its own counters: inline, board.workers has one per shard.
            workers: std::slice::from_ref(&board.workers[setup.index]),
        }),
    };
    let error = loop {
        if shard.stop.load(Ordering::Relaxed) {
            break None;
        }
        match idle.recv(&mut msg, &mut io.sub) {
            Received::Frame => {}
            Received::Nothing => {
                let now = now_ns();
                shard.tick(&mut core, now);
                if let Some(w) = &mut shard.inline {
                    w.core.idle(now);
                }
                continue;
            }
            Received::Failed(e) => break Some(e),
        }
        let round = shard.round(&mut core, &mut msg, &mut io, board, coalesce);
        shard.publish(&mut core, board);
        if let Err(e) = round {
            break e.zmq();
        }
        if core.ended() {
            break None;
        }
    };
    shard.publish(&mut core, board);
    let work = shard.inline.map(|w| w.core.finish(None));
    (core.finish(error), work)
}

/// What the I/O loop needs besides its sockets.
struct Io<'a> {
    idle: Idle,
    stop: &'a AtomicBool,
    counters: &'a AgentCounters,
    /// `--workers 0`: the work, done here.
    inline: Option<Inline<'a>>,
}

/// The shard's own worker (`--workers 0`).
struct Inline<'a> {
    core: WorkerCore,
    /// One element: this shard's worker counters.
    workers: &'a [AgentCounters],
}

impl Io<'_> {
    /// Publish the shard's counters (and the inline work's) for the
    /// monitor, once per receive round.
    #[inline]
    fn publish(&mut self, core: &mut ShardCore, board: &Board) {
        match &self.inline {
            Some(w) => {
                core.publish(self.counters, w.workers);
                w.core.publish(&w.workers[0]);
            }
            None => core.publish(self.counters, &board.workers),
        }
    }

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
            self.drain(core, msg, &mut io.outs, &board.croak)?;
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
        self.drain(core, msg, &mut io.outs, &board.croak)
    }

    /// Send what the core queued, in order.
    #[inline]
    fn drain(
        &mut self,
        core: &mut ShardCore,
        msg: &mut Msg,
        outs: &mut [zmq::Socket],
        croak: &Croak,
    ) -> Result<(), IoError> {
        if let Some(w) = &mut self.inline {
            // What would go to the workers is done here, in the same order.
            let counters = &w.workers[0];
            while let Some(s) = core.next_send() {
                let (rx_ns, bytes) = match s {
                    Send::Packed { worker, rx_ns } => (rx_ns, core.packed(worker)),
                    Send::Whole { rx_ns, .. } => (rx_ns, msg.bytes()),
                    Send::Rebuilt { rx_ns, .. } => (rx_ns, core.rebuilt()),
                };
                w.core.frame(rx_ns, bytes, &mut now_ns, croak, counters);
                core.sent(s);
            }
            return Ok(());
        }
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
