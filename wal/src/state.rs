//! The log's small state file, `STATE`: the open generation, the last purged record, and
//! the Raft vote. Replaced atomically (write `STATE.tmp`, fsync, rename, fsync the
//! directory), so a crash leaves the old or the new state, never a mix. Spec:
//! docs/format/wal.md, "State file".

use std::path::Path;

use popdb_io::{FileSystem, OpenOptions};

use crate::error::{Corruption, CorruptionKind, Error, Result};
use crate::ids::{LogId, Lsn, NodeId, Term};

/// The state file's name.
pub const STATE_FILE: &str = "STATE";
/// The name it is written under before the rename.
pub const STATE_TEMP_FILE: &str = "STATE.tmp";
const STATE_MAGIC: [u8; 8] = *b"POPDBWST";
const STATE_VERSION: u32 = 1;
/// The largest vote accepted, in bytes.
pub const VOTE_SIZE_MAX: usize = 4096;
const FIXED_SIZE: usize = 8 + 4 + 8 + 1 + 8 + 8 + 8 + 1 + 4;

/// The durable state of the log besides its records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    /// How many times the log has been opened; stamps new segments and units.
    pub generation: u64,
    /// The last purged record, if any was purged.
    pub purged: Option<LogId>,
    /// The saved vote, opaque to the log.
    pub vote: Option<Vec<u8>>,
}

