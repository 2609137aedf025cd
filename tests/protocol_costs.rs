//! Estimate = measurement (docs/runtime.md): for every protocol the runtime implements, the
//! rounds and payload bytes its channels count, and the bytes its dealer materialises,
//! equal the compiler's cost model (`comet_compiler::cost::cost_of`) for the same shapes.
//! Online bits are both parties' payload bytes × 8; rounds are per party (both count the
//! same); offline bits are the dealer's correction bytes × 8.

use comet_compiler::cost::{
    cost_at_width, cost_of, dcf_bit_bytes, dcf_key_bits, lut_key_bytes, sign_select_key_bytes,
};
use comet_ir::NodeId;
use comet_ir::protocol::Protocol;
use comet_ir::{Dim, DimEnv, Domain, Elem, ValueType};
use comet_runtime::dealer::Dealer;
use comet_runtime::protocols::driver::{PartyRun, round, round_bytes, run_two_party, setup_round};
use comet_runtime::protocols::share::{reconstruct, share_own_input, share_peer_input};
use comet_runtime::protocols::xor::reconstruct_xor;
use comet_runtime::protocols::{
    PartyId, Share, Step, XorShare, b2a, beaver_matmul, beaver_mul, bit_mux, drelu, fixed, gmw,
    local, lut, mux, reveal, row_max, sign_select, square, trunc_stochastic,
};
use comet_runtime::transport::MemChannel;
use ndarray::{ArrayD, IxDyn};

/// (rounds, online bits, offline bits).
type Figures = (i128, i128, i128);

/// A node's cost at a call of no symbolic size: (rounds, online bits, dealer bits).
fn figures(c: &comet_ir::cost::NodeCost) -> Figures {
    let env = DimEnv { seq: 0, past: 0 };
    (
        c.rounds.eval(env),
        c.online_bits.eval(env),
        c.offline_bits.eval(env),
    )
}

fn vt(shape: &[usize]) -> ValueType {
    let dims = shape.iter().map(|&d| Dim::constant(d as i64)).collect();
    ValueType::new(Elem::Fixed { scale: 16 }, dims, Domain::Arith)
}

/// The cost model's figures for `protocol` with output `out` and operands `xs`.
fn estimate(protocol: Protocol, out: &[usize], xs: &[&[usize]], fixed: &[bool]) -> Figures {
    estimate_with(protocol, out, xs, fixed, true)
}

/// [`estimate`] with FSS (`fss`) or GMW comparisons.
fn estimate_with(
    protocol: Protocol,
    out: &[usize],
    xs: &[&[usize]],
    fixed: &[bool],
    fss: bool,
) -> Figures {
    let out = vt(out);
    let xs: Vec<ValueType> = xs.iter().map(|s| vt(s)).collect();
    let refs: Vec<&ValueType> = xs.iter().collect();
    let matmul = matches!(protocol, Protocol::BeaverMatMul | Protocol::FixedMatMul);
    let c = cost_of(protocol, &out, &refs, fixed, fss, matmul);
    figures(&c)
}

/// What the channels and the dealer counted.
fn measured<T>(p0: &PartyRun<T>, p1: &PartyRun<T>, dealer_bytes: u64) -> Figures {
    let (s0, s1) = (p0.stats.online, p1.stats.online);
    assert_eq!(s0.rounds, s1.rounds, "both parties count the same rounds");
    assert_eq!(s0.payload_bytes_sent, s1.payload_bytes_received);
    let online = s0.payload_bytes_sent + s1.payload_bytes_sent;
    (
        s0.rounds as i128,
        8 * online as i128,
        8 * dealer_bytes as i128,
    )
}

/// Deterministic ring values (splitmix64), with negatives and range edges first.
fn values(shape: &[usize], seed: u64) -> ArrayD<u64> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let edges = [0, u64::MAX, 1 << 63, (1 << 63) - 1, (-5i64 << 16) as u64];
    let mut i = 0;
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        i += 1;
        if let Some(e) = edges.get(i - 1) {
            return *e;
        }
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// `x` and its two shares (owner 0 holds `x − r`, party 1 derives `r` from the seed).
fn input(shape: &[usize], seed: u8) -> (ArrayD<u64>, [Share; 2]) {
    let x = values(shape, u64::from(seed));
    let s0 = share_own_input(&x, &[seed; 32]);
    let s1 = share_peer_input(shape, &[seed; 32]);
    (x, [s0, s1])
}

