//! The catalog in memory: the live tables by id and by name, each with its engine. The
//! apply stage changes it (copy on write, so readers keep the set they took) and publishes
//! it with the visible LSN.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use popdb_io::FsRef;
use rustc_hash::FxBuildHasher;

use crate::engine::{Engine, EngineKind, EngineOptions, open_engine};
use crate::error::Result;
use crate::options::DbOptions;
use crate::table::{Compression, TableDesc};

/// A live table: what the catalog says of it and its engine.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) desc: TableDesc,
    pub(crate) engine: Arc<dyn Engine>,
}

/// The live tables.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tables {
    by_id: BTreeMap<u64, Arc<Table>>,
    /// Looked up by every get and write that names its table, so a cheap hash: the names
    /// are few ([`crate::limits::TABLES_MAX`]) and made by DDL, not by every request, so
    /// SipHash's defence against flooding buys nothing here and cost a server 4% of its CPU.
    by_name: HashMap<String, Arc<Table>, FxBuildHasher>,
}

impl Tables {
    pub(crate) fn by_name(&self, name: &str) -> Option<&Arc<Table>> {
        self.by_name.get(name)
    }

    pub(crate) fn by_id(&self, id: u64) -> Option<&Arc<Table>> {
        self.by_id.get(&id)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// In ascending id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.by_id.values()
    }

    pub(crate) fn descs(&self) -> Vec<TableDesc> {
        self.iter().map(|t| t.desc.clone()).collect()
    }

    pub(crate) fn insert(&mut self, table: Arc<Table>) {
        self.by_name
            .insert(table.desc.name.clone(), Arc::clone(&table));
        self.by_id.insert(table.desc.id, table);
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Arc<Table>> {
        let table = self.by_id.remove(&id)?;
        self.by_name.remove(&table.desc.name);
        Some(table)
    }
}

/// The directory of table `id` in generation directory `gen_dir`.
pub(crate) fn table_dir(gen_dir: &Path, id: u64) -> PathBuf {
    gen_dir.join(format!("t-{id:016x}"))
}

/// The table id a generation directory entry names, if it is a table directory.
pub(crate) fn parse_table_dir(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("t-")?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Opens (or creates) the engine of the table `desc` in `gen_dir`.
pub(crate) fn open_table(
    fs: &FsRef,
    gen_dir: &Path,
    desc: TableDesc,
    options: &DbOptions,
    block_cache: &Arc<popdb_lsm::BlockCache>,
) -> Result<Arc<Table>> {
    let dir = table_dir(gen_dir, desc.id);
    let engine_options = match desc.options.engine {
        EngineKind::Lsm => {
            let mut lsm = options.lsm.clone();
            lsm.log_backed = true;
            lsm.flush_needs_durable_lsn = true;
            lsm.block_cache = Arc::clone(block_cache);
            lsm.sst.bits_per_key = desc.options.bloom_bits_per_key as usize;
            lsm.sst.compression = match desc.options.compression {
                Compression::None => popdb_lsm::Compression::None,
                Compression::Zstd(level) => popdb_lsm::Compression::Zstd { level },
            };
            EngineOptions::Lsm(lsm)
        }
        EngineKind::Btree => EngineOptions::Btree(popdb_btree::TreeOptions {
            page_size: popdb_btree::PageSize::new(desc.options.page_size)?,
            roots_retained: options.btree_roots_retained,
        }),
    };
    let engine = open_engine(Arc::clone(fs), &dir, engine_options)?;
    Ok(Arc::new(Table { desc, engine }))
}
