//! The bytes of a recording, in one place (docs/RECORDING.md is the
//! normative description; a change here changes it in the same commit).
//!
//! A recording directory holds one directory per source,
//! `p<publisher_id>-s<stream_id>`, and in it numbered segment files
//! (`00000000000000000001.seg`, ...) each with a sparse index beside it
//! (`...0001.idx`). All integers are little-endian.
//!
//! * Segment: a 64-byte [`SegmentHeader`], then entries back to back.
//! * Entry: a 24-byte header (`"SCRE"`, frame length, receive time,
//!   checksum) and the frame exactly as received. The checksum is
//!   `xxh3_64_with_seed(frame, rx_ns)`: it covers the frame, its length
//!   (a different length hashes different bytes) and the receive time (the
//!   seed), in one pass over the frame.
//! * Index: a 16-byte header, then 40-byte [`IndexPoint`]s (entry offset,
//!   receive time, session, first and last sequence of the frame).
//!
//! Nothing here does I/O: encoding and checking only, so every rule is
//! unit-tested on byte arrays.

use shardcast_proto::seq::SourceKey;
use shardcast_proto::wire::{Frame, Kind};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SCRECSEG";
/// First 8 bytes of every index file.
pub const INDEX_MAGIC: [u8; 8] = *b"SCRECIDX";
/// First 4 bytes of every entry.
pub const ENTRY_MAGIC: [u8; 4] = *b"SCRE";
/// Format version of segments and indexes.
pub const FORMAT_VERSION: u16 = 1;
/// Length of a segment header; the first entry starts here.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// Length of an entry header; the frame follows it.
pub const ENTRY_HEADER_LEN: usize = 24;
/// Length of an index header.
pub const INDEX_HEADER_LEN: usize = 16;
/// Length of one index point.
pub const INDEX_POINT_LEN: usize = 40;
/// The largest frame an entry may hold. A subscriber's `--max-msg-size`
/// cannot be raised past this for a recorder: a length field above it is
/// corruption, not a frame (64 MiB, 16 times the publisher's largest frame).
pub const MAX_ENTRY_FRAME: usize = 64 << 20;

/// A source's directory name in a recording: `p<publisher_id>-s<stream_id>`.
pub fn stream_dir_name(key: SourceKey) -> String {
    format!("p{}-s{}", key.publisher_id, key.stream_id)
}

/// The source a directory name stands for (the inverse of
/// [`stream_dir_name`]); `None` for any other name.
pub fn parse_stream_dir_name(name: &str) -> Option<SourceKey> {
    let rest = name.strip_prefix('p')?;
    let (p, s) = rest.split_once("-s")?;
    let key = SourceKey {
        publisher_id: p.parse().ok()?,
        stream_id: s.parse().ok()?,
    };
    // Only the canonical spelling (no leading zeros or signs), so one
    // source has one directory.
    (stream_dir_name(key) == name).then_some(key)
}

/// Segment `n`'s file name (20 digits, so names sort as numbers).
pub fn segment_file_name(n: u64) -> String {
    format!("{n:020}.seg")
}

/// Segment `n`'s index file name.
pub fn index_file_name(n: u64) -> String {
    format!("{n:020}.idx")
}

/// The segment number of a `.seg` file name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// What the 64-byte header of a segment says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The source recorded in this segment.
    pub key: SourceKey,
    /// The segment's number (from 1, consecutive in a stream directory).
    pub number: u64,
    /// When the segment was created, CLOCK_REALTIME ns.
    pub created_ns: u64,
}

/// Why a segment header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer than 64 bytes: a crash while the segment was being created.
    #[error("segment header shorter than 64 bytes")]
    Short,
    /// Not a shardcast segment (magic), or a version this build does not
    /// read.
    #[error("not a version-1 shardcast segment (magic or version)")]
    Foreign,
    /// The header's checksum does not match.
    #[error("segment header checksum mismatch")]
    Checksum,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&(SEGMENT_HEADER_LEN as u16).to_le_bytes());
        b[12..16].copy_from_slice(&self.key.publisher_id.to_le_bytes());
        b[16..18].copy_from_slice(&self.key.stream_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.number.to_le_bytes());
        b[32..40].copy_from_slice(&self.created_ns.to_le_bytes());
        let check = xxh3_64(&b[0..40]);
        b[40..48].copy_from_slice(&check.to_le_bytes());
        b
    }

    /// Read a header from the start of a segment.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(HeaderError::Short);
        }
        if b[0..8] != SEGMENT_MAGIC
            || u16_at(b, 8) != FORMAT_VERSION
            || u16_at(b, 10) as usize != SEGMENT_HEADER_LEN
        {
            return Err(HeaderError::Foreign);
        }
        if u64_at(b, 40) != xxh3_64(&b[0..40]) {
            return Err(HeaderError::Checksum);
        }
        Ok(SegmentHeader {
            key: SourceKey {
                publisher_id: u32_at(b, 12),
                stream_id: u16_at(b, 16),
            },
            number: u64_at(b, 24),
            created_ns: u64_at(b, 32),
        })
    }
}

