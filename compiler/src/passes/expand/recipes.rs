//! The `exact` profile's recipes (APPROXIMATIONS.md, "exact"; PROTOCOLS.md, reference
//! expansions): each composite function as semantic primitives.
//!
//! Every recipe states the input range it assumes. The errors quoted are the recipe's own
//! approximation error, measured in f64 on a dense grid over that range (`tests/expand.rs`
//! runs the expanded programs through the plaintext interpreter and asserts them);
//! fixed-point rounding comes on top. Recipes that use another function call its recipe, so there is
//! one exp, one reciprocal, one rsqrt and one sigmoid.

use super::Builder;
use comet_ir::NodeId;

/// `(recipe, assumed input range)` for every composite, for docs and reports.
pub const RECIPES: &[(&str, &str)] = &[
    (
        "exp",
        "x in [-14, 0] (0 below -14; not clipped above 0, where the error grows)",
    ),
    (
        "reciprocal",
        "x in [1, 660] (diverges above 2/0.003 = 666.7)",
    ),
    (
        "rsqrt",
        "x in [2^-16, 4e5] (scaled by powers of 4 into the core's [0.1, 150]; relative error < 5e-3 there)",
    ),
    (
        "sigmoid",
        "any x (exp only sees -|x|, reciprocal only [1, 2])",
    ),
    ("tanh", "any x (sigmoid of 2x)"),
    ("silu", "any x (sigmoid)"),
    ("gelu", "any x (sigmoid)"),
    ("relu", "any x (exact)"),
    (
        "softmax",
        "any scores, rows whose exp-sum stays in [1, 660] (always when n <= 660)",
    ),
    ("layer_norm", "variance + eps in [2^-16, 4e5] (rsqrt)"),
    ("rms_norm", "mean(x^2) + eps in [2^-16, 4e5] (rsqrt)"),
];

/// Squarings in [`exp`]: `(1 + x/2^n)^(2^n)` with `n` = 8.
const EXP_SQUARINGS: u32 = 8;
/// Below this, [`exp`] returns 0.
const EXP_CLIP: f64 = -14.0;
/// Newton steps of [`reciprocal`].
const RECIPROCAL_STEPS: u32 = 10;
/// Newton steps of [`rsqrt`].
const RSQRT_STEPS: u32 = 3;
/// `2·sqrt(2/π)`: the tanh-GeLU's `sqrt(2/π)` doubled, because `0.5·(1 + tanh(u)) = σ(2u)`.
const GELU_SIGMOID_SCALE: f64 = 1.595_769_121_605_730_7;
/// The cubic coefficient of the tanh-GeLU.
const GELU_CUBIC: f64 = 0.044_715;

/// `e^x` for `x` in [−14, 0]: `(1 + x/2^8)^(2^8)` by 8 squarings, and 0 where `x < −14`
/// (one comparison and one mux).
///
/// Source: CrypTen `approximations.py` (`exp`, `exp_iterations` = 8; the limit
/// `(1 + x/2^n)^(2^n)`), with the clip below −14 of PUMA/SPU and Bolt. Absolute error on
/// [−14, 0] ≤ 1.06e-3 (at x ≈ −2); below −14 it is e^x < 8.4e-7. Positive inputs are not
/// clipped: the relative error grows with x (1.9e-3 at x = 1).
///
/// Declared ranges (on the elements that reach the output: the squarings of inputs below
/// −14 are discarded by the mux, whatever they hold): `x/2^8` in [−14/2^8, 0], the
/// squarings in [0, 1], the result in [0, 1]; each with a little slack for rounding.
pub(super) fn exp(b: &mut Builder, x: NodeId) -> NodeId {
    b.assume(x, "exp", f64::NEG_INFINITY, 0.0);
    let shifted = b.add_const(x, -EXP_CLIP);
    let in_range = b.drelu(shifted);
    let step = 1.0 / f64::from(1u32 << EXP_SQUARINGS);
    let scaled = b.mul_const(x, step);
    b.declare(scaled, EXP_CLIP * step - SLACK, SLACK);
    let mut t = b.add_const(scaled, 1.0);
    for _ in 0..EXP_SQUARINGS {
        t = b.square(t);
        b.declare(t, 0.0, 1.0 + SLACK);
    }
    let y = b.select(in_range, t);
    b.declare(y, 0.0, 1.0 + SLACK);
    y
}

