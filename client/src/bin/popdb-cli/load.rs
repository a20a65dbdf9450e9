//! `load TABLE FILE`: bulk import of `key<TAB>value` lines, in batches, with a progress bar.
//!
//! Batches are sent one at a time: two pipelined batches may apply in either order
//! (docs/protocol.md, section 9), and a key that appears twice in the file must end with
//! its last value. Each batch stays within the server's batch limits.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use popdb_client::{Client, WriteBatch};

use crate::args::{key_bytes, value_bytes};
use crate::output::Output;

/// Imports `file` into `table`, `batch` writes per request at most.
pub async fn run(
    client: &Client,
    table: &str,
    file: &str,
    batch: usize,
    hex: bool,
) -> anyhow::Result<Output> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {file}"))?;
    let records = parse_records(&bytes, hex)?;
    let limits = client.server().limits;
    let writes_max = batch.clamp(1, limits.batch_writes_max.max(1) as usize);
    let size_max = limits.batch_size_max as usize;
    let progress = ProgressBar::new(records.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records {per_sec} eta {eta}")
            .context("progress bar template")?,
    );
    let mut batches = 0u64;
    let mut written = 0u64;
    for chunk in split_batches(&records, writes_max, size_max) {
        let mut request = WriteBatch::new();
        for (key, value) in chunk {
            request.put(table, key, value);
        }
        client
            .batch(request)
            .await
            .with_context(|| format!("after {written} records were written"))?;
        batches += 1;
        written += chunk.len() as u64;
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    Ok(Output::Loaded {
        records: written,
        batches,
    })
}

/// The `(key, value)` of each line: the key up to the first tab, the value after it
/// (`--hex`: both hex). A trailing `\r` is dropped; empty lines are skipped.
pub fn parse_records(bytes: &[u8], hex: bool) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut records = Vec::new();
    for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let tab = line
            .iter()
            .position(|b| *b == b'\t')
            .with_context(|| format!("line {}: no tab between key and value", index + 1))?;
        let (key, value) = (&line[..tab], &line[tab + 1..]);
        if hex {
            let text = |part: &[u8]| {
                std::str::from_utf8(part)
                    .map(str::to_owned)
                    .with_context(|| format!("line {}: hex is not UTF-8", index + 1))
            };
            let key =
                key_bytes(&text(key)?, true).with_context(|| format!("line {}", index + 1))?;
            let value =
                value_bytes(&text(value)?, true).with_context(|| format!("line {}", index + 1))?;
            records.push((key, value));
        } else {
            records.push((key.to_vec(), value.to_vec()));
        }
    }
    Ok(records)
}

/// Consecutive runs of `records`, each at most `writes_max` records and `size_max` bytes of
/// keys and values (a single record over `size_max` goes alone; the server refuses it).
pub fn split_batches(
    records: &[(Vec<u8>, Vec<u8>)],
    writes_max: usize,
    size_max: usize,
) -> Vec<&[(Vec<u8>, Vec<u8>)]> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (index, (key, value)) in records.iter().enumerate() {
        let record = key.len() + value.len();
        let full = index - start == writes_max || size + record > size_max;
        if full && index > start {
            batches.push(&records[start..index]);
            start = index;
            size = 0;
        }
        size += record;
    }
    if start < records.len() {
        batches.push(&records[start..]);
    }
    batches
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

    use super::*;

    #[test]
    fn parse_records_splits_at_the_first_tab() {
        let records = parse_records(b"a\t1\r\nb\tx\ty\n\nc\t\n", false).unwrap();
        assert_eq!(
            records,
            [
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"x\ty".to_vec()),
                (b"c".to_vec(), Vec::new()),
            ]
        );
        let error = parse_records(b"a\t1\nnotab\n", false).unwrap_err();
        assert!(format!("{error:#}").contains("line 2"), "{error:#}");
        let records = parse_records(b"00ff\t6869\n", true).unwrap();
        assert_eq!(records, [(vec![0, 255], b"hi".to_vec())]);
    }

    #[test]
    fn split_batches_bounds_writes_and_bytes() {
        let records: Vec<(Vec<u8>, Vec<u8>)> = (0..10u8).map(|i| (vec![i], vec![0; 9])).collect();
        let sizes: Vec<usize> = split_batches(&records, 4, 1000)
            .iter()
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, [4, 4, 2]);
        // 10 bytes a record, 25 bytes a batch: two records each.
        let sizes: Vec<usize> = split_batches(&records, 100, 25)
            .iter()
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, [2, 2, 2, 2, 2]);
        let big = vec![(vec![1], vec![0; 100])];
        assert_eq!(split_batches(&big, 10, 25).len(), 1);
        assert!(split_batches(&[], 10, 25).is_empty());
    }
}
