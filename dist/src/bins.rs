//! The binaries the package ships, each with its clap definition.
//!
//! Shipped: what runs on a production host. `shardcast-pub` and
//! `shardcast-sub` (the pipeline), `shardcast-record` (records streams for
//! replay and gap repair, a long-running service like them),
//! `shardcast-relay` (forwards streams from one network to another, a
//! long-running service too),
//! `shardcast-keygen` (CURVE keys, which deploy/README.md makes on each
//! host), `shardcast-stat` (the live view of those processes, read from
//! their metrics endpoints, for the operator on the host). Not shipped, on
//! purpose:
//! `shardcast-itchgen` and `shardcast-moldsim` generate synthetic ITCH days
//! and simulate a MoldUDP64 exchange feed for tests and benchmarks, and the
//! `bench/` binaries measure a machine; none of them belongs on a host that
//! carries a real feed, and each is a `cargo build` away from a checkout.
//! A new production binary is one more line in [`SHIPPED`].

use clap::{Command, CommandFactory};

/// One shipped binary: its name, the cargo package that builds it, and its
/// flags as clap knows them.
#[derive(Clone, Copy, Debug)]
pub struct Binary {
    /// The executable's name, as installed in `/usr/bin`.
    pub name: &'static str,
    /// The cargo package whose `[[bin]]` it is (`cargo build -p PACKAGE
    /// --bin NAME`).
    pub package: &'static str,
    command: fn() -> Command,
}

impl Binary {
    /// Its flags: the `clap::Command` its `main` parses with.
    pub fn command(&self) -> Command {
        (self.command)()
    }
}

/// Every binary the Debian package installs, in the order it lists them.
pub const SHIPPED: &[Binary] = &[
    Binary {
        name: "shardcast-pub",
        package: "shardcast-publisher",
        command: shardcast_publisher::cli::Flags::command,
    },
    Binary {
        name: "shardcast-sub",
        package: "shardcast-subscriber",
        command: shardcast_subscriber::cli::Flags::command,
    },
    Binary {
        name: "shardcast-record",
        package: "shardcast-recorder",
        command: shardcast_recorder::cli::Flags::command,
    },
    Binary {
        name: "shardcast-relay",
        package: "shardcast-relay",
        command: shardcast_relay::cli::Flags::command,
    },
    Binary {
        name: "shardcast-keygen",
        package: "shardcast-publisher",
        command: keygen::command,
    },
    Binary {
        name: "shardcast-stat",
        package: "shardcast-stat",
        command: shardcast_stat::cli::Flags::command,
    },
];

/// `publisher/src/bin/keygen.rs`, compiled here for its private `Flags`
/// (see `build.rs`); its `main` is never called.
#[allow(dead_code)]
mod keygen {
    include!(concat!(env!("OUT_DIR"), "/keygen.rs"));

    /// `shardcast-keygen`'s flags.
    pub(super) fn command() -> clap::Command {
        <Flags as clap::CommandFactory>::command()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_command_is_named_as_its_binary_and_has_a_version() {
        for b in SHIPPED {
            let cmd = b.command();
            assert_eq!(cmd.get_name(), b.name);
            // `--version` is what the package test runs on the installed
            // binaries; clap adds it only with `#[command(version)]`.
            assert_eq!(
                cmd.get_version(),
                Some(env!("CARGO_PKG_VERSION")),
                "{}",
                b.name
            );
            cmd.debug_assert();
        }
    }
}
