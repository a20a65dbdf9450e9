//! The manifest: the durable record of the tree's level structure. Spec:
//! docs/format/manifest.md.
//!
//! A manifest file (`MANIFEST-<16 hex>`) starts with a header and a *base*: frames whose
//! edits rebuild the whole level structure from empty. Every later change is one edit,
//! appended as one frame and synced (`sync_data`) before [`Manifest::log_edit`] returns. The
//! `CURRENT` file names the live manifest and where its base ends; it is replaced atomically
//! (write `CURRENT.tmp`, sync it, rename it over `CURRENT`, sync the directory).
//!
//! When the edits appended since the base outgrow both [`ManifestOptions::rotate_size`] and
//! the base itself, the next edit *rotates*: the state after that edit becomes the base of a
//! fresh manifest numbered one higher (written, synced, its directory entry synced), `CURRENT`
//! is switched to it, and the old file is removed. The edit is durable once `CURRENT` names
//! the new file. Comparing with the base too keeps a large tree from rotating on every edit.
//!
//! Failure model: a failed write, sync, rename or directory sync poisons the manifest:
//! every later call returns [`Error::Poisoned`], because after a failed fsync nothing is known
//! about what reached the disk and an fsync is never retried. Reopening runs recovery.
//! An invalid edit is refused before anything is written and does not poison.
//!
//! Recovery ([`Manifest::open`]): read `CURRENT`, replay the manifest it names
//! (`manifest_replay.rs`), and cut a torn tail off (truncate, sync) so that the next frame is
//! written where the last valid one ends; only once a second read of the file agrees with the
//! first, since a misread last frame looks just like a torn one.

use std::io;
use std::path::{Path, PathBuf};

use popdb_io::{FileRef, FileSystem, FsRef, OpenOptions, WriteOp};

use crate::error::{CorruptionKind, Error, Result};
use crate::manifest_codec::{added_size_max, encode_edit};
use crate::manifest_format::{
    CURRENT_FILE, CURRENT_SIZE, CURRENT_TEMP_FILE, CurrentPointer, FRAME_BODY_SIZE_MAX,
    FRAME_HEADER_SIZE, encode_header, manifest_file_name, parse_manifest_file_name, push_frame,
};
pub use crate::manifest_replay::TornTail;
use crate::manifest_replay::replay;
pub use crate::manifest_state::{FileMeta, InvalidEdit, LEVELS_MAX, ManifestState, VersionEdit};

/// How a [`Manifest`] rotates and cuts its base into frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestOptions {
    /// Rotate once the edits appended since the base exceed this many bytes (and the base's
    /// own size). Default 4 MiB.
    pub rotate_size: u64,
    /// A base is cut into frames of about this many bytes (a frame holds at least one file).
    /// Default 64 KiB.
    pub base_frame_size: u64,
}

impl Default for ManifestOptions {
    fn default() -> Self {
        Self {
            rotate_size: 4 << 20,
            base_frame_size: 64 << 10,
        }
    }
}

/// What [`Manifest::open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRecovery {
    /// The live manifest's file name.
    pub manifest_file: String,
    /// Frames of its base.
    pub base_frames_count: u64,
    /// Edits replayed after the base.
    pub edits_count: u64,
    /// Bytes of the manifest after recovery (the end of its last valid frame).
    pub size: u64,
    /// The torn tail cut off, if any: a last frame whose write never completed. It was never
    /// acknowledged, unless the medium damaged an acknowledged last frame, which cannot be
    /// told apart; a caller that knows of a later acknowledged edit (say, a completed
    /// checkpoint's watermark) should check the state against it.
    pub torn_tail: Option<TornTail>,
}

/// The open manifest of one tree's directory. See the module docs.
#[derive(Debug)]
pub struct Manifest {
    fs: FsRef,
    dir: PathBuf,
    options: ManifestOptions,
    /// The live manifest's number.
    number: u64,
    /// The live manifest file, open for writing.
    file: FileRef,
    /// Bytes of the live manifest: where the next frame goes.
    size: u64,
    /// Bytes of its header and base.
    base_size: u64,
    state: ManifestState,
    poisoned: bool,
}

impl Manifest {
    /// Creates the manifest of an empty tree in `dir` with the default options.
    ///
    /// Requires: `dir` exists.
    ///
    /// # Errors
    /// [`Error::Io`] (kind `AlreadyExists`) if `dir` holds a `CURRENT` file; [`Error::Io`] if
    /// a file operation fails (nothing is then live: `CURRENT` is written last).
    pub fn create(fs: FsRef, dir: &Path) -> Result<Manifest> {
        Self::create_with(fs, dir, ManifestOptions::default())
    }

