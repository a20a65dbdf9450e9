//! A damaged tree file gives a `Corruption` error naming a page of the file, at open or at
//! the read that meets the damage, or the exact contents of a checkpoint: never a panic and
//! never wrong data (the contract). The file is a real one, written by the tree at
//! 512-byte pages: a few thousand keys, overflow values, five checkpoints with overwrites
//! and deletes between them, so that a free list and pages only the older meta reaches
//! exist.
//!
//! Each case flips bits in a copy of the file, writes it to a fresh simulated file system,
//! opens the tree and reads everything (scans both ways, a get of every key ever written)
//! against the model. Three outcomes are allowed:
//! - clean: the latest checkpoint's contents exactly (the flip hit a free page, a page only
//!   the older meta reaches, or the older meta itself);
//! - fell back: the flip hit the newest meta, which no longer decodes, so the tree opened
//!   at the other meta's checkpoint, and reads that checkpoint's contents exactly;
//! - corruption: a `Corruption` error naming a page inside the file.
//!
//! Flipped: every bit of both metas' fields, a sample of their zero padding, every bit of
//! the header of one page of each type, one bit of every page's header, and a few thousand
//! seeded random bits anywhere. Truncations are checked apart. Failures are collected and
//! printed with the offset and mask that reproduce them, then fail the test.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use popdb_btree::internals::{HEADER_SIZE, META_SIZE, PAGE_TYPE_AT};
use popdb_btree::{
    Direction, Error, FILE_NAME, PageSize, ReadView, Tree, TreeOptions, recover_meta,
};
use popdb_io::{FsRef, OpenOptions, SimFs};
use popdb_testkit::Rng;

const DIR: &str = "/corrupt";
const PAGE_SIZE: u32 = 512;
const KEYS_COUNT: u64 = 2_000;
/// Random single-bit flips anywhere in the file, beside the systematic ones.
const RANDOM_FLIPS_COUNT: usize = 2_000;

/// Live key -> (value, version) at one checkpoint.
type Model = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

/// A written file and what it must read as.
struct Fixture {
    file: Vec<u8>,
    /// The contents at each checkpoint, by LSN.
    checkpoints: BTreeMap<u64, Model>,
    /// Every key ever written (deleted ones must read as absent).
    keys: BTreeSet<Vec<u8>>,
    /// The LSNs of the newest meta's and the other meta's checkpoints.
    latest: u64,
    previous: u64,
    /// The newest meta's page (0 or 1).
    latest_meta_page: usize,
}

fn options() -> TreeOptions {
    TreeOptions {
        page_size: PageSize::new(PAGE_SIZE).unwrap(),
        roots_retained: 4,
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("k{i:05}").into_bytes()
}

fn value(rng: &mut Rng, size: PageSize) -> Vec<u8> {
    let len = if rng.chance(40) {
        // Too large for a leaf: an overflow chain of one to four pages.
        size.leaf_payload_max() + 1 + rng.index(3 * size.bytes())
    } else {
        4 + rng.index(36)
    };
    vec![rng.next() as u8; len]
}

/// Writes the tree: every key, then four rounds of overwrites and deletes, a checkpoint
/// after each stage.
fn build() -> Fixture {
    let sim = SimFs::new(3);
    let fs: FsRef = Arc::new(sim.clone());
    let tree = Tree::open(fs, Path::new(DIR), options()).unwrap();
    let size = tree.page_size();
    let mut rng = Rng(0xc0_44_u64);
    let mut model = Model::new();
    let mut keys = BTreeSet::new();
    let mut checkpoints = BTreeMap::new();
    let mut lsn = 0;
    let mut apply = |tree: &Tree, model: &mut Model, batch: Vec<(Vec<u8>, Option<Vec<u8>>)>| {
        lsn += 1;
        tree.apply(lsn, &batch).unwrap();
        for (k, v) in batch {
            keys.insert(k.clone());
            match v {
                Some(v) => model.insert(k, (v, lsn)),
                None => model.remove(&k),
            };
        }
        lsn
    };
    for chunk in 0..10 {
        let batch = (chunk * 200..(chunk + 1) * 200)
            .map(|i| (key(i), Some(value(&mut rng, size))))
            .collect();
        apply(&tree, &mut model, batch);
    }
    for round in 0..5 {
        if round > 0 {
            for _ in 0..2 {
                let batch = (0..150)
                    .map(|_| {
                        let k = key(rng.below(KEYS_COUNT + 100));
                        let v = (!rng.chance(4)).then(|| value(&mut rng, size));
                        (k, v)
                    })
                    .collect();
                apply(&tree, &mut model, batch);
            }
        }
        let at = tree.last_applied().unwrap();
        tree.checkpoint(at).unwrap();
        checkpoints.insert(at, model.clone());
    }
    tree.check_invariants();
    let stats = tree.stats();
    assert!(stats.free_pages > 0, "no free list: {stats:?}");
    drop(tree);
    let file = sim.read_durable(&Path::new(DIR).join(FILE_NAME)).unwrap();
    let choice = recover_meta(&file).unwrap();
    let latest = choice.current.watermark.unwrap();
    let previous = choice.previous.unwrap().watermark.unwrap();
    assert_ne!(checkpoints[&latest], checkpoints[&previous]);
    Fixture {
        file,
        checkpoints,
        keys,
        latest,
        previous,
        latest_meta_page: usize::try_from(choice.current.page_id().0).unwrap(),
    }
}

/// What a damaged file gave.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Clean,
    FellBack,
    Corruption { page: u64, what: &'static str },
}

/// Opens `file` on a fresh file system and reads everything. `Err` names wrong data, a
/// panic or an error that is not a corruption.
fn open_and_read(fixture: &Fixture, file: &[u8]) -> Result<Outcome, String> {
    let result = catch_unwind(AssertUnwindSafe(|| open_and_read_inner(fixture, file)));
    match result {
        Ok(Ok(Ok(outcome))) => Ok(outcome),
        Ok(Ok(Err(wrong))) => Err(format!("wrong data: {wrong}")),
        Ok(Err(Error::Corruption(c))) => Ok(Outcome::Corruption {
            page: c.page_id.0,
            what: c.what,
        }),
        Ok(Err(other)) => Err(format!("not a corruption error: {other}")),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()));
            Err(format!("panic: {}", why.unwrap_or_default()))
        }
    }
}

