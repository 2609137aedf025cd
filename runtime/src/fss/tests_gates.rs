//! Tests of the reduced-width DReLU and the lookup-table gate against plaintext.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::codec::BATCH_HEADER_BYTES;
use super::drelu_bit::{
    DreluBitKey, drelu_bit_finish, drelu_bit_offline, drelu_bit_online_message,
    drelu_bit_reveal_message,
};
use super::lut::{
    LutKey, LutOneRoundKey, lut_finish, lut_offline, lut_online_message, lut_reveal_message,
    lut1_finish, lut1_offline, lut1_online_message, reveal_reference,
};
use super::tests::fixed_config;
use super::{FssError, low_mask};

fn rng(seed: u64) -> ChaCha12Rng {
    ChaCha12Rng::seed_from_u64(seed)
}

/// Random additive shares in Z_2^64 of each value.
fn share(xs: &[u64], seed: u64) -> [Vec<u64>; 2] {
    let mut r = rng(seed);
    let x0: Vec<u64> = xs.iter().map(|_| r.next_u64()).collect();
    let x1 = xs
        .iter()
        .zip(&x0)
        .map(|(x, a)| x.wrapping_sub(*a))
        .collect();
    [x0, x1]
}

fn add(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x.wrapping_add(*y)).collect()
}

/// Runs both rounds of the m-bit DReLU and opens the output.
fn run_drelu_bit(keys: &(DreluBitKey, DreluBitKey), xs: &[u64], seed: u64) -> Vec<u64> {
    let [x0, x1] = share(xs, seed);
    let m = [
        drelu_bit_online_message(0, &keys.0, &x0),
        drelu_bit_online_message(1, &keys.1, &x1),
    ];
    let x_hat = add(&m[0], &m[1]);
    let e0 = drelu_bit_reveal_message(0, &keys.0, &x_hat);
    let e1 = drelu_bit_reveal_message(1, &keys.1, &x_hat);
    add(
        &drelu_bit_finish(0, &keys.0, &e0, &e1),
        &drelu_bit_finish(1, &keys.1, &e1, &e0),
    )
}

/// [x ≥ 0] for x read as an m-bit two's-complement value.
fn nonnegative(x: u64, m_bits: u32) -> u64 {
    u64::from((x >> (m_bits - 1)) & 1 == 0)
}

fn signed_edges(m_bits: u32) -> Vec<u64> {
    let m = low_mask(m_bits);
    let half = 1u64 << (m_bits - 1);
    [0, 1, 2, m, m - 1, half, half - 1, half + 1, half - 2]
        .iter()
        .map(|x| x & m)
        .collect()
}

#[test]
fn drelu_bit_on_edges_of_every_width() {
    for m_bits in 2..=64 {
        let mut xs = signed_edges(m_bits);
        let mut r = rng(u64::from(m_bits));
        xs.extend((0..8).map(|_| r.next_u64()));
        let keys = drelu_bit_offline(m_bits, xs.len(), &mut r);
        let want: Vec<u64> = xs.iter().map(|&x| nonnegative(x, m_bits)).collect();
        assert_eq!(run_drelu_bit(&keys, &xs, 1), want, "m={m_bits}");
    }
}

proptest! {
    #![proptest_config(fixed_config(48))]
    #[test]
    fn drelu_bit_random(m_bits in 2u32..=64, xs in proptest::collection::vec(any::<u64>(), 1..24), seed: u64) {
        let keys = drelu_bit_offline(m_bits, xs.len(), &mut rng(seed));
        let want: Vec<u64> = xs.iter().map(|&x| nonnegative(x, m_bits)).collect();
        prop_assert_eq!(run_drelu_bit(&keys, &xs, seed ^ 1), want);
    }

    #[test]
    fn lut_random(n_bits in 1u32..=10, xs in proptest::collection::vec(any::<u64>(), 1..6), seed: u64) {
        let mut r = rng(seed);
        let table: Vec<u64> = (0..1usize << n_bits).map(|_| r.next_u64()).collect();
        let keys = lut_offline(n_bits, xs.len(), &mut r);
        let want: Vec<u64> = xs.iter().map(|&x| table[(x & low_mask(n_bits)) as usize]).collect();
        prop_assert_eq!(run_lut(&keys, &table, &xs, seed ^ 2), want);
    }
}