    /// [`Self::create`] with `options`.
    ///
    /// # Errors
    /// As [`Self::create`].
    pub fn create_with(fs: FsRef, dir: &Path, options: ManifestOptions) -> Result<Manifest> {
        if Self::exists(&fs, dir)? {
            let e = io::Error::new(io::ErrorKind::AlreadyExists, "CURRENT exists");
            return Err(Error::io("manifest create", e));
        }
        let state = ManifestState::default();
        let number = 1;
        let (file, base_size) = write_base(fs.as_ref(), dir, number, &state, options)?;
        write_current(fs.as_ref(), dir, CurrentPointer { number, base_size })?;
        Ok(Manifest {
            fs,
            dir: dir.to_path_buf(),
            options,
            number,
            file,
            size: base_size,
            base_size,
            state,
            poisoned: false,
        })
    }

    /// Opens the manifest in `dir` with the default options: reads `CURRENT`, replays the
    /// manifest it names, and cuts off a torn tail.
    ///
    /// # Errors
    /// [`Error::Io`] (kind `NotFound`) if there is no `CURRENT`; [`Error::Corruption`] naming
    /// the file and offset if `CURRENT` or the manifest is damaged (anything but a torn
    /// tail), or the manifest `CURRENT` names is missing; [`Error::Io`] if a read, the
    /// truncation or its sync fails.
    pub fn open(fs: FsRef, dir: &Path) -> Result<(Manifest, ManifestState, ManifestRecovery)> {
        Self::open_with(fs, dir, ManifestOptions::default())
    }

