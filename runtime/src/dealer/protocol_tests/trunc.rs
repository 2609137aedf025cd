//! The stochastic truncation ([`trunc_stochastic`]) end to end with the dealer's material:
//! the floor or one more on the whole input range `[−2^(m−2), 2^(m−2))` at every width m
//! from 20 to 64 bits, rounded up with the probability of the dropped fraction, its
//! traffic (⌈n·m/8⌉ bytes per party), material and message errors.

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
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

/// Runs the gate on `x` (signed values as ring elements) dropping `bits` at `width`.
fn run(
    d: &mut Dealer,
    x: &[u64],
    [bits, width]: [u32; 2],
    r: &mut ChaCha12Rng,
) -> (Vec<u64>, [u64; 3]) {
    let x = ArrayD::from_shape_vec(IxDyn(&[x.len()]), x.to_vec()).unwrap();
    let (x0, x1) = split(&x, r);
    let [m0, m1] = d.stochastic_trunc(x.len(), bits, width);
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

/// Signed values within the gate's bound at `width`, `[−2^(width−2), 2^(width−2))`, its
/// edges among them.
fn inputs(r: &mut ChaCha12Rng, n: usize, width: u32) -> Vec<u64> {
    let bound = 1i64 << (width - 2);
    let edges = [
        0,
        1,
        -1,
        bound - 1,
        -(bound - 1),
        -bound,
        bound - 2,
        (bound - 1) & !0xffff,
    ];
    let mut v: Vec<u64> = edges.iter().map(|e| *e as u64).collect();
    while v.len() < n {
        // magnitudes at every scale below the bound
        let magnitude = r.next_u64() >> (66 - width + (r.next_u64() % u64::from(width - 2)) as u32);
        let x = magnitude as i64;
        v.push(if r.next_u64() & 1 == 1 { x } else { -x - 1 } as u64);
    }
    v
}

/// Checks that `got` is `⌊x / 2^bits⌋` or one more, and the floor on multiples of 2^bits.
fn check_floor_or_one_more(x: &[u64], got: &[u64], bits: u32, width: u32) {
    for (x, got) in x.iter().zip(got) {
        let (x, got) = (*x as i64, *got as i64);
        assert!(
            -(1i64 << (width - 2)) <= x && x < 1i64 << (width - 2),
            "x = {x} is in range at {width} bits"
        );
        let floor = x >> bits;
        let e = got.wrapping_sub(floor);
        assert!(
            e == 0 || e == 1,
            "x = {x}, s = {bits}, m = {width}: got {got}, floor {floor}"
        );
        if x & ((1i64 << bits) - 1) == 0 {
            assert_eq!(e, 0, "x = {x} is a multiple of 2^{bits} (m = {width})");
        }
    }
}

#[test]
fn the_result_is_the_floor_or_one_more_at_every_width_from_20_to_64_bits() {
    let mut r = rng(61);
    let mut d = Dealer::from_u64(61);
    // 201 elements: n·m is not a multiple of 8 at odd widths, so the padding shows
    let n = 201;
    for width in 20..=64 {
        for bits in [1, 12, 16, width - 2] {
            let x = inputs(&mut r, n, width);
            let before = d.offline_bytes();
            let (got, traffic) = run(&mut d, &x, [bits, width], &mut r);
            check_floor_or_one_more(&x, &got, bits, width);
            let bytes = (n as u64 * u64::from(width)).div_ceil(8);
            assert_eq!(
                traffic,
                [bytes, bytes, 1],
                "⌈n·m/8⌉ bytes per party at m = {width}"
            );
            assert_eq!(
                d.offline_bytes() - before,
                16 * n as u64,
                "party 1's two shares, whatever the width"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any width, any shift it admits, any value in range: the floor or one more.
    #[test]
    fn any_value_in_range_truncates_to_the_floor_or_one_more(
        width in 20u32..=64,
        shift in 1u32..=62,
        raw in prop::collection::vec(any::<u64>(), 1..40),
        seed in any::<u64>(),
    ) {
        let bits = 1 + (shift - 1) % (width - 2);
        // the low width − 1 bits of a word, sign-extended: [−2^(m−2), 2^(m−2))
        let x: Vec<u64> = raw
            .iter()
            .map(|v| (((*v << (65 - width)) as i64) >> (65 - width)) as u64)
            .collect();
        let mut d = Dealer::from_u64(seed);
        let (got, traffic) = run(&mut d, &x, [bits, width], &mut rng(seed ^ 1));
        check_floor_or_one_more(&x, &got, bits, width);
        prop_assert_eq!(traffic[0], (x.len() as u64 * u64::from(width)).div_ceil(8));
    }
}

/// The dropped fraction `f / 2^s` is the probability of rounding up: unbiased, at a narrow
/// width as on the whole ring.
#[test]
fn it_rounds_up_with_the_probability_of_the_dropped_fraction() {
    let mut r = rng(62);
    let mut d = Dealer::from_u64(62);
    let bits = 16;
    for width in [20, 33, 64] {
        for (x, p) in [
            (-(3i64 << 16) + (1 << 14), 0.25),
            ((2 << 16) + (3 << 14), 0.75),
            ((1i64 << (width - 2)) - (1 << 15), 0.5),
        ] {
            let n = 20_000;
            let (got, _) = run(&mut d, &vec![x as u64; n], [bits, width], &mut r);
            let ups = got.iter().filter(|v| **v as i64 != x >> bits).count();
            let rate = ups as f64 / n as f64;
            // 20,000 Bernoulli draws: standard deviation ≤ 0.0036; 5σ
            assert!(
                (rate - p).abs() < 0.018,
                "x = {x}, m = {width}: up {rate}, want {p}"
            );
        }
    }
}

/// Over values spread across the range, the mean error against the real quotient
/// `x / 2^s` is zero (a floor would be biased by −1/2).
#[test]
fn the_mean_error_is_zero_over_the_range() {
    let mut r = rng(65);
    let mut d = Dealer::from_u64(65);
    let (bits, width) = (12, 24);
    let n = 40_000;
    let x = inputs(&mut r, n, width);
    let (got, _) = run(&mut d, &x, [bits, width], &mut r);
    let mean: f64 = (x.iter().zip(&got))
        .map(|(x, g)| *g as i64 as f64 - *x as i64 as f64 / f64::from(1u32 << bits))
        .sum::<f64>()
        / n as f64;
    // each error lies in (−1, 1) with mean 0 when unbiased: σ of the mean ≤ 1/√n = 0.005
    assert!(mean.abs() < 0.025, "mean error {mean}");
}

/// At 64 bits the gate is the one before widths: the message is `x_b + r_b (+ 2^62)`
/// as 8 little-endian bytes, and the material the shares of `⌊r/2^s⌋` and `msb(r)` of the
/// 64-bit mask.
#[test]
fn at_64_bits_the_message_and_material_are_the_whole_ring_gates() {
    let mut d = Dealer::from_u64(66);
    let [m0, m1] = d.stochastic_trunc(5, 16, 64);
    let [w0, w1] = [m0.words(), m1.words()];
    let x: Vec<u64> = vec![3, 1 << 40, u64::MAX, 0, 77];
    let x0 = Share(ArrayD::from_shape_vec(IxDyn(&[5]), x.clone()).unwrap());
    let (_, msg) = trunc_stochastic::start(0, &x0, m0);
    let want: Vec<u64> = (0..5)
        .map(|i| x[i].wrapping_add(w0[i]).wrapping_add(1 << 62))
        .collect();
    assert_eq!(msg, pack(&want));
    for i in 0..5 {
        let mask = w0[i].wrapping_add(w1[i]);
        assert_eq!(w0[5 + i].wrapping_add(w1[5 + i]), mask >> 16, "r_h");
        assert_eq!(w0[10 + i].wrapping_add(w1[10 + i]), mask >> 63, "msb(r)");
    }
    // and at a narrower width, the mask is the sum mod 2^m and its top bit is bit m − 1
    let [m0, m1] = d.stochastic_trunc(5, 16, 40);
    let [w0, w1] = [m0.words(), m1.words()];
    for i in 0..5 {
        let mask = w0[i].wrapping_add(w1[i]) & ((1 << 40) - 1);
        assert_eq!(w0[5 + i].wrapping_add(w1[5 + i]), mask >> 16, "r_h");
        assert_eq!(w0[10 + i].wrapping_add(w1[10 + i]), mask >> 39, "msb_40(r)");
    }
}

#[test]
fn the_message_is_packed_at_the_width() {
    let mut d = Dealer::from_u64(67);
    for (n, width) in [(1, 20), (3, 21), (7, 37), (13, 63), (8, 20), (5, 64)] {
        let [m0, _] = d.stochastic_trunc(n, 16, width);
        let x = Share(ArrayD::from_shape_vec(IxDyn(&[n]), vec![9; n]).unwrap());
        let (_, msg) = trunc_stochastic::start(0, &x, m0);
        assert_eq!(
            msg.len(),
            (n * width as usize).div_ceil(8),
            "n {n} m {width}"
        );
        assert_eq!(
            msg.len(),
            trunc_stochastic::message_len(n, width, 0),
            "n {n} m {width}"
        );
    }
}

#[test]
fn a_short_peer_message_is_an_error_and_material_never_prints_values() {
    let mut d = Dealer::from_u64(63);
    let [m0, _] = d.stochastic_trunc(3, 16, 64);
    let shown = format!("{m0:?}");
    assert!(
        shown.contains("elements: 3") && shown.contains("width: 64") && !shown.contains("r:"),
        "{shown}"
    );
    let x = Share(ArrayD::from_shape_vec(IxDyn(&[3]), vec![1, 2, 3]).unwrap());
    let (st, msg) = trunc_stochastic::start(0, &x, m0);
    assert_eq!(msg.len(), 24);
    let e = trunc_stochastic::finish(st, &msg[..16])
        .unwrap_err()
        .to_string();
    assert!(e.contains("24") && e.contains("16"), "{e}");
    // at 21 bits, 3 elements are 63 bits: 8 bytes, the last bit padding that must be 0
    let [m0, _] = d.stochastic_trunc(3, 16, 21);
    let (st, msg) = trunc_stochastic::start(0, &x, m0.clone());
    assert_eq!(msg.len(), 8);
    let e = trunc_stochastic::finish(st, &msg[..7])
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected 8 bytes, got 7"), "{e}");
    let (st, mut msg) = trunc_stochastic::start(0, &x, m0);
    msg[7] |= 0x80;
    assert!(trunc_stochastic::finish(st, &msg).is_err(), "dirty padding");
}

#[test]
fn a_shift_outside_1_to_62_or_a_width_below_the_shift_plus_2_is_refused() {
    for bits in [0, 63, 64] {
        let e = trunc_stochastic::check_bits(bits).unwrap_err().to_string();
        assert!(e.contains("1 to 62"), "{e}");
        let e = trunc_stochastic::check_width(bits, 64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 to 62"), "{e}");
    }
    for (bits, width) in [(16, 17), (16, 0), (1, 2), (16, 65), (62, 63)] {
        let e = trunc_stochastic::check_width(bits, width)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("at width {width}"))
                && e.contains(&format!("{} to 64 bits", bits + 2)),
            "{e}"
        );
    }
    for (bits, width) in [(16, 18), (1, 3), (62, 64), (12, 20)] {
        trunc_stochastic::check_width(bits, width).unwrap();
    }
}

/// A gathered subset (the active entries of a sparse FFN) truncates those entries alone,
/// at any width; in blocks, each block's message is packed on its own.
#[test]
fn gathered_material_truncates_the_active_entries() {
    let mut r = rng(64);
    let mut d = Dealer::from_u64(64);
    for (width, block) in [(64, 0), (21, 0), (21, 5), (30, 3), (64, 4)] {
        let x = inputs(&mut r, 60, width);
        // blocks of 5 entries, two of every three active
        let idx: Vec<usize> = (0..60).filter(|i| (i / 5) % 3 != 1).collect();
        let active: Vec<u64> = idx.iter().map(|&i| x[i]).collect();
        let xa = ArrayD::from_shape_vec(IxDyn(&[active.len()]), active.clone()).unwrap();
        let (x0, x1) = split(&xa, &mut r);
        let [m0, m1] = d.stochastic_trunc(x.len(), 16, width);
        let [g0, g1] = [m0.gather(&idx), m1.gather(&idx)];
        assert_eq!(g0.len(), idx.len());
        let run = both([(g0, x0), (g1, x1)], |p, ch, (m, x)| {
            let (st, msg) = trunc_stochastic::start_in_blocks(p, &x, m, block);
            let len = msg.len();
            let out = trunc_stochastic::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap();
            (out, len)
        });
        let out = reconstruct(&run.0.output.0, &run.1.output.0);
        check_floor_or_one_more(&active, out.as_slice().unwrap(), 16, width);
        let n = idx.len();
        let want = match block {
            0 => (n * width as usize).div_ceil(8),
            b => (n / b) * (b * width as usize).div_ceil(8) + (n % b * width as usize).div_ceil(8),
        };
        assert_eq!(run.0.output.1, want, "m {width} block {block}");
        assert_eq!(
            run.0.output.1,
            trunc_stochastic::message_len(n, width, block)
        );
    }
}

/// A comparison of the truncation's output that reads the truncation's opening
/// (`Protocol::DreluOpened`): keys dealt on the truncation's masks `⌊r / 2^s⌋`, nothing
/// sent, and the bits `[t ≥ c]` of the very output t the truncation gave (whichever way
/// it rounded), at comparison widths up to the opening's `m − s` bits; then a select of t
/// by those bits (`Protocol::MuxOpened`, stacked on a leading axis as the `lut`
/// activations select) whose `x − a` is the same opening: only the bits travel, and it
/// gives `[t ≥ c]·t` mod 2^w.
#[test]
fn a_comparison_reads_the_truncations_opening() {
    let mut r = rng(67);
    let mut d = Dealer::from_u64(68);
    for (width, cmp) in [(40, 24), (39, 23), (64, 48), (30, 12)] {
        let s = 16;
        // inputs whose truncation, minus each threshold, fits the comparison's width:
        // |t| < 2^(w−5), |c| ≤ 2^(w−5)
        let x: Vec<u64> = inputs(&mut r, 300, cmp + s - 3);
        let c = 1i64 << (cmp - 5);
        let thresholds = [0, -c, c - 3, c];
        let xa = ArrayD::from_shape_vec(IxDyn(&[x.len()]), x.clone()).unwrap();
        let (x0, x1) = split(&xa, &mut r);
        let mut masks = Vec::new();
        let [m0, m1] = trunc_stochastic::deal_batches_masks(
            &mut d,
            x.len(),
            [s, width],
            true,
            None,
            Some(&mut masks),
        )
        .unwrap();
        let [k0, k1] = drelu::deal_batches_on_masks(&mut d, &masks, cmp, true, None).unwrap();
        let (n, k) = (x.len(), thresholds.len());
        let a = ArrayD::from_shape_vec(
            IxDyn(&[n]),
            masks.iter().map(|r| r.wrapping_neg()).collect(),
        )
        .unwrap();
        // the select reads the bits stacked as [k, n], x broadcast along k
        let [s0, s1] = bit_mux::deal_on_mask(&mut d, &[k, n], &[n], &a);
        let ts: Vec<u64> = thresholds.iter().map(|t| *t as u64).collect();
        let run = both(
            [(m0, k0, s0, x0), (m1, k1, s1, x1)],
            |p, ch, (m, key, sel, x)| {
                let (st, msg) = trunc_stochastic::start(p, &x, m);
                let peer = round_bytes(ch, &msg).unwrap();
                let o = trunc_stochastic::finish_opened(st, &peer).unwrap();
                let low: Vec<u64> = o.opened.iter().map(|v| v & ((1 << cmp) - 1)).collect();
                let bits = drelu::finish_opened(p, &key, &low, &[n], &ts).unwrap();
                let shaped = |v: Vec<u64>| ArrayD::from_shape_vec(IxDyn(&[n]), v).unwrap();
                let stacked = Share(bits.0.t().as_standard_layout().to_owned());
                let (st, msg) = mux::start_opened(p, &stacked, shaped(low), shaped(o.h), sel, cmp);
                let sent = msg.len();
                let selected = mux::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap();
                (o.share, bits, selected, sent)
            },
        );
        assert_eq!(
            run.0.stats.online.rounds, 2,
            "the truncation's and the select's"
        );
        assert_eq!(
            run.0.output.3,
            (n * k).div_ceil(8),
            "the select sends its bits only"
        );
        let t = reconstruct(&run.0.output.0, &run.1.output.0);
        let bits = reconstruct(&run.0.output.1, &run.1.output.1);
        let selected = reconstruct(&run.0.output.2, &run.1.output.2);
        check_floor_or_one_more(&x, t.as_slice().unwrap(), s, width);
        for (i, t) in t.iter().enumerate() {
            for (j, c) in thresholds.iter().enumerate() {
                let want = u64::from(*t as i64 >= *c);
                assert_eq!(
                    bits[[i, j]],
                    want,
                    "m {width} w {cmp}: t = {}, c = {c}",
                    *t as i64
                );
                let low = |v: u64| v & ((1 << cmp) - 1);
                assert_eq!(low(selected[[j, i]]), low(want.wrapping_mul(*t)), "select");
            }
        }
    }
}
