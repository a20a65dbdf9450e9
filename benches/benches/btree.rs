//! Criterion micro-benchmarks of popdb-btree's hot paths, with db_bench's default shapes
//! (16-byte keys, 100-byte values) and 100,000 entries per tree:
//!
//! - `page`: the binary searches inside one full 4 KiB page: `LeafPage::find` (after the
//!   O(1) `decode_verified` a read makes of a page it verified before), `LeafPage::decode`
//!   (the full check of a page's first read), and `BranchPage::child_index`.
//! - `get`: point reads that hit and that miss, on a tree checkpointed and reopened (every
//!   node a page of the read-only map: `map_*`) and on a tree never checkpointed (every
//!   node in memory: `mem_*`).
//! - `scan`: a seek and the next 100 entries, on both trees.
//! - `insert`: applies of 1 and of 1,000 new random keys (one LSN each) into a tree that
//!   starts checkpointed with 100,000 keys and grows as the benchmark runs; leaves split
//!   as they fill.
//! - `checkpoint`: writing a checkpoint after overwriting 100 or 1,000 random keys of the
//!   checkpointed tree (the overwrites are set up outside the timed region); this includes
//!   the page writes and the two syncs, on the real file system under cargo's target
//!   directory.
//!
//! Keys and values come from a fixed seed, so every run measures the same data. Run with
//! `cargo bench -p popdb-bench --bench btree` (append a filter such as `-- get/` to run a
//! subset). Throughput is per key: divide an `insert/batch_1000` or `checkpoint/dirty_*`
//! iteration by its key count (criterion prints it as elements per second).

#![forbid(unsafe_code)]

use std::cell::Cell;
use std::hint::black_box;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use criterion::{
    BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main, measurement::WallTime,
};
use popdb_btree::{
    BranchBuilder, BranchPage, Direction, LeafBuilder, LeafEntry, LeafPage, LeafValue, PageId,
    PageRef, PageSize, ROOTS_RETAINED_DEFAULT, ReadView, Tree, TreeOptions, TxnId,
};
use popdb_io::{FsRef, RealFs};
use popdb_testkit::Rng;
use tempfile::TempDir;

/// Bytes of every user key (db_bench's default).
const KEY_SIZE: usize = 16;
/// Bytes of every value (db_bench's default).
const VALUE_SIZE: usize = 100;
/// Entries in each tree.
const ENTRY_COUNT: usize = 100_000;
/// Keys per apply when a fixture is loaded (the peers' keys per transaction).
const LOAD_BATCH_KEYS: usize = 1_000;
const SEED_PRESENT: u64 = 0x0b5e_55ed;
const SEED_ABSENT: u64 = 0xab5e_0000;
const SEED_INSERT: u64 = 0x0111_5e47;
const PAGE_SIZE: PageSize = PageSize::DEFAULT;

/// The keys and values every benchmark draws from.
struct Data {
    /// Distinct present keys, in the (random) order they are applied.
    keys: Vec<Vec<u8>>,
    /// The present keys again, shuffled apart from the order they were applied in.
    present: Vec<Vec<u8>>,
    /// `values[i]` belongs to `keys[i]`.
    values: Vec<Vec<u8>>,
    /// The present keys in ascending order.
    sorted: Vec<Vec<u8>>,
    /// Keys none of which is present, for misses.
    absent: Vec<Vec<u8>>,
}

/// The shared data, generated once per process.
fn data() -> &'static Data {
    static DATA: OnceLock<Data> = OnceLock::new();
    DATA.get_or_init(|| {
        let keys = random_keys(SEED_PRESENT, ENTRY_COUNT);
        let mut rng = Rng(SEED_PRESENT ^ 1);
        let values = (0..ENTRY_COUNT)
            .map(|_| (0..VALUE_SIZE).map(|_| rng.next() as u8).collect())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert!(
            sorted.windows(2).all(|w| w[0] != w[1]),
            "present keys must be distinct"
        );
        let mut present = keys.clone();
        shuffle(&mut present, SEED_PRESENT ^ 2);
        let absent = random_keys(SEED_ABSENT, ENTRY_COUNT);
        assert!(
            absent.iter().all(|k| sorted.binary_search(k).is_err()),
            "absent keys must not be present"
        );
        Data {
            keys,
            present,
            values,
            sorted,
            absent,
        }
    })
}

/// `count` keys of `KEY_SIZE` ASCII hex digits, like db_bench's formatted numbers.
fn random_keys(seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    (0..count).map(|_| hex_key(&mut rng)).collect()
}

fn hex_key(rng: &mut Rng) -> Vec<u8> {
    let key = format!("{:016x}", rng.next()).into_bytes();
    assert_eq!(key.len(), KEY_SIZE);
    key
}

/// Fisher-Yates, driven by `seed`.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = Rng(seed);
    for i in (1..items.len()).rev() {
        items.swap(i, rng.index(i + 1));
    }
}

