//! The Debian package, built from the real binaries and opened up: the
//! files are where Debian's tools look for them and the binaries run; then,
//! in CI, installed into the machine for real, which runs the maintainer
//! scripts.
//!
//! Needs dpkg-deb, dpkg-shlibdeps (dpkg-dev) and strip (binutils); without
//! them the tests print `SKIPPED: <why>` and pass. The real install changes
//! the machine (a package, a system user), so it runs only when asked for
//! with `SHARDCAST_REQUIRE_PACKAGE=1`, as root, which is what `.ci/run`
//! does on its throwaway machine; that variable also turns every skip into
//! a failure. `SHARDCAST_PACKAGE_DEB=FILE` tests that package instead of
//! building one (CI: the one its package step built from the system-libzmq
//! build).

use shardcast_dist::bins::SHIPPED;
use shardcast_dist::deb;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use wait_timeout::ChildExt;

/// CI: nothing may skip, and the package is really installed.
const REQUIRE: &str = "SHARDCAST_REQUIRE_PACKAGE";
/// A package built elsewhere, tested instead of building one.
const DEB: &str = "SHARDCAST_PACKAGE_DEB";

/// Every command here is quick; a dpkg waiting on a lock or a binary that
/// hangs fails the test instead of stalling CI.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Building the package: stripping and compressing a debug build's
/// binaries on a small, busy machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

fn required() -> bool {
    std::env::var_os(REQUIRE).is_some_and(|v| v == "1")
}