/// An entry's checksum: `xxh3_64_with_seed(frame, rx_ns)`.
#[inline]
pub fn entry_checksum(rx_ns: u64, frame: &[u8]) -> u64 {
    xxh3_64_with_seed(frame, rx_ns)
}

/// The 24-byte header of an entry holding `frame`, received at `rx_ns`.
#[inline]
pub fn entry_header(rx_ns: u64, frame: &[u8]) -> [u8; ENTRY_HEADER_LEN] {
    let mut h = [0u8; ENTRY_HEADER_LEN];
    h[0..4].copy_from_slice(&ENTRY_MAGIC);
    h[4..8].copy_from_slice(&(frame.len() as u32).to_le_bytes());
    h[8..16].copy_from_slice(&rx_ns.to_le_bytes());
    h[16..24].copy_from_slice(&entry_checksum(rx_ns, frame).to_le_bytes());
    h
}

/// What the bytes at an entry position hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryCheck<'a> {
    /// A whole, valid entry of `len` bytes in all (header and frame).
    Valid {
        /// Receive time, ns.
        rx_ns: u64,
        /// The frame.
        frame: &'a [u8],
        /// Header plus frame.
        len: usize,
    },
    /// Too few bytes to tell, and what there is could be the start of a
    /// valid entry (a prefix of the magic, or a header whose frame is not
    /// all there yet): at the end of a file that is still being written,
    /// wait; in a sealed file, it is a torn tail.
    Incomplete,
    /// Not a valid entry.
    Invalid(Damage),
}

/// What is wrong with an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Damage {
    /// The 4 bytes at the position are not `"SCRE"`.
    BadMagic,
    /// The length field is 0 or above [`MAX_ENTRY_FRAME`].
    BadLength,
    /// The checksum does not match the frame and receive time.
    Checksum,
    /// The checksum matches but the frame is not a valid shardcast frame
    /// (never written by `shardcast-record`, which records valid frames
    /// only).
    BadFrame,
    /// A sealed segment (or a stopped recording) ends inside an entry.
    TornTail,
}

impl Damage {
    /// Stable snake_case name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Damage::BadMagic => "bad_magic",
            Damage::BadLength => "bad_length",
            Damage::Checksum => "checksum",
            Damage::BadFrame => "bad_frame",
            Damage::TornTail => "torn_tail",
        }
    }
}

/// Check the entry at the start of `b` (`b` runs to the end of what is
/// known of the file).
#[inline]
pub fn check_entry(b: &[u8]) -> EntryCheck<'_> {
    if b.len() < 4 {
        return if ENTRY_MAGIC.starts_with(b) {
            EntryCheck::Incomplete
        } else {
            EntryCheck::Invalid(Damage::BadMagic)
        };
    }
    if b[0..4] != ENTRY_MAGIC {
        return EntryCheck::Invalid(Damage::BadMagic);
    }
    if b.len() < 8 {
        return EntryCheck::Incomplete;
    }
    let len = u32_at(b, 4) as usize;
    if len == 0 || len > MAX_ENTRY_FRAME {
        return EntryCheck::Invalid(Damage::BadLength);
    }
    let total = ENTRY_HEADER_LEN + len;
    if b.len() < total {
        return EntryCheck::Incomplete;
    }
    let rx_ns = u64_at(b, 8);
    let frame = &b[ENTRY_HEADER_LEN..total];
    if u64_at(b, 16) != entry_checksum(rx_ns, frame) {
        return EntryCheck::Invalid(Damage::Checksum);
    }
    EntryCheck::Valid {
        rx_ns,
        frame,
        len: total,
    }
}

/// What the recorder and the reader need to know of a frame: whose it is,
/// its session and the sequence numbers it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// The source (of its first record; a frame holds one stream's records).
    pub key: SourceKey,
    /// Session of its first record.
    pub session: u64,
    /// Data frames: the smallest data `seq` in it. Control frames
    /// (heartbeat, end-of-stream): 0.
    pub first_seq: u64,
    /// Data frames: the largest data `seq` in it. Control frames: the last
    /// data `seq` the publisher had sent (PROTOCOL.md section 4).
    pub last_seq: u64,
    /// Data records in it (0 for a control frame).
    pub data_records: u32,
    /// Kind of its first record.
    pub kind: Kind,
}

