//! NASDAQ MoldUDP64 (Protocol Specification V 1.00): the packet codec,
//! nothing else. No socket, thread or clock; nothing allocates.
//!
//! # The format
//!
//! Every number is big-endian. A *downstream packet* (multicast feed, and
//! the re-request server's unicast answers) is a 20-byte header followed by
//! message blocks:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 10 | session (alphanumeric, padded with spaces) |
//! | 10 | 8 | sequence number of the first message in the packet |
//! | 18 | 2 | message count: `0` heartbeat, `0xFFFF` end of session |
//!
//! then `count` blocks, each a 2-byte message length (not counting
//! itself) and that many bytes of message data. The messages of a packet
//! are numbered implicitly: `seq`, `seq + 1`, ... Sequence numbers start
//! at 1 in each session. A heartbeat and an end-of-session packet carry no
//! blocks; their sequence number is the *next* one the server will send.
//!
//! A *request packet*, sent by a receiver to a re-request server, is the
//! same 20 bytes with a different meaning for the last field:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 10 | session |
//! | 10 | 8 | first sequence number wanted |
//! | 18 | 2 | requested message count |
//!
//! and the server answers with ordinary downstream packets, by unicast.
//!
//! # What this module decides
//!
//! A UDP datagram arrives whole or not at all, so a packet whose blocks do
//! not exactly fill it (cut short, or with bytes left over) was built
//! wrongly or damaged on the way: [`Packet::parse`] refuses it as a whole
//! ([`PacketError`]) rather than deliver some of its messages. A receiver
//! then sees the messages as missing and asks for them again, which is the
//! protocol's own repair. So is a sequence number of 0 (numbering starts
//! at 1) and a packet whose numbering would run past `u64::MAX`. Once
//! parsed, [`Messages`] walks blocks already checked to fit, so it cannot
//! go out of bounds.

use std::fmt;

/// Bytes of the session field.
pub const SESSION_LEN: usize = 10;
/// Bytes of a downstream packet header.
pub const HEADER_LEN: usize = 20;
/// Bytes of a request packet.
pub const REQUEST_LEN: usize = 20;
/// Bytes of a message block's length field.
pub const BLOCK_PREFIX_LEN: usize = 2;
/// Message count of a heartbeat.
pub const HEARTBEAT: u16 = 0;
/// Message count of an end-of-session packet.
pub const END_OF_SESSION: u16 = 0xFFFF;
/// Most message blocks one packet can carry (`0xFFFF` means end of session).
pub const MAX_MESSAGES: u16 = 0xFFFE;
/// The sequence number of a session's first message.
pub const FIRST_SEQ: u64 = 1;
/// The largest UDP payload over IPv4 (65535 - 20 IP - 8 UDP): no packet is
/// longer, so a receive buffer this size never truncates one.
pub const MAX_DATAGRAM: usize = 65_507;

/// A MoldUDP64 session name: 10 bytes, by convention ASCII letters and
/// digits padded on the right with spaces. Compared as raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Session(pub [u8; SESSION_LEN]);

impl Session {
    /// A session from at most 10 printable ASCII characters (no spaces
    /// inside), padded with spaces; `None` otherwise.
    pub fn from_name(name: &str) -> Option<Session> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > SESSION_LEN || !b.iter().all(|c| c.is_ascii_graphic()) {
            return None;
        }
        let mut s = [b' '; SESSION_LEN];
        s[..b.len()].copy_from_slice(b);
        Some(Session(s))
    }

    /// The raw 10 bytes.
    pub fn bytes(&self) -> &[u8; SESSION_LEN] {
        &self.0
    }

    /// The name without its trailing spaces.
    pub fn trimmed(&self) -> &[u8] {
        let end = self.0.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
        &self.0[..end]
    }
}

impl fmt::Display for Session {
    /// The trimmed name; bytes that are not printable ASCII are escaped
    /// (`\xNN`), since a session comes off the network.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &c in self.trimmed() {
            if c.is_ascii_graphic() || c == b' ' {
                write!(f, "{}", char::from(c))?;
            } else {
                write!(f, "\\x{c:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Session(\"{self}\")")
    }
}