fn both<M: Send, T: Send>(
    mats: [M; 2],
    f: impl Fn(PartyId, &mut MemChannel, M) -> T + Sync,
) -> (PartyRun<T>, PartyRun<T>) {
    let [m0, m1] = mats;
    let f = &f;
    run_two_party(move |ch| f(0, ch, m0), move |ch| f(1, ch, m1))
}

fn zip(a: &ArrayD<u64>, b: &ArrayD<u64>, f: impl Fn(u64, u64) -> u64) -> ArrayD<u64> {
    let shape = if a.len() >= b.len() {
        a.shape()
    } else {
        b.shape()
    };
    let (a, b) = (a.broadcast(shape).unwrap(), b.broadcast(shape).unwrap());
    ndarray::Zip::from(&a)
        .and(&b)
        .map_collect(|x, y| f(*x, *y))
        .into_dyn()
}

#[test]
fn sharing_and_local_ops_cost_nothing() {
    let (x, [x0, x1]) = input(&[4, 5], 1);
    let (p0, p1) = both([x0, x1], |p, _ch, x| {
        local::trunc(p, &local::scale(&x, 3), 16)
    });
    assert_eq!(p0.output.shape(), x.shape());
    for protocol in [Protocol::Share, Protocol::Local] {
        let est = estimate(protocol, &[4, 5], &[&[4, 5]], &[false]);
        assert_eq!(measured(&p0, &p1, 0), est, "{protocol}");
    }
}

#[test]
fn reveal_to_one_party() {
    for receiver in [0, 1] {
        let (x, s) = input(&[3, 7], 2);
        let (p0, p1) = both(s, |p, ch, x| {
            let (st, msg) = reveal::start(p, Some(receiver), &x);
            reveal::finish(st, &round(ch, &msg).unwrap()).unwrap()
        });
        let got = if receiver == 0 {
            &p0.output
        } else {
            &p1.output
        };
        assert_eq!(got.as_ref(), Some(&x));
        let est = estimate(Protocol::Reveal, &[3, 7], &[&[3, 7]], &[false]);
        assert_eq!(measured(&p0, &p1, 0), est);
    }
}

#[test]
fn beaver_mul_with_and_without_broadcasting() {
    let cases: [(&[usize], &[usize], &[usize]); 3] = [
        (&[6], &[6], &[6]),
        (&[3, 4], &[4], &[3, 4]),
        (&[2, 1, 3], &[4, 1], &[2, 4, 3]),
    ];
    for (sx, sy, out) in cases {
        let mut d = Dealer::from_u64(3);
        let ((x, [x0, x1]), (y, [y0, y1])) = (input(sx, 3), input(sy, 4));
        let [m0, m1] = d.beaver_mul(sx, sy);
        let (p0, p1) = both([(m0, x0, y0), (m1, x1, y1)], |p, ch, (m, x, y)| {
            let (st, msg) = beaver_mul::start(p, &x, &y, m);
            beaver_mul::finish(st, &round(ch, &msg).unwrap()).unwrap()
        });
        let z = reconstruct(&p0.output, &p1.output);
        assert_eq!(z.shape(), out);
        if sx == sy {
            assert_eq!(z, zip(&x, &y, u64::wrapping_mul));
        }
        let est = estimate(Protocol::BeaverMul, out, &[sx, sy], &[false, false]);
        assert_eq!(
            measured(&p0, &p1, d.offline_bytes()),
            est,
            "{sx:?} ⊙ {sy:?}"
        );
    }
}

