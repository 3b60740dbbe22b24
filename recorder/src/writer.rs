//! Appending to one source's segments: buffered, indexed, rolled at a size,
//! and careful about a full disk.
//!
//! One [`StreamWriter`] per source, owned by the one recorder thread that
//! records it. An entry is copied into the writer's buffer (no syscall);
//! the buffer goes to the file with one `write` when it is full, when the
//! recorder's flush interval has passed, when the segment rolls, and at the
//! end. The index points made meanwhile go to the index file right after,
//! so the index never points past what the segment holds on disk.
//!
//! Disk full: a failed write leaves the segment and index truncated back to
//! what they held before it (whole entries only), so the recording stays
//! readable; the writer then refuses further appends, and the error names
//! the file.

use crate::format::{
    entry_header, index_file_name, index_header, segment_file_name, FrameInfo, IndexPoint,
    PointPolicy, SegmentHeader, ENTRY_HEADER_LEN, INDEX_POINT_LEN, SEGMENT_HEADER_LEN,
};
use shardcast_proto::seq::SourceKey;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// How a [`StreamWriter`] writes.
#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// A segment rolls before an entry would take it past this many bytes
    /// (an entry larger than that gets a segment of its own).
    pub segment_bytes: u64,
    /// Bytes buffered before a write.
    pub buffer_bytes: usize,
    /// A data entry becomes an index point when it starts at least this
    /// many bytes after the previous point.
    pub index_every_bytes: u64,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            segment_bytes: 128 << 20,
            buffer_bytes: 4 << 20,
            index_every_bytes: 64 << 10,
        }
    }
}

/// A failed write, naming the file (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The file system is full (ENOSPC or EDQUOT). What was written before
    /// stays readable. Remedy: free space under the recording directory
    /// (or give another `--dir`) and restart; the recorder goes on
    /// appending where it stopped.
    #[error(
        "disk full writing {path}: {source}; the recording up to this point is intact and readable"
    )]
    DiskFull {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Any other I/O error. Remedy: look at the error and the file.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An earlier write failed; the writer takes nothing more.
    #[error("the writer of {0} stopped after an earlier error")]
    Stopped(PathBuf),
}

impl WriteError {
    fn io(path: &Path, source: std::io::Error) -> WriteError {
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => WriteError::DiskFull {
                path: path.to_path_buf(),
                source,
            },
            _ => WriteError::Io {
                path: path.to_path_buf(),
                source,
            },
        }
    }

    /// Whether the disk was full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, WriteError::DiskFull { .. })
    }
}

/// Counts of one writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriterStats {
    /// Entries (frames) on disk, written by this writer.
    pub frames: u64,
    /// Data records in those frames.
    pub records: u64,
    /// Bytes written by this writer (entries and segment headers).
    pub bytes: u64,
    /// Segments this writer created.
    pub segments_created: u64,
    /// Writes (system calls) to segment files.
    pub writes: u64,
}

/// Appends entries to one source's segments.
#[derive(Debug)]
pub struct StreamWriter {
    dir: PathBuf,
    key: SourceKey,
    opts: WriterOptions,
    segment: u64,
    seg_path: PathBuf,
    seg: File,
    idx_path: PathBuf,
    idx: File,
    /// Bytes of the segment on disk.
    seg_disk: u64,
    /// Bytes of the index on disk.
    idx_disk: u64,
    buf: Vec<u8>,
    /// Frames and data records in `buf`.
    buf_frames: u64,
    buf_records: u64,
    idx_buf: Vec<u8>,
    points: PointPolicy,
    stats: WriterStats,
    failed: bool,
}

