//! The Debian package: a staged tree and `dpkg-deb --build`.
//!
//! Why not `cargo deb`: it is one more tool to compile (minutes in CI,
//! which already spends most of its 30 minutes on the test suite) for what
//! is a tree of files and a control file. `dpkg-deb` comes with dpkg on
//! every Debian and Ubuntu machine, and `dpkg-shlibdeps` (dpkg-dev, pulled
//! in by build-essential, which the C/C++ compiler for libzmq needs anyway)
//! computes `Depends` from what the binaries really link, as debhelper
//! does.
//!
//! The package is built from binaries that are already built (`--bin-dir`),
//! so CI packages the ones it built for its tests and pays no second build.

use crate::assets;
use crate::bins::SHIPPED;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The package's name; also the name of the user its units run as.
pub const PACKAGE: &str = "shardcast";

/// Where unit files from `deploy/systemd` go. `/usr/lib/systemd/system` is
/// searched by every systemd, merged-/usr or not, and a unit an
/// administrator puts in `/etc/systemd/system` (as `deploy/rollout.sh`
/// does) overrides the packaged one of the same name.
pub const UNIT_DIR: &str = "usr/lib/systemd/system";

/// Where the profiles from `deploy/profiles` go: the units' instance
/// profiles are symlinks into it (deploy/README.md). Files here are
/// conffiles: an upgrade keeps local edits.
pub const PROFILE_DIR: &str = "etc/shardcast/profiles";

/// The documentation directory, which the units' `Documentation=` names.
pub const DOC_DIR: &str = "usr/share/doc/shardcast";

/// The unit files in `deploy/systemd` are written for a hand install into
/// `/usr/local` (deploy/README.md, `rollout.sh`); a package installs into
/// `/usr` (Debian policy 9.1.2: packages never touch `/usr/local`). These
/// are the only rewrites, and a unit that still names `/usr/local` after
/// them is refused.
const UNIT_REWRITES: [(&str, &str); 2] = [
    ("/usr/local/bin/", "/usr/bin/"),
    (
        "/usr/local/share/doc/shardcast/",
        "/usr/share/doc/shardcast/",
    ),
];

const POSTINST: &str = include_str!("../debian/postinst");
const POSTRM: &str = include_str!("../debian/postrm");
const COPYRIGHT: &str = include_str!("../debian/copyright");

