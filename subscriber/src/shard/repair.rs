//! `--recover-from`: a gap is repaired before the workers see past it.
//!
//! The shard checks the first record of every frame against where its
//! source stands. A frame that starts past the next expected sequence (or a
//! heartbeat or end-of-stream that says more was sent) reveals a gap; the
//! shard then stops reading its stream, so later records wait, in order, in
//! its SUB queue (the reorder buffer: bounded by `--rcvhwm`, and in time by
//! `--reorder-window-ms`), and asks each `--recover-from` source in turn for
//! the missing range with the range protocol of docs/RECORDING.md section 6
//! (the publisher's retransmit ring and the recorder's `--serve` answer the
//! same requests). What comes back goes to the workers in sequence; then the
//! live frame that revealed the gap, and the stream goes on. Over TCP one
//! connection never reorders, so a gap is loss, and asking at once is right.
//!
//! What no source has is named: an alarm line with the range, the records
//! in `lost` (the tracker counts them when the stream moves past them), and
//! the range in the report's `streams[].recovery.lost_ranges`.

use serde::Serialize;
use shardcast_agent::stats::{self, LatencySummary};
use shardcast_proto::seq::SourceKey;
use shardcast_proto::wire::{first_header, Kind};
use std::time::Duration;

/// One `--recover-from` source, as a shard sees it.
pub struct RecoverLink {
    /// The endpoint, for the report and alarm lines.
    pub endpoint: String,
    /// A DEALER connected to it (on the stream's own context).
    pub dealer: zmq::Socket,
}

/// A shard's `--recover-from` settings and sockets.
pub struct RecoverSetup {
    /// The sources, asked in this order.
    pub links: Vec<RecoverLink>,
    /// `--reorder-window`: the largest gap repaired, records.
    pub window: u64,
    /// `--reorder-window-ms`: how long one repair may hold the stream.
    pub timeout: Duration,
}

/// A gap to repair: `from..=to` of `session` of `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gap {
    pub key: SourceKey,
    pub session: u64,
    pub from: u64,
    pub to: u64,
}

impl Gap {
    /// Records in the gap.
    pub fn len(&self) -> u64 {
        self.to + 1 - self.from
    }
}

/// The gap the frame in `bytes` reveals, given where its source stands
/// (`position`: its session and last sequence accounted for, `None` for a
/// source not joined yet). Only a frame of the current session counts: a
/// new session is a restart, whose beginning is not a gap.
#[inline]
pub(crate) fn gap_before(
    bytes: &[u8],
    position: impl FnOnce(SourceKey) -> Option<(u64, u64)>,
) -> Option<Gap> {
    let h = first_header(bytes)?;
    let key = SourceKey {
        publisher_id: h.publisher_id.get(),
        stream_id: h.stream_id.get(),
    };
    let (session, last) = position(key)?;
    if h.session.get() != session {
        return None;
    }
    let seq = h.seq.get();
    // Data at `seq` means everything before it was sent; a heartbeat or an
    // end-of-stream carries the last data sequence sent.
    let to = match Kind::from_u8(h.kind)? {
        k if k.is_data() => seq.checked_sub(1)?,
        _ => seq,
    };
    (to > last).then_some(Gap {
        key,
        session,
        from: last + 1,
        to,
    })
}

/// What one source did for a shard.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SourceUse {
    /// The `--recover-from` endpoint.
    pub endpoint: String,
    /// Requests sent.
    pub requests: u64,
    /// Records taken from its answers.
    pub records: u64,
    /// Answers NOT_AVAILABLE (it did not have the start of the range).
    pub not_available: u64,
    /// Answers BUSY or REFUSED (rate-limited): the next source was asked.
    pub refused: u64,
    /// Requests with no final answer within the window.
    pub timeouts: u64,
    /// Sends that failed or answers that did not decode.
    pub errors: u64,
}