proptest! {
    #![proptest_config(fixed_config(48))]
    #[test]
    fn lut_reveal_matches_the_reference(n_bits in 1u32..=14, xs in proptest::collection::vec(any::<u64>(), 1..4), seed: u64) {
        let mut r = rng(seed);
        let table: Vec<u64> = (0..1usize << n_bits).map(|_| r.next_u64()).collect();
        let keys = lut_offline(n_bits, xs.len(), &mut r);
        for (party, key) in [(0, &keys.0), (1, &keys.1)] {
            prop_assert_eq!(
                lut_reveal_message(party, key, &table, &xs),
                reveal_reference(party, key, &table, &xs)
            );
        }
    }
}

/// Runs the one-round table lookup and opens the output.
fn run_lut1(
    keys: &(LutOneRoundKey, LutOneRoundKey),
    table: &[u64],
    xs: &[u64],
    seed: u64,
) -> Vec<u64> {
    let [x0, x1] = share(xs, seed);
    let m = [
        lut1_online_message(0, &keys.0, &x0),
        lut1_online_message(1, &keys.1, &x1),
    ];
    let x_hat = add(&m[0], &m[1]);
    add(
        &lut1_finish(0, &keys.0, table, &x_hat),
        &lut1_finish(1, &keys.1, table, &x_hat),
    )
}

proptest! {
    #![proptest_config(fixed_config(48))]
    #[test]
    fn lut1_random(n_bits in 1u32..=10, xs in proptest::collection::vec(any::<u64>(), 1..6), seed: u64) {
        let mut r = rng(seed);
        let table: Vec<u64> = (0..1usize << n_bits).map(|_| r.next_u64()).collect();
        let keys = lut1_offline(n_bits, xs.len(), &mut r);
        let want: Vec<u64> = xs.iter().map(|&x| table[(x & low_mask(n_bits)) as usize]).collect();
        prop_assert_eq!(run_lut1(&keys, &table, &xs, seed ^ 3), want);
    }
}

#[test]
fn lut1_every_input_of_small_tables_and_13_bits() {
    for n_bits in [1, 2, 6, 7, 8] {
        let size = 1u64 << n_bits;
        let mut r = rng(40 + u64::from(n_bits));
        let mut table: Vec<u64> = (0..size).map(|_| r.next_u64()).collect();
        table[0] = 0;
        table[size as usize - 1] = u64::MAX;
        let xs: Vec<u64> = (0..size).chain([size, u64::MAX]).collect();
        let keys = lut1_offline(n_bits, xs.len(), &mut r);
        let want: Vec<u64> = xs.iter().map(|&x| table[(x % size) as usize]).collect();
        assert_eq!(run_lut1(&keys, &table, &xs, 3), want, "n={n_bits}");
    }
    let table: Vec<u64> = (0..1u64 << 13).map(|j| j * j + 7).collect();
    let xs = [0, 1, 4095, 4096, 8190, 8191];
    let keys = lut1_offline(13, xs.len(), &mut rng(41));
    let want: Vec<u64> = xs.iter().map(|&x| x * x + 7).collect();
    assert_eq!(run_lut1(&keys, &table, &xs, 5), want);
}

