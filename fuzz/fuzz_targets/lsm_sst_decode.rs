//! Fuzz target `lsm_sst_decode`: arbitrary bytes opened as a whole SST file, with and without
//! a block cache, scanned both ways and probed. The body is `check` in
//! fuzz/checks/lsm_sst_decode.rs, shared with the replay test lsm/tests/sst_fuzz_replay.rs.

#![no_main]
// `fuzz_target!` itself opens files (libfuzzer-sys's debug-output hook), not this code.
#![allow(clippy::disallowed_methods)]

#[path = "../checks/lsm_sst_decode.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
