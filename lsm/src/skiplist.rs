//! The memtable's skip list: one writer, lock-free readers, nodes in a bump arena.
//!
//! As in LevelDB and RocksDB, every node (its tower of next pointers, a back pointer, the
//! encoded internal key and the value) is one allocation carved from arena blocks that live
//! until the list is dropped. Nothing is freed while the list lives, so a reader needs no
//! reference counts or epochs: a node reached once stays valid for as long as the list is
//! borrowed. The memtable is the only user; it serializes applies on [`SkipList::writer`].
//!
//! Node layout (8-byte aligned, in one arena allocation), as in RocksDB's inline skip list:
//! `height` next pointers (`AtomicPtr`, the highest level first, level 0 last) | `prev:
//! AtomicPtr` | `meta: u64` (height, user key length, value length) | `hash_next: AtomicPtr` |
//! key bytes (user key, then the 8-byte trailer) | value bytes, then padding to 8. A node
//! pointer names the header, so the tower lies at fixed offsets below it and the key at a
//! fixed offset above it: a descent step finds both without reading the node's height.
//!
//! Beside the levels, a fixed array of hash buckets indexes the newest version of every user
//! key: each bucket heads a chain (through `hash_next`) holding one node per user key that
//! hashes there. A point read finds its key's newest version there in about one step instead
//! of a descent through the levels (a comparison per step, most of them cache misses), then
//! walks level 0 to older versions if the newest is too new for its view. An insert finds
//! there whether its user key is present: a new version of a present key sorts right before
//! the newest one (versions of a key are inserted in ascending LSN order), so a node that
//! gets a tower of one level (three in four) links behind that version's back pointer
//! without a descent, and a taller one (short towers mostly) finds its predecessors walking
//! back from there along level 0. The writer replaces the older version in its chain by the
//! new one (the new node takes over its chain successor first), so a reader on either side
//! of the swap walks a valid chain.
//!
//! Invariants the `unsafe` below relies on:
//! 1. Every non-null pointer stored in a tower, in a `prev` or `hash_next` field, in the head
//!    or in a bucket points to a node of this list whose bytes were all written before the
//!    pointer was stored with `Release`; readers load pointers with `Acquire`, so they see
//!    fully written nodes.
//! 2. A node's non-atomic bytes (`meta`, key, value) are written once, before the node is
//!    published, and never again; afterwards only its atomics change, so shared references to
//!    them never alias a write.
//! 3. Arena blocks are freed only when the list is dropped, and [`Entry`] borrows the list,
//!    so an entry's node outlives the entry.
//! 4. Only the holder of the writer lock allocates or links nodes, so links are never raced
//!    by another writer; readers only load.
//! 5. Pointers into a block are derived from the block's own allocation (never through a
//!    reference to a smaller type), so they may address the whole node: the tower below the
//!    header as well as the key and value above it.
//!
//! Ordering: keys ascend in internal-key order (user key ascending, trailer descending). The
//! back pointer of a node is its level-0 predecessor, or a node inserted after it and before
//! the node (the writer links forwards first, then fixes the successor's back pointer), so a
//! backward walk visits keys in strictly descending order and misses only a node still being
//! inserted.

#![expect(
    unsafe_code,
    reason = "an arena skip list hands out references into raw arena blocks; see lsm/UNSAFE.md"
)]
#![deny(
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use std::alloc::Layout;
use std::cmp::Ordering;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering as Mem};
use std::sync::{Mutex, MutexGuard};

use crate::internal_key::compare_user_keys;

/// The tallest tower. With a branching factor of 4, twelve levels index 4^12 (16M) entries
/// at the expected cost, well past a memtable's size.
pub(crate) const MAX_HEIGHT: usize = 12;
/// One in `BRANCHING` nodes of a level also appears on the level above: a power of two, so
/// that a tower's height is read off the zero bits of one random word.
const BRANCHING: u64 = 4;
const BRANCHING_BITS: u32 = BRANCHING.trailing_zeros();
/// The first block is small, so that the many tiny memtables of tests cost little; each next
/// block doubles up to `BLOCK_MAX`, which is a huge page (see [`Block::Mapped`]).
const BLOCK_FIRST: usize = 16 * 1024;
const BLOCK_MAX: usize = crate::prefault::HUGE_PAGE;
/// A node above this size gets a block of its own, so it does not waste a block's tail.
const LARGE_NODE: usize = BLOCK_MAX / 4;
/// Blocks of this size and up are allocated one ahead and faulted in on another thread (see
/// [`Arena`]); the small first blocks of the many tiny memtables of tests are not.
const PREFAULT_MIN: usize = 256 * 1024;
const ALIGN: usize = 8;
/// Cache lines of the arena fetched ahead for the next node (see `prefetch_for_write`):
/// enough for a node with a 100-byte value.
#[cfg(target_arch = "x86_64")]
const NEXT_NODE_LINES: usize = 4;
/// The most nodes an insert walks back from its key's newest version to find its tower's
/// predecessors (see `SkipList::preds_before`): enough for most towers of two levels (3 in
/// 16 towers; 99% of them find theirs within 16 steps), while a descent of a
/// large memtable compares about 30 nodes.
const WALK_BACK_MAX: usize = 16;
/// Bytes between the tower and the key: the back pointer, the packed lengths and the hash
/// chain link.
const HEADER_BYTES: usize = size_of::<Node>();
/// Hash buckets per byte of the memtable budget: one per 128 bytes keeps chains below one
/// node on average for entries of about 100 bytes and more (smaller entries share buckets).
const BYTES_PER_BUCKET: usize = 128;
/// Bucket counts are powers of two within these bounds.
const BUCKETS_MIN: usize = 1 << 6;
const BUCKETS_MAX: usize = 1 << 22;
/// The trailer (`lsn << 8 | kind`) ending every encoded internal key.
pub(crate) const TRAILER_BYTES: usize = 8;
/// User key lengths are packed in 24 bits (the tree caps keys far lower).
pub(crate) const KEY_LEN_MAX: usize = (1 << 24) - 1;
/// Values lengths are packed in 32 bits (the tree caps values far lower).
pub(crate) const VALUE_LEN_MAX: usize = u32::MAX as usize;

const _: () = assert!(HEADER_BYTES == 24 && size_of::<AtomicPtr<Node>>() == 8);
const _: () = assert!(align_of::<Node>() <= ALIGN && MAX_HEIGHT < 256);
const _: () = assert!(BLOCK_FIRST.is_multiple_of(ALIGN) && BLOCK_MAX.is_multiple_of(ALIGN));
const _: () = assert!(BRANCHING.is_power_of_two() && BRANCHING > 1);

/// A node's fixed header; the tower precedes it and the key and value follow it, in the same
/// allocation.
#[repr(C)]
struct Node {
    /// The level-0 predecessor (see the module's ordering note); null for the first node.
    prev: AtomicPtr<Node>,
    /// Height (8 bits) | user key length << 8 (24 bits) | value length << 32. The user key's
    /// length, not the encoded key's: slicing either needs no subtraction (and no overflow
    /// check on a descent step).
    meta: u64,
    /// The next node of this node's hash chain (null: the end). Only a key's newest version
    /// is in a chain; an older one keeps the link it had, which still leads along a chain.
    hash_next: AtomicPtr<Node>,
}

