//! Several thresholds from one DReLU key and one opening ([`drelu::finish_at`]): every
//! bit `[x ≥ t]` against the plaintext, at the whole ring and at a reduced width, with
//! the bytes of a single DReLU.

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::both;
use crate::dealer::Dealer;
use crate::protocols::drelu;
use crate::protocols::driver::round_bytes;
use crate::protocols::share::{reconstruct, split};
use crate::ring::encode;

const FRAC: u32 = 16;

/// `[x ≥ t]` per element and threshold, on a new last axis.
fn expected(x: &ArrayD<u64>, ts: &[u64]) -> ArrayD<u64> {
    let mut shape = x.shape().to_vec();
    shape.push(ts.len());
    let flat = x
        .iter()
        .flat_map(|&v| {
            ts.iter()
                .map(move |&t| u64::from(v.wrapping_sub(t) as i64 >= 0))
        })
        .collect();
    ArrayD::from_shape_vec(IxDyn(&shape), flat).unwrap()
}

fn run(bits: u32, x: &ArrayD<u64>, ts: &[u64], r: &mut ChaCha12Rng) -> (ArrayD<u64>, u64) {
    let mut d = Dealer::from_u64(u64::from(bits));
    let [k0, k1] = d.drelu_bits(x.len(), bits);
    let (x0, x1) = split(x, r);
    let (a, b) = both([(k0, x0), (k1, x1)], |p, ch, (k, x)| {
        let (st, msg) = drelu::start(p, &x, k);
        drelu::finish_at(st, &round_bytes(ch, &msg).unwrap(), ts).unwrap()
    });
    let sent = a.stats.online.payload_bytes_sent + b.stats.online.payload_bytes_sent;
    (reconstruct(&a.output, &b.output), sent)
}

#[test]
fn one_key_compares_with_every_threshold() {
    let mut r = ChaCha12Rng::seed_from_u64(31);
    let ts: Vec<u64> = [0.0, -4.0 + 1.0 / 256.0, 4.0, 0.5]
        .map(|t| encode(t, FRAC))
        .to_vec();
    let mut values: Vec<f64> = vec![0.0, -1e-5, 4.0, 3.99998, -4.0, -3.99, 0.5, 0.49999];
    values.extend((0..56).map(|_| (r.next_u64() % 2_000_000) as f64 / 1e5 - 10.0));
    let x = ArrayD::from_shape_vec(
        IxDyn(&[8, 8]),
        values.iter().map(|v| encode(*v, FRAC)).collect(),
    )
    .unwrap();
    for bits in [64, 40] {
        let (got, sent) = run(bits, &x, &ts, &mut r);
        assert_eq!(got, expected(&x, &ts), "width {bits}");
        // one opening of m bits per element and party, whatever the number of thresholds
        assert_eq!(sent, 2 * (64 * u64::from(bits)).div_ceil(8), "width {bits}");
    }
}
