//! The body of fuzz target `btree_file_open`: arbitrary bytes written as a tree's file on a
//! fresh simulated file system, opened with [`Tree::open`], and, if it opens, read in full.
//! Spec of what must hold: docs/format/btree.md (section 11) and the contract:
//! "corrupt or truncated files: open and reads fail with a Corruption error naming the
//! page, never a panic or wrong data; a torn meta page falls back to the other one".
//!
//! [`fuzz_file_open`] never panics itself: a panic that escapes it is the tree's (the
//! finding). It returns a [`FileOpenSummary`] whose `disagreements` list reads of the one
//! file that contradict one another (a forward scan that is not the backward one reversed,
//! a get that does not find what a scan met, a scan whose keys do not increase, a
//! checkpointed write that a reopen does not return); the fuzz target and the replay test
//! assert that it is empty, except for files whose page references the hook re-sealed
//! ([`CONTROL_RESEAL_REFS`]): the tree checks each page against its parent's checksum and
//! its own structure, but not (yet) that a page's keys lie between its parent's
//! separators, so a file forged with every checksum right can place a key where a get does
//! not look. Those disagreements are returned, not asserted, until the tree checks that.
//!
//! Bounds: every scan stops after [`ENTRIES_MAX`] entries, so that a damaged tree whose
//! pages are shared by many parents (a DAG a checksum forger could build) cannot make the
//! fuzzer hang here; passing it is reported as a disagreement, since the file cannot hold
//! that many entries. Memory is bounded by the input: the tree maps at most the file.
//!
//! Compiled only with the `internals` feature (the fuzz crate and the tests enable it).

#![cfg(feature = "internals")]

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use popdb_io::{FsRef, OpenOptions, SimFs};

use crate::error::{Error, Result};
use crate::meta::Meta;
use crate::page_format::{
    BRANCH_CHILD_CHECKSUM_AT, BRANCH_CHILD_ID_AT, BRANCH_LEFTMOST_CHECKSUM_AT,
    BRANCH_LEFTMOST_ID_AT, BRANCH_SLOTS_AT, CHECKSUM_AT, COUNT_AT, HAS_NEXT_AT, HEADER_SIZE,
    KIND_OVERFLOW, LEAF_ENTRY_HEADER_SIZE, LEAF_KEY_LEN_AT, LEAF_KIND_AT, LEAF_SLOTS_AT,
    META_FREE_LIST_CHECKSUM_AT, META_FREE_LIST_ID_AT, META_HAS_FREE_LIST_AT, META_HAS_ROOT_AT,
    META_ROOT_CHECKSUM_AT, META_ROOT_ID_AT, NEXT_CHECKSUM_AT, NEXT_ID_AT, PAGE_TYPE_AT, PageId,
    PageType, SLOT_SIZE, TREE_HEIGHT_MAX, seal,
};
use crate::page_size::PageSize;
use crate::range::Direction;
use crate::read_view::ReadView;
use crate::tree::{FILE_NAME, LSN_MAX, Tree, TreeOptions};

/// The directory the file is written to on the simulated file system.
const DIR: &str = "/fuzz";

/// The most entries one scan reads. A file of at most a few MiB (libFuzzer's inputs are far
/// smaller) cannot hold more: every entry takes a slot and a header in a leaf.
pub const ENTRIES_MAX: usize = 1 << 18;

/// Bit of the control byte: re-seal every page's own checksum before opening, so that
/// mutations reach the structure checks behind it (a parent's copy of the checksum still
/// catches them, except in the metas, which have no parent).
pub const CONTROL_RESEAL: u8 = 1;

/// Bit of the control byte: after reading, apply a batch, checkpoint it, reopen and read
/// again.
pub const CONTROL_WRITE: u8 = 2;

/// Bit of the control byte: re-seal every page and also every reference to a page (a
/// branch's children, a leaf's overflow chains, the next page of a chain or free list, a
/// meta's root and free list), so that mutations reach the checks behind both copies of a
/// checksum: the file's structure across pages.
pub const CONTROL_RESEAL_REFS: u8 = 4;

