//! Tests of the fused select on a sign ([`super::sign_select`]) against plaintext
//! `y·[x ≥ 0]`, at several widths, with y = x and y ≠ x (fixed seeds throughout).

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::sign_select::{self, SignSelectKey};
use super::tests::fixed_config;
use super::{BATCH_HEADER_BYTES, DcfBitKey};

fn rng(seed: u64) -> ChaCha12Rng {
    ChaCha12Rng::seed_from_u64(seed)
}

fn split(v: &[u64], r: &mut ChaCha12Rng) -> (Vec<u64>, Vec<u64>) {
    let a: Vec<u64> = v.iter().map(|_| r.next_u64()).collect();
    let b = v.iter().zip(&a).map(|(v, a)| v.wrapping_sub(*a)).collect();
    (a, b)
}

fn add(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(a, b)| a.wrapping_add(*b)).collect()
}

/// Runs both parties on `xs` (and `ys`, or x itself) through serialized keys, checks what
/// is opened, and returns the opened output and the opened e.
fn run(m: u32, xs: &[i64], ys: Option<&[u64]>, seed: u64) -> (Vec<u64>, Vec<bool>) {
    let mut r = rng(seed);
    let (k0, k1) = sign_select::sign_select_offline(m, ys.is_none(), xs.len(), &mut r);
    // through the wire format, as every run reads its keys
    let k0 = SignSelectKey::from_bytes(&k0.to_bytes()).unwrap();
    let k1 = SignSelectKey::from_bytes(&k1.to_bytes()).unwrap();
    let x: Vec<u64> = xs.iter().map(|&v| v as u64).collect();
    let (x0, x1) = split(&x, &mut r);
    let (mx0, mx1) = (
        sign_select::x_message(0, &k0, &x0),
        sign_select::x_message(1, &k1, &x1),
    );
    let w = k0.x_wire_bits();
    assert!(
        mx0.iter().chain(&mx1).all(|&v| w == 64 || v >> w == 0),
        "x + r on {w} bits"
    );
    let x_hat = add(&mx0, &mx1);
    let y_hat = match ys {
        None => x_hat.clone(),
        Some(ys) => {
            let (y0, y1) = split(ys, &mut r);
            add(
                &sign_select::y_message(0, &k0, &y0),
                &sign_select::y_message(1, &k1, &y1),
            )
        }
    };
    let e0 = sign_select::reveal_message(0, &k0, &x_hat);
    let e1 = sign_select::reveal_message(1, &k1, &x_hat);
    let e: Vec<bool> = e0.iter().zip(&e1).map(|(a, b)| a ^ b).collect();
    let out = add(
        &sign_select::finish(0, &k0, &e, &y_hat),
        &sign_select::finish(1, &k1, &e, &y_hat),
    );
    (out, e)
}

/// A signed m-bit value.
fn signed(m: u32, v: u64) -> i64 {
    ((v << (64 - m)) as i64) >> (64 - m)
}

fn plain(x: i64, y: u64) -> u64 {
    if x >= 0 { y } else { 0 }
}

proptest! {
    #![proptest_config(fixed_config(64))]
    #[test]
    fn relu_matches_plaintext(m in prop::sample::select(vec![2u32, 8, 16, 33, 63, 64]),
                              raw in prop::collection::vec(any::<u64>(), 1..40),
                              seed in any::<u64>()) {
        let xs: Vec<i64> = raw.iter().map(|&v| signed(m, v)).collect();
        let (out, _) = run(m, &xs, None, seed);
        for (x, o) in xs.iter().zip(&out) {
            prop_assert_eq!(*o, plain(*x, *x as u64), "m = {}, x = {}", m, x);
        }
    }

    #[test]
    fn select_matches_plaintext(m in prop::sample::select(vec![2u32, 9, 24, 64]),
                                raw in prop::collection::vec((any::<u64>(), any::<u64>()), 1..40),
                                seed in any::<u64>()) {
        let xs: Vec<i64> = raw.iter().map(|(v, _)| signed(m, *v)).collect();
        let ys: Vec<u64> = raw.iter().map(|(_, y)| *y).collect();
        let (out, _) = run(m, &xs, Some(&ys), seed);
        for ((x, y), o) in xs.iter().zip(&ys).zip(&out) {
            prop_assert_eq!(*o, plain(*x, *y), "m = {}, x = {}", m, x);
        }
    }
}

#[test]
fn edges_of_the_range() {
    for m in [2u32, 3, 16, 64] {
        let top = (1i64 << (m - 1)).wrapping_sub(1);
        let xs = [0, -1, 1, top, -top - 1, top - 1];
        let (out, _) = run(m, &xs, None, u64::from(m));
        let want: Vec<u64> = xs.iter().map(|&x| plain(x, x as u64)).collect();
        assert_eq!(out, want, "m = {m}");
    }
}

/// The opened bit e = DReLU(x) ⊕ ρ is uniform: for one x repeated, about half the gates
/// open 1, whatever the sign.
#[test]
fn the_opened_bit_is_masked() {
    for x in [-5i64, 5] {
        let (_, e) = run(64, &vec![x; 4000], None, 7);
        let ones = e.iter().filter(|b| **b).count();
        assert!((1800..2200).contains(&ones), "x = {x}: {ones} of 4000 ones");
    }
}

#[test]
fn key_sizes() {
    // the 1-bit DCF on 63 bits: 926 bytes; party 1 adds the corrections of ρ and ρ·s
    assert_eq!(DcfBitKey::correction_bytes(63), 926);
    assert_eq!(SignSelectKey::element_bytes(0, 64), 926);
    assert_eq!(SignSelectKey::element_bytes(1, 64), 942);
    assert_eq!(SignSelectKey::element_bytes(0, 17), 163);
    for (m, same, n) in [(64, true, 5), (64, false, 3), (17, false, 4)] {
        let (k0, k1) = sign_select::sign_select_offline(m, same, n, &mut rng(1));
        assert_eq!(
            k0.to_bytes().len(),
            BATCH_HEADER_BYTES + n * SignSelectKey::element_bytes(0, m)
        );
        assert_eq!(
            k1.to_bytes().len(),
            BATCH_HEADER_BYTES + n * SignSelectKey::element_bytes(1, m)
        );
        assert_eq!(SignSelectKey::byte_len(1, m, n), k1.to_bytes().len());
    }
}

#[test]
fn damaged_keys_are_rejected() {
    let (k0, _) = sign_select::sign_select_offline(64, true, 3, &mut rng(2));
    let bytes = k0.to_bytes();
    assert!(SignSelectKey::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    let mut wide = bytes.clone();
    wide[1] = 65;
    assert!(SignSelectKey::from_bytes(&wide).is_err());
    let back = SignSelectKey::from_bytes(&bytes).unwrap();
    assert!(back.same() && back.m_bits() == 64 && back.len() == 3);
    assert_eq!(back, k0);
}

#[test]
fn debug_output_hides_the_key() {
    let (k0, _) = sign_select::sign_select_offline(64, false, 2, &mut rng(3));
    let s = format!("{k0:?}");
    assert!(s.starts_with("SignSelectKey") && !s.contains("masks") && !s.contains("seed"));
}
