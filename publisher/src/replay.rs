//! `--source recording:DIR`: replay what `shardcast-record` recorded.
//!
//! Recorded stream `i` (the recording's streams ordered by publisher id,
//! then stream id, as `shardcast_recorder::reader::Recording::streams`
//! lists them) is played on stream `i` (the `i`-th `--bind`), so a
//! recording of one publisher replays stream by stream as it was recorded;
//! their counts must match. Each stream thread reads its own recorded
//! stream (no reader thread: the streams are separate files already).
//!
//! What goes out is a new session: the replaying publisher's id, stream id
//! and session, sequence numbers from 1 per stream, new send and intended
//! times. Each record's payload is byte-identical to the recorded one
//! (same kind, symbol and length; an ITCH message unchanged), so a replay
//! into the same work gives the same books.
//!
//! Which records: every data record of every recorded session, in recorded
//! order, less duplicates (a record whose session and sequence were
//! already replayed: a recorder records frames as received, and a
//! publisher's batches can overlap after a resend), within `--from-seq`,
//! `--to-seq` and `--from-time`, and only `--symbols` if given. Sequence
//! bounds are the recorded ones, within the last session recorded (they
//! mean nothing across sessions).
//!
//! The schedule (`--speed N`) is anchored on the recorded *intended* send
//! times, the original publisher's schedule: record `i` is due at
//! `t0 + (intended_i - intended_0) / N`, with `intended_0` the earliest
//! first replayed record over all streams, so streams keep their relative
//! timing. Intended times, not the recorder's receive times: receive times
//! carry the network's jitter and a batch's records share one, so a replay
//! at `--speed 1` would not be the feed it recorded.

use crate::schedule::Speed;
use serde::Serialize;
use shardcast_proto::seq::SourceKey;
use shardcast_proto::wire::Symbol;
use shardcast_recorder::reader::{Cursor, Event, Range, ReadError, Recording};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The replay selection flags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplayRange {
    /// `--from-seq`.
    pub from_seq: Option<u64>,
    /// `--to-seq`.
    pub to_seq: Option<u64>,
    /// `--from-time`, CLOCK_REALTIME ns (the recorder's receive time).
    pub from_time_ns: Option<u64>,
    /// `--symbols` for a recording: only these are replayed (`None`: all).
    pub symbols: Option<Vec<String>>,
}

/// One stream's input: its recorded stream, opened at the range.
pub(crate) struct ReplayInput {
    /// The recorded stream it plays.
    pub(crate) key: SourceKey,
    pub(crate) cursor: Cursor,
    /// The schedule's anchor: the earliest intended time over every
    /// stream's first replayed record (0 when nothing is replayed).
    pub(crate) anchor_ts: u64,
    pub(crate) select: Selector,
    pub(crate) speed: Speed,
}

/// Which records a stream replays (see the module doc).
pub(crate) struct Selector {
    /// `--symbols`, as wire symbols.
    symbols: Option<HashSet<Symbol>>,
    /// The (session, sequence) replayed (or filtered) last.
    last: Option<(u64, u64)>,
}

impl Selector {
    /// Whether to replay the record of `session`, `seq`, `symbol`; what is
    /// left out is counted in `stats`.
    #[inline]
    pub(crate) fn keep(
        &mut self,
        session: u64,
        seq: u64,
        symbol: &Symbol,
        stats: &mut ReplayStats,
    ) -> bool {
        if matches!(self.last, Some((s, q)) if s == session && seq <= q) {
            stats.duplicates += 1;
            return false;
        }
        // Seen either way: a later copy of it is a duplicate.
        self.last = Some((session, seq));
        if self.symbols.as_ref().is_some_and(|s| !s.contains(symbol)) {
            stats.filtered += 1;
            return false;
        }
        true
    }
}

/// What one stream replayed (summed into the report's `source`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplayStats {
    /// Recorded frames read.
    pub frames: u64,
    /// Data records replayed.
    pub records: u64,
    /// Records left out as already replayed (same session and sequence).
    pub duplicates: u64,
    /// Records left out by `--symbols`.
    pub filtered: u64,
    /// Damaged entries the reader reported and skipped (never replayed).
    pub corrupt: u64,
    /// Recorded intended time of the first and last record replayed, ns.
    pub first_intended_ns: Option<u64>,
    /// See `first_intended_ns`.
    pub last_intended_ns: Option<u64>,
}

