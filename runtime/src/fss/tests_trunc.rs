//! Tests of the faithful truncation ([`super::trunc`]) against the plaintext arithmetic
//! shift `⌊x / 2^s⌋` of the signed value (fixed seeds throughout).

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::tests::fixed_config;
use super::trunc::{self, INPUT_BOUND, TruncKey};
use super::{BATCH_HEADER_BYTES, CorrectionWords, FssError};

fn rng(seed: u64) -> ChaCha12Rng {
    ChaCha12Rng::seed_from_u64(seed)
}

/// Runs both parties on `xs` through serialized keys and returns the opened output.
fn run(bits: u32, xs: &[i64], seed: u64) -> Vec<i64> {
    let mut r = rng(seed);
    let (k0, k1) = trunc::trunc_offline(bits, xs.len(), &mut r);
    // through the wire format, as every run reads its keys
    let (b0, b1) = (k0.to_bytes(), k1.to_bytes());
    assert_eq!(b0.len(), TruncKey::byte_len(0, bits, xs.len()));
    assert_eq!(b1.len(), TruncKey::byte_len(1, bits, xs.len()));
    let k0 = TruncKey::from_bytes(&b0).unwrap();
    let k1 = TruncKey::from_bytes(&b1).unwrap();
    let x0: Vec<u64> = xs.iter().map(|_| r.next_u64()).collect();
    let x1: Vec<u64> = (xs.iter().zip(&x0))
        .map(|(x, a)| (*x as u64).wrapping_sub(*a))
        .collect();
    let m0 = trunc::trunc_message(0, &k0, &x0);
    let m1 = trunc::trunc_message(1, &k1, &x1);
    let y: Vec<u64> = m0
        .iter()
        .zip(&m1)
        .map(|(a, b)| a.wrapping_add(*b))
        .collect();
    let o0 = trunc::trunc_finish(0, &k0, &y);
    let o1 = trunc::trunc_finish(1, &k1, &y);
    o0.iter()
        .zip(&o1)
        .map(|(a, b)| a.wrapping_add(*b) as i64)
        .collect()
}

fn shift(xs: &[i64], bits: u32) -> Vec<i64> {
    xs.iter().map(|x| x >> bits).collect()
}

const LO: i64 = -(INPUT_BOUND as i64);
const HI: i64 = INPUT_BOUND as i64 - 1;

#[test]
fn exact_at_the_edges() {
    for bits in [1, 12, 16, 32, 61, 62] {
        let xs = [
            LO,
            LO + 1,
            -1,
            0,
            1,
            HI - 1,
            HI,
            -(1 << bits),
            (1 << bits) - 1,
        ];
        for seed in 0..8 {
            assert_eq!(run(bits, &xs, seed), shift(&xs, bits), "bits {bits}");
        }
    }
}

#[test]
fn key_sizes_are_the_stated_formula() {
    // the s-bit DCF's correction words, plus party 1's share of msb(r)
    assert_eq!(TruncKey::element_bytes(0, 16), 24 * 16 + 4 + 8);
    assert_eq!(
        TruncKey::element_bytes(0, 16),
        CorrectionWords::byte_len(16)
    );
    assert_eq!(TruncKey::element_bytes(1, 16), 396 + 8);
    assert_eq!(TruncKey::byte_len(1, 16, 3), BATCH_HEADER_BYTES + 3 * 404);
}

#[test]
fn malformed_keys_are_errors() {
    let (k0, _) = trunc::trunc_offline(16, 2, &mut rng(1));
    let b = k0.to_bytes();
    assert!(matches!(
        TruncKey::from_bytes(&b[..b.len() - 1]),
        Err(FssError::Length { .. })
    ));
    let mut w = b.clone();
    w[1] = 63; // a shift the gate does not take
    assert_eq!(TruncKey::from_bytes(&w), Err(FssError::Width(63)));
    let mut w = b;
    w[1] = 0;
    assert_eq!(TruncKey::from_bytes(&w), Err(FssError::Width(0)));
}

#[test]
fn debug_shows_no_key_material() {
    let (k0, _) = trunc::trunc_offline(16, 2, &mut rng(2));
    let d = format!("{k0:?}");
    assert!(d.contains("elements: 2") && !d.contains("masks") && !d.contains("dcf"));
}

proptest! {
    #![proptest_config(fixed_config(64))]

    /// Any input in [−2^62, 2^62), any shift: the exact arithmetic shift.
    #[test]
    fn equals_the_arithmetic_shift(
        xs in prop::collection::vec(LO..=HI, 1..24),
        bits in 1u32..=62,
        seed in any::<u64>(),
    ) {
        prop_assert_eq!(run(bits, &xs, seed), shift(&xs, bits));
    }

    /// Fixed-point products at 32 fractional bits, truncated by 16: exact, where the local
    /// truncation may be off by one.
    #[test]
    fn fixed_point_products(
        xs in prop::collection::vec(-(1i64 << 50)..(1i64 << 50), 1..64),
        seed in any::<u64>(),
    ) {
        prop_assert_eq!(run(16, &xs, seed), shift(&xs, 16));
    }
}
