//! shardcast's worker pool: the work (per-symbol order books and trade
//! statistics for the synthetic feed, order-by-order books from NASDAQ
//! TotalView-ITCH 5.0 records, a checksum, or nothing), and the worker agent
//! that pulls frames over inproc from every shard and does it.
//!
//! The work is a library of its own so that a test can compute, from the
//! feed's seed alone, the books a subscriber must end with ([`Books`]); and,
//! for ITCH, so that the same [`ItchBooks`] a worker keeps can be checked
//! against a reference built from a generated day's own order state.

mod book;
pub mod itch_book;
mod worker;

pub use book::{Book, BookSnapshot, Books};
pub use itch_book::{ItchBookSummary, ItchBooks, ItchStats};
pub use worker::{run_worker, WorkKind, WorkerCore, WorkerResult, WorkerSetup};
