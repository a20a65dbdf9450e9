//! The B+tree engine behind the [`Engine`] trait.

use std::ops::Bound;
use std::path::Path;

use popdb_btree::{ReadView, Tree, TreeOptions};
use popdb_io::FsRef;

use crate::engine::{Cursor, Direction, Engine, EngineKind, EngineView, EngineWork, Write, owned};
use crate::error::Result;

/// A B+tree as a table's engine.
#[derive(Debug)]
pub(crate) struct BtreeEngine {
    tree: Tree,
}

impl BtreeEngine {
    pub(crate) fn open(fs: FsRef, dir: &Path, options: TreeOptions) -> Result<Self> {
        Ok(Self {
            tree: Tree::open(fs, dir, options)?,
        })
    }
}

impl Engine for BtreeEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Btree
    }

    fn apply(&self, lsn: u64, batch: &[Write<'_>]) -> Result<()> {
        Ok(self.tree.apply(lsn, batch)?)
    }

    fn read_view(&self) -> Box<dyn EngineView> {
        Box::new(BtreeView(self.tree.read_view()))
    }

    fn read_view_at(&self, lsn: u64) -> Result<Box<dyn EngineView>> {
        Ok(Box::new(BtreeView(self.tree.read_view_at(lsn)?)))
    }

    fn get_at(&self, lsn: u64, key: &[u8], value: &mut Vec<u8>) -> Result<Option<Option<u64>>> {
        // As `engine_view_at`: the latest view unless the tree has applied past `lsn`.
        let mut view = self.tree.read_view();
        if view.lsn().unwrap_or(0) > lsn {
            view = match self.tree.read_view_at(lsn) {
                Ok(view) => view,
                Err(popdb_btree::Error::ViewOutOfRange { .. }) => return Ok(None),
                Err(error) => return Err(error.into()),
            };
        }
        Ok(Some(view.get_into(key, value)?))
    }

    fn checkpoint(&self, lsn: u64) -> Result<()> {
        Ok(self.tree.checkpoint(lsn)?)
    }

    fn checkpoint_view(&self, view: &dyn EngineView, lsn: u64) -> Result<()> {
        match view.as_any().downcast_ref::<BtreeView>() {
            Some(view) => Ok(self.tree.checkpoint_view(&view.0, lsn)?),
            None => Ok(self.tree.checkpoint(lsn)?),
        }
    }

    fn set_durable_lsn(&self, _lsn: u64) {
        // The B+tree writes only at checkpoints, which the Db orders after the log's sync.
    }

    fn watermark(&self) -> Option<u64> {
        self.tree.watermark()
    }

    fn last_applied(&self) -> Option<u64> {
        self.tree.last_applied()
    }

    fn memory_bytes(&self) -> u64 {
        let stats = self.tree.stats();
        stats.dirty_pages * stats.page_size.bytes() as u64
    }

    fn maintenance_step(&self) -> Result<bool> {
        Ok(false)
    }

    fn work(&self) -> EngineWork {
        EngineWork {
            checkpoints: self.tree.stats().checkpoints,
            ..EngineWork::default()
        }
    }

    fn check(&self) -> Result<String> {
        let tree = self.tree.check()?;
        let file = self.tree.stats();
        Ok(format!(
            "btree: {} pages of {} B ({} leaves, {} in memory), depth {}, fill factor {:.2}, \
             {} entries, {} tombstones; file {} pages, {} free",
            tree.node_count,
            tree.page_size,
            tree.leaf_count,
            tree.mem_node_count,
            tree.depth,
            tree.fill_factor(),
            tree.entry_count,
            tree.tombstone_count,
            file.file_pages,
            file.free_pages,
        ))
    }
}

struct BtreeView(ReadView);

impl EngineView for BtreeView {
    fn lsn(&self) -> Option<u64> {
        self.0.lsn()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn get_into(&self, key: &[u8], value: &mut Vec<u8>) -> Result<Option<u64>> {
        Ok(self.0.get_into(key, value)?)
    }

    fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<Box<dyn Cursor + '_>> {
        let direction = match direction {
            Direction::Forward => popdb_btree::Direction::Forward,
            Direction::Backward => popdb_btree::Direction::Backward,
        };
        Ok(Box::new(BtreeCursor(
            self.0.scan(owned(lower, upper), direction)?,
        )))
    }
}

struct BtreeCursor(popdb_btree::RangeIter);

impl Cursor for BtreeCursor {
    fn valid(&self) -> bool {
        self.0.valid()
    }

    fn key(&self) -> &[u8] {
        self.0.key()
    }

    fn value(&self) -> &[u8] {
        self.0.value()
    }

    fn version(&self) -> u64 {
        self.0.version()
    }

    fn next(&mut self) -> Result<()> {
        Ok(self.0.next()?)
    }
}