#[test]
fn square_pairs() {
    let mut d = Dealer::from_u64(5);
    let (x, s) = input(&[5, 3], 5);
    let [m0, m1] = d.square(&[5, 3]);
    let (p0, p1) = both([(m0, s[0].clone()), (m1, s[1].clone())], |p, ch, (m, x)| {
        let (st, msg) = square::start(p, &x, m);
        square::finish(st, &round(ch, &msg).unwrap()).unwrap()
    });
    assert_eq!(
        reconstruct(&p0.output, &p1.output),
        zip(&x, &x, u64::wrapping_mul)
    );
    let est = estimate(Protocol::Square, &[5, 3], &[&[5, 3]], &[false]);
    assert_eq!(measured(&p0, &p1, d.offline_bytes()), est);
}

#[test]
fn beaver_matmul_plain_batched_and_shared_right() {
    let cases: [(&[usize], &[usize], &[usize]); 3] = [
        (&[3, 4], &[4, 5], &[3, 5]),
        (&[2, 3, 4], &[2, 4, 6], &[2, 3, 6]),
        (&[2, 9, 4], &[4, 3], &[2, 9, 3]),
    ];
    for (sx, sy, out) in cases {
        let mut d = Dealer::from_u64(6);
        let ((_, [x0, x1]), (_, [y0, y1])) = (input(sx, 6), input(sy, 7));
        let [m0, m1] = d.beaver_matmul(sx, sy);
        let (p0, p1) = both([(m0, x0, y0), (m1, x1, y1)], |p, ch, (m, x, y)| {
            let (st, msg) = beaver_matmul::start(p, &x, &y, m);
            beaver_matmul::finish(st, &round(ch, &msg).unwrap()).unwrap()
        });
        assert_eq!(p0.output.shape(), out);
        let est = estimate(Protocol::BeaverMatMul, out, &[sx, sy], &[false, false]);
        assert_eq!(
            measured(&p0, &p1, d.offline_bytes()),
            est,
            "{sx:?} · {sy:?}"
        );
    }
}

/// Setup (not counted online) then one call; returns the per-call figures.
fn fixed_call(protocol: Protocol, sx: &[usize], sw: &[usize]) -> (Share, Share, Figures) {
    let mut d = Dealer::from_u64(8);
    let ((_, [x0, x1]), (_, [w0, w1])) = (input(sx, 8), input(sw, 9));
    let (mask, [b0, b1]) = d.fixed_mask(NodeId::from_index(0), sw);
    let matmul = protocol == Protocol::FixedMatMul;
    let [m0, m1] = if matmul {
        d.fixed_matmul(&mask, sx)
    } else {
        d.fixed_mul(&mask, sx)
    };
    let (p0, p1) = both(
        [(b0, w0, m0, x0), (b1, w1, m1, x1)],
        |p, ch, (b, w, m, x)| {
            let (st, msg) = fixed::setup_start(p, &w, b);
            let w = fixed::setup_finish(st, &setup_round(ch, &msg).unwrap()).unwrap();
            let (st, msg) = if matmul {
                fixed::matmul_start(p, &x, m)
            } else {
                fixed::mul_start(p, &x, m)
            };
            fixed::finish(st, &w, &round(ch, &msg).unwrap()).unwrap()
        },
    );
    assert_eq!(
        p0.stats.setup.payload_bytes_sent,
        8 * sw.iter().product::<usize>() as u64
    );
    let figures = measured(&p0, &p1, d.offline_bytes());
    (p0.output, p1.output, figures)
}

#[test]
fn fixed_matmul_opens_only_the_activations() {
    for (sx, sw, out) in [
        (&[1, 6][..], &[6, 4][..], &[1, 4][..]),
        (&[2, 10, 6], &[6, 5], &[2, 10, 5]),
    ] {
        let (z0, _, figures) = fixed_call(Protocol::FixedMatMul, sx, sw);
        assert_eq!(z0.shape(), out);
        let est = estimate(Protocol::FixedMatMul, out, &[sx, sw], &[false, true]);
        assert_eq!(figures, est, "{sx:?} · {sw:?}");
    }
}

#[test]
fn fixed_mul_opens_only_the_varying_operand() {
    let (z0, _, figures) = fixed_call(Protocol::FixedMul, &[3, 4], &[4]);
    assert_eq!(z0.shape(), [3, 4]);
    let est = estimate(
        Protocol::FixedMul,
        &[3, 4],
        &[&[3, 4], &[4]],
        &[false, true],
    );
    assert_eq!(figures, est);
}

