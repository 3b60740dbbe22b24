//! The publisher's report (`--report-json`) and its assembly from the
//! streams' results. Keys and their values are a contract: add, never
//! rename or drop.

use crate::config::{Config, WhenFull};
use crate::stream::StreamResult;
use serde::{Serialize, Serializer};
use shardcast_agent::curve::{PublicKey, ZapReport};
use shardcast_agent::stats::{self, LatencySummary};

/// Why a stream, and the run, ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// `--count` messages were sent.
    Count,
    /// `--duration` passed.
    Duration,
    /// SIGINT or SIGTERM.
    Signal,
    /// `--wait-timeout` passed before enough subscribers came (the run
    /// fails with exit 1; its report, nothing sent, is still written).
    WaitTimeout,
}

impl EndReason {
    /// The name in the report (`end_reason`), the summary line and the
    /// end-phase line: the one table of these names.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Count => "count",
            EndReason::Duration => "duration",
            EndReason::Signal => "signal",
            EndReason::WaitTimeout => "wait-timeout",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// By hand rather than derived with renames, so `as_str` stays the only list
// of names (a report value and a log line cannot drift apart).
impl Serialize for EndReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One stream's results.
#[derive(Clone, Debug, Serialize)]
pub struct StreamReport {
    /// Stream id.
    pub stream_id: usize,
    /// Bound endpoint (resolved, e.g. the OS-chosen port).
    pub endpoint: String,
    /// Data messages sent.
    pub sent: u64,
    /// ZeroMQ frames sent (batches count once).
    pub frames: u64,
    /// Of `frames`, those holding more than one record (batch frames).
    pub batched_frames: u64,
    /// `--when-full block`: sends that found a subscriber's queue full and
    /// waited for room (0 in drop mode, where such a frame is dropped for
    /// that subscriber instead, unseen here).
    pub blocked: u64,
    /// `--when-full block`: total time those sends waited, ns.
    pub blocked_ns: u64,
    /// `--when-full block`: records of a frame still waiting for room when
    /// a signal stopped the stream (counted in `sent` and the checksum, so
    /// subscribers see the run as incomplete, which it is). 0 otherwise.
    pub unsent_at_stop: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Last data sequence.
    pub last_seq: u64,
    /// Checksum of every data record sent (also in end-of-stream).
    pub checksum: u64,
    /// End-of-stream frames sent (it is repeated until subscribers leave);
    /// 0 when the stream never started (stopped before its start).
    pub eos_sent: u64,
    /// Every counted subscriber unsubscribed after end-of-stream, i.e. had
    /// it, within --eos-timeout-ms (true as well when none was connected;
    /// always false on pgm/epgm streams, whose receivers cannot answer, and
    /// on a stream that never started, which sends no end-of-stream).
    pub eos_acknowledged: bool,
    /// Shardcast subscribers (control-topic subscriptions) still subscribed
    /// when the stream finished: 0 once every one had end-of-stream.
    pub subscribers: i64,
    /// Frames libzmq refused for a reason other than the HWM (which it
    /// never reports): out of memory, a terminated context. 0 normally.
    pub send_errors: u64,
    /// Connections and subscription events this stream refused or ignored
    /// (forged unsubscribes, subscription floods, too many connections from
    /// one address).
    pub peers: crate::peers::PeerReport,
}

/// The publisher's report (`--report-json`). Keys are a contract.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Always "shardcast-pub".
    pub role: &'static str,
    /// Crate version.
    pub version: &'static str,
    /// Why it ended: "count", "duration", "signal", or "wait-timeout" (the
    /// run failed, exit 1, before sending anything).
    pub end_reason: EndReason,
    /// Publisher id.
    pub publisher_id: u32,
    /// Session id.
    pub session: u64,
    /// Data messages sent, all streams.
    pub sent: u64,
    /// Seconds from the first due time to the last send.
    pub elapsed_s: f64,
    /// `sent / elapsed_s`.
    pub msgs_per_sec: f64,
    /// Target rate (0: flat out).
    pub rate: u64,
    /// `--when-full`: "drop" or "block".
    pub when_full: WhenFull,
    /// How late messages were sent relative to their intended time, ns
    /// (all zero when flat out: there is no schedule to fall behind).
    pub behind_schedule_ns: LatencySummary,
    /// `behind_schedule_ns.max` in ms.
    pub max_behind_ms: f64,
    /// Per stream.
    pub streams: Vec<StreamReport>,
    /// How the streams were protected, and whom the ZAP handler let in.
    pub security: Security,
}

