//! NASDAQ TotalView-ITCH 5.0: framing, classification, zero-copy field
//! access and an encoder, built to NASDAQ's published specification
//! ("Nasdaq TotalView-ITCH 5.0", the version with the Operational Halt `h`
//! and the Direct Listing with Capital Raise `O` messages).
//!
//! # The format
//!
//! A day file (NASDAQ's "BinaryFILE") is a sequence of messages, each
//! preceded by a 2-byte big-endian length; the same messages arrive live in
//! MoldUDP64 packets, which use the same length prefix per message. Every
//! message starts with the same 11 bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | message type (an ASCII letter) |
//! | 1 | 2 | stock locate (0 = market-wide: system events, MWCB) |
//! | 3 | 2 | tracking number (NASDAQ internal) |
//! | 5 | 6 | timestamp: nanoseconds since midnight |
//!
//! All integers are big-endian, prices are unsigned with four implied
//! decimals (`Price(4)`, 1/10000 of a dollar) except the MWCB levels
//! (`Price(8)`), alphanumeric fields are left-justified and padded with
//! spaces. Every message type has a fixed length ([`fixed_len`]).
//!
//! # What this module decides
//!
//! * The length prefix is authoritative for *framing*: a message whose type
//!   this version does not know is skipped by its prefix and reported as
//!   [`Check::Unknown`], so a file recorded after a spec revision still
//!   plays (NASDAQ added `O` in 2023; a parser that stops on unknown bytes
//!   dies on the first newer file).
//! * The type's fixed length is authoritative for *content*: a known type
//!   whose prefix disagrees with its fixed length, or a zero-length frame,
//!   is [`Check::Malformed`] and none of its fields are read. The views
//!   ([`View`], [`AddOrder`], ...) can only be built from a message of
//!   exactly the right length, so their accessors read fixed offsets of a
//!   fixed-size array and cannot go out of bounds.
//! * A last message cut short by the end of the input is
//!   [`Frame::Truncated`] ([`Check::Truncated`]), never a partial message.
//!
//! Nothing here allocates per message: [`Framer`] walks a borrowed buffer,
//! [`FileFramer`] refills one buffer it owns from a [`Read`], and the
//! views borrow the message bytes. Like the rest of this crate, it touches
//! no socket, thread or clock; [`FileFramer`] only calls the [`Read`] it is
//! given.

use std::io::{self, Read};

/// Bytes every message starts with: type, stock locate, tracking number,
/// timestamp.
pub const HEADER_LEN: usize = 11;

/// Bytes of the length prefix in front of every message in a file.
pub const PREFIX_LEN: usize = 2;

/// The longest ITCH 5.0 message (`I`, Net Order Imbalance Indicator).
pub const MAX_LEN: usize = 50;

/// Every message type of ITCH 5.0, as the byte that starts the message.
pub const TYPES: [u8; 23] = *b"SRHYLVWKJhAFECXDUPQBINO";

/// The message types of ITCH 5.0. The discriminant is the type byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum MsgType {
    /// `S` System Event (12 bytes).
    SystemEvent = b'S',
    /// `R` Stock Directory (39 bytes): locate code to symbol.
    StockDirectory = b'R',
    /// `H` Stock Trading Action (25 bytes): halts, pauses, resumptions.
    TradingAction = b'H',
    /// `Y` Reg SHO Short Sale Price Test Restricted Indicator (20 bytes).
    RegSho = b'Y',
    /// `L` Market Participant Position (26 bytes).
    ParticipantPosition = b'L',
    /// `V` MWCB Decline Level (35 bytes).
    MwcbDecline = b'V',
    /// `W` MWCB Status (12 bytes).
    MwcbStatus = b'W',
    /// `K` IPO Quoting Period Update (28 bytes).
    IpoQuoting = b'K',
    /// `J` LULD Auction Collar (35 bytes).
    LuldCollar = b'J',
    /// `h` Operational Halt (21 bytes).
    OperationalHalt = b'h',
    /// `A` Add Order, no MPID attribution (36 bytes).
    AddOrder = b'A',
    /// `F` Add Order with MPID attribution (40 bytes).
    AddOrderMpid = b'F',
    /// `E` Order Executed (31 bytes).
    Executed = b'E',
    /// `C` Order Executed With Price (36 bytes).
    ExecutedWithPrice = b'C',
    /// `X` Order Cancel (23 bytes): a partial cancel.
    Cancel = b'X',
    /// `D` Order Delete (19 bytes).
    Delete = b'D',
    /// `U` Order Replace (35 bytes).
    Replace = b'U',
    /// `P` Trade, non-cross (44 bytes): a non-displayed order executed.
    Trade = b'P',
    /// `Q` Cross Trade (40 bytes).
    CrossTrade = b'Q',
    /// `B` Broken Trade (19 bytes).
    BrokenTrade = b'B',
    /// `I` Net Order Imbalance Indicator (50 bytes).
    Imbalance = b'I',
    /// `N` Retail Price Improvement Indicator (20 bytes).
    RetailInterest = b'N',
    /// `O` Direct Listing with Capital Raise Price Discovery (48 bytes).
    Dlcr = b'O',
}

impl MsgType {
    /// Every type, in the order of [`TYPES`].
    pub const ALL: [MsgType; 23] = [
        MsgType::SystemEvent,
        MsgType::StockDirectory,
        MsgType::TradingAction,
        MsgType::RegSho,
        MsgType::ParticipantPosition,
        MsgType::MwcbDecline,
        MsgType::MwcbStatus,
        MsgType::IpoQuoting,
        MsgType::LuldCollar,
        MsgType::OperationalHalt,
        MsgType::AddOrder,
        MsgType::AddOrderMpid,
        MsgType::Executed,
        MsgType::ExecutedWithPrice,
        MsgType::Cancel,
        MsgType::Delete,
        MsgType::Replace,
        MsgType::Trade,
        MsgType::CrossTrade,
        MsgType::BrokenTrade,
        MsgType::Imbalance,
        MsgType::RetailInterest,
        MsgType::Dlcr,
    ];

    /// The type a message's first byte names, if ITCH 5.0 has it.
    #[inline]
    pub const fn from_byte(b: u8) -> Option<MsgType> {
        KINDS[b as usize]
    }

    /// The type byte (an ASCII letter).
    #[inline]
    pub const fn byte(self) -> u8 {
        self as u8
    }

    /// The message's full length in bytes, type byte included (not the
    /// length prefix). Values from the specification's message tables.
    #[inline]
    pub const fn fixed_len(self) -> usize {
        match self {
            MsgType::SystemEvent => 12,
            MsgType::StockDirectory => 39,
            MsgType::TradingAction => 25,
            MsgType::RegSho => 20,
            MsgType::ParticipantPosition => 26,
            MsgType::MwcbDecline => 35,
            MsgType::MwcbStatus => 12,
            MsgType::IpoQuoting => 28,
            MsgType::LuldCollar => 35,
            MsgType::OperationalHalt => 21,
            MsgType::AddOrder => 36,
            MsgType::AddOrderMpid => 40,
            MsgType::Executed => 31,
            MsgType::ExecutedWithPrice => 36,
            MsgType::Cancel => 23,
            MsgType::Delete => 19,
            MsgType::Replace => 35,
            MsgType::Trade => 44,
            MsgType::CrossTrade => 40,
            MsgType::BrokenTrade => 19,
            MsgType::Imbalance => 50,
            MsgType::RetailInterest => 20,
            MsgType::Dlcr => 48,
        }
    }

    /// Offset of the 8-byte `Stock` field, for the types that carry one.
    /// (Messages about one order carry only the locate code; the symbol
    /// comes from the Stock Directory.)
    #[inline]
    pub const fn stock_offset(self) -> Option<usize> {
        match self {
            MsgType::StockDirectory
            | MsgType::TradingAction
            | MsgType::RegSho
            | MsgType::IpoQuoting
            | MsgType::LuldCollar
            | MsgType::OperationalHalt
            | MsgType::RetailInterest
            | MsgType::Dlcr => Some(11),
            MsgType::ParticipantPosition => Some(15),
            MsgType::AddOrder | MsgType::AddOrderMpid | MsgType::Trade => Some(24),
            MsgType::CrossTrade => Some(19),
            MsgType::Imbalance => Some(28),
            MsgType::SystemEvent
            | MsgType::MwcbDecline
            | MsgType::MwcbStatus
            | MsgType::Executed
            | MsgType::ExecutedWithPrice
            | MsgType::Cancel
            | MsgType::Delete
            | MsgType::Replace
            | MsgType::BrokenTrade => None,
        }
    }
}

// Byte -> type, built once at compile time, so classifying a message is
// one load (the dispatch the publisher does per message).
const KINDS: [Option<MsgType>; 256] = {
    let mut t = [None; 256];
    let mut i = 0;
    while i < MsgType::ALL.len() {
        t[MsgType::ALL[i] as usize] = Some(MsgType::ALL[i]);
        i += 1;
    }
    t
};

// Byte -> fixed length (0: not an ITCH 5.0 type).
const LENS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < MsgType::ALL.len() {
        t[MsgType::ALL[i] as usize] = MsgType::ALL[i].fixed_len() as u8;
        i += 1;
    }
    t
};

/// The full length of a message of type `type_byte` (type byte included,
/// length prefix not), or `None` for a type ITCH 5.0 does not define.
#[inline]
pub const fn fixed_len(type_byte: u8) -> Option<usize> {
    match LENS[type_byte as usize] {
        0 => None,
        n => Some(n as usize),
    }
}

/// What a frame holds, judged against the specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// A message of a known type and exactly its fixed length.
    Ok(MsgType),
    /// A type ITCH 5.0 does not define (carried in the value): skip it by
    /// its length prefix and count it. Remedy: none needed; a newer spec
    /// revision may define it.
    Unknown(u8),
    /// A known type whose length disagrees with its fixed length, or an
    /// empty frame: none of it can be trusted, skip it and count it.
    Malformed,
    /// The input ended inside this message (or inside its length prefix).
    Truncated,
}

