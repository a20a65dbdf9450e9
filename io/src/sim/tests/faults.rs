//! Injected faults: failed syncs (the Linux behaviour), capacity, short writes, bit flips,
//! and how faults are counted down and matched.

use std::io;
use std::path::Path;

use super::{create_synced, exists, read_all};
use crate::{CrashMode, Fault, FaultError, FaultOp, FileSystem, OpenOptions};
use crate::{SimFs, SimOptions};

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// A file of 4 sectors of `a`, synced, then overwritten with `b` and a sync that fails.
/// Returns the first seed (from `seed`) where the failed sync lost at least one sector,
/// the file system, and the handle.
fn failed_sync_with_loss(seed: u64) -> (u64, SimFs, crate::FileRef) {
    for seed in seed..seed + 100 {
        let fs = SimFs::new(seed);
        let file = create_synced(&fs, "/f", &[b'a'; 2048]);
        file.write_all_at(&[b'b'; 2048], 0).unwrap();
        fs.inject(Fault::new(FaultOp::Sync, FaultError::Eio));
        let err = file.sync_data().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(EIO));
        if fs.read_durable(Path::new("/f")).unwrap() != [b'b'; 2048] {
            return (seed, fs, file);
        }
    }
    panic!("no seed in 100 lost anything on a failed sync");
}

#[test]
fn fault_failed_sync_reads_show_cache_until_evicted() {
    let (seed, fs, file) = failed_sync_with_loss(0);
    let medium = fs.read_durable(Path::new("/f")).unwrap();
    let mut buf = vec![0u8; 2048];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(
        buf, [b'b'; 2048],
        "seed {seed}: before eviction reads show the cache"
    );
    file.evict_cache().unwrap();
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(
        buf, medium,
        "seed {seed}: after eviction reads show the medium"
    );
    assert!(
        medium
            .chunks(512)
            .all(|s| s == [b'a'; 512] || s == [b'b'; 512])
    );
    fs.check_invariants();
}

#[test]
fn fault_later_sync_does_not_resurrect_lost_data() {
    let (seed, fs, file) = failed_sync_with_loss(10);
    let after_failure = fs.read_durable(Path::new("/f")).unwrap();
    assert_eq!(
        fs.stats().dirty_files_count,
        0,
        "a failed sync leaves the file clean"
    );
    file.write_all_at(&[b'c'; 512], 1536).unwrap();
    file.sync_data().unwrap();
    fs.crash_with(CrashMode::LoseAllUnsynced);
    let mut expected = after_failure;
    expected[1536..].fill(b'c');
    assert_eq!(read_all(&fs, "/f"), expected, "seed {seed}");
}

#[test]
fn fault_failed_sync_dir_leaves_changes_volatile() {
    let fs = SimFs::new(1);
    drop(create_synced(&fs, "/f", b"x"));
    fs.rename(Path::new("/f"), Path::new("/g")).unwrap();
    fs.inject(Fault::new(FaultOp::Sync, FaultError::Eio));
    assert_eq!(
        fs.sync_dir(Path::new("/")).unwrap_err().raw_os_error(),
        Some(EIO)
    );
    assert_eq!(fs.durable_file_names(Path::new("/")).unwrap(), ["f"]);
    fs.sync_dir(Path::new("/")).unwrap();
    assert_eq!(fs.durable_file_names(Path::new("/")).unwrap(), ["g"]);
}

#[test]
fn fault_capacity_short_writes_then_enospc() {
    let fs = SimFs::with_options(
        2,
        SimOptions {
            capacity_bytes: Some(4096),
        },
    );
    let a = fs.open(Path::new("/a"), OpenOptions::create()).unwrap();
    let b = fs.open(Path::new("/b"), OpenOptions::create()).unwrap();
    assert_eq!(a.write_at(&[1; 3000], 0).unwrap(), 3000);
    assert_eq!(
        b.write_at(&[2; 2000], 0).unwrap(),
        1096,
        "what fits is written"
    );
    let err = b.write_at(&[2; 10], 1096).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(ENOSPC));
    assert_eq!(b.set_len(2000).unwrap_err().raw_os_error(), Some(ENOSPC));
    assert_eq!(b.allocate(1097).unwrap_err().raw_os_error(), Some(ENOSPC));
    assert_eq!(
        a.write_at(&[3; 3000], 0).unwrap(),
        3000,
        "overwrites need no space"
    );
    assert_eq!(fs.stats().used_size, 4096);
    b.set_len(0).unwrap();
    assert_eq!(
        a.write_at(&[4; 96], 3000).unwrap(),
        96,
        "shrinking freed space"
    );
    fs.check_invariants();
}

#[test]
fn fault_capacity_allocate_reserves_space() {
    let fs = SimFs::new(3);
    fs.set_capacity(Some(8192));
    let seg = fs.open(Path::new("/seg"), OpenOptions::create()).unwrap();
    seg.allocate(8192).unwrap();
    assert_eq!(seg.len().unwrap(), 8192);
    let other = fs.open(Path::new("/other"), OpenOptions::create()).unwrap();
    assert_eq!(
        other.write_at(b"x", 0).unwrap_err().raw_os_error(),
        Some(ENOSPC)
    );
    seg.write_all_at(&[7; 8192], 0)
        .expect("writes into reserved space never fail");
    drop(seg);
    fs.remove_file(Path::new("/seg")).unwrap();
    assert_eq!(
        other.write_at(b"x", 0).unwrap(),
        1,
        "a removed, closed file frees space"
    );
}

