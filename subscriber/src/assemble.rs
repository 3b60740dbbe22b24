//! Report assembly: the agents' results and the monitor's snapshot in, the
//! [`Report`] out. A new report field is added here (and declared in
//! `report.rs`); nothing here touches a socket or a thread.

use crate::config::Config;
use crate::report::{AgentReport, ItchReport, Report, SlowReport, SnailReport, StreamReport};
use crate::shard::ShardResult;
use crate::snapshot::{EndReason, RunSnapshot};
use shardcast_agent::hist::{Stage, StageHists};
use shardcast_agent::stats::LatencySummary;
use shardcast_proto::seq::Counters;
use shardcast_proto::snail::LagMode;
use shardcast_proto::wire::{DecodeError, Symbol};
use shardcast_workers::itch_book::ItchBookSummary;
use shardcast_workers::{Books, WorkKind, WorkerResult};
use std::collections::{btree_map, BTreeMap};

/// Most names `stale_symbols` lists (`stale_symbol_count` counts them all).
pub const MAX_STALE_LISTED: usize = 1000;
/// The `malformed_reasons` key of inproc messages a worker could not read.
pub const WORKER_FRAME: &str = "worker_frame";
/// The `malformed_reasons` key of frames libzmq cut a connection off for.
pub const OVERSIZED: &str = "oversized";

/// What the shards saw, summed.
struct ShardSums {
    streams: Vec<StreamReport>,
    agents: Vec<AgentReport>,
    malformed_reasons: BTreeMap<&'static str, u64>,
    totals: Counters,
    refused: u64,
    ts_future: u64,
    ts_ancient: u64,
    eos_unknown: u64,
    first_rx: u64,
    last_rx: u64,
    recovered: u64,
    recovery_latency: Option<hdrhistogram::Histogram<u64>>,
}

fn shard_sums(cfg: &Config, shards: &[Option<ShardResult>]) -> ShardSums {
    let mut s = ShardSums {
        streams: Vec::new(),
        agents: Vec::new(),
        malformed_reasons: DecodeError::REASONS.iter().map(|r| (*r, 0)).collect(),
        totals: Counters::default(),
        refused: 0,
        ts_future: 0,
        ts_ancient: 0,
        eos_unknown: 0,
        first_rx: u64::MAX,
        last_rx: 0,
        recovered: 0,
        recovery_latency: None,
    };
    for (i, r) in shards.iter().enumerate() {
        let Some(r) = r else { continue };
        for (reason, n) in DecodeError::REASONS.iter().zip(r.malformed) {
            *s.malformed_reasons.entry(reason).or_default() += n;
        }
        s.refused += r.tracker.refused();
        s.ts_future += r.ts_future;
        s.ts_ancient += r.ts_ancient;
        s.eos_unknown += r.eos_unknown;
        if r.first_rx_ns != 0 {
            s.first_rx = s.first_rx.min(r.first_rx_ns);
            s.last_rx = s.last_rx.max(r.last_rx_ns);
        }
        let rec_of = |k| r.recovery.per_source.iter().find(|c| c.key == k);
        // A selecting shard (--subscribe) counts per symbol: the stream's
        // holes are the symbols not selected.
        let counted = |st: &shardcast_proto::seq::StreamState| match &r.selection {
            Some(sel) => {
                let t = st.counters();
                let c = sel.counters_of(st.key()).unwrap_or_default();
                Counters {
                    received: c.received,
                    lost: c.lost,
                    duplicates: c.duplicates,
                    out_of_order: 0,
                    missed_before_join: c.missed_before_join,
                    ..t
                }
            }
            None => st.counters(),
        };
        for st in r.tracker.streams() {
            s.totals += counted(st);
        }
        s.streams
            .extend(r.tracker.streams().iter().map(|st| StreamReport {
                shard: i,
                publisher_id: st.key().publisher_id,
                stream_id: st.key().stream_id,
                session: st.session(),
                first_seq: st.first_seq(),
                last_seq: st.last_seq(),
                counters: counted(st),
                eos: st.ended(),
                eos_last_seq: st.eos().map(|e| e.last_seq),
                // A selection holds part of the stream: its checksum is not
                // the publisher's, and completeness is per symbol.
                checksum_ok: r.selection.is_none()
                    && st.eos().is_some_and(|e| e.checksum == st.checksum()),
                complete: match &r.selection {
                    Some(sel) => {
                        let c = counted(st);
                        st.ended()
                            && c.lost == 0
                            && c.missed_before_join == 0
                            && sel.tail_ok(st.key(), st.eos().map(|e| e.last_seq))
                    }
                    None => st.complete(),
                },
                caught_up: r.caught_up.iter().find(|c| c.key == st.key()).cloned(),
                recovered: rec_of(st.key()).map_or(0, |c| c.recovered),
                recovery: rec_of(st.key()).cloned(),
            }));
        if let Some(h) = &r.recovery.latency {
            s.recovered += r
                .recovery
                .per_source
                .iter()
                .map(|c| c.recovered)
                .sum::<u64>();
            match &mut s.recovery_latency {
                Some(all) => all.add(h).expect("same histogram bounds"),
                None => s.recovery_latency = Some(h.clone()),
            }
        }
        let plan = &cfg.shards[i];
        s.agents.push(AgentReport {
            name: format!("shard-{i}"),
            cpu: plan.cpu,
            records: r.forwarded,
            frames: r.frames,
            slow: r.slow,
            max_lag_ns: r.max_lag_ns,
            checksum: None,
            endpoint: Some(plan.endpoint.clone()),
            error: r.error.map(|e| e.to_string()),
            malformed: r.malformed.iter().sum(),
            warmup_records: r.warmup_records,
            lines: r.lines.clone(),
        });
    }
    s
}