/// `count` null bucket heads, from zeroed memory: the allocator hands a large zeroed
/// request fresh pages, so a memtable's bucket array (4 MiB for the default 64 MiB budget)
/// takes resident memory only as its buckets are used, and a table that writes little (or a
/// test's tiny memtable) does not pay for all of it up front.
fn zeroed_buckets(count: usize) -> Box<[AtomicPtr<Node>]> {
    let zeroed = Box::<[AtomicPtr<Node>]>::new_zeroed_slice(count);
    // SAFETY: an `AtomicPtr` has the layout of a raw pointer, and all-zero bytes are the
    // null pointer, a valid value: every element is initialized.
    unsafe { zeroed.assume_init() }
}

/// The bytes a node of `height` with these lengths takes in the arena (`key_len` counts the
/// trailer).
fn node_bytes(height: usize, key_len: usize, value_len: usize) -> usize {
    (HEADER_BYTES + height * size_of::<AtomicPtr<Node>>() + key_len + value_len)
        .next_multiple_of(ALIGN)
}

/// Where slot `level` of `node`'s tower lies: the tower ends right before the header, level
/// 0 last. Only computes the address; valid to use for `level` below the node's height.
#[inline(always)]
#[expect(
    clippy::inline_always,
    reason = "a call per step of a descent costs as much as the comparison (callgrind)"
)]
fn tower_slot(node: NonNull<Node>, level: usize) -> *mut AtomicPtr<Node> {
    node.as_ptr()
        .cast::<AtomicPtr<Node>>()
        .wrapping_sub(level + 1)
}

/// Asks the CPU to bring the cache lines of the arena's next node into its cache without
/// waiting: a hint, which never faults, even past a block's end. `exclusive` (the CPU has
/// `prefetchw`, see [`has_prefetchw`]) fetches them owned for writing, as a store would.
///
/// The node written now goes to memory populated on another core, and its stores wait for
/// those lines to arrive; the writer's next locked instruction (the list's unlock, at the
/// latest) then waits for every one of them. Fetched a node ahead, the lines are here when
/// the next insert writes them.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[expect(
    clippy::inline_always,
    reason = "a few instructions per insert, on the writer's hot path"
)]
fn prefetch_for_write(at: *const u8, exclusive: bool) {
    for line in 0..NEXT_NODE_LINES {
        let line = at.wrapping_add(line * 64);
        if exclusive {
            // SAFETY: `prefetchw` (which the CPU has: `exclusive`) reads and writes nothing
            // a program can see and does not fault on any address.
            unsafe {
                std::arch::asm!(
                    "prefetchw byte ptr [{0}]",
                    in(reg) line,
                    options(nostack, readonly, preserves_flags)
                );
            }
        } else {
            // SAFETY: a read prefetch, likewise without effect and never faulting.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.cast());
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn prefetch_for_write(_at: *const u8, _exclusive: bool) {}

/// Whether the CPU has `prefetchw` (CPUID 0x8000_0001, ECX bit 8), asked once. The
/// compiler emits it for a write-hinted prefetch only where the build targets it, and the
/// default x86-64 target does not: it emitted `prefetcht0`, which fetches a line shared, so
/// the store still asks for ownership. Measured on the server (no-sync SETs at pipeline
/// 16, 8 interleaved rounds): the writer thread's CPU 270 ms with `prefetchw` against 330
/// with `prefetcht0`.
#[cfg(target_arch = "x86_64")]
fn has_prefetchw() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        use std::arch::x86_64::__cpuid;
        __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 8) != 0
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn has_prefetchw() -> bool {
    false
}

/// The bump allocator. Owns its blocks; they are freed when it drops, with the list.
///
/// Once blocks are `PREFAULT_MIN` bytes or more, the arena keeps the next block allocated
/// ahead and has it faulted in on another thread ([`crate::prefault`]): the kernel zeroes
/// each fresh page at its first write, and on the applying thread that was about a tenth of
/// its time under a server's write load. A list holds at most one such block unused, and
/// rarely a second: one too small for the node that came to need a block (a node of 256-512
/// KiB) stays in `blocks` unused.
struct Arena {
    blocks: Vec<Block>,
    /// The block being filled, its used bytes and size; `None` before the first node.
    current: Option<NonNull<u8>>,
    offset: usize,
    capacity: usize,
    next_block: usize,
    /// The next block, allocated ahead and being faulted in (also in `blocks`).
    ahead: Option<(NonNull<u8>, usize)>,
    /// [`has_prefetchw`], asked once per list rather than once per node.
    prefetchw: bool,
}

// SAFETY: the arena owns its blocks outright (like a `Vec<Box<[u8]>>`); moving it to another
// thread moves that ownership. It is only reached through the list's writer mutex.
unsafe impl Send for Arena {}

impl Arena {
    fn new() -> Self {
        Self {
            blocks: Vec::new(),
            current: None,
            offset: 0,
            capacity: 0,
            next_block: BLOCK_FIRST,
            ahead: None,
            prefetchw: has_prefetchw(),
        }
    }

    /// `size` fresh bytes (a multiple of `ALIGN`), aligned to `ALIGN`, that nothing else
    /// points to, valid until the arena drops. Blocks it allocates are added to `allocated`.
    fn alloc(&mut self, size: usize, allocated: &AtomicUsize) -> NonNull<u8> {
        debug_assert!(size.is_multiple_of(ALIGN));
        if size > LARGE_NODE {
            return self.new_block(size, allocated);
        }
        if self.current.is_none() || self.capacity - self.offset < size {
            // A node between the first block's size and `LARGE_NODE` can outgrow the block
            // whose turn it is: the block grows to hold it, or the node would overrun it.
            let capacity = self.next_block.max(size);
            self.next_block = (self.next_block * 2).min(BLOCK_MAX);
            let block = match self.ahead.take() {
                Some((block, ahead)) if ahead >= capacity => block,
                // Too small for this node: stays in `blocks`, unused, until the list drops.
                Some(_) | None => self.new_block(capacity, allocated),
            };
            if self.next_block >= PREFAULT_MIN {
                let ahead = self.new_block(self.next_block, allocated);
                crate::prefault::populate_later(ahead.as_ptr(), self.next_block);
                self.ahead = Some((ahead, self.next_block));
            }
            self.current = Some(block);
            self.offset = 0;
            self.capacity = capacity;
        }
        let block = self.current.expect("a block was just ensured");
        let at = block.as_ptr().wrapping_add(self.offset);
        self.offset += size;
        prefetch_for_write(at.wrapping_add(size), self.prefetchw);
        NonNull::new(at).expect("an offset into a live block is not null")
    }

    /// A fresh block of `size` bytes, counted in `allocated`.
    fn new_block(&mut self, size: usize, allocated: &AtomicUsize) -> NonNull<u8> {
        if size == BLOCK_MAX
            && let Some(block) = crate::prefault::map_huge()
        {
            self.blocks.push(Block::Mapped(block));
            add(allocated, BLOCK_MAX);
            return block;
        }
        let layout = Layout::from_size_align(size, ALIGN).expect("block sizes are small");
        // SAFETY: `layout` has a non-zero size (every node holds its header).
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(block) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        self.blocks.push(Block::Heap(block, layout));
        add(allocated, size);
        block
    }

    /// Bytes of blocks held, used or not.
    #[cfg(test)]
    fn allocated(&self) -> usize {
        self.blocks.iter().map(Block::size).sum()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for block in self.blocks.drain(..) {
            match block {
                // SAFETY: `block` came from `alloc(layout)` in `new_block` and is freed
                // once, here; the list that held pointers into it is being dropped
                // (invariant 3).
                Block::Heap(block, layout) => unsafe {
                    std::alloc::dealloc(block.as_ptr(), layout);
                },
                // SAFETY: as above, for a block of `map_huge`.
                Block::Mapped(block) => unsafe { crate::prefault::unmap_huge(block) },
            }
        }
    }
}

/// Adds `bytes` to the list's count of arena bytes: a load and a store, as for its other
/// counts, since only the writer changes it.
fn add(allocated: &AtomicUsize, bytes: usize) {
    allocated.store(allocated.load(Mem::Relaxed) + bytes, Mem::Relaxed);
}

/// An arena block and where it came from.
enum Block {
    /// From the global allocator, with its layout.
    Heap(NonNull<u8>, Layout),
    /// A full-size block (`BLOCK_MAX`), mapped on its own huge page by
    /// [`crate::prefault::map_huge`]: the TLB then covers a large memtable, and
    /// [`crate::prefault::populate_later`] faults the page in before the writer first
    /// writes to it (the global allocator's bookkeeping write would fault it in on the
    /// writer's thread at once).
    Mapped(NonNull<u8>),
}

#[cfg(test)]
impl Block {
    fn start(&self) -> NonNull<u8> {
        match self {
            Block::Heap(start, _) | Block::Mapped(start) => *start,
        }
    }

    fn size(&self) -> usize {
        match self {
            Block::Heap(_, layout) => layout.size(),
            Block::Mapped(_) => BLOCK_MAX,
        }
    }
}

/// What only the writer touches: the arena and the height generator.
struct WriterState {
    arena: Arena,
    rng: u64,
}

/// A sorted, append-only list of (encoded internal key, value) nodes.
pub(crate) struct SkipList {
    /// The head's tower: the first node of each level.
    head: [AtomicPtr<Node>; MAX_HEIGHT],
    /// The tallest tower so far (at least 1). Read relaxed: a reader that sees a stale height
    /// starts lower, and one that sees a new height finds a null or fully linked head.
    height: AtomicUsize,
    len: AtomicUsize,
    /// Arena bytes handed to nodes.
    bytes: AtomicUsize,
    /// Bytes of the arena's blocks, used or not (added to as each block is allocated).
    allocated: AtomicUsize,
    writer: Mutex<WriterState>,
    /// Heads of the hash chains (see the module's notes); a power of two of them.
    buckets: Box<[AtomicPtr<Node>]>,
}

/// One node of a list, borrowed from the list: its key and value live as long as `'a`.
#[derive(Clone, Copy)]
pub(crate) struct Entry<'a> {
    node: NonNull<Node>,
    _list: PhantomData<&'a SkipList>,
}

// SAFETY: an entry is a shared reference to an immutable node (plus atomics) of a list that
// is `Sync`; sending or sharing it is sending or sharing `&SkipList`.
unsafe impl Send for Entry<'_> {}
// SAFETY: as above.
unsafe impl Sync for Entry<'_> {}

/// Holds the writer lock; inserts go through it.
pub(crate) struct Writer<'a> {
    list: &'a SkipList,
    state: MutexGuard<'a, WriterState>,
}

