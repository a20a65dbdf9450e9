//! Replays fuzz target `btree_file_open` as an ordinary test: every file of its committed
//! corpus (each must open and read without an error) and crash regressions, then a few
//! thousand seeded mutations of them: bit flips, interesting integers in page headers and
//! meta fields, truncations, splices, whole pages copied over others (a misdirected write)
//! or zeroed, the metas swapped, and the control byte's re-seal and write bits.
//!
//! The target's body is `fuzz_file_open` in btree/src/fuzz_open.rs, reached through the
//! `internals` feature; the libFuzzer wrapper is fuzz/fuzz_targets/btree_file_open.rs.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::cell::Cell;

use popdb_btree::internals::{
    CONTROL_RESEAL, CONTROL_RESEAL_REFS, CONTROL_WRITE, HEADER_SIZE, META_SIZE, fuzz_file_open,
};
use popdb_btree::{Meta, PageId, PageSize};
use popdb_testkit::{Mutations, Rng, fuzz_dir, read_inputs, replay_corpus, replay_mutations};

const TARGET: &str = "btree_file_open";
const MUTATIONS_COUNT: u64 = 10_000;

thread_local! {
    /// Inputs checked on this thread: opened, read without an error, checkpointed.
    static OUTCOMES: Cell<[u64; 4]> = const { Cell::new([0; 4]) };
}

/// The target's assertion: nothing panics, and reads of the one file agree.
fn check(data: &[u8]) {
    let summary = fuzz_file_open(data);
    OUTCOMES.with(|o| {
        let [count, opened, clean, checkpointed] = o.get();
        o.set([
            count + 1,
            opened + u64::from(summary.opened),
            clean + u64::from(summary.opened && summary.errors == 0),
            checkpointed + u64::from(summary.checkpointed),
        ]);
    });
    assert!(
        summary.disagreements.is_empty(),
        "wrong data: {:?}",
        summary.disagreements
    );
}

#[test]
fn btree_file_open_corpus_replays_clean() {
    let count = replay_corpus("corpus", TARGET, check);
    assert!(count >= 10, "the seed corpus is missing ({count} files)");
}

#[test]
fn btree_file_open_corpus_files_open_and_read_without_errors() {
    for (name, data) in read_inputs(&fuzz_dir("corpus", TARGET)) {
        let summary = fuzz_file_open(&data);
        assert!(summary.opened, "{name}: {summary:?}");
        assert_eq!(summary.errors, 0, "{name}: {summary:?}");
        if data[0] & CONTROL_WRITE != 0 {
            assert!(summary.checkpointed, "{name}: {summary:?}");
        }
    }
}

/// The deep re-seal must carry a changed value past both copies of every checksum, or the
/// fuzzer's inputs with that bit stop at the first parent reference.
#[test]
fn btree_file_open_deep_reseal_reaches_past_parent_checksums() {
    let (_, data) = read_inputs(&fuzz_dir("corpus", TARGET))
        .into_iter()
        .find(|(name, _)| name == "small-512")
        .unwrap();
    let at = data.windows(8).position(|w| w == b"vvvvvvvv").unwrap();
    for (c0, errors) in [
        (0, true),
        (CONTROL_RESEAL, true),
        (CONTROL_RESEAL_REFS, false),
    ] {
        let mut changed = data.clone();
        changed[0] = c0 | CONTROL_WRITE;
        changed[at] = b'w';
        let summary = fuzz_file_open(&changed);
        assert!(summary.opened, "{summary:?}");
        assert_eq!(summary.errors > 0, errors, "control {c0}: {summary:?}");
        assert!(summary.disagreements.is_empty(), "{summary:?}");
    }
}

#[test]
fn btree_file_open_regressions_replay_clean() {
    replay_corpus("regressions", TARGET, check);
}

