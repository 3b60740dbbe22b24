//! The monitor's latency bookkeeping: per-stage histograms collected from
//! every agent each second, the interval log, the live line, and the files
//! written at the end (`--hgrm`, `--plot`).

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use shardcast_agent::exit::{ioerr, SetupError};
use shardcast_agent::hist::{
    DoneInterval, StageCollector, StageHists, StageRecorder, INTERVAL_NS, STAGE_NAMES,
};
use shardcast_agent::stats::{self, LatencySummary};
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// An interval is complete this long after it ends: agents hand their
/// histograms over at their next frame, or within one idle poll (50 ms).
const GRACE_NS: u64 = 250_000_000;

/// `--hdr-log`: HdrHistogram's interval log, one tagged histogram per stage
/// per second, values in ns, timestamps relative to the run's start.
struct HdrLog {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
    base_ns: u64,
}

impl HdrLog {
    fn create(path: &Path, base_ns: u64) -> std::io::Result<HdrLog> {
        let mut out = BufWriter::new(File::create(path)?);
        let mut serializer = V2DeflateSerializer::new();
        let base = UNIX_EPOCH + Duration::from_nanos(base_ns);
        IntervalLogWriterBuilder::new()
            .add_comment("[Histogram log format version 1.3]")
            .add_comment(
                "shardcast-sub latency by stage; values in ns; tags: wire, queue, work, end_to_end",
            )
            .with_start_time(base)
            .with_base_time(base)
            .begin_log_with(&mut out, &mut serializer)?;
        out.flush()?;
        Ok(HdrLog {
            out,
            serializer,
            base_ns,
        })
    }

    fn write(&mut self, iv: &DoneInterval) -> std::io::Result<()> {
        // An empty builder writes no header: this appends entries only.
        let mut w =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        let start = Duration::from_nanos(iv.start_ns.saturating_sub(self.base_ns));
        for (h, name) in iv.hists.iter().zip(STAGE_NAMES) {
            if h.is_empty() {
                continue;
            }
            w.write_histogram(h, start, Duration::from_nanos(INTERVAL_NS), Tag::new(name))
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        }
        self.out.flush()
    }
}

/// What the live line and `--stats-interval` lines show.
struct Ticker {
    live: bool,
    every: Option<Duration>,
    acc: Box<StageHists>,
    acc_secs: u64,
    last_print_ns: u64,
    printed_live: bool,
}

/// Per-stage latency for one run.
pub struct Metrics {
    collector: StageCollector,
    log: Option<HdrLog>,
    log_path: Option<PathBuf>,
    ticker: Ticker,
    t0_ns: u64,
}

impl Metrics {
    /// Start collecting for a run beginning at `t0_ns`; agents record from
    /// `t0_ns + warmup`.
    pub fn new(
        t0_ns: u64,
        warmup: Duration,
        hdr_log: Option<&Path>,
        stats_interval: Option<Duration>,
    ) -> Result<Metrics, SetupError> {
        let log = match hdr_log {
            Some(p) => Some(
                HdrLog::create(p, t0_ns)
                    .map_err(ioerr(format!("creating --hdr-log {}", p.display())))?,
            ),
            None => None,
        };
        Ok(Metrics {
            collector: StageCollector::new(t0_ns, t0_ns + warmup.as_nanos() as u64),
            log,
            log_path: hdr_log.map(Path::to_path_buf),
            ticker: Ticker {
                // A live line only for a person watching; logs get plain
                // lines only when asked for with --stats-interval.
                live: stats_interval.is_none() && std::io::stderr().is_terminal(),
                every: stats_interval,
                acc: shardcast_agent::hist::new_stage_hists(),
                acc_secs: 0,
                last_print_ns: t0_ns,
                printed_live: false,
            },
            t0_ns,
        })
    }

    /// A recorder for one agent.
    pub fn recorder(&self) -> StageRecorder {
        self.collector.recorder()
    }