#[test]
fn drelu_fss_and_mux() {
    let mut d = Dealer::from_u64(10);
    let (x, [x0, x1]) = input(&[4, 5], 10);
    let [k0, k1] = d.drelu(20);
    let (p0, p1) = both([(k0, x0.clone()), (k1, x1.clone())], |p, ch, (k, x)| {
        let (st, msg) = drelu::start(p, &x, k);
        drelu::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
    });
    assert_eq!(
        reconstruct(&p0.output, &p1.output),
        x.mapv(|v| u64::from(v as i64 >= 0))
    );
    let est = estimate(Protocol::DreluFss, &[4, 5], &[&[4, 5]], &[false]);
    assert_eq!(measured(&p0, &p1, d.offline_bytes()), est);

    let mut d = Dealer::from_u64(11);
    let [m0, m1] = d.mux(&[4, 5], &[4, 5]);
    let bits = [p0.output, p1.output];
    let (q0, q1) = both(
        [(m0, bits[0].clone(), x0), (m1, bits[1].clone(), x1)],
        |p, ch, (m, b, x)| {
            let (st, msg) = mux::start(p, &b, &x, m);
            mux::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
        },
    );
    let relu = x.mapv(|v| if v as i64 >= 0 { v } else { 0 });
    assert_eq!(reconstruct(&q0.output, &q1.output), relu);
    let est = estimate(Protocol::Mux, &[4, 5], &[&[4, 5], &[4, 5]], &[false, false]);
    assert_eq!(measured(&q0, &q1, d.offline_bytes()), est);
}

/// The cost model's figures for a DReLU (or row maximum) at comparison width `bits`.
fn estimate_at_width(protocol: Protocol, out: &[usize], x: &[usize], bits: u32) -> Figures {
    let (out, xs) = (vt(out), [vt(x)]);
    let c = cost_at_width(protocol, &out, &[&xs[0]], &[false], true, false, bits);
    figures(&c)
}

/// Signed values spread over the `bits`-bit range [−2^(bits−1), 2^(bits−1)), its edges
/// first.
fn values_in_width(shape: &[usize], bits: u32, seed: u64) -> ArrayD<u64> {
    let half = 1i128 << (bits - 1);
    let edges = [-half, -1, 0, half - 1, 1 - half, 1];
    let mut i = 0;
    values(shape, seed).mapv(|v| {
        i += 1;
        let x = edges
            .get(i - 1)
            .copied()
            .unwrap_or_else(|| i128::from(v as i64).rem_euclid(2 * half) - half);
        x as i64 as u64
    })
}

#[test]
fn drelu_fss_at_a_reduced_width_sends_m_bits_per_element() {
    for (bits, seed) in [(20u32, 30u64), (64, 31)] {
        let mut d = Dealer::from_u64(seed);
        let x = values_in_width(&[4, 6], bits, seed);
        let (x0, x1) = (
            share_own_input(&x, &[7; 32]),
            share_peer_input(&[4, 6], &[7; 32]),
        );
        let [k0, k1] = d.drelu_bits(24, bits);
        let (p0, p1) = both([(k0, x0), (k1, x1)], |p, ch, (k, x)| {
            let (st, msg) = drelu::start(p, &x, k);
            drelu::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
        });
        assert_eq!(
            reconstruct(&p0.output, &p1.output),
            x.mapv(|v| u64::from(v as i64 >= 0)),
            "m = {bits}"
        );
        let est = estimate_at_width(Protocol::DreluFss, &[4, 6], &[4, 6], bits);
        let m = i128::from(bits);
        let key = i128::from(dcf_key_bits(i64::from(bits)));
        assert_eq!(
            est,
            (1, 2 * m * 24, 2 * 24 * key),
            "the formula, m = {bits}"
        );
        assert_eq!(measured(&p0, &p1, d.offline_bytes()), est, "m = {bits}");
        assert_eq!(p0.stats.online.payload_bytes_sent, 3 * u64::from(bits));
    }
    let full = estimate(Protocol::DreluFss, &[4, 6], &[&[4, 6]], &[false]);
    assert_eq!(
        full,
        estimate_at_width(Protocol::DreluFss, &[4, 6], &[4, 6], 64)
    );
}

