//! `File::write_batch` on [`RealFs`], on both paths: io_uring (where the kernel allows it)
//! and the `pwrite` fallback. Each test runs the same batch on both and reads it back.

use popdb_io::{FileSystem, OpenOptions, RealFs, WriteOp};

/// Both file systems, labelled; the io_uring one may have fallen back on this machine.
fn both_paths() -> [(&'static str, RealFs); 2] {
    [
        ("io_uring", RealFs::new()),
        ("fallback", RealFs::without_io_uring()),
    ]
}

/// Deterministic bytes that differ per `seed`, so misplaced writes show.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(37))
        .collect()
}

#[test]
fn io_uring_path_is_used_when_available() {
    let fs = RealFs::new();
    if let Some(reason) = fs.io_uring_unavailable_reason() {
        println!("io_uring unavailable here: {reason}");
        assert!(!fs.io_uring_active());
        return;
    }
    assert!(fs.io_uring_active());
    let dir = tempfile::tempdir().expect("temp dir");
    let file = fs
        .open(&dir.path().join("a"), OpenOptions::create())
        .expect("create");
    // A single write takes the cheaper pwrite + fdatasync path ...
    let one = [WriteOp {
        offset: 0,
        bytes: b"ring",
    }];
    file.write_batch(&one, true).expect("batch");
    assert_eq!(
        fs.io_uring_batch_count(),
        0,
        "a single write went through the ring"
    );
    // ... and several go through the ring in one submission.
    let two = [
        WriteOp {
            offset: 0,
            bytes: b"ri",
        },
        WriteOp {
            offset: 2,
            bytes: b"ng",
        },
    ];
    file.write_batch(&two, true).expect("batch");
    assert_eq!(
        fs.io_uring_batch_count(),
        1,
        "the batch did not go through the ring"
    );
}

#[test]
fn without_io_uring_never_uses_the_ring() {
    let fs = RealFs::without_io_uring();
    assert!(!fs.io_uring_active());
    let reason = fs.io_uring_unavailable_reason().expect("a reason");
    assert!(reason.contains("without_io_uring"), "{reason}");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = fs
        .open(&dir.path().join("a"), OpenOptions::create())
        .expect("create");
    file.write_batch(
        &[WriteOp {
            offset: 0,
            bytes: b"x",
        }],
        true,
    )
    .expect("batch");
    assert_eq!(fs.io_uring_batch_count(), 0);
}

#[test]
fn write_batch_with_sync_large_and_small_ops_reads_back() {
    let small_a = pattern(100, 1);
    let large = pattern(1 << 20, 2);
    let small_b = pattern(4096, 3);
    let unaligned = pattern(777, 4);
    for (label, fs) in both_paths() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = fs
            .open(&dir.path().join("a"), OpenOptions::create())
            .expect("create");
        let ops = [
            WriteOp {
                offset: 0,
                bytes: &small_a,
            },
            WriteOp {
                offset: 4096,
                bytes: &large,
            },
            WriteOp {
                offset: 4096 + (1 << 20),
                bytes: &small_b,
            },
            WriteOp {
                offset: 3 << 20,
                bytes: &unaligned,
            },
            WriteOp {
                offset: 50,
                bytes: &[],
            },
        ];
        file.write_batch(&ops, true).expect(label);
        assert_eq!(file.len().expect("len"), (3 << 20) + 777, "{label}");
        for op in &ops {
            let mut back = vec![0_u8; op.bytes.len()];
            file.read_exact_at(&mut back, op.offset).expect("read back");
            assert!(back == op.bytes, "{label}: op at {} differs", op.offset);
        }
        let mut gap = vec![1_u8; 4096 - 100];
        file.read_exact_at(&mut gap, 100).expect("read gap");
        assert!(gap.iter().all(|&b| b == 0), "{label}: gap was written");
    }
}

#[test]
fn write_batch_more_ops_than_ring_slots_keeps_op_order() {
    // 200 ops overflow a 64-entry ring into several rounds; they overlap, so only in-order
    // execution leaves op i's byte at offset i + 7.
    let chunks: Vec<Vec<u8>> = (0..200_u8).map(|i| vec![i; 8]).collect();
    for (label, fs) in both_paths() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = fs
            .open(&dir.path().join("a"), OpenOptions::create())
            .expect("create");
        let ops: Vec<WriteOp<'_>> = chunks
            .iter()
            .enumerate()
            .map(|(i, bytes)| WriteOp {
                offset: i as u64,
                bytes,
            })
            .collect();
        file.write_batch(&ops, true).expect(label);
        let mut back = vec![0_u8; 207];
        file.read_exact_at(&mut back, 0).expect("read back");
        for (offset, &byte) in back.iter().enumerate() {
            let want = offset.min(199) as u8;
            assert_eq!(byte, want, "{label}: byte at {offset}");
        }
    }
}

#[test]
fn write_batch_sync_only_and_empty_batches_succeed() {
    for (label, fs) in both_paths() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = fs
            .open(&dir.path().join("a"), OpenOptions::create())
            .expect("create");
        file.write_batch(&[], true).expect(label);
        file.write_batch(&[], false).expect(label);
        file.write_batch(
            &[WriteOp {
                offset: 9,
                bytes: b"z",
            }],
            false,
        )
        .expect(label);
        assert_eq!(file.len().expect("len"), 10, "{label}");
    }
}

#[test]
fn write_batch_on_read_only_file_reports_the_real_cause() {
    for (label, fs) in both_paths() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a");
        fs.open(&path, OpenOptions::create()).expect("create");
        let file = fs
            .open(&path, OpenOptions::read_only())
            .expect("open read-only");
        let ops = [
            WriteOp {
                offset: 0,
                bytes: b"one",
            },
            WriteOp {
                offset: 3,
                bytes: b"two",
            },
        ];
        // On the ring, the first write fails with EBADF and the kernel cancels the rest of
        // the chain; the caller must see EBADF, not ECANCELED.
        let err = file.write_batch(&ops, true).expect_err(label);
        assert_eq!(err.raw_os_error(), Some(9), "{label}: {err:?} is not EBADF");
        // The failure left the ring usable.
        let ok = fs
            .open(&path, OpenOptions::read_write())
            .expect("open read-write");
        ok.write_batch(&ops, true).expect(label);
        let mut back = [0_u8; 6];
        ok.read_exact_at(&mut back, 0).expect("read back");
        assert_eq!(&back, b"onetwo", "{label}");
        if fs.io_uring_active() {
            assert_eq!(
                fs.io_uring_batch_count(),
                2,
                "{label}: both batches took the ring"
            );
        }
    }
}
