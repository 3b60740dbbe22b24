//! The monitor's latency bookkeeping: per-stage histograms collected from
//! every agent each second, the interval log, the live line, and the files
//! written at the end (`--hgrm`, `--plot`).

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use shardcast_agent::exit::{ioerr, SetupError};
use shardcast_agent::files;
use shardcast_agent::hist::{
    DoneInterval, Stage, StageCollector, StageHists, StageRecorder, INTERVAL_NS,
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
/// per second, values in ns, timestamps relative to the run's start. Opened
/// by `files::create_stream`: a link is refused, a regular file replaced by
/// a fresh one, a FIFO or device written through.
struct HdrLog {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
    base_ns: u64,
}

impl HdrLog {
    fn create(path: &Path, base_ns: u64) -> std::io::Result<HdrLog> {
        let mut out = BufWriter::new(files::create_stream(path).map_err(std::io::Error::other)?);
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
        for (h, name) in iv.hists.iter().zip(Stage::names()) {
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
    recent: std::collections::VecDeque<crate::report::RecentLatency>,
    /// `--metrics-bind`: where the cumulative latency goes for scrapes.
    prom: Option<std::sync::Arc<crate::exporter::LatencyCell>>,
}

/// Seconds of latency kept for `--snail-report`.
const RECENT_SECONDS: usize = 10;

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
            recent: std::collections::VecDeque::with_capacity(RECENT_SECONDS),
            prom: None,
        })
    }

    /// The last seconds' latency by stage, oldest first (once a second, at
    /// most [`RECENT_SECONDS`]; for the snail's forensic report).
    pub fn recent(&self) -> Vec<crate::report::RecentLatency> {
        self.recent.iter().cloned().collect()
    }

    /// Refresh `cell` from the cumulative histograms whenever a second of
    /// them comes in (`--metrics-bind`).
    pub fn publish_latency_to(&mut self, cell: std::sync::Arc<crate::exporter::LatencyCell>) {
        self.prom = Some(cell);
    }

    /// A recorder for one agent.
    pub fn recorder(&self) -> StageRecorder {
        self.collector.recorder()
    }

    /// Take in what agents handed over; log and show completed intervals.
    /// `lost` is the run's loss count so far.
    pub fn tick(&mut self, now_ns: u64, lost: u64) {
        let done = self.collector.collect(now_ns, GRACE_NS);
        let changed = !done.is_empty();
        self.absorb(done, now_ns, lost);
        if let Some(cell) = self.prom.as_ref().filter(|_| changed) {
            crate::exporter::publish_latency(cell, self.collector.cumulative());
        }
    }

    fn absorb(&mut self, done: Vec<DoneInterval>, now_ns: u64, lost: u64) {
        for iv in done {
            if iv.on_time {
                if self.recent.len() == RECENT_SECONDS {
                    self.recent.pop_front();
                }
                self.recent.push_back(crate::report::RecentLatency {
                    start_ns: iv.start_ns,
                    stages: Stage::names()
                        .zip(iv.hists.iter())
                        .map(|(n, h)| (n, LatencySummary::of(h)))
                        .collect(),
                });
            }
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
    pub fn finish(&mut self, lost: u64) -> (Box<StageHists>, bool) {
        let done = self.collector.collect(u64::MAX, 0);
        self.absorb(done, shardcast_agent::clock::now_ns(), lost);
        if self.ticker.printed_live {
            eprintln!();
        }
        let mut out = shardcast_agent::hist::new_stage_hists();
        for (a, b) in out.iter_mut().zip(self.collector.cumulative().iter()) {
            let _ = a.add(b);
        }
        let mut log_ok = self.log_path.is_none() || self.log.is_some();
        // Closed here, flushed and synced: the log is whole once the run's
        // files are written.
        if let Some(mut log) = self.log.take() {
            if let Err(e) = log
                .out
                .flush()
                .and_then(|()| files::sync_stream(log.out.get_ref()))
            {
                eprintln!(
                    "shardcast-sub: error: writing --hdr-log {}: {e}",
                    self.log_path.as_deref().unwrap_or(Path::new("?")).display()
                );
                log_ok = false;
            }
        }
        (out, log_ok)
    }
}

/// `--hgrm`: one percentile-distribution block per stage (values in us) in
/// `path`, each preceded by a `#[Stage: NAME]` line, and the same block
/// alone in `STEM.STAGE.hgrm` beside it for tools that take one histogram
/// per file (HdrHistogram's plotter). Each file is written by
/// `files::write`; an error names the file it is about.
pub fn write_hgrm(path: &Path, hists: &StageHists) -> Result<Vec<PathBuf>, String> {
    let mut all = Vec::new();
    let mut written = vec![path.to_path_buf()];
    let stem = path.with_extension("");
    let text = |e: std::io::Error| e.to_string();
    for (h, name) in hists.iter().zip(Stage::names()) {
        writeln!(all, "#[Stage: {name}; values in microseconds]").map_err(text)?;
        stats::write_hgrm(&mut all, h, 1000.0).map_err(text)?;
        writeln!(all).map_err(text)?;
        let one = PathBuf::from(format!("{}.{name}.hgrm", stem.display()));
        let mut f = Vec::new();
        stats::write_hgrm(&mut f, h, 1000.0).map_err(text)?;
        files::write(&one, &f).map_err(|e| format!("{}: {e}", one.display()))?;
        written.push(one);
    }
    files::write(path, &all).map_err(|e| e.to_string())?;
    Ok(written)
}

/// Plot size, pixels.
const PLOT_SIZE: (u32, u32) = (1000, 600);

/// `--plot`: latency by percentile, one line per stage, as SVG, or as PNG
/// (the same SVG rendered with resvg, text in the system's fonts) when the
/// file name ends in `.png`. The x axis is HdrHistogram's "1 in N" (log
/// scale: 90% is 1 in 10, 99.9% 1 in 1000), the y axis latency in
/// microseconds (log scale: stages differ by orders of magnitude).
pub fn write_plot(path: &Path, hists: &StageHists, title: &str) -> Result<(), String> {
    let svg = plot_svg(hists, title)?;
    if path.extension().and_then(|e| e.to_str()) == Some("png") {
        let mut opt = resvg::usvg::Options::default();
        let db = opt.fontdb_mut();
        db.load_system_fonts();
        // fontdb maps "sans-serif" to Arial, which Linux hosts rarely have:
        // use a sans face that is installed.
        let sans = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "FreeSans"]
            .into_iter()
            .find(|want| {
                db.faces()
                    .any(|f| f.families.iter().any(|(n, _)| n == want))
            })
            .map(str::to_string)
            .or_else(|| {
                db.faces()
                    .next()
                    .and_then(|f| f.families.first())
                    .map(|(n, _)| n.clone())
            });
        match sans {
            Some(family) => db.set_sans_serif_family(family),
            None => eprintln!(
                "shardcast-sub: warning: no fonts found; the PNG plot has no text (use .svg)"
            ),
        }
        let tree = resvg::usvg::Tree::from_str(&svg, &opt).map_err(|e| e.to_string())?;
        let mut pixmap = resvg::tiny_skia::Pixmap::new(PLOT_SIZE.0, PLOT_SIZE.1)
            .ok_or("cannot allocate the image")?;
        pixmap.fill(resvg::tiny_skia::Color::WHITE);
        resvg::render(
            &tree,
            resvg::tiny_skia::Transform::default(),
            &mut pixmap.as_mut(),
        );
        let png = pixmap.encode_png().map_err(|e| e.to_string())?;
        files::write(path, &png).map_err(|e| e.to_string())
    } else {
        files::write(path, svg.as_bytes()).map_err(|e| e.to_string())
    }
}

