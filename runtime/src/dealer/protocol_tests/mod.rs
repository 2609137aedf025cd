//! The protocols run end to end with material from the [`Dealer`](super::Dealer): each
//! protocol's `start`/`finish` against the plaintext result. They sit here, above both
//! modules, because the protocols never import the dealer.

mod arith;
mod block_matmul;
mod boolean;
mod compare;
mod lut;
mod shuffle;
mod sign_select;
mod trunc;

use crate::protocols::PartyId;
use crate::protocols::driver::{PartyRun, run_two_party};
use crate::transport::MemChannel;

/// Runs `f` as both parties, each with its material; returns outputs and statistics.
fn both<M: Send, T: Send>(
    mats: [M; 2],
    f: impl Fn(PartyId, &mut MemChannel, M) -> T + Sync,
) -> (PartyRun<T>, PartyRun<T>) {
    let [m0, m1] = mats;
    let f = &f;
    run_two_party(move |ch| f(0, ch, m0), move |ch| f(1, ch, m1))
}
