//! Tests of element-wise material restricted to some of its elements (`gather` on
//! [`TripleMaterial`](crate::protocols::beaver_mul::TripleMaterial),
//! [`SquareMaterial`](crate::protocols::square::SquareMaterial) and
//! [`DreluMaterial`](crate::protocols::drelu::DreluMaterial),
//! [`TruncMaterial`](crate::protocols::trunc_fss::TruncMaterial)): a sparse FFN runs its
//! element-wise protocols (DReLU, mux, square, faithful truncation, sign-select) only on the active entries of a dense
//! `[seq, ff]` tensor, with the dense material of those entries. The gathered material is
//! 1-D, `idx.len()` long, in the order of `idx`; each element may be taken once.
use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::dealer::Dealer;
use crate::protocols::driver::{round, round_bytes, run_two_party};
use crate::protocols::material::take;
use crate::protocols::share::{reconstruct, split};
use crate::protocols::{PartyId, Share, drelu, lut, mux, sign_select, square, trunc_fss};
use crate::transport::MemChannel;

const SHAPE: [usize; 2] = [4, 6];

/// A random subset of the 24 positions, in random order.
fn subset(r: &mut ChaCha12Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..24)
        .filter(|_| !r.next_u64().is_multiple_of(3))
        .collect();
    for i in (1..idx.len()).rev() {
        idx.swap(i, r.next_u64() as usize % (i + 1));
    }
    idx
}

/// Uniform ring elements, or bits.
fn tensor(r: &mut ChaCha12Rng, bits: bool) -> ArrayD<u64> {
    let keep = if bits { 1 } else { u64::MAX };
    ArrayD::from_shape_simple_fn(IxDyn(&SHAPE), || r.next_u64() & keep)
}

/// Runs a two-round gate from its start to its share: `step` ends the first round with a
/// next message, the second with the value.
fn two_rounds<S, E: std::fmt::Debug>(
    ch: &mut MemChannel,
    (st, msg): (S, Vec<u8>),
    step: impl Fn(S, &[u8]) -> Result<crate::protocols::Step<S, Share>, E>,
) -> Share {
    let crate::protocols::Step::Next(st, msg) = step(st, &round_bytes(ch, &msg).unwrap()).unwrap()
    else {
        panic!("two rounds")
    };
    match step(st, &round_bytes(ch, &msg).unwrap()).unwrap() {
        crate::protocols::Step::Done(y) => y,
        crate::protocols::Step::Next(..) => panic!("two rounds"),
    }
}

fn gathered(x: &Share, idx: &[usize]) -> Share {
    Share(take(&x.0, idx))
}

/// Runs `f` as both parties; the opened output.
fn open<M: Send>(
    mats: [M; 2],
    f: impl Fn(PartyId, &mut MemChannel, M) -> Share + Sync,
) -> ArrayD<u64> {
    let [m0, m1] = mats;
    let f = &f;
    let (a, b) = run_two_party(move |ch| f(0, ch, m0), move |ch| f(1, ch, m1));
    reconstruct(&a.output, &b.output)
}

#[test]
fn gathered_mux_matches_the_dense_mux_at_those_positions() {
    let mut r = ChaCha12Rng::seed_from_u64(21);
    let mut d = Dealer::from_u64(21);
    for _ in 0..3 {
        let (bit, x, idx) = (tensor(&mut r, true), tensor(&mut r, false), subset(&mut r));
        let [(b0, b1), (x0, x1)] = [&bit, &x].map(|v| split(v, &mut r));
        let [m0, m1] = d.mux(&SHAPE, &SHAPE);
        let f = |p, ch: &mut MemChannel, (m, b, x): (_, Share, Share)| {
            let (st, msg) = mux::start(p, &b, &x, m);
            mux::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
        };
        let g = |s: &Share| gathered(s, &idx);
        let sparse = open(
            [
                (m0.gather(&idx), g(&b0), g(&x0)),
                (m1.gather(&idx), g(&b1), g(&x1)),
            ],
            f,
        );
        let dense = open([(m0, b0, x0), (m1, b1, x1)], f);
        assert_eq!(dense, ring_mul(&bit, &x));
        assert_eq!(sparse, take(&dense, &idx));
    }
}

