//! Head sparsity in the clear: a per-layer predictor of active KV groups, its calibration
//! on sample inputs, the f64 model run with the predicted groups only, and the KV misses
//! and refills that run implies (COMET.md §4, docs/sparsity.md "Head sparsity").
//!
//! # Definitions
//!
//! An attention ([`comet_ir::heads`]) has `kv_heads` **KV groups** (one key/value head and
//! the query heads that read it). All figures are per token.
//!
//! - **Contribution** of group `g` at token `t`: `c[t, g] = ‖merged[t, g] · W_O[g, :]‖₂`,
//!   the norm of what the group's heads add to the attention's output.
//! - **Active group**: `c[t, g] > τ`, `τ` per layer the `s`-quantile of the contributions
//!   of that layer over the sample tokens and groups ("head magnitude sparsity" `s`).
//! - **Predictor** ([`HeadPredictor`]): per layer a linear score `x·W + b` (`W` `[d, kv]`)
//!   on the attention's input `x`, fit by ridge regression to the contributions of the
//!   sample tokens (closed form, no iterative training), so that the two-party predictor
//!   is one fixed-weight product and one comparison per group, as for the FFN blocks.
//! - **Predicted active**: score `≥ δ`; `δ` per layer the largest value whose **group
//!   recall** (truly active pairs predicted active over truly active pairs) on the sample
//!   tokens reaches the target.
//! - **Masked evaluation**: `merged` zeroed at the groups predicted inactive, token by
//!   token: what the head-sparse protocol computes when every missing K/V row is refilled
//!   before it is read.
//! - **KV miss**: a group inactive at position `p` has no K/V there; when it is active at a
//!   later token it needs them: one **missed row** per (layer, group, position), refilled
//!   from the layer input row kept for `p`. A **miss request** is one (layer, group) with
//!   at least one missed row in a call. [`StepStats`] counts them per call.

use super::calibrate::TokenModel;
use super::{SparsityError, Weights};
use crate::plain::{Cache, Hook};
use comet_ir::heads::{Attention, find_attentions};
use comet_ir::sparse::head_predictor_weights;
use comet_ir::{Node, NodeId};
use ndarray::{Array1, Array2, ArrayD, ArrayViewD, Axis, IxDyn, s};
use std::collections::HashMap;

/// One layer's head predictor: `score = x·w + bias`, active when `score ≥ threshold`.
#[derive(Clone, PartialEq)]
pub struct HeadLayer {
    /// `[d, kv_heads]`.
    pub w: Array2<f64>,
    /// `[kv_heads]`.
    pub bias: Array1<f64>,
    /// `δ`.
    pub threshold: f64,
    /// `τ` of the contribution that defines an active group.
    pub tau: f64,
}

impl std::fmt::Debug for HeadLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadLayer")
            .field("w", &self.w.dim())
            .field("bias", &self.bias.len())
            .finish_non_exhaustive()
    }
}

/// The head predictor of every attention ([`find_attentions`] order).
#[derive(Debug, Clone, PartialEq)]
pub struct HeadPredictor {
    /// Per attention.
    pub layers: Vec<HeadLayer>,
}

impl HeadPredictor {
    /// Scores `[tokens, kv_heads]` of attention `k` for its inputs `x` `[tokens, d]`.
    pub fn scores(&self, k: usize, x: ndarray::ArrayView2<f64>) -> Array2<f64> {
        let l = &self.layers[k];
        x.dot(&l.w) + &l.bias
    }

    /// Which groups are predicted active.
    pub fn predict(&self, k: usize, x: ndarray::ArrayView2<f64>) -> Array2<bool> {
        let t = self.layers[k].threshold;
        self.scores(k, x).mapv(|v| v >= t)
    }

    /// The folded weights of the two-party predictor of attention `k`:
    /// `(w, bias − δ)`, so that a group is active when `x·w + c ≥ 0`.
    pub fn folded(&self, k: usize) -> (Array2<f64>, Array1<f64>) {
        let l = &self.layers[k];
        (l.w.clone(), l.bias.mapv(|b| b - l.threshold))
    }

