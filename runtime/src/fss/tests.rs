//! Tests of the FSS module against plaintext comparisons (fixed seeds throughout).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::dcf::{self, eval, eval_batch, eval_points, keygen, keygen_batch};
use super::drelu::{DRELU_KEY_HEADER_BYTES, drelu_offline_with_masks};
use super::*;

fn rng(seed: u64) -> ChaCha12Rng {
    ChaCha12Rng::seed_from_u64(seed)
}

pub(super) fn fixed_config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0xC0FFEE),
        failure_persistence: None,
        ..Config::default()
    }
}

/// The plaintext reference: β·[x < α] over n-bit unsigned values.
fn expected(alpha: u64, n_bits: u32, beta: u64, x: u64) -> u64 {
    let m = low_mask(n_bits);
    if x & m < alpha & m { beta } else { 0 }
}

fn opened(k: &(DcfKey, DcfKey), x: u64) -> u64 {
    eval(0, &k.0, x).wrapping_add(eval(1, &k.1, x))
}

fn check_dcf(alpha: u64, n_bits: u32, beta: u64, xs: &[u64], seed: u64) {
    let keys = keygen(alpha, n_bits, beta, &mut rng(seed));
    for &x in xs {
        let want = expected(alpha, n_bits, beta, x);
        assert_eq!(
            opened(&keys, x),
            want,
            "n={n_bits} alpha={alpha:#x} x={x:#x}"
        );
    }
}

/// Points around the edges of an n-bit domain and of α.
fn edge_points(alpha: u64, n_bits: u32) -> Vec<u64> {
    let max = low_mask(n_bits);
    let near = [alpha.wrapping_sub(1), alpha, alpha.wrapping_add(1)];
    [0, 1, max - 1, max, max / 2, max / 2 + 1]
        .into_iter()
        .chain(near)
        .map(|x| x & max)
        .collect()
}

#[test]
fn dcf_exhaustive_8_bits() {
    let all: Vec<u64> = (0..256).collect();
    let mut r = rng(1);
    for alpha in [0, 1, 2, 77, 127, 128, 129, 254, 255] {
        check_dcf(alpha, 8, r.next_u64(), &all, alpha);
    }
    for seed in 0..8 {
        check_dcf(r.next_u64() & 0xff, 8, 1, &all, 100 + seed);
    }
}

#[test]
fn dcf_one_bit() {
    for alpha in 0..2 {
        check_dcf(alpha, 1, 0xDEAD_BEEF, &[0, 1], alpha);
    }
}

#[test]
fn dcf_wide_edges() {
    let mut r = rng(2);
    for n_bits in [2, 7, 32, 63, 64] {
        let max = low_mask(n_bits);
        for alpha in [0, 1, max - 1, max, max / 2, r.next_u64() & max] {
            let mut xs = edge_points(alpha, n_bits);
            xs.extend((0..16).map(|_| r.next_u64() & max));
            check_dcf(alpha, n_bits, u64::MAX, &xs, alpha ^ u64::from(n_bits));
        }
    }
}

#[test]
fn dcf_ignores_bits_above_width() {
    let keys = keygen(10, 8, 5, &mut rng(3));
    assert_eq!(opened(&keys, 0xff00 | 9), 5);
    assert_eq!(opened(&keys, 0xff00 | 10), 0);
}

proptest! {
    #![proptest_config(fixed_config(256))]
    #[test]
    fn dcf_random(n_bits in 1u32..=64, alpha: u64, x: u64, beta: u64, seed: u64) {
        let keys = keygen(alpha, n_bits, beta, &mut rng(seed));
        prop_assert_eq!(opened(&keys, x), expected(alpha, n_bits, beta, x));
        prop_assert_eq!(opened(&keys, alpha), 0);
    }
}

