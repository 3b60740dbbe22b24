//! Wire format v1. The normative description is `docs/PROTOCOL.md`; this
//! module is its implementation and the two must change together.
//!
//! A ZeroMQ frame is either
//! * a **single record** (the `--batch 1` mode): the frame *is* one record, and
//!   because a record starts with its 8-byte symbol, SUB prefix subscriptions
//!   select symbols at the publisher; or
//! * a **batch**: an 8-byte [`BatchHeader`] (first byte `0x00`) followed by
//!   `count` records of one stream, back to back.
//!
//! Control records (heartbeat, end-of-stream) carry an all-zero symbol. Every
//! frame that is not a single data record therefore starts with `0x00`, which is
//! the [`CONTROL_TOPIC`] every shardcast subscriber subscribes to.
//!
//! Data records are quotes and trades of the synthetic feed, or
//! [`Kind::Itch`]: one NASDAQ TotalView-ITCH 5.0 message carried unchanged
//! as the record's body ([`Record::itch`]), under the same header, sequence
//! numbers and checksum as any other data record.
//!
//! Decoding never allocates and never panics: a short, foreign or
//! unknown-version frame is a [`DecodeError`] value the caller counts.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;
use zerocopy::byteorder::little_endian::{I64, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Protocol version carried by every record and batch header.
pub const VERSION: u8 = 1;
/// Two magic bytes after the symbol: `"SC"`. They reject foreign traffic.
pub const MAGIC: [u8; 2] = *b"SC";
/// Three magic bytes of a batch header, after its leading `0x00`.
pub const BATCH_MAGIC: [u8; 3] = *b"SCB";
/// Length of the symbol field, which is also the topic.
pub const SYMBOL_LEN: usize = 8;
/// Length of the fixed record header.
pub const HEADER_LEN: usize = std::mem::size_of::<Header>();
/// Length of a batch header.
pub const BATCH_HEADER_LEN: usize = std::mem::size_of::<BatchHeader>();
/// The subscription prefix of control records and batch frames. A shardcast
/// subscriber always subscribes to it, and the publisher counts these
/// subscriptions to implement `--wait-subscribers`.
pub const CONTROL_TOPIC: &[u8] = &[0];
/// Largest record: the length field is a `u16`.
pub const MAX_RECORD_LEN: usize = u16::MAX as usize;
/// Most records in one batch frame.
pub const MAX_BATCH: usize = 1024;
/// Largest frame a publisher builds and a subscriber accepts by default
/// (its `ZMQ_MAXMSGSZ`): 4 MiB.
pub const MAX_FRAME_LEN: usize = 4 << 20;

/// Fixed price scale: prices are integers in units of 1/10_000.
pub const PRICE_SCALE: i64 = 10_000;

/// Shortest body of a [`Kind::Itch`] record: the 11 bytes every ITCH
/// message starts with (type, stock locate, tracking number, timestamp), so
/// a receiver can always read those from a record that decoded.
pub const ITCH_MIN_BODY: usize = 11;

/// Longest [`Kind::Itch`] record `shardcast-pub` sends: the header and the
/// longest ITCH 5.0 message (`I`, 50 bytes). It sends only messages of the
/// types ITCH 5.0 defines, at their fixed lengths.
pub const ITCH_RECORD_MAX: usize = HEADER_LEN + 50;

/// Message kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Kind {
    /// Top-of-book update: bid and ask price and size.
    Quote = 1,
    /// A trade: price, size, aggressor side.
    Trade = 2,
    /// Liveness on an idle stream; carries the last data sequence sent.
    Heartbeat = 3,
    /// The stream ends; carries the last sequence and the stream checksum.
    EndOfStream = 4,
    /// One NASDAQ TotalView-ITCH 5.0 message, its bytes unchanged (those
    /// after the file's 2-byte length prefix), as the whole body: `len` is
    /// 56 + the message's length, no padding. Market data: consumes a
    /// sequence number like a quote or a trade.
    Itch = 5,
}

impl Kind {
    /// The kind of a header's `kind` byte; `None` for a byte no kind has.
    pub fn from_u8(v: u8) -> Option<Kind> {
        match v {
            1 => Some(Kind::Quote),
            2 => Some(Kind::Trade),
            3 => Some(Kind::Heartbeat),
            4 => Some(Kind::EndOfStream),
            5 => Some(Kind::Itch),
            _ => None,
        }
    }

    /// Whether the kind is market data (consumes a sequence number).
    pub fn is_data(self) -> bool {
        matches!(self, Kind::Quote | Kind::Trade | Kind::Itch)
    }

    /// Smallest valid record length for this kind.
    pub fn min_len(self) -> usize {
        HEADER_LEN
            + match self {
                Kind::Quote => std::mem::size_of::<QuoteBody>(),
                Kind::Trade => std::mem::size_of::<TradeBody>(),
                Kind::Heartbeat => 0,
                Kind::EndOfStream => std::mem::size_of::<EosBody>(),
                Kind::Itch => ITCH_MIN_BODY,
            }
    }
}

/// The fixed 56-byte record header (little-endian, alignment 1, so it can be
/// read in place from any received buffer).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Header {
    /// Instrument symbol, ASCII, NUL-padded; all zero for control records.
    pub symbol: [u8; SYMBOL_LEN],
    /// [`MAGIC`].
    pub magic: [u8; 2],
    /// [`VERSION`].
    pub version: u8,
    /// [`Kind`] as a byte.
    pub kind: u8,
    /// Total record length, header + body + padding.
    pub len: U16,
    /// Stream id within the publisher.
    pub stream_id: U16,
    /// Publisher id, unique per publisher process in a deployment.
    pub publisher_id: U32,
    /// The record's sequence among the data records of its symbol in its
    /// (publisher, stream, session), from 1 (like CME's RptSeq); 0: not
    /// carried (control records, a publisher from before it). Bytes 20..24,
    /// once the reserved `flags` (v1 decoders never checked them).
    pub sym_seq: U32,
    /// Publisher session (epoch): changes when a publisher restarts.
    pub session: U64,
    /// Sequence number per (publisher, stream, session), from 1.
    pub seq: U64,
    /// Wall-clock (CLOCK_REALTIME) nanoseconds when the record was encoded.
    pub send_ts_ns: U64,
    /// Nanoseconds when the record was due by the publisher's schedule.
    pub intended_ts_ns: U64,
}

/// Quote body.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct QuoteBody {
    /// Best bid price, in 1/[`PRICE_SCALE`] units.
    pub bid_px: I64,
    /// Best ask price.
    pub ask_px: I64,
    /// Size at the bid.
    pub bid_sz: U32,
    /// Size at the ask.
    pub ask_sz: U32,
}

/// Trade body.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct TradeBody {
    /// Trade price.
    pub px: I64,
    /// Trade size.
    pub sz: U32,
    /// Aggressor side: 1 buy, 2 sell.
    pub side: u8,
    /// Zero.
    pub pad: [u8; 3],
}

/// End-of-stream body.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct EosBody {
    /// Last data sequence number the stream sent (0 when it sent none).
    pub last_seq: U64,
    /// [`StreamChecksum`] of every data record the stream sent.
    pub checksum: U64,
}

/// Header of a batch frame.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BatchHeader {
    /// Always 0x00, so batches ride the [`CONTROL_TOPIC`] and never match a
    /// symbol prefix.
    pub zero: u8,
    /// [`BATCH_MAGIC`].
    pub magic: [u8; 3],
    /// [`VERSION`].
    pub version: u8,
    /// Reserved, zero.
    pub reserved: u8,
    /// Number of records that follow.
    pub count: U16,
}

/// An instrument symbol: 1 to 8 ASCII graphic characters, NUL-padded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(pub [u8; SYMBOL_LEN]);

