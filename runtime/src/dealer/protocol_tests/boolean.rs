//! The boolean (GMW) protocols against the plaintext on seeded random inputs with the
//! ring's range edges, split into shares both at random and so that the carry chain of the
//! sign circuit runs through every bit; and their message and material sizes.

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::both;
use crate::dealer::Dealer;
use crate::protocols::driver::{PartyRun, round_bytes};
use crate::protocols::share::{reconstruct, split};
use crate::protocols::xor::{reconstruct_xor, split_xor};
use crate::protocols::*;

fn rng(seed: u64) -> ChaCha12Rng {
    ChaCha12Rng::seed_from_u64(seed)
}

/// Signed edges: 0, ±1, ±2, ±2^62, the extremes and their neighbours, ±2^32.
const EDGES: [i64; 14] = [
    0,
    1,
    -1,
    2,
    -2,
    1 << 62,
    -(1 << 62),
    i64::MIN,
    i64::MIN + 1,
    i64::MAX,
    i64::MAX - 1,
    (1 << 62) - 1,
    1 << 32,
    -(1 << 32),
];

/// The edges, then uniform ring values and small fixed-point-like ones, `n` in all.
fn values(r: &mut ChaCha12Rng, n: usize) -> Vec<u64> {
    let mut v: Vec<u64> = EDGES.iter().map(|&e| e as u64).collect();
    while v.len() < n {
        let u = r.next_u64();
        v.push(if v.len().is_multiple_of(2) {
            u
        } else {
            (u as i64 >> 40) as u64
        });
    }
    v.truncate(n);
    v
}

/// Shares of `x`: at random, or adversarially (all of `x` at one party; or `x0 = −1`,
/// `x1 = x + 1`, so that adding the low bits carries through every position).
fn shares(x: &ArrayD<u64>, how: usize, r: &mut ChaCha12Rng) -> (Share, Share) {
    let fixed = |c: u64| {
        let x0 = ArrayD::from_elem(IxDyn(x.shape()), c);
        (Share(x0), Share(x.mapv(|v| v.wrapping_sub(c))))
    };
    match how {
        0 => split(x, r),
        1 => fixed(0),
        2 => fixed(u64::MAX),
        _ => fixed(1 << 63),
    }
}

/// Both parties' sent bytes, and the rounds (equal at both).
fn traffic<T>(r: &(PartyRun<T>, PartyRun<T>)) -> (u64, u64, u64) {
    let (s0, s1) = (r.0.stats.online, r.1.stats.online);
    assert_eq!(s0.rounds, s1.rounds);
    (s0.payload_bytes_sent, s1.payload_bytes_sent, s0.rounds)
}

fn run_gmw(d: &mut Dealer, x0: Share, x1: Share) -> (ArrayD<u64>, (u64, u64, u64)) {
    let [m0, m1] = d.gmw_drelu(x0.len());
    let r = both([(m0, x0), (m1, x1)], |p, ch, (m, x)| {
        let (mut st, mut msg) = gmw::start(p, &x, m);
        loop {
            let peer = round_bytes(ch, &msg).unwrap();
            match gmw::step(st, &peer).unwrap() {
                Step::Next(s, m) => (st, msg) = (s, m),
                Step::Done(bits) => return bits,
            }
        }
    });
    (reconstruct_xor(&r.0.output, &r.1.output), traffic(&r))
}

#[test]
fn xor_shares_and_boolean_material_never_print_values() {
    let s = XorShare(ArrayD::from_elem(IxDyn(&[2, 3]), 0xdead_beef));
    assert_eq!(format!("{s:?}"), "XorShare([..] shape [2, 3])");
    let mut d = Dealer::from_u64(1);
    let [g, _] = d.gmw_drelu(2);
    let [t, _] = d.bit_triples(2, 64);
    let [b, _] = d.b2a(2);
    let [m, _] = d.bit_mux(&[2], &[2]);
    let text = format!("{g:?}{t:?}{b:?}{m:?}");
    for v in g
        .input_mask
        .iter()
        .chain(&t.a)
        .chain(&b.rho)
        .chain(m.a.iter())
    {
        assert!(!text.contains(&v.to_string()), "{text}");
    }
}

