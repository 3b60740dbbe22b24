//! Writer, reader and recovery together, on real files in a temporary
//! directory: the format's promises (every frame back, in order; seeks
//! agree with a linear scan; a torn tail is cut; a flipped bit is reported
//! and skipped; a full disk leaves a readable recording).

use crate::format::{index_file_name, segment_file_name, Damage, FrameInfo, SEGMENT_HEADER_LEN};
use crate::reader::{Event, Range, Recording};
use crate::recover::recover_stream;
use crate::writer::{StreamWriter, WriterOptions};
use shardcast_proto::seq::SourceKey;
use shardcast_proto::wire::{encode, BatchWriter, Frame, Payload, Quote, RecordMeta, Symbol};
use std::path::Path;

const KEY: SourceKey = SourceKey {
    publisher_id: 1,
    stream_id: 0,
};

fn record(session: u64, seq: u64, payload: Payload<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    let sym = if payload.kind().is_data() {
        Symbol::new("AAA").unwrap()
    } else {
        Symbol::CONTROL
    };
    let meta = RecordMeta {
        symbol: sym,
        publisher_id: KEY.publisher_id,
        stream_id: KEY.stream_id,
        session,
        seq,
        send_ts_ns: seq,
        intended_ts_ns: seq,
        sym_seq: 0,
    };
    let n = encode(&mut buf, &meta, &payload, 100).unwrap();
    buf.truncate(n);
    buf
}

fn quote(session: u64, seq: u64) -> Vec<u8> {
    record(
        session,
        seq,
        Payload::Quote(Quote {
            bid_px: 1,
            ask_px: 2,
            bid_sz: 3,
            ask_sz: 4,
        }),
    )
}

fn batch(session: u64, seqs: std::ops::RangeInclusive<u64>) -> Vec<u8> {
    let mut w = BatchWriter::new(true, 64 << 10);
    for s in seqs {
        assert!(w.push(&quote(session, s)));
    }
    w.frame().to_vec()
}

fn info(frame: &[u8]) -> FrameInfo {
    FrameInfo::of(&Frame::parse(frame).unwrap())
}

fn opts(segment_bytes: u64) -> WriterOptions {
    WriterOptions {
        segment_bytes,
        buffer_bytes: 8 << 10,
        index_every_bytes: 1 << 10,
    }
}

/// Record `frames` of one session: singles and batches of 1..=7 records,
/// seq 1.., receive time 1000 * frame number. Returns (rx, first, last)
/// of every frame.
fn write_stream(dir: &Path, o: WriterOptions, session: u64, frames: u64) -> Vec<(u64, u64, u64)> {
    let mut w = StreamWriter::open(dir, KEY, o).unwrap();
    let mut seq = 1;
    let mut out = Vec::new();
    for i in 0..frames {
        let n = i % 8;
        let f = if n == 0 {
            quote(session, seq)
        } else {
            batch(session, seq..=seq + n - 1)
        };
        let inf = info(&f);
        let rx = 1000 * (i + 1);
        w.append(rx, &f, &inf).unwrap();
        out.push((rx, inf.first_seq, inf.last_seq));
        seq = inf.last_seq + 1;
    }
    w.close().unwrap();
    out
}

/// Every event of a cursor over `range`: frames as (rx, first, last),
/// damage as (offset, bytes, damage).
type Frames = Vec<(u64, u64, u64)>;
type Damages = Vec<(u64, u64, Damage)>;

fn read_all(root: &Path, range: &Range) -> (Frames, Damages) {
    let rec = Recording::open(root).unwrap();
    let mut cur = rec.stream(KEY).unwrap().read(range).unwrap();
    let (mut frames, mut bad) = (Vec::new(), Vec::new());
    while let Some(ev) = cur.next().unwrap() {
        match ev {
            Event::Frame(f) => frames.push((f.rx_ns, f.info.first_seq, f.info.last_seq)),
            Event::Corrupt(c) => bad.push((c.offset, c.bytes, c.damage)),
        }
    }
    (frames, bad)
}

fn stream_dir(root: &Path) -> std::path::PathBuf {
    root.join("p1-s0")
}

#[test]
fn every_frame_comes_back_in_order_across_rolled_segments() {
    let root = tempfile::tempdir().unwrap();
    let wrote = write_stream(&stream_dir(root.path()), opts(16 << 10), 9, 500);
    let rec = Recording::open(root.path()).unwrap();
    assert_eq!(rec.streams().unwrap(), vec![KEY]);
    let segs = rec.stream(KEY).unwrap().segments().unwrap();
    assert!(segs.len() > 5, "rolled: {segs:?}");
    assert_eq!(segs, (1..=segs.len() as u64).collect::<Vec<_>>());
    let (frames, bad) = read_all(root.path(), &Range::default());
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(frames, wrote);
    // Each sequence once, in order.
    let mut cur = rec.stream(KEY).unwrap().read(&Range::default()).unwrap();
    let mut next = 1;
    while let Some(Event::Frame(f)) = cur.next().unwrap() {
        for r in f.records_in_range() {
            assert_eq!(r.seq(), next);
            next += 1;
        }
    }
    assert_eq!(next - 1, wrote.last().unwrap().2);
}