    /// The weights a head-sparse plan reads, by the names
    /// [`comet_ir::sparse::head_predictor_weights`] gives them.
    pub fn plan_weights(&self) -> Weights {
        let mut out = Weights::new();
        for k in 0..self.layers.len() {
            let (w, c) = self.folded(k);
            let [wn, cn] = head_predictor_weights(k);
            out.insert(wn, w.into_dyn());
            out.insert(cn, c.into_dyn());
        }
        out
    }
}

/// Every attention's input `x` `[tokens, d]` and group contributions `[tokens, kv]`,
/// tokens of all samples stacked.
#[derive(Clone, Default)]
pub struct HeadCapture {
    /// Per attention.
    pub x: Vec<Array2<f64>>,
    /// Per attention.
    pub contrib: Vec<Array2<f64>>,
}

impl std::fmt::Debug for HeadCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dims: Vec<_> = self.x.iter().map(|a| a.dim()).collect();
        f.debug_struct("HeadCapture").field("x", &dims).finish()
    }
}

/// Which groups a run keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadMode {
    /// All of them (the dense model).
    Dense,
    /// Those the predictor predicts active.
    Predicted,
    /// The truly active ones.
    Oracle,
}

/// What one call of a masked run did, over all attentions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepStats {
    /// Tokens of the call.
    pub tokens: u64,
    /// (token, layer, group) triples.
    pub pairs: u64,
    /// Of those, kept (computed).
    pub active: u64,
    /// Missed K/V rows refilled in the call: (layer, group, position).
    pub missed_rows: u64,
    /// (layer, group) pairs with at least one missed row.
    pub miss_requests: u64,
}

/// Counts of a masked run over all calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeadStats {
    /// Per attention: (token, group) pairs seen, truly active, kept, truly active kept.
    pub pairs: Vec<[u64; 4]>,
    /// Per call, in order.
    pub steps: Vec<StepStats>,
}

impl HeadStats {
    /// Truly active pairs kept over truly active pairs (1 when none).
    pub fn recall(&self) -> f64 {
        let (hit, act) = self
            .pairs
            .iter()
            .fold((0, 0), |(h, a), p| (h + p[3], a + p[1]));
        if act == 0 {
            1.0
        } else {
            hit as f64 / act as f64
        }
    }

    /// Pairs skipped over all pairs.
    pub fn skipped(&self) -> f64 {
        let (kept, all) = self
            .pairs
            .iter()
            .fold((0, 0), |(k, a), p| (k + p[2], a + p[0]));
        if all == 0 {
            0.0
        } else {
            1.0 - kept as f64 / all as f64
        }
    }
}

/// Per attention, row blocks to stack.
type Parts = Vec<Vec<Array2<f64>>>;

/// The hook: keeps each attention's `x`, measures the contributions at `merged`, masks.
struct HeadHook<'a> {
    atts: &'a [Attention],
    /// `W_O` per attention as `[kv, hd·groups, d]` row blocks.
    w_o: Vec<Array2<f64>>,
    inputs: HashMap<NodeId, Vec<usize>>,
    merged: HashMap<NodeId, usize>,
    xs: Vec<Option<Array2<f64>>>,
    predictor: Option<&'a HeadPredictor>,
    mode: HeadMode,
    capture: Option<(Parts, Parts)>,
    /// Per attention, per group: whether K/V of each position so far is present.
    present: Vec<Vec<Vec<bool>>>,
    stats: HeadStats,
    step: StepStats,
    /// Per attention: (groups with a miss in this call).
    requests: Vec<Vec<bool>>,
}

impl<'a> HeadHook<'a> {
    fn new(
        model: &TokenModel,
        atts: &'a [Attention],
        predictor: Option<&'a HeadPredictor>,
        mode: HeadMode,
    ) -> Result<Self, SparsityError> {
        let mut inputs: HashMap<NodeId, Vec<usize>> = HashMap::new();
        let mut merged = HashMap::new();
        let mut w_o = Vec::new();
        for (k, a) in atts.iter().enumerate() {
            inputs.entry(a.input).or_default().push(k);
            merged.insert(a.merged, k);
            let w = weight2(model.weights, &a.weights[3])?;
            w_o.push(w);
        }
        let n = atts.len();
        Ok(HeadHook {
            atts,
            w_o,
            inputs,
            merged,
            xs: vec![None; n],
            predictor,
            mode,
            capture: None,
            present: atts
                .iter()
                .map(|a| vec![Vec::new(); a.kv_heads as usize])
                .collect(),
            stats: HeadStats {
                pairs: vec![[0; 4]; n],
                steps: Vec::new(),
            },
            step: StepStats::default(),
            requests: atts
                .iter()
                .map(|a| vec![false; a.kv_heads as usize])
                .collect(),
        })
    }

