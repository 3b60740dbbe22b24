//! Presence: who is subscribed, by name (`shardcast-sub --id NAME`).
//!
//! A subscriber names itself with one more subscription on each stream:
//! the topic [`PRESENCE_PREFIX`] followed by its id. The prefix starts with
//! `0x00` (so no symbol is ever selected by it) and goes on with `"SCI"`,
//! which no frame carries there (a batch frame has `"SCB"`, a control
//! record a zero byte), so the subscription matches no frame and costs
//! nothing on the data path. It reaches a publisher or a relay as an XPUB
//! subscription event, like any other, and through relays too: a relay
//! forwards it upstream like every topic, so a publisher knows the
//! subscribers behind its relays by name (at the relay's address).
//!
//! [`Presence`] is sans-IO: the owner of the XPUB hands it every
//! subscription event with the connection's ZAP User-Id and address, and
//! it says when a named subscriber connected or left. An unsubscribe
//! without a User-Id is libzmq's own, made up for a connection that ended:
//! its topic still names the subscriber, so a departure is always
//! attributed to the right id. An unsubscribe from a connection that does
//! not hold the id is forged or confused and changes nothing.
//!
//! Peers that predate presence see the topic as one more (harmless)
//! subscription; subscribers that predate it are counted, unnamed.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::SystemTime;

/// The first bytes of a presence subscription; the id follows.
pub const PRESENCE_PREFIX: &[u8] = b"\x00SCI";

/// Longest id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Most events kept for the report; later ones are counted only
/// (`events_dropped`), so churn cannot grow a report without bound.
pub const MAX_EVENTS: usize = 10_000;

/// Most ids tracked at once; subscriptions naming more are ignored (and
/// counted), so a peer cannot grow the table without bound.
pub const MAX_IDS: usize = 4096;

/// `--id` and `--expect-subscribers`: 1 to 64 characters from
/// `A-Z a-z 0-9 . _ - : @ /` (an id goes into log lines, reports and
/// metric labels unquoted).
pub fn id_arg(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > MAX_ID_LEN {
        return Err(format!("an id has 1 to {MAX_ID_LEN} characters"));
    }
    if let Some(c) = s.chars().find(|c| !valid_char(*c)) {
        return Err(format!(
            "{c:?} is not allowed in an id (letters, digits and . _ - : @ / only)"
        ));
    }
    Ok(s.to_string())
}

fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@' | '/')
}

/// The subscription topic that announces `id`.
pub fn topic(id: &str) -> Vec<u8> {
    let mut t = PRESENCE_PREFIX.to_vec();
    t.extend_from_slice(id.as_bytes());
    t
}

/// The id a subscription topic announces, if it is a presence topic with a
/// valid id.
pub fn id_of(topic: &[u8]) -> Option<&str> {
    let id = topic.strip_prefix(PRESENCE_PREFIX)?;
    let id = std::str::from_utf8(id).ok()?;
    id_arg(id).ok().map(|_| id)
}

/// Whether a subscription topic is a presence topic (valid id or not):
/// never a symbol selection.
pub fn is_presence(topic: &[u8]) -> bool {
    topic.starts_with(PRESENCE_PREFIX)
}

/// Wall-clock time as RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A subscriber present now (report `subscribers[]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Subscriber {
    /// Its `--id`.
    pub id: String,
    /// The address it connected from (for one behind a relay: the relay's).
    pub address: Option<String>,
    /// When it announced itself (RFC 3339 UTC).
    pub since: String,
    /// Connections holding the id now (a subscriber has one per stream
    /// socket; two processes sharing an id show here).
    pub connections: usize,
}

/// A connect or disconnect (report `subscriber_events[]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `"connected"` or `"disconnected"`.
    pub event: &'static str,
    /// The subscriber's id.
    pub id: String,
    /// The address it connected from.
    pub address: Option<String>,
    /// When (RFC 3339 UTC).
    pub at: String,
}

/// What one subscription event changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Not a presence topic (or an ignored one): nothing.
    None,
    /// `id` is present now (it was not).
    Connected(Event),
    /// `id` left (nobody holds it any more).
    Disconnected(Event),
}

#[derive(Debug)]
struct Entry {
    /// Connections (ZAP User-Ids) holding the id.
    holders: BTreeSet<Box<str>>,
    address: Option<IpAddr>,
    since: SystemTime,
}

