//! Round trips through [`RealFs`]: files, directory entries, syncs, space reservation and
//! cache eviction, on a temporary directory.

use std::ffi::OsString;
use std::io;

use popdb_io::{FileSystem, OpenOptions, RealFs};

#[test]
fn open_create_new_then_reopen_reads_back_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = RealFs::new();
    let path = dir.path().join("a");
    let file = fs.open(&path, OpenOptions::create_new()).expect("create");
    assert!(file.is_empty().expect("len"));
    file.write_all_at(b"hello, world", 0).expect("write");
    file.write_all_at(b"HELLO", 0).expect("overwrite");
    assert_eq!(file.len().expect("len"), 12);
    file.sync_all().expect("sync_all");
    drop(file);

    let file = fs.open(&path, OpenOptions::read_only()).expect("reopen");
    let mut buf = [0_u8; 12];
    file.read_exact_at(&mut buf, 0).expect("read");
    assert_eq!(&buf, b"HELLO, world");
    let mut tail = [0_u8; 4];
    let err = file
        .read_exact_at(&mut tail, 10)
        .expect_err("read past the end");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(file.read_at(&mut tail, 12).expect("read at end"), 0);
}

#[test]
fn open_create_new_existing_file_is_already_exists() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = RealFs::new();
    let path = dir.path().join("a");
    fs.open(&path, OpenOptions::create()).expect("create");
    let err = fs
        .open(&path, OpenOptions::create_new())
        .expect_err("exists");
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    let err = fs
        .open(&dir.path().join("missing"), OpenOptions::read_write())
        .expect_err("missing");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

#[test]
fn set_len_truncates_and_extends_with_zeros() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = RealFs::new();
    let file = fs
        .open(&dir.path().join("a"), OpenOptions::create())
        .expect("create");
    file.write_all_at(&[7_u8; 100], 0).expect("write");
    file.set_len(10).expect("truncate");
    assert_eq!(file.len().expect("len"), 10);
    file.set_len(20).expect("extend");
    let mut buf = [1_u8; 20];
    file.read_exact_at(&mut buf, 0).expect("read");
    assert_eq!(&buf[..10], &[7_u8; 10]);
    assert_eq!(&buf[10..], &[0_u8; 10]);
    file.sync_data().expect("sync_data");
}

#[test]
fn rename_link_remove_and_read_dir_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = RealFs::new();
    let sub = dir.path().join("x").join("y");
    fs.create_dir_all(&sub).expect("mkdir -p");
    fs.sync_dir(dir.path()).expect("sync parent");
    let a = sub.join("a");
    let b = sub.join("b");
    let c = sub.join("c");
    fs.open(&a, OpenOptions::create())
        .expect("create")
        .write_all_at(b"data", 0)
        .expect("write");
    fs.rename(&a, &b).expect("rename");
    fs.hard_link(&b, &c).expect("link");
    fs.sync_dir(&sub).expect("sync dir");
    assert!(!fs.exists(&a).expect("exists a"));
    assert!(fs.exists(&b).expect("exists b"));
    let mut names = fs.read_dir(&sub).expect("read_dir");
    names.sort();
    assert_eq!(names, vec![OsString::from("b"), OsString::from("c")]);

    fs.remove_file(&b).expect("remove b");
    let mut buf = [0_u8; 4];
    let linked = fs.open(&c, OpenOptions::read_only()).expect("open link");
    linked.read_exact_at(&mut buf, 0).expect("read link");
    assert_eq!(&buf, b"data");
    fs.remove_file(&c).expect("remove c");
    fs.remove_dir(&sub).expect("rmdir");
    assert!(!fs.exists(&sub).expect("exists dir"));
    assert_eq!(
        fs.remove_file(&c).expect_err("already gone").kind(),
        io::ErrorKind::NotFound
    );
}

#[test]
fn rename_over_existing_file_replaces_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = RealFs::new();
    let (from, to) = (dir.path().join("from"), dir.path().join("to"));
    fs.open(&from, OpenOptions::create())
        .expect("from")
        .write_all_at(b"new", 0)
        .expect("w");
    fs.open(&to, OpenOptions::create())
        .expect("to")
        .write_all_at(b"old!", 0)
        .expect("w");
    fs.rename(&from, &to).expect("rename");
    let file = fs.open(&to, OpenOptions::read_only()).expect("open");
    assert_eq!(file.len().expect("len"), 3);
}

#[test]
fn allocate_reserves_length_without_changing_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = RealFs::new();
    let file = fs
        .open(&dir.path().join("a"), OpenOptions::create())
        .expect("create");
    file.write_all_at(b"keep", 0).expect("write");
    match file.allocate(1 << 20) {
        Ok(()) => {}
        // Documented: no fallback to set_len, which would reserve nothing.
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            println!("fallocate unsupported here: {e}");
            return;
        }
        Err(e) => panic!("allocate: {e}"),
    }
    assert_eq!(file.len().expect("len"), 1 << 20);
    let mut buf = [9_u8; 8];
    file.read_exact_at(&mut buf, 0).expect("read");
    assert_eq!(&buf, b"keep\0\0\0\0");
    file.allocate(10).expect("allocating less never shrinks");
    assert_eq!(file.len().expect("len"), 1 << 20);
}

#[test]
fn evict_cache_after_sync_keeps_the_bytes_readable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = RealFs::new();
    let file = fs
        .open(&dir.path().join("a"), OpenOptions::create())
        .expect("create");
    let data: Vec<u8> = (0..64 * 1024_u32).map(|i| (i % 251) as u8).collect();
    file.write_all_at(&data, 0).expect("write");
    file.sync_data().expect("sync");
    file.evict_cache().expect("evict");
    let mut back = vec![0_u8; data.len()];
    file.read_exact_at(&mut back, 0).expect("read after evict");
    assert_eq!(back, data);
}
