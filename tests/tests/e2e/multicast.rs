//! Reliable multicast (ZeroMQ Guide ch.5, "Black Box": many subscribers,
//! one send): an `epgm://` stream from the publisher host reaches two
//! subscriber hosts on the namespace topology's LAN C (deploy/netns.sh),
//! and the interfaces' own counters show the publisher sent it once.
//!
//! And through a relay (issue 16): a TCP stream into a relay on the
//! publisher host, fanned out by `epgm://` on LAN C, once on the wire.
//!
//! Needs root with `ip netns` (SHARDCAST_REQUIRE_NETNS=1 makes their absence
//! a failure) and the system libzmq build, whose libzmq has PGM
//! (SHARDCAST_REQUIRE_SYSTEM_ZMQ=1 likewise). Otherwise it says SKIPPED.

use crate::hosts::{netns_unavailable, remove_stale_topologies, spawn_in, strings, Topology};
use crate::support::*;
use std::path::Path;

const SIZE: u64 = 200;
const RATE: u64 = 5_000;
const COUNT: u64 = 10_000;
/// The group and port of the stream; each host names its LAN C interface by
/// address (OpenPGM's lookup of an interface *name* fails with EINVAL in
/// these namespaces; an address always works).
const GROUP: &str = "239.192.77.1:5570";

#[test]
fn one_epgm_send_reaches_two_subscriber_hosts() {
    let _g = serial();
    let prefix = format!("sct{}", std::process::id());
    if let Some(why) = netns_unavailable(&prefix) {
        if std::env::var("SHARDCAST_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!("SHARDCAST_REQUIRE_NETNS=1 but network namespaces are unavailable: {why}");
        }
        eprintln!(
            "\n*** SKIPPED: multicast::one_epgm_send_reaches_two_subscriber_hosts: {why} ***\n"
        );
        return;
    }
    let Some(bins) = system_bins_or_skip("multicast::one_epgm_send_reaches_two_subscriber_hosts")
    else {
        return;
    };
    remove_stale_topologies();
    let topo = Topology::up(&prefix);
    let dir = tempfile::tempdir().unwrap();
    let json = |n: &str| path_str(&dir.path().join(n));
    let (pub_json, sub1_json, sub2_json) = (json("pub.json"), json("sub1.json"), json("sub2.json"));
    let rate_flags = ["--pgm-rate", "100000", "--pgm-recovery-ms", "5000"];

    // Subscribers first: PGM carries no subscriptions back, so the
    // publisher cannot wait for them; what a receiver misses before it
    // joins is counted as missed_before_join, never as loss.
    let sub = |host: &'static str, addr: &str, json: &str| {
        let mut a = strings(&[
            "--connect",
            &format!("epgm://{addr};{GROUP}"),
            "--workers",
            "1",
            "--on-slow",
            "warn",
            "--report-json",
            json,
        ]);
        a.extend(strings(&rate_flags));
        let p = spawn_in(host, &topo.ns(host), &bins.sub, &a);
        p.wait_line("shard-0 connected to epgm://");
        p
    };
    let sub1 = sub("sub1", "10.77.3.2", &sub1_json);
    let sub2 = sub("sub2", "10.77.3.3", &sub2_json);
    let before = topo.counters();

    let mut pa = strings(&[
        "--bind",
        &format!("epgm://10.77.3.1;{GROUP}"),
        "--size",
        &SIZE.to_string(),
        "--rate",
        &RATE.to_string(),
        "--count",
        &COUNT.to_string(),
        "--eos-timeout-ms",
        "1000",
        "--report-json",
        &pub_json,
    ]);
    pa.extend(strings(&rate_flags));
    let publ = spawn_in("pub", &topo.ns("pub"), &bins.publ, &pa);
    let (st, perr, _) = publ.wait();
    assert!(st.success(), "publisher: {perr}");
    assert!(perr.contains("PLAIN TEXT multicast (PGM)"), "{perr}");
    let (st1, err1, _) = sub1.wait();
    let (st2, err2, _) = sub2.wait();
    assert!(st1.success(), "sub1: {err1}");
    assert!(st2.success(), "sub2: {err2}");
    let after = topo.counters();
    let delta = |host: &str, iface: &str| {
        let k = (host.to_string(), iface.to_string());
        let (r1, t1) = after[&k];
        let (r0, t0) = before.get(&k).copied().unwrap_or((0, 0));
        (r1 - r0, t1 - t0)
    };

    let p = read_json(Path::new(&pub_json));
    assert_eq!(u(&p, "sent"), COUNT);
    assert_eq!(
        p["streams"][0]["eos_acknowledged"], false,
        "multicast receivers cannot acknowledge"
    );
    let mut received = Vec::new();
    for (name, path) in [("sub1", &sub1_json), ("sub2", &sub2_json)] {
        let r = read_json(Path::new(path));
        let (got, missed) = (u(&r, "received"), u(&r, "missed_before_join"));
        eprintln!(
            "multicast: {name} received {got}, missed before joining {missed}, lost {}, complete {}",
            u(&r, "lost"),
            r["streams_complete"]
        );
        assert_eq!(
            u(&r, "lost"),
            0,
            "{name}: PGM repaired or nothing was lost: {r}"
        );
        assert_eq!(u(&r, "duplicates"), 0, "{name}: {r}");
        assert_eq!(
            got + missed,
            COUNT,
            "{name}: every message is accounted for: {r}"
        );
        assert!(got >= COUNT * 9 / 10, "{name} received the stream: {r}");
        assert_eq!(r["streams_complete"], true, "{name} saw end-of-stream: {r}");
        received.push(got);
    }

    let (_, pub_tx) = delta("pub", "c0");
    let (rx1, _) = delta("sub1", "c0");
    let (rx2, _) = delta("sub2", "c0");
    eprintln!(
        "multicast, LAN C bytes (kernel counters): pub c0 tx {pub_tx}; sub1 c0 rx {rx1}; sub2 c0 rx {rx2}; \
         payload per subscriber {} and {}",
        received[0] * SIZE,
        received[1] * SIZE
    );
    for (name, rx, got) in [("sub1", rx1, received[0]), ("sub2", rx2, received[1])] {
        assert!(
            rx >= got * SIZE,
            "{name}'s NIC carried its payload: {rx} < {}",
            got * SIZE
        );
    }
    // One send: TCP would need the payload twice on the publisher's NIC.
    let both = (received[0] + received[1]) * SIZE;
    assert!(
        pub_tx < both * 3 / 4,
        "the publisher sent the stream once, not once per subscriber: tx {pub_tx}, two copies {both}"
    );
    assert!(
        pub_tx >= COUNT * SIZE,
        "the publisher's NIC carried the stream"
    );
}

