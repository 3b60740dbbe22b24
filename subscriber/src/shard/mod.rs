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
mod lines;
mod repair;
mod symbols;

pub use self::core::{CaughtUp, Send, ShardCore, ShardResult, ShardSetup};
use self::repair::{gap_before, Gap, RecoveryState};
pub use self::repair::{
    RecoverLink, RecoverSetup, Recovery, RecoveryResult, SourceUse, MAX_ALARMS, MAX_LOST_RANGES,
};
use self::symbols::SymbolGap;
pub use lines::{LineStats, LinesReport};
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
pub use symbols::Selection;

/// A shard's sockets: its SUB and its PUSH sockets to the workers (one per
/// worker under keyed fan-out, one under push fan-out).
pub struct ShardSockets {
    /// The stream.
    pub sub: zmq::Socket,
    /// To the workers.
    pub outs: Vec<zmq::Socket>,
    /// `--catch-up`: a DEALER connected to the recorder's `--serve`.
    pub catch_up: Option<CatchUpLink>,
    /// `--recover-from`.
    pub recover: Option<RecoverSetup>,
    /// `--connect-b`: line B's SUB.
    pub sub_b: Option<zmq::Socket>,
    /// `--line-wait-ms`.
    pub line_wait: Duration,
    /// `--subscribe`: the symbol prefixes selected (empty: everything).
    pub subscribe: Vec<String>,
}

