//! Correctness of every protocol against the plaintext result, on seeded random inputs
//! that include negative fixed-point values and the ring's range edges. Exact byte and
//! round counts against the cost model are checked in the workspace's
//! `tests/protocol_costs.rs` (the compiler is not a dependency of this crate).

use comet_ir::NodeId;
use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::both;
use crate::dealer::Dealer;
use crate::protocols::driver::{PartyRun, round, round_bytes, setup_round};
use crate::protocols::share::{reconstruct, share_own_input, share_peer_input, split};
use crate::protocols::*;
use crate::ring::{decode, encode};

const FRAC: u32 = 16;
const EDGES: [u64; 6] = [0, 1, u64::MAX, 1 << 63, (1 << 63) - 1, 1 << 32];

fn rng(seed: u64) -> ChaCha12Rng {
    ChaCha12Rng::seed_from_u64(seed)
}

/// Uniform ring elements, the first few replaced by the range edges.
fn ring_tensor(rng: &mut ChaCha12Rng, shape: &[usize]) -> ArrayD<u64> {
    let mut x = ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.next_u64());
    for (v, e) in x
        .iter_mut()
        .zip(EDGES.iter().skip(rng.next_u64() as usize % 3))
    {
        *v = *e;
    }
    x
}

/// Fixed-point values in [−bound, bound], with ±bound, 0 and ±1 ulp among them.
fn fixed_tensor(rng: &mut ChaCha12Rng, shape: &[usize], bound: f64) -> ArrayD<u64> {
    let edges = [encode(-bound, FRAC), encode(bound, FRAC), 0, 1, u64::MAX];
    let mut x = ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        encode((2.0 * u - 1.0) * bound, FRAC)
    });
    for (v, e) in x.iter_mut().zip(edges) {
        *v = e;
    }
    x
}

fn open(r: (PartyRun<Share>, PartyRun<Share>)) -> ArrayD<u64> {
    reconstruct(&r.0.output, &r.1.output)
}

fn zip(a: &ArrayD<u64>, b: &ArrayD<u64>, f: impl Fn(u64, u64) -> u64) -> ArrayD<u64> {
    ring_ops::zip_with(a.view(), b.view(), f)
}

fn plain_matmul(a: &ArrayD<u64>, b: &ArrayD<u64>) -> ArrayD<u64> {
    // independent of ring::matmul: the naive triple loop on [.., m, k] · [.., k, n]
    let (ra, rb) = (a.ndim(), b.ndim());
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    let batch: usize = a.shape()[..ra - 2].iter().product();
    let (av, bv) = (
        a.iter().copied().collect::<Vec<_>>(),
        b.iter().copied().collect::<Vec<_>>(),
    );
    let mut out = Vec::with_capacity(batch * m * n);
    for t in 0..batch {
        let b_off = if rb == 2 { 0 } else { t * k * n };
        for i in 0..m {
            for j in 0..n {
                let s = (0..k).fold(0u64, |s, l| {
                    s.wrapping_add(av[t * m * k + i * k + l].wrapping_mul(bv[b_off + l * n + j]))
                });
                out.push(s);
            }
        }
    }
    let mut shape = a.shape()[..ra - 1].to_vec();
    shape.push(n);
    ring_ops::from_flat(&shape, &out)
}

#[test]
fn share_debug_shows_the_shape_only() {
    let s = Share(ArrayD::from_elem(IxDyn(&[3, 4]), 0xdead_beef));
    assert_eq!(format!("{s:?}"), "Share([..] shape [3, 4])");
    let mut d = Dealer::from_u64(1);
    let [m0, _] = d.beaver_mul(&[2], &[2]);
    let text = format!("{m0:?}");
    assert!(text.contains("shape [2]"), "{text}");
    assert!(
        !m0.a.iter().any(|v| text.contains(&v.to_string())),
        "{text}"
    );
}

