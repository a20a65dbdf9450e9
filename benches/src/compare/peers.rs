//! The dispatch to the peer adapters, one arm per cargo feature: a peer whose feature is
//! off opens to an error naming the feature, and its settings say it was not compiled in.

use std::path::Path;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::target::{Target, TargetKind};

/// Opens peer `kind` on `dir`.
///
/// # Errors
/// The peer's own, or that `kind` is not compiled in (or is not a peer).
pub fn open(kind: TargetKind, dir: &Path) -> Result<Box<dyn Target>> {
    // Built without any peer, `dir` has no other use.
    let _ = dir;
    match kind {
        #[cfg(feature = "rocksdb")]
        TargetKind::Rocksdb => Ok(Box::new(super::rocksdb::RocksdbTarget::open(dir, true)?)),
        #[cfg(feature = "rocksdb")]
        TargetKind::RocksdbNoWal => Ok(Box::new(super::rocksdb::RocksdbTarget::open(dir, false)?)),
        #[cfg(feature = "lmdb")]
        TargetKind::Lmdb => Ok(Box::new(super::lmdb::LmdbTarget::open(dir)?)),
        #[cfg(feature = "redb")]
        TargetKind::Redb => Ok(Box::new(super::redb::RedbTarget::open(dir)?)),
        #[cfg(feature = "fjall")]
        TargetKind::Fjall => Ok(Box::new(super::fjall::FjallTarget::open(dir)?)),
        #[cfg(feature = "sled")]
        TargetKind::Sled => Ok(Box::new(super::sled::SledTarget::open(dir)?)),
        other => match other.feature() {
            Some(feature) => bail!(
                "target {} is not compiled in: build popdb-bench with --features {feature}",
                other.name()
            ),
            None => bail!("target {} is not a peer", other.name()),
        },
    }
}

/// Opens peer `kind` on `dir` for synced commits: LMDB with its default flags (each
/// commit syncs); the others as `open`.
///
/// # Errors
/// As `open`.
pub fn open_synced(kind: TargetKind, dir: &Path) -> Result<Box<dyn Target>> {
    match kind {
        #[cfg(feature = "lmdb")]
        TargetKind::Lmdb => Ok(Box::new(super::lmdb::LmdbTarget::open_synced(dir)?)),
        other => open(other, dir),
    }
}

/// Peer `kind`'s settings, or a note that it is not compiled in.
pub fn settings(kind: TargetKind) -> Value {
    match kind {
        #[cfg(feature = "rocksdb")]
        TargetKind::Rocksdb => super::rocksdb::settings(true),
        #[cfg(feature = "rocksdb")]
        TargetKind::RocksdbNoWal => super::rocksdb::settings(false),
        #[cfg(feature = "lmdb")]
        TargetKind::Lmdb => super::lmdb::settings(),
        #[cfg(feature = "redb")]
        TargetKind::Redb => super::redb::settings(),
        #[cfg(feature = "fjall")]
        TargetKind::Fjall => super::fjall::settings(),
        #[cfg(feature = "sled")]
        TargetKind::Sled => super::sled::settings(),
        other => json!(format!(
            "not compiled in (cargo feature {})",
            other.feature().unwrap_or("none")
        )),
    }
}
