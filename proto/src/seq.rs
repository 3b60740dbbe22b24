//! Sequence tracking per (publisher, stream): lost, duplicate and out-of-order
//! counts, publisher restarts, late joins, and end-of-stream completeness.
//!
//! Semantics (see docs/PROTOCOL.md, "Sequencing"):
//! * Data records carry `seq` 1, 2, 3... per (publisher, stream, session).
//! * Heartbeats and end-of-stream carry the last data `seq` sent, so a loss at
//!   the tail of a burst is seen without waiting for the next data record.
//! * A new session id for the same (publisher, stream) is a **restart**, not a
//!   gap: counting restarts separately keeps `lost` honest.
//! * The first record seen from a session may have `seq > 1` when this
//!   subscriber joined late (the slow joiner): those are `missed_before_join`,
//!   not `lost`, and the stream cannot be `complete`.

use crate::wire::StreamChecksum;
use serde::Serialize;

/// How many recent sequence numbers are remembered to tell a duplicate from a
/// late (out-of-order) arrival. Older arrivals count as duplicates.
pub const WINDOW: u64 = 1024;
/// Most distinct (publisher, stream) sources one tracker follows; more are
/// refused so a hostile peer cannot grow memory without bound.
pub const MAX_SOURCES: usize = 4096;
/// A forward jump of more than this many sequence numbers within a session
/// is implausible (2^32 is 12 minutes of a 6 M msg/s stream): the record is
/// dropped and counted as a `seq_jump` instead of declaring billions lost and
/// poisoning the duplicate window. A real jump (a long partition) is
/// accepted when the next record confirms it (see [`StreamState::on_data`]).
pub const MAX_SEQ_JUMP: u64 = 1 << 32;

/// Identity of a sequence space (sessions come and go within it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct SourceKey {
    /// Publisher id.
    pub publisher_id: u32,
    /// Stream id.
    pub stream_id: u16,
}

/// What to do with a data record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// First time seen: process it.
    New,
    /// Seen before (or too old to tell): drop it.
    Duplicate,
    /// An unconfirmed jump of more than [`MAX_SEQ_JUMP`]: drop it.
    Implausible,
}

/// End-of-stream as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Eos {
    /// Last data sequence the publisher sent.
    pub last_seq: u64,
    /// The publisher's checksum of all data it sent.
    pub checksum: u64,
}

/// Counters of one source, cumulative over its sessions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Data records accepted (each sequence number once).
    pub received: u64,
    /// Sequence numbers never received (gaps, including tail gaps).
    pub lost: u64,
    /// Records received again (or too late to tell).
    pub duplicates: u64,
    /// Records that filled a gap after a higher sequence had arrived.
    pub out_of_order: u64,
    /// Records sent before this subscriber joined a session.
    pub missed_before_join: u64,
    /// Sessions after the first (publisher restarts).
    pub restarts: u64,
    /// Records (data, heartbeat or end-of-stream) dropped for an
    /// unconfirmed sequence jump of more than [`MAX_SEQ_JUMP`].
    pub seq_jumps: u64,
}

impl std::ops::AddAssign for Counters {
    fn add_assign(&mut self, o: Counters) {
        // Saturating: a hostile peer can claim gaps near 2^64.
        self.received = self.received.saturating_add(o.received);
        self.lost = self.lost.saturating_add(o.lost);
        self.duplicates = self.duplicates.saturating_add(o.duplicates);
        self.out_of_order = self.out_of_order.saturating_add(o.out_of_order);
        self.missed_before_join = self.missed_before_join.saturating_add(o.missed_before_join);
        self.restarts = self.restarts.saturating_add(o.restarts);
        self.seq_jumps = self.seq_jumps.saturating_add(o.seq_jumps);
    }
}

/// State of one (publisher, stream).
#[derive(Clone, Debug)]
pub struct StreamState {
    key: SourceKey,
    session: u64,
    /// Next expected sequence; 0 while nothing of this session was seen.
    expected: u64,
    first_seq: u64,
    session_received: u64,
    session_lost: u64,
    session_missed: u64,
    checksum: StreamChecksum,
    eos: Option<Eos>,
    window: [u64; (WINDOW / 64) as usize],
    totals: Counters,
    /// The `expected` an implausible jump would have set: a next record
    /// that agrees with it confirms the jump.
    jump_to: u64,
    /// The relative snail's delay floor for this source (each publisher
    /// host has its own clock offset).
    pub floor: crate::snail::DelayFloor,
}

