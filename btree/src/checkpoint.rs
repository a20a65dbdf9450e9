//! Planning a checkpoint: which pages to write where, what the new free list holds, and
//! the meta that commits it. Computation over the durable state and one pinned root, which
//! hands the pages it encodes to a writer the tree gives it, batch by batch; the tree does
//! the writes and syncs (`tree.rs`). Spec: docs/format/btree.md (section 11,
//! "Checkpoint").
//!
//! 1. The **frontier** of the new root: the pages it shares with the file (references
//!    below its in-memory nodes, and nodes an earlier checkpoint wrote), and the overflow
//!    chains its in-memory leaves share.
//! 2. The **freed** pages: a walk of the durable tree from the current meta's root that
//!    stops at every page the frontier shares. Every page it reaches is one the new tree
//!    no longer reaches, and so are the chains of its leaves that the frontier does not
//!    share (a chain is referenced by exactly one entry; an entry that moved was copied
//!    into an in-memory leaf, which the frontier lists). The cost is the changed paths of
//!    the old tree, about the size of the checkpoint itself.
//! 3. **Allocation**, lowest ids first, only among pages that are free under the reuse
//!    rule: listed by a durable meta and pinned by no root below the checkpoint that freed
//!    them; then past the high-water mark.
//! 4. **Encoding**, children and chains before parents (a parent holds each child's
//!    checksum), every page stamped with the new transaction.
//! 5. The **free list**: what was listed and not reused, plus the freed pages and the old
//!    list's own pages, on pages taken like any other (so the list's length may shrink as
//!    it takes them); entries spread evenly so that no list page is empty.

use std::collections::HashSet;
use std::sync::Arc;

use crate::branch_builder::BranchBuilder;
use crate::error::{Error, Result};
use crate::free_list::{FreeEntry, FreeListPage};
use crate::leaf_builder::LeafBuilder;
use crate::leaf_page::LeafValue;
use crate::meta::{Meta, RootRef};
use crate::node::{Branch, Child, Leaf, Node, SIDE_ID_BASE, is_side};
use crate::overflow::{OverflowRef, write_overflow_chain};
use crate::page_format::{PageId, PageRef, TXN_ID_AT, TxnId, invalid};
use crate::page_size::PageSize;
use crate::pages::Pages;

/// The most pages a file may hold: real page ids stay below the placeholders of side
/// values.
pub const FILE_PAGES_MAX: u64 = SIDE_ID_BASE;

/// The most page bytes a checkpoint holds before handing them to its writer, in one batch
/// of runs of consecutive pages: pages allocated past the old high-water mark come in
/// order, so most of a large checkpoint goes out in long sequential writes, and a batch
/// of many short runs (reused pages) is one submission.
pub(crate) const WRITE_BATCH_MAX: usize = 4 << 20;

/// Where a checkpoint's writes go: a batch of runs of consecutive pages, each its first
/// page and its bytes. An error stops the plan and is what it returns.
pub(crate) type WriteRuns<'w> = dyn FnMut(&[(PageId, &[u8])]) -> Result<()> + 'w;

/// Gathers the pages a checkpoint encodes into runs of consecutive pages and hands them to
/// the writer in batches of at most [`WRITE_BATCH_MAX`] bytes, so that a checkpoint holds
/// one batch in memory at a time rather than every page it writes (hundreds of MiB for a
/// large one). The buffers are reused from batch to batch.
struct Runs<'w> {
    /// The pending pages, run after run.
    bytes: Vec<u8>,
    /// The pending runs: each one's first page and where it starts in `bytes`.
    starts: Vec<(PageId, usize)>,
    write: &'w mut WriteRuns<'w>,
    /// Pages handed over or pending.
    pages: u64,
    /// The writer's first error; once set, pages are dropped and the plan fails with it.
    failed: Option<Error>,
}

impl<'w> Runs<'w> {
    fn new(write: &'w mut WriteRuns<'w>) -> Self {
        Self {
            bytes: Vec::new(),
            starts: Vec::new(),
            write,
            pages: 0,
            failed: None,
        }
    }

    /// Appends page `id` to the last pending run if it continues it, else starts a new
    /// run; writes the pending batch first if the page would not fit in it.
    fn push(&mut self, id: PageId, page: &[u8]) {
        self.pages += 1;
        if self.failed.is_some() {
            return;
        }
        if self.bytes.len() + page.len() > WRITE_BATCH_MAX {
            self.flush();
        }
        let continues = self.starts.last().is_some_and(|&(first, start)| {
            first.0 + ((self.bytes.len() - start) / page.len()) as u64 == id.0
        });
        if !continues {
            self.starts.push((id, self.bytes.len()));
        }
        self.bytes.extend_from_slice(page);
    }

