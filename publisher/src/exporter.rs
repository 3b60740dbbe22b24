//! `--metrics-bind`: what a Prometheus scrape of `shardcast-pub` shows
//! (README, "Monitoring").
//!
//! Each stream thread publishes a few of its counts ([`StreamLive`]) with
//! relaxed stores once per housekeeping round (every 1024 feed events or
//! source records), while it waits for subscribers, and when its send loop
//! and its end phase end: never a lock or a system call per record. A
//! scrape reads only those atomics and the retransmit server's counters;
//! it never touches a stream thread. When the run has ended, every counter
//! is the report's own number, so the last scrape agrees with
//! `--report-json`.

use crate::report::{Report, StreamReport};
use crate::retransmit::Counters;
use shardcast_agent::exit::SetupError;
use shardcast_agent::prom::{
    build_info, indexed, linger, one, Collector, DescriptorEncoder, EndCell, Families,
    MetricsServer,
};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// What one stream thread publishes for a scrape.
#[derive(Debug, Default)]
pub struct StreamLive {
    sent: AtomicU64,
    frames: AtomicU64,
    heartbeats: AtomicU64,
    blocked: AtomicU64,
    /// How late the last record sent was against its due time, ns.
    behind_ns: AtomicU64,
    /// The most any record of the stream was late so far, ns.
    behind_max_ns: AtomicU64,
    subscribers: AtomicU64,
    /// Named subscribers (`--id`) present.
    named: AtomicU64,
}

impl StreamLive {
    /// Publish the stream's counts (relaxed stores; the stream thread only,
    /// at most once per housekeeping round).
    pub(crate) fn publish(
        &self,
        rep: &StreamReport,
        behind_ns: u64,
        behind_max_ns: u64,
        subs: i64,
    ) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&self.sent, rep.sent);
        set(&self.frames, rep.frames);
        set(&self.heartbeats, rep.heartbeats);
        set(&self.blocked, rep.blocked);
        set(&self.behind_ns, behind_ns);
        set(&self.behind_max_ns, behind_max_ns);
        set(&self.subscribers, subs.max(0) as u64);
    }

    /// Publish only the subscriber count (while the stream waits for them).
    pub(crate) fn publish_subscribers(&self, subs: i64) {
        self.subscribers
            .store(subs.max(0) as u64, Ordering::Relaxed);
    }

    /// Publish the number of named subscribers (`--id`) present.
    pub(crate) fn publish_named(&self, named: u64) {
        self.named.store(named, Ordering::Relaxed);
    }
}

/// What the stream threads and the retransmit server share with a scrape.
#[derive(Debug)]
pub struct Live {
    streams: Vec<StreamLive>,
    retransmit: OnceLock<Arc<Counters>>,
}

impl Live {
    /// Stream `i`'s cell.
    pub(crate) fn stream(&self, i: usize) -> Option<&StreamLive> {
        self.streams.get(i)
    }

    /// The retransmit server's counters (`--retransmit-bind`), once it runs.
    pub(crate) fn set_retransmit(&self, c: &Arc<Counters>) {
        let _ = self.retransmit.set(Arc::clone(c));
    }
}

/// A stream's numbers as a scrape shows them.
#[derive(Clone, Copy, Debug, Default)]
struct StreamTotals {
    sent: u64,
    frames: u64,
    heartbeats: u64,
    blocked: u64,
    behind_ns: u64,
    behind_max_ns: u64,
    subscribers: u64,
    named: u64,
    last_seq: u64,
}

impl StreamTotals {
    fn live(s: &StreamLive) -> StreamTotals {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StreamTotals {
            sent: r(&s.sent),
            frames: r(&s.frames),
            heartbeats: r(&s.heartbeats),
            blocked: r(&s.blocked),
            behind_ns: r(&s.behind_ns),
            behind_max_ns: r(&s.behind_max_ns),
            subscribers: r(&s.subscribers),
            named: r(&s.named),
            // Every record sent takes the next sequence number.
            last_seq: r(&s.sent),
        }
    }
}

/// The retransmit server's numbers as a scrape shows them.
#[derive(Clone, Copy, Debug, Default)]
struct RetransmitTotals {
    requests: u64,
    served_records: u64,
    served_bytes: u64,
    /// Final replies: done, partial, not_available, bad_request, busy, refused.
    replies: [u64; 6],
}

/// Reply statuses, in [`RetransmitTotals::replies`] order.
const STATUSES: [&str; 6] = [
    "done",
    "partial",
    "not_available",
    "bad_request",
    "busy",
    "refused",
];

