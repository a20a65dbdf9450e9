//! Power loss: what survives each crash mode, armed crashes, and what dies with a crash.

use std::io;
use std::path::Path;

use super::{create_synced, exists, read_all};
use crate::{CrashMode, FileSystem, OpenOptions, SimFs};

const SECTOR: usize = 512;

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ salt)
        .collect()
}

#[test]
fn crash_synced_data_survives_every_mode() {
    let data = pattern(3000, 7);
    let mut modes = vec![CrashMode::KeepAll, CrashMode::LoseAllUnsynced];
    modes.extend([CrashMode::Random; 20]);
    for (seed, mode) in modes.into_iter().enumerate() {
        let fs = SimFs::new(seed as u64);
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let _file = create_synced(&fs, "/d/f", &data);
        fs.crash_with(mode);
        fs.check_invariants();
        assert_eq!(read_all(&fs, "/d/f"), data, "seed {seed}, {mode:?}");
    }
}

#[test]
fn crash_unsynced_data_lost_with_lose_all_kept_with_keep_all() {
    let synced = vec![b'a'; 1024];
    let mut changed = vec![b'b'; 1024];
    changed.extend([b'c'; 700]);
    for (mode, expected) in [
        (CrashMode::LoseAllUnsynced, &synced),
        (CrashMode::KeepAll, &changed),
    ] {
        let fs = SimFs::new(1);
        let file = create_synced(&fs, "/f", &synced);
        file.write_all_at(&changed, 0).unwrap();
        fs.crash_with(mode);
        fs.check_invariants();
        assert_eq!(&read_all(&fs, "/f"), expected, "{mode:?}");
    }
}

#[test]
fn crash_random_keeps_any_subset_of_sectors() {
    const SECTORS: usize = 8;
    let (mut all_kept, mut all_lost, mut non_prefix) = (false, false, false);
    for seed in 0..200 {
        let fs = SimFs::new(seed);
        let file = create_synced(&fs, "/f", &[0; SECTORS * SECTOR]);
        file.write_all_at(&[0xFF; SECTORS * SECTOR], 0).unwrap();
        fs.crash();
        let bytes = read_all(&fs, "/f");
        assert_eq!(
            bytes.len(),
            SECTORS * SECTOR,
            "an overwrite keeps the length"
        );
        let kept: Vec<bool> = bytes
            .chunks(SECTOR)
            .map(|sector| match sector {
                s if s.iter().all(|&b| b == 0xFF) => true,
                s if s.iter().all(|&b| b == 0) => false,
                _ => panic!("seed {seed}: a sector was torn inside itself"),
            })
            .collect();
        all_kept |= kept.iter().all(|&k| k);
        all_lost |= kept.iter().all(|&k| !k);
        // A lost sector before a kept one: not something a prefix model would produce.
        non_prefix |= kept.windows(2).any(|w| !w[0] && w[1]);
    }
    assert!(all_kept, "no seed kept every sector");
    assert!(all_lost, "no seed lost every sector");
    assert!(non_prefix, "no seed kept a non-prefix subset");
}

#[test]
fn crash_random_append_keeps_an_old_or_new_length() {
    let mut lengths = std::collections::BTreeSet::new();
    for seed in 0..60 {
        let fs = SimFs::new(seed);
        let file = create_synced(&fs, "/f", &[1; 100]);
        file.write_all_at(&[2; 1000], 100).unwrap();
        file.set_len(2000).unwrap();
        fs.crash();
        let bytes = read_all(&fs, "/f");
        assert!(
            [100, 1100, 2000].contains(&bytes.len()),
            "length {}",
            bytes.len()
        );
        assert!(bytes[..100].iter().all(|&b| b == 1), "synced bytes changed");
        assert!(
            bytes[100..].iter().all(|&b| b == 2 || b == 0),
            "bytes never written"
        );
        lengths.insert(bytes.len());
    }
    assert_eq!(lengths.len(), 3, "not every length seen: {lengths:?}");
}