    /// Starts a new sequence (an empty KV cache).
    fn new_sequence(&mut self) {
        for p in &mut self.present {
            for g in p.iter_mut() {
                g.clear();
            }
        }
    }

    /// Closes the counts of one call.
    fn end_call(&mut self, tokens: usize) {
        self.step.tokens = tokens as u64;
        self.step.miss_requests = (self.requests.iter().flatten()).filter(|&&r| r).count() as u64;
        for r in self.requests.iter_mut().flatten() {
            *r = false;
        }
        self.stats.steps.push(std::mem::take(&mut self.step));
    }

    /// Contributions `[tokens, kv]` of attention `k` for its `merged` rows.
    fn contributions(&self, k: usize, merged: &Array2<f64>) -> Array2<f64> {
        let a = &self.atts[k];
        let width = (a.groups() * a.hd) as usize;
        let mut c = Array2::zeros((merged.nrows(), a.kv_heads as usize));
        for g in 0..a.kv_heads as usize {
            let cols = s![.., g * width..(g + 1) * width];
            let rows = s![g * width..(g + 1) * width, ..];
            let y = merged.slice(cols).dot(&self.w_o[k].slice(rows));
            for (t, row) in y.rows().into_iter().enumerate() {
                c[[t, g]] = row.dot(&row).sqrt();
            }
        }
        c
    }

    fn masked(&mut self, k: usize, merged: Array2<f64>) -> Option<Array2<f64>> {
        let c = self.contributions(k, &merged);
        let x = self.xs[k]
            .clone()
            .expect("the attention's input comes first");
        if let Some((xs, cs)) = &mut self.capture {
            xs[k].push(x.clone());
            cs[k].push(c.clone());
        }
        let tau = self.predictor.map_or(0.0, |p| p.layers[k].tau);
        let truth = c.mapv(|v| v > tau);
        let keep = match self.mode {
            HeadMode::Dense => Array2::from_elem(truth.dim(), true),
            HeadMode::Oracle => truth.clone(),
            HeadMode::Predicted => self
                .predictor
                .expect("a predictor for predicted masks")
                .predict(k, x.view()),
        };
        let p = &mut self.stats.pairs[k];
        p[0] += truth.len() as u64;
        p[1] += truth.iter().filter(|a| **a).count() as u64;
        p[2] += keep.iter().filter(|a| **a).count() as u64;
        p[3] += (truth.iter().zip(&keep))
            .filter(|(a, b)| **a && **b)
            .count() as u64;
        self.step.pairs += keep.len() as u64;
        self.step.active += keep.iter().filter(|a| **a).count() as u64;
        for row in keep.rows() {
            for (g, &on) in row.iter().enumerate() {
                let present = &mut self.present[k][g];
                if on {
                    let missed = present.iter().filter(|p| !**p).count() as u64;
                    if missed > 0 {
                        self.step.missed_rows += missed;
                        self.requests[k][g] = true;
                        present.iter_mut().for_each(|p| *p = true);
                    }
                }
                present.push(on);
            }
        }
        if self.mode == HeadMode::Dense {
            return None;
        }
        let width = (self.atts[k].groups() * self.atts[k].hd) as usize;
        let mut m = merged;
        for (mut row, keep) in m.rows_mut().into_iter().zip(keep.rows()) {
            for (j, v) in row.iter_mut().enumerate() {
                if !keep[j / width] {
                    *v = 0.0;
                }
            }
        }
        Some(m)
    }
}