/// What the workers did, summed, and their books merged.
struct WorkerSums {
    agents: Vec<AgentReport>,
    books: Books,
    itch_books: BTreeMap<String, ItchBookSummary>,
    itch: ItchReport,
    processed: u64,
    clock_ahead: u64,
    unknown_symbol: u64,
    wrong_kind: u64,
    malformed: u64,
    checksum: u64,
}

/// The books a run ends with, merged over workers: `--books-out` writes
/// `itch` under `--work itch-book`, `books` otherwise.
#[derive(Debug, Default)]
pub struct FinalBooks {
    /// Synthetic books (`--work book`).
    pub books: Books,
    /// ITCH books by symbol (`--work itch-book`).
    pub itch: BTreeMap<String, ItchBookSummary>,
}

/// Fold one worker's ITCH books into the run's. Keyed fan-out puts each
/// symbol on one worker, so names never collide on a real feed; if two
/// workers did book one name (a feed whose directory names one symbol under
/// two locate codes that hash apart), both are kept, the later one keyed
/// `<symbol>@worker-<i>`, rather than one silently hiding the other.
fn merge_itch(
    into: &mut BTreeMap<String, ItchBookSummary>,
    worker: usize,
    books: BTreeMap<String, ItchBookSummary>,
) {
    for (name, b) in books {
        match into.entry(name) {
            btree_map::Entry::Vacant(e) => {
                e.insert(b);
            }
            btree_map::Entry::Occupied(e) => {
                let key = format!("{}@worker-{worker}", e.key());
                into.insert(key, b);
            }
        }
    }
}

