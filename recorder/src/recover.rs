//! Crash recovery: what `shardcast-record` does to an existing recording
//! before it appends to it.
//!
//! For each stream directory, the last segment is verified entry by entry
//! (magic, length, checksum, frame):
//!
//! * a tail that holds no whole valid entry (a write the crash cut, or
//!   bytes the file system extended the file with) is truncated away;
//! * damage *followed* by valid entries (a bit flip) is left in place and
//!   reported: the reader skips it, and truncating would throw valid
//!   records away;
//! * a last segment shorter than its 64-byte header (a crash while
//!   rolling) is removed, and the segment before it is verified instead;
//! * the last segment's index is rebuilt from the verified entries (the
//!   crash may have cut it, or left points past the truncation).
//!
//! Earlier segments were sealed by a roll (flushed whole before the next
//! was created) and are not rescanned; damage in them is the reader's to
//! report.

use crate::format::{
    index_file_name, index_header, parse_stream_dir_name, segment_file_name, stream_dir_name,
    IndexPoint, PointPolicy, SEGMENT_HEADER_LEN,
};
use crate::reader::{list_segments, Corruption, Event, ReadError, StreamRecording};
use shardcast_proto::seq::SourceKey;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What recovery found and did in one stream directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Recovered {
    /// The stream.
    pub publisher_id: u32,
    /// The stream.
    pub stream_id: u16,
    /// The segment verified (the last one after recovery; 0: none left).
    pub segment: u64,
    /// Bytes cut off its end (a torn tail), plus any half-created segment
    /// removed.
    pub truncated_bytes: u64,
    /// Valid entries (frames) in the verified segment.
    pub valid_records: u64,
    /// Damage found in it and left in place (valid entries follow it).
    pub corrupt: Vec<Corruption>,
    /// Half-created segments removed (a crash while rolling).
    pub removed_segments: u64,
}

/// Why recovery failed (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The recording could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A file could not be truncated, removed or rewritten. Remedy: check
    /// permissions and free space under the directory.
    #[error("recovering {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn ioe(path: &Path) -> impl FnOnce(std::io::Error) -> RecoverError + '_ {
    move |source| RecoverError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Recover every stream directory under `dir` (a missing `dir` has
/// nothing to recover).
pub fn recover_all(dir: &Path, index_every_bytes: u64) -> Result<Vec<Recovered>, RecoverError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let rec = crate::reader::Recording::open(dir)?;
    let mut out = Vec::new();
    for key in rec.streams()? {
        out.push(recover_stream(
            &dir.join(stream_dir_name(key)),
            index_every_bytes,
        )?);
    }
    Ok(out)
}

/// Recover one stream directory (see the module documentation).
pub fn recover_stream(
    stream_dir: &Path,
    index_every_bytes: u64,
) -> Result<Recovered, RecoverError> {
    let name = stream_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let key = parse_stream_dir_name(name).unwrap_or(SourceKey {
        publisher_id: 0,
        stream_id: 0,
    });
    let mut out = Recovered {
        publisher_id: key.publisher_id,
        stream_id: key.stream_id,
        segment: 0,
        truncated_bytes: 0,
        valid_records: 0,
        corrupt: Vec::new(),
        removed_segments: 0,
    };
    let segs = list_segments(stream_dir).map_err(ioe(stream_dir))?;
    let Some(&last) = segs.iter().rev().find(|&&n| {
        // Half-created segments (shorter than a header) go first.
        let path = stream_dir.join(segment_file_name(n));
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < SEGMENT_HEADER_LEN as u64 {
            if std::fs::remove_file(&path).is_ok() {
                let _ = std::fs::remove_file(stream_dir.join(index_file_name(n)));
                out.truncated_bytes += len;
                out.removed_segments += 1;
            }
            false
        } else {
            true
        }
    }) else {
        return Ok(out);
    };
    out.segment = last;
    let seg_path = stream_dir.join(segment_file_name(last));
    let file_len = std::fs::metadata(&seg_path).map_err(ioe(&seg_path))?.len();
    let stream = StreamRecording::at(stream_dir, key);
    let mut cur = stream.read_segment(last)?;
    let mut points = PointPolicy::new(index_every_bytes);
    let mut index = index_header().to_vec();
    let mut valid_end = SEGMENT_HEADER_LEN as u64;
    while let Some(ev) = cur.next()? {
        match ev {
            Event::Frame(f) => {
                if f.position.segment != last {
                    break;
                }
                out.valid_records += 1;
                let offset = f.position.offset;
                valid_end = offset + (crate::format::ENTRY_HEADER_LEN + f.bytes.len()) as u64;
                if points.want(offset, &f.info) {
                    index.extend_from_slice(
                        &IndexPoint {
                            offset,
                            rx_ns: f.rx_ns,
                            session: f.info.session,
                            first_seq: f.info.first_seq,
                            last_seq: f.info.last_seq,
                        }
                        .encode(),
                    );
                }
            }
            Event::Corrupt(c) => {
                if c.segment != last {
                    break;
                }
                if c.offset + c.bytes < file_len {
                    out.corrupt.push(c);
                }
            }
        }
    }
    if valid_end < file_len {
        // Nothing valid after `valid_end`: a torn tail (damage with valid
        // entries after it ended before `valid_end`).
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&seg_path)
            .map_err(ioe(&seg_path))?;
        f.set_len(valid_end).map_err(ioe(&seg_path))?;
        f.sync_data().map_err(ioe(&seg_path))?;
        out.truncated_bytes += file_len - valid_end;
        out.corrupt.retain(|c| c.offset < valid_end);
    }
    write_index(&stream_dir.join(index_file_name(last)), &index)?;
    Ok(out)
}

/// Replace an index file whole (a temporary beside it, then a rename), so
/// a crash during recovery leaves the old index or the new one.
fn write_index(path: &Path, bytes: &[u8]) -> Result<(), RecoverError> {
    let tmp = path.with_extension("idx.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(ioe(&tmp))?;
    f.write_all(bytes).map_err(ioe(&tmp))?;
    f.sync_data().map_err(ioe(&tmp))?;
    std::fs::rename(&tmp, path).map_err(ioe(path))?;
    Ok(())
}
