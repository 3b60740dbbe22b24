//! The range protocol (`SCRQ` requests, `SCRP` replies): "stream S of
//! publisher P, session E, sequences A..B", answered with the frames that
//! carried them. docs/RECORDING.md section 6 is the normative description.
//!
//! Two servers speak it: the recorder's `--serve` (from its files: deep,
//! slower) and the publisher's `--retransmit-bind` (from an in-memory ring
//! of the last records of each stream: shallow, fast). A client (a DEALER)
//! talks to both the same way; session 0 means "the last one recorded" to a
//! recorder and "the current one" to a publisher.
//!
//! This module is the codec only: no sockets (the crate never touches one).
//! A request is one 48-byte frame ([`Request`]); every reply message starts
//! with a 56-byte header part ([`Reply`]); a DATA reply has `2 + count`
//! parts: the header, `8 * count` bytes of times (u64 LE each), then the
//! frames.

use crate::seq::SourceKey;

/// First 4 bytes of a request.
pub const REQUEST_MAGIC: [u8; 4] = *b"SCRQ";
/// First 4 bytes of a reply header.
pub const REPLY_MAGIC: [u8; 4] = *b"SCRP";
/// Protocol version.
pub const SERVE_VERSION: u8 = 1;
/// Length of a request.
pub const REQUEST_LEN: usize = 48;
/// Length of a reply header.
pub const REPLY_LEN: usize = 56;
/// Requests a server serves at once; more are answered BUSY.
pub const MAX_ACTIVE: usize = 16;
/// Most frames in one DATA message.
pub const FRAMES_PER_MESSAGE: usize = 64;
/// A DATA message stops growing past this many bytes of frames.
pub const BYTES_PER_MESSAGE: usize = 256 << 10;
/// Longest `wait_ms` a request may ask for.
pub const MAX_WAIT_MS: u32 = 60_000;
/// Operation code of a fetch.
pub const OP_FETCH: u8 = 1;

/// A fetch request (one 48-byte frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The stream.
    pub key: SourceKey,
    /// How long the server may wait for records it does not hold yet (up
    /// to `to_seq`) before it answers PARTIAL, ms (at most
    /// [`MAX_WAIT_MS`]).
    pub wait_ms: u32,
    /// The session; 0: the last one recorded for the stream (a recorder),
    /// the current one (a publisher).
    pub session: u64,
    /// First sequence wanted (at least 1).
    pub from_seq: u64,
    /// Last sequence wanted, inclusive; 0: through the last one held when
    /// the request is served.
    pub to_seq: u64,
    /// Echoed in every reply.
    pub request_id: u64,
}

impl Request {
    /// Its bytes.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[0..4].copy_from_slice(&REQUEST_MAGIC);
        b[4] = SERVE_VERSION;
        b[5] = OP_FETCH;
        b[6..8].copy_from_slice(&self.key.stream_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.key.publisher_id.to_le_bytes());
        b[12..16].copy_from_slice(&self.wait_ms.to_le_bytes());
        b[16..24].copy_from_slice(&self.session.to_le_bytes());
        b[24..32].copy_from_slice(&self.from_seq.to_le_bytes());
        b[32..40].copy_from_slice(&self.to_seq.to_le_bytes());
        b[40..48].copy_from_slice(&self.request_id.to_le_bytes());
        b
    }

    /// Read a request; `Err` carries the request id when one could be
    /// read (for the BAD_REQUEST answer) and why it was refused.
    pub fn decode(b: &[u8]) -> Result<Request, (u64, BadRequest)> {
        let id = if b.len() >= 48 { u64_at(b, 40) } else { 0 };
        if b.len() != REQUEST_LEN || b[0..4] != REQUEST_MAGIC {
            return Err((id, BadRequest::Malformed));
        }
        if b[4] != SERVE_VERSION {
            return Err((id, BadRequest::Version));
        }
        if b[5] != OP_FETCH {
            return Err((id, BadRequest::Op));
        }
        let r = Request {
            key: SourceKey {
                stream_id: u16::from_le_bytes([b[6], b[7]]),
                publisher_id: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            },
            wait_ms: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
            session: u64_at(b, 16),
            from_seq: u64_at(b, 24),
            to_seq: u64_at(b, 32),
            request_id: id,
        };
        if r.from_seq == 0 || (r.to_seq != 0 && r.to_seq < r.from_seq) || r.wait_ms > MAX_WAIT_MS {
            return Err((id, BadRequest::Range));
        }
        Ok(r)
    }
}

/// Why a request was refused (the reply's `c` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum BadRequest {
    /// Not 48 bytes, not `"SCRQ"`, or more than one frame.
    Malformed = 1,
    /// A version this server does not speak.
    Version = 2,
    /// An operation other than fetch.
    Op = 3,
    /// `from_seq` 0, `to_seq` below `from_seq`, or `wait_ms` over
    /// [`MAX_WAIT_MS`].
    Range = 4,
}

/// A reply's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Frames follow in this message.
    Data = 0,
    /// Final: every frame held of the range was sent.
    Done = 1,
    /// Final: what the server holds does not reach `to_seq` (yet); what
    /// it had was sent. Ask again from `a + 1`.
    Partial = 2,
    /// Final: nothing held from `from_seq` on (the stream or session is
    /// not held, or what is held starts later: at `a`).
    NotAvailable = 3,
    /// Final: the request was refused (`c`: [`BadRequest`]).
    BadRequest = 4,
    /// Final: too many requests in progress; ask again later.
    Busy = 5,
    /// Final: this requester is over its rate limit (requests or bytes per
    /// second); nothing was served. Ask again later, or elsewhere.
    Refused = 6,
}