/// What a downstream packet is, by its message count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `n` (1..=0xFFFE) messages starting at the header's sequence number.
    Messages(u16),
    /// No messages; the sequence number is the next one to be sent.
    Heartbeat,
    /// The session is over; the sequence number is one past its last
    /// message. Repeated for a while, during which re-requests are still
    /// answered.
    EndOfSession,
}

/// A downstream packet header (also the layout of a request packet, see
/// [`Request`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Session.
    pub session: Session,
    /// First message's sequence number (heartbeat, end of session: the
    /// next one).
    pub seq: u64,
    /// Message count as sent (0 and 0xFFFF are [`Kind`]s, not counts).
    pub count: u16,
}

impl Header {
    /// The first 20 bytes of `buf` as a header, unchecked; `None` when
    /// `buf` is shorter.
    pub fn read(buf: &[u8]) -> Option<Header> {
        let h = buf.first_chunk::<HEADER_LEN>()?;
        let mut session = [0u8; SESSION_LEN];
        session.copy_from_slice(&h[..SESSION_LEN]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&h[10..18]);
        Some(Header {
            session: Session(session),
            seq: u64::from_be_bytes(seq),
            count: u16::from_be_bytes([h[18], h[19]]),
        })
    }

    /// The header's 20 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..SESSION_LEN].copy_from_slice(&self.session.0);
        b[10..18].copy_from_slice(&self.seq.to_be_bytes());
        b[18..20].copy_from_slice(&self.count.to_be_bytes());
        b
    }

    /// What the packet is.
    pub fn kind(&self) -> Kind {
        match self.count {
            HEARTBEAT => Kind::Heartbeat,
            END_OF_SESSION => Kind::EndOfSession,
            n => Kind::Messages(n),
        }
    }

    /// Messages the packet carries (0 for a heartbeat or end of session).
    pub fn messages(&self) -> u16 {
        match self.kind() {
            Kind::Messages(n) => n,
            Kind::Heartbeat | Kind::EndOfSession => 0,
        }
    }

    /// One past the last sequence number this packet accounts for: `seq +
    /// messages` (for a heartbeat or end of session, `seq` itself, the next
    /// expected). `None` if that passes `u64::MAX`.
    pub fn end_seq(&self) -> Option<u64> {
        self.seq.checked_add(u64::from(self.messages()))
    }
}

/// Why a datagram is not a well-formed downstream packet. The packet is
/// dropped whole; its messages count as missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketError {
    /// Shorter than the 20-byte header.
    Short {
        /// The datagram's length.
        len: usize,
    },
    /// The message count announces more blocks than the datagram holds:
    /// block `index` (0-based) is cut short or missing.
    BlocksShort {
        /// The block that does not fit.
        index: u16,
    },
    /// Bytes left over after the last announced block (or after the
    /// header of a heartbeat or end-of-session packet).
    Trailing {
        /// How many.
        extra: usize,
    },
    /// Sequence number 0: sessions number their messages from 1.
    ZeroSequence,
    /// `seq + count` passes `u64::MAX`.
    SequenceOverflow,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Short { len } => {
                write!(f, "{len} bytes, shorter than the {HEADER_LEN}-byte header")
            }
            PacketError::BlocksShort { index } => {
                write!(f, "message block {index} runs past the end of the packet")
            }
            PacketError::Trailing { extra } => {
                write!(f, "{extra} bytes after the last message block")
            }
            PacketError::ZeroSequence => f.write_str("sequence number 0"),
            PacketError::SequenceOverflow => f.write_str("sequence numbers run past 2^64"),
        }
    }
}

impl std::error::Error for PacketError {}

