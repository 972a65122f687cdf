//! Benchmarks live in the `benches` targets of this package; see `cargo bench`.