fn worker_sums(cfg: &Config, workers: Vec<Option<WorkerResult>>) -> WorkerSums {
    let mut s = WorkerSums {
        agents: Vec::new(),
        books: Books::new(),
        itch_books: BTreeMap::new(),
        itch: ItchReport::default(),
        processed: 0,
        clock_ahead: 0,
        unknown_symbol: 0,
        wrong_kind: 0,
        malformed: 0,
        checksum: 0,
    };
    for (i, w) in workers.into_iter().enumerate() {
        let Some(w) = w else { continue };
        s.processed += w.processed;
        s.clock_ahead += w.clock_ahead;
        s.unknown_symbol += w.unknown_symbol;
        s.wrong_kind += w.wrong_kind;
        s.malformed += w.malformed;
        s.checksum = s.checksum.wrapping_add(w.checksum);
        s.agents.push(AgentReport {
            name: format!("worker-{i}"),
            cpu: cfg.worker_cpus[i],
            records: w.processed,
            frames: w.frames,
            slow: w.slow,
            max_lag_ns: w.max_lag_ns,
            checksum: (cfg.work == WorkKind::Checksum).then_some(w.checksum),
            endpoint: None,
            error: w.error.map(|e| e.to_string()),
            malformed: w.malformed,
            warmup_records: w.warmup_records,
            lines: None,
        });
        s.books.merge(w.books);
        if cfg.work == WorkKind::ItchBook {
            let st = w.itch.stats();
            let t = &mut s.itch;
            t.messages += st.messages;
            t.unknown_type += st.unknown_type;
            t.malformed += st.malformed;
            t.unknown_order += st.unknown_order;
            t.duplicate_order += st.duplicate_order;
            t.overfill += st.overfill;
            t.bad_side += st.bad_side;
            t.live_orders += w.itch.live_orders() as u64;
            merge_itch(&mut s.itch_books, i, w.itch.summary());
        }
    }
    s.itch.symbols = s.itch_books.len() as u64;
    s
}

fn slow_report(cfg: &Config, agents: &[AgentReport]) -> SlowReport {
    SlowReport {
        count: agents.iter().map(|a| a.slow).sum(),
        max_lag_ns: agents.iter().map(|a| a.max_lag_ns).max().unwrap_or(0),
        max_lag_ms: cfg.max_lag_ms,
        on_slow: cfg.on_slow,
        mode: cfg.snail_mode,
        window_s: (cfg.snail_mode == LagMode::Relative).then_some(cfg.snail_window.as_secs_f64()),
    }
}

fn snail_report(cfg: &Config, run: &RunSnapshot) -> Option<SnailReport> {
    if run.end != EndReason::Snail {
        return None;
    }
    run.croak.map(|ev| SnailReport {
        stage: ev.stage,
        agent: format!("{}-{}", ev.stage.name(), ev.index),
        lag_ns: ev.lag_ns,
        max_lag_ms: cfg.max_lag_ms,
        mode: cfg.snail_mode,
        publisher_id: ev.publisher_id,
        stream_id: ev.stream_id,
        seq: ev.seq,
        symbol: Symbol(ev.symbol).to_string(),
        at_ns: ev.at_ns,
        detected_by: if ev.watchdog { "watchdog" } else { "record" },
        queues: run.croak_queues.clone(),
    })
}

