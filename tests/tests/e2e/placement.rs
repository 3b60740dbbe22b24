//! Pinning: each named thread runs where the flags put it, including the
//! shard's ZeroMQ I/O thread, as read back from /proc by the subscriber; and
//! a shard connects from the local address given with --iface.

use crate::support::*;

#[test]
fn shard_worker_and_io_threads_run_on_their_cpus() {
    let _g = serial();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (a, b) = (0usize, (cpus - 1).min(1));
    let (a_s, b_s) = (a.to_string(), b.to_string());
    let run = run_pipeline(
        1,
        &[
            "--rate",
            "5000",
            "--count",
            "5000",
            "--wait-subscribers",
            "1",
        ],
        &[
            "--iface",
            "127.0.0.1",
            "--shard-cpus",
            &b_s,
            "--io-cpus",
            &a_s,
            "--workers",
            "1",
            "--worker-cpus",
            &a_s,
        ],
    );
    let err = &run.sub_stderr;
    assert!(
        err.contains(&format!("zmq-io-0 pinned to CPU {a}")),
        "{err}"
    );
    assert!(
        err.contains("connected to tcp://127.0.0.1:0;127.0.0.1:"),
        "{err}"
    );
    let s = run.sub;
    assert_eq!(u(&s, "received"), 5000);
    let placed = |name: &str| -> u64 {
        let t = s["placement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["thread"] == name)
            .unwrap_or_else(|| panic!("{name} in placement: {}", s["placement"]));
        u(t, "cpu")
    };
    assert_eq!(placed("shard-0"), b as u64);
    assert_eq!(placed("worker-0"), a as u64);
    assert_eq!(placed("zmq-io-0"), a as u64);
}
