//! `shardcast-pub`: parse, resolve, run, report, exit code. The work is in
//! the library.

use clap::Parser;
use shardcast_agent::exit;
use shardcast_agent::files::write_json;
use shardcast_agent::signals::StopSignal;
use shardcast_publisher::{cli::Flags, config::Config, run};
use std::process::ExitCode;

// mimalloc serves every Rust allocation (per-symbol maps, report building,
// start-up) from thread-local heaps, so agents never contend on an allocator
// lock. libzmq's own C++ allocations (message bodies above 33 bytes) still go
// to the C library's malloc: this binary does not override it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let flags = Flags::parse(); // clap exits 2 on a bad flag, naming it.
    let cfg = match Config::resolve(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardcast-pub: error: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    if flags.print_config {
        return match serde_json::to_string_pretty(&cfg) {
            Ok(s) => {
                println!("{s}");
                ExitCode::from(exit::OK)
            }
            Err(e) => {
                eprintln!("shardcast-pub: error: cannot print the configuration: {e}");
                ExitCode::from(exit::FAILURE)
            }
        };
    }
    let signal = match StopSignal::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shardcast-pub: error: cannot install signal handlers: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let report = match run(&cfg, &signal) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shardcast-pub: error: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let mut code = exit::OK;
    if let Some(path) = &cfg.report_json {
        if let Err(e) = write_json(path, &report) {
            eprintln!(
                "shardcast-pub: error: writing --report-json {}: {e}",
                path.display()
            );
            code = exit::FAILURE;
        }
    }
    println!("{}", report.summary());
    ExitCode::from(code)
}
