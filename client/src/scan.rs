//! Scans that follow continuation cursors (docs/protocol.md, section 10): [`ScanOptions`]
//! says what to read, [`ScanStream`] hands out pages or entries until the server sends a
//! page without a cursor or the total limit is reached.
//!
//! Invariants: every page after the first carries the previous page's cursor, so all pages
//! read one read view (`read_lsn`); the stream never yields more than `limit` entries.

use std::ops::Bound;

use popdb_protocol::{Cursor, Direction, Entries, Entry, Scan};

use crate::client::Client;
use crate::error::Result;

/// What a scan reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanOptions {
    /// The smallest key, whatever the direction.
    pub lower: Bound<Vec<u8>>,
    /// The largest key, whatever the direction.
    pub upper: Bound<Vec<u8>>,
    /// Ascending or descending keys.
    pub direction: Direction,
    /// Most entries in all; `None`: until the end of the range.
    pub limit: Option<u64>,
    /// Most entries per page; 0 lets the server choose.
    pub page_size: u32,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
            direction: Direction::Forward,
            limit: None,
            page_size: 0,
        }
    }
}

impl ScanOptions {
    /// Every key, ascending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys from `key` on (included).
    pub fn from(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.lower = Bound::Included(key.into());
        self
    }

    /// Keys before `key` (excluded).
    pub fn to(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.upper = Bound::Excluded(key.into());
        self
    }

    /// Descending keys.
    pub fn reverse(mut self) -> Self {
        self.direction = Direction::Backward;
        self
    }

    /// At most `limit` entries in all.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// At most `page_size` entries per request.
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size;
        self
    }
}

/// A scan in progress: call [`ScanStream::next_page`] or [`ScanStream::next`] until they
/// return `None`.
#[derive(Debug)]
pub struct ScanStream {
    client: Client,
    table: String,
    options: ScanOptions,
    cursor: Option<Cursor>,
    /// Entries yielded so far.
    returned: u64,
    /// The read view's LSN, once the first page came.
    read_lsn: Option<u64>,
    done: bool,
    /// Entries of the current page not yet handed out by [`ScanStream::next`], reversed.
    buffered: Vec<Entry>,
}

impl ScanStream {
    pub(crate) fn new(client: Client, table: &str, options: ScanOptions) -> Self {
        let done = options.limit == Some(0);
        Self {
            client,
            table: table.to_owned(),
            options,
            cursor: None,
            returned: 0,
            read_lsn: None,
            done,
            buffered: Vec::new(),
        }
    }

    /// The LSN of the read view every page comes from, once the first page came.
    pub fn read_lsn(&self) -> Option<u64> {
        self.read_lsn
    }

    /// The next page, or `None` when the scan is complete. A page may be empty only if it
    /// is the last.
    ///
    /// # Errors
    /// As [`Client::scan_page`]; [`crate::Error::CursorExpired`] if the read view expired
    /// between pages (start a new scan).
    pub async fn next_page(&mut self) -> Result<Option<Entries>> {
        if self.done {
            return Ok(None);
        }
        let scan = Scan {
            table: self.table.clone(),
            lower: self.options.lower.clone(),
            upper: self.options.upper.clone(),
            direction: self.options.direction,
            limit: self.page_limit(),
            cursor: self.cursor.clone(),
        };
        let mut page = self.client.scan_page(scan).await?;
        if page.entries.is_empty() && page.cursor.is_some() {
            // docs/protocol.md, section 10: an empty page ends the scan. Following such a
            // cursor could loop forever.
            return Err(crate::Error::Protocol(
                "the server sent an empty scan page with a cursor".to_owned(),
            ));
        }
        if let Some(limit) = self.options.limit {
            let left = limit - self.returned;
            if page.entries.len() as u64 >= left {
                page.entries.truncate(left as usize);
                page.cursor = None;
            }
        }
        self.returned += page.entries.len() as u64;
        self.read_lsn = Some(page.read_lsn);
        self.cursor.clone_from(&page.cursor);
        self.done = page.cursor.is_none();
        Ok(Some(page))
    }

    /// The next entry, or `None` when the scan is complete.
    ///
    /// # Errors
    /// As [`ScanStream::next_page`].
    pub async fn next(&mut self) -> Result<Option<Entry>> {
        // Bounded: each round either returns or fetches a page; an empty page without a
        // cursor ends the scan, and the server sends empty pages only as the last.
        loop {
            if let Some(entry) = self.buffered.pop() {
                return Ok(Some(entry));
            }
            match self.next_page().await? {
                Some(page) => {
                    self.buffered = page.entries;
                    self.buffered.reverse();
                }
                None => return Ok(None),
            }
        }
    }

    /// Every remaining entry.
    ///
    /// # Errors
    /// As [`ScanStream::next_page`].
    pub async fn collect(mut self) -> Result<Vec<Entry>> {
        let mut entries = std::mem::take(&mut self.buffered);
        entries.reverse();
        while let Some(page) = self.next_page().await? {
            entries.extend(page.entries);
        }
        Ok(entries)
    }

    /// The limit to ask the next page for: the page size, within what is left of the total.
    fn page_limit(&self) -> u32 {
        let page = self.options.page_size;
        match self.options.limit {
            None => page,
            Some(limit) => {
                let left = u32::try_from(limit - self.returned).unwrap_or(u32::MAX);
                if page == 0 {
                    left.min(self.client.server().limits.scan_limit_max)
                } else {
                    left.min(page)
                }
            }
        }
    }
}
