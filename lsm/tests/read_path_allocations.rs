//! Point reads allocate nothing once warm: a counting global allocator watches
//! `ReadView::get_into` over keys in the memtable, in L0 and in deeper levels (blocks in the
//! cache), hits and misses alike. The only test in this binary, so no other test's
//! allocations are counted.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use popdb_io::{FsRef, SimFs};
use popdb_lsm::{Progress, Tree, TreeOptions};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts calls.
#[allow(
    unsafe_code,
    reason = "a global allocator is unsafe by definition; test only"
)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed through unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

#[test]
fn read_path_point_reads_allocate_nothing_when_warm() {
    let fs: FsRef = Arc::new(SimFs::new(1));
    let options = TreeOptions {
        memtable_size_max: 64 * 1024,
        l0_compaction_trigger: 4,
        level_size_base: 256 * 1024,
        ..TreeOptions::default()
    };
    let tree = Tree::open(fs, Path::new("/alloc"), options).unwrap();
    let n = 4_000;
    for i in 0..n {
        tree.apply(i + 1, &[(key(i), Some(vec![7u8; 100]))])
            .unwrap();
        if i % 500 == 0 {
            while tree.maintenance_step().unwrap() != Progress::Idle {}
        }
    }
    // Whatever file count the drains left in L0, the checkpoint flushes the memtables into
    // it (nothing compacts after), and the writes after it fill the memtable again.
    tree.checkpoint(n).unwrap();
    let extra = 100;
    for i in n..n + extra {
        tree.apply(i + 1, &[(key(i), Some(vec![7u8; 100]))])
            .unwrap();
    }
    let stats = tree.stats();
    assert!(stats.levels[0].files > 0, "want L0 files: {stats:?}");
    assert!(stats.levels[1].files > 0, "want L1 files: {stats:?}");
    assert!(stats.memtable_bytes > 0, "want a non-empty memtable");
    let view = tree.read_view();
    let mut value = Vec::with_capacity(128);
    let keys: Vec<Vec<u8>> = (0..2 * n).map(key).collect();
    for k in &keys {
        view.get_into(k, &mut value).unwrap();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut found = 0;
    for k in &keys {
        found += usize::from(view.get_into(k, &mut value).unwrap().is_some());
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(found, (n + extra) as usize);
    assert_eq!(allocations, 0, "{} warm point reads allocated", keys.len());
}
