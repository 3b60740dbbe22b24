//! The publisher's report (`--report-json`) and its assembly from the
//! streams' results. Keys and their values are a contract: add, never
//! rename or drop.

use crate::config::{Config, WhenFull};
use crate::reader::SourceOutcome;
use crate::replay::ReplayStats;
use crate::schedule::Speed;
use crate::stream::StreamResult;
use crate::tenths::Tenths;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use shardcast_agent::curve::{PublicKey, ZapReport};
use shardcast_agent::presence::PresenceReport;
pub use shardcast_agent::presence::{MergedPresence, NamedSubscriber, StreamEvent};
use shardcast_agent::stats::{self, LatencySummary};
use std::collections::BTreeMap;
use std::path::Path;

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
    /// The source ended (an ITCH file's last message, or `--count`
    /// messages of it, were sent).
    EndOfSource,
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
            EndReason::EndOfSource => "end-of-source",
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
    /// Named subscribers (`shardcast-sub --id`) as the stream's sending
    /// ended, before its end phase (whose departures, subscribers leaving
    /// with end-of-stream, are the run's normal end): `subscribers` (id,
    /// address, since, connections), `subscriber_events` (every connect
    /// and disconnect until then), `subscriber_events_dropped`,
    /// `missing_subscribers` (`--expect-subscribers` ids not there),
    /// `presence_ignored`.
    pub presence: PresenceReport,
    /// `--retransmit-bind`: what this stream's ring held at the end (the
    /// last records sent, as sent); `null` when the service is off.
    pub retransmit: Option<crate::retransmit::RingReport>,
    /// `--bind-b`: what went on the stream's other line(s); `null` when
    /// the stream has only line A (whose counts are the keys above).
    pub lines: Option<Lines>,
}

/// A stream's lines besides A (report `streams[].lines`).
#[derive(Clone, Debug, Serialize)]
pub struct Lines {
    /// Line B (`--bind-b`).
    pub b: LineReport,
}

/// One line of a stream.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LineReport {
    /// Its bound endpoint.
    pub endpoint: String,
    /// Data frames handed to its socket.
    pub sent: u64,
    /// Data records in them.
    pub records: u64,
    /// Heartbeats and end-of-stream handed to it.
    pub control: u64,
    /// Frames its socket refused (an error other than a subscriber's HWM,
    /// where libzmq drops for that subscriber unseen, as on line A).
    pub dropped: u64,
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
    /// Target rate (0: flat out, and with an ITCH source, which has its
    /// own timing).
    pub rate: u64,
    /// `--speed` of an ITCH source: a number (1: the file's own timing) or
    /// "max"; `null` for the synthetic feed.
    pub speed: Option<Speed>,
    /// `--when-full`: "drop" or "block".
    pub when_full: WhenFull,
    /// How late messages were sent relative to their intended time, ns
    /// (all zero when flat out: there is no schedule to fall behind).
    pub behind_schedule_ns: LatencySummary,
    /// `behind_schedule_ns.max` in ms.
    pub max_behind_ms: f64,
    /// An ITCH source at a numeric `--speed`: `behind_schedule_ns` of the
    /// records due in the first tenth of the run (by due time; whole
    /// sixteenths to thirty-seconds of it, see `publisher::tenths`), to
    /// compare with the last tenth's; `null` otherwise.
    pub behind_schedule_first_tenth_ns: Option<LatencySummary>,
    /// The same for the last tenth of the run.
    pub behind_schedule_last_tenth_ns: Option<LatencySummary>,
    /// Per stream.
    pub streams: Vec<StreamReport>,
    /// How the streams were protected, and whom the ZAP handler let in.
    pub security: Security,
    /// Where the messages came from, and what the source held.
    pub source: SourceReport,
    /// The retransmission service (`--retransmit-bind`): what it was asked
    /// and what it answered; `null` when off.
    pub retransmit: Option<crate::retransmit::RetransmitReport>,
    /// Named subscribers (`shardcast-sub --id`) present as sending ended,
    /// over every stream, by id (each stream's in `streams[].presence`).
    pub subscribers: Vec<NamedSubscriber>,
    /// Every stream's connects and disconnects of named subscribers, in
    /// time order (`at`, then stream), each with its `stream`.
    pub subscriber_events: Vec<StreamEvent>,
    /// Events past the bound a stream keeps, not listed (all streams).
    pub subscriber_events_dropped: u64,
    /// `--expect-subscribers` ids missing on some stream as sending ended,
    /// in the order given.
    pub missing_subscribers: Vec<String>,
}