/// Cycles through `items`, so that consecutive probes touch unrelated keys.
fn cycle<'a, T>(items: &'a [T]) -> impl FnMut() -> &'a T {
    let mut i = 0;
    move || {
        let item = &items[i];
        i = if i + 1 == items.len() { 0 } else { i + 1 };
        item
    }
}

/// A group for operations that take milliseconds: few samples of one iteration each.
fn slow_group<'c>(c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group
}

/// A full leaf page: consecutive keys from the middle of the sorted data until the next
/// would not fit. Returns the page's bytes and its keys, shuffled.
fn full_leaf(data: &Data) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut builder = LeafBuilder::new(PAGE_SIZE);
    let mut keys = Vec::new();
    for (i, key) in data.sorted[ENTRY_COUNT / 2..].iter().enumerate() {
        let entry = LeafEntry {
            key,
            version: 1,
            value: LeafValue::Inline(&data.values[i]),
        };
        if !builder.fits(&entry) {
            break;
        }
        builder.push(&entry);
        keys.push(key.clone());
    }
    shuffle(&mut keys, SEED_PRESENT ^ 3);
    (builder.finish(PageId(2), TxnId(1)).to_vec(), keys)
}

/// A full branch page at level 1 over consecutive keys of the sorted data (every 30th, as
/// a leaf of 30 entries would give). Returns the page's bytes.
fn full_branch(data: &Data) -> Vec<u8> {
    let child = |id: u64| PageRef {
        id: PageId(id),
        checksum: 0,
    };
    let mut builder = BranchBuilder::new(PAGE_SIZE, 1, child(3));
    for (i, separator) in data.sorted.iter().step_by(30).skip(1).enumerate() {
        if !builder.fits(separator.len()) {
            break;
        }
        builder.push(separator, child(4 + i as u64));
    }
    builder.finish(PageId(2), TxnId(1)).to_vec()
}

fn page(c: &mut Criterion) {
    let data = data();
    let (leaf_bytes, leaf_keys) = full_leaf(data);
    let branch_bytes = full_branch(data);
    let leaf = LeafPage::decode(&leaf_bytes, PAGE_SIZE, PageId(2)).expect("the leaf decodes");
    let branch =
        BranchPage::decode(&branch_bytes, PAGE_SIZE, PageId(2)).expect("the branch decodes");
    println!(
        "page: a full leaf holds {} entries, a full branch {} separators",
        leaf.len(),
        branch.len()
    );

    let mut group = c.benchmark_group("page");
    let mut next = cycle(&leaf_keys);
    group.bench_function("leaf_find", |b| {
        b.iter(|| {
            let page = LeafPage::decode_verified(black_box(&leaf_bytes), PAGE_SIZE, PageId(2))
                .expect("the leaf opens");
            black_box(page.find(next()).expect("the leaf reads"))
        });
    });
    group.bench_function("leaf_decode", |b| {
        b.iter(|| {
            black_box(
                LeafPage::decode(black_box(&leaf_bytes), PAGE_SIZE, PageId(2))
                    .expect("the leaf decodes"),
            )
        });
    });
    // Probes spread over the whole key space: most fall between the branch's separators.
    let mut next = cycle(&data.present);
    group.bench_function("branch_child_index", |b| {
        b.iter(|| {
            let page = BranchPage::decode_verified(black_box(&branch_bytes), PAGE_SIZE, PageId(2))
                .expect("the branch opens");
            black_box(page.child_index(next()).expect("the branch reads"))
        });
    });
    group.finish();
}

/// A tree on the real file system; the directory goes on drop.
struct Fixture {
    tree: Tree,
    /// The last LSN applied.
    lsn: Cell<u64>,
    _dir: TempDir,
}

