//! Crash and fault tests of the manifest on SimFs: power loss at every sync (and at every
//! counted operation) of a workload of random edits with tiny rotation thresholds, under
//! each crash mode; and injected I/O errors at every matching operation. After each, the
//! manifest must open, its state must be the state after some prefix of the edits that
//! includes every edit whose `log_edit` returned `Ok` (and nothing else), and it must keep
//! working: more edits logged after recovery survive a reopen.
//!
//! A failure prints its seed and the command that replays it (`MANIFEST_SEED=N`);
//! `MANIFEST_SEEDS=N` runs N workload seeds (defaults: 16 for the sync sweep, 8 for the
//! operation sweep, 3 for the fault sweep).

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod manifest_common;

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::sync::Arc;

use manifest_common::{DIR, Draw, Rng, SeedGuard, fs_ref, prefix_states, random_edits, seeds, sim};
use popdb_io::{
    CrashMode, DirLock, Fault, FaultError, FaultOp, File, FileRef, FileSystem, FsRef, Mapping,
    OpenOptions, SimFs,
};
use popdb_lsm::{Error, Manifest, ManifestOptions, ManifestState, VersionEdit};

const EDITS: usize = 60;
const OPTIONS: ManifestOptions = ManifestOptions {
    rotate_size: 256,
    base_frame_size: 120,
};

/// How far a workload got: whether `create` returned `Ok`, and how many edits were
/// acknowledged (`log_edit` returned `Ok`) before the first failure.
#[derive(Clone, Copy, Debug)]
struct Progress {
    created: bool,
    acked: usize,
}

/// Creates a manifest and logs `edits` until the first error.
fn workload(fs: &SimFs, edits: &[VersionEdit]) -> Progress {
    workload_on(fs_ref(fs), edits)
}

/// [`workload`] on any file system.
fn workload_on(fs: FsRef, edits: &[VersionEdit]) -> Progress {
    let mut progress = Progress {
        created: false,
        acked: 0,
    };
    let Ok(mut manifest) = Manifest::create_with(fs, Path::new(DIR), OPTIONS) else {
        return progress;
    };
    progress.created = true;
    for edit in edits {
        match manifest.log_edit(edit) {
            Ok(()) => progress.acked += 1,
            Err(e) => {
                assert!(matches!(e, Error::Io { .. }), "{e:?}");
                let again = manifest.log_edit(edit).unwrap_err();
                assert!(matches!(again, Error::Poisoned), "not poisoned: {again:?}");
                break;
            }
        }
    }
    progress
}

/// Opens the manifest after a failure and checks the prefix property; then, if `go_on`, logs
/// a few more edits, loses power, reopens, and checks them. Returns how many edits the
/// recovered state holds and whether a torn tail was cut off.
fn recover_and_check(
    fs: &SimFs,
    rng: &mut Rng,
    states: &[ManifestState],
    p: Progress,
    go_on: bool,
) -> (usize, bool) {
    let dir = Path::new(DIR);
    if !Manifest::exists(&fs_ref(fs), dir).unwrap() {
        assert!(!p.created, "create returned Ok but CURRENT is gone");
        return (0, false);
    }
    let (mut manifest, state, found) = Manifest::open_with(fs_ref(fs), dir, OPTIONS).unwrap();
    let torn = found.torn_tail.is_some();
    state.check_invariants();
    // Every acknowledged edit is in, and at most the one edit that failed after them.
    let last = (p.acked + 1).min(states.len() - 1);
    let k = (p.acked..=last)
        .find(|&k| states[k] == state)
        .unwrap_or_else(|| panic!("state is no prefix of {}..={last} edits", p.acked));
    if !go_on {
        return (k, torn);
    }
    let mut model = state;
    for _ in 0..3 {
        let edit = rng.edit(&model);
        model.apply(&edit).unwrap();
        manifest.log_edit(&edit).unwrap();
    }
    drop(manifest);
    fs.crash_with(CrashMode::LoseAllUnsynced);
    let (_, again, recovery) = Manifest::open_with(fs_ref(fs), dir, OPTIONS).unwrap();
    assert_eq!(again, model, "edits logged after recovery");
    assert_eq!(recovery.torn_tail, None);
    (k, torn)
}

/// The syncs a whole workload makes (create included).
fn syncs_of(edits: &[VersionEdit]) -> u64 {
    let fs = sim(0);
    let before = fs.sync_count();
    let p = workload(&fs, edits);
    assert_eq!(p.acked, edits.len());
    fs.sync_count() - before
}

