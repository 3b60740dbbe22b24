//! `--connect-b`: one shard reads two identical lines (A and B, each its own
//! socket and I/O thread, typically on two NICs) and arbitrates by sequence,
//! the way CME MDP 3.0 feed handlers treat their A and B feeds: the first
//! copy of a record is taken, the second dropped, and a record lost on one
//! line only is no loss.
//!
//! A frame whose records were all taken already (from the other line) is
//! dropped before the sequence tracker sees it, so the second copies are
//! not wire `duplicates`: they are counted per line. A frame that starts
//! past the next expected record holds: the other line gets up to
//! `--line-wait-ms` to deliver what is missing (it normally lags by
//! microseconds), and the wait ends at once when that line is past the gap
//! without filling it. Only then is `--recover-from` asked, and what nobody
//! had is `lost`.

use super::repair::{gap_before, Gap};
use super::{Io, ShardCore, ShardSockets};
use serde::Serialize;
use shardcast_agent::clock::now_ns;
use shardcast_agent::idle::{IoError, Received};
use shardcast_agent::stats::{self, LatencySummary};
use shardcast_agent::watch::Board;
use shardcast_agent::zmqx::Msg;
use shardcast_proto::seq::SourceKey;
use shardcast_proto::wire::{first_header, Frame, Kind};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What one line delivered.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LineStats {
    /// Frames received on it.
    pub frames: u64,
    /// Data records received on it (first and second copies).
    pub received: u64,
    /// Records missing on this line (jumps in the sequence it delivered):
    /// loss of this line, repaired by the other if it had them.
    pub lost: u64,
    /// Records this line delivered first (taken from it).
    pub first: u64,
    /// Per source: the session and the highest sequence seen on this line.
    #[serde(skip)]
    seen: Vec<(SourceKey, u64, u64)>,
}

impl LineStats {
    /// Note a frame of `span`; returns nothing, counts this line's loss.
    fn note(&mut self, span: &Span) {
        self.frames += 1;
        if span.data {
            self.received += span.records;
        }
        let i = match self.seen.iter().position(|(k, _, _)| *k == span.key) {
            Some(i) => i,
            None if self.seen.len() < MAX_SOURCES => {
                self.seen.push((span.key, span.session, 0));
                self.seen.len() - 1
            }
            None => return,
        };
        let (_, session, last) = &mut self.seen[i];
        if *session != span.session {
            // A new session on this line: it starts again from its first.
            *session = span.session;
            *last = 0;
        }
        // Data from `first` means everything before it was sent; a control
        // record says the last data record sent.
        let before = if span.data { span.first - 1 } else { span.last };
        if *last != 0 && before > *last {
            self.lost += before - *last;
        }
        *last = (*last).max(span.last);
    }

    /// The highest sequence this line delivered of `key` in `session`.
    fn at(&self, key: SourceKey, session: u64) -> u64 {
        self.seen
            .iter()
            .find(|(k, s, _)| *k == key && *s == session)
            .map_or(0, |e| e.2)
    }
}

/// Most sources a line keeps sequence positions for.
const MAX_SOURCES: usize = 64;
/// Arrival times kept to measure the skew between the lines (by first
/// sequence of a frame, modulo this).
const SKEW_RING: usize = 4096;

/// The report's `shards[].lines`.
#[derive(Clone, Debug, Serialize)]
pub struct LinesReport {
    /// Line A (`--connect`).
    pub a: LineStats,
    /// Line B (`--connect-b`).
    pub b: LineStats,
    /// Gaps on one line the other filled within `--line-wait-ms`.
    pub filled_by_other: u64,
    /// How much later the second copy of a frame came than the first, ns
    /// (whichever line was first).
    pub skew_ns: LatencySummary,
}

/// Where a frame sits in its source's sequence.
struct Span {
    key: SourceKey,
    session: u64,
    first: u64,
    last: u64,
    records: u64,
    data: bool,
}

/// The span of a valid frame (`None` for anything the core would reject:
/// it goes to the core, which counts it).
fn span(bytes: &[u8]) -> Option<Span> {
    let h = first_header(bytes)?;
    let kind = Kind::from_u8(h.kind)?;
    let seq = h.seq.get();
    let records = if bytes.first() == Some(&0) && kind.is_data() {
        // A batch: a stream's batch holds consecutive records.
        Frame::parse(bytes).ok()?.len() as u64
    } else {
        1
    };
    Some(Span {
        key: SourceKey {
            publisher_id: h.publisher_id.get(),
            stream_id: h.stream_id.get(),
        },
        session: h.session.get(),
        first: seq,
        last: if kind.is_data() {
            seq + records - 1
        } else {
            seq
        },
        records,
        data: kind.is_data(),
    })
}