impl Symbol {
    /// The all-zero symbol of control records.
    pub const CONTROL: Symbol = Symbol([0; SYMBOL_LEN]);

    /// The symbol of [`Kind::Itch`] records that concern no one stock:
    /// market-wide messages (stock locate 0: system events, MWCB decline
    /// levels and status), which the publisher sends on every stream.
    /// `~` is not in NASDAQ's symbology (upper-case letters and a few
    /// share-class punctuation marks), so no stock maps to this symbol.
    pub const MARKET_WIDE: Symbol = Symbol(*b"~MARKET\0");

    /// The record symbol of an ITCH `Stock` field (8 bytes, left-justified,
    /// space-padded): the stock without its padding spaces, NUL-padded. A
    /// byte that is not a graphic ASCII character inside the stock (an
    /// inner space) becomes `?`, so the symbol keeps section 2.1's rule.
    /// `None` for an all-space stock, which names nothing.
    pub fn from_itch_stock(stock: &[u8; SYMBOL_LEN]) -> Option<Symbol> {
        let n = stock.iter().rposition(|&b| b != b' ')? + 1;
        let mut out = [0u8; SYMBOL_LEN];
        for (o, &b) in out.iter_mut().zip(&stock[..n]) {
            *o = if b.is_ascii_graphic() { b } else { b'?' };
        }
        Some(Symbol(out))
    }

    /// Parse a symbol; `None` unless 1..=8 ASCII graphic characters.
    pub fn new(s: &str) -> Option<Symbol> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > SYMBOL_LEN || !b.iter().all(|c| c.is_ascii_graphic()) {
            return None;
        }
        let mut out = [0u8; SYMBOL_LEN];
        out[..b.len()].copy_from_slice(b);
        Some(Symbol(out))
    }

    /// The symbol as text (padding stripped; non-ASCII bytes replaced).
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        let end = self.0.iter().position(|&c| c == 0).unwrap_or(SYMBOL_LEN);
        String::from_utf8_lossy(&self.0[..end])
    }

    /// The eight bytes as one little-endian integer (a cheap map key).
    pub fn as_u64(&self) -> u64 {
        u64::from_le_bytes(self.0)
    }
}

impl std::fmt::Debug for Symbol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Symbol({})", self.as_str())
    }
}

impl std::fmt::Display for Symbol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// Aggressor side of a trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    /// Buyer lifted the offer.
    Buy,
    /// Seller hit the bid.
    Sell,
}

/// A quote as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quote {
    /// Bid price (1/[`PRICE_SCALE`]).
    pub bid_px: i64,
    /// Ask price.
    pub ask_px: i64,
    /// Bid size.
    pub bid_sz: u32,
    /// Ask size.
    pub ask_sz: u32,
}

/// A trade as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trade {
    /// Price (1/[`PRICE_SCALE`]).
    pub px: i64,
    /// Size.
    pub sz: u32,
    /// Aggressor side.
    pub side: Side,
}

/// A record body as plain values; an ITCH message is borrowed (from the
/// received buffer, or from the caller when encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// See [`Quote`].
    Quote(Quote),
    /// See [`Trade`].
    Trade(Trade),
    /// Heartbeat: no body.
    Heartbeat,
    /// End of stream.
    EndOfStream {
        /// Last data sequence sent.
        last_seq: u64,
        /// Checksum of all data records sent.
        checksum: u64,
    },
    /// One NASDAQ TotalView-ITCH 5.0 message ([`Kind::Itch`]): the bytes
    /// after its length prefix, unchanged, at least [`ITCH_MIN_BODY`].
    Itch(&'a [u8]),
}

impl Payload<'_> {
    /// The kind of this payload.
    pub fn kind(&self) -> Kind {
        match self {
            Payload::Quote(_) => Kind::Quote,
            Payload::Trade(_) => Kind::Trade,
            Payload::Heartbeat => Kind::Heartbeat,
            Payload::EndOfStream { .. } => Kind::EndOfStream,
            Payload::Itch(_) => Kind::Itch,
        }
    }

    /// The length of this payload's record padded to `pad_to`: at least the
    /// kind's minimum. An ITCH record is never padded: it is the header and
    /// the message, whatever `pad_to` says.
    #[inline]
    pub fn record_len(&self, pad_to: usize) -> usize {
        match self {
            Payload::Itch(msg) => HEADER_LEN + msg.len(),
            _ => pad_to.max(self.kind().min_len()),
        }
    }
}

/// The header fields an encoder fills in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    /// Symbol (use [`Symbol::CONTROL`] for heartbeat and end-of-stream).
    pub symbol: Symbol,
    /// Publisher id.
    pub publisher_id: u32,
    /// Stream id.
    pub stream_id: u16,
    /// Publisher session.
    pub session: u64,
    /// Sequence number (for control records: the last data sequence sent).
    pub seq: u64,
    /// Send timestamp, ns.
    pub send_ts_ns: u64,
    /// Intended send timestamp, ns.
    pub intended_ts_ns: u64,
    /// Per-symbol sequence (PROTOCOL.md section 4): the record's number
    /// among the data records of its symbol on its stream and session,
    /// from 1; 0 = not carried (control records).
    pub sym_seq: u32,
}

/// Why a frame could not be decoded. Each variant is one counter in the
/// subscriber's `malformed_reasons`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a header, or than its kind's body, or than its length field.
    Short,
    /// Magic bytes absent: not a shardcast frame.
    Foreign,
    /// A shardcast frame of a version this build does not speak.
    Version(u8),
    /// Unknown message kind.
    UnknownKind(u8),
    /// A length field or batch count that does not match the frame.
    BadLength,
    /// A data record with sequence 0 or `u64::MAX` (data sequences run from
    /// 1, and the last value is reserved so "next expected" never overflows).
    BadSequence,
    /// An end-of-stream whose header `seq` differs from its body `last_seq`.
    /// Both claim the stream's last data sequence; a sender that disagrees
    /// with itself cannot be trusted for either, and a receiver that picked
    /// one could declare a stream complete (or lossy) on a corrupt record.
    /// Remedy: fix the sender; shardcast-pub always writes them equal.
    EosSeqMismatch,
}

