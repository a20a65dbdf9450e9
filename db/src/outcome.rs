//! What became of a write record: committed at its LSN, or aborted and why. Kept with
//! idempotency keys so that a resent commit gets its first result.

/// What became of a write record (kept for idempotent resends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied at this LSN.
    Committed {
        /// The record's LSN (the version of every value it wrote).
        lsn: u64,
    },
    /// Not applied: condition `condition` (its index in the transaction) failed.
    ConditionFailed {
        /// The record's LSN.
        lsn: u64,
        /// The index of the first condition that failed.
        condition: u32,
    },
    /// Not applied: the record named table `table`, which did not exist when it applied.
    UnknownTable {
        /// The record's LSN.
        lsn: u64,
        /// The id that was not found.
        table: u64,
    },
}
