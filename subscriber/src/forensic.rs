//! The Suicidal Snail's last acts before exit code 3: the forensic report
//! (`--snail-report`) and the operator alarm (`--alarm`).
//!
//! The alarm is one ZeroMQ message of one frame, UTF-8 JSON, sent from a
//! PUSH socket that connects to the operator's endpoint (the operator binds
//! a PULL). Its keys are a contract, listed in docs/PROTOCOL.md ("Alarm
//! message"): `kind` ("shardcast.alarm"), `version` (1), `role`, `host`,
//! `pid`, `reason` ("snail"), `stage`, `agent`, `lag_ns`, `max_lag_ms`,
//! `mode`, `publisher_id`, `stream_id`, `seq`, `symbol`, `at_ns`,
//! `exit_code`, `snail_report` (the forensic report's path, or null).

use crate::report::{Forensics, SnailReport};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// How long the alarm may wait for the operator's endpoint: the subscriber
/// is exiting because it is behind, so it must not hang on a dead operator.
pub const ALARM_TIMEOUT: Duration = Duration::from_secs(1);

/// This host's name (for reports and alarms read on another machine).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Write the forensic report; say where, or why not.
pub fn write_report(path: &Path, f: &Forensics) -> bool {
    match shardcast_agent::files::write_json(path, f) {
        Ok(()) => {
            eprintln!(
                "shardcast-sub: snail forensic report written to {}",
                path.display()
            );
            true
        }
        Err(e) => {
            eprintln!(
                "shardcast-sub: error: writing --snail-report {}: {e}; check the directory exists and is writable",
                path.display()
            );
            false
        }
    }
}

/// The alarm message.
#[derive(Debug, Serialize)]
pub struct Alarm<'a> {
    /// Always "shardcast.alarm".
    pub kind: &'static str,
    /// Format version (1).
    pub version: u32,
    /// Always "shardcast-sub".
    pub role: &'static str,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Why: "snail".
    pub reason: &'static str,
    /// The croak's details (flattened: `stage`, `agent`, `lag_ns`, ...).
    #[serde(flatten)]
    pub snail: &'a SnailReport,
    /// The exit code that follows (3).
    pub exit_code: u8,
    /// The forensic report's path, if one was written.
    pub snail_report: Option<String>,
}

/// Send `alarm` to `endpoint`, waiting at most [`ALARM_TIMEOUT`] for it to
/// leave. Returns whether a connection to the operator took it.
pub fn send_alarm(endpoint: &str, alarm: &Alarm<'_>) -> bool {
    let body = match serde_json::to_vec(alarm) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("shardcast-sub: error: encoding the alarm: {e}");
            return false;
        }
    };
    let result = (|| -> Result<(), zmq::Error> {
        let ctx = zmq::Context::new();
        let push = ctx.socket(zmq::PUSH)?;
        let ms = ALARM_TIMEOUT.as_millis() as i32;
        push.set_sndtimeo(ms)?;
        // Queue only to a live connection, so a missing operator shows as
        // EAGAIN after the timeout instead of a message silently dropped.
        push.set_immediate(true)?;
        // Close waits this long for the message to reach the operator.
        push.set_linger(ms)?;
        push.connect(endpoint)?;
        push.send(&body[..], 0)?;
        drop(push);
        drop(ctx);
        Ok(())
    })();
    match result {
        Ok(()) => {
            eprintln!("shardcast-sub: snail alarm sent to {endpoint}");
            true
        }
        Err(e) => {
            eprintln!(
                "shardcast-sub: error: sending the alarm to --alarm {endpoint}: {e}; \
                 (EAGAIN: nothing accepted a connection within {ALARM_TIMEOUT:?}); check an operator PULL socket is bound there"
            );
            false
        }
    }
}