#[test]
fn lut1_keys_sizes_round_trip_and_redaction() {
    // DPF(n, ℓ = 64): ν = 1, 16(n − 1) + ⌈2(n − 1)/8⌉ + 16.
    for n in 1..=20u32 {
        let d = (n - 1) as usize;
        let want = 16 * d + (2 * d).div_ceil(8) + 16;
        assert_eq!(LutOneRoundKey::element_bytes(n), want, "n={n}");
    }
    assert_eq!(
        (
            LutOneRoundKey::element_bytes(8),
            LutOneRoundKey::element_bytes(13)
        ),
        (130, 211)
    );
    let (k0, k1) = lut1_offline(9, 4, &mut rng(42));
    for key in [&k0, &k1] {
        let bytes = key.to_bytes();
        assert_eq!(bytes.len(), BATCH_HEADER_BYTES + 4 * 146);
        assert_eq!(bytes.len(), LutOneRoundKey::byte_len(9, 4));
        assert_eq!(&LutOneRoundKey::from_bytes(&bytes).unwrap(), key);
        assert!(matches!(
            LutOneRoundKey::from_bytes(&bytes[..bytes.len() - 1]),
            Err(FssError::Length { .. })
        ));
    }
    let table: Vec<u64> = (0..512).map(|j| 3 * j).collect();
    let parsed = (k0, LutOneRoundKey::from_bytes(&k1.to_bytes()).unwrap());
    assert_eq!(
        run_lut1(&parsed, &table, &[0, 511, 512, 100], 11),
        vec![0, 1533, 0, 300]
    );
    let mut bad = parsed.0.to_bytes();
    bad[1] = 21;
    assert_eq!(LutOneRoundKey::from_bytes(&bad), Err(FssError::Width(21)));
    let empty = lut1_offline(4, 0, &mut rng(43));
    assert!(empty.0.is_empty());
    assert_eq!(
        LutOneRoundKey::from_bytes(&empty.1.to_bytes()).unwrap(),
        empty.1
    );
    assert_eq!(
        format!("{:?}", parsed.1),
        "LutOneRoundKey { party: 1, n_bits: 9, gates: 4, .. }"
    );
}

/// Runs both rounds of the table lookup and opens the output.
fn run_lut(keys: &(LutKey, LutKey), table: &[u64], xs: &[u64], seed: u64) -> Vec<u64> {
    let [x0, x1] = share(xs, seed);
    let m = [
        lut_online_message(0, &keys.0, &x0),
        lut_online_message(1, &keys.1, &x1),
    ];
    let x_hat = add(&m[0], &m[1]);
    let y0 = lut_reveal_message(0, &keys.0, table, &x_hat);
    let y1 = lut_reveal_message(1, &keys.1, table, &x_hat);
    add(
        &lut_finish(0, &keys.0, &y0, &y1),
        &lut_finish(1, &keys.1, &y1, &y0),
    )
}

#[test]
fn lut_every_input_of_small_tables() {
    for n_bits in [1, 2, 6, 7, 8] {
        let size = 1u64 << n_bits;
        let mut r = rng(u64::from(n_bits));
        let mut table: Vec<u64> = (0..size).map(|_| r.next_u64()).collect();
        table[0] = 0;
        table[size as usize - 1] = u64::MAX;
        let xs: Vec<u64> = (0..size).chain([size, u64::MAX]).collect();
        let keys = lut_offline(n_bits, xs.len(), &mut r);
        let want: Vec<u64> = xs.iter().map(|&x| table[(x % size) as usize]).collect();
        assert_eq!(run_lut(&keys, &table, &xs, 3), want, "n={n_bits}");
    }
}

#[test]
fn lut_on_13_bits_at_the_edges() {
    let n_bits = 13;
    let table: Vec<u64> = (0..1u64 << n_bits).map(|j| j * j + 7).collect();
    let xs = [0, 1, 4095, 4096, 8190, 8191];
    let keys = lut_offline(n_bits, xs.len(), &mut rng(4));
    let want: Vec<u64> = xs.iter().map(|&x| x * x + 7).collect();
    assert_eq!(run_lut(&keys, &table, &xs, 5), want);
}

