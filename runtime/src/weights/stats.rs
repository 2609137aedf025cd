//! Weight statistics ([`WeightStats`]): what `comet compile --weights` declares in a plan
//! and what the runtime checks a checkpoint against when it loads each weight.
//!
//! `max_abs`, the row and the column norms are computed exactly (f64 sums). The spectral
//! norm `σ` of a matrix `W` `[m, n]` is bounded through its Gram matrix `G` (`W·Wᵀ` or
//! `Wᵀ·W`, the smaller): power iteration estimates `λ = σ²`, and a bound `B` is
//! **certified** by a Cholesky factorisation of `B²·(1 − ε)·I − G`, which exists exactly
//! when every eigenvalue of `G` is below `B²·(1 − ε)` (`ε` = 10⁻⁶ covers the Gram
//! matrix's rounding, below 10⁻⁹ relative for the matrices at hand). Matrices whose
//! smaller side exceeds [`MAX_GRAM`] are bounded by their Frobenius norm instead (an
//! embedding table read one row at a time needs no spectral norm).
//!
//! Every declared statistic is rounded up to a power of `2^(1/4)`
//! ([`comet_ir::range::round_stat`]): the plan tells the client no more than that.

use comet_ir::WeightStats;
use comet_ir::range::{STAT_STEP, round_stat};
use ndarray::{Array2, ArrayD, ArrayView2};

/// The largest Gram matrix side the spectral norm is certified on (4,096: 128 MiB of f64
/// and a few seconds); above it the Frobenius norm bounds the spectral norm.
pub const MAX_GRAM: usize = 4096;

/// Relative margin of the Cholesky certificate.
const EPS: f64 = 1e-6;

/// The statistics a plan declares for every server-owned weight of `weights`, read from
/// the checkpoint at `path` (one weight at a time); `progress` is called after each.
///
/// # Errors
/// The checkpoint's [`super::WeightError`]: unreadable, missing tensor, wrong shape.
pub fn declared_for(
    path: &std::path::Path,
    weights: &[comet_ir::WeightInfo],
    mut progress: impl FnMut(&str),
) -> Result<std::collections::BTreeMap<String, WeightStats>, super::WeightError> {
    let ckpt = super::Checkpoint::open(path, weights)?;
    let mut out = std::collections::BTreeMap::new();
    for w in weights
        .iter()
        .filter(|w| w.party == comet_ir::Party::Server)
    {
        let t = ckpt.load(&w.name)?;
        out.insert(w.name.clone(), declared(&t));
        progress(&w.name);
    }
    Ok(out)
}

/// The statistics a plan declares for each of `weights` (already in memory, by name).
pub fn declared_map<'a>(
    weights: impl IntoIterator<Item = (&'a String, &'a ArrayD<f64>)>,
) -> std::collections::BTreeMap<String, WeightStats> {
    (weights.into_iter())
        .map(|(k, v)| (k.clone(), declared(v)))
        .collect()
}

/// The statistics a plan declares for `w` (rounded up; the spectral norm certified).
pub fn declared(w: &ArrayD<f64>) -> WeightStats {
    let exact = measured(w);
    WeightStats {
        max_abs: round_stat(exact.max_abs),
        row_l2: round_stat(exact.row_l2),
        col_l2: round_stat(exact.col_l2),
        op: if w.ndim() < 2 {
            round_stat(exact.op)
        } else {
            certified_op(w)
        },
    }
}

/// `max|w|`, the largest row and column L2 norms, and the largest Frobenius norm of the
/// matrices (`op` here: a bound, not the spectral norm). A NaN makes every one NaN.
pub fn measured(w: &ArrayD<f64>) -> WeightStats {
    let max_abs = w.iter().fold(0f64, |m, &x| {
        if x.is_nan() || m.is_nan() {
            f64::NAN
        } else {
            m.max(x.abs())
        }
    });
    if w.ndim() < 2 {
        let l2 = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        return WeightStats {
            max_abs,
            row_l2: l2,
            col_l2: max_abs,
            op: max_abs,
        };
    }
    let (mut row_l2, mut col_l2, mut frob) = (0f64, 0f64, 0f64);
    for_matrices(w, |m| {
        for r in m.rows() {
            row_l2 = row_l2.max(r.dot(&r).sqrt());
        }
        for c in m.columns() {
            col_l2 = col_l2.max(c.dot(&c).sqrt());
        }
        frob = frob.max(m.iter().map(|x| x * x).sum::<f64>().sqrt());
    });
    WeightStats {
        max_abs,
        row_l2,
        col_l2,
        op: frob,
    }
}