/// Why a recording cannot be replayed (exit 1, before any socket binds).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The reader failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The number of recorded streams is not the number of `--bind`s.
    #[error("{dir} holds {recorded} recorded stream(s) and {binds} --bind given: give one --bind per recorded stream (they replay in order: {keys})")]
    Streams {
        /// The recording.
        dir: PathBuf,
        /// Recorded streams.
        recorded: usize,
        /// `--bind`s.
        binds: usize,
        /// The recorded streams, `publisher/stream`.
        keys: String,
    },
}

/// The range of the reader for the flags.
fn reader_range(r: &ReplayRange) -> Range {
    Range {
        from_seq: r.from_seq,
        to_seq: r.to_seq,
        from_time_ns: r.from_time_ns,
        ..Range::default()
    }
}

/// Open one input per stream, and the common anchor.
pub(crate) fn open(
    dir: &Path,
    streams: usize,
    range: &ReplayRange,
    speed: Speed,
) -> Result<Vec<ReplayInput>, OpenError> {
    let rec = Recording::open(dir)?;
    let keys = rec.streams()?;
    if keys.len() != streams {
        return Err(OpenError::Streams {
            dir: dir.to_path_buf(),
            recorded: keys.len(),
            binds: streams,
            keys: keys
                .iter()
                .map(|k| format!("{}/{}", k.publisher_id, k.stream_id))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let symbols: Option<HashSet<Symbol>> = range
        .symbols
        .as_ref()
        .map(|v| v.iter().filter_map(|s| Symbol::new(s)).collect());
    let mut anchor: Option<u64> = None;
    let mut inputs = Vec::with_capacity(keys.len());
    for key in keys {
        let stream = rec.stream(key)?;
        // The first replayed record's intended time, read once with a
        // cursor of its own (the index makes it a seek, not a scan).
        let mut peek = stream.read(&reader_range(range))?;
        'peek: while let Some(ev) = peek.next()? {
            if let Event::Frame(f) = ev {
                for r in f.records_in_range() {
                    if symbols.as_ref().map_or(true, |s| s.contains(&r.symbol())) {
                        let t = r.intended_ts_ns();
                        anchor = Some(anchor.map_or(t, |a| a.min(t)));
                        break 'peek;
                    }
                }
            }
        }
        inputs.push(ReplayInput {
            key,
            cursor: stream.read(&reader_range(range))?,
            anchor_ts: 0,
            select: Selector {
                symbols: symbols.clone(),
                last: None,
            },
            speed,
        });
    }
    for i in &mut inputs {
        i.anchor_ts = anchor.unwrap_or(0);
    }
    Ok(inputs)
}

/// Parse `--from-time`: nanoseconds since the epoch, or an RFC 3339 time
/// (`2026-11-28T14:30:00.5Z`, `2026-11-28T15:30:00+01:00`).
pub fn time_arg(s: &str) -> Result<u64, String> {
    if let Ok(ns) = s.parse::<u64>() {
        return Ok(ns);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            format!(
                "`{s}`: nanoseconds since the epoch, or an RFC 3339 time such as 2026-11-28T14:30:00Z ({e})"
            )
        })?;
    u64::try_from(t.unix_timestamp_nanos()).map_err(|_| format!("`{s}`: before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_replayed_once_and_the_filter_counts_what_it_leaves_out() {
        let aaa = Symbol::new("AAA").unwrap();
        let bbb = Symbol::new("BBB").unwrap();
        let mut sel = Selector {
            symbols: Some([aaa].into_iter().collect()),
            last: None,
        };
        let mut st = ReplayStats::default();
        let kept: Vec<bool> = [
            (1, 1, aaa),
            (1, 2, bbb),
            (1, 2, aaa),
            (1, 3, aaa),
            (1, 1, aaa),
            (2, 1, aaa),
        ]
        .iter()
        .map(|&(session, seq, sym)| sel.keep(session, seq, &sym, &mut st))
        .collect();
        assert_eq!(kept, [true, false, false, true, false, true]);
        assert_eq!((st.duplicates, st.filtered), (2, 1));
    }

    #[test]
    fn from_time_takes_nanoseconds_or_rfc_3339() {
        assert_eq!(
            time_arg("1700000000000000000"),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(
            time_arg("2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(
            time_arg("2023-11-14T23:13:20.5+01:00"),
            Ok(1_700_000_000_500_000_000)
        );
        assert!(time_arg("yesterday").unwrap_err().contains("RFC 3339"));
        assert!(time_arg("1969-12-31T23:59:59Z").is_err());
    }
}
