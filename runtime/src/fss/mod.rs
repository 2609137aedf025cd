//! # Function secret sharing: DPF, DCF, comparison and lookup-table gates
//!
//! This module holds the dealer-assisted comparison protocols of the runtime (PROTOCOLS.md,
//! row "DReLU / comparison with a public threshold, FSS (DCF)"):
//!
//! - [`prg`]: the length-doubling PRG every tree level calls, fixed-key AES-128 in
//!   Matyas–Meyer–Oseas mode;
//! - [`dcf`]: a distributed comparison function with payload in Z_2^64, the tree
//!   construction of Boyle, Chandran, Gilboa, Gupta, Ishai, Kumar, Rathee, "Function Secret
//!   Sharing for Mixed-Mode and Fixed-Point Secure Computation" (Eurocrypt 2021, ePrint
//!   2020/1392; "BCG+21" below), which refines the DPF tree of Boyle, Gilboa, Ishai,
//!   "Function Secret Sharing: Improvements and Extensions" (CCS 2016);
//! - [`drelu`]: the sign gate of BCG+21 (also SIGMA, Gupta et al. 2023) on an m-bit signed
//!   value (2 ≤ m ≤ 64, m = 64 the whole ring): the parties open x + r mod 2^m in one round
//!   and each evaluates one DCF key on the low m − 1 bits, which yields **arithmetic**
//!   shares in Z_2^64 of the bit [x ≥ 0];
//! - [`dpf`]: the distributed point function of BGI16 with early termination, output in
//!   Z_2^ℓ (ℓ ≤ 64) or an XOR-shared bit, with full-domain evaluation (EvalAll);
//! - [`dcf_bit`]: a comparison \[x < α\] with an XOR-shared 1-bit output, read off a 1-bit
//!   DPF key (SIGMA, Gupta et al., ePrint 2023/1269);
//! - [`drelu_bit`]: DReLU on an m-bit value from the 1-bit DCF, arithmetic output by one
//!   more opened bit (two rounds);
//! - [`lut`]: a public-table lookup T\[x\] on an n-bit secret from a 1-bit DPF (SIGMA,
//!   Pika), arithmetic output in Z_2^64 (two rounds); [`lut::one_round`]: the same from a
//!   DPF with payload 1 in Z_2^64 (one round, larger keys, about 35× the AES work);
//! - [`sign_select`]: `y·[x ≥ 0]` fused (ReLU, a max level) from the 1-bit DCF, two rounds,
//!   the bit never opened unmasked nor multiplied by a Beaver triple.
//!
//! ## Threat model
//! Semi-honest P0 and P1 plus a dealer that knows every mask and key (ARCHITECTURE.md). A
//! key alone is pseudorandom: it reveals neither the comparison point nor the payload. All
//! functions are pure (no IO); the interpreter moves the messages.
//!
//! ## Sizes (what the cost model adopts)
//! With λ = 128 seed bits and l = 64 output bits, an n-bit DCF key carries per level a seed
//! correction (λ bits), a value correction (l bits) and two control bits, plus one final
//! value correction: [`dcf::CorrectionWords::byte_len`] = 24n + ⌈2n/8⌉ + 8 bytes, shared by
//! both parties. A DReLU element of width m uses an (m−1)-bit DCF whose root seed and mask
//! share are expanded from a per-party seed, so the dealer sends
//! [`DreluKey::element_bytes`]\(m) = 24(m−1) + ⌈2(m−1)/8⌉ + 8 bytes per element to each
//! party ([`DRELU_KEY_BYTES_PER_ELEMENT`] = 1536 bytes = 12288 bits at m = 64), plus
//! [`drelu::DRELU_KEY_HEADER_BYTES`] = 42 per batch; online each party sends m bits per
//! element, packed (⌈n·m/8⌉ bytes for n elements). PROTOCOLS.md's l(λ+2)+l = 8384 bits omits the per-level l-bit value
//! correction that an arithmetic (Z_2^64) output needs; see [`drelu`] for the comparison.
//!
//! The SIGMA-class primitives, with λ = 128, ν the early-terminated levels and sizes in
//! bytes of correction words (what the dealer sends; root seeds and masks expand from the
//! per-party seed):
//!
//! | primitive | bytes per key / gate and party | ≈ bits | online bits per party, rounds |
//! |---|---|---|---|
//! | [`dpf::DpfCorrections::byte_len`], n-bit input, ℓ-bit output, ν = min(n, 7 − ⌈log2 ℓ⌉) | 16(n − ν) + ⌈2(n − ν)/8⌉ + ⌈2^ν·ℓ/8⌉ | (n − ν)(λ + 2) + 2^ν·ℓ | — |
//! | [`dcf_bit::DcfBitKey::correction_bytes`], n ≥ 7 | 16(n − 7) + ⌈2(n − 7)/8⌉ + 16 | (n − 7)(λ + 2) + λ | — |
//! | [`drelu_bit::DreluBitKey::element_bytes`], m-bit input | dcf_bit(m − 1) + 8·b (party b) | (m − 8)(λ + 2) + λ (+ 64 for P1) | m + 1, 2 rounds |
//! | [`sign_select::SignSelectKey::element_bytes`], m-bit x | dcf_bit(m − 1) + 16·b (party b) | (m − 8)(λ + 2) + λ (+ 128 for P1) | w + 1 (+ 64 when y ≠ x), 2 rounds; w = 64 when y is x, else m |
//! | [`lut::LutKey::element_bytes`], n-bit input | 16(n − 7) + ⌈2(n − 7)/8⌉ + 16 + 8 (n ≥ 7) | DPF(n, ℓ = 1) + 64 | n + 64, 2 rounds |
//! | [`lut::one_round`], n-bit input (ν = 1) | 16(n − 1) + ⌈2(n − 1)/8⌉ + 16 | DPF(n, ℓ = 64) | n, 1 round |
//!
//! Measured (the tests assert these), bytes per element and party:
//!
//! | width w | [`dcf`] on n = w (= [`drelu`] on m = w + 1) | [`dcf_bit`] on n = w | [`drelu_bit`] on m = w + 1, P0 / P1 |
//! |---|---|---|---|
//! | 63 | 1536 (m = 64) | 926 | 926 / 934 |
//! | 32 | 784 (m = 33) | 423 | 423 / 431 (m = 33) |
//! | 24 | 590 (m = 25) | 293 | 293 / 301 (m = 25) |
//! | 16 | 396 (m = 17) | 163 | 163 / 171 (m = 17) |
//!
//! The one-round [`drelu`] per width m (the tests assert these):
//!
//! | m | key bytes per element and party | online bits per element (both parties) |
//! |---|---|---|
//! | 64 | 1536 | 128 |
//! | 48 | 1148 | 96 |
//! | 40 | 954 | 80 |
//! | 32 | 760 | 64 |
//! | 24 | 566 | 48 |
//! | 16 | 372 | 32 |
//!
//! Lookup tables: n = 8: 41 bytes, n = 13: 122 bytes per gate and party.
//! Every batch of [`drelu_bit`] or [`lut`] gates adds [`BATCH_HEADER_BYTES`] = 42 bytes
//! (party, width, count, seed).
//!
//! Secrets (seeds, masks, correction words) never appear in `Debug` output.

