//! Softmax forms: the exponential by fewer squarings (PUMA, BOLT/Bumblebee), `relun1`
//! (pcf) and `2Quad` (MPCFormer). Every form divides by its row sum through one
//! `reciprocal` per row (left composite, for `expand`), broadcast over the row.

use super::activation::relu;
use crate::passes::builder::Builder;
use comet_ir::{NodeId, Op, UnaryFn};

/// Squarings of PUMA's exp: `(1 + x/32)^32`.
pub const PUMA_EXP_SQUARINGS: u32 = 5;
/// Squarings of BOLT's exp, `(1 + x/2^n)^(2^n)`: APPROXIMATIONS.md leaves `n` open; 6
/// halves PUMA's error (measured: 4.3e-3 on [−14, 0], at x ≈ −2) for one more round.
pub const BOLT_EXP_SQUARINGS: u32 = 6;
/// Below this the exponential is 0 (PUMA, BOLT).
pub const EXP_CLIP: f64 = -14.0;
/// `relun1`'s ε, as pcf's MPC code sets it.
pub const RELUN1_EPS: f64 = 1e-3;
/// `2Quad`'s shift `c`.
pub const TWO_QUAD_SHIFT: f64 = 5.0;

/// `(1 + x/2^n)^(2^n)` by `n` squarings, 0 where `x < −14` (one comparison, one mux).
fn exp_taylor(b: &mut Builder, x: NodeId, squarings: u32) -> NodeId {
    let shifted = b.add_const(x, -EXP_CLIP);
    let in_range = b.drelu(shifted);
    let scaled = b.mul_const(x, 1.0 / f64::from(1u32 << squarings));
    let mut t = b.add_const(scaled, 1.0);
    for _ in 0..squarings {
        t = b.square(t);
    }
    b.select(in_range, t)
}

/// `e · reciprocal(row_sum(e))`: one reciprocal per row.
fn normalize(b: &mut Builder, e: NodeId, eps: f64) -> NodeId {
    let mut z = b.row_sum(e);
    if eps != 0.0 {
        z = b.add_const(z, eps);
    }
    let r = b.unary(UnaryFn::Reciprocal, z);
    b.mul(e, r)
}

/// PUMA/BOLT softmax: subtract the row max, [`exp_taylor`] with `squarings`, normalize.
/// The row sum lies in [1, n] (the maximum contributes 1), as in the exact recipe.
pub(super) fn taylor(b: &mut Builder, s: NodeId, squarings: u32) -> NodeId {
    let m = b.row_max(s);
    let shifted = b.sub(s, m);
    let e = exp_taylor(b, shifted, squarings);
    normalize(b, e, 0.0)
}

/// pcf `relun1`: `relu(s) / (row_sum(relu(s)) + ε)`. No max, no exponential; keys hidden
/// by `causal_mask` (scores below −2^20) become exact zeros through the ReLU.
pub(super) fn relun1(b: &mut Builder, s: NodeId) -> NodeId {
    let r = relu(b, s);
    normalize(b, r, RELUN1_EPS)
}

/// MPCFormer `2Quad`: `(s + c)² / row_sum((s + c)²)`, computed as `((s + c)/c)²` (the
/// same ratio, with row sums near the number of keys, inside the reciprocal's range).
///
/// A hidden key must get 0, but `causal_mask` hides it by adding a large negative number,
/// which the square turns into a large positive one. So when the scores come from a
/// `causal_mask`, the square is taken of the unmasked scores, and the mask is applied to
/// the (non-negative) squares and turned into bits: `q·[causal_mask(q) ≥ 0]` keeps visible
/// keys and zeroes hidden ones, whatever the mask's offset, as long as `q` stays below it.
/// That costs one comparison round; scores without a mask need none.
pub(super) fn two_quad(b: &mut Builder, s: NodeId) -> NodeId {
    let mask = matches!(b.program().graph.node(s).op, Op::CausalMask);
    let scores = match mask {
        true => b.program().graph.operands(s)[0],
        false => s,
    };
    let scaled = b.mul_const(scores, 1.0 / TWO_QUAD_SHIFT);
    let u = b.add_const(scaled, 1.0);
    let mut q = b.square(u);
    if mask {
        let masked = b.causal_mask(q);
        let visible = b.drelu(masked);
        q = b.select(visible, q);
    }
    normalize(b, q, 0.0)
}

/// `e_i / Σ e` over a row of non-negative weights.
fn normalize_f64(e: Vec<f64>, eps: f64) -> Vec<f64> {
    let z: f64 = e.iter().sum::<f64>() + eps;
    e.into_iter().map(|v| v / z).collect()
}

fn taylor_f64(s: &[f64], squarings: u32) -> Vec<f64> {
    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let n = f64::from(1u32 << squarings);
    let e = s.iter().map(|v| match v - m {
        d if d < EXP_CLIP => 0.0,
        d => (1.0 + d / n).powi(1 << squarings),
    });
    normalize_f64(e.collect(), 0.0)
}

/// [`taylor`] with PUMA's squarings, in f64.
pub(super) fn puma_f64(s: &[f64]) -> Vec<f64> {
    taylor_f64(s, PUMA_EXP_SQUARINGS)
}

/// [`taylor`] with BOLT's squarings, in f64.
pub(super) fn bolt_f64(s: &[f64]) -> Vec<f64> {
    taylor_f64(s, BOLT_EXP_SQUARINGS)
}

/// [`relun1`] in f64.
pub(super) fn relun1_f64(s: &[f64]) -> Vec<f64> {
    normalize_f64(s.iter().map(|v| v.max(0.0)).collect(), RELUN1_EPS)
}

/// [`two_quad`] in f64 (over the visible keys).
pub(super) fn two_quad_f64(s: &[f64]) -> Vec<f64> {
    let q = s.iter().map(|v| (v + TWO_QUAD_SHIFT).powi(2)).collect();
    normalize_f64(q, 0.0)
}
