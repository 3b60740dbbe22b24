//! Reading a recording: the public API that replay (`shardcast-pub --source
//! recording:DIR`), catch-up (`shardcast-sub --catch-up`, through the
//! recorder's `--serve`) and any other tool read recordings with.
//!
//! ```no_run
//! use shardcast_recorder::reader::{Event, Range, Recording};
//! let rec = Recording::open("/data/rec")?;
//! for key in rec.streams()? {
//!     let stream = rec.stream(key)?;
//!     let mut cur = stream.read(&Range { from_seq: Some(1000), ..Range::default() })?;
//!     while let Some(ev) = cur.next()? {
//!         match ev {
//!             Event::Frame(f) => {
//!                 // The first frame may start below 1000: a batch is
//!                 // recorded whole. records_in_range() skips those.
//!                 for rec in f.records_in_range() {
//!                     let _ = (f.rx_ns, rec.seq(), rec.bytes);
//!                 }
//!             }
//!             Event::Corrupt(c) => eprintln!("skipped {} bytes at {}", c.bytes, c.offset),
//!         }
//!     }
//! }
//! # Ok::<(), shardcast_recorder::reader::ReadError>(())
//! ```
//!
//! Frames come in recorded order (the order they arrived), each exactly as
//! received. A damaged entry is reported as [`Event::Corrupt`] with its
//! position and never yielded as data; reading goes on at the next valid
//! entry (found by its magic and checksum).
//!
//! Seeks use the sparse index (one point per 64 KiB of a segment, plus each
//! segment's and each session's first entries): the reader loads index
//! files, which are about 0.06% of the data, and scans at most one index
//! interval of the segment before the first frame it yields.

use crate::format::{
    check_entry, decode_index, index_file_name, parse_segment_file_name, parse_stream_dir_name,
    segment_file_name, stream_dir_name, Damage, EntryCheck, FrameInfo, IndexPoint,
    ENTRY_HEADER_LEN, ENTRY_MAGIC, SEGMENT_HEADER_LEN,
};
use shardcast_proto::seq::SourceKey;
use shardcast_proto::wire::{Frame, Record};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// How much a segment reader reads at a time.
const READ_CHUNK: usize = 1 << 20;

/// Why a recording could not be read (the bytes of a damaged entry are
/// not an error: they are an [`Event::Corrupt`]).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file or directory could not be read. Remedy: check the path and
    /// its permissions.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The recording holds no such stream.
    #[error("no stream p{}-s{} in {dir}", key.publisher_id, key.stream_id)]
    NoStream {
        /// The recording.
        dir: PathBuf,
        /// The stream asked for.
        key: SourceKey,
    },
}