#[test]
fn pack_is_little_endian_and_unpack_inverts_it() {
    assert_eq!(
        pack(&[1, 0x0102]),
        [1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]
    );
    let msg = vec![0, u64::MAX, 1 << 63];
    assert_eq!(unpack(&pack(&msg)).unwrap(), msg);
    assert!(unpack(&[0; 7]).is_err());
}

#[test]
fn input_sharing_from_a_seed_reconstructs_the_input() {
    let mut r = rng(2);
    for seed in 0..8u8 {
        let x = ring_tensor(&mut r, &[3, 5]);
        let s0 = share_own_input(&x, &[seed; 32]);
        let s1 = share_peer_input(&[3, 5], &[seed; 32]);
        assert_eq!(reconstruct(&s0, &s1), x);
    }
}

#[test]
fn reveal_to_one_party_or_both() {
    let mut r = rng(3);
    for receiver in [Some(0), Some(1), None] {
        let x = ring_tensor(&mut r, &[4, 3]);
        let (x0, x1) = split(&x, &mut r);
        let (p0, p1) = both([x0, x1], |party, ch, x| {
            let (st, msg) = reveal::start(party, receiver, &x);
            reveal::finish(st, &round(ch, &msg).unwrap()).unwrap()
        });
        let expect = |p| receiver.is_none_or(|q| q == p).then(|| x.clone());
        assert_eq!((p0.output, p1.output), (expect(0), expect(1)));
        let sent = p0.stats.online.payload_bytes_sent + p1.stats.online.payload_bytes_sent;
        let openings = if receiver.is_none() { 2 } else { 1 };
        assert_eq!(sent, openings * 8 * 12);
        assert_eq!((p0.stats.online.rounds, p1.stats.online.rounds), (1, 1));
    }
}

fn run_mul(d: &mut Dealer, x: &ArrayD<u64>, y: &ArrayD<u64>, r: &mut ChaCha12Rng) -> ArrayD<u64> {
    let mats = d.beaver_mul(x.shape(), y.shape());
    let ((x0, x1), (y0, y1)) = (split(x, r), split(y, r));
    open(both(
        [(mats[0].clone(), x0, y0), (mats[1].clone(), x1, y1)],
        |p, ch, (m, x, y)| {
            let (st, msg) = beaver_mul::start(p, &x, &y, m);
            beaver_mul::finish(st, &round(ch, &msg).unwrap()).unwrap()
        },
    ))
}

#[test]
fn beaver_mul_is_exact_in_the_ring_with_broadcasting() {
    let mut r = rng(4);
    let mut d = Dealer::from_u64(4);
    let shapes: [(&[usize], &[usize]); 5] = [
        (&[7], &[7]),
        (&[3, 4], &[3, 4]),
        (&[3, 4], &[4]),
        (&[2, 1, 3], &[4, 1]),
        (&[5], &[1]),
    ];
    for _ in 0..4 {
        for (sx, sy) in shapes {
            let (x, y) = (ring_tensor(&mut r, sx), ring_tensor(&mut r, sy));
            assert_eq!(
                run_mul(&mut d, &x, &y, &mut r),
                zip(&x, &y, u64::wrapping_mul)
            );
        }
    }
}

#[test]
fn fixed_point_product_then_trunc_is_within_one_ulp() {
    let mut r = rng(5);
    let mut d = Dealer::from_u64(5);
    for _ in 0..8 {
        let (x, y) = (
            fixed_tensor(&mut r, &[6, 5], 15.0),
            fixed_tensor(&mut r, &[6, 5], 15.0),
        );
        let z = run_mul(&mut d, &x, &y, &mut r);
        let (z0, z1) = split(&z, &mut r);
        let t = reconstruct(&local::trunc(0, &z0, FRAC), &local::trunc(1, &z1, FRAC));
        let exact = zip(&x, &y, |a, b| {
            (((a as i64 as i128) * (b as i64 as i128)) >> FRAC) as u64
        });
        for (got, want) in t.iter().zip(&exact) {
            let diff = (*got as i64).wrapping_sub(*want as i64);
            assert!((0..=1).contains(&diff), "got {got}, want {want}");
        }
        let real = zip(&x, &y, |a, b| {
            encode(decode(a, FRAC) * decode(b, FRAC), FRAC)
        });
        for (got, want) in t.iter().zip(&real) {
            assert!((*got as i64 - *want as i64).abs() <= 1);
        }
    }
}

