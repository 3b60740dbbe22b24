//! The books `workers::itch_book` builds from a generated day equal, for
//! every symbol, a reference computed from the generator's own order state
//! (its live orders and the prints it wrote), never from `ItchBooks`.

use shardcast_itchgen::{reference_books, Config, Generator};
use shardcast_proto::itch::{self, Check, Frame, Framer};
use shardcast_workers::itch_book::ItchBooks;

fn day(cfg: &Config) -> (Vec<u8>, Generator) {
    let mut g = Generator::new(cfg);
    let mut buf = Vec::new();
    while g.step(&mut buf) {}
    (buf, g)
}

#[test]
fn books_equal_the_generators_own_state_for_every_symbol() {
    let cfg = Config {
        messages: 200_000,
        symbols: 150,
        seed: 12,
        unknown_type: true,
        truncate_tail: true,
        ..Config::default()
    };
    let (buf, g) = day(&cfg);
    let mut books = ItchBooks::new();
    let mut truncated = 0;
    for f in Framer::new(&buf) {
        match f {
            Frame::Message(m) => {
                books.apply(m);
            }
            Frame::Truncated(_) => truncated += 1,
        }
    }
    assert_eq!(truncated, 1);
    let st = books.stats();
    assert_eq!(st.messages, cfg.messages);
    assert_eq!(
        (
            st.unknown_type,
            st.malformed,
            st.unknown_order,
            st.duplicate_order,
            st.overfill,
            st.bad_side
        ),
        (1, 0, 0, 0, 0, 0)
    );
    let got = books.summary();
    let want = reference_books(&g);
    assert_eq!(got.len(), 150);
    for (name, w) in &want {
        assert_eq!(got.get(name), Some(w), "symbol {name}");
    }
    assert_eq!(got, want);
    assert_eq!(books.live_orders(), g.orders().count());
    // The day is not trivial: books with depth on both sides, prints,
    // a halt still on, a broken trade.
    let deep = want
        .values()
        .filter(|s| s.bid_levels > 3 && s.ask_levels > 3)
        .count();
    assert!(deep >= 10, "{deep} deep books");
    assert!(want.values().filter(|s| s.trades > 0).count() >= 10);
    assert!(want.values().any(|s| s.halted));
    assert!(want.values().any(|s| s.broken_trades > 0));
}

#[test]
fn the_mix_is_realistic_and_activity_skewed() {
    let cfg = Config {
        messages: 200_000,
        symbols: 120,
        seed: 3,
        ..Config::default()
    };
    let (buf, g) = day(&cfg);
    let mut by_type = [0u64; 256];
    let mut per_locate = vec![0u64; 121];
    let mut last_ts = 0;
    for f in Framer::new(&buf) {
        let Frame::Message(m) = f else {
            panic!("no tail was asked for")
        };
        assert!(matches!(itch::check(m), Check::Ok(_)));
        by_type[usize::from(m[0])] += 1;
        let ts = itch::timestamp(m).unwrap();
        assert!(ts >= last_ts, "timestamps never go back");
        last_ts = ts;
        let l = usize::from(itch::stock_locate(m).unwrap());
        per_locate[l] += 1;
    }
    assert_eq!(by_type, g.stats().by_type);
    let n = cfg.messages as f64;
    let share = |t: &[u8]| t.iter().map(|&b| by_type[usize::from(b)]).sum::<u64>() as f64 / n;
    // Adds dominate; deletes and replaces most of the rest; executions a
    // few percent.
    let (adds, deletes, execs) = (share(b"AF"), share(b"D"), share(b"EC"));
    assert!(adds > 0.35 && adds > deletes, "adds {adds}");
    assert!(deletes > 0.2, "deletes {deletes}");
    assert!(share(b"U") > 0.05 && share(b"X") > 0.02);
    assert!(execs > 0.01 && execs < 0.06, "executions {execs}");
    // Zipf: the busiest symbol carries far more than the median one.
    let mut counts: Vec<u64> = per_locate[1..].to_vec();
    counts.sort_unstable();
    let (median, top) = (counts[counts.len() / 2], counts[counts.len() - 1]);
    assert!(top > 10 * median, "top {top}, median {median}");
}

#[test]
fn bursts_at_the_open_and_close() {
    let cfg = Config {
        messages: 100_000,
        symbols: 100,
        seed: 5,
        ..Config::default()
    };
    let (buf, _) = day(&cfg);
    let mut tenths = [0u64; 20];
    for f in Framer::new(&buf) {
        if let Frame::Message(m) = f {
            let t = itch::timestamp(m).unwrap() - cfg.start_ns;
            let k = ((t as f64 / cfg.span_ns as f64) * 20.0) as usize;
            tenths[k.min(19)] += 1;
        }
    }
    // 20ths 2 (10-15%: the open) and 17 (85-90%: the close) against the
    // middle of the day.
    let mid = tenths[10];
    assert!(tenths[2] > 3 * mid, "{tenths:?}");
    assert!(tenths[17] > 3 * mid, "{tenths:?}");
    assert!(tenths[0] < mid && tenths[19] < mid, "{tenths:?}");
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let cfg = Config {
        messages: 20_000,
        symbols: 100,
        seed: 9,
        ..Config::default()
    };
    let (a, _) = day(&cfg);
    let (b, _) = day(&cfg);
    assert_eq!(a, b);
    let (c, _) = day(&Config { seed: 10, ..cfg });
    assert_ne!(a, c);
}