    /// [`Self::open`] with `options`.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_with(
        fs: FsRef,
        dir: &Path,
        options: ManifestOptions,
    ) -> Result<(Manifest, ManifestState, ManifestRecovery)> {
        let pointer = read_current(fs.as_ref(), dir)?;
        let name = manifest_file_name(pointer.number);
        let file = match fs.open(&dir.join(&name), OpenOptions::read_write()) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let c =
                    Error::file_corruption(0, "manifest named by CURRENT", CorruptionKind::Missing);
                return Err(c.in_file(&name));
            }
            Err(e) => return Err(Error::io("manifest open", e)),
        };
        let bytes = read_whole(&file, "manifest read")?;
        let found = replay(&bytes, pointer.number, pointer.base_size, |_, _| {})?;
        if found.torn_tail.is_some() {
            // Cutting the tail destroys it for good, and the tree then deletes the SSTs it
            // named: first make sure the damage is on the medium, not in one misread (a
            // flipped bit on the way from the disk would fail the last frame's checksum just
            // as a torn write does). Two reads that differ refuse the open; the next open
            // reads again.
            if read_whole(&file, "manifest read")? != bytes {
                let e = io::Error::new(
                    io::ErrorKind::InvalidData,
                    "two reads of the manifest differ: not cutting its tail",
                );
                return Err(Error::io("manifest read", e));
            }
            file.set_len(found.valid_size)
                .map_err(|e| Error::io("manifest truncate torn tail", e))?;
            file.sync_data()
                .map_err(|e| Error::io("manifest sync truncation", e))?;
        }
        let recovery = ManifestRecovery {
            manifest_file: name,
            base_frames_count: found.base_frames_count,
            edits_count: found.edits_count,
            size: found.valid_size,
            torn_tail: found.torn_tail,
        };
        let manifest = Manifest {
            fs,
            dir: dir.to_path_buf(),
            options,
            number: pointer.number,
            file,
            size: found.valid_size,
            base_size: pointer.base_size,
            state: found.state.clone(),
            poisoned: false,
        };
        Ok((manifest, found.state, recovery))
    }

    /// Whether `dir` holds a manifest (a `CURRENT` file).
    ///
    /// # Errors
    /// [`Error::Io`] if the file system cannot tell.
    pub fn exists(fs: &FsRef, dir: &Path) -> Result<bool> {
        fs.exists(&dir.join(CURRENT_FILE))
            .map_err(|e| Error::io("manifest exists", e))
    }

    /// Checks `edit` against the state, makes it durable (one frame, appended and synced; or
    /// a rotation), and applies it to the state.
    ///
    /// # Errors
    /// [`Error::Poisoned`] if an earlier call failed; [`Error::InvalidEdit`] if the edit breaks
    /// a rule of [`ManifestState::check_edit`] or encodes to more than a frame holds (nothing
    /// written, not poisoned); [`Error::Io`] if a write, sync, rename or directory sync
    /// fails, which poisons the manifest: the edit may or may not be durable, and the state
    /// stays as it was.
    pub fn log_edit(&mut self, edit: &VersionEdit) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        self.state.check_edit(edit).map_err(Error::InvalidEdit)?;
        let mut body = Vec::new();
        encode_edit(edit, &mut body);
        if body.len() as u64 > u64::from(FRAME_BODY_SIZE_MAX) {
            return Err(Error::InvalidEdit(InvalidEdit::TooLarge {
                size: body.len() as u64,
                max: FRAME_BODY_SIZE_MAX.into(),
            }));
        }
        let frame_size = (FRAME_HEADER_SIZE + body.len()) as u64;
        let result = if self.should_rotate(frame_size) {
            self.rotate(edit)
        } else {
            self.append(edit, &body)
        };
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// The level structure after every edit logged so far.
    pub fn state(&self) -> &ManifestState {
        &self.state
    }

    /// Whether `name` is a file this module writes in a tree's directory: `CURRENT`, its
    /// temporary name `CURRENT.tmp`, or a manifest `MANIFEST-<16 hex>`.
    pub fn is_own_file(name: &str) -> bool {
        name == CURRENT_FILE
            || name == CURRENT_TEMP_FILE
            || parse_manifest_file_name(name).is_some()
    }

    /// The files of this module that must survive a sweep of orphans: `CURRENT` and the live
    /// manifest. Any other name for which [`Self::is_own_file`] holds is debris (an old
    /// manifest, an unfinished rotation, a temporary `CURRENT`) and may be deleted.
    pub fn live_file_names(&self) -> Vec<String> {
        vec![CURRENT_FILE.to_string(), manifest_file_name(self.number)]
    }

    /// The live manifest's file name.
    pub fn manifest_file_name(&self) -> String {
        manifest_file_name(self.number)
    }

    /// Bytes of the live manifest.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether a failed write or sync poisoned the manifest.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Whether appending a frame of `frame_size` bytes should rotate instead.
    fn should_rotate(&self, frame_size: u64) -> bool {
        let edits_size = self.size - self.base_size + frame_size;
        edits_size > self.options.rotate_size && edits_size > self.base_size
    }

    /// Appends the frame of `edit` (encoded as `body`) and syncs it.
    fn append(&mut self, edit: &VersionEdit, body: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(FRAME_HEADER_SIZE + body.len());
        push_frame(&mut frame, self.size, self.number, body);
        let op = WriteOp {
            offset: self.size,
            bytes: &frame,
        };
        self.file
            .write_batch(&[op], true)
            .map_err(|e| Error::io("manifest append", e))?;
        self.size += frame.len() as u64;
        self.state.apply_checked(edit);
        Ok(())
    }

    /// Writes the state after `edit` as the base of manifest `number + 1`, switches `CURRENT`
    /// to it, and removes the old manifest.
    fn rotate(&mut self, edit: &VersionEdit) -> Result<()> {
        let mut next = self.state.clone();
        next.apply_checked(edit);
        let number = self.number + 1;
        let fs = self.fs.as_ref();
        let (file, base_size) = write_base(fs, &self.dir, number, &next, self.options)?;
        write_current(fs, &self.dir, CurrentPointer { number, base_size })?;
        let old = self.dir.join(manifest_file_name(self.number));
        (self.number, self.file, self.size, self.base_size) = (number, file, base_size, base_size);
        self.state = next;
        // The edit is durable. A failed removal leaves an orphan for the tree's sweep
        // (`live_file_names` no longer lists it); nothing depends on it being gone.
        let _ = self.fs.remove_file(&old);
        Ok(())
    }
}

