//! Sequence tracking per (publisher, stream): lost, duplicate and out-of-order
//! counts, publisher restarts, late joins, and end-of-stream completeness.
//!
//! Semantics (see docs/PROTOCOL.md, "Sequencing"):
//! * Data records carry `seq` 1, 2, 3... per (publisher, stream, session).
//! * Heartbeats and end-of-stream carry the last data `seq` sent, so a loss at
//!   the tail of a burst is seen without waiting for the next data record.
//! * A new session id for the same (publisher, stream) is a **restart**, not a
//!   gap: counting restarts separately keeps `lost` honest. A restart is
//!   *confirmed* before the current session is given up: the new session's
//!   first record is a candidate, and only its next record continuing it
//!   makes the switch, so one foreign or corrupt session id changes nothing.
//! * The first record seen from a session may have `seq > 1` when this
//!   subscriber joined late (the slow joiner): those are `missed_before_join`,
//!   not `lost`, and the stream cannot be `complete`. A first record further
//!   than [`MAX_SEQ_JUMP`] from the start of its sequence space is a jump
//!   like any other, taken only once the next record confirms it.
//! * Below that limit, a session's first record and any jump of [`WINDOW`]
//!   or more are taken on trust: applied at once, but undone (and counted
//!   as a `seq_jump`) when the session's next record stays below what they
//!   claimed, so one lie cannot turn the real records into duplicates.

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
/// A session's first record is measured from seq 1: one claiming 2^62 is a
/// jump too, not a late join.
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
    /// Data records accepted and delivered (each sequence number of a
    /// session once; a candidate restart's first record is counted when it
    /// is delivered, whether or not the restart is then confirmed).
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
    /// unconfirmed sequence jump of more than [`MAX_SEQ_JUMP`], or taken on
    /// trust (a session's first record, a jump of [`WINDOW`] or more) and
    /// undone because the session's next record stayed below them.
    pub seq_jumps: u64,
    /// Records of a session other than the current one that no following
    /// record of that session confirmed as a restart: control records
    /// ignored, data records delivered but kept out of the current
    /// session's accounting (see [`StreamState::on_data`]).
    pub session_unconfirmed: u64,
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
        self.session_unconfirmed = self
            .session_unconfirmed
            .saturating_add(o.session_unconfirmed);
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
    /// A session that may be a restart, until its next record confirms it.
    candidate: Candidate,
    /// The last record taken on trust (a session's first, or a jump of
    /// [`WINDOW`] or more), until the session's next record confirms it.
    tentative: Tentative,
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
            candidate: Candidate::default(),
            tentative: Tentative::default(),
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

    /// Whether anything of the current session was accounted for (a data
    /// record or a heartbeat taken): then another session is a candidate
    /// restart, and an end-of-stream comes from a source this state knows.
    pub fn joined(&self) -> bool {
        self.expected != 0
    }

    /// Make `session` the current one, with nothing of it seen yet.
    fn reset_session(&mut self, session: u64) {
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
        self.candidate = Candidate::default();
        self.tentative.next = 0;
    }

    /// The candidate session continues: it is a restart. The current
    /// session is given up and the candidate's first record accounted for
    /// as the new session's first. `at` is where the confirming record
    /// joins when the candidate's own first record was an implausible jump.
    #[cold]
    fn confirm_restart(&mut self, at: u64) {
        let c = self.candidate;
        self.totals.restarts += 1;
        self.totals.session_unconfirmed = self.totals.session_unconfirmed.saturating_sub(1);
        self.reset_session(c.session);
        if c.first == 0 {
            self.join_at(at);
            return;
        }
        self.join_at(c.first);
        if let Some(digest) = c.digest {
            // Delivered when it came, and counted in `received` then.
            self.set_bit(c.first);
            self.expected = c.first + 1;
            self.session_received = 1;
            self.checksum.add(digest);
        }
    }

    /// A data record of another session than the current, live one: the
    /// candidate's next record (confirming the restart when it continues
    /// the candidate), or a new candidate.
    #[cold]
    fn foreign_data(&mut self, session: u64, seq: u64, digest: impl FnOnce() -> u64) -> Verdict {
        let c = self.candidate;
        if c.next != 0 && c.session == session {
            if seq >= c.next {
                if seq - c.next < MAX_SEQ_JUMP {
                    self.confirm_restart(seq);
                    return self.current_data(seq, digest);
                }
                // Implausibly far past the candidate: dropped, which stays.
                self.totals.seq_jumps = self.totals.seq_jumps.saturating_add(1);
                return Verdict::Implausible;
            }
            if c.digest.is_some() && seq == c.first {
                self.totals.duplicates += 1;
                return Verdict::Duplicate;
            }
            // Behind the candidate: it starts again from here (so one
            // record claiming a high seq in the next session's name cannot
            // turn that session's real records into duplicates).
        }
        // A new candidate (replacing another, which stays counted).
        self.totals.session_unconfirmed = self.totals.session_unconfirmed.saturating_add(1);
        if seq == 0 || seq > MAX_SEQ_JUMP {
            // Not a plausible first record either: remembered, not delivered.
            self.candidate = Candidate {
                session,
                next: seq.saturating_add(1),
                first: 0,
                digest: None,
            };
            return Verdict::Implausible;
        }
        // Delivered (a real restart's first record must not be lost), but
        // counted in no session until the restart is confirmed.
        self.candidate = Candidate {
            session,
            next: seq + 1,
            first: seq,
            digest: Some(digest()),
        };
        self.totals.received += 1;
        Verdict::New
    }

    /// A heartbeat or end-of-stream of another session than the current,
    /// live one, saying `next` = its last seq + 1: the candidate's next
    /// record, or a new candidate. Returns whether it was applied (it
    /// confirmed a restart).
    #[cold]
    fn foreign_control(&mut self, session: u64, next: u64) -> bool {
        let c = self.candidate;
        if c.next != 0 && c.session == session && next >= c.next {
            if next - c.next <= MAX_SEQ_JUMP {
                self.confirm_restart(next);
                return self.current_control(next);
            }
            self.totals.seq_jumps = self.totals.seq_jumps.saturating_add(1);
            return false;
        }
        self.totals.session_unconfirmed = self.totals.session_unconfirmed.saturating_add(1);
        self.candidate = Candidate {
            session,
            next,
            first: if next - 1 > MAX_SEQ_JUMP { 0 } else { next },
            digest: None,
        };
        false
    }

    /// Whether moving `expected` to `next` is an implausible jump, to be
    /// dropped: the first time, remember where it leads and count it; when
    /// the following record leads to the same place, accept it (un-counting
    /// the record that announced it, which is then inside the gap, lost).
    /// Before a session's first record, the distance is measured from seq 1.
    fn implausible(&mut self, next: u64, confirms: bool) -> bool {
        let from = self.expected.max(1);
        if next <= from || next - from <= MAX_SEQ_JUMP {
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

    /// Take the record that moved `expected` from `from` (0: the session's
    /// first record) to where it is now on trust, counting `lost` lost
    /// meanwhile; `window` is the window before it. Cold: a session's
    /// first record, or a jump of [`WINDOW`] or more.
    #[cold]
    fn trust(
        &mut self,
        from: u64,
        lost: u64,
        digest: Option<u64>,
        window: [u64; (WINDOW / 64) as usize],
    ) {
        self.tentative = Tentative {
            next: self.expected,
            from,
            lost,
            digest,
            window,
        };
    }

    /// The session's record after a tentative one reaches no higher than
    /// what that one claimed: it lied. Its effect is undone (it stays
    /// delivered and in `received`) and counted as a `seq_jump`; the
    /// caller then handles the record as if the lie had never come.
    /// Accept data record `seq` on trust: the session's first (`from` 0)
    /// or a jump of [`WINDOW`] or more past `from`.
    #[cold]
    fn data_on_trust(&mut self, from: u64, seq: u64, digest: u64) -> Verdict {
        let window = self.window;
        let lost = seq - self.expected;
        self.advance_to(seq);
        self.clear_bit(seq);
        self.set_bit(seq);
        self.expected = seq.saturating_add(1);
        self.trust(from, lost, Some(digest), window);
        self.session_received += 1;
        self.totals.received += 1;
        self.checksum.add(digest);
        Verdict::New
    }

    #[cold]
    fn undo_tentative(&mut self) {
        let t = self.tentative;
        self.tentative.next = 0;
        self.totals.seq_jumps = self.totals.seq_jumps.saturating_add(1);
        if t.digest.is_none() {
            if let Some(eos) = self.eos {
                if eos.last_seq.saturating_add(1) == t.next {
                    self.eos = None;
                }
            }
        }
        if t.from == 0 {
            // The session's first record: the session is not joined yet.
            self.totals.missed_before_join = self
                .totals
                .missed_before_join
                .saturating_sub(self.session_missed);
            self.totals.lost = self.totals.lost.saturating_sub(self.session_lost);
            let candidate = self.candidate;
            self.reset_session(self.session);
            self.candidate = candidate;
            return;
        }
        self.expected = t.from;
        self.window = t.window;
        self.session_lost = self.session_lost.saturating_sub(t.lost);
        self.totals.lost = self.totals.lost.saturating_sub(t.lost);
        if let Some(d) = t.digest {
            self.session_received -= 1;
            self.checksum.0 = self.checksum.0.wrapping_sub(d);
        }
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
    /// A record more than [`MAX_SEQ_JUMP`] ahead (of seq 1, for a session's
    /// first record) is [`Verdict::Implausible`] unless it follows one that
    /// announced the same jump (`seq` one past it), so one hostile or
    /// corrupt record cannot make the stream's real records look like
    /// duplicates. A session's first record and a jump of [`WINDOW`] or
    /// more within the limit are accepted on trust: if the session's next
    /// record is below them, they are undone (counted as a `seq_jump`, the
    /// data still delivered) and that record handled as if they never came.
    ///
    /// A record of another session, while the current one has been joined,
    /// is a candidate restart: the current session stays. The candidate's
    /// first data record is delivered ([`Verdict::New`], counted in
    /// `received` and `session_unconfirmed`) but belongs to no session
    /// until the candidate's next record continues it (a higher seq within
    /// the jump limit): then the restart is counted and the candidate
    /// becomes the current session, its first record included.
    #[inline]
    pub fn on_data(&mut self, session: u64, seq: u64, digest: impl FnOnce() -> u64) -> Verdict {
        if session != self.session {
            if self.expected != 0 {
                return self.foreign_data(session, seq, digest);
            }
            // Nothing of the current session was taken: not a restart.
            self.reset_session(session);
        }
        self.current_data(seq, digest)
    }

    /// [`Self::on_data`] for the current session.
    #[inline]
    fn current_data(&mut self, seq: u64, digest: impl FnOnce() -> u64) -> Verdict {
        // A jump of more than MAX_SEQ_JUMP confirmed by this record.
        let mut vouched = false;
        if self.jump_to != 0 || seq > self.expected.max(1).saturating_add(MAX_SEQ_JUMP) {
            let confirms = seq == self.jump_to;
            if self.implausible(seq.saturating_add(1), confirms) {
                return Verdict::Implausible;
            }
            vouched = confirms;
        }
        if self.tentative.next != 0 {
            // The record after one taken on trust: at or past what that one
            // claimed confirms it (a repeat of its data is a duplicate);
            // below, it lied.
            let t = self.tentative;
            if seq >= t.next || vouched {
                self.tentative.next = 0;
            } else if !(t.digest.is_some() && seq.saturating_add(1) == t.next) {
                self.undo_tentative();
            }
        }
        let from = self.expected;
        if from == 0 {
            self.join_at(seq.max(1));
        }
        if seq >= self.expected {
            if (from == 0 || seq - self.expected >= WINDOW) && !vouched {
                return self.data_on_trust(from, seq, digest());
            }
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
    /// Returns false when it was dropped: an implausible jump, or a record
    /// of an unconfirmed session (which it may confirm; see
    /// [`Self::on_data`]).
    pub fn on_heartbeat(&mut self, session: u64, last_seq: u64) -> bool {
        let next = last_seq.saturating_add(1);
        if session != self.session {
            if self.expected != 0 {
                return self.foreign_control(session, next);
            }
            self.reset_session(session);
        }
        self.current_control(next)
    }

    /// [`Self::on_heartbeat`] for the current session.
    fn current_control(&mut self, next: u64) -> bool {
        // A jump of more than MAX_SEQ_JUMP confirmed by this record.
        let mut vouched = false;
        if self.expected == 0 || next > self.expected {
            // A repeated heartbeat confirms a jump (an idle publisher after
            // a long partition says the same last_seq again).
            let confirms = self.jump_to == next;
            if self.implausible(next, confirms) {
                return false;
            }
            vouched = confirms;
        }
        if self.tentative.next != 0 {
            // At or past the record taken on trust confirms it; behind it
            // (the publisher's last seq below what that one claimed), it lied.
            if next >= self.tentative.next || vouched {
                self.tentative.next = 0;
            } else {
                self.undo_tentative();
            }
        }
        if self.expected == 0 || next > self.expected {
            let from = self.expected;
            let window = self.window;
            if from == 0 {
                self.join_at(next);
            } else {
                self.advance_to(next);
            }
            let lost = if from == 0 { 0 } else { next - from };
            if (from == 0 || lost >= WINDOW) && !vouched {
                self.trust(from, lost, None, window);
            }
        }
        true
    }

    /// Account for end-of-stream (ignored, like a heartbeat, when its
    /// `last_seq` is an unconfirmed implausible jump or its session an
    /// unconfirmed restart).
    pub fn on_eos(&mut self, session: u64, last_seq: u64, checksum: u64) {
        if self.on_heartbeat(session, last_seq) {
            self.eos = Some(Eos { last_seq, checksum });
        }
    }
}

/// A session seen while another was current: a restart once its next
/// record continues it.
#[derive(Clone, Copy, Debug, Default)]
struct Candidate {
    session: u64,
    /// Where its next record must be at or after (a seq + 1, so never 0
    /// for a candidate); 0: no candidate.
    next: u64,
    /// Where the session starts if confirmed (its first data seq, or last
    /// seq + 1 of a heartbeat); 0 when its first record was itself an
    /// implausible jump (the confirming record is joined at instead).
    first: u64,
    /// Its first record's digest when that was delivered data.
    digest: Option<u64>,
}

/// A record taken on trust: the session's first, or a jump of [`WINDOW`]
/// or more. The session's next record confirms it by reaching at least as
/// far, or shows it lied by staying below: then it is undone.
#[derive(Clone, Copy, Debug, Default)]
struct Tentative {
    /// The `expected` it set; 0: nothing tentative.
    next: u64,
    /// The `expected` before it; 0: it was the session's first record.
    from: u64,
    /// What it counted as lost.
    lost: u64,
    /// Its digest when it was data (delivered, in the session's checksum).
    digest: Option<u64>,
    /// The duplicate window before it.
    window: [u64; (WINDOW / 64) as usize],
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

    /// The state of `key` if one exists, without creating it (an
    /// end-of-stream from a source never seen must cost nothing).
    #[inline]
    pub fn existing(&mut self, key: SourceKey) -> Option<&mut StreamState> {
        if self.last < self.streams.len() && self.streams[self.last].key == key {
            return Some(&mut self.streams[self.last]);
        }
        let i = *self.index.get(&key)?;
        self.last = i;
        Some(&mut self.streams[i])
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

    fn sum(seqs: impl IntoIterator<Item = u64>) -> u64 {
        seqs.into_iter().map(|s| s.wrapping_mul(31)).sum()
    }

    /// Issue 10, finding 5: a session's first record claiming seq 2^62 (data
    /// or heartbeat) made every real record of the session a duplicate.
    #[test]
    fn a_sessions_first_record_is_not_trusted_blindly() {
        for heartbeat in [false, true] {
            let mut st = StreamState::new(KEY);
            if heartbeat {
                assert!(!st.on_heartbeat(9, 1 << 62));
            } else {
                assert_eq!(feed(&mut st, 9, &[1 << 62]), vec![Verdict::Implausible]);
            }
            assert!(!st.joined());
            let real: Vec<u64> = (1..=3000).collect();
            let v = feed(&mut st, 9, &real);
            assert!(
                v.iter().all(|v| *v == Verdict::New),
                "heartbeat {heartbeat}"
            );
            let c = st.counters();
            assert_eq!(
                (c.received, c.duplicates, c.missed_before_join, c.lost),
                (3000, 0, 0, 0),
                "heartbeat {heartbeat}"
            );
            assert_eq!(c.seq_jumps, 1, "counted under its reason");
            st.on_eos(9, 3000, sum(1..=3000));
            assert!(st.complete());
        }
    }

    /// Review of issue 10, finding 5: a first record (or heartbeat) ahead of
    /// the real stream but under the jump limit made every real record
    /// below it a duplicate.
    #[test]
    fn a_first_record_below_the_jump_limit_cannot_make_real_records_duplicates() {
        for bogus in [10_000, 4_000_000_000] {
            for heartbeat in [false, true] {
                for real_from in [1u64, 5] {
                    let ctx = format!("bogus {bogus} heartbeat {heartbeat} from {real_from}");
                    let mut st = StreamState::new(KEY);
                    if heartbeat {
                        assert!(st.on_heartbeat(9, bogus), "{ctx}");
                    } else {
                        assert_eq!(feed(&mut st, 9, &[bogus]), vec![Verdict::New], "{ctx}");
                    }
                    let real: Vec<u64> = (real_from..=100).collect();
                    let v = feed(&mut st, 9, &real);
                    assert!(v.iter().all(|v| *v == Verdict::New), "{ctx}: {v:?}");
                    let c = st.counters();
                    assert_eq!(
                        (c.duplicates, c.missed_before_join, c.lost, c.seq_jumps),
                        (0, real_from - 1, 0, 1),
                        "{ctx}: the bogus record counted as a seq_jump"
                    );
                    // Delivered when it came: it stays in `received`.
                    let bogus_received = u64::from(!heartbeat);
                    assert_eq!(c.received, 101 - real_from + bogus_received, "{ctx}");
                    assert_eq!(st.first_seq(), real_from, "{ctx}");
                    st.on_eos(9, 100, sum(real_from..=100));
                    assert!(st.ended(), "{ctx}");
                    if real_from == 1 {
                        assert!(st.complete(), "{ctx}: {c:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_bogus_jump_mid_stream_cannot_make_the_continuation_duplicates() {
        for how in ["data", "heartbeat", "eos"] {
            let mut st = StreamState::new(KEY);
            feed(&mut st, 1, &(1..=100).collect::<Vec<_>>());
            match how {
                "data" => assert_eq!(feed(&mut st, 1, &[5100]), vec![Verdict::New]),
                "heartbeat" => assert!(st.on_heartbeat(1, 5100)),
                _ => st.on_eos(1, 5100, 0),
            }
            let lost = if how == "data" { 4999 } else { 5000 };
            assert_eq!(st.counters().lost, lost, "{how}: taken on trust");
            let v = feed(&mut st, 1, &(101..=3000).collect::<Vec<_>>());
            assert!(v.iter().all(|v| *v == Verdict::New), "{how}: {v:?}");
            let c = st.counters();
            assert_eq!(
                (c.duplicates, c.lost, c.out_of_order, c.seq_jumps),
                (0, 0, 0, 1),
                "{how}"
            );
            assert!(!st.ended(), "{how}: a refuted end-of-stream is forgotten");
            st.on_eos(1, 3000, sum(1..=3000));
            assert!(st.complete(), "{how}: {c:?}");
        }
    }

    #[test]
    fn real_gaps_and_late_joins_past_the_window_are_confirmed_and_exact() {
        // A late joiner: the second record confirms the first.
        let mut st = StreamState::new(KEY);
        feed(&mut st, 1, &(500..=600).collect::<Vec<_>>());
        let c = st.counters();
        assert_eq!((c.missed_before_join, c.lost, c.seq_jumps), (499, 0, 0));
        // Drops (a PUB at its HWM): gaps of every size, each exact, with the
        // records before them still duplicates and the gap's out-of-order.
        for gap in [WINDOW - 1, WINDOW, WINDOW + 1, 5000, 1 << 20] {
            let mut st = StreamState::new(KEY);
            feed(&mut st, 1, &(1..=100).collect::<Vec<_>>());
            let v = feed(&mut st, 1, &[101 + gap, 102 + gap]);
            assert_eq!(v, vec![Verdict::New, Verdict::New], "gap {gap}");
            let c = st.counters();
            assert_eq!((c.lost, c.seq_jumps, c.received), (gap, 0, 102), "{gap}");
            assert_eq!(feed(&mut st, 1, &[101 + gap]), vec![Verdict::Duplicate]);
            // A heartbeat confirms too, and a tail gap before end-of-stream
            // stays counted.
            assert!(st.on_heartbeat(1, 102 + 2 * gap));
            assert!(st.on_heartbeat(1, 102 + 2 * gap));
            st.on_eos(1, 102 + 3 * gap, 0);
            let c = st.counters();
            assert_eq!((c.lost, c.seq_jumps), (3 * gap, 0), "gap {gap}");
            assert!(st.ended());
        }
    }

    #[test]
    fn a_late_joiner_past_the_jump_limit_joins_at_its_second_record() {
        // Up to the limit, a first record is an ordinary late join.
        let mut st = StreamState::new(KEY);
        assert_eq!(feed(&mut st, 1, &[MAX_SEQ_JUMP]), vec![Verdict::New]);
        assert_eq!(st.counters().missed_before_join, MAX_SEQ_JUMP - 1);
        // Past it, the next record confirms; the first is missed, not lost.
        let far = MAX_SEQ_JUMP + 10;
        let mut st = StreamState::new(KEY);
        assert_eq!(
            feed(&mut st, 1, &[far, far + 1, far + 2]),
            vec![Verdict::Implausible, Verdict::New, Verdict::New]
        );
        let c = st.counters();
        assert_eq!((c.missed_before_join, c.lost, c.seq_jumps), (far, 0, 0));
        assert_eq!(st.first_seq(), far + 1);
        // A heartbeat said twice confirms too (an idle stream joined late).
        let mut st = StreamState::new(KEY);
        assert!(!st.on_heartbeat(1, far));
        assert!(st.on_heartbeat(1, far));
        assert_eq!(st.counters().missed_before_join, far);
        assert_eq!(feed(&mut st, 1, &[far + 1]), vec![Verdict::New]);
    }

    /// Issue 10, finding 7: a single record of another session in the middle
    /// of a stream gave restarts 2, missed_before_join 1505 and an
    /// incomplete stream, though every record arrived.
    #[test]
    fn one_foreign_session_record_does_not_rewrite_history() {
        let mut st = StreamState::new(KEY);
        feed(&mut st, 1, &(1..=1500).collect::<Vec<_>>());
        // Delivered (it could be a restart's first record), in no session.
        assert_eq!(feed(&mut st, 2, &[1505]), vec![Verdict::New]);
        assert_eq!(st.session(), 1, "the current session stays");
        let v = feed(&mut st, 1, &(1501..=3000).collect::<Vec<_>>());
        assert!(v.iter().all(|v| *v == Verdict::New));
        let c = st.counters();
        assert_eq!(
            (c.restarts, c.missed_before_join, c.lost, c.duplicates),
            (0, 0, 0, 0)
        );
        assert_eq!((c.session_unconfirmed, c.received), (1, 3001));
        st.on_eos(1, 3000, sum(1..=3000));
        assert!(st.complete(), "{c:?}");
        // A foreign heartbeat or end-of-stream is not obeyed either.
        assert!(!st.on_heartbeat(3, 9000));
        st.on_eos(4, 10, 0);
        assert_eq!(st.eos().map(|e| e.last_seq), Some(3000));
        assert_eq!(st.counters().session_unconfirmed, 3);
        assert!(st.complete());
    }

    #[test]
    fn a_restart_is_confirmed_by_the_new_sessions_next_record() {
        let mut st = StreamState::new(KEY);
        feed(&mut st, 1, &[1, 2, 3, 4, 5]);
        // Data first: held to no session, then confirmed by seq 2.
        assert_eq!(feed(&mut st, 2, &[1]), vec![Verdict::New]);
        assert_eq!((st.session(), st.counters().restarts), (1, 0));
        assert_eq!(feed(&mut st, 2, &[2]), vec![Verdict::New]);
        assert_eq!((st.session(), st.counters().restarts), (2, 1));
        let c = st.counters();
        assert_eq!((c.received, c.lost, c.session_unconfirmed), (7, 0, 0));
        assert_eq!(st.first_seq(), 1);
        st.on_eos(2, 2, sum([1, 2]));
        assert!(st.complete(), "the first record belongs to the new session");
        // Heartbeat first (an idle publisher restarted), then data.
        assert!(!st.on_heartbeat(3, 0));
        assert_eq!(feed(&mut st, 3, &[1]), vec![Verdict::New]);
        assert_eq!((st.session(), st.counters().restarts), (3, 2));
        // End-of-stream confirms, and is kept.
        assert_eq!(feed(&mut st, 4, &[1]), vec![Verdict::New]);
        st.on_eos(4, 1, sum([1]));
        assert_eq!(st.session(), 4);
        assert!(st.complete());
        // A restart seen late (a long outage) starts past the jump limit:
        // confirmed by its next record, the rest missed.
        let far = MAX_SEQ_JUMP + 7;
        assert_eq!(
            feed(&mut st, 5, &[far, far + 1]),
            vec![Verdict::Implausible, Verdict::New]
        );
        let c = st.counters();
        assert_eq!((st.session(), c.restarts, c.session_unconfirmed), (5, 4, 0));
        assert_eq!(c.missed_before_join, far);
        // A repeat of the candidate's first record is a duplicate.
        feed(&mut st, 6, &[1]);
        assert_eq!(feed(&mut st, 6, &[1]), vec![Verdict::Duplicate]);
        assert_eq!(st.session(), 5);
    }

    #[test]
    fn a_forged_candidate_cannot_make_the_next_sessions_records_duplicates() {
        for forged in [1000, 1 << 62] {
            let mut st = StreamState::new(KEY);
            feed(&mut st, 1, &[1, 2, 3]);
            // One record claims the next session is far along...
            feed(&mut st, 2, &[forged]);
            // ...and the real restart starts at 1 all the same.
            let v = feed(&mut st, 2, &[1, 2, 3]);
            assert!(v.iter().all(|v| *v == Verdict::New), "{forged}: {v:?}");
            let c = st.counters();
            assert_eq!((st.session(), c.restarts), (2, 1));
            assert_eq!((c.missed_before_join, c.duplicates), (0, 0));
            st.on_eos(2, 3, sum([1, 2, 3]));
            assert!(st.complete(), "{forged}: {c:?}");
        }
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
        assert!(t.existing(extra).is_none(), "looking creates nothing");
        assert!(t
            .existing(SourceKey {
                publisher_id: 5,
                stream_id: 0
            })
            .is_some());
        assert_eq!(t.streams().len(), MAX_SOURCES);
        assert_eq!(t.totals().received, MAX_SOURCES as u64);
        assert!(!t.all_ended());
    }
}
