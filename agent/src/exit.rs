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

/// clap value parser for durations in seconds that may be zero.
pub fn non_negative_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err(format!(
            "'{s}' must be zero or a positive number of seconds"
        )),
        Err(_) => Err(format!("'{s}' is not a number of seconds")),
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