fn ring_mul(a: &ArrayD<u64>, b: &ArrayD<u64>) -> ArrayD<u64> {
    crate::protocols::ring_ops::mul(a.view(), b.view())
}

#[test]
fn gathered_square_matches_the_dense_square_at_those_positions() {
    let mut r = ChaCha12Rng::seed_from_u64(22);
    let mut d = Dealer::from_u64(22);
    let (x, idx) = (tensor(&mut r, false), subset(&mut r));
    let (x0, x1) = split(&x, &mut r);
    let [m0, m1] = d.square(&SHAPE);
    let f = |p, ch: &mut MemChannel, (m, x): (_, Share)| {
        let (st, msg) = square::start(p, &x, m);
        square::finish(st, &round(ch, &msg).unwrap()).unwrap()
    };
    let sparse = open(
        [
            (m0.gather(&idx), gathered(&x0, &idx)),
            (m1.gather(&idx), gathered(&x1, &idx)),
        ],
        f,
    );
    let dense = open([(m0, x0), (m1, x1)], f);
    assert_eq!(dense, ring_mul(&x, &x));
    assert_eq!(sparse, take(&dense, &idx));
}

#[test]
fn gathered_drelu_matches_the_dense_drelu_at_those_positions() {
    let mut r = ChaCha12Rng::seed_from_u64(23);
    let mut d = Dealer::from_u64(23);
    let (x, idx) = (tensor(&mut r, false), subset(&mut r));
    let (x0, x1) = split(&x, &mut r);
    let [k0, k1] = d.drelu(x.len());
    let f = |p, ch: &mut MemChannel, (k, x): (_, Share)| {
        let (st, msg) = drelu::start(p, &x, k);
        drelu::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
    };
    let sparse = open(
        [
            (k0.gather(&idx), gathered(&x0, &idx)),
            (k1.gather(&idx), gathered(&x1, &idx)),
        ],
        f,
    );
    let dense = open([(k0, x0), (k1, x1)], f);
    assert_eq!(dense, x.mapv(|v| u64::from((v as i64) >= 0)));
    assert_eq!(sparse, take(&dense, &idx));
}

/// Faithful truncation keys gathered across batches (the second batch starts at
/// [`trunc_fss::TRUNC_BATCH`]): the truncations of the gathered entries are the dense
/// ones there.
#[test]
fn gathered_faithful_trunc_matches_the_dense_one_across_batches() {
    let mut r = ChaCha12Rng::seed_from_u64(25);
    let mut d = Dealer::from_u64(25);
    let n = trunc_fss::TRUNC_BATCH + 40;
    let shape = [n];
    let x =
        ArrayD::from_shape_simple_fn(IxDyn(&shape), || (r.next_u64() >> 24).wrapping_sub(1 << 39));
    let (x0, x1) = split(&x, &mut r);
    let mut idx: Vec<usize> = (0..30).map(|i| i * 7).collect();
    idx.extend((0..30).map(|i| trunc_fss::TRUNC_BATCH + 39 - i));
    idx.push(trunc_fss::TRUNC_BATCH - 1);
    let [k0, k1] = d.faithful_trunc(n, 16);
    let f = |p, ch: &mut MemChannel, (k, x): (_, Share)| {
        let (st, msg) = trunc_fss::start(p, &x, k);
        trunc_fss::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
    };
    let sparse = open(
        [
            (k0.gather(&idx), gathered(&x0, &idx)),
            (k1.gather(&idx), gathered(&x1, &idx)),
        ],
        f,
    );
    let dense = open([(k0, x0), (k1, x1)], f);
    assert_eq!(dense, x.mapv(|v| ((v as i64) >> 16) as u64));
    assert_eq!(sparse, take(&dense, &idx));
}