    /// Take in what agents handed over; log and show completed intervals.
    /// `lost` is the run's loss count so far.
    pub fn tick(&mut self, now_ns: u64, lost: u64) {
        let done = self.collector.collect(now_ns, GRACE_NS);
        self.absorb(done, now_ns, lost);
    }

    fn absorb(&mut self, done: Vec<DoneInterval>, now_ns: u64, lost: u64) {
        for iv in done {
            if let Some(log) = &mut self.log {
                if let Err(e) = log.write(&iv) {
                    eprintln!(
                        "shardcast-sub: error: writing --hdr-log {}: {e}; the log stops here",
                        self.log_path.as_deref().unwrap_or(Path::new("?")).display()
                    );
                    self.log = None;
                }
            }
            let t = &mut self.ticker;
            if t.live || t.every.is_some() {
                for (a, b) in t.acc.iter_mut().zip(iv.hists.iter()) {
                    let _ = a.add(b);
                }
                if iv.on_time {
                    t.acc_secs += 1;
                }
            }
            self.collector.recycle(iv.hists);
        }
        let t = &mut self.ticker;
        let due = match t.every {
            Some(every) => now_ns.saturating_sub(t.last_print_ns) >= every.as_nanos() as u64,
            None => t.live && t.acc_secs > 0,
        };
        if due && t.acc_secs > 0 {
            let e2e = &t.acc[3];
            let rate = e2e.len() as f64 / t.acc_secs as f64;
            let s = LatencySummary::of(e2e);
            let line = format!(
                "shardcast-sub: {:>6.1} s  {:>9.0} msg/s  lost {}  end-to-end p50 {:.1} us  p99 {:.1} us  max {:.1} us",
                now_ns.saturating_sub(self.t0_ns) as f64 / 1e9,
                rate,
                lost,
                s.p50 as f64 / 1e3,
                s.p99 as f64 / 1e3,
                s.max as f64 / 1e3
            );
            if t.live {
                eprint!("\r{line}\x1b[K");
                t.printed_live = true;
            } else {
                eprintln!("{line}");
            }
            for h in t.acc.iter_mut() {
                h.reset();
            }
            t.acc_secs = 0;
            t.last_print_ns = now_ns;
        }
    }

    /// Take in everything still pending (call after every agent stopped)
    /// and return the cumulative histograms, per stage, and whether the
    /// interval log (if asked for) was written whole.
    pub fn finish(mut self, lost: u64) -> (Box<StageHists>, bool) {
        let done = self.collector.collect(u64::MAX, 0);
        self.absorb(done, shardcast_agent::clock::now_ns(), lost);
        if self.ticker.printed_live {
            eprintln!();
        }
        let mut out = shardcast_agent::hist::new_stage_hists();
        for (a, b) in out.iter_mut().zip(self.collector.cumulative().iter()) {
            let _ = a.add(b);
        }
        let log_ok = self.log_path.is_none() || self.log.is_some();
        (out, log_ok)
    }
}

/// `--hgrm`: one percentile-distribution block per stage (values in us) in
/// `path`, each preceded by a `#[Stage: NAME]` line, and the same block
/// alone in `STEM.STAGE.hgrm` beside it for tools that take one histogram
/// per file (HdrHistogram's plotter).
pub fn write_hgrm(path: &Path, hists: &StageHists) -> std::io::Result<Vec<PathBuf>> {
    let mut all = BufWriter::new(File::create(path)?);
    let mut written = vec![path.to_path_buf()];
    let stem = path.with_extension("");
    for (h, name) in hists.iter().zip(STAGE_NAMES) {
        writeln!(all, "#[Stage: {name}; values in microseconds]")?;
        stats::write_hgrm(&mut all, h, 1000.0)?;
        writeln!(all)?;
        let one = PathBuf::from(format!("{}.{name}.hgrm", stem.display()));
        let mut f = BufWriter::new(File::create(&one)?);
        stats::write_hgrm(&mut f, h, 1000.0)?;
        f.flush()?;
        written.push(one);
    }
    all.flush()?;
    Ok(written)
}