#[test]
fn gate_key_sizes_follow_the_formulas() {
    // LUT: 16(n − ν) + ⌈2(n − ν)/8⌉ + ⌈2^ν/8⌉ + 8, ν = min(n, 7).
    for n in 1..=20u32 {
        let nu = n.min(7);
        let d = (n - nu) as usize;
        let want = 16 * d + (2 * d).div_ceil(8) + (1usize << nu).div_ceil(8) + 8;
        assert_eq!(LutKey::element_bytes(n), want, "n={n}");
    }
    assert_eq!(
        (LutKey::element_bytes(8), LutKey::element_bytes(13)),
        (41, 122)
    );
    let (l0, l1) = lut_offline(13, 3, &mut rng(6));
    for key in [&l0, &l1] {
        assert_eq!(key.to_bytes().len(), BATCH_HEADER_BYTES + 3 * 122);
        assert_eq!(key.to_bytes().len(), LutKey::byte_len(13, 3));
    }
    // m-bit DReLU: the (m − 1)-bit 1-bit DCF, plus 8 bytes for party 1.
    let table = [
        (64, 926),
        (33, 423),
        (32, 406),
        (25, 293),
        (24, 276),
        (17, 163),
        (16, 146),
    ];
    for (m, bytes) in table {
        assert_eq!(DreluBitKey::element_bytes(0, m), bytes, "m={m}");
        assert_eq!(DreluBitKey::element_bytes(1, m), bytes + 8, "m={m}");
        let (k0, k1) = drelu_bit_offline(m, 2, &mut rng(7));
        assert_eq!(k0.to_bytes().len(), DreluBitKey::byte_len(0, m, 2));
        assert_eq!(k1.to_bytes().len(), BATCH_HEADER_BYTES + 2 * (bytes + 8));
    }
}

#[test]
fn gate_keys_round_trip() {
    let (d0, d1) = drelu_bit_offline(20, 5, &mut rng(8));
    for key in [&d0, &d1] {
        assert_eq!(&DreluBitKey::from_bytes(&key.to_bytes()).unwrap(), key);
    }
    let parsed = (DreluBitKey::from_bytes(&d0.to_bytes()).unwrap(), d1.clone());
    let xs = [0, 1, 1 << 19, (1 << 20) - 1, 12345];
    assert_eq!(run_drelu_bit(&parsed, &xs, 9), vec![1, 1, 0, 0, 1]);
    let (l0, l1) = lut_offline(9, 4, &mut rng(10));
    for key in [&l0, &l1] {
        assert_eq!(&LutKey::from_bytes(&key.to_bytes()).unwrap(), key);
    }
    let table: Vec<u64> = (0..512).map(|j| 3 * j).collect();
    let parsed = (l0, LutKey::from_bytes(&l1.to_bytes()).unwrap());
    assert_eq!(
        run_lut(&parsed, &table, &[0, 511, 512, 100], 11),
        vec![0, 1533, 0, 300]
    );
    let empty = lut_offline(4, 0, &mut rng(12));
    assert_eq!(LutKey::from_bytes(&empty.1.to_bytes()).unwrap(), empty.1);
}

#[test]
fn gate_keys_reject_corrupt_bytes() {
    let bytes = drelu_bit_offline(16, 3, &mut rng(13)).1.to_bytes();
    let with = |i: usize, b: u8| {
        let mut v = bytes.clone();
        v[i] = b;
        DreluBitKey::from_bytes(&v)
    };
    assert_eq!(with(0, 2), Err(FssError::Party(2)));
    assert_eq!(with(1, 1), Err(FssError::Width(1)));
    assert_eq!(with(1, 65), Err(FssError::Width(65)));
    assert!(matches!(with(0, 0), Err(FssError::Length { .. })));
    assert!(matches!(with(2, 4), Err(FssError::Length { .. })));
    assert!(matches!(with(9, 0xff), Err(FssError::Length { .. })));
    // The first gate's first seed correction with its control bit set.
    assert!(matches!(
        with(BATCH_HEADER_BYTES, bytes[BATCH_HEADER_BYTES] | 1),
        Err(FssError::Malformed(_))
    ));
    for cut in [0, 1, 10, BATCH_HEADER_BYTES, bytes.len() - 1] {
        assert!(matches!(
            DreluBitKey::from_bytes(&bytes[..cut]),
            Err(FssError::Length { .. })
        ));
    }
    let lut = lut_offline(10, 2, &mut rng(14)).0.to_bytes();
    let mut bad = lut.clone();
    bad[1] = 21;
    assert_eq!(LutKey::from_bytes(&bad), Err(FssError::Width(21)));
    bad[1] = 0;
    assert_eq!(LutKey::from_bytes(&bad), Err(FssError::Width(0)));
    assert!(matches!(
        LutKey::from_bytes(&lut[..lut.len() - 1]),
        Err(FssError::Length { .. })
    ));
    let mut r = rng(15);
    for _ in 0..200 {
        let mut v = lut.clone();
        let i = (r.next_u64() as usize) % v.len();
        v[i] ^= 1 << (r.next_u64() % 8);
        let _ = LutKey::from_bytes(&v);
        let _ = DreluBitKey::from_bytes(&v);
    }
}