/// Slack added to declared ranges for fixed-point rounding (a few units in the last place
/// at 16 fractional bits, with a wide margin).
const SLACK: f64 = 1e-3;

/// The declared ranges of a Newton reciprocal's step `y ← y·(2 − x·y)` while it
/// converges (`0 < x·y0 < 2`): `x·y ≤ xy_max` (at most 1 after the first step), so
/// `−x·y` lies in [−xy_max, 0], the correction `2 − x·y` in [0, 2], and every iterate in
/// [0, y_max], `y_max` = max(y0, 1/x) over the input range (each step has
/// `1 − x·y' = (1 − x·y)² ≥ 0`, so `y' ≤ 1/x`).
fn declare_newton_reciprocal(
    b: &mut Builder,
    minus_xy: NodeId,
    corr: NodeId,
    y: NodeId,
    xy_max: f64,
    y_max: f64,
) {
    b.declare(minus_xy, -xy_max - SLACK, SLACK);
    b.declare(corr, -SLACK, 2.0 + SLACK);
    b.declare(y, 0.0, y_max + SLACK);
}

/// `1/x` for `x` in [1, 660]: initial guess `3·e^(1−2x) + 0.003` ([`exp`] of an input
/// ≤ −1), then 10 Newton steps `y ← y·(2 − x·y)`.
///
/// Source: CrypTen `approximations.py` (`reciprocal`, method `NR`, 10 iterations). Newton
/// squares the relative error `1 − x·y` each step, so it converges while `0 < x·y0 < 2`:
/// above x ≈ 7.5 the exp term is clipped to 0 and `y0 = 0.003`, which bounds the range by
/// 2/0.003 ≈ 666.7 (not 2^10). Relative error on [1, 660] ≤ 3.7e-8 (worst near x = 5,
/// where `x·y0` is smallest).
///
/// Assumed range (checked by the range analysis): [0.99, 660], so that a softmax's row
/// sum, whose exact lower end 1 rounds by a unit in the last place, stays inside; at 0.99
/// the guess is 1.13 and `x·y0` = 1.12. Declared: the Newton steps
/// (`declare_newton_reciprocal`) with `x·y ≤ 1.99` (at x = 660) and `y ≤ 1.13`.
pub(super) fn reciprocal(b: &mut Builder, x: NodeId) -> NodeId {
    b.assume(x, "reciprocal", 0.99, 660.0);
    let minus_2x = b.mul_const(x, -2.0);
    let arg = b.add_const(minus_2x, 1.0);
    let e = exp(b, arg);
    let e3 = b.mul_const(e, 3.0);
    let mut y = b.add_const(e3, 0.003);
    let minus_x = b.neg(x);
    for _ in 0..RECIPROCAL_STEPS {
        let minus_xy = b.mul(minus_x, y);
        let correction = b.add_const(minus_xy, 2.0);
        y = b.mul(y, correction);
        declare_newton_reciprocal(b, minus_xy, correction, y, 1.99, 1.13);
    }
    y
}

/// Newton steps of [`reciprocal_unit`].
const UNIT_RECIPROCAL_STEPS: u32 = 3;

