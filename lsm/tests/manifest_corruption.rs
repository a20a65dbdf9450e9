//! Damaged manifests and `CURRENT` files: every byte flipped (three patterns) and every
//! truncation must give either `Corruption` naming the file and the right offset, or (only
//! within the last frame) a torn tail dropped with the state before that frame; never a
//! wrong state. Also: frames moved or copied from another manifest, junk after the last frame,
//! missing files, and the directory rules (create refuses an existing tree, rotation removes
//! the old manifest, a large tree does not rotate on every edit).

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod manifest_common;

use std::path::Path;

use manifest_common::{
    DIR, Draw, Rng, file_meta, fs_ref, prefix_states, random_edits, read_file, sim, write_file,
};
use popdb_io::{FileSystem, SimFs};
use popdb_lsm::internals::manifest::{CURRENT_FILE, HEADER_SIZE, manifest_file_name, replay};
use popdb_lsm::{
    Corruption, CorruptionKind, Error, Manifest, ManifestOptions, ManifestRecovery, ManifestState,
    TornTail, VersionEdit,
};

const NO_ROTATION: ManifestOptions = ManifestOptions {
    rotate_size: u64::MAX,
    base_frame_size: 150,
};

/// A live manifest with a base of several frames and edits after it, as bytes.
struct Sample {
    manifest_name: String,
    manifest: Vec<u8>,
    current: Vec<u8>,
    base_size: usize,
    /// `(start, end)` of every frame, base frames first.
    frames: Vec<(usize, usize)>,
    /// `states[i]`: the state after frames `0..i`.
    states: Vec<ManifestState>,
}

impl Sample {
    fn build() -> Self {
        let fs = sim(1);
        let dir = Path::new(DIR);
        let mut m = Manifest::create_with(fs_ref(&fs), dir, NO_ROTATION).unwrap();
        for edit in random_edits(&mut Rng(11), 12) {
            m.log_edit(&edit).unwrap();
        }
        drop(m);
        // The next edit rotates: its state becomes a base of several frames.
        let rotate = ManifestOptions {
            rotate_size: 0,
            ..NO_ROTATION
        };
        let (mut m, state, _) = Manifest::open_with(fs_ref(&fs), dir, rotate).unwrap();
        let mut rng = Rng(12);
        let mut state = state;
        for _ in 0..4 {
            let edit = rng.edit(&state);
            state.apply(&edit).unwrap();
            m.log_edit(&edit).unwrap();
            m = reopen_without_rotation(&fs, m);
        }
        let manifest_name = m.manifest_file_name();
        assert_eq!(manifest_name, manifest_file_name(2), "one rotation");
        Self::from_files(read_file(&fs, &manifest_name), read_file(&fs, CURRENT_FILE))
    }

    fn from_files(manifest: Vec<u8>, current: Vec<u8>) -> Self {
        let number = u64::from_le_bytes(current[16..24].try_into().unwrap());
        let base_size = u64::from_le_bytes(current[24..32].try_into().unwrap()) as usize;
        let mut starts = Vec::new();
        let mut edits: Vec<VersionEdit> = Vec::new();
        let found = replay(&manifest, number, base_size as u64, |at, edit| {
            starts.push(at as usize);
            edits.push(edit.clone());
        })
        .unwrap();
        assert_eq!(found.valid_size as usize, manifest.len());
        let ends: Vec<usize> = starts
            .iter()
            .skip(1)
            .copied()
            .chain([manifest.len()])
            .collect();
        let frames: Vec<(usize, usize)> = starts.into_iter().zip(ends).collect();
        assert!(found.base_frames_count >= 3, "{found:?}");
        assert!(found.edits_count >= 3, "{found:?}");
        Self {
            manifest_name: manifest_file_name(number),
            manifest,
            current,
            base_size,
            frames,
            states: prefix_states(&edits),
        }
    }

    /// Opens `manifest` and `current` as the tree directory of a fresh file system.
    fn open(&self, manifest: &[u8], current: &[u8]) -> (SimFs, Result<ManifestRecovery, Error>) {
        let fs = sim(2);
        write_file(&fs, &self.manifest_name, manifest);
        write_file(&fs, CURRENT_FILE, current);
        let opened = Manifest::open_with(fs_ref(&fs), Path::new(DIR), NO_ROTATION);
        let result = opened.map(|(m, state, recovery)| {
            assert_eq!(m.state(), &state);
            state.check_invariants();
            assert_eq!(recovery.manifest_file, self.manifest_name);
            (state, recovery)
        });
        match result {
            Ok((state, recovery)) => {
                let frames_kept = self
                    .frames
                    .iter()
                    .filter(|f| f.1 as u64 <= recovery.size)
                    .count();
                assert_eq!(
                    state, self.states[frames_kept],
                    "state after {frames_kept} frames"
                );
                (fs, Ok(recovery))
            }
            Err(e) => (fs, Err(e)),
        }
    }