/// Crashes a workload at each of its syncs in turn; returns the syncs, the edits each
/// recovery held, and how many recoveries cut a torn tail.
fn crash_sweep(seed: u64, mode: CrashMode, fs_seed: u64) -> (u64, Vec<usize>, usize) {
    let mut guard = SeedGuard::new(seed, "manifest_crash");
    let mut rng = Rng(seed);
    let edits = random_edits(&mut rng, EDITS);
    let states = prefix_states(&edits);
    let syncs = syncs_of(&edits);
    let (mut recovered, mut torn_count) = (Vec::new(), 0);
    for crash_at in 0..=syncs {
        guard.what = format!("({mode:?}, fs seed {fs_seed}, crash after {crash_at} syncs)");
        let fs = sim(fs_seed.wrapping_mul(1000).wrapping_add(crash_at));
        fs.set_armed_crash_mode(mode);
        fs.set_crash_after_syncs(crash_at);
        let progress = workload(&fs, &edits);
        assert_eq!(fs.is_down(), crash_at < syncs, "the crash struck");
        fs.restart();
        fs.disarm_crash();
        let (k, torn) = recover_and_check(&fs, &mut rng, &states, progress, true);
        recovered.push(k);
        torn_count += usize::from(torn);
    }
    (syncs, recovered, torn_count)
}

#[test]
fn manifest_crash_at_every_sync_recovers_a_prefix() {
    let (mut points, mut torn) = (0, [0; 3]);
    for seed in seeds(16) {
        for (i, (mode, fs_seeds)) in [
            (CrashMode::LoseAllUnsynced, 1),
            (CrashMode::KeepAll, 1),
            (CrashMode::Random, 4),
        ]
        .into_iter()
        .enumerate()
        {
            for fs_seed in 0..fs_seeds {
                let (syncs, recovered, torn_count) = crash_sweep(seed, mode, seed * 10 + fs_seed);
                points += syncs + 1;
                torn[i] += torn_count;
                // The sweep reaches the end: the last crash point leaves every edit.
                assert_eq!(recovered.last(), Some(&EDITS), "{mode:?}");
            }
        }
    }
    println!("{points} crash points; torn tails cut (lose all, keep all, random): {torn:?}");
    assert_eq!(torn[..2], [0, 0], "only a partial write leaves a torn tail");
    assert!(
        torn[2] > 0,
        "random crashes never tore a frame: the sweep lost its teeth"
    );
}

#[test]
fn manifest_crash_at_every_operation_recovers_a_prefix() {
    let mut points = 0;
    for seed in seeds(8) {
        let mut guard = SeedGuard::new(seed, "manifest_crash");
        let mut rng = Rng(seed ^ 0xc0ffee);
        let edits = random_edits(&mut rng, EDITS / 2);
        let states = prefix_states(&edits);
        let fs = sim(0);
        let before = fs.op_count();
        workload(&fs, &edits);
        let ops = fs.op_count() - before;
        for crash_at in 0..ops {
            guard.what = format!("(crash after {crash_at} ops)");
            let fs = sim(seed * 1000 + crash_at);
            fs.set_crash_after_ops(crash_at);
            let progress = workload(&fs, &edits);
            fs.restart();
            fs.disarm_crash();
            recover_and_check(&fs, &mut rng, &states, progress, true);
        }
        points += ops;
    }
    println!("{points} crash points");
}

/// Injects `fault` at every matching operation in turn; returns how many times it fired.
fn fault_sweep(seed: u64, op: FaultOp, error: FaultError) -> u64 {
    let mut guard = SeedGuard::new(seed, "manifest_crash");
    let mut rng = Rng(seed ^ 0xfa17);
    let edits = random_edits(&mut rng, EDITS / 2);
    let states = prefix_states(&edits);
    let mut fired = 0;
    for countdown in 0.. {
        guard.what = format!("({op:?} {error:?} after {countdown})");
        let fs = sim(seed * 1000 + countdown);
        fs.inject(Fault::new(op, error).after(countdown).under(DIR));
        let progress = workload(&fs, &edits);
        if fs.stats().faults_fired_count == 0 {
            assert_eq!(progress.acked, edits.len());
            break;
        }
        fired += 1;
        fs.clear_faults();
        // Reopened in the same "process" first (the cache may still show what a failed sync
        // lost), then after a power loss.
        recover_and_check(&fs, &mut rng, &states, progress, false);
        fs.crash();
        recover_and_check(&fs, &mut rng, &states, progress, true);
    }
    fired
}

