//! Replays the committed fuzz corpus (`fuzz/corpus/decode`) through the same
//! checks as the `decode` fuzz target, on the stable toolchain, so every input
//! the fuzzer kept stays a regression test. Also holds the seed generator
//! (`write_seed_corpus`, ignored; see docs/FUZZING.md).

use shardcast_proto::wire::{
    encode, encode_batch_header, encode_itch, DecodeError, Payload, Quote, RecordMeta, Side,
    Symbol, Trade, BATCH_HEADER_LEN,
};
use std::path::PathBuf;

// The fuzz target's own checks, compiled here too (the fuzz crate lives
// outside the workspace and needs libFuzzer, so it cannot be a dependency).
#[path = "../../fuzz/exercise.rs"]
mod exercise;

use exercise::{exercise, Decoded};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decode")
}

/// Every file of the corpus, sorted by name; fails when there are none, so a
/// moved or emptied corpus cannot make this test pass vacuously.
fn corpus_files() -> Vec<PathBuf> {
    let dir = corpus_dir();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {} unreadable: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "fuzz corpus {} is empty", dir.display());
    files
}

#[test]
fn corpus_replays_through_the_fuzz_checks() {
    let mut failed = Vec::new();
    let (mut valid, mut invalid, mut batches) = (0, 0, 0);
    let mut kinds = [0usize; 5];
    for path in corpus_files() {
        let bytes = std::fs::read(&path).unwrap();
        match std::panic::catch_unwind(|| exercise(&bytes)) {
            Ok(Ok(d)) => {
                valid += 1;
                batches += usize::from(d.batch);
                for (k, n) in kinds.iter_mut().zip(d.kinds) {
                    *k += n;
                }
            }
            Ok(Err(_)) => invalid += 1,
            Err(_) => failed.push(path.display().to_string()),
        }
    }
    assert!(failed.is_empty(), "corpus inputs that panic: {failed:?}");
    // Minimising must not lose the seeds that reach the deep paths.
    assert!(invalid > 0, "no malformed frame in the corpus");
    assert!(batches > 0, "no valid batch in the corpus");
    assert!(
        kinds.iter().all(|&n| n > 0),
        "valid records per kind (quote, trade, heartbeat, eos, itch): {kinds:?}"
    );
    eprintln!("replayed {valid} valid and {invalid} invalid frames");
}

const QUOTE: Payload = Payload::Quote(Quote {
    bid_px: 1_234_500,
    ask_px: 1_234_600,
    bid_sz: 100,
    ask_sz: 200,
});

fn trade(side: Side) -> Payload<'static> {
    Payload::Trade(Trade {
        px: 1_234_550,
        sz: 300,
        side,
    })
}

/// Header fields for publisher 1, stream 0; an empty `symbol` is the control
/// symbol.
fn meta(symbol: &str, session: u64, seq: u64) -> RecordMeta {
    RecordMeta {
        symbol: Symbol::new(symbol).unwrap_or(Symbol::CONTROL),
        publisher_id: 1,
        stream_id: 0,
        session,
        seq,
        send_ts_ns: 1_700_000_000_000_000_000 + seq,
        intended_ts_ns: 1_700_000_000_000_000_000 + seq,
        sym_seq: 0,
    }
}

/// One record, padded to `pad` bytes (0: the kind's minimum).
fn record(m: RecordMeta, p: Payload, pad: usize) -> Vec<u8> {
    let mut buf = vec![0u8; pad.max(p.kind().min_len())];
    let n = encode(&mut buf, &m, &p, pad).unwrap();
    buf.truncate(n);
    buf
}

/// A batch frame of `records` with the header claiming `count`.
fn batch(count: u16, records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![0u8; BATCH_HEADER_LEN];
    encode_batch_header(&mut out, count).unwrap();
    for r in records {
        out.extend_from_slice(r);
    }
    out
}

/// A valid frame of these quotes, trades, heartbeats, end-of-streams and
/// ITCH records.
fn valid5(kinds: [usize; 5], batch: bool) -> Result<Decoded, DecodeError> {
    Ok(Decoded { kinds, batch })
}

/// A valid frame without ITCH records (the kinds before it existed).
fn valid([q, t, h, e]: [usize; 4], batch: bool) -> Result<Decoded, DecodeError> {
    valid5([q, t, h, e, 0], batch)
}

/// An ITCH record carrying a System Event `S` (12 bytes: start of
/// messages), as the publisher sends a market-wide message.
fn itch_record(seq: u64) -> Vec<u8> {
    let mut msg = [0u8; 12];
    msg[0] = b'S';
    msg[5..11].copy_from_slice(&34_200_000_000_000u64.to_be_bytes()[2..]);
    msg[11] = b'O';
    let mut m = meta("~MARKET", 7, seq);
    m.symbol = Symbol::MARKET_WIDE;
    let mut buf = vec![0u8; 128];
    let n = encode_itch(&mut buf, &m, &msg).unwrap();
    buf.truncate(n);
    buf
}