#[test]
fn key_bits_per_width_follow_the_formula() {
    for (m, bytes) in [
        (64, 1536),
        (48, 1148),
        (40, 954),
        (32, 760),
        (24, 566),
        (16, 372),
    ] {
        assert_eq!(dcf_key_bits(m), 8 * bytes, "m = {m}");
        assert_eq!(
            bytes as usize,
            comet_runtime::fss::DreluKey::element_bytes(m as u32)
        );
    }
    assert_eq!(dcf_key_bits(64), comet_compiler::cost::DCF_KEY_BITS);
}

#[test]
fn lut_key_bytes_are_the_runtimes() {
    for n in 1..=comet_ir::table::MAX_TABLE_BITS {
        assert_eq!(
            lut_key_bytes(i64::from(n)) as usize,
            comet_runtime::fss::LutKey::element_bytes(n),
            "n = {n}"
        );
    }
}

/// Both rounds of a lookup of `func` at `bits`-bit indices of `frac` fractional bits from
/// shares at scale 16 (entries at scale 16).
fn run_lut(
    p: PartyId,
    ch: &mut MemChannel,
    (x, m): (Share, lut::LutMaterial),
    bits: u32,
    frac: u32,
) -> Share {
    let table = lut::Table::new(comet_ir::TableFn::SiluGap, bits, frac, 16);
    let (st, msg) = lut::start(p, &x, 16, table, m);
    let Step::Next(st, msg) = lut::step(st, &round_bytes(ch, &msg).unwrap()).unwrap() else {
        panic!("two rounds");
    };
    let Step::Done(y) = lut::step(st, &round_bytes(ch, &msg).unwrap()).unwrap() else {
        panic!("two rounds");
    };
    y
}

#[test]
fn lut_at_12_and_13_bits() {
    for (bits, frac, seed) in [(12u32, 6u32, 33u64), (13, 8, 34)] {
        let mut d = Dealer::from_u64(seed);
        let x = values(&[4, 6], seed);
        let (x0, x1) = (
            share_own_input(&x, &[9; 32]),
            share_peer_input(&[4, 6], &[9; 32]),
        );
        let [k0, k1] = d.lut(24, bits);
        let (p0, p1) = both([(x0, k0), (x1, k1)], |p, ch, xk| {
            run_lut(p, ch, xk, bits, frac)
        });
        let t = comet_ir::table::entries(comet_ir::TableFn::SiluGap, bits, frac, 16);
        let y = reconstruct(&p0.output, &p1.output);
        for (xi, yi) in x.iter().zip(&y) {
            let k = comet_ir::table::index_fixed(*xi, 16, frac, bits);
            let below = k.wrapping_sub(1) & ((1 << bits) - 1);
            assert!(
                *yi == t[k] || *yi == t[below],
                "n = {bits}, x = {}",
                *xi as i64
            );
        }
        let est = estimate_at_width(Protocol::Lut, &[4, 6], &[4, 6], bits);
        let (n, key) = (i128::from(bits), i128::from(lut_key_bytes(i64::from(bits))));
        assert_eq!(
            est,
            (2, 16 * ((24 * n + 7) / 8) + 2 * 24 * 64, 2 * 24 * 8 * key),
            "the formula, n = {bits}"
        );
        assert_eq!(measured(&p0, &p1, d.offline_bytes()), est, "n = {bits}");
        eprintln!(
            "lut n = {bits}: per element and party {} online bits, {} dealer bytes",
            (n + 7) / 8 * 8 + 64,
            key
        );
    }
}