/// A parsed downstream packet: its header and its message blocks, checked
/// to fill the datagram exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    header: Header,
    blocks: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Parse and check a whole datagram (see the module documentation for
    /// what is refused). Walks the blocks once; copies nothing.
    pub fn parse(buf: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        let header = Header::read(buf).ok_or(PacketError::Short { len: buf.len() })?;
        let blocks = buf.get(HEADER_LEN..).unwrap_or_default();
        if header.seq == 0 {
            return Err(PacketError::ZeroSequence);
        }
        if header.end_seq().is_none() {
            return Err(PacketError::SequenceOverflow);
        }
        let mut rest = blocks;
        for index in 0..header.messages() {
            rest = split_block(rest)
                .ok_or(PacketError::BlocksShort { index })?
                .1;
        }
        if !rest.is_empty() {
            return Err(PacketError::Trailing { extra: rest.len() });
        }
        Ok(Packet { header, blocks })
    }

    /// The header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The message blocks, as they follow the header.
    pub fn blocks(&self) -> &'a [u8] {
        self.blocks
    }

    /// The messages, each with its sequence number.
    pub fn messages(&self) -> Messages<'a> {
        Messages {
            rest: self.blocks,
            seq: self.header.seq,
            left: self.header.messages(),
        }
    }
}

/// The first block of `buf`: its data and what follows it; `None` if it
/// does not fit.
#[inline]
fn split_block(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = buf.split_first_chunk::<BLOCK_PREFIX_LEN>()?;
    let n = usize::from(u16::from_be_bytes(*len));
    if n > rest.len() {
        return None;
    }
    Some(rest.split_at(n))
}

/// The messages of a [`Packet`] in order, each with its sequence number.
#[derive(Clone, Debug)]
pub struct Messages<'a> {
    rest: &'a [u8],
    seq: u64,
    left: u16,
}

impl<'a> Iterator for Messages<'a> {
    type Item = (u64, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<(u64, &'a [u8])> {
        if self.left == 0 {
            return None;
        }
        // Parse checked that every block fits; a failure here can only
        // mean a Messages built from an unchecked packet, and ends it.
        let (msg, rest) = split_block(self.rest)?;
        let seq = self.seq;
        self.rest = rest;
        self.left -= 1;
        // Parse checked that seq + count fits; at the last message this is
        // one past it, which fits too.
        self.seq = self.seq.wrapping_add(1);
        Some((seq, msg))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

impl ExactSizeIterator for Messages<'_> {}

impl<'a> Messages<'a> {
    /// The sequence number the next message will have.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// The blocks not yet returned (an offset into [`Packet::blocks`] is
    /// `blocks.len() - remaining_bytes().len()`).
    pub fn remaining_bytes(&self) -> &'a [u8] {
        self.rest
    }
}

/// A request packet: "send me `count` messages of `session` from `seq` on".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Session.
    pub session: Session,
    /// First sequence number wanted.
    pub seq: u64,
    /// How many messages.
    pub count: u16,
}

/// Why a datagram is not a request packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Not exactly 20 bytes.
    Length {
        /// The datagram's length.
        len: usize,
    },
    /// Sequence number 0 (sessions start at 1).
    ZeroSequence,
    /// A count of 0 asks for nothing.
    ZeroCount,
    /// `seq + count` passes `u64::MAX`.
    SequenceOverflow,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Length { len } => {
                write!(f, "{len} bytes; a request packet is {REQUEST_LEN}")
            }
            RequestError::ZeroSequence => f.write_str("sequence number 0"),
            RequestError::ZeroCount => f.write_str("a requested message count of 0"),
            RequestError::SequenceOverflow => f.write_str("sequence numbers run past 2^64"),
        }
    }
}

impl std::error::Error for RequestError {}

impl Request {
    /// Parse a request datagram.
    pub fn parse(buf: &[u8]) -> Result<Request, RequestError> {
        if buf.len() != REQUEST_LEN {
            return Err(RequestError::Length { len: buf.len() });
        }
        let h = Header::read(buf).ok_or(RequestError::Length { len: buf.len() })?;
        if h.seq == 0 {
            return Err(RequestError::ZeroSequence);
        }
        if h.count == 0 {
            return Err(RequestError::ZeroCount);
        }
        if h.seq.checked_add(u64::from(h.count)).is_none() {
            return Err(RequestError::SequenceOverflow);
        }
        Ok(Request {
            session: h.session,
            seq: h.seq,
            count: h.count,
        })
    }