impl StreamState {
    fn new(key: SourceKey) -> StreamState {
        StreamState {
            key,
            session: 0,
            expected: 0,
            first_seq: 0,
            session_received: 0,
            session_lost: 0,
            session_missed: 0,
            checksum: StreamChecksum::default(),
            eos: None,
            window: [0; (WINDOW / 64) as usize],
            totals: Counters::default(),
            jump_to: 0,
            floor: crate::snail::DelayFloor::default(),
        }
    }

    /// Source identity.
    pub fn key(&self) -> SourceKey {
        self.key
    }

    /// Current session id.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// First sequence seen in the current session (0 if none).
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Highest sequence accounted for in the current session.
    pub fn last_seq(&self) -> u64 {
        self.expected.saturating_sub(1)
    }

    /// Cumulative counters.
    pub fn counters(&self) -> Counters {
        self.totals
    }

    /// End-of-stream of the current session, if received.
    pub fn eos(&self) -> Option<Eos> {
        self.eos
    }

    /// Checksum of the data accepted in the current session.
    pub fn checksum(&self) -> u64 {
        self.checksum.0
    }

    /// Whether end-of-stream arrived for the current session.
    pub fn ended(&self) -> bool {
        self.eos.is_some()
    }

    /// Whether the current session was received whole: end-of-stream seen,
    /// every sequence from 1 to its `last_seq` received once, and the checksum
    /// equal to the publisher's.
    pub fn complete(&self) -> bool {
        match self.eos {
            Some(eos) => {
                self.session_missed == 0
                    && self.session_lost == 0
                    && self.session_received == eos.last_seq
                    && self.checksum.0 == eos.checksum
            }
            None => false,
        }
    }

    fn enter_session(&mut self, session: u64) {
        if session == self.session && self.expected != 0 {
            return;
        }
        if session != self.session {
            if self.expected != 0 {
                self.totals.restarts += 1;
            }
            self.session = session;
            self.expected = 0;
            self.first_seq = 0;
            self.session_received = 0;
            self.session_lost = 0;
            self.session_missed = 0;
            self.checksum = StreamChecksum::default();
            self.eos = None;
            self.window = [0; (WINDOW / 64) as usize];
            self.jump_to = 0;
        }
    }

    /// Whether moving `expected` to `next` is an implausible jump, to be
    /// dropped: the first time, remember where it leads and count it; when
    /// the following record leads to the same place, accept it (un-counting
    /// the record that announced it, which is then inside the gap, lost).
    fn implausible(&mut self, next: u64, confirms: bool) -> bool {
        if self.expected == 0 || next <= self.expected || next - self.expected <= MAX_SEQ_JUMP {
            self.jump_to = 0;
            return false;
        }
        if confirms && self.jump_to != 0 {
            self.jump_to = 0;
            self.totals.seq_jumps -= 1;
            return false;
        }
        self.jump_to = next;
        self.totals.seq_jumps = self.totals.seq_jumps.saturating_add(1);
        true
    }

    /// First contact with a session at `seq` (data) or `last_seq + 1`
    /// (control): everything before it was missed, not lost.
    fn join_at(&mut self, next: u64) {
        let missed = next.saturating_sub(1);
        self.session_missed = missed;
        self.totals.missed_before_join = self.totals.missed_before_join.saturating_add(missed);
        self.first_seq = next;
        self.expected = next;
    }

