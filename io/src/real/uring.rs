//! Batched writes through io_uring: the writes of a batch and, when asked, an `fdatasync`
//! after them, linked (`IOSQE_IO_LINK`) into one chain and handed to the kernel in one
//! submission.
//!
//! Invariants:
//! - One ring per [`crate::RealFs`], behind a mutex: one batch at a time, and the ring holds
//!   entries only while the batch that pushed them is inside [`Uring::write_batch`].
//! - A batch returns (or unwinds) only after the kernel has posted a completion for every
//!   entry it consumed; see [`wait_round`] for the two ways out that keep this.
//! - The chain runs in op order, and the sync is pushed only in the round that carries the
//!   last outstanding write, so it follows every byte of the batch.
//!
//! A short write fails its link, so the kernel cancels the rest of the chain (`ECANCELED`);
//! the next round resubmits from the short write's remainder. A real error is reported as
//! itself, never as the cancellations it caused. The ring is set up on first use; any setup
//! failure (ENOSYS under old kernels or seccomp, EPERM under `kernel.io_uring_disabled`, a
//! missing opcode) turns it off for good and batches take the `pwrite` path instead.
#![expect(
    unsafe_code,
    reason = "pushing an io_uring entry is unsafe: the kernel reads the buffer after the push \
              returns; the invariant is in io/UNSAFE.md"
)]
#![deny(
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use io_uring::{IoUring, Probe, opcode, squeue, types};
use parking_lot::Mutex;
use rustix::io::Errno;

use crate::fs::WriteOp;

/// Submission-queue entries in the ring; a batch with more writes takes several rounds.
const RING_ENTRIES: u32 = 64;

/// Linux moves at most this many bytes in one read or write (`MAX_RW_COUNT`); longer ops are
/// split into pieces of this size.
const WRITE_BYTES_MAX: usize = 0x7fff_f000;

/// Rounds of one batch that may end in a short write (or EINTR/EAGAIN) before it gives up. A regular
/// file writes short only near ENOSPC or under signals, so a handful is plenty.
const SHORT_ROUNDS_MAX: u32 = 64;

/// Transient failures of `io_uring_enter` (EINTR, EAGAIN, EBUSY) tolerated while waiting for
/// one round. Each EINTR needs a delivered signal; EAGAIN and EBUSY back off 1 ms each.
const WAIT_RETRIES_MAX: u32 = 100_000;

/// The io_uring ring of one [`crate::RealFs`], set up on first use.
pub(super) struct Uring {
    /// False for [`crate::RealFs::without_io_uring`]: never set a ring up.
    enabled: bool,
    /// Lock order: taken alone; nothing else is locked while it is held.
    state: OnceLock<Mutex<RingState>>,
    /// Batches that went through the ring, for tests and metrics.
    batch_count: AtomicU64,
}

/// Whether the ring is usable.
enum RingState {
    /// Boxed because a ring is several hundred bytes and the other variant a `String`.
    Ready(Box<IoUring>),
    Unavailable(String),
}

/// Why a batch on the ring did not complete.
enum BatchError {
    /// An operation failed; the batch's outcome on disk is unknown.
    Io(io::Error),
    /// `io_uring_enter` failed with nothing in flight: the ring can no longer be trusted, but
    /// the batch may be redone another way.
    RingBroken(io::Error),
}

/// One entry of a round's chain.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Bytes `done..done + len` of op `op_index`.
    Write {
        op_index: usize,
        done: usize,
        len: u32,
    },
    /// `fdatasync` of the file, after every write of the batch.
    Sync,
}

/// What a completed round did.
enum Round {
    /// Every entry completed in full.
    Complete,
    /// A write came up short (or was interrupted); the rest of the chain was cancelled and is
    /// resubmitted.
    Short,
    /// An operation failed.
    Failed(io::Error),
}

