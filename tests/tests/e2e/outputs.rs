//! Output files and reports (issue 10, findings 3 and 10): what a path that
//! is a link, a FIFO or a device gets; that every output file goes through
//! the one writer; that a failed or signalled run leaves its own report (or
//! none), never a previous run's.
//!
//! Nothing here writes the host's /dev: the devices are made in the test's
//! directory (the old writer, run as root, replaced the device node it was
//! given). Only where this process may not make device nodes are /dev/null
//! and /dev/full used, and then the old writer could not have replaced them
//! either.

use crate::support::*;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use wait_timeout::ChildExt;

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn is_symlink(p: &Path) -> bool {
    std::fs::symlink_metadata(p)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

/// A quick publisher run: one stream, `count` records flat out, no
/// subscriber (the end phase has nobody to wait for).
fn pub_once(extra: &[&str]) -> (ExitStatus, String, String) {
    let mut args = vec![
        "--bind",
        "tcp://127.0.0.1:*",
        "--count",
        "10",
        "--rate",
        "0",
    ];
    args.extend_from_slice(extra);
    run(pub_bin(), &args)
}

/// A quick subscriber run: nobody publishes; it ends by `--duration`.
fn sub_once(extra: &[&str]) -> (ExitStatus, String, String) {
    let mut args = vec!["--connect", "tcp://127.0.0.1:9", "--duration", "0.2"];
    args.extend_from_slice(extra);
    run(sub_bin(), &args)
}

/// The memory character device `name` (/dev/null: minor 3, /dev/full:
/// minor 7, which fails every write with ENOSPC) made in `dir`; the one in
/// /dev where this process may not make device nodes.
fn device(dir: &Path, name: &str, minor: u32) -> PathBuf {
    let p = dir.join(name);
    let mode = libc::S_IFCHR | 0o666;
    // SAFETY: mknod(2) with a valid C string path.
    let r = unsafe { libc::mknod(cstr(&p).as_ptr(), mode, libc::makedev(1, minor)) };
    if r == 0 {
        p
    } else {
        Path::new("/dev").join(name)
    }
}

/// A FIFO at `p` and a non-blocking read end of it: a writer can open it at
/// once, and what it writes waits in the pipe for [`drain`].
fn fifo_with_reader(p: &Path) -> std::fs::File {
    // SAFETY: mkfifo/open with a valid C string path; the descriptor is
    // owned by the File returned.
    unsafe {
        assert_eq!(libc::mkfifo(cstr(p).as_ptr(), 0o600), 0, "mkfifo");
        let fd = libc::open(cstr(p).as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK);
        assert!(fd >= 0, "opening the FIFO's read end");
        std::os::fd::FromRawFd::from_raw_fd(fd)
    }
}

/// Everything waiting in a non-blocking read end.
fn drain(f: &mut std::fs::File) -> String {
    use std::io::Read;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("reading the FIFO: {e}"),
        }
    }
    String::from_utf8(out).unwrap()
}

// ---- Finding 3: the report writer can clobber files. ----

#[test]
fn report_writer_never_follows_a_link_planted_at_its_temporary_name() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let report = dir.path().join("pub.json");
    // The old writer wrote `<path>.json.tmp`, following a link there.
    symlink(&victim, dir.path().join("pub.json.tmp")).unwrap();
    let (st, err, _) = pub_once(&["--report-json", &path_str(&report)]);
    assert!(st.success(), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!is_symlink(&report), "the report is a file of its own");
    assert_eq!(read_json(&report)["role"], "shardcast-pub");
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".pub.json."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn report_writer_refuses_a_link_at_the_report_path_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let report = dir.path().join("pub.json");
    symlink(&victim, &report).unwrap();
    let (st, err, _) = pub_once(&["--report-json", &path_str(&report)]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("--report-json") && err.contains("symbolic link"),
        "{err}"
    );
    assert!(is_symlink(&report), "the link is left as it was");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    // A dangling link: nothing is created where it points.
    let nowhere = dir.path().join("nowhere");
    let dangling = dir.path().join("sub.json");
    symlink(&nowhere, &dangling).unwrap();
    let (st, err, _) = sub_once(&["--report-json", &path_str(&dangling)]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("--report-json"), "{err}");
    assert!(!nowhere.exists() && is_symlink(&dangling));
}

