//! shardcast's worker pool: the work (per-symbol order books and trade
//! statistics, a checksum, or nothing), and the worker agent that pulls frames
//! over inproc from every shard and does it.
//!
//! The work is a library of its own so that a test can compute, from the
//! feed's seed alone, the books a subscriber must end with ([`Books`]).

mod book;
pub mod itch_book;
mod worker;

pub use book::{Book, BookSnapshot, Books};
pub use worker::{run_worker, WorkKind, WorkerCore, WorkerResult, WorkerSetup};