/// Prints why `test` is skipped, or fails it when skipping is not allowed.
fn skip(test: &str, why: &str) {
    if required() {
        panic!("{test}: {why} ({REQUIRE}=1: this must run here)");
    }
    println!("SKIPPED {test}: {why}");
}

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn both(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` to the end or at most `timeout` (then kills it and fails),
/// its output captured in files so that neither pipe can fill and block it.
fn run_for(cmd: &mut Command, timeout: Duration) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let status = match child.wait_timeout(timeout).unwrap() {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still running after {timeout:?}; stderr so far:\n{}",
                fs::read_to_string(&err).unwrap_or_default()
            );
        }
    };
    Ran {
        ok: status.success(),
        stdout: fs::read_to_string(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
    }
}

fn run(cmd: &mut Command) -> Ran {
    run_for(cmd, TIMEOUT)
}

/// Runs `cmd` and fails the test unless it succeeds.
fn ok(cmd: &mut Command) -> Ran {
    let r = run(cmd);
    assert!(r.ok, "{cmd:?} failed\n{}", r.both());
    r
}

/// Whether `tool` can be started at all (its exit status does not matter:
/// `strip --version` and `dpkg-shlibdeps --version` differ in what they
/// think of being asked).
fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The package under test, built once for both tests; `Err` says why there
/// is none.
fn the_deb() -> Result<&'static Path, String> {
    static DEB_FILE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DEB_FILE
        .get_or_init(|| {
            if let Some(p) = std::env::var_os(DEB) {
                // A relative path is the workspace's (where CI and README
                // commands run), not this crate's directory, which is where
                // cargo runs the test.
                let p = PathBuf::from(p);
                let p = if p.is_relative() {
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
                } else {
                    p
                };
                return if p.is_file() {
                    println!("testing {} ({DEB})", p.display());
                    Ok(p)
                } else {
                    Err(format!("{DEB}={} is not a file", p.display()))
                };
            }
            for (tool, package) in [
                ("dpkg-deb", "dpkg"),
                ("dpkg-shlibdeps", "dpkg-dev"),
                ("strip", "binutils"),
            ] {
                if !have(tool) {
                    return Err(format!(
                        "{tool} is not installed (apt-get install {package})"
                    ));
                }
            }
            Ok(build_deb())
        })
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(Clone::clone)
}

/// The shipped binaries as this test run builds them (debug, default
/// libzmq), packaged by the real `shardcast-dist deb`.
fn build_deb() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut bin_dir: Option<PathBuf> = None;
    for b in SHIPPED {
        let built = escargot::CargoBuild::new()
            .manifest_path(&manifest)
            .package(b.package)
            .bin(b.name)
            .current_release()
            .current_target()
            .run()
            .unwrap_or_else(|e| panic!("building {}: {e}", b.name));
        let dir = built.path().parent().unwrap().to_path_buf();
        if let Some(d) = &bin_dir {
            assert_eq!(*d, dir, "binaries built into two directories");
        }
        bin_dir = Some(dir);
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package");
    let started = std::time::Instant::now();
    let r = run_for(
        Command::new(env!("CARGO_BIN_EXE_shardcast-dist"))
            .arg("deb")
            .arg("--bin-dir")
            .arg(bin_dir.unwrap())
            .arg("--out")
            .arg(&out)
            .args(["--compress", "gzip"]),
        BUILD_TIMEOUT,
    );
    assert!(r.ok, "shardcast-dist deb failed\n{}", r.both());
    println!(
        "shardcast-dist deb: {:.1} s\n{}",
        started.elapsed().as_secs_f64(),
        r.stdout
    );
    PathBuf::from(r.stdout.lines().next().unwrap())
}

fn field(deb: &Path, name: &str) -> String {
    ok(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name))
        .stdout
        .trim()
        .to_string()
}

fn gunzip(path: &Path) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{}: not gzip: {e}", path.display()));
    text
}

fn executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The non-comment `KEY=` values of a unit file.
fn unit_values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("{key}=");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

#[test]
fn the_package_puts_binaries_man_pages_completions_units_and_profiles_where_debian_looks() {
    let test =
        "the_package_puts_binaries_man_pages_completions_units_and_profiles_where_debian_looks";
    let deb = match the_deb() {
        Ok(d) => d,
        Err(why) => return skip(test, &why),
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let control = tmp.path().join("DEBIAN");
    // dpkg-deb -x: the files as dpkg would unpack them, without running
    // anything or touching this machine.
    ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root));
    ok(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control));
    let version = deb::version();

    assert_eq!(field(deb, "Package"), "shardcast");
    assert_eq!(field(deb, "Version"), version);
    let depends = field(deb, "Depends");
    assert!(depends.starts_with("adduser, "), "{depends}");
    assert!(depends.contains("libc6"), "{depends}");

    let mut links_zmq = false;
    for b in SHIPPED {
        let bin = root.join("usr/bin").join(b.name);
        assert!(
            executable(&bin),
            "{} missing or not executable",
            bin.display()
        );
        // The unpacked binary runs: `--version` from the package's tree.
        let v = ok(Command::new(&bin).arg("--version"));
        assert_eq!(
            v.stdout.trim(),
            format!("{} {}", b.name, env!("CARGO_PKG_VERSION"))
        );
        // Depends is honest about libzmq: named exactly when a binary
        // links the shared library (the system-libzmq build), absent for the
        // default build, which carries its own. (shardcast-stat speaks HTTP
        // only and links no libzmq in either build.)
        let ldd = ok(Command::new("ldd").arg(&bin)).stdout;
        let links = ldd.contains("libzmq.so.5");
        links_zmq |= links;
        assert!(
            !links || depends.contains("libzmq5"),
            "{}: links libzmq.so.5, but Depends: {depends}",
            b.name
        );

        let man = root.join(format!("usr/share/man/man1/{}.1.gz", b.name));
        let page = gunzip(&man);
        assert!(
            page.contains(&format!(".TH {} 1", b.name)),
            "{}",
            man.display()
        );
        assert!(page.contains(".SH OPTIONS"), "{}", man.display());
        if have("man") {
            let shown = ok(Command::new("man")
                .arg("-l")
                .arg(&man)
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "80"));
            assert!(shown.stdout.contains("SYNOPSIS"), "{}", shown.both());
        } else {
            println!("man is not installed: {} read as roff only", man.display());
        }

        // bash: the script loads and registers the completion.
        let bash = root
            .join("usr/share/bash-completion/completions")
            .join(b.name);
        let loaded = ok(Command::new("bash").arg("-c").arg(format!(
            "source {} && complete -p {}",
            bash.display(),
            b.name
        )));
        assert!(loaded.stdout.contains(b.name), "{}", loaded.both());
        let zsh = root.join(format!("usr/share/zsh/vendor-completions/_{}", b.name));
        let zsh_text = fs::read_to_string(&zsh).unwrap();
        assert!(
            zsh_text.starts_with(&format!("#compdef {}\n", b.name)),
            "{}",
            zsh.display()
        );
        let fish = root.join(format!(
            "usr/share/fish/vendor_completions.d/{}.fish",
            b.name
        ));
        let fish_text = fs::read_to_string(&fish).unwrap();
        assert!(
            fish_text.contains(&format!("complete -c {} ", b.name)),
            "{}",
            fish.display()
        );
        for (shell, file, check) in [("zsh", &zsh, "-n"), ("fish", &fish, "--no-execute")] {
            if have(shell) {
                ok(Command::new(shell).arg(check).arg(file));
            }
        }
    }
    assert_eq!(
        links_zmq,
        depends.contains("libzmq5"),
        "Depends names libzmq5 exactly when a shipped binary links it: {depends}"
    );

    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    for role in ["pub", "sub"] {
        let unit = root.join(format!("usr/lib/systemd/system/shardcast-{role}@.service"));
        let text = fs::read_to_string(&unit).unwrap();
        assert_eq!(
            unit_values(&text, "ExecStart"),
            [format!("/usr/bin/shardcast-{role}")],
            "{}",
            unit.display()
        );
        assert!(executable(&root.join(format!("usr/bin/shardcast-{role}"))));
        // The user the postinst creates.
        assert_eq!(unit_values(&text, "User"), ["shardcast"]);
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(!l.contains("/usr/local/"), "{}: {l}", unit.display());
        }
        // Everything but the paths is deploy/'s unit, line for line.
        let original =
            fs::read_to_string(deploy.join(format!("systemd/shardcast-{role}@.service"))).unwrap();
        assert_eq!(text.lines().count(), original.lines().count());
    }
    let mut conffiles: Vec<String> = fs::read_to_string(control.join("conffiles"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    conffiles.sort();
    let mut profiles = Vec::new();
    for entry in fs::read_dir(deploy.join("profiles")).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let installed = root.join("etc/shardcast/profiles").join(&name);
        assert_eq!(
            fs::read(&installed).unwrap(),
            fs::read(&p).unwrap(),
            "{name}"
        );
        profiles.push(format!("/etc/shardcast/profiles/{name}"));
    }
    profiles.sort();
    assert!(!profiles.is_empty());
    assert_eq!(
        conffiles, profiles,
        "every profile is a conffile, nothing else"
    );

    let tune = root.join("usr/sbin/shardcast-tune-host");
    assert!(executable(&tune));
    ok(Command::new("bash").arg("-n").arg(&tune));
    for doc in ["README.md", "TUNING.md", "copyright"] {
        assert!(
            root.join("usr/share/doc/shardcast").join(doc).is_file(),
            "{doc}"
        );
    }
    for script in ["postinst", "postrm"] {
        let s = control.join(script);
        assert!(executable(&s), "{script}");
        ok(Command::new("sh").arg("-n").arg(&s));
    }
    println!("{}: Depends: {depends}; layout checked", deb.display());
}

/// Purges the package when the install test ends, passed or not, so a
/// failed assertion does not leave it on the machine.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = run(Command::new("dpkg").args(["--purge", "shardcast"]));
    }
}

fn passwd_entry() -> Option<Vec<String>> {
    let r = run(Command::new("getent").args(["passwd", "shardcast"]));
    r.ok.then(|| r.stdout.trim().split(':').map(String::from).collect())
}

#[test]
fn installed_for_real_the_package_creates_the_user_and_puts_shardcast_pub_on_the_path() {
    let test = "installed_for_real_the_package_creates_the_user_and_puts_shardcast_pub_on_the_path";
    if !required() {
        return println!(
            "SKIPPED {test}: installs into this machine (a package, a system user): \
             only with {REQUIRE}=1, as root, as CI does"
        );
    }
    let uid = ok(Command::new("id").arg("-u")).stdout;
    if uid.trim() != "0" {
        return skip(test, "the real install needs root");
    }
    let deb = match the_deb() {
        Ok(d) => d,
        Err(why) => return skip(test, &why),
    };
    assert!(
        !run(Command::new("dpkg").args(["--status", "shardcast"])).ok,
        "shardcast is already installed here; this test would replace and purge it"
    );
    let user_before = passwd_entry();

    let _purge = Purge;
    ok(Command::new("dpkg").arg("--install").arg(deb));
    let user = passwd_entry().expect("postinst created user shardcast");
    match &user_before {
        None => {
            let uid: u32 = user[2].parse().unwrap();
            assert!(uid < 1000, "a system user: {user:?}");
            assert_eq!(user[5], "/nonexistent", "{user:?}");
            assert_eq!(user[6], "/usr/sbin/nologin", "{user:?}");
            println!("postinst created {user:?}");
        }
        Some(u) => println!("user shardcast existed before the install ({u:?}): left as it was"),
    }
    assert!(run(Command::new("getent").args(["group", "shardcast"])).ok);

    // On the PATH, as an operator would run it.
    let v = ok(Command::new("shardcast-pub").arg("--version"));
    assert_eq!(
        v.stdout.trim(),
        format!("shardcast-pub {}", env!("CARGO_PKG_VERSION"))
    );
    println!("installed: {}", v.stdout.trim());
    for b in SHIPPED {
        assert!(
            executable(&Path::new("/usr/bin").join(b.name)),
            "{}",
            b.name
        );
    }
    if have("man") {
        let w = ok(Command::new("man").args(["-w", "shardcast-pub"]));
        assert_eq!(w.stdout.trim(), "/usr/share/man/man1/shardcast-pub.1.gz");
    }
    let listed = ok(Command::new("dpkg").args(["--listfiles", "shardcast"])).stdout;
    for path in [
        "/usr/lib/systemd/system/shardcast-pub@.service",
        "/usr/lib/systemd/system/shardcast-sub@.service",
        "/etc/shardcast/profiles/low-latency.env",
        "/usr/share/bash-completion/completions/shardcast-sub",
    ] {
        assert!(listed.lines().any(|l| l == path), "{path} not in dpkg -L");
        assert!(Path::new(path).is_file(), "{path}");
    }

    // The packaged units as systemd reads them, now that their ExecStart=
    // binaries exist (complaints about anything but our units, e.g. a
    // container without systemd running, are not ours to judge).
    if have("systemd-analyze") {
        let r = run(Command::new("systemd-analyze").args([
            "verify",
            "--man=no",
            "/usr/lib/systemd/system/shardcast-pub@.service",
            "/usr/lib/systemd/system/shardcast-sub@.service",
        ]));
        let ours: Vec<&str> = r
            .stdout
            .lines()
            .chain(r.stderr.lines())
            .filter(|l| l.contains("shardcast"))
            .collect();
        assert!(ours.is_empty(), "systemd-analyze verify:\n{}", r.both());
    }

    // Again: the postinst is idempotent and keeps the user as it is.
    ok(Command::new("dpkg").arg("--install").arg(deb));
    assert_eq!(passwd_entry(), Some(user), "a reinstall keeps the user");

    ok(Command::new("dpkg").args(["--purge", "shardcast"]));
    assert!(!Path::new("/usr/bin/shardcast-pub").exists());
    assert!(
        !Path::new("/etc/shardcast/profiles/low-latency.env").exists(),
        "conffiles purged"
    );
    assert!(
        passwd_entry().is_some(),
        "the user stays after a purge (postrm says why)"
    );
    println!("installed, reinstalled and purged {}", deb.display());
}
