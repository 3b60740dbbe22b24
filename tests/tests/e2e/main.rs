//! End-to-end tests: real `shardcast-pub` and `shardcast-sub` processes over
//! real TCP on loopback. One test binary, modules by theme.

mod backpressure;
pub mod defence;
mod deploy;
mod faults;
mod flags;
mod forged;
mod hostile;
mod hosts;
mod itch_books;
mod itch_pub;
mod latency;
mod lines;
mod metrics;
mod mold;
mod multicast;
mod outputs;
mod pipeline;
mod placement;
mod presence;
mod record;
mod recovery;
mod relay;
mod replay;
mod retransmit;
mod security;
mod sequencing;
mod signals;
mod snail;
mod stat;
mod support;
mod whenfull;