    /// Writes the pending batch, if any.
    fn flush(&mut self) {
        if self.starts.is_empty() || self.failed.is_some() {
            return;
        }
        let ends = self.starts.iter().skip(1).map(|&(_, start)| start);
        let runs: Vec<(PageId, &[u8])> = self
            .starts
            .iter()
            .zip(ends.chain([self.bytes.len()]))
            .map(|(&(first, start), end)| {
                let run = self.bytes.get(start..end).expect("runs lie in the batch");
                (first, run)
            })
            .collect();
        if let Err(error) = (self.write)(&runs) {
            self.failed = Some(error);
        }
        self.bytes.clear();
        self.starts.clear();
    }

    /// Writes the pending batch; the writer's first error, if it returned one.
    fn finish(&mut self) -> Result<()> {
        self.flush();
        self.failed.take().map_or(Ok(()), Err)
    }
}

/// A page the free list holds, and the LSN of the root whose checkpoint freed it: only
/// roots below that LSN reach it (0 for pages listed when the file was opened).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FreeSlot {
    pub(crate) entry: FreeEntry,
    pub(crate) freed_at: u64,
}

/// What the file durably holds: the current meta, the map of its pages, and its free
/// list.
#[derive(Debug)]
pub(crate) struct Durable {
    pub(crate) meta: Meta,
    pub(crate) pages: Arc<Pages>,
    pub(crate) free: Vec<FreeSlot>,
    /// The pages of the free list itself.
    pub(crate) free_list_pages: Vec<PageId>,
}

/// The root a checkpoint writes.
pub(crate) struct Target<'a> {
    pub(crate) root: &'a Child,
    pub(crate) level: u8,
    pub(crate) entries: u64,
    /// The LSN of the root (0 for the empty tree before any batch).
    pub(crate) root_lsn: u64,
    /// The LSN the checkpoint is taken at (the root's or above).
    pub(crate) watermark: u64,
}

/// A planned checkpoint.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Pages written (handed to the plan's writer), the meta page not included.
    pub(crate) pages_written: u64,
    /// Each in-memory node written, with its page.
    pub(crate) written: Vec<(Arc<Node>, PageRef)>,
    /// The meta that commits the checkpoint.
    pub(crate) meta: Meta,
    /// The free list after it.
    pub(crate) free: Vec<FreeSlot>,
    pub(crate) free_list_pages: Vec<PageId>,
    /// Pages the new tree no longer reaches (listed in the new free list).
    pub(crate) freed: u64,
    /// Listed pages the checkpoint wrote.
    pub(crate) reused: u64,
}

