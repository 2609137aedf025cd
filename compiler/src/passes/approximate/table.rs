//! The rewrites: which form replaces which op under which profile, with the input range
//! it is valid on and its maximum absolute error there.
//!
//! The errors are measured, not quoted: against erf-GeLU, exact SiLU, softmax and the
//! norms, on a dense grid (element-wise forms) or on families of rows (softmax, norms)
//! over the declared range, in f64 (the formula here and the compiled subgraph run by the
//! plaintext interpreter) and on the fixed-point backend (`tests/approx.rs`). Each bound is
//! the largest of those measurements, rounded up. Forms that are substitutes rather than
//! approximations (`pcf`, `mpcformer`) declare their error all the same: it is what a model
//! that was not fine-tuned or distilled for them loses.

use super::{activation, lookup, norm, softmax};
use crate::passes::builder::Builder;
use comet_ir::{ApproxKind, ApproxProfile};
use comet_ir::{NodeId, Op};

/// Builds a form in place of a composite `op` with operands `xs`; returns its result.
pub(crate) type Build = fn(&mut Builder, &[NodeId], &Op) -> NodeId;

/// A form in f64, for checks and reports.
#[derive(Debug, Clone, Copy)]
pub enum Formula {
    /// An element-wise function.
    Elementwise(fn(f64) -> f64),
    /// A function of a row (softmax over its visible keys; norms with `g = 1`, `b = 0`).
    Row(fn(&[f64]) -> Vec<f64>),
}

/// One named rewrite.
#[derive(Debug, Clone, Copy)]
pub struct Rewrite {
    /// `profile.op`, e.g. `puma.gelu`.
    pub name: &'static str,
    /// The profile it belongs to.
    pub profile: ApproxProfile,
    /// The op it replaces: `gelu`, `silu`, `softmax`, `layer_norm` or `rms_norm`.
    pub op: &'static str,
    /// The form, in words.
    pub form: &'static str,
    /// Where `max_abs_error` holds, in words.
    pub range: &'static str,
    /// The input values the range allows: `x` for element-wise forms, scores for softmax,
    /// the row values for norms (with the row conditions of `range`).
    pub domain: (f64, f64),
    /// Maximum absolute error against the exact function on `range`.
    pub max_abs_error: f64,
    /// Whether the fixed-point backend's rounding, not the form, sets `max_abs_error`
    /// (the table norms: their f64 error is 3× smaller): the bound must then be tight
    /// against the fixed-point measurement instead of the f64 one.
    pub limited_by_fixed_point: bool,
    /// The form in f64.
    pub formula: Formula,
    /// The form as primitives (and the composites `expand` still expands).
    pub(crate) build: Build,
}