fn ioe(path: &Path) -> impl FnOnce(std::io::Error) -> ReadError + '_ {
    move |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The segment numbers in one stream directory, ascending.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(n) = e.file_name().to_str().and_then(parse_segment_file_name) {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

/// A recording directory (`--dir` of `shardcast-record`).
#[derive(Clone, Debug)]
pub struct Recording {
    dir: PathBuf,
}

impl Recording {
    /// Open a recording directory (it must exist; nothing is read yet).
    pub fn open(dir: impl AsRef<Path>) -> Result<Recording, ReadError> {
        let dir = dir.as_ref();
        let md = std::fs::metadata(dir).map_err(ioe(dir))?;
        if !md.is_dir() {
            return Err(ReadError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::other("not a directory"),
            });
        }
        Ok(Recording {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The recorded streams, ordered by publisher id, then stream id.
    pub fn streams(&self) -> Result<Vec<SourceKey>, ReadError> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(ioe(&self.dir))? {
            let e = e.map_err(ioe(&self.dir))?;
            if let Some(k) = e.file_name().to_str().and_then(parse_stream_dir_name) {
                if e.path().is_dir() {
                    v.push(k);
                }
            }
        }
        v.sort_unstable_by_key(|k| (k.publisher_id, k.stream_id));
        Ok(v)
    }

    /// One stream of the recording.
    pub fn stream(&self, key: SourceKey) -> Result<StreamRecording, ReadError> {
        let dir = self.dir.join(stream_dir_name(key));
        if !dir.is_dir() {
            return Err(ReadError::NoStream {
                dir: self.dir.clone(),
                key,
            });
        }
        Ok(StreamRecording { key, dir })
    }
}

/// One session of a stream as the index knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SessionInfo {
    /// The publisher's session id.
    pub session: u64,
    /// The first data sequence recorded of it (0: none, only control).
    pub first_seq: u64,
    /// Receive time of its first recorded frame, ns.
    pub first_rx_ns: u64,
    /// The segment its first frame is in.
    pub first_segment: u64,
}

/// One stream's directory in a recording.
#[derive(Clone, Debug)]
pub struct StreamRecording {
    key: SourceKey,
    dir: PathBuf,
}

/// Which frames to read. The default reads every data frame of every
/// session, in recorded order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    /// Only this session. `None` with `from_seq` or `to_seq` set: the last
    /// session recorded (sequence numbers mean something only within a
    /// session). `None` otherwise: every session.
    pub session: Option<u64>,
    /// Start at the frame holding this sequence number (or the first one
    /// above it, when it was never recorded). That frame may begin below
    /// it: see [`RecordedFrame::records_in_range`].
    pub from_seq: Option<u64>,
    /// Stop after the frame holding this sequence number (inclusive).
    pub to_seq: Option<u64>,
    /// Start at the first frame received at or after this time
    /// (CLOCK_REALTIME ns, the recorder's receive time). With `from_seq`
    /// too, both must hold.
    pub from_time_ns: Option<u64>,
    /// Also yield control frames (heartbeats, end-of-stream) of the
    /// selected session(s) inside the range.
    pub control: bool,
    /// Follow a recording that is being written: at the end of the last
    /// segment, [`Cursor::next`] returns `None` without judging a partly
    /// written last entry, and a later call goes on from there (new
    /// segments included). Without it, a partial last entry is reported
    /// as [`Damage::TornTail`] and reading ends.
    pub follow: bool,
}

impl StreamRecording {
    /// The stream directory `dir` of `key`, without checks (recovery).
    pub(crate) fn at(dir: &Path, key: SourceKey) -> StreamRecording {
        StreamRecording {
            key,
            dir: dir.to_path_buf(),
        }
    }

    /// A cursor over every entry from the start of segment `n` (control
    /// frames included, no filter, not following): what recovery and
    /// verification read.
    pub fn read_segment(&self, n: u64) -> Result<Cursor, ReadError> {
        let mut cur = Cursor {
            dir: self.dir.clone(),
            range: Range {
                control: true,
                ..Range::default()
            },
            from_seq: 0,
            to_seq: u64::MAX,
            seg: None,
            skip: 0,
            started: true,
            done: false,
            rechecked: false,
            corruptions: 0,
        };
        cur.open_segment(n, SEGMENT_HEADER_LEN as u64)?;
        Ok(cur)
    }

