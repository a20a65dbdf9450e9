//! Corruption sweep: a flipped byte anywhere in a log either lies in the final write and is
//! truncated as a torn tail (naming the LSNs it removes), lies in bytes the format ignores
//! and changes nothing, or makes open fail with a corruption error. Never a silently
//! shortened log with valid writes lost after the damage, never a panic.
#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::Path;
use std::sync::Arc;

use popdb_io::{FileSystem, FsRef, OpenOptions, RealFs};
use popdb_wal::{Error, Lsn, RecordKind, Wal, WalOptions};

const SEGMENT_SIZE: u64 = 64 * 1024;
const HEADER_BLOCK: u64 = 4096;
const HEADER_FIELDS: u64 = 64;
const UNIT_HEADER: u64 = 40;
const RECORD_HEADER: u64 = 36;

fn options() -> WalOptions {
    WalOptions {
        segment_size: SEGMENT_SIZE,
        record_size_max: 4096,
        spare_segments: 0,
        prewrite_segments: true,
        ..WalOptions::default()
    }
}

/// Where each single-record unit lies: (segment index, offset, size). Sequential blocking
/// appends make one unit each; a unit that does not fit starts the next segment.
fn layout(payloads: &[usize]) -> Vec<(usize, u64, u64)> {
    let mut out = Vec::new();
    let (mut segment, mut offset) = (0usize, HEADER_BLOCK);
    for &p in payloads {
        let size = UNIT_HEADER + RECORD_HEADER + p as u64;
        if offset + size > SEGMENT_SIZE {
            segment += 1;
            offset = HEADER_BLOCK;
        }
        out.push((segment, offset, size));
        offset += size;
    }
    out
}

fn segment_files(fs: &RealFs, dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs
        .read_dir(dir)
        .unwrap()
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| {
            n.len() == 20
                && n.starts_with(|c: char| c.is_ascii_hexdigit())
                && Path::new(n).extension().is_some_and(|e| e == "wal")
        })
        .collect();
    names.sort();
    names
}

fn flip(fs: &RealFs, path: &Path, offset: u64) {
    let file = fs.open(path, OpenOptions::read_write()).unwrap();
    let mut b = [0u8];
    file.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x40;
    file.write_all_at(&b, offset).unwrap();
    file.sync_data().unwrap();
}

#[test]
fn recovery_flipped_byte_is_torn_tail_or_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::new();
    let fs_ref: FsRef = Arc::new(RealFs::new());
    let payloads: Vec<usize> = (0..90).map(|i| 300 + (i * 37) % 1500).collect();
    let count = payloads.len() as u64;
    {
        let (wal, _) = Wal::open(Arc::clone(&fs_ref), dir.path(), options()).unwrap();
        for (i, &p) in payloads.iter().enumerate() {
            wal.append(RecordKind::Normal, vec![i as u8; p]).unwrap();
        }
        wal.close().unwrap();
    }
    let units = layout(&payloads);
    let segments = segment_files(&fs, dir.path());
    assert_eq!(
        segments.len(),
        units.last().unwrap().0 + 1,
        "layout model disagrees with the log"
    );
    let tail_index = segments.len() - 1;
    let (_, last_offset, last_size) = *units.last().unwrap();
    let log_end = last_offset + last_size;

    // Offsets to damage: every byte of the last three units and the blank bytes after
    // them, every header byte of the earlier units, the segment header fields, and a
    // sample of the rest.
    let mut targets: Vec<(usize, u64)> = Vec::new();
    for (i, &(segment, offset, size)) in units.iter().enumerate() {
        let whole = i + 3 >= units.len();
        let span = if whole {
            size
        } else {
            UNIT_HEADER + RECORD_HEADER
        };
        targets.extend((offset..offset + span).map(|o| (segment, o)));
        if !whole {
            targets.push((segment, offset + size - 1));
        }
    }
    for segment in 0..segments.len() {
        targets.extend((0..HEADER_FIELDS).map(|o| (segment, o)));
        targets.push((segment, HEADER_FIELDS + 100));
    }
    targets.extend((log_end..log_end + 200).map(|o| (tail_index, o)));

    let (mut torn, mut corrupt, mut unchanged) = (0u64, 0u64, 0u64);
    for &(segment, offset) in &targets {
        let path = dir.path().join(&segments[segment]);
        flip(&fs, &path, offset);
        let in_last_unit = segment == tail_index && (last_offset..log_end).contains(&offset);
        let ignored = (HEADER_FIELDS..HEADER_BLOCK).contains(&offset)
            || (segment == tail_index && offset >= log_end);
        let what = format!("flip in {} at {offset}", segments[segment]);
        match Wal::open(Arc::clone(&fs_ref), dir.path(), options()) {
            Ok((wal, report)) => {
                if in_last_unit {
                    let tail = report.torn_tail.expect(&what);
                    assert_eq!(tail.offset, last_offset, "{what}");
                    assert_eq!(tail.lost, Some((Lsn(count), Lsn(count))), "{what}");
                    assert_eq!(wal.next_lsn(), Lsn(count), "{what}");
                    torn += 1;
                } else {
                    assert!(ignored, "{what}: opened without complaint");
                    assert_eq!(report.torn_tail, None, "{what}");
                    assert_eq!(wal.next_lsn(), Lsn(count + 1), "{what}");
                    unchanged += 1;
                }
                let first = report.first.unwrap();
                let records = wal.read(first..wal.next_lsn()).unwrap();
                for r in &records {
                    assert_eq!(
                        r.payload,
                        vec![(r.id.lsn.0 - 1) as u8; payloads[(r.id.lsn.0 - 1) as usize]]
                    );
                }
                drop(wal);
            }
            Err(Error::Corruption(c)) => {
                assert!(!in_last_unit && !ignored, "{what}: {c}");
                corrupt += 1;
            }
            Err(e) => panic!("{what}: unexpected error {e}"),
        }
        flip(&fs, &path, offset);
    }
    println!(
        "corruption sweep: {} flips: {torn} torn tails, {corrupt} corruption errors, \
         {unchanged} ignored bytes",
        targets.len()
    );
    // The log is whole again.
    let (wal, report) = Wal::open(fs_ref, dir.path(), options()).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(wal.next_lsn(), Lsn(count + 1));
}

#[test]
fn recovery_flipped_state_byte_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::new();
    let fs_ref: FsRef = Arc::new(RealFs::new());
    {
        let (wal, _) = Wal::open(Arc::clone(&fs_ref), dir.path(), options()).unwrap();
        wal.append(RecordKind::Normal, b"x".to_vec()).unwrap();
        wal.save_vote(b"voted-for-2").unwrap();
        wal.close().unwrap();
    }
    let path = dir.path().join("STATE");
    let len = fs
        .open(&path, OpenOptions::read_only())
        .unwrap()
        .len()
        .unwrap();
    for offset in 0..len {
        flip(&fs, &path, offset);
        let result = Wal::open(Arc::clone(&fs_ref), dir.path(), options());
        assert!(
            matches!(result, Err(Error::Corruption(_))),
            "flip at {offset} accepted"
        );
        flip(&fs, &path, offset);
    }
}
