//! Pinning: each named thread runs where the flags put it, including the
//! shard's ZeroMQ I/O thread, as read back from /proc by the subscriber; and
//! a shard connects from the local address given with --iface.

use crate::support::*;

#[test]
fn shard_worker_and_io_threads_run_on_their_cpus() {
    let _g = serial();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (a, b) = (0usize, (cpus - 1).min(1));
    let dir = tempfile::tempdir().unwrap();
    let sub_json = dir.path().join("sub.json");
    let publ = start_pub(
        1,
        &[
            "--rate",
            "5000",
            "--count",
            "5000",
            "--wait-subscribers",
            "1",
        ],
    );
    let sub = start_sub(
        &publ.endpoints,
        &[
            "--iface",
            "127.0.0.1",
            "--shard-cpus",
            &b.to_string(),
            "--io-cpus",
            &a.to_string(),
            "--workers",
            "1",
            "--worker-cpus",
            &a.to_string(),
            "--report-json",
            &path_str(&sub_json),
        ],
    );
    let (st, err, _) = sub.wait();
    assert!(st.success(), "{err}");
    assert!(
        err.contains(&format!("zmq-io-0 pinned to CPU {a}")),
        "{err}"
    );
    assert!(
        err.contains("connected to tcp://127.0.0.1:0;127.0.0.1:"),
        "{err}"
    );
    assert!(publ.proc.wait().0.success());
    let s = read_json(&sub_json);
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