/// The seed corpus: valid frames of every kind and batches that reach the
/// tracker's gap, duplicate, reorder and restart paths, then malformed ones,
/// each with what decoding it must give.
fn seeds() -> Vec<(&'static str, Vec<u8>, Result<Decoded, DecodeError>)> {
    let q = |seq| record(meta("AAPL", 7, seq), QUOTE, 100);
    let quote = q(1);
    let heartbeat = record(meta("", 7, 5), Payload::Heartbeat, 0);
    let eos = Payload::EndOfStream {
        last_seq: 5,
        checksum: 0x9db1_caf5_cacf_2fea,
    };
    let with = |mut r: Vec<u8>, at: usize, v: u8| {
        r[at] = v;
        r
    };
    let mut long = quote.clone();
    long.push(0);
    vec![
        ("quote", quote.clone(), valid([1, 0, 0, 0], false)),
        (
            "quote-unpadded",
            record(meta("MSFT", 7, 2), QUOTE, 0),
            valid([1, 0, 0, 0], false),
        ),
        (
            "trade-buy",
            record(meta("AAPL", 7, 3), trade(Side::Buy), 0),
            valid([0, 1, 0, 0], false),
        ),
        (
            "trade-sell-padded",
            record(meta("AAPL", 7, 4), trade(Side::Sell), 100),
            valid([0, 1, 0, 0], false),
        ),
        ("heartbeat", heartbeat.clone(), valid([0, 0, 1, 0], false)),
        (
            "eos",
            record(meta("", 7, 5), eos, 0),
            valid([0, 0, 0, 1], false),
        ),
        (
            "batch",
            batch(
                3,
                &[q(1), record(meta("IBM", 7, 2), trade(Side::Buy), 0), q(3)],
            ),
            valid([2, 1, 0, 0], true),
        ),
        ("batch-of-one", batch(1, &[q(1)]), valid([1, 0, 0, 0], true)),
        ("itch", itch_record(1), valid5([0, 0, 0, 0, 1], false)),
        (
            "itch-batch",
            batch(2, &[itch_record(1), itch_record(2)]),
            valid5([0, 0, 0, 0, 2], true),
        ),
        (
            // gap, late fill, duplicates, a jump past the window, a restart.
            "batch-gaps-dups-restart",
            batch(
                7,
                &[
                    q(1),
                    q(3),
                    q(2),
                    q(2),
                    q(5000),
                    q(10),
                    record(meta("AAPL", 8, 1), QUOTE, 100),
                ],
            ),
            valid([7, 0, 0, 0], true),
        ),
        ("empty", Vec::new(), Err(DecodeError::Short)),
        ("symbol-only", b"AAPL".to_vec(), Err(DecodeError::Short)),
        (
            "truncated-header",
            quote[..55].to_vec(),
            Err(DecodeError::Short),
        ),
        (
            "truncated-body",
            quote[..99].to_vec(),
            Err(DecodeError::Short),
        ),
        ("trailing-byte", long, Err(DecodeError::BadLength)),
        (
            "foreign",
            with(quote.clone(), 8, b'X'),
            Err(DecodeError::Foreign),
        ),
        (
            "wrong-version",
            with(quote.clone(), 10, 2),
            Err(DecodeError::Version(2)),
        ),
        (
            "unknown-kind",
            with(quote.clone(), 11, 99),
            Err(DecodeError::UnknownKind(99)),
        ),
        (
            "len-below-minimum",
            with(heartbeat.clone(), 12, 55),
            Err(DecodeError::BadLength),
        ),
        (
            "seq-zero",
            record(meta("AAPL", 7, 0), QUOTE, 0),
            Err(DecodeError::BadSequence),
        ),
        (
            "batch-header-truncated",
            batch(1, &[])[..5].to_vec(),
            Err(DecodeError::Short),
        ),
        (
            "batch-wrong-version",
            with(batch(1, &[q(1)]), 4, 2),
            Err(DecodeError::Version(2)),
        ),
        (
            "batch-count-zero",
            batch(0, &[q(1)]),
            Err(DecodeError::BadLength),
        ),
        (
            "batch-count-over-max",
            batch(1025, &[q(1)]),
            Err(DecodeError::BadLength),
        ),
        (
            "batch-count-high",
            batch(3, &[q(1), q(2)]),
            Err(DecodeError::Short),
        ),
        (
            "batch-count-low",
            batch(1, &[q(1), q(2)]),
            Err(DecodeError::BadLength),
        ),
        (
            "batch-with-control",
            batch(2, &[q(1), heartbeat]),
            Err(DecodeError::BadLength),
        ),
        (
            // Header seq 5, body last_seq 4 (issue 9, defect 3).
            "eos-seq-mismatch",
            record(
                meta("", 7, 5),
                Payload::EndOfStream {
                    last_seq: 4,
                    checksum: 0x9db1_caf5_cacf_2fea,
                },
                0,
            ),
            Err(DecodeError::EosSeqMismatch),
        ),
    ]
}

#[test]
fn seeds_decode_as_described() {
    for (name, bytes, expected) in seeds() {
        assert_eq!(exercise(&bytes), expected, "seed {name}");
    }
}

/// The largest batch is over the fuzzer's 4 KiB input limit (and would slow
/// it down in the corpus), so it is checked here instead.
#[test]
fn largest_batch_passes_the_fuzz_checks() {
    let records: Vec<Vec<u8>> = (1..=1025)
        .map(|seq| record(meta("AAPL", 7, seq), trade(Side::Buy), 0))
        .collect();
    assert_eq!(
        exercise(&batch(1024, &records[..1024])),
        valid([0, 1024, 0, 0], true)
    );
    assert_eq!(
        exercise(&batch(1025, &records)),
        Err(DecodeError::BadLength)
    );
}

/// Writes the seeds into the corpus as `seed-<name>`. A seed already there
/// under another name (`cargo fuzz cmin` names files by hash) is renamed, so
/// after minimising, this puts the readable names back and adds nothing twice.
#[test]
#[ignore = "writes fuzz/corpus/decode; run by hand, see docs/FUZZING.md"]
fn write_seed_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let existing: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    for (name, bytes, _) in seeds() {
        let target = dir.join(format!("seed-{name}"));
        match existing.iter().find(|(_, b)| *b == bytes) {
            Some((path, _)) => std::fs::rename(path, &target).unwrap(),
            None => std::fs::write(&target, &bytes).unwrap(),
        }
    }
}
