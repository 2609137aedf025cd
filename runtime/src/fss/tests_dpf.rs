//! Tests of the DPF and the 1-bit DCF against plaintext (fixed seeds throughout).

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::dcf_bit::{self, DcfBitKey};
use super::dpf::{self, DpfCorrections, DpfKey, DpfShape};
use super::tests::fixed_config;
use super::{CorrectionWords, FssError, low_mask};

fn rng(seed: u64) -> ChaCha12Rng {
    ChaCha12Rng::seed_from_u64(seed)
}

fn shape(n_bits: u32, out_bits: u32) -> DpfShape {
    DpfShape::new(n_bits, out_bits).unwrap()
}

/// Both parties' DPF outputs added in Z_2^ℓ.
fn dpf_opened(k: &(DpfKey, DpfKey), x: u64) -> u64 {
    let l = k.0.shape().out_bits;
    dpf::eval(0, &k.0, x).wrapping_add(dpf::eval(1, &k.1, x)) & low_mask(l)
}

fn dpf_expected(alpha: u64, s: DpfShape, beta: u64, x: u64) -> u64 {
    let m = low_mask(s.n_bits);
    if x & m == alpha & m {
        beta & low_mask(s.out_bits)
    } else {
        0
    }
}

#[test]
fn dpf_exhaustive_small_domains() {
    let mut r = rng(1);
    for (n, l) in [
        (1, 1),
        (3, 64),
        (7, 1),
        (8, 1),
        (9, 1),
        (8, 3),
        (10, 64),
        (10, 17),
    ] {
        let s = shape(n, l);
        for alpha in [0, 1, low_mask(n), r.next_u64()] {
            let beta = r.next_u64() | 1;
            let keys = dpf::keygen(alpha, s, beta, &mut r);
            let all = [dpf::eval_all(0, &keys.0), dpf::eval_all(1, &keys.1)];
            assert_eq!(all[0].len(), 1 << n);
            for x in 0..1u64 << n {
                let want = dpf_expected(alpha, s, beta, x);
                assert_eq!(
                    dpf_opened(&keys, x),
                    want,
                    "n={n} l={l} alpha={alpha} x={x}"
                );
                let sum = all[0][x as usize].wrapping_add(all[1][x as usize]);
                assert_eq!(sum & low_mask(l), want, "eval_all n={n} l={l} x={x}");
            }
        }
    }
}

#[test]
fn packed_full_domain_matches_eval_all() {
    let mut r = rng(30);
    let mut bits = vec![u64::MAX; 3];
    for n in 1..=14 {
        for alpha in [0, low_mask(n), r.next_u64()] {
            let keys = dpf::keygen(alpha, shape(n, 1), 1, &mut r);
            for (party, key) in [(0, &keys.0), (1, &keys.1)] {
                let all = dpf::eval_all(party, key);
                dpf::eval_all_bits(party, key, &mut bits);
                assert_eq!(bits.len(), (1usize << n).div_ceil(64), "n={n}");
                for (w, word) in bits.iter().enumerate() {
                    let want = (0..64)
                        .filter(|i| all.get(64 * w + i) == Some(&1))
                        .fold(0u64, |acc, i| acc | 1 << i);
                    assert_eq!(*word, want, "n={n} party={party} word={w}");
                }
                let opened = dpf::eval_all(1 - party, if party == 0 { &keys.1 } else { &keys.0 });
                let ones = (0..all.len()).filter(|&x| all[x] != opened[x]).count();
                assert_eq!(ones, 1, "n={n}");
            }
        }
    }
}

#[test]
#[should_panic(expected = "packed evaluation")]
fn packed_full_domain_needs_one_bit_outputs() {
    let keys = dpf::keygen(3, shape(5, 2), 1, &mut rng(31));
    dpf::eval_all_bits(0, &keys.0, &mut Vec::new());
}