#[test]
fn dcf_batch_agrees_with_single() {
    let mut r = rng(4);
    let alphas: Vec<u64> = (0..21).map(|_| r.next_u64()).collect();
    let betas: Vec<u64> = (0..21).map(|_| r.next_u64()).collect();
    let xs: Vec<u64> = alphas.iter().map(|a| a ^ (r.next_u64() >> 40)).collect();
    let (k0, k1) = keygen_batch(&alphas, 64, &betas, &mut r);
    let (y0, y1) = (eval_batch(0, &k0, &xs), eval_batch(1, &k1, &xs));
    for i in 0..xs.len() {
        assert_eq!(y0[i], eval(0, &k0[i], xs[i]));
        assert_eq!(
            y0[i].wrapping_add(y1[i]),
            expected(alphas[i], 64, betas[i], xs[i])
        );
    }
    let points = eval_points(1, &k1[0], &xs);
    assert_eq!(
        points,
        xs.iter().map(|&x| eval(1, &k1[0], x)).collect::<Vec<_>>()
    );
}

#[test]
fn dcf_batch_of_mixed_widths() {
    let mut r = rng(5);
    let widths = [8, 8, 64, 1, 63, 63, 63, 8, 8, 8, 8, 8, 8, 8, 8, 8, 64];
    let pairs: Vec<_> = widths
        .iter()
        .map(|&n| (n, r.next_u64() & low_mask(n)))
        .collect();
    let keys: Vec<_> = pairs
        .iter()
        .map(|&(n, a)| keygen(a, n, 3, &mut r))
        .collect();
    let (k0, k1): (Vec<_>, Vec<_>) = keys.into_iter().unzip();
    let xs: Vec<u64> = pairs.iter().map(|&(n, a)| (a ^ 1) & low_mask(n)).collect();
    let (y0, y1) = (eval_batch(0, &k0, &xs), eval_batch(1, &k1, &xs));
    for (i, &(n, a)) in pairs.iter().enumerate() {
        assert_eq!(
            y0[i].wrapping_add(y1[i]),
            expected(a, n, 3, xs[i]),
            "key {i}"
        );
    }
}

#[test]
#[should_panic(expected = "evaluated as party 1")]
fn dcf_rejects_wrong_party() {
    let (k0, _) = keygen(3, 8, 1, &mut rng(6));
    eval(1, &k0, 2);
}

#[test]
fn dcf_key_bytes_round_trip() {
    for n_bits in [1, 8, 63, 64] {
        let (k0, k1) = keygen(5, n_bits, 9, &mut rng(7));
        for key in [&k0, &k1] {
            let bytes = key.to_bytes();
            assert_eq!(bytes.len(), DcfKey::byte_len(n_bits));
            let back = DcfKey::from_bytes(&bytes).unwrap();
            assert_eq!(&back, key);
        }
    }
}

#[test]
fn dcf_from_bytes_rejects_malformed() {
    let (k0, _) = keygen(5, 8, 9, &mut rng(8));
    let bytes = k0.to_bytes();
    let expected = bytes.len();
    let short = DcfKey::from_bytes(&bytes[..expected - 1]);
    assert_eq!(
        short,
        Err(FssError::Length {
            expected,
            actual: expected - 1
        })
    );
    let with = |i: usize, b: u8| {
        let mut v = bytes.clone();
        v[i] = b;
        DcfKey::from_bytes(&v)
    };
    assert_eq!(with(0, 2), Err(FssError::Party(2)));
    assert_eq!(with(1, 0), Err(FssError::Width(0)));
    assert_eq!(with(1, 65), Err(FssError::Width(65)));
    assert!(matches!(with(2, bytes[2] | 1), Err(FssError::Malformed(_))));
    assert!(DcfKey::from_bytes(&[]).is_err());
}

#[test]
fn dcf_rejects_stray_control_bits() {
    let (k0, _) = keygen(5, 3, 9, &mut rng(9));
    let mut bytes = k0.to_bytes();
    let control_at = 2 + 16 + 24 * 3;
    bytes[control_at] |= 0b1100_0000;
    assert_eq!(
        DcfKey::from_bytes(&bytes),
        Err(FssError::Malformed("control bits"))
    );
}