#[test]
fn seeks_by_sequence_and_time_agree_with_a_linear_scan() {
    let root = tempfile::tempdir().unwrap();
    let wrote = write_stream(&stream_dir(root.path()), opts(16 << 10), 9, 700);
    let last = wrote.last().unwrap().2;
    for from in [1, 2, 3, 64, 65, 500, 1001, 1777, last - 1, last] {
        let want: Vec<_> = wrote.iter().filter(|f| f.2 >= from).copied().collect();
        let (got, _) = read_all(
            root.path(),
            &Range {
                from_seq: Some(from),
                ..Range::default()
            },
        );
        assert_eq!(got, want, "from_seq {from}");
        // The first frame holds `from`; records below it are skipped.
        let rec = Recording::open(root.path()).unwrap();
        let mut cur = rec
            .stream(KEY)
            .unwrap()
            .read(&Range {
                from_seq: Some(from),
                to_seq: Some(from + 10),
                ..Range::default()
            })
            .unwrap();
        let mut seqs = Vec::new();
        while let Some(Event::Frame(f)) = cur.next().unwrap() {
            seqs.extend(f.records_in_range().map(|r| r.seq()));
        }
        let want: Vec<u64> = (from..=(from + 10).min(last)).collect();
        assert_eq!(seqs, want, "from_seq {from} to_seq {}", from + 10);
    }
    for t in [0, 1000, 1001, 150_000, 350_500, 700_000, 700_001] {
        let want: Vec<_> = wrote.iter().filter(|f| f.0 >= t).copied().collect();
        let (got, _) = read_all(
            root.path(),
            &Range {
                from_time_ns: Some(t),
                ..Range::default()
            },
        );
        assert_eq!(got, want, "from_time {t}");
    }
    // Beyond the end: nothing.
    let (got, _) = read_all(
        root.path(),
        &Range {
            from_seq: Some(last + 1),
            ..Range::default()
        },
    );
    assert!(got.is_empty());
}

#[test]
fn sessions_are_kept_apart_and_a_seek_picks_the_last_by_default() {
    let root = tempfile::tempdir().unwrap();
    let dir = stream_dir(root.path());
    let a = write_stream(&dir, opts(16 << 10), 100, 50);
    let b = write_stream(&dir, opts(16 << 10), 200, 30);
    let s = Recording::open(root.path()).unwrap().stream(KEY).unwrap();
    let sessions: Vec<_> = s
        .sessions()
        .unwrap()
        .iter()
        .map(|i| (i.session, i.first_seq))
        .collect();
    assert_eq!(sessions, vec![(100, 1), (200, 1)]);
    let (got, _) = read_all(
        root.path(),
        &Range {
            from_seq: Some(5),
            ..Range::default()
        },
    );
    let want: Vec<_> = b.iter().filter(|f| f.2 >= 5).copied().collect();
    assert_eq!(got, want, "the last session");
    let (got, _) = read_all(
        root.path(),
        &Range {
            session: Some(100),
            from_seq: Some(5),
            ..Range::default()
        },
    );
    let want: Vec<_> = a.iter().filter(|f| f.2 >= 5).copied().collect();
    assert_eq!(got, want, "session 100");
    let (got, _) = read_all(
        root.path(),
        &Range {
            session: Some(300),
            ..Range::default()
        },
    );
    assert!(got.is_empty());
}

#[test]
fn a_flipped_bit_is_reported_with_its_position_and_skipped() {
    let root = tempfile::tempdir().unwrap();
    let dir = stream_dir(root.path());
    let wrote = write_stream(&dir, opts(1 << 30), 9, 40);
    let (clean, _) = read_all(root.path(), &Range::default());
    // Find the 10th entry's offset, flip a bit inside its frame.
    let rec = Recording::open(root.path()).unwrap();
    let mut cur = rec.stream(KEY).unwrap().read(&Range::default()).unwrap();
    let mut pos = None;
    for _ in 0..10 {
        if let Some(Event::Frame(f)) = cur.next().unwrap() {
            pos = Some(f.position);
        }
    }
    let pos = pos.unwrap();
    let path = dir.join(segment_file_name(pos.segment));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[pos.offset as usize + 24 + 70] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let (frames, bad) = read_all(root.path(), &Range::default());
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].0, pos.offset);
    assert_eq!(bad[0].2, Damage::Checksum);
    let mut want = clean.clone();
    want.remove(9);
    assert_eq!(frames, want, "every other frame, none twice");
    assert_eq!(clean, wrote);
    // A flipped length bit: the entry claims bytes it does not have; the
    // reader finds the next entry by its magic and checksum.
    let mut bytes2 = std::fs::read(&path).unwrap();
    bytes2[pos.offset as usize + 24 + 70] ^= 0x10;
    bytes2[pos.offset as usize + 6] ^= 0x01;
    std::fs::write(&path, &bytes2).unwrap();
    let (frames, bad) = read_all(root.path(), &Range::default());
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!((bad[0].0, bad[0].2), (pos.offset, Damage::BadLength));
    assert_eq!(frames, want);
    // Recovery leaves damage with valid entries after it in place.
    let r = recover_stream(&dir, 1 << 10).unwrap();
    assert_eq!(r.truncated_bytes, 0);
    assert_eq!(r.corrupt.len(), 1);
    assert_eq!(r.valid_records, 39);
}

