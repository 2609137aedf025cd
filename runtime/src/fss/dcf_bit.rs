//! Distributed comparison function with a 1-bit, XOR-shared output and early termination.
//!
//! For an n-bit point α (1 ≤ n ≤ 64), [`keygen`] returns keys k0, k1 with
//!
//! ```text
//! eval(0, k0, x) ⊕ eval(1, k1, x) = [x < α]      (x and α as n-bit unsigned)
//! ```
//!
//! ## Construction (a DPF read as a comparison; the 1-bit DCF of SIGMA, ePrint 2023/1269)
//! The key *is* a 1-bit DPF key for the point α with β = 1 ([`super::dpf`], ℓ = 1, ν = 7
//! levels terminated early). On α's path the two parties' corrected control bits differ
//! (their XOR is 1); on every other node they are equal. The evaluator walking x's path
//! also expands the sibling at each level: when x_i = 0, the right sibling x_{<i}‖1 lies on
//! α's path exactly when α and x first differ at bit i with α_i = 1, i.e. x < α decided at
//! level i. At most one level can decide, so
//!
//! ```text
//! [x < α] = ⊕_{i < n−ν, x_i = 0} t(x_{<i}‖1)  ⊕  ⊕_{j > x mod 2^ν} leaf(x >> ν)[j]
//! ```
//!
//! where the leaf term is the DPF's packed output block at x's leaf: on α's path it is an
//! XOR sharing of the unit vector at α mod 2^ν, off it the two parties' blocks are equal.
//! Every term is an XOR share, so the sum is too. No per-level value correction is needed,
//! which is what the arithmetic-payload DCF of [`super::dcf`] pays 64 bits per level for.
//!
//! ## Key size
//! [`DcfBitKey::byte_len`] = [`DpfKey::byte_len`] with ℓ = 1; the correction words
//! ([`DcfBitKey::correction_bytes`]) are, for n ≥ 7,
//!
//! ```text
//! 16(n − 7) + ⌈2(n − 7)/8⌉ + 16 bytes  ≈ (n − 7)(λ + 2) + λ bits
//! ```
//!
//! plus the λ-bit root seed: SIGMA's (n − 7)(λ + 2) + 2λ. Measured against the Z_2^64-payload
//! DCF of [`super::dcf`] (correction words only, bytes per key; the root seed is expanded
//! from a party seed in both gates, so it is not sent):
//!
//! | n  | [`super::dcf`] 24n + ⌈2n/8⌉ + 8 | this module | ratio |
//! |----|------|-----|------|
//! | 63 | 1536 | 926 | 0.60 |
//! | 32 |  784 | 423 | 0.54 |
//! | 24 |  590 | 293 | 0.50 |
//! | 16 |  396 | 163 | 0.41 |
//!
//! The price is the output: an XOR share of one bit instead of an arithmetic share in
//! Z_2^64; [`super::drelu_bit`] converts it with one more opened bit.
//!
//! ## Cost
//! Eval: two AES blocks per tree level (both children) plus one leaf block, 2(n − ν) + 1
//! blocks per point, against 2n for [`super::dcf`]. Online use: see [`super::drelu_bit`].

use std::fmt;

use rand::CryptoRng;

use super::FssError;
use super::codec::Reader;
use super::dpf::{self, DpfCorrections, DpfKey, DpfShape, PathEnd};
use super::low_mask;
use super::prg::Seed;

/// One party's 1-bit DCF key: a 1-bit DPF key at α.
#[derive(Clone, PartialEq, Eq)]
pub struct DcfBitKey(DpfKey);

/// The DPF shape of an n-bit comparison: ℓ = 1.
///
/// # Panics
/// If `n_bits` is not in 1..=64.
pub fn shape(n_bits: u32) -> DpfShape {
    DpfShape::new(n_bits, 1).unwrap_or_else(|e| panic!("{e}"))
}

/// Generates a key pair for x ↦ \[x < α\] over n-bit inputs (α is reduced mod 2^n).
///
/// # Panics
/// If `n_bits` is not in 1..=64.
pub fn keygen<R: CryptoRng + ?Sized>(
    alpha: u64,
    n_bits: u32,
    rng: &mut R,
) -> (DcfBitKey, DcfBitKey) {
    let (k0, k1) = dpf::keygen(alpha, shape(n_bits), 1, rng);
    (DcfBitKey(k0), DcfBitKey(k1))
}

