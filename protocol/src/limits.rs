//! What a frame may hold: the [`Limits`] a decoder enforces, their defaults (the Db's limits
//! from docs/limits.md, "Database", where the two overlap), and [`Limit`], the name a
//! refusal gives. Spec: docs/protocol.md, section 8.

use crate::format::HEADER_SIZE;

/// Default largest whole frame, header included: 16 MiB of body plus the 16-byte header.
/// A request at every Db limit fits (docs/protocol.md, section 8, has the sum).
pub const FRAME_SIZE_MAX: u32 = 16 * 1024 * 1024 + HEADER_SIZE as u32;
/// Largest key, in bytes (the Db's `KEY_SIZE_MAX`).
pub const KEY_SIZE_MAX: u32 = 512;
/// Largest value, in bytes (the Db's `VALUE_SIZE_MAX`).
pub const VALUE_SIZE_MAX: u32 = 1024 * 1024;
/// Most writes in one batch or commit (the Db's `BATCH_WRITES_MAX`).
pub const BATCH_WRITES_MAX: u32 = 65_536;
/// Most bytes of keys and values in one batch or commit (the Db's `BATCH_SIZE_MAX`).
pub const BATCH_SIZE_MAX: u32 = 8 * 1024 * 1024;
/// Most conditions in one commit (the Db's `CONDITIONS_MAX`).
pub const CONDITIONS_MAX: u32 = 4_096;
/// Most entries in one scan response.
pub const SCAN_LIMIT_MAX: u32 = 10_000;
/// Most tables named by one request, or listed in one response (the Db's `TABLES_MAX`).
pub const TABLES_MAX: u32 = 4_096;
/// Longest table name, in bytes (the Db's `TABLE_NAME_MAX`). Fixed: not part of [`Limits`].
pub const TABLE_NAME_MAX: u32 = 64;
/// Longest authentication token, in bytes. Fixed.
pub const AUTH_TOKEN_MAX: u32 = 1024;
/// Most free-form entries in a status response. Fixed.
pub const STATS_MAX: u32 = 4_096;

/// The bounds a decoder enforces on one frame. Both sides use them: a server on requests,
/// a client on responses (with the values the server announced in its handshake).
///
/// # Invariants
/// `frame_size_max` is at least [`HEADER_SIZE`]; the other fields may be anything (a zero
/// limit refuses every non-empty item of its kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Largest whole frame in bytes, header included; checked before anything is reserved.
    pub frame_size_max: u32,
    /// Largest key (range condition and scan bounds may be one byte longer: a key's
    /// successor).
    pub key_size_max: u32,
    /// Largest value.
    pub value_size_max: u32,
    /// Most writes in a batch or commit.
    pub batch_writes_max: u32,
    /// Most bytes of keys and values in a batch or commit.
    pub batch_size_max: u32,
    /// Most conditions in a commit.
    pub conditions_max: u32,
    /// Most entries a scan asks for or a scan response holds.
    pub scan_limit_max: u32,
    /// Most tables a batch or commit names, or a table list holds.
    pub tables_max: u32,
}

impl Limits {
    /// The defaults: the constants of this module.
    pub const DEFAULT: Limits = Limits {
        frame_size_max: FRAME_SIZE_MAX,
        key_size_max: KEY_SIZE_MAX,
        value_size_max: VALUE_SIZE_MAX,
        batch_writes_max: BATCH_WRITES_MAX,
        batch_size_max: BATCH_SIZE_MAX,
        conditions_max: CONDITIONS_MAX,
        scan_limit_max: SCAN_LIMIT_MAX,
        tables_max: TABLES_MAX,
    };

    /// The largest body a frame may carry under these limits.
    pub fn body_size_max(&self) -> usize {
        (self.frame_size_max as usize).saturating_sub(HEADER_SIZE)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Which limit a request or frame passed; its wire code is a `u16` (docs/protocol.md,
/// section 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::frame_size_max`].
    FrameSize,
    /// [`Limits::key_size_max`].
    KeySize,
    /// [`Limits::value_size_max`].
    ValueSize,
    /// [`Limits::batch_writes_max`].
    BatchWrites,
    /// [`Limits::batch_size_max`].
    BatchSize,
    /// [`Limits::conditions_max`].
    Conditions,
    /// [`Limits::scan_limit_max`].
    ScanLimit,
    /// [`TABLE_NAME_MAX`].
    TableName,
    /// [`Limits::tables_max`], or the Db's count of live tables (from create table).
    Tables,
    /// [`AUTH_TOKEN_MAX`].
    AuthToken,
    /// [`STATS_MAX`].
    Stats,
}

impl Limit {
    /// Every limit, in wire-code order.
    pub const ALL: [Limit; 11] = [
        Limit::FrameSize,
        Limit::KeySize,
        Limit::ValueSize,
        Limit::BatchWrites,
        Limit::BatchSize,
        Limit::Conditions,
        Limit::ScanLimit,
        Limit::TableName,
        Limit::Tables,
        Limit::AuthToken,
        Limit::Stats,
    ];

    /// The wire code.
    pub fn code(self) -> u16 {
        match self {
            Limit::FrameSize => 1,
            Limit::KeySize => 2,
            Limit::ValueSize => 3,
            Limit::BatchWrites => 4,
            Limit::BatchSize => 5,
            Limit::Conditions => 6,
            Limit::ScanLimit => 7,
            Limit::TableName => 8,
            Limit::Tables => 9,
            Limit::AuthToken => 10,
            Limit::Stats => 11,
        }
    }

    /// The limit with this wire code, if any.
    pub fn from_code(code: u16) -> Option<Limit> {
        Limit::ALL.into_iter().find(|limit| limit.code() == code)
    }

    /// A short name, as docs/limits.md spells it ("key size").
    pub fn name(self) -> &'static str {
        match self {
            Limit::FrameSize => "frame size",
            Limit::KeySize => "key size",
            Limit::ValueSize => "value size",
            Limit::BatchWrites => "batch writes",
            Limit::BatchSize => "batch size",
            Limit::Conditions => "conditions",
            Limit::ScanLimit => "scan limit",
            Limit::TableName => "table name",
            Limit::Tables => "tables",
            Limit::AuthToken => "auth token",
            Limit::Stats => "stats",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_codes_round_trip_and_are_distinct() {
        for (i, limit) in Limit::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(limit.code()), i + 1);
            assert_eq!(Limit::from_code(limit.code()), Some(limit));
        }
        assert_eq!(Limit::from_code(0), None);
        assert_eq!(Limit::from_code(12), None);
    }
}
