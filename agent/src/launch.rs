//! What every binary's `main` does around running, in this order: install
//! the signal flag (before anything else), report a usage error (exit 2),
//! answer `--print-config`, clear the previous run's output files, and
//! write the outputs at the end.

use crate::exit::{self, UsageError};
use crate::signals::StopSignal;
use std::path::Path;

/// Step one of every `main`, before flags are parsed: SIGINT and SIGTERM
/// become the stop flag, so a signal from the first instruction of `main`
/// on is an orderly stop with reports (see [`StopSignal::install`]). `Err`
/// carries the exit code to return.
pub fn signals(role: &str) -> Result<StopSignal, u8> {
    StopSignal::install().map_err(|e| {
        eprintln!("{role}: error: cannot install signal handlers: {e}");
        exit::FAILURE
    })
}

/// Resolve-or-exit: `Ok` carries the configuration to run with; `Err`
/// carries the exit code `main` should return right away (a usage error,
/// or `--print-config` done).
pub fn start<C: serde::Serialize>(
    role: &str,
    resolved: Result<C, UsageError>,
    print_config: bool,
) -> Result<C, u8> {
    let cfg = resolved.map_err(|e| {
        eprintln!("{role}: error: {e}");
        exit::USAGE
    })?;
    if print_config {
        return Err(match serde_json::to_string_pretty(&cfg) {
            Ok(s) => {
                println!("{s}");
                exit::OK
            }
            Err(e) => {
                eprintln!("{role}: error: cannot print the configuration: {e}");
                exit::FAILURE
            }
        });
    }
    Ok(cfg)
}

/// Before a run: remove what a previous run left at each output path
/// (`(flag, path)`; regular files only), so that a file found there
/// afterwards is this run's, whatever ends it: a failure before it could
/// report, or a kill. A file that cannot be removed could not be replaced
/// at the end either: that fails now (exit 1), naming the flag, before any
/// work is done.
pub fn clear_outputs(role: &str, outputs: &[(&str, &Path)]) -> Result<(), u8> {
    for (flag, path) in outputs {
        if let Err(e) = crate::files::remove_stale(path) {
            eprintln!("{role}: error: {flag} {}: {e}", path.display());
            return Err(exit::FAILURE);
        }
    }
    Ok(())
}

/// Write a JSON output file if asked for (through [`crate::files`]); a
/// failure is reported naming the flag and turns the exit code into at
/// least [`exit::FAILURE`].
pub fn write_output<T: serde::Serialize>(
    role: &str,
    flag: &str,
    path: Option<&Path>,
    value: &T,
    code: &mut u8,
) {
    if let Some(path) = path {
        if let Err(e) = crate::files::write_json(path, value) {
            eprintln!("{role}: error: writing {flag} {}: {e}", path.display());
            *code = (*code).max(exit::FAILURE);
        }
    }
}
