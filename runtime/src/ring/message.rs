//! Protocol messages as bytes: `u64`s packed little-endian ([`pack`], [`unpack`]), values
//! of a fixed width packed bit after bit ([`pack_bits`], [`unpack_bits`]), and the error of
//! a peer message of the wrong size ([`MessageError`]).

use super::bits::{BitReader, BitWriter};

/// Packs a message as little-endian `u64`s: 8 bytes per element, no header.
pub fn pack(msg: &[u64]) -> Vec<u8> {
    msg.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The inverse of [`pack`].
///
/// # Errors
/// If the byte count is not a multiple of 8.
pub fn unpack(bytes: &[u8]) -> Result<Vec<u64>, MessageError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(MessageError::Length {
            expected: bytes.len().next_multiple_of(8),
            actual: bytes.len(),
        });
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

/// Bytes of `n` values of `bits` bits packed by [`pack_bits`]: ⌈n·bits/8⌉.
pub const fn packed_len(n: usize, bits: u32) -> usize {
    (n * bits as usize).div_ceil(8)
}

/// Packs the low `bits` bits (1..=64) of every value, least-significant bit first, value
/// after value with no padding between them (only the last byte is padded with zeros):
/// [`packed_len`] bytes. At 64 bits this is [`pack`].
///
/// # Panics
/// If `bits` is not in 1..=64.
pub fn pack_bits(msg: &[u64], bits: u32) -> Vec<u8> {
    assert!(
        (1..=64).contains(&bits),
        "a packed width is 1..=64 bits, got {bits}"
    );
    let mut w = BitWriter::with_capacity(packed_len(msg.len(), bits));
    for &v in msg {
        w.push(v, bits);
    }
    w.finish()
}

/// The inverse of [`pack_bits`] for `n` values: each below 2^`bits`.
///
/// # Errors
/// If `bytes` is not [`packed_len`] bytes long, or the padding bits are not zero.
///
/// # Panics
/// If `bits` is not in 1..=64.
pub fn unpack_bits(bytes: &[u8], n: usize, bits: u32) -> Result<Vec<u64>, MessageError> {
    assert!(
        (1..=64).contains(&bits),
        "a packed width is 1..=64 bits, got {bits}"
    );
    let expected = packed_len(n, bits);
    let padding = (expected * 8 - n * bits as usize) as u32;
    let last_clean = bytes
        .last()
        .is_none_or(|&b| padding == 0 || b >> (8 - padding) == 0);
    if bytes.len() != expected || !last_clean {
        return Err(MessageError::Length {
            expected,
            actual: bytes.len(),
        });
    }
    let mut r = BitReader::new(bytes);
    Ok((0..n).map(|_| r.pull(bits)).collect())
}

/// A peer's message does not have the size the protocol expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Wrong length.
    #[error("protocol message: expected {expected} bytes, got {actual}")]
    Length {
        /// Bytes expected.
        expected: usize,
        /// Bytes received.
        actual: usize,
    },
}

/// Checks that `msg` has `n` elements: a wrong-sized peer message is a protocol error
/// (parties out of step), reported rather than silently misread.
pub(crate) fn check_len(msg: &[u64], n: usize) -> Result<(), MessageError> {
    if msg.len() == n {
        Ok(())
    } else {
        Err(MessageError::Length {
            expected: 8 * n,
            actual: 8 * msg.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_values_round_trip_at_every_width() {
        let values: Vec<u64> = (0..13u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i << 60))
            .collect();
        for bits in 1..=64 {
            let mask = if bits == 64 {
                u64::MAX
            } else {
                (1 << bits) - 1
            };
            let low: Vec<u64> = values.iter().map(|v| v & mask).collect();
            let bytes = pack_bits(&values, bits);
            assert_eq!(bytes.len(), (13 * bits as usize).div_ceil(8), "{bits} bits");
            assert_eq!(bytes.len(), packed_len(13, bits));
            assert_eq!(unpack_bits(&bytes, 13, bits).unwrap(), low, "{bits} bits");
            assert!(unpack_bits(&bytes[1..], 13, bits).is_err());
        }
    }

    #[test]
    fn sixty_four_bits_is_the_plain_packing() {
        let values = [0, 1, u64::MAX, 0x0123_4567_89ab_cdef];
        assert_eq!(pack_bits(&values, 64), pack(&values));
        assert_eq!(pack_bits(&[], 20), Vec::<u8>::new());
    }

    #[test]
    fn bits_run_across_bytes_least_significant_first() {
        // 0b101, then 0b011, then 0b111: byte 0 = 0b11_011_101, bit 8 (the last 1) in byte 1
        assert_eq!(pack_bits(&[0b101, 0b011, 0b111], 3), [0b1101_1101, 0b1]);
        assert_eq!(packed_len(3, 3), 2);
        let mut dirty = pack_bits(&[0b101, 0b011, 0b111], 3);
        dirty[1] |= 0b10;
        assert!(
            unpack_bits(&dirty, 3, 3).is_err(),
            "padding bits must be zero"
        );
    }
}
