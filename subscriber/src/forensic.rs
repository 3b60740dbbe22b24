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

use crate::config::Config;
use crate::report::{Forensics, HwmReport, RecentLatency, Report, SnailReport};
use serde::Serialize;
use shardcast_agent::exit::SNAIL;
use shardcast_agent::watch::{AgentKind, SlowEvent};
use shardcast_proto::snail::LagMode;
use shardcast_proto::wire::Symbol;
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

/// The alarm line on stderr for the croak `ev`, with the queues as they
/// were (`queues`, one line).
pub fn alarm_line(cfg: &Config, ev: &SlowEvent, queues: &str) -> String {
    if ev.watchdog {
        format!(
            "shardcast-sub: SNAIL ALARM: {}-{} has taken no record for {:.1} ms with records queued for it \
             (limit {} ms, measured on this host's clock): queues: {queues}; exiting with code {SNAIL}",
            ev.stage.name(),
            ev.index,
            ev.lag_ns as f64 / 1e6,
            cfg.max_lag_ms,
        )
    } else {
        format!(
            "shardcast-sub: SNAIL ALARM: {}-{} saw a message {:.1} ms old (limit {} ms, {}): \
             publisher {} stream {} seq {} symbol {}; queues: {queues}; exiting with code {SNAIL}",
            ev.stage.name(),
            ev.index,
            ev.lag_ns as f64 / 1e6,
            cfg.max_lag_ms,
            lag_basis(cfg.snail_mode, ev.stage),
            ev.publisher_id,
            ev.stream_id,
            ev.seq,
            Symbol(ev.symbol),
        )
    }
}

/// What a lag was measured against, for the alarm line.
fn lag_basis(mode: LagMode, kind: AgentKind) -> &'static str {
    match (mode, kind) {
        (LagMode::Absolute, _) => "absolute: receive time minus send time",
        (LagMode::Relative, AgentKind::Shard) => {
            "relative: age above the stream's smallest age in the window"
        }
        (LagMode::Relative, AgentKind::Worker) => {
            "relative: time in this subscriber's worker queue"
        }
    }
}

/// After a croak: write the forensic report (`--snail-report`) and send the
/// operator alarm (`--alarm`), before anything else is written: if a later
/// step fails or hangs, they are already out. Clears `report.files_ok` when
/// the forensic report could not be written.
pub fn on_croak(cfg: &Config, report: &mut Report, recent: Vec<RecentLatency>) {
    let Some(snail) = &report.snail else {
        return;
    };
    let forensics = Forensics {
        kind: "shardcast.snail_report",
        version: 1,
        host: host_name(),
        pid: std::process::id(),
        snail: snail.clone(),
        hwm: HwmReport {
            rcvhwm: cfg.rcvhwm,
            rcvbuf: cfg.rcvbuf,
            inproc_hwm: cfg.inproc_hwm,
            coalesce: cfg.coalesce,
            max_msg_size: cfg.max_msg_size,
        },
        streams: report.streams.clone(),
        shards: report.shards.clone(),
        workers: report.workers.clone(),
        links: report.links.clone(),
        recent_latency: recent,
        latency_ns: report.latency_ns.clone(),
        placement: report.placement.clone(),
    };
    let written = cfg
        .snail_report
        .as_deref()
        .map(|p| write_report(p, &forensics));
    if let Some(ep) = &cfg.alarm {
        send_alarm(
            ep,
            &Alarm {
                kind: "shardcast.alarm",
                version: 1,
                role: "shardcast-sub",
                host: forensics.host.clone(),
                pid: forensics.pid,
                reason: "snail",
                snail,
                exit_code: SNAIL,
                snail_report: cfg
                    .snail_report
                    .as_ref()
                    .filter(|_| written == Some(true))
                    .map(|p| p.display().to_string()),
            },
        );
    }
    if written == Some(false) {
        report.files_ok = false;
    }
}
