//! Opening a log: read every live segment from the medium (never trusting the page cache,
//! which may hold data a failed fsync lost), rebuild the index, truncate a torn tail, and
//! refuse to open on corruption without deleting anything. Spec: docs/format/wal.md,
//! "Recovery".
//!
//! Steps, in order:
//! 1. Create the directory if missing (syncing its parent), take its lock, list it.
//! 2. Load `STATE` (a log with segments but no state file is corrupt), bump the
//!    generation and store it, so that units written from now on are told apart from any
//!    stale bytes this open leaves behind.
//! 3. Read every segment header; order segments by id. A later segment's first LSN
//!    supersedes earlier records at or after it (how truncation is recorded).
//! 4. Decode each segment that holds live records (above the purge point, below the next
//!    segment's start); only the last may end in a torn tail.
//! 5. Sync the tail segment (bytes a killed process left in the page cache become durable
//!    before anything builds on them), recycle dead segments, start the spare pool.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use popdb_io::{DirLock, FileRef, FsRef, OpenOptions};

use crate::error::{Corruption, CorruptionKind, Error, Result};
use crate::format::{SEGMENT_HEADER_FIELDS, SegmentHeader};
use crate::ids::{LogId, Lsn};
use crate::index::{Index, IndexedSegment, Loc};
use crate::options::{SyncPolicy, WalOptions};
use crate::scan::{ScanEnd, ScanLimits, scan_segment};
use crate::segments::{Spares, is_spare_temp_name, parse_segment_name, parse_spare_name};
use crate::state::{LogState, STATE_FILE, STATE_TEMP_FILE};
use crate::writer::{Tail, WriterInit};

/// What opening the log found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The generation (open count) this open stamps on new writes.
    pub generation: u64,
    /// Segments decoded.
    pub segments_read: usize,
    /// Bytes read from segments.
    pub bytes_read: u64,
    /// Live records found.
    pub records: u64,
    /// The first live record's LSN.
    pub first: Option<Lsn>,
    /// The last record (or the purge point, for an empty log).
    pub last: Option<LogId>,
    /// The torn tail removed, if any.
    pub torn_tail: Option<TornTail>,
    /// Files removed or recycled: temporaries, dead segments, interrupted rotations.
    pub files_cleaned: Vec<String>,
    /// Time taken.
    pub elapsed: Duration,
}

/// A torn tail found and removed at open: bytes after the last intact write that were never
/// known durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment it was in.
    pub segment: String,
    /// Offset where the log now ends in that segment.
    pub offset: u64,
    /// The LSNs lost, where a surviving header named them.
    pub lost: Option<(Lsn, Lsn)>,
}

pub(crate) struct Recovered {
    pub(crate) report: RecoveryReport,
    pub(crate) next_lsn: u64,
    pub(crate) last: Option<LogId>,
    pub(crate) state: LogState,
    pub(crate) index: Index,
    pub(crate) writer: WriterInit,
    pub(crate) lock: DirLock,
}

struct Found {
    name: String,
    file: FileRef,
    header: SegmentHeader,
}