/// Sign-select keys (ReLU: y = x) gathered across batches compute the dense gate's
/// results there.
#[test]
fn gathered_sign_select_matches_the_dense_one_across_batches() {
    let mut r = ChaCha12Rng::seed_from_u64(26);
    let mut d = Dealer::from_u64(26);
    let n = sign_select::SIGN_SELECT_BATCH + 20;
    let x =
        ArrayD::from_shape_simple_fn(IxDyn(&[n]), || (r.next_u64() >> 20).wrapping_sub(1 << 43));
    let (x0, x1) = split(&x, &mut r);
    let mut idx: Vec<usize> = (0..25).map(|i| i * 11).collect();
    idx.extend((0..20).map(|i| sign_select::SIGN_SELECT_BATCH + 19 - i));
    let [k0, k1] = sign_select::deal(&mut d, n, 64, true);
    let f = |p, ch: &mut MemChannel, (k, x): (_, Share)| {
        two_rounds(ch, sign_select::start(p, &x, None, k), sign_select::step)
    };
    let sparse = open(
        [
            (k0.gather(&idx), gathered(&x0, &idx)),
            (k1.gather(&idx), gathered(&x1, &idx)),
        ],
        f,
    );
    let dense = open([(k0, x0), (k1, x1)], f);
    assert_eq!(dense, x.mapv(|v| if (v as i64) >= 0 { v } else { 0 }));
    assert_eq!(sparse, take(&dense, &idx));
}

/// Lookup-table keys gathered across batches (a head-masked attention core's rows) give
/// the dense lookups' results there.
#[test]
fn gathered_lut_matches_the_dense_one_across_batches() {
    use comet_ir::TableFn;
    let mut r = ChaCha12Rng::seed_from_u64(27);
    let mut d = Dealer::from_u64(27);
    let n = lut::LUT_BATCH + 20;
    // inputs at scale 16, read with 8 fractional bits on 13-bit indices
    let x = ArrayD::from_shape_simple_fn(IxDyn(&[n]), || (r.next_u64() % (1 << 20)) << 4);
    let (x0, x1) = split(&x, &mut r);
    let mut idx: Vec<usize> = (0..25).map(|i| i * 13).collect();
    idx.extend((0..20).map(|i| lut::LUT_BATCH + 19 - i));
    let [k0, k1] = lut::deal(&mut d, n, 13);
    let f = |p, ch: &mut MemChannel, (k, x): (_, Share)| {
        let table = lut::Table::new(TableFn::ExpNeg, 13, 8, 16);
        two_rounds(ch, lut::start(p, &x, 16, table, k), lut::step)
    };
    let sparse = open(
        [
            (k0.gather(&idx), gathered(&x0, &idx)),
            (k1.gather(&idx), gathered(&x1, &idx)),
        ],
        f,
    );
    let dense = open([(k0, x0), (k1, x1)], f);
    assert_eq!(sparse, take(&dense, &idx));
}

#[test]
fn gathered_material_is_one_dimensional_and_redacted() {
    let mut d = Dealer::from_u64(24);
    let [m0, _] = d.beaver_mul(&[2, 3], &[2, 3]);
    let g = m0.gather(&[5, 0]);
    assert_eq!(
        (g.a.shape(), g.c.as_slice().unwrap()[1]),
        (&[2][..], m0.c[[0, 0]])
    );
    let text = format!("{g:?}");
    assert!(text.contains("shape [2]") && !text.contains(&g.a[0].to_string()));
    let [k0, _] = d.drelu(4);
    assert_eq!(k0.gather(&[3, 1]).key.len(), 2);
}

#[test]
#[should_panic(expected = "without broadcasting")]
fn a_broadcast_triple_does_not_gather() {
    let [m0, _] = Dealer::from_u64(25).beaver_mul(&[2, 3], &[3]);
    m0.gather(&[0]);
}

#[test]
#[should_panic(expected = "gathered twice")]
fn an_element_is_gathered_once() {
    let [m0, _] = Dealer::from_u64(26).square(&[3]);
    m0.gather(&[1, 1]);
}

#[test]
#[should_panic(expected = "not serialized")]
fn a_gathered_drelu_key_is_not_serialized() {
    let [k0, _] = Dealer::from_u64(27).drelu(3);
    k0.gather(&[2]).key.to_bytes();
}
