//! `shardcast-relay` (issue 16) with real processes on loopback: chained
//! hops deliver everything and prove it end to end, the subscriber's flags
//! are the same direct or relayed, a relay killed mid-stream is a gap the
//! subscriber repairs through the restarted relay, a stalled downstream
//! subscriber stalls nobody else, a relay that cannot keep up croaks, and
//! the relay knows its subscribers by name.

use crate::metrics::{get_metrics, metrics_addr};
use crate::support::*;
use serde_json::Value;
use std::path::Path;

/// A relay with its downstream endpoints (read from its "hop N: A -> B"
/// lines, so the OS picks free ports).
struct Relay {
    proc: Proc,
    endpoints: Vec<String>,
}

fn start_relay(name: &'static str, connect: &[String], binds: &[String], args: &[&str]) -> Relay {
    let mut v: Vec<String> = Vec::new();
    for (c, b) in connect.iter().zip(binds) {
        v.extend(["--connect".into(), c.clone(), "--bind".into(), b.clone()]);
    }
    v.extend(args.iter().map(|s| s.to_string()));
    let proc = Proc::spawn(name, relay_bin(), &v);
    let endpoints = (0..connect.len())
        .map(|i| relay_endpoint(&proc, i))
        .collect();
    Relay { proc, endpoints }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn any_port(n: usize) -> Vec<String> {
    vec!["tcp://127.0.0.1:*".to_string(); n]
}

fn p(v: &Value, stage: &str, q: &str) -> u64 {
    v["latency_ns"][stage][q].as_u64().unwrap_or(0)
}

/// Acceptance 1 and 2: publisher -> relay -> relay -> subscriber next to a
/// subscriber on the direct path, same flags but the endpoints, same run.
#[test]
fn a_chain_of_two_relays_delivers_everything_as_the_direct_path_does() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| path_str(&dir.path().join(n));
    const COUNT: u64 = 60_000;
    // Two counted subscribers: the direct one, and relay A, which only
    // subscribes once relay B has, which only does once its subscriber
    // is there: the publisher's wait covers the whole chain.
    let publ = start_pub(
        2,
        &[
            "--rate",
            "20000",
            "--count",
            &COUNT.to_string(),
            "--wait-subscribers",
            "2",
            "--wait-timeout",
            "60",
            "--report-json",
            &f("pub.json"),
        ],
    );
    let a = start_relay(
        "relay-a",
        &publ.endpoints,
        &any_port(2),
        &["--id", "relay-a", "--report-json", &f("a.json")],
    );
    let b = start_relay(
        "relay-b",
        &a.endpoints,
        &any_port(2),
        &["--id", "relay-b", "--report-json", &f("b.json")],
    );
    let sub_args = |id: &'static str, json: String, books: String| -> Vec<String> {
        [
            "--id",
            id,
            "--workers",
            "1",
            "--report-json",
            &json,
            "--books-out",
            &books,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let direct_args = sub_args("direct", f("direct.json"), f("direct-books.json"));
    let relayed_args = sub_args("relayed", f("relayed.json"), f("relayed-books.json"));
    let direct = start_sub(&publ.endpoints, &strs(&direct_args));
    let relayed = start_sub(&b.endpoints, &strs(&relayed_args));
    for (name, p) in [("direct", direct), ("relayed", relayed)] {
        let (st, err, _) = p.wait();
        assert!(st.success(), "{name}: {err}");
    }
    let (st, perr, _) = publ.proc.wait();
    assert!(st.success(), "publisher: {perr}");
    for r in [a, b] {
        let name = r.proc.name;
        let (st, err, _) = r.proc.wait();
        assert!(st.success(), "{name}: {err}");
    }
    let d = read_json(Path::new(&f("direct.json")));
    let r = read_json(Path::new(&f("relayed.json")));
    for (name, v) in [("direct", &d), ("relayed", &r)] {
        assert_eq!(u(v, "lost"), 0, "{name}: {v}");
        assert_eq!(u(v, "missed_before_join"), 0, "{name}: {v}");
        assert_eq!(u(v, "received"), COUNT, "{name}: {v}");
        // Complete: end-of-stream's count and checksum matched what came.
        assert_eq!(v["streams_complete"], true, "{name}: {v}");
    }
    // The same books: the relays changed nothing.
    let books = |n: &str| std::fs::read_to_string(f(n)).unwrap();
    assert_eq!(books("direct-books.json"), books("relayed-books.json"));
    for n in ["a.json", "b.json"] {
        let v = read_json(Path::new(&f(n)));
        assert_eq!(u(&v, "lost"), 0, "{n}: {v}");
        assert_eq!(u(&v, "received"), COUNT, "{n}: {v}");
        assert_eq!(v["streams_complete"], true, "{n}: {v}");
        assert_eq!(v["end_reason"], "end-of-stream", "{n}: {v}");
    }
    // Presence through the chain: the publisher knows the relayed
    // subscriber by name, at relay A's address.
    let pv = read_json(Path::new(&f("pub.json")));
    let ids: Vec<&str> = pv["subscriber_events"]
        .as_array()
        .expect("subscriber_events")
        .iter()
        .filter(|e| e["event"] == "connected")
        .filter_map(|e| e["id"].as_str())
        .collect();
    for id in ["direct", "relayed", "relay-a", "relay-b"] {
        assert!(ids.contains(&id), "{id} not among {ids:?}");
    }
    eprintln!(
        "relay: end to end, direct p50 {} us p99 {} us; through two relays p50 {} us p99 {} us",
        p(&d, "end_to_end", "p50") / 1000,
        p(&d, "end_to_end", "p99") / 1000,
        p(&r, "end_to_end", "p50") / 1000,
        p(&r, "end_to_end", "p99") / 1000,
    );
}

/// The sub's `shardcast_received_total`, from its metrics endpoint.
fn received(addr: std::net::SocketAddr) -> f64 {
    get_metrics(addr)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("shardcast_received_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Acceptance 3: a relay killed (SIGKILL) mid-stream and restarted on the
/// same endpoints. The subscriber that can repair (through the restarted
/// relay's retransmission pass-through) completes with nothing lost; the
/// one that cannot names the gap; the publisher never notices.
#[test]
fn a_relay_killed_mid_stream_is_a_gap_repaired_through_its_successor() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| path_str(&dir.path().join(n));
    const COUNT: u64 = 80_000;
    let publ = start_pub(
        1,
        &[
            "--rate",
            "20000",
            "--count",
            &COUNT.to_string(),
            "--wait-subscribers",
            "1",
            "--wait-timeout",
            "60",
            "--retransmit-bind",
            "tcp://127.0.0.1:*",
            "--retransmit-depth",
            &COUNT.to_string(),
            "--retransmit-linger-ms",
            "5000",
            "--report-json",
            &f("pub.json"),
        ],
    );
    let line = publ.proc.wait_line("retransmit: serving on ");
    let ring = line
        .split("serving on ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .expect("endpoint")
        .to_string();
    // Fixed ports for the relay, so its successor binds the same ones
    // (the subscribers reconnect to them): taken from a first relay.
    let relay_args = |json: String| -> Vec<String> {
        vec![
            "--retransmit-from".into(),
            ring.clone(),
            "--wait-subscribers".into(),
            "2".into(),
            "--report-json".into(),
            json,
        ]
    };
    let with_rt = |rt: &str, json: String| {
        let mut v = vec!["--retransmit-bind".to_string(), rt.to_string()];
        v.extend(relay_args(json));
        v
    };
    let first_args = with_rt("tcp://127.0.0.1:*", f("relay1.json"));
    let r1 = start_relay("relay-1", &publ.endpoints, &any_port(1), &strs(&first_args));
    let rt_line = r1.proc.wait_line("passing retransmission requests from ");
    let rt = rt_line
        .split("requests from ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("retransmit endpoint")
        .to_string();
    let down = r1.endpoints.clone();
    let repairing = start_sub(
        &down,
        &[
            "--recover-from",
            &rt,
            "--workers",
            "1",
            "--metrics-bind",
            "127.0.0.1:0",
            "--report-json",
            &f("repairing.json"),
        ],
    );
    let plain = start_sub(
        &down,
        &["--workers", "1", "--report-json", &f("plain.json")],
    );
    let addr = metrics_addr(&repairing.wait_line("metrics at http://"));
    // Mid-stream: the subscriber has taken a good part of it.
    poll_until("the subscriber received 10000 records", || {
        received(addr) >= 10_000.0
    });
    r1.proc.signal(libc::SIGKILL);
    let _ = r1.proc.wait();
    let second_args = with_rt(&rt, f("relay2.json"));
    let r2 = start_relay("relay-2", &publ.endpoints, &down, &strs(&second_args));
    let (st, err, _) = repairing.wait();
    assert!(st.success(), "repairing subscriber: {err}");
    let _ = plain.wait();
    let (st, perr, _) = publ.proc.wait();
    assert!(st.success(), "publisher: {perr}");
    let (st, rerr, _) = r2.proc.wait();
    assert!(st.success(), "relay-2: {rerr}");

    let s = read_json(Path::new(&f("repairing.json")));
    assert_eq!(u(&s, "lost"), 0, "every gap repaired: {s}");
    assert!(u(&s, "recovered") > 0, "the kill left a gap: {s}");
    assert_eq!(s["streams_complete"], true, "{s}");
    let plain = read_json(Path::new(&f("plain.json")));
    assert!(
        u(&plain, "lost") > 0,
        "the plain subscriber saw the gap: {plain}"
    );
    assert_eq!(u(&plain, "received") + u(&plain, "lost"), COUNT, "{plain}");
    // The publisher is unaffected: it sent everything on schedule.
    let pv = read_json(Path::new(&f("pub.json")));
    assert_eq!(u(&pv, "sent"), COUNT, "{pv}");
    let r2v = read_json(Path::new(&f("relay2.json")));
    assert!(
        u(&r2v, "missed_before_join") > 0,
        "the successor joined mid-stream: {r2v}"
    );
    assert!(
        r2v["retransmit"]["replies"].as_u64().unwrap_or(0) > 0,
        "the repair went through relay-2: {r2v}"
    );
}

/// Acceptance 4, first half: a downstream subscriber that stops reading
/// (SIGSTOP) costs only itself: the relay drops for it (`--when-full
/// drop`), its other subscriber and the publisher see nothing of it.
#[test]
fn a_stalled_downstream_subscriber_stalls_neither_the_others_nor_upstream() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| path_str(&dir.path().join(n));
    const COUNT: u64 = 60_000;
    let publ = start_pub(
        1,
        &[
            "--rate",
            "20000",
            "--count",
            &COUNT.to_string(),
            "--wait-subscribers",
            "1",
            "--wait-timeout",
            "60",
            "--report-json",
            &f("pub.json"),
        ],
    );
    let relay = start_relay(
        "relay",
        &publ.endpoints,
        &any_port(1),
        &[
            "--wait-subscribers",
            "2",
            "--sndhwm",
            "1000",
            "--sndbuf",
            "65536",
            "--eos-timeout-ms",
            "1000",
            "--report-json",
            &f("relay.json"),
        ],
    );
    let staller = start_sub(
        &relay.endpoints,
        &["--workers", "1", "--rcvhwm", "1000", "--rcvbuf", "65536"],
    );
    let good = start_sub(
        &relay.endpoints,
        &["--workers", "1", "--report-json", &f("good.json")],
    );
    staller.wait_line("connected to");
    relay.proc.wait_line("subscribing upstream");
    let frozen = freeze(&staller);
    let (st, err, _) = good.wait();
    assert!(st.success(), "the other subscriber: {err}");
    let (st, perr, _) = publ.proc.wait();
    assert!(st.success(), "publisher: {perr}");
    let (st, rerr, _) = relay.proc.wait();
    assert!(st.success(), "relay: {rerr}");
    drop(frozen);
    let g = read_json(Path::new(&f("good.json")));
    assert_eq!(u(&g, "lost"), 0, "{g}");
    assert_eq!(g["streams_complete"], true, "{g}");
    let r = read_json(Path::new(&f("relay.json")));
    assert_eq!(u(&r, "lost"), 0, "the relay kept up: {r}");
    assert_eq!(r["snail"], Value::Null, "{r}");
    let pv = read_json(Path::new(&f("pub.json")));
    assert_eq!(u(&pv, "sent"), COUNT, "{pv}");
}

/// Acceptance 4, second half: a relay that cannot keep up croaks, exit 3,
/// with the snail's verdict in its report: frozen for longer than its lag
/// budget, it finds the records it reads too old; and with `--when-full
/// block` behind a stalled subscriber it croaks too (the frame held back,
/// or the records behind it, past the budget).
#[test]
fn a_relay_that_cannot_keep_up_croaks() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| path_str(&dir.path().join(n));
    // (a) The relay itself frozen for 1.5 s with a 300 ms budget.
    let publ = start_pub(
        1,
        &[
            "--rate",
            "10000",
            "--duration",
            "30",
            "--wait-subscribers",
            "1",
            "--wait-timeout",
            "60",
        ],
    );
    let relay = start_relay(
        "relay",
        &publ.endpoints,
        &any_port(1),
        &["--max-lag-ms", "300", "--report-json", &f("frozen.json")],
    );
    let sub = start_sub(
        &relay.endpoints,
        &[
            "--workers",
            "1",
            "--max-lag-ms",
            "60000",
            "--on-slow",
            "warn",
        ],
    );
    relay.proc.wait_line("subscribing upstream");
    sub.wait_line("connected to");
    // Paused, not frozen for good (`freeze` kills on drop): the records
    // queue up meanwhile, and are 1.5 s old when it reads them.
    relay.proc.signal(libc::SIGSTOP);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    relay.proc.signal(libc::SIGCONT);
    let (st, err, _) = relay.proc.wait();
    assert_eq!(st.code(), Some(3), "the snail croaked: {err}");
    assert!(err.contains("SNAIL ALARM"), "{err}");
    let v = read_json(Path::new(&f("frozen.json")));
    assert_eq!(v["end_reason"], "snail", "{v}");
    assert_eq!(v["snail"]["held_downstream"], false, "{v}");
    assert!(v["snail"]["lag_ms"].as_f64().unwrap() > 300.0, "{v}");
    drop(sub);
    drop(publ);

    // (b) --when-full block behind a subscriber that stopped reading.
    let publ = start_pub(
        1,
        &[
            "--rate",
            "20000",
            "--duration",
            "30",
            "--wait-subscribers",
            "1",
            "--wait-timeout",
            "60",
        ],
    );
    let relay = start_relay(
        "relay",
        &publ.endpoints,
        &any_port(1),
        &[
            "--when-full",
            "block",
            "--sndhwm",
            "100",
            "--sndbuf",
            "16384",
            "--max-lag-ms",
            "300",
            "--report-json",
            &f("blocked.json"),
        ],
    );
    let sub = start_sub(
        &relay.endpoints,
        &["--workers", "1", "--rcvhwm", "100", "--rcvbuf", "16384"],
    );
    relay.proc.wait_line("subscribing upstream");
    sub.wait_line("connected to");
    let frozen = freeze(&sub);
    let (st, err, _) = relay.proc.wait();
    drop(frozen);
    assert_eq!(st.code(), Some(3), "the snail croaked: {err}");
    let v = read_json(Path::new(&f("blocked.json")));
    assert!(u(&v["hops"][0], "blocked") > 0, "{v}");
    // Which check fires first is the machine's timing: a frame held back
    // past the budget (`held_downstream`), or, when the stopped
    // subscriber's socket buffers took a little more meanwhile, the next
    // records read late. Either way the relay said it cannot keep up.
    assert!(v["snail"]["lag_ms"].as_f64().unwrap() > 300.0, "{v}");
    eprintln!(
        "relay: block mode croaked with held_downstream {}",
        v["snail"]["held_downstream"]
    );
}

/// Acceptance 5: three named subscribers connect, one leaves; the relay's
/// log and report say exactly that, with addresses, and an expected one
/// that never came is named missing.
#[test]
fn the_relay_knows_its_subscribers_by_name() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| path_str(&dir.path().join(n));
    let publ = start_pub(
        1,
        &[
            "--rate",
            "5000",
            "--duration",
            "30",
            "--wait-subscribers",
            "1",
            "--wait-timeout",
            "60",
        ],
    );
    let relay = start_relay(
        "relay",
        &publ.endpoints,
        &any_port(1),
        &[
            "--expect-subscribers",
            "alpha,beta,gamma,delta",
            "--report-json",
            &f("relay.json"),
        ],
    );
    let subs: Vec<Proc> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|id| start_sub(&relay.endpoints, &["--id", id, "--workers", "0"]))
        .collect();
    let mut lines: Vec<String> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|id| format!("subscriber {id} connected from 127.0.0.1"))
        .collect();
    lines.push("expected subscriber delta is not connected".into());
    relay.proc.wait_lines(&lines);
    let mut subs = subs.into_iter();
    let (alpha, beta, gamma) = (
        subs.next().unwrap(),
        subs.next().unwrap(),
        subs.next().unwrap(),
    );
    beta.signal(libc::SIGTERM);
    let _ = beta.wait();
    relay
        .proc
        .wait_line("subscriber beta disconnected, was at 127.0.0.1");
    relay
        .proc
        .wait_line("expected subscriber beta is not connected");
    relay.proc.signal(libc::SIGTERM);
    let (st, err, _) = relay.proc.wait();
    assert!(st.success(), "{err}");
    drop((alpha, gamma, publ));
    let v = read_json(Path::new(&f("relay.json")));
    let present: Vec<(&str, &str)> = v["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["address"].as_str().unwrap()))
        .collect();
    assert_eq!(
        present,
        vec![("alpha", "127.0.0.1"), ("gamma", "127.0.0.1")],
        "{v}"
    );
    let events: Vec<(&str, &str)> = v["subscriber_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["id"].as_str().unwrap()))
        .collect();
    let mut connected: Vec<&str> = events
        .iter()
        .filter(|e| e.0 == "connected")
        .map(|e| e.1)
        .collect();
    connected.sort();
    assert_eq!(connected, vec!["alpha", "beta", "gamma"], "{v}");
    let left: Vec<&str> = events
        .iter()
        .filter(|e| e.0 == "disconnected")
        .map(|e| e.1)
        .collect();
    assert_eq!(left, vec!["beta"], "{v}");
    assert_eq!(
        v["missing_subscribers"],
        serde_json::json!(["beta", "delta"]),
        "{v}"
    );
    for e in v["subscriber_events"].as_array().unwrap() {
        assert_eq!(e["address"], "127.0.0.1", "{e}");
        assert!(e["at"].as_str().unwrap().ends_with('Z'), "{e}");
    }
}

/// `--on-eos stay`: a long-lived relay carries the publisher's next
/// session too. The first subscriber ends with the first session; the
/// publisher restarts on the same endpoint; a second subscriber, through
/// the same relay, gets the whole second session.
#[test]
fn a_relay_that_stays_carries_the_next_session() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| path_str(&dir.path().join(n));
    const COUNT: u64 = 3000;
    let pub_args = [
        "--rate",
        "10000",
        "--count",
        "3000",
        "--wait-subscribers",
        "1",
        "--wait-timeout",
        "60",
        "--eos-timeout-ms",
        "500",
    ];
    let first = start_pub(1, &pub_args);
    let relay = start_relay(
        "relay",
        &first.endpoints,
        &any_port(1),
        &["--on-eos", "stay", "--report-json", &f("relay.json")],
    );
    let a = start_sub(
        &relay.endpoints,
        &["--workers", "0", "--report-json", &f("a.json")],
    );
    let (st, err, _) = a.wait();
    assert!(st.success(), "first subscriber: {err}");
    let (st, err, _) = first.proc.wait();
    assert!(st.success(), "first publisher: {err}");
    let second = start_pub_on(&first.endpoints, &pub_args);
    let b = start_sub(
        &relay.endpoints,
        &["--workers", "0", "--report-json", &f("b.json")],
    );
    let (st, err, _) = b.wait();
    assert!(st.success(), "second subscriber: {err}");
    let (st, err, _) = second.proc.wait();
    assert!(st.success(), "second publisher: {err}");
    relay.proc.signal(libc::SIGTERM);
    let (st, err, _) = relay.proc.wait();
    assert!(st.success(), "relay: {err}");
    for n in ["a.json", "b.json"] {
        let v = read_json(Path::new(&f(n)));
        assert_eq!(u(&v, "received"), COUNT, "{n}: {v}");
        assert_eq!(u(&v, "lost"), 0, "{n}: {v}");
        assert_eq!(v["streams_complete"], true, "{n}: {v}");
    }
    let (sa, sb) = (
        read_json(Path::new(&f("a.json")))["streams"][0]["session"].clone(),
        read_json(Path::new(&f("b.json")))["streams"][0]["session"].clone(),
    );
    assert_ne!(sa, sb, "two sessions");
    let r = read_json(Path::new(&f("relay.json")));
    assert_eq!(r["end_reason"], "signal", "{r}");
    assert_eq!(u(&r, "received"), 2 * COUNT, "both sessions: {r}");
    assert_eq!(
        r["hops"][0]["announcements"], 2,
        "subscribed once per subscriber: {r}"
    );
}
