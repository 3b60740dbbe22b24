//! `shardcast-record` (being built: the library comes first).

fn main() {}