#[test]
fn key_sizes_follow_the_documented_formulas() {
    for n_bits in 1..=64u32 {
        let n = n_bits as usize;
        assert_eq!(
            CorrectionWords::byte_len(n_bits),
            24 * n + (2 * n).div_ceil(8) + 8
        );
        let bits = n * (LAMBDA_BITS + RING_BITS + 2) as usize + RING_BITS as usize;
        assert_eq!(CorrectionWords::byte_len(n_bits), bits.div_ceil(8));
    }
    assert_eq!(DRELU_KEY_BYTES_PER_ELEMENT, 1536);
    assert_eq!(
        8 * DRELU_KEY_BYTES_PER_ELEMENT,
        63 * (128 + 64 + 2) + 64 + 2
    );
    let (k0, k1) = drelu_offline(5, &mut rng(10));
    for key in [&k0, &k1] {
        assert_eq!(key.to_bytes().len(), DRELU_KEY_HEADER_BYTES + 5 * 1536);
        assert_eq!(key.to_bytes().len(), DreluKey::byte_len(5));
    }
}

#[test]
fn debug_output_is_redacted() {
    let (k0, _) = keygen(5, 8, 9, &mut rng(11));
    assert_eq!(format!("{k0:?}"), "DcfKey { party: 0, n_bits: 8, .. }");
    assert_eq!(
        format!("{:?}", k0.correction_words()),
        "CorrectionWords { n_bits: 8, .. }"
    );
    let (_, d1) = drelu_offline(3, &mut rng(12));
    assert_eq!(
        format!("{d1:?}"),
        "DreluKey { party: 1, bits: 64, gates: 3, .. }"
    );
}

/// Runs the whole DReLU protocol on plaintext inputs and opens the output shares.
fn run_drelu(
    keys: &(DreluKey, DreluKey),
    xs: &[u64],
    threshold: Option<u64>,
    seed: u64,
) -> Vec<u64> {
    let mut r = rng(seed);
    let x0: Vec<u64> = xs.iter().map(|_| r.next_u64()).collect();
    let x1: Vec<u64> = xs
        .iter()
        .zip(&x0)
        .map(|(x, a)| x.wrapping_sub(*a))
        .collect();
    let message = |party, key, share: &[u64]| match threshold {
        Some(t) => ge_threshold_online_message(party, key, share, t),
        None => drelu_online_message(party, key, share),
    };
    let x_hat = open_masked(&message(0, &keys.0, &x0), &message(1, &keys.1, &x1));
    let y0 = drelu_finish(0, &keys.0, &x_hat);
    let y1 = drelu_finish(1, &keys.1, &x_hat);
    y0.iter()
        .zip(&y1)
        .map(|(a, b)| a.wrapping_add(*b))
        .collect()
}

fn is_nonnegative(x: u64) -> u64 {
    u64::from(x as i64 >= 0)
}

fn signed_edges() -> Vec<u64> {
    let centres = [
        0u64,
        1 << 62,
        (1u64 << 62).wrapping_neg(),
        i64::MAX as u64,
        i64::MIN as u64,
    ];
    let offsets = [0u64, 1, 2, 3, u64::MAX, u64::MAX - 1, u64::MAX - 2];
    centres
        .iter()
        .flat_map(|c| offsets.iter().map(move |o| c.wrapping_add(*o)))
        .collect()
}

#[test]
fn drelu_on_signed_edges() {
    let xs = signed_edges();
    let keys = drelu_offline(xs.len(), &mut rng(13));
    let want: Vec<u64> = xs.iter().map(|&x| is_nonnegative(x)).collect();
    assert_eq!(run_drelu(&keys, &xs, None, 14), want);
}

#[test]
fn drelu_with_edge_masks() {
    let xs = signed_edges();
    let masks = [
        0,
        1,
        1 << 63,
        (1 << 63) - 1,
        (1 << 63) + 1,
        u64::MAX,
        1 << 62,
    ];
    for (i, &r) in masks.iter().enumerate() {
        let r0 = rng(i as u64).next_u64();
        let shares = [vec![r0; xs.len()], vec![r.wrapping_sub(r0); xs.len()]];
        let keys = drelu_offline_with_masks(shares, 15 + i as u64);
        let want: Vec<u64> = xs.iter().map(|&x| is_nonnegative(x)).collect();
        assert_eq!(run_drelu(&keys, &xs, None, 16), want, "mask {r:#x}");
    }
}