    /// The request's 20 bytes.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        Header {
            session: self.session,
            seq: self.seq,
            count: self.count,
        }
        .encode()
    }
}

/// A heartbeat: no messages, `next_seq` the next one the server will send.
pub fn heartbeat(session: Session, next_seq: u64) -> [u8; HEADER_LEN] {
    Header {
        session,
        seq: next_seq,
        count: HEARTBEAT,
    }
    .encode()
}

/// An end-of-session packet: `next_seq` is one past the session's last
/// message.
pub fn end_of_session(session: Session, next_seq: u64) -> [u8; HEADER_LEN] {
    Header {
        session,
        seq: next_seq,
        count: END_OF_SESSION,
    }
    .encode()
}

/// Why a message did not go into a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// Its block would make the packet longer than its buffer (send the
    /// packet and start the next one with this message).
    Full,
    /// The packet already holds [`MAX_MESSAGES`].
    TooMany,
    /// Longer than a block's 2-byte length can say (65535 bytes).
    TooLong {
        /// Its length.
        len: usize,
    },
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full => f.write_str("the packet is full"),
            PushError::TooMany => write!(f, "the packet holds {MAX_MESSAGES} messages already"),
            PushError::TooLong { len } => {
                write!(
                    f,
                    "a message of {len} bytes is longer than a block can carry"
                )
            }
        }
    }
}

impl std::error::Error for PushError {}

/// Builds one downstream packet in a caller's buffer, whose length is the
/// largest packet wanted (an MTU's worth, say). Writes in place; the header's
/// count is filled in by [`PacketWriter::finish`].
#[derive(Debug)]
pub struct PacketWriter<'b> {
    buf: &'b mut [u8],
    session: Session,
    seq: u64,
    len: usize,
    count: u16,
}

impl<'b> PacketWriter<'b> {
    /// Start a packet whose first message will be `seq`; `None` when `buf`
    /// cannot hold even the header.
    pub fn new(buf: &'b mut [u8], session: Session, seq: u64) -> Option<PacketWriter<'b>> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        Some(PacketWriter {
            buf,
            session,
            seq,
            len: HEADER_LEN,
            count: 0,
        })
    }

    /// Append one message as a block. On an error nothing is written.
    pub fn push(&mut self, msg: &[u8]) -> Result<(), PushError> {
        let n = u16::try_from(msg.len()).map_err(|_| PushError::TooLong { len: msg.len() })?;
        if self.count >= MAX_MESSAGES {
            return Err(PushError::TooMany);
        }
        let end = self.len + BLOCK_PREFIX_LEN + msg.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(PushError::Full)?;
        let (prefix, data) = dst.split_at_mut(BLOCK_PREFIX_LEN);
        prefix.copy_from_slice(&n.to_be_bytes());
        data.copy_from_slice(msg);
        self.len = end;
        self.count += 1;
        Ok(())
    }

    /// Messages so far.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Bytes so far, header included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no message has been pushed yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes a message of `msg_len` bytes would add.
    pub fn block_len(msg_len: usize) -> usize {
        BLOCK_PREFIX_LEN + msg_len
    }

    /// Write the header and hand back the packet's bytes. A packet with no
    /// message is a heartbeat (count 0) for `seq`.
    pub fn finish(self) -> &'b [u8] {
        let h = Header {
            session: self.session,
            seq: self.seq,
            count: self.count,
        }
        .encode();
        let (head, _) = self.buf.split_at_mut(HEADER_LEN);
        head.copy_from_slice(&h);
        &self.buf[..self.len]
    }
}

/// Where a MoldUDP64 feed is received or sent:
/// `udp://[IFACE_ADDR;]GROUP_OR_ADDR:PORT`. A multicast group is joined
/// (receiver) or sent to (sender) on the interface whose IPv4 address is
/// `IFACE_ADDR` (the kernel's choice without one); a unicast address is
/// bound (receiver) or sent to (sender), and takes no interface. IPv4 only,
/// as the exchanges' feeds are. Parsing is all this does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpEndpoint {
    /// The interface address before `;`, if any.
    pub iface: Option<std::net::Ipv4Addr>,
    /// The group or unicast address and port.
    pub addr: std::net::SocketAddrV4,
}

