//! The tool's report (`--report-json`): what the feed sent and dropped, and
//! what the server answered. Keys are a contract: add, never rename.

use crate::{Config, Day};
use serde::Serialize;
use std::time::Instant;

/// What the feed (`--to`) did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FeedReport {
    /// Where it went.
    pub to: String,
    /// Data packets sent.
    pub packets_sent: u64,
    /// Messages in them.
    pub messages_sent: u64,
    /// Data packets dropped on purpose (`--drop-every`, `--drop-seq`).
    pub packets_dropped: u64,
    /// Messages in them.
    pub messages_dropped: u64,
    /// The first dropped ranges of sequence numbers, `[first, last]`,
    /// adjacent ones merged (at most 64).
    pub dropped_ranges: Vec<[u64; 2]>,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// End-of-session packets sent.
    pub end_of_session_sent: u64,
    /// The sequence number the end of session announced (one past the last
    /// message).
    pub next_seq: u64,
    /// Whether a signal cut the feed short (its end of session still went).
    pub stopped_by_signal: bool,
    /// From the first packet to the last end of session, seconds.
    pub elapsed_s: f64,
}

/// What the re-request server (`--serve`) did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServerReport {
    /// The address it was bound to.
    pub bound: String,
    /// Datagrams received.
    pub requests: u64,
    /// Requests answered (one packet each).
    pub answered: u64,
    /// Messages those requests asked for.
    pub messages_requested: u64,
    /// Messages the answers carried (an answer holds one packet's worth).
    pub messages_answered: u64,
    /// Datagrams that were not request packets.
    pub refused_malformed: u64,
    /// Requests for another session.
    pub refused_session: u64,
    /// Requests starting past the day's last message.
    pub refused_beyond: u64,
    /// Answers the OS would not send.
    pub send_errors: u64,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The ITCH file.
    pub file: String,
    /// The session.
    pub session: String,
    /// Complete messages in the file (sequence numbers 1 to this).
    pub messages: u64,
    /// A truncated message at the end of the file (not sent): 0 or 1.
    pub truncated: u64,
    /// The feed, if `--to`.
    pub feed: Option<FeedReport>,
    /// The server, if `--serve`.
    pub server: Option<ServerReport>,
    /// The whole run, seconds.
    pub elapsed_s: f64,
}

impl Report {
    /// Assemble the report.
    pub fn new(
        cfg: &Config,
        day: &Day,
        feed: Option<FeedReport>,
        server: Option<ServerReport>,
        started: Instant,
    ) -> Report {
        Report {
            file: cfg.file.display().to_string(),
            session: cfg.session.to_string(),
            messages: day.messages(),
            truncated: day.truncated(),
            feed,
            server,
            elapsed_s: started.elapsed().as_secs_f64(),
        }
    }

    /// One line for stdout.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "shardcast-moldsim: session {}, {} messages in {}",
            self.session, self.messages, self.file
        );
        if let Some(f) = &self.feed {
            s += &format!(
                "; feed to {}: {} packets sent, {} dropped ({} messages), {} heartbeats, {} end of session",
                f.to,
                f.packets_sent,
                f.packets_dropped,
                f.messages_dropped,
                f.heartbeats,
                f.end_of_session_sent
            );
        }
        if let Some(r) = &self.server {
            s += &format!(
                "; server on {}: {} requests, {} answered ({} messages)",
                r.bound, r.requests, r.answered, r.messages_answered
            );
        }
        s
    }
}
