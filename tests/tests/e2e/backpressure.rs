//! Acceptance 3: a stalled worker backs the pipeline up to the PUB's HWM,
//! which drops; the subscriber counts exactly what was dropped, and neither
//! process grows without bound.

use crate::support::*;
use std::time::{Duration, Instant};

#[test]
fn a_stalled_worker_makes_the_pub_drop_and_the_gaps_are_exact() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (pub_json, sub_json) = (dir.path().join("pub.json"), dir.path().join("sub.json"));
    let count: u64 = 1_000_000;
    let size: u64 = 100;
    let (sndhwm, rcvhwm, inproc_hwm) = (1000u64, 1000u64, 100u64);
    let publ = start_pub(
        1,
        &[
            "--rate",
            "0",
            "--count",
            &count.to_string(),
            "--size",
            &size.to_string(),
            "--sndhwm",
            &sndhwm.to_string(),
            "--sndbuf",
            "65536",
            "--wait-subscribers",
            "1",
            "--eos-timeout-ms",
            "30000",
            "--report-json",
            &path_str(&pub_json),
        ],
    );
    let sub = start_sub(
        &publ.endpoints,
        &[
            "--rcvhwm",
            &rcvhwm.to_string(),
            "--rcvbuf",
            "65536",
            "--inproc-hwm",
            &inproc_hwm.to_string(),
            "--workers",
            "1",
            "--fanout",
            "push",
            "--work",
            "none",
            "--stall-worker-ms",
            "1500",
            "--stall-after",
            "1",
            "--on-slow",
            "warn",
            "--max-lag-ms",
            "60000",
            "--report-json",
            &path_str(&sub_json),
        ],
    );
    // Sample resident memory of both processes from the moment data flows
    // (start-up allocations are not queueing) while the stall lasts. This
    // loop measures; it does not wait for delivery (sub.wait() does that).
    publ.proc.wait_line("first data message sent");
    let (pub_pid, sub_pid) = (publ.proc.pid(), sub.pid());
    let mut first = (None, None);
    let mut peak = (0u64, 0u64);
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let (a, b) = (rss_bytes(pub_pid), rss_bytes(sub_pid));
        if a.is_none() && b.is_none() {
            break;
        }
        first.0 = first.0.or(a);
        first.1 = first.1.or(b);
        peak.0 = peak.0.max(a.unwrap_or(0));
        peak.1 = peak.1.max(b.unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (st, err, _) = sub.wait();
    assert!(st.success(), "{err}");
    let (pst, perr, _) = publ.proc.wait();
    assert!(pst.success(), "{perr}");
    let p = read_json(&pub_json);
    let s = read_json(&sub_json);

    let sent = u(&p, "sent");
    assert_eq!(sent, count);
    assert_eq!(
        p["streams"][0]["eos_acknowledged"], true,
        "end-of-stream reached the subscriber after its stall"
    );
    let (received, lost) = (u(&s, "received"), u(&s, "lost"));
    assert!(
        lost > 0,
        "the PUB dropped at its HWM while the worker stalled"
    );
    assert_eq!(
        received + lost,
        sent,
        "every dropped message is counted exactly once"
    );
    assert_eq!(u(&s, "missed_before_join"), 0);
    assert_eq!(u(&s, "processed"), received);
    assert_eq!(s["streams"][0]["eos"], true);

    // Bounded memory: what the HWMs let queue (messages x size, with room
    // for libzmq's per-message overhead) plus allocator and kernel slack.
    // Unbounded queueing of what was sent would need count x size = 100 MB.
    let queued = (sndhwm + rcvhwm + 2 * inproc_hwm) * size * 4;
    let bound = queued + 8 * 1024 * 1024;
    let growth_pub = peak.0.saturating_sub(first.0.unwrap_or(0));
    let growth_sub = peak.1.saturating_sub(first.1.unwrap_or(0));
    assert!(first.0.is_some() && first.1.is_some(), "memory was sampled");
    eprintln!(
        "backpressure: sent {sent}, received {received}, lost {lost}; RSS growth: publisher {} KiB, subscriber {} KiB (bound {} KiB)",
        growth_pub / 1024,
        growth_sub / 1024,
        bound / 1024
    );
    assert!(
        growth_pub < bound,
        "publisher grew {growth_pub} bytes (bound {bound})"
    );
    assert!(
        growth_sub < bound,
        "subscriber grew {growth_sub} bytes (bound {bound})"
    );
    assert!(
        bound < count * size / 2,
        "the bound is tight enough to catch unbounded queueing"
    );
}
