//! What the catalog knows of a table: its name, id, engine and options, and how a name is
//! validated.

use crate::engine::EngineKind;
use crate::error::{Error, Result};
use crate::limits::{BTREE_PAGE_SIZE_MIN, TABLE_NAME_MAX};

/// How an LSM table compresses its SST data blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Blocks stored as built (the default).
    #[default]
    None,
    /// zstd at this level (1 to 22).
    Zstd(i32),
}

/// A table's engine and options, chosen when it is created and kept for its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableOptions {
    /// The engine: [`EngineKind::Lsm`] for write-heavy tables, [`EngineKind::Btree`] for
    /// read-heavy ones.
    pub engine: EngineKind,
    /// LSM only: compression of SST data blocks.
    pub compression: Compression,
    /// B+tree only: the page size, a power of two from 4 KiB to 64 KiB.
    pub page_size: u32,
    /// LSM only: bloom filter bits per key (0 for no filter, at most 32).
    pub bloom_bits_per_key: u32,
}

impl TableOptions {
    /// Default options for a table on `engine`: no compression, 4 KiB pages, 10 bloom bits
    /// per key.
    pub fn new(engine: EngineKind) -> Self {
        Self {
            engine,
            compression: Compression::None,
            page_size: 4096,
            bloom_bits_per_key: 10,
        }
    }

    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the option.
    pub fn validate(&self) -> Result<()> {
        if !self.page_size.is_power_of_two()
            || !(BTREE_PAGE_SIZE_MIN..=65_536).contains(&self.page_size)
        {
            return Err(Error::InvalidArgument(format!(
                "page size {} is not a power of two from {BTREE_PAGE_SIZE_MIN} to 65536",
                self.page_size
            )));
        }
        if self.bloom_bits_per_key > 32 {
            return Err(Error::InvalidArgument(format!(
                "bloom bits per key {} is above 32",
                self.bloom_bits_per_key
            )));
        }
        if let Compression::Zstd(level) = self.compression
            && !(1..=22).contains(&level)
        {
            return Err(Error::InvalidArgument(format!(
                "zstd level {level} is outside 1 to 22"
            )));
        }
        Ok(())
    }
}

/// A table as the catalog describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDesc {
    /// Never reused: the LSN of the record that created the table.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its engine and options.
    pub options: TableOptions,
}

/// Checks a table name: 1 to [`TABLE_NAME_MAX`] bytes of ASCII letters, digits, `_`, `-`
/// and `.`, starting with a letter or digit.
///
/// # Errors
/// [`Error::InvalidArgument`] saying what is wrong.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::InvalidArgument(format!("table name {name:?} {why}")));
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > TABLE_NAME_MAX {
        return bad(&format!("is longer than {TABLE_NAME_MAX} bytes"));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or a digit");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return bad(&format!(
            "holds {c:?}: only letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(())
}