    /// The stream.
    pub fn key(&self) -> SourceKey {
        self.key
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its segment numbers, ascending.
    pub fn segments(&self) -> Result<Vec<u64>, ReadError> {
        list_segments(&self.dir).map_err(ioe(&self.dir))
    }

    /// The index points of segment `n` (empty when its index is missing or
    /// not ours: the segment is then read from its start).
    pub fn index(&self, n: u64) -> Result<Vec<IndexPoint>, ReadError> {
        let path = self.dir.join(index_file_name(n));
        match std::fs::read(&path) {
            Ok(b) => Ok(decode_index(&b).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(ReadError::Io { path, source: e }),
        }
    }

    /// The sessions recorded, in recorded order, from the index.
    pub fn sessions(&self) -> Result<Vec<SessionInfo>, ReadError> {
        let mut out: Vec<SessionInfo> = Vec::new();
        for n in self.segments()? {
            for p in self.index(n)? {
                match out.iter_mut().find(|s| s.session == p.session) {
                    Some(s) => {
                        if s.first_seq == 0 && p.first_seq != 0 {
                            s.first_seq = p.first_seq;
                        }
                    }
                    None => out.push(SessionInfo {
                        session: p.session,
                        first_seq: p.first_seq,
                        first_rx_ns: p.rx_ns,
                        first_segment: n,
                    }),
                }
            }
        }
        Ok(out)
    }

    /// The last session recorded (from the index of the last segment that
    /// has points), if any.
    pub fn last_session(&self) -> Result<Option<u64>, ReadError> {
        for n in self.segments()?.into_iter().rev() {
            if let Some(p) = self.index(n)?.last() {
                return Ok(Some(p.session));
            }
        }
        Ok(None)
    }

    /// A cursor over `range`, positioned with the index.
    pub fn read(&self, range: &Range) -> Result<Cursor, ReadError> {
        let mut r = *range;
        if r.session.is_none() && (r.from_seq.is_some() || r.to_seq.is_some()) {
            r.session = self.last_session()?;
        }
        let start = self.seek(&r)?;
        let mut cur = Cursor {
            dir: self.dir.clone(),
            range: r,
            from_seq: r.from_seq.unwrap_or(0),
            to_seq: r.to_seq.unwrap_or(u64::MAX),
            seg: None,
            skip: 0,
            started: r.from_seq.is_none() && r.from_time_ns.is_none(),
            done: false,
            rechecked: false,
            corruptions: 0,
        };
        match start {
            Start::At(n, offset) => {
                cur.open_segment(n, offset)?;
                // A stale or damaged index point: start the segment over,
                // so the index can only ever cost time, never an answer.
                if offset != SEGMENT_HEADER_LEN as u64 && !cur.valid_here()? {
                    cur.open_segment(n, SEGMENT_HEADER_LEN as u64)?;
                }
            }
            // The session asked for is not in the index: nothing to read
            // (following, read everything and let the filter judge).
            Start::Nothing => cur.done = !r.follow,
        }
        Ok(cur)
    }

    /// Where to start reading `r`: the last index point that is certainly
    /// not after the range's start.
    fn seek(&self, r: &Range) -> Result<Start, ReadError> {
        let segs = self.segments()?;
        let Some(&first) = segs.first() else {
            return Ok(Start::Nothing);
        };
        let from_start = Start::At(first, SEGMENT_HEADER_LEN as u64);
        if r.from_seq.is_none() && r.from_time_ns.is_none() && r.session.is_none() {
            return Ok(from_start);
        }
        let mut best = None;
        let mut session_first = None;
        'segs: for &n in &segs {
            for p in self.index(n)? {
                if let Some(s) = r.session {
                    if p.session != s {
                        if session_first.is_some() {
                            // Past the session's run.
                            break 'segs;
                        }
                        continue;
                    }
                }
                if session_first.is_none() {
                    session_first = Some((n, p.offset));
                }
                let after_time = r.from_time_ns.is_some_and(|t| p.rx_ns >= t);
                // A control point's data comes after its last_seq.
                let after_seq = r.from_seq.is_some_and(|f| {
                    if p.first_seq != 0 {
                        p.first_seq > f
                    } else {
                        p.last_seq >= f
                    }
                });
                if after_time || after_seq {
                    break 'segs;
                }
                if r.from_seq.is_none() && r.from_time_ns.is_none() {
                    // A session alone: its first point.
                    break 'segs;
                }
                best = Some((n, p.offset));
            }
        }
        Ok(match best.or(session_first) {
            Some((n, off)) => Start::At(n, off),
            None if r.session.is_some() => Start::Nothing,
            None => from_start,
        })
    }
}

/// Where a cursor starts.
enum Start {
    /// Segment and offset.
    At(u64, u64),
    /// Nothing to read.
    Nothing,
}

/// Where an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    /// The segment's number.
    pub segment: u64,
    /// Byte offset of the entry in the segment file.
    pub offset: u64,
}

/// A damaged stretch of a segment, skipped.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Corruption {
    /// The segment file.
    pub path: PathBuf,
    /// Its number.
    pub segment: u64,
    /// Offset of the first damaged byte (where a valid entry should have
    /// started).
    pub offset: u64,
    /// Bytes skipped (to the next valid entry, or the end of the file).
    pub bytes: u64,
    /// What was wrong with the entry at `offset`.
    pub damage: Damage,
}

