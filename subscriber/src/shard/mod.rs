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

pub use self::core::{CaughtUp, Send, ShardCore, ShardResult, ShardSetup};
use shardcast_agent::clock::now_ns;
use shardcast_agent::hist::StageRecorder;
use shardcast_agent::idle::{Idle, IoError, Received};
use shardcast_agent::watch::{AgentCounters, Board, Croak};
use shardcast_agent::zmqx::Msg;
use shardcast_proto::seq::{SourceKey, MAX_SEQ_JUMP};
use shardcast_proto::wire::{first_header, Kind};
use shardcast_recorder::serve::{Reply, Request, Status, MAX_WAIT_MS};
use shardcast_workers::{WorkerCore, WorkerResult};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A shard's sockets: its SUB and its PUSH sockets to the workers (one per
/// worker under keyed fan-out, one under push fan-out).
pub struct ShardSockets {
    /// The stream.
    pub sub: zmq::Socket,
    /// To the workers.
    pub outs: Vec<zmq::Socket>,
    /// `--catch-up`: a DEALER connected to the recorder's `--serve`.
    pub catch_up: Option<CatchUpLink>,
}

/// `--catch-up`: where a shard fetches what it missed before it joined.
pub struct CatchUpLink {
    /// A DEALER connected to a recorder's `--serve` endpoint.
    pub dealer: zmq::Socket,
    /// How long one catch-up may take, all replies together.
    pub timeout: Duration,
}

/// A catch-up to do: the source, its session, the last sequence missed.
#[derive(Clone, Copy, Debug)]
struct Ask {
    key: SourceKey,
    session: u64,
    to_seq: u64,
}

/// The catch-up client's state.
struct CatchUpState {
    link: CatchUpLink,
    /// Sources asked for already (or taken live from their start): a
    /// source is caught up at most once, at its first record.
    seen: Vec<SourceKey>,
    /// The source of the last frame looked at: most frames are from the
    /// same one, and need no more than this comparison.
    last: Option<SourceKey>,
    next_id: u64,
    done: Vec<CaughtUp>,
}

impl CatchUpState {
    /// Whether the frame in `bytes` is the first of a source joined
    /// mid-stream, and what to fetch for it.
    #[inline]
    fn wants(&mut self, bytes: &[u8]) -> Option<Ask> {
        let h = first_header(bytes)?;
        let key = SourceKey {
            publisher_id: h.publisher_id.get(),
            stream_id: h.stream_id.get(),
        };
        if self.last == Some(key) {
            return None;
        }
        self.last = Some(key);
        if self.seen.contains(&key) || self.seen.len() >= MAX_CATCH_UPS {
            return None;
        }
        self.seen.push(key);
        let seq = h.seq.get();
        // Data at `seq` means 1..seq-1 came before; a heartbeat or an
        // end-of-stream states the last data sequence sent.
        let to_seq = match Kind::from_u8(h.kind)? {
            k if k.is_data() => seq.checked_sub(1)?,
            _ => seq,
        };
        (1..MAX_SEQ_JUMP).contains(&to_seq).then_some(Ask {
            key,
            session: h.session.get(),
            to_seq,
        })
    }
}

/// Most sources one shard catches up (a hostile peer inventing sources
/// cannot make it fetch forever).
const MAX_CATCH_UPS: usize = 64;

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
        catch_up: io.catch_up.take().map(|link| CatchUpState {
            link,
            seen: Vec::new(),
            last: None,
            next_id: 1,
            done: Vec::new(),
        }),
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
    let mut res = core.finish(error);
    if let Some(c) = shard.catch_up {
        res.caught_up = c.done;
    }
    (res, work)
}