/// The most passes [`reseal_refs`] makes; each settles at least one more level of the
/// references (one pass settles a chain or a tree whose pages refer to lower ids only).
const RESEAL_PASSES_MAX: usize = TREE_HEIGHT_MAX + 8;

/// Keys the check looks up beside those a scan met (absent from most files).
const PROBES: [&[u8]; 4] = [b"", b"\x00", b"m", b"\xff\xff\xff\xff"];

/// What [`fuzz_file_open`] found.
#[derive(Debug, Default)]
pub struct FileOpenSummary {
    /// Whether the first open succeeded.
    pub opened: bool,
    /// Live entries the first forward scan met (all of them if it did not fail).
    pub entries: usize,
    /// Errors met (open, reads, apply, checkpoint, reopen); each is allowed.
    pub errors: usize,
    /// Errors that were not [`Error::Corruption`] (an apply's `LimitExceeded` or
    /// `LsnNotIncreasing` on a strange but valid file, say); allowed too, counted apart.
    pub other_errors: usize,
    /// Whether the batch was applied and checkpointed.
    pub checkpointed: bool,
    /// Reads that contradict one another or what was written: wrong data.
    pub disagreements: Vec<String>,
    /// Whether the page references were re-sealed ([`CONTROL_RESEAL_REFS`]), so that the
    /// file may be forged across pages (see the module's documentation).
    pub refs_resealed: bool,
}

impl FileOpenSummary {
    /// The disagreements that are wrong data under the contract: all of them, also on
    /// files whose references were re-sealed (the tree checks a page's keys against its
    /// parent's separators when it first reads it).
    pub fn wrong_data(&self) -> &[String] {
        &self.disagreements
    }
}

impl FileOpenSummary {
    fn error(&mut self, e: &Error) {
        self.errors += 1;
        if e.as_corruption().is_none() {
            self.other_errors += 1;
        }
    }
}

/// One entry a scan met: key, value, version.
type Row = (Vec<u8>, Vec<u8>, u64);

/// The body of fuzz target `btree_file_open`. Input layout: `[c0, file...]`; `file` is
/// written as the tree's file (an empty one makes the tree create a new file); `c0`'s bits
/// are [`CONTROL_RESEAL`], [`CONTROL_WRITE`] and [`CONTROL_RESEAL_REFS`], and, when resealing
/// and meta 0 names no
/// page size, bits 4-6 pick the page size (512 shifted left by them). An empty input is
/// ignored.
///
/// Never panics unless the tree does.
pub fn fuzz_file_open(data: &[u8]) -> FileOpenSummary {
    let mut summary = FileOpenSummary::default();
    let Some((&c0, file)) = data.split_first() else {
        return summary;
    };
    let mut file = file.to_vec();
    if c0 & (CONTROL_RESEAL | CONTROL_RESEAL_REFS) != 0 {
        let size = reseal_page_size(&file, c0);
        summary.refs_resealed = c0 & CONTROL_RESEAL_REFS != 0;
        if summary.refs_resealed {
            reseal_refs(&mut file, size);
        } else {
            reseal(&mut file, size);
        }
    }
    let sim = SimFs::new(u64::from(c0));
    let fs: FsRef = Arc::new(sim);
    if write_file(&fs, &file).is_err() {
        // The simulated file system has no limit set: this cannot happen, and is no
        // finding of the tree's if it does.
        return summary;
    }
    let tree = match Tree::open(Arc::clone(&fs), Path::new(DIR), TreeOptions::default()) {
        Ok(tree) => tree,
        Err(e) => {
            summary.error(&e);
            return summary;
        }
    };
    summary.opened = true;
    let _ = tree.stats();
    let rows = read_all(&tree.read_view(), &mut summary);
    summary.entries = rows.as_ref().map_or(0, Vec::len);
    if c0 & CONTROL_WRITE != 0 {
        write_and_reopen(tree, &fs, rows.as_deref(), &mut summary);
    }
    summary
}