impl SkipList {
    /// A list sized for about `budget` bytes of nodes: the number of hash buckets follows
    /// from it (more nodes are fine; their chains grow longer).
    pub(crate) fn with_budget(budget: usize) -> Self {
        let buckets = (budget / BYTES_PER_BUCKET)
            .clamp(BUCKETS_MIN, BUCKETS_MAX)
            .next_power_of_two();
        Self {
            buckets: zeroed_buckets(buckets),
            head: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            height: AtomicUsize::new(1),
            len: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            allocated: AtomicUsize::new(0),
            writer: Mutex::new(WriterState {
                arena: Arena::new(),
                rng: 0x9E37_79B9_7F4A_7C15,
            }),
        }
    }

    /// The bucket `user_key` hashes to.
    fn bucket(&self, user_key: &[u8]) -> &AtomicPtr<Node> {
        // The low bits pick the bucket: xxh3 mixes every input bit into them.
        let at = xxhash_rust::xxh3::xxh3_64(user_key) as usize & (self.buckets.len() - 1);
        &self.buckets[at]
    }

    /// The newest version of `user_key`, and the chain link that points to it; or `None`
    /// and the bucket's head link. `Acquire` loads: readers call it too.
    fn find_newest<'a>(&'a self, user_key: &[u8]) -> (Option<Entry<'a>>, &'a AtomicPtr<Node>) {
        let mut link = self.bucket(user_key);
        loop {
            match self.entry(link.load(Mem::Acquire)) {
                None => return (None, link),
                Some(e) if e.user_key() == user_key => return (Some(e), link),
                Some(e) => link = &e.header().hash_next,
            }
        }
    }

    /// The newest version of `user_key`: the first node of its versions (in list order,
    /// newest first), from the hash index.
    pub(crate) fn newest(&self, user_key: &[u8]) -> Option<Entry<'_>> {
        self.find_newest(user_key).0
    }

    /// A list sized for the default memtable of tests and tools (4 MiB).
    pub(crate) fn new() -> Self {
        Self::with_budget(4 << 20)
    }

    /// Takes the writer lock.
    ///
    /// # Panics
    /// If an insert panicked while holding it: the list may then hold part of a batch.
    pub(crate) fn writer(&self) -> Writer<'_> {
        Writer {
            list: self,
            state: self
                .writer
                .lock()
                .expect("a panicking apply already broke the memtable"),
        }
    }

    /// The number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Mem::Relaxed)
    }

    /// Arena bytes taken by nodes (headers, towers, keys, values, alignment).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Mem::Relaxed)
    }

    /// Arena bytes allocated: the nodes' bytes, the unused tails of blocks and the block
    /// allocated ahead.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.allocated.load(Mem::Relaxed)
    }

    /// The first node.
    pub(crate) fn first(&self) -> Option<Entry<'_>> {
        self.entry(self.head[0].load(Mem::Acquire))
    }

    /// The last node.
    pub(crate) fn last(&self) -> Option<Entry<'_>> {
        self.descend(|_| true, None).0
    }

    /// The first node for which `before` is false. `before` must be monotone: true for a
    /// prefix of the list (keys below some target), false after.
    pub(crate) fn lower_bound(&self, before: impl FnMut(Entry<'_>) -> bool) -> Option<Entry<'_>> {
        self.descend(before, None).1
    }

    /// The last node for which `before` is true (monotone, as for `lower_bound`).
    pub(crate) fn last_before(&self, before: impl FnMut(Entry<'_>) -> bool) -> Option<Entry<'_>> {
        self.descend(before, None).0
    }

    /// Every node, in order.
    pub(crate) fn iter(&self) -> Iter<'_> {
        Iter { at: self.first() }
    }

    /// Walks down from the top level, moving right while `before` holds. Returns the last
    /// node where it held and the first where it did not (both at level 0), and fills
    /// `preds` with the last node where it held on each level (null: the head).
    fn descend<'a>(
        &'a self,
        mut before: impl FnMut(Entry<'a>) -> bool,
        mut preds: Option<&mut [*mut Node; MAX_HEIGHT]>,
    ) -> (Option<Entry<'a>>, Option<Entry<'a>>) {
        let mut pred: Option<Entry<'a>> = None;
        let mut level = self.height.load(Mem::Relaxed) - 1;
        // The node last found not `before`: on the level below it is met again, and need not
        // be compared again.
        let mut stop: *mut Node = ptr::null_mut();
        loop {
            let mut next_ptr = match pred {
                // SAFETY: `pred` was reached through a link of `level` or above (steps go
                // right on the current level, and levels only go down), so its tower reaches
                // `level`.
                Some(p) => unsafe { p.tower_unchecked(level) }.load(Mem::Acquire),
                None => self.head[level].load(Mem::Acquire),
            };
            // Steps right on this level, in a loop of their own: a step then costs a load,
            // two tests and a comparison, without the level's bookkeeping.
            while next_ptr != stop
                && let Some(next) = self.entry(next_ptr)
                && before(next)
            {
                pred = Some(next);
                // SAFETY: `next` was reached through a link of `level`, so its tower reaches
                // `level`.
                next_ptr = unsafe { next.tower_unchecked(level) }.load(Mem::Acquire);
            }
            stop = next_ptr;
            if let Some(preds) = preds.as_deref_mut() {
                preds[level] = pred.map_or(ptr::null_mut(), |p| p.node.as_ptr());
            }
            if level == 0 {
                return (pred, self.entry(next_ptr));
            }
            level -= 1;
        }
    }

    /// Fills `preds[..levels]` with the predecessors on each level of a node about to be
    /// linked right before `at`, walking back from `at` along level 0: a level's predecessor
    /// is the first node met whose tower reaches it. The walk meets a node of height above
    /// `level` once per `BRANCHING^level` steps on average, so it gives up after
    /// `WALK_BACK_MAX` steps (false: the caller descends instead). Writer only: under the
    /// writer lock every back pointer names its node's predecessor exactly.
    fn preds_before(
        &self,
        at: Entry<'_>,
        levels: usize,
        preds: &mut [*mut Node; MAX_HEIGHT],
    ) -> bool {
        let mut filled = 0;
        let mut node = at.header().prev.load(Mem::Relaxed);
        for _ in 0..WALK_BACK_MAX {
            let Some(p) = self.entry(node) else {
                // The head precedes every node on every level (`preds` is null-filled).
                return true;
            };
            let reach = p.height().min(levels);
            while filled < reach {
                preds[filled] = node;
                filled += 1;
            }
            if filled == levels {
                return true;
            }
            node = p.header().prev.load(Mem::Relaxed);
        }
        false
    }

    /// The entry for a pointer loaded from this list (null: none), borrowing the list.
    #[expect(
        clippy::unused_self,
        reason = "the borrow of the list bounds the entry's life"
    )]
    fn entry(&self, node: *mut Node) -> Option<Entry<'_>> {
        Entry::from_ptr(node)
    }

    /// The next-pointer slot of level `level` after `pred` (null: the head).
    fn slot(&self, pred: *mut Node, level: usize) -> &AtomicPtr<Node> {
        match self.entry(pred) {
            Some(p) => p.tower(level),
            None => &self.head[level],
        }
    }

    /// Checks the structure: every level sorted and a sublist of the level below, and each
    /// node's back pointer naming its predecessor. O(n · height): for tests. Call while no
    /// insert is in progress.
    ///
    /// # Panics
    /// If the structure is broken.
    pub(crate) fn check_structure(&self) {
        let height = self.height.load(Mem::Relaxed);
        let mut count = 0;
        let mut bytes = 0;
        let mut prev: Option<Entry<'_>> = None;
        for e in self.iter() {
            assert_eq!(
                e.prev().map(|p| p.node),
                prev.map(|p| p.node),
                "back pointer"
            );
            assert!(e.height() <= height, "tower above the list's height");
            if let Some(p) = prev {
                assert!(p.cmp_key(e.user_key(), e.trailer()) == Ordering::Less);
            }
            count += 1;
            bytes += e.footprint();
            prev = Some(e);
        }
        assert_eq!(count, self.len(), "len disagrees with the nodes");
        assert_eq!(bytes, self.bytes(), "byte count disagrees with the nodes");
        // The hash index: each chain holds only keys of its bucket, each the newest version
        // of its user key, and together one node per user key.
        let mut chained = 0;
        for head in &self.buckets {
            let mut node = self.entry(head.load(Mem::Acquire));
            while let Some(e) = node {
                assert!(
                    ptr::eq(self.bucket(e.user_key()), head),
                    "a node chained in the wrong bucket"
                );
                assert!(
                    e.prev().is_none_or(|p| p.user_key() != e.user_key()),
                    "a chained node is not its key's newest version"
                );
                chained += 1;
                node = self.entry(e.header().hash_next.load(Mem::Acquire));
            }
        }
        let keys = self
            .iter()
            .filter(|e| e.prev().is_none_or(|p| p.user_key() != e.user_key()))
            .count();
        assert_eq!(chained, keys, "the hash chains hold one node per user key");
        for level in 1..MAX_HEIGHT {
            // Each node of this level must be met, in order, walking the level below.
            let mut below = self.entry(self.head[level - 1].load(Mem::Acquire));
            let mut at = self.entry(self.head[level].load(Mem::Acquire));
            if level >= height {
                assert!(at.is_none(), "a level above the height is linked");
            }
            let mut linked = 0;
            while let Some(node) = at {
                linked += 1;
                assert!(node.height() > level, "node linked above its height");
                while below.is_some_and(|b| b.node != node.node) {
                    below = below.and_then(|b| self.entry(b.next_ptr(level - 1)));
                }
                assert!(below.is_some(), "level {level} is not a sublist");
                at = self.entry(node.next_ptr(level));
            }
            // A tower linked behind the wrong predecessor would cut nodes out of a level.
            let tall = self.iter().filter(|e| e.height() > level).count();
            assert_eq!(
                linked, tall,
                "level {level} misses nodes whose towers reach it"
            );
        }
    }
}