/// A key pair from given root seeds.
pub(crate) fn keygen_from_roots(
    roots: [Seed; 2],
    alpha: u64,
    n_bits: u32,
) -> (DcfBitKey, DcfBitKey) {
    let (k0, k1) = dpf::keygen_from_roots(roots, shape(n_bits), alpha, 1);
    (DcfBitKey(k0), DcfBitKey(k1))
}

/// This party's XOR share of \[x < α\]; only the low n bits of `x` are read.
///
/// # Panics
/// If `party` is not the key's party.
pub fn eval(party: u8, key: &DcfBitKey, x: u64) -> bool {
    eval_batch(party, std::slice::from_ref(key), &[x])[0]
}

/// Evaluates `keys[i]` at `xs[i]` for every i (eight keys in lock-step).
///
/// # Panics
/// If the slices differ in length or a key belongs to the other party.
pub fn eval_batch(party: u8, keys: &[DcfBitKey], xs: &[u64]) -> Vec<bool> {
    let dpf_keys: Vec<&DpfKey> = keys.iter().map(|k| &k.0).collect();
    let ends = dpf::walk_batch(party, &dpf_keys, xs);
    ends.iter()
        .zip(keys)
        .zip(xs)
        .map(|((end, key), &x)| share_of_less(key, end, x))
        .collect()
}

/// The XOR of the deciding siblings (where x_i = 0) and the leaf slots above x mod 2^ν.
fn share_of_less(key: &DcfBitKey, end: &PathEnd, x: u64) -> bool {
    let shape = key.0.shape();
    let nu = shape.early_levels();
    let depth = shape.tree_levels();
    let top = (x & low_mask(shape.n_bits)) >> nu;
    let zeros = !top & mask_u64(depth);
    let block = key.0.correction_words().leaf_block(end);
    let above = slots_above((x as u32) & ((1 << nu) - 1), shape.slots());
    ((end.siblings & zeros).count_ones() + (block & above).count_ones()) % 2 == 1
}

/// The low `bits` bits set (0 ≤ bits ≤ 64).
fn mask_u64(bits: u32) -> u64 {
    if bits == 0 { 0 } else { low_mask(bits) }
}

/// Bits j with x_lo < j < slots.
fn slots_above(x_lo: u32, slots: usize) -> u128 {
    let all = u128::MAX >> (128 - slots);
    u128::MAX.checked_shl(x_lo + 1).unwrap_or(0) & all
}

impl DcfBitKey {
    /// Serialized size of an n-bit key: [`DpfKey::byte_len`] with ℓ = 1.
    pub const fn byte_len(n_bits: u32) -> usize {
        DpfKey::byte_len(DpfShape {
            n_bits,
            out_bits: 1,
        })
    }

    /// Bytes of the correction words alone (what a dealer sends when the root seed is
    /// expanded from a party seed): 16(n − ν) + ⌈2(n − ν)/8⌉ + ⌈2^ν/8⌉, ν = min(n, 7).
    pub const fn correction_bytes(n_bits: u32) -> usize {
        DpfCorrections::byte_len(DpfShape {
            n_bits,
            out_bits: 1,
        })
    }

    /// The party (0 or 1) this key belongs to.
    pub fn party(&self) -> u8 {
        self.0.party()
    }

    /// Input width n of the comparison.
    pub fn n_bits(&self) -> u32 {
        self.0.shape().n_bits
    }

    /// The shared correction words.
    pub fn correction_words(&self) -> &DpfCorrections {
        self.0.correction_words()
    }

    /// A key from a root seed (expanded elsewhere) and received correction words.
    pub(crate) fn from_parts(party: u8, seed: Seed, cw: DpfCorrections) -> DcfBitKey {
        DcfBitKey(DpfKey::from_parts(party, seed, cw))
    }

    /// Reads correction words of an n-bit comparison (the caller checked the length).
    pub(crate) fn read_corrections(
        n_bits: u32,
        r: &mut Reader<'_>,
    ) -> Result<DpfCorrections, FssError> {
        DpfCorrections::read(shape(n_bits), r)
    }

    /// Serializes as a [`DpfKey`] (ℓ = 1).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }

    /// Parses [`DcfBitKey::to_bytes`] output; a DPF key with ℓ ≠ 1 is rejected.
    pub fn from_bytes(bytes: &[u8]) -> Result<DcfBitKey, FssError> {
        let key = DpfKey::from_bytes(bytes)?;
        match key.shape().out_bits {
            1 => Ok(DcfBitKey(key)),
            l => Err(FssError::OutputWidth(l)),
        }
    }
}

impl fmt::Debug for DcfBitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DcfBitKey")
            .field("party", &self.party())
            .field("n_bits", &self.n_bits())
            .finish_non_exhaustive()
    }
}
