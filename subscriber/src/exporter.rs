//! `--metrics-bind`: what a Prometheus scrape of `shardcast-sub` shows
//! (README, "Monitoring").
//!
//! A scrape reads the board (the counters the agents already publish with
//! relaxed stores for the monitor) and the latency snapshot the monitor
//! refreshes when a second of histograms comes in; it never touches a
//! shard or a worker. Some totals are known only from the agents' results
//! (duplicates, malformed by reason): those appear when the run has ended,
//! and from then on every counter is the report's own number, so the last
//! scrape agrees with `--report-json`.

use crate::config::Config;
use crate::report::Report;
use crate::shard::ShardResult;
use shardcast_agent::exit::SetupError;
use shardcast_agent::hist::{Stage, StageHists};
use shardcast_agent::prom::{Families, MetricsServer, PromHistogram};
use shardcast_agent::watch::{AgentCounters, Board};
use shardcast_recorder::exporter::{build_info, indexed, linger, one, EndCell};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The latency by stage as a scrape shows it (cumulative since the
/// warm-up), written by the monitor only.
pub type LatencyCell = Mutex<[PromHistogram; 4]>;

/// Bucket the run's cumulative histograms into `cell` (the monitor, at
/// most once per collected second).
pub fn publish_latency(cell: &LatencyCell, hists: &StageHists) {
    let snap: [PromHistogram; 4] = std::array::from_fn(|i| PromHistogram::of(&hists[i]));
    *cell.lock().unwrap_or_else(|p| p.into_inner()) = snap;
}

/// The report's totals, once the run has ended.
#[derive(Clone, Debug, Default)]
struct EndTotals {
    /// Per shard (`None`: it crashed and the report has nothing of it).
    received: Vec<Option<u64>>,
    lost: Vec<Option<u64>>,
    /// Per shard (as `received`): records repaired by `--recover-from`.
    recovered: Vec<Option<u64>>,
    duplicates: u64,
    malformed: BTreeMap<&'static str, u64>,
    slow: u64,
    croaks: u64,
    /// Per worker row of the report: (index, records processed).
    processed: Vec<(String, u64)>,
}

/// What the scrape thread shares with the monitor.
#[derive(Debug)]
struct Shared {
    board: Arc<Board>,
    /// Per-worker queue depths are known under keyed fan-out only.
    worker_depths: bool,
    latency: Arc<LatencyCell>,
    end: EndCell<EndTotals>,
}

/// The running endpoint.
#[derive(Debug)]
pub struct Exporter {
    shared: Arc<Shared>,
    server: MetricsServer,
}

impl Exporter {
    /// Bind `--metrics-bind` and start serving; prints the address bound.
    pub fn start(
        cfg: &Config,
        bind: std::net::SocketAddr,
        board: &Arc<Board>,
    ) -> Result<Exporter, SetupError> {
        let shared = Arc::new(Shared {
            board: Arc::clone(board),
            worker_depths: cfg.keyed && !cfg.inline,
            latency: Arc::default(),
            end: EndCell::new(),
        });
        let server = MetricsServer::start(bind, Box::new(Scrape(Arc::clone(&shared))))?;
        eprintln!("shardcast-sub: metrics at http://{}/metrics", server.addr());
        Ok(Exporter { shared, server })
    }

    /// Where the monitor puts the latency snapshot.
    pub fn latency_cell(&self) -> Arc<LatencyCell> {
        Arc::clone(&self.shared.latency)
    }

    /// The address served.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    /// The run has ended: from now on scrapes show the report's totals and
    /// its final latency.
    pub fn finish(&self, report: &Report, shards: &[Option<ShardResult>], latency: &StageHists) {
        publish_latency(&self.shared.latency, latency);
        let per_shard = |f: fn(&ShardResult) -> u64| -> Vec<Option<u64>> {
            shards.iter().map(|r| r.as_ref().map(f)).collect()
        };
        let recovered = (0..shards.len())
            .map(|i| {
                shards[i].as_ref().map(|_| {
                    let of_shard = report.streams.iter().filter(|s| s.shard == i);
                    of_shard.map(|s| s.recovered).sum()
                })
            })
            .collect();
        let end = EndTotals {
            received: per_shard(|r| r.tracker.totals().received),
            lost: per_shard(|r| r.tracker.totals().lost),
            recovered,
            duplicates: report.counters.duplicates,
            malformed: report.malformed_reasons.clone(),
            slow: report.slow.count,
            croaks: u64::from(report.snail.is_some()),
            processed: report
                .workers
                .iter()
                .map(|w| {
                    let i = w.name.strip_prefix("worker-").unwrap_or(&w.name);
                    (i.to_string(), w.records)
                })
                .collect(),
        };
        self.shared.end.set(end);
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

fn present(values: &[Option<u64>]) -> Vec<(String, u64)> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i.to_string(), v)))
        .collect()
}

impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut enc: prometheus_client::encoding::DescriptorEncoder) -> fmt::Result {
        let s = &self.0;
        let b = &s.board;
        let read = AgentCounters::read;
        let end = s.end.get();
        let mut f = Families::new(&mut enc);
        build_info(&mut f, "shardcast-sub")?;
        let (received, lost) = match &end {
            Some(e) => (present(&e.received), present(&e.lost)),
            None => (
                indexed(b.shards.iter().map(|c| read(&c.done))),
                indexed(b.shards.iter().map(|c| read(&c.lost))),
            ),
        };
        f.counter(
            "shardcast_received",
            "Data records received and delivered, per shard (one per --connect).",
            Some("shard"),
            received,
        )?;
        f.counter(
            "shardcast_lost",
            "Sequence numbers never received, per shard.",
            Some("shard"),
            lost,
        )?;
        let processed = match &end {
            Some(e) => e.processed.clone(),
            None => indexed(b.workers.iter().map(|c| read(&c.done))),
        };
        f.counter(
            "shardcast_processed",
            "Records processed, per worker.",
            Some("worker"),
            processed,
        )?;
        let slow = match &end {
            Some(e) => e.slow,
            None => b.shards_sum(|c| &c.slow) + b.workers_sum(|c| &c.slow),
        };
        f.counter(
            "shardcast_slow_records",
            "Records older than --max-lag-ms when a shard or worker saw them.",
            None,
            one(slow),
        )?;
        let croaks = match &end {
            Some(e) => e.croaks,
            None => u64::from(b.croak.raised()),
        };
        f.counter(
            "shardcast_snail_croaks",
            "Times the Suicidal Snail croaked (0 or 1: a croak ends the run).",
            None,
            one(croaks),
        )?;
        if let Some(e) = &end {
            f.counter(
                "shardcast_duplicates",
                "Records received again (known at the end of the run).",
                None,
                one(e.duplicates),
            )?;
            f.counter(
                "shardcast_malformed",
                "Frames that were not valid shardcast frames, by reason (known at the end of the run).",
                Some("reason"),
                e.malformed.iter().map(|(r, n)| (r.to_string(), *n)),
            )?;
            f.counter(
                "shardcast_recovered",
                "Records missing on the wire and repaired by --recover-from, per shard \
                 (set at the end of the run; lost + recovered is what the wire lost).",
                Some("shard"),
                present(&e.recovered),
            )?;
        }
        f.gauge(
            "shardcast_last_sequence",
            "Last data sequence number seen, per shard.",
            Some("shard"),
            indexed(b.shards.iter().map(|c| read(&c.last_seq))),
        )?;
        if s.worker_depths {
            f.gauge(
                "shardcast_queue_depth",
                "Records handed to a worker and not yet processed (keyed fan-out).",
                Some("worker"),
                indexed(
                    b.workers
                        .iter()
                        .map(|c| read(&c.enqueued).saturating_sub(read(&c.done))),
                ),
            )?;
        }
        let backlog = b
            .shards_sum(|c| &c.done)
            .saturating_sub(b.workers_sum(|c| &c.done));
        f.gauge(
            "shardcast_workers_backlog",
            "Records the shards forwarded that no worker has processed yet.",
            None,
            one(backlog),
        )?;
        let latency = s.latency.lock().unwrap_or_else(|p| p.into_inner()).clone();
        f.histogram_seconds(
            "shardcast_latency",
            "Latency by stage since the warm-up: wire, queue, work, end_to_end (intended send to work done).",
            "stage",
            Stage::names()
                .zip(latency.iter())
                .map(|(n, h)| (n.to_string(), h)),
        )
    }
}