/// What went wrong building the package; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A shipped binary is not in `--bin-dir`. Build them first:
    /// `cargo build --release --bins` (or the system-libzmq build).
    #[error("{path} is missing: build the binaries first (cargo build --release --bins), or point --bin-dir at them")]
    MissingBinary {
        /// The path looked at.
        path: PathBuf,
    },
    /// A binary's `--version` is not this package's version: it is from
    /// another checkout or an old build. Rebuild.
    #[error(
        "{bin} --version printed {got:?}, expected {want:?}: a stale build? rebuild the binaries"
    )]
    WrongVersion {
        /// The binary.
        bin: PathBuf,
        /// What it printed.
        got: String,
        /// What this package's version says it should print.
        want: String,
    },
    /// A tool the build needs is not installed; the message names the
    /// Debian package that has it.
    #[error("{tool} is not installed (apt-get install {package})")]
    MissingTool {
        /// The command.
        tool: String,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// A tool ran and failed; its stderr says why.
    #[error("{cmd} failed ({status}):\n{stderr}")]
    ToolFailed {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its standard error.
        stderr: String,
    },
    /// A unit file in `deploy/systemd` does not fit the package (it names
    /// `/usr/local`, or starts a binary the package does not ship): fix the
    /// unit or the rewrites in `deb.rs`.
    #[error("{file}: {why}")]
    Unit {
        /// The unit file.
        file: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// What to package, from where, to where.
#[derive(Clone, Debug)]
pub struct Options {
    /// Directory holding the built binaries (`target/release`, or
    /// `target/system-libzmq/release` for CURVE and epgm).
    pub bin_dir: PathBuf,
    /// The repository's `deploy/` directory (units, profiles, docs,
    /// `tune-host.sh`).
    pub deploy_dir: PathBuf,
    /// Where the staging tree and the `.deb` go.
    pub out_dir: PathBuf,
    /// Strip debug information from the binaries (`strip --strip-debug`),
    /// as Debian packages do: a debug build's binaries are ten times
    /// larger. Symbols stay, so backtraces and `perf` still name functions.
    pub strip: bool,
    /// The control file's `Maintainer:`.
    pub maintainer: String,
    /// How `dpkg-deb` compresses the archive.
    pub compress: Compress,
}

/// The archive's compression (`dpkg-deb -Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compress {
    /// xz, dpkg's default: the smallest package, for releases. About 30 s
    /// for a debug build's binaries on two busy cores.
    Xz,
    /// gzip: about ten times faster, half again as large; for CI and tests,
    /// where the package lives for a minute.
    Gzip,
}

/// A built package.
#[derive(Clone, Debug)]
pub struct Built {
    /// The `.deb` file.
    pub deb: PathBuf,
    /// The staging tree it was built from (what lands under `/`, plus
    /// `DEBIAN/`), kept for inspection.
    pub root: PathBuf,
    /// Its `Depends:` line.
    pub depends: String,
    /// Its `Installed-Size:` in KiB.
    pub installed_size_kib: u64,
}

/// The package version: the workspace's, with a semver pre-release's `-`
/// as Debian's `~` (`0.2.0-rc1` sorts before `0.2.0` in both).
pub fn version() -> String {
    debian_version(env!("CARGO_PKG_VERSION"))
}

fn debian_version(semver: &str) -> String {
    semver.replacen('-', "~", 1)
}

/// Builds the package. Every shipped binary must be in `opts.bin_dir` and
/// print this version.
pub fn build(opts: &Options) -> Result<Built, Error> {
    let version = version();
    let arch = architecture()?;
    let stem = format!("{PACKAGE}_{version}_{arch}");
    let root = opts.out_dir.join(&stem);
    if root.exists() {
        fs::remove_dir_all(&root).map_err(io(&root))?;
    }
    mkdir(&root)?;

    // Binaries, checked to be this version's before anything is staged.
    for bin in SHIPPED {
        let src = opts.bin_dir.join(bin.name);
        if !src.is_file() {
            return Err(Error::MissingBinary { path: src });
        }
        check_version(&src, bin.name)?;
        let dst = root.join("usr/bin").join(bin.name);
        mkdir(dst.parent().unwrap())?;
        if opts.strip {
            let mut strip = Command::new("strip");
            strip.arg("--strip-debug").arg("-o").arg(&dst).arg(&src);
            run(&mut strip, "binutils")?;
        } else {
            fs::copy(&src, &dst).map_err(io(&dst))?;
        }
        chmod(&dst, 0o755)?;
    }
    let tune = root.join("usr/sbin/shardcast-tune-host");
    copy(&opts.deploy_dir.join("tune-host.sh"), &tune, 0o755)?;

    for asset in assets::all() {
        write(&root.join(&asset.path), &asset.bytes, 0o644)?;
    }

    for unit in files_in(&opts.deploy_dir.join("systemd"), ".service")? {
        let text = read(&unit)?;
        let text = package_unit(&unit, &text)?;
        write(
            &root.join(UNIT_DIR).join(unit.file_name().unwrap()),
            text.as_bytes(),
            0o644,
        )?;
    }
    let mut conffiles = Vec::new();
    for profile in files_in(&opts.deploy_dir.join("profiles"), ".env")? {
        let rel = Path::new(PROFILE_DIR).join(profile.file_name().unwrap());
        copy(&profile, &root.join(&rel), 0o644)?;
        conffiles.push(format!("/{}", rel.display()));
    }
    let doc = root.join(DOC_DIR);
    copy(
        &opts.deploy_dir.join("README.md"),
        &doc.join("README.md"),
        0o644,
    )?;
    copy(
        &opts.deploy_dir.join("TUNING.md"),
        &doc.join("TUNING.md"),
        0o644,
    )?;
    write(&doc.join("copyright"), COPYRIGHT.as_bytes(), 0o644)?;

    let depends = depends(&root, opts)?;
    let installed_size_kib = installed_size_kib(&root)?;
    let control = root.join("DEBIAN");
    mkdir(&control)?;
    write(
        &control.join("control"),
        control_file(
            &version,
            &arch,
            &depends,
            installed_size_kib,
            &opts.maintainer,
        )
        .as_bytes(),
        0o644,
    )?;
    conffiles.sort();
    write(
        &control.join("conffiles"),
        (conffiles.join("\n") + "\n").as_bytes(),
        0o644,
    )?;
    write(&control.join("postinst"), POSTINST.as_bytes(), 0o755)?;
    write(&control.join("postrm"), POSTRM.as_bytes(), 0o755)?;
    dirs_0755(&root)?;

    let deb = opts.out_dir.join(format!("{stem}.deb"));
    let mut dpkg_deb = Command::new("dpkg-deb");
    // --root-owner-group: every file root:root in the archive whoever
    // builds it, no fakeroot needed (dpkg >= 1.19.0).
    dpkg_deb
        .arg(match opts.compress {
            Compress::Xz => "-Zxz",
            Compress::Gzip => "-Zgzip",
        })
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb);
    run(&mut dpkg_deb, "dpkg")?;
    Ok(Built {
        deb,
        root,
        depends,
        installed_size_kib,
    })
}

