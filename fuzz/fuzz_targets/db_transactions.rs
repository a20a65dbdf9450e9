//! Fuzz target `db_transactions`: the body is `fuzz_db_transactions` in db/src/fuzz_ops.rs (behind popdb-db's
//! `internals` feature), shared with the replay test db/tests/fuzz_ops_replay.rs. It
//! panics on any disagreement with its model.

#![no_main]
// `fuzz_target!` itself opens files (libfuzzer-sys's debug-output hook), not this code.
#![allow(clippy::disallowed_methods)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    popdb_db::internals::fuzz_db_transactions(data);
});
