//! Read-only maps of file ranges (`memmap2`, `PROT_READ` + `MAP_SHARED`).
//!
//! A shared map shows the page cache itself, so a view sees every later `pwrite` to the
//! file (through any descriptor) without remapping: that is what lets readers follow a
//! growing WAL segment or SST. The price is the one invariant documented in `io/UNSAFE.md`:
//! the bytes behind a borrowed `&[u8]` may change or vanish underneath Rust.
#![expect(
    unsafe_code,
    reason = "memmap2's map is unsafe because the mapped file can change under the slice; \
              the invariant callers keep is in io/UNSAFE.md"
)]
#![deny(
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

use crate::fs::Mapping;
use std::fs;
use std::io;

/// Maps `len` bytes of `file` at `offset` (see [`crate::File::map`]).
///
/// # Errors
/// `InvalidInput` if the range is not inside the file; the kernel's error if the map fails
/// (for example `PermissionDenied` when the file was not opened for reading).
pub(super) fn map_range(file: &fs::File, offset: u64, len: usize) -> io::Result<Mapping> {
    let file_len = file.metadata()?.len();
    let in_file = offset
        .checked_add(len as u64)
        .is_some_and(|end| end <= file_len);
    if !in_file {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "map of {len} bytes at offset {offset} is outside the file of {file_len} bytes"
            ),
        ));
    }
    if len == 0 {
        // The kernel refuses zero-length maps.
        return Ok(Mapping::empty());
    }
    let options = map_range_options(offset, len);
    // SAFETY: `Mmap` hands out `&[u8]` over memory the kernel may change, which is sound only
    // while (a) no byte of the range changes while a slice borrowed from the view is being
    // read, and (b) the file is not truncated below the range while the view lives (reads
    // past the end of the file raise SIGBUS). Both are the callers' contract, stated on
    // `File::map` and in io/UNSAFE.md: PopDB writes a mapped range only where readers of the
    // view do not look (the unwritten tail of a preallocated segment or file), never
    // truncates under a live view, and the data-directory lock keeps other PopDB processes
    // off the files. The range was checked to lie inside the file just above, so the map
    // itself starts out fully backed.
    let map = unsafe { options.map(file) }?;
    Ok(Mapping::mmap(map))
}

/// The options for a read-only map of `len` bytes at `offset`; memmap2 aligns the offset down
/// to a page and hides the slack.
fn map_range_options(offset: u64, len: usize) -> memmap2::MmapOptions {
    let mut options = memmap2::MmapOptions::new();
    options.offset(offset).len(len);
    options
}
