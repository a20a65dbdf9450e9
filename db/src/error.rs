//! The Db's errors. An engine's error is carried whole, so the caller can still tell a
//! corruption (naming the file and page) from a refused write or an i/o failure.

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the Db.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The LSM engine failed (see its error for what the caller can do).
    #[error(transparent)]
    Lsm(#[from] popdb_lsm::Error),
    /// The B+tree engine failed (see its error for what the caller can do).
    #[error(transparent)]
    Btree(#[from] popdb_btree::Error),
}