/// The page size meta 0 claims, or else `c0`'s bits 4-6 pick.
fn reseal_page_size(file: &[u8], c0: u8) -> usize {
    Meta::peek_page_size(file, PageId(0))
        .unwrap_or_else(|_| PageSize::from_u32(512 << ((c0 >> 4) & 7)).unwrap_or(PageSize::DEFAULT))
        .bytes()
}

/// Re-seals every page of `file` (the last one too, if it holds a header).
fn reseal(file: &mut [u8], size: usize) {
    for page in file.chunks_mut(size) {
        if page.len() >= HEADER_SIZE {
            seal(page);
        }
    }
}

/// Re-seals every whole page of `file` and sets every reference's checksum to its target's,
/// pass after pass (highest page first) until nothing changes, at most
/// [`RESEAL_PASSES_MAX`] passes. References are found by the page type byte alone, with
/// every field bounds-checked: a page that does not decode is still sealed.
fn reseal_refs(file: &mut [u8], size: usize) {
    let pages = file.len() / size;
    for _ in 0..RESEAL_PASSES_MAX {
        let mut changed = false;
        for index in (0..pages).rev() {
            let start = index * size;
            let refs = references(file.get(start..start + size).unwrap_or_default(), index);
            // A field past the page's end (a slot pointing there) is no reference.
            let inside = |&(id_at, checksum_at): &(usize, usize)| {
                id_at + 8 <= size && checksum_at + 4 <= size
            };
            for (id_at, checksum_at) in refs.into_iter().filter(inside) {
                let target = read_u64(file, start + id_at)
                    .and_then(|id| usize::try_from(id).ok())
                    .filter(|&id| id < pages);
                if let Some(checksum) =
                    target.and_then(|id| read_u32(file, id * size + CHECKSUM_AT))
                {
                    write_u32(file, start + checksum_at, checksum);
                }
            }
            let Some(page) = file.get_mut(start..start + size) else {
                break;
            };
            let before = read_u32(page, CHECKSUM_AT);
            changed |= before != Some(seal(page));
        }
        if !changed {
            break;
        }
    }
}

