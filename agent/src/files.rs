//! Output files. Every file a shardcast binary writes (the reports, books,
//! `.hgrm` files, plots, bench results) goes through [`write`] or
//! [`write_json`]; a log written as the run goes (`--hdr-log`) is opened by
//! [`create_stream`]. What each kind of path gets, decided here once:
//!
//! * **Missing or a regular file:** the content goes to a new temporary file
//!   beside it (a random name, created exclusively, so nothing planted at a
//!   guessable name is followed), is fsynced, then renamed over the path: a
//!   reader, a crash or a signal mid-write never leaves half a file, and a
//!   failed write leaves the old file as it was. A file that existed keeps
//!   its permission bits.
//! * **A symbolic link:** refused. Writing through a link planted in a
//!   shared directory is how a process running as root is made to
//!   overwrite a file of the attacker's choosing; replacing the link would
//!   silently break a link the user made. Name the file itself.
//! * **A FIFO or a character device** (`/dev/null`, `/dev/full`, a pipe a
//!   reader waits on): written through as it is, opened without following
//!   links; a FIFO waits for its reader, as a shell redirect does.
//! * **`/dev/stdout` and `/dev/stderr`** (and `/dev/fd/1`, `/dev/fd/2`,
//!   `/proc/self/fd/1`, `/proc/self/fd/2`) are this process's own output
//!   streams, as in bash and gawk: written to the descriptor directly (they
//!   are links on Linux, so otherwise they would be refused).
//! * **A directory, block device or socket:** refused.
//!
//! Any error (`ENOSPC` from `/dev/full` included) is returned: callers turn
//! it into a message naming the flag and exit code 1.

use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Why an output file was not written. Printed after `writing FLAG PATH: `.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The path is a symbolic link. Remedy: name the file the link points
    /// to, or remove the link.
    #[error(
        "it is a symbolic link, and output is never written through one (name the file itself, or remove the link)"
    )]
    Symlink,
    /// The path is something no output can go to. Remedy: name a regular
    /// file (or a FIFO or character device).
    #[error("it is a {0}; name a regular file, a FIFO or a character device")]
    NotAFile(&'static str),
    /// An OS call failed (no space, no permission, no such directory).
    /// Remedy: what the OS error says.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io(step: &'static str) -> impl FnOnce(std::io::Error) -> OutputError {
    move |source| OutputError::Io { step, source }
}

/// What a path is, as far as writing it goes.
enum Target {
    /// Nothing there: created.
    Missing,
    /// A regular file with these permission bits: replaced.
    Regular(u32),
    /// A FIFO or a character device: written through.
    Device,
    /// Our own stdout (1) or stderr (2).
    Std(i32),
}

/// This process's own output streams, by the names shells give them.
fn std_stream(path: &Path) -> Option<i32> {
    match path.to_str()? {
        "/dev/stdout" | "/dev/fd/1" | "/proc/self/fd/1" => Some(1),
        "/dev/stderr" | "/dev/fd/2" | "/proc/self/fd/2" => Some(2),
        _ => None,
    }
}

fn classify(path: &Path) -> Result<Target, OutputError> {
    if let Some(fd) = std_stream(path) {
        return Ok(Target::Std(fd));
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Target::Missing),
        Err(e) => return Err(io("looking at the path")(e)),
    };
    let t = meta.file_type();
    if t.is_symlink() {
        Err(OutputError::Symlink)
    } else if t.is_file() {
        Ok(Target::Regular(meta.permissions().mode() & 0o777))
    } else if t.is_fifo() || t.is_char_device() {
        Ok(Target::Device)
    } else {
        Err(OutputError::NotAFile(kind_name(&t)))
    }
}

fn kind_name(t: &std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "directory"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else if t.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// Open a FIFO or character device for writing, following no link, and
/// check that what opened is still one (the path may have changed since
/// it was looked at). The open does not wait: a FIFO nobody reads (one
/// planted at a report path, say) is an error (ENXIO), not a process that
/// never exits; once open, writes block as usual.
fn open_device(path: &Path) -> Result<File, OutputError> {
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => OutputError::Symlink,
            Some(libc::ENXIO) => io("opening it: a FIFO with no reader")(e),
            _ => io("opening it")(e),
        })?;
    // SAFETY: fcntl on a descriptor this File owns; only the status flags
    // change.
    unsafe {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    let t = f.metadata().map_err(io("looking at it"))?.file_type();
    if t.is_fifo() || t.is_char_device() {
        Ok(f)
    } else {
        Err(OutputError::NotAFile(kind_name(&t)))
    }
}

/// The directory `path` is in (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A new temporary file in `path`'s directory (random name, created
/// exclusively: a link planted there is never followed), with the mode
/// the file at `path` has, or the usual 0666 less the umask.
fn temporary_beside(
    path: &Path,
    mode: Option<u32>,
) -> Result<tempfile::NamedTempFile, OutputError> {
    let name = path.file_name().ok_or(OutputError::NotAFile("directory"))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(dir_of(path))
        .map_err(io("creating a temporary file in its directory"))?;
    if let Some(mode) = mode {
        tmp.as_file()
            .set_permissions(Permissions::from_mode(mode))
            .map_err(io("setting the temporary file's mode"))?;
    }
    Ok(tmp)
}

/// Rename `tmp` over `path` (a rename never follows a link at `path`: at
/// worst it replaces the link itself) and make the rename durable.
fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<File, OutputError> {
    let f = tmp
        .persist(path)
        .map_err(|e| io("renaming the temporary file into place")(e.error))?;
    // The directory entry is what makes the new file the file at `path`
    // after a crash. Best effort: some file systems refuse to fsync a
    // directory, and the file itself is already on disk.
    if let Ok(d) = File::open(dir_of(path)) {
        let _ = d.sync_all();
    }
    Ok(f)
}