#[test]
fn row_max_at_a_reduced_width() {
    // values of 23 signed bits: the pairs' differences fit 24
    let (bits, t) = (24u32, 8usize);
    let mut d = Dealer::from_u64(32);
    let x = values_in_width(&[3, t], bits - 1, 32);
    let x0 = share_own_input(&x, &[32; 32]);
    let x1 = share_peer_input(&[3, t], &[32; 32]);
    let (rows, mut k) = (3, t);
    let mut levels = [Vec::new(), Vec::new()];
    while k > 1 {
        let [k0, k1] = d.sign_select(rows * (k / 2), bits, true);
        levels[0].push(row_max::LevelMaterial::Fss(k0));
        levels[1].push(row_max::LevelMaterial::Fss(k1));
        k = k.div_ceil(2);
    }
    let (p0, p1) = run_row_max(levels, [x0, x1], &x);
    let est = estimate_at_width(Protocol::RowMaxTree, &[3, 1], &[3, t], bits);
    assert_eq!(measured(&p0, &p1, d.offline_bytes()), est);
}

/// Runs `row_max` on the shares `xs` of `x` with each party's `levels`, and checks that
/// the parties' outputs add up to each row's signed maximum.
fn run_row_max(
    levels: [Vec<row_max::LevelMaterial>; 2],
    xs: [Share; 2],
    x: &ArrayD<u64>,
) -> (PartyRun<Share>, PartyRun<Share>) {
    let [l0, l1] = levels;
    let [x0, x1] = xs;
    let (p0, p1) = both([(l0, x0), (l1, x1)], |p, ch, (l, x)| {
        run_steps(ch, row_max::start(p, &x, l), |s, peer| {
            row_max::step(s, peer).unwrap()
        })
    });
    let max = x.map_axis(ndarray::Axis(1), |r| {
        r.iter().map(|&v| v as i64).max().unwrap() as u64
    });
    assert_eq!(
        reconstruct(&p0.output, &p1.output),
        max.insert_axis(ndarray::Axis(1))
    );
    (p0, p1)
}

/// Runs a multi-round protocol to its end: `start` gives the first state and message,
/// `step` each next one.
fn run_steps<S, T>(
    ch: &mut MemChannel,
    (mut st, mut msg): (S, Vec<u8>),
    step: impl Fn(S, &[u8]) -> Step<S, T>,
) -> T {
    loop {
        match step(st, &round_bytes(ch, &msg).unwrap()) {
            Step::Next(s, next) => (st, msg) = (s, next),
            Step::Done(out) => return out,
        }
    }
}

/// GMW: the comparison's XOR bits, their B2A, and a select on them, each against the
/// cost model with GMW comparisons.
#[test]
fn drelu_gmw_b2a_and_select_on_xor_bits() {
    let mut d = Dealer::from_u64(12);
    let (x, [x0, x1]) = input(&[4, 5], 12);
    let [g0, g1] = d.gmw_drelu(20);
    let (p0, p1) = both([(g0, x0.clone()), (g1, x1.clone())], |p, ch, (g, x)| {
        run_steps(ch, gmw::start(p, &x, g), |s, peer| {
            gmw::step(s, peer).unwrap()
        })
    });
    let drelu = x.mapv(|v| u64::from(v as i64 >= 0));
    assert_eq!(reconstruct_xor(&p0.output, &p1.output), drelu);
    let est = estimate_with(Protocol::DreluGmw, &[4, 5], &[&[4, 5]], &[false], false);
    assert_eq!(measured(&p0, &p1, d.offline_bytes()), est);
    let bits: [XorShare; 2] = [p0.output, p1.output];

    let mut d = Dealer::from_u64(13);
    let [m0, m1] = d.b2a(20);
    let (q0, q1) = both(
        [(m0, bits[0].clone()), (m1, bits[1].clone())],
        |p, ch, (m, b)| {
            let (st, msg) = b2a::start(p, &b, m);
            b2a::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
        },
    );
    assert_eq!(reconstruct(&q0.output, &q1.output), drelu);
    let est = estimate_with(Protocol::B2A, &[4, 5], &[&[4, 5]], &[false], false);
    assert_eq!(measured(&q0, &q1, d.offline_bytes()), est);

    for (sb, sx) in [(&[4, 5][..], &[4, 5][..]), (&[4, 5], &[3, 4, 5])] {
        let mut d = Dealer::from_u64(14);
        let (y, [y0, y1]) = input(sx, 14);
        let [m0, m1] = d.bit_mux(sb, sx);
        let (q0, q1) = both(
            [(m0, bits[0].clone(), y0), (m1, bits[1].clone(), y1)],
            |p, ch, (m, b, y)| {
                // a select node's form: its bits eight to a byte
                let (st, msg) = bit_mux::start_at(p, &b, &y, m, 64);
                bit_mux::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
            },
        );
        assert_eq!(
            reconstruct(&q0.output, &q1.output),
            zip(&drelu, &y, u64::wrapping_mul)
        );
        let est = estimate_with(Protocol::Mux, sx, &[sb, sx], &[false, false], false);
        assert_eq!(
            measured(&q0, &q1, d.offline_bytes()),
            est,
            "{sb:?} · {sx:?}"
        );
    }
}

