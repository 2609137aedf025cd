//! Nonlinear functions in their exact forms, and the reductions over the last axis.

use comet_ir::UnaryFn;
use ndarray::{ArrayD, ArrayView1, ArrayViewD, ArrayViewMut1, Ix1, Zip};

use super::OpResult;
use crate::movement::last_axis;
use comet_ir::erf::erf;

/// The exact value of an element-wise function: the yardstick of every approximation.
///
/// `gelu` is the erf form `0.5·x·(1 + erf(x/√2))` of Hendrycks & Gimpel (BERT, PyTorch's
/// `gelu`). GPT-2 was trained with the tanh approximation
/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` ([`gelu_tanh`]); the two differ by less
/// than 1e-3 everywhere, which is what running GPT-2 through this reference costs.
pub fn exact(func: UnaryFn, x: f64) -> f64 {
    match func {
        UnaryFn::Relu => x.max(0.0),
        UnaryFn::Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        UnaryFn::Silu => x * sigmoid(x),
        UnaryFn::Tanh => x.tanh(),
        UnaryFn::Exp => x.exp(),
        UnaryFn::Sigmoid => sigmoid(x),
        UnaryFn::Reciprocal => 1.0 / x,
        UnaryFn::Rsqrt => 1.0 / x.sqrt(),
    }
}

/// GPT-2's tanh approximation of GeLU (`gelu_new` in Hugging Face transformers).
pub fn gelu_tanh(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

/// `1 / (1 + e^−x)` without overflow for large `|x|`.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Runs `f` on every lane along the last axis of a copy of `x`.
fn per_row(what: &str, x: &ArrayViewD<f64>, f: impl Fn(ArrayViewMut1<f64>)) -> OpResult {
    let axis = last_axis(what, x)?;
    let mut out = x.to_owned();
    out.lanes_mut(axis).into_iter().for_each(f);
    Ok(out)
}

/// `softmax` over the last axis, after subtracting the row maximum.
pub(super) fn softmax(x: &ArrayViewD<f64>) -> OpResult {
    per_row("softmax", x, |mut row| {
        let m = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - m).exp());
        let s = row.sum();
        row.mapv_inplace(|v| v / s);
    })
}

/// A norm's parameter, which must be a vector as long as the last axis of `x`.
fn param<'p>(
    what: &str,
    x: &ArrayViewD<f64>,
    p: &ArrayViewD<'p, f64>,
) -> Result<ArrayView1<'p, f64>, String> {
    let d = x.shape().last().copied();
    match p.clone().into_dimensionality::<Ix1>() {
        Ok(v) if Some(v.len()) == d => Ok(v),
        _ => Err(format!(
            "`{what}` of {:?} needs parameters of shape [{}], got {:?}",
            x.shape(),
            d.unwrap_or(0),
            p.shape()
        )),
    }
}

/// `x / sqrt(mean(x²) + eps) · g` over the last axis.
pub(super) fn rms_norm(x: &ArrayViewD<f64>, g: &ArrayViewD<f64>, eps: f64) -> OpResult {
    let g = param("rms_norm", x, g)?;
    per_row("rms_norm", x, |mut row| {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64;
        let r = 1.0 / (ms + eps).sqrt();
        Zip::from(&mut row).and(&g).for_each(|v, &g| *v *= r * g);
    })
}

/// `(x − mean) / sqrt(var + eps) · g + b` over the last axis (population variance).
pub(super) fn layer_norm(
    x: &ArrayViewD<f64>,
    g: &ArrayViewD<f64>,
    b: &ArrayViewD<f64>,
    eps: f64,
) -> OpResult {
    let (g, b) = (param("layer_norm", x, g)?, param("layer_norm", x, b)?);
    per_row("layer_norm", x, |mut row| {
        let n = row.len() as f64;
        let mean = row.sum() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let r = 1.0 / (var + eps).sqrt();
        Zip::from(&mut row)
            .and(&g)
            .and(&b)
            .for_each(|v, &g, &b| *v = (*v - mean) * r * g + b);
    })
}

/// Reduces the last axis with `f`, keeping it as an axis of size 1.
pub(super) fn reduce_row(
    what: &str,
    x: &ArrayViewD<f64>,
    f: impl Fn(ArrayView1<f64>) -> f64,
) -> OpResult {
    let axis = last_axis(what, x)?;
    let reduced: ArrayD<f64> = x.map_axis(axis, f);
    Ok(reduced.insert_axis(axis))
}

/// The maximum of a row (−∞ for an empty row).
pub(super) fn row_max(row: ArrayView1<f64>) -> f64 {
    row.fold(f64::NEG_INFINITY, |m, &v| m.max(v))
}