proptest! {
    #![proptest_config(fixed_config(64))]
    #[test]
    fn drelu_random(xs in proptest::collection::vec(any::<u64>(), 1..40), seed: u64) {
        let keys = drelu_offline(xs.len(), &mut rng(seed));
        let want: Vec<u64> = xs.iter().map(|&x| is_nonnegative(x)).collect();
        prop_assert_eq!(run_drelu(&keys, &xs, None, seed ^ 1), want);
    }

    #[test]
    fn compare_with_public_threshold(
        xs in proptest::collection::vec(-(1i64 << 40)..(1i64 << 40), 1..40),
        t in -(1i64 << 40)..(1i64 << 40),
        seed: u64,
    ) {
        let keys = drelu_offline(xs.len(), &mut rng(seed));
        let raw: Vec<u64> = xs.iter().map(|&x| x as u64).collect();
        let want: Vec<u64> = xs.iter().map(|&x| u64::from(x >= t)).collect();
        prop_assert_eq!(run_drelu(&keys, &raw, Some(t as u64), seed ^ 2), want);
    }
}

#[test]
fn drelu_key_bytes_round_trip() {
    let (k0, k1) = drelu_offline(4, &mut rng(17));
    for key in [&k0, &k1] {
        let back = DreluKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(&back, key);
    }
    let xs = [5, 0, u64::MAX, 1 << 63];
    let parsed = (DreluKey::from_bytes(&k0.to_bytes()).unwrap(), k1);
    assert_eq!(run_drelu(&parsed, &xs, None, 18), vec![1, 1, 0, 0]);
}

#[test]
fn drelu_from_bytes_rejects_bad_lengths() {
    let (k0, _) = drelu_offline(2, &mut rng(19));
    let mut bytes = k0.to_bytes();
    bytes[2] = 3;
    let err = DreluKey::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        err,
        FssError::Length {
            expected: DreluKey::byte_len(3),
            actual: bytes.len()
        }
    );
    bytes[2..10].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        DreluKey::from_bytes(&bytes),
        Err(FssError::Length { .. })
    ));
}

#[test]
fn empty_batches() {
    let keys = drelu_offline(0, &mut rng(20));
    assert!(keys.0.is_empty());
    assert_eq!(run_drelu(&keys, &[], None, 21), Vec::<u64>::new());
    assert_eq!(DreluKey::from_bytes(&keys.1.to_bytes()).unwrap(), keys.1);
}

/// Throughput figures for n = 64 (run with `cargo test --release -p comet-runtime
/// fss::tests::throughput -- --ignored --nocapture`).
#[test]
#[ignore = "timing; run in release with --nocapture"]
fn throughput() {
    use std::time::Instant;
    let count = 20_000;
    let mut r = rng(22);
    let alphas: Vec<u64> = (0..count).map(|_| r.next_u64()).collect();
    let start = Instant::now();
    let (k0, _) = keygen_batch(&alphas, 64, &alphas, &mut r);
    let keygen_rate = count as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let y = eval_batch(0, &k0, &alphas);
    let eval_rate = count as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let single: u64 = (0..count)
        .map(|i| dcf::eval(0, &k0[i], alphas[i]))
        .fold(0, u64::wrapping_add);
    let single_rate = count as f64 / start.elapsed().as_secs_f64();
    assert_eq!(single, y.iter().fold(0u64, |a, b| a.wrapping_add(*b)));
    println!(
        "DCF n=64: keygen {keygen_rate:.0} pairs/s, eval {eval_rate:.0} elem/s per party (batched), {single_rate:.0} elem/s (one at a time)"
    );
    let start = Instant::now();
    let keys = drelu_offline(count, &mut r);
    let offline_rate = count as f64 / start.elapsed().as_secs_f64();
    let x_hat = drelu_online_message(0, &keys.0, &alphas);
    let start = Instant::now();
    drelu_finish(0, &keys.0, &x_hat);
    let finish_rate = count as f64 / start.elapsed().as_secs_f64();
    println!(
        "DReLU l=64: offline {offline_rate:.0} elem/s, finish {finish_rate:.0} elem/s per party"
    );
}