/// `1/x` for `x` in [1, 2] (sigmoid's `1 + e^−|x|`): the linear initial guess
/// `24/17 − 8/17·x`, whose relative error `|1 − x·y0|` is at most 1/17 on [1, 2], then 3
/// Newton steps `y ← y·(2 − x·y)`, which square it each time: (1/17)^8 ≈ 1.4e-10.
///
/// Source: the classic Newton–Raphson division initial estimate `48/17 − 32/17·d` for
/// `d` in [1/2, 1] (here with `d = x/2`). Replaces the generic [`reciprocal`] (an exp for
/// the guess and 10 steps: 29 rounds) by 6 rounds where the range is known.
///
/// Assumed range [1, 2]; declared: the Newton steps with `x·y ≤ 18/17` and `y ≤ 1`.
fn reciprocal_unit(b: &mut Builder, x: NodeId) -> NodeId {
    b.assume(x, "reciprocal (sigmoid)", 1.0 - SLACK, 2.0 + SLACK);
    let slope = b.mul_const(x, -8.0 / 17.0);
    let mut y = b.add_const(slope, 24.0 / 17.0);
    let minus_x = b.neg(x);
    for _ in 0..UNIT_RECIPROCAL_STEPS {
        let minus_xy = b.mul(minus_x, y);
        let correction = b.add_const(minus_xy, 2.0);
        y = b.mul(y, correction);
        declare_newton_reciprocal(b, minus_xy, correction, y, 18.0 / 17.0, 1.0);
    }
    y
}

/// Thresholds below which the rsqrt recipe scales its input up by 4: `0.4 / 4^j`, j = 0..8.
pub const RSQRT_LOW: [f64; 8] = [
    0.4,
    0.1,
    0.025,
    6.25e-3,
    1.5625e-3,
    3.90625e-4,
    9.765625e-5,
    2.44140625e-5,
];
/// Thresholds above which the rsqrt recipe scales its input down by 4: `100 · 4^j`, j = 0..6.
pub const RSQRT_HIGH: [f64; 6] = [100.0, 400.0, 1600.0, 6400.0, 25600.0, 102400.0];

/// `1/sqrt(x)` for `x` in [2^−16, 4·10^5]: range reduction into the core's [0.1, 150],
/// then [`rsqrt_core`].
///
/// The comparisons `c_j = [x ≤ 0.4/4^j]` and `d_j = [x ≥ 100·4^j]` are monotone in `j`,
/// so with `m = Σ c_j − Σ d_j` the factors `4^m` and `2^m` are *linear* in the bits:
/// `4^m = 1 + Σ_j c_j·3·4^j − Σ_j d_j·3·4^−(j+1)` (at most one of the two sums is
/// non-zero; each telescopes), likewise `2^m`. All 14 comparisons travel in one round and
/// all 14 bit conversions (B2A) in the next; then `rsqrt(x) = rsqrt_core(x·4^m)·2^m`,
/// with `x·4^m` in [0.4, 1.6) below 0.4, in (25, 100] above 100, and `x` itself between.
///
/// Source: the normalisation step of SecFormer and SIGMA's rsqrt (range reduction before
/// a local approximation), written with comparisons against public powers of 4. Needed on
/// real models: glassllm-en's first RMSNorm sees `mean(x²)` ≈ 0.005, where the bare
/// CrypTen iteration (range [0.1, 150]) returns a useless value.
///
/// Assumed range (checked by the range analysis): [0.1/4^8, 150·4^6], the core's range
/// scaled by the largest factors the reduction applies (it contains the documented
/// [2^−16, 4·10^5], and a norm's `eps` = 10^−5 on a row of zeros). Declared: the reduced
/// input in the core's [0.1, 150], the result in [0, 1.005/sqrt(0.1/4^8)].
pub(super) fn rsqrt(b: &mut Builder, x: NodeId) -> NodeId {
    debug_assert_eq!(RSQRT_MIN, 0.1 / 4f64.powi(RSQRT_LOW.len() as i32));
    let (core_lo, core_hi) = (0.1, 150.0);
    b.assume(
        x,
        "rsqrt",
        RSQRT_MIN,
        core_hi * 4f64.powi(RSQRT_HIGH.len() as i32),
    );
    let neg_x = b.neg(x);
    let low: Vec<NodeId> = RSQRT_LOW
        .iter()
        .map(|t| {
            let d = b.add_const(neg_x, *t);
            let bit = b.drelu(d);
            b.b2a(bit)
        })
        .collect();
    let high: Vec<NodeId> = RSQRT_HIGH
        .iter()
        .map(|t| {
            let d = b.add_const(x, -t);
            let bit = b.drelu(d);
            b.b2a(bit)
        })
        .collect();
    let scale_in = power_factor(b, &low, &high, 4.0);
    let scale_out = power_factor(b, &low, &high, 2.0);
    let reduced = b.mul(x, scale_in);
    b.declare(reduced, core_lo, core_hi);
    let y = rsqrt_core(b, reduced);
    let out = b.mul(y, scale_out);
    b.declare(out, 0.0, 1.005 / RSQRT_MIN.sqrt());
    out
}

