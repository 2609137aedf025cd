//! GeLU and SiLU forms: ReLU (pcf), piecewise polynomials (PUMA, BOLT, Bumblebee) and the
//! quadratic of MPCFormer. Each comes with its formula in f64 (for the checks and the
//! rewrite table); the coefficients are the published ones (APPROXIMATIONS.md), checked
//! against erf-GeLU and exact SiLU by the tests, not trusted.

use super::piecewise::{Powers, compare, piecewise, poly};
use crate::passes::builder::Builder;
use comet_ir::NodeId;

/// PUMA GeLU on [−4, −1.95): `a0 + a1·x + a2·x² + a3·x³` (SPU `f_gelu`).
pub const PUMA_GELU_CUBIC: [f64; 4] = [
    -0.505_403_119_970_817_4,
    -0.422_265_811_519_838_66,
    -0.118_076_129_511_819_53,
    -0.011_034_134_030_615_728,
];
/// PUMA GeLU on [−1.95, 3]: `b0 + x/2 + b2·x² + b4·x⁴ + b6·x⁶`.
pub const PUMA_GELU_SEXTIC: [f64; 7] = [
    0.008_526_321_541_038_084,
    0.5,
    0.360_329_269_278_962_9,
    0.0,
    -0.037_688_200_365_904_236,
    0.0,
    0.001_806_746_260_614_118_7,
];
/// PUMA GeLU breakpoints: 0 below the first, `x` from the last.
pub const PUMA_GELU_BREAKS: [f64; 3] = [-4.0, -1.95, 3.0];

/// PUMA SiLU on [−8, −4): a quadratic.
pub const PUMA_SILU_QUADRATIC: [f64; 3] = [
    -0.306_754_113_998_215_5,
    -0.081_976_702_152_547_6,
    -0.005_546_562_558_030_7,
];
/// PUMA SiLU on [−4, 4): `c0 + x/2 + c2·x² + c4·x⁴ + c6·x⁶`.
pub const PUMA_SILU_SEXTIC: [f64; 7] = [
    0.008_506_402_589_595_1,
    0.5,
    0.228_143_084_172_827,
    0.0,
    -0.011_113_046_708_173,
    0.0,
    0.000_274_377_635_346_5,
];
/// PUMA SiLU breakpoints.
pub const PUMA_SILU_BREAKS: [f64; 3] = [-8.0, -4.0, 4.0];

/// BOLT GeLU on `|x| ≤ cut`: `Σ_k c_k·|x|^k + x/2`.
pub const BOLT_GELU_ABS: [f64; 5] = [
    0.001_620_808_531_841_547,
    -0.037_981_646_127_141_54,
    0.541_055_016_636_838_1,
    -0.183_525_061_270_827_27,
    0.020_848_611_754_127_593,
];
/// BOLT's cut.
pub const BOLT_GELU_CUT: f64 = 2.7;
/// Bumblebee's cut for the same polynomial.
pub const BUMBLEBEE_GELU_CUT: f64 = 3.0;

/// Bumblebee `seg4` SiLU: `sigmoid(|x|) ≈ Σ_k s_k·|x|^k` for `|x| < 8`.
pub const BUMBLEBEE_SIGMOID_ABS: [f64; 5] = [
    0.493_529_089_205_230_14,
    0.302_851_017_182_309_8,
    -0.068_086_192_124_633_36,
    0.006_747_908_074_344_234,
    -0.000_247_277_697_873_407_4,
];
/// Bumblebee SiLU cut: 0 below `−cut`, `x` from `cut` on.
pub const BUMBLEBEE_SILU_CUT: f64 = 8.0;

/// MPCFormer `Quad`: `0.25 + x/2 + x²/8`.
pub const QUAD: [f64; 3] = [0.25, 0.5, 0.125];

/// `relu(x) = [x ≥ 0]·x`: one comparison, one mux (pcf: GeLU and SiLU become ReLU).
pub(super) fn relu(b: &mut Builder, x: NodeId) -> NodeId {
    let bit = b.drelu(x);
    b.select(bit, x)
}

/// A three-breakpoint form `0 | low | mid | x` with polynomial `low` and `mid` pieces.
fn three_pieces(b: &mut Builder, x: NodeId, breaks: &[f64; 3], low: &[f64], mid: &[f64]) -> NodeId {
    let bits = compare(b, x, breaks);
    let mut pw = Powers::new(x);
    let low = poly(b, &mut pw, low);
    let mid = poly(b, &mut pw, mid);
    piecewise(b, &bits, &[low, mid, x])
}

/// PUMA GeLU: 3 comparisons in one round, then `x², x³, x⁴, x⁶` (3 rounds), then the
/// three muxes (1 round).
pub(super) fn puma_gelu(b: &mut Builder, x: NodeId) -> NodeId {
    three_pieces(b, x, &PUMA_GELU_BREAKS, &PUMA_GELU_CUBIC, &PUMA_GELU_SEXTIC)
}

/// PUMA SiLU: as [`puma_gelu`] with its own pieces (`x², x⁴, x⁶`).
pub(super) fn puma_silu(b: &mut Builder, x: NodeId) -> NodeId {
    three_pieces(
        b,
        x,
        &PUMA_SILU_BREAKS,
        &PUMA_SILU_QUADRATIC,
        &PUMA_SILU_SEXTIC,
    )
}