impl Hook for HeadHook<'_> {
    fn after(
        &mut self,
        id: NodeId,
        _node: &Node,
        value: ArrayViewD<'_, f64>,
    ) -> Option<ArrayD<f64>> {
        if let Some(ks) = self.inputs.get(&id) {
            let x = rows_of(value.view());
            for &k in ks {
                self.xs[k] = Some(x.clone());
            }
        }
        let k = *self.merged.get(&id)?;
        let shape = value.shape().to_vec();
        let m = self.masked(k, rows_of(value))?;
        Some(m.into_shape_with_order(IxDyn(&shape)).expect("same shape"))
    }
}

fn rows_of(v: ArrayViewD<f64>) -> Array2<f64> {
    let n = *v.shape().last().unwrap_or(&1);
    let rows = v.len() / n.max(1);
    v.as_standard_layout()
        .into_owned()
        .into_shape_with_order((rows, n))
        .expect("same element count")
}

fn weight2(weights: &Weights, name: &str) -> Result<Array2<f64>, SparsityError> {
    let w = weights
        .get(name)
        .ok_or_else(|| SparsityError::Model(format!("weight `{name}` is not loaded")))?;
    w.clone()
        .into_dimensionality()
        .map_err(|_| SparsityError::Model(format!("weight `{name}` is not a matrix")))
}

/// The attentions of `model`, or an error naming why head sparsity does not apply.
pub fn attentions(model: &TokenModel) -> Result<Vec<Attention>, SparsityError> {
    let atts = find_attentions(model.program);
    if atts.is_empty() {
        return Err(SparsityError::Model(format!(
            "model `{}` has no attention block written with the library `attention(...)` \
             (head sparsity needs its projections, heads and merge): nothing to make \
             head-sparse",
            model.program.info.name
        )));
    }
    Ok(atts)
}

/// Runs each sample densely (a new sequence, one call) and keeps every attention's `x`
/// and group contributions.
pub fn capture_heads(
    model: &TokenModel,
    atts: &[Attention],
    samples: &[Vec<u32>],
) -> Result<HeadCapture, SparsityError> {
    if samples.is_empty() {
        return Err(SparsityError::Samples("no calibration samples".into()));
    }
    let n = atts.len();
    let mut hook = HeadHook::new(model, atts, None, HeadMode::Dense)?;
    hook.capture = Some((vec![Vec::new(); n], vec![Vec::new(); n]));
    for (i, s) in samples.iter().enumerate() {
        model.check_ids(s, &format!("calibration sample {i}"))?;
        hook.new_sequence();
        model.call(s, 0, &mut Cache::new(), &mut hook, &|| {
            format!("calibration sample {i}")
        })?;
        hook.end_call(s.len());
    }
    let (xs, cs) = hook.capture.expect("set above");
    let stack = |parts: Vec<Array2<f64>>| {
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(Axis(0), &views).expect("rows of equal width")
    };
    Ok(HeadCapture {
        x: xs.into_iter().map(stack).collect(),
        contrib: cs.into_iter().map(stack).collect(),
    })
}

/// One layer's calibration result.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadLayerReport {
    /// `layer 3`.
    pub label: String,
    /// KV groups and query heads per group.
    pub groups: (u64, u64),
    /// `τ`.
    pub tau: f64,
    /// `δ`.
    pub threshold: f64,
    /// Group recall on the samples.
    pub recall: f64,
    /// Pairs predicted inactive.
    pub predicted_sparsity: f64,
    /// Pairs truly inactive.
    pub true_sparsity: f64,
}

