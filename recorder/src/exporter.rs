//! `--metrics-bind`: what a Prometheus scrape of `shardcast-record` shows
//! (README, "Monitoring"). The pieces every role's exporter shares
//! ([`build_info`], [`indexed`], [`one`], [`EndCell`], [`linger`]) live in
//! `shardcast_agent::prom` and are re-exported here for `shardcast-sub`'s
//! exporter.
//!
//! A scrape reads the board (what each recorder thread already publishes
//! for the monitor with relaxed stores, once per round of frames) and the
//! `--serve` thread's atomic counters; it never touches a recorder thread.
//! Some totals are known only from the threads' results (duplicates,
//! malformed by reason, bytes, segments): those appear when the run has
//! ended, and from then on every counter is the report's own number, so the
//! last scrape agrees with `--report-json`.

use crate::report::Report;
use crate::serve::ServeCounters;
use prometheus_client::encoding::DescriptorEncoder;
use shardcast_agent::exit::SetupError;
pub use shardcast_agent::prom::{build_info, indexed, linger, one, EndCell};
use shardcast_agent::prom::{Families, MetricsServer};
use shardcast_agent::watch::{AgentCounters, Board};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `--serve`'s counts as a scrape shows them.
#[derive(Clone, Copy, Debug, Default)]
struct ServeTotals {
    requests: u64,
    frames: u64,
    bytes: u64,
    /// Final replies: done, partial, not_available, bad_request, busy.
    replies: [u64; 5],
}

/// Reply statuses, in [`ServeTotals::replies`] order.
const STATUSES: [&str; 5] = ["done", "partial", "not_available", "bad_request", "busy"];

impl ServeTotals {
    fn live(c: &ServeCounters) -> ServeTotals {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ServeTotals {
            requests: r(&c.requests),
            frames: r(&c.frames),
            bytes: r(&c.bytes),
            replies: [
                r(&c.done),
                r(&c.partial),
                r(&c.not_available),
                r(&c.bad_requests),
                r(&c.busy),
            ],
        }
    }
}

/// The report's totals.
#[derive(Clone, Debug, Default)]
struct EndTotals {
    /// Per recorder thread: records recorded, sequence numbers lost (its
    /// streams' in the report), frames received.
    recorded: Vec<u64>,
    lost: Vec<u64>,
    frames_received: Vec<u64>,
    slow: u64,
    croaks: u64,
    duplicates: u64,
    missed_before_join: u64,
    malformed: BTreeMap<&'static str, u64>,
    frames_recorded: u64,
    bytes: u64,
    segments_created: u64,
    segments: u64,
    serve: Option<ServeTotals>,
}

impl EndTotals {
    fn of(report: &Report) -> EndTotals {
        let n = report.recorders.len();
        let mut e = EndTotals {
            recorded: vec![0; n],
            lost: vec![0; n],
            frames_received: report.recorders.iter().map(|r| r.frames).collect(),
            slow: report.slow,
            croaks: u64::from(report.snail.is_some()),
            duplicates: report.duplicates,
            missed_before_join: report.missed_before_join,
            malformed: report.malformed_reasons.clone(),
            frames_recorded: report.frames,
            bytes: report.bytes,
            segments_created: report.segments_created,
            segments: report.segments,
            serve: report.serve.as_ref().map(|s| ServeTotals {
                requests: s.requests,
                frames: s.frames,
                bytes: s.bytes,
                replies: [s.done, s.partial, s.not_available, s.bad_requests, s.busy],
            }),
        };
        for s in &report.streams {
            if let (Some(rec), Some(lost)) =
                (e.recorded.get_mut(s.recorder), e.lost.get_mut(s.recorder))
            {
                *rec += s.recorded;
                *lost += s.lost;
            }
        }
        e
    }
}

/// What the scrape thread shares with the main thread.
#[derive(Debug)]
struct Shared {
    board: Arc<Board>,
    serve: Option<Arc<ServeCounters>>,
    end: EndCell<EndTotals>,
}

/// The running endpoint of `shardcast-record`.
#[derive(Debug)]
pub struct Exporter {
    shared: Arc<Shared>,
    server: MetricsServer,
}