/// The report's `source` section.
#[derive(Clone, Debug, Serialize)]
pub struct SourceReport {
    /// "synthetic" (the seeded feed: no other keys), "itch" (a day file),
    /// "moldudp64" (a live feed), "recording" (a replay).
    pub kind: &'static str,
    /// What an ITCH source held and where it went.
    #[serde(flatten)]
    pub itch: Option<ItchSourceReport>,
    /// What a replay read and played.
    #[serde(flatten)]
    pub recording: Option<RecordingSourceReport>,
}

/// A replay's counts (`--source recording:DIR`), in the report's `source`.
#[derive(Clone, Debug, Serialize)]
pub struct RecordingSourceReport {
    /// The recording.
    pub dir: String,
    /// Data records replayed, all streams.
    pub records: u64,
    /// Recorded frames read.
    pub frames: u64,
    /// Records left out as already replayed (same session and sequence).
    pub duplicates: u64,
    /// Records left out by `--symbols`.
    pub filtered: u64,
    /// Damaged entries the reader skipped (never replayed).
    pub corrupt: u64,
    /// Per stream, in stream order: the recorded stream it played and its
    /// counts.
    pub streams: Vec<ReplayStreamReport>,
}

/// One stream of a replay.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayStreamReport {
    /// The recorded publisher id.
    pub recorded_publisher_id: u32,
    /// The recorded stream id.
    pub recorded_stream_id: u16,
    /// Its counts.
    #[serde(flatten)]
    pub stats: ReplayStats,
}

/// The counts of an ITCH source, in the report's `source` section. Every
/// complete message is one of: a known type at its fixed length, an unknown
/// type, or malformed; `messages == sum(by_type) + malformed - truncated`.
#[derive(Clone, Debug, Serialize)]
pub struct ItchSourceReport {
    /// Complete messages read (length prefix and all the bytes it
    /// announced), whatever their type; the truncated tail is not one.
    pub messages: u64,
    /// Bytes of ITCH read (prefixes included; after gzip).
    pub bytes: u64,
    /// Complete messages by type letter (`"A"`; a type byte that is not a
    /// printable character as `"0x01"`), unknown types included, malformed
    /// frames not. Types with none are left out.
    pub by_type: BTreeMap<String, u64>,
    /// Messages of a type ITCH 5.0 does not define: skipped, never sent.
    pub unknown_types: u64,
    /// `unknown_types` by type byte, keyed as `by_type`.
    pub unknown_by_type: BTreeMap<String, u64>,
    /// Frames not sent because they cannot be trusted: a known type whose
    /// length disagrees with its fixed length, an empty frame, or a
    /// truncated last message.
    pub malformed: u64,
    /// Of `malformed`: the input ended inside a message.
    pub truncated: u64,
    /// The first and last ITCH timestamp read (ns since midnight; `null`
    /// when none).
    pub first_ts: Option<u64>,
    /// See `first_ts`.
    pub last_ts: Option<u64>,
    /// `(last_ts - first_ts)` in seconds: what `--speed 1` takes.
    pub span_s: f64,
    /// The timestamp due at the start (the first message sent): the
    /// `--speed` schedule's anchor.
    pub anchor_ts: Option<u64>,
    /// Locate codes a Stock Directory (`R`) named.
    pub symbols: u64,
    /// Messages routed to the one stream that owns their symbol.
    pub routed: u64,
    /// Market-wide messages (stock locate 0), each sent on every stream as
    /// symbol `~MARKET`.
    pub market_wide: u64,
    /// Messages of a known type whose locate code no `R` had named: not
    /// sent.
    pub unrouted: u64,
    /// Records handed to the streams: `routed + market_wide x streams`,
    /// less `dropped`.
    pub published: u64,
    /// Messages not handed over because their stream had already ended
    /// (`--duration`, a signal).
    pub dropped: u64,
    /// How reading ended: "end" (the whole source), "count" (`--count`
    /// messages), "stopped" (every stream ended first), "error".
    pub end: &'static str,
    /// The read error that ended it (a corrupt gzip stream), or `null`.
    pub error: Option<String>,
    /// The source's own keys (a file's `path` and `gzip`).
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

/// A type byte as a report key: the letter, or `0xNN` when not printable.
fn type_key(b: u8) -> String {
    if b.is_ascii_graphic() {
        char::from(b).to_string()
    } else {
        format!("0x{b:02x}")
    }
}

fn by_type(counts: &[u64; 256]) -> BTreeMap<String, u64> {
    counts
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(t, &n)| (type_key(t as u8), n))
        .collect()
}

impl SourceReport {
    /// The synthetic feed's section.
    pub(crate) fn synthetic() -> SourceReport {
        SourceReport {
            kind: "synthetic",
            itch: None,
            recording: None,
        }
    }

