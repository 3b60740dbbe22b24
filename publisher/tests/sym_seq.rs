//! Per-symbol sequence numbers (PROTOCOL.md section 4): a real publisher,
//! in process, read by real SUB sockets over ipc.

use shardcast_agent::signals::StopSignal;
use shardcast_proto::wire::{Frame, Kind};
use shardcast_publisher::{cli::Flags, config::Config, run};
use std::collections::HashMap;

#[test]
fn every_symbol_counts_its_own_records_from_1_and_control_records_carry_0() {
    let dir = tempfile::tempdir().unwrap();
    let eps: Vec<String> = (0..2)
        .map(|i| format!("ipc://{}/s{i}", dir.path().display()))
        .collect();
    let args = [
        "shardcast-pub",
        "--bind",
        &eps[0],
        "--bind",
        &eps[1],
        "--rate",
        "0",
        "--count",
        "6000",
        "--symbols",
        "37",
        "--wait-subscribers",
        "1",
        "--wait-timeout",
        "60",
    ];
    let cfg = Config::resolve(&Flags::try_parse_explicit_from(args).unwrap()).unwrap();
    let signal = StopSignal::manual();
    let publisher = {
        let signal = signal.clone();
        std::thread::spawn(move || run(&cfg, &signal))
    };
    let ctx = zmq::Context::new();
    let subs: Vec<zmq::Socket> = eps
        .iter()
        .map(|ep| {
            let s = ctx.socket(zmq::SUB).unwrap();
            s.set_rcvtimeo(30_000).unwrap();
            s.set_rcvhwm(0).unwrap();
            s.set_subscribe(b"").unwrap();
            // Counted by --wait-subscribers: the control topic.
            s.set_subscribe(b"\0").unwrap();
            s.connect(ep).unwrap();
            s
        })
        .collect();
    let mut last: HashMap<(u16, u64), u32> = HashMap::new();
    let mut data = 0u64;
    for (i, sub) in subs.iter().enumerate() {
        loop {
            let msg = sub
                .recv_bytes(0)
                .unwrap_or_else(|e| panic!("stream {i}: no end-of-stream: {e}"));
            let frame = Frame::parse(&msg).unwrap();
            let mut eos = false;
            for r in frame.records() {
                if !r.kind().is_data() {
                    assert_eq!(r.sym_seq(), 0, "control records carry none");
                    eos |= r.kind() == Kind::EndOfStream;
                    continue;
                }
                data += 1;
                let n = last
                    .entry((r.stream_id(), r.symbol().as_u64()))
                    .or_insert(0);
                assert_eq!(
                    r.sym_seq(),
                    *n + 1,
                    "stream {} symbol {} seq {}",
                    r.stream_id(),
                    r.symbol().as_str(),
                    r.seq()
                );
                *n += 1;
            }
            if eos {
                break;
            }
        }
    }
    drop(subs);
    let report = publisher.join().unwrap().unwrap();
    assert_eq!(data, report.sent, "nothing dropped: every number seen");
    // A symbol lives on one stream; each counted 1..=its records.
    let symbols: std::collections::HashSet<u64> = last.keys().map(|k| k.1).collect();
    assert_eq!(symbols.len(), last.len());
    assert_eq!(symbols.len(), 37);
    assert_eq!(last.values().map(|&n| u64::from(n)).sum::<u64>(), data);
}
