//! Fuzz target `wal_segment_decode`: arbitrary bytes into the WAL's segment, unit, record and
//! state-file decoders. The body is `check` in fuzz/checks/wal_segment_decode.rs, shared with
//! the replay test wal/tests/format_fuzz_replay.rs.

#![no_main]
// `fuzz_target!` itself opens files (libfuzzer-sys's debug-output hook), not this code.
#![allow(clippy::disallowed_methods)]

#[path = "../checks/wal_segment_decode.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
