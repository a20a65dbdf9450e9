//! The baselines: what the file system alone does, through the same seam the WAL uses
//! (`popdb_io::RealFs`, whose `write_at` is `pwrite` and whose `sync_data` is `fdatasync`).
//!
//! - The fdatasync floor: one record-sized `pwrite` and one `fdatasync` per operation, at
//!   sequential offsets in a file whose blocks were written and synced beforehand (as the
//!   WAL's pre-written segments are), so no sync pays for block allocation.
//! - Sequential bulk writes: 1 MiB `pwrite`s into a new file, one `fdatasync` at the end.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use popdb_io::{FileRef, FileSystem, OpenOptions, RealFs};

use crate::measure::{Sample, new_histogram};
use crate::settings::Settings;

/// Bytes written at a time while pre-writing a file.
const FILL_CHUNK: usize = 1 << 20;

/// One sample of the fdatasync floor in `dir` (empty).
pub fn fdatasync_floor(fs: &RealFs, dir: &Path, settings: &Settings) -> Result<Sample> {
    let path = dir.join("raw-floor.dat");
    let file = fs
        .open(&path, OpenOptions::create_new())
        .with_context(|| format!("create {}", path.display()))?;
    fill(&file, settings.raw_file_bytes, 0)?;
    file.sync_data().context("sync the pre-written file")?;
    fs.sync_dir(dir).context("sync the sample directory")?;

    let record = payload(settings.record_size, 0x5a);
    let size = record.len() as u64;
    let end = settings.raw_file_bytes - settings.raw_file_bytes % size;
    let mut latency = new_histogram();
    let mut offset = 0u64;
    let mut ops = 0u64;
    let start = Instant::now();
    let deadline = start + settings.sample;
    loop {
        let t0 = Instant::now();
        if t0 >= deadline {
            break;
        }
        file.write_all_at(&record, offset).context("pwrite")?;
        file.sync_data().context("fdatasync")?;
        latency.saturating_record(duration_ns(t0.elapsed()));
        ops += 1;
        offset += size;
        if offset + size > end {
            offset = 0;
        }
    }
    let elapsed = start.elapsed();
    Ok(Sample {
        ops,
        payload_bytes: ops * size,
        written_bytes: ops * size,
        writes: ops,
        syncs: ops,
        segments_created: 0,
        elapsed,
        latency: Some(latency),
    })
}

/// One sample of sequential bulk writes in `dir` (empty): `settings.bulk_bytes` in
/// `settings.bulk_batch_bytes` writes to a new file, then one fdatasync, all timed.
pub fn bulk_write(fs: &RealFs, dir: &Path, settings: &Settings) -> Result<Sample> {
    let path = dir.join("raw-bulk.dat");
    let file = fs
        .open(&path, OpenOptions::create_new())
        .with_context(|| format!("create {}", path.display()))?;
    fs.sync_dir(dir).context("sync the sample directory")?;
    let chunk = payload(settings.bulk_batch_bytes as usize, 0xa5);
    let mut latency = new_histogram();
    let mut offset = 0u64;
    let start = Instant::now();
    while offset < settings.bulk_bytes {
        let n = (settings.bulk_bytes - offset).min(chunk.len() as u64) as usize;
        let t0 = Instant::now();
        file.write_all_at(&chunk[..n], offset).context("pwrite")?;
        latency.saturating_record(duration_ns(t0.elapsed()));
        offset += n as u64;
    }
    file.sync_data().context("fdatasync")?;
    let elapsed = start.elapsed();
    Ok(Sample {
        ops: offset.div_ceil(chunk.len() as u64),
        payload_bytes: offset,
        written_bytes: offset,
        writes: offset.div_ceil(chunk.len() as u64),
        syncs: 1,
        segments_created: 0,
        elapsed,
        latency: Some(latency),
    })
}

/// Writes `len` bytes of `byte` from offset 0.
fn fill(file: &FileRef, len: u64, byte: u8) -> Result<()> {
    let chunk = vec![byte; FILL_CHUNK];
    let mut offset = 0u64;
    while offset < len {
        let n = (len - offset).min(FILL_CHUNK as u64) as usize;
        file.write_all_at(&chunk[..n], offset)
            .context("pre-write")?;
        offset += n as u64;
    }
    Ok(())
}

/// `len` bytes that vary (so nothing below us can compress or deduplicate them trivially).
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) | 0x9e37_0000;
    (0..len)
        .map(|_| {
            // xorshift32
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

pub fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
