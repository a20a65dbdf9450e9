//! Fuzz target `btree_file_open`: arbitrary bytes written as a B+tree's file on a simulated
//! file system, opened, read in full both ways and by gets, and (by a control bit) written
//! to, checkpointed and reopened. The body is `fuzz_file_open` in btree/src/fuzz_open.rs
//! (behind popdb-btree's `internals` feature), shared with the replay test
//! btree/tests/file_fuzz_replay.rs; nothing may panic, and reads of the one file must agree
//! (`FileOpenSummary::wrong_data` says when that is asserted).

#![no_main]
// `fuzz_target!` itself opens files (libfuzzer-sys's debug-output hook), not this code.
#![allow(clippy::disallowed_methods)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let summary = popdb_btree::internals::fuzz_file_open(data);
    assert!(
        summary.wrong_data().is_empty(),
        "wrong data: {:?}",
        summary.wrong_data()
    );
});