/// Calls `f` on every matrix of `w` (its last two axes; leading axes enumerate them).
fn for_matrices(w: &ArrayD<f64>, mut f: impl FnMut(ArrayView2<f64>)) {
    let nd = w.ndim();
    let (m, n) = (w.shape()[nd - 2], w.shape()[nd - 1]);
    let count = w.len() / (m * n).max(1);
    let standard = w.as_standard_layout();
    let flat = (standard.view())
        .into_shape_with_order((count, m, n))
        .expect("a standard-layout array reshapes");
    for mat in flat.outer_iter() {
        f(mat);
    }
}

/// A certified spectral-norm bound of every matrix of `w`, rounded up to the grid.
fn certified_op(w: &ArrayD<f64>) -> f64 {
    let mut op = 0f64;
    for_matrices(w, |m| op = op.max(matrix_op(m)));
    op
}

/// One matrix: the smallest grid point above the power-iteration estimate that the
/// Cholesky certificate accepts (the Frobenius norm if none of a few does, or if the
/// matrix is too large).
fn matrix_op(m: ArrayView2<f64>) -> f64 {
    let frob = round_stat(m.iter().map(|x| x * x).sum::<f64>().sqrt());
    let Some(g) = gram(m) else {
        return frob;
    };
    let lambda = power_iteration(&g);
    let mut b = round_stat(lambda.max(0.0).sqrt() * (1.0 + 1e-3));
    for _ in 0..8 {
        if b >= frob {
            return frob;
        }
        if certifies(&g, b, EPS) {
            return b;
        }
        b = round_stat(b * STAT_STEP);
    }
    frob
}

/// Whether `σ(W) ≤ b` holds for the matrix whose Gram matrix is `g`, with relative
/// margin `eps` on `b²`.
fn certifies(g: &Array2<f64>, b: f64, eps: f64) -> bool {
    let n = g.nrows();
    let shift = b * b * (1.0 - eps);
    let mut a: Vec<f64> = g.iter().map(|x| -x).collect();
    for i in 0..n {
        a[i * n + i] += shift;
    }
    cholesky_in_place(&mut a, n)
}

/// Whether the symmetric `n × n` matrix `a` (row-major) is positive definite: a Cholesky
/// factorisation `L·Lᵀ` in place (L in the lower triangle) that succeeds.
fn cholesky_in_place(a: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        let (head, tail) = a.split_at_mut((j + 1) * n);
        let row_j = &mut head[j * n..];
        let d = row_j[j] - dot(&row_j[..j], &row_j[..j]);
        if d.is_nan() || d <= 0.0 {
            return false;
        }
        let d = d.sqrt();
        row_j[j] = d;
        let row_j = &row_j[..j];
        // the rows below are independent: on rayon's threads in blocks of rows
        use rayon::prelude::*;
        tail.par_chunks_mut(n * 64).for_each(|rows| {
            for row_i in rows.chunks_exact_mut(n) {
                let s = dot(&row_i[..j], row_j);
                row_i[j] = (row_i[j] - s) / d;
            }
        });
    }
    true
}

/// `Σ a_i·b_i` with eight partial sums (vectorised; the order of a sum of this many terms
/// is anyway not the exact one, which the certificate's margin covers).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = (ca.remainder().iter().zip(cb.remainder()))
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `W·Wᵀ` or `Wᵀ·W`, the smaller; `None` above [`MAX_GRAM`].
fn gram(m: ArrayView2<f64>) -> Option<Array2<f64>> {
    let (r, c) = m.dim();
    if r.min(c) > MAX_GRAM {
        return None;
    }
    let rows = if r <= c { m } else { m.reversed_axes() };
    Some(parallel_gram(rows))
}

/// `A·Aᵀ` for `A` `[n, k]`, its row blocks computed on rayon's threads (the setup checks
/// every matrix of a checkpoint: GPT-2's 48 take seconds on one core).
fn parallel_gram(a: ArrayView2<f64>) -> Array2<f64> {
    let n = a.nrows();
    let blocks = rayon::current_num_threads().clamp(1, 8);
    let step = n.div_ceil(blocks).max(1);
    let parts: Vec<Array2<f64>> = {
        use rayon::prelude::*;
        (0..n.div_ceil(step))
            .into_par_iter()
            .map(|b| {
                let rows = a.slice(ndarray::s![b * step..((b + 1) * step).min(n), ..]);
                rows.dot(&a.t())
            })
            .collect()
    };
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(ndarray::Axis(0), &views).expect("blocks of one matrix")
}

/// The largest eigenvalue of a symmetric positive semi-definite `g`, estimated (from
/// below) by power iteration.
fn power_iteration(g: &Array2<f64>) -> f64 {
    let n = g.nrows();
    let mut v = ndarray::Array1::from_shape_fn(n, |i| 1.0 + (i % 7) as f64 * 0.1);
    let mut lambda = 0.0;
    for _ in 0..64 {
        let u = g.dot(&v);
        let norm = u.dot(&u).sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return norm;
        }
        lambda = v.dot(&u) / v.dot(&v);
        v = u / norm;
    }
    lambda
}