fn write_std(fd: i32, bytes: &[u8]) -> Result<(), OutputError> {
    let r = if fd == 1 {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes).and_then(|()| out.flush())
    } else {
        let mut err = std::io::stderr().lock();
        err.write_all(bytes).and_then(|()| err.flush())
    };
    r.map_err(io("writing"))
}

/// Write `bytes` to `path` as the module doc says: replace a regular file
/// atomically (temporary file, fsync, rename), write through a FIFO or
/// character device, refuse a link or anything else.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    match classify(path)? {
        Target::Std(fd) => write_std(fd, bytes),
        Target::Device => {
            let mut f = open_device(path)?;
            f.write_all(bytes).map_err(io("writing"))?;
            f.flush().map_err(io("writing"))
        }
        Target::Missing => replace(path, bytes, None),
        Target::Regular(mode) => replace(path, bytes, Some(mode)),
    }
}

fn replace(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), OutputError> {
    let mut tmp = temporary_beside(path, mode)?;
    tmp.write_all(bytes).map_err(io("writing"))?;
    tmp.as_file().sync_all().map_err(io("syncing"))?;
    persist(tmp, path).map(drop)
}

/// Write `value` as pretty JSON (and a newline) to `path` by [`write`].
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), OutputError> {
    let mut text = serde_json::to_vec_pretty(value)
        .map_err(|e| io("encoding JSON")(std::io::Error::other(e)))?;
    text.push(b'\n');
    write(path, &text)
}

/// Open `path` for a file written as the run goes (a log): a FIFO or
/// character device is opened as it is (never through a link), our own
/// stdout/stderr is duplicated, and anything else follows [`write`]'s
/// rules, except that the new file is renamed into place at once (empty)
/// and the caller writes it from there.
pub fn create_stream(path: &Path) -> Result<File, OutputError> {
    match classify(path)? {
        Target::Std(fd) => {
            use std::os::fd::AsFd;
            let owned = if fd == 1 {
                std::io::stdout().as_fd().try_clone_to_owned()
            } else {
                std::io::stderr().as_fd().try_clone_to_owned()
            };
            owned
                .map(File::from)
                .map_err(io("duplicating the descriptor"))
        }
        Target::Device => open_device(path),
        Target::Missing => persist(temporary_beside(path, None)?, path),
        Target::Regular(mode) => persist(temporary_beside(path, Some(mode))?, path),
    }
}

/// Flush a stream from [`create_stream`] to disk when it is a regular file
/// (a device or pipe has nothing to sync).
pub fn sync_stream(f: &File) -> std::io::Result<()> {
    if f.metadata()?.file_type().is_file() {
        f.sync_all()
    } else {
        Ok(())
    }
}

/// Remove a previous run's output at `path` before a run starts, so that
/// whatever happens to this run (a failure before it can report, a kill),
/// a file left there is never mistaken for its output. Only a regular file
/// is removed: a link, device or FIFO is left alone (and dealt with when
/// the output is written). Returns whether a file was removed.
pub fn remove_stale(path: &Path) -> Result<bool, OutputError> {
    if std_stream(path).is_some() {
        return Ok(false);
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io("removing the previous run's file")(e)),
        },
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("looking at the path")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn a_regular_file_is_replaced_whole_and_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        write_json(&p, &serde_json::json!({"a": 1})).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\n  \"a\": 1\n}\n");
        std::fs::set_permissions(&p, Permissions::from_mode(0o640)).unwrap();
        write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_link_at_the_old_temporary_name_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let p = dir.path().join("r.json");
        symlink(&victim, dir.path().join("r.json.tmp")).unwrap();
        write(&p, b"report").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read(&p).unwrap(), b"report");
    }

    #[test]
    fn a_link_at_the_path_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let p = dir.path().join("r.json");
        symlink(&victim, &p).unwrap();
        assert!(matches!(write(&p, b"x"), Err(OutputError::Symlink)));
        assert!(matches!(create_stream(&p), Err(OutputError::Symlink)));
        assert!(!remove_stale(&p).unwrap());
        assert!(std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // A dangling link, too.
        let dangling = dir.path().join("d.json");
        symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(matches!(write(&dangling, b"x"), Err(OutputError::Symlink)));
        assert!(!dir.path().join("nowhere").exists());
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn devices_are_written_through_and_their_errors_returned() {
        write(Path::new("/dev/null"), b"x").unwrap();
        let e = write(Path::new("/dev/full"), b"x").unwrap_err();
        assert!(
            matches!(&e, OutputError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC)),
            "{e}"
        );
        let meta = std::fs::symlink_metadata("/dev/full").unwrap();
        assert!(meta.file_type().is_char_device(), "/dev/full is untouched");
        assert!(!remove_stale(Path::new("/dev/null")).unwrap());
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            write(dir.path(), b"x"),
            Err(OutputError::NotAFile("directory"))
        ));
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let e = write(&dir.path().join("no/such/r.json"), b"x").unwrap_err();
        assert!(e.to_string().contains("creating a temporary file"), "{e}");
    }

    #[test]
    fn a_stream_is_a_fresh_file_renamed_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "old").unwrap();
        let mut f = create_stream(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        f.write_all(b"new").unwrap();
        sync_stream(&f).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn remove_stale_removes_only_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        assert!(!remove_stale(&p).unwrap());
        std::fs::write(&p, "old").unwrap();
        assert!(remove_stale(&p).unwrap());
        assert!(!p.exists());
        assert!(!remove_stale(Path::new("/dev/stdout")).unwrap());
    }
}