/// Plans the checkpoint of `target` as the transaction after `durable`'s meta, handing
/// the pages it encodes to `write` as runs of consecutive pages, in batches of at most
/// [`WRITE_BATCH_MAX`] bytes, as they fill: every one is a page free under the reuse
/// rule or past the high-water mark, which nothing durable or pinned reaches, so a plan
/// that fails part way leaves the durable tree as it was. Pages freed at or below
/// `oldest_pin` may be reused.
///
/// # Errors
/// [`Error::Corruption`] reading a page of the durable tree; [`Error::LimitExceeded`] if
/// the file would pass [`FILE_PAGES_MAX`] pages; `write`'s first error.
pub(crate) fn plan<'w>(
    durable: &Durable,
    target: &Target<'_>,
    oldest_pin: u64,
    write: &'w mut WriteRuns<'w>,
) -> Result<Plan> {
    let pages = &durable.pages;
    let page_size = pages.page_size();
    let Some(next_txn) = durable.meta.txn_id.0.checked_add(1) else {
        let what = "meta txn_id (no transaction after it)";
        return Err(invalid(
            durable.meta.page_id(),
            TXN_ID_AT,
            what,
            durable.meta.txn_id.0,
        ));
    };
    let txn = TxnId(next_txn);

    let mut frontier = Frontier::default();
    frontier.walk(target.root);
    let freed = freed_pages(durable, &frontier)?;
    let listed: HashSet<PageId> = durable.free.iter().map(|s| s.entry.page_id).collect();
    if let Some(&id) = freed.iter().find(|id| listed.contains(id)) {
        let what = "free-list entry (a page the durable tree reaches)";
        return Err(invalid(id, 0, what, id.0));
    }

    let (mut reusable, kept): (Vec<FreeSlot>, Vec<FreeSlot>) = durable
        .free
        .iter()
        .partition(|slot| slot.freed_at <= oldest_pin);
    // A listed page the new tree still shares would be overwritten under it. Only a
    // damaged or forged file lists one; refuse to write rather than destroy the tree.
    if let Some(live) = reusable.iter().find(|slot| {
        frontier.pages.contains(&slot.entry.page_id)
            || frontier.chains.contains(&slot.entry.page_id)
    }) {
        let id = live.entry.page_id;
        let what = "free-list entry (a page the tree still reaches)";
        return Err(invalid(id, 0, what, id.0));
    }
    // Popped from the end: lowest ids first, which keeps the file's tail free.
    reusable.sort_unstable_by_key(|slot| std::cmp::Reverse(slot.entry.page_id));
    let listed_reusable = reusable.len() as u64;
    let mut planner = Planner {
        txn,
        page_size,
        reusable,
        page_count: durable.meta.page_count,
        runs: Runs::new(write),
        written: Vec::new(),
        leaf_builder: LeafBuilder::new(page_size),
        buf: vec![0; page_size.bytes()],
    };
    let empty =
        matches!(target.root, Child::Mem(n) if matches!(&**n, Node::Leaf(l) if l.len() == 0));
    let root = if empty {
        None
    } else {
        Some(RootRef {
            page: planner.write_child(target.root)?,
            level: target.level,
        })
    };

    if planner.runs.pages == 0 && freed.is_empty() {
        // Nothing changed since the durable tree: the new meta only moves the watermark,
        // and keeps the free list where it is.
        let meta = Meta {
            txn_id: txn,
            watermark: Some(target.watermark),
            ..durable.meta
        };
        return Ok(Plan {
            pages_written: 0,
            written: planner.written,
            meta,
            free: durable.free.clone(),
            free_list_pages: durable.free_list_pages.clone(),
            freed: 0,
            reused: 0,
        });
    }
    let freed_count = freed.len() as u64;
    let mut newly: Vec<FreeSlot> = freed
        .into_iter()
        .map(|page_id| FreeSlot {
            entry: FreeEntry {
                freed_txn: txn,
                page_id,
            },
            freed_at: target.root_lsn,
        })
        .collect();
    // Nothing reads the old list's pages but a crash back to the old meta, so any later
    // checkpoint may take them.
    newly.extend(durable.free_list_pages.iter().map(|&page_id| FreeSlot {
        entry: FreeEntry {
            freed_txn: txn,
            page_id,
        },
        freed_at: 0,
    }));
    let capacity = page_size.free_list_capacity();
    let mut list_ids = Vec::new();
    loop {
        let listed = kept.len() + planner.reusable.len() + newly.len();
        if list_ids.len() >= listed.div_ceil(capacity) {
            break;
        }
        list_ids.push(planner.alloc()?);
    }
    let reused = listed_reusable - planner.reusable.len() as u64;
    let mut free = kept;
    free.extend(planner.reusable.iter().copied());
    free.extend(newly);
    free.sort_unstable_by_key(|slot| slot.entry);
    let free_list = planner.write_free_list(&free, &list_ids);

    let meta = Meta {
        page_size,
        txn_id: txn,
        page_count: planner.page_count,
        entry_count: target.entries,
        free_page_count: free.len() as u64,
        watermark: Some(target.watermark),
        root,
        free_list,
    };
    planner.runs.finish()?;
    Ok(Plan {
        pages_written: planner.runs.pages,
        written: planner.written,
        meta,
        free,
        free_list_pages: list_ids,
        freed: freed_count,
        reused,
    })
}

/// The pages and chains a new root shares with the file.
#[derive(Default)]
struct Frontier {
    pages: HashSet<PageId>,
    chains: HashSet<PageId>,
}

impl Frontier {
    fn walk(&mut self, root: &Child) {
        let mut stack = vec![root];
        while let Some(child) = stack.pop() {
            if let Some(page) = child.page() {
                self.pages.insert(page.id);
                continue;
            }
            let Child::Mem(node) = child else {
                unreachable!("a child without a page is in memory")
            };
            match &**node {
                Node::Branch(b) => stack.extend(b.children.iter()),
                Node::Leaf(leaf) => {
                    if !leaf.has_overflow() {
                        continue;
                    }
                    for entry in leaf.page().entries() {
                        let entry = entry.expect("an in-memory leaf is well formed");
                        if let LeafValue::Overflow(r) = entry.value
                            && !is_side(r)
                        {
                            self.chains.insert(r.first.id);
                        }
                    }
                }
            }
        }
    }
}

