//! SIGTERM stops both processes in order: end-of-stream, reports written.

use crate::support::*;

#[test]
fn sigterm_flushes_reports_on_both_sides() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (pub_json, sub_json) = (dir.path().join("pub.json"), dir.path().join("sub.json"));
    let publ = start_pub(
        2,
        &[
            "--rate",
            "5000",
            "--duration",
            "120",
            "--wait-subscribers",
            "1",
            "--report-json",
            &path_str(&pub_json),
        ],
    );
    let sub = start_sub(&publ.endpoints, &["--report-json", &path_str(&sub_json)]);
    publ.proc.wait_line("first data message sent");
    // Terminating the publisher sends end-of-stream on every stream, which
    // ends the subscriber: a complete, lossless run cut short.
    publ.proc.signal(libc::SIGTERM);
    let (pst, perr, pout) = publ.proc.wait();
    assert!(pst.success(), "{perr}");
    assert!(pout.contains("ended by signal"), "{pout}");
    let (st, err, _) = sub.wait();
    assert!(st.success(), "{err}");
    let p = read_json(&pub_json);
    let s = read_json(&sub_json);
    assert_eq!(p["end_reason"], "signal");
    assert!(p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["eos_acknowledged"] == true));
    assert_eq!(s["end_reason"], "end-of-stream");
    assert_eq!(u(&s, "received"), u(&p, "sent"));
    assert_eq!(s["streams_complete"], true);
}

#[test]
fn sigterm_stops_a_waiting_subscriber_with_a_valid_report() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let sub_json = dir.path().join("sub.json");
    // Nobody publishes here: the subscriber waits, then is told to stop.
    let sub = start_sub(
        &["tcp://127.0.0.1:9".to_string()],
        &["--report-json", &path_str(&sub_json)],
    );
    sub.wait_line("shard-0 connected");
    sub.signal(libc::SIGTERM);
    let (st, err, _) = sub.wait();
    assert!(st.success(), "{err}");
    let s = read_json(&sub_json);
    assert_eq!(s["end_reason"], "signal");
    assert_eq!(u(&s, "received"), 0);
    assert_eq!(s["streams_complete"], false);
}