impl UdpEndpoint {
    /// Parse `udp://[IFACE_ADDR;]GROUP_OR_ADDR:PORT`; the error says what is
    /// wrong, for a usage message.
    pub fn parse(s: &str) -> Result<UdpEndpoint, String> {
        let rest = s.strip_prefix("udp://").ok_or_else(|| {
            format!("'{s}' does not start with udp:// (udp://[IFACE_ADDR;]GROUP_OR_ADDR:PORT)")
        })?;
        let (iface, addr) = match rest.split_once(';') {
            Some((i, a)) => (Some(i), a),
            None => (None, rest),
        };
        let addr: std::net::SocketAddrV4 = addr.parse().map_err(|_| {
            format!("'{addr}' is not an IPv4 address and port (e.g. 233.54.12.111:26477)")
        })?;
        let iface = match iface {
            None => None,
            Some(i) => Some(i.parse::<std::net::Ipv4Addr>().map_err(|_| {
                format!(
                    "interface '{i}' is not an IPv4 address (give the NIC's address, not its name)"
                )
            })?),
        };
        if iface.is_some() && !addr.ip().is_multicast() {
            return Err(format!(
                "'{s}': an interface is only for a multicast group; {} is a unicast address, \
                 drop the 'IFACE_ADDR;' part",
                addr.ip()
            ));
        }
        Ok(UdpEndpoint { iface, addr })
    }

    /// Whether the address is a multicast group.
    pub fn is_multicast(&self) -> bool {
        self.addr.ip().is_multicast()
    }
}