#[test]
fn fault_short_write_writes_a_nonempty_prefix() {
    let fs = SimFs::new(4);
    let file = fs.open(Path::new("/f"), OpenOptions::create()).unwrap();
    fs.inject(Fault::new(FaultOp::Write, FaultError::ShortWrite));
    let data: Vec<u8> = (0..100).collect();
    let n = file.write_at(&data, 0).unwrap();
    assert!((1..100).contains(&n), "short count {n}");
    assert_eq!(file.len().unwrap(), n as u64);
    fs.inject(Fault::new(FaultOp::Write, FaultError::ShortWrite));
    file.write_all_at(&data, 0)
        .expect("write_all_at goes on after a short write");
    assert_eq!(read_all(&fs, "/f"), data);
    assert_eq!(fs.stats().faults_fired_count, 2);
}

#[test]
fn fault_bit_flip_changes_one_bit_of_the_read_only() {
    let fs = SimFs::new(5);
    let data: Vec<u8> = (0..64).collect();
    let file = create_synced(&fs, "/f", &data);
    fs.inject(Fault::new(FaultOp::Read, FaultError::BitFlip));
    let mut buf = [0u8; 64];
    file.read_exact_at(&mut buf, 0).unwrap();
    let flipped: u32 = buf
        .iter()
        .zip(&data)
        .map(|(a, b)| (a ^ b).count_ones())
        .sum();
    assert_eq!(flipped, 1, "exactly one bit differs");
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..], &data[..], "the file itself is unchanged");
    fs.inject(Fault::new(FaultOp::Read, FaultError::BitFlip));
    let view = file.map(0, 64).unwrap();
    let flipped: u32 = view
        .iter()
        .zip(&data)
        .map(|(a, b)| (a ^ b).count_ones())
        .sum();
    assert_eq!(flipped, 1, "maps are reads too");
}

#[test]
fn fault_eio_fails_the_op_and_changes_nothing() {
    let fs = SimFs::new(6);
    let file = create_synced(&fs, "/f", b"abc");
    for op in [FaultOp::Write, FaultOp::Allocate, FaultOp::Read] {
        fs.inject(Fault::new(op, FaultError::Eio));
    }
    assert_eq!(
        file.write_at(b"x", 0).unwrap_err().raw_os_error(),
        Some(EIO)
    );
    assert_eq!(file.set_len(0).unwrap_err().raw_os_error(), Some(EIO));
    assert_eq!(
        file.read_at(&mut [0; 3], 0).unwrap_err().raw_os_error(),
        Some(EIO)
    );
    for op in [FaultOp::Rename, FaultOp::Remove, FaultOp::Open] {
        fs.inject(Fault::new(op, FaultError::Eio));
    }
    assert!(fs.rename(Path::new("/f"), Path::new("/g")).is_err());
    assert!(fs.remove_file(Path::new("/f")).is_err());
    assert!(fs.open(Path::new("/h"), OpenOptions::create()).is_err());
    assert!(!exists(&fs, "/h"));
    assert_eq!(read_all(&fs, "/f"), b"abc");
    assert_eq!(fs.stats().dirty_files_count, 0);
}

#[test]
fn fault_countdown_persistent_and_clear() {
    let fs = SimFs::new(7);
    let file = fs.open(Path::new("/f"), OpenOptions::create()).unwrap();
    fs.inject(
        Fault::new(FaultOp::Any, FaultError::Enospc)
            .after(2)
            .persistent(),
    );
    file.write_all_at(b"a", 0).unwrap();
    file.sync_data().unwrap();
    for _ in 0..3 {
        let err = file.write_at(b"b", 1).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(ENOSPC));
    }
    assert!(
        file.read_at(&mut [0; 1], 0).is_ok(),
        "ENOSPC never hits reads"
    );
    fs.clear_faults();
    file.write_all_at(b"b", 1).unwrap();
}

#[test]
fn fault_path_prefix_limits_the_fault() {
    let fs = SimFs::new(8);
    fs.create_dir_all(Path::new("/db/wal")).unwrap();
    fs.inject(
        Fault::new(FaultOp::Sync, FaultError::Eio)
            .under("/db/wal")
            .persistent(),
    );
    let state = fs
        .open(Path::new("/db/state"), OpenOptions::create())
        .unwrap();
    state.sync_data().unwrap();
    let seg = fs
        .open(Path::new("/db/wal/1"), OpenOptions::create())
        .unwrap();
    assert!(seg.sync_data().is_err());
    assert!(fs.sync_dir(Path::new("/db/wal")).is_err());
    fs.sync_dir(Path::new("/db")).unwrap();
    let err = fs.rename(Path::new("/db/state"), Path::new("/db/wal/s"));
    assert!(err.is_ok(), "sync faults do not match renames");
}

#[test]
fn fault_stale_handle_errors_are_not_injected_errors() {
    let fs = SimFs::new(9);
    let file = create_synced(&fs, "/f", b"x");
    fs.crash();
    let err = file.sync_data().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Other);
    assert_eq!(err.raw_os_error(), None);
}
