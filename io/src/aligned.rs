//! Heap buffers aligned for direct I/O, built without `unsafe`: the allocation is padded
//! and the aligned window inside it is found by address arithmetic.

/// A zero-initialised byte buffer whose start is aligned to `align` bytes.
#[derive(Debug)]
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `len` zero bytes starting at a multiple of `align`.
    ///
    /// # Panics
    /// If `align` is not a power of two.
    pub fn zeroed(len: usize, align: usize) -> Self {
        assert!(
            align.is_power_of_two(),
            "alignment {align} is not a power of two"
        );
        let storage = vec![0u8; len + align];
        let address = storage.as_ptr() as usize;
        let start = address.next_multiple_of(align) - address;
        assert!(start + len <= storage.len(), "aligned window out of bounds");
        Self {
            storage,
            start,
            len,
        }
    }

    /// The buffer's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The aligned bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// The aligned bytes, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buf_start_is_aligned_and_zeroed() {
        for align in [1, 512, 4096] {
            let mut buf = AlignedBuf::zeroed(10_000, align);
            assert_eq!(buf.as_slice().as_ptr() as usize % align, 0);
            assert_eq!(buf.len(), 10_000);
            assert!(buf.as_slice().iter().all(|&b| b == 0));
            buf.as_mut_slice()[9_999] = 7;
            assert_eq!(buf.as_slice()[9_999], 7);
        }
    }
}