fn open_and_read_inner(fixture: &Fixture, file: &[u8]) -> Result<Result<Outcome, String>, Error> {
    let fs: FsRef = Arc::new(SimFs::new(1));
    fs.create_dir_all(Path::new(DIR)).unwrap();
    let handle = fs
        .open(&Path::new(DIR).join(FILE_NAME), OpenOptions::create())
        .unwrap();
    handle.write_all_at(file, 0).unwrap();
    handle.sync_all().unwrap();
    fs.sync_dir(Path::new(DIR)).unwrap();
    drop(handle);
    let tree = Tree::open(fs, Path::new(DIR), options())?;
    let view = tree.read_view();
    let at = view.lsn().unwrap_or(0);
    let Some(model) = fixture.checkpoints.get(&at) else {
        return Ok(Err(format!("opened at lsn {at}, no checkpoint's")));
    };
    let outcome = if at == fixture.latest {
        Outcome::Clean
    } else if at == fixture.previous && tree.recovery().damaged_meta.is_some() {
        Outcome::FellBack
    } else {
        return Ok(Err(format!(
            "opened at lsn {at}, neither meta's checkpoint"
        )));
    };
    Ok(read_all(&view, fixture, model)?.map(|()| outcome))
}

/// Reads every key and both scans; the inner `Err` describes the first wrong datum.
fn read_all(
    view: &ReadView,
    fixture: &Fixture,
    model: &Model,
) -> Result<Result<(), String>, Error> {
    let mut value = Vec::new();
    for key in &fixture.keys {
        let version = view.get_into(key, &mut value)?;
        let expected = model.get(key).map(|(v, version)| (v.as_slice(), *version));
        if version.map(|v| (value.as_slice(), v)) != expected {
            return Ok(Err(format!("get {key:?} returned {version:?}")));
        }
    }
    let all = (Bound::Unbounded, Bound::Unbounded);
    for direction in [Direction::Forward, Direction::Backward] {
        let mut it = view.scan(all.clone(), direction)?;
        let mut rows = Vec::with_capacity(model.len());
        while it.valid() {
            if rows.len() > model.len() {
                return Ok(Err(format!("scan {direction:?} is too long")));
            }
            rows.push((it.key().to_vec(), it.value().to_vec(), it.version()));
            it.next()?;
        }
        if direction == Direction::Backward {
            rows.reverse();
        }
        let expected = model
            .iter()
            .map(|(k, (v, version))| (k.clone(), v.clone(), *version));
        if !rows.into_iter().eq(expected) {
            return Ok(Err(format!("scan {direction:?} differs from the model")));
        }
    }
    Ok(Ok(()))
}