/// The bits `[x ≥ −cut]`, `[x ≥ 0]`, `[x ≥ cut]` (one round), `s = relu(x)` and
/// `a = |x| = 2s − x` (one mux), and the powers of `a` with `a² = x²`, `a⁴ = x⁴`.
struct Folded {
    low: NodeId,
    high: NodeId,
    relu: NodeId,
    abs: Powers,
}

fn fold(b: &mut Builder, x: NodeId, cut: f64) -> Folded {
    let bits = compare(b, x, &[-cut, 0.0, cut]);
    let mut px = Powers::new(x);
    let x2 = px.get(b, 2);
    let x4 = px.get(b, 4);
    let relu = b.select(bits[1], x);
    let twice = b.mul_const(relu, 2.0);
    let abs = b.sub(twice, x);
    Folded {
        low: bits[0],
        high: bits[2],
        relu,
        abs: Powers::new(abs).with(2, x2).with(4, x4),
    }
}

/// BOLT GeLU with cut `cut`: `P(|x|) + x/2` on `[−cut, cut]`, 0 below, `x` above. The
/// comparisons share one round; `|x|` costs one mux; `|x|²`, `|x|⁴` are `x²`, `x⁴`.
pub(super) fn bolt_gelu(b: &mut Builder, x: NodeId, cut: f64) -> NodeId {
    let mut f = fold(b, x, cut);
    let p = poly(b, &mut f.abs, &BOLT_GELU_ABS);
    let half = b.mul_const(x, 0.5);
    let mid = b.add(p, half);
    piecewise(b, &[f.low, f.high], &[mid, x])
}

/// Bumblebee SiLU: with `S(a) ≈ sigmoid(a)` for `a = |x| < 8`,
/// `silu(x) = a·S(a) + min(x, 0)` (for `x < 0`, `x·(1 − S(a)) = a·S(a) + x`), and
/// `min(x, 0) = x − relu(x)`; 0 below −8, `x` from 8 on. `a·S(a)` is a degree-5
/// polynomial in `a` (`a³ = x²·a`, `a⁵ = x⁴·a`), so no product with the sigmoid remains.
pub(super) fn bumblebee_silu(b: &mut Builder, x: NodeId) -> NodeId {
    let mut f = fold(b, x, BUMBLEBEE_SILU_CUT);
    let mut times_a = [0.0; 6];
    times_a[1..].copy_from_slice(&BUMBLEBEE_SIGMOID_ABS);
    let p = poly(b, &mut f.abs, &times_a);
    let negative_part = b.sub(x, f.relu);
    let mid = b.add(p, negative_part);
    piecewise(b, &[f.low, f.high], &[mid, x])
}

/// MPCFormer `Quad`: one squaring.
pub(super) fn quad(b: &mut Builder, x: NodeId) -> NodeId {
    poly(b, &mut Powers::new(x), &QUAD)
}

/// `Σ_k c_k·x^k`.
fn horner(c: &[f64], x: f64) -> f64 {
    c.iter().rev().fold(0.0, |acc, ck| acc * x + ck)
}

/// `0 | low | mid | x` by the breakpoints.
fn three_pieces_f64(x: f64, breaks: &[f64; 3], low: &[f64], mid: &[f64]) -> f64 {
    match x {
        x if x < breaks[0] => 0.0,
        x if x < breaks[1] => horner(low, x),
        x if x < breaks[2] => horner(mid, x),
        x => x,
    }
}

/// [`relu`] in f64.
pub(super) fn relu_f64(x: f64) -> f64 {
    x.max(0.0)
}

/// [`puma_gelu`] in f64.
pub(super) fn puma_gelu_f64(x: f64) -> f64 {
    three_pieces_f64(x, &PUMA_GELU_BREAKS, &PUMA_GELU_CUBIC, &PUMA_GELU_SEXTIC)
}

/// [`puma_silu`] in f64.
pub(super) fn puma_silu_f64(x: f64) -> f64 {
    three_pieces_f64(
        x,
        &PUMA_SILU_BREAKS,
        &PUMA_SILU_QUADRATIC,
        &PUMA_SILU_SEXTIC,
    )
}

fn bolt_gelu_cut_f64(x: f64, cut: f64) -> f64 {
    match x {
        x if x < -cut => 0.0,
        x if x < cut => horner(&BOLT_GELU_ABS, x.abs()) + 0.5 * x,
        x => x,
    }
}

/// [`bolt_gelu`] with BOLT's cut, in f64.
pub(super) fn bolt_gelu_f64(x: f64) -> f64 {
    bolt_gelu_cut_f64(x, BOLT_GELU_CUT)
}

/// [`bolt_gelu`] with Bumblebee's cut, in f64.
pub(super) fn bumblebee_gelu_f64(x: f64) -> f64 {
    bolt_gelu_cut_f64(x, BUMBLEBEE_GELU_CUT)
}

/// [`bumblebee_silu`] in f64, as the doc states it: `x·S(|x|)` for `x ≥ 0`,
/// `x·(1 − S(|x|))` below.
pub(super) fn bumblebee_silu_f64(x: f64) -> f64 {
    let s = horner(&BUMBLEBEE_SIGMOID_ABS, x.abs());
    match x {
        x if x < -BUMBLEBEE_SILU_CUT => 0.0,
        x if x < 0.0 => x * (1.0 - s),
        x if x < BUMBLEBEE_SILU_CUT => x * s,
        x => x,
    }
}

/// [`quad`] in f64.
pub(super) fn quad_f64(x: f64) -> f64 {
    horner(&QUAD, x)
}
