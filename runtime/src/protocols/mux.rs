//! Bit × value, the select of ReLU and max (PROTOCOLS.md "select / bit × arith (mux)": 1
//! round, 4l·n bits, dealer l·n). The bits are arithmetic 0/1 shares, as FSS DReLU outputs
//! them ([`super::drelu`]), so the mux is a Beaver product of the bit and the value; no
//! truncation follows, since the bit carries no fractional bits.

use super::beaver_mul::TripleMaterial;
use super::{MessageError, PartyId, Share, beaver_mul};

pub use super::beaver_mul::State;

/// Starts `bit · x`: the message is `bit_p − a_p` then `x_p − b_p`.
///
/// # Panics
/// As [`beaver_mul::start`].
pub fn start(party: PartyId, bit: &Share, x: &Share, m: TripleMaterial) -> (State, Vec<u64>) {
    beaver_mul::start(party, bit, x, m)
}

/// This party's share of `bit · x`.
///
/// # Errors
/// If the peer's message has the wrong length.
pub fn finish(state: State, peer: &[u64]) -> Result<Share, MessageError> {
    beaver_mul::finish(state, peer)
}