impl Uring {
    /// A ring slot; `enabled == false` keeps it empty for good.
    pub(super) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            state: OnceLock::new(),
            batch_count: AtomicU64::new(0),
        }
    }

    /// Whether batches go through the ring (setting it up if this is the first ask).
    pub(super) fn active(&self) -> bool {
        matches!(*self.state().lock(), RingState::Ready(_))
    }

    /// Why batches do not go through the ring, or `None` when they do.
    pub(super) fn unavailable_reason(&self) -> Option<String> {
        match &*self.state().lock() {
            RingState::Ready(_) => None,
            RingState::Unavailable(reason) => Some(reason.clone()),
        }
    }

    /// Batches that went through the ring so far.
    pub(super) fn batch_count(&self) -> u64 {
        self.batch_count.load(Ordering::Relaxed)
    }

    /// Runs `writes` (then `fdatasync` if `sync`) on `file` through the ring, or returns
    /// `None` when there is no usable ring and the caller must take the `pwrite` path.
    pub(super) fn write_batch(
        &self,
        file: &fs::File,
        writes: &[WriteOp<'_>],
        sync: bool,
    ) -> Option<io::Result<()>> {
        let mut state = self.state().lock();
        let RingState::Ready(ring) = &mut *state else {
            return None;
        };
        let fd = types::Fd(file.as_raw_fd());
        match run_batch(ring, fd, writes, sync) {
            Ok(()) => {
                self.batch_count.fetch_add(1, Ordering::Relaxed);
                Some(Ok(()))
            }
            Err(BatchError::Io(e)) => {
                self.batch_count.fetch_add(1, Ordering::Relaxed);
                Some(Err(e))
            }
            Err(BatchError::RingBroken(e)) => {
                // Dropping the ring also drops any entries it never consumed: without
                // SQPOLL the kernel reads entries only inside io_uring_enter, which is never
                // called on this ring again. Positional writes are idempotent, so redoing the
                // whole batch with pwrite is correct even if earlier rounds ran.
                *state = RingState::Unavailable(format!("the ring failed and was dropped: {e}"));
                None
            }
        }
    }

    fn state(&self) -> &Mutex<RingState> {
        self.state.get_or_init(|| {
            let state = if self.enabled {
                match setup() {
                    Ok(ring) => RingState::Ready(Box::new(ring)),
                    Err(reason) => RingState::Unavailable(reason),
                }
            } else {
                RingState::Unavailable("turned off by RealFs::without_io_uring".to_owned())
            };
            Mutex::new(state)
        })
    }
}

impl fmt::Debug for Uring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let active = self
            .state
            .get()
            .map(|state| matches!(*state.lock(), RingState::Ready(_)));
        f.debug_struct("Uring")
            .field("enabled", &self.enabled)
            .field("active", &active)
            .field("batch_count", &self.batch_count())
            .finish()
    }
}

/// Sets a ring up and checks the kernel has the two opcodes batches use.
fn setup() -> Result<IoUring, String> {
    let ring = IoUring::new(RING_ENTRIES).map_err(|e| format!("io_uring_setup failed: {e}"))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("the kernel cannot list its io_uring opcodes: {e}"))?;
    for (code, name) in [
        (opcode::Write::CODE, "IORING_OP_WRITE"),
        (opcode::Fsync::CODE, "IORING_OP_FSYNC"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("the kernel's io_uring lacks {name}"));
        }
    }
    Ok(ring)
}

/// Runs a whole batch in rounds of at most one ring's worth of linked entries.
fn run_batch(
    ring: &mut IoUring,
    fd: types::Fd,
    writes: &[WriteOp<'_>],
    sync: bool,
) -> Result<(), BatchError> {
    let capacity = (ring.params().sq_entries() as usize).min(RING_ENTRIES as usize);
    assert!(capacity > 0, "an io_uring ring has no submission entries");
    let mut done = vec![0_usize; writes.len()];
    let mut synced = !sync;
    let mut short_rounds = 0_u32;
    loop {
        let steps = plan_round(writes, &done, synced, capacity);
        if steps.is_empty() {
            return Ok(());
        }
        let results = submit_round(ring, fd, writes, &steps)?;
        match apply_round(&steps, &results, &mut done, &mut synced) {
            Round::Complete => {}
            Round::Short => {
                short_rounds += 1;
                if short_rounds > SHORT_ROUNDS_MAX {
                    return Err(BatchError::Io(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("io_uring writes came up short {short_rounds} times in one batch"),
                    )));
                }
            }
            Round::Failed(e) => return Err(BatchError::Io(e)),
        }
    }
}

