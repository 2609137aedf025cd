//! Trained predictors (`comet calibrate --train`): per FFN, a linear map from the
//! predictor's input to every block's score, fitted by ridge least squares on captured
//! activations. No deep-learning framework: one `(d+1)²` normal-equation solve per FFN.
//!
//! # Definition
//!
//! For FFN `k` with predictor input rows `X` (`[tokens, d]`, [`Captured::predictor_input`])
//! the target of token `t` and block `b` is the block maximum of the FFN's true
//! pre-activation under the activation, `T[t, b] = max_{j∈b} (x_t·W_act + b_act)_j`, with
//! `x_t` the FFN's own input (a block is active when that maximum is positive, for ReLU).
//! The weights `[W; c]` (`[d + 1, blocks]`) minimise
//! `‖[X, 1]·[W; c] − T‖² + λ‖[W; c]‖²` with `λ = ridge · tr(XᵀX) / (d + 1)`, solved by
//! Cholesky. Reading the attention input, the prediction cannot be exact (attention's
//! output also enters the FFN's input): the calibrated threshold trades the recall for
//! the skipped blocks, and both are reported per layer.
//!
//! The trained map is stored in the predictor file's factored form with rank = blocks:
//! `P1 = W`, `P2[b, j] = 1/|b|` for the neurons `j` of block `b`, `bias_j = c_b/|b|`, so that
//! the block sum ([`Score::Sum`], what the two-party predictor computes) of `x·P1·P2 + bias`
//! is `x·W_b + c_b`.

use super::calibrate::{Captured, TokenModel};
use super::{
    Activity, FfnPredictor, Predictor, Score, SparsityError, bias, block_max, matrix, n_blocks,
};
use comet_ir::ffn::PredictorInput;
use ndarray::{Array1, Array2, Axis, s};

/// Options of [`train`].
#[derive(Debug, Clone, Copy)]
pub struct TrainOptions {
    /// Neurons per block.
    pub block: usize,
    /// What the predictors read.
    pub input: PredictorInput,
    /// Relative ridge `λ / (tr(XᵀX) / (d + 1))`.
    pub ridge: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            block: 16,
            input: PredictorInput::Attention,
            ridge: 1e-3,
        }
    }
}

/// Trains a predictor for every FFN of `model` on `captured` (module docs), uncalibrated
/// (thresholds `-∞`; see [`super::calibrate()`]).
///
/// # Errors
/// If the block size does not fit an FFN, the captured tokens are too few (fewer than 2),
/// a layer has no input of the requested kind, or the ridge is not positive.
pub fn train(
    model: &TokenModel,
    captured: &Captured,
    opts: &TrainOptions,
) -> Result<Predictor, SparsityError> {
    if !(opts.ridge > 0.0 && opts.ridge.is_finite()) {
        return Err(SparsityError::Options(format!(
            "the ridge must be positive, not {}",
            opts.ridge
        )));
    }
    if captured.tokens() < 2 {
        return Err(SparsityError::Samples(format!(
            "training needs at least 2 captured tokens, got {}",
            captured.tokens()
        )));
    }
    let mut ffns = Vec::with_capacity(model.ffns.len());
    for (k, f) in model.ffns.iter().enumerate() {
        let (d, ff) = (f.d as usize, f.ff as usize);
        if opts.block == 0 || opts.block > ff {
            return Err(SparsityError::Options(format!(
                "block size {} must be between 1 and the FFN width {ff} ({})",
                opts.block,
                f.label()
            )));
        }
        let x = captured.predictor_input(k, opts.input)?;
        let w_act = matrix(model.weights, &f.weights.act, (d, ff))?;
        let z = captured.x[k].dot(&w_act) + bias(model.weights, f)?.insert_axis(Axis(0));
        let target = block_max(z.view(), opts.block, |v| v);
        let fit = ridge_fit(x, &target, opts.ridge).ok_or_else(|| {
            SparsityError::Samples(format!(
                "the least-squares system of {} is singular on the captured tokens",
                f.label()
            ))
        })?;
        ffns.push(factored(&fit, ff, opts.block));
    }
    let blocks = model
        .ffns
        .iter()
        .map(|f| n_blocks(f.ff as usize, opts.block))
        .max()
        .unwrap_or(0);
    Ok(Predictor {
        model: model.program.info.name.clone(),
        block: opts.block,
        rank: blocks,
        score: Score::Sum,
        target_recall: f64::NAN,
        activity: Activity::Nonzero,
        input: opts.input,
        ffns,
    })
}

