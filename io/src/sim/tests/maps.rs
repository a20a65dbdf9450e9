//! Map views: they show the file's bytes as reads would, including writes made after the
//! view was taken, and die with a crash.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use super::{create_synced, read_all};
use crate::{Fault, FaultError, FaultOp, FileSystem, Mapping, OpenOptions, SimFs};

/// `len` bytes counting up from `salt`.
fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_add(salt)).collect()
}

/// How many copies the view behind `view` holds, from its `Debug` output.
fn copies(view: &Mapping) -> usize {
    let text = format!("{view:?}");
    let tail = &text[text.find("copies: ").expect("the view lists its copies") + 8..];
    let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

#[test]
fn map_view_sees_later_writes_at_start_middle_and_end() {
    let fs = SimFs::new(1);
    let mut expected = pattern(4096, 0);
    let file = create_synced(&fs, "/f", &expected);
    let other = fs.open(Path::new("/f"), OpenOptions::read_write()).unwrap();
    // The range [1000, 3000) of the file; offsets below are relative to it.
    let view = file.map(1000, 2000).unwrap();
    assert_eq!(&*view, &expected[1000..3000]);
    for (at, len, value, through) in [
        (0, 7, 0xA1, &file),
        (993, 14, 0xB2, &other),
        (1990, 10, 0xC3, &file),
    ] {
        let bytes = vec![value; len];
        through.write_all_at(&bytes, 1000 + at as u64).unwrap();
        expected[1000 + at..1000 + at + len].copy_from_slice(&bytes);
        assert_eq!(&*view, &expected[1000..3000], "after the write at {at}");
        assert_eq!(view.len(), 2000);
    }
    // Writes straddling either edge show their part inside the range.
    other.write_all_at(&[0xD4; 20], 990).unwrap();
    file.write_all_at(&[0xE5; 20], 2990).unwrap();
    expected[990..1010].fill(0xD4);
    expected[2990..3010].fill(0xE5);
    assert_eq!(&*view, &expected[1000..3000]);
    assert_eq!(read_all(&fs, "/f"), expected);
    fs.check_invariants();
}

#[test]
fn map_two_views_of_one_file_agree() {
    let fs = SimFs::new(2);
    let file = create_synced(&fs, "/f", &pattern(1024, 5));
    let reader = fs.open(Path::new("/f"), OpenOptions::read_only()).unwrap();
    let whole = file.map(0, 1024).unwrap();
    let part = reader.map(256, 512).unwrap();
    let clone = part.clone();
    for round in 0..20_u8 {
        let at = u64::from(round) * 50;
        file.write_all_at(&pattern(40, round.wrapping_mul(31)), at)
            .unwrap();
        assert_eq!(&whole[256..768], &*part, "round {round}");
        assert_eq!(&*clone, &*part, "clones share one view");
    }
    assert_eq!(&*whole, read_all(&fs, "/f"));
}

#[test]
fn map_write_outside_the_range_is_harmless() {
    let fs = SimFs::new(3);
    let data = pattern(4096, 9);
    let file = create_synced(&fs, "/f", &data);
    let view = file.map(1024, 1024).unwrap();
    file.write_all_at(&[0xFF; 1024], 0).unwrap();
    file.write_all_at(&[0xFF; 1024], 2048).unwrap();
    file.write_all_at(&[0xFF; 100], 4096).unwrap(); // grows the file
    assert_eq!(&*view, &data[1024..2048]);
    assert_eq!(copies(&view), 1, "an unchanged range adds no copy");
    fs.check_invariants();
}

#[test]
fn map_view_returns_the_newest_bytes_across_many_writes() {
    let fs = SimFs::new(4);
    let file = create_synced(&fs, "/f", &[0; 600]);
    let view = file.map(100, 400).unwrap();
    let first: &[u8] = &view;
    let mut expected = vec![0u8; 600];
    for round in 1..=200_u32 {
        let at = (round * 37 % 580) as usize;
        let bytes = pattern(20, round as u8);
        file.write_all_at(&bytes, at as u64).unwrap();
        expected[at..at + 20].copy_from_slice(&bytes);
        // Twice: the second read takes the lock-free path.
        assert_eq!(&*view, &expected[100..500], "round {round}");
        assert_eq!(&*view, &expected[100..500], "round {round}, again");
    }
    assert_eq!(
        first,
        &[0; 400][..],
        "a slice handed out earlier never changes"
    );
    assert!(
        copies(&view) <= 201,
        "one copy per distinct content at most"
    );
}

#[test]
fn map_view_follows_set_len_and_returns_what_reads_would() {
    let fs = SimFs::new(5);
    let file = create_synced(&fs, "/f", &pattern(100, 1));
    let view = file.map(40, 50).unwrap();
    file.set_len(60).unwrap();
    assert_eq!(&*view, &pattern(100, 1)[40..60], "truncated into the range");
    file.set_len(30).unwrap();
    assert!(view.is_empty(), "truncated below the range");
    file.set_len(200).unwrap();
    assert_eq!(&*view, &[0; 50][..], "grown back with zeros");
    file.write_all_at(b"xyz", 40).unwrap();
    assert_eq!(&view[..3], b"xyz");
    let truncating = OpenOptions {
        truncate: true,
        ..OpenOptions::read_write()
    };
    drop(fs.open(Path::new("/f"), truncating).unwrap());
    assert!(view.is_empty(), "a truncating open is a set_len too");
}

#[test]
fn map_view_follows_cache_eviction_after_a_failed_sync() {
    for seed in 0..100 {
        let fs = SimFs::new(seed);
        let file = create_synced(&fs, "/f", &[b'a'; 2048]);
        let view = file.map(0, 2048).unwrap();
        file.write_all_at(&[b'b'; 2048], 0).unwrap();
        fs.inject(Fault::new(FaultOp::Sync, FaultError::Eio));
        file.sync_data().unwrap_err();
        assert_eq!(&*view, &[b'b'; 2048][..], "the cache still shows the write");
        let durable = fs.read_durable(Path::new("/f")).unwrap();
        file.evict_cache().unwrap();
        assert_eq!(
            &*view,
            &durable[..],
            "seed {seed}: after eviction, the medium"
        );
        if durable != [b'b'; 2048] {
            return;
        }
    }
    panic!("no seed in 100 lost anything on a failed sync");
}

#[test]
fn map_view_keeps_its_file_alive_like_a_mapping() {
    let fs = SimFs::new(6);
    let file = create_synced(&fs, "/f", b"abcdef");
    let view = file.map(0, 6).unwrap();
    file.write_all_at(b"XY", 2).unwrap();
    fs.remove_file(Path::new("/f")).unwrap();
    drop(file);
    fs.sync_dir(Path::new("/")).unwrap();
    assert_eq!(fs.stats().files_count, 1, "a mapped file is live");
    assert_eq!(fs.stats().used_size, 6);
    assert_eq!(&*view, b"abXYef", "the write before the removal shows");
    drop(view);
    fs.sync_dir(Path::new("/")).unwrap();
    assert_eq!(fs.stats().files_count, 0, "dropping the view frees it");
    fs.check_invariants();
}

#[test]
fn map_bit_flip_is_in_the_first_copy_only() {
    let fs = SimFs::new(7);
    let data = pattern(64, 0);
    let file = create_synced(&fs, "/f", &data);
    fs.inject(Fault::new(FaultOp::Read, FaultError::BitFlip));
    let view = file.map(0, 64).unwrap();
    assert_ne!(&*view, &data[..]);
    assert_ne!(
        &*view,
        &data[..],
        "the flip stays while the file is unchanged"
    );
    file.write_all_at(&data[..1], 0).unwrap();
    assert_eq!(&*view, &data[..], "a change re-reads the page cache");
    assert_eq!(
        fs.stats().faults_fired_count,
        1,
        "re-reads are never faulted"
    );
}

#[test]
fn map_view_is_consistent_while_another_thread_writes() {
    let fs = SimFs::new(8);
    let file = create_synced(&fs, "/f", &[0; 4096]);
    let view = file.map(0, 4096).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(4));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (view, done, start) = (view.clone(), Arc::clone(&done), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                let mut last = 0;
                while !done.load(Ordering::Acquire) {
                    let bytes: &[u8] = &view;
                    let value = bytes[0];
                    assert!(bytes.iter().all(|&b| b == value), "a torn copy");
                    assert!(value >= last, "went back from {last} to {value}");
                    last = value;
                }
            })
        })
        .collect();
    start.wait();
    for value in 1..=100_u8 {
        file.write_all_at(&[value; 4096], 0).unwrap();
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        reader.join().unwrap();
    }
    assert_eq!(view[4095], 100);
}