/// A unit file from `deploy/systemd` as the package installs it: paths
/// moved from `/usr/local` to `/usr`, and checked to start a binary the
/// package ships.
pub fn package_unit(file: &Path, text: &str) -> Result<String, Error> {
    let mut text = text.to_string();
    for (from, to) in UNIT_REWRITES {
        text = text.replace(from, to);
    }
    let bad = |why: String| Error::Unit {
        file: file.to_path_buf(),
        why,
    };
    let mut starts = 0;
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        if line.contains("/usr/local/") {
            return Err(bad(format!(
                "still names /usr/local after the package's rewrites: {line}"
            )));
        }
        if let Some(exec) = line.strip_prefix("ExecStart=") {
            starts += 1;
            let shipped = SHIPPED
                .iter()
                .any(|b| exec.split_whitespace().next() == Some(&format!("/usr/bin/{}", b.name)));
            if !shipped {
                return Err(bad(format!(
                    "ExecStart={exec}: not a binary the package ships in /usr/bin"
                )));
            }
        }
    }
    if starts != 1 {
        return Err(bad(format!("{starts} ExecStart= lines, expected one")));
    }
    Ok(text)
}

/// The `DEBIAN/control` file.
fn control_file(
    version: &str,
    arch: &str,
    depends: &str,
    installed_size_kib: u64,
    maintainer: &str,
) -> String {
    let bins: Vec<&str> = SHIPPED.iter().map(|b| b.name).collect();
    format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {maintainer}\n\
         Installed-Size: {installed_size_kib}\n\
         Depends: {depends}\n\
         Section: net\n\
         Priority: optional\n\
         Description: sharded market-data pub-sub on ZeroMQ\n \
         A paced, sharded publisher that streams a market-data feed (synthetic,\n \
         NASDAQ TotalView-ITCH 5.0 files or live MoldUDP64) over several ZeroMQ\n \
         streams, and the ZeroMQ Guide's Black Box subscriber with the Suicidal\n \
         Snail: a subscriber that cannot keep up croaks instead of falling behind.\n \
         .\n \
         Binaries: {}.\n \
         Also systemd template units shardcast-pub@ and shardcast-sub@, tuning\n \
         profiles in /etc/shardcast/profiles, shardcast-tune-host, and the\n \
         system user shardcast that the units run as.\n",
        bins.join(", ")
    )
}

/// `Depends:` from the binaries' shared libraries, by `dpkg-shlibdeps` (the
/// default build links libzmq statically, so only libc, libgcc and
/// libstdc++ appear; the system-libzmq build adds libzmq5), plus adduser
/// for the postinst.
fn depends(root: &Path, opts: &Options) -> Result<String, Error> {
    // dpkg-shlibdeps wants a debian/control in its working directory to
    // know the package; an empty-ish one outside the staging tree will do.
    let work = opts.out_dir.join(".shlibdeps");
    if work.exists() {
        fs::remove_dir_all(&work).map_err(io(&work))?;
    }
    write(
        &work.join("debian/control"),
        format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n").as_bytes(),
        0o644,
    )?;
    let mut cmd = Command::new("dpkg-shlibdeps");
    cmd.current_dir(&work).arg("-O");
    for bin in SHIPPED {
        cmd.arg(format!(
            "-e{}",
            absolute(&root.join("usr/bin").join(bin.name))?.display()
        ));
    }
    let out = run(&mut cmd, "dpkg-dev")?;
    let _ = fs::remove_dir_all(&work);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let shlibs = stdout
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .unwrap_or("")
        .trim();
    Ok(if shlibs.is_empty() {
        "adduser".to_string()
    } else {
        format!("adduser, {shlibs}")
    })
}

/// The machine's Debian architecture (`amd64`, `arm64`): the binaries were
/// built here, for it.
fn architecture() -> Result<String, Error> {
    let out = run(Command::new("dpkg").arg("--print-architecture"), "dpkg")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Fails unless `bin --version` prints `NAME VERSION`.
fn check_version(bin: &Path, name: &str) -> Result<(), Error> {
    let out = run(Command::new(bin).arg("--version"), "the shardcast build")?;
    let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let want = format!("{name} {}", env!("CARGO_PKG_VERSION"));
    if got != want {
        return Err(Error::WrongVersion {
            bin: bin.to_path_buf(),
            got,
            want,
        });
    }
    Ok(())
}

/// What `dpkg-gencontrol` would put in `Installed-Size:`: each file's size
/// rounded up to a KiB, plus one per directory and link.
fn installed_size_kib(dir: &Path) -> Result<u64, Error> {
    let mut kib = 0;
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        if entry.file_name() == "DEBIAN" {
            continue;
        }
        let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            kib += 1 + installed_size_kib(&path)?;
        } else if meta.is_file() {
            kib += meta.len().div_ceil(1024);
        } else {
            kib += 1;
        }
    }
    Ok(kib)
}