/// `base^m` for `m = Σ up − Σ down` over monotone 0/1 values: `1 + Σ_j up_j·(base−1)·base^j
/// − Σ_j down_j·(1 − 1/base)·base^−j`.
fn power_factor(b: &mut Builder, up: &[NodeId], down: &[NodeId], base: f64) -> NodeId {
    let mut terms = Vec::new();
    for (j, bit) in up.iter().enumerate() {
        terms.push(b.mul_const(*bit, (base - 1.0) * base.powi(j as i32)));
    }
    for (j, bit) in down.iter().enumerate() {
        terms.push(b.mul_const(*bit, -(1.0 - 1.0 / base) * base.powi(-(j as i32))));
    }
    let sum = terms
        .into_iter()
        .reduce(|acc, t| b.add(acc, t))
        .expect("thresholds are non-empty");
    b.add_const(sum, 1.0)
}

/// `1/sqrt(x)` for `x` in [0.1, 150]: initial guess `2.2·e^−(x/2 + 0.2) + 0.2 − x/1024`,
/// then 3 Newton steps `y ← y·(3 − x·y²)/2`, computed as `y·(1.5 + (−x/2)·y²)` with `−x/2`
/// formed once.
///
/// Source: CrypTen `approximations.py` (`inv_sqrt`, 3 iterations). The range was found
/// numerically: relative error < 1e-2 exactly on [0.086, 159]; on [0.1, 150] it is
/// ≤ 4.9e-3 (worst at 0.1; 1.1e-3 at x = 1, 2.6e-3 at x = 10). Beyond 159 the guess turns
/// negative and Newton diverges.
fn rsqrt_core(b: &mut Builder, x: NodeId) -> NodeId {
    let minus_half_x = b.mul_const(x, -0.5);
    let arg = b.add_const(minus_half_x, -0.2);
    let e = exp(b, arg);
    let e22 = b.mul_const(e, 2.2);
    let guess = b.add_const(e22, 0.2);
    let slope = b.mul_const(x, 1.0 / 1024.0);
    let mut y = b.sub(guess, slope);
    for _ in 0..RSQRT_STEPS {
        let y2 = b.square(y);
        let t = b.mul(minus_half_x, y2);
        let correction = b.add_const(t, 1.5);
        y = b.mul(y, correction);
        declare_newton_rsqrt(b, [y2, t, correction, y]);
    }
    y
}

/// The declared ranges of an rsqrt Newton step `y ← y·(1.5 − x/2·y²)` on x in [0.1, 150]
/// while it converges (`x·y0² < 3`): each step keeps `y' ≤ 1/sqrt(x)` (the maximum of
/// `y·(3 − x·y²)/2` over y), so every iterate lies in [0, max(y0, 1/sqrt(0.1))] =
/// [0, 3.17] (the guess is at most 2.4), `x·y² ≤ 3`, `−x/2·y²` in [−1.5, 0] and the
/// correction in [0, 1.5].
fn declare_newton_rsqrt(b: &mut Builder, [y2, t, corr, y]: [NodeId; 4]) {
    let y_max = 3.17;
    b.declare(y2, 0.0, y_max * y_max + SLACK);
    b.declare(t, -1.5 - SLACK, SLACK);
    b.declare(corr, -SLACK, 1.5 + SLACK);
    b.declare(y, 0.0, y_max + SLACK);
}