impl DecodeError {
    /// Stable snake_case name used as a report key: this reason's entry
    /// in [`DecodeError::REASONS`], the one table of these names.
    pub fn reason(&self) -> &'static str {
        Self::REASONS[self.index()]
    }

    /// Index of [`Self::reason`] in [`DecodeError::REASONS`].
    pub fn index(&self) -> usize {
        match self {
            DecodeError::Short => 0,
            DecodeError::Foreign => 1,
            DecodeError::Version(_) => 2,
            DecodeError::UnknownKind(_) => 3,
            DecodeError::BadLength => 4,
            DecodeError::BadSequence => 5,
            DecodeError::EosSeqMismatch => 6,
        }
    }

    /// Every reason, in [`Self::index`] order. Report keys: names are only
    /// ever appended, never renamed or reordered.
    pub const REASONS: [&'static str; 7] = [
        "short",
        "foreign",
        "version",
        "unknown_kind",
        "bad_length",
        "bad_sequence",
        "eos_seq_mismatch",
    ];
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Short => f.write_str("frame shorter than its declared content"),
            DecodeError::Foreign => f.write_str("not a shardcast frame (bad magic)"),
            DecodeError::Version(v) => write!(f, "unsupported protocol version {v}"),
            DecodeError::UnknownKind(k) => write!(f, "unknown message kind {k}"),
            DecodeError::BadLength => f.write_str("length or count field inconsistent"),
            DecodeError::BadSequence => f.write_str("data sequence number 0 or u64::MAX"),
            DecodeError::EosSeqMismatch => {
                f.write_str("end-of-stream header seq and body last_seq disagree")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a record could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is smaller than the record.
    BufferTooSmall,
    /// The padded length is below the kind's minimum or above [`MAX_RECORD_LEN`].
    BadLength,
    /// A [`BatchWriter`] holds as many records or bytes as its frame may.
    /// Remedy: send its [`BatchWriter::frame`], [`BatchWriter::clear`] it,
    /// and encode again.
    Full,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::BufferTooSmall => f.write_str("output buffer too small"),
            EncodeError::BadLength => f.write_str("record length out of range"),
            EncodeError::Full => f.write_str("frame full: send it first"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// A record decoded in place: references into the received buffer.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The header.
    pub header: &'a Header,
    /// The exact bytes of the record (header, body and padding).
    pub bytes: &'a [u8],
    kind: Kind,
}

impl<'a> Record<'a> {
    /// The message kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The symbol.
    pub fn symbol(&self) -> Symbol {
        Symbol(self.header.symbol)
    }

    /// Sequence number.
    pub fn seq(&self) -> u64 {
        self.header.seq.get()
    }

    /// Publisher id.
    pub fn publisher_id(&self) -> u32 {
        self.header.publisher_id.get()
    }

    /// Per-symbol sequence: this record's number among the data records of
    /// its symbol in its (publisher, stream, session), from 1; 0 when the
    /// publisher does not carry it (control records, a publisher from
    /// before per-symbol sequencing). PROTOCOL.md section 4.
    pub fn sym_seq(&self) -> u32 {
        self.header.sym_seq.get()
    }

    /// Stream id.
    pub fn stream_id(&self) -> u16 {
        self.header.stream_id.get()
    }

    /// Session.
    pub fn session(&self) -> u64 {
        self.header.session.get()
    }

    /// Send timestamp, ns.
    pub fn send_ts_ns(&self) -> u64 {
        self.header.send_ts_ns.get()
    }

    /// Intended send timestamp, ns.
    pub fn intended_ts_ns(&self) -> u64 {
        self.header.intended_ts_ns.get()
    }

    /// The ITCH message a [`Kind::Itch`] record carries (the bytes after the
    /// header: at least [`ITCH_MIN_BODY`], unchanged from the source);
    /// `None` for every other kind: [`Payload::Itch`] without the match.
    /// The message is not checked against the ITCH specification here:
    /// `shardcast_proto::itch::check` does that.
    #[inline]
    pub fn itch(&self) -> Option<&'a [u8]> {
        match self.kind {
            Kind::Itch => self.bytes.get(HEADER_LEN..),
            _ => None,
        }
    }

    /// The body as plain values. Infallible: lengths were checked by
    /// [`decode_record`]; a body that cannot be read yields a heartbeat, which
    /// carries no data (unreachable for records from [`decode_record`]).
    /// A [`Kind::Itch`] record's payload borrows its message from the
    /// record's bytes.
    pub fn payload(&self) -> Payload<'a> {
        let body = &self.bytes[HEADER_LEN..];
        match self.kind {
            Kind::Quote => match QuoteBody::ref_from_prefix(body) {
                Ok((q, _)) => Payload::Quote(Quote {
                    bid_px: q.bid_px.get(),
                    ask_px: q.ask_px.get(),
                    bid_sz: q.bid_sz.get(),
                    ask_sz: q.ask_sz.get(),
                }),
                Err(_) => Payload::Heartbeat,
            },
            Kind::Trade => match TradeBody::ref_from_prefix(body) {
                Ok((t, _)) => Payload::Trade(Trade {
                    px: t.px.get(),
                    sz: t.sz.get(),
                    side: if t.side == 2 { Side::Sell } else { Side::Buy },
                }),
                Err(_) => Payload::Heartbeat,
            },
            Kind::Heartbeat => Payload::Heartbeat,
            Kind::EndOfStream => match EosBody::ref_from_prefix(body) {
                Ok((e, _)) => Payload::EndOfStream {
                    last_seq: e.last_seq.get(),
                    checksum: e.checksum.get(),
                },
                Err(_) => Payload::Heartbeat,
            },
            Kind::Itch => match self.bytes.get(HEADER_LEN..) {
                Some(msg) if msg.len() >= ITCH_MIN_BODY => Payload::Itch(msg),
                _ => Payload::Heartbeat,
            },
        }
    }

    /// This record's contribution to a [`StreamChecksum`].
    pub fn digest(&self) -> u64 {
        xxh3_64(self.bytes)
    }
}

/// Decode the record at the start of `buf`. Returns the record and the rest of
/// the buffer after it.
pub fn decode_record(buf: &[u8]) -> Result<(Record<'_>, &[u8]), DecodeError> {
    let (header, _) = Header::ref_from_prefix(buf).map_err(|_| {
        // Distinguish "too short to be ours" from "too short and not ours".
        if buf.len() >= SYMBOL_LEN + 2 && buf[SYMBOL_LEN..SYMBOL_LEN + 2] != MAGIC {
            DecodeError::Foreign
        } else {
            DecodeError::Short
        }
    })?;
    if header.magic != MAGIC {
        return Err(DecodeError::Foreign);
    }
    if header.version != VERSION {
        return Err(DecodeError::Version(header.version));
    }
    let kind = Kind::from_u8(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    let len = header.len.get() as usize;
    if len < kind.min_len() {
        return Err(DecodeError::BadLength);
    }
    if buf.len() < len {
        return Err(DecodeError::Short);
    }
    if kind.is_data() && matches!(header.seq.get(), 0 | u64::MAX) {
        return Err(DecodeError::BadSequence);
    }
    let (bytes, rest) = buf.split_at(len);
    if kind == Kind::EndOfStream {
        // End-of-stream states the last sequence twice (header `seq`, body
        // `last_seq`). Receivers use the body; checking here, where every
        // record of a frame is validated before any of it is used, means a
        // self-contradicting end-of-stream is counted as malformed instead
        // of half-believed. `len >= min_len` was checked, so the body is there.
        let last_seq = EosBody::ref_from_prefix(&bytes[HEADER_LEN..])
            .map_err(|_| DecodeError::Short)?
            .0
            .last_seq
            .get();
        if last_seq != header.seq.get() {
            return Err(DecodeError::EosSeqMismatch);
        }
    }
    Ok((
        Record {
            header,
            bytes,
            kind,
        },
        rest,
    ))
}

/// The header of a frame's first record, read without validating the
/// frame (a peek, e.g. to see which stream a frame is from before taking
/// it): `None` if the bytes are too short to hold one. Nothing else about
/// the frame is promised; [`Frame::parse`] decides that.
pub fn first_header(frame: &[u8]) -> Option<&Header> {
    let at = if frame.first() == Some(&0) && frame.get(1..4) == Some(&BATCH_MAGIC[..]) {
        BATCH_HEADER_LEN
    } else {
        0
    };
    Header::ref_from_prefix(frame.get(at..)?)
        .ok()
        .map(|(h, _)| h)
}

/// A validated frame: every record in it decodes.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    records: &'a [u8],
    count: usize,
    batched: bool,
}