#[test]
fn manifest_io_errors_poison_and_recover_a_prefix() {
    for seed in seeds(3) {
        for (op, error) in [
            (FaultOp::Write, FaultError::Eio),
            (FaultOp::Write, FaultError::Enospc),
            (FaultOp::Sync, FaultError::Eio),
            (FaultOp::Sync, FaultError::Enospc),
            (FaultOp::Rename, FaultError::Eio),
            (FaultOp::Open, FaultError::Eio),
        ] {
            let fired = fault_sweep(seed, op, error);
            println!("seed {seed}: {op:?} {error:?} fired at {fired} operations");
            assert!(fired > 0, "{op:?} {error:?} never fired");
        }
    }
}

#[test]
fn manifest_short_writes_are_completed_not_failed() {
    let fs = sim(3);
    // Not persistent: a short write of one byte writes nothing, which is an error.
    for countdown in [0, 1, 2, 5, 9, 20] {
        fs.inject(
            Fault::new(FaultOp::Write, FaultError::ShortWrite)
                .after(countdown)
                .under(DIR),
        );
    }
    let edits = random_edits(&mut Rng(3), EDITS);
    let progress = workload(&fs, &edits);
    assert_eq!(progress.acked, EDITS);
    assert!(fs.stats().faults_fired_count > 0);
    fs.clear_faults();
    fs.crash_with(CrashMode::LoseAllUnsynced);
    let (_, state, _) = Manifest::open_with(fs_ref(&fs), Path::new(DIR), OPTIONS).unwrap();
    assert_eq!(&state, prefix_states(&edits).last().unwrap());
}

/// A disk that acknowledges syncs without making anything durable: file syncs, directory
/// syncs, or both. The canary that proves the sweeps can fail: if a workload on it recovers
/// its acknowledged state after a power loss, the checks have stopped checking.
#[derive(Debug)]
struct LyingFs {
    sim: SimFs,
    lie_file_syncs: bool,
    lie_dir_syncs: bool,
}

#[derive(Debug)]
struct LyingFile {
    file: FileRef,
    lie: bool,
}

impl FileSystem for LyingFs {
    fn open(&self, path: &Path, options: OpenOptions) -> io::Result<FileRef> {
        let file = self.sim.open(path, options)?;
        Ok(Arc::new(LyingFile {
            file,
            lie: self.lie_file_syncs,
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.sim.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.sim.rename(from, to)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.sim.hard_link(from, to)
    }
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.sim.read_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.sim.create_dir_all(dir)
    }
    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        self.sim.remove_dir(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.sim.exists(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.lie_dir_syncs {
            Ok(())
        } else {
            self.sim.sync_dir(dir)
        }
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        self.sim.lock_dir(dir)
    }
}

impl File for LyingFile {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.file.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.lie {
            Ok(())
        } else {
            self.file.sync_data()
        }
    }
    fn sync_all(&self) -> io::Result<()> {
        if self.lie {
            Ok(())
        } else {
            self.file.sync_all()
        }
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.file.allocate(len)
    }
    fn evict_cache(&self) -> io::Result<()> {
        self.file.evict_cache()
    }
    fn map(&self, offset: u64, len: usize) -> io::Result<Mapping> {
        self.file.map(offset, len)
    }
}

#[test]
fn manifest_crash_canary_lying_disk_is_caught() {
    let mut caught = 0;
    let lies = [(true, false), (false, true), (true, true)];
    for seed in 0..4 {
        for (lie_file_syncs, lie_dir_syncs) in lies {
            let edits = random_edits(&mut Rng(seed), EDITS);
            let sim = sim(seed);
            let lying = LyingFs {
                sim: sim.clone(),
                lie_file_syncs,
                lie_dir_syncs,
            };
            let progress = workload_on(Arc::new(lying), &edits);
            assert_eq!(
                progress.acked, EDITS,
                "the workload failed on the lying disk"
            );
            sim.crash_with(CrashMode::LoseAllUnsynced);
            let acked = prefix_states(&edits).pop().unwrap();
            // Opening may fail outright (CURRENT never reached the disk): also caught.
            match Manifest::open_with(fs_ref(&sim), Path::new(DIR), OPTIONS) {
                Ok((_, state, _)) if state == acked => {}
                _ => caught += 1,
            }
        }
    }
    assert_eq!(
        caught,
        4 * lies.len(),
        "the crash checks no longer catch a disk that lies about fsync"
    );
}
