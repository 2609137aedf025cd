//! Byte-level helpers shared by the key formats (all integers little-endian).

use super::FssError;
use super::prg::Seed;

/// Bytes holding 2n control-bit corrections: ⌈2n/8⌉.
pub(crate) const fn control_bytes(n_bits: u32) -> usize {
    (2 * n_bits as usize).div_ceil(8)
}

/// Packs the two level-indexed bit sets as bit 2i = left bit i, bit 2i + 1 = right bit i.
pub(crate) fn interleave([left, right]: [u64; 2]) -> u128 {
    (0..64).fold(0, |acc, i| {
        acc | (u128::from((left >> i) & 1) << (2 * i))
            | (u128::from((right >> i) & 1) << (2 * i + 1))
    })
}

/// Inverse of [`interleave`].
pub(crate) fn deinterleave(packed: u128) -> [u64; 2] {
    (0..64).fold([0, 0], |[l, r], i| {
        let bit = |k: u32| ((packed >> k) & 1) as u64;
        [l | (bit(2 * i) << i), r | (bit(2 * i + 1) << i)]
    })
}

/// A cursor over a serialized key; every read fails cleanly on a short input.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    /// Fails unless the whole input is exactly `expected` bytes long.
    pub(crate) fn expect_total(&self, expected: usize) -> Result<(), FssError> {
        match self.bytes.len() == expected {
            true => Ok(()),
            false => Err(FssError::Length {
                expected,
                actual: self.bytes.len(),
            }),
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], FssError> {
        let end = self.pos + len;
        let Some(slice) = self.bytes.get(self.pos..end) else {
            return Err(FssError::Length {
                expected: end,
                actual: self.bytes.len(),
            });
        };
        self.pos = end;
        Ok(slice)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, FssError> {
        Ok(self.take(1)?[0])
    }

    /// A party byte, which must be 0 or 1.
    pub(crate) fn party(&mut self) -> Result<u8, FssError> {
        match self.u8()? {
            p @ (0 | 1) => Ok(p),
            p => Err(FssError::Party(p)),
        }
    }

    pub(crate) fn u64(&mut self) -> Result<u64, FssError> {
        Ok(self.le_uint(8)? as u64)
    }

    /// A 16-byte seed whose control bit (bit 0) must be clear.
    pub(crate) fn seed(&mut self) -> Result<Seed, FssError> {
        let seed = self.le_uint(16)?;
        match seed & 1 {
            0 => Ok(seed),
            _ => Err(FssError::Malformed("seed with its control bit set")),
        }
    }

    /// An unsigned little-endian integer of `len` ≤ 16 bytes.
    pub(crate) fn le_uint(&mut self, len: usize) -> Result<u128, FssError> {
        let mut buf = [0u8; 16];
        buf[..len].copy_from_slice(self.take(len)?);
        Ok(u128::from_le_bytes(buf))
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], FssError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

/// Bytes of a gate batch's header: party (1), input width (1), gate count (8 LE), the
/// party's 32-byte ChaCha12 seed.
pub const BATCH_HEADER_BYTES: usize = 1 + 1 + 8 + 32;

/// The header of a serialized gate batch whose masks and root seeds expand from a seed.
pub(crate) struct BatchHeader {
    pub party: u8,
    pub width: u32,
    pub count: usize,
    pub seed: [u8; 32],
}

impl BatchHeader {
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.party, self.width as u8]);
        out.extend_from_slice(&(self.count as u64).to_le_bytes());
        out.extend_from_slice(&self.seed);
    }

    /// Reads the header and checks the total length against `element_bytes(party, width)`
    /// per gate, which rejects widths the gate does not support.
    pub(crate) fn read(
        r: &mut Reader<'_>,
        element_bytes: impl Fn(u8, u32) -> Result<usize, FssError>,
    ) -> Result<BatchHeader, FssError> {
        let party = r.party()?;
        let width = u32::from(r.u8()?);
        let count = r.u64()?;
        let per = element_bytes(party, width)?;
        let expected = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(per)?.checked_add(BATCH_HEADER_BYTES));
        r.expect_total(expected.unwrap_or(usize::MAX))?;
        let seed = r.array::<32>()?;
        Ok(BatchHeader {
            party,
            width,
            count: count as usize,
            seed,
        })
    }
}