/// Every rewrite, by profile then op.
pub const REWRITES: &[Rewrite] = &[
    Rewrite {
        name: "pcf.gelu",
        profile: ApproxProfile::Pcf,
        op: "gelu",
        form: "relu(x)",
        range: "any x (a substitute: error 0.170 at x = -0.75)",
        domain: (-10.0, 10.0),
        max_abs_error: 0.170,
        limited_by_fixed_point: false,
        formula: Formula::Elementwise(activation::relu_f64),
        build: |b, xs, _| activation::relu(b, xs[0]),
    },
    Rewrite {
        name: "pcf.silu",
        profile: ApproxProfile::Pcf,
        op: "silu",
        form: "relu(x)",
        range: "any x (a substitute: error 0.279 at x = -1.28)",
        domain: (-10.0, 10.0),
        max_abs_error: 0.279,
        limited_by_fixed_point: false,
        formula: Formula::Elementwise(activation::relu_f64),
        build: |b, xs, _| activation::relu(b, xs[0]),
    },
    Rewrite {
        name: "pcf.softmax",
        profile: ApproxProfile::Pcf,
        op: "softmax",
        form: "relu(s) / (row_sum(relu(s)) + 1e-3)",
        range: "scores in [-8, 8], rows of 1 to 64 keys; the reciprocal needs \
                row_sum(relu(s)) + 1e-3 <= 660 (a substitute: a row of negative scores \
                becomes 0)",
        domain: (-8.0, 8.0),
        max_abs_error: 1.0,
        limited_by_fixed_point: false,
        formula: Formula::Row(softmax::relun1_f64),
        build: |b, xs, _| softmax::relun1(b, xs[0]),
    },
    Rewrite {
        name: "pcf.layer_norm",
        profile: ApproxProfile::Pcf,
        op: "layer_norm",
        form: "(x - mean(x)) * g + b",
        range: "rows with standard deviation in [0.5, 2] and |x - mean| <= 3 sd, |g| <= 1 \
                (a substitute: off by the factor sd)",
        domain: (-7.0, 7.0),
        max_abs_error: 3.0001,
        limited_by_fixed_point: false,
        formula: Formula::Row(norm_f64::centered),
        build: |b, xs, _| norm::affine_layer_norm(b, xs[0], xs[1], xs[2]),
    },
    Rewrite {
        name: "pcf.rms_norm",
        profile: ApproxProfile::Pcf,
        op: "rms_norm",
        form: "x * g",
        range: "rows with root mean square in [0.5, 2] and |x| <= 3 rms, |g| <= 1 \
                (a substitute: off by the factor rms)",
        domain: (-7.0, 7.0),
        max_abs_error: 3.0001,
        limited_by_fixed_point: false,
        formula: Formula::Row(norm_f64::identity),
        build: |b, xs, _| norm::affine_rms_norm(b, xs[0], xs[1]),
    },
    Rewrite {
        name: "puma.gelu",
        profile: ApproxProfile::Puma,
        op: "gelu",
        form: "0 | cubic on [-4, -1.95) | even degree-6 polynomial + x/2 on [-1.95, 3] | x",
        range: "any x (measured on [-10, 10], worst at the breakpoint x = 3; beyond, 0 or x)",
        domain: (-10.0, 10.0),
        max_abs_error: 0.0200,
        limited_by_fixed_point: false,
        formula: Formula::Elementwise(activation::puma_gelu_f64),
        build: |b, xs, _| activation::puma_gelu(b, xs[0]),
    },
    Rewrite {
        name: "puma.silu",
        profile: ApproxProfile::Puma,
        op: "silu",
        form: "0 | quadratic on [-8, -4) | even degree-6 polynomial + x/2 on [-4, 4) | x",
        range: "any x (measured on [-10, 10], worst at the breakpoint x = 4; beyond, 0 or x)",
        domain: (-10.0, 10.0),
        max_abs_error: 0.0720,
        limited_by_fixed_point: false,
        formula: Formula::Elementwise(activation::puma_silu_f64),
        build: |b, xs, _| activation::puma_silu(b, xs[0]),
    },
    Rewrite {
        name: "puma.softmax",
        profile: ApproxProfile::Puma,
        op: "softmax",
        form: "e = (1 + (s - max)/32)^32, 0 below -14; e * reciprocal(row_sum(e))",
        range: "scores in [-8, 8], rows of 1 to 64 keys; any scores compute (the max is \
                subtracted), rows of up to 660 keys (the reciprocal's range)",
        domain: (-8.0, 8.0),
        max_abs_error: 0.0280,
        limited_by_fixed_point: false,
        formula: Formula::Row(softmax::puma_f64),
        build: |b, xs, _| softmax::taylor(b, xs[0], softmax::PUMA_EXP_SQUARINGS),
    },
    Rewrite {
        name: "bolt.gelu",
        profile: ApproxProfile::Bolt,
        op: "gelu",
        form: "0 | degree-4 polynomial in |x| + x/2 on [-2.7, 2.7] | x",
        range: "any x (measured on [-10, 10], worst at the cut |x| = 2.7; beyond, 0 or x)",
        domain: (-10.0, 10.0),
        max_abs_error: 0.0094,
        limited_by_fixed_point: false,
        formula: Formula::Elementwise(activation::bolt_gelu_f64),
        build: |b, xs, _| activation::bolt_gelu(b, xs[0], activation::BOLT_GELU_CUT),
    },
    Rewrite {
        name: "bolt.softmax",
        profile: ApproxProfile::Bolt,
        op: "softmax",
        form: "e = (1 + (s - max)/64)^64, 0 below -14; e * reciprocal(row_sum(e))",
        range: "scores in [-8, 8], rows of 1 to 64 keys; any scores compute (the max is \
                subtracted), rows of up to 660 keys (the reciprocal's range)",
        domain: (-8.0, 8.0),
        max_abs_error: 0.0140,
        limited_by_fixed_point: false,
        formula: Formula::Row(softmax::bolt_f64),
        build: |b, xs, _| softmax::taylor(b, xs[0], softmax::BOLT_EXP_SQUARINGS),
    },
    Rewrite {
        name: "bumblebee.gelu",
        profile: ApproxProfile::Bumblebee,
        op: "gelu",
        form: "0 | degree-4 polynomial in |x| + x/2 on [-3, 3] | x",
        range: "any x (measured on [-10, 10], worst at the cut |x| = 3; beyond, 0 or x)",
        domain: (-10.0, 10.0),
        max_abs_error: 0.0053,
        limited_by_fixed_point: false,
        formula: Formula::Elementwise(activation::bumblebee_gelu_f64),
        build: |b, xs, _| activation::bolt_gelu(b, xs[0], activation::BUMBLEBEE_GELU_CUT),
    },
    Rewrite {
        name: "bumblebee.silu",
        profile: ApproxProfile::Bumblebee,
        op: "silu",
        form: "x * sigmoid(x), sigmoid(|x|) a degree-4 polynomial on |x| < 8; 0 | x beyond",
        range: "any x (measured on [-10, 10], worst at the cut x = -8; beyond, 0 or x)",
        domain: (-10.0, 10.0),
        max_abs_error: 0.0099,
        limited_by_fixed_point: false,
        formula: Formula::Elementwise(activation::bumblebee_silu_f64),
        build: |b, xs, _| activation::bumblebee_silu(b, xs[0]),
    },
    Rewrite {
        name: "bumblebee.softmax",
        profile: ApproxProfile::Bumblebee,
        op: "softmax",
        form: "as bolt.softmax",
        range: "scores in [-8, 8], rows of 1 to 64 keys; any scores compute (the max is \
                subtracted), rows of up to 660 keys (the reciprocal's range)",
        domain: (-8.0, 8.0),
        max_abs_error: 0.0140,
        limited_by_fixed_point: false,
        formula: Formula::Row(softmax::bolt_f64),
        build: |b, xs, _| softmax::taylor(b, xs[0], softmax::BOLT_EXP_SQUARINGS),
    },
    Rewrite {
        name: "mpcformer.gelu",
        profile: ApproxProfile::Mpcformer,
        op: "gelu",
        form: "0.125 x^2 + 0.5 x + 0.25 (Quad)",
        range: "x in [-4, 4] (a substitute for distilled models; it grows as x^2 outside)",
        domain: (-4.0, 4.0),
        max_abs_error: 0.251,
        limited_by_fixed_point: false,
        formula: Formula::Elementwise(activation::quad_f64),
        build: |b, xs, _| activation::quad(b, xs[0]),
    },
    Rewrite {
        name: "mpcformer.softmax",
        profile: ApproxProfile::Mpcformer,
        op: "softmax",
        form: "(s + 5)^2 / row_sum((s + 5)^2) (2Quad), keys hidden by causal_mask get 0",
        range: "scores in [-8, 8], rows of 1 to 64 keys; the reciprocal needs \
                row_sum(((s + 5)/5)^2) <= 660 (a substitute for distilled models)",
        domain: (-8.0, 8.0),
        max_abs_error: 0.680,
        limited_by_fixed_point: false,
        formula: Formula::Row(softmax::two_quad_f64),
        build: |b, xs, _| softmax::two_quad(b, xs[0]),
    },
    Rewrite {
        name: "lut.gelu",
        profile: ApproxProfile::Lut,
        op: "gelu",
        form: "relu(x) - gap(inside ? x : -4), inside = [-4 + 1/256 <= x < 4], gap = relu - \
               gelu from a 2^11 table at 1/256",
        range: "any x (measured on [-10, 10]; beyond the table the gap is below 1.3e-4)",
        domain: (-10.0, 10.0),
        max_abs_error: 0.0020,
        limited_by_fixed_point: false,
        formula: Formula::Elementwise(lookup::gelu_f64),
        build: |b, xs, _| lookup::gelu(b, xs[0]),
    },
    Rewrite {
        name: "lut.silu",
        profile: ApproxProfile::Lut,
        op: "silu",
        form: "relu(x) - gap(inside ? x : -16), inside = [-16 + 1/256 <= x < 16], gap = relu \
               - silu from a 2^13 table at 1/256",
        range: "any x (measured on [-20, 20]; beyond the table the gap is below 1.8e-6)",
        domain: (-20.0, 20.0),
        max_abs_error: 0.0020,
        limited_by_fixed_point: false,
        formula: Formula::Elementwise(lookup::silu_f64),
        build: |b, xs, _| lookup::silu(b, xs[0]),
    },
    Rewrite {
        name: "lut.softmax",
        profile: ApproxProfile::Lut,
        op: "softmax",
        form: "e = exp(s - max) from a 2^13 table at 1/256, 0 below -16; \
               e * reciprocal(row_sum(e))",
        range: "scores in [-8, 8], rows of 1 to 64 keys; any scores compute (the max is \
                subtracted), rows of up to 660 keys (the reciprocal's range)",
        domain: (-8.0, 8.0),
        max_abs_error: 0.0010,
        limited_by_fixed_point: false,
        formula: Formula::Row(lookup::softmax_f64),
        build: |b, xs, _| lookup::softmax(b, xs[0]),
    },
    Rewrite {
        name: "lut.layer_norm",
        profile: ApproxProfile::Lut,
        op: "layer_norm",
        form: "the exact form with rsqrt(v) = T(v*4^(8-a)) * 2^-a, 4^a <= v < 4^(a+1) by one \
               comparison, T = 2^8/sqrt from a 2^19 table",
        range: "rows with standard deviation in [0.5, 2] and |x - mean| <= 3 sd, |g| <= 1; \
                any variance + eps in [4^-9, 4^9)",
        domain: (-7.0, 7.0),
        max_abs_error: 6.0e-5,
        limited_by_fixed_point: true,
        formula: Formula::Row(lookup::layer_norm_f64),
        build: |b, xs, op| lookup::layer_norm(b, xs[0], xs[1], xs[2], eps_of(op)),
    },
    Rewrite {
        name: "lut.rms_norm",
        profile: ApproxProfile::Lut,
        op: "rms_norm",
        form: "the exact form with the table rsqrt of lut.layer_norm",
        range: "rows with root mean square in [0.5, 2] and |x| <= 3 rms, |g| <= 1; any \
                mean(x^2) + eps in [4^-9, 4^9)",
        domain: (-7.0, 7.0),
        max_abs_error: 6.0e-5,
        limited_by_fixed_point: true,
        formula: Formula::Row(lookup::rms_norm_f64),
        build: |b, xs, op| lookup::rms_norm(b, xs[0], xs[1], eps_of(op)),
    },
];