#[test]
fn square_is_exact() {
    let mut r = rng(6);
    let mut d = Dealer::from_u64(6);
    for shape in [&[9][..], &[2, 3, 4], &[1]] {
        let x = ring_tensor(&mut r, shape);
        let (x0, x1) = split(&x, &mut r);
        let mats = d.square(shape);
        let [m0, m1] = mats;
        let z = open(both([(m0, x0), (m1, x1)], |p, ch, (m, x)| {
            let (st, msg) = square::start(p, &x, m);
            square::finish(st, &round(ch, &msg).unwrap()).unwrap()
        }));
        assert_eq!(z, zip(&x, &x, u64::wrapping_mul));
    }
}

#[test]
fn beaver_matmul_is_exact_including_batched() {
    let mut r = rng(7);
    let mut d = Dealer::from_u64(7);
    let shapes: [(&[usize], &[usize]); 4] = [
        (&[3, 4], &[4, 5]),
        (&[2, 3, 4], &[2, 4, 2]),
        (&[2, 10, 3], &[3, 9]),
        (&[1, 1], &[1, 1]),
    ];
    for (sx, sy) in shapes {
        let (x, y) = (ring_tensor(&mut r, sx), ring_tensor(&mut r, sy));
        let ((x0, x1), (y0, y1)) = (split(&x, &mut r), split(&y, &mut r));
        let [m0, m1] = d.beaver_matmul(sx, sy);
        let z = open(both([(m0, x0, y0), (m1, x1, y1)], |p, ch, (m, x, y)| {
            let (st, msg) = beaver_matmul::start(p, &x, &y, m);
            beaver_matmul::finish(st, &round(ch, &msg).unwrap()).unwrap()
        }));
        assert_eq!(z, plain_matmul(&x, &y));
    }
}

/// Sets up `w` once, then runs one call per `x` (matmul or element-wise).
fn run_fixed(
    d: &mut Dealer,
    w: &ArrayD<u64>,
    xs: &[ArrayD<u64>],
    matmul: bool,
) -> Vec<ArrayD<u64>> {
    run_fixed_of(d, w, xs, matmul, None).0
}

/// [`run_fixed`] with the mask one-sided to `owner`, if any; also each party's bytes sent
/// in the calls.
fn run_fixed_of(
    d: &mut Dealer,
    w: &ArrayD<u64>,
    xs: &[ArrayD<u64>],
    matmul: bool,
    owner: Option<PartyId>,
) -> (Vec<ArrayD<u64>>, [u64; 2]) {
    let mut r = rng(99);
    let (mask, [b0, b1]) = d.fixed_mask_of(NodeId::from_index(0), w.shape(), owner);
    let (w0, w1) = split(w, &mut r);
    let mut calls: [Vec<_>; 2] = [Vec::new(), Vec::new()];
    for x in xs {
        let [m0, m1] = if matmul {
            d.fixed_matmul(&mask, x.shape())
        } else {
            d.fixed_mul(&mask, x.shape())
        };
        let (x0, x1) = split(x, &mut r);
        calls[0].push((m0, x0));
        calls[1].push((m1, x1));
    }
    let [c0, c1] = calls;
    let (p0, p1) = both([(b0, w0, c0), (b1, w1, c1)], |p, ch, (b, w, calls)| {
        let (st, msg) = fixed::setup_start(p, &w, b);
        let w = fixed::setup_finish(st, &setup_round(ch, &msg).unwrap()).unwrap();
        let mut outs = Vec::new();
        for (m, x) in calls {
            let (st, msg) = if matmul {
                fixed::matmul_start(p, &x, m)
            } else {
                fixed::mul_start(p, &x, m)
            };
            outs.push(fixed::finish(st, &w, &round(ch, &msg).unwrap()).unwrap());
        }
        outs
    });
    assert_eq!(p0.stats.setup.payload_bytes_sent, 8 * w.len() as u64);
    let sent = [&p0, &p1].map(|p| p.stats.online.payload_bytes_sent);
    let z = (p0.output.iter().zip(&p1.output))
        .map(|(a, b)| reconstruct(a, b))
        .collect();
    (z, sent)
}