/// What recovery did for one source (publisher, stream).
#[derive(Clone, Debug, Serialize)]
pub struct Recovery {
    /// The source (the stream entry it is reported in says it).
    #[serde(skip)]
    pub key: SourceKey,
    /// Gaps seen.
    pub gaps: u64,
    /// Gaps repaired whole.
    pub repaired: u64,
    /// Records missing on the wire and repaired (delivered in order).
    pub recovered: u64,
    /// Records of gaps no source had in time: they are in `lost`.
    pub unrecovered: u64,
    /// Gaps larger than `--reorder-window`, not asked for.
    pub too_large: u64,
    /// The first ranges lost for good (`[from, to]`, at most 64).
    pub lost_ranges: Vec<[u64; 2]>,
    /// Per source, in `--recover-from` order.
    pub sources: Vec<SourceUse>,
}

/// Most ranges a report lists per source (the counts cover the rest).
pub const MAX_LOST_RANGES: usize = 64;
/// Alarm lines a shard prints before it only counts (a stream losing
/// thousands of ranges would otherwise flood the log).
pub const MAX_ALARMS: u64 = 100;

/// A shard's recovery state.
pub(crate) struct RecoveryState {
    pub setup: RecoverSetup,
    pub next_id: u64,
    pub per_source: Vec<Recovery>,
    /// Gap detected to repaired, ns.
    pub latency: hdrhistogram::Histogram<u64>,
    pub alarms: u64,
}

impl RecoveryState {
    pub fn new(setup: RecoverSetup) -> RecoveryState {
        RecoveryState {
            setup,
            next_id: 1,
            per_source: Vec::new(),
            latency: stats::new_histogram(),
            alarms: 0,
        }
    }

    /// The counts of `key`, created at its first gap.
    pub fn of(&mut self, key: SourceKey) -> &mut Recovery {
        let i = match self.per_source.iter().position(|r| r.key == key) {
            Some(i) => i,
            None => {
                self.per_source.push(Recovery {
                    key,
                    sources: self
                        .setup
                        .links
                        .iter()
                        .map(|l| SourceUse {
                            endpoint: l.endpoint.clone(),
                            ..SourceUse::default()
                        })
                        .collect(),
                    gaps: 0,
                    repaired: 0,
                    recovered: 0,
                    unrecovered: 0,
                    too_large: 0,
                    lost_ranges: Vec::new(),
                });
                self.per_source.len() - 1
            }
        };
        &mut self.per_source[i]
    }

    /// Count `gap`; `false` when it is larger than `--reorder-window`: then
    /// it is lost at once (named), not asked for.
    pub fn begin(&mut self, gap: Gap) -> bool {
        self.of(gap.key).gaps += 1;
        if gap.len() <= self.setup.window {
            return true;
        }
        self.of(gap.key).too_large += 1;
        let why = format!(
            "a gap larger than --reorder-window ({} records) is not repaired",
            self.setup.window
        );
        self.lost(gap, gap.from, gap.to, &why);
        false
    }

    /// Account for a repair of `gap` that took `recovered` records and
    /// left `unrepaired` (`n` records within a range, named lost; `what`
    /// says whose, before what each source answered, `why`).
    #[allow(clippy::too_many_arguments)]
    pub fn settle(
        &mut self,
        gap: Gap,
        recovered: u64,
        detected_ns: u64,
        deadline: std::time::Instant,
        unrepaired: Option<(u64, u64, u64)>,
        what: &str,
        why: &[String],
    ) {
        let rec = self.of(gap.key);
        rec.recovered += recovered;
        if unrepaired.is_none() {
            rec.repaired += 1;
        }
        if recovered > 0 {
            let took = shardcast_agent::clock::now_ns().saturating_sub(detected_ns);
            stats::record(&mut self.latency, took);
        }
        if let Some((from, to, n)) = unrepaired {
            let why = if std::time::Instant::now() >= deadline {
                format!(
                    "not repaired within --reorder-window-ms ({} ms; {})",
                    self.setup.timeout.as_millis(),
                    why.join("; ")
                )
            } else {
                format!("no --recover-from source has it ({})", why.join("; "))
            };
            self.lost_n(gap, from, to, n, &format!("{what}{why}"));
        }
    }