impl FrameInfo {
    /// Whether the frame holds data records (not a heartbeat or
    /// end-of-stream).
    pub fn is_data(&self) -> bool {
        self.data_records > 0
    }

    /// Summarise a parsed frame.
    #[inline]
    pub fn of(frame: &Frame<'_>) -> FrameInfo {
        let mut recs = frame.records();
        let first = recs.next().expect("a parsed frame holds a record");
        let kind = first.kind();
        let mut info = FrameInfo {
            key: SourceKey {
                publisher_id: first.publisher_id(),
                stream_id: first.stream_id(),
            },
            session: first.session(),
            first_seq: first.seq(),
            last_seq: first.seq(),
            data_records: kind.is_data() as u32,
            kind,
        };
        if !kind.is_data() {
            info.first_seq = 0;
            return info;
        }
        for r in recs {
            let s = r.seq();
            info.first_seq = info.first_seq.min(s);
            info.last_seq = info.last_seq.max(s);
            info.data_records += 1;
        }
        info
    }
}

/// One point of a segment's sparse index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexPoint {
    /// Offset of the entry in its segment file.
    pub offset: u64,
    /// The entry's receive time, ns.
    pub rx_ns: u64,
    /// The session of its frame.
    pub session: u64,
    /// [`FrameInfo::first_seq`] of its frame (0: a control frame).
    pub first_seq: u64,
    /// [`FrameInfo::last_seq`] of its frame.
    pub last_seq: u64,
}

impl IndexPoint {
    /// The point's 40 bytes.
    pub fn encode(&self) -> [u8; INDEX_POINT_LEN] {
        let mut b = [0u8; INDEX_POINT_LEN];
        b[0..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..16].copy_from_slice(&self.rx_ns.to_le_bytes());
        b[16..24].copy_from_slice(&self.session.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_seq.to_le_bytes());
        b[32..40].copy_from_slice(&self.last_seq.to_le_bytes());
        b
    }

    /// Read a point (`b` holds at least [`INDEX_POINT_LEN`] bytes).
    pub fn decode(b: &[u8]) -> IndexPoint {
        IndexPoint {
            offset: u64_at(b, 0),
            rx_ns: u64_at(b, 8),
            session: u64_at(b, 16),
            first_seq: u64_at(b, 24),
            last_seq: u64_at(b, 32),
        }
    }
}

/// Which entries become index points; the one rule the writer and
/// recovery (which rebuilds an index) share. A point is made for a
/// segment's first entry, a session's first entry and its first data entry
/// in the segment (so a seek by session or by its first sequence never
/// scans another), and a data entry starting at least `every` bytes after
/// the previous point.
#[derive(Clone, Copy, Debug)]
pub struct PointPolicy {
    every: u64,
    last_point: Option<u64>,
    session: Option<u64>,
    data_pointed: bool,
}

impl PointPolicy {
    /// A policy for a fresh segment, a point at least every `every` bytes
    /// of data.
    pub fn new(every: u64) -> PointPolicy {
        PointPolicy {
            every,
            last_point: None,
            session: None,
            data_pointed: false,
        }
    }

    /// Whether the entry at `offset` holding a frame like `info` is a
    /// point (and remember it if so).
    #[inline]
    pub fn want(&mut self, offset: u64, info: &FrameInfo) -> bool {
        let new_session = self.session != Some(info.session);
        if new_session {
            self.session = Some(info.session);
            self.data_pointed = false;
        }
        let want = match self.last_point {
            None => true,
            Some(last) => {
                new_session
                    || (info.is_data()
                        && (!self.data_pointed || offset.saturating_sub(last) >= self.every))
            }
        };
        if want {
            self.last_point = Some(offset);
            self.data_pointed |= info.is_data();
        }
        want
    }
}

/// An index file's 16-byte header.
pub fn index_header() -> [u8; INDEX_HEADER_LEN] {
    let mut b = [0u8; INDEX_HEADER_LEN];
    b[0..8].copy_from_slice(&INDEX_MAGIC);
    b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[10..12].copy_from_slice(&(INDEX_POINT_LEN as u16).to_le_bytes());
    b
}

