//! A predictor file as the weights of a compiled sparse plan (pass `sparsify`): per FFN,
//! the rank-r factors and the threshold folded into one `[d, blocks]` product and one
//! `[blocks]` offset, so that the plan's predictor is one fixed-weight product and one
//! comparison per block: `score_b − δ = x·(P1·P2·G)_b + (Gᵀ·bias)_b − δ`, with `G`
//! summing each block's columns ([`Score::Sum`]).

use super::file::FfnShape;
use super::{Predictor, Score, SparsityError, Weights};
use comet_ir::Program;
use comet_ir::sparse::predictor_weights;
use ndarray::{Array1, Array2};
use std::path::Path;

/// The folded predictor weights of `program` from the predictor file at `path`.
///
/// # Errors
/// If the plan is not sparse, or the file does not fit it: another model, FFN count or
/// shape, block size, a `max` score (which needs `B − 1` comparisons per block on shares),
/// uncalibrated thresholds, or predictors of another input (`ffn` / `attention`).
pub fn plan_weights(path: &Path, program: &Program) -> Result<Weights, SparsityError> {
    let s = program.options.sparsity.as_ref().ok_or_else(|| {
        SparsityError::Options("the plan has dense FFNs: it takes no predictor".into())
    })?;
    let shapes: Vec<FfnShape> = (s.ffn_units().iter())
        .map(|f| FfnShape {
            d: f.d,
            ff: f.ff,
            act: None,
            label: f.layer.map_or("an FFN".into(), |l| format!("layer {l}")),
        })
        .collect();
    let pred = Predictor::load_for(path, &program.info.name, &shapes)?;
    let bad = |message: String| SparsityError::Predictor {
        origin: format!("`{}`", path.display()),
        message,
    };
    if pred.block as u64 != s.block {
        return Err(bad(format!(
            "it scores blocks of {} neurons, the plan was compiled for blocks of {}: compile \
             with --sparsity ffn:block={}",
            pred.block, s.block, pred.block
        )));
    }
    if pred.score != Score::Sum {
        return Err(bad(format!(
            "it scores blocks by `{}`; the two-party predictor computes the block sum (one \
             comparison per block): calibrate with `comet calibrate --score sum`",
            pred.score.name()
        )));
    }
    if pred.input != s.input {
        return Err(bad(format!(
            "its predictors read the {} input, the plan's read the {} input: compile with \
             --sparsity ffn:input={} (or calibrate for input {})",
            pred.input.name(),
            s.input.name(),
            pred.input.name(),
            s.input.name()
        )));
    }
    let mut out = Weights::new();
    for (k, (f, info)) in pred.ffns.iter().zip(s.ffn_units()).enumerate() {
        if !f.threshold.is_finite() {
            return Err(bad(format!(
                "FFN {k} has no calibrated threshold (it is {}): run `comet calibrate`",
                f.threshold
            )));
        }
        let (w, c) = fold(&f.p1, &f.p2, &f.bias, f.threshold, s.block as usize);
        if c.len() as u64 != info.blocks {
            return Err(SparsityError::Options(format!(
                "the plan's sparse FFN {k} has {} blocks, and {} neurons in blocks of {} make \
                 {}: the plan's sparsity options are inconsistent",
                info.blocks,
                info.ff,
                s.block,
                c.len()
            )));
        }
        let [wn, cn] = predictor_weights(k);
        out.insert(wn, w.into_dyn());
        out.insert(cn, c.into_dyn());
    }
    Ok(out)
}

/// `(P1·P2·G, Gᵀ·bias − δ)` for blocks of `block` columns.
fn fold(
    p1: &Array2<f64>,
    p2: &Array2<f64>,
    bias: &Array1<f64>,
    threshold: f64,
    block: usize,
) -> (Array2<f64>, Array1<f64>) {
    let (r, ff) = p2.dim();
    let blocks = ff.div_ceil(block);
    let mut p2g = Array2::zeros((r, blocks));
    let mut c = Array1::from_elem(blocks, -threshold);
    for j in 0..ff {
        let b = j / block;
        for i in 0..r {
            p2g[[i, b]] += p2[[i, j]];
        }
        c[b] += bias[j];
    }
    (p1.dot(&p2g), c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The folded score equals the block sum of the factors' pre-activations minus δ.
    #[test]
    fn folded_score_is_the_block_sum() {
        let p1 = Array2::from_shape_fn((3, 2), |(i, j)| (i as f64 - j as f64) * 0.5);
        let p2 = Array2::from_shape_fn((2, 5), |(i, j)| (i * 5 + j) as f64 * 0.1 - 0.3);
        let bias = Array1::from_shape_fn(5, |j| j as f64 * 0.01);
        let (w, c) = fold(&p1, &p2, &bias, 0.25, 2);
        let x = Array2::from_shape_fn((1, 3), |(_, j)| 1.0 + j as f64);
        let z = x.dot(&p1).dot(&p2) + &bias;
        let score = x.dot(&w) + &c;
        for b in 0..3 {
            let sum: f64 = (2 * b..(2 * b + 2).min(5)).map(|j| z[[0, j]]).sum();
            assert!((score[[0, b]] - (sum - 0.25)).abs() < 1e-12, "block {b}");
        }
    }
}
