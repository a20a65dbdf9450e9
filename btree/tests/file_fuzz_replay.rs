//! Replays fuzz target `btree_file_open` as an ordinary test: every file of its committed
//! corpus (each must open and read without an error) and crash regressions, then a few
//! thousand seeded mutations of them: bit flips, interesting integers in page headers and
//! meta fields, truncations, splices, whole pages copied over others (a misdirected write)
//! or zeroed, the metas swapped, and the control byte's re-seal and write bits.
//!
//! The target's body is `fuzz_file_open` in btree/src/fuzz_open.rs, reached through the
//! `internals` feature; the libFuzzer wrapper is fuzz/fuzz_targets/btree_file_open.rs.
//!
//! Regressions the tree does not pass yet are listed in [`KNOWN_FAILING`] and
//! [`KNOWN_WRONG_DATA`]: the test checks that they still fail, so that a fix shows up as a
//! failure here asking for the name to be removed (then the input is replayed like the
//! others). Mutations are not drawn from the known failing ones.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::cell::{Cell, RefCell};
use std::sync::Once;

use popdb_btree::internals::{
    CONTROL_RESEAL, CONTROL_RESEAL_REFS, CONTROL_WRITE, HEADER_SIZE, META_SIZE, fuzz_file_open,
};
use popdb_btree::{Meta, PageId, PageSize};
use popdb_testkit::{Rng, fuzz_dir, read_inputs, replay_corpus, run_check};

const TARGET: &str = "btree_file_open";
const MUTATIONS_COUNT: u64 = 10_000;
const MUTATIONS_SEED: u64 = 0xf11e_0be7;

/// Regressions that still panic. None now: each input below, found by this target, is
/// fixed and replays with the others (an error, never a panic or wrong data). Each is a
/// file whose every checksum is right, with `CONTROL_WRITE` set:
/// - `apply-entry-count-below-the-tree-underflows`: the newest meta of `small-512` says
///   `entry_count` 0 for a leaf of 12 entries; once a rebuilt leaf drops tombstones,
///   `Apply::run` panics at `expect("a tree holds the entries it counts")` (apply.rs).
/// - `apply-entry-count-max-overflows`: the newest meta says `entry_count` `u64::MAX`;
///   `entries + self.added` overflows in `Apply::run` (apply.rs).
/// - `checkpoint-txn-id-max-overflows`: the metas of `empty-512` with transaction ids
///   `u64::MAX - 1` and `u64::MAX`; `durable.meta.txn_id.0 + 1` overflows in
///   `checkpoint::plan`.
///
/// Two more come from inputs whose references the hook re-sealed (`CONTROL_RESEAL_REFS`
/// and `CONTROL_WRITE`), so every checksum of the file it opens is right too:
/// - `forged-leaf-keys-out-of-order-apply-panics`: each leaf is in order alone (a leaf
///   out of order in itself is a `Corruption` error), but a key lies outside its parent's
///   separators; reads do not check that, and when the apply merges the leaf with its
///   sibling (`Apply::merge_pair`, `pack_leaves`), `LeafBuilder::push` panics ("leaf keys
///   out of order", leaf_builder.rs). The same gap as [`KNOWN_WRONG_DATA`].
/// - `forged-free-list-names-a-live-leaf-checkpoint-panics`: branch 9 (the newest meta's
///   root) names leaf 2 as a child while the free list names page 2 as free. Open trusts
///   the free list, so a checkpoint reuses the live page: the next one writes a leaf whose
///   overflow reference names its own page, and `LeafBuilder::finish` panics ("overflow
///   names its own leaf", leaf_builder.rs, from `checkpoint::Planner::write_leaf`).
/// - `forged-free-list-names-a-live-child-checkpoint-panics` (found by libFuzzer): the same
///   trust: root branch 12 names page 16 as a child, the free list names it free, and the
///   checkpoint writes the new root at page 16; `BranchBuilder::finish` panics ("a branch
///   names itself as a child", branch_builder.rs, from `Planner::write_branch`).
/// - `forged-separators-out-of-order-checkpoint-panics` (libFuzzer, before the fixes):
///   root branch 12's first separator is `Key-00009` (0x4b) while its leftmost child holds
///   `key-00000` to `key-00008`; the checkpoint's `BranchBuilder::push` panicked
///   ("separators out of order", branch_builder.rs, from `Planner::write_branch`).
/// - `forged-branch-names-a-child-twice-checkpoint-panics` (libFuzzer, before the fixes):
///   root branch 12 names page 3 as two children; the checkpoint freed it twice and
///   `FreeListPage::encode` panicked on two equal entries (free_list.rs, from
///   `Planner::write_free_list`).
///
/// The fixes: counts saturate; the last transaction id is a `Corruption`; a rebuild refuses
/// entries out of order; a page's first read checks its keys against its parent's
/// separators; a checkpoint refuses to reuse a listed page the tree still reaches.
const KNOWN_FAILING: &[&str] = &[];