pub(crate) fn recover(fs: &FsRef, dir: &Path, options: &WalOptions) -> Result<Recovered> {
    let started = options.clock.now();
    let mut report = RecoveryReport::default();
    popdb_io::create_dir_durably(fs.as_ref(), dir)
        .map_err(|e| Error::io("create log directory", e))?;
    let lock = fs
        .lock_dir(dir)
        .map_err(|e| Error::io("lock log directory", e))?;
    let names = fs
        .read_dir(dir)
        .map_err(|e| Error::io("list log directory", e))?;
    let mut segment_names = Vec::new();
    let mut spare_names = Vec::new();
    for name in names {
        let Some(name) = name.to_str().map(str::to_string) else {
            continue;
        };
        if let Some(id) = parse_segment_name(&name) {
            segment_names.push((id, name));
        } else if let Some(number) = parse_spare_name(&name) {
            spare_names.push((number, name));
        } else if is_spare_temp_name(&name) || name == STATE_TEMP_FILE {
            fs.remove_file(&dir.join(&name))
                .map_err(|e| Error::io("remove temporary", e))?;
            report.files_cleaned.push(name);
        }
    }
    segment_names.sort_unstable();

    let mut state = match LogState::load(fs.as_ref(), dir)? {
        Some(state) => state,
        None if segment_names.is_empty() => LogState::default(),
        None => {
            return Err(Error::Corruption(Corruption {
                file: STATE_FILE.to_string(),
                offset: 0,
                what: "state file",
                kind: CorruptionKind::Missing,
            }));
        }
    };
    let previous_generation = state.generation;
    state.generation += 1;
    state.store(fs.as_ref(), dir)?;
    report.generation = state.generation;

    // Spares must have today's size; others are deleted.
    let mut spares_found = Vec::new();
    for (number, name) in spare_names {
        let path = dir.join(&name);
        let len = fs
            .open(&path, OpenOptions::read_only())
            .and_then(|f| f.len())
            .map_err(|e| Error::io("stat spare", e))?;
        if len == options.segment_size {
            spares_found.push((number, name));
        } else {
            fs.remove_file(&path)
                .map_err(|e| Error::io("remove spare", e))?;
            report.files_cleaned.push(name);
        }
    }

    // Step 3: headers.
    let mut found: Vec<Found> = Vec::new();
    let mut orphans: Vec<(String, u64)> = Vec::new();
    let mut max_id = 0u64;
    for (id, name) in segment_names {
        max_id = max_id.max(id);
        let file = fs
            .open(&dir.join(&name), OpenOptions::read_write())
            .map_err(|e| Error::io("open segment", e))?;
        file.evict_cache()
            .map_err(|e| Error::io("evict segment cache", e))?;
        let mut bytes = [0u8; SEGMENT_HEADER_FIELDS];
        let len = file.len().map_err(|e| Error::io("stat segment", e))?;
        // Only a file too short to hold the header is damage; any other failure of the
        // read is the device's, and calling it a corruption would send the operator to
        // restore a log that is intact.
        file.read_exact_at(&mut bytes, 0).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::Corruption(Corruption {
                    file: name.clone(),
                    offset: 0,
                    what: "segment header",
                    kind: CorruptionKind::Truncated {
                        needed: SEGMENT_HEADER_FIELDS as u64,
                        available: len,
                    },
                })
            } else {
                Error::io("read segment header", e)
            }
        })?;
        // Full validation happens in the scan; here only what ordering needs.
        let Ok(header) = SegmentHeader::decode(&bytes) else {
            // Let the scan produce the precise error.
            let scan = scan_segment(
                &name,
                &bytes,
                ScanLimits {
                    live_end: None,
                    generation_max: previous_generation,
                },
            );
            return Err(Error::Corruption(scan.err().unwrap_or(Corruption {
                file: name,
                offset: 0,
                what: "segment header",
                kind: CorruptionKind::BadMagic,
            })));
        };
        max_id = max_id.max(header.segment_id);
        if header.segment_id != id {
            // A rotation that a crash interrupted: the header went into a recycled file
            // whose renames were lost. It holds no records of its new identity.
            orphans.push((name, header.segment_size));
            continue;
        }
        if len != header.segment_size {
            return Err(Error::Corruption(Corruption {
                file: name,
                offset: len,
                what: "segment length",
                kind: CorruptionKind::Truncated {
                    needed: header.segment_size,
                    available: len,
                },
            }));
        }
        found.push(Found { name, file, header });
    }

    // Step 4: decode live segments.
    let purged = state.purged.map_or(0, |p| p.lsn.0);
    let mut index = Index::default();
    let mut tail_scan = None;
    let mut unscanned_dead = Vec::new();
    for k in 0..found.len() {
        let is_tail = k + 1 == found.len();
        let segment = &found[k];
        let live_end = found[k + 1..]
            .iter()
            .map(|s| s.header.first_lsn)
            .min()
            .map(|f| f - 1);
        let live_start = segment.header.first_lsn.max(purged + 1);
        if !is_tail && live_end.is_some_and(|end| end < live_start) {
            unscanned_dead.push((segment.name.clone(), segment.header.segment_size));
            continue;
        }
        let mut bytes = vec![0u8; segment.header.segment_size as usize];
        segment
            .file
            .read_exact_at(&mut bytes, 0)
            .map_err(|e| Error::io("read segment", e))?;
        report.segments_read += 1;
        report.bytes_read += bytes.len() as u64;
        let limits = ScanLimits {
            live_end: if is_tail { None } else { live_end },
            generation_max: previous_generation,
        };
        let scan = scan_segment(&segment.name, &bytes, limits).map_err(Error::Corruption)?;
        if is_tail {
            confirm_tail(&segment.file, &segment.name, &bytes, scan.end_offset)?;
        }
        index.truncate(segment.header.first_lsn);
        index.segments.push(IndexedSegment {
            name: segment.name.clone(),
            header: segment.header,
            file: Arc::clone(&segment.file),
            locs: scan.records.iter().map(Loc::from).collect(),
        });
        if is_tail {
            tail_scan = Some(scan);
        }
    }
    let dead = index.remove_dead(purged, false);
    verify_contiguous(&index, purged)?;

    // Step 5: the tail.
    let mut tail = None;
    if let (Some(scan), Some(segment)) = (tail_scan, found.last()) {
        segment
            .file
            .sync_data()
            .map_err(|e| Error::io("sync tail segment", e))?;
        if let ScanEnd::Torn { lost } = scan.end {
            report.torn_tail = Some(TornTail {
                segment: segment.name.clone(),
                offset: scan.end_offset,
                lost: lost.map(|(a, b)| (Lsn(a), Lsn(b))),
            });
        }
        tail = Some(Tail {
            seed: segment.header.seed(),
            header: segment.header,
            file: Arc::clone(&segment.file),
            offset: scan.end_offset,
            synced: scan.end_offset,
            next_lsn: segment.header.first_lsn + scan.records.len() as u64,
            writeback_from: scan.end_offset,
        });
    }

    let last_lsn = index.last_lsn().filter(|&l| l > purged);
    let last = match last_lsn {
        Some(lsn) => index.log_id(lsn),
        None => state.purged,
    };
    let next_lsn = last.map_or(1, |l| l.lsn.0 + 1);
    report.first = last_lsn.map(|_| Lsn(purged + 1).max(first_indexed(&index)));
    report.records = last_lsn.map_or(0, |l| l + 1 - report.first.map_or(l + 1, |f| f.0));
    report.last = last;

    let spares = Spares::start(
        Arc::clone(fs),
        dir,
        options.segment_size,
        options.prewrite_segments && options.sync != SyncPolicy::Never,
        options.spare_segments,
        spares_found,
    );
    for (name, size) in orphans {
        spares.recycle(&name, size)?;
        report.files_cleaned.push(name);
    }
    // Dead segments (all purged or superseded), except the tail, go back to the pool.
    let dead = dead.into_iter().map(|s| (s.name, s.header.segment_size));
    for (name, size) in unscanned_dead.into_iter().chain(dead) {
        spares.recycle(&name, size)?;
        report.files_cleaned.push(name);
    }
    index.check_invariants(purged);
    report.elapsed = options.clock.now().saturating_sub(started);

    Ok(Recovered {
        report,
        next_lsn,
        last,
        state: state.clone(),
        index,
        writer: WriterInit {
            tail,
            spares,
            next_segment_id: max_id + 1,
            log_state: state,
        },
        lock,
    })
}