/// Outcome counts and failures of many cases.
#[derive(Default)]
struct Tally {
    clean: usize,
    /// Clean, with the older meta the damaged one.
    older_meta: usize,
    fell_back: usize,
    corruption: usize,
    /// Corruption errors naming the page the flip was in.
    named_flipped_page: usize,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, fixture: &Fixture, at: usize, mask: u8, outcome: Result<Outcome, String>) {
        let size = PAGE_SIZE as usize;
        let pages = (fixture.file.len() / size) as u64;
        let flipped_page = at / size;
        let case = format!("flip byte {at} (page {flipped_page}) with mask {mask:#04x}");
        match outcome {
            Ok(Outcome::Clean) => {
                self.clean += 1;
                self.older_meta += usize::from(flipped_page == 1 - fixture.latest_meta_page);
            }
            Ok(Outcome::FellBack) if flipped_page == fixture.latest_meta_page => {
                self.fell_back += 1;
            }
            Ok(Outcome::FellBack) => self.failures.push(format!(
                "{case}: fell back, though the newest meta is intact"
            )),
            Ok(Outcome::Corruption { page, what }) => {
                self.corruption += 1;
                self.named_flipped_page += usize::from(page == flipped_page as u64);
                if page >= pages {
                    self.failures.push(format!(
                        "{case}: the error ({what}) names page {page}, outside the file's {pages}"
                    ));
                }
            }
            Err(why) => self.failures.push(format!("{case}: {why}")),
        }
    }
}

/// The flips to try: (byte offset, mask), no case twice.
fn flips(fixture: &Fixture) -> Vec<(usize, u8)> {
    let size = PAGE_SIZE as usize;
    let file = &fixture.file;
    let pages = file.len() / size;
    let mut out = Vec::new();
    let every_bit = |out: &mut Vec<(usize, u8)>, range: std::ops::Range<usize>| {
        for at in range {
            out.extend((0..8).map(|bit| (at, 1u8 << bit)));
        }
    };
    for meta in 0..2 {
        every_bit(&mut out, meta * size..meta * size + META_SIZE);
        out.extend(
            (meta * size + META_SIZE..(meta + 1) * size)
                .step_by(13)
                .map(|at| (at, 0x10)),
        );
    }
    // Every header bit of the first page of each type.
    let mut types_seen = HashSet::new();
    for page in 2..pages {
        if types_seen.insert(file[page * size + PAGE_TYPE_AT]) {
            every_bit(&mut out, page * size..page * size + HEADER_SIZE);
        }
    }
    let mut rng = Rng(0xf1_1b5_u64);
    for page in 2..pages {
        out.push((page * size + rng.index(HEADER_SIZE), 1 << rng.index(8)));
    }
    for _ in 0..RANDOM_FLIPS_COUNT {
        out.push((rng.index(file.len()), 1 << rng.index(8)));
    }
    let mut seen = HashSet::new();
    out.retain(|flip| seen.insert(*flip));
    out
}

#[test]
fn tree_corruption_flips_give_an_error_a_fallback_or_the_exact_contents() {
    let fixture = build();
    assert_eq!(open_and_read(&fixture, &fixture.file), Ok(Outcome::Clean));
    let flips = flips(&fixture);
    let mut tally = Tally::default();
    for &(at, mask) in &flips {
        let mut file = fixture.file.clone();
        file[at] ^= mask;
        tally.record(&fixture, at, mask, open_and_read(&fixture, &file));
    }
    println!(
        "{} flips over a file of {} pages: {} clean ({} of them in the older meta), {} fell \
         back to the older meta, {} corruption errors ({} naming the flipped page), {} \
         failures",
        flips.len(),
        fixture.file.len() / PAGE_SIZE as usize,
        tally.clean,
        tally.older_meta,
        tally.fell_back,
        tally.corruption,
        tally.named_flipped_page,
        tally.failures.len()
    );
    assert!(
        tally.failures.is_empty(),
        "{} failures:\n{}",
        tally.failures.len(),
        tally.failures.join("\n")
    );
    // Each outcome must occur, or the cases do not reach what they are meant to.
    assert!(tally.fell_back > 0, "no flip fell back to the older meta");
    assert!(
        tally.older_meta > 0,
        "no flip of the older meta was ignored"
    );
    assert!(tally.corruption > 0, "no flip was caught");
}

#[test]
fn tree_corruption_truncations_give_an_error_naming_a_page() {
    let fixture = build();
    let size = PAGE_SIZE as usize;
    let pages = fixture.file.len() / size;
    let mut lengths: Vec<usize> = (1..pages).map(|p| p * size).collect();
    lengths.extend([
        1,
        100,
        META_SIZE,
        size + 7,
        2 * size + 1,
        fixture.file.len() - 1,
    ]);
    // The newest meta's tree needs this many bytes; a file at least that long is whole.
    let needed =
        usize::try_from(recover_meta(&fixture.file).unwrap().current.page_count).unwrap() * size;
    let mut failures = Vec::new();
    for len in lengths {
        match open_and_read(&fixture, &fixture.file[..len]) {
            Ok(Outcome::Corruption { page, .. }) if page < pages as u64 => {}
            Ok(Outcome::Clean) if len >= needed => {}
            other => failures.push(format!("truncated to {len} bytes: {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