/// Writes manifest `number` (replacing any debris of that name): header and the base of
/// `state`, synced, and its directory entry synced. Returns the open file and the base size.
fn write_base(
    fs: &dyn FileSystem,
    dir: &Path,
    number: u64,
    state: &ManifestState,
    options: ManifestOptions,
) -> Result<(FileRef, u64)> {
    let mut bytes = encode_header(number).to_vec();
    for edit in base_edits(state, options.base_frame_size) {
        let mut body = Vec::new();
        encode_edit(&edit, &mut body);
        push_frame(&mut bytes, 0, number, &body);
    }
    let create = OpenOptions {
        truncate: true,
        ..OpenOptions::create()
    };
    let file = fs
        .open(&dir.join(manifest_file_name(number)), create)
        .map_err(|e| Error::io("manifest create file", e))?;
    let op = WriteOp {
        offset: 0,
        bytes: &bytes,
    };
    file.write_batch(&[op], true)
        .map_err(|e| Error::io("manifest write base", e))?;
    fs.sync_dir(dir)
        .map_err(|e| Error::io("manifest sync dir", e))?;
    Ok((file, bytes.len() as u64))
}

/// The edits that rebuild `state` from empty: the first carries `next_file_id` and the
/// watermark; files follow level by level in each level's order, cut into edits of about
/// `frame_size` encoded bytes (at least one file each). `frame_size` is capped at half of
/// [`FRAME_BODY_SIZE_MAX`], so that a frame holds its share and one more file (a file's
/// entry came in an edit that fit in a frame; real keys are a few KiB at most).
pub fn base_edits(state: &ManifestState, frame_size: u64) -> Vec<VersionEdit> {
    let frame_size = frame_size.min(u64::from(FRAME_BODY_SIZE_MAX) / 2);
    let mut edits = vec![VersionEdit {
        next_file_id: Some(state.next_file_id),
        watermark: state.watermark,
        ..VersionEdit::default()
    }];
    let mut size = 0u64;
    for file in state.levels.iter().flatten() {
        let file_size = added_size_max(file) as u64;
        let last = edits.last_mut().expect("starts with one edit");
        if !last.added.is_empty() && size + file_size > frame_size {
            edits.push(VersionEdit::default());
            size = 0;
        }
        size += file_size;
        edits
            .last_mut()
            .expect("starts with one edit")
            .added
            .push(file.clone());
    }
    edits
}

/// Replaces `CURRENT` with `pointer` atomically: write and sync `CURRENT.tmp`, rename it
/// over `CURRENT`, sync the directory.
fn write_current(fs: &dyn FileSystem, dir: &Path, pointer: CurrentPointer) -> Result<()> {
    let temp = dir.join(CURRENT_TEMP_FILE);
    let create = OpenOptions {
        truncate: true,
        ..OpenOptions::create()
    };
    let file = fs
        .open(&temp, create)
        .map_err(|e| Error::io("CURRENT create temp", e))?;
    let bytes = pointer.encode();
    let op = WriteOp {
        offset: 0,
        bytes: &bytes,
    };
    file.write_batch(&[op], true)
        .map_err(|e| Error::io("CURRENT write temp", e))?;
    drop(file);
    fs.rename(&temp, &dir.join(CURRENT_FILE))
        .map_err(|e| Error::io("CURRENT rename", e))?;
    fs.sync_dir(dir)
        .map_err(|e| Error::io("CURRENT sync dir", e))
}

/// Reads and decodes `CURRENT`.
fn read_current(fs: &dyn FileSystem, dir: &Path) -> Result<CurrentPointer> {
    let file = fs
        .open(&dir.join(CURRENT_FILE), OpenOptions::read_only())
        .map_err(|e| Error::io("CURRENT open", e))?;
    let len = file.len().map_err(|e| Error::io("CURRENT len", e))?;
    if len > CURRENT_SIZE as u64 {
        let kind = CorruptionKind::InvalidValue { found: len };
        let c = Error::file_corruption(CURRENT_SIZE as u64, "CURRENT length", kind);
        return Err(c.in_file(CURRENT_FILE));
    }
    let bytes = read_whole(&file, "CURRENT read")?;
    CurrentPointer::decode(&bytes).map_err(|e| e.in_file(CURRENT_FILE))
}

/// The whole content of `file` as the medium holds it (its clean cached pages dropped first,
/// so that bytes a failed sync lost are not read from the cache).
fn read_whole(file: &FileRef, op: &'static str) -> Result<Vec<u8>> {
    file.evict_cache().map_err(|e| Error::io(op, e))?;
    let len = file.len().map_err(|e| Error::io(op, e))?;
    let len = usize::try_from(len).map_err(|_| {
        let e = io::Error::new(io::ErrorKind::OutOfMemory, "file larger than memory");
        Error::io(op, e)
    })?;
    let mut bytes = vec![0u8; len];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| Error::io(op, e))?;
    Ok(bytes)
}