impl fmt::Display for UdpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.iface {
            Some(i) => write!(f, "udp://{i};{}", self.addr),
            None => write!(f, "udp://{}", self.addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &[u8; 10] = b"SESSION001";

    /// Bytes laid out by hand from the specification's tables.
    fn spec_packet() -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(S); // Session, offset 0, 10 bytes
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x01, 0x02]); // Sequence Number = 258
        p.extend_from_slice(&[0x00, 0x03]); // Message Count = 3
        p.extend_from_slice(&[0x00, 0x03, b'a', b'b', b'c']); // block: length 3, "abc"
        p.extend_from_slice(&[0x00, 0x00]); // block: length 0 (an empty message)
        p.extend_from_slice(&[0x00, 0x01, b'z']); // block: length 1, "z"
        p
    }

    #[test]
    fn a_packet_laid_out_by_hand_parses_into_its_fields_and_numbered_messages() {
        let b = spec_packet();
        let p = Packet::parse(&b).unwrap();
        let h = p.header();
        assert_eq!(h.session.bytes(), S);
        assert_eq!(h.session.to_string(), "SESSION001");
        assert_eq!(h.seq, 258);
        assert_eq!(h.count, 3);
        assert_eq!(h.kind(), Kind::Messages(3));
        assert_eq!(h.end_seq(), Some(261));
        let m: Vec<(u64, &[u8])> = p.messages().collect();
        assert_eq!(
            m,
            vec![(258, &b"abc"[..]), (259, &b""[..]), (260, &b"z"[..])]
        );
        assert_eq!(p.messages().len(), 3);
        assert_eq!(p.blocks().len(), b.len() - HEADER_LEN);
        assert_eq!(Header::read(&b).unwrap().encode(), b[..20]);
    }

    #[test]
    fn heartbeat_and_end_of_session_are_bare_headers_with_the_next_sequence() {
        let hb = heartbeat(Session(*S), 7);
        assert_eq!(
            hb,
            [
                b'S', b'E', b'S', b'S', b'I', b'O', b'N', b'0', b'0', b'1', 0, 0, 0, 0, 0, 0, 0, 7,
                0, 0
            ]
        );
        let p = Packet::parse(&hb).unwrap();
        assert_eq!(p.header().kind(), Kind::Heartbeat);
        assert_eq!(p.header().end_seq(), Some(7));
        assert_eq!(p.messages().count(), 0);
        let eos = end_of_session(Session(*S), 1 << 40);
        assert_eq!(&eos[10..18], &[0, 0, 1, 0, 0, 0, 0, 0]);
        assert_eq!(&eos[18..], &[0xFF, 0xFF]);
        let p = Packet::parse(&eos).unwrap();
        assert_eq!(p.header().kind(), Kind::EndOfSession);
        assert_eq!(p.header().messages(), 0);
        // Either with bytes after it is not what it says.
        let mut longer = eos.to_vec();
        longer.push(0);
        assert_eq!(
            Packet::parse(&longer),
            Err(PacketError::Trailing { extra: 1 })
        );
    }

    #[test]
    fn a_request_is_session_sequence_and_count() {
        let r = Request {
            session: Session::from_name("ABC").unwrap(),
            seq: 0x0102_0304_0506_0708,
            count: 0x0A0B,
        };
        let b = r.encode();
        assert_eq!(&b[..10], b"ABC       ");
        assert_eq!(&b[10..18], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[18..], &[0x0A, 0x0B]);
        assert_eq!(Request::parse(&b), Ok(r));
        assert_eq!(
            Request::parse(&b[..19]),
            Err(RequestError::Length { len: 19 })
        );
        let mut zero = b;
        zero[18..].copy_from_slice(&[0, 0]);
        assert_eq!(Request::parse(&zero), Err(RequestError::ZeroCount));
        let mut seq0 = b;
        seq0[10..18].copy_from_slice(&[0; 8]);
        assert_eq!(Request::parse(&seq0), Err(RequestError::ZeroSequence));
        let mut over = b;
        over[10..18].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(Request::parse(&over), Err(RequestError::SequenceOverflow));
    }

    #[test]
    fn damaged_packets_are_refused_whole() {
        let b = spec_packet();
        assert_eq!(Packet::parse(&b[..19]), Err(PacketError::Short { len: 19 }));
        // Cut inside the last block, and inside the first block's length.
        assert_eq!(
            Packet::parse(&b[..b.len() - 1]),
            Err(PacketError::BlocksShort { index: 2 })
        );
        assert_eq!(
            Packet::parse(&b[..21]),
            Err(PacketError::BlocksShort { index: 0 })
        );
        let mut extra = b.clone();
        extra.extend_from_slice(&[0, 0]);
        assert_eq!(
            Packet::parse(&extra),
            Err(PacketError::Trailing { extra: 2 })
        );
        let mut seq0 = b.clone();
        seq0[10..18].copy_from_slice(&[0; 8]);
        assert_eq!(Packet::parse(&seq0), Err(PacketError::ZeroSequence));
        let mut over = b.clone();
        over[10..18].copy_from_slice(&(u64::MAX - 1).to_be_bytes());
        assert_eq!(Packet::parse(&over), Err(PacketError::SequenceOverflow));
        // The last sequence number a session can hold still parses.
        over[10..18].copy_from_slice(&(u64::MAX - 3).to_be_bytes());
        let p = Packet::parse(&over).unwrap();
        assert_eq!(p.messages().last().map(|(s, _)| s), Some(u64::MAX - 1));
    }

    #[test]
    fn the_writer_builds_what_the_parser_reads_and_stops_at_its_buffer() {
        let mut buf = [0u8; 40];
        let mut w = PacketWriter::new(&mut buf, Session(*S), 9).unwrap();
        assert!(w.is_empty());
        w.push(b"hello").unwrap(); // 20 + 7
        w.push(b"").unwrap(); // + 2 = 29
        assert_eq!(w.push(b"0123456789"), Err(PushError::Full)); // 29 + 12 > 40
        w.push(b"012345678").unwrap(); // 29 + 11 = 40
        assert_eq!(w.push(b""), Err(PushError::Full));
        assert_eq!((w.count(), w.len()), (3, 40));
        let out = w.finish().to_vec();
        let p = Packet::parse(&out).unwrap();
        assert_eq!(p.header().seq, 9);
        let m: Vec<&[u8]> = p.messages().map(|(_, m)| m).collect();
        assert_eq!(m, vec![&b"hello"[..], b"", b"012345678"]);
        // An empty packet is a heartbeat.
        let mut buf = [0u8; 20];
        let w = PacketWriter::new(&mut buf, Session(*S), 5).unwrap();
        assert_eq!(w.finish(), heartbeat(Session(*S), 5));
        assert!(PacketWriter::new(&mut [0u8; 19], Session(*S), 1).is_none());
        let mut big = vec![0u8; 70_000];
        let mut w = PacketWriter::new(&mut big, Session(*S), 1).unwrap();
        assert_eq!(
            w.push(&[0u8; 65_536]),
            Err(PushError::TooLong { len: 65_536 })
        );
    }

    #[test]
    fn session_names_are_padded_printable_ascii() {
        assert_eq!(Session::from_name("X1").unwrap().bytes(), b"X1        ");
        assert_eq!(Session::from_name("X1").unwrap().trimmed(), b"X1");
        assert!(Session::from_name("").is_none());
        assert!(Session::from_name("ELEVENCHARS").is_none());
        assert!(Session::from_name("A B").is_none());
        assert_eq!(Session(*b"AB\x01       ").to_string(), "AB\\x01");
        assert_eq!(Session([b' '; 10]).trimmed(), b"");
    }

    #[test]
    fn udp_endpoints_take_an_interface_only_with_a_group() {
        let e = UdpEndpoint::parse("udp://10.0.0.2;233.54.12.111:26477").unwrap();
        assert_eq!(e.iface, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(e.addr, "233.54.12.111:26477".parse().unwrap());
        assert!(e.is_multicast());
        assert_eq!(e.to_string(), "udp://10.0.0.2;233.54.12.111:26477");
        let u = UdpEndpoint::parse("udp://127.0.0.1:0").unwrap();
        assert_eq!((u.iface, u.is_multicast()), (None, false));
        for bad in [
            "127.0.0.1:5",
            "udp://127.0.0.1",
            "udp://host:5",
            "udp://eth0;239.1.1.1:5",
            "udp://10.0.0.1;127.0.0.1:5",
            "udp://[::1]:5",
        ] {
            assert!(UdpEndpoint::parse(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Ok(p) = Packet::parse(&bytes) {
                let n = p.messages().map(|(_, m)| m.len() + 2).sum::<usize>();
                proptest::prop_assert_eq!(n + HEADER_LEN, bytes.len());
                proptest::prop_assert_eq!(p.messages().count(), usize::from(p.header().messages()));
            }
            let _ = Request::parse(&bytes);
            let _ = Header::read(&bytes).map(|h| (h.kind(), h.end_seq(), h.session.to_string()));
        }

        #[test]
        fn what_the_writer_packs_parses_back_in_order(
            msgs in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..60), 0..40),
            seq in 1u64..u64::MAX / 2,
            cap in 20usize..1500,
        ) {
            let mut buf = vec![0u8; cap];
            let mut w = PacketWriter::new(&mut buf, Session(*S), seq).unwrap();
            let mut packed = 0;
            for m in &msgs {
                if w.push(m).is_err() {
                    break;
                }
                packed += 1;
            }
            let out = w.finish().to_vec();
            proptest::prop_assert!(out.len() <= cap);
            let p = Packet::parse(&out).unwrap();
            let got: Vec<(u64, Vec<u8>)> = p.messages().map(|(s, m)| (s, m.to_vec())).collect();
            let want: Vec<(u64, Vec<u8>)> =
                msgs[..packed].iter().enumerate().map(|(i, m)| (seq + i as u64, m.clone())).collect();
            proptest::prop_assert_eq!(got, want);
        }

        #[test]
        fn requests_round_trip(seq in 1u64..u64::MAX - 70_000, count in 1u16..=u16::MAX) {
            let r = Request { session: Session(*S), seq, count };
            proptest::prop_assert_eq!(Request::parse(&r.encode()), Ok(r));
        }
    }
}
