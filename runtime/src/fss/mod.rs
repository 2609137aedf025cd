//! # Function secret sharing: DCF and the one-round DReLU gate
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
//! - [`drelu`]: the sign gate of BCG+21 (also SIGMA, Gupta et al. 2023): the parties open
//!   x + r in one round and each evaluates one DCF key on the low 63 bits, which yields
//!   **arithmetic** shares in Z_2^64 of the bit [x ≥ 0].
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
//! both parties. A DReLU element uses a 63-bit DCF whose root seed and mask share are
//! expanded from a per-party seed, so the dealer sends [`DRELU_KEY_BYTES_PER_ELEMENT`] =
//! 1536 bytes (12288 bits) per element to each party, plus [`drelu::DRELU_KEY_HEADER_BYTES`]
//! per batch. PROTOCOLS.md's l(λ+2)+l = 8384 bits omits the per-level l-bit value
//! correction that an arithmetic (Z_2^64) output needs; see [`drelu`] for the comparison.
//!
//! Secrets (seeds, masks, correction words) never appear in `Debug` output.

pub mod dcf;
pub mod dcf_bit;
pub mod dpf;
pub mod drelu;
pub mod drelu_bit;
pub mod lut;
pub mod prg;

mod codec;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dpf;
#[cfg(test)]
mod tests_gates;

pub use dcf::{CorrectionWords, DcfKey};
pub use drelu::{
    DRELU_KEY_BYTES_PER_ELEMENT, DreluKey, drelu_finish, drelu_offline, drelu_online_message,
    ge_threshold_online_message, open_masked,
};

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

/// The low `n_bits` bits set (n_bits in 1..=64).
fn low_mask(n_bits: u32) -> u64 {
    u64::MAX >> (64 - n_bits)
}