/// Fits the predictor on `cap` (ridge `lambda` relative to the mean diagonal of `XᵀX`),
/// with `τ` the `sparsity`-quantile of each layer's contributions and `δ` reaching
/// `recall` on the samples; the per-layer report.
///
/// # Errors
/// If an option is out of range or there are no tokens.
pub fn calibrate_heads(
    atts: &[Attention],
    cap: &HeadCapture,
    sparsity: f64,
    recall: f64,
) -> Result<(HeadPredictor, Vec<HeadLayerReport>), SparsityError> {
    if !(recall > 0.0 && recall <= 1.0) {
        return Err(SparsityError::Options(format!(
            "head recall must be in (0, 1], not {recall}"
        )));
    }
    if !(0.0..1.0).contains(&sparsity) {
        return Err(SparsityError::Options(format!(
            "head sparsity must be in [0, 1), not {sparsity}"
        )));
    }
    let mut layers = Vec::new();
    let mut reports = Vec::new();
    for (k, a) in atts.iter().enumerate() {
        let (x, c) = (&cap.x[k], &cap.contrib[k]);
        if x.nrows() == 0 {
            return Err(SparsityError::Samples("no calibration tokens".into()));
        }
        let mut sorted: Vec<f64> = c.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let i = ((sparsity * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        let tau = if sparsity <= 0.0 { 0.0 } else { sorted[i - 1] };
        let (w, bias) = ridge(x, c, 1e-3);
        let scores = x.dot(&w) + &bias;
        let truth = c.mapv(|v| v > tau);
        let mut act: Vec<f64> = (scores.iter().zip(&truth))
            .filter(|(_, t)| **t)
            .map(|(s, _)| *s)
            .collect();
        act.sort_by(|a, b| b.total_cmp(a));
        let threshold = if act.is_empty() {
            f64::INFINITY
        } else {
            let n = ((recall * act.len() as f64).ceil() as usize).clamp(1, act.len());
            act[n - 1]
        };
        let keep = scores.mapv(|v| v >= threshold);
        let hits = (truth.iter().zip(&keep))
            .filter(|(a, b)| **a && **b)
            .count();
        let n_true = truth.iter().filter(|t| **t).count();
        let all = truth.len() as f64;
        reports.push(HeadLayerReport {
            label: a.label(k),
            groups: (a.kv_heads, a.groups()),
            tau,
            threshold,
            recall: if n_true == 0 {
                1.0
            } else {
                hits as f64 / n_true as f64
            },
            predicted_sparsity: 1.0 - keep.iter().filter(|v| **v).count() as f64 / all,
            true_sparsity: 1.0 - n_true as f64 / all,
        });
        layers.push(HeadLayer {
            w,
            bias,
            threshold,
            tau,
        });
    }
    Ok((HeadPredictor { layers }, reports))
}

/// Ridge regression of `y` `[n, m]` on `x` `[n, d]` with an intercept: `(w, b)`.
fn ridge(x: &Array2<f64>, y: &Array2<f64>, lambda: f64) -> (Array2<f64>, Array1<f64>) {
    let (n, d) = x.dim();
    let mut xa = Array2::ones((n, d + 1));
    xa.slice_mut(s![.., ..d]).assign(x);
    let mut g = xa.t().dot(&xa);
    let mean_diag = (0..d).map(|i| g[[i, i]]).sum::<f64>() / d.max(1) as f64;
    for i in 0..d {
        g[[i, i]] += lambda * mean_diag.max(1e-12);
    }
    let rhs = xa.t().dot(y);
    let sol = solve_spd(g, rhs);
    let w = sol.slice(s![..d, ..]).to_owned();
    let b = sol.row(d).to_owned();
    (w, b)
}

/// Solves `a · x = b` for a symmetric positive definite `a` (Gaussian elimination with
/// partial pivoting, which also copes with a semidefinite intercept column).
fn solve_spd(mut a: Array2<f64>, mut b: Array2<f64>) -> Array2<f64> {
    let n = a.nrows();
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&i, &j| a[[i, col]].abs().total_cmp(&a[[j, col]].abs()))
            .expect("non-empty");
        if piv != col {
            for j in 0..n {
                a.swap([col, j], [piv, j]);
            }
            for j in 0..b.ncols() {
                b.swap([col, j], [piv, j]);
            }
        }
        let p = a[[col, col]];
        if p.abs() < 1e-300 {
            continue;
        }
        for i in col + 1..n {
            let f = a[[i, col]] / p;
            if f == 0.0 {
                continue;
            }
            for j in col..n {
                a[[i, j]] -= f * a[[col, j]];
            }
            for j in 0..b.ncols() {
                b[[i, j]] -= f * b[[col, j]];
            }
        }
    }
    let mut x = Array2::zeros(b.dim());
    for i in (0..n).rev() {
        for j in 0..b.ncols() {
            let mut v = b[[i, j]];
            for k in i + 1..n {
                v -= a[[i, k]] * x[[k, j]];
            }
            x[[i, j]] = if a[[i, i]].abs() < 1e-300 {
                0.0
            } else {
                v / a[[i, i]]
            };
        }
    }
    x
}