#[test]
fn and_gates_match_the_plaintext_on_every_lane_width() {
    let mut r = rng(20);
    let mut d = Dealer::from_u64(20);
    for lanes in [1, 5, 8, 63, 64] {
        let n = 37;
        let x = ArrayD::from_shape_simple_fn(IxDyn(&[n]), || r.next_u64());
        let y = ArrayD::from_shape_simple_fn(IxDyn(&[n]), || r.next_u64());
        let ([x0, x1], [y0, y1]) = (split_xor(&x, lanes, &mut r), split_xor(&y, lanes, &mut r));
        let before = d.offline_bytes();
        let [m0, m1] = d.bit_triples(n, lanes);
        let run = both([(m0, x0, y0), (m1, x1, y1)], |p, ch, (m, x, y)| {
            let (st, msg) = xor::and_start(p, &x, &y, m);
            xor::and_finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
        });
        let mask = bits::low(lanes);
        let z = reconstruct_xor(&run.0.output, &run.1.output);
        assert_eq!(
            z,
            ndarray::Zip::from(&x)
                .and(&y)
                .map_collect(|a, b| a & b & mask)
        );
        let per = (2 * lanes).div_ceil(8) as u64;
        assert_eq!(
            traffic(&run),
            (per * n as u64, per * n as u64, 1),
            "{lanes}"
        );
        let correction = u64::from(lanes.div_ceil(8)) * n as u64;
        assert_eq!(d.offline_bytes() - before, correction);
    }
}

#[test]
fn gmw_circuit_figures_add_up() {
    let bits: Vec<u32> = (0..gmw::ROUNDS).map(gmw::opened_bits).collect();
    assert_eq!(bits, [63, 92, 47, 23, 11, 5, 2]);
    assert_eq!(gmw::MESSAGE_BYTES_PER_ELEMENT, 8 + 12 + 6 + 3 + 2 + 1 + 1);
    assert_eq!(gmw::AND_GATES_PER_ELEMENT, 181);
    assert_eq!(gmw::CORRECTION_BYTES_PER_ELEMENT, 23);
    // the groups halve from 63 to 1, an odd top group carried
    let mut groups = gmw::LOW_BITS;
    for q in gmw::LEVEL_PAIRS {
        assert_eq!(groups / 2, q);
        groups = groups.div_ceil(2);
    }
    assert_eq!(groups, 1);
}

#[test]
fn gmw_drelu_matches_the_plaintext_on_the_whole_ring() {
    let mut r = rng(21);
    let mut d = Dealer::from_u64(21);
    for how in 0..4 {
        for shape in [&[64][..], &[3, 5], &[1]] {
            let n: usize = shape.iter().product();
            let x = ArrayD::from_shape_vec(IxDyn(shape), values(&mut r, n)).unwrap();
            let (x0, x1) = shares(&x, how, &mut r);
            let before = d.offline_bytes();
            let (bits, (sent0, sent1, rounds)) = run_gmw(&mut d, x0, x1);
            assert_eq!(bits, x.mapv(|v| u64::from(v as i64 >= 0)), "split {how}");
            let bytes = (gmw::MESSAGE_BYTES_PER_ELEMENT * n) as u64;
            assert_eq!((sent0, sent1, rounds), (bytes, bytes, 7));
            let dealt = (gmw::CORRECTION_BYTES_PER_ELEMENT * n) as u64;
            assert_eq!(d.offline_bytes() - before, dealt);
        }
    }
}

