//! Fuzz target `db_state_decode`: arbitrary bytes into the Db's state file and `CURRENT`
//! decoders. The body is `check` in fuzz/checks/db_state_decode.rs, shared with the replay
//! test db/tests/state_file_fuzz_replay.rs.

#![no_main]
// `fuzz_target!` itself opens files (libfuzzer-sys's debug-output hook), not this code.
#![allow(clippy::disallowed_methods)]

#[path = "../checks/db_state_decode.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
