//! `shardcast-sub`: parse, resolve, run, report, map the outcome to an exit
//! code. Everything else lives in the library.

use clap::Parser;
use shardcast_agent::exit;
use shardcast_agent::files::write_json;
use shardcast_agent::signals::StopSignal;
use shardcast_subscriber::{cli::Flags, config::Config, run};
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
            eprintln!("shardcast-sub: error: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    if flags.print_config {
        match serde_json::to_string_pretty(&cfg) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("shardcast-sub: error: cannot print the configuration: {e}");
                return ExitCode::from(exit::FAILURE);
            }
        }
        return ExitCode::from(exit::OK);
    }
    let signal = match StopSignal::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shardcast-sub: error: cannot install signal handlers: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let outcome = match run(&cfg, &signal) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("shardcast-sub: error: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let mut code = outcome.exit_code;
    if let Some(path) = &cfg.report_json {
        if let Err(e) = write_json(path, &outcome.report) {
            eprintln!(
                "shardcast-sub: error: writing --report-json {}: {e}",
                path.display()
            );
            code = code.max(exit::FAILURE);
        }
    }
    if let Some(path) = &cfg.books_out {
        if let Err(e) = write_json(path, &outcome.books.snapshot()) {
            eprintln!(
                "shardcast-sub: error: writing --books-out {}: {e}",
                path.display()
            );
            code = code.max(exit::FAILURE);
        }
    }
    println!("{}", outcome.report.summary());
    ExitCode::from(code)
}
