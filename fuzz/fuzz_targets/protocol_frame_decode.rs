//! Fuzz target `protocol_frame_decode`: arbitrary bytes as a stream of wire frames into the
//! protocol's framing, message decoders and stream decoder. The body is `check` in
//! fuzz/checks/protocol_frame_decode.rs, shared with the replay test
//! protocol/tests/codec_fuzz_replay.rs.

#![no_main]
// `fuzz_target!` itself opens files (libfuzzer-sys's debug-output hook), not this code.
#![allow(clippy::disallowed_methods)]

#[path = "../checks/protocol_frame_decode.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