#[test]
fn crash_unsynced_set_len_follows_the_mode() {
    for (mode, len) in [(CrashMode::LoseAllUnsynced, 4096), (CrashMode::KeepAll, 10)] {
        let fs = SimFs::new(3);
        let file = create_synced(&fs, "/f", &[5; 4096]);
        file.set_len(10).unwrap();
        fs.crash_with(mode);
        assert_eq!(read_all(&fs, "/f").len(), len, "{mode:?}");
    }
}

#[test]
fn crash_unsynced_create_lost_without_sync_dir_kept_with_it() {
    let fs = SimFs::new(4);
    let file = fs.open(Path::new("/f"), OpenOptions::create()).unwrap();
    file.write_all_at(b"data", 0).unwrap();
    file.sync_data().unwrap();
    fs.crash_with(CrashMode::LoseAllUnsynced);
    assert!(
        !exists(&fs, "/f"),
        "a synced file whose entry was not synced survived"
    );

    let _file = create_synced(&fs, "/f", b"data");
    fs.crash_with(CrashMode::LoseAllUnsynced);
    assert_eq!(read_all(&fs, "/f"), b"data");
}

#[test]
fn crash_unsynced_rename_lost_without_sync_dir_kept_with_it() {
    for (mode, synced, tmp_left) in [
        (CrashMode::LoseAllUnsynced, false, true),
        (CrashMode::KeepAll, false, false),
        (CrashMode::LoseAllUnsynced, true, false),
    ] {
        let fs = SimFs::new(5);
        drop(create_synced(&fs, "/tmp", b"new"));
        fs.rename(Path::new("/tmp"), Path::new("/final")).unwrap();
        if synced {
            fs.sync_dir(Path::new("/")).unwrap();
        }
        fs.crash_with(mode);
        fs.check_invariants();
        assert_eq!(exists(&fs, "/tmp"), tmp_left, "{mode:?} synced={synced}");
        assert_eq!(exists(&fs, "/final"), !tmp_left, "{mode:?} synced={synced}");
    }
}

#[test]
fn crash_random_rename_within_a_directory_is_atomic() {
    for seed in 0..50 {
        let fs = SimFs::new(seed);
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        drop(create_synced(&fs, "/d/old", b"old"));
        drop(create_synced(&fs, "/d/tmp", b"new"));
        fs.rename(Path::new("/d/tmp"), Path::new("/d/old")).unwrap();
        fs.crash();
        let names = fs.file_names(Path::new("/d")).unwrap();
        let content = read_all(&fs, "/d/old");
        match names.as_slice() {
            [a, b] if a == "old" && b == "tmp" => assert_eq!(content, b"old"),
            [a] if a == "old" => assert_eq!(content, b"new"),
            other => panic!("seed {seed}: torn rename {other:?}"),
        }
    }
}

