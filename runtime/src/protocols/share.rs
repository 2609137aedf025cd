//! Additive shares and input sharing from a shared PRG seed.
//!
//! A value `x` is held as `x0` by party 0 and `x1` by party 1 with `x = x0 + x1 mod 2^64`.
//! To share a private input without communication (PROTOCOLS.md, "share a private input":
//! 0 rounds, 0 bits), both parties expand the same ChaCha12 stream `r` from a seed they
//! share; the owner keeps `x − r` and the peer keeps `r`.

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

pub use crate::ring::share::Share;

use super::ring_ops;

/// A 32-byte seed both parties hold, from which input masks are expanded.
pub type InputSeed = [u8; 32];

/// The mask stream `r` of `shape` expanded from `seed` (what the peer holds).
pub fn mask_from_seed(seed: &InputSeed, shape: &[usize]) -> ArrayD<u64> {
    let mut rng = ChaCha12Rng::from_seed(*seed);
    let n = shape.iter().product();
    let data: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
    ring_ops::from_flat(shape, &data)
}

/// The owner's share of its private input `x`: `x − r`.
pub fn share_own_input(x: &ArrayD<u64>, seed: &InputSeed) -> Share {
    let r = mask_from_seed(seed, x.shape());
    Share(ring_ops::sub(x.view(), r.view()))
}

/// The peer's share of the owner's input of `shape`: `r`.
pub fn share_peer_input(shape: &[usize], seed: &InputSeed) -> Share {
    Share(mask_from_seed(seed, shape))
}

/// `x0 + x1`: the plaintext behind two shares (for tests and the receiver of a reveal).
///
/// # Panics
/// If the shapes differ.
pub fn reconstruct(x0: &Share, x1: &Share) -> ArrayD<u64> {
    assert_eq!(x0.shape(), x1.shape(), "both shares have one shape");
    ring_ops::add(x0.0.view(), x1.0.view())
}

/// Splits `x` into two shares with a mask from `rng` (tests and the dealer).
pub fn split<R: Rng + ?Sized>(x: &ArrayD<u64>, rng: &mut R) -> (Share, Share) {
    let r = ArrayD::from_shape_simple_fn(IxDyn(x.shape()), || rng.next_u64());
    (Share(ring_ops::sub(x.view(), r.view())), Share(r))
}