pub mod dcf;
pub mod dcf_bit;
pub mod dpf;
pub mod drelu;
pub mod drelu_bit;
pub mod lut;
pub mod prg;
pub mod sign_select;
pub mod trunc;

mod codec;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dpf;
#[cfg(test)]
mod tests_drelu_bits;
#[cfg(test)]
mod tests_gates;
#[cfg(test)]
mod tests_sign_select;
#[cfg(test)]
mod tests_trunc;

pub use codec::BATCH_HEADER_BYTES;
pub use dcf::{CorrectionWords, DcfKey};
pub use dcf_bit::DcfBitKey;
pub use dpf::{DpfKey, DpfShape};
pub use drelu::{
    DRELU_KEY_BYTES_PER_ELEMENT, DreluKey, drelu_finish, drelu_offline, drelu_offline_bits,
    drelu_offline_on_masks, drelu_online_message, ge_threshold_online_message, open_masked,
};
pub use drelu_bit::{
    DreluBitKey, drelu_bit_finish, drelu_bit_offline, drelu_bit_online_message,
    drelu_bit_reveal_message,
};
pub use lut::{LutKey, lut_finish, lut_offline, lut_online_message, lut_reveal_message};
pub use trunc::TruncKey;

/// Security parameter: bits of a PRG seed (one of them is the control bit, see [`prg`]).
pub const LAMBDA_BITS: u32 = 128;

