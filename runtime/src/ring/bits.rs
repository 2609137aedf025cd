//! Bit-level helpers for XOR-shared words ([`crate::protocols::xor`]): lane masks, compaction of the
//! even lanes of a word, and the packing of boolean messages and corrections.
//!
//! **Packing.** A boolean message (or a dealer correction) holds, per element, a few
//! fields of `w_k` bits each. They are written least-significant bit first, field after
//! field, and each element is padded to whole bytes: an element takes `⌈Σ w_k / 8⌉` bytes,
//! so `n` elements take `n · ⌈Σ w_k / 8⌉` bytes, a polynomial in the sizes that the cost
//! model states exactly (packing across elements would save the padding but give
//! `⌈n·Σ w_k / 8⌉`, which is not one). Fields are at most 64 bits.

use super::message::MessageError;

/// A word with the low `bits` lanes set.
pub(crate) const fn low(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Bytes per element of a record with fields of `widths` bits.
pub(crate) const fn bytes_per_element(widths: &[u32]) -> usize {
    let mut total = 0;
    let mut k = 0;
    while k < widths.len() {
        total += widths[k];
        k += 1;
    }
    total.div_ceil(8) as usize
}

/// The even lanes (0, 2, 4, …) of `x`, compacted into lanes 0..32 (a software `pext` with
/// mask `0x5555…`).
pub(crate) fn even_lanes(mut x: u64) -> u64 {
    x &= 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0f0f_0f0f_0f0f_0f0f;
    x = (x | (x >> 4)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x >> 8)) & 0x0000_ffff_0000_ffff;
    (x | (x >> 16)) & 0x0000_0000_ffff_ffff
}

/// Writes fields least-significant bit first, element by element.
#[derive(Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    acc: u128,
    len: u32,
}

impl BitWriter {
    /// A writer with room for `bytes` bytes.
    pub(crate) fn with_capacity(bytes: usize) -> BitWriter {
        BitWriter {
            bytes: Vec::with_capacity(bytes),
            ..BitWriter::default()
        }
    }

    /// Appends the low `bits` bits of `v` (`bits ≤ 64`).
    pub(crate) fn push(&mut self, v: u64, bits: u32) {
        debug_assert!(bits <= 64);
        self.acc |= u128::from(v & low(bits)) << self.len;
        self.len += bits;
        while self.len >= 8 {
            self.bytes.push(self.acc as u8);
            self.acc >>= 8;
            self.len -= 8;
        }
    }

    /// Ends an element: pads to a whole byte with zeros.
    pub(crate) fn end_element(&mut self) {
        if self.len > 0 {
            self.bytes.push(self.acc as u8);
            self.acc = 0;
            self.len = 0;
        }
    }

    /// The bytes written.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.end_element();
        self.bytes
    }
}

/// Reads what a [`BitWriter`] wrote, given the same field widths.
pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    at: usize,
    acc: u128,
    len: u32,
}

impl<'a> BitReader<'a> {
    /// A reader over `bytes`, which the caller checked to hold every element.
    pub(crate) fn new(bytes: &'a [u8]) -> BitReader<'a> {
        BitReader {
            bytes,
            at: 0,
            acc: 0,
            len: 0,
        }
    }

    /// The next `bits` bits (`bits ≤ 64`).
    ///
    /// # Panics
    /// If the bytes end first (the caller checks the length).
    pub(crate) fn pull(&mut self, bits: u32) -> u64 {
        while self.len < bits {
            self.acc |= u128::from(self.bytes[self.at]) << self.len;
            self.at += 1;
            self.len += 8;
        }
        let v = (self.acc as u64) & low(bits);
        self.acc >>= bits;
        self.len -= bits;
        v
    }

    /// Ends an element: skips its padding.
    pub(crate) fn end_element(&mut self) {
        self.acc = 0;
        self.len = 0;
    }
}

/// Packs `n` records whose field `k` is `fields[k].0[i]` (its low `fields[k].1` bits).
pub(crate) fn pack(n: usize, fields: &[(&[u64], u32)]) -> Vec<u8> {
    let widths: Vec<u32> = fields.iter().map(|f| f.1).collect();
    let mut w = BitWriter::with_capacity(n * bytes_per_element(&widths));
    for i in 0..n {
        for (f, bits) in fields {
            w.push(f[i], *bits);
        }
        w.end_element();
    }
    w.finish()
}

/// Unpacks `n` records of fields `widths`: one vector per field.
///
/// # Errors
/// If `bytes` is not exactly `n` records long.
pub(crate) fn unpack(
    bytes: &[u8],
    n: usize,
    widths: &[u32],
) -> Result<Vec<Vec<u64>>, MessageError> {
    let expected = n * bytes_per_element(widths);
    if bytes.len() != expected {
        return Err(MessageError::Length {
            expected,
            actual: bytes.len(),
        });
    }
    let mut out: Vec<Vec<u64>> = widths.iter().map(|_| Vec::with_capacity(n)).collect();
    let mut r = BitReader::new(bytes);
    for _ in 0..n {
        for (f, bits) in out.iter_mut().zip(widths) {
            f.push(r.pull(*bits));
        }
        r.end_element();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_per_element_padding() {
        let a = [u64::MAX, 0, 0x1234_5678_9abc_def0];
        let b = [1, 0, 1];
        let c = [0x7fff, 3, 0];
        let bytes = pack(3, &[(&a, 63), (&b, 1), (&c, 15)]);
        assert_eq!(bytes.len(), 3 * 10, "79 bits → 10 bytes per element");
        let out = unpack(&bytes, 3, &[63, 1, 15]).unwrap();
        assert_eq!(out[0], a.map(|v| v & low(63)));
        assert_eq!(out[1], b);
        assert_eq!(out[2], c);
        assert!(unpack(&bytes[1..], 3, &[63, 1, 15]).is_err());
        assert_eq!(pack(4, &[(&[1, 0, 1, 1], 1)]), [1, 0, 1, 1]);
    }

    #[test]
    fn even_lanes_compacts_like_a_bit_loop() {
        for x in [
            0u64,
            u64::MAX,
            0xdead_beef_0123_4567,
            1 << 62,
            0xaaaa_aaaa_aaaa_aaaa,
        ] {
            let slow = (0..32).fold(0, |acc, k| acc | (((x >> (2 * k)) & 1) << k));
            assert_eq!(even_lanes(x), slow, "{x:#x}");
        }
    }
}
