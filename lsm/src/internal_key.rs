//! The internal key: a user key stamped with the LSN that wrote it and what the write was.
//!
//! Every layer of the tree (memtable, blocks, SSTs, merges) sorts entries by the same
//! order: user key ascending (bytewise), then LSN descending, so that the newest version of
//! a key comes first and a read view at LSN `v` finds its answer at the first entry whose
//! LSN is at or below `v`.
//!
//! Encoding (little-endian, as every PopDB format): the user key's bytes, then an 8-byte
//! trailer `lsn << 8 | kind`. LSNs therefore stay below 2^56 ([`LSN_MAX`]).

use std::cmp::Ordering;

/// The kind tag of a delete (a tombstone).
pub const KIND_DELETE: u8 = 0;
/// The kind tag of a put.
pub const KIND_PUT: u8 = 1;
/// The largest LSN an internal key can carry.
pub const LSN_MAX: u64 = (1 << 56) - 1;
const TRAILER_SIZE: usize = 8;

/// What a write did to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// The key was deleted at this LSN.
    Delete,
    /// The key was given a value at this LSN.
    Put,
}

impl ValueKind {
    /// The on-disk tag.
    pub fn tag(self) -> u8 {
        match self {
            ValueKind::Delete => KIND_DELETE,
            ValueKind::Put => KIND_PUT,
        }
    }

    /// The kind of an on-disk tag, if known.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            KIND_DELETE => Some(ValueKind::Delete),
            KIND_PUT => Some(ValueKind::Put),
            _ => None,
        }
    }
}

/// An encoded internal key: user key bytes, then the trailer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InternalKey(Vec<u8>);

impl InternalKey {
    /// Encodes `user_key` written at `lsn` with `kind`.
    ///
    /// # Panics
    /// If `lsn` exceeds [`LSN_MAX`]: the caller (the Db) never hands out such LSNs.
    pub fn new(user_key: &[u8], lsn: u64, kind: ValueKind) -> Self {
        assert!(
            lsn <= LSN_MAX,
            "LSN {lsn} exceeds the internal key's maximum {LSN_MAX}"
        );
        let mut bytes = Vec::with_capacity(user_key.len() + TRAILER_SIZE);
        bytes.extend_from_slice(user_key);
        bytes.extend_from_slice(&(lsn << 8 | u64::from(kind.tag())).to_le_bytes());
        Self(bytes)
    }

    /// The key that sorts first among all versions of `user_key` visible at `lsn`: seeking to
    /// it finds the newest version at or below `lsn`.
    pub fn seek_key(user_key: &[u8], lsn: u64) -> Self {
        Self::new(user_key, lsn.min(LSN_MAX), ValueKind::Put)
    }

    /// Wraps encoded bytes after checking they hold a trailer with a known kind.
    pub fn from_encoded(bytes: Vec<u8>) -> Option<Self> {
        decode(&bytes)?;
        Some(Self(bytes))
    }

    /// The encoded bytes.
    pub fn encoded(&self) -> &[u8] {
        &self.0
    }

    /// The user key.
    pub fn user_key(&self) -> &[u8] {
        &self.0[..self.0.len() - TRAILER_SIZE]
    }

    /// The LSN that wrote this version.
    pub fn lsn(&self) -> u64 {
        trailer(&self.0) >> 8
    }

    /// What the write did.
    pub fn kind(&self) -> ValueKind {
        ValueKind::from_tag(trailer(&self.0) as u8).expect("kind checked at construction")
    }
}

impl Ord for InternalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_internal(&self.0, &other.0)
    }
}

impl PartialOrd for InternalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Writes the encoded seek key of `user_key` at `lsn` into `out` (cleared first): the key
/// that sorts first among the versions of `user_key` visible at `lsn`.
pub(crate) fn encode_seek_key(out: &mut Vec<u8>, user_key: &[u8], lsn: u64) {
    let lsn = lsn.min(LSN_MAX);
    out.clear();
    out.extend_from_slice(user_key);
    out.extend_from_slice(&(lsn << 8 | u64::from(KIND_PUT)).to_le_bytes());
}

/// Orders two encoded internal keys: user key ascending, then LSN descending, then kind
/// descending (a put before a delete at one LSN, which one batch never writes).
///
/// Requires: both are at least 8 bytes (a trailer); shorter input sorts by its bytes, so a
/// corrupt key cannot panic the comparison.
pub fn compare_internal(a: &[u8], b: &[u8]) -> Ordering {
    if a.len() < TRAILER_SIZE || b.len() < TRAILER_SIZE {
        return a.cmp(b);
    }
    let (a_user, a_trailer) = a.split_at(a.len() - TRAILER_SIZE);
    let (b_user, b_trailer) = b.split_at(b.len() - TRAILER_SIZE);
    a_user
        .cmp(b_user)
        .then_with(|| trailer_of(b_trailer).cmp(&trailer_of(a_trailer)))
}

/// Chunks of 8 bytes [`compare_user_keys`] compares inline before it hands the rest to
/// `memcmp`, which is faster than a loop of loads only for long runs of equal bytes.
const COMPARE_HEAD_CHUNKS: usize = 4;

