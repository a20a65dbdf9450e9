//! The body of fuzz target `db_state_decode`: arbitrary bytes must never make the Db's state
//! file or `CURRENT` decoder panic, every refusal must be a `Corruption` of the right file,
//! and anything a decoder accepts must re-encode to the same bytes (and decode again to the
//! same value). Spec: docs/format/layout.md.
//!
//! Shared, as fuzz/checks/wal_segment_decode.rs explains, by the libFuzzer binary
//! (fuzz/fuzz_targets/db_state_decode.rs) and the replay test
//! (db/tests/state_file_fuzz_replay.rs), through `popdb_db::internals` only.
//!
//! Input layout: `[c0, image...]`. `c0` bit 0 set *re-seals* the image before decoding: its
//! `total_len` (bytes 12..16) is set to the image's length and its last 4 bytes to the crc32
//! of the bytes before them, so that mutations reach the checks behind the checksum. The
//! other bits are ignored. `image` goes to `DbState::decode` and `decode_current`. Inputs
//! shorter than one byte are ignored.

use popdb_db::Error;
use popdb_db::internals::{DbState, decode_current, generation_dir_name};

/// Bytes before the first image and the checksum (magic, version, total_len, lease, flags).
const FIXED_SIZE: usize = 30;

/// The fuzz target's body; panics on any violation.
pub fn check(data: &[u8]) {
    let Some((&c0, image)) = data.split_first() else {
        return;
    };
    let mut image = image.to_vec();
    if c0 & 1 != 0 {
        reseal(&mut image);
    }

    match DbState::decode(&image) {
        Ok(state) => {
            let encoded = state.encode();
            assert_eq!(
                encoded, image,
                "an accepted state file must re-encode to its bytes"
            );
            assert_eq!(DbState::decode(&encoded).ok(), Some(state));
        }
        Err(Error::Corruption { file, what }) => {
            assert_eq!(file, "STATE", "a state file error names the file");
            assert!(!what.is_empty());
        }
        Err(e) => panic!("decode failed with something other than Corruption: {e}"),
    }

    match decode_current(&image) {
        Ok(generation) => assert_eq!(
            format!("{}\n", generation_dir_name(generation)).as_bytes(),
            &image[..],
            "an accepted CURRENT must re-encode to its bytes"
        ),
        Err(Error::Corruption { file, .. }) => assert_eq!(file, "CURRENT"),
        Err(e) => panic!("CURRENT decode failed with something other than Corruption: {e}"),
    }
}

/// Sets `total_len` to the image's length and the trailing crc32 to the checksum of the
/// bytes before it (docs/format/layout.md, "Integrity"); images too short to hold both are
/// left alone.
fn reseal(image: &mut [u8]) {
    let len = image.len();
    if len < FIXED_SIZE {
        return;
    }
    let total = u32::try_from(len).unwrap_or(u32::MAX);
    image[12..16].copy_from_slice(&total.to_le_bytes());
    let crc = popdb_io::crc32(&image[..len - 4]);
    image[len - 4..].copy_from_slice(&crc.to_le_bytes());
}