/// The row maximum's tournament with either comparison, rows of 2, 5 and 8.
#[test]
fn row_max_with_fss_or_gmw_comparisons() {
    for fss in [true, false] {
        for t in [2usize, 5, 8] {
            let mut d = Dealer::from_u64(15);
            // differences must not wrap: |x| < 2^62
            let x = values(&[3, t], 15).mapv(|v| ((v as i64) >> 2) as u64);
            let x0 = share_own_input(&x, &[15; 32]);
            let x1 = share_peer_input(&[3, t], &[15; 32]);
            let (rows, mut k) = (3, t);
            let mut levels = [Vec::new(), Vec::new()];
            while k > 1 {
                let pairs = [rows, k / 2];
                let [a, b] = if fss {
                    let [k0, k1] = d.sign_select(rows * (k / 2), 64, true);
                    [
                        row_max::LevelMaterial::Fss(k0),
                        row_max::LevelMaterial::Fss(k1),
                    ]
                } else {
                    let [g0, g1] = d.gmw_drelu(rows * (k / 2));
                    let [m0, m1] = d.bit_mux(&pairs, &pairs);
                    [
                        row_max::LevelMaterial::Gmw(g0, m0),
                        row_max::LevelMaterial::Gmw(g1, m1),
                    ]
                };
                levels[0].push(a);
                levels[1].push(b);
                k = k.div_ceil(2);
            }
            let (p0, p1) = run_row_max(levels, [x0, x1], &x);
            let est = estimate_with(Protocol::RowMaxTree, &[3, 1], &[&[3, t]], &[false], fss);
            assert_eq!(
                measured(&p0, &p1, d.offline_bytes()),
                est,
                "fss {fss}, t = {t}"
            );
        }
    }
}

#[test]
fn sign_select_key_bytes_are_the_runtimes() {
    for m in 2..=64u32 {
        let n = i64::from(m) - 1;
        assert_eq!(
            dcf_bit_bytes(n) as usize,
            comet_runtime::fss::DcfBitKey::correction_bytes(m - 1),
            "n = {n}"
        );
        let runtime = comet_runtime::fss::sign_select::SignSelectKey::element_bytes(0, m)
            + comet_runtime::fss::sign_select::SignSelectKey::element_bytes(1, m);
        assert_eq!(
            sign_select_key_bytes(i64::from(m)) as usize,
            runtime,
            "m = {m}"
        );
    }
    // 926 + 942 at m = 64 against DReLU + mux's 1,536 + 1,536 + 8
    assert_eq!(sign_select_key_bytes(64), 1868);
}