/// The (id offset, checksum offset) of every page reference in page `index`.
fn references(page: &[u8], index: usize) -> Vec<(usize, usize)> {
    let flag = |at: usize| page.get(at).is_some_and(|&b| b != 0);
    if index < 2 {
        let mut refs = Vec::new();
        if flag(META_HAS_ROOT_AT) {
            refs.push((META_ROOT_ID_AT, META_ROOT_CHECKSUM_AT));
        }
        if flag(META_HAS_FREE_LIST_AT) {
            refs.push((META_FREE_LIST_ID_AT, META_FREE_LIST_CHECKSUM_AT));
        }
        return refs;
    }
    let page_type = page.get(PAGE_TYPE_AT).copied().unwrap_or_default();
    let slots = |slots_at: usize| {
        let count = read_u16(page, COUNT_AT).unwrap_or_default();
        (0..usize::from(count))
            .filter_map(move |i| read_u16(page, slots_at + i * SLOT_SIZE).map(usize::from))
    };
    if page_type == PageType::Branch as u8 {
        let mut refs = vec![(BRANCH_LEFTMOST_ID_AT, BRANCH_LEFTMOST_CHECKSUM_AT)];
        refs.extend(
            slots(BRANCH_SLOTS_AT)
                .map(|at| (at + BRANCH_CHILD_ID_AT, at + BRANCH_CHILD_CHECKSUM_AT)),
        );
        refs
    } else if page_type == PageType::Leaf as u8 {
        slots(LEAF_SLOTS_AT)
            .filter(|&at| page.get(at + LEAF_KIND_AT) == Some(&KIND_OVERFLOW))
            .filter_map(|at| {
                let key_len = usize::from(read_u16(page, at + LEAF_KEY_LEN_AT)?);
                let ref_at = at + LEAF_ENTRY_HEADER_SIZE + key_len;
                Some((ref_at, ref_at + 8))
            })
            .collect()
    } else if page_type == PageType::Overflow as u8 || page_type == PageType::FreeList as u8 {
        if flag(HAS_NEXT_AT) {
            vec![(NEXT_ID_AT, NEXT_CHECKSUM_AT)]
        } else {
            Vec::new()
        }
    } else {
        Vec::new()
    }
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Writes `value` at `at` if the field lies inside `bytes`.
fn write_u32(bytes: &mut [u8], at: usize, value: u32) {
    if let Some(field) = at.checked_add(4).and_then(|end| bytes.get_mut(at..end)) {
        field.copy_from_slice(&value.to_le_bytes());
    }
}

/// Writes `bytes` as the tree's file, durably, with its directory.
fn write_file(fs: &FsRef, bytes: &[u8]) -> std::io::Result<()> {
    let dir = Path::new(DIR);
    popdb_io::create_dir_durably(fs.as_ref(), dir)?;
    if bytes.is_empty() {
        return Ok(());
    }
    let file = fs.open(&dir.join(FILE_NAME), OpenOptions::create())?;
    file.write_all_at(bytes, 0)?;
    file.sync_all()?;
    fs.sync_dir(dir)
}

/// Reads everything through `view`: both scans, a get of every key met and of the probes,
/// and the statistics walk. Returns the forward scan's entries if every read succeeded.
fn read_all(view: &ReadView, summary: &mut FileOpenSummary) -> Option<Vec<Row>> {
    let forward = scan(view, Direction::Forward, summary);
    let backward = scan(view, Direction::Backward, summary);
    let stats = view.stats();
    if let Err(e) = &stats {
        summary.error(e);
    }
    let mut complete = stats.is_ok();
    if let Some(rows) = &forward
        && let Some(at) = rows.windows(2).position(|w| w[0].0 >= w[1].0)
    {
        summary.disagreements.push(format!(
            "the forward scan's keys do not increase at entry {at}: {:02x?}",
            rows.get(at).map(|row| &row.0)
        ));
    }
    if let (Some(forward), Some(backward)) = (&forward, &backward) {
        if !forward.iter().eq(backward.iter().rev()) {
            summary.disagreements.push(format!(
                "the forward scan ({} entries) is not the backward one ({}) reversed",
                forward.len(),
                backward.len()
            ));
        }
        if let Ok(stats) = &stats
            && stats.entry_count != forward.len() as u64
        {
            summary.disagreements.push(format!(
                "stats count {} live entries, a scan meets {}",
                stats.entry_count,
                forward.len()
            ));
        }
    }
    if let Some(rows) = forward.as_ref().or(backward.as_ref()) {
        complete &= check_gets(view, rows, summary);
    }
    for probe in PROBES {
        if let Err(e) = view.get(probe) {
            summary.error(&e);
            complete = false;
        }
    }
    forward.filter(|_| complete && backward.is_some())
}

/// A scan of every key in `direction`; `None` if it failed or passed [`ENTRIES_MAX`].
fn scan(view: &ReadView, direction: Direction, summary: &mut FileOpenSummary) -> Option<Vec<Row>> {
    let result = scan_rows(view, direction);
    match result {
        Ok(Some(rows)) => Some(rows),
        Ok(None) => {
            summary
                .disagreements
                .push(format!("a {direction:?} scan passed {ENTRIES_MAX} entries"));
            None
        }
        Err(e) => {
            summary.error(&e);
            None
        }
    }
}

fn scan_rows(view: &ReadView, direction: Direction) -> Result<Option<Vec<Row>>> {
    let mut it = view.scan((Bound::Unbounded, Bound::Unbounded), direction)?;
    let mut rows = Vec::new();
    while it.valid() {
        if rows.len() == ENTRIES_MAX {
            return Ok(None);
        }
        rows.push((it.key().to_vec(), it.value().to_vec(), it.version()));
        it.next()?;
    }
    Ok(Some(rows))
}

/// Gets every key of `rows` both ways; each must return its row. Returns whether every
/// get succeeded.
fn check_gets(view: &ReadView, rows: &[Row], summary: &mut FileOpenSummary) -> bool {
    let mut complete = true;
    let mut value = Vec::new();
    for (key, expected, version) in rows {
        let mut found_into = None;
        match view.get_into(key, &mut value) {
            Ok(found) => {
                found_into = Some(found);
                if found != Some(*version) || value != *expected {
                    summary.disagreements.push(format!(
                        "get {key:02x?} found version {found:?} and {} bytes; a scan met \
                         version {version} and {} bytes",
                        value.len(),
                        expected.len()
                    ));
                }
            }
            Err(e) => {
                summary.error(&e);
                complete = false;
            }
        }
        // The allocating variant must agree with the other.
        let into = found_into.map(|found| found.map(|version| (value.clone(), version)));
        if let (Ok(got), Some(into)) = (view.get(key), into)
            && got.map(|v| (v.value, v.version)) != into
        {
            summary
                .disagreements
                .push(format!("get {key:02x?} disagrees with get_into"));
        }
    }
    complete
}

/// How many keys met by the first scan the first batch deletes.
const DELETES_COUNT: usize = 8;

/// Applies two batches, each checkpointed: the first puts a small value and an overflow
/// value and deletes the first [`DELETES_COUNT`] keys met; the second writes the first of
/// them again, so that its leaf is rebuilt above the watermark and drops the other
/// tombstones (which moves the entry count down). Then drops the tree, reopens the file and
/// reads it again. `rows` is the first read's result if it read everything.
fn write_and_reopen(tree: Tree, fs: &FsRef, rows: Option<&[Row]>, summary: &mut FileOpenSummary) {
    let Some(lsn) = tree
        .last_applied()
        .unwrap_or(0)
        .checked_add(1)
        .filter(|&lsn| lsn < LSN_MAX)
    else {
        return;
    };
    let big = vec![0xab; 2 * tree.page_size().bytes() + 7];
    let mut first: Vec<(Vec<u8>, Option<Vec<u8>>)> = vec![
        (b"fuzz-small".to_vec(), Some(b"v".to_vec())),
        (b"fuzz-big".to_vec(), Some(big)),
    ];
    // A key of a batch is written once, so that what a reopen must return is plain.
    for (key, ..) in rows.unwrap_or_default().iter().take(DELETES_COUNT) {
        if first.iter().all(|(k, _)| k != key) {
            first.push((key.clone(), None));
        }
    }
    let again: Vec<(Vec<u8>, Option<Vec<u8>>)> = first
        .get(2)
        .map(|(key, _)| vec![(key.clone(), Some(b"again".to_vec()))])
        .unwrap_or_default();
    let written = tree
        .apply(lsn, &first)
        .and_then(|()| tree.checkpoint(lsn))
        .and_then(|()| tree.apply(lsn + 1, &again))
        .and_then(|()| tree.checkpoint(lsn + 1));
    if let Err(e) = &written {
        summary.error(e);
        return;
    }
    summary.checkpointed = true;
    let read_cleanly = rows.is_some();
    drop(tree);
    let tree = match Tree::open(Arc::clone(fs), Path::new(DIR), TreeOptions::default()) {
        Ok(tree) => tree,
        Err(e) => {
            summary.error(&e);
            if read_cleanly {
                summary.disagreements.push(format!(
                    "a file that read cleanly and took a checkpoint does not reopen: {e}"
                ));
            }
            return;
        }
    };
    let view = tree.read_view();
    if read_all(&view, summary).is_none() {
        return;
    }
    let expected = first
        .iter()
        .map(|(key, value)| (key, value, lsn))
        .filter(|(key, ..)| again.iter().all(|(k, _)| k != *key))
        .chain(again.iter().map(|(key, value)| (key, value, lsn + 1)));
    for (key, value, version) in expected {
        match view.get(key) {
            Ok(got) => {
                let got = got.map(|v| (v.value, v.version));
                if got != value.clone().map(|v| (v, version)) {
                    summary.disagreements.push(format!(
                        "after the checkpoints and reopen, get {key:02x?} is not what was \
                         written at lsn {version}"
                    ));
                }
            }
            Err(e) => summary.error(&e),
        }
    }
}