/// A norm's epsilon.
fn eps_of(op: &Op) -> f64 {
    match op {
        Op::LayerNorm { eps } | Op::RmsNorm { eps } => *eps,
        _ => unreachable!("norm rewrites replace norms"),
    }
}

/// The rewrite of op `op` under `profile`, if the profile defines one.
pub fn rewrite(profile: ApproxProfile, op: &str) -> Option<&'static Rewrite> {
    REWRITES.iter().find(|r| r.profile == profile && r.op == op)
}

/// The ops of a kind.
pub fn ops_of(kind: ApproxKind) -> &'static [&'static str] {
    match kind {
        ApproxKind::Gelu => &["gelu"],
        ApproxKind::Silu => &["silu"],
        ApproxKind::Softmax => &["softmax"],
        ApproxKind::Norm => &["layer_norm", "rms_norm"],
    }
}

/// Norms in f64 with `g = 1`, `b = 0`.
mod norm_f64 {
    /// `x − mean(x)`.
    pub(super) fn centered(x: &[f64]) -> Vec<f64> {
        let mean = x.iter().sum::<f64>() / x.len() as f64;
        x.iter().map(|v| v - mean).collect()
    }

    /// `x`.
    pub(super) fn identity(x: &[f64]) -> Vec<f64> {
        x.to_vec()
    }
}
