//! The relay's report (`--report-json`) and its summary line. Key names
//! are a contract: add, never rename or drop.

use serde::Serialize;
use shardcast_agent::presence::PresenceReport;
use shardcast_agent::presence::{NamedSubscriber, StreamEvent};
use shardcast_agent::stats::LatencySummary;
use shardcast_publisher::peers::PeerReport;
use std::collections::BTreeMap;

/// Why the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    /// Every stream ended (`--on-eos exit`).
    EndOfStream,
    /// `--duration` passed.
    Duration,
    /// SIGINT or SIGTERM.
    Signal,
    /// The Suicidal Snail croaked (exit 3).
    Snail,
    /// A socket failed (exit 1).
    Error,
}

/// One source (publisher and stream) seen by a hop.
#[derive(Clone, Debug, Serialize)]
pub struct StreamReport {
    /// Publisher id.
    pub publisher_id: u32,
    /// Stream id.
    pub stream_id: u16,
    /// The hop that relayed it.
    pub hop: usize,
    /// Its session (the last one seen).
    pub session: u64,
    /// First data sequence seen.
    pub first_seq: u64,
    /// Last data sequence seen.
    pub last_seq: u64,
    /// Data records the relay missed (gaps in the sequence).
    pub lost: u64,
    /// Records before the relay joined.
    pub missed_before_join: u64,
    /// Duplicates received.
    pub duplicates: u64,
    /// Whether end-of-stream came and everything before it was received
    /// with the checksum matching (as `shardcast-sub`'s `complete`).
    pub complete: bool,
}

/// One hop (an upstream stream and its downstream endpoint).
#[derive(Clone, Debug, Serialize)]
pub struct HopReport {
    /// Index.
    pub index: usize,
    /// Upstream endpoint.
    pub connect: String,
    /// Downstream endpoint as bound (the OS's port for `:*`).
    pub bind: String,
    /// Frames received.
    pub frames_in: u64,
    /// Frames forwarded.
    pub frames_out: u64,
    /// New data records received.
    pub records: u64,
    /// Malformed frames dropped.
    pub malformed: u64,
    /// Multipart messages forwarded whole.
    pub multipart: u64,
    /// Sends that found a downstream queue full (`--when-full block`).
    pub blocked: u64,
    /// Time waiting for downstream room, ns.
    pub blocked_ns: u64,
    /// Seconds from start to the first upstream subscription (null: never).
    pub subscribed_after_s: Option<f64>,
    /// Times it subscribed upstream.
    pub announcements: u64,
    /// Subscription messages sent upstream.
    pub upstream_subscriptions: u64,
    /// Downstream subscribers counted at the end.
    pub subscribers: u64,
    /// Most downstream subscribers at once.
    pub max_subscribers: u64,
    /// What the downstream defences refused or ignored.
    pub peers: PeerReport,
    /// Named downstream subscribers of this hop.
    pub presence: PresenceReport,
    /// Whether every source it saw ended.
    pub ended: bool,
    /// What stopped it early.
    pub error: Option<String>,
}

/// The snail's verdict.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SnailReport {
    /// How far behind, ms.
    pub lag_ms: f64,
    /// The hop.
    pub hop: usize,
    /// The record's publisher.
    pub publisher_id: u32,
    /// Its stream.
    pub stream_id: u16,
    /// Its sequence.
    pub seq: u64,
    /// True when a frame was held back downstream that long (`--when-full
    /// block`), false when a record arrived that late.
    pub held_downstream: bool,
}

/// Retransmission pass-through.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RetransmitReport {
    /// Downstream endpoint as bound.
    pub endpoint: String,
    /// Where requests went.
    pub from: String,
    /// Requests received.
    pub requests: u64,
    /// Requests passed upstream.
    pub forwarded: u64,
    /// Reply messages passed back.
    pub replies: u64,
    /// Requests answered BUSY by the relay (the peer's limit).
    pub busy: u64,
    /// Requests answered BAD_REQUEST by the relay (unreadable).
    pub bad_requests: u64,
    /// Replies for requests the relay no longer knew (late, or forged).
    pub orphan_replies: u64,
    /// Requests given up without a final reply (the server never answered).
    pub expired: u64,
    /// What stopped the proxy, if anything did.
    pub error: Option<String>,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `"shardcast-relay"`.
    pub role: &'static str,
    /// Version.
    pub version: &'static str,
    /// `--id`.
    pub id: Option<String>,
    /// Why it ended.
    pub end_reason: EndReason,
    /// Seconds run.
    pub elapsed_s: f64,
    /// New data records received (all hops).
    pub received: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Frames forwarded.
    pub frames_out: u64,
    /// Records missed (sequence gaps), all sources.
    pub lost: u64,
    /// Records before the relay joined.
    pub missed_before_join: u64,
    /// Duplicates received.
    pub duplicates: u64,
    /// Malformed frames dropped.
    pub malformed: u64,
    /// Malformed frames by reason.
    pub malformed_reasons: BTreeMap<&'static str, u64>,
    /// Whether every source seen completed.
    pub streams_complete: bool,
    /// Largest lag seen, ms.
    pub max_lag_ms: f64,
    /// `--max-lag-ms`.
    pub max_lag_limit_ms: u64,
    /// Records over the lag limit (and frames held back past it).
    pub slow: u64,
    /// Records whose send time was too far ahead (not judged).
    pub ts_future: u64,
    /// Records older than the relay could have been sent (not judged).
    pub ts_ancient: u64,
    /// End-of-stream records from sources nothing else came from.
    pub eos_unknown: u64,
    /// The snail's verdict, when it croaked.
    pub snail: Option<SnailReport>,
    /// Age of records when they reached the relay (intended send time to
    /// receipt), ns: the upstream part of the end-to-end latency.
    pub latency_ns: BTreeMap<&'static str, LatencySummary>,
    /// Named subscribers present at the end, over every hop, as the
    /// publisher's (`streams` are the hops they are on).
    pub subscribers: Vec<NamedSubscriber>,
    /// Every connect and disconnect, in time order, each with its hop
    /// (`stream`).
    pub subscriber_events: Vec<StreamEvent>,
    /// Events past the bound a hop keeps, not listed.
    pub subscriber_events_dropped: u64,
    /// `--expect-subscribers` ids missing at the end on some hop, in the
    /// order given.
    pub missing_subscribers: Vec<String>,
    /// Per source.
    pub streams: Vec<StreamReport>,
    /// Per hop.
    pub hops: Vec<HopReport>,
    /// `--retransmit-bind`.
    pub retransmit: Option<RetransmitReport>,
    /// CURVE downstream (`--curve-secret-key`): handshakes allowed and
    /// refused, and who was refused; null in plain text.
    pub security: Option<shardcast_agent::curve::ZapReport>,
    /// The first error, if any.
    pub error: Option<String>,
}

impl Report {
    /// The one-line summary printed at the end.
    pub fn summary(&self) -> String {
        format!(
            "shardcast-relay: ended by {}; {} hop(s): received {} records, forwarded {} frames in {:.3} s; \
             lost {}, duplicates {}, malformed {}; streams complete: {}; subscribers at the end: {}; \
             arrival {}",
            serde_json::to_value(self.end_reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            self.hops.len(),
            self.received,
            self.frames_out,
            self.elapsed_s,
            self.lost,
            self.duplicates,
            self.malformed,
            self.streams_complete,
            self.hops.iter().map(|h| h.subscribers).sum::<u64>(),
            self.latency_ns
                .get("arrival")
                .map(LatencySummary::line)
                .unwrap_or_default()
        )
    }
}
