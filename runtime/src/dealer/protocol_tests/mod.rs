//! The protocols run end to end with material from the [`Dealer`](super::Dealer): each
//! protocol's `start`/`finish` against the plaintext result. They sit here, above both
//! modules, because the protocols never import the dealer.

mod arith;
mod block_matmul;
mod boolean;
mod shuffle;