const INTERESTING: [u64; 10] = [
    0,
    1,
    2,
    3,
    0x1ff,
    0x200,
    0xffff,
    u32::MAX as u64,
    (1 << 40) - 1,
    u64::MAX,
];

/// The page size the file's meta 0 claims, or 512.
fn page_size(data: &[u8]) -> usize {
    Meta::peek_page_size(data.get(1..).unwrap_or_default(), PageId(0))
        .unwrap_or(PageSize::new(512).unwrap())
        .bytes()
}

/// An offset inside the file (past the control byte), biased to headers and meta fields.
fn offset(rng: &mut Rng, data: &[u8], size: usize) -> usize {
    let len = data.len() - 1;
    let pages = len.div_ceil(size);
    let within = match rng.index(3) {
        0 => rng.index(HEADER_SIZE),
        1 => rng.index(META_SIZE),
        _ => rng.index(size),
    };
    let at = if rng.chance(3) {
        0
    } else {
        rng.index(pages) * size
    };
    1 + (at + within).min(len - 1)
}

fn mutate_page(rng: &mut Rng, data: &mut [u8], size: usize) {
    let pages = (data.len() - 1) / size;
    if pages < 2 {
        return;
    }
    let (source, target) = (rng.index(pages), rng.index(pages));
    let start = |page: usize| 1 + page * size;
    match rng.index(3) {
        0 => data.copy_within(start(source)..start(source) + size, start(target)),
        1 => data[start(target)..start(target) + size].fill(0),
        _ => {
            // The metas swapped: each lands in the other's slot.
            let (head, tail) = data[1..].split_at_mut(size);
            head.swap_with_slice(&mut tail[..size]);
        }
    }
}

fn mutate_once(rng: &mut Rng, corpus: &[(String, Vec<u8>)], data: &mut Vec<u8>) {
    let size = page_size(data);
    let len = data.len();
    match rng.index(10) {
        0..=2 => {
            let at = offset(rng, data, size);
            data[at] ^= 1 << rng.index(8);
        }
        3 | 4 => {
            let at = offset(rng, data, size);
            let v = INTERESTING[rng.index(INTERESTING.len())].to_le_bytes();
            let width = [1, 2, 4, 8][rng.index(4)];
            let end = (at + width).min(len);
            data[at..end].copy_from_slice(&v[..end - at]);
        }
        5 => data.truncate(1 + rng.index(len - 1)),
        6 => {
            let (_, other) = &corpus[rng.index(corpus.len())];
            let cut = 1 + rng.index(len - 1);
            let from = 1 + rng.index(other.len() - 1);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        7 | 8 => mutate_page(rng, data, size),
        _ => data[0] ^= CONTROL_WRITE,
    }
}

fn mutate(rng: &mut Rng, corpus: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut data = corpus[rng.index(corpus.len())].1.clone();
    for _ in 0..=rng.index(3) {
        if data.len() < 2 {
            data.resize(2, 0);
        }
        mutate_once(rng, corpus, &mut data);
    }
    // A third re-seal the pages, a third the references too, so that they reach the checks
    // behind the pages' own checksums and behind their parents' copies.
    data[0] &= !(CONTROL_RESEAL | CONTROL_RESEAL_REFS);
    data[0] |= [0, CONTROL_RESEAL, CONTROL_RESEAL_REFS][rng.index(3)];
    data
}

#[test]
fn btree_file_open_mutations_of_the_corpus_replay_clean() {
    let plan = Mutations {
        seed: 0xf11e_0be7_u64,
        count: MUTATIONS_COUNT,
        random_len_max: 4096,
    };
    replay_mutations(TARGET, check, plan, mutate);
    let [count, opened, clean, checkpointed] = OUTCOMES.with(Cell::get);
    println!(
        "{count} inputs: {opened} opened, {clean} read without an error, {checkpointed} \
         took a checkpoint"
    );
    // The mutations must reach past open, or they test little.
    assert!(opened > count / 4, "{opened} of {count} opened");
}
