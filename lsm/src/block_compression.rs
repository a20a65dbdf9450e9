//! Optional zstd compression of SST data blocks, one block at a time. Layout:
//! docs/format/sstable.md ("Compressed data block"), constants in `block_format.rs`.
//!
//! The writer compresses a finished block's body (entries, restart offsets, restart count)
//! and keeps the compressed form only when it saves at least an eighth of the body; otherwise
//! the block is stored as it was built. Index and filter blocks are never compressed.
//!
//! The reader turns a stored block into its *image*: the block in uncompressed form, exactly
//! as an uncompressed block is stored (body, tag 0, crc32 of body and tag), which is what the
//! block cache holds and the block iterator reads. Bytes from disk are input: the crc32 is
//! checked before anything else; a compressed block's declared body size must lie in
//! `[RESTART_COUNT_SIZE, COMPRESSED_BODY_SIZE_MAX]` before anything is allocated, and the
//! frame must decompress to exactly that many bytes. Anything else is `Corruption`.

use std::cell::RefCell;
use std::sync::Arc;

use crate::block_format::{
    BODY_SIZE_SIZE, COMPRESSED_BODY_SIZE_MAX, COMPRESSION_NONE, COMPRESSION_ZSTD, CRC_SIZE,
    RESTART_COUNT_SIZE, TRAILER_SIZE,
};
use crate::block_reader::check_crc;
use crate::error::{CorruptionKind, Error, Result};

/// How an SST's data blocks are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Every block is stored as built.
    #[default]
    None,
    /// Each data block is compressed with zstd at `level` (1 to 22; 3 is zstd's default),
    /// and kept compressed only when that saves at least an eighth of its body.
    Zstd {
        /// The zstd compression level.
        level: i32,
    },
}

/// The largest zstd window the reader accepts: 2^23 bytes, above any window the writer's
/// frames of at most [`COMPRESSED_BODY_SIZE_MAX`] bytes ask for.
const WINDOW_LOG_MAX: u32 = 23;

const _: () = assert!(COMPRESSED_BODY_SIZE_MAX <= 1 << WINDOW_LOG_MAX);

/// Seals finished blocks for the writer: compressed when the options ask for it and it pays.
pub(crate) struct BlockCompressor {
    /// `None` when compression is off.
    zstd: Option<zstd::bulk::Compressor<'static>>,
    /// The reused frame buffer.
    frame: Vec<u8>,
}

impl std::fmt::Debug for BlockCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCompressor")
            .field("zstd", &self.zstd.is_some())
            .finish_non_exhaustive()
    }
}

impl BlockCompressor {
    /// A compressor for `compression`.
    ///
    /// # Panics
    /// If the zstd level is outside zstd's range, or zstd cannot allocate its context.
    pub(crate) fn new(compression: Compression) -> Self {
        let zstd = match compression {
            Compression::None => None,
            Compression::Zstd { level } => {
                let range = zstd::compression_level_range();
                assert!(
                    range.contains(&level),
                    "zstd level {level} outside {range:?}"
                );
                let compressor = zstd::bulk::Compressor::new(level)
                    .expect("zstd allocates a compression context");
                Some(compressor)
            }
        };
        Self {
            zstd,
            frame: Vec::new(),
        }
    }

    /// The bytes to store for `block`, a finished uncompressed block: its compressed form if
    /// compression is on and saves at least an eighth of the body, else `block` itself.
    /// Returns whether it compressed.
    pub(crate) fn seal(&mut self, block: Vec<u8>) -> (Vec<u8>, bool) {
        let Some(zstd) = &mut self.zstd else {
            return (block, false);
        };
        assert!(
            block.len() >= TRAILER_SIZE + RESTART_COUNT_SIZE,
            "a finished block"
        );
        let body = &block[..block.len() - TRAILER_SIZE];
        if body.len() > COMPRESSED_BODY_SIZE_MAX {
            return (block, false);
        }
        self.frame.clear();
        self.frame
            .reserve(zstd::zstd_safe::compress_bound(body.len()));
        zstd.compress_to_buffer(body, &mut self.frame)
            .expect("the frame buffer holds zstd's bound");
        let budget = body.len() - body.len() / 8;
        if self.frame.len() + BODY_SIZE_SIZE > budget {
            return (block, false);
        }
        let body_size = u32::try_from(body.len()).expect("bounded by COMPRESSED_BODY_SIZE_MAX");
        let mut out = Vec::with_capacity(self.frame.len() + BODY_SIZE_SIZE + TRAILER_SIZE);
        out.extend_from_slice(&self.frame);
        out.extend_from_slice(&body_size.to_le_bytes());
        out.push(COMPRESSION_ZSTD);
        let crc = popdb_io::crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        (out, true)
    }
}