/// How a head-masked run compares with the dense one.
#[derive(Debug, Clone)]
pub struct HeadAgreement {
    /// Per prompt: greedy tokens equal to the dense ones before the first divergence.
    pub matched: Vec<usize>,
    /// Tokens generated per prompt.
    pub steps: usize,
    /// Counts of the free-running runs (per call: heads active, misses).
    pub stats: HeadStats,
}

/// Greedy decoding of each prompt for `steps` tokens under `mode`: the tokens and counts.
///
/// # Errors
/// If a prompt does not fit the model, or `mode` needs a predictor that is not given.
pub fn greedy_heads(
    model: &TokenModel,
    atts: &[Attention],
    prompts: &[Vec<u32>],
    steps: usize,
    predictor: Option<&HeadPredictor>,
    mode: HeadMode,
) -> Result<(Vec<Vec<u32>>, HeadStats), SparsityError> {
    if mode != HeadMode::Dense && predictor.is_none() {
        return Err(SparsityError::Options(
            "a masked head run needs a predictor (its τ and thresholds)".into(),
        ));
    }
    let mut hook = HeadHook::new(model, atts, predictor, mode)?;
    let mut all = Vec::new();
    for (i, prompt) in prompts.iter().enumerate() {
        model.check_ids(prompt, &format!("evaluation prompt {i}"))?;
        if let Some(m) = model.max_len
            && prompt.len() + steps > m
        {
            return Err(SparsityError::Samples(format!(
                "evaluation prompt {i} has {} tokens: with {steps} generated the model's {m} \
                 positions do not suffice",
                prompt.len()
            )));
        }
        hook.new_sequence();
        let mut cache = Cache::new();
        let ctx = || format!("evaluation prompt {i}");
        let logits = model.call(prompt, 0, &mut cache, &mut hook, &ctx)?;
        hook.end_call(prompt.len());
        let mut out = vec![argmax(logits.row(logits.nrows() - 1))];
        while out.len() < steps {
            let past = prompt.len() + out.len() - 1;
            let last = [*out.last().expect("non-empty")];
            let logits = model.call(&last, past, &mut cache, &mut hook, &ctx)?;
            hook.end_call(1);
            out.push(argmax(logits.row(0)));
        }
        all.push(out);
    }
    Ok((all, hook.stats))
}

/// The masked run against the dense tokens `dense`.
///
/// # Errors
/// As [`greedy_heads`].
pub fn compare_heads(
    model: &TokenModel,
    atts: &[Attention],
    prompts: &[Vec<u32>],
    dense: &[Vec<u32>],
    predictor: &HeadPredictor,
    mode: HeadMode,
) -> Result<HeadAgreement, SparsityError> {
    let steps = dense.first().map_or(0, Vec::len);
    let (tokens, stats) = greedy_heads(model, atts, prompts, steps, Some(predictor), mode)?;
    let matched = (tokens.iter().zip(dense))
        .map(|(a, b)| a.iter().zip(b).take_while(|(x, y)| x == y).count())
        .collect();
    Ok(HeadAgreement {
        matched,
        steps,
        stats,
    })
}

fn argmax(row: ndarray::ArrayView1<f64>) -> u32 {
    (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b }) as u32
}

/// The `format` metadata of a head predictor file.
pub const HEAD_PREDICTOR_FORMAT: &str = "comet-head-predictor";

impl HeadPredictor {
    /// The file: safetensors with the folded weights of every attention under the names
    /// a head-sparse plan reads (`sparsity.heads{k}.w` `[d, kv]`, `.c` `[kv]`), and
    /// metadata `format`, `model`, `attentions`, `recall`.
    pub fn to_bytes(&self, model: &str, recall: f64) -> Vec<u8> {
        use safetensors::tensor::{Dtype, TensorView};
        let meta = HashMap::from([
            ("format".to_string(), HEAD_PREDICTOR_FORMAT.to_string()),
            ("model".to_string(), model.to_string()),
            ("attentions".to_string(), self.layers.len().to_string()),
            ("recall".to_string(), recall.to_string()),
        ]);
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut names: Vec<_> = self.plan_weights().into_iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, v) in names {
            let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            tensors.push((name, v.shape().to_vec(), bytes));
        }
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, s, b)| {
                let v = TensorView::new(Dtype::F64, s.clone(), b).expect("sizes match");
                (n.clone(), v)
            })
            .collect();
        safetensors::serialize(views, Some(meta)).expect("serializable tensors")
    }
}

