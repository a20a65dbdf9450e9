//! Criterion micro-benchmarks of popdb-lsm's hot paths, with db_bench's default shapes
//! (16-byte keys, 100-byte values) and 100,000 entries per structure:
//!
//! - `memtable`: filling an empty memtable (one apply per key, random order), point reads
//!   that hit and that miss, and a full range scan.
//! - `block`: validating a 4 KiB data block (crc32 and restart offsets) and seeking in it,
//!   with a reused cursor and with a fresh one as `SstReader::get` makes.
//! - `bloom`: probes of a 10-bits-per-key filter for present and absent keys.
//! - `sst`: point reads that hit and that miss, and a full forward `SstIter` scan, of a file
//!   written with `SstWriter`'s defaults through `RealFs` under cargo's target directory;
//!   the page cache is warm, so this measures the positional-read, checksum and decode path,
//!   not the disk.
//! - `merge`: the place for merge iteration once the merge iterator exists.
//!
//! Keys and values come from a fixed seed, so every run measures the same data. Run with
//! `cargo bench -p popdb-bench --bench lsm` (append a filter such as `-- sst/` to run a
//! subset). Benchmarks whose name ends in `_100k` time one pass over all 100,000 entries per
//! iteration; divide by 100,000 for the time per entry (criterion also prints it as
//! throughput).

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use criterion::{
    BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main, measurement::WallTime,
};
use popdb_io::{FileSystem, OpenOptions, RealFs};
use popdb_lsm::{
    Block, BlockBuilder, BloomBuilder, BloomFilter, Direction, InternalKey, LSN_MAX, Memtable,
    Progress, SstReader, SstWriter, SstWriterOptions, Tree, TreeOptions, ValueKind,
};
use popdb_testkit::Rng;
use tempfile::TempDir;

/// Bytes of every user key (db_bench's default).
const KEY_SIZE: usize = 16;
/// Bytes of every value (db_bench's default).
const VALUE_SIZE: usize = 100;
/// Entries in the memtable, the SST and the bloom filter.
const ENTRY_COUNT: usize = 100_000;
const SEED_PRESENT: u64 = 0x0b5e_55ed;
const SEED_ABSENT: u64 = 0xab5e_0000;

