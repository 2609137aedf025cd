//! Tests of the m-bit DReLU ([`super::drelu`] at widths 2..=64) against plaintext signed
//! comparisons (fixed seeds throughout).

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::drelu::{DRELU_KEY_HEADER_BYTES, drelu_offline_bits_with_masks};
use super::tests::fixed_config;
use super::*;

fn rng(seed: u64) -> ChaCha12Rng {
    ChaCha12Rng::seed_from_u64(seed)
}

/// Runs the protocol on signed inputs (shared at random in Z_2^64) and opens the output.
fn run(keys: &(DreluKey, DreluKey), xs: &[i64], t: i64, seed: u64) -> Vec<u64> {
    let mut r = rng(seed);
    let x0: Vec<u64> = xs.iter().map(|_| r.next_u64()).collect();
    let x1: Vec<u64> = xs
        .iter()
        .zip(&x0)
        .map(|(&x, a)| (x as u64).wrapping_sub(*a))
        .collect();
    let m0 = ge_threshold_online_message(0, &keys.0, &x0, t as u64);
    let m1 = ge_threshold_online_message(1, &keys.1, &x1, t as u64);
    let bits = keys.0.bits();
    assert!(
        m0.iter().chain(&m1).all(|&v| v >> (bits - 1) >> 1 == 0),
        "m-bit messages"
    );
    let x_hat = open_masked(&m0, &m1);
    let y0 = drelu_finish(0, &keys.0, &x_hat);
    let y1 = drelu_finish(1, &keys.1, &x_hat);
    y0.iter()
        .zip(&y1)
        .map(|(a, b)| a.wrapping_add(*b))
        .collect()
}

/// The signed range of m bits: [−2^(m−1), 2^(m−1) − 1].
fn range(m: u32) -> (i64, i64) {
    let half = 1i128 << (m - 1);
    ((-half) as i64, (half - 1) as i64)
}

/// The edges of the m-bit range and around zero.
fn edges(m: u32) -> Vec<i64> {
    let (lo, hi) = range(m);
    let mut v = vec![lo, lo + 1, -2, -1, 0, 1, hi - 1, hi];
    v.retain(|x| (lo..=hi).contains(x));
    v
}

#[test]
fn every_width_is_exact_on_the_range_edges() {
    for m in 2..=64 {
        let xs = edges(m);
        let keys = drelu_offline_bits(xs.len(), m, &mut rng(u64::from(m)));
        let want: Vec<u64> = xs.iter().map(|&x| u64::from(x >= 0)).collect();
        assert_eq!(run(&keys, &xs, 0, 1), want, "m = {m}");
    }
}

#[test]
fn edge_masks_at_a_reduced_width() {
    let m = 20;
    let xs = edges(m);
    for r in [
        0u64,
        1,
        1 << 19,
        (1 << 19) - 1,
        (1 << 19) + 1,
        (1 << 20) - 1,
        u64::MAX,
    ] {
        let r0 = rng(r).next_u64();
        let shares = [vec![r0; xs.len()], vec![r.wrapping_sub(r0); xs.len()]];
        let keys = drelu_offline_bits_with_masks(shares, m, 7);
        let want: Vec<u64> = xs.iter().map(|&x| u64::from(x >= 0)).collect();
        assert_eq!(run(&keys, &xs, 0, 8), want, "mask {r:#x}");
    }
}

/// A width in 2..=64, values in its signed range and a threshold keeping x − t in range.
fn width_and_values() -> impl Strategy<Value = (u32, Vec<i64>, i64)> {
    (2u32..=64).prop_flat_map(|m| {
        let (lo, hi) = range(m);
        let (tlo, thi) = (lo / 2, hi / 2);
        let xs = proptest::collection::vec(tlo..=thi, 1..24);
        (Just(m), xs, tlo..=thi)
    })
}