/// A relay that takes a TCP stream from link A and sends it on by epgm to
/// LAN C: both subscriber hosts get it, lossless, from one send.
#[test]
fn a_tcp_in_epgm_out_relay_feeds_two_hosts_with_one_send() {
    const TEST: &str = "multicast::a_tcp_in_epgm_out_relay_feeds_two_hosts_with_one_send";
    let _g = serial();
    let prefix = format!("scr{}", std::process::id());
    if let Some(why) = netns_unavailable(&prefix) {
        if std::env::var("SHARDCAST_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!("SHARDCAST_REQUIRE_NETNS=1 but network namespaces are unavailable: {why}");
        }
        eprintln!("\n*** SKIPPED: {TEST}: {why} ***\n");
        return;
    }
    let Some(bins) = system_bins_or_skip(TEST) else {
        return;
    };
    remove_stale_topologies();
    let topo = Topology::up(&prefix);
    let dir = tempfile::tempdir().unwrap();
    let json = |n: &str| path_str(&dir.path().join(n));
    let rate_flags = ["--pgm-rate", "100000", "--pgm-recovery-ms", "5000"];
    const RELAY_GROUP: &str = "239.192.77.2:5571";

    // The subscribers first, as above: PGM brings no subscriptions back.
    let sub = |host: &'static str, addr: &str, json: &str| {
        let mut a = strings(&[
            "--connect",
            &format!("epgm://{addr};{RELAY_GROUP}"),
            "--workers",
            "1",
            "--on-slow",
            "warn",
            "--report-json",
            json,
        ]);
        a.extend(strings(&rate_flags));
        let p = spawn_in(host, &topo.ns(host), &bins.sub, &a);
        p.wait_line("shard-0 connected to epgm://");
        p
    };
    let sub1 = sub("sub1", "10.77.3.2", &json("sub1.json"));
    let sub2 = sub("sub2", "10.77.3.3", &json("sub2.json"));

    // The publisher on sub1's side of link A (the "exchange"), the relay
    // on the publisher host: TCP in over link A, epgm out on LAN C.
    let publ = spawn_in(
        "pub",
        &topo.ns("sub1"),
        &bins.publ,
        &strings(&[
            "--bind",
            "tcp://10.77.1.2:5580",
            "--size",
            &SIZE.to_string(),
            "--rate",
            &RATE.to_string(),
            "--count",
            &COUNT.to_string(),
            "--wait-subscribers",
            "1",
            "--wait-timeout",
            "60",
            "--report-json",
            &json("pub.json"),
        ]),
    );
    publ.wait_line("stream 0 bound");
    let before = topo.counters();
    let mut ra = strings(&[
        "--connect",
        "tcp://10.77.1.2:5580",
        "--bind",
        &format!("epgm://10.77.3.1;{RELAY_GROUP}"),
        "--eos-timeout-ms",
        "1000",
        "--report-json",
        &json("relay.json"),
    ]);
    ra.extend(strings(&rate_flags));
    let relay = spawn_in("relay", &topo.ns("pub"), &bins.relay, &ra);
    let (st, perr, _) = publ.wait();
    assert!(st.success(), "publisher: {perr}");
    let (st, rerr, _) = relay.wait();
    assert!(st.success(), "relay: {rerr}");
    let (st1, err1, _) = sub1.wait();
    let (st2, err2, _) = sub2.wait();
    assert!(st1.success(), "sub1: {err1}");
    assert!(st2.success(), "sub2: {err2}");
    let after = topo.counters();
    let delta = |host: &str, iface: &str| {
        let k = (host.to_string(), iface.to_string());
        let (r1, t1) = after[&k];
        let (r0, t0) = before.get(&k).copied().unwrap_or((0, 0));
        (r1 - r0, t1 - t0)
    };
    let r = read_json(Path::new(&json("relay.json")));
    assert_eq!(
        u(&r, "received"),
        COUNT,
        "the relay got it all over TCP: {r}"
    );
    assert_eq!(u(&r, "lost"), 0, "{r}");
    let mut received = Vec::new();
    for name in ["sub1", "sub2"] {
        let v = read_json(Path::new(&json(&format!("{name}.json"))));
        let (got, missed) = (u(&v, "received"), u(&v, "missed_before_join"));
        eprintln!(
            "relay multicast: {name} received {got}, missed before joining {missed}, lost {}",
            u(&v, "lost")
        );
        assert_eq!(u(&v, "lost"), 0, "{name}: {v}");
        assert_eq!(
            got + missed,
            COUNT,
            "{name}: every message is accounted for: {v}"
        );
        assert!(got >= COUNT * 9 / 10, "{name} received the stream: {v}");
        assert_eq!(v["streams_complete"], true, "{name}: {v}");
        received.push(got);
    }
    let (_, relay_tx) = delta("pub", "c0");
    let (link_rx, _) = delta("pub", "a0");
    eprintln!(
        "relay multicast: relay host a0 rx {link_rx} (TCP in), c0 tx {relay_tx} (epgm out); payload {}",
        COUNT * SIZE
    );
    let both = (received[0] + received[1]) * SIZE;
    assert!(
        relay_tx < both * 3 / 4,
        "the relay sent the stream once, not once per subscriber: tx {relay_tx}, two copies {both}"
    );
    assert!(
        relay_tx >= COUNT * SIZE,
        "the relay's LAN C NIC carried the stream"
    );
    assert!(link_rx >= COUNT * SIZE, "the stream came in over link A");
}
