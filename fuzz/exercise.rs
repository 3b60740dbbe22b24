//! The checks behind the `decode` fuzz target, shared with the stable replay
//! of its corpus (`proto/tests/fuzz_corpus.rs`). Both include this file with
//! `#[path]`, so what the fuzzer checks and what `cargo test` replays cannot
//! drift apart. It depends on `shardcast-proto` only.
//!
//! Beyond "never panics", [`exercise`] asserts what the decoder promises its
//! callers: a parsed frame's records tile it exactly, every record's body is
//! readable, and the sequence tracker accepts each data record at most once.

use shardcast_proto::seq::{Eos, SourceKey, Tracker, Verdict};
use shardcast_proto::wire::{
    self, DecodeError, Frame, Kind, Payload, RecordMeta, BATCH_HEADER_LEN, MAX_BATCH,
};

/// What a valid frame held; the replay uses it to check that the corpus
/// still covers every kind and a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Records per kind, indexed by `Kind as usize - 1` (quote, trade,
    /// heartbeat, end-of-stream, ITCH).
    pub kinds: [usize; 5],
    /// Whether the frame was a batch.
    pub batch: bool,
}

/// Decode `buf` as one frame the way a subscriber shard does: parse it and,
/// when it is valid, walk every record and its payload, re-encode it, and feed
/// it through a fresh [`Tracker`]. Returns the decode error for an invalid
/// frame; panics when an invariant is broken (that is the finding).
pub fn exercise(buf: &[u8]) -> Result<Decoded, DecodeError> {
    let frame = Frame::parse(buf)?;
    let batch = frame.is_batch();
    let mut out = Decoded {
        batch,
        ..Decoded::default()
    };
    let count = frame.len();
    assert!((1..=MAX_BATCH).contains(&count), "record count {count}");
    assert!(
        batch || count == 1,
        "a single-record frame holds one record"
    );

    let mut tracker = Tracker::new();
    let mut reencoded = Vec::new();
    let (mut walked, mut tiled) = (0usize, if batch { BATCH_HEADER_LEN } else { 0 });
    let (mut data, mut new) = (0u64, 0u64);
    for rec in frame.records() {
        walked += 1;
        tiled += rec.bytes.len();
        let kind = rec.kind();
        assert_eq!(usize::from(rec.header.len.get()), rec.bytes.len());
        assert!(rec.bytes.len() >= kind.min_len());
        // payload() falls back to a heartbeat when a body is unreadable; a
        // validated record must never take that path. An ITCH record's
        // message is all of the record after the header.
        let payload = rec.payload();
        assert_eq!(payload.kind(), kind);
        let itch = rec.itch();
        assert_eq!(itch.is_some(), kind == Kind::Itch);
        if let Some(msg) = itch {
            assert_eq!(payload, Payload::Itch(msg));
            assert_eq!(msg.len() + wire::HEADER_LEN, rec.bytes.len());
            assert!(msg.len() >= wire::ITCH_MIN_BODY);
        }
        assert_eq!(rec.digest(), wire::digest(rec.bytes));
        out.kinds[kind as usize - 1] += 1;

        // Re-encoding what was read must give back the same values (flags,
        // padding and a trade's unused side values are not round-tripped).
        let meta = RecordMeta {
            symbol: rec.symbol(),
            publisher_id: rec.publisher_id(),
            stream_id: rec.stream_id(),
            session: rec.session(),
            seq: rec.seq(),
            send_ts_ns: rec.send_ts_ns(),
            intended_ts_ns: rec.intended_ts_ns(),
            sym_seq: rec.sym_seq(),
        };
        let _ = meta.symbol.as_str();
        reencoded.resize(rec.bytes.len(), 0);
        let n = wire::encode(&mut reencoded, &meta, &payload, rec.bytes.len())
            .expect("a decoded record re-encodes");
        assert_eq!(n, rec.bytes.len());
        // decode_record, not Frame::parse: a batched record's symbol may
        // start with the batch magic, which alone would read as a batch.
        let (r2, rest) = wire::decode_record(&reencoded).expect("a re-encoded record decodes");
        assert!(rest.is_empty());
        assert_eq!(r2.payload(), payload);
        assert_eq!(r2.itch(), itch);
        assert_eq!(
            (r2.symbol(), r2.seq(), r2.session()),
            (meta.symbol, meta.seq, meta.session)
        );

        // The subscriber shard's accounting (subscriber/src/shard/core.rs).
        let key = SourceKey {
            publisher_id: rec.publisher_id(),
            stream_id: rec.stream_id(),
        };
        if let Payload::EndOfStream { last_seq, checksum } = payload {
            assert!(!batch, "control records travel alone");
            assert_eq!(rec.seq(), last_seq, "an end-of-stream agrees with itself");
            // The shard obeys end-of-stream only from a source it took a
            // data record or heartbeat from, and creates no state for it.
            let sources = tracker.streams().len();
            match tracker.existing(key) {
                Some(st) if st.joined() => {
                    st.on_eos(rec.session(), last_seq, checksum);
                    // The tracker may refuse it, but never record something else.
                    let eos = st.eos();
                    assert!(eos.is_none() || eos == Some(Eos { last_seq, checksum }));
                }
                _ => assert_eq!(tracker.streams().len(), sources),
            }
            continue;
        }
        let st = tracker
            .source(key)
            .expect("a frame holds far fewer than MAX_SOURCES sources");
        match kind {
            Kind::Quote | Kind::Trade | Kind::Itch => {
                data += 1;
                // Any verdict but New drops the record (not a match: the set
                // of reasons to drop one grows).
                if st.on_data(rec.session(), rec.seq(), || rec.digest()) == Verdict::New {
                    new += 1;
                }
            }
            Kind::Heartbeat => {
                assert!(!batch, "control records travel alone");
                st.on_heartbeat(rec.session(), rec.seq());
            }
            Kind::EndOfStream => unreachable!("handled above"),
        }
        let _ = (st.complete(), st.last_seq(), st.first_seq(), st.checksum());
    }
    assert_eq!(walked, count, "records() yields exactly len() records");
    assert_eq!(tiled, buf.len(), "the records tile the frame exactly");

    let totals = tracker.totals();
    assert_eq!(totals.received, new, "every accepted record counted once");
    assert!(
        totals.duplicates <= data - new,
        "only dropped records count as duplicates"
    );
    assert_eq!(tracker.refused(), 0);
    let _ = tracker.all_ended();
    Ok(out)
}
