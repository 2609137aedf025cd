//! Seeded random weights for a decoder whose attention is head-sparse like a trained
//! model's: per token only a few KV groups of each layer matter (Deja Vu, ICML 2023,
//! measures up to ~80% of OPT's heads skippable per token), and which ones depends on the
//! token (contextual sparsity).
//!
//! # Construction
//!
//! Each KV group `g` of each attention has a **topic**: unit directions `u_g` (what it
//! attends by), `w_g` (what it carries) and `o_g` (where its output goes) in the model
//! width, all of all layers orthonormal (so the model width must hold 3 per group and
//! layer), and random unit `k̂_g`, `r_g` in the head width.
//! - Every vocabulary token belongs, per layer, to [`HeadSyntheticOptions::active`] random
//!   topics: its embedding is `Σ (u_g + σ·w_g)` over them (`σ = ±1` per token and topic)
//!   plus small noise, so after the norm `x·u_g` is large for the token's topics and about
//!   0 for the others.
//! - Queries and keys of group `g` are `s·(x·u_g)·k̂_g` (rank one): a query of one of its
//!   topics attends sharply to the earlier tokens of the same topic (itself first, as the
//!   rotary phases of other positions differ); any other query spreads its attention about
//!   evenly.
//! - Values are `s_v·(x·w_g)·r_g`: a same-topic token's value is large with a random sign,
//!   so an even spread over the context mostly cancels. The output projection maps `r_g`
//!   to `o_g`.
//!
//! So a group's output is large exactly where the token is one of its topics, a linear
//! function of the attention input predicts it (the head predictor's ridge regression
//! finds `u_g`), and the fraction of active groups per token is about `active / G`.
//! Everything else: norm gains 1, biases 0, the LM head and the FFN's up/gate projections
//! `N(0, 1/m)` for `[m, n]`, the FFN's down projection a tenth of that (so the residual
//! stream keeps the topics through the layers). Each tensor has its own ChaCha stream,
//! seeded by the seed and its name.

use super::synthetic::{roles, stream, unit};
use super::{SparsityError, Weights};
use crate::sparsity::svd::gaussian;
use comet_ir::Program;
use comet_ir::ffn::find_ffns;
use comet_ir::heads::{Attention, find_attentions};
use ndarray::{Array1, Array2, ArrayD, IxDyn};
use rand::RngExt;
use std::collections::HashMap;

/// Scale of queries and keys: a same-topic score `s²·(x·u)²/√hd` of 6 and more.
const QK_SCALE: f64 = 2.6;
/// Scale of values: a same-topic value of norm about 1.
const V_SCALE: f64 = 0.25;
/// Norm an active group adds to the residual stream, over its query heads.
const OUT_NORM: f64 = 2.0;
/// Standard deviation of the embedding's noise, over the whole width.
const NOISE: f64 = 0.5;
/// Scale of the FFN's down projection against `N(0, 1/m)`.
const DOWN_SCALE: f64 = 0.1;
/// Weight of the LM head's bigram part ([`lm_head`]).
const BIGRAM: f64 = 0.5;

/// Parameters of the construction (module docs).
#[derive(Debug, Clone, Copy)]
pub struct HeadSyntheticOptions {
    /// Topics (KV groups) per token and layer.
    pub active: usize,
    /// Seed.
    pub seed: u64,
}

/// One group's topic directions.
struct Topic {
    u: Array1<f64>,
    w: Array1<f64>,
    k: Array1<f64>,
    r: Array1<f64>,
    o: Array1<f64>,
}

