//! Fuzz target `db_record_decode`: arbitrary bytes into the Db's log record decoder
//! (`LogRecord::decode`). The body is `check` in fuzz/checks/db_record_decode.rs, shared with
//! the replay test db/tests/record_codec.rs.

#![no_main]
// `fuzz_target!` itself opens files (libfuzzer-sys's debug-output hook), not this code.
#![allow(clippy::disallowed_methods)]

#[path = "../checks/db_record_decode.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