/// Review of finding 3: a FIFO planted at a report path with nobody
/// reading it made the writer's open wait forever: the process never
/// exited. Now it is an error naming the flag (exit 1), and the FIFO stays.
#[test]
fn a_fifo_nobody_reads_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("report.fifo");
    // SAFETY: mkfifo with a valid C string path.
    assert_eq!(unsafe { libc::mkfifo(cstr(&fifo).as_ptr(), 0o600) }, 0);
    let (st, err, _) = pub_once(&["--report-json", &path_str(&fifo)]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("--report-json") && err.contains("no reader"),
        "{err}"
    );
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn report_writer_writes_through_a_fifo_or_device_and_fails_on_a_full_one() {
    let dir = tempfile::tempdir().unwrap();
    // A FIFO gets the report; it stays a FIFO.
    let fifo = dir.path().join("report.fifo");
    let mut reader = fifo_with_reader(&fifo);
    let (st, err, _) = pub_once(&["--report-json", &path_str(&fifo)]);
    assert!(st.success(), "{err}");
    let text = drain(&mut reader);
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}\n{err}"));
    assert_eq!(v["role"], "shardcast-pub");
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());

    // A full device: ENOSPC is an error naming the flag, exit 1, and the
    // device node is left as it was.
    let full = device(dir.path(), "full", 7);
    let (st, err, _) = pub_once(&["--report-json", &path_str(&full)]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("--report-json") && err.contains("No space left on device"),
        "{err}"
    );
    assert!(std::fs::symlink_metadata(&full)
        .unwrap()
        .file_type()
        .is_char_device());

    // A null device swallows it; our own stdout (by /dev/fd/1) shows it.
    let null = device(dir.path(), "null", 3);
    let (st, err, _) = pub_once(&["--report-json", &path_str(&null)]);
    assert!(st.success(), "{err}");
    assert!(std::fs::symlink_metadata(&null)
        .unwrap()
        .file_type()
        .is_char_device());
    let (st, err, out) = pub_once(&["--report-json", "/dev/fd/1"]);
    assert!(st.success(), "{err}");
    assert!(out.contains("\"role\": \"shardcast-pub\""), "{out}");
}