/// `y·[x ≥ 0]` fused, y = x (ReLU) and y ≠ x, at 64 and 20 bits, on element counts that
/// are and are not multiples of 8 (the packed bits' padding): measured = the cost model.
#[test]
fn sign_select_relu_and_select() {
    for (shape, bits, same, seed) in [
        ([4usize, 6usize], 64u32, true, 40u64),
        ([3, 5], 64, true, 41),
        ([3, 5], 64, false, 42),
        ([3, 7], 20, false, 43),
        ([2, 3], 20, true, 44),
    ] {
        let n: usize = shape.iter().product();
        let mut d = Dealer::from_u64(seed);
        let x = values_in_width(&shape, bits, seed);
        let y = values(&shape, seed + 100);
        let (x0, x1) = (
            share_own_input(&x, &[7; 32]),
            share_peer_input(&shape, &[7; 32]),
        );
        let (y0, y1) = (
            share_own_input(&y, &[8; 32]),
            share_peer_input(&shape, &[8; 32]),
        );
        let [k0, k1] = d.sign_select(n, bits, same);
        let (p0, p1) = both([(x0, y0, k0), (x1, y1, k1)], |p, ch, (x, y, k)| {
            let y = (!same).then_some(&y);
            run_steps(ch, sign_select::start(p, &x, y, k), |s, peer| {
                sign_select::step(s, peer).unwrap()
            })
        });
        let sign = |v: u64| ((v << (64 - bits)) as i64) >= 0;
        let want = if same {
            x.mapv(|v| if sign(v) { v } else { 0 })
        } else {
            zip(&x, &y, |a, b| if sign(a) { b } else { 0 })
        };
        assert_eq!(
            reconstruct(&p0.output, &p1.output),
            want,
            "{shape:?} m = {bits}"
        );
        let (out, xv) = (vt(&shape), vt(&shape));
        let xs: Vec<&ValueType> = if same { vec![&xv] } else { vec![&xv, &xv] };
        let c = cost_at_width(
            Protocol::SignSelect,
            &out,
            &xs,
            &[false, false],
            true,
            false,
            bits,
        );
        let est = figures(&c);
        assert_eq!(
            measured(&p0, &p1, d.offline_bytes()),
            est,
            "{shape:?} m = {bits} same {same}"
        );
        // the formula by hand: per party ⌈n·w/8⌉ (+ 8n) + ⌈n/8⌉ bytes
        let w = if same { 64 } else { bits as usize };
        let per_party = (n * w).div_ceil(8) + if same { 0 } else { 8 * n } + n.div_ceil(8);
        assert_eq!(est.1, 16 * per_party as i128);
    }
}

/// A stochastic truncation at width m: the opening packed at m bits per element, ⌈n·m/8⌉
/// bytes per party, the dealer's 16 bytes per element, 1 round, as the cost model states,
/// on shapes whose n·m is and is not a multiple of 8; and the floor or one more.
#[test]
fn stochastic_truncation_at_a_width_costs_its_estimate() {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(5);
    for (shape, width) in [
        (vec![3usize, 5], 64u32),
        (vec![3, 5], 21),
        (vec![7], 20),
        (vec![2, 4], 40),
        (vec![1], 37),
    ] {
        let n: usize = shape.iter().product();
        let bound = 1i128 << (width - 2);
        let x = values(&shape, u64::from(width)).mapv(|v| {
            // into [−2^(m−2), 2^(m−2))
            ((v as i64 as i128).rem_euclid(2 * bound) - bound) as i64 as u64
        });
        let (x0, x1) = comet_runtime::protocols::share::split(&x, &mut rng);
        let mut d = Dealer::from_u64(u64::from(width));
        let [m0, m1] = d.stochastic_trunc(n, 16, width);
        let (p0, p1) = both([(m0, x0), (m1, x1)], |p, ch, (m, x)| {
            let (st, msg) = trunc_stochastic::start(p, &x, m);
            trunc_stochastic::finish(st, &round_bytes(ch, &msg).unwrap()).unwrap()
        });
        let got = reconstruct(&p0.output, &p1.output);
        for (x, y) in x.iter().zip(got.iter()) {
            let e = (*y as i64).wrapping_sub((*x as i64) >> 16);
            assert!(e == 0 || e == 1, "x = {} m = {width}", *x as i64);
        }
        let c = cost_at_width(
            Protocol::StochasticTrunc,
            &vt(&shape),
            &[&vt(&shape)],
            &[false],
            true,
            false,
            width,
        );
        let est = figures(&c);
        assert_eq!(
            measured(&p0, &p1, d.offline_bytes()),
            est,
            "{shape:?} m = {width}"
        );
        // by hand: 2 parties × ⌈n·m/8⌉ bytes; 16 dealer bytes per element
        let bytes = (n * width as usize).div_ceil(8) as i128;
        assert_eq!(
            est,
            (1, 16 * bytes, 128 * n as i128),
            "{shape:?} m = {width}"
        );
    }
}
