//! Truncated SVD by randomized subspace iteration, on `ndarray`, without LAPACK.
//!
//! For `A` (m × n) and a rank `r`, with `k = min(r + oversample, m, n)` (Halko, Martinsson
//! and Tropp 2011, algorithms 4.4 and 5.1):
//!
//! 1. `Y = A·Ω` for a Gaussian `Ω` (n × k, seeded ChaCha), `Q = orth(Y)`;
//! 2. `power_iters` times: `Q' = orth(Aᵀ·Q)`, `Q = orth(A·Q')` (each pass sharpens the
//!    subspace by the ratio σ_{k+1}/σ_r, so a flat tail needs more passes);
//! 3. `B = Qᵀ·A` (k × n), its exact SVD by one-sided Jacobi (Hestenes) rotations on the
//!    columns of `Bᵀ`: `B = V·Σ·Wᵀ`, then `A ≈ (Q·V)·Σ·Wᵀ`, the `r` largest values kept.
//!
//! `orth` is modified Gram–Schmidt, run twice ("twice is enough") so that the columns are
//! orthonormal to rounding even when `Y` is badly conditioned; a column that vanishes
//! against the earlier ones (rank below `k`) becomes zero, and so does its singular value.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

/// `A ≈ u · diag(s) · vt`, singular values in decreasing order. Of a weight: `Debug`
/// shows the shapes only.
#[derive(Clone)]
pub struct Svd {
    /// Left singular vectors, m × r, orthonormal columns (zero for a zero value).
    pub u: Array2<f64>,
    /// Singular values, decreasing, r of them.
    pub s: Array1<f64>,
    /// Right singular vectors, r × n, orthonormal rows (zero for a zero value).
    pub vt: Array2<f64>,
}

impl std::fmt::Debug for Svd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Svd")
            .field("u", &self.u.shape())
            .field("s", &self.s.shape())
            .field("vt", &self.vt.shape())
            .finish()
    }
}

impl Svd {
    /// `u · diag(s) · vt`.
    pub fn reconstruct(&self) -> Array2<f64> {
        let us = &self.u * &self.s.view().insert_axis(Axis(0));
        us.dot(&self.vt)
    }
}

/// How hard [`truncated_svd`] works.
#[derive(Debug, Clone, Copy)]
pub struct SvdOptions {
    /// Extra columns of the random sketch beyond the rank.
    pub oversample: usize,
    /// Passes of subspace iteration.
    pub power_iters: usize,
    /// Seed of the Gaussian sketch.
    pub seed: u64,
}

impl Default for SvdOptions {
    fn default() -> Self {
        SvdOptions {
            oversample: 10,
            power_iters: 6,
            seed: 0x5eed,
        }
    }
}

/// The `rank` largest singular triplets of `a`.
///
/// # Panics
/// If `rank` is 0 or exceeds `min(m, n)`; callers check it and say so in their words.
pub fn truncated_svd(a: ArrayView2<f64>, rank: usize, opts: &SvdOptions) -> Svd {
    let (m, n) = a.dim();
    assert!(
        rank >= 1 && rank <= m.min(n),
        "rank {rank} of a {m} × {n} matrix"
    );
    let k = (rank + opts.oversample).min(m).min(n);
    let mut rng = ChaCha12Rng::seed_from_u64(opts.seed);
    let omega = Array2::from_shape_simple_fn((n, k), || gaussian(&mut rng));
    let mut q = orthonormalize(a.dot(&omega));
    for _ in 0..opts.power_iters {
        let z = orthonormalize(a.t().dot(&q));
        q = orthonormalize(a.dot(&z));
    }
    let b = q.t().dot(&a); // k × n
    let (w, sigma, v) = jacobi_svd_of_transpose(b.t().to_owned());
    // B = V Σ Wᵀ, so A ≈ Q B = (Q V) Σ Wᵀ
    let u_all = q.dot(&v);
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&i, &j| sigma[j].total_cmp(&sigma[i]));
    let keep = &order[..rank];
    Svd {
        u: u_all.select(Axis(1), keep),
        s: Array1::from_iter(keep.iter().map(|&i| sigma[i])),
        vt: w.select(Axis(1), keep).reversed_axes(),
    }
}