impl Default for SkipList {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer<'_> {
    /// Inserts `user_key` with `trailer` and `value`. The pair (user key, trailer) must not
    /// be in the list already. Tests insert any trailers; the memtable writes through
    /// [`Writer::insert_first_at_lsn`].
    ///
    /// # Panics
    /// If the key or value exceeds [`KEY_LEN_MAX`] or [`VALUE_LEN_MAX`].
    #[cfg(test)]
    pub(crate) fn insert(&mut self, user_key: &[u8], trailer: u64, value: &[u8]) {
        self.insert_unless_at(user_key, trailer, value, None);
    }

    /// Inserts `user_key` with `trailer` (`lsn << 8 | kind`) and `value`, unless the key's
    /// newest version already has that LSN; returns whether it inserted. A batch written at
    /// one LSN, last write first, so keeps only the last write to each key: the lookup of
    /// the key's newest version that every insert makes anyway tells, where a set of the
    /// batch's keys would hash each key a second time.
    ///
    /// # Panics
    /// If the key or value exceeds [`KEY_LEN_MAX`] or [`VALUE_LEN_MAX`].
    pub(crate) fn insert_first_at_lsn(
        &mut self,
        user_key: &[u8],
        trailer: u64,
        value: &[u8],
    ) -> bool {
        self.insert_unless_at(user_key, trailer, value, Some(trailer >> 8))
    }