/// Classify one complete message (the bytes after its length prefix).
#[inline]
pub fn check(msg: &[u8]) -> Check {
    let Some(&t) = msg.first() else {
        return Check::Malformed;
    };
    // Two table loads and no branch on the type itself: a `match` on the
    // type here compiles to an indirect jump that mispredicts with every
    // change of type, which costs more than the framing (bench/benches/itch.rs).
    match KINDS[t as usize] {
        Some(k) if usize::from(LENS[t as usize]) == msg.len() => Check::Ok(k),
        Some(_) => Check::Malformed,
        None => Check::Unknown(t),
    }
}

/// One item of a length-prefixed stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete message: the bytes its length prefix announced (without
    /// the prefix). Not yet checked: see [`Frame::check`].
    Message(&'a [u8]),
    /// What was left at the end of the input: a length prefix (or one byte
    /// of one) announcing more than the input holds, with the bytes that
    /// did arrive. Always the last item.
    Truncated(&'a [u8]),
}

impl Frame<'_> {
    /// [`check`] for a message; [`Check::Truncated`] for a truncated tail.
    #[inline]
    pub fn check(&self) -> Check {
        match self {
            Frame::Message(m) => check(m),
            Frame::Truncated(_) => Check::Truncated,
        }
    }
}

/// Split off the next frame of `buf`: the frame and the bytes it took
/// (prefix included). `None` when `buf` is empty.
#[inline]
fn split_frame(buf: &[u8]) -> Option<(Frame<'_>, usize)> {
    if buf.is_empty() {
        return None;
    }
    let Some((prefix, rest)) = buf.split_first_chunk::<PREFIX_LEN>() else {
        return Some((Frame::Truncated(buf), buf.len()));
    };
    let n = usize::from(u16::from_be_bytes(*prefix));
    match rest.get(..n) {
        Some(msg) => Some((Frame::Message(msg), PREFIX_LEN + n)),
        None => Some((Frame::Truncated(buf), buf.len())),
    }
}

/// Frames of a length-prefixed buffer held in memory (a whole file, a
/// MoldUDP64 packet's message blocks). An [`Iterator`] of [`Frame`]s that
/// borrow the buffer; a truncated tail is the last item.
#[derive(Clone, Debug)]
pub struct Framer<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Framer<'a> {
    /// Frames of `buf`, from its start.
    pub fn new(buf: &'a [u8]) -> Framer<'a> {
        Framer { buf, pos: 0 }
    }

    /// Bytes consumed so far (the offset of the next frame's prefix).
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Framer<'a> {
    type Item = Frame<'a>;

    #[inline]
    fn next(&mut self) -> Option<Frame<'a>> {
        let rest = self.buf.get(self.pos..)?;
        let (frame, used) = split_frame(rest)?;
        self.pos += used;
        Some(frame)
    }
}

/// The buffer size [`FileFramer::new`] reads in: 1 MiB, so a read system
/// call is paid every ~30 000 messages, and small enough to stay in L2/L3.
pub const DEFAULT_CHUNK: usize = 1 << 20;

/// The smallest buffer a [`FileFramer`] uses: the longest frame a 2-byte
/// prefix can announce, so any message fits whole after compaction.
pub const MIN_CHUNK: usize = PREFIX_LEN + u16::MAX as usize;

/// Frames of a length-prefixed stream read incrementally from a [`Read`]
/// (a day file, possibly through a gzip decoder): reads large chunks into
/// one buffer it owns and hands out frames borrowing that buffer, so
/// nothing is allocated per message. A message split across two reads is
/// moved to the front of the buffer (at most 64 KiB, once per chunk) and
/// completed by the next read.
///
/// Not an [`Iterator`]: each frame borrows the framer's buffer until the
/// next call (a lending iterator); use `while let Some(f) = ff.next_frame()?`.
#[derive(Debug)]
pub struct FileFramer<R> {
    src: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    // Bytes read from `src` so far.
    read: u64,
}

enum Step {
    Message(usize, usize),
    Tail(usize, usize),
    Done,
}

impl<R: Read> FileFramer<R> {
    /// A framer reading `src` in [`DEFAULT_CHUNK`]s.
    pub fn new(src: R) -> FileFramer<R> {
        FileFramer::with_capacity(src, DEFAULT_CHUNK)
    }

    /// A framer with a buffer of `capacity` bytes (raised to [`MIN_CHUNK`]).
    pub fn with_capacity(src: R, capacity: usize) -> FileFramer<R> {
        FileFramer {
            src,
            buf: vec![0u8; capacity.max(MIN_CHUNK)].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            read: 0,
        }
    }

    /// The next frame; `Ok(None)` at the end of the input (after a
    /// [`Frame::Truncated`] if the input ended inside a message). Read
    /// errors other than `Interrupted` are returned; the framer can be
    /// called again after one.
    #[inline]
    pub fn next_frame(&mut self) -> io::Result<Option<Frame<'_>>> {
        // The fast path, taken for all but about one message per chunk: a
        // whole frame is already in the buffer.
        let avail = self.buf.get(self.start..self.end).unwrap_or_default();
        if let Some((prefix, rest)) = avail.split_first_chunk::<PREFIX_LEN>() {
            let n = usize::from(u16::from_be_bytes(*prefix));
            if n <= rest.len() {
                let s = self.start + PREFIX_LEN;
                self.start = s + n;
                return Ok(self.buf.get(s..s + n).map(Frame::Message));
            }
        }
        self.next_frame_slow()
    }

    /// The next frame when the buffer holds no whole one: refill (or, at
    /// the end of the input, hand out the tail).
    #[cold]
    fn next_frame_slow(&mut self) -> io::Result<Option<Frame<'_>>> {
        // The decision is made on indices and the borrow taken after the
        // loop: returning a borrow of `buf` from inside a loop that also
        // refills it is what the borrow checker (rightly, pre-Polonius)
        // refuses.
        let step = loop {
            let avail = &self.buf[self.start..self.end];
            // An incomplete frame (Truncated here) is only a tail at the
            // end of the input; before that it means "read more".
            if let Some((Frame::Message(m), _)) = split_frame(avail) {
                let s = self.start + PREFIX_LEN;
                break Step::Message(s, s + m.len());
            }
            if self.eof {
                break if self.start == self.end {
                    Step::Done
                } else {
                    Step::Tail(self.start, self.end)
                };
            }
            self.fill()?;
        };
        Ok(match step {
            Step::Message(s, e) => {
                self.start = e;
                Some(Frame::Message(&self.buf[s..e]))
            }
            Step::Tail(s, e) => {
                self.start = e;
                Some(Frame::Truncated(&self.buf[s..e]))
            }
            Step::Done => None,
        })
    }

    /// Move the unread bytes to the front, then read once into the rest.
    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            // The buffer holds at least MIN_CHUNK bytes and what is unread
            // is less than one whole frame, so there is always room.
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(k) => {
                    self.end += k;
                    self.read += k as u64;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Bytes of the input consumed by the frames returned so far (prefixes
    /// included).
    pub fn bytes_consumed(&self) -> u64 {
        // Counted per read, not per frame: one add less on the hot path.
        self.read - (self.end - self.start) as u64
    }

    /// The reader back.
    pub fn into_inner(self) -> R {
        self.src
    }
}

#[inline]
fn be16<const N: usize>(b: &[u8; N], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}

#[inline]
fn be32<const N: usize>(b: &[u8; N], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

#[inline]
fn be48<const N: usize>(b: &[u8; N], o: usize) -> u64 {
    u64::from_be_bytes([0, 0, b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5]])
}

#[inline]
fn be64<const N: usize>(b: &[u8; N], o: usize) -> u64 {
    u64::from_be_bytes([
        b[o],
        b[o + 1],
        b[o + 2],
        b[o + 3],
        b[o + 4],
        b[o + 5],
        b[o + 6],
        b[o + 7],
    ])
}

#[inline]
fn arr<const N: usize, const M: usize>(b: &[u8; N], o: usize) -> [u8; M] {
    let mut out = [0u8; M];
    out.copy_from_slice(&b[o..o + M]);
    out
}

#[inline]
fn header(msg: &[u8]) -> Option<&[u8; HEADER_LEN]> {
    msg.first_chunk::<HEADER_LEN>()
}

/// The stock locate code (bytes 1..3) of any message with a full header;
/// 0 means market-wide.
#[inline]
pub fn stock_locate(msg: &[u8]) -> Option<u16> {
    header(msg).map(|h| be16(h, 1))
}

/// The tracking number (bytes 3..5) of any message with a full header.
#[inline]
pub fn tracking_number(msg: &[u8]) -> Option<u16> {
    header(msg).map(|h| be16(h, 3))
}

/// The timestamp (bytes 5..11: nanoseconds since midnight, 48 bits) of
/// any message with a full header.
#[inline]
pub fn timestamp(msg: &[u8]) -> Option<u64> {
    header(msg).map(|h| be48(h, 5))
}

/// The 8-byte `Stock` field (space-padded) of a well-formed message of a
/// type that carries one.
#[inline]
pub fn stock(msg: &[u8]) -> Option<&[u8; 8]> {
    let Check::Ok(k) = check(msg) else {
        return None;
    };
    let o = k.stock_offset()?;
    msg.get(o..o + 8)?.first_chunk::<8>()
}

/// A stock symbol without its padding spaces (ITCH pads on the right).
pub fn trim_stock(stock: &[u8; 8]) -> &[u8] {
    let n = stock.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    &stock[..n]
}

/// Buy or sell, from a `Buy/Sell Indicator` byte (`B` or `S`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// `B`: a bid.
    Buy,
    /// `S`: an offer.
    Sell,
}

impl Side {
    /// `B` or `S`; anything else is `None`.
    #[inline]
    pub fn from_byte(b: u8) -> Option<Side> {
        match b {
            b'B' => Some(Side::Buy),
            b'S' => Some(Side::Sell),
            _ => None,
        }
    }

    /// The indicator byte.
    #[inline]
    pub fn byte(self) -> u8 {
        match self {
            Side::Buy => b'B',
            Side::Sell => b'S',
        }
    }
}