/// `[W; c]` (`[d + 1, m]`) minimising `‖[x, 1]·[W; c] − t‖² + λ‖[W; c]‖²`; `None` if the
/// system is not positive definite.
pub fn ridge_fit(x: &Array2<f64>, t: &Array2<f64>, ridge: f64) -> Option<Array2<f64>> {
    let (n, d) = x.dim();
    let mut xa = Array2::<f64>::ones((n, d + 1));
    xa.slice_mut(s![.., ..d]).assign(x);
    let mut a = xa.t().dot(&xa);
    let lambda = ridge * a.diag().sum() / (d + 1) as f64;
    for i in 0..=d {
        a[[i, i]] += lambda;
    }
    let b = xa.t().dot(t);
    cholesky_solve(a, b)
}

/// Solves `a · w = b` for a symmetric positive definite `a`.
fn cholesky_solve(mut a: Array2<f64>, mut b: Array2<f64>) -> Option<Array2<f64>> {
    let n = a.nrows();
    // a = L·Lᵀ, L in the lower triangle of a
    for j in 0..n {
        let mut diag = a[[j, j]];
        for k in 0..j {
            diag -= a[[j, k]] * a[[j, k]];
        }
        // not positive (or NaN): not positive definite
        if diag.is_nan() || diag <= 0.0 {
            return None;
        }
        let l = diag.sqrt();
        a[[j, j]] = l;
        for i in j + 1..n {
            let mut v = a[[i, j]];
            for k in 0..j {
                v -= a[[i, k]] * a[[j, k]];
            }
            a[[i, j]] = v / l;
        }
    }
    let m = b.ncols();
    // L·y = b, then Lᵀ·w = y
    for c in 0..m {
        for i in 0..n {
            let mut v = b[[i, c]];
            for k in 0..i {
                v -= a[[i, k]] * b[[k, c]];
            }
            b[[i, c]] = v / a[[i, i]];
        }
        for i in (0..n).rev() {
            let mut v = b[[i, c]];
            for k in i + 1..n {
                v -= a[[k, i]] * b[[k, c]];
            }
            b[[i, c]] = v / a[[i, i]];
        }
    }
    Some(b)
}

/// `[W; c]` in the file's factored form (module docs).
fn factored(fit: &Array2<f64>, ff: usize, block: usize) -> FfnPredictor {
    let d = fit.nrows() - 1;
    let blocks = fit.ncols();
    let mut p2 = Array2::zeros((blocks, ff));
    let mut bias = Array1::zeros(ff);
    for j in 0..ff {
        let b = j / block;
        let len = (ff - b * block).min(block) as f64;
        p2[[b, j]] = 1.0 / len;
        bias[j] = fit[[d, b]] / len;
    }
    FfnPredictor {
        p1: fit.slice(s![..d, ..]).to_owned(),
        p2,
        bias,
        threshold: f64::NEG_INFINITY,
        tau: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exactly linear target is recovered (up to the ridge's small shrinkage).
    #[test]
    fn ridge_fit_recovers_a_linear_map() {
        let x = Array2::from_shape_fn((200, 3), |(i, j)| {
            ((i * 7 + j * 13) % 17) as f64 / 17.0 - 0.5 + (j as f64) * ((i % 5) as f64 - 2.0) * 0.1
        });
        let w = Array2::from_shape_vec((3, 2), vec![1.0, -2.0, 0.5, 3.0, -1.5, 0.25]).unwrap();
        let c = Array1::from(vec![0.7, -0.3]);
        let t = x.dot(&w) + c.view().insert_axis(Axis(0));
        let fit = ridge_fit(&x, &t, 1e-9).unwrap();
        for i in 0..3 {
            for j in 0..2 {
                assert!((fit[[i, j]] - w[[i, j]]).abs() < 1e-5, "{fit}");
            }
        }
        assert!((fit[[3, 0]] - 0.7).abs() < 1e-5 && (fit[[3, 1]] + 0.3).abs() < 1e-5);
    }

    /// A rank-deficient system (features that never vary from 0) is still solved thanks
    /// to the ridge; without the ridge it is singular.
    #[test]
    fn the_ridge_makes_a_zero_column_solvable() {
        let x = Array2::from_elem((10, 2), 0.0);
        let t = Array2::from_elem((10, 1), 2.0);
        assert!(ridge_fit(&x, &t, 1e-3).is_some());
        assert!(ridge_fit(&x, &t, 0.0).is_none());
    }

    /// The factored form's block sums are the fitted scores, the last block shorter.
    #[test]
    fn factored_block_sums_are_the_fit() {
        let fit = Array2::from_shape_fn((3, 3), |(i, j)| (i as f64 + 1.0) * (j as f64 - 1.0));
        let p = factored(&fit, 7, 3);
        let x = Array2::from_shape_vec((1, 2), vec![0.5, -2.0]).unwrap();
        let z = p.approx(x.view());
        let sums = super::super::block_sum(z.view(), 3);
        for b in 0..3 {
            let want = 0.5 * fit[[0, b]] - 2.0 * fit[[1, b]] + fit[[2, b]];
            assert!((sums[[0, b]] - want).abs() < 1e-12, "block {b}");
        }
    }
}