    /// Inserts unless `skip_lsn` is the LSN of the key's newest version.
    #[inline]
    fn insert_unless_at(
        &mut self,
        user_key: &[u8],
        trailer: u64,
        value: &[u8],
        skip_lsn: Option<u64>,
    ) -> bool {
        assert!(
            user_key.len() <= KEY_LEN_MAX,
            "key too long for the memtable"
        );
        assert!(
            value.len() <= VALUE_LEN_MAX,
            "value too long for the memtable"
        );
        let list = self.list;
        let (newest, link) = list.find_newest(user_key);
        if skip_lsn.is_some_and(|lsn| newest.is_some_and(|n| n.trailer() >> 8 == lsn)) {
            return false;
        }
        // Whether the node becomes its key's newest version (the usual case: LSNs ascend).
        let replaces = newest.map(|n| trailer > n.trailer());
        let height = self.random_height();
        let list_height = list.height.load(Mem::Relaxed);
        let mut preds = [ptr::null_mut(); MAX_HEIGHT];
        // A new version of a present key goes right before the newest one: its predecessors
        // are found walking back from there, for a short tower, instead of by a descent.
        let walked = match (newest, replaces) {
            (Some(n), Some(true)) => list.preds_before(n, height.min(list_height), &mut preds),
            _ => false,
        };
        debug_assert!(
            !walked
                || newest
                    .is_some_and(|n| list.slot(preds[0], 0).load(Mem::Relaxed) == n.node.as_ptr()),
            "a walk back found the newest version's predecessor"
        );
        if !walked {
            let probe = Probe::new(user_key, trailer);
            let (_, succ) = list.descend(|e| e.cmp_probe(&probe).is_lt(), Some(&mut preds));
            debug_assert!(
                succ.is_none_or(|s| s.cmp_probe(&probe) != Ordering::Equal),
                "a (key, trailer) inserted twice"
            );
        }
        // The chain successor: the replaced version's, or the bucket's head for a new key.
        // An older version (not the newest) stays out of the chains.
        let chain_next = match newest {
            Some(n) if replaces == Some(true) => n.header().hash_next.load(Mem::Relaxed),
            Some(_) => ptr::null_mut(),
            None => link.load(Mem::Relaxed),
        };
        if height > list_height {
            // `preds` above the old height already hold null (the head).
            list.height.store(height, Mem::Relaxed);
        }
        let key_len = user_key.len() + TRAILER_BYTES;
        let size = node_bytes(height, key_len, value.len());
        let raw = self.state.arena.alloc(size, &list.allocated);
        // The tower comes first; the node pointer names the header after it.
        let node = raw
            .cast::<AtomicPtr<Node>>()
            .as_ptr()
            .wrapping_add(height)
            .cast::<Node>();
        let meta = height as u64 | (user_key.len() as u64) << 8 | (value.len() as u64) << 32;
        // SAFETY: `raw` is fresh, aligned, `size` bytes long (room for the tower and the
        // header) and unshared (`Arena::alloc`); `node` lies `height` pointers into it, so
        // 8-byte aligned; nothing reads it before it is published below.
        unsafe {
            node.write(Node {
                prev: AtomicPtr::new(preds[0]),
                meta,
                hash_next: AtomicPtr::new(chain_next),
            });
        }
        let node = NonNull::new(node).expect("a pointer into a live block is not null");
        for (level, pred) in preds.iter().enumerate().take(height) {
            // Only this writer stores links, so a relaxed load reads the current successor.
            let next = list.slot(*pred, level).load(Mem::Relaxed);
            let slot = tower_slot(node, level);
            // SAFETY: slot `level < height` of the tower lies inside the allocation, before
            // the header, aligned; the node is unpublished, so the write is unshared.
            unsafe { slot.write(AtomicPtr::new(next)) };
        }
        let data_at = node.as_ptr().cast::<u8>().wrapping_add(HEADER_BYTES);
        // SAFETY: the key and value bytes lie inside the allocation, after the header, and
        // are unshared until the node is published; `u8` needs no alignment.
        let data = unsafe { std::slice::from_raw_parts_mut(data_at, key_len + value.len()) };
        let (key_bytes, value_bytes) = data.split_at_mut(key_len);
        key_bytes[..user_key.len()].copy_from_slice(user_key);
        key_bytes[user_key.len()..].copy_from_slice(&trailer.to_le_bytes());
        value_bytes.copy_from_slice(value);

        // Publish bottom-up: once level 0 links the node, readers may reach it, fully
        // written (invariant 1); higher levels only speed up later searches.
        for (level, pred) in preds.iter().enumerate().take(height) {
            list.slot(*pred, level).store(node.as_ptr(), Mem::Release);
        }
        let new = list.entry(node.as_ptr()).expect("a fresh node is not null");
        if let Some(succ) = list.entry(new.next_ptr(0)) {
            succ.header().prev.store(node.as_ptr(), Mem::Release);
        }
        if replaces != Some(false) {
            // `link` points to the replaced version, or heads the bucket (a new key).
            link.store(node.as_ptr(), Mem::Release);
        }
        // Only the writer changes the counts (invariant 4): a load and a store, not a
        // read-modify-write, whose locked instruction would wait for the node's stores above
        // (lines the descent may have missed) to drain before the next insert's loads.
        list.len
            .store(list.len.load(Mem::Relaxed) + 1, Mem::Relaxed);
        list.bytes
            .store(list.bytes.load(Mem::Relaxed) + size, Mem::Relaxed);
        true
    }

    /// 1 with probability 3/4, 2 with 3/16, ...: each level keeps one in `BRANCHING`. A
    /// tower rises a level for each `BRANCHING_BITS` zero bits at the bottom of one random
    /// word: a count of trailing zeros instead of a draw per level.
    fn random_height(&mut self) -> usize {
        // xorshift64*: cheap, and deterministic so runs repeat.
        let mut x = self.state.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state.rng = x;
        // The high half of the product: xorshift*'s best-mixed bits. All zero (one draw in
        // 2^32) counts 32 zeros, capped like any tall tower.
        let bits = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32;
        let raised = (bits.trailing_zeros() / BRANCHING_BITS) as usize;
        (1 + raised).min(MAX_HEIGHT)
    }
}

