//! The inputs every declared error is measured on (APPROXIMATIONS.md: "each replacement
//! declares the input range it is valid on and its maximum absolute error there"): a dense
//! grid for the element-wise forms, and families of rows for softmax and the norms. The
//! f64 checks of the formulas and the interpreter checks of the compiled forms
//! (`tests/approx.rs`) both use them, so a declared bound means the same thing in both.

use super::{
    BOLT_GELU_CUT, BUMBLEBEE_GELU_CUT, BUMBLEBEE_SILU_CUT, PUMA_GELU_BREAKS, PUMA_SILU_BREAKS,
    Rewrite,
};

/// Grid intervals over an element-wise rewrite's domain (a point every 5e-5 on [−10, 10]).
pub const GRID_STEPS: usize = 400_000;

/// The epsilon of the norm rows (BERT's LayerNorm uses 1e-12, LLaMA's RMSNorm 1e-6; the
/// forms' errors hardly depend on it): the f64 formulas of forms that keep it use it.
pub const NORM_EPS: f64 = 1e-5;
/// The longest score row.
pub const ROW_KEYS: usize = 64;
/// The width of the norm rows.
pub const NORM_WIDTH: usize = 64;

/// The inputs of an element-wise rewrite: [`grid`] over its domain.
pub fn points(r: &Rewrite) -> Vec<f64> {
    grid(r.domain.0, r.domain.1, GRID_STEPS)
}

/// The rows of a softmax or norm rewrite: [`score_rows`] over its domain with up to
/// [`ROW_KEYS`] keys; [`norm_rows`] with means −1, 0, 1 (LayerNorm) or 0 (RMSNorm, whose
/// range is stated for the root mean square).
///
/// # Panics
/// For an element-wise rewrite.
pub fn rows(r: &Rewrite) -> Vec<Vec<f64>> {
    match r.op {
        "softmax" => score_rows(r.domain.0, r.domain.1, ROW_KEYS),
        "layer_norm" => norm_rows(NORM_WIDTH, &[-1.0, 0.0, 1.0]),
        "rms_norm" => norm_rows(NORM_WIDTH, &[0.0]),
        other => panic!("`{other}` is element-wise: use `points`"),
    }
}

/// A grid of `n + 1` points over `[lo, hi]`, plus every breakpoint and cut with its
/// neighbours 1e-9 away (where piecewise forms are worst).
pub fn grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let mut xs: Vec<f64> = (0..=n)
        .map(|i| lo + (hi - lo) * i as f64 / n as f64)
        .collect();
    let cuts = [BOLT_GELU_CUT, BUMBLEBEE_GELU_CUT, BUMBLEBEE_SILU_CUT];
    let edges = PUMA_GELU_BREAKS
        .iter()
        .chain(&PUMA_SILU_BREAKS)
        .copied()
        .chain(cuts.iter().flat_map(|c| [*c, -c]));
    for t in edges.filter(|t| (lo..=hi).contains(t)) {
        xs.extend([t - 1e-9, t, t + 1e-9]);
    }
    xs
}

/// A deterministic stream of numbers in [0, 1) (SplitMix64).
pub struct Stream(u64);

impl Stream {
    /// A stream from `seed`.
    pub fn new(seed: u64) -> Self {
        Stream(seed)
    }

    /// The next number.
    pub fn draw(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.draw()
    }
}

/// Score rows with values in `[lo, hi]`: every length up to 8, then longer ones up to
/// `max_len`; uniform rows of three spreads, rows with one key standing out, flat rows
/// at both ends of the range and at 0, and single keys at both ends (where `relun1` and
/// `2Quad` differ most from softmax).
pub fn score_rows(lo: f64, hi: f64, max_len: usize) -> Vec<Vec<f64>> {
    let mut s = Stream::new(7);
    let mut rows = vec![vec![lo], vec![hi], vec![lo, hi], vec![hi, lo]];
    let lengths = (1..=8).chain([13, 21, 34, 55, max_len]);
    for n in lengths {
        for spread in [0.05, 0.3, 1.0] {
            let width = (hi - lo) * spread;
            let base = s.uniform(lo, hi - width);
            rows.push((0..n).map(|_| base + width * s.draw()).collect());
        }
        let mut peaked: Vec<f64> = (0..n)
            .map(|_| s.uniform(lo, lo + (hi - lo) / 2.0))
            .collect();
        peaked[n / 2] = hi;
        rows.push(peaked);
        rows.push(vec![lo; n]);
        rows.push(vec![hi; n]);
        rows.push(vec![0.0; n]);
    }
    rows
}

/// Rows of width `d` with mean in `means`, standard deviation in [0.5, 2] and every
/// `|x − mean| ≤ 3·sd`, reaching `3·sd` (two values at ±3 sd, the rest at ±a with `a`
/// making the variance 1): where the affine norms are furthest from the exact ones.
pub fn norm_rows(d: usize, means: &[f64]) -> Vec<Vec<f64>> {
    let a = ((d as f64 - 18.0) / (d as f64 - 2.0)).sqrt();
    let z: Vec<f64> = (0..d)
        .map(|i| match i {
            0 => 3.0,
            1 => -3.0,
            i if i % 2 == 0 => a,
            _ => -a,
        })
        .collect();
    let mut rows = Vec::new();
    for sd in [0.5, 0.75, 1.0, 1.5, 2.0] {
        for mu in means {
            rows.push(z.iter().map(|v| mu + sd * v).collect());
        }
    }
    rows
}
