//! Key comparison for the binary searches over leaf slots, branch slots and in-memory
//! separators, which compare one key against about log2(n) probes per page. Keys order
//! bytewise; loading the first 16 (or 8) bytes of both keys as big-endian integers and
//! comparing those orders them the same way, in a handful of instructions, where a call to
//! `memcmp` per probe costs several times that for db_bench's 16-byte keys. Keys often
//! share a long prefix (db_bench's zero-padded decimal keys share their first 8 to 10
//! bytes), so a head of 16 bytes decides where one of 8 would not. Nothing is decoded from
//! disk this way: the integers only compare bytes.

use std::cmp::Ordering;

/// `probed.cmp(key)`, bytewise.
#[inline]
#[expect(
    clippy::big_endian_bytes,
    reason = "a big-endian load orders as the bytes do; it compares keys, decodes nothing"
)]
pub(crate) fn compare(probed: &[u8], key: &[u8]) -> Ordering {
    if let (Some((x, probed_rest)), Some((y, rest))) = (
        probed.split_first_chunk::<16>(),
        key.split_first_chunk::<16>(),
    ) {
        let (x, y) = (u128::from_be_bytes(*x), u128::from_be_bytes(*y));
        return if x == y {
            probed_rest.cmp(rest)
        } else {
            x.cmp(&y)
        };
    }
    if let (Some((x, probed_rest)), Some((y, rest))) = (
        probed.split_first_chunk::<8>(),
        key.split_first_chunk::<8>(),
    ) {
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        return if x == y {
            probed_rest.cmp(rest)
        } else {
            x.cmp(&y)
        };
    }
    probed.cmp(key)
}

/// A key prepared for the comparisons of one binary search: its first 16 bytes loaded
/// once, as two big-endian integers, so that a probe loads and swaps only the probed key's
/// (db_bench's keys share their first 8 bytes, so the second integer decides most probes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SearchKey<'k> {
    key: &'k [u8],
    /// The first 16 bytes as two big-endian integers, and the bytes after them; `None` for
    /// a key shorter than 16 bytes, which [`compare`] orders instead.
    head: Option<(u64, u64, &'k [u8])>,
}

impl<'k> SearchKey<'k> {
    /// `key`, prepared.
    #[inline]
    #[expect(
        clippy::big_endian_bytes,
        reason = "a big-endian load orders as the bytes do; it compares keys, decodes nothing"
    )]
    pub(crate) fn new(key: &'k [u8]) -> Self {
        let head = key.split_first_chunk::<16>().map(|(head, rest)| {
            let (high, low) = head.split_at(8);
            let high = u64::from_be_bytes(high.try_into().expect("8 of 16 bytes"));
            let low = u64::from_be_bytes(low.try_into().expect("8 of 16 bytes"));
            (high, low, rest)
        });
        Self { key, head }
    }

    /// `probed.cmp(key)`, bytewise, as [`compare`].
    #[inline]
    #[expect(
        clippy::big_endian_bytes,
        reason = "a big-endian load orders as the bytes do; it compares keys, decodes nothing"
    )]
    pub(crate) fn compare(&self, probed: &[u8]) -> Ordering {
        if let Some((high, low, rest)) = self.head
            && let Some((x, probed_rest)) = probed.split_first_chunk::<16>()
        {
            let (x_high, x_low) = x.split_at(8);
            let x_high = u64::from_be_bytes(x_high.try_into().expect("8 of 16 bytes"));
            if x_high != high {
                return x_high.cmp(&high);
            }
            let x_low = u64::from_be_bytes(x_low.try_into().expect("8 of 16 bytes"));
            if x_low != low {
                return x_low.cmp(&low);
            }
            // Most keys end at 16 bytes: no call to `memcmp` for two empty tails.
            if rest.is_empty() {
                return if probed_rest.is_empty() {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                };
            }
            return probed_rest.cmp(rest);
        }
        compare(probed, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys around the edges of the 8- and 16-byte heads: empty, shorter than, as long as
    /// and longer than each, equal heads with different tails, zero and 0xFF bytes,
    /// prefixes, decimal keys with a shared run of zeros.
    fn edge_keys() -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1],
            vec![1, 0],
            vec![1, 0, 0, 0, 0, 0, 0],
            vec![1, 0, 0, 0, 0, 0, 0, 0],
            vec![1, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![1, 0, 0, 0, 0, 0, 0, 0, 1],
            vec![0xff; 7],
            vec![0xff; 8],
            vec![0xff; 9],
            vec![0xff; 16],
            vec![0xff; 17],
            b"abcdefgh".to_vec(),
            b"abcdefghi".to_vec(),
            b"abcdefgha".to_vec(),
            b"abcdefgh\xff".to_vec(),
            b"abcdefg".to_vec(),
            b"abcdefg\xff".to_vec(),
            b"abcdefg\xff\x00".to_vec(),
            vec![0xff; 15],
            vec![1; 15],
            vec![1; 16],
            b"0000000000123456".to_vec(),
            b"0000000000123457".to_vec(),
            b"000000000012345".to_vec(),
            b"00000000001234560".to_vec(),
            b"0000000000123456\xff".to_vec(),
            b"0000000000123455\xff".to_vec(),
        ];
        let mut extra = Vec::new();
        for key in &keys {
            let mut longer = key.clone();
            longer.push(0);
            extra.push(longer);
            let mut longer = key.clone();
            longer.push(0xff);
            extra.push(longer);
        }
        keys.extend(extra);
        keys
    }

    #[test]
    fn order_edge_keys_matches_bytewise_order() {
        let keys = edge_keys();
        for a in &keys {
            for b in &keys {
                assert_eq!(compare(b, a), b.as_slice().cmp(a), "{b:?} against {a:?}");
                let prepared = SearchKey::new(a);
                assert_eq!(
                    prepared.compare(b),
                    b.as_slice().cmp(a),
                    "{b:?} against {a:?}"
                );
            }
        }
    }

    #[test]
    fn order_random_keys_matches_bytewise_order() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Few distinct byte values and short lengths, so that ties and prefixes are common.
        let mut key = || {
            let len = (next() % 40) as usize;
            (0..len)
                .map(|_| [0, 1, 0xfe, 0xff][(next() % 4) as usize])
                .collect::<Vec<u8>>()
        };
        for _ in 0..20_000 {
            let (a, b) = (key(), key());
            assert_eq!(compare(&b, &a), b.cmp(&a), "{b:?} against {a:?}");
            let prepared = SearchKey::new(&a);
            assert_eq!(prepared.compare(&b), b.cmp(&a), "{b:?} against {a:?}");
        }
    }
}