/// The image of a stored data block: `stored` itself when it is uncompressed, else its body
/// decompressed into a new uncompressed block. Checks the crc32 and the tag (tag 1 only when
/// `zstd_allowed`, i.e. in format_version 2); the image's structure is the caller's to check
/// ([`crate::block_reader::Block::decode_verified`]). Error offsets count from the stored
/// block's first byte.
pub(crate) fn decode_stored(stored: Arc<[u8]>, zstd_allowed: bool) -> Result<Arc<[u8]>> {
    check_crc(&stored)?;
    let tag_at = stored.len() - TRAILER_SIZE;
    match stored[tag_at] {
        COMPRESSION_NONE => Ok(stored),
        COMPRESSION_ZSTD if zstd_allowed => decompress(&stored[..tag_at]),
        tag => Err(Error::corruption(
            tag_at,
            "block compression tag",
            CorruptionKind::InvalidTag { tag },
        )),
    }
}

/// Decompresses `frame || body_size` (a stored compressed block without its trailer) into an
/// uncompressed block image.
fn decompress(payload: &[u8]) -> Result<Arc<[u8]>> {
    let Some(size_at) = payload.len().checked_sub(BODY_SIZE_SIZE) else {
        return Err(Error::corruption(
            0,
            "block body_size",
            CorruptionKind::Truncated {
                needed: (BODY_SIZE_SIZE + TRAILER_SIZE) as u64,
                available: (payload.len() + TRAILER_SIZE) as u64,
            },
        ));
    };
    let raw: [u8; BODY_SIZE_SIZE] = payload[size_at..].try_into().expect("4 bytes");
    let body_size = u32::from_le_bytes(raw) as usize;
    if !(RESTART_COUNT_SIZE..=COMPRESSED_BODY_SIZE_MAX).contains(&body_size) {
        return Err(Error::corruption(
            size_at,
            "block body_size",
            CorruptionKind::InvalidValue {
                found: body_size as u64,
            },
        ));
    }
    let frame = &payload[..size_at];
    let mut image: Arc<[u8]> = std::iter::repeat_n(0u8, body_size + TRAILER_SIZE).collect();
    let out = Arc::get_mut(&mut image).expect("a fresh Arc has one owner");
    let written = with_decompressor(|d| d.decompress_to_buffer(frame, &mut out[..body_size]))?;
    let Ok(written) = written else {
        return Err(Error::corruption(
            0,
            "block zstd frame",
            CorruptionKind::InvalidValue {
                found: frame.len() as u64,
            },
        ));
    };
    if written != body_size {
        return Err(Error::corruption(
            size_at,
            "block body_size",
            CorruptionKind::InvalidValue {
                found: written as u64,
            },
        ));
    }
    out[body_size] = COMPRESSION_NONE;
    let crc = popdb_io::crc32(&out[..=body_size]);
    out[body_size + 1..].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len() - body_size, 1 + CRC_SIZE);
    Ok(image)
}