/// A standard normal draw (Box–Muller on 53-bit uniforms).
pub(crate) fn gaussian(rng: &mut ChaCha12Rng) -> f64 {
    let uniform =
        |rng: &mut ChaCha12Rng| ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let (u1, u2) = (uniform(rng), uniform(rng));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Orthonormal columns spanning those of `y` (modified Gram–Schmidt, two passes); a
/// column dependent on the earlier ones becomes zero.
pub fn orthonormalize(mut y: Array2<f64>) -> Array2<f64> {
    let cols = y.ncols();
    let scale = y
        .axis_iter(Axis(1))
        .map(|c| c.dot(&c).sqrt())
        .fold(0.0, f64::max);
    if scale == 0.0 {
        return y;
    }
    let tiny = scale * 1e-12;
    for j in 0..cols {
        let before = y.column(j).dot(&y.column(j)).sqrt();
        for _pass in 0..2 {
            for i in 0..j {
                let qi = y.column(i).to_owned();
                let proj = qi.dot(&y.column(j));
                y.column_mut(j).scaled_add(-proj, &qi);
            }
        }
        let norm = y.column(j).dot(&y.column(j)).sqrt();
        if norm <= tiny || norm <= before * 1e-10 {
            y.column_mut(j).fill(0.0);
        } else {
            y.column_mut(j).mapv_inplace(|v| v / norm);
        }
    }
    y
}

/// One-sided Jacobi on `g` (n × k): rotates pairs of columns until they are orthogonal.
/// Returns `(w, σ, v)` with `g = w · diag(σ) · vᵀ`: `w` (n × k) with orthonormal (or zero)
/// columns, `σ` the column norms, `v` (k × k) orthogonal, the product of the rotations.
fn jacobi_svd_of_transpose(mut g: Array2<f64>) -> (Array2<f64>, Vec<f64>, Array2<f64>) {
    let k = g.ncols();
    let mut v = Array2::<f64>::eye(k);
    for _sweep in 0..60 {
        let mut rotated = false;
        for i in 0..k {
            for j in i + 1..k {
                let (gi, gj) = (g.column(i), g.column(j));
                let alpha = gi.dot(&gi);
                let beta = gj.dot(&gj);
                let gamma = gi.dot(&gj);
                if gamma == 0.0 || gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                rotate(&mut g, i, j, c, s);
                rotate(&mut v, i, j, c, s);
            }
        }
        if !rotated {
            break;
        }
    }
    let mut sigma = vec![0.0; k];
    for (j, s) in sigma.iter_mut().enumerate() {
        let norm = g.column(j).dot(&g.column(j)).sqrt();
        *s = norm;
        if norm > 0.0 {
            g.column_mut(j).mapv_inplace(|x| x / norm);
        }
    }
    (g, sigma, v)
}

/// Columns `(i, j)` ← `(c·xi − s·xj, s·xi + c·xj)`.
fn rotate(x: &mut Array2<f64>, i: usize, j: usize, c: f64, s: f64) {
    for mut row in x.rows_mut() {
        let (a, b) = (row[i], row[j]);
        row[i] = c * a - s * b;
        row[j] = s * a + c * b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(m: usize, n: usize, seed: u64) -> Array2<f64> {
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        Array2::from_shape_simple_fn((m, n), || gaussian(&mut rng))
    }

    /// U diag(s) Vᵀ with random orthonormal U (m × len s) and V (n × len s).
    fn with_spectrum(m: usize, n: usize, s: &[f64], seed: u64) -> Array2<f64> {
        let u = orthonormalize(random(m, s.len(), seed));
        let v = orthonormalize(random(n, s.len(), seed + 1));
        let us = &u * &Array1::from(s.to_vec()).insert_axis(Axis(0));
        us.dot(&v.t())
    }

    fn frobenius(a: &Array2<f64>) -> f64 {
        a.iter().map(|x| x * x).sum::<f64>().sqrt()
    }

    fn assert_orthonormal_columns(q: &Array2<f64>) {
        let g = q.t().dot(q);
        let err = (&g - &Array2::<f64>::eye(q.ncols())).mapv(f64::abs);
        let worst = err.iter().copied().fold(0.0, f64::max);
        assert!(worst < 1e-10, "QᵀQ − I up to {worst}");
    }

    #[test]
    fn recovers_an_exactly_low_rank_matrix() {
        let s0 = [10.0, 5.0, 2.0, 1.0, 0.5];
        let a = with_spectrum(60, 40, &s0, 1);
        let svd = truncated_svd(a.view(), 5, &SvdOptions::default());
        for (got, want) in svd.s.iter().zip(s0) {
            assert!((got - want).abs() < 1e-9 * want.max(1.0), "{got} vs {want}");
        }
        assert!(frobenius(&(&a - &svd.reconstruct())) < 1e-9);
        assert_orthonormal_columns(&svd.u);
        assert_orthonormal_columns(&svd.vt.t().to_owned());
    }

    #[test]
    fn truncation_keeps_the_largest_values_and_leaves_the_optimal_residual() {
        // Eckart–Young: the best rank-3 residual is sqrt(1² + 0.5²)
        let s0 = [10.0, 5.0, 2.0, 1.0, 0.5];
        let a = with_spectrum(50, 70, &s0, 7);
        let svd = truncated_svd(a.view(), 3, &SvdOptions::default());
        assert_eq!(svd.u.dim(), (50, 3));
        assert_eq!(svd.vt.dim(), (3, 70));
        for (got, want) in svd.s.iter().zip(&s0[..3]) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        let residual = frobenius(&(&a - &svd.reconstruct()));
        assert!(
            (residual - 1.25f64.sqrt()).abs() < 1e-9,
            "residual {residual}"
        );
    }

    #[test]
    fn a_full_rank_matrix_with_a_decaying_spectrum_is_close_to_optimal() {
        // singular values 0.8^i: the tail after rank 8 is not negligible
        let s0: Vec<f64> = (0..30).map(|i| 0.8f64.powi(i)).collect();
        let a = with_spectrum(80, 30, &s0, 3);
        let svd = truncated_svd(a.view(), 8, &SvdOptions::default());
        let optimal = s0[8..].iter().map(|s| s * s).sum::<f64>().sqrt();
        let residual = frobenius(&(&a - &svd.reconstruct()));
        assert!(
            residual < optimal * 1.001,
            "{residual} vs optimal {optimal}"
        );
        for (got, want) in svd.s.iter().zip(&s0) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn rank_deficient_sketches_give_zero_values_not_nan() {
        let a = with_spectrum(20, 12, &[3.0, 1.0], 5);
        let svd = truncated_svd(a.view(), 6, &SvdOptions::default());
        assert!(svd.s.iter().all(|s| s.is_finite()));
        assert!((svd.s[0] - 3.0).abs() < 1e-9 && (svd.s[1] - 1.0).abs() < 1e-9);
        assert!(svd.s.iter().skip(2).all(|s| *s < 1e-9), "{:?}", svd.s);
        assert!(frobenius(&(&a - &svd.reconstruct())) < 1e-9);
    }

    #[test]
    fn is_deterministic_for_a_seed() {
        let a = random(30, 20, 9);
        let o = SvdOptions::default();
        let (x, y) = (
            truncated_svd(a.view(), 4, &o),
            truncated_svd(a.view(), 4, &o),
        );
        assert_eq!(x.s, y.s);
        assert_eq!(x.u, y.u);
    }

    #[test]
    #[should_panic(expected = "rank 21 of a 30 × 20 matrix")]
    fn a_rank_above_the_smaller_side_is_refused() {
        truncated_svd(random(30, 20, 1).view(), 21, &SvdOptions::default());
    }
}