/// The named subscribers of one socket (sans-IO).
#[derive(Debug, Default)]
pub struct Presence {
    present: BTreeMap<String, Entry>,
    events: Vec<Event>,
    events_dropped: u64,
    ignored: u64,
    expected: Vec<String>,
    /// Expected ids reported missing and not back since.
    warned: BTreeSet<String>,
}

impl Presence {
    /// A table expecting `expected` (`--expect-subscribers`).
    pub fn new(expected: &[String]) -> Presence {
        Presence {
            expected: expected.to_vec(),
            ..Presence::default()
        }
    }

    /// Take one XPUB subscription event: `event[0]` 1 (subscribe) or 0
    /// (unsubscribe), the rest its topic; `user` the connection's ZAP
    /// User-Id (`None`: libzmq's own, for a connection that ended);
    /// `address` its peer address; `now` the wall clock.
    pub fn on_subscription(
        &mut self,
        event: &[u8],
        user: Option<&str>,
        address: Option<IpAddr>,
        now: SystemTime,
    ) -> Change {
        let Some((&kind, t)) = event.split_first() else {
            return Change::None;
        };
        if !is_presence(t) {
            return Change::None;
        }
        let Some(id) = id_of(t) else {
            self.ignored += 1;
            return Change::None;
        };
        // Without a User-Id (no ZAP domain, e.g. an old peer's socket)
        // every connection is one anonymous holder.
        let holder = user.unwrap_or("");
        match kind {
            1 => {
                if let Some(e) = self.present.get_mut(id) {
                    e.holders.insert(holder.into());
                    return Change::None;
                }
                if self.present.len() >= MAX_IDS {
                    self.ignored += 1;
                    return Change::None;
                }
                self.present.insert(
                    id.to_string(),
                    Entry {
                        holders: BTreeSet::from([holder.into()]),
                        address,
                        since: now,
                    },
                );
                self.warned.remove(id);
                let ev = self.event("connected", id, address, now);
                Change::Connected(ev)
            }
            0 => {
                let Some(e) = self.present.get_mut(id) else {
                    self.ignored += 1;
                    return Change::None;
                };
                match user {
                    Some(u) => {
                        if !e.holders.remove(u) {
                            // Forged or confused: not this connection's.
                            self.ignored += 1;
                            return Change::None;
                        }
                    }
                    None => {
                        // libzmq's, for an ended connection holding the id:
                        // which of the holders is unknown, that one left is
                        // certain.
                        let any = e.holders.iter().next().cloned();
                        if let Some(any) = any {
                            e.holders.remove(&any);
                        }
                    }
                }
                if !e.holders.is_empty() {
                    return Change::None;
                }
                let e = self.present.remove(id).expect("present");
                let ev = self.event("disconnected", id, e.address, now);
                Change::Disconnected(ev)
            }
            _ => Change::None,
        }
    }

    fn event(&mut self, what: &'static str, id: &str, a: Option<IpAddr>, now: SystemTime) -> Event {
        let ev = Event {
            event: what,
            id: id.to_string(),
            address: a.map(|a| a.to_string()),
            at: rfc3339(now),
        };
        if self.events.len() < MAX_EVENTS {
            self.events.push(ev.clone());
        } else {
            self.events_dropped += 1;
        }
        ev
    }

    /// The subscribers present now, by id.
    pub fn subscribers(&self) -> Vec<Subscriber> {
        self.present
            .iter()
            .map(|(id, e)| Subscriber {
                id: id.clone(),
                address: e.address.map(|a| a.to_string()),
                since: rfc3339(e.since),
                connections: e.holders.len(),
            })
            .collect()
    }

    /// Named subscribers present now.
    pub fn present_count(&self) -> usize {
        self.present.len()
    }

    /// Whether `id` is present now.
    pub fn is_present(&self, id: &str) -> bool {
        self.present.contains_key(id)
    }

    /// Every connect and disconnect so far (the first [`MAX_EVENTS`]).
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Events not kept (past [`MAX_EVENTS`]).
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// Presence subscriptions ignored: invalid ids, unsubscribes for an id
    /// the connection did not hold, ids past [`MAX_IDS`].
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// The expected ids (`--expect-subscribers`) not present now.
    pub fn missing(&self) -> Vec<String> {
        self.expected
            .iter()
            .filter(|id| !self.present.contains_key(id.as_str()))
            .cloned()
            .collect()
    }

