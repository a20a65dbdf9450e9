//! The Db's limits: what a caller may ask of it. Each is at or below what every lower layer
//! holds (the LSM's and the B+tree's key, value and batch limits, the WAL's record size), so
//! a write the Db accepts is never refused below it. docs/limits.md lists them with why.

/// Largest key, in bytes. The B+tree's key limit at its smallest allowed page size (4 KiB:
/// 989 bytes) and the LSM's (16 KiB) are both above it.
pub const KEY_SIZE_MAX: usize = 512;
/// Largest value, in bytes (the LSM's limit; the B+tree's is 4 MiB).
pub const VALUE_SIZE_MAX: usize = 1024 * 1024;
/// Most writes in one batch or transaction.
pub const BATCH_WRITES_MAX: usize = 65_536;
/// Most bytes of keys and values in one batch or transaction; with the record's framing it
/// stays below the WAL's default record limit (16 MiB).
pub const BATCH_SIZE_MAX: usize = 8 * 1024 * 1024;
/// Most conditions in one transaction.
pub const CONDITIONS_MAX: usize = 4_096;
/// Most tables a Db holds at once.
pub const TABLES_MAX: usize = 4_096;
/// Longest table name, in bytes.
pub const TABLE_NAME_MAX: usize = 64;
/// Smallest B+tree page size a table may choose (so that [`KEY_SIZE_MAX`] fits).
pub const BTREE_PAGE_SIZE_MIN: u32 = 4096;
/// Idempotency keys remembered: the most recent commits that carried one, in log order.
pub const IDEMPOTENCY_KEYS_MAX: usize = 65_536;
