//! Bit × value, the `select` node (PROTOCOLS.md "select / bit × arith (mux)", 1 round):
//! the select of ReLU, of the `lut` activations' kept gap and of the softmax's clip.
//!
//! It is the [`super::bit_mux`] protocol on the bit's lowest bit. GMW comparisons output
//! XOR shares, whose lowest bits are the bit's XOR shares; FSS comparisons
//! ([`super::drelu`]) output arithmetic 0/1 shares, and with `b ∈ {0, 1}` and
//! `b = b_0 + b_1 mod 2^64`, bit 0 of `b_0` XOR bit 0 of `b_1` is `b` too: either way each
//! party's share already holds an XOR share of the bit and no conversion is needed. Both open
//! `b ⊕ r` (eight bits to a byte) and `x − a` (64 bits per element, or w when the
//! select's value is read mod 2^w), 2·(8⌈n_b/8⌉ + w·n_x) bits in all, instead of a Beaver
//! product's 2·64·(n_b + n_x); the dealer sends `r`'s
//! arithmetic share and `r·a`, 64·(n_b + n_out) bits. No truncation follows, since the
//! bit carries no fractional bits.

use super::bit_mux::{self, BitMuxMaterial};
use super::xor::XorShare;
use super::{MessageError, PartyId, Share};

pub use super::bit_mux::State;

/// Starts `bit · x` for a share `bit` whose lowest bit is an XOR share of the bit (an
/// arithmetic 0/1 share or an XOR share): the message is `bit_p ⊕ r_p`
/// (eight to a byte) then `x_p − a_p`.
///
/// # Panics
/// As [`bit_mux::start`].
pub fn start(party: PartyId, bit: &Share, x: &Share, m: BitMuxMaterial) -> (State, Vec<u8>) {
    start_at(party, bit, x, m, 64)
}

/// [`start`] for a select read modulo 2^`width` only ([`bit_mux::start_at`]).
///
/// # Panics
/// As [`bit_mux::start_at`].
pub fn start_at(
    party: PartyId,
    bit: &Share,
    x: &Share,
    m: BitMuxMaterial,
    width: u32,
) -> (State, Vec<u8>) {
    bit_mux::start_at(party, &XorShare(bit.0.mapv(|b| b & 1)), x, m, width)
}

/// [`start_at`] for a select of a stochastic truncation's output that reads the
/// truncation's opening ([`bit_mux::start_opened`]): only the bits are sent.
///
/// # Panics
/// As [`bit_mux::start_opened`].
pub fn start_opened(
    party: PartyId,
    bit: &Share,
    opened: ndarray::ArrayD<u64>,
    h: ndarray::ArrayD<u64>,
    m: BitMuxMaterial,
    width: u32,
) -> (State, Vec<u8>) {
    let bit = XorShare(bit.0.mapv(|b| b & 1));
    bit_mux::start_opened(party, &bit, opened, h, m, width)
}

/// [`start`] on a sparse FFN's active entries: the bits a byte each, so that every
/// active (token, block) pair costs the same whatever the block's size.
///
/// # Panics
/// As [`bit_mux::start`].
pub fn start_gathered(
    party: PartyId,
    bit: &Share,
    x: &Share,
    m: BitMuxMaterial,
) -> (State, Vec<u8>) {
    bit_mux::start(party, &XorShare(bit.0.mapv(|b| b & 1)), x, m)
}

/// This party's share of `bit · x`.
///
/// # Errors
/// If the peer's message has the wrong length.
pub fn finish(state: State, peer: &[u8]) -> Result<Share, MessageError> {
    bit_mux::finish(state, peer)
}