/// Orders two user keys bytewise, exactly as `a.cmp(b)`.
///
/// Keys are mostly short, and for them a call to `memcmp` costs several times a pair of
/// 8-byte loads. Loading 8 bytes of each key as a big-endian integer and comparing those
/// orders them as their bytes do, so the head of the keys is compared that way, 8 bytes at a
/// time; a short tail goes byte by byte. The memtable uses it where the 16-byte heads of its
/// search probes do not decide (`skiplist::Probe`).
#[inline]
#[expect(
    clippy::big_endian_bytes,
    reason = "a big-endian load orders as the bytes do; it compares keys, decodes nothing"
)]
pub(crate) fn compare_user_keys(a: &[u8], b: &[u8]) -> Ordering {
    let (mut a, mut b) = (a, b);
    for _ in 0..COMPARE_HEAD_CHUNKS {
        let (Some((x, a_rest)), Some((y, b_rest))) =
            (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
        else {
            return compare_short(a, b);
        };
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return x.cmp(&y);
        }
        (a, b) = (a_rest, b_rest);
    }
    a.cmp(b)
}

/// `a.cmp(b)` where one of them is under 8 bytes long: at most 7 byte comparisons.
fn compare_short(a: &[u8], b: &[u8]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// Decodes an encoded internal key into (user key, LSN, kind), if well formed.
pub(crate) fn decode(bytes: &[u8]) -> Option<(&[u8], u64, ValueKind)> {
    let split = bytes.len().checked_sub(TRAILER_SIZE)?;
    let (user, raw) = bytes.split_at(split);
    let t = trailer_of(raw);
    Some((user, t >> 8, ValueKind::from_tag(t as u8)?))
}

fn trailer(bytes: &[u8]) -> u64 {
    trailer_of(&bytes[bytes.len() - TRAILER_SIZE..])
}

fn trailer_of(raw: &[u8]) -> u64 {
    u64::from_le_bytes(raw.try_into().expect("trailer is 8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn internal_key_round_trips_fields() {
        let k = InternalKey::new(b"user", 42, ValueKind::Delete);
        assert_eq!(k.user_key(), b"user");
        assert_eq!(k.lsn(), 42);
        assert_eq!(k.kind(), ValueKind::Delete);
        assert_eq!(InternalKey::from_encoded(k.encoded().to_vec()), Some(k));
        assert_eq!(InternalKey::from_encoded(vec![1, 2, 3]), None);
        let mut bad_kind = InternalKey::new(b"", 1, ValueKind::Put).encoded().to_vec();
        bad_kind[0] = 7;
        assert_eq!(InternalKey::from_encoded(bad_kind), None);
    }

    #[test]
    fn internal_key_orders_newest_version_first() {
        let old = InternalKey::new(b"a", 5, ValueKind::Put);
        let new = InternalKey::new(b"a", 9, ValueKind::Delete);
        let longer = InternalKey::new(b"ab", 1, ValueKind::Put);
        assert!(new < old, "a newer version sorts first");
        assert!(
            old < longer,
            "user key order comes first, even for a prefix"
        );
        // A seek key at view 7 lands after LSN 9 and at or before LSN 5.
        let seek = InternalKey::seek_key(b"a", 7);
        assert!(new < seek && seek <= old);
    }

    #[test]
    #[should_panic(expected = "exceeds the internal key's maximum")]
    fn internal_key_lsn_above_max_panics() {
        let _ = InternalKey::new(b"k", LSN_MAX + 1, ValueKind::Put);
    }

    /// Keys around the 8-byte chunks and the inline head: empty, shorter than, as long as
    /// and longer than a chunk, equal heads with different tails, 0 and 0xFF bytes, prefixes.
    #[test]
    fn compare_user_keys_matches_bytewise_order_on_edges() {
        let mut keys: Vec<Vec<u8>> = vec![vec![], vec![0], vec![0, 0], vec![1], vec![0xff]];
        for len in [7, 8, 9, 15, 16, 17, 31, 32, 33, 40, 41] {
            for fill in [0u8, 1, 0xff] {
                let base = vec![fill; len];
                keys.push(base.clone());
                for at in [0, len / 2, len - 1] {
                    for byte in [0u8, 2, 0x7f, 0x80, 0xfe] {
                        let mut k = base.clone();
                        k[at] = byte;
                        keys.push(k);
                    }
                }
            }
        }
        keys.push(b"key:000000012345".to_vec());
        keys.push(b"key:000000012346".to_vec());
        keys.push(b"key:00000001234".to_vec());
        for a in &keys {
            for b in &keys {
                assert_eq!(compare_user_keys(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    proptest! {
        #[test]
        fn compare_user_keys_matches_bytewise_order(
            head in proptest::collection::vec(0..3u8, 0..40),
            a in proptest::collection::vec(0..3u8, 0..12),
            b in proptest::collection::vec(0..3u8, 0..12),
        ) {
            let a = [head.as_slice(), &a].concat();
            let b = [head.as_slice(), &b].concat();
            prop_assert_eq!(compare_user_keys(&a, &b), a.cmp(&b));
            prop_assert_eq!(compare_user_keys(&b, &a), b.cmp(&a));
        }

        #[test]
        fn internal_key_order_matches_tuple_order(
            a in proptest::collection::vec(any::<u8>(), 0..6),
            b in proptest::collection::vec(any::<u8>(), 0..6),
            la in 0..LSN_MAX, lb in 0..LSN_MAX, ka in 0..2u8, kb in 0..2u8,
        ) {
            let ka = ValueKind::from_tag(ka).unwrap();
            let kb = ValueKind::from_tag(kb).unwrap();
            let x = InternalKey::new(&a, la, ka);
            let y = InternalKey::new(&b, lb, kb);
            let expected = a.cmp(&b)
                .then(lb.cmp(&la))
                .then(kb.tag().cmp(&ka.tag()));
            prop_assert_eq!(x.cmp(&y), expected);
        }
    }
}