/// One recorded frame.
#[derive(Clone, Copy, Debug)]
pub struct RecordedFrame<'a> {
    /// When the recorder received it, CLOCK_REALTIME ns.
    pub rx_ns: u64,
    /// The frame exactly as received (a single record or a batch,
    /// docs/PROTOCOL.md section 1).
    pub bytes: &'a [u8],
    /// Its source, session and sequence numbers.
    pub info: FrameInfo,
    /// Where its entry is.
    pub position: Position,
    from_seq: u64,
    to_seq: u64,
}

impl<'a> RecordedFrame<'a> {
    /// The frame, parsed (it was validated when read).
    pub fn frame(&self) -> Frame<'a> {
        Frame::parse(self.bytes).expect("validated when read")
    }

    /// Its data records whose sequence numbers are inside the cursor's
    /// `from_seq..=to_seq` (all of them without bounds). The first frame of
    /// a seek may hold records below `from_seq` and the last one records
    /// above `to_seq`: a batch is recorded, and read, whole.
    pub fn records_in_range(&self) -> impl Iterator<Item = Record<'a>> + 'a {
        let (lo, hi) = (self.from_seq, self.to_seq);
        self.frame()
            .records()
            .filter(move |r| r.kind().is_data() && r.seq() >= lo && r.seq() <= hi)
    }

    /// Whether every record of the frame is inside the range, so `bytes`
    /// can be used as they are (forwarded, replayed) without cutting.
    pub fn whole(&self) -> bool {
        !self.info.is_data()
            || (self.info.first_seq >= self.from_seq && self.info.last_seq <= self.to_seq)
    }
}

/// What a cursor read.
#[derive(Debug)]
pub enum Event<'a> {
    /// A frame in the range.
    Frame(RecordedFrame<'a>),
    /// Damaged bytes, skipped; reading goes on after them.
    Corrupt(Corruption),
}

/// One open segment, read through a buffer with positioned reads (so a
/// file that grows under us is simply read further).
#[derive(Debug)]
struct SegReader {
    number: u64,
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    base: u64,
    /// Cursor within `buf`.
    pos: usize,
}

impl SegReader {
    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Move the cursor to file offset `off` (kept bytes are reused; a
    /// move outside them drops the buffer, the next fill re-reads).
    fn seek_to(&mut self, off: u64) {
        if off >= self.base && off <= self.base + self.buf.len() as u64 {
            self.pos = (off - self.base) as usize;
        } else {
            self.buf.clear();
            self.base = off;
            self.pos = 0;
        }
    }

    /// Make `need` bytes from the cursor available if the file has them;
    /// returns how many are.
    fn fill(&mut self, need: usize) -> Result<usize, ReadError> {
        if self.buf.len() - self.pos >= need {
            return Ok(self.buf.len() - self.pos);
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        while self.buf.len() < need {
            let have = self.buf.len();
            let want = (need - have).max(READ_CHUNK);
            self.buf.resize(have + want, 0);
            let n = match self
                .file
                .read_at(&mut self.buf[have..], self.base + have as u64)
            {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                Err(e) => {
                    self.buf.truncate(have);
                    return Err(ioe(&self.path)(e));
                }
            };
            self.buf.truncate(have + n);
            if n == 0 {
                break;
            }
        }
        Ok(self.buf.len() - self.pos)
    }

    /// Check the entry at the cursor, reading as much of it as the file
    /// has.
    fn check(&mut self) -> Result<EntryCheck<'_>, ReadError> {
        let avail = self.fill(8)?;
        if avail >= 8 && self.buf[self.pos..self.pos + 4] == ENTRY_MAGIC {
            let at = self.pos + 4;
            let len =
                u32::from_le_bytes(self.buf[at..at + 4].try_into().expect("4 bytes")) as usize;
            if len <= crate::format::MAX_ENTRY_FRAME {
                self.fill(ENTRY_HEADER_LEN + len)?;
            }
        }
        Ok(check_entry(&self.buf[self.pos..]))
    }
}

/// Reads one stream's frames in order; see [`StreamRecording::read`].
#[derive(Debug)]
pub struct Cursor {
    dir: PathBuf,
    range: Range,
    from_seq: u64,
    to_seq: u64,
    seg: Option<SegReader>,
    /// Bytes of the entry yielded last, skipped at the next call.
    skip: usize,
    /// Whether the start of the range was reached.
    started: bool,
    done: bool,
    /// At the end of a segment with a newer one present: looked once more.
    rechecked: bool,
    corruptions: u64,
}

/// What the bytes at the cursor turned out to be.
enum Step {
    /// A valid entry of this many bytes (the cursor is on it).
    Entry(usize),
    /// Damage from `offset`, `bytes` long, up to the next valid entry or
    /// the end of the file (the cursor is past it).
    Damaged {
        damage: Damage,
        offset: u64,
        bytes: u64,
    },
    /// The end of the file as it is now, after `partial` bytes that may
    /// be the start of an entry still being written (the cursor is on
    /// them).
    End { partial: u64 },
}

impl Cursor {
    /// Damaged stretches reported so far.
    pub fn corruptions(&self) -> u64 {
        self.corruptions
    }