impl LogState {
    /// Encodes the state file.
    pub fn encode(&self) -> Vec<u8> {
        let vote = self.vote.as_deref().unwrap_or(&[]);
        let mut b = Vec::with_capacity(FIXED_SIZE + 4 + vote.len());
        b.extend_from_slice(&STATE_MAGIC);
        b.extend_from_slice(&STATE_VERSION.to_le_bytes());
        b.extend_from_slice(&self.generation.to_le_bytes());
        let purged = self.purged.unwrap_or_default();
        b.push(u8::from(self.purged.is_some()));
        b.extend_from_slice(&purged.lsn.0.to_le_bytes());
        b.extend_from_slice(&purged.term.0.to_le_bytes());
        b.extend_from_slice(&purged.node.0.to_le_bytes());
        b.push(u8::from(self.vote.is_some()));
        let vote_len = u32::try_from(vote.len()).expect("vote size checked against the limit");
        b.extend_from_slice(&vote_len.to_le_bytes());
        b.extend_from_slice(vote);
        let crc = popdb_io::crc32(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and validates a state file.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, (u64, &'static str, CorruptionKind)> {
        let truncated = |needed: usize| {
            (
                0,
                "state file",
                CorruptionKind::Truncated {
                    needed: needed as u64,
                    available: bytes.len() as u64,
                },
            )
        };
        if bytes.len() < 4 {
            return Err(truncated(4));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let expected = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        let actual = popdb_io::crc32(body);
        if expected != actual {
            return Err((
                body.len() as u64,
                "state checksum",
                CorruptionKind::ChecksumMismatch { expected, actual },
            ));
        }
        let mut r = Reader { bytes: body, at: 0 };
        let magic = r.take(8).ok_or_else(|| truncated(8))?;
        if magic != STATE_MAGIC {
            return Err((0, "state magic", CorruptionKind::BadMagic));
        }
        let version = r.u32().ok_or_else(|| truncated(12))?;
        if version != STATE_VERSION {
            return Err((
                8,
                "state version",
                CorruptionKind::UnsupportedVersion {
                    found: version,
                    max: STATE_VERSION,
                },
            ));
        }
        let generation = r.u64().ok_or_else(|| truncated(20))?;
        let has_purged = r.flag(20).map_err(|e| e.unwrap_or_else(|| truncated(21)))?;
        let lsn = r.u64().ok_or_else(|| truncated(29))?;
        let term = r.u64().ok_or_else(|| truncated(37))?;
        let node = r.u64().ok_or_else(|| truncated(45))?;
        let has_vote = r.flag(45).map_err(|e| e.unwrap_or_else(|| truncated(46)))?;
        let vote_len = r.u32().ok_or_else(|| truncated(50))? as usize;
        if vote_len > VOTE_SIZE_MAX || (!has_vote && vote_len != 0) {
            return Err((
                46,
                "vote length",
                CorruptionKind::InvalidValue {
                    found: vote_len as u64,
                },
            ));
        }
        let vote = r
            .take(vote_len)
            .ok_or_else(|| truncated(50 + vote_len))?
            .to_vec();
        if r.at != body.len() {
            return Err((
                r.at as u64,
                "state trailing bytes",
                CorruptionKind::InvalidValue {
                    found: (body.len() - r.at) as u64,
                },
            ));
        }
        if has_purged && lsn == u64::MAX {
            // The log would continue at u64::MAX + 1.
            return Err((
                21,
                "purged lsn",
                CorruptionKind::InvalidValue { found: lsn },
            ));
        }
        if has_purged && lsn == 0 {
            return Err((21, "purged lsn", CorruptionKind::InvalidValue { found: 0 }));
        }
        if !has_purged && (lsn, term, node) != (0, 0, 0) {
            return Err((21, "purged id", CorruptionKind::InvalidValue { found: lsn }));
        }
        Ok(LogState {
            generation,
            purged: has_purged.then_some(LogId {
                lsn: Lsn(lsn),
                term: Term(term),
                node: NodeId(node),
            }),
            vote: has_vote.then_some(vote),
        })
    }

    /// Reads the state file from `dir`; `Ok(None)` if there is none.
    pub fn load(fs: &dyn FileSystem, dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(STATE_FILE);
        let file = match fs.open(&path, OpenOptions::read_only()) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open state file", e)),
        };
        file.evict_cache()
            .map_err(|e| Error::io("evict state file cache", e))?;
        let len = file.len().map_err(|e| Error::io("stat state file", e))?;
        let cap = (FIXED_SIZE + 4 + VOTE_SIZE_MAX) as u64;
        if len > cap {
            return Err(Error::Corruption(Corruption {
                file: STATE_FILE.to_string(),
                offset: cap,
                what: "state file length",
                kind: CorruptionKind::InvalidValue { found: len },
            }));
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0)
            .map_err(|e| Error::io("read state file", e))?;
        Self::decode(&bytes)
            .map(Some)
            .map_err(|(offset, what, kind)| {
                Error::Corruption(Corruption {
                    file: STATE_FILE.to_string(),
                    offset,
                    what,
                    kind,
                })
            })
    }

    /// Durably replaces the state file in `dir` with this state.
    pub fn store(&self, fs: &dyn FileSystem, dir: &Path) -> Result<()> {
        let temp = dir.join(STATE_TEMP_FILE);
        let options = OpenOptions {
            truncate: true,
            ..OpenOptions::create()
        };
        let file = fs
            .open(&temp, options)
            .map_err(|e| Error::io("create state file", e))?;
        file.write_all_at(&self.encode(), 0)
            .map_err(|e| Error::io("write state file", e))?;
        file.sync_data()
            .map_err(|e| Error::io("sync state file", e))?;
        drop(file);
        fs.rename(&temp, &dir.join(STATE_FILE))
            .map_err(|e| Error::io("rename state file", e))?;
        fs.sync_dir(dir)
            .map_err(|e| Error::io("sync log directory", e))
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A 0/1 flag at `offset`: `Err(None)` if the bytes end, `Err(Some(..))` for another value.
    fn flag(&mut self, offset: u64) -> Result<bool, Option<(u64, &'static str, CorruptionKind)>> {
        match self.take(1).ok_or(None)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(Some((
                offset,
                "state flag",
                CorruptionKind::InvalidValue {
                    found: u64::from(other),
                },
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_rejects_every_flip() {
        let state = LogState {
            generation: 4,
            purged: Some(LogId {
                lsn: Lsn(10),
                term: Term(2),
                node: NodeId(3),
            }),
            vote: Some(b"vote".to_vec()),
        };
        let bytes = state.encode();
        assert_eq!(LogState::decode(&bytes), Ok(state));
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x01;
            assert!(LogState::decode(&damaged).is_err(), "flip at {i} accepted");
        }
        assert_eq!(
            LogState::decode(&LogState::default().encode()),
            Ok(LogState::default())
        );
    }
}
