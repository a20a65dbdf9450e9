//! The directory operations of [`super::SimFs`], on the machine state: open and create,
//! remove, rename, link, list, create and sync directories, and the directory lock's
//! bookkeeping. Each passes the gate first; an armed crash strikes after the operation's
//! changes are made, so they are as volatile as any unsynced change.
//!
//! Errors follow std on Linux: `NotFound` for a missing file or parent, `AlreadyExists` for
//! `create_new` on an existing name, `IsADirectory`, `NotADirectory`, `DirectoryNotEmpty`.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;

use super::content::FileContent;
use super::dir::DirNode;
use super::errors;
use super::state::{Gate, Ino, Node, NormPath, OpKind, ROOT, State, normalize};
use crate::fs::OpenOptions;

impl State {
    /// Opens (maybe creating or truncating) the file at `path` and counts the open handle.
    pub(super) fn open(&mut self, path: &Path, options: OpenOptions) -> io::Result<Ino> {
        let norm = normalize(path);
        open_check_options(&norm, options)?;
        let mutating = options.create || options.create_new || options.truncate;
        let gate = self.gate(OpKind::Open { mutating }, &[&norm.path])?;
        if let Gate::Fault(error) = gate {
            return Err(error.to_error());
        }
        let opened = self.open_inner(&norm, options);
        if gate == Gate::Crash {
            return Err(self.crash_now("open"));
        }
        let ino = opened?;
        self.inode_mut(ino).opens += 1;
        Ok(ino)
    }

    fn open_inner(&mut self, norm: &NormPath, options: OpenOptions) -> io::Result<Ino> {
        let (parent, name) = self.lookup_parent(norm)?;
        if let Some(ino) = self.dir(parent).get(name) {
            if options.create_new {
                return Err(errors::at(
                    io::ErrorKind::AlreadyExists,
                    &norm.path,
                    "exists",
                ));
            }
            if self.is_dir(ino) {
                return Err(errors::at(
                    io::ErrorKind::IsADirectory,
                    &norm.path,
                    "a directory",
                ));
            }
            if options.truncate {
                self.file_mut(ino).set_len(0);
            }
            return Ok(ino);
        }
        if !(options.create || options.create_new) {
            return Err(errors::not_found(&norm.path));
        }
        let ino = self.add_inode(Node::File(FileContent::default()));
        self.link(parent, name.to_os_string(), ino);
        Ok(ino)
    }