/// A one-sided operand (the server's weights): the owner keeps `W`, the other party `F`;
/// only the other party sends its masked share (8 bytes per element of x), and the
/// products are exact, matrix and element-wise, whichever party owns it.
#[test]
fn one_sided_fixed_products_send_one_way() {
    let mut r = rng(18);
    let mut d = Dealer::from_u64(18);
    let w = ring_tensor(&mut r, &[6, 7]);
    let xs = [&[1, 6][..], &[9, 6], &[2, 4, 6]].map(|s| ring_tensor(&mut r, s));
    let opened: u64 = xs.iter().map(|x| 8 * x.len() as u64).sum();
    for owner in [0, 1] {
        let (zs, sent) = run_fixed_of(&mut d, &w, &xs, true, Some(owner));
        for (z, x) in zs.iter().zip(&xs) {
            assert_eq!(*z, plain_matmul(x, &w), "owner {owner}");
        }
        let mut want = [opened; 2];
        want[usize::from(owner)] = 0;
        assert_eq!(sent, want, "owner {owner} sends nothing");
        let we = ring_tensor(&mut r, &[4, 5]);
        let xe = [
            ring_tensor(&mut r, &[4, 5]),
            ring_tensor(&mut r, &[3, 4, 5]),
        ];
        let (ze, _) = run_fixed_of(&mut d, &we, &xe, false, Some(owner));
        for (z, x) in ze.iter().zip(&xe) {
            assert_eq!(*z, zip(x, &ring_tensor_like(&we, x), u64::wrapping_mul));
        }
    }
}

/// `w` broadcast to `x`'s shape.
fn ring_tensor_like(w: &ArrayD<u64>, x: &ArrayD<u64>) -> ArrayD<u64> {
    w.broadcast(x.shape())
        .expect("w broadcasts to x")
        .to_owned()
}

#[test]
fn fixed_matmul_reuses_the_setup_across_calls() {
    let mut r = rng(8);
    let mut d = Dealer::from_u64(8);
    let w = ring_tensor(&mut r, &[5, 11]);
    let xs = [&[1, 5][..], &[12, 5], &[2, 3, 5], &[20, 5]].map(|s| ring_tensor(&mut r, s));
    for (z, x) in run_fixed(&mut d, &w, &xs, true).iter().zip(&xs) {
        assert_eq!(*z, plain_matmul(x, &w));
    }
    let wb = ring_tensor(&mut r, &[2, 4, 3]);
    let xs = [ring_tensor(&mut r, &[2, 5, 4])];
    assert_eq!(
        run_fixed(&mut d, &wb, &xs, true)[0],
        plain_matmul(&xs[0], &wb)
    );
}

#[test]
fn fixed_mul_reuses_the_setup_across_calls() {
    let mut r = rng(9);
    let mut d = Dealer::from_u64(9);
    let w = ring_tensor(&mut r, &[4]);
    let xs = [&[4][..], &[3, 4], &[2, 1, 4]].map(|s| ring_tensor(&mut r, s));
    for (z, x) in run_fixed(&mut d, &w, &xs, false).iter().zip(&xs) {
        assert_eq!(*z, zip(x, &w, u64::wrapping_mul));
    }
}

fn run_drelu(d: &mut Dealer, x: &ArrayD<u64>, r: &mut ChaCha12Rng) -> ArrayD<u64> {
    let [k0, k1] = d.drelu(x.len());
    let (x0, x1) = split(x, r);
    open(both([(k0, x0), (k1, x1)], |p, ch, (k, x)| {
        let (st, msg) = drelu::start(p, &x, k);
        drelu::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
    }))
}