fn plot_svg(hists: &StageHists, title: &str) -> Result<String, String> {
    use plotters::prelude::*;
    let series: Vec<(&str, Vec<(f64, f64)>)> = hists
        .iter()
        .zip(Stage::names())
        .filter(|(h, _)| !h.is_empty())
        .map(|(h, name)| {
            let pts = h
                .iter_quantiles(5)
                .map(|v| {
                    let q = v.quantile_iterated_to();
                    // The 100% point has no "1 in N": place it at 1 in count.
                    let n = if q < 1.0 {
                        1.0 / (1.0 - q)
                    } else {
                        h.len() as f64
                    };
                    (n.max(1.0), (v.value_iterated_to() as f64 / 1e3).max(0.001))
                })
                .collect();
            (name, pts)
        })
        .collect();
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_min, mut y_max) = (10.0f64, f64::MAX, 0.001f64);
    for &(x, y) in all {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if y_min == f64::MAX {
        y_min = 0.001;
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (1.0..x_max * 1.5).log_scale(),
                (y_min / 1.5..y_max * 1.5).log_scale(),
            )
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (us)")
            .x_label_formatter(&|n| {
                let p = 100.0 * (1.0 - 1.0 / n);
                let digits = (n.log10().round() as usize).saturating_sub(2);
                format!("{p:.digits$}%")
            })
            .draw()
            .map_err(|e| err(&e))?;
        let colours = [BLUE, GREEN, MAGENTA, RED];
        for ((name, pts), colour) in series.into_iter().zip(colours) {
            chart
                .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}