// A view is a fixed-size array reference: built only from a message of
// exactly its type's length, so every accessor reads a constant offset
// inside the array (no bounds to fail at run time).
macro_rules! view {
    ($(#[$doc:meta])* $name:ident, $ty:expr, $len:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name<'a>(&'a [u8; $len]);

        impl<'a> $name<'a> {
            /// The message's length in bytes.
            pub const LEN: usize = $len;

            /// A view of `msg` if it is a well-formed message of this type.
            #[inline]
            pub fn parse(msg: &'a [u8]) -> Option<$name<'a>> {
                match msg.first() {
                    Some(&t) if t == $ty.byte() => {
                        <&[u8; $len]>::try_from(msg).ok().map($name)
                    }
                    _ => None,
                }
            }

            /// The message bytes.
            #[inline]
            pub fn bytes(&self) -> &'a [u8; $len] {
                self.0
            }

            /// Stock locate code.
            #[inline]
            pub fn locate(&self) -> u16 {
                be16(self.0, 1)
            }

            /// Tracking number.
            #[inline]
            pub fn tracking(&self) -> u16 {
                be16(self.0, 3)
            }

            /// Nanoseconds since midnight.
            #[inline]
            pub fn timestamp(&self) -> u64 {
                be48(self.0, 5)
            }
        }
    };
}

view!(
    /// `S` System Event: the day's milestones (`O` start of messages, `S`
    /// start of system hours, `Q` start of market hours, `M` end of market
    /// hours, `E` end of system hours, `C` end of messages).
    SystemEvent,
    MsgType::SystemEvent,
    12
);

impl SystemEvent<'_> {
    /// Event code (offset 11).
    pub fn event_code(&self) -> u8 {
        self.0[11]
    }
}

view!(
    /// `R` Stock Directory: which symbol a locate code means for the day.
    StockDirectory,
    MsgType::StockDirectory,
    39
);

impl StockDirectory<'_> {
    /// Stock symbol, space-padded (offset 11).
    pub fn stock(&self) -> [u8; 8] {
        arr(self.0, 11)
    }
    /// Market category (offset 19).
    pub fn market_category(&self) -> u8 {
        self.0[19]
    }
    /// Financial status indicator (offset 20).
    pub fn financial_status(&self) -> u8 {
        self.0[20]
    }
    /// Round lot size (offset 21).
    pub fn round_lot_size(&self) -> u32 {
        be32(self.0, 21)
    }
    /// Round lots only (offset 25).
    pub fn round_lots_only(&self) -> u8 {
        self.0[25]
    }
    /// Issue classification (offset 26).
    pub fn issue_classification(&self) -> u8 {
        self.0[26]
    }
    /// Issue sub-type (offset 27, 2 bytes).
    pub fn issue_subtype(&self) -> [u8; 2] {
        arr(self.0, 27)
    }
    /// Authenticity: `P` production, `T` test (offset 29).
    pub fn authenticity(&self) -> u8 {
        self.0[29]
    }
    /// Short sale threshold indicator (offset 30).
    pub fn short_sale_threshold(&self) -> u8 {
        self.0[30]
    }
    /// IPO flag (offset 31).
    pub fn ipo_flag(&self) -> u8 {
        self.0[31]
    }
    /// LULD reference price tier (offset 32).
    pub fn luld_tier(&self) -> u8 {
        self.0[32]
    }
    /// ETP flag (offset 33).
    pub fn etp_flag(&self) -> u8 {
        self.0[33]
    }
    /// ETP leverage factor (offset 34).
    pub fn etp_leverage(&self) -> u32 {
        be32(self.0, 34)
    }
    /// Inverse indicator (offset 38).
    pub fn inverse(&self) -> u8 {
        self.0[38]
    }
}

view!(
    /// `H` Stock Trading Action: the symbol's trading state changed.
    TradingAction,
    MsgType::TradingAction,
    25
);

impl TradingAction<'_> {
    /// Stock symbol (offset 11).
    pub fn stock(&self) -> [u8; 8] {
        arr(self.0, 11)
    }
    /// Trading state (offset 19): `H` halted, `P` paused, `Q` quotation
    /// only, `T` trading.
    pub fn state(&self) -> u8 {
        self.0[19]
    }
    /// Reserved (offset 20).
    pub fn reserved(&self) -> u8 {
        self.0[20]
    }
    /// Reason (offset 21, 4 bytes).
    pub fn reason(&self) -> [u8; 4] {
        arr(self.0, 21)
    }
}

view!(
    /// `h` Operational Halt: one market (NASDAQ, BX, PSX) halted or
    /// resumed the symbol for operational reasons.
    OperationalHalt,
    MsgType::OperationalHalt,
    21
);

impl OperationalHalt<'_> {
    /// Stock symbol (offset 11).
    pub fn stock(&self) -> [u8; 8] {
        arr(self.0, 11)
    }
    /// Market code (offset 19): `Q` NASDAQ, `B` BX, `X` PSX.
    pub fn market_code(&self) -> u8 {
        self.0[19]
    }
    /// Operational halt action (offset 20): `H` halted, `T` resumed.
    pub fn action(&self) -> u8 {
        self.0[20]
    }
}

/// `A` Add Order or `F` Add Order with MPID attribution: a new displayed
/// order on the book. The two share their first 36 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddOrder<'a> {
    b: &'a [u8; 36],
    attribution: Option<&'a [u8; 4]>,
}

impl<'a> AddOrder<'a> {
    /// A view of `msg` if it is a well-formed `A` or `F` message.
    #[inline]
    pub fn parse(msg: &'a [u8]) -> Option<AddOrder<'a>> {
        match (msg.first(), msg.len()) {
            (Some(b'A'), 36) => Some(AddOrder {
                b: msg.first_chunk::<36>()?,
                attribution: None,
            }),
            (Some(b'F'), 40) => Some(AddOrder {
                b: msg.first_chunk::<36>()?,
                attribution: msg.last_chunk::<4>(),
            }),
            _ => None,
        }
    }
    /// Stock locate code.
    #[inline]
    pub fn locate(&self) -> u16 {
        be16(self.b, 1)
    }
    /// Tracking number.
    #[inline]
    pub fn tracking(&self) -> u16 {
        be16(self.b, 3)
    }
    /// Nanoseconds since midnight.
    #[inline]
    pub fn timestamp(&self) -> u64 {
        be48(self.b, 5)
    }
    /// Order reference number (offset 11), unique for the day.
    #[inline]
    pub fn order_ref(&self) -> u64 {
        be64(self.b, 11)
    }
    /// The raw buy/sell indicator (offset 19).
    #[inline]
    pub fn side_byte(&self) -> u8 {
        self.b[19]
    }
    /// Buy or sell; `None` for a byte that is neither `B` nor `S`.
    #[inline]
    pub fn side(&self) -> Option<Side> {
        Side::from_byte(self.b[19])
    }
    /// Shares (offset 20).
    #[inline]
    pub fn shares(&self) -> u32 {
        be32(self.b, 20)
    }
    /// Stock symbol (offset 24).
    #[inline]
    pub fn stock(&self) -> [u8; 8] {
        arr(self.b, 24)
    }
    /// Display price, 1/10000 (offset 32).
    #[inline]
    pub fn price(&self) -> u32 {
        be32(self.b, 32)
    }
    /// `F` only: the market participant attribution (offset 36).
    #[inline]
    pub fn attribution(&self) -> Option<[u8; 4]> {
        self.attribution.copied()
    }
}

view!(
    /// `E` Order Executed: shares of a resting order executed at its
    /// display price.
    Executed,
    MsgType::Executed,
    31
);

impl Executed<'_> {
    /// Order reference number (offset 11).
    #[inline]
    pub fn order_ref(&self) -> u64 {
        be64(self.0, 11)
    }
    /// Executed shares (offset 19).
    #[inline]
    pub fn shares(&self) -> u32 {
        be32(self.0, 19)
    }
    /// Match number (offset 23).
    #[inline]
    pub fn match_number(&self) -> u64 {
        be64(self.0, 23)
    }
}

view!(
    /// `C` Order Executed With Price: shares of a resting order executed at
    /// a price other than its display price. The spec asks that
    /// non-printable ones (`printable` = `N`) be left out of volume: they
    /// are reported again elsewhere (a cross's `Q`).
    ExecutedWithPrice,
    MsgType::ExecutedWithPrice,
    36
);

impl ExecutedWithPrice<'_> {
    /// Order reference number (offset 11).
    #[inline]
    pub fn order_ref(&self) -> u64 {
        be64(self.0, 11)
    }
    /// Executed shares (offset 19).
    #[inline]
    pub fn shares(&self) -> u32 {
        be32(self.0, 19)
    }
    /// Match number (offset 23).
    #[inline]
    pub fn match_number(&self) -> u64 {
        be64(self.0, 23)
    }
    /// Printable flag (offset 31): `Y` or `N`.
    #[inline]
    pub fn printable_byte(&self) -> u8 {
        self.0[31]
    }
    /// Whether the execution is printable (`Y`).
    #[inline]
    pub fn printable(&self) -> bool {
        self.0[31] == b'Y'
    }
    /// Execution price, 1/10000 (offset 32).
    #[inline]
    pub fn price(&self) -> u32 {
        be32(self.0, 32)
    }
}

view!(
    /// `X` Order Cancel: part of a resting order cancelled.
    Cancel,
    MsgType::Cancel,
    23
);

impl Cancel<'_> {
    /// Order reference number (offset 11).
    #[inline]
    pub fn order_ref(&self) -> u64 {
        be64(self.0, 11)
    }
    /// Cancelled shares (offset 19).
    #[inline]
    pub fn shares(&self) -> u32 {
        be32(self.0, 19)
    }
}

view!(
    /// `D` Order Delete: a resting order removed whole.
    Delete,
    MsgType::Delete,
    19
);

impl Delete<'_> {
    /// Order reference number (offset 11).
    #[inline]
    pub fn order_ref(&self) -> u64 {
        be64(self.0, 11)
    }
}

