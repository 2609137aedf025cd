//! The one-round lookup-table gate: arithmetic shares in Z_2^64 of T\[x\] for a public table
//! T of 2^n entries and a secret x ∈ Z_2^n (1 ≤ n ≤ [`LUT_MAX_BITS`]).
//!
//! ## Protocol (the Z_2^64-payload DPF table lookup of Pika, ePrint 2022/1284, and SIGMA,
//! ePrint 2023/1269)
//! Offline, the dealer draws a 32-byte ChaCha12 seed per party; party b expands from it, per
//! gate, a DPF root seed and a mask share r_b ∈ Z_2^n. With r = r_0 + r_1 mod 2^n the dealer
//! generates a DPF with payload β = 1 in Z_2^64 ([`super::dpf`], ℓ = 64) at r, whose outputs
//! d_b(j) are arithmetic shares of \[j = r\]: d_0(j) + d_1(j) = \[j = r\] mod 2^64. Unlike
//! the 1-bit DPF of [`super`], no sign is left to remove.
//!
//! 1. Round 1, [`lut1_online_message`]: party b sends x_b + r_b mod 2^n (n bits); both get
//!    x̂ = x + r mod 2^n.
//! 2. [`lut1_finish`] (local): party b evaluates its DPF on the whole domain and outputs
//!    z_b = Σ_j d_b(j)·T\[(x̂ − j) mod 2^n\]; then z_0 + z_1 = T\[x̂ − r\] = T\[x\].
//!
//! Each party sees only its key (pseudorandom) and x̂ (uniform, as r is), and its output
//! share is pseudorandom.
//!
//! ## Sizes
//! Key per gate and party: the DPF(n, ℓ = 64) correction words, ν = 1 early-terminated level
//! (two 64-bit slots per leaf block), [`LutOneRoundKey::element_bytes`] =
//! 16(n − 1) + ⌈2(n − 1)/8⌉ + 16 bytes — n = 8: 130 B, n = 13: 211 B (against 41 B and
//! 122 B for the two-round gate); plus [`super::BATCH_HEADER_BYTES`] per batch. Online:
//! **1 round**, n bits per party and gate (2n in total, against 2n + 128 in two rounds).
//! Local work per gate: EvalAll of the ℓ = 64 DPF (3·2^(n−1) − 2 AES blocks, against
//! ≈ 3·2^(n−7) for ℓ = 1) and 2^n multiply-adds.

use std::fmt;

