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
    pub(crate) locs: Locs,
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

/// Locations per chunk of [`Locs`] (96 KiB of them).
const LOCS_CHUNK: usize = 4096;

/// A segment's record locations, in chunks that never move: the index grows on the
/// writer's thread under the log's state lock, which every appender takes, and a vector
/// doubling there copied all the locations so far into fresh memory (whose pages the kernel
/// zeroes at the first write): about a fifth of the writer's time in `write_appends` at
/// pipeline 16. The first chunk grows as a vector does, so a segment of few records holds
/// little; every later one is allocated whole. All chunks but the last are full, and the
/// last holds at least one location, so the count follows from them.
#[derive(Debug, Default)]
pub(crate) struct Locs {
    chunks: Vec<Vec<Loc>>,
}

impl Locs {
    /// Locations held.
    pub(crate) fn len(&self) -> usize {
        self.chunks
            .last()
            .map_or(0, |last| (self.chunks.len() - 1) * LOCS_CHUNK + last.len())
    }

    /// Whether no location is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The location at `at`, if held.
    pub(crate) fn get(&self, at: usize) -> Option<&Loc> {
        self.chunks.get(at / LOCS_CHUNK)?.get(at % LOCS_CHUNK)
    }

    /// Appends `loc`.
    pub(crate) fn push(&mut self, loc: Loc) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < LOCS_CHUNK => chunk.push(loc),
            last => {
                let capacity = if last.is_some() { LOCS_CHUNK } else { 0 };
                let mut chunk = Vec::with_capacity(capacity);
                chunk.push(loc);
                self.chunks.push(chunk);
            }
        }
    }

    /// Keeps the first `len` locations.
    pub(crate) fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        let chunks = len.div_ceil(LOCS_CHUNK);
        self.chunks.truncate(chunks);
        if let Some(last) = self.chunks.last_mut() {
            last.truncate(len - (chunks - 1) * LOCS_CHUNK);
        }
    }
}

impl FromIterator<Loc> for Locs {
    fn from_iter<I: IntoIterator<Item = Loc>>(iter: I) -> Self {
        let mut locs = Locs::default();
        for loc in iter {
            locs.push(loc);
        }
        locs
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

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(i: usize) -> Loc {
        Loc {
            offset: i as u32,
            len: 1,
            term: i as u64 * 3,
            node: 7,
        }
    }

    /// `Locs` against a vector, across chunk boundaries, with truncations to inside a
    /// chunk, to a boundary, to nothing, and pushes after each.
    #[test]
    fn locs_match_a_vector_through_pushes_and_truncations() {
        let mut locs = Locs::default();
        let mut model: Vec<usize> = Vec::new();
        let check = |locs: &Locs, model: &[usize]| {
            assert_eq!(locs.len(), model.len());
            assert_eq!(locs.is_empty(), model.is_empty());
            for (at, &i) in model.iter().enumerate() {
                assert_eq!(locs.get(at).map(|l| l.offset), Some(i as u32), "at {at}");
            }
            assert!(locs.get(model.len()).is_none());
            assert!(locs.get(model.len() + LOCS_CHUNK).is_none());
            assert!(
                locs.chunks
                    .iter()
                    .rev()
                    .skip(1)
                    .all(|c| c.len() == LOCS_CHUNK),
                "every chunk but the last is full"
            );
            assert!(
                locs.chunks.last().is_none_or(|c| !c.is_empty()),
                "the last chunk holds a location"
            );
        };
        let mut next = 0;
        for (grow, keep) in [
            (10, 5),
            (LOCS_CHUNK * 2 + 3, LOCS_CHUNK * 2),
            (1, LOCS_CHUNK + 17),
            (LOCS_CHUNK, usize::MAX),
            (5, 0),
            (LOCS_CHUNK + 1, LOCS_CHUNK),
        ] {
            for _ in 0..grow {
                locs.push(loc(next));
                model.push(next);
                next += 1;
            }
            check(&locs, &model);
            locs.truncate(keep);
            model.truncate(keep);
            check(&locs, &model);
        }
        let collected: Locs = (0..LOCS_CHUNK + 9).map(loc).collect();
        check(&collected, &(0..LOCS_CHUNK + 9).collect::<Vec<_>>());
    }
}