/// The pages of the durable tree that the new tree, whose frontier is `frontier`, does
/// not reach.
fn freed_pages(durable: &Durable, frontier: &Frontier) -> Result<Vec<PageId>> {
    let pages = &durable.pages;
    let Some(root) = durable.meta.root else {
        return Ok(Vec::new());
    };
    let mut freed = Vec::new();
    // Levels strictly decrease down the walk, so it ends.
    let mut stack = vec![(root.page, root.level)];
    while let Some((page, level)) = stack.pop() {
        if frontier.pages.contains(&page.id) {
            continue;
        }
        freed.push(page.id);
        if level > 0 {
            // The old tree's pages are verified here without their bounds (and so not
            // marked): nothing read here reaches a reader.
            let branch = pages.branch(page, level, None)?;
            for index in 0..branch.child_count() {
                stack.push((branch.child(index)?, level - 1));
            }
            continue;
        }
        let leaf = pages.leaf(page, None)?;
        if !leaf.has_overflow()? {
            continue;
        }
        for entry in leaf.entries() {
            if let LeafValue::Overflow(chain) = entry?.value
                && !frontier.chains.contains(&chain.first.id)
            {
                freed.extend(pages.chain_ids(chain)?);
            }
        }
    }
    Ok(freed)
}

/// Allocates and encodes the pages of one checkpoint.
struct Planner<'w> {
    txn: TxnId,
    page_size: PageSize,
    /// Reusable listed pages, highest id first (taken from the end).
    reusable: Vec<FreeSlot>,
    page_count: u64,
    runs: Runs<'w>,
    written: Vec<(Arc<Node>, PageRef)>,
    leaf_builder: LeafBuilder,
    buf: Vec<u8>,
}

impl Planner<'_> {
    /// A free page: the lowest reusable listed one, or the next past the high-water mark.
    fn alloc(&mut self) -> Result<PageId> {
        if let Some(slot) = self.reusable.pop() {
            return Ok(slot.entry.page_id);
        }
        if self.page_count >= FILE_PAGES_MAX {
            return Err(Error::LimitExceeded {
                limit: "file pages",
                found: self.page_count + 1,
                max: FILE_PAGES_MAX,
            });
        }
        let id = PageId(self.page_count);
        self.page_count += 1;
        Ok(id)
    }

    /// Writes `child` and every in-memory node below it; returns its page.
    fn write_child(&mut self, child: &Child) -> Result<PageRef> {
        if let Some(page) = child.page() {
            return Ok(page);
        }
        let Child::Mem(node) = child else {
            unreachable!("a child without a page is in memory")
        };
        let page = match &**node {
            Node::Leaf(leaf) => self.write_leaf(leaf)?,
            Node::Branch(branch) => self.write_branch(branch)?,
        };
        self.written.push((Arc::clone(node), page));
        Ok(page)
    }

    fn write_leaf(&mut self, leaf: &Leaf) -> Result<PageRef> {
        let mut chains: Vec<OverflowRef> = Vec::with_capacity(leaf.side().len());
        for value in leaf.side() {
            let size = u32::try_from(value.len()).expect("values are below VALUE_SIZE_MAX");
            let count = self.page_size.overflow_page_count(size);
            let ids = (0..count)
                .map(|_| self.alloc())
                .collect::<Result<Vec<_>>>()?;
            let runs = &mut self.runs;
            chains.push(write_overflow_chain(
                self.txn,
                value,
                &ids,
                &mut self.buf,
                |id, bytes| runs.push(id, bytes),
            ));
        }
        let id = self.alloc()?;
        if chains.is_empty() {
            // No side value to name by its chain: the image is the page but for its header.
            let bytes = self
                .leaf_builder
                .finish_copy(&leaf.page(), leaf.kinds(), id, self.txn);
            return Ok(emit(&mut self.runs, id, bytes));
        }
        self.leaf_builder.reset();
        for entry in leaf.page().entries() {
            let mut entry = entry.expect("an in-memory leaf is well formed");
            if let LeafValue::Overflow(r) = entry.value
                && is_side(r)
            {
                let index = usize::try_from(r.first.id.0 - SIDE_ID_BASE).expect("small");
                entry.value = LeafValue::Overflow(*chains.get(index).expect("one per side value"));
            }
            self.leaf_builder.push(&entry);
        }
        let bytes = self.leaf_builder.finish(id, self.txn);
        Ok(emit(&mut self.runs, id, bytes))
    }

    fn write_branch(&mut self, branch: &Branch) -> Result<PageRef> {
        let children = branch
            .children
            .iter()
            .map(|child| self.write_child(child))
            .collect::<Result<Vec<_>>>()?;
        let (&leftmost, rest) = children.split_first().expect("a branch has children");
        let mut builder = BranchBuilder::new(self.page_size, branch.level, leftmost);
        for (separator, &child) in branch.separators.iter().zip(rest) {
            builder.push(separator, child);
        }
        let id = self.alloc()?;
        let bytes = builder.finish(id, self.txn);
        Ok(emit(&mut self.runs, id, bytes))
    }

    /// Encodes the free list `free` (sorted) on pages `ids`, entries spread evenly;
    /// returns the first page's reference.
    fn write_free_list(&mut self, free: &[FreeSlot], ids: &[PageId]) -> Option<PageRef> {
        let pages = ids.len();
        assert!(free.len() >= pages, "every free-list page lists an entry");
        let entries: Vec<FreeEntry> = free.iter().map(|slot| slot.entry).collect();
        let (base, extra) = (entries.len() / pages.max(1), entries.len() % pages.max(1));
        let mut chunks = Vec::with_capacity(pages);
        let mut rest = entries.as_slice();
        for index in 0..pages {
            let (chunk, after) = rest.split_at(base + usize::from(index < extra));
            chunks.push(chunk);
            rest = after;
        }
        let mut next = None;
        for (&id, chunk) in ids.iter().zip(chunks).rev() {
            let checksum = FreeListPage::encode(&mut self.buf, id, self.txn, chunk, next);
            self.runs.push(id, &self.buf);
            next = Some(PageRef { id, checksum });
        }
        next
    }
}

