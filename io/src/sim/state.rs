//! The simulated machine behind one [`super::SimFs`]: the inode table, the counters, the armed
//! crash and faults, the held directory locks, and the gate every operation passes first.
//! Also lexical path handling, lookup, space accounting and garbage collection of inodes no
//! crash can bring back.
//!
//! Files and directories are inodes: a directory entry names an inode, so a rename or link
//! moves a name and never the data, and an open handle keeps following its inode.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::content::FileContent;
use super::crash::{CrashAt, CrashMode};
use super::dir::DirNode;
use super::errors;
use super::faults::{FaultError, FaultOp, Faults};
use super::rng::Rng;

/// An inode number. Never reused within one file system, so a stale number cannot alias.
pub(super) type Ino = u64;

/// The root directory's inode; it always exists and is always durable.
pub(super) const ROOT: Ino = 0;

/// The largest file the simulator holds. It keeps every file in memory (up to three copies),
/// so an offset past this is a test bug or a runaway, reported as EFBIG.
pub(super) const FILE_SIZE_MAX: u64 = 1 << 30;

/// What an inode is.
#[derive(Debug)]
pub(super) enum Node {
    File(FileContent),
    Dir(DirNode),
}

/// One inode.
#[derive(Debug)]
pub(super) struct Inode {
    pub(super) node: Node,
    /// How many directory entries (as reads see them) name it.
    pub(super) links: u32,
    /// How many handles and map views from the current epoch have it open.
    pub(super) opens: u32,
}

/// A path reduced lexically: `.` dropped, `..` applied, relative paths taken from the root.
/// There are no symlinks to follow.
#[derive(Clone, Debug)]
pub(super) struct NormPath {
    /// The path spelled from the root (`/a/b`), for messages, locks and fault matching.
    pub(super) path: PathBuf,
    /// The names from the root down.
    pub(super) parts: Vec<OsString>,
}

/// Reduces `path` lexically (see [`NormPath`]).
pub(super) fn normalize(path: &Path) -> NormPath {
    let mut parts: Vec<OsString> = Vec::new();
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(name) => parts.push(name.to_os_string()),
        }
    }
    let mut norm = PathBuf::from("/");
    norm.extend(&parts);
    NormPath { path: norm, parts }
}

/// The kinds of operation, as the gate counts and faults them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OpKind {
    Read,
    Write,
    Sync,
    /// `mutating`: the open may create or truncate.
    Open {
        mutating: bool,
    },
    CreateDir,
    Rename,
    Link,
    Remove,
    Allocate,
    /// Looks without changing: `len`, `read_dir`, `exists`, `evict_cache`, `lock_dir`.
    Inspect,
}

impl OpKind {
    /// Whether the operation counts toward `op_count` and armed crashes: it changes
    /// something or syncs.
    fn counted(self) -> bool {
        match self {
            Self::Read | Self::Inspect => false,
            Self::Open { mutating } => mutating,
            Self::Write
            | Self::Sync
            | Self::CreateDir
            | Self::Rename
            | Self::Link
            | Self::Remove
            | Self::Allocate => true,
        }
    }

    fn is_sync(self) -> bool {
        self == Self::Sync
    }

    /// The fault kind that matches this operation, if any does.
    fn fault_op(self) -> Option<FaultOp> {
        match self {
            Self::Read => Some(FaultOp::Read),
            Self::Write => Some(FaultOp::Write),
            Self::Sync => Some(FaultOp::Sync),
            Self::Open { .. } | Self::CreateDir => Some(FaultOp::Open),
            Self::Rename | Self::Link => Some(FaultOp::Rename),
            Self::Remove => Some(FaultOp::Remove),
            Self::Allocate => Some(FaultOp::Allocate),
            Self::Inspect => None,
        }
    }
}

/// What the gate decided for one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Gate {
    /// Go ahead.
    Run,
    /// An injected fault fires on this operation.
    Fault(FaultError),
    /// The armed power loss strikes during this operation: do its changes (they stay
    /// volatile, so the crash decides their fate), then call `crash_now`.
    Crash,
}