impl ShardSockets {
    /// Line A (0, the stream's SUB) or line B (1, `--connect-b`'s).
    fn line(&mut self, line: usize) -> &mut zmq::Socket {
        match (line, &mut self.sub_b) {
            (1, Some(b)) => b,
            _ => &mut self.sub,
        }
    }
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

/// What a source answered to [`Io::ask`].
struct Answer {
    /// It does not have the start of the range: its records begin here.
    skip: Option<u64>,
    /// It answered DONE with nothing of the range missing.
    whole: bool,
}

/// Why a fetch failed.
enum FetchError {
    /// The source: a send or receive error, a reply that does not decode.
    Source(String),
    /// Handing what came to the workers (the shard stops).
    Workers(IoError),
}

/// How fetched frames are handed to the core.
#[derive(Clone, Copy, Debug)]
enum Feed {
    /// `--catch-up`: history up to `max`.
    History { max: u64 },
    /// `--recover-from`: the gap `min..=max`.
    Repair { min: u64, max: u64 },
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
    core.select(&io.subscribe);
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
        recovery: io.recover.take().map(RecoveryState::new),
        inline: inline.map(|core| Inline {
            core,
            // Its own counters: inline, board.workers has one per shard.
            workers: std::slice::from_ref(&board.workers[setup.index]),
        }),
    };
    let mut lines = None;
    let error = loop {
        if io.sub_b.is_some() {
            let arb = lines::Arbiter::new(io.line_wait);
            let (error, report) = shard.run_lines(&mut core, &mut io, board, arb);
            lines = Some(report);
            break error;
        }
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
    res.lines = lines;
    if let Some(c) = shard.catch_up {
        res.caught_up = c.done;
    }
    if let Some(r) = shard.recovery {
        res.recovery = RecoveryResult {
            per_source: r.per_source,
            latency: Some(r.latency),
        };
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
    /// `--recover-from`.
    recovery: Option<RecoveryState>,
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
            if self.catch_up.is_some() {
                self.catch_up_before(core, msg, io, board)?;
            }
            if self.recovery.is_some() {
                self.repair_before(core, msg, io, board)?;
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
            // The send blocks while the recorder is not connected yet, for
            // at most the DEALER's send timeout (the catch-up timeout).
            match self.fetch(
                core,
                &mut io.outs,
                &board.croak,
                &c.link.dealer,
                &req,
                Feed::History { max: ask.to_seq },
                deadline,
                &mut got.frames,
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
                Err(FetchError::Source(e)) => break Err(format!("error: {e}")),
                Err(FetchError::Workers(e)) => {
                    break Err(format!("error: handing history to the workers: {e:?}"))
                }
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

    /// Send `req` on `dealer` and receive its replies until the final one,
    /// handing every frame to the core as `feed` says. `Ok(None)`: no final
    /// reply before `deadline` (or a stop). `frames` counts what came.
    #[allow(clippy::too_many_arguments)]
    fn fetch(
        &mut self,
        core: &mut ShardCore,
        outs: &mut [zmq::Socket],
        croak: &Croak,
        dealer: &zmq::Socket,
        req: &Request,
        feed: Feed,
        deadline: Instant,
        frames: &mut u64,
    ) -> Result<Option<Reply>, FetchError> {
        // Blocks while the source is not connected yet, for at most the
        // DEALER's send timeout: then it is a source that did not answer.
        match dealer.send(&req.encode()[..], 0) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => return Ok(None),
            Err(e) => return Err(FetchError::Source(format!("sending the request: {e}"))),
        }
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
            let source = |e: zmq::Error| FetchError::Source(e.to_string());
            if dealer.poll(zmq::POLLIN, wait).map_err(source)? == 0 {
                continue;
            }
            let parts = dealer.recv_multipart(0).map_err(source)?;
            let Some(reply) = parts.first().and_then(|p| Reply::decode(p)) else {
                return Err(FetchError::Source("a reply that does not decode".into()));
            };
            if reply.request_id != req.request_id {
                continue; // a late answer to an earlier request
            }
            if reply.is_final() {
                return Ok(Some(reply));
            }
            for frame in parts.iter().skip(2) {
                *frames += 1;
                let mut m = Msg::from_slice(frame).map_err(source)?;
                match feed {
                    Feed::History { max } => core.on_history_frame(now_ns(), m.bytes(), max),
                    Feed::Repair { min, max } => {
                        core.on_recovered_frame(now_ns(), m.bytes(), min, max)
                    }
                }
                self.drain(core, &mut m, outs, croak)
                    .map_err(FetchError::Workers)?;
            }
        }
    }

    /// `--catch-up`: if the frame in `msg` is the first of a source joined
    /// mid-stream, fetch what came before it. What was packed goes first;
    /// then the history; then this frame and the live ones queued behind.
    fn catch_up_before(
        &mut self,
        core: &mut ShardCore,
        msg: &mut Msg,
        io: &mut ShardSockets,
        board: &Board,
    ) -> Result<(), IoError> {
        if let Some(ask) = self.catch_up.as_mut().and_then(|c| c.wants(msg.bytes())) {
            if !core.knows(ask.key) {
                core.flush();
                self.drain(core, msg, &mut io.outs, &board.croak)?;
                self.catch_up(core, io, board, ask)?;
            }
        }
        Ok(())
    }

    /// `--recover-from`: repair what is missing before the frame in `msg`
    /// (a gap in its stream's sequence; for a selecting shard, one in its
    /// symbol's and the tail before end-of-stream), so the workers take it
    /// in sequence. What was packed goes first, then the repair, then the
    /// frame and the live ones queued behind it.
    fn repair_before(
        &mut self,
        core: &mut ShardCore,
        msg: &mut Msg,
        io: &mut ShardSockets,
        board: &Board,
    ) -> Result<(), IoError> {
        let Some(sel) = core.selection() else {
            if let Some(gap) = gap_before(msg.bytes(), |k| core.position(k)) {
                core.flush();
                self.drain(core, msg, &mut io.outs, &board.croak)?;
                self.repair(core, io, board, gap)?;
            }
            return Ok(());
        };
        // A selecting shard: the stream's holes are other symbols'; a gap
        // is one in a symbol's own sequence.
        let (gap, tail) = (sel.gap_before(msg.bytes()), sel.tail_before(msg.bytes()));
        if gap.is_some() || tail.is_some() {
            core.flush();
            self.drain(core, msg, &mut io.outs, &board.croak)?;
        }
        if let Some(g) = gap {
            self.repair_symbol(core, io, board, g)?;
        }
        if let Some(t) = tail {
            self.check_tail(core, io, board, t)?;
        }
        Ok(())
    }

    /// Repair `gap` from the `--recover-from` sources, in order, within
    /// `--reorder-window-ms`, handing what comes to the workers in
    /// sequence. A source that lacks the start of what is still missing
    /// (NOT_AVAILABLE) says where its records begin; when no source has the
    /// start, the records up to the earliest start offered are lost for
    /// good (named in an alarm) and the repair goes on from there. What is
    /// still missing at the end is lost too; the tracker counts it in
    /// `lost` when the live frame moves past it.
    fn repair(
        &mut self,
        core: &mut ShardCore,
        io: &mut ShardSockets,
        board: &Board,
        gap: Gap,
    ) -> Result<(), IoError> {
        let Some(mut r) = self.recovery.take() else {
            return Ok(());
        };
        if !r.begin(gap) {
            self.recovery = Some(r);
            return Ok(());
        }
        let detected = now_ns();
        let deadline = Instant::now() + r.setup.timeout;
        let forwarded_before = core.forwarded();
        // The next sequence still missing.
        let next = |core: &mut ShardCore| match core.position(gap.key) {
            Some((session, last)) if session == gap.session => last + 1,
            _ => gap.to + 1, // the source moved on (cannot happen mid-repair)
        };
        let mut why = Vec::new();
        let mut failed: Option<IoError> = None;
        // Below this, the records are named lost already (no source had
        // them): never asked again.
        let mut floor = gap.from;
        'repair: while next(core).max(floor) <= gap.to && Instant::now() < deadline {
            let cur = next(core).max(floor);
            // The earliest start a source offered for what it lacks.
            let mut skip_to: Option<u64> = None;
            why.clear();
            for i in 0..r.setup.links.len() {
                let from = next(core).max(floor);
                if from > gap.to || Instant::now() >= deadline {
                    break 'repair;
                }
                match self.ask(core, io, board, &mut r, i, gap, from, deadline, &mut why) {
                    Ok(Answer { skip: Some(a), .. }) => {
                        skip_to = Some(skip_to.map_or(a, |s| s.min(a)))
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failed = Some(e);
                        break 'repair;
                    }
                }
            }
            let now_at = next(core).max(floor);
            if now_at > gap.to {
                break;
            }
            match skip_to {
                // Nobody has `now_at..skip-1`: lost for good; what a source
                // has from `skip` on is asked for next round.
                Some(skip) if skip > now_at && skip <= gap.to => {
                    let why = format!("no --recover-from source has it ({})", why.join("; "));
                    r.lost(gap, now_at, skip - 1, &why);
                    // The next round asks from `skip`; the tracker counts
                    // the records before it lost when the first repaired
                    // record moves past them.
                    floor = skip;
                }
                _ if now_at == cur => break, // no progress this round
                _ => {}
            }
        }
        core.flush();
        let flushed = self.drain(core, &mut Msg::new(), &mut io.outs, &board.croak);
        let recovered = core.forwarded() - forwarded_before;
        let missing = next(core).max(floor);
        let unrepaired = (missing <= gap.to).then_some((missing, gap.to, gap.to + 1 - missing));
        r.settle(gap, recovered, detected, deadline, unrepaired, "", &why);
        self.recovery = Some(r);
        match failed {
            Some(e) => Err(e),
            None => flushed,
        }
    }

    /// Repair a selecting shard's gap in one symbol's own sequence: the
    /// stream range between the symbol's two records is asked of each
    /// source in turn until the symbol's missing records came (the core
    /// takes only records of selected symbols it lacks from the range).
    fn repair_symbol(
        &mut self,
        core: &mut ShardCore,
        io: &mut ShardSockets,
        board: &Board,
        g: SymbolGap,
    ) -> Result<(), IoError> {
        let Some(mut r) = self.recovery.take() else {
            return Ok(());
        };
        let gap = Gap {
            key: g.key,
            session: g.session,
            from: g.from,
            to: g.to,
        };
        if !r.begin(gap) {
            self.recovery = Some(r);
            return Ok(());
        }
        let detected = now_ns();
        let deadline = Instant::now() + r.setup.timeout;
        let forwarded_before = core.forwarded();
        let done = |core: &ShardCore| {
            core.selection()
                .map_or(true, |s| s.last(g.key, g.symbol) + 1 >= g.sym_to)
        };
        let mut why = Vec::new();
        let mut failed: Option<IoError> = None;
        for i in 0..r.setup.links.len() {
            if done(core) || Instant::now() >= deadline {
                break;
            }
            if let Err(e) = self.ask(
                core, io, board, &mut r, i, gap, gap.from, deadline, &mut why,
            ) {
                failed = Some(e);
                break;
            }
        }
        core.flush();
        let flushed = self.drain(core, &mut Msg::new(), &mut io.outs, &board.croak);
        let recovered = core.forwarded() - forwarded_before;
        let have = core.selection().map_or(0, |s| s.last(g.key, g.symbol));
        let missing = u64::from(g.sym_to.saturating_sub(have.max(g.sym_from - 1) + 1));
        let unrepaired = (!done(core)).then_some((gap.from, gap.to, missing));
        let symbol = format!(
            "symbol {}, its records {}..{} within this range: ",
            shardcast_proto::wire::Symbol(g.symbol.to_le_bytes()),
            g.sym_from,
            g.sym_to
        );
        r.settle(
            gap, recovered, detected, deadline, unrepaired, &symbol, &why,
        );
        self.recovery = Some(r);
        match failed {
            Some(e) => Err(e),
            None => flushed,
        }
    }

    /// Ask source `i` for `from..=gap.to` and hand what comes to the core
    /// as a repair; note what it answered in `why` and its counts. `Ok(Some
    /// (a))`: it does not have `from`, its records of the session begin at
    /// `a`. `Err`: handing records to the workers failed (the shard stops).
    #[allow(clippy::too_many_arguments)]
    fn ask(
        &mut self,
        core: &mut ShardCore,
        io: &mut ShardSockets,
        board: &Board,
        r: &mut RecoveryState,
        i: usize,
        gap: Gap,
        from: u64,
        deadline: Instant,
        why: &mut Vec<String>,
    ) -> Result<Answer, IoError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let id = r.next_id;
        r.next_id += 1;
        let req = Request {
            key: gap.key,
            wait_ms: (left.as_millis() as u32).min(MAX_WAIT_MS),
            session: gap.session,
            from_seq: from,
            to_seq: gap.to,
            request_id: id,
        };
        let feed = Feed::Repair {
            min: from,
            max: gap.to,
        };
        let mut frames = 0;
        let before = core.forwarded();
        let link = &r.setup.links[i];
        let got = self.fetch(
            core,
            &mut io.outs,
            &board.croak,
            &link.dealer,
            &req,
            feed,
            deadline,
            &mut frames,
        );
        // Packed records count as forwarded once queued.
        core.flush();
        let flushed = self.drain(core, &mut Msg::new(), &mut io.outs, &board.croak);
        let got = match (got, flushed) {
            (got, Ok(())) => got,
            (_, Err(e)) => Err(FetchError::Workers(e)),
        };
        let taken = core.forwarded() - before;
        let endpoint = link.endpoint.clone();
        let use_ = &mut r.of(gap.key).sources[i];
        use_.requests += 1;
        use_.records += taken;
        let mut answer = Answer {
            skip: None,
            whole: false,
        };
        match got {
            Ok(Some(reply)) => match reply.status {
                Status::NotAvailable => {
                    use_.not_available += 1;
                    if reply.a > from {
                        answer.skip = Some(reply.a);
                    }
                    why.push(format!(
                        "{endpoint}: not available (holds from {})",
                        reply.a
                    ));
                }
                Status::Busy | Status::Refused => {
                    use_.refused += 1;
                    why.push(format!("{endpoint}: {:?}", reply.status));
                }
                Status::BadRequest => {
                    use_.errors += 1;
                    why.push(format!("{endpoint}: bad request ({})", reply.c));
                }
                Status::Done if reply.c == 0 => answer.whole = true,
                s => why.push(format!(
                    "{endpoint}: {s:?}, sent through {}, {} missing from its copy",
                    reply.a, reply.c
                )),
            },
            Ok(None) => {
                use_.timeouts += 1;
                why.push(format!("{endpoint}: no answer in time"));
            }
            // The workers' sockets failed: the shard stops.
            Err(FetchError::Workers(e)) => return Err(e),
            Err(FetchError::Source(e)) => {
                use_.errors += 1;
                why.push(format!("{endpoint}: {e}"));
            }
        }
        Ok(answer)
    }

