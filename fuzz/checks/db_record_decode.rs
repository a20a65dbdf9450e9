//! The body of fuzz target `db_record_decode`: arbitrary bytes must never make the Db's log
//! record decoder panic, a refusal must point inside the input, and a record it accepts must
//! re-encode to exactly the same bytes (so every record has one encoding) while the same
//! bytes cut one short are refused.
//!
//! Shared, like fuzz/checks/wal_segment_decode.rs (whose header says why), by
//! fuzz/fuzz_targets/db_record_decode.rs (the libFuzzer binary) and
//! db/tests/record_codec.rs (the replay test), through `#[path = ...] mod check;`.
//!
//! Input layout: the whole input is one record's payload; there are no control bytes.

use popdb_db::internals::LogRecord;

/// The fuzz target's body; panics on any violation.
pub fn check(data: &[u8]) {
    match LogRecord::decode(data) {
        Ok(record) => {
            assert_eq!(
                record.encode(),
                data,
                "an accepted record must re-encode to its bytes"
            );
            let mut appended = vec![0xa5];
            record.encode_into(&mut appended);
            assert_eq!(
                appended.get(1..),
                Some(data),
                "encode_into must append the same bytes"
            );
            if let Some((_, shorter)) = data.split_last() {
                assert!(
                    LogRecord::decode(shorter).is_err(),
                    "a record cut one byte short must be refused"
                );
            }
        }
        Err(e) => assert!(
            e.offset <= data.len(),
            "error offset {} past the {}-byte input ({})",
            e.offset,
            data.len(),
            e.what
        ),
    }
}