impl StreamWriter {
    /// Open `dir` (one source's directory, created if missing) for
    /// appending: the last segment if it has room (it must have been
    /// recovered first, [`crate::recover::recover_stream`]), else a new
    /// one.
    pub fn open(
        dir: &Path,
        key: SourceKey,
        opts: WriterOptions,
    ) -> Result<StreamWriter, WriteError> {
        std::fs::create_dir_all(dir).map_err(|e| WriteError::io(dir, e))?;
        let last = crate::reader::list_segments(dir)
            .map_err(|e| WriteError::io(dir, e))?
            .last()
            .copied();
        let mut w = match last {
            Some(n) => {
                let seg_path = dir.join(segment_file_name(n));
                let idx_path = dir.join(index_file_name(n));
                let seg = OpenOptions::new()
                    .append(true)
                    .open(&seg_path)
                    .map_err(|e| WriteError::io(&seg_path, e))?;
                let idx = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&idx_path)
                    .map_err(|e| WriteError::io(&idx_path, e))?;
                let seg_disk = seg
                    .metadata()
                    .map_err(|e| WriteError::io(&seg_path, e))?
                    .len();
                let idx_disk = idx
                    .metadata()
                    .map_err(|e| WriteError::io(&idx_path, e))?
                    .len();
                let mut w = StreamWriter::with_files(
                    dir, key, opts, n, seg_path, seg, idx_path, idx, seg_disk, idx_disk,
                );
                if idx_disk == 0 {
                    // An index lost with a crash (recovery rebuilds it, so
                    // only an unrecovered segment gets here): start it
                    // again; the reader falls back to scanning.
                    w.idx_buf.extend_from_slice(&index_header());
                }
                w
            }
            None => StreamWriter::create_segment(dir, key, opts, 1)?,
        };
        if w.seg_disk >= opts.segment_bytes {
            w.roll()?;
        }
        Ok(w)
    }

    #[allow(clippy::too_many_arguments)]
    fn with_files(
        dir: &Path,
        key: SourceKey,
        opts: WriterOptions,
        segment: u64,
        seg_path: PathBuf,
        seg: File,
        idx_path: PathBuf,
        idx: File,
        seg_disk: u64,
        idx_disk: u64,
    ) -> StreamWriter {
        StreamWriter {
            dir: dir.to_path_buf(),
            key,
            opts,
            segment,
            seg_path,
            seg,
            idx_path,
            idx,
            seg_disk,
            idx_disk,
            buf: Vec::with_capacity(opts.buffer_bytes),
            buf_frames: 0,
            buf_records: 0,
            // A segment's whole index is small (one point per 64 KiB):
            // reserved once, so pushing a point never allocates.
            idx_buf: Vec::with_capacity(64 << 10),
            points: PointPolicy::new(opts.index_every_bytes),
            stats: WriterStats::default(),
            failed: false,
        }
    }

    /// Create segment `n` (header written at once, so a segment file
    /// always starts with a whole header unless a crash cut it).
    fn create_segment(
        dir: &Path,
        key: SourceKey,
        opts: WriterOptions,
        n: u64,
    ) -> Result<StreamWriter, WriteError> {
        let seg_path = dir.join(segment_file_name(n));
        let idx_path = dir.join(index_file_name(n));
        let mut seg = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&seg_path)
            .map_err(|e| WriteError::io(&seg_path, e))?;
        let header = SegmentHeader {
            key,
            number: n,
            created_ns: shardcast_agent::clock::now_ns(),
        }
        .encode();
        if let Err(e) = seg.write_all(&header) {
            // Leave no half header behind: a full disk must not leave a
            // segment the reader has to call damaged.
            drop(seg);
            let _ = std::fs::remove_file(&seg_path);
            return Err(WriteError::io(&seg_path, e));
        }
        let idx = OpenOptions::new()
            .append(true)
            .create(true)
            .truncate(false)
            .open(&idx_path)
            .map_err(|e| WriteError::io(&idx_path, e))?;
        let mut w = StreamWriter::with_files(
            dir,
            key,
            opts,
            n,
            seg_path,
            seg,
            idx_path,
            idx,
            SEGMENT_HEADER_LEN as u64,
            0,
        );
        w.idx_buf.extend_from_slice(&index_header());
        w.stats.segments_created = 1;
        w.stats.bytes = SEGMENT_HEADER_LEN as u64;
        Ok(w)
    }

    /// The source.
    pub fn key(&self) -> SourceKey {
        self.key
    }

    /// The current segment's number.
    pub fn segment(&self) -> u64 {
        self.segment
    }

    /// Counts so far (what is on disk).
    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    /// Whether anything waits in the buffer.
    #[inline]
    pub fn pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Append one frame received at `rx_ns` (`info` describes it). No
    /// system call unless the buffer fills or the segment rolls.
    #[inline]
    pub fn append(&mut self, rx_ns: u64, frame: &[u8], info: &FrameInfo) -> Result<(), WriteError> {
        if self.failed {
            return Err(WriteError::Stopped(self.seg_path.clone()));
        }
        let len = (ENTRY_HEADER_LEN + frame.len()) as u64;
        let end = self.seg_disk + self.buf.len() as u64;
        if end + len > self.opts.segment_bytes && end > SEGMENT_HEADER_LEN as u64 {
            self.roll()?;
        }
        if self.buf.len() + len as usize > self.buf.capacity() {
            self.flush()?;
        }
        let offset = self.seg_disk + self.buf.len() as u64;
        if self.points.want(offset, info) {
            self.point(IndexPoint {
                offset,
                rx_ns,
                session: info.session,
                first_seq: info.first_seq,
                last_seq: info.last_seq,
            })?;
        }
        if len as usize > self.buf.capacity() {
            // Larger than the whole buffer (a frame of several MiB with a
            // small --buffer-bytes; the buffer is empty now): written
            // directly, so the buffer never grows.
            return self.write_direct(rx_ns, frame, info);
        }
        self.buf.extend_from_slice(&entry_header(rx_ns, frame));
        self.buf.extend_from_slice(frame);
        self.buf_frames += 1;
        self.buf_records += u64::from(info.data_records);
        Ok(())
    }

    #[cold]
    fn write_direct(
        &mut self,
        rx_ns: u64,
        frame: &[u8],
        info: &FrameInfo,
    ) -> Result<(), WriteError> {
        let header = entry_header(rx_ns, frame);
        if let Err(e) = self
            .seg
            .write_all(&header)
            .and_then(|()| self.seg.write_all(frame))
        {
            return Err(self.fail(e, true));
        }
        let len = (header.len() + frame.len()) as u64;
        self.seg_disk += len;
        self.stats.bytes += len;
        self.stats.frames += 1;
        self.stats.records += u64::from(info.data_records);
        self.stats.writes += 2;
        self.flush()
    }

    fn point(&mut self, p: IndexPoint) -> Result<(), WriteError> {
        if self.idx_buf.len() + INDEX_POINT_LEN > self.idx_buf.capacity() {
            // Cold: a very long stretch without a flush. Write the points
            // out only after the entries they point to.
            self.flush()?;
        }
        self.idx_buf.extend_from_slice(&p.encode());
        Ok(())
    }

    /// Write what is buffered: the entries, then the index points.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        if self.failed {
            return Err(WriteError::Stopped(self.seg_path.clone()));
        }
        if !self.buf.is_empty() {
            if let Err(e) = self.seg.write_all(&self.buf) {
                return Err(self.fail(e, true));
            }
            self.seg_disk += self.buf.len() as u64;
            self.stats.bytes += self.buf.len() as u64;
            self.stats.frames += self.buf_frames;
            self.stats.records += self.buf_records;
            self.stats.writes += 1;
            self.buf.clear();
            self.buf_frames = 0;
            self.buf_records = 0;
        }
        if !self.idx_buf.is_empty() {
            if let Err(e) = self.idx.write_all(&self.idx_buf) {
                return Err(self.fail(e, false));
            }
            self.idx_disk += self.idx_buf.len() as u64;
            self.idx_buf.clear();
        }
        Ok(())
    }

    /// A write failed: cut the file back to its last whole state (whole
    /// entries, whole points), stop taking appends, and say which file.
    #[cold]
    fn fail(&mut self, e: std::io::Error, segment: bool) -> WriteError {
        self.failed = true;
        let _ = self.seg.set_len(self.seg_disk);
        let _ = self.idx.set_len(self.idx_disk);
        let path = if segment {
            &self.seg_path
        } else {
            &self.idx_path
        };
        WriteError::io(path, e)
    }

    /// Seal the current segment and start the next.
    fn roll(&mut self) -> Result<(), WriteError> {
        self.flush()?;
        let next = StreamWriter::create_segment(&self.dir, self.key, self.opts, self.segment + 1);
        let mut next = match next {
            Ok(n) => n,
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        };
        next.stats = self.stats;
        next.stats.segments_created += 1;
        next.stats.bytes += SEGMENT_HEADER_LEN as u64;
        *self = next;
        Ok(())
    }

    /// Flush and fsync the segment and index (at the end of a run, so a
    /// clean stop survives an OS crash too).
    pub fn close(mut self) -> Result<WriterStats, WriteError> {
        self.flush()?;
        self.seg
            .sync_data()
            .map_err(|e| WriteError::io(&self.seg_path, e))?;
        self.idx
            .sync_data()
            .map_err(|e| WriteError::io(&self.idx_path, e))?;
        Ok(self.stats)
    }
}