/// A wrong carry at any single position would flip the sign of some `x0 + x1`: every
/// `x0 = 2^k − 1` against `x1 = 1` (a carry from bit 0 up to bit k), and its neighbours.
#[test]
fn gmw_drelu_follows_every_carry_chain() {
    let mut d = Dealer::from_u64(22);
    let mut x0 = Vec::new();
    let mut x1 = Vec::new();
    for k in 0..64 {
        for (a, b) in [(bits::low(k), 1u64), (bits::low(k), 0), (1 << k, 1 << k)] {
            for sign in [0, 1u64 << 63] {
                x0.push(a ^ sign);
                x1.push(b);
            }
        }
    }
    let n = x0.len();
    let x: Vec<u64> = x0
        .iter()
        .zip(&x1)
        .map(|(a, b)| a.wrapping_add(*b))
        .collect();
    let sh = |v: Vec<u64>| Share(ArrayD::from_shape_vec(IxDyn(&[n]), v).unwrap());
    let (bits, _) = run_gmw(&mut d, sh(x0), sh(x1));
    let want: Vec<u64> = x.iter().map(|v| u64::from(*v as i64 >= 0)).collect();
    assert_eq!(bits.iter().copied().collect::<Vec<_>>(), want);
}

#[test]
fn b2a_turns_xor_bits_into_arithmetic_bits() {
    let mut r = rng(23);
    let mut d = Dealer::from_u64(23);
    let b = ArrayD::from_shape_simple_fn(IxDyn(&[4, 9]), || r.next_u64() & 1);
    let [b0, b1] = split_xor(&b, 1, &mut r);
    let [m0, m1] = d.b2a(36);
    let run = both([(m0, b0), (m1, b1)], |p, ch, (m, b)| {
        let (st, msg) = b2a::start(p, &b, m);
        b2a::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
    });
    assert_eq!(reconstruct(&run.0.output, &run.1.output), b);
    assert_eq!(traffic(&run), (36, 36, 1), "a byte per bit and party");
    assert_eq!(d.offline_bytes(), 8 * 36);
}

#[test]
fn bit_mux_selects_with_xor_bits_and_broadcasting() {
    let mut r = rng(24);
    let mut d = Dealer::from_u64(24);
    let cases: [(&[usize], &[usize]); 4] = [
        (&[6], &[6]),
        (&[3, 1], &[3, 4]),
        (&[4], &[2, 4]),
        (&[2, 1, 3], &[4, 1]),
    ];
    for (sb, sx) in cases {
        let b = ArrayD::from_shape_simple_fn(IxDyn(sb), || r.next_u64() & 1);
        let x = ArrayD::from_shape_simple_fn(IxDyn(sx), || r.next_u64());
        let [b0, b1] = split_xor(&b, 1, &mut r);
        let (x0, x1) = split(&x, &mut r);
        let before = d.offline_bytes();
        let [m0, m1] = d.bit_mux(sb, sx);
        let run = both([(m0, b0, x0), (m1, b1, x1)], |p, ch, (m, b, x)| {
            let (st, msg) = bit_mux::start(p, &b, &x, m);
            bit_mux::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
        });
        let z = reconstruct(&run.0.output, &run.1.output);
        assert_eq!(z, ring_ops::mul(b.view(), x.view()), "{sb:?} · {sx:?}");
        let (nb, nx, nz) = (b.len() as u64, x.len() as u64, z.len() as u64);
        assert_eq!(traffic(&run), (nb + 8 * nx, nb + 8 * nx, 1));
        assert_eq!(d.offline_bytes() - before, 8 * (nb + nz));
    }
}

/// ReLU with GMW: the comparison's XOR bit selects `x` directly.
#[test]
fn relu_is_gmw_drelu_then_bit_mux() {
    let mut r = rng(25);
    let mut d = Dealer::from_u64(25);
    let x = ArrayD::from_shape_vec(IxDyn(&[5, 6]), values(&mut r, 30)).unwrap();
    let (x0, x1) = split(&x, &mut r);
    let [g0, g1] = d.gmw_drelu(30);
    let [m0, m1] = d.bit_mux(&[5, 6], &[5, 6]);
    let run = both([(g0, m0, x0), (g1, m1, x1)], |p, ch, (g, m, x)| {
        let (mut st, mut msg) = gmw::start(p, &x, g);
        let bits = loop {
            match gmw::step(st, &round_bytes(ch, &msg).unwrap()).unwrap() {
                Step::Next(s, next) => (st, msg) = (s, next),
                Step::Done(bits) => break bits,
            }
        };
        let (st, msg) = bit_mux::start(p, &bits, &x, m);
        bit_mux::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
    });
    let relu = x.mapv(|v| if v as i64 >= 0 { v } else { 0 });
    assert_eq!(reconstruct(&run.0.output, &run.1.output), relu);
    assert_eq!(traffic(&run).2, 8);
}