    /// A replay's section, from the streams' counts.
    pub(crate) fn recording(dir: &Path, results: &[StreamResult]) -> SourceReport {
        let streams: Vec<ReplayStreamReport> = results
            .iter()
            .filter_map(|r| r.replay)
            .map(|(key, stats)| ReplayStreamReport {
                recorded_publisher_id: key.publisher_id,
                recorded_stream_id: key.stream_id,
                stats,
            })
            .collect();
        let sum = |f: fn(&ReplayStats) -> u64| streams.iter().map(|s| f(&s.stats)).sum();
        SourceReport {
            kind: "recording",
            itch: None,
            recording: Some(RecordingSourceReport {
                dir: dir.display().to_string(),
                records: sum(|s| s.records),
                frames: sum(|s| s.frames),
                duplicates: sum(|s| s.duplicates),
                filtered: sum(|s| s.filtered),
                corrupt: sum(|s| s.corrupt),
                streams,
            }),
        }
    }

    /// An ITCH source's section, from the reader's outcome.
    pub(crate) fn itch(o: SourceOutcome) -> SourceReport {
        let st = &o.stats;
        let span_s = match (st.first_ts, st.last_ts) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
            _ => 0.0,
        };
        SourceReport {
            kind: o.kind,
            itch: Some(ItchSourceReport {
                messages: st.messages,
                bytes: o.bytes,
                by_type: by_type(&st.by_type),
                unknown_types: st.unknown,
                unknown_by_type: by_type(&st.unknown_by_type),
                malformed: st.malformed,
                truncated: st.truncated,
                first_ts: st.first_ts,
                last_ts: st.last_ts,
                span_s,
                anchor_ts: st.anchor_ts,
                symbols: st.symbols,
                routed: st.routed,
                market_wide: st.market_wide,
                unrouted: st.unrouted,
                published: o.handed,
                dropped: o.dropped,
                end: o.end,
                error: o.error,
                details: o.extra,
            }),
            recording: None,
        }
    }
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
        source: SourceReport,
        retransmit: Option<crate::retransmit::RetransmitReport>,
    ) -> Report {
        let mut behind = stats::new_histogram();
        let mut tenths: Option<Tenths> = None;
        let mut first_due = u64::MAX;
        let mut last_send = 0;
        for r in &results {
            let _ = behind.add(&r.behind);
            if let Some(t) = &r.tenths {
                tenths.get_or_insert_with(Tenths::new).merge(t);
            }
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
        let (first_tenth, last_tenth) = match tenths.map(|t| t.first_and_last()) {
            Some((f, l)) => (Some(LatencySummary::of(&f)), Some(LatencySummary::of(&l))),
            None => (None, None),
        };
        // The first stream's reason stands for the run (they share one
        // schedule; a signal reaches all of them).
        let end_reason = results.first().map_or(EndReason::Count, |r| r.end_reason);
        let presence = MergedPresence::merge(
            results
                .iter()
                .map(|r| (r.report.stream_id, &r.report.presence)),
            &cfg.expect_subscribers,
        );
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
            speed: cfg.speed,
            when_full: cfg.when_full,
            behind_schedule_ns: behind_summary,
            max_behind_ms: behind_summary.max as f64 / 1e6,
            behind_schedule_first_tenth_ns: first_tenth,
            behind_schedule_last_tenth_ns: last_tenth,
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
            source,
            retransmit,
            subscribers: presence.subscribers,
            subscriber_events: presence.subscriber_events,
            subscriber_events_dropped: presence.subscriber_events_dropped,
            missing_subscribers: presence.missing_subscribers,
        }
    }

    /// The human summary printed at the end.
    pub fn summary(&self) -> String {
        let mut line = self.send_summary();
        if let Some(s) = &self.source.itch {
            line.push_str(&format!(
                "\nshardcast-pub: source {}: read {} messages ({} bytes, span {:.3} s), {} unknown-type, {} malformed \
                 ({} truncated), {} market-wide, {} unrouted; reading ended: {}",
                self.source.kind,
                s.messages,
                s.bytes,
                s.span_s,
                s.unknown_types,
                s.malformed,
                s.truncated,
                s.market_wide,
                s.unrouted,
                s.error.as_deref().unwrap_or(s.end),
            ));
        }
        line
    }

    fn send_summary(&self) -> String {
        format!(
            "shardcast-pub: ended by {}; sent {} msgs on {} streams in {:.3} s = {:.0} msg/s (target {}); \
             behind schedule p99 {:.1} us, max {:.1} us",
            self.end_reason,
            self.sent,
            self.streams.len(),
            self.elapsed_s,
            self.msgs_per_sec,
            match (self.speed, self.rate) {
                (Some(Speed::Max), _) => "speed max".to_string(),
                (Some(Speed::Times(x)), _) => format!("speed {x}"),
                (None, 0) => "flat out".to_string(),
                (None, r) => format!("{r} msg/s"),
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
            (EndReason::EndOfSource, "end-of-source"),
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), name);
            assert_eq!(r.to_string(), name);
        }
    }
}

