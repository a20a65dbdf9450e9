//! Fuzz target `lsm_manifest_decode`: arbitrary bytes into the LSM manifest's decoders (a
//! whole manifest file, one edit, a `CURRENT` file). The body is `check` in
//! fuzz/checks/lsm_manifest_decode.rs, shared with the replay test
//! lsm/tests/manifest_fuzz_replay.rs.

#![no_main]
// `fuzz_target!` itself opens files (libfuzzer-sys's debug-output hook), not this code.
#![allow(clippy::disallowed_methods)]

#[path = "../checks/lsm_manifest_decode.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