#[test]
#[should_panic(expected = "from before a simulated crash")]
fn map_view_changed_before_a_crash_panics_when_read() {
    let fs = SimFs::new(9);
    let file = create_synced(&fs, "/f", b"abc");
    let view = file.map(0, 3).unwrap();
    assert_eq!(&*view, b"abc");
    file.write_all_at(b"z", 0).unwrap();
    fs.crash();
    let _ = view.len();
}

#[test]
fn map_view_from_before_a_crash_is_dropped_safely() {
    let fs = SimFs::new(10);
    let file = create_synced(&fs, "/f", b"abc");
    let view = file.map(0, 3).unwrap();
    drop(file);
    fs.crash();
    let file = fs.open(Path::new("/f"), OpenOptions::read_write()).unwrap();
    let new_view = file.map(0, 3).unwrap();
    drop(view); // must not touch the new epoch's open count
    drop(file);
    fs.remove_file(Path::new("/f")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    assert_eq!(
        fs.stats().files_count,
        1,
        "the new view still holds the file"
    );
    assert_eq!(&*new_view, b"abc");
    drop(new_view);
    fs.sync_dir(Path::new("/")).unwrap();
    assert_eq!(fs.stats().files_count, 0);
    fs.check_invariants();
}

#[test]
fn map_view_read_while_down_after_a_crash_shows_its_last_bytes() {
    let fs = SimFs::new(11);
    let file = create_synced(&fs, "/f", b"abc");
    let view = file.map(0, 3).unwrap();
    assert_eq!(&*view, b"abc");
    // Read by the view, then lost: the crash keeps only the synced bytes.
    file.write_all_at(b"z", 0).unwrap();
    assert_eq!(&*view, b"zbc");
    fs.set_crash_after_ops(0);
    assert!(file.sync_data().is_err(), "the armed crash strikes");
    assert!(fs.is_down());
    // Another thread of the dying process still reads its memory, not the medium.
    let racing = {
        let view = view.clone();
        std::thread::spawn(move || view.to_vec())
    };
    assert_eq!(racing.join().unwrap(), b"zbc");
    assert_eq!(&*view, b"zbc");
}

#[test]
#[should_panic(expected = "from before a simulated crash was used after the restart")]
fn map_view_from_before_a_crash_panics_after_the_restart() {
    let fs = SimFs::new(12);
    let file = create_synced(&fs, "/f", b"abc");
    let view = file.map(0, 3).unwrap();
    fs.set_crash_after_ops(0);
    assert!(file.write_all_at(b"z", 0).is_err());
    assert_eq!(&*view, b"abc", "readable while down");
    fs.restart();
    let _ = view.len();
}