/// The report's `security` section.
#[derive(Clone, Debug, Serialize)]
pub struct Security {
    /// "curve" (encrypted, subscribers authenticated) or "plain".
    pub mechanism: &'static str,
    /// Our CURVE public key, for subscribers' --curve-server-key.
    pub server_public_key: Option<PublicKey>,
    /// Keys in --curve-allow.
    pub allowed_keys: usize,
    /// Handshakes the ZAP handler allowed and refused, and the refused
    /// peers. Plain-text streams go through it too (it names every
    /// connection, see `peers`), so these are there either way; on a
    /// plain-text stream nothing speaking ZMTP 3 with NULL is refused.
    #[serde(flatten)]
    pub zap: Option<ZapReport>,
}

impl Report {
    /// Build the report from every stream's result, in stream order.
    pub(crate) fn assemble(
        cfg: &Config,
        session: u64,
        results: Vec<StreamResult>,
        zap: Option<ZapReport>,
    ) -> Report {
        let mut behind = stats::new_histogram();
        let mut first_due = u64::MAX;
        let mut last_send = 0;
        for r in &results {
            let _ = behind.add(&r.behind);
            if r.report.sent > 0 {
                first_due = first_due.min(r.first_due_ns);
                last_send = last_send.max(r.last_send_ns);
            }
        }
        let sent: u64 = results.iter().map(|r| r.report.sent).sum();
        let elapsed_s = if last_send > first_due {
            (last_send - first_due) as f64 / 1e9
        } else {
            0.0
        };
        let behind_summary = LatencySummary::of(&behind);
        // The first stream's reason stands for the run (they share one
        // schedule; a signal reaches all of them).
        let end_reason = results.first().map_or(EndReason::Count, |r| r.end_reason);
        Report {
            role: "shardcast-pub",
            version: env!("CARGO_PKG_VERSION"),
            end_reason,
            publisher_id: cfg.publisher_id,
            session,
            sent,
            elapsed_s,
            msgs_per_sec: if elapsed_s > 0.0 {
                sent as f64 / elapsed_s
            } else {
                0.0
            },
            rate: cfg.rate,
            when_full: cfg.when_full,
            behind_schedule_ns: behind_summary,
            max_behind_ms: behind_summary.max as f64 / 1e6,
            streams: results.into_iter().map(|r| r.report).collect(),
            security: Security {
                mechanism: if cfg.curve.is_some() {
                    "curve"
                } else {
                    "plain"
                },
                server_public_key: cfg.curve.as_ref().map(|c| c.keys.public),
                allowed_keys: cfg.curve.as_ref().map_or(0, |c| c.allow.len()),
                zap,
            },
        }
    }

    /// The human summary printed at the end.
    pub fn summary(&self) -> String {
        format!(
            "shardcast-pub: ended by {}; sent {} msgs on {} streams in {:.3} s = {:.0} msg/s (target {}); \
             behind schedule p99 {:.1} us, max {:.1} us",
            self.end_reason,
            self.sent,
            self.streams.len(),
            self.elapsed_s,
            self.msgs_per_sec,
            if self.rate == 0 {
                "flat out".to_string()
            } else {
                format!("{} msg/s", self.rate)
            },
            self.behind_schedule_ns.p99 as f64 / 1e3,
            self.behind_schedule_ns.max as f64 / 1e3,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_reasons_keep_their_report_names() {
        for (r, name) in [
            (EndReason::Count, "count"),
            (EndReason::Duration, "duration"),
            (EndReason::Signal, "signal"),
            (EndReason::WaitTimeout, "wait-timeout"),
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), name);
            assert_eq!(r.to_string(), name);
        }
    }
}