/// The next round's chain: the outstanding writes in op order, as many as fit, then the sync
/// if every write is in this round. Ops before the first outstanding one are complete,
/// because a round stops at its first short write and a split op ends its round.
fn plan_round(writes: &[WriteOp<'_>], done: &[usize], synced: bool, capacity: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    let first = done
        .iter()
        .zip(writes)
        .position(|(&done, op)| done < op.bytes.len())
        .unwrap_or(writes.len());
    for (op_index, op) in writes.iter().enumerate().skip(first) {
        let remaining = op.bytes.len() - done[op_index];
        if remaining == 0 {
            continue;
        }
        if steps.len() == capacity {
            return steps;
        }
        let len = remaining.min(WRITE_BYTES_MAX);
        steps.push(Step::Write {
            op_index,
            done: done[op_index],
            len: u32::try_from(len).expect("WRITE_BYTES_MAX fits in u32"),
        });
        if len < remaining {
            // The rest of this op must land before any later op touches the file.
            return steps;
        }
    }
    if !synced && steps.len() < capacity {
        steps.push(Step::Sync);
    }
    steps
}

/// Pushes one round's chain, submits it, and waits for every completion. Returns each
/// entry's result (bytes written or `-errno`), in chain order.
fn submit_round(
    ring: &mut IoUring,
    fd: types::Fd,
    writes: &[WriteOp<'_>],
    steps: &[Step],
) -> Result<Vec<i32>, BatchError> {
    let entries: Vec<squeue::Entry> = steps
        .iter()
        .enumerate()
        .map(|(index, &step)| submit_round_entry(fd, writes, step, index, steps.len()))
        .collect();
    // A stale entry would run against a buffer of an earlier batch; a stale completion
    // would be taken for one of this round's.
    assert!(
        ring.submission().is_empty(),
        "io_uring ring holds stale entries"
    );
    assert!(
        ring.completion().is_empty(),
        "io_uring ring holds stale completions"
    );
    let mut queue = ring.submission();
    // SAFETY: the kernel may read each entry's buffer and use its descriptor until it posts
    // that entry's completion. Every buffer is a sub-slice of a `WriteOp::bytes` borrowed by
    // the caller of `File::write_batch`, and the descriptor belongs to the `File` borrowed by
    // the same call, so both outlive the call. The call does not return before the kernel has
    // posted a completion for every entry it consumed: `wait_round` loops until all are
    // reaped, aborts the process if it cannot, and returns early only when every consumed
    // entry has completed, in which case the caller drops the ring with any unconsumed ones
    // (never entering it again; without SQPOLL the kernel reads entries only inside
    // io_uring_enter, so those never run). A panic while
    // entries are in flight aborts through `AbortOnUnwind`. The ring was empty just above,
    // so no entry of an earlier batch can run against a freed buffer.
    let pushed = unsafe { queue.push_multiple(&entries) };
    drop(queue);
    pushed.expect("a round has at most as many entries as the empty ring has slots");
    wait_round(ring, entries.len())
}

/// Builds the entry for `step`, the `index`-th of `count`, linked to the next one unless it
/// is the last.
fn submit_round_entry(
    fd: types::Fd,
    writes: &[WriteOp<'_>],
    step: Step,
    index: usize,
    count: usize,
) -> squeue::Entry {
    let entry = match step {
        Step::Write {
            op_index,
            done,
            len,
        } => {
            let op = &writes[op_index];
            let bytes = &op.bytes[done..];
            assert!(len as usize <= bytes.len(), "write step runs past its op");
            let offset = op
                .offset
                .checked_add(done as u64)
                .expect("a write op's end fits in u64");
            opcode::Write::new(fd, bytes.as_ptr(), len)
                .offset(offset)
                .build()
        }
        Step::Sync => opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build(),
    };
    let flags = if index + 1 < count {
        squeue::Flags::IO_LINK
    } else {
        squeue::Flags::empty()
    };
    entry.flags(flags).user_data(index as u64)
}

/// Submits what is queued and waits until `count` completions are reaped. Returns early
/// only with [`BatchError::RingBroken`], and only when no consumed entry is still in flight
/// (the caller then drops the ring with the unconsumed ones); if some are and the ring keeps
/// failing, the process aborts, since returning would free
/// buffers the kernel may still read.
fn wait_round(ring: &mut IoUring, count: usize) -> Result<Vec<i32>, BatchError> {
    let guard = AbortOnUnwind;
    let mut results: Vec<Option<i32>> = vec![None; count];
    let mut reaped = 0_usize;
    let mut retries = 0_u32;
    while reaped < count {
        let submitted = ring.submit_and_wait(count - reaped);
        if submitted.is_ok() && !ring.submission().is_empty() {
            // The kernel took only part of the queue (it could not allocate requests). A
            // linked chain is cut there: the rest would run as a new chain, concurrently
            // with this part, so a linked fdatasync could finish before the writes it
            // follows. Reap everything taken before submitting the rest.
            let consumed = count - ring.submission().len();
            while reaped < consumed {
                for cqe in ring.completion() {
                    reap(&mut results, &cqe);
                    reaped += 1;
                }
                if reaped < consumed {
                    std::thread::yield_now();
                }
            }
            continue;
        }
        if let Err(e) = submitted {
            let consumed = count.saturating_sub(ring.submission().len());
            let in_flight = consumed.saturating_sub(reaped);
            let transient = matches!(
                e.kind(),
                io::ErrorKind::Interrupted
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::ResourceBusy
            );
            retries += 1;
            if in_flight == 0 && (!transient || retries > WAIT_RETRIES_MAX) {
                std::mem::forget(guard);
                return Err(BatchError::RingBroken(e));
            }
            if retries > WAIT_RETRIES_MAX {
                abort_in_flight(&format!("io_uring_enter keeps failing: {e}"));
            }
            if e.kind() != io::ErrorKind::Interrupted {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for cqe in ring.completion() {
            reap(&mut results, &cqe);
            reaped += 1;
        }
    }
    std::mem::forget(guard);
    Ok(results
        .into_iter()
        .map(|result| result.expect("each of `count` slots was filled once"))
        .collect())
}

/// Records one completion in its slot; a completion no slot expects aborts (the kernel
/// may still be using buffers we would otherwise free).
fn reap(results: &mut [Option<i32>], cqe: &io_uring::cqueue::Entry) {
    let slot = usize::try_from(cqe.user_data())
        .ok()
        .and_then(|index| results.get_mut(index));
    match slot {
        Some(slot @ None) => *slot = Some(cqe.result()),
        _ => abort_in_flight(&format!(
            "io_uring posted an unexpected completion (user_data {})",
            cqe.user_data()
        )),
    }
}

/// Folds a round's results into `done` and `synced`, walking the chain in order and
/// stopping at the first entry that did not complete in full: everything after it was
/// cancelled (or, if it ran, is redone after it, which keeps the op order).
fn apply_round(steps: &[Step], results: &[i32], done: &mut [usize], synced: &mut bool) -> Round {
    assert_eq!(steps.len(), results.len(), "one result per step");
    for (&step, &result) in steps.iter().zip(results) {
        let Ok(written) = usize::try_from(result) else {
            return apply_round_error(step, result);
        };
        match step {
            Step::Write { op_index, len, .. } => {
                let len = len as usize;
                assert!(
                    written <= len,
                    "the kernel wrote {written} bytes of a {len}-byte write"
                );
                done[op_index] += written;
                if written == 0 {
                    return Round::Failed(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("io_uring wrote 0 bytes of op {op_index}"),
                    ));
                }
                if written < len {
                    return Round::Short;
                }
            }
            Step::Sync => {
                assert_eq!(written, 0, "fdatasync returned {written}");
                *synced = true;
            }
        }
    }
    Round::Complete
}

/// Classifies the first failed entry of a chain (`result` is `-errno`).
fn apply_round_error(step: Step, result: i32) -> Round {
    let errno = Errno::from_raw_os_error(-result);
    if errno == Errno::CANCELED {
        // The walk stops at the first short or failed entry, so a cancellation reached first
        // has no cause in this chain; say so instead of passing ECANCELED off as the cause.
        return Round::Failed(io::Error::other(format!(
            "io_uring cancelled {step:?} although no earlier entry of its chain failed"
        )));
    }
    let retry = matches!(errno, Errno::INTR | Errno::AGAIN);
    match step {
        // A write that did not run is retried like a short one.
        Step::Write { .. } if retry => Round::Short,
        // A sync is never retried: after a failed fdatasync the data may be gone.
        Step::Write { .. } | Step::Sync => Round::Failed(io::Error::from(errno)),
    }
}

/// Aborts (does not unwind): the kernel may still read buffers that unwinding would free.
fn abort_in_flight(why: &str) -> ! {
    eprintln!("popdb-io: aborting with io_uring writes in flight: {why}");
    std::process::abort()
}

/// Armed while a round's entries may be in flight; a panic then aborts instead of unwinding
/// into the caller, who would free the buffers the kernel is reading.
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        abort_in_flight("a panic unwound through a round in flight");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECANCELED: i32 = -125;
    const EIO: i32 = -5;

    fn ops<'a>(lens: &[usize], bytes: &'a [u8]) -> Vec<WriteOp<'a>> {
        lens.iter()
            .map(|&len| WriteOp {
                offset: 0,
                bytes: &bytes[..len],
            })
            .collect()
    }

    #[test]
    fn plan_round_links_writes_then_sync_when_all_fit() {
        let bytes = [0_u8; 16];
        let writes = ops(&[4, 0, 8], &bytes);
        let steps = plan_round(&writes, &[0, 0, 0], false, 64);
        assert_eq!(
            format!("{steps:?}"),
            "[Write { op_index: 0, done: 0, len: 4 }, \
            Write { op_index: 2, done: 0, len: 8 }, Sync]"
        );
    }

    #[test]
    fn plan_round_full_ring_defers_sync_to_a_later_round() {
        let bytes = [0_u8; 16];
        let writes = ops(&[1, 1, 1], &bytes);
        let steps = plan_round(&writes, &[0, 0, 0], false, 3);
        assert_eq!(steps.len(), 3);
        assert!(steps.iter().all(|s| matches!(s, Step::Write { .. })));
        let steps = plan_round(&writes, &[1, 1, 1], false, 3);
        assert!(matches!(steps[..], [Step::Sync]));
        assert!(plan_round(&writes, &[1, 1, 1], true, 3).is_empty());
    }

    #[test]
    fn plan_round_resumes_a_short_write_from_its_remainder() {
        let bytes = [0_u8; 16];
        let writes = ops(&[8, 8], &bytes);
        let steps = plan_round(&writes, &[8, 3], true, 64);
        assert_eq!(
            format!("{steps:?}"),
            "[Write { op_index: 1, done: 3, len: 5 }]"
        );
    }

    #[test]
    fn apply_round_short_write_stops_and_records_progress() {
        let steps = [
            Step::Write {
                op_index: 0,
                done: 0,
                len: 8,
            },
            Step::Write {
                op_index: 1,
                done: 0,
                len: 8,
            },
            Step::Sync,
        ];
        let mut done = [0, 0];
        let mut synced = false;
        let round = apply_round(&steps, &[8, 5, ECANCELED], &mut done, &mut synced);
        assert!(matches!(round, Round::Short));
        assert_eq!(done, [8, 5]);
        assert!(!synced);
    }

    #[test]
    fn apply_round_reports_the_failure_not_the_cancellations() {
        let steps = [
            Step::Write {
                op_index: 0,
                done: 0,
                len: 8,
            },
            Step::Write {
                op_index: 1,
                done: 0,
                len: 8,
            },
            Step::Sync,
        ];
        let mut done = [0, 0];
        let mut synced = false;
        let round = apply_round(&steps, &[EIO, ECANCELED, ECANCELED], &mut done, &mut synced);
        let Round::Failed(e) = round else {
            panic!("not failed")
        };
        assert_eq!(e.raw_os_error(), Some(5));
    }

    #[test]
    fn apply_round_failed_sync_is_not_retried() {
        let steps = [
            Step::Write {
                op_index: 0,
                done: 0,
                len: 8,
            },
            Step::Sync,
        ];
        let mut done = [0];
        let mut synced = false;
        let round = apply_round(&steps, &[8, EIO], &mut done, &mut synced);
        assert!(matches!(round, Round::Failed(_)));
        assert!(!synced);
        let round = apply_round(&steps, &[8, -4], &mut [0], &mut synced);
        assert!(
            matches!(round, Round::Failed(_)),
            "EINTR on a sync is a failure too"
        );
    }

    #[test]
    fn apply_round_cancellation_without_cause_is_an_error() {
        let steps = [Step::Write {
            op_index: 0,
            done: 0,
            len: 8,
        }];
        let round = apply_round(&steps, &[ECANCELED], &mut [0], &mut false);
        let Round::Failed(e) = round else {
            panic!("not failed")
        };
        assert!(e.to_string().contains("no earlier entry"), "{e}");
    }
}