    /// Name a range lost for good: an alarm line (the first
    /// [`MAX_ALARMS`]) and the report's list.
    pub fn lost(&mut self, gap: Gap, from: u64, to: u64, why: &str) {
        self.lost_n(gap, from, to, to + 1 - from, why)
    }

    /// [`Self::lost`] of `n` records that lie within `from..=to` (a
    /// symbol's, among other symbols' records).
    pub fn lost_n(&mut self, gap: Gap, from: u64, to: u64, n: u64, why: &str) {
        let r = self.of(gap.key);
        r.unrecovered += n;
        if r.lost_ranges.len() < MAX_LOST_RANGES {
            r.lost_ranges.push([from, to]);
        }
        self.alarms += 1;
        if self.alarms <= MAX_ALARMS {
            eprintln!(
                "shardcast-sub: ALARM: lost publisher {} stream {} session {} seq {}..={} ({} records): {}{}",
                gap.key.publisher_id,
                gap.key.stream_id,
                gap.session,
                from,
                to,
                n,
                why,
                if self.alarms == MAX_ALARMS {
                    " (further alarms of this shard are counted, not printed)"
                } else {
                    ""
                }
            );
        }
    }
}

/// What a shard hands to the report.
#[derive(Debug, Default)]
pub struct RecoveryResult {
    /// Per source.
    pub per_source: Vec<Recovery>,
    /// Gap detected to repaired, ns.
    pub latency: Option<hdrhistogram::Histogram<u64>>,
}

impl RecoveryResult {
    /// The repair latency's summary, for `latency_ns.recovery`.
    pub fn summary(h: &hdrhistogram::Histogram<u64>) -> LatencySummary {
        LatencySummary::of(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_proto::wire::{encode, Payload, Quote, RecordMeta, Symbol};

    fn rec(kind_eos: bool, session: u64, seq: u64) -> Vec<u8> {
        let meta = RecordMeta {
            publisher_id: 7,
            stream_id: 2,
            session,
            seq,
            send_ts_ns: 1,
            intended_ts_ns: 1,
            symbol: if kind_eos {
                Symbol::CONTROL
            } else {
                Symbol::new("AB").unwrap()
            },
            sym_seq: 0,
        };
        let payload = if kind_eos {
            Payload::EndOfStream {
                last_seq: seq,
                checksum: 0,
            }
        } else {
            Payload::Quote(Quote {
                bid_px: 1,
                ask_px: 2,
                bid_sz: 3,
                ask_sz: 4,
            })
        };
        let mut buf = vec![0u8; 256];
        let n = encode(&mut buf, &meta, &payload, 0).unwrap();
        buf.truncate(n);
        buf
    }

    const KEY: SourceKey = SourceKey {
        publisher_id: 7,
        stream_id: 2,
    };

    #[test]
    fn a_data_record_past_the_next_expected_reveals_the_records_between() {
        let at = |_k: SourceKey| Some((5u64, 10u64));
        assert_eq!(gap_before(&rec(false, 5, 11), at), None);
        assert_eq!(
            gap_before(&rec(false, 5, 15), at),
            Some(Gap {
                key: KEY,
                session: 5,
                from: 11,
                to: 14
            })
        );
        // An old record, another session, a source not joined: no gap.
        assert_eq!(gap_before(&rec(false, 5, 3), at), None);
        assert_eq!(gap_before(&rec(false, 6, 15), at), None);
        assert_eq!(gap_before(&rec(false, 5, 15), |_| None), None);
    }

    #[test]
    fn an_end_of_stream_past_the_last_record_reveals_the_tail() {
        let at = |_k: SourceKey| Some((5u64, 10u64));
        let g = gap_before(&rec(true, 5, 12), at).unwrap();
        assert_eq!((g.from, g.to, g.len()), (11, 12, 2));
        assert_eq!(gap_before(&rec(true, 5, 10), at), None);
    }
}
