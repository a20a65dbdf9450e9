//! Fresh memory for the memtable's arena: blocks on huge pages of their own ([`map_huge`],
//! [`unmap_huge`]), faulted in ahead of need on a thread of its own ([`populate_later`]).
//!
//! The first write to each page of a fresh allocation traps into the kernel, which zeroes
//! the page there: for the memtable's large arena blocks that was about a tenth of the
//! applying thread's time under a server's write load (`clear_page_erms` in its profile),
//! on the thread that bounds the write rate. [`populate_later`] hands a block the arena
//! will fill next to a background thread, which asks the kernel to fault it in
//! (`MADV_POPULATE_WRITE`, Linux 5.14), so the zeroing happens on another core while the
//! writer fills the current block. Pages the writer reaches first it faults itself, as
//! before.
//!
//! Populating never changes memory's contents, so the thread may act on a block after it
//! was freed (a memtable dropped before its spare block came up): the kernel then faults in
//! pages of whatever owns that memory now, or reports an unmapped range, which is ignored.
//! Elsewhere than Linux, and where the thread cannot start, nothing is populated.

#![cfg_attr(
    target_os = "linux",
    expect(
        unsafe_code,
        reason = "madvise, mmap and munmap: blocks of fresh memory and advice that leaves memory as it is"
    )
)]
#![deny(
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use std::sync::OnceLock;
use std::sync::mpsc::{Sender, channel};

#[cfg_attr(
    not(target_os = "linux"),
    expect(dead_code, reason = "populated only on Linux")
)]
/// A range of memory to fault in, as an address and a length (not a pointer: the memory is
/// never accessed through it, and it may be freed before it is populated).
struct Range {
    addr: usize,
    len: usize,
}

/// The populating thread's queue; `None` if the thread could not be started.
fn queue() -> Option<&'static Sender<Range>> {
    static QUEUE: OnceLock<Option<Sender<Range>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (send, receive) = channel::<Range>();
            std::thread::Builder::new()
                .name("popdb-prefault".into())
                .spawn(move || {
                    for range in receive {
                        populate(&range);
                    }
                })
                .ok()
                .map(|_| send)
        })
        .as_ref()
}

/// Asks the populating thread to fault in `len` bytes at `block`, soon. The caller may
/// write to the block or free it meanwhile.
pub(crate) fn populate_later(block: *const u8, len: usize) {
    if cfg!(target_os = "linux")
        && let Some(queue) = queue()
    {
        // A send fails only if the thread died, and then nothing is populated.
        let _ = queue.send(Range {
            addr: block as usize,
            len,
        });
    }
}

#[cfg(target_os = "linux")]
fn populate(range: &Range) {
    use rustix::mm::{Advice, madvise};
    // madvise wants a page-aligned range; the call stays inside the block, and the block's
    // partial first and last pages are left to the writer.
    let page = rustix::param::page_size();
    let start = range.addr.next_multiple_of(page);
    let end = range.addr.saturating_add(range.len) / page * page;
    if end <= start {
        return;
    }
    // SAFETY: MADV_POPULATE_WRITE faults pages in as a write would, without writing: no
    // anonymous memory changes, whoever owns it now. The process maps files read-only
    // (popdb-io's maps), so a freed range reused by a file mapping is not dirtied or
    // unshared either. An unmapped or otherwise unsuitable range makes the call fail,
    // which changes nothing.
    let _ = unsafe {
        madvise(
            start as *mut std::ffi::c_void,
            end - start,
            Advice::LinuxPopulateWrite,
        )
    };
}

#[cfg(not(target_os = "linux"))]
fn populate(_range: &Range) {}

/// The size and alignment of a huge page (x86-64 and arm64 with 4 KiB base pages), the most
/// a [`map_huge`] block holds.
pub(crate) const HUGE_PAGE: usize = 2 << 20;

