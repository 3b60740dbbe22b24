//! `shardcast-moldsim`: parse, resolve, run, report, exit code. The work is
//! in the library.

use clap::Parser;
use shardcast_agent::{exit, launch};
use shardcast_moldsim::{cli::Flags, run, Config};
use std::process::ExitCode;

const ROLE: &str = "shardcast-moldsim";

fn main() -> ExitCode {
    // Before anything else: SIGINT/SIGTERM end the feed (with its end of
    // session) or the server, with a report.
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
    let report = match run(&cfg, &signal) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{ROLE}: error: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let mut code = exit::OK;
    launch::write_output(
        ROLE,
        "--report-json",
        cfg.report_json.as_deref(),
        &report,
        &mut code,
    );
    println!("{}", report.summary());
    ExitCode::from(code)
}
