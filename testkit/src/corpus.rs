//! Replaying a fuzz target's committed inputs as an ordinary test.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use popdb_io::{FileSystem, OpenOptions, RealFs};

/// `fuzz/<kind>/<target>` in the workspace (`kind` is `corpus` or `regressions`).
pub fn fuzz_dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target)
}

/// Every file in `dir` (hidden ones skipped), by name in order; none if it does not exist.
///
/// # Panics
/// On an I/O error: a test cannot go on without its inputs.
pub fn read_inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let fs = RealFs::new();
    if !fs.exists(dir).expect("stat the corpus folder") {
        return Vec::new();
    }
    let mut names: Vec<String> = fs
        .read_dir(dir)
        .expect("list the corpus folder")
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let file = fs
                .open(&dir.join(&name), OpenOptions::read_only())
                .expect("open input");
            let len = file.len().expect("stat input");
            let mut bytes = vec![0u8; usize::try_from(len).expect("input fits in memory")];
            file.read_exact_at(&mut bytes, 0).expect("read input");
            (name, bytes)
        })
        .collect()
}

/// Runs `check` on `data`: the panic message if it panicked.
pub fn run_check(check: fn(&[u8]), data: &[u8]) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| check(data)))
        .err()
        .map(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_default()
        })
}

/// Runs `check` on every input of `fuzz/<kind>/<target>`; returns how many there were.
///
/// # Panics
/// If any input fails, naming each one and why.
pub fn replay_corpus(kind: &str, target: &str, check: fn(&[u8])) -> usize {
    let dir = fuzz_dir(kind, target);
    let inputs = read_inputs(&dir);
    let failures: Vec<String> = inputs
        .iter()
        .filter_map(|(name, data)| run_check(check, data).map(|why| format!("{name}: {why}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} inputs in {} failed:\n{}",
        failures.len(),
        inputs.len(),
        dir.display(),
        failures.join("\n")
    );
    inputs.len()
}

/// What [`replay_mutations`] feeds a target.
#[derive(Clone, Copy, Debug)]
pub struct Mutations {
    /// The generator's seed, printed with any failure.
    pub seed: u64,
    /// How many inputs to try.
    pub count: u64,
    /// The largest random (not mutated) input, in bytes; one input in eight is random,
    /// half of those at most an eighth of this long.
    pub random_len_max: usize,
}

/// Runs `check` on `plan.count` inputs: mostly `mutate`'s changes to the target's committed
/// corpus and regressions, some plain random bytes.
///
/// # Panics
/// On the first input that fails, with its index, the seed and the input's first bytes; or
/// if the target has no committed inputs.
pub fn replay_mutations(
    target: &str,
    check: fn(&[u8]),
    plan: Mutations,
    mut mutate: impl FnMut(&mut crate::Rng, &[(String, Vec<u8>)]) -> Vec<u8>,
) {
    let mut corpus = read_inputs(&fuzz_dir("corpus", target));
    corpus.extend(read_inputs(&fuzz_dir("regressions", target)));
    assert!(!corpus.is_empty(), "{target} has no committed inputs");
    let mut rng = crate::Rng(plan.seed);
    for i in 0..plan.count {
        let data = if rng.chance(8) {
            let len_max = if rng.chance(2) {
                plan.random_len_max / 8
            } else {
                plan.random_len_max
            };
            let len = rng.index(len_max.max(1));
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            mutate(&mut rng, &corpus)
        };
        if let Some(why) = run_check(check, &data) {
            panic!(
                "{target}: mutation {i} (seed {:#x}) failed: {why}\ninput ({} bytes): {:02x?}",
                plan.seed,
                data.len(),
                &data[..data.len().min(256)]
            );
        }
    }
}