/// The report of a run, and the workers' books merged.
pub fn report(
    cfg: &Config,
    run: RunSnapshot,
    shards: &[Option<ShardResult>],
    workers: Vec<Option<WorkerResult>>,
    latency: &StageHists,
    files_ok: bool,
) -> (Report, FinalBooks) {
    let mut s = shard_sums(cfg, shards);
    let w = worker_sums(cfg, workers);
    *s.malformed_reasons.entry(OVERSIZED).or_default() += run.oversized;
    *s.malformed_reasons.entry(WORKER_FRAME).or_default() += w.malformed;
    let elapsed_s = if s.last_rx > s.first_rx {
        (s.last_rx - s.first_rx) as f64 / 1e9
    } else {
        run.wall.as_secs_f64()
    };
    let all_agents: Vec<AgentReport> = s.agents.iter().chain(&w.agents).cloned().collect();
    let mut latency_ns: BTreeMap<&'static str, LatencySummary> = Stage::names()
        .zip(latency.iter())
        .map(|(name, h)| (name, LatencySummary::of(h)))
        .collect();
    if let Some(h) = &s.recovery_latency {
        latency_ns.insert("recovery", LatencySummary::of(h));
    }
    // Books a missed record made wrong (per-symbol sequences), by name.
    let mut stale: Vec<String> = w
        .books
        .snapshot()
        .into_iter()
        .filter(|(_, b)| b.stale)
        .map(|(name, _)| name)
        .chain(
            w.itch_books
                .iter()
                .filter(|(_, b)| b.stale)
                .map(|(n, _)| n.clone()),
        )
        .collect();
    stale.sort();
    let stale_count = stale.len() as u64;
    stale.truncate(MAX_STALE_LISTED);
    let totals = s.totals;
    let report = Report {
        role: "shardcast-sub",
        version: env!("CARGO_PKG_VERSION"),
        id: cfg.id.clone(),
        end_reason: run.end,
        counters: totals,
        malformed: s.malformed_reasons.values().sum(),
        malformed_reasons: s.malformed_reasons,
        refused_sources: s.refused,
        suspect_reasons: BTreeMap::from([
            ("seq_jump", totals.seq_jumps),
            ("ts_future", s.ts_future),
            ("ts_ancient", s.ts_ancient),
            ("session_unconfirmed", totals.session_unconfirmed),
            ("eos_unknown", s.eos_unknown),
            ("unknown_symbol", w.unknown_symbol),
            ("refused_source", s.refused),
            ("wrong_kind", w.wrong_kind),
        ]),
        processed: w.processed,
        clock_ahead: w.clock_ahead,
        elapsed_s,
        msgs_per_sec: if elapsed_s > 0.0 {
            totals.received as f64 / elapsed_s
        } else {
            0.0
        },
        // Every shard must have seen at least one stream, whole: a shard
        // that heard nothing has proven nothing.
        streams_complete: shards.iter().all(|r| {
            r.as_ref()
                .is_some_and(|r| r.error.is_none() && !r.tracker.streams().is_empty())
        }) && s.streams.iter().all(|s| s.complete),
        streams: s.streams,
        shards: s.agents,
        links: run.links.clone(),
        workers: w.agents,
        latency_ns,
        slow: slow_report(cfg, &all_agents),
        snail: snail_report(cfg, &run),
        recovered: s.recovered,
        stale_symbols: stale,
        stale_symbol_count: stale_count,
        recover_from: cfg.recover_from.clone(),
        processed_checksum: (cfg.work == WorkKind::Checksum).then_some(w.checksum),
        drained: run.drained,
        warmup_records: shards.iter().flatten().map(|r| r.warmup_records).sum(),
        files_ok,
        placement: run.placement,
        itch: (cfg.work == WorkKind::ItchBook).then_some(w.itch),
    };
    let books = FinalBooks {
        books: w.books,
        itch: w.itch_books,
    };
    (report, books)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Flags;
    use clap::Parser;
    use shardcast_agent::hist::new_stage_hists;
    use std::time::Duration;

    fn cfg(extra: &[&str]) -> Config {
        let mut args = vec!["shardcast-sub", "--connect", "tcp://127.0.0.1:5556"];
        args.extend_from_slice(extra);
        Config::resolve(&Flags::parse_from(args)).unwrap()
    }

    fn run(end: EndReason) -> RunSnapshot {
        RunSnapshot {
            end,
            croak: None,
            croak_queues: Vec::new(),
            placement: Vec::new(),
            oversized: 0,
            drained: true,
            wall: Duration::from_secs(1),
            links: Vec::new(),
        }
    }

    /// Issue 9, defect 2: a worker's malformed inproc messages were counted
    /// and never reported, so a worker receiving bad frames went unseen.
    #[test]
    fn worker_malformed_count_is_reported() {
        let cfg = cfg(&["--workers", "2", "--work", "none", "--fanout", "push"]);
        let workers = vec![
            Some(WorkerResult {
                malformed: 3,
                warmup_records: 5,
                ..WorkerResult::default()
            }),
            Some(WorkerResult::default()),
        ];
        let (r, _) = report(
            &cfg,
            run(EndReason::Duration),
            &[],
            workers,
            &new_stage_hists(),
            true,
        );
        assert_eq!(r.workers[0].malformed, 3);
        assert_eq!(r.workers[0].warmup_records, 5);
        assert_eq!(r.malformed_reasons[WORKER_FRAME], 3);
        assert_eq!(r.malformed, 3, "the total includes the workers'");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["workers"][0]["malformed"], 3);
        assert_eq!(json["end_reason"], "duration");
    }

    /// `--work itch-book`: the workers' counters are summed into `itch`,
    /// their books merged into one file (each symbol from its one worker),
    /// and wrong kinds reported.
    #[test]
    fn itch_books_are_merged_and_their_counters_summed() {
        use shardcast_proto::itch::{pad_stock, Body, Header, Message, Side, MAX_LEN};
        use shardcast_workers::ItchBooks;
        let add = |locate: u16, stock: &str, order_ref: u64| {
            let mut b = [0u8; MAX_LEN];
            let body = Body::AddOrder {
                order_ref,
                side: Side::Sell,
                shares: 10,
                stock: pad_stock(stock),
                price: 5_000,
                attribution: None,
            };
            let h = Header {
                locate,
                tracking: 0,
                timestamp: 1,
            };
            let n = Message::new(h, body).write(&mut b);
            b[..n].to_vec()
        };
        let mut a = ItchBooks::new();
        a.apply(&add(1, "AAPL", 1));
        a.apply(&[b'z'; 20]); // a type ITCH 5.0 does not define
        let mut b = ItchBooks::new();
        b.apply(&add(2, "MSFT", 2));
        b.apply(&add(2, "MSFT", 3));
        let cfg = cfg(&["--workers", "2", "--work", "itch-book"]);
        let workers = vec![
            Some(WorkerResult {
                itch: a,
                wrong_kind: 2,
                ..WorkerResult::default()
            }),
            Some(WorkerResult {
                itch: b,
                ..WorkerResult::default()
            }),
        ];
        let (r, books) = report(
            &cfg,
            run(EndReason::EndOfStream),
            &[],
            workers,
            &new_stage_hists(),
            true,
        );
        let i = r.itch.expect("itch-book reports itch");
        assert_eq!(
            (i.messages, i.unknown_type, i.symbols, i.live_orders),
            (4, 1, 2, 3)
        );
        assert_eq!(r.suspect_reasons["wrong_kind"], 2);
        let names: Vec<_> = books.itch.keys().cloned().collect();
        assert_eq!(names, ["AAPL", "MSFT"]);
        assert_eq!(books.itch["MSFT"].ask_sz, Some(20));
        assert_eq!(books.itch["AAPL"].bid_px, None);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["itch"]["unknown_order"], 0);
    }

    /// Other work reports no `itch` object; a symbol two workers both
    /// booked keeps both books rather than hiding one.
    #[test]
    fn itch_is_null_for_other_work_and_a_name_clash_keeps_both_books() {
        let cfg = cfg(&[]);
        let (r, _) = report(
            &cfg,
            run(EndReason::EndOfStream),
            &[],
            vec![Some(WorkerResult::default())],
            &new_stage_hists(),
            true,
        );
        assert!(r.itch.is_none());
        assert_eq!(
            serde_json::to_value(&r).unwrap()["itch"],
            serde_json::Value::Null
        );
        let s = shardcast_workers::itch_book::SymbolBook::default().summary();
        let mut into = BTreeMap::from([("AAPL".to_string(), s.clone())]);
        merge_itch(&mut into, 1, BTreeMap::from([("AAPL".to_string(), s)]));
        let names: Vec<_> = into.keys().cloned().collect();
        assert_eq!(names, ["AAPL", "AAPL@worker-1"]);
    }

    /// `--id` (presence) is the report's top-level `id`; null without it.
    #[test]
    fn the_id_is_reported() {
        for (args, want) in [
            (&["--id", "risk@ny4/2"][..], serde_json::json!("risk@ny4/2")),
            (&[][..], serde_json::Value::Null),
        ] {
            let (r, _) = report(
                &cfg(args),
                run(EndReason::EndOfStream),
                &[],
                vec![Some(WorkerResult::default())],
                &new_stage_hists(),
                true,
            );
            assert_eq!(serde_json::to_value(&r).unwrap()["id"], want);
        }
    }

    #[test]
    fn a_shard_that_heard_nothing_is_not_complete() {
        let cfg = cfg(&[]);
        let (r, _) = report(
            &cfg,
            run(EndReason::EndOfStream),
            &[None],
            vec![Some(WorkerResult::default())],
            &new_stage_hists(),
            true,
        );
        assert!(!r.streams_complete);
    }
}