    /// Where the next entry would be read (`None` before any segment
    /// exists).
    pub fn position(&self) -> Option<Position> {
        self.seg.as_ref().map(|s| Position {
            segment: s.number,
            offset: s.offset() + self.skip as u64,
        })
    }

    /// Whether the range's end (`to_seq`) was passed: nothing more will
    /// come, even when following.
    pub fn finished(&self) -> bool {
        self.done
    }

    fn open_segment(&mut self, n: u64, offset: u64) -> Result<(), ReadError> {
        let path = self.dir.join(segment_file_name(n));
        let file = File::open(&path).map_err(ioe(&path))?;
        self.seg = Some(SegReader {
            number: n,
            path,
            file,
            buf: Vec::with_capacity(READ_CHUNK),
            base: offset.max(SEGMENT_HEADER_LEN as u64),
            pos: 0,
        });
        self.skip = 0;
        self.rechecked = false;
        Ok(())
    }

    fn valid_here(&mut self) -> Result<bool, ReadError> {
        let seg = self.seg.as_mut().expect("open");
        Ok(matches!(seg.check()?, EntryCheck::Valid { .. }))
    }

    /// The next segment after the current one, if the directory has one.
    fn next_segment(&self) -> Result<Option<u64>, ReadError> {
        let cur = self.seg.as_ref().map_or(0, |s| s.number);
        Ok(list_segments(&self.dir)
            .map_err(ioe(&self.dir))?
            .into_iter()
            .find(|&n| n > cur))
    }

    /// Classify the bytes at the cursor; on damage, find the next valid
    /// entry (by its magic and checksum) and measure the gap.
    fn step(&mut self) -> Result<Step, ReadError> {
        let seg = self.seg.as_mut().expect("open");
        let damage = match seg.check()? {
            EntryCheck::Valid { len, .. } => return Ok(Step::Entry(len)),
            EntryCheck::Incomplete => None,
            EntryCheck::Invalid(d) => Some(d),
        };
        let start = seg.offset();
        if seg.fill(1)? == 0 {
            return Ok(Step::End { partial: 0 });
        }
        let mut cand = start + 1;
        loop {
            seg.seek_to(cand);
            let avail = seg.fill(ENTRY_MAGIC.len())?;
            if avail < ENTRY_MAGIC.len() {
                // No valid entry after `start` in what the file holds.
                let end = cand + avail as u64;
                return Ok(match damage {
                    None => {
                        seg.seek_to(start);
                        Step::End {
                            partial: end - start,
                        }
                    }
                    Some(d) => {
                        seg.seek_to(end);
                        Step::Damaged {
                            damage: d,
                            offset: start,
                            bytes: end - start,
                        }
                    }
                });
            }
            let found = seg.buf[seg.pos..]
                .windows(ENTRY_MAGIC.len())
                .position(|w| w == ENTRY_MAGIC);
            match found {
                // Keep the last 3 bytes: a magic may straddle the read.
                None => cand = seg.base + (seg.buf.len() - (ENTRY_MAGIC.len() - 1)) as u64,
                Some(i) => {
                    cand += i as u64;
                    seg.seek_to(cand);
                    if matches!(seg.check()?, EntryCheck::Valid { .. }) {
                        if damage.is_none() {
                            // The entry at `start` looked unfinished; a
                            // writer may have finished it while we
                            // searched (a live recording only grows).
                            seg.seek_to(start);
                            if let EntryCheck::Valid { len, .. } = seg.check()? {
                                return Ok(Step::Entry(len));
                            }
                        }
                        seg.seek_to(cand);
                        return Ok(Step::Damaged {
                            // Only a length can make an entry look
                            // unfinished while a valid one follows it.
                            damage: damage.unwrap_or(Damage::BadLength),
                            offset: start,
                            bytes: cand - start,
                        });
                    }
                    cand += 1;
                }
            }
        }
    }