impl<'a> Entry<'a> {
    /// Wraps a pointer loaded from a list borrowed for `'a` (null: none). Private to this
    /// module, which only passes pointers read from the list's links (invariant 1).
    fn from_ptr(node: *mut Node) -> Option<Self> {
        NonNull::new(node).map(|node| Entry {
            node,
            _list: PhantomData,
        })
    }

    fn header(self) -> &'a Node {
        // SAFETY: the node is a fully written node of a list borrowed for `'a` (invariants 1
        // and 3); its header's only field written after publication is atomic (invariant 2).
        unsafe { self.node.as_ref() }
    }

    fn meta(self) -> u64 {
        self.header().meta
    }

    fn height(self) -> usize {
        self.meta() as usize & 0xff
    }

    fn user_key_len(self) -> usize {
        // A 24-bit field: the compiler sees the bound, and `key_len` adds without a check.
        (self.meta() as u32 >> 8) as usize
    }

    fn key_len(self) -> usize {
        self.user_key_len() + TRAILER_BYTES
    }

    fn value_len(self) -> usize {
        (self.meta() >> 32) as usize
    }

    /// Slot `level` of the tower.
    ///
    /// # Panics
    /// If `level` is not below the node's height.
    fn tower(self, level: usize) -> &'a AtomicPtr<Node> {
        assert!(level < self.height(), "level {level} above the tower");
        // SAFETY: `level < height`, just checked.
        unsafe { self.tower_unchecked(level) }
    }

    /// Slot `level` of the tower, without checking the level against the height: a descent
    /// steps right on a level only from nodes it reached on that level or above.
    ///
    /// # Safety
    /// `level` must be below the node's height: true of any node reached through a link of
    /// level `level` or higher, since `Writer::insert` links a node only on the levels of its
    /// tower.
    #[inline(always)]
    #[expect(
        clippy::inline_always,
        reason = "a call per step of a descent costs as much as the comparison (callgrind)"
    )]
    unsafe fn tower_unchecked(self, level: usize) -> &'a AtomicPtr<Node> {
        debug_assert!(level < self.height(), "level {level} above the tower");
        let slot = tower_slot(self.node, level);
        // SAFETY: `level < height` (the caller's contract), so the slot lies in the node's
        // allocation before its header, aligned and initialized before publication
        // (invariants 1, 5); it is only accessed atomically.
        unsafe { &*slot }
    }

    fn next_ptr(self, level: usize) -> *mut Node {
        self.tower(level).load(Mem::Acquire)
    }

    /// Where the key starts: right after the header.
    fn key_at(self) -> *const u8 {
        self.node.as_ptr().cast::<u8>().wrapping_add(HEADER_BYTES)
    }

    /// The encoded internal key: user key, then the trailer.
    pub(crate) fn key(self) -> &'a [u8] {
        // SAFETY: the key follows the header inside the node's allocation (invariant 5), was
        // written before publication and never changes (invariant 2).
        unsafe { std::slice::from_raw_parts(self.key_at(), self.key_len()) }
    }

    /// The user key: the key without its trailer. Sliced straight from the node, since a
    /// descent takes it at every step.
    pub(crate) fn user_key(self) -> &'a [u8] {
        // SAFETY: as in `key`; the user key is the key's start.
        unsafe { std::slice::from_raw_parts(self.key_at(), self.user_key_len()) }
    }

    /// `lsn << 8 | kind`.
    pub(crate) fn trailer(self) -> u64 {
        let key = self.key();
        let raw: [u8; TRAILER_BYTES] = key[key.len() - TRAILER_BYTES..]
            .try_into()
            .expect("the trailer is 8 bytes");
        u64::from_le_bytes(raw)
    }

    pub(crate) fn value(self) -> &'a [u8] {
        let at = self.key_at().wrapping_add(self.key_len());
        // SAFETY: the value follows the key inside the node's allocation (invariant 5), was
        // written before publication and never changes (invariant 2).
        unsafe { std::slice::from_raw_parts(at, self.value_len()) }
    }

    /// Orders this node's key against (`user_key`, `trailer`): user key ascending, then
    /// trailer descending.
    pub(crate) fn cmp_key(self, user_key: &[u8], trailer: u64) -> Ordering {
        self.cmp_probe(&Probe::new(user_key, trailer))
    }

    /// As [`Entry::cmp_key`] against a probe: the heads decide unless they are equal.
    /// Inlined into the descent's loop; the full comparison is a call, met about once per
    /// search (at the key itself).
    #[inline(always)]
    #[expect(
        clippy::inline_always,
        reason = "a call per step of a descent costs as much as the comparison (callgrind)"
    )]
    #[expect(
        clippy::comparison_chain,
        reason = "the order of the tests is the point: see the comment below"
    )]
    pub(crate) fn cmp_probe(self, probe: &Probe<'_>) -> Ordering {
        // Less first: most steps of a descent move right, and leave after one comparison
        // (a `match` on `cmp` tested equality first: 115 more instructions per insert).
        let head = self.head();
        if head < probe.head {
            Ordering::Less
        } else if head > probe.head {
            Ordering::Greater
        } else {
            self.cmp_probe_full(probe)
        }
    }

    /// [`key_head`] of the user key, telling a key of 16 bytes or more by one comparison of
    /// `meta`'s low word instead of extracting the length.
    #[inline(always)]
    #[expect(
        clippy::inline_always,
        reason = "a call per step of a descent costs as much as the comparison (callgrind)"
    )]
    #[expect(
        clippy::big_endian_bytes,
        reason = "a big-endian load orders as the bytes do; it compares keys, decodes nothing"
    )]
    fn head(self) -> u128 {
        // The low word is `height | user key length << 8`, with the height below 256: it
        // reaches `16 << 8` exactly when the user key has at least 16 bytes.
        if self.meta() as u32 >= 16 << 8 {
            let at = self.key_at().cast::<[u8; 16]>();
            // SAFETY: the user key starts at `key_at` and has at least 16 bytes (above), all
            // inside the node's allocation (invariant 5), written before publication and
            // never changed (invariant 2); `[u8; 16]` needs no alignment.
            let head = unsafe { &*at };
            u128::from_be_bytes(*head)
        } else {
            key_head_short(self.user_key())
        }
    }

    #[inline(never)]
    fn cmp_probe_full(self, probe: &Probe<'_>) -> Ordering {
        compare_user_keys(self.user_key(), probe.user_key)
            .then_with(|| probe.trailer.cmp(&self.trailer()))
    }

    /// The next node.
    pub(crate) fn next(self) -> Option<Entry<'a>> {
        Self::from_ptr(self.next_ptr(0))
    }

    /// The previous node (possibly one inserted after this walk began; never a greater one).
    pub(crate) fn prev(self) -> Option<Entry<'a>> {
        Self::from_ptr(self.header().prev.load(Mem::Acquire))
    }

    /// The arena bytes this node takes.
    pub(crate) fn footprint(self) -> usize {
        node_bytes(self.height(), self.key_len(), self.value_len())
    }
}

