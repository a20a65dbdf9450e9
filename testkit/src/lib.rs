//! popdb-testkit: what PopDB's test suites share, so that each crate's tests do not carry
//! their own copy. A leaf used only as a dev-dependency; production crates never depend on
//! it.
//!
//! - [`Rng`]: splitmix64, a small seeded generator, so that every randomized failure
//!   replays from the seed it prints.
//! - [`replay_corpus`]: runs a fuzz target's check over its committed corpus or crash
//!   regressions (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`), so every
//!   `cargo test` exercises every target on stable Rust.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod corpus;
mod rng;

pub use corpus::{Mutations, fuzz_dir, read_inputs, replay_corpus, replay_mutations, run_check};
pub use rng::Rng;