/// Whether `w` satisfies the declared statistics `s`: `Err` names the first statistic
/// exceeded with the value found.
pub fn check(w: &ArrayD<f64>, s: &WeightStats) -> Result<(), (&'static str, f64, f64)> {
    let m = measured(w);
    let exceeded = |v: f64, bound: f64| v.is_nan() || v > bound;
    if exceeded(m.max_abs, s.max_abs) {
        return Err(("max |w|", m.max_abs, s.max_abs));
    }
    if exceeded(m.row_l2, s.row_l2) {
        return Err(("row L2 norm", m.row_l2, s.row_l2));
    }
    if w.ndim() < 2 {
        return Ok(());
    }
    if exceeded(m.col_l2, s.col_l2) {
        return Err(("column L2 norm", m.col_l2, s.col_l2));
    }
    if m.op <= s.op {
        return Ok(()); // the Frobenius norm bounds the spectral norm
    }
    let mut worst = None;
    for_matrices(w, |mat| {
        if worst.is_some() {
            return;
        }
        let g = gram(mat);
        if !g.as_ref().is_some_and(|g| certifies(g, s.op, EPS / 2.0)) {
            worst = Some(g.map_or(m.op, |g| power_iteration(&g).sqrt()));
        }
    });
    match worst {
        Some(estimate) => Err(("spectral norm", estimate, s.op)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;
    use rand::SeedableRng;

    fn random(m: usize, n: usize, seed: u64) -> ArrayD<f64> {
        let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(seed);
        ArrayD::from_shape_fn(ndarray::IxDyn(&[m, n]), |_| rng.random::<f64>() - 0.5)
    }

    #[test]
    fn the_certified_bound_is_above_the_spectral_norm_and_within_a_grid_step() {
        for (m, n, seed) in [(40, 90, 1), (90, 40, 2), (64, 64, 3)] {
            let w = random(m, n, seed);
            let s = declared(&w);
            let w2 = w.clone().into_dimensionality::<ndarray::Ix2>().unwrap();
            // the true σ² from the Gram matrix's power iteration, run long
            let g = w2.t().dot(&w2);
            let sigma = power_iteration(&g).sqrt();
            assert!(s.op >= sigma, "{} < {sigma}", s.op);
            assert!(s.op <= sigma * STAT_STEP * STAT_STEP, "{} vs {sigma}", s.op);
            assert!(check(&w, &s).is_ok());
        }
    }

    #[test]
    fn a_matrix_beyond_its_declared_spectral_norm_is_refused() {
        let w = random(50, 80, 4);
        let mut s = declared(&w);
        s.op /= STAT_STEP * STAT_STEP;
        let err = check(&w, &s).unwrap_err();
        assert_eq!(err.0, "spectral norm");
        let mut t = declared(&w);
        t.col_l2 /= 2.0;
        assert_eq!(check(&w, &t).unwrap_err().0, "column L2 norm");
    }

    #[test]
    fn a_rank_one_matrix_is_certified_exactly() {
        // u·vᵀ has σ = |u|·|v|
        let u: Vec<f64> = (0..30).map(|i| (i as f64 - 15.0) / 10.0).collect();
        let v: Vec<f64> = (0..20).map(|i| (i as f64) / 7.0 + 0.1).collect();
        let w = ArrayD::from_shape_fn(ndarray::IxDyn(&[30, 20]), |ix| u[ix[0]] * v[ix[1]]);
        let sigma = u.iter().map(|x| x * x).sum::<f64>().sqrt()
            * v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let s = declared(&w);
        assert!(
            s.op >= sigma && s.op <= sigma * STAT_STEP * 1.001,
            "{} vs {sigma}",
            s.op
        );
        let m = measured(&w);
        assert!(m.row_l2 <= s.row_l2 && m.col_l2 <= s.col_l2 && m.max_abs <= s.max_abs);
    }

    #[test]
    fn vectors_and_nans() {
        let v = ArrayD::from_shape_vec(ndarray::IxDyn(&[3]), vec![3.0, -4.0, 0.0]).unwrap();
        let s = declared(&v);
        assert!(s.row_l2 >= 5.0 && s.row_l2 < 5.0 * STAT_STEP);
        assert!(s.max_abs >= 4.0);
        let nan = ArrayD::from_shape_vec(ndarray::IxDyn(&[2]), vec![1.0, f64::NAN]).unwrap();
        assert!(check(&nan, &s).is_err());
    }
}
