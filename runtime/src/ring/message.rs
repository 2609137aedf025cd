//! Protocol messages as bytes: `u64`s packed little-endian ([`pack`], [`unpack`]), and the
//! error of a peer message of the wrong size ([`MessageError`]).

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
