//! Writes one new SST for a flush or a compaction and describes it for the manifest.
//!
//! The file is created (truncating any leftover of an earlier failed attempt at the same id,
//! which no manifest names), written in internal-key order, synced by the SST writer, and then
//! reopened read-only for the version. The caller syncs the directory before it logs the edit
//! that names the file: a file the manifest names always exists after a crash.

use std::path::PathBuf;
use std::sync::Arc;

use popdb_io::OpenOptions;

use crate::error::{Error, Result};
use crate::internal_key::InternalKey;
use crate::manifest::FileMeta;
use crate::sst_writer::SstWriter;
use crate::tree::Shared;
use crate::version::{SstHandle, sst_file_name};

/// An SST being written.
pub(crate) struct Output {
    writer: SstWriter,
    meta: FileMeta,
    path: PathBuf,
    /// Bytes of keys and values added: the size estimate compaction cuts files by.
    bytes_added: u64,
}

impl Output {
    /// Creates SST `id` for `level`.
    pub(crate) fn create(shared: &Shared, id: u64, level: u8) -> Result<Self> {
        let path = shared.dir.join(sst_file_name(id));
        let options = OpenOptions {
            truncate: true,
            ..OpenOptions::create()
        };
        let file = shared
            .fs
            .open(&path, options)
            .map_err(|e| Error::io("sst create", e))?;
        Ok(Self {
            writer: SstWriter::new(file, shared.options.sst),
            meta: FileMeta {
                id,
                level,
                size: 0,
                smallest: Vec::new(),
                largest: Vec::new(),
                smallest_lsn: u64::MAX,
                largest_lsn: 0,
                entry_count: 0,
            },
            path,
            bytes_added: 0,
        })
    }

    /// Appends an entry; `key` is an encoded internal key above the previous one.
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let internal = InternalKey::from_encoded(key.to_vec())
            .expect("keys from memtables and validated SSTs are well formed");
        let lsn = internal.lsn();
        self.writer.add(&internal, value)?;
        let meta = &mut self.meta;
        if meta.entry_count == 0 {
            meta.smallest = key.to_vec();
        }
        meta.largest.clear();
        meta.largest.extend_from_slice(key);
        meta.smallest_lsn = meta.smallest_lsn.min(lsn);
        meta.largest_lsn = meta.largest_lsn.max(lsn);
        meta.entry_count += 1;
        self.bytes_added += (key.len() + value.len()) as u64;
        Ok(())
    }

    /// Bytes of keys and values added so far.
    pub(crate) fn bytes_added(&self) -> u64 {
        self.bytes_added
    }

    /// Finishes and syncs the file and opens it for reading; `None` (and the file removed)
    /// if nothing was added.
    pub(crate) fn finish(self, shared: &Shared) -> Result<Option<Arc<SstHandle>>> {
        if self.meta.entry_count == 0 {
            drop(self.writer);
            shared
                .fs
                .remove_file(&self.path)
                .map_err(|e| Error::io("sst remove empty", e))?;
            return Ok(None);
        }
        let summary = self.writer.finish()?;
        let mut meta = self.meta;
        meta.size = summary.file_size;
        let handle = SstHandle::open(&shared.fs, &shared.dir, meta, &shared.options.block_cache)?;
        Ok(Some(Arc::new(handle)))
    }
}