impl Fixture {
    /// A tree holding every key, applied in batches of `LOAD_BATCH_KEYS`; if `checkpointed`,
    /// checkpointed and reopened, so that every node is a page of the map.
    fn new(checkpointed: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("popdb-bench-btree-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("a scratch directory under the target directory");
        let data = data();
        let tree = open(dir.path());
        let mut lsn = 0;
        for (keys, values) in data
            .keys
            .chunks(LOAD_BATCH_KEYS)
            .zip(data.values.chunks(LOAD_BATCH_KEYS))
        {
            let batch: Vec<(&[u8], Option<&[u8]>)> = keys
                .iter()
                .zip(values)
                .map(|(k, v)| (k.as_slice(), Some(v.as_slice())))
                .collect();
            lsn += 1;
            tree.apply(lsn, &batch).expect("the tree applies");
        }
        let tree = if checkpointed {
            tree.checkpoint(lsn).expect("the tree checkpoints");
            drop(tree);
            open(dir.path())
        } else {
            tree
        };
        let stats = tree.read_view().stats().expect("the tree walks");
        assert_eq!(stats.entry_count, ENTRY_COUNT as u64);
        println!(
            "tree ({}): depth {}, {} leaves, {} nodes in memory, fill {:.2}",
            if checkpointed { "map" } else { "mem" },
            stats.depth,
            stats.leaf_count,
            stats.mem_node_count,
            stats.fill_factor()
        );
        Fixture {
            tree,
            lsn: Cell::new(lsn),
            _dir: dir,
        }
    }

    /// The next LSN to apply at.
    fn next_lsn(&self) -> u64 {
        let lsn = self.lsn.get() + 1;
        self.lsn.set(lsn);
        lsn
    }
}

fn open(dir: &Path) -> Tree {
    let fs: FsRef = Arc::new(RealFs::new());
    let options = TreeOptions {
        page_size: PAGE_SIZE,
        roots_retained: ROOTS_RETAINED_DEFAULT,
    };
    Tree::open(fs, dir, options).expect("the tree opens")
}

fn get(c: &mut Criterion) {
    let data = data();
    let map = Fixture::new(true);
    let mem = Fixture::new(false);
    let mut group = c.benchmark_group("get");
    for (name, fixture) in [("map", &map), ("mem", &mem)] {
        let view = fixture.tree.read_view();
        let mut value = Vec::with_capacity(VALUE_SIZE);
        let mut next = cycle(&data.present);
        group.bench_function(format!("{name}_hit"), |b| {
            b.iter(|| {
                let found = view.get_into(next(), &mut value).expect("the tree reads");
                black_box(found.expect("a present key"))
            });
        });
        let mut next = cycle(&data.absent);
        group.bench_function(format!("{name}_miss"), |b| {
            b.iter(|| black_box(view.get_into(next(), &mut value).expect("the tree reads")));
        });
    }
    group.finish();
    scan(c, &map, &mem);
}

/// A seek and the next 100 entries (keys and values read), as db_bench's seekrandom.
fn scan(c: &mut Criterion, map: &Fixture, mem: &Fixture) {
    let data = data();
    let mut group = c.benchmark_group("scan");
    for (name, fixture) in [("map", map), ("mem", mem)] {
        let view: ReadView = fixture.tree.read_view();
        let mut next = cycle(&data.present);
        group.bench_function(format!("{name}_seek_next100"), |b| {
            b.iter(|| {
                let bounds = (Bound::Included(next().clone()), Bound::Unbounded);
                let mut it = view
                    .scan(bounds, Direction::Forward)
                    .expect("the tree scans");
                for _ in 0..100 {
                    if !it.valid() {
                        break;
                    }
                    black_box((it.key(), it.value()));
                    it.next().expect("the tree scans");
                }
            });
        });
    }
    group.finish();
}

fn insert(c: &mut Criterion) {
    let data = data();
    let mut group = c.benchmark_group("insert");
    for batch_keys in [1, 1_000] {
        let fixture = Fixture::new(true);
        let mut rng = Rng(SEED_INSERT ^ batch_keys as u64);
        let mut next_value = cycle(&data.values);
        group.throughput(Throughput::Elements(batch_keys as u64));
        group.bench_function(format!("batch_{batch_keys}"), |b| {
            b.iter_batched_ref(
                || {
                    (0..batch_keys)
                        .map(|_| (hex_key(&mut rng), Some(next_value().clone())))
                        .collect::<Vec<_>>()
                },
                |batch| {
                    fixture
                        .tree
                        .apply(fixture.next_lsn(), batch)
                        .expect("the tree applies");
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn checkpoint(c: &mut Criterion) {
    let data = data();
    let fixture = Fixture::new(true);
    let mut group = slow_group(c, "checkpoint");
    for dirty_keys in [100, 1_000] {
        let mut next_key = cycle(&data.present);
        let mut next_value = cycle(&data.values);
        group.throughput(Throughput::Elements(dirty_keys as u64));
        group.bench_function(format!("dirty_{dirty_keys}"), |b| {
            b.iter_batched(
                || {
                    let batch: Vec<(&[u8], Option<&[u8]>)> = (0..dirty_keys)
                        .map(|_| (next_key().as_slice(), Some(next_value().as_slice())))
                        .collect();
                    let lsn = fixture.next_lsn();
                    fixture.tree.apply(lsn, &batch).expect("the tree applies");
                    lsn
                },
                |lsn| fixture.tree.checkpoint(lsn).expect("the tree checkpoints"),
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
    let stats = fixture.tree.stats();
    println!(
        "checkpoint: {} checkpoints wrote {} pages last ({} freed, {} reused); file {} pages, {} free",
        stats.checkpoints,
        stats.last_checkpoint.pages_written,
        stats.last_checkpoint.pages_freed,
        stats.last_checkpoint.pages_reused,
        stats.file_pages,
        stats.free_pages
    );
}

criterion_group! {
    name = btree;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = page, get, insert, checkpoint
}
criterion_main!(btree);
