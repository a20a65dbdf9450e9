//! The namespace: std's errors, inode semantics of rename and link, directories, locks.

use std::io;
use std::path::Path;

use super::{create_synced, exists, read_all};
use crate::{CrashMode, FileSystem, OpenOptions, SimFs};

fn kind<T: std::fmt::Debug>(result: io::Result<T>) -> io::ErrorKind {
    result.unwrap_err().kind()
}

#[test]
fn namespace_errors_follow_std() {
    let fs = SimFs::new(1);
    let p = Path::new;
    assert_eq!(
        kind(fs.open(p("/f"), OpenOptions::read_write())),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        kind(fs.open(p("/d/f"), OpenOptions::create())),
        io::ErrorKind::NotFound
    );
    drop(fs.open(p("/f"), OpenOptions::create_new()).unwrap());
    assert_eq!(
        kind(fs.open(p("/f"), OpenOptions::create_new())),
        io::ErrorKind::AlreadyExists
    );
    let bad = OpenOptions {
        create: true,
        read: true,
        ..OpenOptions::default()
    };
    assert_eq!(kind(fs.open(p("/g"), bad)), io::ErrorKind::InvalidInput);
    assert_eq!(kind(fs.remove_file(p("/nope"))), io::ErrorKind::NotFound);
    fs.create_dir_all(p("/d/e")).unwrap();
    assert_eq!(
        kind(fs.open(p("/d"), OpenOptions::read_only())),
        io::ErrorKind::IsADirectory
    );
    assert_eq!(kind(fs.remove_file(p("/d"))), io::ErrorKind::IsADirectory);
    assert_eq!(
        kind(fs.remove_dir(p("/d"))),
        io::ErrorKind::DirectoryNotEmpty
    );
    assert_eq!(kind(fs.remove_dir(p("/f"))), io::ErrorKind::NotADirectory);
    assert_eq!(kind(fs.read_dir(p("/f"))), io::ErrorKind::NotADirectory);
    assert_eq!(
        kind(fs.create_dir_all(p("/f"))),
        io::ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(fs.open(p("/f/x"), OpenOptions::create())),
        io::ErrorKind::NotADirectory
    );
    assert!(!fs.exists(p("/f/x")).unwrap());
    assert_eq!(
        kind(fs.hard_link(p("/f"), p("/d/e"))),
        io::ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(fs.rename(p("/f"), p("/d"))),
        io::ErrorKind::IsADirectory
    );
    assert_eq!(
        kind(fs.rename(p("/d"), p("/d/e/x"))),
        io::ErrorKind::InvalidInput
    );
    fs.remove_dir(p("/d/e")).unwrap();
    fs.check_invariants();
}

#[test]
fn namespace_access_mode_is_enforced() {
    let fs = SimFs::new(2);
    drop(create_synced(&fs, "/f", b"abc"));
    let ro = fs.open(Path::new("/f"), OpenOptions::read_only()).unwrap();
    assert!(ro.write_at(b"x", 0).is_err());
    assert!(ro.set_len(0).is_err());
    ro.sync_data()
        .expect("syncing a read-only handle is allowed, as on Linux");
    let wo = OpenOptions {
        write: true,
        ..OpenOptions::default()
    };
    let wo = fs.open(Path::new("/f"), wo).unwrap();
    assert!(wo.read_at(&mut [0; 1], 0).is_err());
}

#[test]
fn namespace_handle_follows_its_inode() {
    let fs = SimFs::new(3);
    let file = create_synced(&fs, "/a", b"one");
    fs.rename(Path::new("/a"), Path::new("/b")).unwrap();
    file.write_all_at(b"two", 0).unwrap();
    assert_eq!(read_all(&fs, "/b"), b"two");
    fs.remove_file(Path::new("/b")).unwrap();
    let mut buf = [0u8; 3];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(
        &buf, b"two",
        "a removed file stays readable through its handle"
    );
    assert_eq!(fs.stats().files_count, 1, "open, so still live");
    drop(file);
    fs.sync_dir(Path::new("/")).unwrap();
    assert_eq!(fs.stats().files_count, 0);
    fs.check_invariants();
}

#[test]
fn namespace_rename_replaces_and_link_shares() {
    let fs = SimFs::new(4);
    let old = create_synced(&fs, "/old", b"old");
    drop(create_synced(&fs, "/new", b"new"));
    fs.rename(Path::new("/new"), Path::new("/old")).unwrap();
    assert_eq!(read_all(&fs, "/old"), b"new");
    let mut buf = [0u8; 3];
    old.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"old", "the replaced file lives on in its handle");
    fs.hard_link(Path::new("/old"), Path::new("/twin")).unwrap();
    let twin = fs
        .open(Path::new("/twin"), OpenOptions::read_write())
        .unwrap();
    twin.write_all_at(b"NEW", 0).unwrap();
    assert_eq!(read_all(&fs, "/old"), b"NEW");
    fs.remove_file(Path::new("/old")).unwrap();
    assert_eq!(read_all(&fs, "/twin"), b"NEW");
    fs.check_invariants();
}

