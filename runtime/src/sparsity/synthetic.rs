//! Seeded random weights for a ReLU-FFN decoder (OPT-style) whose FFN activations are
//! sparse like a trained model's: about 90% of the neurons inactive per token, and the
//! active ones clustered, so that whole blocks are inactive.
//!
//! # Construction
//!
//! The FFN input `x` is a LayerNorm output with gain 1 and bias 0, so `|x|² = d` and, for a
//! random unit vector `u`, `x·u` has variance 1. For each ReLU FFN, the `ff` neurons are
//! cut into clusters of `C` consecutive neurons ([`SyntheticOptions::cluster`]). Cluster
//! `c` has a random unit direction `u_c`; neuron `j` of it has the weight column
//! `w_j = u_c + ε·n_j` (`n_j` another random unit vector, `ε` =
//! [`SyntheticOptions::jitter`]) and the bias `−θ` with `θ = Φ⁻¹(1 − h)` (`h` =
//! [`SyntheticOptions::hot`]). Then `z_j = g_c + ε·e_j − θ` with `g_c`, `e_j` about standard
//! normal: a cluster is "hot" for a token when `g_c > θ` (probability `h`, depending on
//! the direction of `x`), and a hot cluster's neurons mostly fire together, a cold one's
//! mostly not. With `h = 0.1`, `ε = 0.15`: about 90% of the neurons inactive and, for
//! blocks no larger than a cluster, about 85% of the blocks. `W_act` is then `rank(ff/C)`
//! plus a small full-rank part, so a rank-`r` SVD predictor sees `min(r, ff/C)` of the
//! cluster directions well.
//!
//! The down projection is `N(0, σ²)` with `σ² = 1 / (ff · E[relu(z)²])`, so each FFN adds
//! about unit variance to the residual stream (it matters to the output). Everything else:
//! token and position tables `N(0, 0.1²)` ([`EMBEDDING_SCALE`]), norm gains 1, all biases
//! 0, other matrices `[m, n]` `N(0, 1/m)`. Each tensor has its own ChaCha stream, seeded by the
//! seed and the weight's name.