#[test]
fn drelu_gives_arithmetic_bits_on_the_whole_ring() {
    let mut r = rng(10);
    let mut d = Dealer::from_u64(10);
    for shape in [&[16][..], &[3, 5]] {
        let x = ring_tensor(&mut r, shape);
        let bits = run_drelu(&mut d, &x, &mut r);
        assert_eq!(bits, x.mapv(|v| u64::from((v as i64) >= 0)));
        let f = fixed_tensor(&mut r, shape, 100.0);
        assert_eq!(
            run_drelu(&mut d, &f, &mut r),
            f.mapv(|v| u64::from((v as i64) >= 0))
        );
    }
}

#[test]
fn relu_is_drelu_then_mux() {
    let mut r = rng(11);
    let mut d = Dealer::from_u64(11);
    let x = fixed_tensor(&mut r, &[4, 6], 50.0);
    let bits = run_drelu(&mut d, &x, &mut r);
    let [m0, m1] = d.mux(x.shape(), x.shape());
    let ((b0, b1), (x0, x1)) = (split(&bits, &mut r), split(&x, &mut r));
    let y = open(both([(m0, b0, x0), (m1, b1, x1)], |p, ch, (m, b, x)| {
        let (st, msg) = mux::start(p, &b, &x, m);
        mux::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
    }));
    assert_eq!(y, x.mapv(|v| if (v as i64) >= 0 { v } else { 0 }));
}

#[test]
fn local_ops_match_the_plaintext() {
    let mut r = rng(12);
    let x = fixed_tensor(&mut r, &[3, 4], 1000.0);
    let y = ring_tensor(&mut r, &[4]);
    let c = ring_tensor(&mut r, &[3, 1]);
    let ((x0, x1), (y0, y1)) = (split(&x, &mut r), split(&y, &mut r));
    let both = |f: &dyn Fn(PartyId, &Share, &Share) -> Share| {
        reconstruct(&f(0, &x0, &y0), &f(1, &x1, &y1))
    };
    assert_eq!(
        both(&|_, x, y| local::add(x, y)),
        zip(&x, &y, u64::wrapping_add)
    );
    assert_eq!(
        both(&|_, x, y| local::sub(x, y)),
        zip(&x, &y, u64::wrapping_sub)
    );
    assert_eq!(both(&|_, x, _| local::neg(x)), x.mapv(u64::wrapping_neg));
    assert_eq!(
        both(&|p, x, _| local::add_public(p, x, &c)),
        zip(&x, &c, u64::wrapping_add)
    );
    assert_eq!(
        both(&|p, x, _| local::sub_public(p, x, &c)),
        zip(&x, &c, u64::wrapping_sub)
    );
    assert_eq!(
        both(&|_, x, _| local::mul_public(x, &c)),
        zip(&x, &c, u64::wrapping_mul)
    );
    assert_eq!(
        both(&|_, x, _| local::scale(x, 3)),
        x.mapv(|v| v.wrapping_mul(3))
    );
    let half = encode(-0.5, FRAC);
    let t = both(&|p, x, _| local::trunc(p, &local::scale(x, half), FRAC));
    for (got, v) in t.iter().zip(&x) {
        let want = ((*v as i64 as i128 * half as i64 as i128) >> FRAC) as i64;
        assert!((0..=1).contains(&(*got as i64 - want)));
    }
}

#[test]
fn a_short_peer_message_is_an_error() {
    let mut d = Dealer::from_u64(13);
    let [m0, _] = d.beaver_mul(&[2], &[2]);
    let x = Share(ArrayD::zeros(IxDyn(&[2])));
    let (st, msg) = beaver_mul::start(0, &x, &x, m0);
    assert_eq!(msg.len(), 4);
    assert!(beaver_mul::finish(st, &[0; 3]).is_err());
}
