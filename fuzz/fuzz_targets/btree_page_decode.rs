//! Fuzz target `btree_page_decode`: arbitrary bytes, cut into pages, into every B+tree page
//! decoder, its accessors and `recover_meta`. The body is `check` in
//! fuzz/checks/btree_page_decode.rs, shared with the replay test
//! btree/tests/format_fuzz_replay.rs.

#![no_main]
// `fuzz_target!` itself opens files (libfuzzer-sys's debug-output hook), not this code.
#![allow(clippy::disallowed_methods)]

#[path = "../checks/btree_page_decode.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