    fn corrupt(&mut self, damage: Damage, offset: u64, bytes: u64) -> Corruption {
        let seg = self.seg.as_ref().expect("open");
        self.corruptions += 1;
        Corruption {
            path: seg.path.clone(),
            segment: seg.number,
            offset,
            bytes,
            damage,
        }
    }

    /// The next frame in the range, or damage found on the way; `None` at
    /// the end (with [`Range::follow`], the end for now: call again later).
    #[allow(clippy::should_implement_trait)] // it lends from its buffer
    pub fn next(&mut self) -> Result<Option<Event<'_>>, ReadError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(seg) = self.seg.as_mut() else {
                // No segment existed when the cursor was made.
                match self.next_segment()? {
                    Some(n) => {
                        self.open_segment(n, SEGMENT_HEADER_LEN as u64)?;
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            if self.skip > 0 {
                seg.fill(self.skip)?;
                seg.pos += self.skip;
                self.skip = 0;
            }
            match self.step()? {
                Step::Entry(len) => {
                    self.rechecked = false;
                    let seg = self.seg.as_ref().expect("open");
                    let at = seg.pos;
                    let rx_ns =
                        u64::from_le_bytes(seg.buf[at + 8..at + 16].try_into().expect("8 bytes"));
                    let position = Position {
                        segment: seg.number,
                        offset: seg.offset(),
                    };
                    self.skip = len;
                    let parsed = Frame::parse(&seg.buf[at + ENTRY_HEADER_LEN..at + len])
                        .map(|f| FrameInfo::of(&f));
                    let Ok(info) = parsed else {
                        let c = self.corrupt(Damage::BadFrame, position.offset, len as u64);
                        return Ok(Some(Event::Corrupt(c)));
                    };
                    if !self.wanted(rx_ns, &info) {
                        continue;
                    }
                    let seg = self.seg.as_ref().expect("open");
                    return Ok(Some(Event::Frame(RecordedFrame {
                        rx_ns,
                        bytes: &seg.buf[at + ENTRY_HEADER_LEN..at + len],
                        info,
                        position,
                        from_seq: self.from_seq,
                        to_seq: self.to_seq,
                    })));
                }
                Step::Damaged {
                    damage,
                    offset,
                    bytes,
                } => {
                    let c = self.corrupt(damage, offset, bytes);
                    return Ok(Some(Event::Corrupt(c)));
                }
                Step::End { partial } => {
                    let next = self.next_segment()?;
                    if next.is_some() && !self.rechecked {
                        // The writer flushes a segment whole before it
                        // creates the next: look once more, and what is
                        // missing then is a torn tail.
                        self.rechecked = true;
                        continue;
                    }
                    if partial > 0 && (next.is_some() || !self.range.follow) {
                        let seg = self.seg.as_mut().expect("open");
                        let offset = seg.offset();
                        seg.seek_to(offset + partial);
                        let c = self.corrupt(Damage::TornTail, offset, partial);
                        return Ok(Some(Event::Corrupt(c)));
                    }
                    match next {
                        Some(n) => self.open_segment(n, SEGMENT_HEADER_LEN as u64)?,
                        None => return Ok(None),
                    }
                }
            }
        }
    }

    /// Whether the frame is in the range (noting when the range ended).
    fn wanted(&mut self, rx_ns: u64, info: &FrameInfo) -> bool {
        if let Some(s) = self.range.session {
            if info.session != s {
                return false;
            }
        }
        if !info.is_data() {
            return self.range.control && self.started;
        }
        if info.first_seq > self.to_seq {
            self.done = true;
            return false;
        }
        if !self.started {
            let time_ok = self.range.from_time_ns.map_or(true, |t| rx_ns >= t);
            if !(time_ok && info.last_seq >= self.from_seq) {
                return false;
            }
            self.started = true;
        }
        true
    }
}
