//! Benchmarks: see `benches/` and `src/bin/`.
