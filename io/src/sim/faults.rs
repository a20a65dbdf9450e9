//! Injected faults: what a test asks for ([`Fault`]), and the per-file-system list that
//! counts matching operations down and says when one fires.
//!
//! Faults live in each [`super::SimFs`], never in a global, so tests run in parallel.

use std::io;
use std::path::{Path, PathBuf};

use super::errors;
use super::state::normalize;

/// At most this many faults are armed at once; more is a runaway test.
const ARMED_MAX: usize = 1024;

/// The kinds of operation a [`Fault`] can match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// `read_at` (and so `read_exact_at`) and `map`.
    Read,
    /// `write_at` (and so `write_all_at` and `write_batch`'s writes).
    Write,
    /// `sync_data`, `sync_all` and `sync_dir`.
    Sync,
    /// `open` (with or without create) and `create_dir_all`.
    Open,
    /// `rename` and `hard_link`.
    Rename,
    /// `remove_file` and `remove_dir`.
    Remove,
    /// `allocate` and `set_len`.
    Allocate,
    /// Any of the above to which the fault's error applies.
    Any,
}

/// What happens when a [`Fault`] fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultError {
    /// The operation fails with EIO and does nothing, except a sync: a failed sync makes
    /// each unsynced sector durable or lost at random, leaves the cache showing the new
    /// bytes, and marks the file clean (Linux). A failed `sync_dir` changes nothing.
    Eio,
    /// The operation fails with ENOSPC and does nothing (a sync fails as for [`Self::Eio`]).
    /// Does not apply to reads and removes.
    Enospc,
    /// A write writes a random nonempty part of its buffer (nothing for a 1-byte write) and
    /// returns `Ok(n)` with `n < len`. Applies to writes only.
    ShortWrite,
    /// A read returns its bytes with one random bit flipped; the file is unchanged. Applies
    /// to reads (and maps) only.
    BitFlip,
}

impl FaultError {
    /// Whether this error can happen to an operation of kind `op`.
    pub fn applies_to(self, op: FaultOp) -> bool {
        match self {
            Self::Eio => true,
            Self::Enospc => !matches!(op, FaultOp::Read | FaultOp::Remove),
            Self::ShortWrite => matches!(op, FaultOp::Write | FaultOp::Any),
            Self::BitFlip => matches!(op, FaultOp::Read | FaultOp::Any),
        }
    }

    /// The error an operation returns when this fault fires on it (short writes and bit
    /// flips return `Ok`, so this is only for the failing kinds).
    pub(super) fn to_error(self) -> io::Error {
        match self {
            Self::Eio => errors::eio(),
            Self::Enospc => errors::enospc(),
            Self::ShortWrite | Self::BitFlip => {
                unreachable!("{self:?} does not fail the operation it fires on")
            }
        }
    }
}

/// A fault to inject: which operations it matches, after how many of them it fires, whether
/// once or on every match from then on, and what happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The operations it matches.
    pub op: FaultOp,
    /// What happens when it fires.
    pub error: FaultError,
    /// How many matching operations pass untouched first: 0 means the next one.
    pub countdown: u64,
    /// Fire on every matching operation once the countdown is over, not just the first.
    pub persistent: bool,
    /// Match only operations on paths at or under this one (a rename matches if either
    /// path does). `None` matches every path.
    pub path_prefix: Option<PathBuf>,
}

impl Fault {
    /// A fault that fires once, on the next operation of kind `op` that `error` applies to.
    pub fn new(op: FaultOp, error: FaultError) -> Self {
        Self {
            op,
            error,
            countdown: 0,
            persistent: false,
            path_prefix: None,
        }
    }

    /// Lets `countdown` matching operations pass before firing.
    pub fn after(mut self, countdown: u64) -> Self {
        self.countdown = countdown;
        self
    }

    /// Fires on every matching operation once the countdown is over.
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Matches only operations on `path` or paths under it.
    pub fn under(mut self, path: impl Into<PathBuf>) -> Self {
        self.path_prefix = Some(path.into());
        self
    }

