//! Exit codes shared by every shardcast binary (a contract: scripts rely on
//! them; add, never renumber).

/// Success.
pub const OK: u8 = 0;
/// Any failure not covered by a more specific code.
pub const FAILURE: u8 = 1;
/// Bad command line: an unknown flag or a flag with an invalid value.
pub const USAGE: u8 = 2;
/// The Suicidal Snail croaked: the subscriber could not keep up.
pub const SNAIL: u8 = 3;

/// A usage error that names the flag at fault and says how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for {flag}: {message}")]
pub struct UsageError {
    /// The flag, with its dashes (`--shard-cpus`).
    pub flag: &'static str,
    /// What is wrong and what to do instead.
    pub message: String,
}

impl UsageError {
    /// A usage error for `flag`.
    pub fn new(flag: &'static str, message: impl Into<String>) -> UsageError {
        UsageError {
            flag,
            message: message.into(),
        }
    }
}

/// clap value parser for durations in seconds: a finite number above zero.
pub fn positive_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("'{s}' must be a positive number of seconds"))
    }
}
