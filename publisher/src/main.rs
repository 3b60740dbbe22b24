//! `shardcast-pub`: parse, resolve, run, report, exit code. The work is in
//! the library.

use shardcast_agent::{exit, launch};
use shardcast_publisher::{cli::Flags, config::Config, run};
use std::process::ExitCode;

// mimalloc serves every Rust allocation from thread-local heaps, so stream
// threads never contend on an allocator lock. libzmq's own C++ allocations
// (message bodies above 33 bytes) still go to the C library's malloc: this
// binary does not override it.
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
    let (report, mut code) = match run(&cfg, &signal) {
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
