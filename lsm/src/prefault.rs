//! Faulting in fresh memory ahead of need, on a thread of its own.
//!
//! The first write to each page of a fresh allocation traps into the kernel, which zeroes
//! the page there: for the memtable's 1 MiB arena blocks that was about a tenth of the
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
        reason = "madvise is unsafe in general; the one advice used here leaves memory as it is"
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
}
