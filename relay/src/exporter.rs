//! `--metrics-bind`: what a Prometheus scrape of `shardcast-relay` shows
//! (README, "Relays"). Built from `shardcast_agent::prom`'s pieces, as the
//! other roles' exporters are.
//!
//! A scrape reads the board (what each hop already publishes for the
//! monitor with relaxed stores, once per housekeeping round) and each
//! hop's [`HopGauges`]; it never touches a hop. When the run has ended,
//! every number is the report's own, so the last scrape agrees with
//! `--report-json`.

use crate::report::Report;
use prometheus_client::encoding::DescriptorEncoder;
use shardcast_agent::exit::SetupError;
use shardcast_agent::prom::{build_info, indexed, linger, one, EndCell, Families, MetricsServer};
use shardcast_agent::watch::{AgentCounters, Board};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a hop publishes besides the board's counters (relaxed stores, per
/// housekeeping round).
#[derive(Debug, Default)]
pub struct HopGauges {
    /// Downstream subscribers counted now.
    pub subscribers: AtomicU64,
    /// Named downstream subscribers (`--id`) present now.
    pub named: AtomicU64,
    /// Sends that found a downstream queue full so far.
    pub blocked: AtomicU64,
}

/// The report's numbers, per hop and in total.
#[derive(Clone, Debug, Default)]
struct EndTotals {
    received: Vec<u64>,
    frames_in: Vec<u64>,
    frames_out: Vec<u64>,
    lost: Vec<u64>,
    subscribers: Vec<u64>,
    named: Vec<u64>,
    blocked: Vec<u64>,
    slow: u64,
    croaks: u64,
}

impl EndTotals {
    fn of(r: &Report) -> EndTotals {
        let per = |f: fn(&crate::report::HopReport) -> u64| r.hops.iter().map(f).collect();
        let mut lost = vec![0; r.hops.len()];
        for s in &r.streams {
            if let Some(l) = lost.get_mut(s.hop) {
                *l += s.lost;
            }
        }
        EndTotals {
            received: per(|h| h.records),
            frames_in: per(|h| h.frames_in),
            frames_out: per(|h| h.frames_out),
            lost,
            subscribers: per(|h| h.subscribers),
            named: per(|h| h.presence.subscribers.len() as u64),
            blocked: per(|h| h.blocked),
            slow: r.slow,
            croaks: u64::from(r.snail.is_some()),
        }
    }
}

#[derive(Debug)]
struct Shared {
    board: Arc<Board>,
    gauges: Vec<Arc<HopGauges>>,
    end: EndCell<EndTotals>,
}

/// The running endpoint of `shardcast-relay`.
#[derive(Debug)]
pub struct Exporter {
    shared: Arc<Shared>,
    server: MetricsServer,
}

impl Exporter {
    /// Bind `--metrics-bind` and serve `board` and the hops' `gauges`;
    /// prints the address bound.
    pub fn start(
        bind: SocketAddr,
        board: &Arc<Board>,
        gauges: &[Arc<HopGauges>],
    ) -> Result<Exporter, SetupError> {
        let shared = Arc::new(Shared {
            board: Arc::clone(board),
            gauges: gauges.to_vec(),
            end: EndCell::new(),
        });
        let server = MetricsServer::start(bind, Box::new(Scrape(Arc::clone(&shared))))?;
        eprintln!(
            "shardcast-relay: metrics at http://{}/metrics",
            server.addr()
        );
        Ok(Exporter { shared, server })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The run has ended: from now on scrapes show the report's numbers.
    pub fn finish(&self, report: &Report) {
        self.shared.end.set(EndTotals::of(report));
    }

    /// Keep serving for `linger` (`--metrics-linger-ms`), unless `stop`
    /// says otherwise first, then close the endpoint.
    pub fn linger(self, linger: Duration, stop: impl Fn() -> bool) {
        self::linger(linger, stop);
    }
}

#[derive(Debug)]
struct Scrape(Arc<Shared>);

impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let s = &self.0;
        let b = &s.board;
        let read = AgentCounters::read;
        let end = s.end.get();
        let mut f = Families::new(&mut enc);
        build_info(&mut f, "shardcast-relay")?;
        let per = |live: fn(&AgentCounters) -> &AtomicU64, at_end: fn(&EndTotals) -> &Vec<u64>| {
            match &end {
                Some(e) => indexed(at_end(e).iter().copied()),
                None => indexed(b.shards.iter().map(|c| read(live(c)))),
            }
        };
        let gauge =
            |live: fn(&HopGauges) -> &AtomicU64, at_end: fn(&EndTotals) -> &Vec<u64>| match &end {
                Some(e) => indexed(at_end(e).iter().copied()),
                None => indexed(s.gauges.iter().map(|g| live(g).load(Ordering::Relaxed))),
            };
        f.counter(
            "shardcast_received",
            "New data records received from upstream, per hop (one per --connect).",
            Some("hop"),
            per(|c| &c.done, |e| &e.received),
        )?;
        f.counter(
            "shardcast_frames_received",
            "Frames received from upstream, valid or not, per hop.",
            Some("hop"),
            per(|c| &c.frames, |e| &e.frames_in),
        )?;
        f.counter(
            "shardcast_frames_forwarded",
            "Frames sent on downstream, per hop.",
            Some("hop"),
            per(|c| &c.enqueued, |e| &e.frames_out),
        )?;
        f.counter(
            "shardcast_lost",
            "Sequence numbers never received from upstream, per hop.",
            Some("hop"),
            per(|c| &c.lost, |e| &e.lost),
        )?;
        f.counter(
            "shardcast_blocked_sends",
            "Downstream sends that found a subscriber's queue full (--when-full block), per hop.",
            Some("hop"),
            gauge(|g| &g.blocked, |e| &e.blocked),
        )?;
        f.gauge(
            "shardcast_subscribers",
            "Downstream subscribers counted now, per hop.",
            Some("hop"),
            gauge(|g| &g.subscribers, |e| &e.subscribers),
        )?;
        f.gauge(
            "shardcast_subscribers_named",
            "Named downstream subscribers (--id) present now, per hop.",
            Some("hop"),
            gauge(|g| &g.named, |e| &e.named),
        )?;
        let slow = end
            .as_ref()
            .map_or_else(|| b.shards_sum(|c| &c.slow), |e| e.slow);
        f.counter(
            "shardcast_slow_records",
            "Records older than --max-lag-ms when they reached the relay (and frames held back that long).",
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
        // The hops' last housekeeping published their final largest lag,
        // so the board holds the report's figure at the end too.
        f.gauge_seconds(
            "shardcast_max_lag",
            "Largest age of a record on arrival so far, per hop.",
            "hop",
            b.shards
                .iter()
                .enumerate()
                .map(|(i, c)| (i.to_string(), read(&c.max_lag_ns) as f64 / 1e9)),
        )
    }
}