/// The keys and values every benchmark draws from.
struct Data {
    /// Distinct present keys, in the (random) order they are inserted.
    keys: Vec<Vec<u8>>,
    /// The present keys again, shuffled, so that probes do not follow the insertion order
    /// (and with it the order the allocator laid the memtable's nodes out in).
    present: Vec<Vec<u8>>,
    /// `values[i]` belongs to `keys[i]`.
    values: Vec<Vec<u8>>,
    /// Indexes into `keys` in ascending key order.
    sorted: Vec<usize>,
    /// Keys none of which is in `keys`, for misses.
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
        let mut sorted: Vec<usize> = (0..ENTRY_COUNT).collect();
        sorted.sort_unstable_by(|&a, &b| keys[a].cmp(&keys[b]));
        assert!(
            sorted.windows(2).all(|w| keys[w[0]] != keys[w[1]]),
            "present keys must be distinct"
        );
        let mut present = keys.clone();
        shuffle(&mut present, SEED_PRESENT ^ 2);
        let absent = random_keys(SEED_ABSENT, ENTRY_COUNT);
        assert!(
            absent
                .iter()
                .all(|k| sorted.binary_search_by(|&i| keys[i].cmp(k)).is_err()),
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
    (0..count)
        .map(|_| {
            let key = format!("{:016x}", rng.next()).into_bytes();
            assert_eq!(key.len(), KEY_SIZE);
            key
        })
        .collect()
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

/// Applies every key, one batch (and LSN) each, in the data's random order.
fn fill_memtable(memtable: &Memtable, data: &Data) {
    for (i, (key, value)) in data.keys.iter().zip(&data.values).enumerate() {
        memtable.apply(i as u64 + 1, &[(key, Some(value))]);
    }
}

/// A group for whole passes over `ENTRY_COUNT` entries: one iteration takes tens of
/// milliseconds, so criterion takes few samples of one iteration each.
fn pass_group<'c>(c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .throughput(Throughput::Elements(ENTRY_COUNT as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10);
    group
}

fn memtable(c: &mut Criterion) {
    let data = data();
    let mut group = pass_group(c, "memtable");
    group.bench_function("insert_100k", |b| {
        b.iter_batched(
            Memtable::new,
            |memtable| {
                fill_memtable(&memtable, data);
                // Returned, so that dropping it falls outside the timed region.
                memtable
            },
            BatchSize::PerIteration,
        );
    });

    let memtable = Memtable::new();
    fill_memtable(&memtable, data);
    assert_eq!(memtable.len(), ENTRY_COUNT);
    group.bench_function("scan_100k", |b| {
        b.iter(|| {
            let mut count = 0;
            for entry in memtable.range(.., LSN_MAX) {
                black_box(entry.value());
                count += 1;
            }
            assert_eq!(count, ENTRY_COUNT);
        });
    });
    group.finish();

    let mut group = c.benchmark_group("memtable");
    let mut next = cycle(&data.present);
    group.bench_function("get_hit", |b| {
        b.iter(|| black_box(memtable.get(next(), LSN_MAX)));
    });
    let mut next = cycle(&data.absent);
    group.bench_function("get_miss", |b| {
        b.iter(|| black_box(memtable.get(next(), LSN_MAX)));
    });
    group.finish();
}

/// One data block as `SstWriter` cuts them: consecutive keys from the middle of the sorted
/// data until the block reaches the default block size. Returns the block's bytes and the
/// seek key of each of its entries.
fn data_block(data: &Data) -> (Vec<u8>, Vec<Vec<u8>>) {
    let block_size = SstWriterOptions::default().block_size;
    let mut builder = BlockBuilder::new(SstWriterOptions::default().restart_interval);
    let mut targets = Vec::new();
    for &i in &data.sorted[ENTRY_COUNT / 2..] {
        let key = InternalKey::new(&data.keys[i], i as u64 + 1, ValueKind::Put);
        builder.add(key.encoded(), &data.values[i]);
        let target = InternalKey::seek_key(&data.keys[i], LSN_MAX);
        targets.push(target.encoded().to_vec());
        if builder.size_estimate() >= block_size {
            break;
        }
    }
    // Probe in a scattered order, not the block's.
    shuffle(&mut targets, SEED_PRESENT ^ 3);
    (builder.finish(), targets)
}

fn block(c: &mut Criterion) {
    let (bytes, targets) = data_block(data());
    let block = Block::decode(&bytes).expect("the builder's block decodes");
    let mut group = c.benchmark_group("block");
    group.bench_function("decode", |b| {
        b.iter(|| black_box(Block::decode(black_box(&bytes)).expect("the block decodes")));
    });

    let mut next = cycle(&targets);
    let mut cursor = block.iter();
    group.bench_function("seek", |b| {
        b.iter(|| {
            cursor.seek(next()).expect("the block seeks");
            black_box(cursor.value());
        });
    });
    let mut next = cycle(&targets);
    group.bench_function("seek_new_cursor", |b| {
        b.iter(|| {
            let mut cursor = block.iter();
            cursor.seek(next()).expect("the block seeks");
            black_box(cursor.value());
        });
    });
    group.finish();
}

fn bloom(c: &mut Criterion) {
    let data = data();
    let mut builder = BloomBuilder::default();
    for key in &data.keys {
        builder.add_key(key);
    }
    let bytes = builder.finish();
    let filter = BloomFilter::decode(&bytes).expect("the builder's filter decodes");
    assert!(
        data.keys.iter().all(|k| filter.may_contain(k)),
        "a bloom filter has no false negatives"
    );
    let false_positives = data.absent.iter().filter(|k| filter.may_contain(k)).count();
    println!(
        "bloom: {} bytes, {} probes, {false_positives} false positives in {ENTRY_COUNT} misses",
        bytes.len(),
        filter.probes()
    );

    let mut group = c.benchmark_group("bloom");
    let mut next = cycle(&data.present);
    group.bench_function("probe_hit", |b| {
        b.iter(|| black_box(filter.may_contain(next())));
    });
    let mut next = cycle(&data.absent);
    group.bench_function("probe_miss", |b| {
        b.iter(|| black_box(filter.may_contain(next())));
    });
    group.finish();
}

/// An SST holding every key once, on a real file system; the directory goes on drop.
struct SstFixture {
    reader: SstReader,
    _dir: TempDir,
}

fn sst_fixture(data: &Data) -> SstFixture {
    let dir = tempfile::Builder::new()
        .prefix("popdb-bench-lsm-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a scratch directory under the target directory");
    let path = dir.path().join("000001.sst");
    let fs = RealFs::without_io_uring();
    let file = fs
        .open(&path, OpenOptions::create_new())
        .expect("create the SST");
    let mut writer = SstWriter::new(file, SstWriterOptions::default());
    for &i in &data.sorted {
        let key = InternalKey::new(&data.keys[i], i as u64 + 1, ValueKind::Put);
        writer.add(&key, &data.values[i]).expect("write the SST");
    }
    let summary = writer.finish().expect("finish the SST");
    let file = fs
        .open(&path, OpenOptions::read_only())
        .expect("open the SST");
    let reader = SstReader::open(file).expect("the written SST opens");
    println!(
        "sst: {} bytes in {} data blocks",
        summary.file_size, summary.data_blocks
    );
    SstFixture { reader, _dir: dir }
}

fn sst(c: &mut Criterion) {
    let data = data();
    let fixture = sst_fixture(data);
    let reader = &fixture.reader;

    let mut group = c.benchmark_group("sst");
    let mut next = cycle(&data.present);
    group.bench_function("get_hit", |b| {
        b.iter(|| black_box(reader.get(next(), LSN_MAX).expect("the SST reads")));
    });
    let mut next = cycle(&data.absent);
    group.bench_function("get_miss", |b| {
        b.iter(|| black_box(reader.get(next(), LSN_MAX).expect("the SST reads")));
    });
    group.finish();

    let mut group = pass_group(c, "sst");
    group.bench_function("scan_100k", |b| {
        b.iter(|| {
            let mut it = reader.iter();
            it.seek_to_first().expect("the SST reads");
            let mut count = 0;
            while it.valid() {
                black_box((it.key(), it.value()));
                count += 1;
                it.next().expect("the SST reads");
            }
            assert_eq!(count, ENTRY_COUNT);
        });
    });
    group.finish();
}

/// Merge iteration: a full pass, each way, over a tree's read view whose `ENTRY_COUNT`
/// entries are spread over the memtable, L0 files and L1 (the merge of every source, filtered
/// to the newest version per key), named `merge/scan_100k` and `merge/scan_rev_100k`.
fn merge(c: &mut Criterion) {
    let data = data();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fs: popdb_io::FsRef = std::sync::Arc::new(RealFs::new());
    let options = TreeOptions {
        memtable_size_max: 2 * 1024 * 1024,
        l0_compaction_trigger: 3,
        ..TreeOptions::default()
    };
    let tree = Tree::open(fs, dir.path(), options).expect("the tree opens");
    for (i, (key, value)) in data.keys.iter().zip(&data.values).enumerate() {
        tree.apply(i as u64 + 1, &[(key, Some(value))])
            .expect("the tree applies");
        while tree.maintenance_step().expect("maintenance") != Progress::Idle {}
    }
    let stats = tree.stats();
    println!(
        "merge: L0 {} files, L1 {} files, memtable {} bytes",
        stats.levels[0].files, stats.levels[1].files, stats.memtable_bytes
    );
    let view = tree.read_view();
    let mut group = pass_group(c, "merge");
    for (name, direction) in [
        ("scan_100k", Direction::Forward),
        ("scan_rev_100k", Direction::Backward),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let all = (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded);
                let mut it = view.scan(all, direction).expect("the view scans");
                let mut count = 0;
                while it.valid() {
                    black_box((it.key(), it.value()));
                    count += 1;
                    it.next().expect("the view scans");
                }
                assert_eq!(count, ENTRY_COUNT);
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = lsm;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = memtable, block, bloom, sst, merge
}
criterion_main!(lsm);
