//! `shardcast-dist`: man pages, shell completions and the Debian package.
//! The work is in the library; this is flags and exit codes.

use clap::{Parser, Subcommand};
use shardcast_dist::{assets, deb};
use std::path::PathBuf;
use std::process::ExitCode;

/// shardcast-dist: generates the shipped binaries' man pages and shell
/// completions from their clap definitions, and builds the Debian package
/// from binaries already built (deploy/README.md, "Installing the Debian
/// package").
#[derive(Debug, Parser)]
#[command(name = "shardcast-dist", version, about, long_about = None)]
struct Flags {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Write the man pages (gzipped) and bash, zsh and fish completions
    /// under DIR, at the paths the package installs them to
    /// (DIR/usr/share/...).
    Assets {
        /// Directory to write them under (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Build shardcast_VERSION_ARCH.deb from the binaries in --bin-dir.
    Deb {
        /// Directory with the built binaries; default: the one this
        /// program runs from, so `target/release/shardcast-dist deb`
        /// packages the release build beside it.
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
        /// Where the .deb and its staging tree go (default: BIN_DIR/deb).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The repository's deploy/ directory (units, profiles, docs).
        #[arg(long, value_name = "DIR",
              default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy"))]
        deploy_dir: PathBuf,
        /// Keep debug information in the binaries (default: stripped with
        /// `strip --strip-debug`; symbols stay).
        #[arg(long)]
        no_strip: bool,
        /// The control file's Maintainer field.
        #[arg(
            long,
            value_name = "NAME <EMAIL>",
            default_value = "shardcast developers <shardcast@example.invalid>"
        )]
        maintainer: String,
        /// Archive compression: xz (smallest, releases) or gzip (about ten
        /// times faster: CI and tests).
        #[arg(long, value_enum, default_value_t = deb::Compress::Xz)]
        compress: deb::Compress,
    },
}

fn main() -> ExitCode {
    match Flags::parse().what {
        What::Assets { out } => {
            let all = assets::all();
            for a in &all {
                let path = out.join(&a.path);
                if let Err(e) = std::fs::create_dir_all(path.parent().unwrap())
                    .and_then(|()| std::fs::write(&path, &a.bytes))
                {
                    eprintln!("shardcast-dist: error: writing {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            println!("{} files under {}", all.len(), out.display());
            ExitCode::SUCCESS
        }
        What::Deb {
            bin_dir,
            out,
            deploy_dir,
            no_strip,
            maintainer,
            compress,
        } => {
            let bin_dir = match bin_dir.or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|p| p.parent().map(PathBuf::from))
            }) {
                Some(d) => d,
                None => {
                    eprintln!("shardcast-dist: error: cannot tell where this program runs from: give --bin-dir");
                    return ExitCode::from(2);
                }
            };
            let opts = deb::Options {
                out_dir: out.unwrap_or_else(|| bin_dir.join("deb")),
                bin_dir,
                deploy_dir,
                strip: !no_strip,
                maintainer,
                compress,
            };
            match deb::build(&opts) {
                Ok(built) => {
                    println!(
                        "{}\n  Depends: {}\n  Installed-Size: {} KiB\n  staged in {}",
                        built.deb.display(),
                        built.depends,
                        built.installed_size_kib,
                        built.root.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("shardcast-dist: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
