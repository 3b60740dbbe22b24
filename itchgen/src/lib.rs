//! `shardcast-itchgen`: a deterministic NASDAQ TotalView-ITCH 5.0 day
//! generator, a test and benchmark tool (no real ITCH file ships with any
//! package we can install).
//!
//! * [`day`]: the day model and the [`Generator`], whose own order state
//!   ([`Generator::orders`], [`Generator::symbols`]) lets a test build the
//!   books a day must end with, independently of the book under test.
//! * [`cli`], [`config`]: flags (`SHARDCAST_ITCHGEN_*` twins) and their
//!   checked [`Config`].
//! * [`run`]: writes the day to `--out` (gzipped for `.gz`) and returns the
//!   [`Report`].
//!
//! The bytes depend on the configuration alone (seed included): the same
//! flags give the same file on every machine.

pub mod cli;
pub mod config;
pub mod day;
pub mod reference;
mod report;

pub use config::Config;
pub use day::{Generator, LiveOrder, SymbolState};
pub use reference::reference_books;
pub use report::Report;

use flate2::write::GzEncoder;
use shardcast_agent::files::{self, OutputError};
use shardcast_agent::signals::StopSignal;
use std::fs::File;
use std::io::Write;

/// Why a run failed (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `--out` could not be opened. Remedy: name a writable regular file,
    /// FIFO or device (not a link or a directory).
    #[error("--out {path}: {source}")]
    Open {
        /// The path.
        path: String,
        /// Why.
        source: OutputError,
    },
    /// Writing `--out` failed (a full disk, a closed pipe).
    #[error("writing --out {path}: {source}")]
    Write {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// SIGINT or SIGTERM: the file holds only the first part of the day.
    #[error("stopped by a signal after {} of {wanted} messages; --out holds an incomplete day", report.messages)]
    Stopped {
        /// Messages asked for.
        wanted: u64,
        /// What was written (`complete` false).
        report: Box<Report>,
    },
}

/// Bytes of messages gathered before each write: one write every ~30 000
/// messages, and a buffer that stays in cache.
const FLUSH_BYTES: usize = 1 << 20;

/// Where the day goes: the file as it is, or through gzip.
enum Sink {
    Plain(File),
    // Boxed: the zlib-rs encoder state is kilobytes, a File is 4 bytes.
    Gz(Box<GzEncoder<File>>),
}

impl Sink {
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(f) => f.write_all(b),
            Sink::Gz(g) => g.write_all(b),
        }
    }

    /// Finish the gzip stream (its trailer; dropping the encoder would do
    /// it too, but swallow the error) and hand the file back.
    fn finish(self) -> std::io::Result<File> {
        match self {
            Sink::Plain(f) => Ok(f),
            Sink::Gz(g) => g.finish(),
        }
    }
}

/// Write the day `cfg` describes to `cfg.out`. A signal stops it between
/// two writes ([`RunError::Stopped`], with the report of what was written).
pub fn run(cfg: &Config, stop: &StopSignal) -> Result<Report, RunError> {
    let path = cfg.out.display().to_string();
    let file = files::create_stream(&cfg.out).map_err(|source| RunError::Open {
        path: path.clone(),
        source,
    })?;
    let werr = |source| RunError::Write {
        path: path.clone(),
        source,
    };
    let mut sink = if cfg.gzip {
        // Fast compression: a day file is large and written once per test;
        // level 1 is several times faster than the default and still
        // shrinks ITCH several-fold.
        Sink::Gz(Box::new(GzEncoder::new(file, flate2::Compression::fast())))
    } else {
        Sink::Plain(file)
    };
    let mut g = Generator::new(cfg);
    let mut buf = Vec::with_capacity(FLUSH_BYTES + 4096);
    let mut complete = true;
    while g.step(&mut buf) {
        if buf.len() >= FLUSH_BYTES {
            sink.write_all(&buf).map_err(werr)?;
            buf.clear();
            if stop.raised() {
                complete = false;
                break;
            }
        }
    }
    sink.write_all(&buf).map_err(werr)?;
    let file = sink.finish().map_err(werr)?;
    files::sync_stream(&file).map_err(werr)?;
    let report = Report::new(cfg, g.stats(), g.orders().count() as u64, complete);
    if complete {
        Ok(report)
    } else {
        Err(RunError::Stopped {
            wanted: cfg.messages,
            report: Box::new(report),
        })
    }
}
