//! The stochastic truncation ([`trunc_stochastic`]) end to end with the dealer's material:
//! the floor or one more on the whole input range `[−2^62, 2^62)`, rounded up with the
//! probability of the dropped fraction, its traffic, material and message errors.

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::both;
use crate::dealer::Dealer;
use crate::protocols::driver::{PartyRun, round_bytes};
use crate::protocols::share::{reconstruct, split};
use crate::protocols::*;

fn rng(seed: u64) -> ChaCha12Rng {
    ChaCha12Rng::seed_from_u64(seed)
}

/// Runs the gate on `x` (signed values as ring elements) dropping `bits`.
fn run(d: &mut Dealer, x: &[u64], bits: u32, r: &mut ChaCha12Rng) -> (Vec<u64>, [u64; 3]) {
    let x = ArrayD::from_shape_vec(IxDyn(&[x.len()]), x.to_vec()).unwrap();
    let (x0, x1) = split(&x, r);
    let [m0, m1] = d.stochastic_trunc(x.len(), bits);
    let run: (PartyRun<Share>, PartyRun<Share>) = both([(m0, x0), (m1, x1)], |p, ch, (m, x)| {
        let (st, msg) = trunc_stochastic::start(p, &x, m);
        trunc_stochastic::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
    });
    let (s0, s1) = (run.0.stats.online, run.1.stats.online);
    assert_eq!(s0.rounds, s1.rounds);
    let out = reconstruct(&run.0.output, &run.1.output);
    let traffic = [s0.payload_bytes_sent, s1.payload_bytes_sent, s0.rounds];
    (out.iter().copied().collect(), traffic)
}

/// Signed values within the gate's bound, its edges among them.
fn inputs(r: &mut ChaCha12Rng, n: usize) -> Vec<u64> {
    let bound = 1i64 << 62;
    let edges = [
        0,
        1,
        -1,
        bound - 1,
        -bound,
        -bound + 1,
        12345 << 20,
        -(98765 << 16),
    ];
    let mut v: Vec<u64> = edges.iter().map(|e| *e as u64).collect();
    while v.len() < n {
        let magnitude = r.next_u64() >> (2 + r.next_u64() % 60);
        let x = magnitude as i64;
        v.push(if r.next_u64() & 1 == 1 { x } else { -x - 1 } as u64);
    }
    v
}

#[test]
fn the_result_is_the_floor_or_one_more_on_the_whole_range() {
    let mut r = rng(61);
    let mut d = Dealer::from_u64(61);
    for bits in [1, 12, 16, 32, 61, 62] {
        let x = inputs(&mut r, 400);
        let before = d.offline_bytes();
        let (got, traffic) = run(&mut d, &x, bits, &mut r);
        for (x, got) in x.iter().zip(&got) {
            let floor = (*x as i64) >> bits;
            let e = (*got as i64).wrapping_sub(floor);
            assert!(
                e == 0 || e == 1,
                "x = {}, s = {bits}: got {}, floor {floor}",
                *x as i64,
                *got as i64
            );
            if (*x as i64) & ((1i64 << bits) - 1) == 0 {
                assert_eq!(e, 0, "x = {} is a multiple of 2^{bits}", *x as i64);
            }
        }
        assert_eq!(
            traffic,
            [8 * 400, 8 * 400, 1],
            "64 bits per element and party"
        );
        assert_eq!(d.offline_bytes() - before, 16 * 400, "party 1's two shares");
    }
}

/// The dropped fraction `f / 2^s` is the probability of rounding up: unbiased.
#[test]
fn it_rounds_up_with_the_probability_of_the_dropped_fraction() {
    let mut r = rng(62);
    let mut d = Dealer::from_u64(62);
    let bits = 16;
    for (x, p) in [
        (-(3i64 << 16) + (1 << 14), 0.25),
        ((7 << 16) + (3 << 14), 0.75),
    ] {
        let n = 20_000;
        let (got, _) = run(&mut d, &vec![x as u64; n], bits, &mut r);
        let ups = got.iter().filter(|v| **v as i64 != x >> bits).count();
        let rate = ups as f64 / n as f64;
        // 20,000 Bernoulli draws: standard deviation ≤ 0.0035; 5σ
        assert!((rate - p).abs() < 0.018, "x = {x}: up {rate}, want {p}");
    }
}

#[test]
fn a_short_peer_message_is_an_error_and_material_never_prints_values() {
    let mut d = Dealer::from_u64(63);
    let [m0, _] = d.stochastic_trunc(3, 16);
    let shown = format!("{m0:?}");
    assert!(
        shown.contains("elements: 3") && !shown.contains("r:"),
        "{shown}"
    );
    let x = Share(ArrayD::from_shape_vec(IxDyn(&[3]), vec![1, 2, 3]).unwrap());
    let (st, msg) = trunc_stochastic::start(0, &x, m0);
    assert_eq!(msg.len(), 24);
    let e = trunc_stochastic::finish(st, &msg[..16])
        .unwrap_err()
        .to_string();
    assert!(e.contains("24") && e.contains("16"), "{e}");
}

#[test]
fn a_shift_outside_1_to_62_is_refused() {
    for bits in [0, 63, 64] {
        let e = trunc_stochastic::check_bits(bits).unwrap_err().to_string();
        assert!(e.contains("1 to 62"), "{e}");
    }
}

/// A gathered subset (the active entries of a sparse FFN) truncates those entries alone.
#[test]
fn gathered_material_truncates_the_active_entries() {
    let mut r = rng(64);
    let mut d = Dealer::from_u64(64);
    let x = inputs(&mut r, 40);
    let idx: Vec<usize> = (0..40).filter(|i| i % 3 != 1).collect();
    let active: Vec<u64> = idx.iter().map(|&i| x[i]).collect();
    let xa = ArrayD::from_shape_vec(IxDyn(&[active.len()]), active.clone()).unwrap();
    let (x0, x1) = split(&xa, &mut r);
    let [m0, m1] = d.stochastic_trunc(x.len(), 16);
    let [g0, g1] = [m0.gather(&idx), m1.gather(&idx)];
    assert_eq!(g0.len(), idx.len());
    let run = both([(g0, x0), (g1, x1)], |p, ch, (m, x)| {
        let (st, msg) = trunc_stochastic::start(p, &x, m);
        trunc_stochastic::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
    });
    let out = reconstruct(&run.0.output, &run.1.output);
    for (x, got) in active.iter().zip(out.iter()) {
        let e = (*got as i64).wrapping_sub((*x as i64) >> 16);
        assert!(e == 0 || e == 1, "x = {}: got {}", *x as i64, *got as i64);
    }
}