/// The regular files in `dir` whose names end in `suffix`, sorted.
fn files_in(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_file() && path.to_str().is_some_and(|p| p.ends_with(suffix)) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Runs a tool, its output captured; a missing tool names the Debian
/// package that has it.
fn run(cmd: &mut Command, package: &'static str) -> Result<Output, Error> {
    let line = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::MissingTool {
                tool: cmd.get_program().to_string_lossy().into_owned(),
                package,
            }
        } else {
            Error::Io {
                path: PathBuf::from(cmd.get_program()),
                source: e,
            }
        }
    })?;
    if !out.status.success() {
        return Err(Error::ToolFailed {
            cmd: line,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out)
}

/// Directories 0755 whatever the umask: dpkg-deb refuses a `DEBIAN/` that
/// is group- or world-writable, and what is staged is what gets installed.
fn dirs_0755(dir: &Path) -> Result<(), Error> {
    chmod(dir, 0o755)?;
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        if entry.file_type().map_err(io(dir))?.is_dir() {
            dirs_0755(&entry.path())?;
        }
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(io(path))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn mkdir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(io(dir))
}

fn chmod(path: &Path, mode: u32) -> Result<(), Error> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io(path))
}

fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(io(path))
}

/// Writes a file (and its directory) with exactly `mode`.
pub(crate) fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    mkdir(path.parent().unwrap())?;
    fs::write(path, bytes).map_err(io(path))?;
    chmod(path, mode)
}

fn copy(src: &Path, dst: &Path, mode: u32) -> Result<(), Error> {
    mkdir(dst.parent().unwrap())?;
    fs::copy(src, dst).map_err(io(src))?;
    chmod(dst, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
    }

    #[test]
    fn every_deploy_unit_starts_a_packaged_binary_from_usr_bin() {
        let units = files_in(&deploy().join("systemd"), ".service").unwrap();
        assert!(units.len() >= 2, "{units:?}");
        for unit in units {
            let text = package_unit(&unit, &read(&unit).unwrap()).unwrap();
            let exec: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("ExecStart="))
                .collect();
            assert_eq!(exec.len(), 1, "{}", unit.display());
            assert!(exec[0].starts_with("/usr/bin/shardcast-"), "{exec:?}");
            assert!(text.contains("Documentation=file:///usr/share/doc/shardcast/README.md"));
        }
    }

    #[test]
    fn a_unit_that_starts_something_unpackaged_is_refused() {
        let f = Path::new("x.service");
        let e = package_unit(f, "[Service]\nExecStart=/opt/x/bin/thing\n").unwrap_err();
        assert!(
            e.to_string().contains("not a binary the package ships"),
            "{e}"
        );
        let e = package_unit(
            f,
            "[Service]\nExecStart=/usr/bin/shardcast-pub\nReadWritePaths=/usr/local/var\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("/usr/local"), "{e}");
        let e = package_unit(f, "[Service]\n").unwrap_err();
        assert!(e.to_string().contains("0 ExecStart="), "{e}");
        // Comments may say anything.
        package_unit(
            f,
            "# was /usr/local/bin/x\n[Service]\nExecStart=/usr/local/bin/shardcast-sub\n",
        )
        .unwrap();
    }

    #[test]
    fn a_prerelease_version_sorts_before_its_release_in_debian_terms() {
        assert_eq!(debian_version("0.2.0-rc.1"), "0.2.0~rc.1");
        assert_eq!(debian_version("0.1.0"), "0.1.0");
    }

    #[test]
    fn the_control_file_has_the_fields_dpkg_requires() {
        let c = control_file(
            "0.1.0",
            "amd64",
            "adduser, libc6 (>= 2.34)",
            1234,
            "m <m@x>",
        );
        for field in [
            "Package: shardcast\n",
            "Version: 0.1.0\n",
            "Architecture: amd64\n",
            "Maintainer: m <m@x>\n",
            "Installed-Size: 1234\n",
            "Depends: adduser, libc6 (>= 2.34)\n",
            "Description: ",
        ] {
            assert!(c.contains(field), "{field:?} missing:\n{c}");
        }
        // Continuation lines start with a space; none is empty.
        for l in c
            .lines()
            .skip_while(|l| !l.starts_with("Description:"))
            .skip(1)
        {
            assert!(l.starts_with(' ') && l.len() > 1, "{l:?}");
        }
    }
}
