//! Matrix product of two shared tensors, `[.., m, k] · [.., k, n]` or `[.., m, k] · [k, n]`
//! (PROTOCOLS.md "matmul, both secret": 1 round, 2l·(|X| + |Y|) bits, dealer l·|Z|): a
//! Beaver triple of matrices `C = A·B`, opening `X − A` and `Y − B` once each.

use super::beaver_mul;
use super::beaver_mul::TripleMaterial;
use super::material::Product;
use super::{MessageError, PartyId, Share};

pub use super::beaver_mul::State;

/// Starts `X · Y`: the message is `X_p − A_p` then `Y_p − B_p`.
///
/// # Panics
/// If the material belongs to another party or does not match the operands' shapes.
pub fn start(party: PartyId, x: &Share, y: &Share, m: TripleMaterial) -> (State, Vec<u64>) {
    beaver_mul::start_with(Product::MatMul, party, x, y, m)
}

/// This party's share of `X · Y`.
///
/// # Errors
/// If the peer's message has the wrong length.
pub fn finish(state: State, peer: &[u64]) -> Result<Share, MessageError> {
    beaver_mul::finish(state, peer)
}