    /// The expected ids missing now that were not reported missing since
    /// they were last present: the caller warns about each once.
    pub fn newly_missing(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for id in self.missing() {
            if self.warned.insert(id.clone()) {
                out.push(id);
            }
        }
        out
    }
}

/// The report of one socket's presence: who is there at the end, and what
/// happened (`subscribers`, `subscriber_events`, `missing_subscribers`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PresenceReport {
    /// Named subscribers present at the end.
    pub subscribers: Vec<Subscriber>,
    /// Every connect and disconnect, in order.
    pub subscriber_events: Vec<Event>,
    /// Events past [`MAX_EVENTS`], not listed.
    pub subscriber_events_dropped: u64,
    /// `--expect-subscribers` ids not present at the end.
    pub missing_subscribers: Vec<String>,
    /// Presence subscriptions ignored (see [`Presence::ignored`]).
    pub presence_ignored: u64,
}

impl From<&Presence> for PresenceReport {
    fn from(p: &Presence) -> PresenceReport {
        PresenceReport {
            subscribers: p.subscribers(),
            subscriber_events: p.events.clone(),
            subscriber_events_dropped: p.events_dropped,
            missing_subscribers: p.missing(),
            presence_ignored: p.ignored,
        }
    }
}

/// A named subscriber over every stream (report `subscribers[]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NamedSubscriber {
    /// Its `--id`.
    pub id: String,
    /// The address it connected from (the earliest stream's; behind a
    /// relay, the relay's).
    pub address: Option<String>,
    /// When it announced itself first, on any stream (RFC 3339 UTC).
    pub since: String,
    /// The streams it is present on.
    pub streams: Vec<usize>,
}

/// A presence event of one stream (report `subscriber_events[]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StreamEvent {
    /// The stream.
    pub stream: usize,
    /// `event` ("connected" or "disconnected"), `id`, `address`, `at`.
    #[serde(flatten)]
    pub event: Event,
}

/// What the top-level presence keys hold: every stream's merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergedPresence {
    /// `subscribers`.
    pub subscribers: Vec<NamedSubscriber>,
    /// `subscriber_events`.
    pub subscriber_events: Vec<StreamEvent>,
    /// `subscriber_events_dropped`.
    pub subscriber_events_dropped: u64,
    /// `missing_subscribers`.
    pub missing_subscribers: Vec<String>,
}