/// A search target, (user key, trailer), with the head of its user key loaded once for the
/// dozens of comparisons of a descent.
///
/// Comparing heads (the first 16 bytes of a key as a big-endian integer, zero-padded) costs
/// a couple of loads per node, where a `memcmp` call costs several times that; keys such as
/// db_bench's (`key:` or zeros, then digits) share their first 8 bytes, so a head of 8 would
/// rarely decide. Zero padding keeps the order: where two padded heads first differ, either
/// both keys have a byte there, or the shorter key ends before it and is a prefix of the
/// longer one, whose byte there is not zero, and the shorter key sorts first either way.
/// Equal heads (the same key, or keys equal up to padding) fall back to the full order.
#[derive(Clone, Copy)]
pub(crate) struct Probe<'k> {
    user_key: &'k [u8],
    head: u128,
    trailer: u64,
}

impl<'k> Probe<'k> {
    pub(crate) fn new(user_key: &'k [u8], trailer: u64) -> Self {
        Self {
            user_key,
            head: key_head(user_key),
            trailer,
        }
    }
}

/// The first 16 bytes of `key` as a big-endian integer, zero-padded (see [`Probe`]).
#[inline(always)]
#[expect(
    clippy::big_endian_bytes,
    reason = "a big-endian load orders as the bytes do; it compares keys, decodes nothing"
)]
#[expect(
    clippy::inline_always,
    reason = "a call per step of a descent costs as much as the comparison (callgrind)"
)]
fn key_head(key: &[u8]) -> u128 {
    match key.split_first_chunk::<16>() {
        Some((head, _)) => u128::from_be_bytes(*head),
        None => key_head_short(key),
    }
}

/// [`key_head`] of a key under 16 bytes: out of line, so the common case stays small.
#[inline(never)]
#[expect(
    clippy::big_endian_bytes,
    reason = "a big-endian load orders as the bytes do; it compares keys, decodes nothing"
)]
fn key_head_short(key: &[u8]) -> u128 {
    let mut head = [0u8; 16];
    let len = key.len().min(16);
    head[..len].copy_from_slice(&key[..len]);
    u128::from_be_bytes(head)
}