thread_local! {
    /// One zstd decompression context per thread, made on first use: contexts are costly to
    /// create, and a reader's `get` runs on many threads at once.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Runs `f` with this thread's decompressor. The outer error is a failure to create one.
fn with_decompressor<T>(f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> T) -> Result<T> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let mut d = zstd::bulk::Decompressor::new().map_err(|e| Error::io("zstd init", e))?;
            d.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(WINDOW_LOG_MAX))
                .map_err(|e| Error::io("zstd init", e))?;
            *slot = Some(d);
        }
        Ok(f(slot.as_mut().expect("made above")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_builder::BlockBuilder;
    use crate::block_reader::Block;
    use crate::internal_key::{InternalKey, ValueKind};

    fn block(values: usize) -> Vec<u8> {
        let mut b = BlockBuilder::new(4);
        for i in 0..values {
            let key = InternalKey::new(format!("key{i:04}").as_bytes(), 5, ValueKind::Put);
            b.add(key.encoded(), b"a repetitive value, a repetitive value");
        }
        b.finish()
    }

    fn reseal(bytes: &mut [u8]) {
        let crc_at = bytes.len() - CRC_SIZE;
        let crc = popdb_io::crc32(&bytes[..crc_at]);
        bytes[crc_at..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn compressed_block_decodes_to_the_built_block() {
        let raw = block(50);
        let (stored, compressed) =
            BlockCompressor::new(Compression::Zstd { level: 3 }).seal(raw.clone());
        assert!(compressed);
        assert!(stored.len() <= raw.len() - raw.len() / 8);
        assert_eq!(stored[stored.len() - TRAILER_SIZE], COMPRESSION_ZSTD);
        let image = decode_stored(stored.into(), true).unwrap();
        assert_eq!(&image[..], &raw[..], "the image is the uncompressed block");
        Block::decode(&image).unwrap();
    }

    #[test]
    fn incompressible_block_is_stored_raw() {
        let mut b = BlockBuilder::new(16);
        let noise: Vec<u8> = (0..200u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        b.add(InternalKey::new(b"k", 1, ValueKind::Put).encoded(), &noise);
        let raw = b.finish();
        let (stored, compressed) =
            BlockCompressor::new(Compression::Zstd { level: 3 }).seal(raw.clone());
        assert!(!compressed);
        assert_eq!(stored, raw);
        let (stored, compressed) = BlockCompressor::new(Compression::None).seal(block(50));
        assert!(!compressed);
        assert_eq!(stored, block(50));
    }

    #[test]
    fn compressed_tag_refused_before_version_2() {
        let (stored, _) = BlockCompressor::new(Compression::Zstd { level: 1 }).seal(block(50));
        let Err(Error::Corruption(c)) = decode_stored(stored.into(), false) else {
            panic!("tag 1 accepted in a version 1 file");
        };
        assert_eq!(c.kind, CorruptionKind::InvalidTag { tag: 1 });
    }

    #[test]
    fn declared_body_size_is_bounded_and_exact() {
        let (stored, _) = BlockCompressor::new(Compression::Zstd { level: 1 }).seal(block(50));
        let size_at = stored.len() - TRAILER_SIZE - BODY_SIZE_SIZE;
        let body = u32::from_le_bytes(stored[size_at..size_at + 4].try_into().unwrap());
        for bad in [
            0,
            3,
            body - 1,
            body + 1,
            COMPRESSED_BODY_SIZE_MAX as u32 + 1,
            u32::MAX,
        ] {
            let mut forged = stored.clone();
            forged[size_at..size_at + 4].copy_from_slice(&bad.to_le_bytes());
            reseal(&mut forged);
            let Err(Error::Corruption(c)) = decode_stored(forged.into(), true) else {
                panic!("body size {bad} accepted (real {body})");
            };
            assert!(c.what.starts_with("block"), "{c}");
        }
    }

    #[test]
    fn garbage_frame_is_corruption() {
        let mut forged = vec![0xabu8; 40];
        forged.extend_from_slice(&100u32.to_le_bytes());
        forged.push(COMPRESSION_ZSTD);
        forged.extend_from_slice(&[0; 4]);
        reseal(&mut forged);
        let Err(Error::Corruption(c)) = decode_stored(forged.into(), true) else {
            panic!("garbage frame accepted");
        };
        assert_eq!(c.what, "block zstd frame");
    }
}