impl MergedPresence {
    /// Merge the streams' presence (`(stream index, its report)`);
    /// `expected` orders `missing_subscribers`.
    pub fn merge<'a>(
        streams: impl IntoIterator<Item = (usize, &'a PresenceReport)>,
        expected: &[String],
    ) -> MergedPresence {
        let mut by_id: BTreeMap<String, NamedSubscriber> = BTreeMap::new();
        let mut events = Vec::new();
        let mut dropped = 0;
        let mut missing = BTreeSet::new();
        for (stream, p) in streams {
            for s in &p.subscribers {
                let e = by_id
                    .entry(s.id.clone())
                    .or_insert_with(|| NamedSubscriber {
                        id: s.id.clone(),
                        address: s.address.clone(),
                        since: s.since.clone(),
                        streams: Vec::new(),
                    });
                // RFC 3339 UTC of one width: text order is time order.
                if s.since < e.since {
                    e.since = s.since.clone();
                    e.address = s.address.clone();
                }
                e.streams.push(stream);
            }
            events.extend(p.subscriber_events.iter().map(|e| StreamEvent {
                stream,
                event: e.clone(),
            }));
            dropped += p.subscriber_events_dropped;
            missing.extend(p.missing_subscribers.iter().map(String::as_str));
        }
        // Stable: a stream's events keep their order within one instant.
        events.sort_by(|a, b| (&a.event.at, a.stream).cmp(&(&b.event.at, b.stream)));
        for s in by_id.values_mut() {
            s.streams.sort_unstable();
        }
        MergedPresence {
            subscribers: by_id.into_values().collect(),
            subscriber_events: events,
            subscriber_events_dropped: dropped,
            missing_subscribers: expected
                .iter()
                .filter(|id| missing.contains(id.as_str()))
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip() -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, 7]))
    }

    fn sub(id: &str) -> Vec<u8> {
        let mut v = vec![1];
        v.extend(topic(id));
        v
    }

    fn unsub(id: &str) -> Vec<u8> {
        let mut v = vec![0];
        v.extend(topic(id));
        v
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn the_topic_matches_no_frame_and_round_trips() {
        let t = topic("desk-1");
        assert_eq!(&t[..4], b"\x00SCI");
        assert_eq!(id_of(&t), Some("desk-1"));
        // A batch frame starts 00 'S' 'C' 'B'; a control record 00 00.
        assert!(!b"\x00SCB\x01".starts_with(&t[..4]));
        assert!(!is_presence(b"\x00\x00\x00\x00"));
        assert!(!is_presence(b"AAPL"));
        assert_eq!(id_of(b"\x00SCI"), None, "an empty id is none");
        assert_eq!(id_of(b"\x00SCIa b"), None, "a space is not allowed");
        assert!(id_arg(&"x".repeat(65)).is_err());
        assert!(id_arg("risk@ny4/2:a.b_c-d").is_ok());
    }

    #[test]
    fn connects_and_disconnects_are_events_once_per_id() {
        let mut p = Presence::new(&[]);
        let c = p.on_subscription(&sub("a"), Some("1"), ip(), at(0));
        assert!(
            matches!(c, Change::Connected(ref e) if e.id == "a" && e.address.as_deref() == Some("10.0.0.7"))
        );
        // Its second stream's connection: no new event.
        assert_eq!(
            p.on_subscription(&sub("a"), Some("2"), ip(), at(1)),
            Change::None
        );
        assert_eq!(p.subscribers()[0].connections, 2);
        assert_eq!(
            p.on_subscription(&unsub("a"), Some("1"), ip(), at(2)),
            Change::None
        );
        let c = p.on_subscription(&unsub("a"), Some("2"), ip(), at(3));
        assert!(matches!(c, Change::Disconnected(ref e) if e.id == "a"));
        assert!(p.subscribers().is_empty());
        assert_eq!(p.events().len(), 2);
        assert_eq!(p.events()[0].at, "2027-01-15T08:00:00.000Z");
    }

    #[test]
    fn a_forged_unsubscribe_changes_nothing_and_libzmqs_own_names_the_leaver() {
        let mut p = Presence::new(&[]);
        p.on_subscription(&sub("a"), Some("1"), ip(), at(0));
        p.on_subscription(&sub("b"), Some("2"), ip(), at(0));
        assert_eq!(
            p.on_subscription(&unsub("a"), Some("9"), ip(), at(1)),
            Change::None
        );
        assert!(p.is_present("a"));
        assert_eq!(p.ignored(), 1);
        // Connection 2 ended: libzmq unsubscribes its topics without an id.
        let c = p.on_subscription(&unsub("b"), None, None, at(2));
        assert!(matches!(c, Change::Disconnected(ref e) if e.id == "b"));
        assert!(p.is_present("a"));
    }

    #[test]
    fn an_expected_subscriber_missing_is_reported_once_until_it_comes_back() {
        let mut p = Presence::new(&["a".into(), "b".into()]);
        p.on_subscription(&sub("a"), Some("1"), ip(), at(0));
        assert_eq!(p.newly_missing(), vec!["b".to_string()]);
        assert!(p.newly_missing().is_empty());
        p.on_subscription(&unsub("a"), Some("1"), ip(), at(1));
        assert_eq!(p.newly_missing(), vec!["a".to_string()]);
        p.on_subscription(&sub("a"), Some("3"), ip(), at(2));
        assert_eq!(p.missing(), vec!["b".to_string()]);
        p.on_subscription(&unsub("a"), Some("3"), ip(), at(3));
        assert_eq!(p.newly_missing(), vec!["a".to_string()], "warned again");
        let r = PresenceReport::from(&p);
        assert_eq!(
            r.missing_subscribers,
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(r.subscriber_events.len(), 4);
    }

    #[test]
    fn other_topics_are_not_presence() {
        let mut p = Presence::new(&[]);
        for t in [&b"\x01\x00"[..], b"\x01", b"\x01AAPL", b"\x00\x00"] {
            assert_eq!(p.on_subscription(t, Some("1"), ip(), at(0)), Change::None);
        }
        assert_eq!(p.ignored(), 0);
        assert_eq!(
            p.on_subscription(b"\x01\x00SCIbad id", Some("1"), ip(), at(0)),
            Change::None
        );
        assert_eq!(p.ignored(), 1);
    }
}