impl RetransmitTotals {
    fn live(c: &Counters) -> RetransmitTotals {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RetransmitTotals {
            requests: r(&c.requests),
            served_records: r(&c.served_records),
            served_bytes: r(&c.served_bytes),
            replies: [
                r(&c.done),
                r(&c.partial),
                r(&c.not_available),
                r(&c.bad_requests),
                r(&c.busy),
                r(&c.refused),
            ],
        }
    }
}

/// The report's totals.
#[derive(Clone, Debug, Default)]
struct EndTotals {
    streams: Vec<StreamTotals>,
    retransmit: Option<RetransmitTotals>,
}

/// What the scrape thread shares with the main thread.
#[derive(Debug)]
struct Shared {
    live: Arc<Live>,
    end: EndCell<EndTotals>,
}

/// The running endpoint of `shardcast-pub`.
#[derive(Debug)]
pub struct Exporter {
    shared: Arc<Shared>,
    server: MetricsServer,
}

impl Exporter {
    /// Bind `--metrics-bind` for `streams` streams and start serving;
    /// prints the address bound.
    pub fn start(bind: SocketAddr, streams: usize) -> Result<Exporter, SetupError> {
        let shared = Arc::new(Shared {
            live: Arc::new(Live {
                streams: (0..streams).map(|_| StreamLive::default()).collect(),
                retransmit: OnceLock::new(),
            }),
            end: EndCell::new(),
        });
        let server = MetricsServer::start(bind, Box::new(Scrape(Arc::clone(&shared))))?;
        eprintln!("shardcast-pub: metrics at http://{}/metrics", server.addr());
        Ok(Exporter { shared, server })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// What the stream threads publish to (pass it to
    /// [`crate::run_metered`]).
    pub fn live(&self) -> &Arc<Live> {
        &self.shared.live
    }

    /// The run has ended: from now on scrapes show the report's totals.
    /// The lag gauges keep what the streams last published (the report
    /// has no per-stream lag).
    pub fn finish(&self, report: &Report) {
        let live = &self.shared.live;
        let streams = report
            .streams
            .iter()
            .map(|s| {
                let l = live
                    .stream(s.stream_id)
                    .map(StreamTotals::live)
                    .unwrap_or_default();
                StreamTotals {
                    sent: s.sent,
                    frames: s.frames,
                    heartbeats: s.heartbeats,
                    blocked: s.blocked,
                    behind_ns: l.behind_ns,
                    behind_max_ns: l.behind_max_ns,
                    subscribers: s.subscribers.max(0) as u64,
                    named: s.presence.subscribers.len() as u64,
                    last_seq: s.last_seq,
                }
            })
            .collect();
        let retransmit = report.retransmit.as_ref().map(|r| RetransmitTotals {
            requests: r.requests,
            served_records: r.served_records,
            served_bytes: r.served_bytes,
            replies: [
                r.done,
                r.partial,
                r.not_available,
                r.bad_requests,
                r.busy,
                r.refused,
            ],
        });
        self.shared.end.set(EndTotals {
            streams,
            retransmit,
        });
    }

    /// Keep serving for `linger` (`--metrics-linger-ms`), unless `stop`
    /// says otherwise first, then close the endpoint.
    pub fn linger(self, linger: Duration, stop: impl Fn() -> bool) {
        self::linger(linger, stop);
    }
}

/// The collector the server runs on each scrape.
#[derive(Debug)]
struct Scrape(Arc<Shared>);

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let s = &self.0;
        let end = s.end.get();
        let streams: Vec<StreamTotals> = match &end {
            Some(e) => e.streams.clone(),
            None => s.live.streams.iter().map(StreamTotals::live).collect(),
        };
        let per = |f: fn(&StreamTotals) -> u64| indexed(streams.iter().map(f));
        let mut f = Families::new(&mut enc);
        build_info(&mut f, "shardcast-pub")?;
        f.counter(
            "shardcast_sent",
            "Data records sent, per stream (report streams[].sent).",
            Some("stream"),
            per(|t| t.sent),
        )?;
        f.counter(
            "shardcast_frames_sent",
            "ZeroMQ data frames sent (a batch counts once), per stream (report streams[].frames).",
            Some("stream"),
            per(|t| t.frames),
        )?;
        f.counter(
            "shardcast_heartbeats_sent",
            "Heartbeats sent, per stream (report streams[].heartbeats).",
            Some("stream"),
            per(|t| t.heartbeats),
        )?;
        f.counter(
            "shardcast_blocked_sends",
            "--when-full block: sends that found a subscriber's queue full and waited, per stream.",
            Some("stream"),
            per(|t| t.blocked),
        )?;
        f.gauge(
            "shardcast_last_sequence",
            "Last data sequence number sent, per stream.",
            Some("stream"),
            per(|t| t.last_seq),
        )?;
        f.gauge(
            "shardcast_subscribers",
            "Shardcast subscribers (control-topic subscriptions) of the stream.",
            Some("stream"),
            per(|t| t.subscribers),
        )?;
        f.gauge(
            "shardcast_subscribers_named",
            "Named subscribers (shardcast-sub --id) present on the stream (report streams[].presence.subscribers).",
            Some("stream"),
            per(|t| t.named),
        )?;
        seconds_gauge(
            &mut f,
            "shardcast_behind_schedule",
            "How late the stream's last record sent was against its schedule (0 when flat out).",
            streams.iter().map(|t| t.behind_ns),
        )?;
        seconds_gauge(
            &mut f,
            "shardcast_behind_schedule_max",
            "The most any record of the stream was late against its schedule so far.",
            streams.iter().map(|t| t.behind_max_ns),
        )?;
        let retransmit = match &end {
            Some(e) => e.retransmit,
            None => s.live.retransmit.get().map(|c| RetransmitTotals::live(c)),
        };
        if let Some(t) = retransmit {
            retransmit_families(&mut f, &t)?;
        }
        Ok(())
    }
}

