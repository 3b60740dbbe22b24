//! Presence (issue 16): a subscriber named with `--id` is known to the
//! publisher by that name as it comes and goes (log lines, the report's
//! `subscribers`, `subscriber_events`, `missing_subscribers`), and
//! `--expect-subscribers` warns about a missing one; the presence
//! subscription selects nothing, so `--batch auto` still packs.

use crate::support::*;

fn ids(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap_or_else(|| x["id"].as_str().unwrap()))
        .collect()
}

#[test]
fn the_publisher_knows_its_subscribers_by_name() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (pub_json, a_json) = (dir.path().join("pub.json"), dir.path().join("a.json"));
    let publ = start_pub(
        1,
        &[
            // Flat out (auto batching packs what is queued), waiting for
            // the slowest subscriber rather than dropping for it.
            "--rate",
            "0",
            "--when-full",
            "block",
            // Long enough for any machine; the test ends it with SIGTERM.
            "--duration",
            "600",
            "--wait-subscribers",
            "3",
            "--expect-subscribers",
            "a,b,c,d",
            "--eos-timeout-ms",
            "30000",
            "--report-json",
            &path_str(&pub_json),
        ],
    );
    let sub = |id: &str, report: Option<&std::path::Path>| {
        let mut args = vec![
            "--id",
            id,
            "--work",
            "none",
            // Flat out, the queues may hold more than a second: not a snail.
            "--on-slow",
            "warn",
            "--max-lag-ms",
            "60000",
        ];
        let r = report.map(path_str);
        if let Some(r) = &r {
            args.extend(["--report-json", r]);
        }
        start_sub(&publ.endpoints, &args)
    };
    let a = sub("a", Some(&a_json));
    let b = sub("b", None);
    let c = sub("c", None);
    // A subscriber's presence topic comes with its control topic, so the
    // publisher knows all three by name as it starts sending.
    publ.proc.wait_lines(&[
        "stream 0: subscriber a connected from 127.0.0.1".to_string(),
        "stream 0: subscriber b connected from 127.0.0.1".to_string(),
        "stream 0: subscriber c connected from 127.0.0.1".to_string(),
        // Sending started: d, expected, never came.
        "stream 0: WARNING: expected subscriber d is not connected (--expect-subscribers)"
            .to_string(),
    ]);
    // b leaves while the stream runs.
    b.signal(libc::SIGTERM);
    let (bst, berr, _) = b.wait();
    assert!(bst.success(), "{berr}");
    publ.proc
        .wait_line("stream 0: subscriber b disconnected, was at 127.0.0.1");
    publ.proc
        .wait_line("stream 0: WARNING: expected subscriber b is not connected");
    publ.proc.signal(libc::SIGTERM);
    let (pst, perr, _) = publ.proc.wait();
    assert!(pst.success(), "{perr}");
    for (name, s) in [("a", a), ("c", c)] {
        let (st, err, _) = s.wait();
        assert!(st.success(), "subscriber {name}: {err}");
    }
    for id in ["a", "c"] {
        assert!(
            !perr.contains(&format!("expected subscriber {id} is not connected")),
            "{id} was there all along:\n{perr}"
        );
    }

    let p = read_json(&pub_json);
    assert_eq!(p["end_reason"], "signal");
    // Present as sending ended: a and c (their leaving with end-of-stream
    // is the normal end, not an event).
    assert_eq!(ids(&p["subscribers"]), ["a", "c"], "{}", p["subscribers"]);
    for s in p["subscribers"].as_array().unwrap() {
        assert_eq!(s["address"], "127.0.0.1", "{s}");
        assert_eq!(s["streams"], serde_json::json!([0]), "{s}");
        assert!(s["since"].as_str().is_some_and(|t| t.ends_with('Z')), "{s}");
    }
    let events = p["subscriber_events"].as_array().unwrap();
    let of = |kind: &str| -> Vec<&str> {
        let mut v: Vec<&str> = events
            .iter()
            .filter(|e| e["event"] == kind)
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(of("connected"), ["a", "b", "c"], "{events:?}");
    assert_eq!(of("disconnected"), ["b"], "{events:?}");
    assert_eq!(events.len(), 4, "{events:?}");
    for e in events {
        assert_eq!(e["stream"], 0, "{e}");
        assert_eq!(e["address"], "127.0.0.1", "{e}");
    }
    let at: Vec<&str> = events.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "in time order: {at:?}");
    assert_eq!(events.last().unwrap()["id"], "b", "b left last");
    assert_eq!(ids(&p["missing_subscribers"]), ["b", "d"]);
    assert_eq!(u(&p, "subscriber_events_dropped"), 0);
    // The stream's own view agrees.
    let stream = &p["streams"][0];
    assert_eq!(ids(&stream["presence"]["subscribers"]), ["a", "c"]);
    assert_eq!(ids(&stream["presence"]["missing_subscribers"]), ["b", "d"]);
    // A presence topic selects no symbol: auto batching kept packing.
    assert!(
        u(stream, "batched_frames") > 0,
        "flat out with named subscribers, auto batching packs: {stream}"
    );
    // The subscriber reports its name.
    assert_eq!(read_json(&a_json)["id"], "a");
}