/// Operation counters.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Counters {
    pub(super) ops: u64,
    pub(super) syncs: u64,
    pub(super) crashes: u64,
    pub(super) faults_fired: u64,
}

/// The whole simulated machine.
#[derive(Debug)]
pub(super) struct State {
    pub(super) inodes: BTreeMap<Ino, Inode>,
    next_ino: Ino,
    pub(super) rng: Rng,
    /// Bumped by every crash; handles and views from an older epoch are dead.
    pub(super) epoch: u64,
    /// `epoch`, readable without the lock, so that a map view's `bytes()` locks only when
    /// its file changed.
    pub(super) epoch_cell: Arc<AtomicU64>,
    /// An armed power loss struck and `restart()` has not been called.
    pub(super) down: bool,
    /// Total bytes all live files may hold; `None` is unbounded.
    pub(super) capacity: Option<u64>,
    pub(super) faults: Faults,
    pub(super) crash_at: Option<CrashAt>,
    pub(super) armed_mode: CrashMode,
    /// Held directory locks: normalized path -> lock id.
    pub(super) locks: BTreeMap<PathBuf, u64>,
    pub(super) next_lock_id: u64,
    pub(super) counters: Counters,
}

impl State {
    /// An empty file system: just the root directory.
    pub(super) fn new(seed: u64, capacity: Option<u64>) -> Self {
        let root = Inode {
            node: Node::Dir(DirNode::default()),
            links: 0,
            opens: 0,
        };
        Self {
            inodes: BTreeMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            rng: Rng::new(seed),
            epoch: 0,
            epoch_cell: Arc::new(AtomicU64::new(0)),
            down: false,
            capacity,
            faults: Faults::default(),
            crash_at: None,
            armed_mode: CrashMode::Random,
            locks: BTreeMap::new(),
            next_lock_id: 0,
            counters: Counters::default(),
        }
    }

    /// The first step of every operation: refuses it while the file system is down, counts
    /// it, and says whether an armed crash or an injected fault strikes it.
    pub(super) fn gate(&mut self, kind: OpKind, paths: &[&Path]) -> io::Result<Gate> {
        if self.down {
            return Err(errors::down());
        }
        if kind.counted() {
            let op_index = self.counters.ops;
            self.counters.ops += 1;
            let sync_index = self.counters.syncs;
            if kind.is_sync() {
                self.counters.syncs += 1;
            }
            let strikes = match self.crash_at {
                Some(CrashAt::Op(at)) => at == op_index,
                Some(CrashAt::Sync(at)) => kind.is_sync() && at == sync_index,
                None => false,
            };
            if strikes {
                self.crash_at = None;
                return Ok(Gate::Crash);
            }
        }
        if let Some(op) = kind.fault_op()
            && let Some(error) = self.faults.draw(op, paths)
        {
            self.counters.faults_fired += 1;
            return Ok(Gate::Fault(error));
        }
        Ok(Gate::Run)
    }