proptest! {
    #![proptest_config(fixed_config(256))]
    #[test]
    fn dpf_random(n in 1u32..=64, l in 1u32..=64, alpha: u64, x: u64, beta: u64, seed: u64) {
        let s = shape(n, l);
        let keys = dpf::keygen(alpha, s, beta, &mut rng(seed));
        prop_assert_eq!(dpf_opened(&keys, x), dpf_expected(alpha, s, beta, x));
        prop_assert_eq!(dpf_opened(&keys, alpha), beta & low_mask(l));
        let near = alpha ^ (1 << (x % u64::from(n)));
        prop_assert_eq!(dpf_opened(&keys, near), 0);
    }

    #[test]
    fn dcf_bit_random(n in 1u32..=64, alpha: u64, x: u64, seed: u64) {
        let keys = dcf_bit::keygen(alpha, n, &mut rng(seed));
        let m = low_mask(n);
        for x in [x, alpha, alpha.wrapping_sub(1), alpha.wrapping_add(1), 0, m] {
            prop_assert_eq!(dcf_bit_opened(&keys, x), (x & m) < (alpha & m), "x={:#x}", x);
        }
    }
}

fn dcf_bit_opened(k: &(DcfBitKey, DcfBitKey), x: u64) -> bool {
    dcf_bit::eval(0, &k.0, x) ^ dcf_bit::eval(1, &k.1, x)
}

#[test]
fn dcf_bit_exhaustive_small_domains() {
    let mut r = rng(2);
    for n in [1, 2, 6, 7, 8, 9, 11] {
        let m = low_mask(n);
        for alpha in [0, 1, m - 1, m, m / 2, r.next_u64() & m] {
            let keys = dcf_bit::keygen(alpha, n, &mut r);
            for x in 0..=m {
                assert_eq!(
                    dcf_bit_opened(&keys, x),
                    x < alpha,
                    "n={n} alpha={alpha} x={x}"
                );
            }
        }
    }
}

#[test]
fn batches_agree_with_single_evaluation() {
    let mut r = rng(3);
    let widths = [16, 16, 63, 1, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8, 24, 64, 64];
    let pairs: Vec<_> = widths
        .iter()
        .map(|&n| (n, r.next_u64() & low_mask(n)))
        .collect();
    let (k0, k1): (Vec<_>, Vec<_>) = pairs
        .iter()
        .map(|&(n, a)| dcf_bit::keygen(a, n, &mut r))
        .unzip();
    let xs: Vec<u64> = pairs
        .iter()
        .map(|&(n, a)| (a ^ (r.next_u64() & 3)) & low_mask(n))
        .collect();
    let (y0, y1) = (
        dcf_bit::eval_batch(0, &k0, &xs),
        dcf_bit::eval_batch(1, &k1, &xs),
    );
    for (i, &(_, a)) in pairs.iter().enumerate() {
        assert_eq!(y0[i], dcf_bit::eval(0, &k0[i], xs[i]));
        assert_eq!(y0[i] ^ y1[i], xs[i] < a, "key {i}");
    }
    let s = shape(20, 32);
    let (d0, d1): (Vec<_>, Vec<_>) = (0..11).map(|i| dpf::keygen(i, s, 7, &mut r)).unzip();
    let xs: Vec<u64> = (0..11).map(|i| i / 2).collect();
    let (y0, y1) = (dpf::eval_batch(0, &d0, &xs), dpf::eval_batch(1, &d1, &xs));
    for i in 0..11 {
        let want = if xs[i] == i as u64 { 7 } else { 0 };
        assert_eq!(y0[i].wrapping_add(y1[i]) & low_mask(32), want);
    }
}

#[test]
fn dpf_key_sizes_follow_the_formula() {
    for n in 1..=64u32 {
        for l in [1, 2, 3, 8, 17, 32, 33, 64] {
            let s = shape(n, l);
            let nu = n.min(7 - (l as f64).log2().ceil() as u32);
            let d = (n - nu) as usize;
            let out_bytes = ((1usize << nu) * l as usize).div_ceil(8);
            assert_eq!(
                DpfCorrections::byte_len(s),
                16 * d + (2 * d).div_ceil(8) + out_bytes
            );
            let key = dpf::keygen(n.into(), s, 1, &mut rng(u64::from(n * l))).0;
            assert_eq!(key.to_bytes().len(), DpfKey::byte_len(s));
            assert_eq!(DpfKey::byte_len(s), 19 + DpfCorrections::byte_len(s));
        }
    }
    // (n − 7)(λ + 2) + λ bits of correction words for the 1-bit comparison, n ≥ 7.
    for n in 7..=64u32 {
        let bits = (n - 7) as usize * 130 + 128;
        assert_eq!(DcfBitKey::correction_bytes(n), bits.div_ceil(8));
        let key = dcf_bit::keygen(1, n, &mut rng(4)).1;
        assert_eq!(key.to_bytes().len(), DcfBitKey::byte_len(n));
    }
    let table = [
        (63, 1536, 926),
        (32, 784, 423),
        (24, 590, 293),
        (16, 396, 163),
    ];
    for (n, today, new) in table {
        assert_eq!(CorrectionWords::byte_len(n), today, "dcf n={n}");
        assert_eq!(DcfBitKey::correction_bytes(n), new, "dcf_bit n={n}");
    }
}

