//! What every binary's `main` does between parsing flags and running:
//! report a usage error (exit 2), answer `--print-config`, install the
//! signal flag, and write reports at the end.

use crate::exit::{self, UsageError};
use crate::signals::StopSignal;
use std::path::Path;

/// Resolve-or-exit: `Ok` carries the configuration and the signal flag to
/// run with; `Err` carries the exit code `main` should return right away.
pub fn start<C: serde::Serialize>(
    role: &str,
    resolved: Result<C, UsageError>,
    print_config: bool,
) -> Result<(C, StopSignal), u8> {
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
    let signal = StopSignal::install().map_err(|e| {
        eprintln!("{role}: error: cannot install signal handlers: {e}");
        exit::FAILURE
    })?;
    Ok((cfg, signal))
}

/// Write a JSON output file if asked for; a failure is reported naming the
/// flag and turns the exit code into at least [`exit::FAILURE`].
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
