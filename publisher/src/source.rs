//! Where a recorded or live feed's ITCH messages come from.
//!
//! A [`Source`] hands out length-prefixed ITCH 5.0 frames in exchange order,
//! one at a time, borrowing its own buffer (no allocation per message); the
//! reader thread (`reader`) routes them onto the streams. A day file is
//! [`ItchFile`]; a live feed (MoldUDP64) is another implementation of the
//! same trait, so everything after the source (routing, queues, streams,
//! `--speed`, the report's `source` counts) is shared.

use serde_json::{Map, Value};
use shardcast_proto::itch::{FileFramer, Frame};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The next thing a source has.
#[derive(Debug)]
pub enum Next<'a> {
    /// A frame: a complete message, or the truncated tail of the input.
    Frame(Frame<'a>),
    /// Nothing right now (a live source between packets). The reader then
    /// hands what it has packed to the streams and looks at signals, so a
    /// live source should return this within ~50 ms of going quiet.
    Idle,
    /// The source has ended: no more frames will come.
    End,
}

/// A source of ITCH 5.0 messages in exchange order.
pub trait Source: Send {
    /// Its name in the report's `source.kind`: `"itch"` for a file.
    fn kind(&self) -> &'static str;

    /// The next frame, [`Next::Idle`] or [`Next::End`]. A read error ends
    /// the source: the run reports it (`source.error`, exit 1) after the
    /// streams have sent what came before it.
    fn next(&mut self) -> io::Result<Next<'_>>;

    /// Bytes of ITCH taken from the source so far (length prefixes
    /// included; after decompression).
    fn bytes(&self) -> u64;

    /// Keys of its own for the report's `source` object (a live feed's
    /// gaps and recoveries); none by default.
    fn report(&self) -> Map<String, Value> {
        Map::new()
    }
}

/// A NASDAQ TotalView-ITCH 5.0 day file (`--source itch:PATH`): 2-byte
/// big-endian length, message, repeated; read through gzip when asked.
pub struct ItchFile {
    framer: FileFramer<Box<dyn Read + Send>>,
    path: PathBuf,
    gzip: bool,
}

impl ItchFile {
    /// Open `path`, through a gzip decoder when `gzip`. Concatenated gzip
    /// members (`cat a.gz b.gz`, bgzip) read as one stream.
    pub fn open(path: &Path, gzip: bool) -> io::Result<ItchFile> {
        let file = File::open(path)?;
        // A FIFO or a device reads like a file; a directory opens but
        // fails at the first read: say so now, before any socket is bound.
        if file.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a directory",
            ));
        }
        let reader: Box<dyn Read + Send> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        Ok(ItchFile {
            // The default 1 MiB chunk: one read per ~30 000 messages.
            framer: FileFramer::new(reader),
            path: path.to_path_buf(),
            gzip,
        })
    }
}

impl Source for ItchFile {
    fn kind(&self) -> &'static str {
        "itch"
    }

    #[inline]
    fn next(&mut self) -> io::Result<Next<'_>> {
        Ok(match self.framer.next_frame()? {
            Some(f) => Next::Frame(f),
            None => Next::End,
        })
    }

    fn bytes(&self) -> u64 {
        self.framer.bytes_consumed()
    }

    fn report(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("path".into(), self.path.display().to_string().into());
        m.insert("gzip".into(), self.gzip.into());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn frames(src: &mut impl Source) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match src.next().unwrap() {
                Next::Frame(Frame::Message(m)) => out.push(m.to_vec()),
                Next::Frame(Frame::Truncated(t)) => out.push([b"tail:", t].concat()),
                Next::Idle => panic!("a file is never idle"),
                Next::End => return out,
            }
        }
    }

    #[test]
    fn a_file_reads_the_same_plain_or_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut day = Vec::new();
        for m in [&b"S0123456789a"[..], &[b'z'; 20][..]] {
            day.extend_from_slice(&(m.len() as u16).to_be_bytes());
            day.extend_from_slice(m);
        }
        day.extend_from_slice(&[0, 36, b'A', 1]);
        let plain = dir.path().join("day.itch");
        std::fs::write(&plain, &day).unwrap();
        let gz = dir.path().join("day.itch.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(&day).unwrap();
        enc.finish().unwrap();

        let mut a = ItchFile::open(&plain, false).unwrap();
        let mut b = ItchFile::open(&gz, true).unwrap();
        let (fa, fb) = (frames(&mut a), frames(&mut b));
        assert_eq!(fa, fb);
        assert_eq!(fa.len(), 3);
        assert_eq!(fa[2], b"tail:\x00\x24A\x01");
        assert_eq!((a.bytes(), b.bytes()), (day.len() as u64, day.len() as u64));
        assert_eq!(a.kind(), "itch");
        assert_eq!(b.report()["gzip"], true);
    }

    #[test]
    fn a_missing_file_or_a_directory_is_an_error_at_open() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ItchFile::open(&dir.path().join("nope"), false).is_err());
        assert!(ItchFile::open(dir.path(), false).is_err());
    }

    #[test]
    fn a_corrupt_gzip_is_a_read_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.gz");
        std::fs::write(&p, b"\x1f\x8b\x08\x00garbage that is not deflate").unwrap();
        let mut f = ItchFile::open(&p, true).unwrap();
        let mut err = false;
        for _ in 0..10 {
            match f.next() {
                Err(_) => {
                    err = true;
                    break;
                }
                Ok(Next::End) => break,
                Ok(_) => {}
            }
        }
        assert!(err, "the decoder's error reaches the caller");
    }
}
