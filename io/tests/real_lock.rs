//! The data-directory lock of [`RealFs`]: exclusive per open file description, naming its
//! holder's pid when it refuses.

use std::io;

use popdb_io::{FileSystem, OpenOptions, RealFs};

#[test]
fn lock_dir_twice_in_one_process_is_would_block_naming_pid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = RealFs::new();
    let held = fs.lock_dir(dir.path()).expect("first lock");
    // flock locks belong to the open file description, so a second open conflicts even in
    // the same process.
    let err = fs
        .lock_dir(dir.path())
        .expect_err("second lock must be refused");
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    let want = format!("is locked by process {}", std::process::id());
    assert!(
        err.to_string().contains(&want),
        "message {err:?} lacks {want:?}"
    );

    drop(held);
    let again = fs.lock_dir(dir.path()).expect("lock after release");
    drop(again);
}

#[test]
fn lock_dir_writes_holder_pid_into_lock_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = RealFs::new();
    let lock_path = dir.path().join("LOCK");
    // A longer stale line from an earlier holder must not survive.
    fs.open(&lock_path, OpenOptions::create())
        .expect("create LOCK")
        .write_all_at(b"99999999999999\n", 0)
        .expect("stale pid");
    let _held = fs.lock_dir(dir.path()).expect("lock");
    let file = fs
        .open(&lock_path, OpenOptions::read_only())
        .expect("open LOCK");
    let mut buf = vec![0_u8; file.len().expect("len") as usize];
    file.read_exact_at(&mut buf, 0).expect("read LOCK");
    assert_eq!(buf, format!("{}\n", std::process::id()).into_bytes());
}

#[test]
fn lock_dir_refused_without_recorded_pid_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = RealFs::new();
    let _held = fs.lock_dir(dir.path()).expect("lock");
    // Simulate a holder that has locked but not yet written its pid.
    fs.open(&dir.path().join("LOCK"), OpenOptions::read_write())
        .expect("open LOCK")
        .set_len(0)
        .expect("clear");
    let err = fs.lock_dir(dir.path()).expect_err("refused");
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert!(
        err.to_string().contains("has not recorded its pid"),
        "{err}"
    );
}

#[test]
fn lock_dir_missing_directory_is_not_found() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = RealFs::new()
        .lock_dir(&dir.path().join("missing"))
        .expect_err("no dir");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}