use super::{SparsityError, Weights};
use crate::plain::erfc;
use crate::sparsity::svd::gaussian;
use comet_ir::ffn::find_ffns;
use comet_ir::{Op, Program, UnaryFn};
use ndarray::{Array1, Array2, ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use std::collections::{HashMap, HashSet};

/// Standard deviation of the token and position tables: small, so that the residual
/// stream (and the tied head's logits) is dominated by what attention and the FFNs add,
/// not by the current token's own embedding (else a random model just repeats its input
/// whatever its FFNs do).
pub const EMBEDDING_SCALE: f64 = 0.1;

/// Parameters of the construction (module docs).
#[derive(Debug, Clone, Copy)]
pub struct SyntheticOptions {
    /// Neurons per cluster `C`.
    pub cluster: usize,
    /// Probability `h` that a cluster is hot for a token.
    pub hot: f64,
    /// Per-neuron jitter `ε` of the cluster direction.
    pub jitter: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for SyntheticOptions {
    fn default() -> Self {
        SyntheticOptions {
            cluster: 64,
            hot: 0.1,
            jitter: 0.15,
            seed: 1,
        }
    }
}

/// Φ(x), the standard normal CDF.
fn phi(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Φ⁻¹(p) by bisection.
fn phi_inv(p: f64) -> f64 {
    let (mut lo, mut hi) = (-40.0, 40.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if phi(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// E[relu(z)²] for z ~ N(μ, s²).
fn relu_second_moment(mu: f64, s: f64) -> f64 {
    let a = mu / s;
    let density = (-0.5 * a * a).exp() / (2.0 * std::f64::consts::PI).sqrt();
    (mu * mu + s * s) * phi(a) + mu * s * density
}

pub(super) fn stream(seed: u64, name: &str) -> ChaCha12Rng {
    // FNV-1a of the name, mixed with the seed
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    ChaCha12Rng::seed_from_u64(seed ^ h.rotate_left(17))
}

pub(super) fn unit(rng: &mut ChaCha12Rng, d: usize) -> Array1<f64> {
    let v = Array1::from_shape_simple_fn(d, || gaussian(rng));
    let n = v.dot(&v).sqrt();
    v / n
}

/// The names of the weights that play a part the synthetic weights draw apart.
pub(super) struct Roles {
    /// Norm gains.
    pub gains: HashSet<String>,
    /// Position tables (embedded positions).
    pub position_tables: HashSet<String>,
    /// Token tables (embedded tokens).
    pub token_tables: HashSet<String>,
}

/// The weights' roles, from the graph.
pub(super) fn roles(program: &Program) -> Roles {
    let g = &program.graph;
    let mut r = Roles {
        gains: HashSet::new(),
        position_tables: HashSet::new(),
        token_tables: HashSet::new(),
    };
    let name_of = |id| match &g.node(id).op {
        Op::Weight { name } => Some(name.clone()),
        _ => None,
    };
    for id in g.ids() {
        let ops = g.operands(id);
        match g.node(id).op {
            Op::LayerNorm { .. } | Op::RmsNorm { .. } => r.gains.extend(name_of(ops[1])),
            Op::Embed => match g.node(ops[0]).op {
                Op::Positions { .. } => r.position_tables.extend(name_of(ops[1])),
                _ => r.token_tables.extend(name_of(ops[1])),
            },
            _ => {}
        }
    }
    r
}

/// Weights for every tensor of `program`, whose FFNs must all be plain ReLU FFNs.
pub fn relu_model_weights(
    program: &Program,
    opts: &SyntheticOptions,
) -> Result<Weights, SparsityError> {
    if opts.cluster == 0 || !(opts.hot > 0.0 && opts.hot < 1.0) || opts.jitter < 0.0 {
        return Err(SparsityError::Options(format!(
            "synthetic weights need cluster ≥ 1, 0 < hot < 1, jitter ≥ 0 (got {}, {}, {})",
            opts.cluster, opts.hot, opts.jitter
        )));
    }
    let ffns = find_ffns(program);
    if ffns.is_empty() {
        return Err(SparsityError::Model(format!(
            "model `{}` has no FFN to make sparse",
            program.info.name
        )));
    }
    if let Some(f) = ffns
        .iter()
        .find(|f| f.func != UnaryFn::Relu || f.is_gated())
    {
        return Err(SparsityError::Model(format!(
            "synthetic weights make ReLU FFNs sparse; model `{}` has a {}{} FFN ({})",
            program.info.name,
            if f.is_gated() { "gated " } else { "" },
            f.func.name(),
            f.label()
        )));
    }
    if ffns.iter().any(|f| f.weights.act_bias.is_none()) {
        return Err(SparsityError::Model(format!(
            "synthetic sparsity needs a bias on the FFN's first projection (OPT's fc1); model \
             `{}` has none",
            program.info.name
        )));
    }
    let theta = phi_inv(1.0 - opts.hot);
    let spread = (1.0 + opts.jitter * opts.jitter).sqrt();
    let down_sigma = |ff: u64| 1.0 / (ff as f64 * relu_second_moment(-theta, spread)).sqrt();

    let Roles {
        gains,
        position_tables,
        token_tables,
    } = roles(program);

    let mut out: Weights = HashMap::new();
    for f in &ffns {
        let (d, ff) = (f.d as usize, f.ff as usize);
        let mut rng = stream(opts.seed, &f.weights.act);
        let mut w = Array2::<f64>::zeros((d, ff));
        let mut dir = unit(&mut rng, d);
        for j in 0..ff {
            if j % opts.cluster == 0 && j > 0 {
                dir = unit(&mut rng, d);
            }
            let col = &dir + &(unit(&mut rng, d) * opts.jitter);
            w.column_mut(j).assign(&col);
        }
        out.insert(f.weights.act.clone(), w.into_dyn());
        if let Some(b) = &f.weights.act_bias {
            out.insert(b.clone(), ArrayD::from_elem(IxDyn(&[ff]), -theta));
        }
        let sigma = down_sigma(f.ff);
        let mut rng = stream(opts.seed, &f.weights.down);
        let info = program
            .info
            .weight(&f.weights.down)
            .expect("a declared weight");
        let shape: Vec<usize> = info.shape.iter().map(|&n| n as usize).collect();
        out.insert(
            f.weights.down.clone(),
            ArrayD::from_shape_simple_fn(IxDyn(&shape), || sigma * gaussian(&mut rng)),
        );
    }
    for w in &program.info.weights {
        if out.contains_key(&w.name) {
            continue;
        }
        let shape: Vec<usize> = w.shape.iter().map(|&n| n as usize).collect();
        let mut rng = stream(opts.seed, &w.name);
        let value = if gains.contains(&w.name) {
            ArrayD::from_elem(IxDyn(&shape), 1.0)
        } else if shape.len() == 1 {
            ArrayD::zeros(IxDyn(&shape))
        } else {
            let scale = if token_tables.contains(&w.name) || position_tables.contains(&w.name) {
                EMBEDDING_SCALE
            } else {
                1.0 / (shape[0] as f64).sqrt()
            };
            ArrayD::from_shape_simple_fn(IxDyn(&shape), || scale * gaussian(&mut rng))
        };
        out.insert(w.name.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_helpers() {
        assert!((phi_inv(0.9) - 1.281_551_565_5).abs() < 1e-9);
        assert!((phi(0.0) - 0.5).abs() < 1e-15);
        // E[relu(z)²] for a standard normal is 1/2
        assert!((relu_second_moment(0.0, 1.0) - 0.5).abs() < 1e-12);
        // and by simulation for N(−1.28, 1.01²)
        let mut rng = ChaCha12Rng::seed_from_u64(3);
        let n = 200_000;
        let est: f64 = (0..n)
            .map(|_| (-1.28 + 1.01 * gaussian(&mut rng)).max(0.0).powi(2))
            .sum::<f64>()
            / n as f64;
        let exact = relu_second_moment(-1.28, 1.01);
        assert!((est - exact).abs() < 0.003, "{est} vs {exact}");
    }
}