    /// Before a selecting shard takes end-of-stream: ask the sources for
    /// the stream's tail after the last record it took (`t`: source,
    /// session, range); whatever of the selection is there is taken as a
    /// repair, and a source that had the whole range verifies the tail
    /// (the stream is then complete only if nothing is missing).
    fn check_tail(
        &mut self,
        core: &mut ShardCore,
        io: &mut ShardSockets,
        board: &Board,
        (key, session, from, to): (SourceKey, u64, u64, u64),
    ) -> Result<(), IoError> {
        let Some(mut r) = self.recovery.take() else {
            return Ok(());
        };
        let gap = Gap {
            key,
            session,
            from,
            to,
        };
        let deadline = Instant::now() + r.setup.timeout;
        let before = core.forwarded();
        let mut why = Vec::new();
        let mut result = Ok(());
        if gap.len() <= r.setup.window {
            for i in 0..r.setup.links.len() {
                match self.ask(core, io, board, &mut r, i, gap, from, deadline, &mut why) {
                    Ok(a) if a.whole => {
                        if let Some(sel) = core.selection_mut() {
                            sel.tail_verified(key);
                        }
                        break;
                    }
                    Ok(_) if Instant::now() < deadline => {}
                    Ok(_) => break,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        core.flush();
        let flushed = self.drain(core, &mut Msg::new(), &mut io.outs, &board.croak);
        let recovered = core.forwarded() - before;
        r.of(key).recovered += recovered;
        if !core.selection().is_some_and(|s| s.tail_ok(key, Some(to))) {
            eprintln!(
                "shardcast-sub: warning: publisher {} stream {} session {}: the tail {from}..={to} after the last selected record taken was not verified by a --recover-from source ({}); the stream is not complete",
                key.publisher_id,
                key.stream_id,
                session,
                if why.is_empty() { "too large".to_string() } else { why.join("; ") }
            );
        }
        self.recovery = Some(r);
        result.and(flushed)
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