/// Weights for every tensor of `program`, whose attentions must all be found
/// ([`find_attentions`]) and which must embed tokens.
///
/// # Errors
/// If the model has no attention or token table, or `active` is 0 or more than an
/// attention's KV groups.
pub fn head_model_weights(
    program: &Program,
    opts: &HeadSyntheticOptions,
) -> Result<Weights, SparsityError> {
    let atts = find_attentions(program);
    if atts.is_empty() {
        return Err(SparsityError::Model(format!(
            "model `{}` has no attention written with the library `attention(...)` block",
            program.info.name
        )));
    }
    if let Some(a) = atts
        .iter()
        .find(|a| opts.active == 0 || opts.active as u64 > a.kv_heads)
    {
        return Err(SparsityError::Options(format!(
            "synthetic head sparsity needs 1 to {} active groups per token, not {}",
            a.kv_heads, opts.active
        )));
    }
    let roles = roles(program);
    let Some(table) = roles.token_tables.iter().min().cloned() else {
        return Err(SparsityError::Model(format!(
            "model `{}` has no token table",
            program.info.name
        )));
    };
    let directions: u64 = atts.iter().map(|a| 3 * a.kv_heads).sum();
    if let Some(a) = atts.iter().find(|a| a.d < directions) {
        return Err(SparsityError::Model(format!(
            "synthetic head sparsity needs {directions} orthogonal directions (3 per KV group \
             and layer) in the model width, which is {}",
            a.d
        )));
    }
    let mut basis = Basis::new(stream(opts.seed, "synthetic-heads.basis"));
    let topics: Vec<Vec<Topic>> = (atts.iter())
        .map(|a| topics(a, opts.seed, &mut basis))
        .collect();
    let mut out: Weights = HashMap::new();
    for (a, t) in atts.iter().zip(&topics) {
        out.extend(attention_weights(a, t, opts.seed));
    }
    let shape = weight_shape(program, &table);
    let e = embeddings(&shape, &topics, opts, &table);
    if let Some(head) = (program.info.weights.iter()).find(|w| {
        w.name != table && w.shape.len() == 2 && w.shape == [shape[1] as u64, shape[0] as u64]
    }) {
        out.insert(head.name.clone(), lm_head(&e, opts.seed, &head.name));
    }
    out.insert(table.clone(), e.into_dyn());
    let downs: std::collections::HashSet<String> = (find_ffns(program).into_iter())
        .map(|f| f.weights.down)
        .collect();
    for w in &program.info.weights {
        if out.contains_key(&w.name) {
            continue;
        }
        let shape: Vec<usize> = w.shape.iter().map(|&n| n as usize).collect();
        let value = match (roles.gains.contains(&w.name), shape.len()) {
            (true, _) => ArrayD::from_elem(IxDyn(&shape), 1.0),
            (false, 1) => ArrayD::zeros(IxDyn(&shape)),
            _ => {
                let scale = match downs.contains(&w.name) {
                    true => DOWN_SCALE,
                    false => 1.0,
                } / (shape[0] as f64).sqrt();
                let mut rng = stream(opts.seed, &w.name);
                ArrayD::from_shape_simple_fn(IxDyn(&shape), || scale * gaussian(&mut rng))
            }
        };
        out.insert(w.name.clone(), value);
    }
    Ok(out)
}

fn weight_shape(program: &Program, name: &str) -> Vec<usize> {
    (program.info.weight(name))
        .map(|w| w.shape.iter().map(|&n| n as usize).collect())
        .unwrap_or_default()
}

/// Random orthonormal directions of the model width, drawn one after the other (Gram–
/// Schmidt against the earlier ones), so that topics do not leak into each other.
struct Basis {
    rng: rand_chacha::ChaCha12Rng,
    drawn: Vec<Array1<f64>>,
}

impl Basis {
    fn new(rng: rand_chacha::ChaCha12Rng) -> Basis {
        Basis {
            rng,
            drawn: Vec::new(),
        }
    }

    /// The next direction (the caller checks that fewer than `d` were drawn).
    fn next(&mut self, d: usize) -> Array1<f64> {
        let mut v = unit(&mut self.rng, d);
        for _ in 0..2 {
            for b in &self.drawn {
                let c = v.dot(b);
                v = &v - &(b * c);
            }
        }
        let n = v.dot(&v).sqrt();
        let v = v / n;
        self.drawn.push(v.clone());
        v
    }
}

/// The topics of attention `a`'s KV groups: model-width directions from `basis`.
fn topics(a: &Attention, seed: u64, basis: &mut Basis) -> Vec<Topic> {
    let mut rng = stream(seed, &format!("synthetic-heads.{}", a.weights[0]));
    let (d, hd) = (a.d as usize, a.hd as usize);
    (0..a.kv_heads)
        .map(|_| Topic {
            u: basis.next(d),
            w: basis.next(d),
            k: unit(&mut rng, hd),
            r: unit(&mut rng, hd),
            o: basis.next(d),
        })
        .collect()
}

