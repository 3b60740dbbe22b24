//! `shardcast-stat`: parse, resolve, watch, report, exit code. The work is
//! in the library.

use clap::Parser;
use shardcast_agent::{exit, launch};
use shardcast_stat::{all_down, cli::Flags, run, Config};
use std::process::ExitCode;

const ROLE: &str = "shardcast-stat";

fn main() -> ExitCode {
    // Before anything else: SIGINT/SIGTERM end the watch after the current
    // refresh, with --report-json written.
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
    let stdout = std::io::stdout();
    let snap = match run(&cfg, &signal, &mut stdout.lock()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{ROLE}: error: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let mut code = exit::OK;
    if let Some(down) = all_down(&snap) {
        eprintln!("{ROLE}: error: no endpoint answered: {down}");
        code = exit::FAILURE;
    }
    launch::write_output(
        ROLE,
        "--report-json",
        cfg.report_json.as_deref(),
        &snap,
        &mut code,
    );
    ExitCode::from(code)
}