    /// Adds an unlinked inode and returns its number.
    pub(super) fn add_inode(&mut self, node: Node) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        let inode = Inode {
            node,
            links: 0,
            opens: 0,
        };
        assert!(
            self.inodes.insert(ino, inode).is_none(),
            "inode {ino} reused"
        );
        ino
    }

    /// The inode `ino`, which the caller knows exists.
    pub(super) fn inode_mut(&mut self, ino: Ino) -> &mut Inode {
        self.inodes
            .get_mut(&ino)
            .expect("inode named by a live entry or handle exists")
    }

    /// Directory `ino`, which the caller knows is one.
    pub(super) fn dir(&self, ino: Ino) -> &DirNode {
        match self.inodes.get(&ino).map(|i| &i.node) {
            Some(Node::Dir(dir)) => dir,
            other => unreachable!("inode {ino} expected to be a directory, is {other:?}"),
        }
    }

    /// Directory `ino`, mutably.
    pub(super) fn dir_mut(&mut self, ino: Ino) -> &mut DirNode {
        match &mut self.inode_mut(ino).node {
            Node::Dir(dir) => dir,
            Node::File(_) => unreachable!("inode {ino} expected to be a directory, is a file"),
        }
    }

    /// File `ino`, which the caller knows is one.
    pub(super) fn file(&self, ino: Ino) -> &FileContent {
        match self.inodes.get(&ino).map(|i| &i.node) {
            Some(Node::File(file)) => file,
            other => unreachable!("inode {ino} expected to be a file, is {other:?}"),
        }
    }

    /// File `ino`, mutably.
    pub(super) fn file_mut(&mut self, ino: Ino) -> &mut FileContent {
        match &mut self.inode_mut(ino).node {
            Node::File(file) => file,
            Node::Dir(_) => unreachable!("inode {ino} expected to be a file, is a directory"),
        }
    }

    /// A failed sync of file `ino` (see [`FileContent::fail_sync`]).
    pub(super) fn fail_sync(&mut self, ino: Ino) {
        match self.inodes.get_mut(&ino).map(|inode| &mut inode.node) {
            Some(Node::File(file)) => file.fail_sync(&mut self.rng),
            other => unreachable!("inode {ino} expected to be a file, is {other:?}"),
        }
    }

    /// Whether `ino` is a directory.
    pub(super) fn is_dir(&self, ino: Ino) -> bool {
        matches!(self.inodes.get(&ino).map(|i| &i.node), Some(Node::Dir(_)))
    }

    /// The inode `norm` names, walking the entries reads see.
    pub(super) fn lookup(&self, norm: &NormPath) -> io::Result<Ino> {
        self.lookup_in(norm, DirNode::entries)
    }

    /// The inode `norm` names on the medium: what a crash that lost every unsynced
    /// directory change would leave.
    pub(super) fn lookup_durable(&self, norm: &NormPath) -> io::Result<Ino> {
        self.lookup_in(norm, DirNode::durable)
    }

    fn lookup_in(
        &self,
        norm: &NormPath,
        entries: fn(&DirNode) -> &BTreeMap<OsString, Ino>,
    ) -> io::Result<Ino> {
        let mut at = ROOT;
        for name in &norm.parts {
            if !self.is_dir(at) {
                return Err(errors::at(
                    io::ErrorKind::NotADirectory,
                    &norm.path,
                    "a parent is not a directory",
                ));
            }
            at = *entries(self.dir(at))
                .get(name)
                .ok_or_else(|| errors::not_found(&norm.path))?;
        }
        Ok(at)
    }

    /// The directory that holds `norm`'s last name, and that name.
    pub(super) fn lookup_parent<'a>(&self, norm: &'a NormPath) -> io::Result<(Ino, &'a OsStr)> {
        let Some((name, parents)) = norm.parts.split_last() else {
            return Err(errors::at(
                io::ErrorKind::InvalidInput,
                &norm.path,
                "the root has no parent entry",
            ));
        };
        let parent = NormPath {
            path: norm.path.parent().unwrap_or(&norm.path).to_path_buf(),
            parts: parents.to_vec(),
        };
        let ino = self.lookup(&parent)?;
        if !self.is_dir(ino) {
            return Err(errors::at(
                io::ErrorKind::NotADirectory,
                &norm.path,
                "the parent is not a directory",
            ));
        }
        Ok((ino, name))
    }

    /// Bytes held by live files: those with a name, an open handle or a map view. Unbounded
    /// by design of the capacity check, which only compares it.
    pub(super) fn used_size(&self) -> u64 {
        self.inodes
            .values()
            .filter(|inode| inode.links > 0 || inode.opens > 0)
            .map(|inode| match &inode.node {
                Node::File(file) => file.len(),
                Node::Dir(_) => 0,
            })
            .sum()
    }

    /// Bytes files may still grow by before the capacity is reached.
    fn room(&self) -> u64 {
        self.capacity
            .map_or(u64::MAX, |cap| cap.saturating_sub(self.used_size()))
    }

    /// Writes `buf` at `offset` into file `ino`. A write that would take the file system
    /// past its capacity writes what fits and returns the short count, or fails with ENOSPC
    /// if nothing fits (as Linux does); writes inside the file's length never fail.
    pub(super) fn write(&mut self, ino: Ino, buf: &[u8], offset: u64) -> io::Result<usize> {
        let len = self.file(ino).len();
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&end| end <= FILE_SIZE_MAX)
            .ok_or_else(errors::efbig)?;
        let mut count = buf.len();
        if end > len && !buf.is_empty() {
            let room = self.room();
            if end - len > room {
                let fits_end = len + room;
                count = (fits_end.saturating_sub(offset) as usize).min(buf.len());
                if count == 0 {
                    return Err(errors::enospc());
                }
            }
        }
        self.file_mut(ino).write(&buf[..count], offset);
        Ok(count)
    }

    /// Sets file `ino`'s length (`grow_only`: as `allocate`, which never shrinks). Growth
    /// past the capacity fails with ENOSPC and changes nothing.
    pub(super) fn resize(&mut self, ino: Ino, len: u64, grow_only: bool) -> io::Result<()> {
        if len > FILE_SIZE_MAX {
            return Err(errors::efbig());
        }
        let old_len = self.file(ino).len();
        if grow_only && len <= old_len {
            return Ok(());
        }
        if len > old_len && len - old_len > self.room() {
            return Err(errors::enospc());
        }
        self.file_mut(ino).set_len(len);
        Ok(())
    }

    /// Drops inodes that neither the entries, the medium, a directory's log nor an open
    /// handle can reach: no crash can bring them back. Bounded: each inode is marked once.
    pub(super) fn collect_garbage(&mut self) {
        let mut marked = BTreeSet::new();
        let mut pending: Vec<Ino> = vec![ROOT];
        pending.extend(
            self.inodes
                .iter()
                .filter(|(_, inode)| inode.opens > 0)
                .map(|(ino, _)| *ino),
        );
        while let Some(ino) = pending.pop() {
            if !marked.insert(ino) {
                continue;
            }
            if let Some(Inode {
                node: Node::Dir(dir),
                ..
            }) = self.inodes.get(&ino)
            {
                pending.extend(dir.referenced());
            }
        }
        self.inodes.retain(|ino, _| marked.contains(ino));
    }

    /// Sets every inode's link count from the entries reads see.
    pub(super) fn recount_links(&mut self) {
        let counts = self.link_counts();
        for (ino, inode) in &mut self.inodes {
            inode.links = counts.get(ino).copied().unwrap_or(0);
        }
    }

    fn link_counts(&self) -> BTreeMap<Ino, u32> {
        let mut counts: BTreeMap<Ino, u32> = BTreeMap::new();
        for inode in self.inodes.values() {
            if let Node::Dir(dir) = &inode.node {
                for ino in dir.entries().values() {
                    *counts.entry(*ino).or_default() += 1;
                }
            }
        }
        counts
    }

    /// Panics if any invariant of the machine is broken. O(total size); for tests.
    pub(super) fn check_invariants(&mut self) {
        assert!(self.is_dir(ROOT), "the root directory is missing");
        for inode in self.inodes.values() {
            if let Node::Dir(dir) = &inode.node {
                dir.check_invariants();
                for ino in dir.referenced() {
                    assert!(
                        self.inodes.contains_key(&ino),
                        "an entry names inode {ino}, which does not exist"
                    );
                    assert!(ino < self.next_ino, "inode {ino} was never allocated");
                }
            }
        }
        let counts = self.link_counts();
        for (ino, inode) in &mut self.inodes {
            let counted = counts.get(ino).copied().unwrap_or(0);
            assert_eq!(inode.links, counted, "inode {ino}: link count is off");
            if let Node::File(file) = &mut inode.node {
                file.check_invariants();
            }
        }
    }
}
