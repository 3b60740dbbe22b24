//! `shardcast-itchgen`: parse, resolve, run, report, exit code. The work is
//! in the library.

use clap::Parser;
use shardcast_agent::{exit, launch};
use shardcast_itchgen::{cli::Flags, run, Config, RunError};
use std::process::ExitCode;

const ROLE: &str = "shardcast-itchgen";

fn main() -> ExitCode {
    // Before anything else: SIGINT/SIGTERM stop the day between two writes
    // with a report of what was written.
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
    let (report, mut code) = match run(&cfg, &signal) {
        Ok(r) => (r, exit::OK),
        Err(RunError::Stopped { wanted, report }) => {
            eprintln!(
                "{ROLE}: error: stopped by a signal after {} of {wanted} messages; {} holds an incomplete day",
                report.messages, report.out
            );
            (*report, exit::FAILURE)
        }
        Err(e) => {
            eprintln!("{ROLE}: error: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
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