#[test]
fn gate_debug_output_is_redacted() {
    let (_, d1) = drelu_bit_offline(12, 2, &mut rng(16));
    assert_eq!(
        format!("{d1:?}"),
        "DreluBitKey { party: 1, m_bits: 12, gates: 2, .. }"
    );
    let (l0, _) = lut_offline(5, 1, &mut rng(17));
    assert_eq!(
        format!("{l0:?}"),
        "LutKey { party: 0, n_bits: 5, gates: 1, .. }"
    );
}

/// Throughput figures (run with `cargo test --release -p comet-runtime
/// fss::tests_gates::gate_throughput -- --ignored --nocapture`).
#[test]
#[ignore = "timing; run in release with --nocapture"]
fn gate_throughput() {
    use std::time::Instant;
    let count = 20_000;
    let mut r = rng(18);
    let xs: Vec<u64> = (0..count).map(|_| r.next_u64()).collect();
    let start = Instant::now();
    let keys = drelu_bit_offline(64, count, &mut r);
    let offline = count as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    drelu_bit_reveal_message(0, &keys.0, &xs);
    let eval = count as f64 / start.elapsed().as_secs_f64();
    println!(
        "DReLU m=64 (1-bit DCF): offline {offline:.0} elem/s, eval {eval:.0} elem/s per party"
    );
    let lut_count = 2_000;
    let table: Vec<u64> = (0..1u64 << 13).collect();
    let start = Instant::now();
    let keys = lut_offline(13, lut_count, &mut r);
    let offline = lut_count as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    lut_reveal_message(0, &keys.0, &table, &xs[..lut_count]);
    let eval = lut_count as f64 / start.elapsed().as_secs_f64();
    println!("LUT n=13: offline {offline:.0} elem/s, eval {eval:.0} elem/s per party");
}

/// LUT round-2 throughput before (EvalAll into one `u64` per point, 2^n table reads) and
/// after (packed EvalAll, bits rotated by x̂ against nibble subset sums), batch 4096 (run with `cargo
/// test --release -p comet-runtime fss::tests_gates::lut_throughput -- --ignored
/// --nocapture`).
#[test]
#[ignore = "timing; run in release with --nocapture"]
fn lut_throughput() {
    use std::time::Instant;
    let count = 4096;
    let mut r = rng(19);
    for n_bits in [8, 13] {
        let table: Vec<u64> = (0..1usize << n_bits).map(|_| r.next_u64()).collect();
        let xs: Vec<u64> = (0..count).map(|_| r.next_u64()).collect();
        let keys = lut_offline(n_bits, count, &mut r);
        let start = Instant::now();
        let before = reveal_reference(0, &keys.0, &table, &xs);
        let before_rate = count as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        let after = lut_reveal_message(0, &keys.0, &table, &xs);
        let after_rate = count as f64 / start.elapsed().as_secs_f64();
        assert_eq!(before, after);
        println!(
            "LUT n={n_bits} batch {count}: before {before_rate:.0} elem/s, after {after_rate:.0} elem/s per party ({:.1}x)",
            after_rate / before_rate
        );
        let keys = lut1_offline(n_bits, count, &mut r);
        let start = Instant::now();
        lut1_finish(0, &keys.0, &table, &xs);
        let one_round = count as f64 / start.elapsed().as_secs_f64();
        println!("one-round LUT n={n_bits} batch {count}: {one_round:.0} elem/s per party");
    }
}