/// Bits of a ring element: shares and DCF payloads live in Z_2^64.
pub const RING_BITS: u32 = 64;

/// Why a serialized key was rejected by `from_bytes`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FssError {
    /// The byte string is shorter or longer than its header announces.
    #[error("FSS key: expected {expected} bytes, got {actual}")]
    Length {
        /// Bytes the header implies.
        expected: usize,
        /// Bytes received.
        actual: usize,
    },
    /// The party byte is neither 0 nor 1.
    #[error("FSS key: party must be 0 or 1, got {0}")]
    Party(u8),
    /// The input bit width is outside 1..=64.
    #[error("FSS key: input width must be 1..=64 bits, got {0}")]
    Width(u32),
    /// The output group width ℓ is outside 1..=64 bits.
    #[error("FSS key: output width must be 1..=64 bits, got {0}")]
    OutputWidth(u32),
    /// A field has bits set that the construction always leaves clear.
    #[error("FSS key: malformed {0}")]
    Malformed(&'static str),
}

/// Panics unless `party` is 0 or 1: a wrong party index is a caller bug, not bad input.
fn check_party(party: u8) {
    assert!(party <= 1, "party must be 0 or 1, got {party}");
}

/// Panics unless a batch of `what` keys of party `owner` with `len` gates is used by
/// `party` on `expected` values.
fn check_batch(what: &str, owner: u8, party: u8, len: usize, expected: usize) {
    check_party(party);
    assert_eq!(
        owner, party,
        "{what} key of party {owner} used by party {party}"
    );
    assert_eq!(len, expected, "one value per {what} gate");
}

/// Where gates `idx` (numbered across batches of `lens` gates, in order) are: (batch,
/// gate in it), in `idx`'s order, for gathering keys. Each gate may be taken once (a key
/// evaluated on two inputs reveals their difference).
///
/// # Panics
/// If an index is out of range or repeats.
fn gate_positions(what: &str, lens: &[usize], idx: &[usize]) -> Vec<(usize, usize)> {
    let at: Vec<(usize, usize)> = (lens.iter().enumerate())
        .flat_map(|(b, &n)| (0..n).map(move |i| (b, i)))
        .collect();
    let mut taken = vec![false; at.len()];
    (idx.iter())
        .map(|&i| {
            assert!(i < at.len(), "gate {i} of batches of {}", at.len());
            assert!(
                !taken[i],
                "gate {i} gathered twice: a {what} key is used once"
            );
            taken[i] = true;
            at[i]
        })
        .collect()
}

/// The masked opening every FSS gate starts with: `(x_b − shift + r_b) mod 2^n_bits` per
/// element (`shift` a public offset, party 0's to subtract; 0 otherwise).
fn masked_message(x_share: &[u64], masks: &[u64], shift: u64, n_bits: u32) -> Vec<u64> {
    let m = low_mask(n_bits);
    (x_share.iter().zip(masks))
        .map(|(x, r)| x.wrapping_sub(shift).wrapping_add(*r) & m)
        .collect()
}

/// The low `n_bits` bits set (n_bits in 1..=64).
fn low_mask(n_bits: u32) -> u64 {
    u64::MAX >> (64 - n_bits)
}