#[test]
fn namespace_paths_are_lexical_and_listing_sorted() {
    let fs = SimFs::new(5);
    fs.create_dir_all(Path::new("db/x/../wal")).unwrap();
    assert!(exists(&fs, "/db/wal"));
    assert!(
        !exists(&fs, "/db/x"),
        "`..` is applied to the path, not walked"
    );
    for name in ["c", "a", "b"] {
        drop(
            fs.open(&Path::new("./db/wal").join(name), OpenOptions::create())
                .unwrap(),
        );
    }
    let names = fs.read_dir(Path::new("/db/wal")).unwrap();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(fs.file_names(Path::new("db")).unwrap(), ["wal"]);
    assert!(
        fs.durable_file_names(Path::new("/db")).is_err(),
        "/db is not durable yet"
    );
}

#[test]
fn namespace_unsynced_directory_chain_is_lost() {
    let fs = SimFs::new(6);
    fs.create_dir_all(Path::new("/a/b")).unwrap();
    drop(create_synced(&fs, "/a/b/f", b"data"));
    fs.crash_with(CrashMode::LoseAllUnsynced);
    assert!(!exists(&fs, "/a"), "/a was never synced into the root");
    fs.check_invariants();
    assert_eq!(fs.stats().files_count, 0);
    assert_eq!(fs.stats().dirs_count, 1, "only the root is left");
}

#[test]
fn namespace_cross_directory_rename_is_two_independent_changes() {
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 0..80 {
        let fs = SimFs::new(seed);
        fs.create_dir_all(Path::new("/s")).unwrap();
        fs.create_dir_all(Path::new("/t")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        drop(create_synced(&fs, "/s/f", b"f"));
        fs.rename(Path::new("/s/f"), Path::new("/t/f")).unwrap();
        fs.crash_with(CrashMode::Random);
        fs.check_invariants();
        outcomes.insert((exists(&fs, "/s/f"), exists(&fs, "/t/f")));
    }
    assert_eq!(
        outcomes.len(),
        4,
        "not every combination seen: {outcomes:?}"
    );
}

#[test]
fn namespace_truncate_on_open_is_volatile() {
    let fs = SimFs::new(7);
    drop(create_synced(&fs, "/f", b"abc"));
    let opts = OpenOptions {
        truncate: true,
        ..OpenOptions::read_write()
    };
    let file = fs.open(Path::new("/f"), opts).unwrap();
    assert_eq!(file.len().unwrap(), 0);
    fs.crash_with(CrashMode::LoseAllUnsynced);
    assert_eq!(read_all(&fs, "/f"), b"abc");
}

#[test]
fn namespace_lock_is_exclusive_until_dropped() {
    let fs = SimFs::new(8);
    fs.create_dir_all(Path::new("/db")).unwrap();
    let lock = fs.lock_dir(Path::new("/db")).unwrap();
    let err = fs.lock_dir(Path::new("db/.")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert!(err.to_string().contains("locked by"), "{err}");
    let other = fs
        .lock_dir(Path::new("/"))
        .expect("locks are per directory");
    drop(lock);
    let _again = fs.lock_dir(Path::new("/db")).unwrap();
    drop(other);
    assert_eq!(
        kind(fs.lock_dir(Path::new("/none"))),
        io::ErrorKind::NotFound
    );
}

#[test]
fn namespace_op_count_counts_only_changes_and_syncs() {
    let fs = SimFs::new(9);
    let file = fs.open(Path::new("/f"), OpenOptions::create()).unwrap();
    let _ = fs.open(Path::new("/f"), OpenOptions::read_only()).unwrap();
    let _ = fs.read_dir(Path::new("/")).unwrap();
    let _ = file.len().unwrap();
    file.write_all_at(b"x", 0).unwrap();
    file.sync_all().unwrap();
    let stats = fs.stats();
    assert_eq!((stats.ops_count, stats.syncs_count), (3, 1));
}

#[test]
fn namespace_open_handles_and_locks_are_counted_until_dropped() {
    let fs = SimFs::new(9);
    let file = create_synced(&fs, "/f", b"abc");
    let again = fs.open(Path::new("/f"), OpenOptions::read_only()).unwrap();
    let view = file.map(0, 3).unwrap();
    let lock = fs.lock_dir(Path::new("/")).unwrap();
    let stats = fs.stats();
    assert_eq!(stats.open_handles_count, 3, "two handles and a view");
    assert_eq!(stats.dir_locks_count, 1);
    drop(view);
    drop(again);
    drop(lock);
    let stats = fs.stats();
    assert_eq!(stats.open_handles_count, 1);
    assert_eq!(stats.dir_locks_count, 0);
    assert!(
        fs.open(Path::new("/none"), OpenOptions::read_only())
            .is_err()
    );
    assert_eq!(
        fs.stats().open_handles_count,
        1,
        "a failed open holds nothing"
    );
    fs.crash();
    assert_eq!(
        fs.stats().open_handles_count,
        0,
        "a crash forgets every handle"
    );
    drop(file);
    assert_eq!(
        fs.stats().open_handles_count,
        0,
        "an old handle's drop is a no-op"
    );
}