/// `W_Q`, `W_K`, `W_V`, `W_O` of attention `a` from its topics.
fn attention_weights(a: &Attention, topics: &[Topic], seed: u64) -> Weights {
    let (d, hd) = (a.d as usize, a.hd as usize);
    let per = a.groups() as usize;
    let outer = |x: &Array1<f64>, y: &Array1<f64>, s: f64| {
        let col = x.view().insert_axis(ndarray::Axis(1));
        let row = y.view().insert_axis(ndarray::Axis(0));
        col.dot(&row) * s
    };
    let mut q = Array2::<f64>::zeros((d, a.heads as usize * hd));
    let mut k = Array2::<f64>::zeros((d, a.kv_heads as usize * hd));
    let mut v = k.clone();
    let mut o = Array2::<f64>::zeros((a.heads as usize * hd, d));
    for (g, t) in topics.iter().enumerate() {
        let cols = ndarray::s![.., g * hd..(g + 1) * hd];
        k.slice_mut(cols).assign(&outer(&t.u, &t.k, QK_SCALE));
        v.slice_mut(cols).assign(&outer(&t.w, &t.r, V_SCALE));
        for h in g * per..(g + 1) * per {
            let cols = ndarray::s![.., h * hd..(h + 1) * hd];
            q.slice_mut(cols).assign(&outer(&t.u, &t.k, QK_SCALE));
            let rows = ndarray::s![h * hd..(h + 1) * hd, ..];
            o.slice_mut(rows)
                .assign(&outer(&t.r, &t.o, OUT_NORM / per as f64));
        }
    }
    let mut out = HashMap::new();
    for (name, m) in a.weights.iter().zip([q, k, v, o]) {
        // a little full-rank noise, so no product is exactly rank one
        let mut rng = stream(seed, name);
        let scale = 0.01 / (m.nrows() as f64).sqrt();
        let noisy = m.mapv(|x| x + scale * gaussian(&mut rng));
        out.insert(name.clone(), noisy.into_dyn());
    }
    out
}

/// An untied LM head `[d, vocab]`: `N(0, 1/d)` plus a bigram part, token `v`'s column
/// [`BIGRAM`]·`e_σ(v)/|e_σ(v)|` for a random permutation `σ`, so that the greedy choice has
/// a margin as a trained model's does (a purely random head's top logits are within
/// noise of each other over the vocabulary), and still depends on the whole hidden state.
fn lm_head(e: &Array2<f64>, seed: u64, name: &str) -> ArrayD<f64> {
    let (vocab, d) = e.dim();
    let mut rng = stream(seed, name);
    let mut sigma: Vec<usize> = (0..vocab).collect();
    for i in (1..vocab).rev() {
        sigma.swap(i, rng.random_range(0..=i));
    }
    let scale = 1.0 / (d as f64).sqrt();
    let mut w = Array2::from_shape_simple_fn((d, vocab), || scale * gaussian(&mut rng));
    for (v, &t) in sigma.iter().enumerate() {
        let row = e.row(t);
        let n = row.dot(&row).sqrt().max(1e-9);
        let mut col = w.column_mut(v);
        col += &(&row * (BIGRAM / n));
    }
    w.into_dyn()
}

/// The token table `[vocab, d]`: each token the sum of its topics' directions, per layer.
fn embeddings(
    shape: &[usize],
    topics: &[Vec<Topic>],
    opts: &HeadSyntheticOptions,
    name: &str,
) -> Array2<f64> {
    let (vocab, d) = (shape[0], shape[1]);
    let mut rng = stream(opts.seed, name);
    let mut e = Array2::<f64>::zeros((vocab, d));
    for mut row in e.rows_mut() {
        for layer in topics {
            let mut groups: Vec<usize> = (0..layer.len()).collect();
            for i in 0..opts.active {
                let j = rng.random_range(i..groups.len());
                groups.swap(i, j);
                let t = &layer[groups[i]];
                let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                row += &(&t.u + &(&t.w * sign));
            }
        }
        let noise = NOISE / (d as f64).sqrt();
        row.mapv_inplace(|x| x + noise * gaussian(&mut rng));
    }
    e
}