/// What the I/O loop needs besides its sockets.
struct Io<'a> {
    idle: Idle,
    stop: &'a AtomicBool,
    counters: &'a AgentCounters,
    /// `--workers 0`: the work, done here.
    inline: Option<Inline<'a>>,
    /// `--catch-up`.
    catch_up: Option<CatchUpState>,
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
            if let Some(ask) = self.catch_up.as_mut().and_then(|c| c.wants(msg.bytes())) {
                if !core.knows(ask.key) {
                    // What was packed goes first; then the history; then
                    // this frame and the live ones queued behind it.
                    core.flush();
                    self.drain(core, msg, &mut io.outs, &board.croak)?;
                    self.catch_up(core, io, board, ask)?;
                }
            }
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

    /// Fetch `ask` from the recorder and hand it to the workers as history
    /// (not judged, not timed), in order, before the live frame that
    /// revealed it. Live frames queue on the SUB meanwhile (the kdb+ `r.q`
    /// and Aeron replay-merge pattern: subscribe first, then fetch what
    /// came before, then drain the queue, dropping what the history
    /// already applied). A PARTIAL answer is asked again from where it
    /// stopped while time is left; whatever is still missing stays
    /// missing and shows in the counts (`lost` between the history and
    /// live, or `missed_before_join` if nothing came).
    fn catch_up(
        &mut self,
        core: &mut ShardCore,
        io: &mut ShardSockets,
        board: &Board,
        ask: Ask,
    ) -> Result<(), IoError> {
        let Some(mut c) = self.catch_up.take() else {
            return Ok(());
        };
        let started = Instant::now();
        let deadline = started + c.link.timeout;
        let mut got = CaughtUp {
            key: ask.key,
            session: ask.session,
            from_seq: 1,
            to_seq: ask.to_seq,
            records: 0,
            frames: 0,
            elapsed_ns: 0,
            status: String::new(),
        };
        let mut from = 1;
        let forwarded_before = core.forwarded();
        let result = loop {
            let id = c.next_id;
            c.next_id += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let req = Request {
                key: ask.key,
                wait_ms: (left.as_millis() as u32).min(MAX_WAIT_MS),
                session: ask.session,
                from_seq: from,
                to_seq: ask.to_seq,
                request_id: id,
            };
            // Blocks while the recorder is not connected yet, for at most
            // the DEALER's send timeout (the catch-up timeout).
            if let Err(e) = c.link.dealer.send(&req.encode()[..], 0) {
                break Err(format!("error: sending the request: {e}"));
            }
            match self.fetch(
                core,
                io,
                board,
                &mut c.link,
                id,
                ask.to_seq,
                deadline,
                &mut got,
            ) {
                Ok(Some(r)) if r.status == Status::Partial && r.a < ask.to_seq => {
                    // What it had came; ask again for the rest while time
                    // is left (the recorder may be a moment behind live).
                    from = r.a.max(from - 1) + 1;
                    if Instant::now() >= deadline {
                        break Ok("partial");
                    }
                }
                Ok(Some(r)) if r.status == Status::Busy => {
                    if Instant::now() >= deadline {
                        break Ok("busy");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(Some(r)) => {
                    break Ok(match r.status {
                        Status::Done | Status::Partial => "done",
                        Status::NotAvailable => "not_available",
                        _ => "bad_request",
                    })
                }
                Ok(None) => {
                    break Ok(if self.stop.load(Ordering::Relaxed) {
                        "stopped"
                    } else {
                        "timeout"
                    })
                }
                Err(e) => break Err(e),
            }
        };
        // The history's packed single records go now, before any live one
        // (and are counted with it).
        core.flush();
        let flushed = self
            .drain(core, &mut Msg::new(), &mut io.outs, &board.croak)
            .map_err(|e| format!("error: handing history to the workers: {e:?}"));
        let result = match (result, flushed) {
            (Ok(s), Ok(())) => Ok(s),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        got.records = core.forwarded() - forwarded_before;
        got.elapsed_ns = started.elapsed().as_nanos() as u64;
        got.status = match result {
            Ok(s) => s.to_string(),
            Err(e) => e,
        };
        eprintln!(
            "shardcast-sub: caught up publisher {} stream {} session {}: {} records of 1..={} from the recorder in {:.3} s ({})",
            ask.key.publisher_id,
            ask.key.stream_id,
            ask.session,
            got.records,
            ask.to_seq,
            got.elapsed_ns as f64 / 1e9,
            got.status
        );
        // What queued meanwhile is judged against the catch-up's end.
        core.grace(ask.key, now_ns());
        c.done.push(got);
        self.catch_up = Some(c);
        Ok(())
    }

    /// Receive the replies to request `id` until its final one, handing
    /// every recorded frame to the core as history. `Ok(None)`: no final
    /// reply before `deadline` (or a stop).
    #[allow(clippy::too_many_arguments)]
    fn fetch(
        &mut self,
        core: &mut ShardCore,
        io: &mut ShardSockets,
        board: &Board,
        link: &mut CatchUpLink,
        id: u64,
        to_seq: u64,
        deadline: Instant,
        got: &mut CaughtUp,
    ) -> Result<Option<Reply>, String> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Short polls: a stop is noticed within 100 ms.
            let wait = left.min(Duration::from_millis(100)).as_millis().max(1) as i64;
            if link
                .dealer
                .poll(zmq::POLLIN, wait)
                .map_err(|e| e.to_string())?
                == 0
            {
                continue;
            }
            let parts = link.dealer.recv_multipart(0).map_err(|e| e.to_string())?;
            let Some(reply) = parts.first().and_then(|p| Reply::decode(p)) else {
                return Err("error: a reply that does not decode".into());
            };
            if reply.request_id != id {
                continue; // a late answer to an earlier request
            }
            if reply.is_final() {
                return Ok(Some(reply));
            }
            for frame in parts.iter().skip(2) {
                got.frames += 1;
                let mut m = Msg::from_slice(frame).map_err(|e| e.to_string())?;
                core.on_history_frame(now_ns(), m.bytes(), to_seq);
                self.drain(core, &mut m, &mut io.outs, &board.croak)
                    .map_err(|e| format!("error: handing history to the workers: {e:?}"))?;
            }
        }
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
