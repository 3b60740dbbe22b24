//! The subscriber's JSON report. Key names are a contract (benchmarks and
//! other tools parse them): add keys, never rename or drop one.

use crate::shard::{CaughtUp, Recovery};
pub use crate::snapshot::{EndReason, Placement, QueueState};
use serde::Serialize;
use shardcast_agent::lag::OnSlow;
use shardcast_agent::stats::LatencySummary;
use shardcast_agent::watch::AgentKind;
use shardcast_proto::seq::Counters;
use shardcast_proto::snail::LagMode;
use std::collections::BTreeMap;

/// The whole report (`--report-json`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Always "shardcast-sub".
    pub role: &'static str,
    /// Crate version.
    pub version: &'static str,
    /// `--id`: the name this subscriber announced to its publishers and
    /// relays (presence); `null` without it.
    pub id: Option<String>,
    /// Why the run ended: end-of-stream, duration, signal, snail, error.
    pub end_reason: EndReason,
    /// `received`, `lost`, `duplicates`, `out_of_order`,
    /// `missed_before_join`, `restarts`: summed over every stream (see
    /// [`Counters`] for each).
    #[serde(flatten)]
    pub counters: Counters,
    /// Frames that were not valid shardcast frames.
    pub malformed: u64,
    /// `malformed` by reason.
    pub malformed_reasons: BTreeMap<&'static str, u64>,
    /// Records refused because too many sources were tracked.
    pub refused_sources: u64,
    /// Valid records with implausible fields, by reason, each counted where
    /// it was caught: `seq_jump` (an unconfirmed sequence jump of more than
    /// 2^32, a session's first record included: dropped; or a first record
    /// or a jump of 1024 or more taken on trust that the session's next
    /// record contradicted: undone, see PROTOCOL.md 4), `ts_future` (a
    /// send time further ahead of our clock than --max-clock-skew-ms:
    /// delivered, not timed or judged), `ts_ancient` (a send time older
    /// than max(1 h, the shard's run) plus --max-clock-skew-ms: delivered,
    /// not timed or judged), `session_unconfirmed` (a record of another
    /// session that no next record of it confirmed as a restart: data
    /// delivered in no session, control ignored), `eos_unknown` (an
    /// end-of-stream from a source that sent nothing else: ignored),
    /// `unknown_symbol` (a new symbol past --max-symbols: not booked),
    /// `refused_source` (past the 4096 sources a shard tracks: dropped),
    /// `wrong_kind` (a data record the work cannot use: a synthetic quote
    /// or trade under `--work itch-book`, an ITCH record under `--work
    /// book`: processed, skipped by the book).
    pub suspect_reasons: BTreeMap<&'static str, u64>,
    /// Records processed by workers.
    pub processed: u64,
    /// Records whose intended send time lay after their completion (the
    /// publisher's clock is ahead of ours); timed as 1 ns.
    pub clock_ahead: u64,
    /// Seconds from the first to the last data record received.
    pub elapsed_s: f64,
    /// `received / elapsed_s`.
    pub msgs_per_sec: f64,
    /// End-of-stream seen and checksum verified on every stream.
    pub streams_complete: bool,
    /// Per (publisher, stream).
    pub streams: Vec<StreamReport>,
    /// Per shard.
    pub shards: Vec<AgentReport>,
    /// Per shard, its connection's history (libzmq's socket monitor).
    pub links: Vec<crate::links::LinkReport>,
    /// Per worker.
    pub workers: Vec<AgentReport>,
    /// Latency by stage, ns.
    pub latency_ns: BTreeMap<&'static str, LatencySummary>,
    /// Messages over the lag limit.
    pub slow: SlowReport,
    /// The Suicidal Snail's croak, or null.
    pub snail: Option<SnailReport>,
    /// `--recover-from`: records missing on the wire and repaired before
    /// the workers saw past them, over every stream (0 without it). `lost`
    /// is what the workers never got, so `lost + recovered` is what the
    /// wire lost. `latency_ns.recovery` times each repair, gap detected to
    /// repaired.
    pub recovered: u64,
    /// Symbols whose book a missed record made wrong, by name, sorted (the
    /// first 1000): the worker that owns a symbol sees a jump in its
    /// per-symbol sequence (PROTOCOL.md 4) where a record of it was lost
    /// and not repaired; `--books-out` marks them `stale: true`. Empty
    /// without `--work book`/`itch-book`, or from a publisher that does not
    /// carry per-symbol sequences.
    pub stale_symbols: Vec<String>,
    /// How many symbols are stale (all of them, listed or not).
    pub stale_symbol_count: u64,
    /// `--recover-from`: whether it was on (the endpoints, in order).
    pub recover_from: Vec<String>,
    /// Sum of the workers' checksums (`--work checksum`): equals the sum of
    /// the publishers' stream checksums when every record was processed once.
    pub processed_checksum: Option<u64>,
    /// Workers processed everything the shards forwarded before stopping
    /// (false after a --drain-timeout-ms expiry).
    pub drained: bool,
    /// Data records received during `--warmup` (counted, not timed).
    pub warmup_records: u64,
    /// Every output file asked for (`--hgrm`, `--hdr-log`, `--plot`) was
    /// written.
    pub files_ok: bool,
    /// Where every thread was last seen running.
    pub placement: Vec<Placement>,
    /// `--work itch-book`: what the ITCH books counted, summed over
    /// workers (null for other work).
    pub itch: Option<ItchReport>,
}

