//! popdb-testkit: what PopDB's test suites share, so that each crate's tests do not carry
//! their own copy. A leaf used only as a dev-dependency; production crates never depend on
//! it.
//!
//! - [`Rng`]: splitmix64, a small seeded generator, so that every randomized failure
//!   replays from the seed it prints.
//! - [`replay_corpus`]: runs a fuzz target's check over its committed corpus or crash
//!   regressions (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`), so every
//!   `cargo test` exercises every target on stable Rust.
//! - [`HookFs`]: a file system that reports chosen file operations to a test's hook first
//!   (to inject a panic into one of them).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod corpus;
mod hook_fs;
mod rng;

pub use corpus::{Mutations, fuzz_dir, read_inputs, replay_corpus, replay_mutations, run_check};
pub use hook_fs::{FsOp, HookFs};
pub use rng::Rng;
