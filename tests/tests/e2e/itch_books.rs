//! Real data (issue 12, acceptance 1): a generated NASDAQ TotalView-ITCH 5.0
//! day file, played by `shardcast-pub --source itch:FILE --speed max` over two
//! streams through the Black Box into `--work itch-book`, ends in the books a
//! reference computes from the generator's own order state (its live orders
//! and the prints it wrote), never from `ItchBooks`.

use crate::support::*;
use shardcast_itchgen::{reference_books, Config, Generator};
use shardcast_proto::itch;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Acceptance 1: at least 1 M messages, 100+ symbols, every type, one of an
/// unknown type, a truncated tail; `--speed max` over 2 streams into 2
/// workers: nothing lost, every stream complete, the publisher's counts by
/// type equal the generator's, the unknown type and the truncated tail
/// counted, and `--books-out` equal to the reference for every symbol.
#[test]
fn a_generated_day_plays_through_the_black_box_into_the_generators_books() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        messages: 1_000_000,
        symbols: 150,
        seed: 12,
        unknown_type: true,
        truncate_tail: true,
        ..Config::default()
    };
    let (g, file) = write_day(&cfg, dir.path());
    let st = g.stats();
    assert_eq!(
        (st.messages, st.unknown, st.truncated),
        (cfg.messages, 1, 1)
    );
    for t in itch::TYPES {
        assert!(
            st.by_type[usize::from(t)] > 0,
            "the day has no {:?}",
            char::from(t)
        );
    }
    let want = reference_books(&g);
    assert_eq!(want.len(), 150);

    let (run, books) = play_day(
        2,
        &file,
        dir.path(),
        &["--work", "itch-book", "--workers", "2"],
    );
    let (p, s) = (run.publ, run.sub);

    // The publisher read the whole file: every complete message counted by
    // its type letter, the unknown one and the truncated tail named.
    let src = &p["source"];
    let by_type: BTreeMap<String, u64> = serde_json::from_value(src["by_type"].clone())
        .unwrap_or_else(|e| panic!("source.by_type: {e} in {src}"));
    let gen_by_type: BTreeMap<String, u64> = st
        .by_type
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(t, &n)| (char::from(t as u8).to_string(), n))
        .collect();
    assert_eq!(by_type, gen_by_type, "publisher source.by_type");
    assert_eq!(u(src, "unknown_types"), 1, "the unknown type: {src}");
    assert_eq!(u(src, "malformed"), 1, "the truncated tail: {src}");
    assert_eq!(u(src, "truncated"), 1, "the truncated tail: {src}");

    // Everything arrived, once, and was applied.
    assert_eq!(u(&s, "lost"), 0);
    assert_eq!(u(&s, "duplicates"), 0);
    assert_eq!(u(&s, "malformed"), 0);
    assert_eq!(u(&s, "missed_before_join"), 0);
    assert_eq!(s["streams_complete"], true, "{}", run.sub_stderr);
    assert_eq!(s["streams"].as_array().unwrap().len(), 2);
    assert_eq!(u(&s, "received"), u(&p, "sent"));
    // Every complete message of a known type, once; the market-wide ones
    // (system events) once per stream: the unknown one is skipped.
    assert_eq!(
        u(&s, "received"),
        cfg.messages - 1 + u(src, "market_wide"),
        "{src}"
    );
    assert!(u(src, "market_wide") > 0);
    assert_eq!(u(&s, "processed"), u(&s, "received"));
    assert_eq!(u(&s["suspect_reasons"], "wrong_kind"), 0);
    let it = &s["itch"];
    assert_eq!(u(it, "messages"), u(&s, "processed"), "{it}");
    for k in [
        "unknown_order",
        "duplicate_order",
        "overfill",
        "malformed",
        "bad_side",
    ] {
        assert_eq!(u(it, k), 0, "itch.{k} in {it}");
    }
    assert_eq!(u(it, "symbols"), 150);
    assert_eq!(u(it, "live_orders"), g.orders().count() as u64);
    assert!(
        run.sub_stdout.contains("itch books:"),
        "summary line: {}",
        run.sub_stdout
    );

    // The books, symbol by symbol, then whole.
    let got = read_json(&books);
    let want = serde_json::to_value(&want).unwrap();
    let (got_m, want_m) = (got.as_object().unwrap(), want.as_object().unwrap());
    for (name, w) in want_m {
        assert_eq!(got_m.get(name), Some(w), "symbol {name}");
    }
    assert_eq!(got_m.len(), want_m.len(), "no book beyond the directory's");
}

/// `--workers 0`: each shard does the work itself (no worker thread, no
/// inproc hop). A symbol's messages all come on one stream, so the books
/// are exact, and the report has one worker row per shard.
#[test]
fn inline_work_without_worker_threads_gives_the_same_books() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        messages: 200_000,
        symbols: 120,
        seed: 5,
        ..Config::default()
    };
    let (g, file) = write_day(&cfg, dir.path());
    let (run, books) = play_day(
        2,
        &file,
        dir.path(),
        &["--work", "itch-book", "--workers", "0"],
    );
    let s = run.sub;
    assert_eq!(u(&s, "lost"), 0);
    assert_eq!(s["streams_complete"], true, "{}", run.sub_stderr);
    assert_eq!(u(&s, "processed"), u(&s, "received"));
    assert_eq!(s["workers"].as_array().unwrap().len(), 2, "one per shard");
    let want = serde_json::to_value(reference_books(&g)).unwrap();
    assert_eq!(read_json(&books), want);
}

/// The wrong feed for the work is counted, never a panic: ITCH records
/// under `--work book` are `wrong_kind` and book nothing.
#[test]
fn itch_records_under_the_synthetic_book_are_counted_as_wrong_kind() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        messages: 20_000,
        symbols: 100,
        seed: 3,
        ..Config::default()
    };
    let (_, file) = write_day(&cfg, dir.path());
    let (run, books) = play_day(1, &file, dir.path(), &["--work", "book"]);
    let s = run.sub;
    assert_eq!(u(&s, "lost"), 0);
    assert_eq!(s["streams_complete"], true);
    let processed = u(&s, "processed");
    assert!(processed > 0);
    assert_eq!(u(&s["suspect_reasons"], "wrong_kind"), processed);
    assert!(s["itch"].is_null());
    assert_eq!(read_json(&books), serde_json::json!({}));
}

/// Generate the day `cfg` describes into `dir/day.itch50`.
pub(crate) fn write_day(cfg: &Config, dir: &Path) -> (Generator, PathBuf) {
    let mut g = Generator::new(cfg);
    let mut day = Vec::new();
    while g.step(&mut day) {}
    let file = dir.join("day.itch50");
    std::fs::write(&file, &day).unwrap();
    (g, file)
}

/// Play `file` at `--speed max` over `streams` streams into a subscriber
/// with `sub_args`, its books in `dir/books.json`. A shared 2-core machine
/// running debug builds flat out: lag is not what these tests are about
/// (zero loss and exact books are), so the snail gets room.
fn play_day(streams: usize, file: &Path, dir: &Path, sub_args: &[&str]) -> (Outcome, PathBuf) {
    let books = dir.join("books.json");
    let source = format!("itch:{}", path_str(file));
    let mut sa = sub_args.to_vec();
    let b = path_str(&books);
    sa.extend(["--max-lag-ms", "30000", "--books-out", &b]);
    let run = run_pipeline(
        streams,
        &[
            "--source",
            &source,
            "--speed",
            "max",
            "--wait-subscribers",
            "1",
        ],
        &sa,
    );
    (run, books)
}