#[test]
fn every_output_file_goes_through_the_report_writer() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let link = |name: &str| {
        let p = dir.path().join(name);
        symlink(&victim, &p).unwrap();
        p
    };
    let report = dir.path().join("sub.json");
    let per_stage_link = link("lat.wire.hgrm");
    let outputs = [
        ("--books-out", link("books.json")),
        ("--plot", link("lat.svg")),
        ("--hdr-log", link("lat.hlog")),
    ];
    // Each output file at a link: refused, named, exit 1; nothing written
    // through any of them.
    for (flag, p) in &outputs {
        let (st, err, _) = sub_once(&[flag, &path_str(p), "--report-json", &path_str(&report)]);
        assert_eq!(st.code(), Some(1), "{flag}: {err}");
        assert!(
            err.contains(flag) && err.contains("symbolic link"),
            "{flag}: {err}"
        );
        assert!(is_symlink(p));
    }
    // --hgrm: a link at one of its per-stage files is refused too.
    let hgrm = dir.path().join("lat.hgrm");
    let (st, err, _) = sub_once(&["--hgrm", &path_str(&hgrm)]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("--hgrm") && err.contains("lat.wire.hgrm"),
        "{err}"
    );
    assert!(is_symlink(&per_stage_link));
    // The same files written for real, as regular files.
    std::fs::remove_file(&per_stage_link).unwrap();
    let mut args: Vec<String> = Vec::new();
    for (flag, p) in &outputs {
        std::fs::remove_file(p).unwrap();
        args.extend([flag.to_string(), path_str(p)]);
    }
    args.extend(["--hgrm".into(), path_str(&hgrm)]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (st, err, _) = sub_once(&args);
    assert!(st.success(), "{err}");
    for (_, p) in &outputs {
        assert!(std::fs::metadata(p).unwrap().is_file(), "{}", p.display());
    }
    assert!(std::fs::metadata(dir.path().join("lat.wire.hgrm"))
        .unwrap()
        .is_file());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

#[test]
fn the_snail_report_goes_through_the_report_writer() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let forensics = dir.path().join("snail.json");
    symlink(&victim, &forensics).unwrap();
    // Every record looks 5 s old: absolute mode croaks on the first one.
    let publ = start_pub(
        1,
        &[
            "--rate",
            "5000",
            "--count",
            "5000",
            "--wait-subscribers",
            "1",
            "--clock-offset-ms",
            "-5000",
        ],
    );
    let sub = start_sub(&publ.endpoints, &["--snail-report", &path_str(&forensics)]);
    let (st, err, _) = sub.wait();
    assert_eq!(st.code(), Some(3), "the croak's exit code stands: {err}");
    assert!(
        err.contains("--snail-report") && err.contains("symbolic link"),
        "{err}"
    );
    assert!(is_symlink(&forensics));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

// ---- Finding 10: stale or missing reports. ----

#[test]
fn a_wait_timeout_writes_its_report_over_a_stale_one() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("pub.json");
    std::fs::write(&report, "a previous run's report").unwrap();
    let (st, err, out) = run(
        pub_bin(),
        &[
            "--bind",
            "tcp://127.0.0.1:*",
            "--wait-subscribers",
            "1",
            "--wait-timeout",
            "0.2",
            "--report-json",
            &path_str(&report),
        ],
    );
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("--wait-timeout"), "{err}");
    let p = read_json(&report);
    assert_eq!(p["end_reason"], "wait-timeout");
    assert_eq!(u(&p, "sent"), 0);
    assert_eq!(u(&p["streams"][0], "eos_sent"), 0);
    assert!(out.contains("ended by wait-timeout"), "{out}");
}

