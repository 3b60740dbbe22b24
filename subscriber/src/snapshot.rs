//! Plain values the monitor hands to report assembly: how the run ended,
//! the queues at a moment, where threads ran. Neither side imports the
//! other; both import these.

use crate::links::LinkReport;
use serde::Serialize;
use shardcast_agent::watch::SlowEvent;
use std::time::Duration;

/// How a run went, as the monitor saw it: everything report assembly needs
/// besides the agents' own results.
#[derive(Clone, Debug)]
pub struct RunSnapshot {
    /// Why it ended.
    pub end: EndReason,
    /// The snail's croak, if it croaked.
    pub croak: Option<SlowEvent>,
    /// The queues at the croak.
    pub croak_queues: Vec<QueueState>,
    /// Where each thread ran.
    pub placement: Vec<Placement>,
    /// Frames cut off as over --max-msg-size (the socket monitors').
    pub oversized: u64,
    /// The workers processed everything forwarded.
    pub drained: bool,
    /// Wall time of the run.
    pub wall: Duration,
    /// Each shard's connection history.
    pub links: Vec<LinkReport>,
}

/// Why a run ended (the report's `end_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    /// Every stream sent end-of-stream (or every shard's connection was cut
    /// off for good).
    EndOfStream,
    /// `--duration` passed.
    Duration,
    /// SIGINT or SIGTERM.
    Signal,
    /// The Suicidal Snail croaked (exit code 3).
    Snail,
    /// An agent failed, crashed, or stopped before end-of-stream (exit 1).
    Error,
}

impl EndReason {
    /// The name in reports and the summary line.
    pub fn name(self) -> &'static str {
        match self {
            EndReason::EndOfStream => "end-of-stream",
            EndReason::Duration => "duration",
            EndReason::Signal => "signal",
            EndReason::Snail => "snail",
            EndReason::Error => "error",
        }
    }

    /// An agent failed: that outranks every ending but the snail's (whose
    /// exit code 3 says more).
    pub fn fail(&mut self) {
        if *self != EndReason::Snail {
            *self = EndReason::Error;
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One queue at a moment (the croak's, or a warning line's).
#[derive(Clone, Debug, Serialize)]
pub struct QueueState {
    /// Agent.
    pub agent: String,
    /// Records forwarded (shard) or processed (worker).
    pub records: u64,
    /// Last sequence seen (shards).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// Records forwarded to workers but not processed yet: per worker under
    /// keyed fan-out (records handed to it minus records it processed), and
    /// the workers' total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<u64>,
}

/// A thread and where it ran.
#[derive(Clone, Debug, Serialize)]
pub struct Placement {
    /// Thread name.
    pub thread: String,
    /// Last CPU.
    pub cpu: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_reasons_serialize_as_their_report_names() {
        for r in [
            EndReason::EndOfStream,
            EndReason::Duration,
            EndReason::Signal,
            EndReason::Snail,
            EndReason::Error,
        ] {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.name()));
        }
    }

    #[test]
    fn an_agent_failure_never_hides_a_croak() {
        let mut r = EndReason::Snail;
        r.fail();
        assert_eq!(r, EndReason::Snail);
        let mut r = EndReason::EndOfStream;
        r.fail();
        assert_eq!(r, EndReason::Error);
    }
}
