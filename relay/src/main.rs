//! `shardcast-relay`: parse, resolve, run, report, map the outcome to an
//! exit code. Everything else lives in the library.

use clap::Parser;
use shardcast_agent::{exit, launch};
use shardcast_relay::{cli::Flags, config::Config, exit_code, run};
use std::process::ExitCode;

// mimalloc: thread-local heaps, so the relay threads and libzmq's I/O
// threads never contend on an allocator lock (the workspace's `override`
// feature routes libzmq's message bodies there too).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROLE: &str = "shardcast-relay";

fn main() -> ExitCode {
    // Before anything else: from here on SIGINT/SIGTERM is an orderly stop
    // (report written).
    let signal = match launch::signals(ROLE) {
        Ok(s) => s,
        Err(code) => return ExitCode::from(code),
    };
    let flags = Flags::parse(); // clap exits 2 on a bad flag, naming it.
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
    let mut code = exit_code(&outcome.report);
    launch::write_output(
        ROLE,
        "--report-json",
        cfg.report_json.as_deref(),
        &outcome.report,
        &mut code,
    );
    println!("{}", outcome.report.summary());
    outcome.linger_metrics(cfg.metrics_linger, || signal.raised());
    ExitCode::from(code)
}