view!(
    /// `U` Order Replace: the original order is removed and a new one (new
    /// reference, same side and symbol, new shares and price) added.
    Replace,
    MsgType::Replace,
    35
);

impl Replace<'_> {
    /// Original order reference number (offset 11).
    #[inline]
    pub fn original_ref(&self) -> u64 {
        be64(self.0, 11)
    }
    /// New order reference number (offset 19).
    #[inline]
    pub fn new_ref(&self) -> u64 {
        be64(self.0, 19)
    }
    /// Shares of the new order (offset 27).
    #[inline]
    pub fn shares(&self) -> u32 {
        be32(self.0, 27)
    }
    /// Price of the new order, 1/10000 (offset 31).
    #[inline]
    pub fn price(&self) -> u32 {
        be32(self.0, 31)
    }
}

view!(
    /// `P` Trade (non-cross): a non-displayed order executed; it never
    /// touches the displayed book.
    Trade,
    MsgType::Trade,
    44
);

impl Trade<'_> {
    /// Order reference number (offset 11; NASDAQ has sent 0 since December
    /// 2010).
    #[inline]
    pub fn order_ref(&self) -> u64 {
        be64(self.0, 11)
    }
    /// Buy/sell indicator byte (offset 19; always `B` since July 2014,
    /// whatever the resting side).
    #[inline]
    pub fn side_byte(&self) -> u8 {
        self.0[19]
    }
    /// Shares (offset 20).
    #[inline]
    pub fn shares(&self) -> u32 {
        be32(self.0, 20)
    }
    /// Stock symbol (offset 24).
    #[inline]
    pub fn stock(&self) -> [u8; 8] {
        arr(self.0, 24)
    }
    /// Price, 1/10000 (offset 32).
    #[inline]
    pub fn price(&self) -> u32 {
        be32(self.0, 32)
    }
    /// Match number (offset 36).
    #[inline]
    pub fn match_number(&self) -> u64 {
        be64(self.0, 36)
    }
}

view!(
    /// `Q` Cross Trade: the result of an opening, closing, halt or IPO
    /// cross, in bulk.
    CrossTrade,
    MsgType::CrossTrade,
    40
);

impl CrossTrade<'_> {
    /// Shares matched in the cross (offset 11, 8 bytes; may be 0).
    #[inline]
    pub fn shares(&self) -> u64 {
        be64(self.0, 11)
    }
    /// Stock symbol (offset 19).
    #[inline]
    pub fn stock(&self) -> [u8; 8] {
        arr(self.0, 19)
    }
    /// Cross price, 1/10000 (offset 27).
    #[inline]
    pub fn price(&self) -> u32 {
        be32(self.0, 27)
    }
    /// Match number (offset 31).
    #[inline]
    pub fn match_number(&self) -> u64 {
        be64(self.0, 31)
    }
    /// Cross type (offset 39): `O` opening, `C` closing, `H` halt/IPO,
    /// `I` intraday/post-close.
    #[inline]
    pub fn cross_type(&self) -> u8 {
        self.0[39]
    }
}

view!(
    /// `B` Broken Trade: an execution broken (erroneous); its match number
    /// names it.
    BrokenTrade,
    MsgType::BrokenTrade,
    19
);

impl BrokenTrade<'_> {
    /// Match number of the broken execution (offset 11).
    #[inline]
    pub fn match_number(&self) -> u64 {
        be64(self.0, 11)
    }
}

