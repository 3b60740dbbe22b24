//! `shardcast-keygen`: write CURVE key pairs for `--curve-*` flags.
//!
//! Each NAME gets `DIR/NAME.key` (public and secret key, mode 0600: stays on
//! its host) and `DIR/NAME.pub` (public key: goes into the publisher's
//! `--curve-allow` list, or, for a publisher, to its subscribers'
//! `--curve-server-key`). Existing files are never overwritten. Keys come
//! from libzmq (`zmq_curve_keypair`, libsodium's randomness), so this needs
//! the system libzmq build, like CURVE itself.

use clap::Parser;
use shardcast_agent::{curve, exit, launch};
use std::path::PathBuf;
use std::process::ExitCode;

/// shardcast-keygen: write CURVE key pairs (NAME.key, secret, mode 0600; and
/// NAME.pub, to hand out) for shardcast-pub --curve-secret-key/--curve-allow
/// and shardcast-sub --curve-key/--curve-server-key.
#[derive(Debug, Parser)]
#[command(name = "shardcast-keygen", version, about, long_about = None)]
struct Flags {
    /// Names of the key pairs to write (e.g. a host or instance name).
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,

    /// Directory to write them in (created if missing).
    #[arg(long, default_value = ".", value_name = "DIR")]
    dir: PathBuf,
}

fn main() -> ExitCode {
    // Before anything else, as in every shardcast binary: a SIGINT/SIGTERM
    // then never cuts a key pair in half; it stops before the next one.
    let signal = match launch::signals("shardcast-keygen") {
        Ok(s) => s,
        Err(code) => return ExitCode::from(code),
    };
    let flags = Flags::parse();
    for name in &flags.names {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            eprintln!("shardcast-keygen: error: invalid value for NAME: '{name}' must be a plain file name");
            return ExitCode::from(exit::USAGE);
        }
    }
    if let Err(e) = curve::need_curve("NAME") {
        eprintln!("shardcast-keygen: error: {}", e.message);
        return ExitCode::from(exit::FAILURE);
    }
    if let Err(e) = std::fs::create_dir_all(&flags.dir) {
        eprintln!(
            "shardcast-keygen: error: creating --dir {}: {e}",
            flags.dir.display()
        );
        return ExitCode::from(exit::FAILURE);
    }
    for name in &flags.names {
        if signal.raised() {
            eprintln!("shardcast-keygen: stopped by a signal before writing {name}");
            return ExitCode::from(exit::FAILURE);
        }
        match curve::write_key_pair(&flags.dir, name) {
            Ok((key, public, k)) => println!(
                "{name}: public key {} in {} (hand it out); secret key in {} (mode 0600, keep it here)",
                k.z85(),
                public.display(),
                key.display()
            ),
            Err(e) => {
                eprintln!(
                    "shardcast-keygen: error: writing {name}.key/{name}.pub in {}: {e}{}",
                    flags.dir.display(),
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        " (existing keys are never overwritten; remove them first)"
                    } else {
                        ""
                    }
                );
                return ExitCode::from(exit::FAILURE);
            }
        }
    }
    ExitCode::SUCCESS
}