/// A gauge in seconds (`NAME_seconds`) per stream, from ns.
fn seconds_gauge(
    f: &mut Families<'_, '_>,
    name: &str,
    help: &str,
    ns: impl Iterator<Item = u64>,
) -> fmt::Result {
    f.gauge_seconds(
        name,
        help,
        "stream",
        ns.enumerate().map(|(i, v)| (i.to_string(), v as f64 / 1e9)),
    )
}

/// `--retransmit-bind`'s families.
fn retransmit_families(f: &mut Families<'_, '_>, t: &RetransmitTotals) -> fmt::Result {
    f.counter(
        "shardcast_retransmit_requests",
        "Retransmission requests received, refused ones too (report retransmit.requests).",
        None,
        one(t.requests),
    )?;
    f.counter(
        "shardcast_retransmit_replies",
        "Retransmission requests answered, by final status (refused: over the peer's rate limit).",
        Some("status"),
        STATUSES
            .iter()
            .zip(t.replies)
            .map(|(s, n)| (s.to_string(), n)),
    )?;
    f.counter(
        "shardcast_retransmit_records",
        "Records retransmitted (report retransmit.served_records).",
        None,
        one(t.served_records),
    )?;
    f.counter(
        "shardcast_retransmit_sent_bytes",
        "Bytes of frames retransmitted (report retransmit.served_bytes).",
        None,
        one(t.served_bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: SocketAddr) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn live_scrape_reads_what_the_streams_publish() {
        let e = Exporter::start("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let live = Arc::clone(e.live());
        live.stream(1).unwrap().sent.store(7, Ordering::Relaxed);
        live.stream(1).unwrap().frames.store(3, Ordering::Relaxed);
        live.stream(0)
            .unwrap()
            .behind_ns
            .store(1_500_000, Ordering::Relaxed);
        live.stream(0).unwrap().publish_subscribers(2);
        live.stream(1).unwrap().publish_named(3);
        let body = get(e.addr());
        for want in [
            "shardcast_build_info{version=\"",
            "role=\"shardcast-pub\"",
            "shardcast_sent_total{stream=\"0\"} 0\n",
            "shardcast_sent_total{stream=\"1\"} 7\n",
            "shardcast_frames_sent_total{stream=\"1\"} 3\n",
            "shardcast_last_sequence{stream=\"1\"} 7\n",
            "shardcast_subscribers{stream=\"0\"} 2\n",
            "shardcast_subscribers_named{stream=\"1\"} 3\n",
            "shardcast_behind_schedule_seconds{stream=\"0\"} 0.0015\n",
        ] {
            assert!(body.contains(want), "{want:?} not in\n{body}");
        }
        // No retransmit server, no retransmit families.
        assert!(!body.contains("shardcast_retransmit"), "{body}");
        let c = Arc::new(Counters::default());
        c.requests.store(4, Ordering::Relaxed);
        c.refused.store(1, Ordering::Relaxed);
        live.set_retransmit(&c);
        let body = get(e.addr());
        assert!(
            body.contains("shardcast_retransmit_requests_total 4\n"),
            "{body}"
        );
        assert!(
            body.contains("shardcast_retransmit_replies_total{status=\"refused\"} 1\n"),
            "{body}"
        );
        e.linger(Duration::ZERO, || false);
    }
}