/// A checked message, dispatched on its type: the view the book and the
/// router use, or [`View::Other`] for the types they do not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View<'a> {
    /// `S`.
    SystemEvent(SystemEvent<'a>),
    /// `R`.
    StockDirectory(StockDirectory<'a>),
    /// `H`.
    TradingAction(TradingAction<'a>),
    /// `h`.
    OperationalHalt(OperationalHalt<'a>),
    /// `A` or `F`.
    AddOrder(AddOrder<'a>),
    /// `E`.
    Executed(Executed<'a>),
    /// `C`.
    ExecutedWithPrice(ExecutedWithPrice<'a>),
    /// `X`.
    Cancel(Cancel<'a>),
    /// `D`.
    Delete(Delete<'a>),
    /// `U`.
    Replace(Replace<'a>),
    /// `P`.
    Trade(Trade<'a>),
    /// `Q`.
    CrossTrade(CrossTrade<'a>),
    /// `B`.
    BrokenTrade(BrokenTrade<'a>),
    /// `Y`, `L`, `V`, `W`, `K`, `J`, `I`, `N`, `O`: well-formed, read by
    /// header accessors and [`stock`] only.
    Other(MsgType, &'a [u8]),
}

/// Check `msg` and dispatch it to its view. `Err` carries why it cannot be
/// read ([`Check::Unknown`] or [`Check::Malformed`]).
#[inline]
pub fn view(msg: &[u8]) -> Result<View<'_>, Check> {
    let k = match check(msg) {
        Check::Ok(k) => k,
        other => return Err(other),
    };
    // The length was checked against the type: every parse below succeeds;
    // `Malformed` is only a fallback that cannot be reached.
    let v = match k {
        MsgType::SystemEvent => SystemEvent::parse(msg).map(View::SystemEvent),
        MsgType::StockDirectory => StockDirectory::parse(msg).map(View::StockDirectory),
        MsgType::TradingAction => TradingAction::parse(msg).map(View::TradingAction),
        MsgType::OperationalHalt => OperationalHalt::parse(msg).map(View::OperationalHalt),
        MsgType::AddOrder | MsgType::AddOrderMpid => AddOrder::parse(msg).map(View::AddOrder),
        MsgType::Executed => Executed::parse(msg).map(View::Executed),
        MsgType::ExecutedWithPrice => ExecutedWithPrice::parse(msg).map(View::ExecutedWithPrice),
        MsgType::Cancel => Cancel::parse(msg).map(View::Cancel),
        MsgType::Delete => Delete::parse(msg).map(View::Delete),
        MsgType::Replace => Replace::parse(msg).map(View::Replace),
        MsgType::Trade => Trade::parse(msg).map(View::Trade),
        MsgType::CrossTrade => CrossTrade::parse(msg).map(View::CrossTrade),
        MsgType::BrokenTrade => BrokenTrade::parse(msg).map(View::BrokenTrade),
        MsgType::RegSho
        | MsgType::ParticipantPosition
        | MsgType::MwcbDecline
        | MsgType::MwcbStatus
        | MsgType::IpoQuoting
        | MsgType::LuldCollar
        | MsgType::Imbalance
        | MsgType::RetailInterest
        | MsgType::Dlcr => Some(View::Other(k, msg)),
    };
    v.ok_or(Check::Malformed)
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// The header fields every message carries (the type comes from the body).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Stock locate code (0: market-wide).
    pub locate: u16,
    /// Tracking number.
    pub tracking: u16,
    /// Nanoseconds since midnight; only the low 48 bits are written.
    pub timestamp: u64,
}

/// An ITCH 5.0 message as values, for writing ([`Message::encode`]): the
/// generator's and the tests' side. Field names follow the specification;
/// prices are `Price(4)` (1/10000) unless noted.
#[allow(missing_docs)] // the fields are the spec's, named as in its tables
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// `S`.
    SystemEvent { event: u8 },
    /// `R`.
    StockDirectory {
        stock: [u8; 8],
        market_category: u8,
        financial_status: u8,
        round_lot_size: u32,
        round_lots_only: u8,
        issue_classification: u8,
        issue_subtype: [u8; 2],
        authenticity: u8,
        short_sale_threshold: u8,
        ipo_flag: u8,
        luld_tier: u8,
        etp_flag: u8,
        etp_leverage: u32,
        inverse: u8,
    },
    /// `H`.
    TradingAction {
        stock: [u8; 8],
        state: u8,
        reserved: u8,
        reason: [u8; 4],
    },
    /// `Y`.
    RegSho { stock: [u8; 8], action: u8 },
    /// `L`.
    ParticipantPosition {
        mpid: [u8; 4],
        stock: [u8; 8],
        primary: u8,
        mode: u8,
        state: u8,
    },
    /// `V`: levels are `Price(8)` (8 implied decimals).
    MwcbDecline {
        level1: u64,
        level2: u64,
        level3: u64,
    },
    /// `W`.
    MwcbStatus { level: u8 },
    /// `K`: release time in seconds since midnight.
    IpoQuoting {
        stock: [u8; 8],
        release_time: u32,
        qualifier: u8,
        price: u32,
    },
    /// `J`.
    LuldCollar {
        stock: [u8; 8],
        reference: u32,
        upper: u32,
        lower: u32,
        extension: u32,
    },
    /// `h`.
    OperationalHalt {
        stock: [u8; 8],
        market: u8,
        action: u8,
    },
    /// `A` (no attribution) or `F` (with one).
    AddOrder {
        order_ref: u64,
        side: Side,
        shares: u32,
        stock: [u8; 8],
        price: u32,
        attribution: Option<[u8; 4]>,
    },
    /// `E`.
    Executed {
        order_ref: u64,
        shares: u32,
        match_number: u64,
    },
    /// `C`.
    ExecutedWithPrice {
        order_ref: u64,
        shares: u32,
        match_number: u64,
        printable: bool,
        price: u32,
    },
    /// `X`.
    Cancel { order_ref: u64, shares: u32 },
    /// `D`.
    Delete { order_ref: u64 },
    /// `U`.
    Replace {
        original_ref: u64,
        new_ref: u64,
        shares: u32,
        price: u32,
    },
    /// `P`.
    Trade {
        order_ref: u64,
        side: Side,
        shares: u32,
        stock: [u8; 8],
        price: u32,
        match_number: u64,
    },
    /// `Q`.
    CrossTrade {
        shares: u64,
        stock: [u8; 8],
        price: u32,
        match_number: u64,
        cross_type: u8,
    },
    /// `B`.
    BrokenTrade { match_number: u64 },
    /// `I`.
    Imbalance {
        paired: u64,
        imbalance: u64,
        direction: u8,
        stock: [u8; 8],
        far: u32,
        near: u32,
        reference: u32,
        cross_type: u8,
        variation: u8,
    },
    /// `N`.
    RetailInterest { stock: [u8; 8], flag: u8 },
    /// `O`: near execution time in seconds since midnight.
    Dlcr {
        stock: [u8; 8],
        open_eligibility: u8,
        min_price: u32,
        max_price: u32,
        near_price: u32,
        near_time: u64,
        lower_collar: u32,
        upper_collar: u32,
    },
}

/// A message to encode: header and body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// Locate, tracking number, timestamp.
    pub header: Header,
    /// Type and fields.
    pub body: Body,
}

// A fixed buffer for one message: no allocation, and the test
// `encoder_writes_exactly_the_fixed_length` holds every type to its length.
struct Writer {
    b: [u8; MAX_LEN],
    n: usize,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }
    fn u48(&mut self, v: u64) {
        let b = v.to_be_bytes();
        self.bytes(&b[2..]);
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        // Bodies are at most MAX_LEN by construction; a longer one would
        // be a bug here, caught by the length test, so clip rather than
        // panic in a generator run.
        let end = (self.n + v.len()).min(MAX_LEN);
        let k = end - self.n;
        self.b[self.n..end].copy_from_slice(&v[..k]);
        self.n = end;
    }
}

impl Body {
    /// The message type this body encodes as.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Body::SystemEvent { .. } => MsgType::SystemEvent,
            Body::StockDirectory { .. } => MsgType::StockDirectory,
            Body::TradingAction { .. } => MsgType::TradingAction,
            Body::RegSho { .. } => MsgType::RegSho,
            Body::ParticipantPosition { .. } => MsgType::ParticipantPosition,
            Body::MwcbDecline { .. } => MsgType::MwcbDecline,
            Body::MwcbStatus { .. } => MsgType::MwcbStatus,
            Body::IpoQuoting { .. } => MsgType::IpoQuoting,
            Body::LuldCollar { .. } => MsgType::LuldCollar,
            Body::OperationalHalt { .. } => MsgType::OperationalHalt,
            Body::AddOrder {
                attribution: None, ..
            } => MsgType::AddOrder,
            Body::AddOrder {
                attribution: Some(_),
                ..
            } => MsgType::AddOrderMpid,
            Body::Executed { .. } => MsgType::Executed,
            Body::ExecutedWithPrice { .. } => MsgType::ExecutedWithPrice,
            Body::Cancel { .. } => MsgType::Cancel,
            Body::Delete { .. } => MsgType::Delete,
            Body::Replace { .. } => MsgType::Replace,
            Body::Trade { .. } => MsgType::Trade,
            Body::CrossTrade { .. } => MsgType::CrossTrade,
            Body::BrokenTrade { .. } => MsgType::BrokenTrade,
            Body::Imbalance { .. } => MsgType::Imbalance,
            Body::RetailInterest { .. } => MsgType::RetailInterest,
            Body::Dlcr { .. } => MsgType::Dlcr,
        }
    }
}

impl Message {
    /// A message.
    pub fn new(header: Header, body: Body) -> Message {
        Message { header, body }
    }

    /// The message type.
    pub fn msg_type(&self) -> MsgType {
        self.body.msg_type()
    }

    /// The message bytes (without the length prefix) into `out`; returns
    /// how many were written (always the type's fixed length).
    pub fn write(&self, out: &mut [u8; MAX_LEN]) -> usize {
        let mut w = Writer {
            b: [0; MAX_LEN],
            n: 0,
        };
        w.u8(self.msg_type().byte());
        w.u16(self.header.locate);
        w.u16(self.header.tracking);
        w.u48(self.header.timestamp);
        match self.body {
            Body::SystemEvent { event } => w.u8(event),
            Body::StockDirectory {
                stock,
                market_category,
                financial_status,
                round_lot_size,
                round_lots_only,
                issue_classification,
                issue_subtype,
                authenticity,
                short_sale_threshold,
                ipo_flag,
                luld_tier,
                etp_flag,
                etp_leverage,
                inverse,
            } => {
                w.bytes(&stock);
                w.u8(market_category);
                w.u8(financial_status);
                w.u32(round_lot_size);
                w.u8(round_lots_only);
                w.u8(issue_classification);
                w.bytes(&issue_subtype);
                w.u8(authenticity);
                w.u8(short_sale_threshold);
                w.u8(ipo_flag);
                w.u8(luld_tier);
                w.u8(etp_flag);
                w.u32(etp_leverage);
                w.u8(inverse);
            }
            Body::TradingAction {
                stock,
                state,
                reserved,
                reason,
            } => {
                w.bytes(&stock);
                w.u8(state);
                w.u8(reserved);
                w.bytes(&reason);
            }
            Body::RegSho { stock, action } => {
                w.bytes(&stock);
                w.u8(action);
            }
            Body::ParticipantPosition {
                mpid,
                stock,
                primary,
                mode,
                state,
            } => {
                w.bytes(&mpid);
                w.bytes(&stock);
                w.u8(primary);
                w.u8(mode);
                w.u8(state);
            }
            Body::MwcbDecline {
                level1,
                level2,
                level3,
            } => {
                w.u64(level1);
                w.u64(level2);
                w.u64(level3);
            }
            Body::MwcbStatus { level } => w.u8(level),
            Body::IpoQuoting {
                stock,
                release_time,
                qualifier,
                price,
            } => {
                w.bytes(&stock);
                w.u32(release_time);
                w.u8(qualifier);
                w.u32(price);
            }
            Body::LuldCollar {
                stock,
                reference,
                upper,
                lower,
                extension,
            } => {
                w.bytes(&stock);
                w.u32(reference);
                w.u32(upper);
                w.u32(lower);
                w.u32(extension);
            }
            Body::OperationalHalt {
                stock,
                market,
                action,
            } => {
                w.bytes(&stock);
                w.u8(market);
                w.u8(action);
            }
            Body::AddOrder {
                order_ref,
                side,
                shares,
                stock,
                price,
                attribution,
            } => {
                w.u64(order_ref);
                w.u8(side.byte());
                w.u32(shares);
                w.bytes(&stock);
                w.u32(price);
                if let Some(a) = attribution {
                    w.bytes(&a);
                }
            }
            Body::Executed {
                order_ref,
                shares,
                match_number,
            } => {
                w.u64(order_ref);
                w.u32(shares);
                w.u64(match_number);
            }
            Body::ExecutedWithPrice {
                order_ref,
                shares,
                match_number,
                printable,
                price,
            } => {
                w.u64(order_ref);
                w.u32(shares);
                w.u64(match_number);
                w.u8(if printable { b'Y' } else { b'N' });
                w.u32(price);
            }
            Body::Cancel { order_ref, shares } => {
                w.u64(order_ref);
                w.u32(shares);
            }
            Body::Delete { order_ref } => w.u64(order_ref),
            Body::Replace {
                original_ref,
                new_ref,
                shares,
                price,
            } => {
                w.u64(original_ref);
                w.u64(new_ref);
                w.u32(shares);
                w.u32(price);
            }
            Body::Trade {
                order_ref,
                side,
                shares,
                stock,
                price,
                match_number,
            } => {
                w.u64(order_ref);
                w.u8(side.byte());
                w.u32(shares);
                w.bytes(&stock);
                w.u32(price);
                w.u64(match_number);
            }
            Body::CrossTrade {
                shares,
                stock,
                price,
                match_number,
                cross_type,
            } => {
                w.u64(shares);
                w.bytes(&stock);
                w.u32(price);
                w.u64(match_number);
                w.u8(cross_type);
            }
            Body::BrokenTrade { match_number } => w.u64(match_number),
            Body::Imbalance {
                paired,
                imbalance,
                direction,
                stock,
                far,
                near,
                reference,
                cross_type,
                variation,
            } => {
                w.u64(paired);
                w.u64(imbalance);
                w.u8(direction);
                w.bytes(&stock);
                w.u32(far);
                w.u32(near);
                w.u32(reference);
                w.u8(cross_type);
                w.u8(variation);
            }
            Body::RetailInterest { stock, flag } => {
                w.bytes(&stock);
                w.u8(flag);
            }
            Body::Dlcr {
                stock,
                open_eligibility,
                min_price,
                max_price,
                near_price,
                near_time,
                lower_collar,
                upper_collar,
            } => {
                w.bytes(&stock);
                w.u8(open_eligibility);
                w.u32(min_price);
                w.u32(max_price);
                w.u32(near_price);
                w.u64(near_time);
                w.u32(lower_collar);
                w.u32(upper_collar);
            }
        }
        *out = w.b;
        w.n
    }

    /// Append the length prefix and the message to `out`; returns the
    /// bytes appended.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        let mut b = [0u8; MAX_LEN];
        let n = self.write(&mut b);
        // n <= MAX_LEN (50), so the prefix cannot overflow.
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&b[..n]);
        PREFIX_LEN + n
    }
}

/// A stock symbol as ITCH carries it: left-justified, space-padded to 8
/// bytes (longer names are cut at 8).
pub fn pad_stock(name: &str) -> [u8; 8] {
    let mut s = [b' '; 8];
    for (d, c) in s.iter_mut().zip(name.bytes()) {
        *d = c;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- Hand-built messages at the specification's offsets. These never
    // go through `Message::write`: they are what the spec's tables say, so
    // the views and the encoder are both checked against the document.

    struct Spec {
        b: Vec<u8>,
    }

    impl Spec {
        /// A message of `len` bytes with the common header: type at 0,
        /// locate at 1 (2), tracking at 3 (2), timestamp at 5 (6).
        fn new(t: u8, len: usize, locate: u16, tracking: u16, ts: u64) -> Spec {
            let mut b = vec![0u8; len];
            b[0] = t;
            b[1..3].copy_from_slice(&locate.to_be_bytes());
            b[3..5].copy_from_slice(&tracking.to_be_bytes());
            b[5..11].copy_from_slice(&ts.to_be_bytes()[2..]);
            Spec { b }
        }
        fn at(mut self, off: usize, v: &[u8]) -> Spec {
            self.b[off..off + v.len()].copy_from_slice(v);
            self
        }
        fn u32(self, off: usize, v: u32) -> Spec {
            self.at(off, &v.to_be_bytes())
        }
        fn u64(self, off: usize, v: u64) -> Spec {
            self.at(off, &v.to_be_bytes())
        }
    }

    const TS: u64 = 34_200_000_000_123; // 09:30:00.000000123
    const AAPL: &[u8; 8] = b"AAPL    ";

    fn h(locate: u16) -> Header {
        Header {
            locate,
            tracking: 7,
            timestamp: TS,
        }
    }

    fn enc(m: Message) -> Vec<u8> {
        let mut b = [0u8; MAX_LEN];
        let n = m.write(&mut b);
        b[..n].to_vec()
    }

    #[test]
    fn fixed_lengths_are_the_specifications() {
        // From the specification's message tables, type byte included.
        let spec: [(u8, usize); 23] = [
            (b'S', 12),
            (b'R', 39),
            (b'H', 25),
            (b'Y', 20),
            (b'L', 26),
            (b'V', 35),
            (b'W', 12),
            (b'K', 28),
            (b'J', 35),
            (b'h', 21),
            (b'A', 36),
            (b'F', 40),
            (b'E', 31),
            (b'C', 36),
            (b'X', 23),
            (b'D', 19),
            (b'U', 35),
            (b'P', 44),
            (b'Q', 40),
            (b'B', 19),
            (b'I', 50),
            (b'N', 20),
            (b'O', 48),
        ];
        for (t, len) in spec {
            assert_eq!(fixed_len(t), Some(len), "type {}", t as char);
            assert_eq!(MsgType::from_byte(t).map(MsgType::fixed_len), Some(len));
            assert_eq!(MsgType::from_byte(t).map(MsgType::byte), Some(t));
        }
        let known: Vec<u8> = spec.iter().map(|s| s.0).collect();
        assert_eq!(known, TYPES.to_vec());
        for b in 0..=255u8 {
            if !known.contains(&b) {
                assert_eq!(fixed_len(b), None, "byte {b}");
                assert_eq!(MsgType::from_byte(b), None);
            }
        }
        assert_eq!(spec.iter().map(|s| s.1).max(), Some(MAX_LEN));
    }

    #[test]
    fn system_event_s() {
        let m = Spec::new(b'S', 12, 0, 3, TS).at(11, b"Q").b;
        assert_eq!(check(&m), Check::Ok(MsgType::SystemEvent));
        let Ok(View::SystemEvent(v)) = view(&m) else {
            panic!("{:?}", view(&m))
        };
        assert_eq!(
            (v.locate(), v.tracking(), v.timestamp(), v.event_code()),
            (0, 3, TS, b'Q')
        );
        let e = Message::new(
            Header {
                locate: 0,
                tracking: 3,
                timestamp: TS,
            },
            Body::SystemEvent { event: b'Q' },
        );
        assert_eq!(enc(e), m);
    }

    #[test]
    fn stock_directory_r() {
        let m = Spec::new(b'R', 39, 13, 7, TS)
            .at(11, AAPL)
            .at(19, b"Q")
            .at(20, b"N")
            .u32(21, 100)
            .at(25, b"N")
            .at(26, b"C")
            .at(27, b"Z ")
            .at(29, b"P")
            .at(30, b"N")
            .at(31, b"N")
            .at(32, b"1")
            .at(33, b"N")
            .u32(34, 2)
            .at(38, b"N")
            .b;
        let Ok(View::StockDirectory(v)) = view(&m) else {
            panic!()
        };
        assert_eq!(v.locate(), 13);
        assert_eq!(&v.stock(), AAPL);
        assert_eq!(v.market_category(), b'Q');
        assert_eq!(v.financial_status(), b'N');
        assert_eq!(v.round_lot_size(), 100);
        assert_eq!(v.round_lots_only(), b'N');
        assert_eq!(v.issue_classification(), b'C');
        assert_eq!(&v.issue_subtype(), b"Z ");
        assert_eq!(v.authenticity(), b'P');
        assert_eq!(v.short_sale_threshold(), b'N');
        assert_eq!(v.ipo_flag(), b'N');
        assert_eq!(v.luld_tier(), b'1');
        assert_eq!(v.etp_flag(), b'N');
        assert_eq!(v.etp_leverage(), 2);
        assert_eq!(v.inverse(), b'N');
        assert_eq!(stock(&m), Some(AAPL));
        let e = Message::new(
            h(13),
            Body::StockDirectory {
                stock: *AAPL,
                market_category: b'Q',
                financial_status: b'N',
                round_lot_size: 100,
                round_lots_only: b'N',
                issue_classification: b'C',
                issue_subtype: *b"Z ",
                authenticity: b'P',
                short_sale_threshold: b'N',
                ipo_flag: b'N',
                luld_tier: b'1',
                etp_flag: b'N',
                etp_leverage: 2,
                inverse: b'N',
            },
        );
        assert_eq!(enc(e), m);
    }

    #[test]
    fn trading_action_h() {
        let m = Spec::new(b'H', 25, 13, 7, TS)
            .at(11, AAPL)
            .at(19, b"H")
            .at(20, b" ")
            .at(21, b"T1  ")
            .b;
        let Ok(View::TradingAction(v)) = view(&m) else {
            panic!()
        };
        assert_eq!((v.locate(), v.state(), v.reserved()), (13, b'H', b' '));
        assert_eq!((&v.stock(), &v.reason()), (AAPL, b"T1  "));
        let e = Message::new(
            h(13),
            Body::TradingAction {
                stock: *AAPL,
                state: b'H',
                reserved: b' ',
                reason: *b"T1  ",
            },
        );
        assert_eq!(enc(e), m);
    }

    #[test]
    fn operational_halt_h_lowercase() {
        let m = Spec::new(b'h', 21, 13, 7, TS)
            .at(11, AAPL)
            .at(19, b"Q")
            .at(20, b"H")
            .b;
        assert_eq!(m.len(), 21);
        let Ok(View::OperationalHalt(v)) = view(&m) else {
            panic!()
        };
        assert_eq!(
            (&v.stock(), v.market_code(), v.action()),
            (AAPL, b'Q', b'H')
        );
        let e = Message::new(
            h(13),
            Body::OperationalHalt {
                stock: *AAPL,
                market: b'Q',
                action: b'H',
            },
        );
        assert_eq!(enc(e), m);
    }

    #[test]
    fn add_order_a_and_f() {
        let a = Spec::new(b'A', 36, 13, 7, TS)
            .u64(11, 0x0102_0304_0506_0708)
            .at(19, b"B")
            .u32(20, 300)
            .at(24, AAPL)
            .u32(32, 1_234_500)
            .b;
        let Ok(View::AddOrder(v)) = view(&a) else {
            panic!()
        };
        assert_eq!(v.order_ref(), 0x0102_0304_0506_0708);
        assert_eq!(
            (v.side(), v.shares(), v.price()),
            (Some(Side::Buy), 300, 1_234_500)
        );
        assert_eq!((&v.stock(), v.attribution()), (AAPL, None));
        assert_eq!((v.locate(), v.tracking(), v.timestamp()), (13, 7, TS));
        let mut f = a.clone();
        f[0] = b'F';
        f[19] = b'S';
        f.extend_from_slice(b"GSCO");
        let Ok(View::AddOrder(v)) = view(&f) else {
            panic!()
        };
        assert_eq!(
            (v.side(), v.attribution()),
            (Some(Side::Sell), Some(*b"GSCO"))
        );
        let body = |side, attribution| Body::AddOrder {
            order_ref: 0x0102_0304_0506_0708,
            side,
            shares: 300,
            stock: *AAPL,
            price: 1_234_500,
            attribution,
        };
        assert_eq!(enc(Message::new(h(13), body(Side::Buy, None))), a);
        assert_eq!(
            enc(Message::new(h(13), body(Side::Sell, Some(*b"GSCO")))),
            f
        );
        // An A is not an F: the length decides nothing across types.
        assert_eq!(AddOrder::parse(&f[..36]), None);
    }

    #[test]
    fn executed_e() {
        let m = Spec::new(b'E', 31, 13, 7, TS)
            .u64(11, 42)
            .u32(19, 100)
            .u64(23, 9_000_001)
            .b;
        let Ok(View::Executed(v)) = view(&m) else {
            panic!()
        };
        assert_eq!(
            (v.order_ref(), v.shares(), v.match_number()),
            (42, 100, 9_000_001)
        );
        let e = Message::new(
            h(13),
            Body::Executed {
                order_ref: 42,
                shares: 100,
                match_number: 9_000_001,
            },
        );
        assert_eq!(enc(e), m);
    }

    #[test]
    fn executed_with_price_c() {
        let m = Spec::new(b'C', 36, 13, 7, TS)
            .u64(11, 42)
            .u32(19, 50)
            .u64(23, 9_000_002)
            .at(31, b"N")
            .u32(32, 1_234_600)
            .b;
        let Ok(View::ExecutedWithPrice(v)) = view(&m) else {
            panic!()
        };
        assert_eq!(
            (v.order_ref(), v.shares(), v.match_number()),
            (42, 50, 9_000_002)
        );
        assert_eq!(
            (v.printable(), v.printable_byte(), v.price()),
            (false, b'N', 1_234_600)
        );
        let e = Message::new(
            h(13),
            Body::ExecutedWithPrice {
                order_ref: 42,
                shares: 50,
                match_number: 9_000_002,
                printable: false,
                price: 1_234_600,
            },
        );
        assert_eq!(enc(e), m);
    }

    #[test]
    fn cancel_x_delete_d_replace_u() {
        let x = Spec::new(b'X', 23, 13, 7, TS).u64(11, 42).u32(19, 25).b;
        let Ok(View::Cancel(v)) = view(&x) else {
            panic!()
        };
        assert_eq!((v.order_ref(), v.shares()), (42, 25));
        let e = Message::new(
            h(13),
            Body::Cancel {
                order_ref: 42,
                shares: 25,
            },
        );
        assert_eq!(enc(e), x);

        let d = Spec::new(b'D', 19, 13, 7, TS).u64(11, 42).b;
        let Ok(View::Delete(v)) = view(&d) else {
            panic!()
        };
        assert_eq!(v.order_ref(), 42);
        assert_eq!(enc(Message::new(h(13), Body::Delete { order_ref: 42 })), d);

        let u = Spec::new(b'U', 35, 13, 7, TS)
            .u64(11, 42)
            .u64(19, 43)
            .u32(27, 200)
            .u32(31, 1_234_700)
            .b;
        let Ok(View::Replace(v)) = view(&u) else {
            panic!()
        };
        assert_eq!(
            (v.original_ref(), v.new_ref(), v.shares(), v.price()),
            (42, 43, 200, 1_234_700)
        );
        let e = Message::new(
            h(13),
            Body::Replace {
                original_ref: 42,
                new_ref: 43,
                shares: 200,
                price: 1_234_700,
            },
        );
        assert_eq!(enc(e), u);
    }

    #[test]
    fn trade_p_cross_q_broken_b() {
        let p = Spec::new(b'P', 44, 13, 7, TS)
            .u64(11, 0)
            .at(19, b"B")
            .u32(20, 400)
            .at(24, AAPL)
            .u32(32, 1_234_550)
            .u64(36, 9_000_003)
            .b;
        let Ok(View::Trade(v)) = view(&p) else {
            panic!()
        };
        assert_eq!((v.order_ref(), v.side_byte(), v.shares()), (0, b'B', 400));
        assert_eq!(
            (&v.stock(), v.price(), v.match_number()),
            (AAPL, 1_234_550, 9_000_003)
        );
        let e = Message::new(
            h(13),
            Body::Trade {
                order_ref: 0,
                side: Side::Buy,
                shares: 400,
                stock: *AAPL,
                price: 1_234_550,
                match_number: 9_000_003,
            },
        );
        assert_eq!(enc(e), p);

        let q = Spec::new(b'Q', 40, 13, 7, TS)
            .u64(11, 5_000_000_000)
            .at(19, AAPL)
            .u32(27, 1_234_500)
            .u64(31, 9_000_004)
            .at(39, b"O")
            .b;
        let Ok(View::CrossTrade(v)) = view(&q) else {
            panic!()
        };
        assert_eq!(
            (v.shares(), &v.stock(), v.price()),
            (5_000_000_000, AAPL, 1_234_500)
        );
        assert_eq!((v.match_number(), v.cross_type()), (9_000_004, b'O'));
        let e = Message::new(
            h(13),
            Body::CrossTrade {
                shares: 5_000_000_000,
                stock: *AAPL,
                price: 1_234_500,
                match_number: 9_000_004,
                cross_type: b'O',
            },
        );
        assert_eq!(enc(e), q);

        let b = Spec::new(b'B', 19, 13, 7, TS).u64(11, 9_000_003).b;
        let Ok(View::BrokenTrade(v)) = view(&b) else {
            panic!()
        };
        assert_eq!(v.match_number(), 9_000_003);
        let e = Message::new(
            h(13),
            Body::BrokenTrade {
                match_number: 9_000_003,
            },
        );
        assert_eq!(enc(e), b);
    }

    #[test]
    fn the_types_without_views_encode_at_the_spec_offsets() {
        let cases: Vec<(Vec<u8>, Message)> = vec![
            (
                Spec::new(b'Y', 20, 13, 7, TS).at(11, AAPL).at(19, b"1").b,
                Message::new(
                    h(13),
                    Body::RegSho {
                        stock: *AAPL,
                        action: b'1',
                    },
                ),
            ),
            (
                Spec::new(b'L', 26, 13, 7, TS)
                    .at(11, b"NITE")
                    .at(15, AAPL)
                    .at(23, b"Y")
                    .at(24, b"N")
                    .at(25, b"A")
                    .b,
                Message::new(
                    h(13),
                    Body::ParticipantPosition {
                        mpid: *b"NITE",
                        stock: *AAPL,
                        primary: b'Y',
                        mode: b'N',
                        state: b'A',
                    },
                ),
            ),
            (
                Spec::new(b'V', 35, 0, 7, TS)
                    .u64(11, 1)
                    .u64(19, 2)
                    .u64(27, 3)
                    .b,
                Message::new(
                    h(0),
                    Body::MwcbDecline {
                        level1: 1,
                        level2: 2,
                        level3: 3,
                    },
                ),
            ),
            (
                Spec::new(b'W', 12, 0, 7, TS).at(11, b"1").b,
                Message::new(h(0), Body::MwcbStatus { level: b'1' }),
            ),
            (
                Spec::new(b'K', 28, 13, 7, TS)
                    .at(11, AAPL)
                    .u32(19, 36_000)
                    .at(23, b"A")
                    .u32(24, 200_000)
                    .b,
                Message::new(
                    h(13),
                    Body::IpoQuoting {
                        stock: *AAPL,
                        release_time: 36_000,
                        qualifier: b'A',
                        price: 200_000,
                    },
                ),
            ),
            (
                Spec::new(b'J', 35, 13, 7, TS)
                    .at(11, AAPL)
                    .u32(19, 10)
                    .u32(23, 11)
                    .u32(27, 9)
                    .u32(31, 1)
                    .b,
                Message::new(
                    h(13),
                    Body::LuldCollar {
                        stock: *AAPL,
                        reference: 10,
                        upper: 11,
                        lower: 9,
                        extension: 1,
                    },
                ),
            ),
            (
                Spec::new(b'I', 50, 13, 7, TS)
                    .u64(11, 1000)
                    .u64(19, 200)
                    .at(27, b"B")
                    .at(28, AAPL)
                    .u32(36, 5)
                    .u32(40, 6)
                    .u32(44, 7)
                    .at(48, b"O")
                    .at(49, b"L")
                    .b,
                Message::new(
                    h(13),
                    Body::Imbalance {
                        paired: 1000,
                        imbalance: 200,
                        direction: b'B',
                        stock: *AAPL,
                        far: 5,
                        near: 6,
                        reference: 7,
                        cross_type: b'O',
                        variation: b'L',
                    },
                ),
            ),
            (
                Spec::new(b'N', 20, 13, 7, TS).at(11, AAPL).at(19, b"A").b,
                Message::new(
                    h(13),
                    Body::RetailInterest {
                        stock: *AAPL,
                        flag: b'A',
                    },
                ),
            ),
            (
                Spec::new(b'O', 48, 13, 7, TS)
                    .at(11, AAPL)
                    .at(19, b"Y")
                    .u32(20, 100_000)
                    .u32(24, 300_000)
                    .u32(28, 200_000)
                    .u64(32, 36_000)
                    .u32(40, 150_000)
                    .u32(44, 250_000)
                    .b,
                Message::new(
                    h(13),
                    Body::Dlcr {
                        stock: *AAPL,
                        open_eligibility: b'Y',
                        min_price: 100_000,
                        max_price: 300_000,
                        near_price: 200_000,
                        near_time: 36_000,
                        lower_collar: 150_000,
                        upper_collar: 250_000,
                    },
                ),
            ),
        ];
        for (spec, msg) in cases {
            let t = spec[0];
            assert_eq!(enc(msg), spec, "type {}", t as char);
            let k = MsgType::from_byte(t).unwrap();
            assert_eq!(view(&spec), Ok(View::Other(k, &spec[..])));
            assert_eq!(
                stock_locate(&spec),
                Some(if t == b'V' || t == b'W' { 0 } else { 13 })
            );
            assert_eq!(
                (tracking_number(&spec), timestamp(&spec)),
                (Some(7), Some(TS))
            );
            let want_stock = k.stock_offset().map(|_| AAPL);
            assert_eq!(stock(&spec), want_stock, "type {}", t as char);
        }
    }

    #[test]
    fn encoder_writes_exactly_the_fixed_length() {
        for m in samples() {
            let b = enc(m);
            assert_eq!(Some(b.len()), fixed_len(b[0]), "{m:?}");
            assert_eq!(check(&b), Check::Ok(m.msg_type()));
            let mut v = Vec::new();
            assert_eq!(m.encode(&mut v), b.len() + 2);
            assert_eq!(usize::from(u16::from_be_bytes([v[0], v[1]])), b.len());
        }
    }

    /// One message of every type.
    fn samples() -> Vec<Message> {
        let s = *AAPL;
        let bodies = [
            Body::SystemEvent { event: b'O' },
            Body::StockDirectory {
                stock: s,
                market_category: b'Q',
                financial_status: b'N',
                round_lot_size: 100,
                round_lots_only: b'N',
                issue_classification: b'C',
                issue_subtype: *b"  ",
                authenticity: b'P',
                short_sale_threshold: b'N',
                ipo_flag: b'N',
                luld_tier: b'1',
                etp_flag: b'N',
                etp_leverage: 0,
                inverse: b'N',
            },
            Body::TradingAction {
                stock: s,
                state: b'T',
                reserved: b' ',
                reason: *b"    ",
            },
            Body::RegSho {
                stock: s,
                action: b'0',
            },
            Body::ParticipantPosition {
                mpid: *b"NITE",
                stock: s,
                primary: b'Y',
                mode: b'N',
                state: b'A',
            },
            Body::MwcbDecline {
                level1: 1,
                level2: 2,
                level3: 3,
            },
            Body::MwcbStatus { level: b'1' },
            Body::IpoQuoting {
                stock: s,
                release_time: 1,
                qualifier: b'A',
                price: 2,
            },
            Body::LuldCollar {
                stock: s,
                reference: 1,
                upper: 2,
                lower: 3,
                extension: 4,
            },
            Body::OperationalHalt {
                stock: s,
                market: b'Q',
                action: b'H',
            },
            Body::AddOrder {
                order_ref: 1,
                side: Side::Buy,
                shares: 1,
                stock: s,
                price: 1,
                attribution: None,
            },
            Body::AddOrder {
                order_ref: 1,
                side: Side::Sell,
                shares: 1,
                stock: s,
                price: 1,
                attribution: Some(*b"GSCO"),
            },
            Body::Executed {
                order_ref: 1,
                shares: 1,
                match_number: 1,
            },
            Body::ExecutedWithPrice {
                order_ref: 1,
                shares: 1,
                match_number: 1,
                printable: true,
                price: 1,
            },
            Body::Cancel {
                order_ref: 1,
                shares: 1,
            },
            Body::Delete { order_ref: 1 },
            Body::Replace {
                original_ref: 1,
                new_ref: 2,
                shares: 1,
                price: 1,
            },
            Body::Trade {
                order_ref: 0,
                side: Side::Buy,
                shares: 1,
                stock: s,
                price: 1,
                match_number: 1,
            },
            Body::CrossTrade {
                shares: 1,
                stock: s,
                price: 1,
                match_number: 1,
                cross_type: b'C',
            },
            Body::BrokenTrade { match_number: 1 },
            Body::Imbalance {
                paired: 1,
                imbalance: 1,
                direction: b'B',
                stock: s,
                far: 1,
                near: 1,
                reference: 1,
                cross_type: b'C',
                variation: b' ',
            },
            Body::RetailInterest {
                stock: s,
                flag: b'N',
            },
            Body::Dlcr {
                stock: s,
                open_eligibility: b'N',
                min_price: 1,
                max_price: 1,
                near_price: 1,
                near_time: 1,
                lower_collar: 1,
                upper_collar: 1,
            },
        ];
        let out: Vec<Message> = bodies.into_iter().map(|b| Message::new(h(13), b)).collect();
        let mut seen: Vec<u8> = out.iter().map(|m| m.msg_type().byte()).collect();
        seen.sort_unstable();
        let mut all = TYPES.to_vec();
        all.sort_unstable();
        assert_eq!(seen, all, "one sample of every type");
        out
    }

    #[test]
    fn classification_unknown_malformed_truncated() {
        assert_eq!(check(b""), Check::Malformed);
        assert_eq!(check(b"z12345"), Check::Unknown(b'z'));
        assert_eq!(check(&[b'A'; 35]), Check::Malformed);
        assert_eq!(check(&[b'A'; 37]), Check::Malformed);
        assert_eq!(check(&[b'D'; 19]), Check::Ok(MsgType::Delete));
        assert_eq!(view(&[b'A'; 35]), Err(Check::Malformed));
        assert_eq!(view(b"z"), Err(Check::Unknown(b'z')));
        // A prefix announcing more than is there: one truncated tail.
        let buf = [0u8, 19, b'D', 1, 2];
        let frames: Vec<_> = Framer::new(&buf).collect();
        assert_eq!(frames, vec![Frame::Truncated(&buf[..])]);
        assert_eq!(frames[0].check(), Check::Truncated);
        // Half a prefix.
        assert_eq!(
            Framer::new(&[0u8]).collect::<Vec<_>>(),
            vec![Frame::Truncated(&[0u8][..])]
        );
    }

    #[test]
    fn framer_skips_unknown_types_by_their_prefix() {
        let mut buf = Vec::new();
        let d = Message::new(h(1), Body::Delete { order_ref: 5 });
        d.encode(&mut buf);
        buf.extend_from_slice(&[0, 4, b'z', 1, 2, 3]); // unknown, 4 bytes
        buf.extend_from_slice(&[0, 0]); // empty frame
        buf.extend_from_slice(&[0, 3, b'D', 0, 0]); // D of the wrong length
        d.encode(&mut buf);
        buf.extend_from_slice(&[0, 36, b'A', 0]); // cut short
        let checks: Vec<Check> = Framer::new(&buf).map(|f| f.check()).collect();
        assert_eq!(
            checks,
            vec![
                Check::Ok(MsgType::Delete),
                Check::Unknown(b'z'),
                Check::Malformed,
                Check::Malformed,
                Check::Ok(MsgType::Delete),
                Check::Truncated,
            ]
        );
        let mut f = Framer::new(&buf);
        f.by_ref().for_each(drop);
        assert_eq!(f.position(), buf.len());
    }

    /// A reader that hands out at most `step` bytes per read (and an
    /// `Interrupted` now and then), like a pipe or a gzip decoder.
    struct Dribble<'a> {
        data: &'a [u8],
        step: usize,
        calls: usize,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls % 7 == 0 {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn owned(f: Frame<'_>) -> (bool, Vec<u8>) {
        match f {
            Frame::Message(m) => (true, m.to_vec()),
            Frame::Truncated(t) => (false, t.to_vec()),
        }
    }

    fn file_frames(data: &[u8], step: usize, cap: usize) -> Vec<(bool, Vec<u8>)> {
        let src = Dribble {
            data,
            step,
            calls: 0,
        };
        let mut ff = FileFramer::with_capacity(src, cap);
        let mut out = Vec::new();
        while let Some(f) = ff.next_frame().unwrap() {
            out.push(owned(f));
        }
        assert_eq!(ff.bytes_consumed(), data.len() as u64);
        out
    }

    #[test]
    fn file_framer_completes_messages_split_across_chunks() {
        let mut buf = Vec::new();
        let mut n = 0;
        // Enough to fill several minimum-size buffers, with every type and
        // a big unknown frame that straddles a chunk boundary.
        while buf.len() < 3 * MIN_CHUNK {
            for m in samples() {
                m.encode(&mut buf);
                n += 1;
            }
            if n % 2300 == 0 {
                buf.extend_from_slice(&u16::MAX.to_be_bytes());
                buf.extend(std::iter::repeat(b'z').take(usize::from(u16::MAX)));
                n += 1;
            }
        }
        buf.extend_from_slice(&[0, 36, b'A']); // truncated tail
        let want: Vec<_> = Framer::new(&buf).map(owned).collect();
        assert_eq!(want.len(), n + 1);
        for step in [1, 7, 4096, 65_537, usize::MAX] {
            for cap in [0, MIN_CHUNK + 1, DEFAULT_CHUNK] {
                if step == 1 && cap == DEFAULT_CHUNK {
                    continue; // same path as cap = MIN_CHUNK, only slower
                }
                assert_eq!(file_frames(&buf, step, cap), want, "step {step} cap {cap}");
            }
        }
    }

    #[test]
    fn file_framer_passes_read_errors_on() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let mut ff = FileFramer::new(Broken);
        assert!(ff.next_frame().is_err());
        let mut empty = FileFramer::new(&b""[..]);
        assert_eq!(empty.next_frame().unwrap(), None);
        assert_eq!(empty.next_frame().unwrap(), None);
    }

    #[test]
    fn trim_and_pad_stock() {
        assert_eq!(trim_stock(b"AAPL    "), b"AAPL");
        assert_eq!(trim_stock(b"        "), b"");
        assert_eq!(trim_stock(b"ABCDEFGH"), b"ABCDEFGH");
        assert_eq!(&pad_stock("MSFT"), b"MSFT    ");
        assert_eq!(&pad_stock("TOOLONGNAME"), b"TOOLONGN");
    }

    /// Every accessor of whatever view a message dispatches to.
    fn touch_all(msg: &[u8]) -> u64 {
        let _ = (
            stock_locate(msg),
            tracking_number(msg),
            timestamp(msg),
            stock(msg),
        );
        match view(msg) {
            Err(_) => 0,
            Ok(v) => match v {
                View::SystemEvent(v) => u64::from(v.event_code()) + v.timestamp(),
                View::StockDirectory(v) => {
                    u64::from(v.round_lot_size())
                        + u64::from(v.etp_leverage())
                        + u64::from(v.inverse())
                        + u64::from(v.issue_subtype()[1])
                }
                View::TradingAction(v) => u64::from(v.state()) + u64::from(v.reason()[3]),
                View::OperationalHalt(v) => u64::from(v.action()) + u64::from(v.market_code()),
                View::AddOrder(v) => {
                    v.order_ref()
                        ^ u64::from(v.shares())
                        ^ u64::from(v.price())
                        ^ u64::from(v.side_byte())
                        ^ v.attribution().map_or(0, |a| u64::from(a[3]))
                }
                View::Executed(v) => v.order_ref() ^ v.match_number() ^ u64::from(v.shares()),
                View::ExecutedWithPrice(v) => {
                    v.order_ref() ^ u64::from(v.price()) ^ u64::from(v.printable())
                }
                View::Cancel(v) => v.order_ref() ^ u64::from(v.shares()),
                View::Delete(v) => v.order_ref(),
                View::Replace(v) => v.new_ref() ^ u64::from(v.price()),
                View::Trade(v) => v.match_number() ^ u64::from(v.price()),
                View::CrossTrade(v) => v.shares() ^ u64::from(v.cross_type()),
                View::BrokenTrade(v) => v.match_number(),
                View::Other(_, b) => b.len() as u64,
            },
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut sum = 0u64;
            for f in Framer::new(&bytes) {
                let _ = f.check();
                if let Frame::Message(m) = f {
                    sum = sum.wrapping_add(touch_all(m));
                }
            }
            // And the bytes as one message, with no framing at all.
            sum = sum.wrapping_add(touch_all(&bytes));
            std::hint::black_box(sum);
        }

        #[test]
        fn messages_of_a_known_type_and_length_always_dispatch(
            t in proptest::sample::select(TYPES.to_vec()),
            fill in proptest::collection::vec(proptest::num::u8::ANY, MAX_LEN),
        ) {
            let n = fixed_len(t).unwrap();
            let mut m = fill[..n].to_vec();
            m[0] = t;
            proptest::prop_assert!(view(&m).is_ok());
            touch_all(&m);
        }

        #[test]
        fn file_framer_agrees_with_framer_for_any_split(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000),
            step in 1usize..300,
        ) {
            let want: Vec<_> = Framer::new(&bytes).map(owned).collect();
            proptest::prop_assert_eq!(file_frames(&bytes, step, 0), want);
        }
    }
}
