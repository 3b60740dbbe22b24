//! `shardcast-pub`: parse, resolve, run, report, exit code. The work is in
//! the library.

use shardcast_agent::{exit, launch};
use shardcast_publisher::exporter::Exporter;
use shardcast_publisher::{cli::Flags, config::Config, run_metered};
use std::process::ExitCode;

// mimalloc serves every allocation from thread-local heaps, so threads
// never contend on an allocator lock. Its `override` feature (workspace
// Cargo.toml) replaces the C library's malloc too, so libzmq's message
// bodies (above 33 bytes), allocated on one thread and freed on another,
// take the same path (issue 11: -15% publisher CPU per message).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROLE: &str = "shardcast-pub";

fn main() -> ExitCode {
    // Before anything else: from here on SIGINT/SIGTERM is an orderly stop
    // with a report, even while flags are still being parsed.
    let signal = match launch::signals(ROLE) {
        Ok(s) => s,
        Err(code) => return ExitCode::from(code),
    };
    let flags = Flags::parse_explicit(); // clap exits 2 on a bad flag, naming it.
    let cfg = match launch::start(ROLE, Config::resolve(&flags), flags.print_config) {
        Ok(v) => v,
        Err(code) => return ExitCode::from(code),
    };
    if let Err(code) = launch::clear_outputs(ROLE, &cfg.outputs()) {
        return ExitCode::from(code);
    }
    // --metrics-bind: bound before the streams, so a port in use fails
    // the run before anything is sent.
    let metrics = match cfg
        .metrics_bind
        .map(|b| Exporter::start(b, cfg.streams.len()))
    {
        None => None,
        Some(Ok(e)) => Some(e),
        Some(Err(e)) => {
            eprintln!("{ROLE}: error: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let (report, mut code) = match run_metered(&cfg, &signal, metrics.as_ref().map(Exporter::live))
    {
        Ok(r) => (r, exit::OK),
        Err(e) => {
            eprintln!("{ROLE}: error: {e}");
            // A run that failed with a report (--wait-timeout) still
            // writes it: its end_reason says what happened.
            match e.into_report() {
                Some(r) => (r, exit::FAILURE),
                None => return ExitCode::from(exit::FAILURE),
            }
        }
    };
    // From here on a scrape shows the report's totals.
    if let Some(m) = &metrics {
        m.finish(&report);
    }
    launch::write_output(
        ROLE,
        "--report-json",
        cfg.report_json.as_deref(),
        &report,
        &mut code,
    );
    println!("{}", report.summary());
    if let Some(m) = metrics {
        m.linger(cfg.metrics_linger, || signal.raised());
    }
    ExitCode::from(code)
}