    #[inline]
    fn bit(&self, seq: u64) -> bool {
        let i = seq % WINDOW;
        self.window[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    #[inline]
    fn set_bit(&mut self, seq: u64) {
        let i = seq % WINDOW;
        self.window[(i / 64) as usize] |= 1 << (i % 64);
    }

    #[inline]
    fn clear_bit(&mut self, seq: u64) {
        let i = seq % WINDOW;
        self.window[(i / 64) as usize] &= !(1 << (i % 64));
    }

    /// Clear the bits of `from..to` (fewer than [`WINDOW`] sequences), a word
    /// at a time: a peer sending gap after gap costs at most 17 word
    /// operations per record, not one per missing sequence.
    fn clear_range(&mut self, from: u64, to: u64) {
        let mut s = from;
        while s < to {
            let bit = s % 64;
            let n = (64 - bit).min(to - s);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << bit
            };
            self.window[((s % WINDOW) / 64) as usize] &= !mask;
            s += n;
        }
    }

    /// Advance `expected` to `next`, counting what was skipped as lost.
    fn advance_to(&mut self, next: u64) {
        let gap = next - self.expected;
        if gap == 0 {
            return;
        }
        self.session_lost = self.session_lost.saturating_add(gap);
        self.totals.lost = self.totals.lost.saturating_add(gap);
        if gap >= WINDOW {
            self.window = [0; (WINDOW / 64) as usize];
        } else {
            self.clear_range(self.expected, next);
        }
        self.expected = next;
    }

    /// Account for a data record; returns whether to process it. `digest`
    /// is only computed for a record seen for the first time.
    ///
    /// A record more than [`MAX_SEQ_JUMP`] ahead is [`Verdict::Implausible`]
    /// unless it follows one that announced the same jump (`seq` one past
    /// it), so one hostile or corrupt record cannot make the stream's real
    /// records look like duplicates.
    #[inline]
    pub fn on_data(&mut self, session: u64, seq: u64, digest: impl FnOnce() -> u64) -> Verdict {
        self.enter_session(session);
        if self.expected == 0 {
            self.join_at(seq.max(1));
        }
        if self.jump_to != 0 || seq > self.expected.saturating_add(MAX_SEQ_JUMP) {
            let confirms = seq == self.jump_to;
            if self.implausible(seq.saturating_add(1), confirms) {
                return Verdict::Implausible;
            }
        }
        if seq >= self.expected {
            self.advance_to(seq);
            self.clear_bit(seq);
            self.set_bit(seq);
            self.expected = seq.saturating_add(1);
        } else if self.expected - seq > WINDOW || self.bit(seq) || seq < self.first_seq {
            self.totals.duplicates += 1;
            return Verdict::Duplicate;
        } else {
            // A gap filled late: it was counted lost when the gap opened.
            self.set_bit(seq);
            self.totals.out_of_order += 1;
            self.session_lost -= 1;
            self.totals.lost -= 1;
        }
        self.session_received += 1;
        self.totals.received += 1;
        self.checksum.add(digest());
        Verdict::New
    }

    /// Account for a heartbeat carrying the last data sequence sent.
    /// Returns false when it was dropped as an implausible jump.
    pub fn on_heartbeat(&mut self, session: u64, last_seq: u64) -> bool {
        self.enter_session(session);
        let next = last_seq.saturating_add(1);
        if self.expected == 0 {
            self.join_at(next);
        } else if next > self.expected {
            // A repeated heartbeat confirms a jump (an idle publisher after
            // a long partition says the same last_seq again).
            let confirms = self.jump_to == next;
            if self.implausible(next, confirms) {
                return false;
            }
            self.advance_to(next);
        }
        true
    }

    /// Account for end-of-stream (ignored, like a heartbeat, when its
    /// `last_seq` is an unconfirmed implausible jump).
    pub fn on_eos(&mut self, session: u64, last_seq: u64, checksum: u64) {
        if self.on_heartbeat(session, last_seq) {
            self.eos = Some(Eos { last_seq, checksum });
        }
    }
}

/// All sources seen by one reader (one subscriber shard).
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    streams: Vec<StreamState>,
    /// Where each source is in `streams` (looked up only when a record's
    /// source differs from the previous record's).
    index: std::collections::HashMap<SourceKey, usize>,
    last: usize,
    refused: u64,
}