/// Bytes compared per read by [`confirm_tail`].
const CONFIRM_CHUNK_SIZE: usize = 1 << 20;

/// The tail segment's valid units end at `end_offset`; the writer goes on from there and
/// overwrites what follows. First make sure that end is on the medium and not in one
/// misread: a bit flipped on the way from the disk fails the last unit's checksum (or hides
/// its header) just as a torn write does, and cutting there would drop a record that was
/// acknowledged as durable, then reuse its LSN. So the bytes from `end_offset` on are read
/// again: two reads that differ refuse the open with an i/o error (`InvalidData`), and the
/// next open reads again. The LSM manifest does the same before cutting its tail.
///
/// Costs one more read of the tail segment's unused remainder per open, in bounded chunks.
fn confirm_tail(file: &FileRef, name: &str, image: &[u8], end_offset: u64) -> Result<()> {
    let start = usize::try_from(end_offset).expect("the scan's end lies within the image");
    let mut again = vec![0u8; CONFIRM_CHUNK_SIZE.min(image.len() - start)];
    let mut at = start;
    while at < image.len() {
        let len = again.len().min(image.len() - at);
        file.read_exact_at(&mut again[..len], at as u64)
            .map_err(|e| Error::io("read segment", e))?;
        if again[..len] != image[at..at + len] {
            let message = format!(
                "two reads of {name} differ after offset {end_offset}: not cutting its tail"
            );
            return Err(Error::io(
                "read segment",
                io::Error::new(io::ErrorKind::InvalidData, message),
            ));
        }
        at += len;
    }
    Ok(())
}

fn first_indexed(index: &Index) -> Lsn {
    Lsn(index
        .segments
        .iter()
        .find(|s| !s.locs.is_empty())
        .map_or(1, |s| s.header.first_lsn))
}

/// Checks that live records run without gaps from just above the purge point.
fn verify_contiguous(index: &Index, purged: u64) -> Result<()> {
    let mut expected: Option<u64> = None;
    for segment in &index.segments {
        if segment.locs.is_empty() || segment.end_lsn() - 1 <= purged {
            continue;
        }
        let first_live = segment.header.first_lsn.max(purged + 1);
        let want = expected.unwrap_or(purged + 1);
        if first_live != want && (expected.is_some() || segment.header.first_lsn > purged + 1) {
            return Err(Error::Corruption(Corruption {
                file: segment.name.clone(),
                offset: 0,
                what: "segment first LSN",
                kind: CorruptionKind::LsnGap {
                    expected: want,
                    found: segment.header.first_lsn,
                },
            }));
        }
        expected = Some(segment.end_lsn());
    }
    Ok(())
}
