//! A range scan at a read view: the merge of every source, filtered down to the newest
//! version at or below the view of each user key within the bounds, tombstones dropped.
//!
//! Forwards, a user key's versions arrive newest first: the first at or below the view is the
//! answer and the rest are skipped. Backwards they arrive oldest first: the scan remembers the
//! last one at or below the view and yields it when the user key changes. The current entry
//! lives in buffers owned by the scan and reused from step to step.

use std::ops::Bound;

use crate::error::Result;
use crate::internal_key::{InternalKey, KIND_PUT, ValueKind};
use crate::merge::{Direction, Merge};
use crate::version::user_key_of;

/// A scan over a [`ReadView`](crate::ReadView)'s entries, in one direction, positioned at its
/// first entry. A cursor: [`RangeIter::valid`], then [`RangeIter::key`],
/// [`RangeIter::value`] and [`RangeIter::version`], then [`RangeIter::next`]. A step that
/// returns an error leaves it invalid.
pub struct RangeIter<'v> {
    merge: Merge<'v>,
    view_lsn: u64,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    direction: Direction,
    key: Vec<u8>,
    value: Vec<u8>,
    version: u64,
    valid: bool,
    /// Forwards: the user key last decided (its older versions are skipped).
    /// Backwards: the user key being gathered.
    pending_key: Vec<u8>,
    has_pending: bool,
    /// Backwards: the newest version at or below the view seen so far of `pending_key`.
    pending_value: Vec<u8>,
    pending: Option<(ValueKind, u64)>,
}

impl<'v> RangeIter<'v> {
    pub(crate) fn new(
        merge: Merge<'v>,
        view_lsn: u64,
        (lower, upper): (Bound<Vec<u8>>, Bound<Vec<u8>>),
        direction: Direction,
    ) -> Result<Self> {
        let mut iter = Self {
            merge,
            view_lsn,
            lower,
            upper,
            direction,
            key: Vec::new(),
            value: Vec::new(),
            version: 0,
            valid: false,
            pending_key: Vec::new(),
            has_pending: false,
            pending_value: Vec::new(),
            pending: None,
        };
        iter.next()?;
        Ok(iter)
    }

    /// Where a merge for these bounds starts: the first version of the lower bound's key
    /// forwards, the last version of the upper bound's key backwards.
    pub(crate) fn start_target(
        bounds: &(Bound<Vec<u8>>, Bound<Vec<u8>>),
        direction: Direction,
    ) -> Option<InternalKey> {
        match direction {
            Direction::Forward => match &bounds.0 {
                Bound::Included(k) | Bound::Excluded(k) => {
                    Some(InternalKey::seek_key(k, crate::LSN_MAX))
                }
                Bound::Unbounded => None,
            },
            Direction::Backward => match &bounds.1 {
                Bound::Included(k) | Bound::Excluded(k) => {
                    Some(InternalKey::new(k, 0, ValueKind::Delete))
                }
                Bound::Unbounded => None,
            },
        }
    }

    /// Whether the scan is at an entry.
    pub fn valid(&self) -> bool {
        self.valid
    }

    /// The current user key.
    ///
    /// # Panics
    /// If the scan is not valid.
    pub fn key(&self) -> &[u8] {
        assert!(self.valid, "key() on an invalid range scan");
        &self.key
    }

    /// The current value.
    ///
    /// # Panics
    /// If the scan is not valid.
    pub fn value(&self) -> &[u8] {
        assert!(self.valid, "value() on an invalid range scan");
        &self.value
    }

    /// The current value's version: the LSN that wrote it.
    ///
    /// # Panics
    /// If the scan is not valid.
    pub fn version(&self) -> u64 {
        assert!(self.valid, "version() on an invalid range scan");
        self.version
    }