    /// Whether the fault matches an operation of kind `op` on `paths` (normalized).
    fn matches(&self, op: FaultOp, paths: &[&Path]) -> bool {
        let kind_ok = self.op == FaultOp::Any || self.op == op;
        let path_ok = self
            .path_prefix
            .as_deref()
            .is_none_or(|prefix| paths.iter().any(|p| p.starts_with(prefix)));
        kind_ok && path_ok && self.error.applies_to(op)
    }
}

/// The armed faults of one file system, in injection order.
#[derive(Debug, Default)]
pub(super) struct Faults {
    armed: Vec<Fault>,
}

impl Faults {
    /// Arms `fault`.
    ///
    /// # Panics
    /// If the error cannot happen to the operation kind (a short read, say): such a fault
    /// would never fire, and a test that injects it is wrong.
    pub(super) fn inject(&mut self, mut fault: Fault) {
        assert!(
            fault.error.applies_to(fault.op),
            "{:?} never happens to {:?} operations",
            fault.error,
            fault.op
        );
        assert!(
            self.armed.len() < ARMED_MAX,
            "more than {ARMED_MAX} faults armed"
        );
        fault.path_prefix = fault.path_prefix.map(|p| normalize(&p).path);
        self.armed.push(fault);
    }

    /// Disarms every fault.
    pub(super) fn clear(&mut self) {
        self.armed.clear();
    }

    /// Counts an operation of kind `op` on `paths` against every matching fault and returns
    /// what fires on it, if anything. When several reach zero together, the earliest
    /// injected fires now and the others fire on the next matching operations.
    pub(super) fn draw(&mut self, op: FaultOp, paths: &[&Path]) -> Option<FaultError> {
        let mut fired: Option<usize> = None;
        for (index, fault) in self.armed.iter_mut().enumerate() {
            if !fault.matches(op, paths) {
                continue;
            }
            if fault.countdown > 0 {
                fault.countdown -= 1;
            } else if fired.is_none() {
                fired = Some(index);
            }
        }
        let index = fired?;
        let error = self.armed[index].error;
        if !self.armed[index].persistent {
            self.armed.remove(index);
        }
        Some(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_countdown_then_once() {
        let mut faults = Faults::default();
        faults.inject(Fault::new(FaultOp::Write, FaultError::Eio).after(2));
        let p = Path::new("/f");
        assert_eq!(faults.draw(FaultOp::Read, &[p]), None, "reads do not count");
        assert_eq!(faults.draw(FaultOp::Write, &[p]), None);
        assert_eq!(faults.draw(FaultOp::Write, &[p]), None);
        assert_eq!(faults.draw(FaultOp::Write, &[p]), Some(FaultError::Eio));
        assert_eq!(faults.draw(FaultOp::Write, &[p]), None, "fired once");
    }

    #[test]
    fn faults_any_matches_only_where_the_error_applies() {
        let mut faults = Faults::default();
        faults.inject(Fault::new(FaultOp::Any, FaultError::BitFlip).persistent());
        let p = Path::new("/f");
        assert_eq!(faults.draw(FaultOp::Write, &[p]), None);
        assert_eq!(faults.draw(FaultOp::Read, &[p]), Some(FaultError::BitFlip));
        assert_eq!(faults.draw(FaultOp::Read, &[p]), Some(FaultError::BitFlip));
    }

    #[test]
    fn faults_path_prefix_filters() {
        let mut faults = Faults::default();
        faults.inject(Fault::new(FaultOp::Sync, FaultError::Eio).under("db/wal"));
        assert_eq!(faults.draw(FaultOp::Sync, &[Path::new("/db/state")]), None);
        let hit = faults.draw(FaultOp::Sync, &[Path::new("/db/wal/1.wal")]);
        assert_eq!(hit, Some(FaultError::Eio));
    }

    #[test]
    #[should_panic(expected = "never happens")]
    fn faults_inject_rejects_impossible_combinations() {
        Faults::default().inject(Fault::new(FaultOp::Read, FaultError::ShortWrite));
    }
}
