//! Flags resolved into a checked configuration (stage two of parsing):
//! CPU plans, the lag limit, writer options.

use crate::cli::Flags;
use crate::writer::WriterOptions;
use serde::Serialize;
use shardcast_agent::cpu;
use shardcast_agent::exit::UsageError;
use shardcast_agent::idle::Idle;
use shardcast_agent::lag::OnSlow;
use shardcast_proto::snail::{LagLimit, LagMode};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One recorder thread's connection.
#[derive(Clone, Debug, Serialize)]
pub struct RecorderPlan {
    /// Index (position of its `--connect`).
    pub index: usize,
    /// The publisher endpoint.
    pub endpoint: String,
    /// Recorder thread CPU.
    pub cpu: Option<usize>,
    /// ZeroMQ I/O thread CPU.
    pub io_cpu: Option<usize>,
}

/// The resolved configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Recorder threads.
    pub recorders: Vec<RecorderPlan>,
    /// Recording directory.
    pub dir: PathBuf,
    /// Segment roll size, bytes.
    pub segment_bytes: u64,
    /// Write buffer per stream, bytes.
    pub buffer_bytes: usize,
    /// Longest wait of a buffered frame.
    pub flush: Duration,
    /// Index point spacing, bytes.
    pub index_bytes: u64,
    /// ZMQ_RCVHWM.
    pub rcvhwm: i32,
    /// ZMQ_RCVBUF (0 = OS default).
    pub rcvbuf: i32,
    /// ZMQ_MAXMSGSZ.
    pub max_msg_size: i64,
    /// Snail limit, ms.
    pub max_lag_ms: u64,
    /// Croak or warn.
    pub on_slow: OnSlow,
    /// How lag is judged.
    pub snail_mode: LagMode,
    /// Relative mode's window.
    pub snail_window: Duration,
    /// Largest believable lead of a sender's clock, ms.
    pub max_clock_skew_ms: u64,
    /// Wait strategy.
    pub idle: Idle,
    /// Run limit.
    pub duration: Option<Duration>,
    /// `--serve` endpoint.
    pub serve: Option<String>,
    /// `--serve` send budget, bytes per second.
    pub serve_bytes_per_sec: u64,
    /// `--serve-linger-ms`.
    pub serve_linger: std::time::Duration,
    /// `--metrics-bind`.
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// `--metrics-linger-ms`.
    pub metrics_linger: Duration,
    /// Report path.
    pub report_json: Option<PathBuf>,
}

impl Config {
    /// Check and resolve the flags; the error names the flag at fault.
    pub fn resolve(f: &Flags) -> Result<Config, UsageError> {
        let n = f.connect.len();
        let cpus = cpu::plan_cpus("--cpus", f.cpus.as_ref().map(|c| &c.0[..]), n, "recorder")?;
        let io = cpu::plan_cpus("--io-cpus", f.io_cpus.as_ref().map(|c| &c.0[..]), n, "I/O")?;
        if f.dir.as_os_str().is_empty() {
            return Err(UsageError::new("--dir", "give a directory to record into"));
        }
        if f.dir.exists() && !f.dir.is_dir() {
            return Err(UsageError::new(
                "--dir",
                format!("{} exists and is not a directory", f.dir.display()),
            ));
        }
        if let Some(ep) = &f.serve {
            if f.connect.iter().any(|c| c == ep) {
                return Err(UsageError::new(
                    "--serve",
                    format!("{ep} is also a --connect endpoint"),
                ));
            }
        }
        Ok(Config {
            recorders: f
                .connect
                .iter()
                .enumerate()
                .map(|(i, ep)| RecorderPlan {
                    index: i,
                    endpoint: ep.clone(),
                    cpu: cpus[i],
                    io_cpu: io[i],
                })
                .collect(),
            dir: f.dir.clone(),
            segment_bytes: f.segment_bytes,
            // A buffer never holds more than a segment (it is written
            // before the segment rolls).
            buffer_bytes: f.buffer_bytes.min(f.segment_bytes) as usize,
            flush: Duration::from_millis(f.flush_ms),
            index_bytes: f.index_bytes,
            rcvhwm: f.rcvhwm,
            rcvbuf: f.rcvbuf,
            max_msg_size: f.max_msg_size,
            max_lag_ms: f.max_lag_ms,
            on_slow: f.on_slow,
            snail_mode: f.snail_mode,
            snail_window: Duration::from_secs_f64(f.snail_window),
            max_clock_skew_ms: f.max_clock_skew_ms,
            idle: f.idle,
            duration: f.duration.map(Duration::from_secs_f64),
            serve: f.serve.clone(),
            serve_bytes_per_sec: f.serve_bytes_per_sec,
            serve_linger: std::time::Duration::from_millis(f.serve_linger_ms),
            metrics_bind: f.metrics_bind,
            metrics_linger: Duration::from_millis(f.metrics_linger_ms),
            report_json: f.report_json.clone(),
        })
    }

    /// The snail's limit.
    pub fn lag_limit(&self) -> LagLimit {
        LagLimit {
            max_lag_ns: self.max_lag_ms.saturating_mul(1_000_000),
            mode: self.snail_mode,
            window_ns: self.snail_window.as_nanos().min(u128::from(u64::MAX)) as u64,
            max_skew_ns: self.max_clock_skew_ms.saturating_mul(1_000_000),
        }
    }

    /// How each stream's writer writes.
    pub fn writer_options(&self) -> WriterOptions {
        WriterOptions {
            segment_bytes: self.segment_bytes,
            buffer_bytes: self.buffer_bytes,
            index_every_bytes: self.index_bytes,
        }
    }

    /// Output files (cleared before the run).
    pub fn outputs(&self) -> Vec<(&'static str, &Path)> {
        self.report_json
            .iter()
            .map(|p| ("--report-json", p.as_path()))
            .collect()
    }

    /// Busy threads: recorder threads and their I/O threads.
    pub fn busy_threads(&self) -> usize {
        self.recorders.len() * 2
    }
}
