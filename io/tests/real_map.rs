//! Read-only maps of [`RealFs`] files: range checks, and views that follow later writes.

use std::io;

use popdb_io::{FileSystem, OpenOptions, RealFs};

#[test]
fn map_sees_pwrite_made_after_mapping() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = RealFs::new();
    let file = fs
        .open(&dir.path().join("a"), OpenOptions::create())
        .expect("create");
    file.set_len(3 * 4096).expect("size");
    // An offset that is not page aligned exercises memmap2's alignment slack.
    let view = file.map(4096 + 100, 4096).expect("map");
    assert!(view.iter().all(|&b| b == 0));
    file.write_all_at(b"after", 4096 + 100).expect("write");
    assert_eq!(&view[..5], b"after");
    // Another handle's write lands in the same page cache.
    let other = fs
        .open(&dir.path().join("a"), OpenOptions::read_write())
        .expect("reopen");
    other
        .write_all_at(b"other", 4096 + 100 + 4091)
        .expect("write end");
    assert_eq!(&view[4091..], b"other");
    let clone = view.clone();
    drop(view);
    assert_eq!(&clone[..5], b"after");
}

#[test]
fn map_out_of_range_is_invalid_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = RealFs::new();
    let file = fs
        .open(&dir.path().join("a"), OpenOptions::create())
        .expect("create");
    file.set_len(100).expect("size");
    for (offset, len) in [(0, 101), (100, 1), (1000, 0), (u64::MAX, 2)] {
        let err = file.map(offset, len).expect_err("outside the file");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "({offset}, {len})");
    }
}

#[test]
fn map_whole_file_and_empty_ranges() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = RealFs::new();
    let file = fs
        .open(&dir.path().join("a"), OpenOptions::create())
        .expect("create");
    assert!(file.map(0, 0).expect("empty file, empty range").is_empty());
    file.write_all_at(b"0123456789", 0).expect("write");
    assert_eq!(&*file.map(0, 10).expect("whole"), b"0123456789");
    assert_eq!(&*file.map(3, 4).expect("middle"), b"3456");
    assert!(file.map(10, 0).expect("empty at end").is_empty());
}