    /// Creates `path` and its missing parents. Each new directory is an entry change in its
    /// parent, volatile until that parent is synced.
    pub(super) fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
        let norm = normalize(path);
        let gate = self.gate(OpKind::CreateDir, &[&norm.path])?;
        if let Gate::Fault(error) = gate {
            return Err(error.to_error());
        }
        let created = self.create_dir_all_inner(&norm);
        if gate == Gate::Crash {
            return Err(self.crash_now("create_dir_all"));
        }
        created
    }

    fn create_dir_all_inner(&mut self, norm: &NormPath) -> io::Result<()> {
        let mut at = ROOT;
        // Bounded by the number of path components.
        for (depth, name) in norm.parts.iter().enumerate() {
            at = match self.dir(at).get(name) {
                Some(ino) if self.is_dir(ino) => ino,
                Some(_) => {
                    let last = depth + 1 == norm.parts.len();
                    let (kind, what) = if last {
                        (
                            io::ErrorKind::AlreadyExists,
                            "exists and is not a directory",
                        )
                    } else {
                        (io::ErrorKind::NotADirectory, "a parent is not a directory")
                    };
                    return Err(errors::at(kind, &norm.path, what));
                }
                None => {
                    let ino = self.add_inode(Node::Dir(DirNode::default()));
                    self.link(at, name.clone(), ino);
                    ino
                }
            };
        }
        Ok(())
    }

    /// Removes the file entry at `path`.
    pub(super) fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        self.remove(path, false)
    }

    /// Removes the empty directory at `path`.
    pub(super) fn remove_dir(&mut self, path: &Path) -> io::Result<()> {
        self.remove(path, true)
    }

    fn remove(&mut self, path: &Path, want_dir: bool) -> io::Result<()> {
        let norm = normalize(path);
        let gate = self.gate(OpKind::Remove, &[&norm.path])?;
        if let Gate::Fault(error) = gate {
            return Err(error.to_error());
        }
        let removed = self.remove_inner(&norm, want_dir);
        if gate == Gate::Crash {
            return Err(self.crash_now("remove"));
        }
        removed
    }

    fn remove_inner(&mut self, norm: &NormPath, want_dir: bool) -> io::Result<()> {
        if norm.parts.is_empty() {
            return Err(errors::at(
                io::ErrorKind::ResourceBusy,
                &norm.path,
                "the root",
            ));
        }
        let (parent, name) = self.lookup_parent(norm)?;
        let ino = self
            .dir(parent)
            .get(name)
            .ok_or_else(|| errors::not_found(&norm.path))?;
        match (want_dir, self.is_dir(ino)) {
            (false, true) => {
                return Err(errors::at(
                    io::ErrorKind::IsADirectory,
                    &norm.path,
                    "a directory",
                ));
            }
            (true, false) => {
                return Err(errors::at(
                    io::ErrorKind::NotADirectory,
                    &norm.path,
                    "a file",
                ));
            }
            (true, true) if !self.dir(ino).is_empty() => {
                let kind = io::ErrorKind::DirectoryNotEmpty;
                return Err(errors::at(kind, &norm.path, "not empty"));
            }
            _ => {}
        }
        self.unlink(parent, name);
        Ok(())
    }

    /// Renames `from` to `to`, replacing `to` (a file, or an empty directory when `from` is a
    /// directory). Within one directory it is one atomic entry change; across two it is one
    /// in each, and a crash may keep either, both or neither until both are synced.
    pub(super) fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let (source, target) = (normalize(from), normalize(to));
        let gate = self.gate(OpKind::Rename, &[&source.path, &target.path])?;
        if let Gate::Fault(error) = gate {
            return Err(error.to_error());
        }
        let renamed = self.rename_inner(&source, &target);
        if gate == Gate::Crash {
            return Err(self.crash_now("rename"));
        }
        renamed
    }

    fn rename_inner(&mut self, source: &NormPath, target: &NormPath) -> io::Result<()> {
        let (source_dir, source_name) = self.lookup_parent(source)?;
        let ino = self
            .dir(source_dir)
            .get(source_name)
            .ok_or_else(|| errors::not_found(&source.path))?;
        let (target_dir, target_name) = self.lookup_parent(target)?;
        if let Some(existing) = self.dir(target_dir).get(target_name) {
            if existing == ino {
                // POSIX: renaming a file onto another name of itself does nothing.
                return Ok(());
            }
            self.rename_check_replace(ino, existing, target)?;
        }
        if self.is_dir(ino) && target.path.starts_with(&source.path) {
            let what = "cannot move a directory into itself";
            return Err(errors::at(io::ErrorKind::InvalidInput, &target.path, what));
        }
        let replaced = if source_dir == target_dir {
            self.dir_mut(source_dir).rename(source_name, target_name)
        } else {
            let replaced = self.dir_mut(target_dir).link(target_name, ino);
            self.dir_mut(source_dir).unlink(source_name);
            replaced
        };
        if let Some(old) = replaced {
            self.inode_mut(old).links -= 1;
        }
        Ok(())
    }

    /// Whether `ino` may replace `existing` (std's rules on Linux).
    fn rename_check_replace(&self, ino: Ino, existing: Ino, target: &NormPath) -> io::Result<()> {
        match (self.is_dir(ino), self.is_dir(existing)) {
            (false, true) => Err(errors::at(
                io::ErrorKind::IsADirectory,
                &target.path,
                "a dir",
            )),
            (true, false) => Err(errors::at(
                io::ErrorKind::NotADirectory,
                &target.path,
                "a file",
            )),
            (true, true) if !self.dir(existing).is_empty() => {
                let kind = io::ErrorKind::DirectoryNotEmpty;
                Err(errors::at(kind, &target.path, "not empty"))
            }
            _ => Ok(()),
        }
    }

    /// Adds the name `to` for `from`'s file.
    pub(super) fn hard_link(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let (source, target) = (normalize(from), normalize(to));
        let gate = self.gate(OpKind::Link, &[&source.path, &target.path])?;
        if let Gate::Fault(error) = gate {
            return Err(error.to_error());
        }
        let linked = self.hard_link_inner(&source, &target);
        if gate == Gate::Crash {
            return Err(self.crash_now("hard_link"));
        }
        linked
    }

    fn hard_link_inner(&mut self, source: &NormPath, target: &NormPath) -> io::Result<()> {
        let ino = self.lookup(source)?;
        if self.is_dir(ino) {
            let what = "cannot hard-link a directory";
            return Err(errors::at(
                io::ErrorKind::PermissionDenied,
                &source.path,
                what,
            ));
        }
        let (target_dir, target_name) = self.lookup_parent(target)?;
        if self.dir(target_dir).get(target_name).is_some() {
            return Err(errors::at(
                io::ErrorKind::AlreadyExists,
                &target.path,
                "exists",
            ));
        }
        self.link(target_dir, target_name.to_os_string(), ino);
        Ok(())
    }

    /// The names in directory `path`, sorted (the simulator's order is deterministic).
    pub(super) fn read_dir(&mut self, path: &Path) -> io::Result<Vec<OsString>> {
        let norm = normalize(path);
        self.gate(OpKind::Inspect, &[&norm.path])?;
        let ino = self.lookup_dir(&norm)?;
        Ok(self.dir(ino).entries().keys().cloned().collect())
    }

    /// Whether `path` names a file or directory (a file in its parent chain means no).
    pub(super) fn exists(&mut self, path: &Path) -> io::Result<bool> {
        let norm = normalize(path);
        self.gate(OpKind::Inspect, &[&norm.path])?;
        match self.lookup(&norm) {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Makes directory `path`'s entry changes durable. A failed (injected) directory sync
    /// changes nothing: its changes stay volatile and a later sync may still persist them.
    pub(super) fn sync_dir(&mut self, path: &Path) -> io::Result<()> {
        let norm = normalize(path);
        let gate = self.gate(OpKind::Sync, &[&norm.path])?;
        let ino = self.lookup_dir(&norm);
        match gate {
            Gate::Fault(error) => Err(error.to_error()),
            // An interrupted sync might as well not have started: the crash keeps a random
            // prefix of the log either way.
            Gate::Crash => Err(self.crash_now("sync_dir")),
            Gate::Run => {
                self.dir_mut(ino?).sync();
                self.collect_garbage();
                Ok(())
            }
        }
    }

    /// Takes the directory lock on `path` for a new holder; returns its path and id.
    pub(super) fn lock_dir(&mut self, path: &Path) -> io::Result<(NormPath, u64)> {
        let norm = normalize(path);
        self.gate(OpKind::Inspect, &[&norm.path])?;
        self.lookup_dir(&norm)?;
        if let Some(holder) = self.locks.get(&norm.path) {
            let what = format!("locked by another holder (SimFs lock #{holder})");
            return Err(errors::at(io::ErrorKind::WouldBlock, &norm.path, &what));
        }
        let id = self.next_lock_id;
        self.next_lock_id += 1;
        self.locks.insert(norm.path.clone(), id);
        Ok((norm, id))
    }

    /// The directory `norm` names.
    fn lookup_dir(&self, norm: &NormPath) -> io::Result<Ino> {
        let ino = self.lookup(norm)?;
        if !self.is_dir(ino) {
            return Err(errors::at(
                io::ErrorKind::NotADirectory,
                &norm.path,
                "a file",
            ));
        }
        Ok(ino)
    }

    /// Names `ino` as `name` in directory `dir`, replacing (and unlinking) any entry there.
    fn link(&mut self, dir: Ino, name: OsString, ino: Ino) {
        let replaced = self.dir_mut(dir).link(&name, ino);
        self.inode_mut(ino).links += 1;
        if let Some(old) = replaced {
            self.inode_mut(old).links -= 1;
        }
    }

    /// Removes the entry `name` from directory `dir`.
    fn unlink(&mut self, dir: Ino, name: &OsStr) {
        if let Some(ino) = self.dir_mut(dir).unlink(name) {
            self.inode_mut(ino).links -= 1;
        }
    }
}

/// std's checks on an open's flags: some access is needed, and creating or truncating needs
/// write access.
fn open_check_options(norm: &NormPath, options: OpenOptions) -> io::Result<()> {
    let creates = options.create || options.create_new || options.truncate;
    let has_access = options.read || options.write;
    if !has_access || (creates && !options.write) {
        let what = format!("invalid open options {options:?}");
        return Err(errors::at(io::ErrorKind::InvalidInput, &norm.path, &what));
    }
    Ok(())
}
