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

/// The longest run, timeout or interval any time flag takes: one year, in
/// seconds. Far beyond anything meant (a longer run leaves `--duration`
/// out), and far inside what the timestamps (u64 nanoseconds: 584 years)
/// and `Instant` arithmetic hold, so no flag value can overflow them: issue
/// 10, finding 8 (`--duration 1e300` panicked turning into a `Duration`).
pub const MAX_SECONDS: f64 = 31_536_000.0;
/// [`MAX_SECONDS`] in milliseconds, for the `_MS` flags.
pub const MAX_MS: u64 = 31_536_000_000;
/// The largest clock offset, clock skew or lag limit: one day, in ms. A
/// clock wrong by more than a day, or a subscriber allowed to be a day
/// behind, is a mistake on the command line, not a setting.
pub const DAY_MS: u64 = 86_400_000;

/// clap value parser for durations in seconds that may be zero: finite, 0
/// to [`MAX_SECONDS`].
pub fn non_negative_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=MAX_SECONDS).contains(&v) => Ok(v),
        Ok(_) => Err(format!(
            "'{s}' must be a number of seconds from 0 to {MAX_SECONDS} (a year)"
        )),
        Err(_) => Err(format!("'{s}' is not a number of seconds")),
    }
}

/// clap value parser for durations in seconds: finite, at least a
/// nanosecond (less would be no time at all) and at most [`MAX_SECONDS`].
pub fn positive_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if v.is_finite() && (1e-9..=MAX_SECONDS).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "'{s}' must be a positive number of seconds, from 1e-9 to {MAX_SECONDS} (a year)"
        ))
    }
}

/// A failure while building or running a pipeline that is not the user's
/// command line (exit code [`FAILURE`]): the context says what was being
/// done, so the message points at the flag or resource involved.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A libzmq call failed.
    #[error("{context}: {source}")]
    Zmq {
        /// What was being done.
        context: String,
        /// libzmq's error.
        source: zmq::Error,
    },
    /// An OS call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// `map_err` adapter: `socket.bind(ep).map_err(zerr("binding"))?`.
pub fn zerr(context: impl Into<String>) -> impl FnOnce(zmq::Error) -> SetupError {
    let context = context.into();
    move |source| SetupError::Zmq { context, source }
}

/// `map_err` adapter for OS errors.
pub fn ioerr(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SetupError {
    let context = context.into();
    move |source| SetupError::Io { context, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parsers_take_only_what_a_duration_can_hold() {
        for bad in [
            "1e300",
            "inf",
            "-inf",
            "nan",
            "NaN",
            "-1",
            "31536000.5",
            "1e-10",
            "x",
            "",
        ] {
            assert!(positive_seconds(bad).is_err(), "{bad}");
        }
        for bad in ["1e300", "inf", "nan", "-1", "-0.001", "31536001"] {
            assert!(non_negative_seconds(bad).is_err(), "{bad}");
        }
        assert_eq!(positive_seconds("31536000"), Ok(MAX_SECONDS));
        assert_eq!(positive_seconds("0.5"), Ok(0.5));
        assert_eq!(non_negative_seconds("0"), Ok(0.0));
        // Whatever they accept turns into a Duration without a panic.
        for ok in ["1e-9", "31536000"] {
            let _ = std::time::Duration::from_secs_f64(positive_seconds(ok).unwrap());
        }
        let _ = std::time::Instant::now() + std::time::Duration::from_millis(MAX_MS);
    }
}
