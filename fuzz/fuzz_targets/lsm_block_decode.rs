//! Fuzz target `lsm_block_decode`: arbitrary bytes into the SST data block decoder and its
//! iterator. The body is `check` in fuzz/checks/lsm_block_decode.rs, shared with the replay
//! test lsm/tests/format_fuzz_replay.rs.

#![no_main]
// `fuzz_target!` itself opens files (libfuzzer-sys's debug-output hook), not this code.
#![allow(clippy::disallowed_methods)]

#[path = "../checks/lsm_block_decode.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
