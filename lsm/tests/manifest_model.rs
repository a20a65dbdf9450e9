//! Differential test of the manifest against a `ManifestState` model: random valid edits are
//! applied to the model and logged, invalid ones must be refused without harm, and the
//! manifest is reopened at random points (rotations happen often: the thresholds are tiny);
//! every reopen must give the model's state, and the directory must hold exactly the live
//! files.
//!
//! A failure prints its seed and the command that replays it (`MANIFEST_SEED=N`);
//! `MANIFEST_SEEDS=N` runs N seeds (default 200).

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod manifest_common;

use std::path::Path;

use manifest_common::{DIR, Draw, Rng, SeedGuard, fs_ref, seeds, sim};
use popdb_io::SimFs;
use popdb_lsm::{Error, Manifest, ManifestOptions, ManifestState};

const STEPS: usize = 150;

fn options(rng: &mut Rng) -> ManifestOptions {
    ManifestOptions {
        rotate_size: [0, 64, 512, 4096, 4 << 20][rng.index(5)],
        base_frame_size: [1, 100, 1000, 64 << 10][rng.index(4)],
    }
}

fn assert_dir_holds_live_files(fs: &SimFs, manifest: &Manifest) {
    let mut live = manifest.live_file_names();
    live.sort();
    assert_eq!(fs.file_names(Path::new(DIR)).unwrap(), live, "directory");
}

/// Runs one seed; returns how many rotations it saw and the files per level at the end.
fn run_seed(seed: u64) -> (u64, Vec<usize>) {
    let mut guard = SeedGuard::new(seed, "manifest_model");
    let mut rng = Rng(seed);
    let fs = sim(seed);
    let options = options(&mut rng);
    let mut manifest = Manifest::create_with(fs_ref(&fs), Path::new(DIR), options).unwrap();
    let mut model = ManifestState::default();
    let mut rotations = 0;
    for step in 0..STEPS {
        guard.what = format!("(step {step}, {options:?})");
        match rng.below(20) {
            0 => {
                drop(manifest);
                let (reopened, state, recovery) =
                    Manifest::open_with(fs_ref(&fs), Path::new(DIR), options).unwrap();
                assert_eq!(state, model, "state after reopen");
                assert_eq!(recovery.torn_tail, None);
                assert_eq!(recovery.size, reopened.size());
                manifest = reopened;
            }
            1 => {
                let edit = rng.invalid_edit(&model);
                assert!(model.check_edit(&edit).is_err(), "meant invalid: {edit:?}");
                let size = manifest.size();
                let err = manifest.log_edit(&edit).unwrap_err();
                assert!(matches!(err, Error::InvalidEdit(_)), "{err:?}");
                assert!(!manifest.is_poisoned(), "an invalid edit poisoned");
                assert_eq!(manifest.size(), size, "an invalid edit was written");
            }
            _ => {
                let edit = rng.edit(&model);
                model.apply(&edit).unwrap();
                let name = manifest.manifest_file_name();
                manifest.log_edit(&edit).unwrap();
                rotations += u64::from(manifest.manifest_file_name() != name);
            }
        }
        model.check_invariants();
        assert_eq!(manifest.state(), &model, "state after step");
        assert_dir_holds_live_files(&fs, &manifest);
    }
    drop(manifest);
    fs.crash();
    let (_, state, _) = Manifest::open_with(fs_ref(&fs), Path::new(DIR), options).unwrap();
    assert_eq!(state, model, "state after a final crash");
    (rotations, model.levels.iter().map(Vec::len).collect())
}

#[test]
fn manifest_matches_model_over_many_seeds() {
    let seeds = seeds(200);
    let (mut rotations, mut files) = (0, vec![0; popdb_lsm::LEVELS_MAX]);
    for &seed in &seeds {
        let (r, f) = run_seed(seed);
        rotations += r;
        files.iter_mut().zip(f).for_each(|(sum, n)| *sum += n);
    }
    println!(
        "{} seeds x {STEPS} steps: {rotations} rotations; files per level at the ends: {files:?}",
        seeds.len()
    );
    assert!(
        seeds.len() < 20 || rotations > seeds.len() as u64,
        "too few rotations ({rotations}): the thresholds no longer make them happen"
    );
}