/// The arbiter's state.
pub(crate) struct Arbiter {
    lines: [LineStats; 2],
    skew: hdrhistogram::Histogram<u64>,
    /// (first seq, arrival ns, line) of recent frames taken.
    ring: Vec<(u64, u64, u8)>,
    wait: Duration,
    filled_by_other: u64,
}

impl Arbiter {
    pub fn new(wait: Duration) -> Arbiter {
        Arbiter {
            lines: [LineStats::default(), LineStats::default()],
            skew: stats::new_histogram(),
            ring: vec![(0, 0, 0); SKEW_RING],
            wait,
            filled_by_other: 0,
        }
    }

    pub fn report(self) -> LinesReport {
        let [a, b] = self.lines;
        LinesReport {
            a,
            b,
            filled_by_other: self.filled_by_other,
            skew_ns: LatencySummary::of(&self.skew),
        }
    }

    /// Whether the frame of `span` from `line` is a copy of what was taken
    /// already (then its skew against the first copy is noted).
    fn is_copy(&mut self, core: &mut ShardCore, span: &Span, line: usize, now: u64) -> bool {
        if !span.data {
            return false;
        }
        match core.position(span.key) {
            Some((session, last)) if session == span.session && span.last <= last => {
                let (seq, t, l) = self.ring[span.first as usize % SKEW_RING];
                if seq == span.first && usize::from(l) != line {
                    stats::record(&mut self.skew, now.saturating_sub(t));
                }
                true
            }
            _ => false,
        }
    }
}