/// `σ(x) = 1/(1 + e^−x)` for any `x`: with `b = [x ≥ 0]`, `r = 1/(1 + e^−|x|)` (so [`exp`]
/// only sees inputs ≤ 0 and [`reciprocal_unit`] only [1, 2]), and `σ(x) = b ? r : 1 − r`,
/// computed as `select(b, 2r − 1) + 1 − r`. `−|x|` is `x − 2·select(b, x)`.
///
/// Source: CrypTen `approximations.py` (`sigmoid`, the sign trick that keeps exp's input
/// non-positive). Absolute error ≤ 8.6e-4 (at |x| ≈ 2.4), all from exp.
pub(super) fn sigmoid(b: &mut Builder, x: NodeId) -> NodeId {
    let nonneg = b.drelu(x);
    let pos_part = b.select(nonneg, x);
    let twice_pos = b.mul_const(pos_part, 2.0);
    let minus_abs = b.sub(x, twice_pos);
    b.declare(minus_abs, f64::NEG_INFINITY, 0.0);
    let e = exp(b, minus_abs);
    let denom = b.add_const(e, 1.0);
    let r = reciprocal_unit(b, denom);
    let two_r = b.mul_const(r, 2.0);
    let flip = b.add_const(two_r, -1.0);
    let chosen = b.select(nonneg, flip);
    let diff = b.sub(chosen, r);
    let y = b.add_const(diff, 1.0);
    b.declare(y, -0.01, 1.01);
    y
}

/// `tanh(x) = 2·σ(2x) − 1` for any `x`.
///
/// Source: CrypTen `approximations.py` (`tanh`, method `sigmoid`). Absolute error ≤ 1.7e-3
/// (twice sigmoid's, at |x| ≈ 1.2).
pub(super) fn tanh(b: &mut Builder, x: NodeId) -> NodeId {
    let twice = b.mul_const(x, 2.0);
    let s = sigmoid(b, twice);
    let s2 = b.mul_const(s, 2.0);
    b.add_const(s2, -1.0)
}

/// `silu(x) = x·σ(x)` for any `x`.
///
/// Source: the definition (Elfwing et al. 2018), with CrypTen's sigmoid. Absolute error
/// ≤ 2.4e-3 (at x ≈ −3.2): sigmoid's error times |x|, which decays with e^−|x|.
pub(super) fn silu(b: &mut Builder, x: NodeId) -> NodeId {
    let s = sigmoid(b, x);
    b.mul(x, s)
}

/// The tanh-GeLU `0.5·x·(1 + tanh(0.7978845608·(x + 0.044715·x³)))` for any `x`, computed
/// as `x·σ(1.5957691216·(x + 0.044715·x³))`: the same function, since
/// `0.5·(1 + tanh(u)) = σ(2u)`, with two fewer multiplications by constants (truncations
/// once conversions are explicit) and two fewer additions.
///
/// Source: Hendrycks & Gimpel 2016 (the tanh form GPT-2 uses); the "exact" profile of
/// PROTOCOLS.md (tanh via exp and reciprocal, as in Iron). Absolute error ≤ 1.33e-3 on
/// [−10, 10] against the tanh form and against the erf form alike (at x ≈ 1.7 and 2.1).
pub(super) fn gelu(b: &mut Builder, x: NodeId) -> NodeId {
    let x2 = b.square(x);
    let x3 = b.mul(x2, x);
    let cubic = b.mul_const(x3, GELU_CUBIC);
    let inner = b.add(x, cubic);
    let u = b.mul_const(inner, GELU_SIGMOID_SCALE);
    let s = sigmoid(b, u);
    b.mul(x, s)
}

/// `relu(x) = [x ≥ 0]·x` for any `x`: one comparison and one mux, no approximation.
///
/// Source: PROTOCOLS.md (ReLU = DReLU + mux).
pub(super) fn relu(b: &mut Builder, x: NodeId) -> NodeId {
    let nonneg = b.drelu(x);
    b.select(nonneg, x)
}