/// The points of an index file's bytes; `None` if its header is not ours
/// (the reader then scans the segment instead). A torn last point (a
/// length not a multiple of 40) is left out.
pub fn decode_index(b: &[u8]) -> Option<Vec<IndexPoint>> {
    if b.len() < INDEX_HEADER_LEN || b[0..INDEX_HEADER_LEN] != index_header() {
        return None;
    }
    Some(
        b[INDEX_HEADER_LEN..]
            .chunks_exact(INDEX_POINT_LEN)
            .map(IndexPoint::decode)
            .collect(),
    )
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: SourceKey = SourceKey {
        publisher_id: 7,
        stream_id: 3,
    };

    fn entry(rx_ns: u64, frame: &[u8]) -> Vec<u8> {
        let mut v = entry_header(rx_ns, frame).to_vec();
        v.extend_from_slice(frame);
        v
    }

    #[test]
    fn stream_dir_names_round_trip_and_only_the_canonical_spelling_parses() {
        assert_eq!(stream_dir_name(KEY), "p7-s3");
        assert_eq!(parse_stream_dir_name("p7-s3"), Some(KEY));
        for bad in [
            "p07-s3",
            "p7-s",
            "x7-s3",
            "p7s3",
            "p-1-s3",
            "p7-s70000",
            "p7-s3.tmp",
        ] {
            assert_eq!(parse_stream_dir_name(bad), None, "{bad}");
        }
        assert_eq!(segment_file_name(12), "00000000000000000012.seg");
        assert_eq!(
            parse_segment_file_name("00000000000000000012.seg"),
            Some(12)
        );
        assert_eq!(parse_segment_file_name("12.seg"), None);
        assert_eq!(parse_segment_file_name("00000000000000000012.idx"), None);
    }

    #[test]
    fn segment_header_round_trips_and_any_flipped_bit_is_refused() {
        let h = SegmentHeader {
            key: KEY,
            number: 42,
            created_ns: 1_700_000_000_000_000_000,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        assert_eq!(SegmentHeader::decode(&b[..63]), Err(HeaderError::Short));
        for bit in 0..48 * 8 {
            let mut c = b;
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&c).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn entry_checks_valid_incomplete_and_each_kind_of_damage() {
        let e = entry(99, b"hello frame");
        assert_eq!(
            check_entry(&e),
            EntryCheck::Valid {
                rx_ns: 99,
                frame: b"hello frame",
                len: 24 + 11
            }
        );
        // Every strict prefix is incomplete, not damage: a writer may be
        // half-way through it.
        for n in 0..e.len() {
            assert_eq!(check_entry(&e[..n]), EntryCheck::Incomplete, "prefix {n}");
        }
        // Any single flipped bit anywhere is caught.
        for bit in 0..e.len() * 8 {
            let mut c = e.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            match check_entry(&c) {
                EntryCheck::Valid { .. } => panic!("bit {bit} not detected"),
                // A flipped length bit can make the entry claim more bytes
                // than there are: incomplete, which a sealed file reports
                // as a torn tail and recovery resynchronises past.
                EntryCheck::Incomplete => assert!((32..64).contains(&bit), "bit {bit}"),
                EntryCheck::Invalid(_) => {}
            }
        }
        let mut zero_len = e.clone();
        zero_len[4..8].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            check_entry(&zero_len),
            EntryCheck::Invalid(Damage::BadLength)
        );
        assert_eq!(
            check_entry(b"XCRE...................."),
            EntryCheck::Invalid(Damage::BadMagic)
        );
        assert_eq!(check_entry(b"SX"), EntryCheck::Invalid(Damage::BadMagic));
    }

    #[test]
    fn the_checksum_is_xxh3_of_the_frame_seeded_with_the_receive_time() {
        // The documented definition, so another tool can compute it.
        let e = entry(5, b"abc");
        assert_eq!(&e[0..4], b"SCRE");
        assert_eq!(u32_at(&e, 4), 3);
        assert_eq!(u64_at(&e, 8), 5);
        assert_eq!(u64_at(&e, 16), xxh3_64_with_seed(b"abc", 5));
    }

    #[test]
    fn index_points_round_trip_and_a_torn_last_point_is_left_out() {
        let p = IndexPoint {
            offset: 64,
            rx_ns: 2,
            session: 3,
            first_seq: 4,
            last_seq: 5,
        };
        let mut b = index_header().to_vec();
        b.extend_from_slice(&p.encode());
        b.extend_from_slice(&p.encode()[..17]);
        assert_eq!(decode_index(&b), Some(vec![p]));
        assert_eq!(decode_index(b"SCRECIDY\x01\0\x28\0\0\0\0\0"), None);
    }
}