impl Io<'_> {
    /// The receive loop of a shard with two lines. One frame per round
    /// (A/B is for correctness first; each frame is flushed to the workers
    /// as it is taken).
    pub(super) fn run_lines(
        &mut self,
        core: &mut ShardCore,
        io: &mut ShardSockets,
        board: &Board,
        mut arb: Arbiter,
    ) -> (Option<zmq::Error>, LinesReport) {
        let mut msg = Msg::new();
        let mut turn = 0usize;
        let poll_ms = if self.idle.flags() == zmq::DONTWAIT {
            0
        } else {
            50
        };
        let error = loop {
            if self.stop.load(Ordering::Relaxed) || core.ended() {
                break None;
            }
            let ready = {
                let b = io.sub_b.as_ref().expect("a line B");
                let mut items = [
                    io.sub.as_poll_item(zmq::POLLIN),
                    b.as_poll_item(zmq::POLLIN),
                ];
                match zmq::poll(&mut items, poll_ms) {
                    Ok(_) => [items[0].is_readable(), items[1].is_readable()],
                    Err(zmq::Error::EINTR) => [false, false],
                    Err(e) => break Some(e),
                }
            };
            if !ready[0] && !ready[1] {
                let now = now_ns();
                self.tick(core, now);
                if let Some(w) = &mut self.inline {
                    w.core.idle(now);
                }
                continue;
            }
            // Alternate when both are ready, so neither line starves.
            let line = if ready[0] && ready[1] {
                turn ^= 1;
                turn
            } else if ready[0] {
                0
            } else {
                1
            };
            match self.idle.recv(&mut msg, io.line(line)) {
                Received::Frame => {}
                Received::Nothing => continue,
                Received::Failed(e) => break Some(e),
            }
            let r = self.take_line_frame(core, io, board, &mut arb, line, &mut msg);
            self.publish(core, board);
            if let Err(e) = r {
                break e.zmq();
            }
        };
        self.publish(core, board);
        (error, arb.report())
    }

    /// One frame from `line`: counted for the line, dropped if the other
    /// line delivered it already, else (after the other line had its
    /// chance at any gap before it, then the recovery sources) taken.
    fn take_line_frame(
        &mut self,
        core: &mut ShardCore,
        io: &mut ShardSockets,
        board: &Board,
        arb: &mut Arbiter,
        line: usize,
        msg: &mut Msg,
    ) -> Result<(), IoError> {
        let now = now_ns();
        let sp = span(msg.bytes());
        if let Some(sp) = &sp {
            arb.lines[line].note(sp);
            if arb.is_copy(core, sp, line, now) {
                return Ok(());
            }
        }
        // A gap before this frame; or, for a source not joined yet, the
        // records before its first one, which the other line (connected a
        // moment earlier) may have: joining at this frame would make them
        // `missed_before_join` and drop them when they come.
        let unjoined = sp.as_ref().and_then(|sp| {
            (sp.data && sp.first > 1 && core.position(sp.key).is_none()).then_some(Gap {
                key: sp.key,
                session: sp.session,
                from: 1,
                to: sp.first - 1,
            })
        });
        if let Some(gap) = gap_before(msg.bytes(), |k| core.position(k)).or(unjoined) {
            // Hold this frame; let the other line fill the gap.
            let other = 1 - line;
            let deadline = Instant::now() + arb.wait;
            let mut held = Msg::new();
            while core
                .position(gap.key)
                .map_or(true, |(_, last)| last < gap.to)
                && arb.lines[other].at(gap.key, gap.session) <= gap.to
                && !self.stop.load(Ordering::Relaxed)
            {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let wait = left.as_millis().clamp(1, 50) as i64;
                match io.line(other).poll(zmq::POLLIN, wait) {
                    Ok(0) => continue,
                    Ok(_) => {}
                    Err(zmq::Error::EINTR) => continue,
                    Err(e) => return Err(IoError::Failed(e)),
                }
                match held.recv(io.line(other), zmq::DONTWAIT) {
                    Ok(()) => {}
                    Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => continue,
                    Err(e) => return Err(IoError::Failed(e)),
                }
                let t = now_ns();
                let osp = span(held.bytes());
                if let Some(o) = &osp {
                    arb.lines[other].note(o);
                    if arb.is_copy(core, o, other, t) {
                        continue;
                    }
                }
                // The other line's frame goes through the usual path (its
                // own gap, if it has one, goes to the recovery sources).
                self.take_frame_once(core, io, board, arb, other, &mut held, osp.as_ref(), t)?;
            }
            if core
                .position(gap.key)
                .is_some_and(|(_, last)| last >= gap.to)
            {
                arb.filled_by_other += 1;
            }
        }
        // What the other line did not fill, the sources may (below).
        let t = now_ns();
        self.take_frame_once(core, io, board, arb, line, msg, sp.as_ref(), t)
    }

    /// Hand one frame to the core (repairing a gap before it from the
    /// recovery sources, without waiting for the other line) and its
    /// records to the workers.
    #[allow(clippy::too_many_arguments)]
    fn take_frame_once(
        &mut self,
        core: &mut ShardCore,
        io: &mut ShardSockets,
        board: &Board,
        arb: &mut Arbiter,
        line: usize,
        msg: &mut Msg,
        sp: Option<&Span>,
        now: u64,
    ) -> Result<(), IoError> {
        if self.catch_up.is_some() {
            self.catch_up_before(core, msg, io, board)?;
        }
        if self.recovery.is_some() {
            self.repair_before(core, msg, io, board)?;
        }
        let before = core.forwarded();
        self.tick(core, now);
        core.on_frame(now, msg.bytes());
        if let Some(ev) = core.take_croak() {
            board.croak.raise(ev);
        }
        core.flush();
        self.drain(core, msg, &mut io.outs, &board.croak)?;
        let taken = core.forwarded() - before;
        arb.lines[line].first += taken;
        if let Some(sp) = sp.filter(|s| s.data && taken > 0) {
            arb.ring[sp.first as usize % SKEW_RING] = (sp.first, now, line as u8);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(session: u64, first: u64, last: u64, data: bool) -> Span {
        Span {
            key: SourceKey {
                publisher_id: 1,
                stream_id: 0,
            },
            session,
            first,
            last,
            records: last + 1 - first,
            data,
        }
    }

    #[test]
    fn a_line_counts_the_records_it_skipped_and_restarts_with_a_session() {
        let mut l = LineStats::default();
        l.note(&sp(1, 1, 10, true));
        l.note(&sp(1, 11, 20, true));
        assert_eq!((l.lost, l.received, l.frames), (0, 20, 2));
        l.note(&sp(1, 26, 30, true));
        assert_eq!(l.lost, 5, "21..=25 never came on this line");
        // A heartbeat saying 33 were sent: 31..=33 missing too.
        l.note(&sp(1, 33, 33, false));
        assert_eq!(l.lost, 8);
        assert_eq!(l.at(sp(1, 0, 0, true).key, 1), 33);
        // A new session starts over: no loss from its first record.
        l.note(&sp(2, 1, 5, true));
        assert_eq!(l.lost, 8);
        assert_eq!(l.at(sp(1, 0, 0, true).key, 2), 5);
    }
}