/// Softmax over the last axis: `m = row_max(s)`, `e = exp(s − m)`, `z = row_sum(e)`,
/// `out = e · reciprocal(z)` with **one reciprocal per row** broadcast over it.
///
/// Source: PUMA/SPU (`optimize_denominator_with_broadcast`); max subtraction as in CrypTen.
/// Range: any scores, since [`exp`] sees `s − m ≤ 0` (masked keys fall below −14 and
/// become exact zeros), and the row's maximum contributes exactly e^0 = 1, so `z` lies in
/// [1, n]: [`reciprocal`]'s range holds for rows of up to 660 keys, and for longer rows as
/// long as the sum stays below 660.
pub(super) fn softmax(b: &mut Builder, s: NodeId) -> NodeId {
    let m = b.row_max(s);
    let shifted = b.sub(s, m);
    b.declare(shifted, f64::NEG_INFINITY, 0.0);
    let e = exp(b, shifted);
    let z = b.row_sum(e);
    b.declare(z, 1.0 - SLACK, f64::INFINITY);
    let r = reciprocal(b, z);
    let y = b.mul(e, r);
    b.declare(y, 0.0, 1.0 + 0.01);
    // the row sums to z·reciprocal(z), within the reciprocal's 1% of 1 (the analysis adds
    // each entry's rounding)
    b.declare_norms(y, f64::INFINITY, 1.0 + 0.01);
    y
}

/// LayerNorm over the last axis of width `d`: `μ = row_sum(x)/d`, `c = x − μ`,
/// `v = row_sum(c²)/d + eps`, `y = c·rsqrt(v)·g + bias`.
///
/// Source: Ba et al. 2016; the recipe of PROTOCOLS.md (mean local, variance by squaring,
/// [`rsqrt`], multiply, affine). Range: `v` in [0.1, 150] ([`rsqrt`]).
pub(super) fn layer_norm(b: &mut Builder, x: NodeId, g: NodeId, bias: NodeId, eps: f64) -> NodeId {
    let inv_d = 1.0 / b.last_width(x) as f64;
    let sum = b.row_sum(x);
    let mean = b.mul_const(sum, inv_d);
    let c = b.sub(x, mean);
    let r = inverse_rms(b, c, inv_d, eps);
    let normed = b.mul(c, r);
    declare_normed(b, normed, inv_d);
    let scaled = b.mul(normed, g);
    b.add(scaled, bias)
}

/// RMSNorm over the last axis of width `d`: `v = row_sum(x²)/d + eps`,
/// `y = x·rsqrt(v)·g`.
///
/// Source: Zhang & Sennrich 2019; as [`layer_norm`] without the mean. Range: `v` in
/// [0.1, 150] ([`rsqrt`]).
pub(super) fn rms_norm(b: &mut Builder, x: NodeId, g: NodeId, eps: f64) -> NodeId {
    let inv_d = 1.0 / b.last_width(x) as f64;
    let r = inverse_rms(b, x, inv_d, eps);
    let normed = b.mul(x, r);
    declare_normed(b, normed, inv_d);
    b.mul(normed, g)
}

/// A normalised row `x_i / sqrt(mean(x²) + eps)` lies within `±sqrt(d)` (one entry can
/// hold the whole row's energy), times rsqrt's relative error (< 5e-3): declared
/// `±1.01·sqrt(d)`.
///
/// The same argument bounds the whole row: L2 norm `1.01·sqrt(d)`.
fn declare_normed(b: &mut Builder, normed: NodeId, inv_d: f64) {
    let bound = 1.01 / inv_d.sqrt();
    b.declare(normed, -bound, bound);
    b.declare_norms(normed, bound, f64::INFINITY);
}

/// The lowest input [`rsqrt`] holds for: the core's 0.1 over the largest scaling, `4^8`.
const RSQRT_MIN: f64 = 0.1 / 65536.0;

/// `rsqrt(row_sum(x²)·inv_d + eps)`: one value per row, shared by both norms. An `eps`
/// below [`RSQRT_MIN`] (BERT's 10^−12) is raised to it, so the input always lies where
/// the recipe's declared ranges hold: in real numbers `rsqrt` moves by `7.6·10^−7/v`
/// relative; in the ring both constants round to 0 (docs/approximations.md).
fn inverse_rms(b: &mut Builder, x: NodeId, inv_d: f64, eps: f64) -> NodeId {
    let sq = b.square(x);
    let sum = b.row_sum(sq);
    let mean = b.mul_const(sum, inv_d);
    let v = b.add_const(mean, eps.max(RSQRT_MIN));
    rsqrt(b, v)
}
