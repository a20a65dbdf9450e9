//! Where every written record lies: segments in LSN order, each with the offset and length
//! of its records. Records still queued for the writer are not here (see `wal.rs`).

use popdb_io::FileRef;

use crate::format::SegmentHeader;
use crate::ids::{LogId, Lsn, NodeId, Term};
use crate::scan::RecordLoc;

/// One segment's records.
#[derive(Debug)]
pub(crate) struct IndexedSegment {
    pub(crate) name: String,
    pub(crate) header: SegmentHeader,
    pub(crate) file: FileRef,
    /// Records for LSNs `header.first_lsn ..`, in order.
    pub(crate) locs: Vec<Loc>,
}

/// A record's place in its segment, and its identity (for `last_log_id` after a truncate).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Loc {
    pub(crate) offset: u32,
    pub(crate) len: u32,
    pub(crate) term: u64,
    pub(crate) node: u64,
}

impl From<&RecordLoc> for Loc {
    fn from(r: &RecordLoc) -> Self {
        Loc {
            offset: r.offset,
            len: r.len,
            term: r.term,
            node: r.node,
        }
    }
}

impl IndexedSegment {
    /// The LSN after this segment's last record.
    pub(crate) fn end_lsn(&self) -> u64 {
        self.header.first_lsn + self.locs.len() as u64
    }
}

/// All written records, by segment.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Segments in LSN (and id) order; the last one is the writer's tail.
    pub(crate) segments: Vec<IndexedSegment>,
}

impl Index {
    /// The segment holding `lsn` and the record's location.
    pub(crate) fn find(&self, lsn: u64) -> Option<(&IndexedSegment, Loc)> {
        let i = self.segments.partition_point(|s| s.header.first_lsn <= lsn);
        let segment = self.segments.get(i.checked_sub(1)?)?;
        let at = usize::try_from(lsn - segment.header.first_lsn).ok()?;
        segment.locs.get(at).map(|loc| (segment, *loc))
    }

    /// The id of the record at `lsn`, if written.
    pub(crate) fn log_id(&self, lsn: u64) -> Option<LogId> {
        self.find(lsn).map(|(_, loc)| LogId {
            lsn: Lsn(lsn),
            term: Term(loc.term),
            node: NodeId(loc.node),
        })
    }

    /// The last written record's LSN, if any.
    pub(crate) fn last_lsn(&self) -> Option<u64> {
        self.segments
            .iter()
            .rev()
            .find(|s| !s.locs.is_empty())
            .map(|s| s.end_lsn() - 1)
    }

    /// Forgets records at and after `lsn`.
    pub(crate) fn truncate(&mut self, lsn: u64) {
        for segment in &mut self.segments {
            if segment.end_lsn() > lsn {
                let keep = lsn.saturating_sub(segment.header.first_lsn);
                segment
                    .locs
                    .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
            }
        }
    }

    /// Removes the segments no read can reach: every segment but the last whose records
    /// are all purged (at or below `purged`) or superseded by a truncation (none left).
    /// With `new_tail`, the last segment is about to stop being the tail and is judged too.
    pub(crate) fn remove_dead(&mut self, purged: u64, new_tail: bool) -> Vec<IndexedSegment> {
        let count = self.segments.len();
        let judged = if new_tail {
            count
        } else {
            count.saturating_sub(1)
        };
        let mut dead = Vec::new();
        let mut kept = Vec::with_capacity(count);
        for (i, segment) in std::mem::take(&mut self.segments).into_iter().enumerate() {
            let unreachable = segment.locs.is_empty() || segment.end_lsn() - 1 <= purged;
            if i < judged && unreachable {
                dead.push(segment);
            } else {
                kept.push(segment);
            }
        }
        self.segments = kept;
        dead
    }

    /// Checks the index's invariants: segments ordered by id, and LSNs contiguous across
    /// segments that hold records above `purged`.
    pub(crate) fn check_invariants(&self, purged: u64) {
        let mut expected: Option<u64> = None;
        for pair in self.segments.windows(2) {
            assert!(
                pair[0].header.segment_id < pair[1].header.segment_id,
                "segments out of order: {} then {}",
                pair[0].name,
                pair[1].name
            );
            // `find` searches by first LSN.
            assert!(
                pair[0].header.first_lsn <= pair[1].header.first_lsn,
                "first LSNs out of order: {} then {}",
                pair[0].name,
                pair[1].name
            );
            assert!(
                !pair[0].locs.is_empty(),
                "dead segment {} still indexed",
                pair[0].name
            );
        }
        for segment in &self.segments {
            if segment.locs.is_empty() || segment.end_lsn() - 1 <= purged {
                continue;
            }
            if let Some(expected) = expected {
                assert_eq!(
                    segment.header.first_lsn, expected,
                    "LSN gap before {}",
                    segment.name
                );
            }
            expected = Some(segment.end_lsn());
        }
    }
}