impl<'a> Frame<'a> {
    /// Validate a whole frame (single record or batch). Nothing in a frame is
    /// used unless all of it is valid, so a bad batch never half-applies.
    pub fn parse(buf: &'a [u8]) -> Result<Frame<'a>, DecodeError> {
        if buf.first() == Some(&0) && buf.get(1..4) == Some(&BATCH_MAGIC[..]) {
            let (bh, mut rest) =
                BatchHeader::ref_from_prefix(buf).map_err(|_| DecodeError::Short)?;
            if bh.version != VERSION {
                return Err(DecodeError::Version(bh.version));
            }
            let count = bh.count.get() as usize;
            if count == 0 || count > MAX_BATCH {
                return Err(DecodeError::BadLength);
            }
            let records = rest;
            for _ in 0..count {
                let (rec, r) = decode_record(rest)?;
                if !rec.kind.is_data() {
                    // Control records always travel alone.
                    return Err(DecodeError::BadLength);
                }
                rest = r;
            }
            if !rest.is_empty() {
                return Err(DecodeError::BadLength);
            }
            Ok(Frame {
                records,
                count,
                batched: true,
            })
        } else {
            let (_, rest) = decode_record(buf)?;
            if !rest.is_empty() {
                return Err(DecodeError::BadLength);
            }
            Ok(Frame {
                records: buf,
                count: 1,
                batched: false,
            })
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false for a parsed frame (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether the frame is a batch.
    pub fn is_batch(&self) -> bool {
        self.batched
    }

    /// Iterate the records.
    pub fn records(&self) -> Records<'a> {
        Records {
            rest: self.records,
            left: self.count,
        }
    }
}

/// Iterator over the records of a [`Frame`].
#[derive(Clone, Debug)]
pub struct Records<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        if self.left == 0 {
            return None;
        }
        // [`Frame::parse`] validated every record, so only what a `Record`
        // holds is read again (header, length, kind): three loads instead
        // of the full check, which every consumer of a frame would
        // otherwise repeat per record. Still bounds-checked: a frame that
        // somehow does not decode ends the iteration instead of panicking.
        let (header, _) = Header::ref_from_prefix(self.rest).ok()?;
        let kind = Kind::from_u8(header.kind)?;
        let len = usize::from(header.len.get());
        if len < HEADER_LEN || len > self.rest.len() {
            return None;
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        self.left -= 1;
        Some(Record {
            header,
            bytes,
            kind,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Encode one record into the front of `out`, padded with zeros to
/// `max(pad_to, kind minimum)` bytes ([`Payload::record_len`]: an ITCH
/// record is never padded). Returns the record length.
pub fn encode(
    out: &mut [u8],
    meta: &RecordMeta,
    payload: &Payload<'_>,
    pad_to: usize,
) -> Result<usize, EncodeError> {
    if let Payload::Itch(msg) = payload {
        return encode_itch(out, meta, msg);
    }
    let kind = payload.kind();
    let len = payload.record_len(pad_to);
    if len > MAX_RECORD_LEN {
        return Err(EncodeError::BadLength);
    }
    if out.len() < len {
        return Err(EncodeError::BufferTooSmall);
    }
    write_header(out, meta, kind, len);
    let body = &mut out[HEADER_LEN..len];
    let written = match *payload {
        Payload::Quote(q) => write_body(
            body,
            &QuoteBody {
                bid_px: I64::new(q.bid_px),
                ask_px: I64::new(q.ask_px),
                bid_sz: U32::new(q.bid_sz),
                ask_sz: U32::new(q.ask_sz),
            },
        ),
        Payload::Trade(t) => write_body(
            body,
            &TradeBody {
                px: I64::new(t.px),
                sz: U32::new(t.sz),
                side: match t.side {
                    Side::Buy => 1,
                    Side::Sell => 2,
                },
                pad: [0; 3],
            },
        ),
        Payload::Heartbeat => 0,
        Payload::EndOfStream { last_seq, checksum } => write_body(
            body,
            &EosBody {
                last_seq: U64::new(last_seq),
                checksum: U64::new(checksum),
            },
        ),
        // Encoded by `encode_itch` above.
        Payload::Itch(_) => 0,
    };
    body[written..].fill(0);
    Ok(len)
}

/// The header of a `len`-byte record of `kind` into `out[..HEADER_LEN]`
/// (the caller checked that `out` holds `len >= HEADER_LEN` bytes).
#[inline]
fn write_header(out: &mut [u8], meta: &RecordMeta, kind: Kind, len: usize) {
    let header = Header {
        symbol: meta.symbol.0,
        magic: MAGIC,
        version: VERSION,
        kind: kind as u8,
        len: U16::new(len as u16),
        stream_id: U16::new(meta.stream_id),
        publisher_id: U32::new(meta.publisher_id),
        sym_seq: U32::new(meta.sym_seq),
        session: U64::new(meta.session),
        seq: U64::new(meta.seq),
        send_ts_ns: U64::new(meta.send_ts_ns),
        intended_ts_ns: U64::new(meta.intended_ts_ns),
    };
    out[..HEADER_LEN].copy_from_slice(header.as_bytes());
}

/// The length of the [`Kind::Itch`] record carrying `msg`, or
/// [`EncodeError::BadLength`] for a message shorter than
/// [`ITCH_MIN_BODY`] or too long for the `len` field.
#[inline]
fn itch_len(msg: &[u8]) -> Result<usize, EncodeError> {
    let len = HEADER_LEN + msg.len();
    if msg.len() < ITCH_MIN_BODY || len > MAX_RECORD_LEN {
        return Err(EncodeError::BadLength);
    }
    Ok(len)
}

/// Encode one [`Kind::Itch`] record carrying the ITCH message `msg` (the
/// bytes after its length prefix) into the front of `out`. Returns the
/// record length, `56 + msg.len()`: the message is the whole body,
/// unchanged and unpadded.
pub fn encode_itch(out: &mut [u8], meta: &RecordMeta, msg: &[u8]) -> Result<usize, EncodeError> {
    let len = itch_len(msg)?;
    if out.len() < len {
        return Err(EncodeError::BufferTooSmall);
    }
    write_header(out, meta, Kind::Itch, len);
    out[HEADER_LEN..len].copy_from_slice(msg);
    Ok(len)
}

fn write_body<T: IntoBytes + Immutable>(out: &mut [u8], body: &T) -> usize {
    let b = body.as_bytes();
    out[..b.len()].copy_from_slice(b);
    b.len()
}

/// Write a batch header for `count` records into the front of `out`
/// (`out` must hold [`BATCH_HEADER_LEN`] bytes).
pub fn encode_batch_header(out: &mut [u8], count: u16) -> Result<(), EncodeError> {
    if out.len() < BATCH_HEADER_LEN {
        return Err(EncodeError::BufferTooSmall);
    }
    out[..BATCH_HEADER_LEN].copy_from_slice(batch_header(count).as_bytes());
    Ok(())
}

fn batch_header(count: u16) -> BatchHeader {
    BatchHeader {
        zero: 0,
        magic: BATCH_MAGIC,
        version: VERSION,
        reserved: 0,
        count: U16::new(count),
    }
}

/// Builds one outgoing frame at a time in a buffer it keeps: the publisher's
/// stream and the subscriber's shard both fill one, send [`Self::frame`],
/// then [`Self::clear`] it for the next.
///
/// * `batched == false`: the frame is exactly one bare record (the
///   publisher's `--batch 1`, whose symbol-first frames SUB prefix filters
///   can route).
/// * `batched == true`: the frame is a [`BatchHeader`] followed by 1 to
///   [`MAX_BATCH`] records. The header is written by [`Self::frame`], once,
///   when the count is known.
///
/// The buffer is allocated (zeroed) once, by [`Self::new`], at the frame
/// limit the caller gives; records are written in place, so filling and
/// clearing never allocate. The one exception keeps callers simple: an empty
/// writer takes any one record, even one larger than the limit (growing the
/// buffer), so "send, clear, retry" always makes progress.
#[derive(Clone, Debug)]
pub struct BatchWriter {
    /// Frame bytes; `buf[..len]` is the frame so far. Kept at its full
    /// length (not just capacity) so records are encoded into it in place
    /// without zero-filling first.
    buf: Vec<u8>,
    len: usize,
    count: usize,
    batched: bool,
    /// The frame limit in bytes, header included.
    capacity: usize,
}

impl BatchWriter {
    /// A writer of bare-record frames (`batched == false`) or batch frames,
    /// none longer than `capacity_bytes` (header included) unless it holds a
    /// single record that is longer by itself.
    pub fn new(batched: bool, capacity_bytes: usize) -> BatchWriter {
        let header = if batched { BATCH_HEADER_LEN } else { 0 };
        let capacity = capacity_bytes.max(header);
        BatchWriter {
            buf: vec![0; capacity],
            len: header,
            count: 0,
            batched,
            capacity,
        }
    }

    /// Whether frames are batches (a header, then records).
    pub fn is_batched(&self) -> bool {
        self.batched
    }

    /// The frame limit in bytes, header included (as given to [`Self::new`],
    /// at least the header).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records in the frame so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether the frame holds no record (then it must not be sent).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Frame bytes so far, the batch header included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Most records one frame may hold: 1 bare, [`MAX_BATCH`] batched.
    pub fn max_records(&self) -> usize {
        if self.batched {
            MAX_BATCH
        } else {
            1
        }
    }

    /// Where a record of `n` bytes would go, or `None` when the frame is
    /// full. Grows the buffer only for a lone oversized record (see the type).
    fn reserve(&mut self, n: usize) -> Option<usize> {
        if self.count >= self.max_records() {
            return None;
        }
        let end = self.len + n;
        if end > self.capacity && self.count > 0 {
            return None;
        }
        if end > self.buf.len() {
            self.buf.resize(end, 0);
        }
        Some(self.len)
    }

    /// Append a whole encoded record (the shard copies the record of a
    /// received single-record frame). Returns false, appending nothing,
    /// when the frame already holds [`Self::max_records`] records or the
    /// record would take it past [`Self::capacity`]; send and clear, then
    /// push again. The bytes are not validated: pass records that parsed.
    pub fn push(&mut self, record: &[u8]) -> bool {
        let Some(at) = self.reserve(record.len()) else {
            return false;
        };
        self.buf[at..at + record.len()].copy_from_slice(record);
        self.len += record.len();
        self.count += 1;
        true
    }

    /// Encode a record in place at the end of the frame, padded as
    /// [`encode`] pads it to `size`, and return its bytes (the publisher
    /// digests them for its stream checksum). [`EncodeError::Full`] when the
    /// frame has no room for it; [`EncodeError::BadLength`] as [`encode`].
    pub fn encode(
        &mut self,
        meta: &RecordMeta,
        payload: &Payload<'_>,
        size: usize,
    ) -> Result<&[u8], EncodeError> {
        let need = payload.record_len(size);
        if need > MAX_RECORD_LEN {
            return Err(EncodeError::BadLength);
        }
        let at = self.reserve(need).ok_or(EncodeError::Full)?;
        let n = encode(&mut self.buf[at..], meta, payload, size)?;
        self.len += n;
        self.count += 1;
        Ok(&self.buf[at..at + n])
    }

    /// Encode a [`Kind::Itch`] record carrying `msg` in place at the end of
    /// the frame (see [`encode_itch`]) and return its bytes, as
    /// [`Self::encode`] does.
    #[inline]
    pub fn encode_itch(&mut self, meta: &RecordMeta, msg: &[u8]) -> Result<&[u8], EncodeError> {
        let need = itch_len(msg)?;
        let at = self.reserve(need).ok_or(EncodeError::Full)?;
        let n = encode_itch(&mut self.buf[at..], meta, msg)?;
        self.len += n;
        self.count += 1;
        Ok(&self.buf[at..at + n])
    }

    /// The frame to send: writes the batch header (batched writers) and
    /// returns every byte of the frame. An empty writer's frame is not a
    /// valid frame (no bytes, or a batch of 0): check [`Self::is_empty`].
    pub fn frame(&mut self) -> &[u8] {
        debug_assert!(!self.is_empty(), "an empty frame is never sent");
        if self.batched {
            // Infallible: `reserve` refuses a record past MAX_BATCH (1024),
            // so the count always fits the u16 field.
            debug_assert!(self.count <= MAX_BATCH);
            let bh = batch_header(self.count as u16);
            self.buf[..BATCH_HEADER_LEN].copy_from_slice(bh.as_bytes());
        }
        &self.buf[..self.len]
    }

    /// What to send when a lone record needs no batch around it: the frame
    /// of [`Self::frame`], except that a batched writer holding exactly one
    /// record gives that record alone, a bare-record frame (its topic is then
    /// its symbol, so prefix filtering at the publisher applies to it, and
    /// it is 8 bytes shorter). Receivers take both kinds of frame from one
    /// stream in any mix (section 10 of PROTOCOL.md, `--batch auto`).
    pub fn frame_or_lone_record(&mut self) -> &[u8] {
        if self.batched && self.count == 1 {
            return &self.buf[BATCH_HEADER_LEN..self.len];
        }
        self.frame()
    }

    /// Empty the frame for the next one, keeping the buffer (no allocation).
    pub fn clear(&mut self) {
        self.len = if self.batched { BATCH_HEADER_LEN } else { 0 };
        self.count = 0;
    }
}

/// The running checksum of a stream: the wrapping sum of the xxh3-64 digest of
/// every data record's bytes. It is order-independent on purpose: ordering is
/// proven by sequence numbers, the checksum proves the *set* of records (and
/// their content) arrived intact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamChecksum(pub u64);

impl StreamChecksum {
    /// Fold in one record's digest ([`Record::digest`] or [`digest`]).
    #[inline]
    pub fn add(&mut self, digest: u64) {
        self.0 = self.0.wrapping_add(digest);
    }
}

/// Digest of encoded record bytes (same as [`Record::digest`]).
#[inline]
pub fn digest(record_bytes: &[u8]) -> u64 {
    xxh3_64(record_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64) -> RecordMeta {
        RecordMeta {
            symbol: Symbol::new("AAPL").unwrap(),
            publisher_id: 7,
            stream_id: 3,
            session: 0xfeed,
            seq,
            send_ts_ns: 1_000u64.wrapping_add(seq),
            intended_ts_ns: 900u64.wrapping_add(seq),
            sym_seq: 0,
        }
    }

    const QUOTE: Payload = Payload::Quote(Quote {
        bid_px: 1_000_000,
        ask_px: 1_000_100,
        bid_sz: 300,
        ask_sz: 500,
    });

    #[test]
    fn header_is_56_bytes_and_topic_first() {
        assert_eq!(HEADER_LEN, 56);
        assert_eq!(BATCH_HEADER_LEN, 8);
        let mut buf = [0u8; 128];
        let n = encode(&mut buf, &meta(1), &QUOTE, 100).unwrap();
        assert_eq!(n, 100);
        assert_eq!(&buf[..4], b"AAPL", "the symbol is the topic prefix");
    }

    #[test]
    fn every_kind_round_trips() {
        let payloads = [
            QUOTE,
            Payload::Trade(Trade {
                px: -5,
                sz: 9,
                side: Side::Sell,
            }),
            Payload::Heartbeat,
            // Header seq (9, from meta) and last_seq must agree.
            Payload::EndOfStream {
                last_seq: 9,
                checksum: u64::MAX,
            },
        ];
        for p in payloads {
            let mut buf = [0xAAu8; 256];
            let n = encode(&mut buf, &meta(9), &p, 0).unwrap();
            assert_eq!(n, p.kind().min_len());
            let frame = Frame::parse(&buf[..n]).unwrap();
            assert!(!frame.is_batch());
            let rec = frame.records().next().unwrap();
            assert_eq!(rec.payload(), p);
            assert_eq!(rec.seq(), 9);
            assert_eq!(rec.publisher_id(), 7);
            assert_eq!(rec.stream_id(), 3);
            assert_eq!(rec.session(), 0xfeed);
            assert_eq!(rec.send_ts_ns(), 1009);
            assert_eq!(rec.intended_ts_ns(), 909);
            assert_eq!(rec.symbol(), Symbol::new("AAPL").unwrap());
        }
    }

    #[test]
    fn sym_seq_round_trips_at_bytes_20_to_24_and_0_means_not_carried() {
        for (sym_seq, p) in [
            (1u32, QUOTE),
            (u32::MAX, QUOTE),
            (
                77,
                Payload::Trade(Trade {
                    px: 1,
                    sz: 2,
                    side: Side::Buy,
                }),
            ),
            (0, Payload::Heartbeat),
        ] {
            let m = RecordMeta { sym_seq, ..meta(9) };
            let mut buf = [0u8; 128];
            let n = encode(&mut buf, &m, &p, 0).unwrap();
            assert_eq!(&buf[20..24], &sym_seq.to_le_bytes());
            let frame = Frame::parse(&buf[..n]).unwrap();
            let rec = frame.records().next().unwrap();
            assert_eq!(rec.sym_seq(), sym_seq);
            assert_eq!(rec.seq(), 9, "the stream sequence is untouched");
            if !p.kind().is_data() {
                continue;
            }
            // In a batch too, each record keeps its own.
            let mut w = BatchWriter::new(true, 1024);
            w.encode(&m, &p, 0).unwrap();
            w.encode(&RecordMeta { sym_seq: 5, ..m }, &p, 0).unwrap();
            let f = Frame::parse(w.frame()).unwrap();
            let got: Vec<u32> = f.records().map(|r| r.sym_seq()).collect();
            assert_eq!(got, [sym_seq, 5]);
        }
        // A record from before (bytes 20..24 zero) reads as "not carried".
        let mut buf = [0u8; 128];
        let n = encode(&mut buf, &meta(3), &QUOTE, 0).unwrap();
        let frame = Frame::parse(&buf[..n]).unwrap();
        assert_eq!(frame.records().next().unwrap().sym_seq(), 0);
    }

    #[test]
    fn batch_round_trips_and_rejects_bad_counts() {
        let mut buf = vec![0u8; 1024];
        let mut off = BATCH_HEADER_LEN;
        for s in 1..=3 {
            off += encode(&mut buf[off..], &meta(s), &QUOTE, 100).unwrap();
        }
        encode_batch_header(&mut buf, 3).unwrap();
        let frame = Frame::parse(&buf[..off]).unwrap();
        assert!(frame.is_batch());
        let seqs: Vec<u64> = frame.records().map(|r| r.seq()).collect();
        assert_eq!(seqs, vec![1, 2, 3]);

        encode_batch_header(&mut buf, 4).unwrap();
        assert_eq!(Frame::parse(&buf[..off]).unwrap_err(), DecodeError::Short);
        encode_batch_header(&mut buf, 2).unwrap();
        assert_eq!(
            Frame::parse(&buf[..off]).unwrap_err(),
            DecodeError::BadLength
        );
        encode_batch_header(&mut buf, 0).unwrap();
        assert_eq!(
            Frame::parse(&buf[..off]).unwrap_err(),
            DecodeError::BadLength
        );
    }

    #[test]
    fn malformed_frames_are_errors_with_reasons() {
        assert_eq!(Frame::parse(b"").unwrap_err(), DecodeError::Short);
        assert_eq!(Frame::parse(b"AAPL").unwrap_err(), DecodeError::Short);
        assert_eq!(
            Frame::parse(b"hello, this is not shardcast at all, no no no no no no no").unwrap_err(),
            DecodeError::Foreign
        );
        let mut buf = [0u8; 100];
        let n = encode(&mut buf, &meta(1), &QUOTE, 100).unwrap();
        let mut v2 = buf;
        v2[10] = 2;
        assert_eq!(Frame::parse(&v2[..n]).unwrap_err(), DecodeError::Version(2));
        let mut k = buf;
        k[11] = 99;
        assert_eq!(
            Frame::parse(&k[..n]).unwrap_err(),
            DecodeError::UnknownKind(99)
        );
        assert_eq!(Frame::parse(&buf[..n - 1]).unwrap_err(), DecodeError::Short);
        let mut extra = [0u8; 101];
        extra[..100].copy_from_slice(&buf);
        assert_eq!(
            Frame::parse(&extra).unwrap_err(),
            DecodeError::BadLength,
            "trailing bytes after a single record"
        );
        let mut short_len = buf;
        short_len[12] = 10;
        short_len[13] = 0;
        assert_eq!(
            Frame::parse(&short_len[..n]).unwrap_err(),
            DecodeError::BadLength
        );
        for bad in [0, u64::MAX] {
            let mut b = [0u8; 100];
            let n = encode(&mut b, &meta(bad), &QUOTE, 100).unwrap();
            assert_eq!(Frame::parse(&b[..n]).unwrap_err(), DecodeError::BadSequence);
        }
    }

    #[test]
    fn control_records_ride_the_control_topic() {
        let mut buf = [0u8; 128];
        let mut m = meta(5);
        m.symbol = Symbol::CONTROL;
        let n = encode(&mut buf, &m, &Payload::Heartbeat, 0).unwrap();
        assert!(buf[..n].starts_with(CONTROL_TOPIC));
        let mut b = [0u8; 8];
        encode_batch_header(&mut b, 1).unwrap();
        assert!(b.starts_with(CONTROL_TOPIC));
    }

    #[test]
    fn encode_refuses_small_buffers_and_huge_lengths() {
        let mut small = [0u8; 10];
        assert_eq!(
            encode(&mut small, &meta(1), &QUOTE, 0),
            Err(EncodeError::BufferTooSmall)
        );
        let mut big = vec![0u8; 70_000];
        assert_eq!(
            encode(&mut big, &meta(1), &QUOTE, 70_000),
            Err(EncodeError::BadLength)
        );
    }

    #[test]
    fn end_of_stream_whose_two_last_seqs_disagree_is_malformed() {
        // Issue 9, defect 3: end-of-stream states the last sequence twice;
        // a record where they differ was accepted and the body believed.
        let mut m = meta(5);
        m.symbol = Symbol::CONTROL;
        let eos = |last_seq| Payload::EndOfStream {
            last_seq,
            checksum: 7,
        };
        let mut buf = [0u8; 128];
        for last_seq in [0, 4, 6, u64::MAX] {
            let n = encode(&mut buf, &m, &eos(last_seq), 0).unwrap();
            let err = Frame::parse(&buf[..n]).unwrap_err();
            assert_eq!(err, DecodeError::EosSeqMismatch, "last_seq {last_seq}");
            assert_eq!(err.reason(), "eos_seq_mismatch");
            assert_eq!(DecodeError::REASONS[err.index()], "eos_seq_mismatch");
        }
        let n = encode(&mut buf, &m, &eos(5), 0).unwrap();
        let frame = Frame::parse(&buf[..n]).unwrap();
        assert_eq!(frame.records().next().unwrap().payload(), eos(5));
        // A stream that sent no data: both 0, valid.
        m.seq = 0;
        let n = encode(&mut buf, &m, &eos(0), 0).unwrap();
        assert!(Frame::parse(&buf[..n]).is_ok());
    }

    #[test]
    fn every_decode_error_has_its_reason_at_its_index() {
        let all = [
            DecodeError::Short,
            DecodeError::Foreign,
            DecodeError::Version(2),
            DecodeError::UnknownKind(9),
            DecodeError::BadLength,
            DecodeError::BadSequence,
            DecodeError::EosSeqMismatch,
        ];
        assert_eq!(all.len(), DecodeError::REASONS.len());
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert_eq!(DecodeError::REASONS[i], e.reason());
        }
    }

    /// Records 1..=n as a batch, through [`BatchWriter::encode`]; returns
    /// the writer and each record's bytes as returned.
    fn written(n: u64, size: usize) -> (BatchWriter, Vec<Vec<u8>>) {
        let mut w = BatchWriter::new(true, BATCH_HEADER_LEN + n as usize * size);
        let recs = (1..=n)
            .map(|s| w.encode(&meta(s), &QUOTE, size).unwrap().to_vec())
            .collect();
        (w, recs)
    }

    #[test]
    fn batch_writer_frames_parse_back_to_the_same_records() {
        let (mut w, recs) = written(3, 100);
        assert_eq!((w.count(), w.len()), (3, BATCH_HEADER_LEN + 300));
        let bytes = w.frame().to_vec();
        let frame = Frame::parse(&bytes).unwrap();
        assert!(frame.is_batch());
        let got: Vec<&[u8]> = frame.records().map(|r| r.bytes).collect();
        assert_eq!(got, recs.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert_eq!(
            frame.records().map(|r| r.seq()).collect::<Vec<_>>(),
            [1, 2, 3]
        );

        // The shard's path: the same records pushed make the same frame.
        let mut p = BatchWriter::new(true, 1024);
        for r in &recs {
            assert!(p.push(r));
        }
        assert_eq!(p.frame(), &bytes[..]);
    }

    #[test]
    fn unbatched_batch_writer_gives_a_bare_record_frame() {
        let mut w = BatchWriter::new(false, 100);
        assert_eq!(w.len(), 0);
        let rec = w.encode(&meta(1), &QUOTE, 100).unwrap().to_vec();
        assert_eq!(w.encode(&meta(2), &QUOTE, 100), Err(EncodeError::Full));
        assert!(!w.push(&rec), "one record per bare frame");
        let frame = w.frame();
        assert_eq!(frame, &rec[..]);
        assert!(frame.starts_with(b"AAPL"), "the symbol is the topic");
        let parsed = Frame::parse(frame).unwrap();
        assert!(!parsed.is_batch());
        assert_eq!(parsed.records().next().unwrap().seq(), 1);
    }

    #[test]
    fn a_batch_of_one_goes_as_its_bare_record_and_of_two_as_a_batch() {
        let (mut w, recs) = written(1, 100);
        let lone = w.frame_or_lone_record().to_vec();
        assert_eq!(lone, recs[0], "the record alone, no batch header");
        let parsed = Frame::parse(&lone).unwrap();
        assert!(!parsed.is_batch());
        assert!(lone.starts_with(b"AAPL"), "the symbol is the topic");

        let (mut w, recs) = written(2, 100);
        let both = w.frame_or_lone_record().to_vec();
        assert!(both.starts_with(&[0x00]), "a batch rides the control topic");
        let parsed = Frame::parse(&both).unwrap();
        assert!(parsed.is_batch());
        let got: Vec<&[u8]> = parsed.records().map(|r| r.bytes).collect();
        assert_eq!(got, [&recs[0][..], &recs[1][..]]);

        // A bare writer's frame is its one record either way.
        let mut bare = BatchWriter::new(false, 100);
        let rec = bare.encode(&meta(1), &QUOTE, 100).unwrap().to_vec();
        assert_eq!(bare.frame_or_lone_record(), &rec[..]);
    }

    #[test]
    fn batch_writer_refuses_a_record_past_max_batch() {
        let mut heartbeat = [0u8; HEADER_LEN];
        let n = encode(&mut heartbeat, &meta(1), &Payload::Heartbeat, 0).unwrap();
        let mut w = BatchWriter::new(true, BATCH_HEADER_LEN + (MAX_BATCH + 1) * n);
        for _ in 0..MAX_BATCH {
            assert!(w.push(&heartbeat[..n]));
        }
        let len = w.len();
        assert!(!w.push(&heartbeat[..n]));
        assert_eq!(w.encode(&meta(2), &QUOTE, 0), Err(EncodeError::Full));
        assert_eq!((w.count(), w.len()), (MAX_BATCH, len), "nothing appended");
        let frame = w.frame();
        assert_eq!(&frame[6..8], &(MAX_BATCH as u16).to_le_bytes());
    }

    #[test]
    fn batch_writer_refuses_past_its_bytes_but_always_takes_one_record() {
        let mut w = BatchWriter::new(true, BATCH_HEADER_LEN + 150);
        w.encode(&meta(1), &QUOTE, 100).unwrap();
        assert_eq!(w.encode(&meta(2), &QUOTE, 100), Err(EncodeError::Full));
        let mut rec = [0u8; 100];
        encode(&mut rec, &meta(2), &QUOTE, 100).unwrap();
        assert!(!w.push(&rec));
        assert_eq!(w.count(), 1);
        assert_eq!(
            w.encode(&meta(2), &QUOTE, MAX_RECORD_LEN + 1),
            Err(EncodeError::BadLength)
        );
        // An empty writer takes one record larger than its limit, so
        // "send, clear, retry" cannot loop.
        let mut small = BatchWriter::new(true, 16);
        assert!(small.push(&rec));
        assert!(!small.push(&rec));
        assert!(Frame::parse(small.frame()).is_ok());
    }

    #[test]
    fn batch_writer_clear_reuses_the_buffer() {
        let (mut w, _) = written(4, 100);
        let (ptr, cap) = (w.frame().as_ptr(), w.capacity());
        for round in 0..3u64 {
            w.clear();
            assert!(w.is_empty());
            assert_eq!(w.len(), BATCH_HEADER_LEN);
            for s in 1..=4 {
                w.encode(&meta(round * 4 + s), &QUOTE, 100).unwrap();
            }
            let frame = w.frame();
            assert_eq!(frame.as_ptr(), ptr, "same buffer: no allocation");
            assert_eq!(Frame::parse(frame).unwrap().len(), 4);
            assert_eq!(w.capacity(), cap);
        }
    }

    #[test]
    fn symbols_validate() {
        assert!(Symbol::new("").is_none());
        assert!(Symbol::new("TOOLONGSYM").is_none());
        assert!(Symbol::new("A B").is_none());
        assert_eq!(Symbol::new("MSFT").unwrap().as_str(), "MSFT");
    }

    /// An ITCH 5.0 Add Order (`A`, 36 bytes): locate 7, tracking 0,
    /// timestamp 34_200_000_000_123, ref 42, buy 100 AAPL at 123.45.
    fn add_order() -> [u8; 36] {
        let mut m = [0u8; 36];
        m[0] = b'A';
        m[1..3].copy_from_slice(&7u16.to_be_bytes());
        m[5..11].copy_from_slice(&34_200_000_000_123u64.to_be_bytes()[2..]);
        m[11..19].copy_from_slice(&42u64.to_be_bytes());
        m[19] = b'B';
        m[20..24].copy_from_slice(&100u32.to_be_bytes());
        m[24..32].copy_from_slice(b"AAPL    ");
        m[32..36].copy_from_slice(&1_234_500u32.to_be_bytes());
        m
    }

    #[test]
    fn an_itch_record_carries_its_message_unchanged_and_unpadded() {
        let msg = add_order();
        let mut buf = [0xAAu8; 200];
        let n = encode_itch(&mut buf, &meta(9), &msg).unwrap();
        assert_eq!(n, HEADER_LEN + msg.len(), "len = 56 + the message");
        assert_eq!(&buf[12..14], &(n as u16).to_le_bytes());
        assert_eq!(buf[11], Kind::Itch as u8);
        assert_eq!(&buf[HEADER_LEN..n], &msg[..], "the body is the message");
        let frame = Frame::parse(&buf[..n]).unwrap();
        let rec = frame.records().next().unwrap();
        assert_eq!(rec.kind(), Kind::Itch);
        assert!(rec.kind().is_data());
        assert_eq!(rec.itch(), Some(&msg[..]));
        assert_eq!(rec.seq(), 9);
        assert_eq!(rec.symbol(), Symbol::new("AAPL").unwrap());
        assert_eq!(
            rec.digest(),
            digest(&buf[..n]),
            "checksummed like any record"
        );
        assert_eq!(rec.payload(), Payload::Itch(&msg[..]));
        assert_eq!(Payload::Itch(&msg[..]).kind(), Kind::Itch);

        // Through `encode` and the payload: the same bytes, never padded.
        let mut again = [0x55u8; 200];
        let m = encode(&mut again, &meta(9), &Payload::Itch(&msg), 100).unwrap();
        assert_eq!(&again[..m], &buf[..n]);
        let mut w = BatchWriter::new(false, 200);
        assert_eq!(
            w.encode(&meta(9), &Payload::Itch(&msg), 100).unwrap(),
            &buf[..n]
        );
        assert_eq!(
            encode(&mut again, &meta(9), &Payload::Itch(&msg[..5]), 0),
            Err(EncodeError::BadLength)
        );

        // Other kinds have no ITCH message.
        let q = encode(&mut buf, &meta(1), &QUOTE, 0).unwrap();
        let frame = Frame::parse(&buf[..q]).unwrap();
        assert_eq!(frame.records().next().unwrap().itch(), None);
    }

    #[test]
    fn the_itch_example_of_protocol_section_2_4() {
        // docs/PROTOCOL.md 2.4: the market-wide System Event "start of
        // messages" at 09:30:00, publisher 1, stream 0, session 3, seq 4.
        let mut msg = [0u8; 12];
        msg[0] = b'S';
        msg[5..11].copy_from_slice(&34_200_000_000_000u64.to_be_bytes()[2..]);
        msg[11] = b'O';
        let m = RecordMeta {
            symbol: Symbol::MARKET_WIDE,
            publisher_id: 1,
            stream_id: 0,
            session: 3,
            seq: 4,
            send_ts_ns: 5,
            intended_ts_ns: 6,
            sym_seq: 0,
        };
        let mut buf = [0u8; 68];
        assert_eq!(encode_itch(&mut buf, &m, &msg).unwrap(), 68);
        let hex: Vec<String> = buf
            .chunks(16)
            .enumerate()
            .map(|(i, c)| {
                let bytes: Vec<String> = c.iter().map(|b| format!("{b:02x}")).collect();
                format!("{:04x}: {}", i * 16, bytes.join(" "))
            })
            .collect();
        assert_eq!(
            hex,
            [
                "0000: 7e 4d 41 52 4b 45 54 00 53 43 01 05 44 00 00 00",
                "0010: 01 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00",
                "0020: 04 00 00 00 00 00 00 00 05 00 00 00 00 00 00 00",
                "0030: 06 00 00 00 00 00 00 00 53 00 00 00 00 1f 1a ce",
                "0040: d9 f0 00 4f",
            ]
        );
        assert_eq!(digest(&buf), ITCH_EXAMPLE_DIGEST, "{:#018x}", digest(&buf));
    }

    /// xxh3-64 of the example record above, as PROTOCOL.md 2.4 gives it.
    const ITCH_EXAMPLE_DIGEST: u64 = 0x2900_a35c_7840_af2a;

    #[test]
    fn itch_records_batch_and_keep_the_data_rules() {
        let msg = add_order();
        let mut w = BatchWriter::new(true, 1024);
        for s in 1..=3 {
            w.encode_itch(&meta(s), &msg[..]).unwrap();
        }
        w.encode(&meta(4), &QUOTE, 0).unwrap();
        let bytes = w.frame().to_vec();
        let frame = Frame::parse(&bytes).unwrap();
        assert!(frame.is_batch());
        let kinds: Vec<Kind> = frame.records().map(|r| r.kind()).collect();
        assert_eq!(kinds, [Kind::Itch, Kind::Itch, Kind::Itch, Kind::Quote]);

        let mut buf = [0u8; 128];
        // Sequence 0 is never data, ITCH or not.
        let n = encode_itch(&mut buf, &meta(0), &msg).unwrap();
        assert_eq!(
            Frame::parse(&buf[..n]).unwrap_err(),
            DecodeError::BadSequence
        );
        // Shorter than the ITCH header: refused by the encoder and the decoder.
        assert_eq!(
            encode_itch(&mut buf, &meta(1), &msg[..10]),
            Err(EncodeError::BadLength)
        );
        let n = encode_itch(&mut buf, &meta(1), &msg[..11]).unwrap();
        assert_eq!(n, Kind::Itch.min_len());
        buf[12] = (n - 1) as u8;
        assert_eq!(
            Frame::parse(&buf[..n - 1]).unwrap_err(),
            DecodeError::BadLength
        );
        assert_eq!(
            encode_itch(&mut buf[..60], &meta(1), &msg),
            Err(EncodeError::BufferTooSmall)
        );
        let huge = vec![b'z'; MAX_RECORD_LEN];
        let mut big = vec![0u8; 2 * MAX_RECORD_LEN];
        assert_eq!(
            encode_itch(&mut big, &meta(1), &huge),
            Err(EncodeError::BadLength)
        );
        // The writer refuses what does not fit and takes it once cleared.
        let mut small = BatchWriter::new(true, BATCH_HEADER_LEN + 100);
        small.encode_itch(&meta(1), &msg).unwrap();
        assert_eq!(small.encode_itch(&meta(2), &msg), Err(EncodeError::Full));
        small.clear();
        assert!(small.encode_itch(&meta(2), &msg).is_ok());
    }

    #[test]
    fn itch_stocks_become_symbols_and_market_wide_has_its_own() {
        let s = |b: &[u8; 8]| Symbol::from_itch_stock(b);
        assert_eq!(s(b"AAPL    "), Symbol::new("AAPL"));
        assert_eq!(s(b"ABCDEFGH"), Symbol::new("ABCDEFGH"));
        assert_eq!(s(b"BRK A   "), Symbol::new("BRK?A"), "inner space");
        assert_eq!(s(b"        "), None);
        assert_eq!(Symbol::MARKET_WIDE, Symbol::new("~MARKET").unwrap());
        assert!(Symbol::MARKET_WIDE.0[0] != 0, "data, not the control topic");
    }

    proptest::proptest! {
        #[test]
        fn corrupting_any_byte_of_an_itch_record_never_panics(pos in 0usize..92, val in proptest::num::u8::ANY) {
            let mut buf = [0u8; 92];
            encode_itch(&mut buf, &meta(1), &add_order()).unwrap();
            buf[pos] = val;
            if let Ok(frame) = Frame::parse(&buf) {
                proptest::prop_assert_eq!(frame.len(), 1);
                for r in frame.records() {
                    let _ = (r.payload(), r.itch());
                }
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            if let Ok(frame) = Frame::parse(&bytes) {
                for r in frame.records() {
                    let _ = (r.payload(), r.itch());
                }
            }
        }

        #[test]
        fn corrupting_any_byte_never_panics(pos in 0usize..100, val in proptest::num::u8::ANY) {
            let mut buf = [0u8; 100];
            encode(&mut buf, &meta(1), &QUOTE, 100).unwrap();
            buf[pos] = val;
            if let Ok(frame) = Frame::parse(&buf) {
                proptest::prop_assert_eq!(frame.len(), 1);
            }
        }
    }
}