#[test]
fn dpf_key_bytes_round_trip_and_rejections() {
    for (n, l) in [(1, 1), (7, 1), (13, 1), (63, 1), (64, 64), (20, 50)] {
        let (k0, k1) = dpf::keygen(5, shape(n, l), 9, &mut rng(5));
        for key in [&k0, &k1] {
            assert_eq!(&DpfKey::from_bytes(&key.to_bytes()).unwrap(), key);
        }
    }
    let bytes = dpf::keygen(5, shape(20, 50), 9, &mut rng(6)).0.to_bytes();
    let with = |i: usize, b: u8| {
        let mut v = bytes.clone();
        v[i] = b;
        DpfKey::from_bytes(&v)
    };
    assert_eq!(with(0, 2), Err(FssError::Party(2)));
    assert_eq!(with(1, 0), Err(FssError::Width(0)));
    assert_eq!(with(1, 65), Err(FssError::Width(65)));
    assert_eq!(with(2, 0), Err(FssError::OutputWidth(0)));
    assert!(matches!(with(2, 64), Err(FssError::Length { .. })));
    assert!(matches!(with(3, bytes[3] | 1), Err(FssError::Malformed(_))));
    // ℓ = 50, ν = 1: the output correction holds 100 bits in 13 bytes; set bit 103.
    let last = bytes.len() - 1;
    assert_eq!(
        with(last, bytes[last] | 0x80),
        Err(FssError::Malformed("output correction"))
    );
    // n − ν = 19 levels: 38 control bits in 5 bytes; set bit 39.
    let controls = 19 + 16 * 19 + 4;
    assert_eq!(
        with(controls, bytes[controls] | 0x80),
        Err(FssError::Malformed("control bits"))
    );
    for cut in [0, 1, 3, 19, bytes.len() - 1] {
        assert!(matches!(
            DpfKey::from_bytes(&bytes[..cut]),
            Err(FssError::Length { .. })
        ));
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(
        DpfKey::from_bytes(&long),
        Err(FssError::Length { .. })
    ));
}

#[test]
fn dcf_bit_key_bytes() {
    let (k0, k1) = dcf_bit::keygen(77, 24, &mut rng(7));
    for key in [&k0, &k1] {
        assert_eq!(&DcfBitKey::from_bytes(&key.to_bytes()).unwrap(), key);
    }
    let wide = dpf::keygen(77, shape(24, 2), 1, &mut rng(8)).0.to_bytes();
    assert_eq!(DcfBitKey::from_bytes(&wide), Err(FssError::OutputWidth(2)));
    assert_eq!(format!("{k1:?}"), "DcfBitKey { party: 1, n_bits: 24, .. }");
    let d = dpf::keygen(1, shape(9, 4), 1, &mut rng(9)).0;
    assert_eq!(
        format!("{d:?}"),
        "DpfKey { party: 0, shape: DpfShape { n_bits: 9, out_bits: 4 }, .. }"
    );
}

#[test]
fn corrupt_keys_never_panic() {
    let bytes = dpf::keygen(3, shape(30, 1), 1, &mut rng(10)).1.to_bytes();
    let mut r = rng(11);
    for _ in 0..200 {
        let mut v = bytes.clone();
        let i = (r.next_u64() as usize) % v.len();
        v[i] ^= 1 << (r.next_u64() % 8);
        let _ = DpfKey::from_bytes(&v);
        let cut = (r.next_u64() as usize) % v.len();
        let _ = DpfKey::from_bytes(&v[..cut]);
    }
}