#[test]
fn crash_unsynced_remove_comes_back() {
    let fs = SimFs::new(6);
    drop(create_synced(&fs, "/f", b"keep"));
    fs.remove_file(Path::new("/f")).unwrap();
    fs.crash_with(CrashMode::LoseAllUnsynced);
    assert_eq!(read_all(&fs, "/f"), b"keep");
    fs.remove_file(Path::new("/f")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    fs.crash_with(CrashMode::LoseAllUnsynced);
    assert!(!exists(&fs, "/f"));
    assert_eq!(
        fs.stats().files_count,
        0,
        "the removed file's inode was collected"
    );
}

#[test]
fn crash_invalidates_handles_and_releases_locks() {
    let fs = SimFs::new(7);
    let file = create_synced(&fs, "/f", b"x");
    let lock = fs.lock_dir(Path::new("/")).unwrap();
    fs.crash();
    let err = file.read_at(&mut [0; 1], 0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Other);
    assert!(err.to_string().contains("before the crash"), "{err}");
    assert!(file.write_at(b"y", 0).is_err());
    assert!(file.sync_data().is_err());
    assert!(file.len().is_err());
    let _again = fs.lock_dir(Path::new("/")).expect("a crash releases locks");
    drop(lock);
    assert!(
        fs.lock_dir(Path::new("/")).is_err(),
        "an old guard freed the new lock"
    );
    drop(file);
    assert_eq!(read_all(&fs, "/f"), b"x", "reopening works");
    fs.check_invariants();
}

#[test]
#[should_panic(expected = "from before a simulated crash")]
fn crash_map_view_from_before_panics_when_read() {
    let fs = SimFs::new(8);
    let file = create_synced(&fs, "/f", b"abc");
    let view = file.map(0, 3).unwrap();
    assert_eq!(&*view, b"abc");
    fs.crash();
    let _ = view.len();
}

#[test]
fn crash_after_ops_strikes_the_exact_op_and_stays_down() {
    let fs = SimFs::new(9);
    let file = fs.open(Path::new("/f"), OpenOptions::create()).unwrap();
    assert_eq!(fs.op_count(), 1, "a creating open counts");
    fs.set_crash_after_ops(2);
    file.write_all_at(b"one", 0).unwrap();
    let _ = file.read_at(&mut [0; 3], 0).unwrap(); // reads do not count
    file.write_all_at(b"two", 3).unwrap();
    let err = file.sync_data().unwrap_err();
    assert!(err.to_string().contains("power loss"), "{err}");
    assert_eq!(fs.op_count(), 4);
    assert!(fs.is_down());
    assert!(fs.open(Path::new("/f"), OpenOptions::read_only()).is_err());
    assert!(fs.exists(Path::new("/f")).is_err());
    assert!(file.write_at(b"x", 0).is_err());
    fs.restart();
    assert!(!fs.is_down());
    assert!(
        file.write_at(b"x", 0).is_err(),
        "handles from before stay dead"
    );
    let _ = fs.exists(Path::new("/f")).unwrap();
    fs.check_invariants();
}

#[test]
fn crash_after_syncs_strikes_the_exact_sync() {
    let fs = SimFs::new(10);
    let file = create_synced(&fs, "/f", b"a");
    assert_eq!(fs.sync_count(), 2);
    fs.set_crash_after_syncs(1);
    file.write_all_at(b"b", 0).unwrap();
    file.sync_data().unwrap();
    fs.sync_dir(Path::new("/")).unwrap_err();
    assert!(fs.is_down());
    assert_eq!(fs.sync_count(), 4);
    fs.restart();
    assert_eq!(read_all(&fs, "/f"), b"b", "the completed sync is durable");
}

/// The shape of a WAL: records appended and synced one by one. Returns how many records
/// were acknowledged (their sync returned Ok) before the first error.
fn append_workload(fs: &SimFs, records: &[Vec<u8>]) -> usize {
    let Ok(file) = fs.open(Path::new("/log"), OpenOptions::create()) else {
        return 0;
    };
    if fs.sync_dir(Path::new("/")).is_err() {
        return 0;
    }
    let mut offset = 0;
    for (acked, record) in records.iter().enumerate() {
        if file.write_all_at(record, offset).is_err() || file.sync_data().is_err() {
            return acked;
        }
        offset += record.len() as u64;
    }
    records.len()
}

#[test]
fn crash_after_every_op_keeps_every_acknowledged_record() {
    let records: Vec<Vec<u8>> = (0..6).map(|i| pattern(300, i)).collect();
    let dry = SimFs::new(0);
    assert_eq!(append_workload(&dry, &records), records.len());
    let ops = dry.op_count();
    assert_eq!(ops, 2 + 2 * records.len() as u64);
    for crash_at in 0..ops {
        for seed in 0..4 {
            let fs = SimFs::new(seed);
            fs.set_crash_after_ops(crash_at);
            let acked = append_workload(&fs, &records);
            assert!(fs.is_down(), "op {crash_at}: the crash never struck");
            fs.restart();
            fs.check_invariants();
            let durable = if exists(&fs, "/log") {
                read_all(&fs, "/log")
            } else {
                vec![]
            };
            let expected: Vec<u8> = records[..acked].concat();
            assert!(
                durable.starts_with(&expected),
                "op {crash_at} seed {seed}: acknowledged records lost"
            );
        }
    }
}

#[test]
fn crash_outcome_is_deterministic_for_a_seed() {
    let run = |seed| {
        let fs = SimFs::new(seed);
        let file = create_synced(&fs, "/f", &[0; 4096]);
        file.write_all_at(&[9; 4096], 0).unwrap();
        fs.crash();
        read_all(&fs, "/f")
    };
    for seed in 0..20 {
        assert_eq!(run(seed), run(seed), "seed {seed}");
    }
}