    /// The frame holding byte `at`.
    fn frame_of(&self, at: usize) -> usize {
        self.frames
            .iter()
            .position(|&(s, e)| (s..e).contains(&at))
            .unwrap()
    }
}

fn reopen_without_rotation(fs: &SimFs, m: Manifest) -> Manifest {
    drop(m);
    Manifest::open_with(fs_ref(fs), Path::new(DIR), NO_ROTATION)
        .unwrap()
        .0
}

fn corruption(result: Result<ManifestRecovery, Error>) -> Corruption {
    match result {
        Err(Error::Corruption(c)) => c,
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn manifest_every_byte_flip_is_corruption_or_a_dropped_last_frame() {
    let s = Sample::build();
    let last = s.frames.len() - 1;
    let (mut refused, mut dropped) = (0, 0);
    for at in 0..s.manifest.len() {
        for pattern in [0x01u8, 0x80, 0xff] {
            let mut bad = s.manifest.clone();
            bad[at] ^= pattern;
            let (_, result) = s.open(&bad, &s.current);
            let frame = (at >= HEADER_SIZE).then(|| s.frame_of(at));
            if frame == Some(last) {
                let recovery = result.unwrap_or_else(|e| panic!("flip at {at}: {e}"));
                let (start, end) = s.frames[last];
                let torn = TornTail {
                    offset: start as u64,
                    size: (end - start) as u64,
                };
                assert_eq!(recovery.torn_tail, Some(torn), "flip at {at}");
                dropped += 1;
                continue;
            }
            let c = corruption(result);
            assert_eq!(
                c.file_name.as_deref(),
                Some(&s.manifest_name[..]),
                "flip at {at}"
            );
            match frame {
                None => assert!(c.offset < HEADER_SIZE as u64, "flip at {at}: {c}"),
                Some(k) => {
                    assert_eq!(c.offset, s.frames[k].0 as u64, "flip at {at}: {c}");
                    if s.frames[k].0 >= s.base_size {
                        let later_offset = s.frames[k + 1].0 as u64;
                        let kind = CorruptionKind::DamageBeforeValidFrame { later_offset };
                        assert_eq!(c.kind, kind, "flip at {at}");
                    }
                }
            }
            refused += 1;
        }
    }
    println!(
        "{} bytes x 3 flips: {refused} refused, {dropped} dropped as torn",
        s.manifest.len()
    );
}

#[test]
fn manifest_current_every_byte_flip_is_corruption() {
    let s = Sample::build();
    for at in 0..s.current.len() {
        for pattern in [0x01u8, 0x80, 0xff] {
            let mut bad = s.current.clone();
            bad[at] ^= pattern;
            let c = corruption(s.open(&s.manifest, &bad).1);
            assert_eq!(c.file_name.as_deref(), Some("CURRENT"), "flip at {at}");
        }
    }
    for len in 0..s.current.len() {
        let c = corruption(s.open(&s.manifest, &s.current[..len]).1);
        assert_eq!(c.file_name.as_deref(), Some("CURRENT"), "cut at {len}");
    }
    let mut long = s.current.clone();
    long.extend_from_slice(&[0; 100]);
    let c = corruption(s.open(&s.manifest, &long).1);
    assert_eq!((c.what, c.offset), ("CURRENT length", 36));
}

#[test]
fn manifest_every_truncation_is_corruption_in_the_base_else_a_prefix() {
    let s = Sample::build();
    for len in 0..=s.manifest.len() {
        let (fs, result) = s.open(&s.manifest[..len], &s.current);
        if len < s.base_size {
            let c = corruption(result);
            assert_eq!(
                c.file_name.as_deref(),
                Some(&s.manifest_name[..]),
                "cut at {len}"
            );
            continue;
        }
        let recovery = result.unwrap_or_else(|e| panic!("cut at {len}: {e}"));
        let boundary = s
            .frames
            .iter()
            .map(|f| f.1)
            .filter(|&e| e <= len)
            .max()
            .unwrap();
        let torn = (len != boundary).then_some(TornTail {
            offset: boundary as u64,
            size: (len - boundary) as u64,
        });
        assert_eq!(recovery.torn_tail, torn, "cut at {len}");
        assert_eq!(recovery.size, boundary as u64);
        // The next frame overwrites the torn tail; both survive a reopen.
        let dir = Path::new(DIR);
        let (mut m, mut state, _) = Manifest::open_with(fs_ref(&fs), dir, NO_ROTATION).unwrap();
        let edit = Rng(len as u64).edit(&state);
        state.apply(&edit).unwrap();
        m.log_edit(&edit).unwrap();
        drop(m);
        fs.crash();
        let (_, again, recovery) = Manifest::open_with(fs_ref(&fs), dir, NO_ROTATION).unwrap();
        assert_eq!(again, state, "cut at {len}, then an edit");
        assert_eq!(recovery.torn_tail, None);
    }
}

#[test]
fn manifest_frames_are_valid_only_where_they_were_written() {
    let s = Sample::build();
    let (start, end) = s.frames[s.frames.len() - 2];
    // A copy of an earlier frame after the last one is at the wrong offset: a torn tail.
    let mut copied = s.manifest.clone();
    copied.extend_from_slice(&s.manifest[start..end]);
    let recovery = s.open(&copied, &s.current).1.unwrap();
    assert_eq!(
        recovery.torn_tail.map(|t| t.offset),
        Some(s.manifest.len() as u64)
    );
    // Zeros after the last frame (say, space a file system allocated): a torn tail.
    let mut zeros = s.manifest.clone();
    zeros.resize(zeros.len() + 100, 0);
    let recovery = s.open(&zeros, &s.current).1.unwrap();
    assert_eq!(
        recovery.torn_tail,
        Some(TornTail {
            offset: s.manifest.len() as u64,
            size: 100
        })
    );
    // A frame of manifest 2 placed at the same offset of a manifest 3 does not validate.
    let mut renumbered = s.manifest.clone();
    renumbered[16] = 3;
    let crc = popdb_io::crc32(&renumbered[..24]);
    renumbered[24..28].copy_from_slice(&crc.to_le_bytes());
    let mut current = s.current.clone();
    current[16] = 3;
    let crc = popdb_io::crc32(&current[..32]);
    current[32..36].copy_from_slice(&crc.to_le_bytes());
    let fs = sim(3);
    write_file(&fs, &manifest_file_name(3), &renumbered);
    write_file(&fs, CURRENT_FILE, &current);
    let Err(Error::Corruption(c)) = Manifest::open(fs_ref(&fs), Path::new(DIR)) else {
        panic!("frames of another manifest accepted");
    };
    assert_eq!(
        (c.offset, c.what),
        (HEADER_SIZE as u64, "manifest frame crc32")
    );
}

#[test]
fn manifest_missing_files_and_existing_trees_are_refused() {
    let fs = sim(4);
    let dir = Path::new(DIR);
    let Err(Error::Io { source, .. }) = Manifest::open(fs_ref(&fs), dir) else {
        panic!("opened without CURRENT");
    };
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    assert!(!Manifest::exists(&fs_ref(&fs), dir).unwrap());
    let m = Manifest::create(fs_ref(&fs), dir).unwrap();
    assert!(Manifest::exists(&fs_ref(&fs), dir).unwrap());
    let Err(Error::Io { source, .. }) = Manifest::create(fs_ref(&fs), dir) else {
        panic!("created over an existing tree");
    };
    assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists);
    fs.remove_file(&dir.join(m.manifest_file_name())).unwrap();
    let Err(Error::Corruption(c)) = Manifest::open(fs_ref(&fs), dir) else {
        panic!("opened without its manifest");
    };
    assert_eq!(c.kind, CorruptionKind::Missing);
    assert_eq!(c.file_name, Some(manifest_file_name(1)));
}

#[test]
fn manifest_rotation_keeps_only_live_files_and_names_them() {
    let fs = sim(5);
    let dir = Path::new(DIR);
    let options = ManifestOptions {
        rotate_size: 0,
        base_frame_size: 1,
    };
    let mut m = Manifest::create_with(fs_ref(&fs), dir, options).unwrap();
    let mut numbers = Vec::new();
    for edit in random_edits(&mut Rng(5), 30) {
        m.log_edit(&edit).unwrap();
        numbers.push(m.manifest_file_name());
        let mut live = m.live_file_names();
        live.sort();
        assert_eq!(fs.file_names(dir).unwrap(), live);
    }
    numbers.dedup();
    assert!(numbers.len() > 3, "rotations: {numbers:?}");
    for name in m.live_file_names() {
        assert!(Manifest::is_own_file(&name), "{name}");
    }
    assert!(Manifest::is_own_file("CURRENT.tmp"));
    assert!(Manifest::is_own_file("MANIFEST-00000000000000a0"));
    for other in ["0000000000000001.sst", "MANIFEST-1", "CURRENT.bak", "LOCK"] {
        assert!(!Manifest::is_own_file(other), "{other}");
    }
}

#[test]
fn manifest_large_tree_does_not_rotate_on_every_edit() {
    let fs = sim(6);
    let dir = Path::new(DIR);
    let mut m = Manifest::create_with(fs_ref(&fs), dir, NO_ROTATION).unwrap();
    let files = (1..=200)
        .map(|id| file_meta(id, 0, (id, id), (1, 1), 0))
        .collect();
    m.log_edit(&VersionEdit {
        added: files,
        next_file_id: Some(201),
        ..VersionEdit::default()
    })
    .unwrap();
    drop(m);
    let options = ManifestOptions {
        rotate_size: 1,
        ..NO_ROTATION
    };
    let (mut m, _, _) = Manifest::open_with(fs_ref(&fs), dir, options).unwrap();
    let first = m.manifest_file_name();
    let mut rotations = 0;
    for w in 1..=300 {
        let name = m.manifest_file_name();
        m.log_edit(&VersionEdit {
            watermark: Some(w),
            ..VersionEdit::default()
        })
        .unwrap();
        rotations += usize::from(m.manifest_file_name() != name);
    }
    // The first edit rotates (the edits since the base outgrew it); after that, about one
    // base's worth of small edits passes between rotations.
    assert_ne!(m.manifest_file_name(), first);
    assert!((1..=4).contains(&rotations), "{rotations} rotations");
}

#[test]
fn manifest_base_larger_than_the_file_is_corruption() {
    let s = Sample::build();
    let mut current = s.current.clone();
    current[24..32].copy_from_slice(&(s.manifest.len() as u64 + 1).to_le_bytes());
    let crc = popdb_io::crc32(&current[..32]);
    current[32..36].copy_from_slice(&crc.to_le_bytes());
    let c = corruption(s.open(&s.manifest, &current).1);
    assert_eq!(c.what, "manifest base");
    assert_eq!(c.offset, s.manifest.len() as u64);
    // A base that ends inside a frame.
    let mut current = s.current.clone();
    current[24..32].copy_from_slice(&(s.frames[1].0 as u64 + 1).to_le_bytes());
    let crc = popdb_io::crc32(&current[..32]);
    current[32..36].copy_from_slice(&crc.to_le_bytes());
    let c = corruption(s.open(&s.manifest, &current).1);
    assert_eq!(
        (c.what, c.offset),
        ("manifest base frame end", s.frames[1].0 as u64)
    );
}

/// A hostile tail after the last frame, whose every offset claims a body that fits in the
/// file, would make the search for a valid later frame checksum terabytes (cubic in the
/// tail's size) and hang the open. The search has a byte budget: past it, open refuses with
/// a corruption naming the search, and cuts nothing.
#[test]
fn manifest_hostile_tail_is_refused_not_searched_forever() {
    let fs = sim(3);
    let dir = Path::new(DIR);
    let mut m = Manifest::create_with(fs_ref(&fs), dir, NO_ROTATION).unwrap();
    for edit in random_edits(&mut Rng(5), 3) {
        m.log_edit(&edit).unwrap();
    }
    let name = m.manifest_file_name();
    drop(m);
    let mut bytes = read_file(&fs, &name);
    let valid = bytes.len();
    // Every u32 in the tail reads 0x01010101 (about 16 MiB): a body that fits for offsets
    // in the first part of a 24 MiB tail.
    bytes.resize(valid + (24 << 20), 0x01);
    write_file(&fs, &name, &bytes);
    match Manifest::open_with(fs_ref(&fs), dir, NO_ROTATION) {
        Err(Error::Corruption(Corruption { what, offset, .. })) => {
            assert_eq!(what, "manifest torn tail search");
            assert_eq!(offset, valid as u64);
        }
        other => panic!("expected the search to give up: {other:?}"),
    }
    assert_eq!(read_file(&fs, &name).len(), bytes.len(), "nothing was cut");
}