    /// Moves to the next entry in the scan's direction (invalid past the last).
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) or [`Error::Corruption`](crate::Error::Corruption)
    /// from an SST read.
    #[expect(
        clippy::should_implement_trait,
        reason = "a cursor step that can fail, not Iterator::next"
    )]
    pub fn next(&mut self) -> Result<()> {
        self.valid = false;
        let step = match self.direction {
            Direction::Forward => self.step_forward(),
            Direction::Backward => self.step_backward(),
        };
        if step.is_err() {
            self.valid = false;
        }
        step
    }

    fn step_forward(&mut self) -> Result<()> {
        while self.merge.valid() {
            let internal = self.merge.key();
            let user = user_key_of(internal);
            if above_upper(&self.upper, user) {
                return Ok(());
            }
            let (lsn, kind) = trailer(internal);
            let skip = below_lower(&self.lower, user)
                || (self.has_pending && self.pending_key == user)
                || lsn > self.view_lsn;
            if !skip {
                self.pending_key.clear();
                self.pending_key.extend_from_slice(user);
                self.has_pending = true;
                if kind == KIND_PUT {
                    self.key.clear();
                    self.key.extend_from_slice(user);
                    self.value.clear();
                    self.value.extend_from_slice(self.merge.value());
                    self.version = lsn;
                    self.valid = true;
                    return self.merge.advance();
                }
            }
            self.merge.advance()?;
        }
        Ok(())
    }

    fn step_backward(&mut self) -> Result<()> {
        while self.merge.valid() {
            let internal = self.merge.key();
            let user = user_key_of(internal);
            if below_lower(&self.lower, user) {
                break;
            }
            if above_upper(&self.upper, user) {
                self.merge.advance()?;
                continue;
            }
            let differs = self.has_pending && self.pending_key != user;
            if differs && self.take_pending() {
                return Ok(());
            }
            let internal = self.merge.key();
            let user = user_key_of(internal);
            if !self.has_pending {
                self.pending_key.clear();
                self.pending_key.extend_from_slice(user);
                self.has_pending = true;
            }
            let (lsn, kind) = trailer(internal);
            if lsn <= self.view_lsn {
                let kind = if kind == KIND_PUT {
                    ValueKind::Put
                } else {
                    ValueKind::Delete
                };
                self.pending = Some((kind, lsn));
                self.pending_value.clear();
                self.pending_value.extend_from_slice(self.merge.value());
            }
            self.merge.advance()?;
        }
        if self.has_pending {
            self.take_pending();
        }
        Ok(())
    }

    /// Ends the gathered user key: makes it current if its visible version is a put.
    fn take_pending(&mut self) -> bool {
        self.has_pending = false;
        match self.pending.take() {
            Some((ValueKind::Put, lsn)) => {
                std::mem::swap(&mut self.key, &mut self.pending_key);
                std::mem::swap(&mut self.value, &mut self.pending_value);
                self.version = lsn;
                self.valid = true;
                true
            }
            _ => false,
        }
    }
}

/// The LSN and kind tag of an encoded internal key written by this tree.
fn trailer(internal: &[u8]) -> (u64, u8) {
    let at = internal.len().saturating_sub(8);
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&internal[at..]);
    let t = u64::from_le_bytes(raw);
    (t >> 8, t as u8)
}

fn below_lower(lower: &Bound<Vec<u8>>, user: &[u8]) -> bool {
    match lower {
        Bound::Included(k) => user < k.as_slice(),
        Bound::Excluded(k) => user <= k.as_slice(),
        Bound::Unbounded => false,
    }
}

fn above_upper(upper: &Bound<Vec<u8>>, user: &[u8]) -> bool {
    match upper {
        Bound::Included(k) => user > k.as_slice(),
        Bound::Excluded(k) => user >= k.as_slice(),
        Bound::Unbounded => false,
    }
}

/// The bounds that select exactly the keys starting with `prefix`.
pub(crate) fn prefix_bounds(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return (Bound::Included(prefix.to_vec()), Bound::Excluded(end));
        }
    }
    (Bound::Included(prefix.to_vec()), Bound::Unbounded)
}