/// `HUGE_PAGE` bytes of fresh zeroed memory at a `HUGE_PAGE`-aligned address, mapped
/// privately and advised to be backed by a transparent huge page (THP, with `enabled` at
/// `madvise` or `always`): one TLB entry then covers the block, where 4 KiB pages cost a
/// page walk, a costly one in a virtual machine, on most steps of a descent through a large
/// memtable. The global allocator's huge blocks are on huge pages too, but it writes its
/// bookkeeping into a block as it hands it out, which faults the whole page in (zeroing 2
/// MiB) on the allocating thread, before [`populate_later`] could. `None` if the mapping
/// fails. Free with [`unmap_huge`].
#[cfg(target_os = "linux")]
pub(crate) fn map_huge() -> Option<std::ptr::NonNull<u8>> {
    use rustix::mm::{Advice, MapFlags, ProtFlags, madvise, mmap_anonymous, munmap};
    // Twice the size, then the unaligned ends given back: mmap aligns to pages only.
    let len = 2 * HUGE_PAGE;
    // SAFETY: a fresh anonymous private mapping at an address the kernel picks overlaps
    // nothing else.
    let raw = unsafe {
        mmap_anonymous(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    }
    .ok()?
    .cast::<u8>();
    let head = (raw as usize).next_multiple_of(HUGE_PAGE) - raw as usize;
    let block = raw.wrapping_add(head);
    let tail = len - head - HUGE_PAGE;
    if head > 0 {
        // SAFETY: `[raw, block)` is the start of the mapping just made, page-aligned (both
        // ends are), and nothing points into it.
        let _ = unsafe { munmap(raw.cast(), head) };
    }
    if tail > 0 {
        // SAFETY: as above, for the mapping's end past the block.
        let _ = unsafe { munmap(block.wrapping_add(HUGE_PAGE).cast(), tail) };
    }
    // Advice only: without it (THP off, say) the block is ordinary pages.
    // SAFETY: MADV_HUGEPAGE changes how the kernel backs the range, not its contents.
    let _ = unsafe { madvise(block.cast(), HUGE_PAGE, Advice::LinuxHugepage) };
    std::ptr::NonNull::new(block)
}

/// Elsewhere than Linux, blocks come from the global allocator.
#[cfg(not(target_os = "linux"))]
pub(crate) fn map_huge() -> Option<std::ptr::NonNull<u8>> {
    None
}

/// Frees a block of [`map_huge`].
///
/// # Safety
/// `block` came from [`map_huge`], is freed once, and nothing uses it afterwards.
#[cfg(target_os = "linux")]
pub(crate) unsafe fn unmap_huge(block: std::ptr::NonNull<u8>) {
    // SAFETY: the caller's contract: the block is this module's mapping of `HUGE_PAGE`
    // bytes, unused from here on. A failure (it cannot fail for a whole mapping) would
    // only leak it.
    let _ = unsafe { rustix::mm::munmap(block.as_ptr().cast(), HUGE_PAGE) };
}

/// Never called: [`map_huge`] maps nothing off Linux.
///
/// # Safety
/// As on Linux.
#[cfg(not(target_os = "linux"))]
#[expect(
    unsafe_code,
    reason = "the same contract as on Linux, for the one caller that frees mapped blocks"
)]
pub(crate) unsafe fn unmap_huge(_block: std::ptr::NonNull<u8>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populating_leaves_memory_as_it_was_and_survives_a_freed_block() {
        let mut block = vec![7_u8; 1 << 20];
        populate(&Range {
            addr: block.as_ptr() as usize,
            len: block.len(),
        });
        assert!(
            block.iter().all(|&b| b == 7),
            "populating changed the memory"
        );
        block[12_345] = 1;
        assert_eq!(block[12_345], 1);
        let (addr, len) = (block.as_ptr() as usize, block.len());
        drop(block);
        // Freed (and possibly unmapped) memory: the call must neither crash nor matter.
        populate(&Range { addr, len });
        populate_later(std::ptr::null(), 4096);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_huge_block_is_aligned_zeroed_writable_and_populates() {
        let block = map_huge().expect("mapping 4 MiB");
        assert_eq!(
            block.as_ptr() as usize % HUGE_PAGE,
            0,
            "a huge block is aligned"
        );
        populate(&Range {
            addr: block.as_ptr() as usize,
            len: HUGE_PAGE,
        });
        // SAFETY: the block is `HUGE_PAGE` bytes of fresh memory owned here.
        let bytes = unsafe { std::slice::from_raw_parts_mut(block.as_ptr(), HUGE_PAGE) };
        assert!(bytes.iter().all(|&b| b == 0), "a fresh block is zeroed");
        bytes[0] = 1;
        bytes[HUGE_PAGE - 1] = 2;
        assert_eq!((bytes[0], bytes[HUGE_PAGE - 1]), (1, 2));
        // SAFETY: from `map_huge`, freed once; `bytes` is not used again.
        unsafe { unmap_huge(block) };
    }
}
