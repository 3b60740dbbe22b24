//! `shardcast-record`: records shardcast streams to disk, and the library
//! that reads the recordings.
//!
//! * [`format`]: the bytes of segments, entries and indexes (no I/O);
//!   docs/RECORDING.md is the normative description.
//! * [`writer`]: appending to one stream's segments (buffered, indexed,
//!   rolled, careful about a full disk).
//! * [`recover`]: verifying and repairing a recording before appending.
//! * [`reader`]: the public reading API (replay and catch-up read with it).
//! * [`serve`]: the `--serve` ROUTER protocol (messages and the server).

pub mod format;
pub mod reader;
pub mod recover;
pub mod writer;

#[cfg(test)]
mod tests;