impl Status {
    /// The status with this byte, if any.
    pub fn from_u8(v: u8) -> Option<Status> {
        Some(match v {
            0 => Status::Data,
            1 => Status::Done,
            2 => Status::Partial,
            3 => Status::NotAvailable,
            4 => Status::BadRequest,
            5 => Status::Busy,
            6 => Status::Refused,
            _ => return None,
        })
    }
}

/// The first part of every reply message (56 bytes). What `a`, `b`, `c`
/// hold depends on the status (docs/RECORDING.md has the table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The status.
    pub status: Status,
    /// DATA: frames in this message.
    pub count: u16,
    /// The request's id.
    pub request_id: u64,
    /// The session served (0: none).
    pub session: u64,
    /// See the status table.
    pub a: u64,
    /// See the status table.
    pub b: u64,
    /// See the status table.
    pub c: u64,
}

impl Reply {
    /// A final reply with no frames: `status`, `a` and `c` (`b` 0).
    pub fn fin(status: Status, request_id: u64, session: u64, a: u64, c: u64) -> Reply {
        Reply {
            status,
            count: 0,
            request_id,
            session,
            a,
            b: 0,
            c,
        }
    }

    /// Its bytes.
    pub fn encode(&self) -> [u8; REPLY_LEN] {
        let mut b = [0u8; REPLY_LEN];
        b[0..4].copy_from_slice(&REPLY_MAGIC);
        b[4] = SERVE_VERSION;
        b[5] = self.status as u8;
        b[6..8].copy_from_slice(&self.count.to_le_bytes());
        b[8..16].copy_from_slice(&self.request_id.to_le_bytes());
        b[16..24].copy_from_slice(&self.session.to_le_bytes());
        b[24..32].copy_from_slice(&self.a.to_le_bytes());
        b[32..40].copy_from_slice(&self.b.to_le_bytes());
        b[40..48].copy_from_slice(&self.c.to_le_bytes());
        b
    }

    /// Read a reply header.
    pub fn decode(b: &[u8]) -> Option<Reply> {
        if b.len() != REPLY_LEN || b[0..4] != REPLY_MAGIC || b[4] != SERVE_VERSION {
            return None;
        }
        Some(Reply {
            status: Status::from_u8(b[5])?,
            count: u16::from_le_bytes([b[6], b[7]]),
            request_id: u64_at(b, 8),
            session: u64_at(b, 16),
            a: u64_at(b, 24),
            b: u64_at(b, 32),
            c: u64_at(b, 40),
        })
    }

    /// Whether this is the request's last reply.
    pub fn is_final(&self) -> bool {
        self.status != Status::Data
    }
}

/// The little-endian u64 at `b[at..at + 8]` (callers check the length).
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip_and_bad_requests_say_why() {
        let r = Request {
            key: SourceKey {
                publisher_id: 9,
                stream_id: 2,
            },
            wait_ms: 500,
            session: 77,
            from_seq: 10,
            to_seq: 20,
            request_id: 5,
        };
        assert_eq!(Request::decode(&r.encode()), Ok(r));
        let mut v = r.encode();
        v[4] = 2;
        assert_eq!(Request::decode(&v), Err((5, BadRequest::Version)));
        let mut v = r.encode();
        v[5] = 9;
        assert_eq!(Request::decode(&v), Err((5, BadRequest::Op)));
        let bad = Request { to_seq: 9, ..r };
        assert_eq!(Request::decode(&bad.encode()), Err((5, BadRequest::Range)));
        let bad = Request { from_seq: 0, ..r };
        assert_eq!(Request::decode(&bad.encode()), Err((5, BadRequest::Range)));
        let bad = Request {
            wait_ms: MAX_WAIT_MS + 1,
            ..r
        };
        assert_eq!(Request::decode(&bad.encode()), Err((5, BadRequest::Range)));
        assert_eq!(Request::decode(b"short"), Err((0, BadRequest::Malformed)));
        let rep = Reply {
            status: Status::Partial,
            count: 0,
            request_id: 5,
            session: 77,
            a: 1,
            b: 2,
            c: 3,
        };
        assert_eq!(Reply::decode(&rep.encode()), Some(rep));
        assert!(rep.is_final());
    }

    #[test]
    fn every_status_keeps_its_byte_and_refused_is_final() {
        for (s, b) in [
            (Status::Data, 0u8),
            (Status::Done, 1),
            (Status::Partial, 2),
            (Status::NotAvailable, 3),
            (Status::BadRequest, 4),
            (Status::Busy, 5),
            (Status::Refused, 6),
        ] {
            assert_eq!(s as u8, b);
            assert_eq!(Status::from_u8(b), Some(s));
            let r = Reply::fin(s, 1, 2, 3, 4);
            assert_eq!(r.encode()[5], b);
            assert_eq!(Reply::decode(&r.encode()), Some(r));
            assert_eq!(r.is_final(), s != Status::Data);
        }
        assert_eq!(Status::from_u8(7), None);
        let mut v = Reply::fin(Status::Done, 1, 2, 3, 4).encode();
        v[5] = 7;
        assert_eq!(Reply::decode(&v), None, "an unknown status is no reply");
    }
}