impl Tracker {
    /// An empty tracker.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// The state of `key`, created on first sight; `None` when
    /// [`MAX_SOURCES`] are already tracked (the caller counts a refusal).
    #[inline]
    pub fn source(&mut self, key: SourceKey) -> Option<&mut StreamState> {
        // Nearly every record comes from the same source as the previous one.
        if self.last < self.streams.len() && self.streams[self.last].key == key {
            return Some(&mut self.streams[self.last]);
        }
        match self.index.get(&key) {
            Some(&i) => self.last = i,
            None => {
                if self.streams.len() >= MAX_SOURCES {
                    self.refused += 1;
                    return None;
                }
                self.streams.push(StreamState::new(key));
                self.last = self.streams.len() - 1;
                self.index.insert(key, self.last);
            }
        }
        Some(&mut self.streams[self.last])
    }

    /// Every source seen.
    pub fn streams(&self) -> &[StreamState] {
        &self.streams
    }

    /// Records refused because too many sources were tracked.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// True once at least one source was seen and every source ended.
    pub fn all_ended(&self) -> bool {
        !self.streams.is_empty() && self.streams.iter().all(StreamState::ended)
    }

    /// Sum of every source's counters.
    pub fn totals(&self) -> Counters {
        let mut t = Counters::default();
        for s in &self.streams {
            t += s.counters();
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: SourceKey = SourceKey {
        publisher_id: 1,
        stream_id: 0,
    };

    fn feed(st: &mut StreamState, session: u64, seqs: &[u64]) -> Vec<Verdict> {
        seqs.iter()
            .map(|&s| st.on_data(session, s, || s.wrapping_mul(31)))
            .collect()
    }

    #[test]
    fn in_order_stream_is_complete() {
        let mut st = StreamState::new(KEY);
        feed(&mut st, 9, &[1, 2, 3]);
        assert!(!st.complete(), "not complete before end-of-stream");
        st.on_eos(9, 3, 31 + 62 + 93);
        assert!(st.complete());
        let c = st.counters();
        assert_eq!((c.received, c.lost, c.duplicates), (3, 0, 0));
    }

    #[test]
    fn the_guides_2_3_then_7_gap() {
        let mut st = StreamState::new(KEY);
        feed(&mut st, 9, &[1, 2, 3, 7]);
        assert_eq!(st.counters().lost, 3);
        st.on_eos(9, 7, 0);
        assert!(!st.complete());
    }

    #[test]
    fn duplicates_and_late_arrivals_are_told_apart() {
        let mut st = StreamState::new(KEY);
        let v = feed(&mut st, 9, &[1, 3, 2, 2, 3]);
        assert_eq!(
            v,
            vec![
                Verdict::New,
                Verdict::New,
                Verdict::New,
                Verdict::Duplicate,
                Verdict::Duplicate
            ]
        );
        let c = st.counters();
        assert_eq!(
            (c.received, c.lost, c.out_of_order, c.duplicates),
            (3, 0, 1, 2)
        );
        st.on_eos(9, 3, 31 + 62 + 93);
        assert!(st.complete(), "a reordered but whole stream is complete");
    }

    #[test]
    fn tail_loss_is_seen_from_heartbeat_and_eos() {
        let mut st = StreamState::new(KEY);
        feed(&mut st, 9, &[1, 2]);
        st.on_heartbeat(9, 4);
        assert_eq!(st.counters().lost, 2);
        st.on_eos(9, 6, 0);
        assert_eq!(st.counters().lost, 4);
        assert!(st.ended());
        assert!(!st.complete());
    }

    #[test]
    fn a_new_session_is_a_restart_not_a_gap() {
        let mut st = StreamState::new(KEY);
        feed(&mut st, 1, &[1, 2, 3, 4, 5]);
        feed(&mut st, 2, &[1, 2]);
        let c = st.counters();
        assert_eq!((c.restarts, c.lost, c.received), (1, 0, 7));
        assert_eq!(st.session(), 2);
        st.on_eos(2, 2, 31 + 62);
        assert!(st.complete(), "the new session is whole");
    }

    #[test]
    fn late_join_is_missed_not_lost() {
        let mut st = StreamState::new(KEY);
        feed(&mut st, 1, &[100, 101]);
        let c = st.counters();
        assert_eq!((c.missed_before_join, c.lost, c.received), (99, 0, 2));
        assert_eq!(st.first_seq(), 100);
        st.on_eos(1, 101, 100 * 31 + 101 * 31);
        assert!(!st.complete(), "a late joiner never saw the whole stream");
    }

    #[test]
    fn huge_sequence_jumps_do_not_loop_or_overflow() {
        // Confirmed jumps (two records agreeing) are accepted as gaps.
        let mut st = StreamState::new(KEY);
        feed(&mut st, 1, &[1, 1 << 63, (1 << 63) + 1]);
        assert_eq!(st.counters().lost, (1 << 63) - 1);
        assert_eq!(st.counters().seq_jumps, 0);
        assert_eq!(feed(&mut st, 1, &[5]), vec![Verdict::Duplicate]);
        // (Data seq u64::MAX never gets here: the decoder refuses it.)
        assert!(!st.on_heartbeat(1, u64::MAX));
        assert!(st.on_heartbeat(1, u64::MAX));
        st.on_eos(1, u64::MAX, 0);
        assert!(!st.complete());
        let mut other = StreamState::new(KEY);
        feed(&mut other, 2, &[1, u64::MAX - 2, u64::MAX - 1]);
        let mut sum = st.counters();
        sum += other.counters();
        assert_eq!(sum.lost, u64::MAX, "totals saturate instead of wrapping");
    }

    #[test]
    fn one_absurd_sequence_does_not_poison_the_stream() {
        let mut st = StreamState::new(KEY);
        let v = feed(&mut st, 1, &[1, 2, 1 << 63, 3, 4, u64::MAX - 1, 5]);
        assert_eq!(
            v,
            vec![
                Verdict::New,
                Verdict::New,
                Verdict::Implausible,
                Verdict::New,
                Verdict::New,
                Verdict::Implausible,
                Verdict::New
            ]
        );
        let c = st.counters();
        assert_eq!((c.received, c.lost, c.seq_jumps), (5, 0, 2));
        // Heartbeats and end-of-stream claiming absurd positions are
        // dropped too; a sane end-of-stream still completes the stream.
        assert!(!st.on_heartbeat(1, 1 << 40));
        st.on_eos(1, 1 << 50, 0);
        assert!(!st.ended());
        st.on_eos(1, 5, [1u64, 2, 3, 4, 5].iter().map(|s| s * 31).sum());
        assert!(st.complete());
        assert_eq!(st.counters().seq_jumps, 4);
        // A jump just under the limit is an ordinary gap.
        feed(&mut st, 1, &[5 + MAX_SEQ_JUMP]);
        assert_eq!(st.counters().lost, MAX_SEQ_JUMP - 1);
    }

    #[test]
    fn gaps_of_every_size_clear_the_window_exactly() {
        // After any gap, the sequences inside it must read as missing (so a
        // late one is out-of-order, not a duplicate) and the ones before it
        // as seen.
        for gap in [1u64, 2, 63, 64, 65, 127, 500, 1023] {
            let mut st = StreamState::new(KEY);
            let mut seqs: Vec<u64> = (1..=1100).collect();
            let jump = 1100 + gap + 1;
            seqs.push(jump);
            feed(&mut st, 1, &seqs);
            assert_eq!(st.counters().lost, gap, "gap {gap}");
            assert_eq!(
                feed(&mut st, 1, &[jump - 1]),
                vec![Verdict::New],
                "gap {gap}"
            );
            assert_eq!(
                feed(&mut st, 1, &[1100]),
                vec![Verdict::Duplicate],
                "gap {gap}"
            );
            assert_eq!(st.counters().out_of_order, 1);
        }
    }

    #[test]
    fn empty_stream_completes() {
        let mut st = StreamState::new(KEY);
        st.on_heartbeat(3, 0);
        st.on_eos(3, 0, 0);
        assert!(st.complete());
    }

    #[test]
    fn tracker_routes_sources_and_bounds_them() {
        let mut t = Tracker::new();
        for p in 0..MAX_SOURCES as u32 {
            let k = SourceKey {
                publisher_id: p,
                stream_id: 0,
            };
            t.source(k).unwrap().on_data(1, 1, || 0);
        }
        let extra = SourceKey {
            publisher_id: u32::MAX,
            stream_id: 9,
        };
        assert!(t.source(extra).is_none());
        assert_eq!(t.refused(), 1);
        assert_eq!(t.totals().received, MAX_SOURCES as u64);
        assert!(!t.all_ended());
    }
}
