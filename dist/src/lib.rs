//! shardcast-dist: what a release ships besides the binaries, generated
//! from the binaries' own definitions.
//!
//! * [`assets`]: man pages and bash/zsh/fish completions from each shipped
//!   binary's clap `Command` (`clap_mangen`, `clap_complete`): a flag added
//!   to a `cli.rs` is in both with the next build, nothing written by hand.
//! * [`deb`]: the Debian package: binaries, man pages, completions, the
//!   systemd units and profiles from `deploy/`, and the `shardcast` system
//!   user, staged as a tree and built with `dpkg-deb`.
//! * [`bins`]: which binaries ship, and why the others do not.
//!
//! A build tool, not shipped: it runs in the repository, against binaries
//! already built.

pub mod assets;
pub mod bins;
pub mod deb;