/// Queues sealed page `id` for writing; returns its reference.
fn emit(runs: &mut Runs<'_>, id: PageId, bytes: &[u8]) -> PageRef {
    let checksum = stored_checksum(bytes);
    runs.push(id, bytes);
    PageRef { id, checksum }
}

/// The checksum a sealed page holds in its first four bytes.
fn stored_checksum(page: &[u8]) -> u32 {
    let bytes = page
        .first_chunk::<4>()
        .expect("a page is longer than 4 bytes");
    u32::from_le_bytes(*bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(id: u64) -> Vec<u8> {
        let mut bytes = vec![0; 4096];
        bytes[..8].copy_from_slice(&id.to_le_bytes());
        bytes
    }

    /// A batch as its writer saw it: each run as its first page and the ids its pages hold.
    type Batch = Vec<(u64, Vec<u64>)>;

    /// Pushes `ids` through `Runs` and returns the batches its writer saw.
    fn batches(ids: &[u64], fail_at: Option<usize>) -> (Vec<Batch>, Result<()>) {
        let mut seen: Vec<Batch> = Vec::new();
        let mut write = |runs: &[(PageId, &[u8])]| {
            if fail_at == Some(seen.len()) {
                return Err(Error::InvalidOptions("a failed write"));
            }
            seen.push(
                runs.iter()
                    .map(|&(first, bytes)| {
                        let held = bytes
                            .chunks_exact(4096)
                            .map(|p| u64::from_le_bytes(p[..8].try_into().expect("8 bytes")))
                            .collect();
                        (first.0, held)
                    })
                    .collect(),
            );
            Ok(())
        };
        let result = {
            let mut runs = Runs::new(&mut write);
            for &id in ids {
                runs.push(PageId(id), &page(id));
            }
            let result = runs.finish();
            assert_eq!(runs.pages, ids.len() as u64, "every page counted");
            result
        };
        (seen, result)
    }

    #[test]
    fn runs_consecutive_pages_join_one_run() {
        let (seen, result) = batches(&[5, 6, 7, 9, 10, 3], None);
        result.expect("no write failed");
        assert_eq!(
            seen,
            vec![vec![(5, vec![5, 6, 7]), (9, vec![9, 10]), (3, vec![3]),]]
        );
    }

    #[test]
    fn runs_full_batch_is_written_before_the_next_page() {
        let per_batch = (WRITE_BATCH_MAX / 4096) as u64;
        let ids: Vec<u64> = (100..100 + per_batch + 2).collect();
        let (seen, result) = batches(&ids, None);
        result.expect("no write failed");
        assert_eq!(seen.len(), 2, "two batches");
        assert_eq!(seen[0], vec![(100, (100..100 + per_batch).collect())]);
        assert_eq!(
            seen[1],
            vec![(100 + per_batch, vec![100 + per_batch, 101 + per_batch])]
        );
    }

    #[test]
    fn runs_writer_error_is_returned_and_later_pages_dropped() {
        let per_batch = (WRITE_BATCH_MAX / 4096) as u64;
        let ids: Vec<u64> = (0..3 * per_batch).collect();
        let (seen, result) = batches(&ids, Some(1));
        assert!(
            matches!(result, Err(Error::InvalidOptions("a failed write"))),
            "{result:?}"
        );
        assert_eq!(seen.len(), 1, "nothing written after the failed batch");
    }
}