#[cfg(test)]
mod presence_tests {
    use super::*;
    use shardcast_agent::presence::{topic, Presence};
    use std::net::IpAddr;
    use std::time::{Duration, SystemTime};

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn ev(kind: u8, id: &str) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend(topic(id));
        v
    }

    #[test]
    fn streams_merge_by_id_with_events_in_time_order() {
        let expected = ["a".to_string(), "b".into(), "c".into(), "d".into()];
        let (x, y) = (
            Some(IpAddr::from([10, 0, 0, 1])),
            Some(IpAddr::from([10, 0, 0, 2])),
        );
        let mut s0 = Presence::new(&expected);
        let mut s1 = Presence::new(&expected);
        s0.on_subscription(&ev(1, "a"), Some("1"), x, at(5));
        s1.on_subscription(&ev(1, "a"), Some("2"), y, at(3));
        s0.on_subscription(&ev(1, "b"), Some("3"), x, at(3));
        s0.on_subscription(&ev(1, "c"), Some("4"), x, at(4));
        s1.on_subscription(&ev(1, "c"), Some("5"), x, at(4));
        s1.on_subscription(&ev(0, "c"), Some("5"), x, at(6));
        let (r0, r1) = (PresenceReport::from(&s0), PresenceReport::from(&s1));
        let m = MergedPresence::merge([(0, &r0), (1, &r1)], &expected);
        let ids: Vec<_> = m.subscribers.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        let a = &m.subscribers[0];
        assert_eq!(a.streams, [0, 1]);
        assert_eq!(a.since, "2027-01-15T08:00:03.000Z", "the earliest");
        assert_eq!(a.address.as_deref(), Some("10.0.0.2"), "the earliest's");
        assert_eq!(m.subscribers[2].streams, [0], "c left stream 1");
        let order: Vec<_> = m
            .subscriber_events
            .iter()
            .map(|e| (e.event.id.as_str(), e.stream, e.event.event))
            .collect();
        assert_eq!(
            order,
            [
                ("b", 0, "connected"),
                ("a", 1, "connected"),
                ("c", 0, "connected"),
                ("c", 1, "connected"),
                ("a", 0, "connected"),
                ("c", 1, "disconnected"),
            ]
        );
        // c is missing on stream 1, d everywhere, b on stream 1: in order.
        assert_eq!(m.missing_subscribers, ["b", "c", "d"]);
        let v = serde_json::to_value(&m.subscriber_events[0]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"stream": 0, "event": "connected", "id": "b",
                "address": "10.0.0.1", "at": "2027-01-15T08:00:03.000Z"})
        );
        assert_eq!(
            serde_json::to_value(&m.subscribers[0]).unwrap(),
            serde_json::json!({"id": "a", "address": "10.0.0.2",
                "since": "2027-01-15T08:00:03.000Z", "streams": [0, 1]})
        );
    }
}

#[cfg(test)]
mod source_tests {
    use super::*;
    use crate::route::RouteStats;

    #[test]
    fn the_source_section_keeps_its_keys() {
        let mut stats = RouteStats {
            messages: 5,
            first_ts: Some(1_000_000_000),
            last_ts: Some(3_500_000_000),
            unknown: 1,
            ..RouteStats::default()
        };
        stats.by_type[usize::from(b'A')] = 3;
        stats.by_type[usize::from(b'z')] = 1;
        stats.by_type[1] = 1;
        stats.unknown_by_type[usize::from(b'z')] = 1;
        let mut extra = Map::new();
        extra.insert("path".into(), "day.itch".into());
        let r = SourceReport::itch(SourceOutcome {
            kind: "itch",
            stats,
            bytes: 99,
            handed: 3,
            dropped: 0,
            end: "end",
            error: None,
            extra,
        });
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["kind"], "itch");
        assert_eq!(v["messages"], 5);
        assert_eq!(v["by_type"], serde_json::json!({"A": 3, "z": 1, "0x01": 1}));
        assert_eq!(v["unknown_types"], 1);
        assert_eq!(v["unknown_by_type"], serde_json::json!({"z": 1}));
        assert_eq!(v["span_s"], 2.5);
        assert_eq!(v["path"], "day.itch");
        for key in [
            "malformed",
            "truncated",
            "first_ts",
            "last_ts",
            "market_wide",
            "unrouted",
            "published",
            "bytes",
            "end",
            "error",
            "symbols",
            "routed",
            "anchor_ts",
            "dropped",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        let s = serde_json::to_value(SourceReport::synthetic()).unwrap();
        assert_eq!(s, serde_json::json!({"kind": "synthetic"}));
    }
}