#[test]
fn a_torn_tail_is_truncated_the_index_rebuilt_and_appending_goes_on() {
    let root = tempfile::tempdir().unwrap();
    let dir = stream_dir(root.path());
    let wrote = write_stream(&dir, opts(1 << 30), 9, 100);
    let path = dir.join(segment_file_name(1));
    let good_len = std::fs::metadata(&path).unwrap().len();
    // Half an entry (a write the crash cut), and the index points at it.
    let next = quote(9, 10_000);
    let mut torn = crate::format::entry_header(5, &next).to_vec();
    torn.extend_from_slice(&next[..30]);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, &torn).unwrap();
    drop(f);
    let (frames, bad) = read_all(root.path(), &Range::default());
    assert_eq!(frames, wrote, "the reader reads it whole");
    assert_eq!(bad, vec![(good_len, torn.len() as u64, Damage::TornTail)]);
    // Following a live recording, the same bytes are an entry being
    // written: not damage.
    let (_, bad) = read_all(
        root.path(),
        &Range {
            follow: true,
            ..Range::default()
        },
    );
    assert!(bad.is_empty());
    std::fs::remove_file(dir.join(index_file_name(1))).unwrap();
    let r = recover_stream(&dir, 1 << 10).unwrap();
    assert_eq!(r.truncated_bytes, torn.len() as u64);
    assert_eq!(r.valid_records, 100);
    assert!(r.corrupt.is_empty());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    assert!(dir.join(index_file_name(1)).exists(), "index rebuilt");
    // Appending goes on in the same segment; seeks still work.
    let mut w = StreamWriter::open(&dir, KEY, opts(1 << 30)).unwrap();
    let more = quote(9, wrote.last().unwrap().2 + 1);
    w.append(999_999, &more, &info(&more)).unwrap();
    w.close().unwrap();
    let (frames, bad) = read_all(root.path(), &Range::default());
    assert!(bad.is_empty());
    assert_eq!(frames.len(), 101);
    let last = wrote.last().unwrap().2 + 1;
    let (got, _) = read_all(
        root.path(),
        &Range {
            from_seq: Some(last),
            ..Range::default()
        },
    );
    assert_eq!(got, vec![(999_999, last, last)]);
}

#[test]
fn a_half_created_segment_is_removed_and_the_one_before_verified() {
    let root = tempfile::tempdir().unwrap();
    let dir = stream_dir(root.path());
    write_stream(&dir, opts(1 << 30), 9, 10);
    std::fs::write(dir.join(segment_file_name(2)), b"SCRECSEG\x01").unwrap();
    let r = recover_stream(&dir, 1 << 10).unwrap();
    assert_eq!((r.segment, r.removed_segments, r.valid_records), (1, 1, 10));
    assert_eq!(r.truncated_bytes, 9);
    assert!(!dir.join(segment_file_name(2)).exists());
}

#[test]
fn a_cursor_following_a_live_recording_sees_what_is_flushed_later() {
    let root = tempfile::tempdir().unwrap();
    let dir = stream_dir(root.path());
    let mut w = StreamWriter::open(&dir, KEY, opts(4 << 10)).unwrap();
    let f1 = quote(9, 1);
    w.append(1, &f1, &info(&f1)).unwrap();
    w.flush().unwrap();
    let rec = Recording::open(root.path()).unwrap();
    let mut cur = rec
        .stream(KEY)
        .unwrap()
        .read(&Range {
            follow: true,
            ..Range::default()
        })
        .unwrap();
    assert!(matches!(cur.next().unwrap(), Some(Event::Frame(f)) if f.info.first_seq == 1));
    assert!(cur.next().unwrap().is_none());
    // More, across a roll (4 KiB segments).
    for s in 2..=100 {
        let f = quote(9, s);
        w.append(s, &f, &info(&f)).unwrap();
    }
    w.flush().unwrap();
    let mut seqs = Vec::new();
    while let Some(ev) = cur.next().unwrap() {
        match ev {
            Event::Frame(f) => seqs.push(f.info.first_seq),
            Event::Corrupt(c) => panic!("{c:?}"),
        }
    }
    assert_eq!(seqs, (2..=100).collect::<Vec<_>>());
    assert!(w.segment() > 1);
}

#[test]
fn segment_files_start_with_their_header_and_entries_follow_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = stream_dir(root.path());
    write_stream(&dir, opts(1 << 30), 9, 1);
    let b = std::fs::read(dir.join(segment_file_name(1))).unwrap();
    let h = crate::format::SegmentHeader::decode(&b).unwrap();
    assert_eq!((h.key, h.number), (KEY, 1));
    assert_eq!(&b[SEGMENT_HEADER_LEN..SEGMENT_HEADER_LEN + 4], b"SCRE");
}