proptest! {
    #![proptest_config(fixed_config(128))]
    #[test]
    fn m_bit_drelu_matches_plaintext((m, xs, _) in width_and_values(), seed: u64) {
        let keys = drelu_offline_bits(xs.len(), m, &mut rng(seed));
        let want: Vec<u64> = xs.iter().map(|&x| u64::from(x >= 0)).collect();
        prop_assert_eq!(run(&keys, &xs, 0, seed ^ 1), want);
    }

    #[test]
    fn m_bit_threshold_matches_plaintext((m, xs, t) in width_and_values(), seed: u64) {
        let keys = drelu_offline_bits(xs.len(), m, &mut rng(seed));
        let want: Vec<u64> = xs.iter().map(|&x| u64::from(x >= t)).collect();
        prop_assert_eq!(run(&keys, &xs, t, seed ^ 2), want);
    }
}

#[test]
fn key_size_is_the_formula() {
    let table = [
        (64, 1536),
        (48, 1148),
        (40, 954),
        (32, 760),
        (24, 566),
        (16, 372),
    ];
    for (m, bytes) in table {
        assert_eq!(DreluKey::element_bytes(m), bytes, "m = {m}");
    }
    for m in 2..=64u32 {
        let n = (m - 1) as usize;
        let per = 24 * n + (2 * n).div_ceil(8) + 8;
        assert_eq!(DreluKey::element_bytes(m), per);
        assert_eq!(DreluKey::element_bytes(m), CorrectionWords::byte_len(m - 1));
        let (k0, k1) = drelu_offline_bits(3, m, &mut rng(u64::from(m)));
        for k in [&k0, &k1] {
            assert_eq!(k.to_bytes().len(), DRELU_KEY_HEADER_BYTES + 3 * per);
            assert_eq!(k.to_bytes().len(), DreluKey::byte_len_bits(3, m));
        }
    }
    assert_eq!(DRELU_KEY_HEADER_BYTES, 42);
}

#[test]
fn m_bit_keys_round_trip_and_keep_their_width() {
    for m in [2, 20, 40, 63, 64] {
        let (k0, k1) = drelu_offline_bits(4, m, &mut rng(30 + u64::from(m)));
        for k in [&k0, &k1] {
            let back = DreluKey::from_bytes(&k.to_bytes()).unwrap();
            assert_eq!(&back, k);
            assert_eq!(back.bits(), m);
        }
        let parsed = (DreluKey::from_bytes(&k0.to_bytes()).unwrap(), k1);
        assert_eq!(run(&parsed, &[1, 0, -1, -2], 0, 9), vec![1, 1, 0, 0]);
    }
}

#[test]
fn from_bytes_rejects_a_wrong_width_or_truncation() {
    let (k0, _) = drelu_offline_bits(2, 20, &mut rng(40));
    let bytes = k0.to_bytes();
    assert_eq!(bytes[1], 20, "the width follows the party byte");
    for bad in [0u8, 1, 65, 255] {
        let mut b = bytes.clone();
        b[1] = bad;
        assert_eq!(DreluKey::from_bytes(&b), Err(FssError::Width(bad.into())));
    }
    let mut other = bytes.clone();
    other[1] = 21;
    assert!(matches!(
        DreluKey::from_bytes(&other),
        Err(FssError::Length { .. })
    ));
    for cut in [1, 10, DRELU_KEY_HEADER_BYTES, bytes.len() - 1] {
        assert!(
            matches!(
                DreluKey::from_bytes(&bytes[..cut]),
                Err(FssError::Length { .. })
            ),
            "{cut} bytes"
        );
    }
}

/// FNV-1a, to pin bytes in a test.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

/// At m = 64 the keys and messages are byte for byte those of the full-ring gate before
/// widths existed (the fingerprints were taken from that version) but for the header's
/// width byte.
#[test]
fn full_width_is_byte_identical_to_the_64_bit_gate() {
    let (k0, k1) = drelu_offline(7, &mut rng(4242));
    let xs: Vec<u64> = (0..7u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    let m0 = drelu_online_message(0, &k0, &xs);
    let m1 = ge_threshold_online_message(1, &k1, &xs, 77);
    let without_width = |k: &DreluKey| {
        let mut b = k.to_bytes();
        assert_eq!(b.remove(1), 64);
        b
    };
    assert_eq!(fnv(&without_width(&k0)), 0xaeb7_20a9_4686_7258);
    assert_eq!(fnv(&without_width(&k1)), 0x0146_545b_6e8d_adf6);
    let msg: Vec<u8> = m0.iter().chain(&m1).flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(fnv(&msg), 0x9fca_a840_ff8a_7031);
}
