//! The exact functions the forms are measured against, in f64.

use std::f64::consts::PI;

/// `erf x` by A&S 7.1.6, `2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3···(2n+1))`: positive terms
/// only, so no cancellation; to a few 1e-14 on |x| ≤ 6 (terms are summed until they stop
/// changing the sum), and 1 beyond (erf 6 = 1 − 2.2e-17).
pub fn erf(x: f64) -> f64 {
    if x < 0.0 {
        return -erf(-x);
    }
    if x > 6.0 {
        return 1.0;
    }
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    loop {
        n += 1.0;
        term *= 2.0 * x * x / (2.0 * n + 1.0);
        if sum + term == sum {
            break;
        }
        sum += term;
    }
    2.0 / PI.sqrt() * (-x * x).exp() * sum
}

/// The erf form of GeLU, `x·Φ(x)`.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// `x·σ(x)`.
pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// Softmax of a row.
pub fn softmax(s: &[f64]) -> Vec<f64> {
    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|v| v / z).collect()
}

pub use crate::passes::approximate::samples::NORM_EPS;

/// LayerNorm with `g = 1`, `b = 0`.
pub fn layer_norm(x: &[f64]) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    x.iter()
        .map(|v| (v - mean) / (var + NORM_EPS).sqrt())
        .collect()
}

/// RMSNorm with `g = 1`.
pub fn rms_norm(x: &[f64]) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    x.iter().map(|v| v / (ms + NORM_EPS).sqrt()).collect()
}