/// The ITCH books' counters (`--work itch-book`), summed over workers. Each
/// symbol lives on one worker, so `symbols` and `live_orders` are exact
/// totals. Market-wide messages (stock locate 0) reach the subscriber once
/// per stream, so `messages` counts them once per stream too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ItchReport {
    /// ITCH records applied to a book.
    pub messages: u64,
    /// Of them, of a type ITCH 5.0 does not define (skipped).
    pub unknown_type: u64,
    /// Of them, a length that disagrees with the type's (skipped).
    pub malformed: u64,
    /// `E`, `C`, `X`, `D`, `U` naming an order that is not live: counted,
    /// nothing changed (a lost record shows here as well as in `lost`).
    pub unknown_order: u64,
    /// Adds reusing a live order reference (the old order is replaced).
    pub duplicate_order: u64,
    /// Executions or cancels of more shares than the order had left.
    pub overfill: u64,
    /// Adds or trades whose side is neither `B` nor `S` (skipped).
    pub bad_side: u64,
    /// Symbols with a book (`--books-out` entries).
    pub symbols: u64,
    /// Orders resting at the end, all symbols.
    pub live_orders: u64,
}

/// One (publisher, stream) as seen by one shard.
#[derive(Clone, Debug, Serialize)]
pub struct StreamReport {
    /// Shard that received it.
    pub shard: usize,
    /// Publisher id.
    pub publisher_id: u32,
    /// Stream id.
    pub stream_id: u16,
    /// Latest session id.
    pub session: u64,
    /// First sequence seen in the latest session.
    pub first_seq: u64,
    /// Highest sequence accounted for.
    pub last_seq: u64,
    /// Counters of this stream, cumulative over its sessions.
    #[serde(flatten)]
    pub counters: Counters,
    /// End-of-stream received for the latest session.
    pub eos: bool,
    /// The publisher's last sequence, from end-of-stream.
    pub eos_last_seq: Option<u64>,
    /// The checksum matched the publisher's.
    pub checksum_ok: bool,
    /// Received whole.
    pub complete: bool,
    /// `--catch-up`: what the recorder gave this stream from before the
    /// subscriber joined (absent when it was not caught up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caught_up: Option<CaughtUp>,
    /// `--recover-from`: records missing on the wire and repaired (0
    /// without it); `lost + recovered` is what the wire lost.
    pub recovered: u64,
    /// `--recover-from`: what the repairs of this stream did (absent when
    /// it had no gap or recovery is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

/// A shard or worker.
#[derive(Clone, Debug, Serialize)]
pub struct AgentReport {
    /// Thread name (`shard-0`, `worker-1`).
    pub name: String,
    /// CPU it was pinned to.
    pub cpu: Option<usize>,
    /// Records forwarded (shard) or processed (worker).
    pub records: u64,
    /// Frames received.
    pub frames: u64,
    /// Records older than the lag limit.
    pub slow: u64,
    /// Largest age seen, ns.
    pub max_lag_ns: u64,
    /// Worker checksum (`--work checksum`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<u64>,
    /// Shard endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The libzmq error that stopped this agent early, if one did.
    pub error: Option<String>,
    /// Frames this agent could not read: a shard's malformed frames (all
    /// reasons), a worker's unreadable inproc messages (0 unless something
    /// is badly wrong inside this process).
    pub malformed: u64,
    /// Records it handled during `--warmup` (counted, not timed).
    pub warmup_records: u64,
    /// A shard with `--connect-b`: what each line delivered, lost and gave
    /// first, and the skew between them (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<crate::shard::LinesReport>,
}

/// Lag over the limit, croak or not.
#[derive(Clone, Debug, Serialize)]
pub struct SlowReport {
    /// Records over the limit, all stages.
    pub count: u64,
    /// Largest age seen, ns.
    pub max_lag_ns: u64,
    /// The limit, ms.
    pub max_lag_ms: u64,
    /// croak or warn.
    pub on_slow: OnSlow,
    /// Lag mode: `absolute` or `relative` (--snail-mode).
    pub mode: LagMode,
    /// Relative mode: the floor's window, seconds (null in absolute mode).
    pub window_s: Option<f64>,
}

/// The croak.
#[derive(Clone, Debug, Serialize)]
pub struct SnailReport {
    /// shard or worker.
    pub stage: AgentKind,
    /// The agent (`worker-1`).
    pub agent: String,
    /// The message's age, ns.
    pub lag_ns: u64,
    /// The limit, ms.
    pub max_lag_ms: u64,
    /// Lag mode.
    pub mode: LagMode,
    /// Publisher of the late message.
    pub publisher_id: u32,
    /// Its stream.
    pub stream_id: u16,
    /// Its sequence.
    pub seq: u64,
    /// Its symbol.
    pub symbol: String,
    /// When it was seen, ns since the epoch.
    pub at_ns: u64,
    /// `record`: a record's age was over the limit (the fields above are
    /// that record's); `watchdog`: the worker took no record for longer than
    /// the limit while records waited for it (`lag_ns` is how long; the
    /// record fields are zero).
    pub detected_by: &'static str,
    /// Queue state when the alarm was raised.
    pub queues: Vec<QueueState>,
}

/// `--snail-report`: what a person needs to tell why the subscriber fell
/// behind, written before the subscriber exits with code 3.
#[derive(Clone, Debug, Serialize)]
pub struct Forensics {
    /// Always "shardcast.snail_report".
    pub kind: &'static str,
    /// Format version (1).
    pub version: u32,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// The croak: stage, agent, lag, mode, the record, and the queues at
    /// the moment the monitor saw it.
    pub snail: SnailReport,
    /// Queue bounds in force.
    pub hwm: HwmReport,
    /// Every stream's counters and last sequence, after the shards stopped.
    pub streams: Vec<StreamReport>,
    /// Per shard and worker: records, frames, slow count, largest lag.
    pub shards: Vec<AgentReport>,
    /// See `shards`.
    pub workers: Vec<AgentReport>,
    /// Per shard, the connection's history.
    pub links: Vec<crate::links::LinkReport>,
    /// The last seconds before the croak, one entry per second, oldest
    /// first: latency by stage (ns).
    pub recent_latency: Vec<RecentLatency>,
    /// The whole run's latency by stage (ns).
    pub latency_ns: BTreeMap<&'static str, LatencySummary>,
    /// Where each named thread last ran.
    pub placement: Vec<Placement>,
}

/// The queue bounds a run used.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct HwmReport {
    /// ZMQ_RCVHWM of each shard's SUB, messages (0: none).
    pub rcvhwm: i32,
    /// ZMQ_RCVBUF of each shard's SUB, bytes (0: the OS default).
    pub rcvbuf: i32,
    /// HWM at each end of each inproc hop, messages.
    pub inproc_hwm: i32,
    /// Most frames packed into one inproc message.
    pub coalesce: usize,
    /// ZMQ_MAXMSGSZ, bytes.
    pub max_msg_size: i64,
}

/// One second of latency.
#[derive(Clone, Debug, Serialize)]
pub struct RecentLatency {
    /// Start of the second, ns since the epoch.
    pub start_ns: u64,
    /// By stage.
    pub stages: BTreeMap<&'static str, LatencySummary>,
}