/// The panics of [`KNOWN_FAILING`], as (source file, message start): mutations that meet
/// one are counted and printed, not failed, until the bug is fixed. Any other panic fails.
const KNOWN_PANICS: &[(&str, &str)] = &[];

thread_local! {
    /// The source file of this thread's last panic.
    static PANIC_FILE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records each panic's source file for [`KNOWN_PANICS`], then reports it as before.
fn record_panic_files() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info.location().map(|l| l.file().to_string());
            PANIC_FILE.with(|f| *f.borrow_mut() = file.unwrap_or_default());
            previous(info);
        }));
    });
}

/// Regressions whose reads disagree (wrong data), on files forged with every reference
/// re-sealed (`CONTROL_RESEAL_REFS`, where the target does not assert agreement yet):
/// - `forged-leaf-key-outside-separators-get-misses`: a leaf holds a key above its parent's
///   next separator; a scan returns it out of order and a get does not find it.
const KNOWN_WRONG_DATA: &[&str] = &[];

thread_local! {
    /// Inputs checked on this thread: opened, read without an error, checkpointed.
    static OUTCOMES: Cell<[u64; 4]> = const { Cell::new([0; 4]) };
}

/// The target's assertion: nothing panics, and reads of the one file agree.
fn check(data: &[u8]) {
    let summary = fuzz_file_open(data);
    let wrong = summary.wrong_data().to_vec();
    OUTCOMES.with(|o| {
        let [count, opened, clean, checkpointed] = o.get();
        o.set([
            count + 1,
            opened + u64::from(summary.opened),
            clean + u64::from(summary.opened && summary.errors == 0),
            checkpointed + u64::from(summary.checkpointed),
        ]);
    });
    assert!(wrong.is_empty(), "wrong data: {wrong:?}");
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
fn btree_file_open_regressions_replay_clean_but_the_known_failing() {
    let inputs = read_inputs(&fuzz_dir("regressions", TARGET));
    for name in KNOWN_FAILING.iter().chain(KNOWN_WRONG_DATA) {
        assert!(
            inputs.iter().any(|(n, _)| n == name),
            "{name} is listed but missing"
        );
    }
    for (name, data) in &inputs {
        let failed = run_check(check, data);
        if KNOWN_FAILING.contains(&name.as_str()) {
            assert!(
                failed.is_some(),
                "{name} passes now: remove it from KNOWN_FAILING"
            );
        } else {
            assert_eq!(failed, None, "{name}");
        }
        if KNOWN_WRONG_DATA.contains(&name.as_str()) {
            let summary = fuzz_file_open(data);
            assert!(
                !summary.disagreements.is_empty(),
                "{name} reads consistently now: remove it from KNOWN_WRONG_DATA: {summary:?}"
            );
        }
    }
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
    // As popdb_testkit::replay_mutations, with the known failing regressions left out.
    let mut corpus = read_inputs(&fuzz_dir("corpus", TARGET));
    corpus.extend(
        read_inputs(&fuzz_dir("regressions", TARGET))
            .into_iter()
            .filter(|(name, _)| !KNOWN_FAILING.contains(&name.as_str())),
    );
    record_panic_files();
    let mut known = Vec::new();
    let mut rng = Rng(MUTATIONS_SEED);
    for i in 0..MUTATIONS_COUNT {
        let data = if rng.chance(8) {
            let len = rng.index(4096);
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            mutate(&mut rng, &corpus)
        };
        if let Some(why) = run_check(check, &data) {
            let file = PANIC_FILE.with(|f| f.borrow().clone());
            if KNOWN_PANICS
                .iter()
                .any(|(f, message)| file.ends_with(f) && why.starts_with(message))
            {
                known.push(format!("mutation {i}: {file}: {why}"));
                continue;
            }
            panic!(
                "{TARGET}: mutation {i} (seed {MUTATIONS_SEED:#x}) failed: {why}\ninput ({} \
                 bytes): {:02x?}",
                data.len(),
                &data[..data.len().min(256)]
            );
        }
    }
    let [count, opened, clean, checkpointed] = OUTCOMES.with(Cell::get);
    println!(
        "{count} inputs: {opened} opened, {clean} read without an error, {checkpointed} \
         took a checkpoint"
    );
    println!(
        "{} met a known panic (KNOWN_PANICS):\n{}",
        known.len(),
        known.join("\n")
    );
    // The mutations must reach past open, or they test little.
    assert!(opened > count / 4, "{opened} of {count} opened");
}