impl Exporter {
    /// Bind `--metrics-bind` and serve `board` (and `--serve`'s counters);
    /// prints the address bound.
    pub fn start(
        bind: SocketAddr,
        board: &Arc<Board>,
        serve: Option<Arc<ServeCounters>>,
    ) -> Result<Exporter, SetupError> {
        let shared = Arc::new(Shared {
            board: Arc::clone(board),
            serve,
            end: EndCell::new(),
        });
        let server = MetricsServer::start(bind, Box::new(Scrape(Arc::clone(&shared))))?;
        eprintln!(
            "shardcast-record: metrics at http://{}/metrics",
            server.addr()
        );
        Ok(Exporter { shared, server })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The run has ended: from now on scrapes show the report's totals.
    pub fn finish(&self, report: &Report) {
        self.shared.end.set(EndTotals::of(report));
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

impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let s = &self.0;
        let b = &s.board;
        let read = AgentCounters::read;
        let end = s.end.get();
        let mut f = Families::new(&mut enc);
        build_info(&mut f, "shardcast-record")?;
        let per = |live: fn(&AgentCounters) -> &AtomicU64, at_end: fn(&EndTotals) -> &Vec<u64>| {
            match &end {
                Some(e) => indexed(at_end(e).iter().copied()),
                None => indexed(b.shards.iter().map(|c| read(live(c)))),
            }
        };
        f.counter(
            "shardcast_recorded",
            "Data records recorded (on disk), per recorder thread (one per --connect).",
            Some("recorder"),
            per(|c| &c.done, |e| &e.recorded),
        )?;
        f.counter(
            "shardcast_lost",
            "Sequence numbers never received, per recorder thread.",
            Some("recorder"),
            per(|c| &c.lost, |e| &e.lost),
        )?;
        f.counter(
            "shardcast_frames_received",
            "Frames received, valid or not, per recorder thread.",
            Some("recorder"),
            per(|c| &c.frames, |e| &e.frames_received),
        )?;
        let slow = end
            .as_ref()
            .map_or_else(|| b.shards_sum(|c| &c.slow), |e| e.slow);
        f.counter(
            "shardcast_slow_records",
            "Records older than --max-lag-ms when a recorder thread received them.",
            None,
            one(slow),
        )?;
        let croaks = end
            .as_ref()
            .map_or_else(|| u64::from(b.croak.raised()), |e| e.croaks);
        f.counter(
            "shardcast_snail_croaks",
            "Times the Suicidal Snail croaked (0 or 1: a croak ends the run).",
            None,
            one(croaks),
        )?;
        if let Some(e) = &end {
            end_families(&mut f, e)?;
        }
        let serve = match &end {
            Some(e) => e.serve,
            None => s.serve.as_deref().map(ServeTotals::live),
        };
        if let Some(t) = serve {
            serve_families(&mut f, &t)?;
        }
        Ok(())
    }
}

/// The families known only at the end of the run.
fn end_families(f: &mut Families<'_, '_>, e: &EndTotals) -> fmt::Result {
    f.counter(
        "shardcast_duplicates",
        "Records received again, not recorded again (known at the end of the run).",
        None,
        one(e.duplicates),
    )?;
    f.counter(
        "shardcast_missed_before_join",
        "Records sent before the recorder joined (known at the end of the run).",
        None,
        one(e.missed_before_join),
    )?;
    f.counter(
        "shardcast_malformed",
        "Frames that were not valid shardcast frames, by reason (known at the end of the run).",
        Some("reason"),
        e.malformed.iter().map(|(r, n)| (r.to_string(), *n)),
    )?;
    f.counter(
        "shardcast_frames_recorded",
        "Frames recorded (on disk) this run (known at the end of the run).",
        None,
        one(e.frames_recorded),
    )?;
    f.counter(
        "shardcast_recorded_bytes",
        "Bytes written to segment files this run (known at the end of the run).",
        None,
        one(e.bytes),
    )?;
    f.counter(
        "shardcast_segments_created",
        "Segment files created this run (known at the end of the run).",
        None,
        one(e.segments_created),
    )?;
    f.gauge(
        "shardcast_segment_files",
        "Segment files in the recording after the run, all streams (known at the end of the run).",
        None,
        one(e.segments),
    )
}

/// `--serve`'s families.
fn serve_families(f: &mut Families<'_, '_>, t: &ServeTotals) -> fmt::Result {
    f.counter(
        "shardcast_serve_requests",
        "--serve requests received.",
        None,
        one(t.requests),
    )?;
    f.counter(
        "shardcast_serve_replies",
        "--serve requests answered, by final status.",
        Some("status"),
        STATUSES
            .iter()
            .zip(t.replies)
            .map(|(s, n)| (s.to_string(), n)),
    )?;
    f.counter(
        "shardcast_serve_frames",
        "Recorded frames --serve sent.",
        None,
        one(t.frames),
    )?;
    f.counter(
        "shardcast_serve_sent_bytes",
        "Bytes of recorded frames --serve sent.",
        None,
        one(t.bytes),
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
    fn live_scrape_reads_the_board_and_serve_counters() {
        let board = Arc::new(Board::new(2, 0));
        AgentCounters::publish(&board.shards[0].done, 7);
        AgentCounters::publish(&board.shards[1].done, 5);
        AgentCounters::publish(&board.shards[1].lost, 2);
        AgentCounters::publish(&board.shards[0].slow, 1);
        let serve = Arc::new(ServeCounters::default());
        serve.requests.store(3, Ordering::Relaxed);
        serve.busy.store(1, Ordering::Relaxed);
        let e = Exporter::start("127.0.0.1:0".parse().unwrap(), &board, Some(serve)).unwrap();
        let body = get(e.addr());
        for want in [
            "shardcast_build_info{version=\"",
            "shardcast_recorded_total{recorder=\"0\"} 7\n",
            "shardcast_recorded_total{recorder=\"1\"} 5\n",
            "shardcast_lost_total{recorder=\"1\"} 2\n",
            "shardcast_slow_records_total 1\n",
            "shardcast_snail_croaks_total 0\n",
            "shardcast_serve_requests_total 3\n",
            "shardcast_serve_replies_total{status=\"busy\"} 1\n",
        ] {
            assert!(body.contains(want), "{want:?} not in\n{body}");
        }
        // Known only at the end.
        assert!(!body.contains("shardcast_duplicates_total"), "{body}");
        e.linger(Duration::ZERO, || false);
    }
}