/// The head predictor weights of the head-sparse plan `program` from the file at `path`
/// (`comet calibrate --heads --out FILE`).
///
/// # Errors
/// If the plan has dense attention, or the file is not a head predictor file for it
/// (another model, attention count or shape).
pub fn head_plan_weights(
    path: &std::path::Path,
    program: &comet_ir::Program,
) -> Result<Weights, SparsityError> {
    use safetensors::SafeTensors;
    let heads = (program.options.sparsity.as_ref())
        .and_then(|s| s.heads.as_ref())
        .ok_or_else(|| {
            SparsityError::Options(
                "--head-predictor: the plan has dense attention (compile with --sparsity heads)"
                    .into(),
            )
        })?;
    let bad = |message: String| SparsityError::Predictor {
        origin: format!("`{}`", path.display()),
        message,
    };
    let bytes = std::fs::read(path).map_err(|source| SparsityError::Io {
        what: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(HEAD_PREDICTOR_FORMAT) {
        return Err(bad(format!(
            "no metadata `format` = `{HEAD_PREDICTOR_FORMAT}`: not a head predictor file \
             (write one with `comet calibrate MODEL --heads --out FILE`)"
        )));
    }
    let model = &program.info.name;
    if meta.get("model") != Some(model) {
        return Err(bad(format!(
            "it is for model `{}`, the plan is `{model}`",
            meta.get("model").map_or("?", String::as_str)
        )));
    }
    let file = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = Weights::new();
    for (k, a) in heads.attentions.iter().enumerate() {
        let shapes = [
            vec![a.d as usize, a.kv_heads as usize],
            vec![a.kv_heads as usize],
        ];
        for (name, shape) in head_predictor_weights(k).into_iter().zip(shapes) {
            let view = file.tensor(&name).map_err(|_| {
                bad(format!(
                    "no tensor `{name}`: the plan has {} head-sparse attentions",
                    heads.attentions.len()
                ))
            })?;
            if view.shape() != shape.as_slice() || view.dtype() != safetensors::Dtype::F64 {
                return Err(bad(format!(
                    "`{name}` is {:?} {:?}, the plan needs F64 {shape:?}",
                    view.dtype(),
                    view.shape()
                )));
            }
            let values: Vec<f64> = (view.data().chunks_exact(8))
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect();
            let arr = ArrayD::from_shape_vec(IxDyn(&shape), values).expect("checked shape");
            out.insert(name, arr);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's predictor weights and thresholds never appear in Debug output.
    #[test]
    fn debug_shows_shapes_only() {
        let l = HeadLayer {
            w: Array2::from_elem((3, 2), 0.123_456_7),
            bias: Array1::from_elem(2, 0.765_432_1),
            threshold: 0.246_813_5,
            tau: 0.975_318_6,
        };
        let text = format!("{:?}", HeadPredictor { layers: vec![l] });
        for secret in ["123456", "765432", "246813", "975318"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("(3, 2)"), "{text}");
    }

    /// The ridge fit recovers an exact linear relation.
    #[test]
    fn ridge_recovers_a_linear_map() {
        let x = Array2::from_shape_fn((40, 3), |(i, j)| ((i * 7 + j * 3) % 11) as f64 - 5.0);
        let w = Array2::from_shape_fn((3, 2), |(i, j)| i as f64 - j as f64 * 0.5);
        let y = x.dot(&w) + 0.25;
        let (w2, b2) = ridge(&x, &y, 1e-12);
        for (a, b) in w.iter().zip(&w2) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        for b in &b2 {
            assert!((b - 0.25).abs() < 1e-6, "{b}");
        }
    }
}
