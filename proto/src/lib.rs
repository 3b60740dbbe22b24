//! shardcast's no-I/O core: everything the publisher, the subscriber and the
//! workers must agree on, with no sockets, no threads and no clocks.
//!
//! * [`wire`]: the v1 wire format (fixed layout, little-endian, decoded in place
//!   from the received buffer without allocating).
//! * [`shard`]: which stream carries a symbol, which worker owns it.
//! * [`seq`]: per (publisher, stream) sequence tracking: gaps, duplicates,
//!   reordering, restarts, end-of-stream completeness and checksums.
//! * [`snail`]: the Suicidal Snail's lag arithmetic (time is passed in).
//! * [`feed`]: the deterministic synthetic market-data feed.
//! * [`range`]: the range protocol (`SCRQ`/`SCRP`) by which a recorder and a
//!   publisher serve sequences of a stream again.
//!
//! The invariant that makes this crate testable without a network: **it never
//! touches a socket, a thread or a clock**. Callers pass time in as nanoseconds.

pub mod feed;
pub mod itch;
pub mod mold;
pub mod range;
pub mod seq;
pub mod shard;
pub mod snail;
pub mod wire;

pub use wire::{Kind, Payload, Quote, Side, Symbol, Trade};
