//! The data-directory lock: an exclusive `flock` on `DIR/LOCK`, with the holder's pid written
//! into the file so that a refused opener can say who holds it.
//!
//! `flock` locks belong to the open file description, not the process: two opens of `LOCK`
//! in one process conflict just as two processes do, which is what keeps two engines in one
//! process (a test, say) off one directory. The lock dies with its descriptor, so a crashed
//! holder never leaves a stale lock; a stale pid in the file is harmless because the file is
//! read only when the lock is refused, that is, while a live holder has it and has (or is
//! about to have) written its own pid.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::fs::DirLock;

/// The lock file's name inside the locked directory.
const LOCK_FILE_NAME: &str = "LOCK";

/// How many bytes of a holder's pid line we read; a pid has at most 10 digits.
const HOLDER_BYTES_MAX: usize = 32;

/// Locks `dir` (see [`crate::FileSystem::lock_dir`]).
pub(super) fn lock_dir(dir: &Path) -> io::Result<DirLock> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let holder = lock_dir_holder(&file);
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by {holder}", dir.display()),
            ));
        }
        Err(e) => return Err(io::Error::from(e)),
    }
    // Only the holder writes, and only after locking, so this never races another writer.
    let pid_line = format!("{}\n", std::process::id());
    file.set_len(0)?;
    file.write_all_at(pid_line.as_bytes(), 0)?;
    Ok(DirLock::new(Box::new(file)))
}

/// Names the holder for the refusal message: "process 1234", or a fallback when the holder
/// has not written its pid yet (it locks first, then writes) or the file is unreadable.
fn lock_dir_holder(file: &fs::File) -> String {
    let mut buf = [0_u8; HOLDER_BYTES_MAX];
    let Ok(read_count) = file.read_at(&mut buf, 0) else {
        return "another process (its pid is unreadable)".to_owned();
    };
    let text = String::from_utf8_lossy(&buf[..read_count]);
    match text.trim().parse::<u32>() {
        Ok(pid) => format!("process {pid}"),
        Err(_) => "another process (it has not recorded its pid)".to_owned(),
    }
}
