//! `shardcast-sub`: parse, resolve, run, report, map the outcome to an exit
//! code. Everything else lives in the library.

use clap::Parser;
use shardcast_agent::{exit, launch};
use shardcast_subscriber::{cli::Flags, config::Config, run, sizing};
use std::process::ExitCode;

// mimalloc serves every allocation from thread-local heaps, so threads
// never contend on an allocator lock. Its `override` feature (workspace
// Cargo.toml) replaces the C library's malloc too, so libzmq's message
// bodies (above 33 bytes), allocated on one thread and freed on another,
// take the same path (issue 11: -15% publisher CPU per message).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROLE: &str = "shardcast-sub";

fn main() -> ExitCode {
    // Before anything else: from here on SIGINT/SIGTERM is an orderly stop
    // with a report, even while flags are still being parsed.
    let signal = match launch::signals(ROLE) {
        Ok(s) => s,
        Err(code) => return ExitCode::from(code),
    };
    let flags = Flags::parse(); // clap exits 2 on a bad flag, naming it.
    if flags.explain_hwm {
        return explain(&flags);
    }
    let cfg = match launch::start(ROLE, Config::resolve(&flags), flags.print_config) {
        Ok(v) => v,
        Err(code) => return ExitCode::from(code),
    };
    if let Err(code) = launch::clear_outputs(ROLE, &cfg.outputs()) {
        return ExitCode::from(code);
    }
    let mut outcome = match run(&cfg, &signal) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{ROLE}: error: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let mut code = outcome.exit_code;
    let report = &outcome.report;
    launch::write_output(
        ROLE,
        "--report-json",
        cfg.report_json.as_deref(),
        report,
        &mut code,
    );
    let books = outcome.books_file(cfg.work);
    launch::write_output(
        ROLE,
        "--books-out",
        cfg.books_out.as_deref(),
        &books,
        &mut code,
    );
    println!("{}", report.summary());
    outcome.linger_metrics(cfg.metrics_linger, || signal.raised());
    ExitCode::from(code)
}

/// `--explain-hwm`: print the sizing (and write it as JSON to
/// --report-json); exit 1 when a setting contradicts the lag budget.
fn explain(flags: &Flags) -> ExitCode {
    let cfg = match Config::resolve(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{ROLE}: error: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let s = sizing::explain(&cfg, flags.expected_rate, flags.expected_msg_size);
    print!("{}", s.text());
    let mut code = if s.warnings.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    };
    launch::write_output(
        ROLE,
        "--report-json",
        cfg.report_json.as_deref(),
        &s,
        &mut code,
    );
    ExitCode::from(code)
}
