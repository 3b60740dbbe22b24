//! The recorder's `--report-json`. Keys are a contract: add, never rename.

use crate::reader::Corruption;
use crate::recover::Recovered;
use serde::Serialize;
use std::collections::BTreeMap;

/// Why the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    /// Every stream sent end-of-stream.
    EndOfStream,
    /// `--duration` passed.
    Duration,
    /// SIGINT or SIGTERM.
    Signal,
    /// The Suicidal Snail croaked (exit 3).
    Snail,
    /// The disk filled up (exit 1); what was recorded is readable.
    DiskFull,
    /// A recorder thread failed otherwise (exit 1).
    Error,
}

/// What recovery did at start (`recovered_tail`), summed over streams.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RecoveredTail {
    /// Bytes truncated off torn tails (and half-created segments removed).
    pub truncated_bytes: u64,
    /// Valid entries in the verified last segments.
    pub valid_records: u64,
    /// Damaged stretches found and left in place (valid entries follow).
    pub corrupt: Vec<Corruption>,
    /// Per stream.
    pub streams: Vec<Recovered>,
}

/// One recorded stream.
#[derive(Clone, Debug, Serialize)]
pub struct StreamReport {
    /// Publisher id.
    pub publisher_id: u32,
    /// Stream id.
    pub stream_id: u16,
    /// Its directory.
    pub dir: String,
    /// The recorder thread that recorded it.
    pub recorder: usize,
    /// The session recorded last.
    pub session: u64,
    /// First data sequence of that session seen.
    pub first_seq: u64,
    /// Last data sequence accounted for.
    pub last_seq: u64,
    /// Data records recorded (on disk) this run.
    pub recorded: u64,
    /// Frames recorded this run.
    pub frames: u64,
    /// Bytes written this run.
    pub bytes: u64,
    /// Segment files of the stream after the run.
    pub segments: u64,
    /// Segments created this run.
    pub segments_created: u64,
    /// Sequence numbers never received.
    pub lost: u64,
    /// Records sent before the recorder joined.
    pub missed_before_join: u64,
    /// Records received twice (not recorded again).
    pub duplicates: u64,
    /// End-of-stream's last sequence, if it came.
    pub eos_last_seq: Option<u64>,
    /// Whether the session was recorded whole (docs/PROTOCOL.md 4).
    pub complete: bool,
}

/// The serve thread's counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServeReport {
    /// The bound endpoint.
    pub endpoint: String,
    /// Requests received.
    pub requests: u64,
    /// DATA messages sent.
    pub messages: u64,
    /// Frames sent.
    pub frames: u64,
    /// Bytes of frames sent.
    pub bytes: u64,
    /// Final replies by status.
    pub done: u64,
    /// See `done`.
    pub partial: u64,
    /// See `done`.
    pub not_available: u64,
    /// See `done`.
    pub bad_requests: u64,
    /// See `done`.
    pub busy: u64,
    /// Requests whose client went away.
    pub gone: u64,
    /// Damaged entries skipped while serving.
    pub corrupt: u64,
    /// The error that stopped it, if one did.
    pub error: Option<String>,
}

/// One recorder thread.
#[derive(Clone, Debug, Serialize)]
pub struct RecorderReport {
    /// Index.
    pub index: usize,
    /// Its `--connect`.
    pub endpoint: String,
    /// Frames received.
    pub frames: u64,
    /// Malformed frames.
    pub malformed: u64,
    /// Frames of duplicates only (not recorded).
    pub duplicate_frames: u64,
    /// Frames of a stream another thread records.
    pub foreign_frames: u64,
    /// Whether every stream it saw ended.
    pub ended: bool,
    /// What stopped it early.
    pub error: Option<String>,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `"shardcast-record"`.
    pub role: &'static str,
    /// Crate version.
    pub version: &'static str,
    /// Why the run ended.
    pub end_reason: EndReason,
    /// The recording directory.
    pub dir: String,
    /// Run time, s.
    pub elapsed_s: f64,
    /// Data records recorded (on disk) this run, all streams.
    pub recorded: u64,
    /// Recorded records per second of the run.
    pub recorded_per_sec: f64,
    /// Frames recorded this run.
    pub frames: u64,
    /// Sequence numbers never received (not recorded: gaps).
    pub lost: u64,
    /// Records sent before the recorder joined.
    pub missed_before_join: u64,
    /// Records received twice.
    pub duplicates: u64,
    /// Malformed frames (dropped, not recorded).
    pub malformed: u64,
    /// By reason (docs/PROTOCOL.md 9).
    pub malformed_reasons: BTreeMap<&'static str, u64>,
    /// Segment files in the recording after the run, all streams.
    pub segments: u64,
    /// Segments created this run.
    pub segments_created: u64,
    /// Bytes written this run.
    pub bytes: u64,
    /// Write system calls this run.
    pub writes: u64,
    /// Whether every stream seen was recorded whole (end-of-stream, no
    /// loss, count and checksum equal to the publisher's).
    pub streams_complete: bool,
    /// What start-up recovery did; `null` when the directory held no
    /// recording.
    pub recovered_tail: Option<RecoveredTail>,
    /// Largest lag seen at receive, ms.
    pub max_lag_ms: f64,
    /// The snail's limit, ms.
    pub max_lag_limit_ms: u64,
    /// Records over the limit.
    pub slow: u64,
    /// Data records with implausible send times (not judged).
    pub ts_future: u64,
    /// See `ts_future`.
    pub ts_ancient: u64,
    /// End-of-stream from a source nothing else came from (not obeyed).
    pub eos_unknown: u64,
    /// The croak, when the snail croaked.
    pub snail: Option<SnailReport>,
    /// Per stream.
    pub streams: Vec<StreamReport>,
    /// Per recorder thread.
    pub recorders: Vec<RecorderReport>,
    /// `--serve`, when given.
    pub serve: Option<ServeReport>,
    /// The first error, if any (disk full names the file).
    pub error: Option<String>,
}

/// The croak.
#[derive(Clone, Debug, Serialize)]
pub struct SnailReport {
    /// The lag, ms.
    pub lag_ms: f64,
    /// The recorder thread.
    pub recorder: usize,
    /// The record.
    pub publisher_id: u32,
    /// See `publisher_id`.
    pub stream_id: u16,
    /// See `publisher_id`.
    pub seq: u64,
}

impl Report {
    /// One line for stdout.
    pub fn summary(&self) -> String {
        format!(
            "shardcast-record: {:?}: recorded {} records ({} frames, {} bytes) in {:.3} s \
             ({:.0}/s), lost {}, segments {}, streams complete: {}",
            self.end_reason,
            self.recorded,
            self.frames,
            self.bytes,
            self.elapsed_s,
            self.recorded_per_sec,
            self.lost,
            self.segments,
            self.streams_complete
        )
    }
}