use rand::{CryptoRng, Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::super::codec::{BATCH_HEADER_BYTES, BatchHeader, Reader};
use super::super::dcf::random_root;
use super::super::dpf::{self, DpfCorrections, DpfKey, DpfShape, FullDomainScratch};
use super::super::drelu::{PartySeed, random_party_seed};
use super::super::prg::Seed;
use super::super::{FssError, check_batch, low_mask, masked_message};
use super::LUT_MAX_BITS;

/// The DPF output width: the payload lives in Z_2^64.
const OUT_BITS: u32 = 64;

/// One party's key material for a batch of one-round table lookups on n-bit inputs.
#[derive(Clone, PartialEq, Eq)]
pub struct LutOneRoundKey {
    party: u8,
    n_bits: u32,
    seed: PartySeed,
    /// r_b per gate, in Z_2^n.
    masks: Vec<u64>,
    dpf: Vec<DpfKey>,
}

/// Dealer: keys for `count` one-round lookups on `n_bits`-bit inputs, one per party.
///
/// # Panics
/// If `n_bits` is not in 1..=[`LUT_MAX_BITS`].
pub fn lut1_offline<R: CryptoRng + ?Sized>(
    n_bits: u32,
    count: usize,
    rng: &mut R,
) -> (LutOneRoundKey, LutOneRoundKey) {
    let shape = shape(n_bits).unwrap_or_else(|e| panic!("{e}"));
    let seeds = [random_party_seed(rng), random_party_seed(rng)];
    let [s0, s1] = [0, 1].map(|b| expand(&seeds[b], n_bits, count));
    let (k0, k1) = (0..count)
        .map(|i| {
            let r = s0.1[i].wrapping_add(s1.1[i]) & low_mask(n_bits);
            dpf::keygen_from_roots([s0.0[i], s1.0[i]], shape, r, 1)
        })
        .unzip();
    (
        LutOneRoundKey::assemble(0, n_bits, seeds[0], s0.1, k0),
        LutOneRoundKey::assemble(1, n_bits, seeds[1], s1.1, k1),
    )
}

/// The only round: this party's message x_b + r_b mod 2^n.
///
/// # Panics
/// If `party` is not the key's party or `x_share` does not have one entry per gate.
pub fn lut1_online_message(party: u8, key: &LutOneRoundKey, x_share: &[u64]) -> Vec<u64> {
    key.check(party, x_share.len());
    masked_message(x_share, &key.masks, 0, key.n_bits)
}

/// This party's arithmetic share in Z_2^64 of T\[x\] per gate, from x̂ = the sum of both
/// messages (read mod 2^n): Σ_j d_b(j)·T\[(x̂ − j) mod 2^n\]. `table[j]` is T\[j\].
///
/// The table is reversed and doubled once per batch (R\[m\] = T\[(2N − 1 − m) mod N\],
/// N = 2^n), so that T\[(x̂ − j) mod N\] = R\[N − 1 − x̂ + j\] and each gate is one
/// contiguous dot product; EvalAll reuses one output buffer for the whole batch.
///
/// # Panics
/// If `party` is not the key's party, `x_hat` does not have one entry per gate or the table
/// does not have 2^n entries.
pub fn lut1_finish(party: u8, key: &LutOneRoundKey, table: &[u64], x_hat: &[u64]) -> Vec<u64> {
    key.check(party, x_hat.len());
    let n = table.len();
    assert_eq!(n, 1 << key.n_bits, "a table of 2^{} entries", key.n_bits);
    let reversed: Vec<u64> = table.iter().chain(table).rev().copied().collect();
    let mut scratch = FullDomainScratch::default();
    let mut shares = Vec::with_capacity(n);
    (0..x_hat.len())
        .map(|i| {
            dpf::eval_all_with(party, &key.dpf[i], &mut scratch, &mut shares);
            let start = n - 1 - (x_hat[i] as usize & (n - 1));
            shares
                .iter()
                .zip(&reversed[start..start + n])
                .fold(0u64, |z, (d, t)| z.wrapping_add(d.wrapping_mul(*t)))
        })
        .collect()
}

fn shape(n_bits: u32) -> Result<DpfShape, FssError> {
    match (1..=LUT_MAX_BITS).contains(&n_bits) {
        true => DpfShape::new(n_bits, OUT_BITS),
        false => Err(FssError::Width(n_bits)),
    }
}

/// What a party expands from its seed: per gate a DPF root seed and r_b.
fn expand(seed: &PartySeed, n_bits: u32, count: usize) -> (Vec<Seed>, Vec<u64>) {
    let mut rng = ChaCha12Rng::from_seed(*seed);
    (0..count)
        .map(|_| (random_root(&mut rng), rng.next_u64() & low_mask(n_bits)))
        .unzip()
}

impl LutOneRoundKey {
    /// Bytes per gate the dealer sends each party: the correction words of DPF(n, ℓ = 64),
    /// 16(n − 1) + ⌈2(n − 1)/8⌉ + 16.
    pub const fn element_bytes(n_bits: u32) -> usize {
        DpfCorrections::byte_len(DpfShape {
            n_bits,
            out_bits: OUT_BITS,
        })
    }

    /// Serialized size of a batch of `count` gates.
    pub const fn byte_len(n_bits: u32, count: usize) -> usize {
        BATCH_HEADER_BYTES + count * LutOneRoundKey::element_bytes(n_bits)
    }

    /// The party (0 or 1) this key belongs to.
    pub fn party(&self) -> u8 {
        self.party
    }

    /// The input width n.
    pub fn n_bits(&self) -> u32 {
        self.n_bits
    }

    /// Number of gates in the batch.
    pub fn len(&self) -> usize {
        self.masks.len()
    }

    /// Whether the batch has no gates.
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    fn assemble(
        party: u8,
        n_bits: u32,
        seed: PartySeed,
        masks: Vec<u64>,
        dpf: Vec<DpfKey>,
    ) -> LutOneRoundKey {
        LutOneRoundKey {
            party,
            n_bits,
            seed,
            masks,
            dpf,
        }
    }

    fn check(&self, party: u8, len: usize) {
        check_batch("one-round LUT", self.party, party, self.len(), len);
    }

    /// Serializes: the batch header (party, n, gate count, seed), then per gate the DPF's
    /// correction words.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LutOneRoundKey::byte_len(self.n_bits, self.len()));
        let header = BatchHeader {
            party: self.party,
            width: self.n_bits,
            count: self.len(),
            seed: self.seed,
        };
        header.write(&mut out);
        for key in &self.dpf {
            key.correction_words().write(&mut out);
        }
        out
    }

    /// Parses [`LutOneRoundKey::to_bytes`] output and re-expands the seed.
    pub fn from_bytes(bytes: &[u8]) -> Result<LutOneRoundKey, FssError> {
        let mut r = Reader::new(bytes);
        let h = BatchHeader::read(&mut r, |_, n| {
            shape(n).map(|_| LutOneRoundKey::element_bytes(n))
        })?;
        let shape = shape(h.width)?;
        let (roots, masks) = expand(&h.seed, h.width, h.count);
        let mut dpf = Vec::with_capacity(h.count);
        for root in roots {
            let cw = DpfCorrections::read(shape, &mut r)?;
            dpf.push(DpfKey::from_parts(h.party, root, cw));
        }
        Ok(LutOneRoundKey::assemble(
            h.party, h.width, h.seed, masks, dpf,
        ))
    }
}

impl fmt::Debug for LutOneRoundKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LutOneRoundKey")
            .field("party", &self.party)
            .field("n_bits", &self.n_bits)
            .field("gates", &self.len())
            .finish_non_exhaustive()
    }
}