#[test]
fn a_run_that_fails_before_it_can_report_leaves_no_stale_report() {
    let dir = tempfile::tempdir().unwrap();
    // The publisher: its port is taken, so binding fails (exit 1).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let report = dir.path().join("pub.json");
    std::fs::write(&report, "a previous run's report").unwrap();
    let (st, err, _) = run(
        pub_bin(),
        &[
            "--bind",
            &format!("tcp://127.0.0.1:{port}"),
            "--report-json",
            &path_str(&report),
        ],
    );
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(!report.exists(), "the stale report is gone");

    // The subscriber: its --hdr-log cannot be created (exit 1); every
    // output of a previous run is gone.
    let stale: Vec<(&str, PathBuf)> = ["--report-json", "--books-out", "--snail-report"]
        .iter()
        .map(|f| (*f, dir.path().join(format!("{}.json", &f[2..]))))
        .collect();
    let mut args = vec![
        "--hdr-log".to_string(),
        path_str(&dir.path().join("no/such/dir/lat.hlog")),
    ];
    for (flag, p) in &stale {
        std::fs::write(p, "a previous run's output").unwrap();
        args.extend([flag.to_string(), path_str(p)]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (st, err, _) = sub_once(&args);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("--hdr-log"), "{err}");
    for (flag, p) in &stale {
        assert!(!p.exists(), "{flag}: the stale file is gone");
    }
}

/// A child that is killed if the test fails before it exits.
struct Guarded(Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_guarded(g: &mut Guarded) -> ExitStatus {
    match g.0.wait_timeout(PROCESS_TIMEOUT).unwrap() {
        Some(st) => st,
        None => panic!("did not exit within {PROCESS_TIMEOUT:?}"),
    }
}

/// The signals `pid` catches (SigCgt) and the system call it is blocked
/// in, if any (/proc/PID/syscall).
fn caught_and_syscall(pid: u32) -> (u64, Option<i64>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let cgt = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let sc = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    (
        cgt,
        sc.split_whitespace().next().and_then(|n| n.parse().ok()),
    )
}

const SIGINT_SIGTERM: u64 = (1 << (libc::SIGINT - 1)) | (1 << (libc::SIGTERM - 1));

#[test]
fn signal_handlers_are_in_place_before_flags_are_parsed() {
    for bin in [pub_bin(), sub_bin()] {
        // Hold the process inside flag parsing: `--help` written to a pipe
        // that is already full blocks until the test reads it.
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills `fds` with two new descriptors, each owned
        // by a File below.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let (mut rd, wr): (std::fs::File, std::fs::File) = unsafe {
            use std::os::fd::FromRawFd;
            (
                std::fs::File::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        };
        let set_nonblock = |on: bool| {
            // SAFETY: fcntl on our own pipe's write end.
            unsafe {
                let fl = libc::fcntl(fds[1], libc::F_GETFL);
                let fl = if on {
                    fl | libc::O_NONBLOCK
                } else {
                    fl & !libc::O_NONBLOCK
                };
                libc::fcntl(fds[1], libc::F_SETFL, fl);
            }
        };
        set_nonblock(true);
        let mut filled = 0usize;
        loop {
            use std::io::Write;
            match (&wr).write(&[b'.'; 4096]) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("filling the pipe: {e}"),
            }
        }
        set_nonblock(false);
        let child = Command::new(bin)
            .arg("--help")
            .stdin(Stdio::null())
            .stdout(wr)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut g = Guarded(child);
        let pid = g.0.id();
        poll_until(
            &format!(
                "{}: SIGINT and SIGTERM caught while blocked printing --help",
                bin.display()
            ),
            || {
                let (cgt, sc) = caught_and_syscall(pid);
                cgt & SIGINT_SIGTERM == SIGINT_SIGTERM && sc == Some(libc::SYS_write)
            },
        );
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        // Let it finish: it was stopping in order, not killed.
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let mut all = Vec::new();
            let _ = rd.read_to_end(&mut all);
            all
        });
        let st = wait_guarded(&mut g);
        let all = reader.join().unwrap();
        assert_eq!(st.code(), Some(0), "{}: {st:?}", bin.display());
        let help = String::from_utf8_lossy(&all[filled..]);
        assert!(help.contains("Usage"), "{help}");
    }
}

#[test]
fn a_sigterm_held_since_exec_stops_the_run_in_order_with_a_report() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let pub_json = dir.path().join("pub.json");
    let sub_json = dir.path().join("sub.json");
    // Without a signal, the publisher would wait for a subscriber until
    // --wait-timeout (then exit 1), and the subscriber would run until
    // --duration.
    let runs = [
        (
            pub_bin(),
            vec![
                "--bind".to_string(),
                "tcp://127.0.0.1:*".into(),
                "--wait-subscribers".into(),
                "1".into(),
                "--wait-timeout".into(),
                "60".into(),
                "--report-json".into(),
                path_str(&pub_json),
            ],
            &pub_json,
        ),
        (
            sub_bin(),
            vec![
                "--connect".to_string(),
                "tcp://127.0.0.1:9".into(),
                "--duration".into(),
                "60".into(),
                "--report-json".into(),
                path_str(&sub_json),
            ],
            &sub_json,
        ),
    ];
    for (bin, args, json) in runs {
        let mut cmd = Command::new(bin);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The supervisor's way to close the window between exec and main:
        // start with SIGINT and SIGTERM blocked, so a signal sent at once
        // waits (pending) until main has its handlers and unblocks them.
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGINT);
                libc::sigaddset(&mut set, libc::SIGTERM);
                match libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) {
                    0 => Ok(()),
                    e => Err(std::io::Error::from_raw_os_error(e)),
                }
            });
        }
        let mut g = Guarded(cmd.spawn().unwrap());
        // Sent before the process could have reached main.
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(g.0.id() as i32, libc::SIGTERM) };
        let st = wait_guarded(&mut g);
        assert_eq!(st.code(), Some(0), "{}: {st:?}", bin.display());
        let r = read_json(json);
        assert_eq!(r["end_reason"], "signal", "{}: {r}", bin.display());
    }
}