fn run_row_max(d: &mut Dealer, x: &ArrayD<u64>, gmw: bool, r: &mut ChaCha12Rng) -> ArrayD<u64> {
    let t = *x.shape().last().unwrap();
    let rows = x.len() / t;
    let mut levels = [Vec::new(), Vec::new()];
    let mut k = t;
    while k > 1 {
        let pairs = [rows, k / 2];
        let [a, b] = if gmw {
            let [g0, g1] = d.gmw_drelu(rows * (k / 2));
            let [m0, m1] = d.bit_mux(&pairs, &pairs);
            [
                row_max::LevelMaterial::Gmw(g0, m0),
                row_max::LevelMaterial::Gmw(g1, m1),
            ]
        } else {
            let [k0, k1] = d.sign_select(rows * (k / 2), 64, true);
            [
                row_max::LevelMaterial::Fss(k0),
                row_max::LevelMaterial::Fss(k1),
            ]
        };
        levels[0].push(a);
        levels[1].push(b);
        k = k.div_ceil(2);
    }
    let (x0, x1) = split(x, r);
    let [l0, l1] = levels;
    let run = both([(l0, x0), (l1, x1)], |p, ch, (l, x)| {
        let (mut st, mut msg) = row_max::start(p, &x, l);
        loop {
            match row_max::step(st, &round_bytes(ch, &msg).unwrap()).unwrap() {
                Step::Next(s, next) => (st, msg) = (s, next),
                Step::Done(max) => return max,
            }
        }
    });
    let levels = comet_ir::poly::ceil_log2(t as u64) as u64;
    assert_eq!(traffic(&run).2, levels * row_max::rounds_per_level(gmw));
    reconstruct(&run.0.output, &run.1.output)
}

#[test]
fn row_max_with_gmw_or_fss_comparisons() {
    let mut r = rng(26);
    let mut d = Dealer::from_u64(26);
    for gmw in [true, false] {
        for shape in [&[3, 2][..], &[2, 5], &[4, 8], &[2, 1, 7]] {
            let n: usize = shape.iter().product();
            let v: Vec<u64> = (0..n)
                .map(|_| ((r.next_u64() as i64) >> 30) as u64)
                .collect();
            let x = ArrayD::from_shape_vec(IxDyn(shape), v).unwrap();
            let got = run_row_max(&mut d, &x, gmw, &mut r);
            let want = x.map_axis(ndarray::Axis(shape.len() - 1), |row| {
                row.iter().map(|&v| v as i64).max().unwrap() as u64
            });
            assert_eq!(
                got,
                want.insert_axis(ndarray::Axis(shape.len() - 1)),
                "{shape:?}"
            );
        }
    }
}

#[test]
fn a_short_boolean_message_is_an_error() {
    let mut d = Dealer::from_u64(27);
    let [m0, _] = d.gmw_drelu(3);
    let x = Share(ArrayD::zeros(IxDyn(&[3])));
    let (st, msg) = gmw::start(0, &x, m0);
    assert_eq!(msg.len(), 3 * 8);
    assert!(gmw::step(st, &msg[1..]).is_err());
    let [b0, _] = d.b2a(3);
    let (st, _) = b2a::start(0, &XorShare(ArrayD::zeros(IxDyn(&[3]))), b0);
    assert!(b2a::finish(st, &[0; 4]).is_err());
}
