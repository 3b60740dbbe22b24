//! `shardcast-pub`: parse, resolve, run, report, exit code. The work is in
//! the library.

use clap::Parser;
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
    let flags = Flags::parse(); // clap exits 2 on a bad flag, naming it.
    let (cfg, signal) = match launch::start(ROLE, Config::resolve(&flags), flags.print_config) {
        Ok(v) => v,
        Err(code) => return ExitCode::from(code),
    };
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
