//! # The ring Z_2^64 and fixed-point numbers in it
//!
//! Every secret in the two-party runtime is an additive share over the ring Z_2^64
//! (PROTOCOLS.md, "Conventions"): a value `x` is held as `x0` by party 0 and `x1` by party
//! 1 with `x = x0 + x1 mod 2^64`. Elements are plain [`u64`]s ([`Ring`]) and *all*
//! arithmetic on them wraps; tensors of ring elements are `ndarray` arrays of `u64`.
//!
//! Real numbers enter the ring as fixed point with `frac` fractional bits (default
//! [`DEFAULT_FRAC`]): `x ↦ round(x · 2^frac)` in two's complement ([`encode`], [`decode`]).
//! A product of two fixed-point values carries `2·frac` fractional bits and is brought back
//! by [`trunc_share`], SecureML's local truncation, which each party applies to its own
//! share without communication.
//!
//! Below every protocol and the dealer, it also holds what both name: the party id and
//! a party's share ([`PartyId`], [`Share`], [`XorShare`]), wrapping element-wise
//! arithmetic on ring tensors (`ops`), message packing ([`pack`], [`unpack`],
//! [`MessageError`]) and the bit packing of boolean messages and corrections (`bits`).
//!
//! The arithmetic has three parts:
//! - [`encode`] / [`decode`] and their tensor forms: fixed point;
//! - [`trunc_share`]: local truncation of shares (Mohassel & Zhang 2017, §4.1);
//! - [`matmul()`] / [`matmul_batched`] / [`matmul_packed`]: the wrapping matrix product,
//!   the hot loop of secret-shared inference (a Beaver matmul runs several per call):
//!   packed, cache-blocked, SIMD (AVX2 when the CPU has it) and multi-threaded with rayon.

pub(crate) mod bits;
mod fixed;
mod matmul;
pub mod message;
pub(crate) mod ops;
pub mod share;
mod trunc;

pub use fixed::{DEFAULT_FRAC, decode, decode_tensor, encode, encode_tensor};
pub use matmul::{PackedRhs, ShapeMismatch, matmul, matmul_batched, matmul_packed};
pub use message::{MessageError, pack, pack_bits, packed_len, unpack, unpack_bits};
pub use share::{PartyId, Share, XorShare};
pub use trunc::trunc_share;

/// An element of Z_2^64. Addition, subtraction and multiplication are the wrapping `u64`
/// operations (`wrapping_add`, `wrapping_sub`, `wrapping_mul`): overflow is the ring's
/// reduction mod 2^64, never an error.
pub type Ring = u64;

#[cfg(test)]
mod tests;
