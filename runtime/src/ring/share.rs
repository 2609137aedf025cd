//! What every layer above the ring names: the parties ([`PartyId`]) and one party's share
//! of a tensor, additive ([`Share`]) or XOR ([`XorShare`]). A share's `Debug` shows its
//! shape only.

use std::fmt;

use ndarray::ArrayD;

/// A party's index: 0 (the server, which holds the weights) or 1 (the client).
pub type PartyId = u8;

/// One party's additive share of a tensor over Z_2^64. Its `Debug` shows the shape only.
#[derive(Clone, PartialEq, Eq)]
pub struct Share(pub ArrayD<u64>);

impl Share {
    /// The share's shape.
    pub fn shape(&self) -> &[usize] {
        self.0.shape()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The elements in row-major order.
    pub fn to_flat(&self) -> Vec<u64> {
        self.0.iter().copied().collect()
    }
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Share([..] shape {:?})", self.shape())
    }
}

/// One party's XOR share of a tensor of boolean words. Its `Debug` shows the shape only.
#[derive(Clone, PartialEq, Eq)]
pub struct XorShare(pub ArrayD<u64>);

impl XorShare {
    /// The share's shape.
    pub fn shape(&self) -> &[usize] {
        self.0.shape()
    }

    /// Number of elements (words).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The words in row-major order.
    pub fn to_flat(&self) -> Vec<u64> {
        self.0.iter().copied().collect()
    }
}

impl fmt::Debug for XorShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XorShare([..] shape {:?})", self.shape())
    }
}

/// Panics unless `party` is 0 or 1: a wrong index is a caller bug.
pub(crate) fn check_party(party: PartyId) {
    assert!(party <= 1, "party must be 0 or 1, got {party}");
}