/// Every node of a list, in order.
pub(crate) struct Iter<'a> {
    at: Option<Entry<'a>>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        let at = self.at?;
        self.at = at.next();
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(list: &SkipList) -> Vec<(Vec<u8>, u64, Vec<u8>)> {
        list.iter()
            .map(|e| (e.user_key().to_vec(), e.trailer(), e.value().to_vec()))
            .collect()
    }

    #[test]
    fn skiplist_orders_by_user_key_then_trailer_descending() {
        let list = SkipList::new();
        assert!(list.first().is_none() && list.last().is_none());
        {
            let mut w = list.writer();
            w.insert(b"b", 5, b"b5");
            w.insert(b"a", 1, b"");
            w.insert(b"b", 9, b"b9");
            w.insert(b"", 3, b"e");
        }
        list.check_structure();
        let got = collect(&list);
        let want: Vec<(Vec<u8>, u64, Vec<u8>)> = vec![
            (b"".to_vec(), 3, b"e".to_vec()),
            (b"a".to_vec(), 1, b"".to_vec()),
            (b"b".to_vec(), 9, b"b9".to_vec()),
            (b"b".to_vec(), 5, b"b5".to_vec()),
        ];
        assert_eq!(got, want);
        let last = list.last().expect("non-empty");
        assert_eq!((last.user_key(), last.trailer()), (&b"b"[..], 5));
        let back: Vec<u64> = std::iter::successors(Some(last), |e| e.prev())
            .map(|e| e.trailer())
            .collect();
        assert_eq!(back, vec![5, 9, 1, 3]);
        let at = list
            .lower_bound(|e| e.cmp_key(b"b", 7) == Ordering::Less)
            .expect("found");
        assert_eq!(at.trailer(), 5);
        let at = list
            .last_before(|e| e.cmp_key(b"b", 7) == Ordering::Less)
            .expect("found");
        assert_eq!(at.trailer(), 9);
        assert!(list.last_before(|e| e.user_key() < b"").is_none());
        assert!(list.lower_bound(|e| e.user_key() <= b"b").is_none());
    }

    #[test]
    fn arena_gives_a_node_larger_than_the_next_block_a_block_that_holds_it() {
        // Every size between the first block and `LARGE_NODE`, first in a fresh arena (whose
        // next block is the smallest) and then after the second block's small tail.
        for size in [
            BLOCK_FIRST + ALIGN,
            3 * BLOCK_FIRST,
            LARGE_NODE / 2,
            LARGE_NODE,
        ] {
            for leading in [None, Some(BLOCK_FIRST - ALIGN)] {
                let mut arena = Arena::new();
                let mut used = 0;
                for size in leading.into_iter().chain([size, ALIGN * 4]) {
                    let at = arena.alloc(size, &AtomicUsize::new(0)).as_ptr() as usize;
                    used += size;
                    let holds = |block: &&Block| {
                        let start = block.start().as_ptr() as usize;
                        (start..start + block.size()).contains(&at)
                    };
                    let block = arena.blocks.iter().find(holds).expect("in a block");
                    let end = block.start().as_ptr() as usize + block.size();
                    assert!(
                        at + size <= end,
                        "a node of {size} bytes overruns its block"
                    );
                }
                assert!(arena.allocated() >= used);
            }
        }
    }

    #[test]
    fn arena_fills_the_block_it_allocated_ahead_next() {
        let mut arena = Arena::new();
        let mut switches = 0;
        let mut used_ahead = 0;
        let mut mapped = 0;
        while switches < 14 {
            mapped += usize::from(matches!(arena.blocks.last(), Some(Block::Mapped(_))));
            let (current, ahead) = (arena.current, arena.ahead);
            arena.alloc(8 * 1024, &AtomicUsize::new(0));
            if arena.current != current {
                switches += 1;
                if let Some((block, _)) = ahead {
                    assert_eq!(arena.current, Some(block), "the block ahead is filled next");
                    used_ahead += 1;
                }
            }
            assert_eq!(
                arena.ahead.is_some(),
                arena.next_block >= PREFAULT_MIN,
                "a block is kept ahead exactly when blocks are large"
            );
            if let Some((block, size)) = arena.ahead {
                assert_ne!(arena.current, Some(block));
                assert!(
                    arena
                        .blocks
                        .iter()
                        .any(|b| b.start() == block && b.size() == size)
                );
            }
            if let Some(Block::Heap(_, layout)) = arena.blocks.last() {
                assert!(
                    !cfg!(target_os = "linux") || layout.size() < BLOCK_MAX,
                    "a full-size block is mapped on a huge page of its own"
                );
            }
            if let Some(Block::Mapped(block)) = arena.blocks.last() {
                assert_eq!(
                    block.as_ptr() as usize % BLOCK_MAX,
                    0,
                    "a huge page is aligned"
                );
            }
            assert_eq!(
                arena.blocks.len(),
                switches + usize::from(arena.ahead.is_some()),
                "no block is allocated and left unused but the one ahead"
            );
        }
        assert!(used_ahead >= 8);
        assert!(
            !cfg!(target_os = "linux") || mapped > 0,
            "no block was mapped"
        );
    }

    #[test]
    fn allocated_bytes_count_every_block_and_the_one_ahead() {
        let list = SkipList::with_budget(64 << 20);
        let value = [3_u8; 1000];
        {
            let mut w = list.writer();
            for i in 0..3000_u32 {
                w.insert(format!("{i:08}").as_bytes(), u64::from(i) << 8 | 1, &value);
            }
        }
        let state = list.writer.lock().expect("no insert panicked");
        let blocks: usize = state.arena.blocks.iter().map(Block::size).sum();
        let (_, ahead) = state.arena.ahead.expect("large blocks keep one ahead");
        drop(state);
        assert_eq!(list.allocated_bytes(), blocks);
        assert!(
            list.allocated_bytes() >= list.bytes() + ahead,
            "{} allocated for {} bytes of nodes and {ahead} ahead",
            list.allocated_bytes(),
            list.bytes()
        );
    }

    #[test]
    fn skiplist_holds_values_between_the_first_block_and_a_large_node() {
        let list = SkipList::new();
        let sizes = [
            BLOCK_FIRST,
            2 * BLOCK_FIRST + 1,
            LARGE_NODE / 3,
            LARGE_NODE - 64,
        ];
        {
            let mut w = list.writer();
            // The first node is the largest: it arrives when the next block is the smallest.
            for (i, size) in sizes.iter().enumerate().rev() {
                w.insert(
                    format!("value{i}").as_bytes(),
                    1,
                    &vec![u8::try_from(i).unwrap(); *size],
                );
                w.insert(format!("small{i}").as_bytes(), 1, b"v");
            }
        }
        list.check_structure();
        for (i, size) in sizes.iter().enumerate() {
            let key = format!("value{i}");
            let entry = list
                .lower_bound(|e| e.user_key() < key.as_bytes())
                .expect("present");
            assert_eq!(entry.value(), &vec![u8::try_from(i).unwrap(); *size][..]);
        }
    }

    #[test]
    fn skiplist_holds_many_nodes_and_large_values_with_exact_accounting() {
        let list = SkipList::new();
        let big = vec![7u8; LARGE_NODE + 1];
        let mut expected = 0;
        {
            let mut w = list.writer();
            // A multiplicative permutation of 0..n: inserts land all over the list.
            let n: u64 = 20_000;
            for i in 0..n {
                let k = (i * 7919) % n;
                let value: &[u8] = if k.is_multiple_of(5000) { &big } else { b"v" };
                w.insert(format!("{k:08}").as_bytes(), k, value);
            }
        }
        list.check_structure();
        for e in list.iter() {
            expected += e.footprint();
        }
        assert_eq!(list.bytes(), expected);
        assert_eq!(list.len(), 20_000);
        assert!(list.allocated_bytes() >= list.bytes());
        assert!(
            list.height.load(Mem::Relaxed) > 4,
            "towers grow with the list"
        );
        let keys: Vec<Vec<u8>> = list.iter().map(|e| e.user_key().to_vec()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let big_entry = list
            .lower_bound(|e| e.user_key() < b"00005000")
            .expect("present");
        assert_eq!(big_entry.value(), &big[..]);
    }

    #[test]
    fn skiplist_hash_index_names_each_keys_newest_version() {
        // A small budget: 64 buckets for 300 keys, so chains hold several keys each.
        let list = SkipList::with_budget(0);
        assert_eq!(list.buckets.len(), BUCKETS_MIN);
        {
            let mut w = list.writer();
            for round in 1..=5u64 {
                for k in 0..300u64 {
                    // Rounds ascend (the usual order); key 7 also gets an older version
                    // late, which must stay out of the chain.
                    w.insert(format!("k{k:04}").as_bytes(), round << 8 | 1, b"v");
                }
            }
            w.insert(b"k0007", 1, b"old");
        }
        list.check_structure();
        for k in 0..300u64 {
            let key = format!("k{k:04}");
            let newest = list.newest(key.as_bytes()).expect("written");
            assert_eq!(
                (newest.user_key(), newest.trailer()),
                (key.as_bytes(), 5 << 8 | 1)
            );
            let versions: Vec<u64> = std::iter::successors(Some(newest), |e| e.next())
                .take_while(|e| e.user_key() == key.as_bytes())
                .map(|e| e.trailer() >> 8)
                .collect();
            let want: Vec<u64> = if k == 7 {
                vec![5, 4, 3, 2, 1, 0]
            } else {
                vec![5, 4, 3, 2, 1]
            };
            assert_eq!(versions, want, "versions of {key}, newest first");
        }
        assert!(list.newest(b"k0300").is_none());
        assert!(list.newest(b"").is_none());
    }

    #[test]
    fn skiplist_overwrites_link_every_level_of_their_towers() {
        // Overwrites find their predecessors walking back from the newest version: towers
        // of every height, walks that reach the head (key 0) or give up (tall towers, few
        // tall nodes nearby), and towers that raise the list's height.
        let list = SkipList::new();
        {
            let mut w = list.writer();
            for round in 1..=6u64 {
                let keys = if round == 1 { 8 } else { 3000 };
                for i in 0..keys {
                    let k = (i * 7919) % keys;
                    w.insert(format!("k{k:05}").as_bytes(), round << 8 | 1, b"v");
                }
            }
        }
        list.check_structure();
        assert!(
            list.height.load(Mem::Relaxed) > 4,
            "towers grow with the list"
        );
        for k in 0..3000u64 {
            let key = format!("k{k:05}");
            let probe = Probe::new(key.as_bytes(), 6 << 8 | 1);
            let found = list
                .lower_bound(|e| e.cmp_probe(&probe).is_lt())
                .expect("present");
            assert_eq!(
                (found.user_key(), found.trailer()),
                (key.as_bytes(), 6 << 8 | 1)
            );
        }
    }

    #[test]
    fn skiplist_heights_follow_a_quarter_branching() {
        let list = SkipList::new();
        let mut w = list.writer();
        let heights: Vec<usize> = (0..40_000).map(|_| w.random_height()).collect();
        let tall = heights.iter().filter(|&&h| h >= 2).count();
        // Expected 10,000 of 40,000; a fair generator lands well within 10%.
        assert!(
            (9_000..11_000).contains(&tall),
            "{tall} towers of height >= 2"
        );
        // Each level keeps a quarter of the one below: 2,500 expected, 2,200-2,800 is about
        // six standard deviations either way.
        let taller = heights.iter().filter(|&&h| h >= 3).count();
        assert!(
            (2_200..2_800).contains(&taller),
            "{taller} towers of height >= 3"
        );
        assert!(heights.iter().all(|&h| (1..=MAX_HEIGHT).contains(&h)));
    }
}
