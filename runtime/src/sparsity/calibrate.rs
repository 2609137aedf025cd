//! Calibration and masked evaluation on the f64 interpreter.
//!
//! - [`TokenModel`]: a program with one token input `[seq]` and logits `[seq, vocab]`, run
//!   one call at a time through [`crate::plain::eval_with_hook`] with a KV cache.
//! - [`capture`]: runs sample sequences densely and keeps every FFN's input `x` and
//!   `hidden` (the down projection's operand), one row per token.
//! - [`Calibration`] / [`calibrate`]: per FFN, the activity threshold `τ` and the block
//!   threshold `δ` that reaches a target block recall on the captured tokens, with the
//!   per-layer report (definitions in [`super`]).
//! - [`MaskMode`] and [`EvalSet`]: the model run with inactive blocks zeroed (predicted,
//!   oracle or all), compared with the dense run: greedy tokens before the first
//!   divergence and max |logits error|.
//!
//! The hook (`FfnHook`, a [`Hook`]) observes each FFN's `input` node (it keeps `x`) and
//! replaces the value of its `hidden` node by the masked one; nothing else changes.

use super::{Activity, Predictor, SparsityError, Weights, block_max, n_blocks};
use crate::plain::{Cache, Hook, eval_with_hook};
use comet_ir::ffn::{Ffn, PredictorInput, find_ffns, predictor_input};
use comet_ir::{DimEnv, Elem, Node, NodeId, Op, Program};
use ndarray::{Array2, ArrayD, ArrayViewD, Axis, Ix2, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use std::collections::HashMap;

/// A decoder with one token input and one logits output, and its FFNs.
pub struct TokenModel<'a> {
    /// The semantic-stage program.
    pub program: &'a Program,
    /// Its weights.
    pub weights: &'a Weights,
    /// Its FFNs ([`find_ffns`] order).
    pub ffns: Vec<Ffn>,
    /// Token ids must be below this (rows of the token table).
    pub vocab: usize,
    /// Positions available (`past + seq` at most), if the model has a position table.
    pub max_len: Option<usize>,
    /// Per FFN: the attention input of its layer
    /// ([`PredictorInput::Attention`]), when the layer is pre-norm.
    pub attention_inputs: Vec<Option<NodeId>>,
    input: String,
    output: String,
}

impl<'a> TokenModel<'a> {
    /// Checks the program's interface: exactly one input, token ids `[seq]`; an output
    /// `[seq, vocab]`; at least one FFN.
    pub fn new(program: &'a Program, weights: &'a Weights) -> Result<Self, SparsityError> {
        let name = &program.info.name;
        let bad = |why: String| {
            SparsityError::Model(format!(
                "model `{name}`: {why}; calibration needs a decoder with one input of token \
                 ids [seq] and logits [seq, vocab] out"
            ))
        };
        let [input] = program.info.inputs.as_slice() else {
            return Err(bad(format!("it has {} inputs", program.info.inputs.len())));
        };
        if input.elem != Elem::Index || input.shape.len() != 1 {
            return Err(bad(format!(
                "input `{}` is not token ids [seq]",
                input.name
            )));
        }
        let g = &program.graph;
        let input_node = g
            .ids()
            .find(|&id| matches!(&g.node(id).op, Op::Input { name, .. } if *name == input.name))
            .ok_or_else(|| bad(format!("input `{}` is never read", input.name)))?;
        let mut vocab = None;
        let mut max_len = None;
        for id in g.ids() {
            if !matches!(g.node(id).op, Op::Embed) {
                continue;
            }
            let ops = g.operands(id);
            let rows = g.node(ops[1]).ty.shape[0].as_const().unwrap_or(0) as usize;
            if ops[0] == input_node {
                vocab = Some(vocab.map_or(rows, |v: usize| v.min(rows)));
            } else if let Op::Positions { offset } = g.node(ops[0]).op {
                let avail = rows.saturating_sub(offset.max(0) as usize);
                max_len = Some(max_len.map_or(avail, |m: usize| m.min(avail)));
            }
        }
        let vocab = vocab.ok_or_else(|| bad(format!("no embedding reads `{}`", input.name)))?;
        let output = g
            .ids()
            .find_map(|id| match &g.node(id).op {
                Op::Output { name, .. } => {
                    let shape = &g.node(id).ty.shape;
                    (shape.len() == 2 && shape[1].as_const().is_some()).then(|| name.clone())
                }
                _ => None,
            })
            .ok_or_else(|| bad("no output has shape [seq, vocab]".into()))?;
        let ffns = find_ffns(program);
        if ffns.is_empty() {
            return Err(SparsityError::Model(format!(
                "model `{name}` has no FFN (relu/gelu/silu between two weight projections); \
                 compile it only to the semantic stage (lower), not through expand"
            )));
        }
        let attention_inputs = (ffns.iter())
            .map(|f| predictor_input(program, f, PredictorInput::Attention).ok())
            .collect();
        Ok(TokenModel {
            program,
            weights,
            attention_inputs,
            ffns,
            vocab,
            max_len,
            input: input.name.clone(),
            output,
        })
    }

    /// Checks that every FFN has the input `predictor` reads.
    pub fn check_predictor(&self, predictor: &Predictor) -> Result<(), SparsityError> {
        if predictor.input == PredictorInput::Attention {
            for f in &self.ffns {
                predictor_input(self.program, f, PredictorInput::Attention)
                    .map_err(SparsityError::Model)?;
            }
        }
        Ok(())
    }

    /// Checks that `ids` is a non-empty sequence of valid ids that fits the positions.
    pub fn check_ids(&self, ids: &[u32], what: &str) -> Result<(), SparsityError> {
        if ids.is_empty() {
            return Err(SparsityError::Samples(format!("{what} is empty")));
        }
        if let Some((i, id)) = ids
            .iter()
            .enumerate()
            .find(|(_, id)| **id as usize >= self.vocab)
        {
            return Err(SparsityError::Samples(format!(
                "{what}, token {i}: id {id} is outside the vocabulary [0, {})",
                self.vocab
            )));
        }
        if let Some(m) = self.max_len
            && ids.len() > m
        {
            return Err(SparsityError::Samples(format!(
                "{what} has {} tokens, the model has positions for {m}",
                ids.len()
            )));
        }
        Ok(())
    }

    /// One call: `ids` at positions `past ..`, the logits `[seq, vocab]`.
    pub fn call(
        &self,
        ids: &[u32],
        past: usize,
        cache: &mut Cache,
        hook: &mut dyn Hook,
        context: &dyn Fn() -> String,
    ) -> Result<Array2<f64>, SparsityError> {
        let tokens = ArrayD::from_shape_vec(
            IxDyn(&[ids.len()]),
            ids.iter().map(|&i| f64::from(i)).collect(),
        )
        .expect("a vector");
        let inputs = HashMap::from([(self.input.clone(), tokens)]);
        let env = DimEnv {
            seq: ids.len() as u64,
            past: past as u64,
        };
        let mut out = eval_with_hook(self.program, &inputs, self.weights, env, cache, hook)
            .map_err(|e| SparsityError::Eval {
                context: context(),
                error: Box::new(e),
            })?;
        let logits = out.remove(&self.output).expect("the checked output");
        Ok(logits
            .into_dimensionality::<Ix2>()
            .expect("a [seq, vocab] output"))
    }
}

/// Every FFN's input `x` (`[tokens, d]`), its layer's attention input (`[tokens, d]`,
/// when the layer is pre-norm) and `hidden` (`[tokens, ff]`), tokens of all samples
/// stacked. `Debug` shows the shapes only.
#[derive(Clone)]
pub struct Captured {
    /// Per FFN.
    pub x: Vec<Array2<f64>>,
    /// Per FFN: the attention input ([`PredictorInput::Attention`]), if the layer has one.
    pub attention: Vec<Option<Array2<f64>>>,
    /// Per FFN.
    pub hidden: Vec<Array2<f64>>,
}

impl std::fmt::Debug for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shapes = |v: &[Array2<f64>]| v.iter().map(|a| a.dim()).collect::<Vec<_>>();
        let attention: Vec<_> = self
            .attention
            .iter()
            .map(|a| a.as_ref().map(|a| a.dim()))
            .collect();
        f.debug_struct("Captured")
            .field("x", &shapes(&self.x))
            .field("attention", &attention)
            .field("hidden", &shapes(&self.hidden))
            .finish()
    }
}

impl Captured {
    /// Tokens captured.
    pub fn tokens(&self) -> usize {
        self.x.first().map_or(0, |x| x.nrows())
    }

    /// The rows FFN `k`'s predictor reads for `input`.
    ///
    /// # Errors
    /// If the layer has no attention input.
    pub fn predictor_input(
        &self,
        k: usize,
        input: PredictorInput,
    ) -> Result<&Array2<f64>, SparsityError> {
        match input {
            PredictorInput::Ffn => Ok(&self.x[k]),
            PredictorInput::Attention => self.attention[k].as_ref().ok_or_else(|| {
                SparsityError::Model(format!(
                    "FFN {k} has no attention input (its layer is not pre-norm)"
                ))
            }),
        }
    }
}

/// Which blocks a masked run keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskMode {
    /// All (the dense model).
    Dense,
    /// Those the predictor predicts active.
    Predicted,
    /// The truly active ones (`|hidden| > τ` somewhere in the block): no predictor error.
    Oracle,
    /// None: every FFN contributes only its down bias.
    AllOff,
}

/// Counts of a masked run, per FFN (tokens × blocks).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaskStats {
    /// Per FFN: (token, block) pairs seen.
    pub pairs: Vec<u64>,
    /// Per FFN: truly active pairs.
    pub active: Vec<u64>,
    /// Per FFN: pairs kept (not zeroed).
    pub kept: Vec<u64>,
    /// Per FFN: truly active pairs kept.
    pub hits: Vec<u64>,
}

impl MaskStats {
    fn new(n: usize) -> MaskStats {
        MaskStats {
            pairs: vec![0; n],
            active: vec![0; n],
            kept: vec![0; n],
            hits: vec![0; n],
        }
    }

    /// Fraction of truly active pairs kept, over all FFNs (1 when none is active).
    pub fn recall(&self) -> f64 {
        ratio(self.hits.iter().sum(), self.active.iter().sum(), 1.0)
    }

    /// Fraction of pairs zeroed, over all FFNs.
    pub fn skipped(&self) -> f64 {
        let pairs: u64 = self.pairs.iter().sum();
        1.0 - ratio(self.kept.iter().sum(), pairs, 1.0)
    }

    /// Fraction of pairs truly inactive, over all FFNs.
    pub fn true_sparsity(&self) -> f64 {
        let pairs: u64 = self.pairs.iter().sum();
        1.0 - ratio(self.active.iter().sum(), pairs, 1.0)
    }
}

fn ratio(a: u64, b: u64, if_empty: f64) -> f64 {
    if b == 0 {
        if_empty
    } else {
        a as f64 / b as f64
    }
}

/// The hook: keeps each FFN's `x`, masks its `hidden`, counts, captures.
struct FfnHook<'p> {
    inputs: HashMap<NodeId, Vec<usize>>,
    attention: HashMap<NodeId, Vec<usize>>,
    hidden: HashMap<NodeId, Vec<usize>>,
    block: usize,
    predictor: Option<&'p Predictor>,
    taus: Vec<f64>,
    mode: MaskMode,
    xs: Vec<Option<Array2<f64>>>,
    /// Per FFN, the attention input of the current call.
    axs: Vec<Option<Array2<f64>>>,
    /// Per FFN, the `x`, attention input and `hidden` of every call, when capturing.
    capture: Option<(Parts, Parts, Parts)>,
    stats: MaskStats,
}

/// Per FFN, row blocks to stack.
type Parts = Vec<Vec<Array2<f64>>>;

impl<'p> FfnHook<'p> {
    fn new(
        ffns: &[Ffn],
        attention_inputs: &[Option<NodeId>],
        block: usize,
        predictor: Option<&'p Predictor>,
        taus: Vec<f64>,
        mode: MaskMode,
    ) -> Self {
        let mut inputs: HashMap<NodeId, Vec<usize>> = HashMap::new();
        let mut hidden: HashMap<NodeId, Vec<usize>> = HashMap::new();
        let mut attention: HashMap<NodeId, Vec<usize>> = HashMap::new();
        for (k, f) in ffns.iter().enumerate() {
            inputs.entry(f.input).or_default().push(k);
            hidden.entry(f.hidden).or_default().push(k);
            if let Some(a) = attention_inputs.get(k).copied().flatten() {
                attention.entry(a).or_default().push(k);
            }
        }
        FfnHook {
            inputs,
            attention,
            hidden,
            block,
            predictor,
            taus,
            mode,
            xs: vec![None; ffns.len()],
            axs: vec![None; ffns.len()],
            capture: None,
            stats: MaskStats::new(ffns.len()),
        }
    }

    fn masked(&mut self, k: usize, h: Array2<f64>) -> Option<Array2<f64>> {
        let nb = n_blocks(h.ncols(), self.block);
        let mag = block_max(h.view(), self.block, f64::abs);
        let tau = self.taus.get(k).copied().unwrap_or(0.0);
        let truth = mag.mapv(|m| m > tau);
        let x = self.xs[k]
            .as_ref()
            .expect("an FFN's input comes before its hidden value");
        let predicted = self.predictor.map(|p| {
            let px = match p.input {
                PredictorInput::Ffn => x,
                PredictorInput::Attention => self.axs[k]
                    .as_ref()
                    .expect("checked: the layer has an attention input, computed before"),
            };
            p.predict(k, px.view())
        });
        let keep = match self.mode {
            MaskMode::Dense => Array2::from_elem(truth.dim(), true),
            MaskMode::Oracle => truth.clone(),
            MaskMode::AllOff => Array2::from_elem(truth.dim(), false),
            MaskMode::Predicted => predicted.clone().expect("a predictor for predicted masks"),
        };
        let s = &mut self.stats;
        s.pairs[k] += (h.nrows() * nb) as u64;
        s.active[k] += truth.iter().filter(|a| **a).count() as u64;
        s.kept[k] += keep.iter().filter(|a| **a).count() as u64;
        s.hits[k] += truth.iter().zip(&keep).filter(|(a, b)| **a && **b).count() as u64;
        if let Some((xs, axs, hs)) = &mut self.capture {
            xs[k].push(x.clone());
            if let Some(a) = &self.axs[k] {
                axs[k].push(a.clone());
            }
            hs[k].push(h.clone());
        }
        if self.mode == MaskMode::Dense {
            return None;
        }
        let mut h = h;
        for (mut row, keep) in h.rows_mut().into_iter().zip(keep.rows()) {
            for (j, v) in row.iter_mut().enumerate() {
                if !keep[j / self.block] {
                    *v = 0.0;
                }
            }
        }
        Some(h)
    }
}

/// `[.., n]` as `[rows, n]`.
fn rows_of(v: ArrayViewD<f64>) -> Array2<f64> {
    let n = *v.shape().last().unwrap_or(&1);
    let rows = v.len() / n.max(1);
    v.as_standard_layout()
        .into_owned()
        .into_shape_with_order((rows, n))
        .expect("same element count")
}

impl Hook for FfnHook<'_> {
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
        if let Some(ks) = self.attention.get(&id) {
            let x = rows_of(value.view());
            for &k in ks {
                self.axs[k] = Some(x.clone());
            }
        }
        let ks = self.hidden.get(&id)?.clone();
        let shape = value.shape().to_vec();
        let mut h = rows_of(value);
        let mut changed = false;
        for k in ks {
            if let Some(m) = self.masked(k, h.clone()) {
                h = m;
                changed = true;
            }
        }
        changed.then(|| h.into_shape_with_order(IxDyn(&shape)).expect("same shape"))
    }
}

/// The logits `[seq, vocab]` of `ids` (a new sequence, one call) with the FFN blocks
/// `mode` keeps (`predictor`'s thresholds for [`MaskMode::Predicted`], its `τ` for
/// [`MaskMode::Oracle`] and the counts), and the counts.
pub fn masked_logits(
    model: &TokenModel,
    ids: &[u32],
    predictor: Option<&Predictor>,
    mode: MaskMode,
) -> Result<(Array2<f64>, MaskStats), SparsityError> {
    model.check_ids(ids, "the sequence")?;
    if mode == MaskMode::Predicted && predictor.is_none() {
        return Err(SparsityError::Options(
            "a predicted mask needs a predictor".into(),
        ));
    }
    if let Some(p) = predictor {
        model.check_predictor(p)?;
    }
    let mut hook = EvalSet::hook(model, predictor, mode);
    let logits = model.call(ids, 0, &mut Cache::new(), &mut hook, &|| {
        "the masked run".to_string()
    })?;
    Ok((logits, hook.stats))
}

/// Runs each sample (a new sequence, one call) densely and keeps every FFN's `x` and
/// `hidden` for every token.
pub fn capture(model: &TokenModel, samples: &[Vec<u32>]) -> Result<Captured, SparsityError> {
    if samples.is_empty() {
        return Err(SparsityError::Samples("no calibration samples".into()));
    }
    for (i, s) in samples.iter().enumerate() {
        model.check_ids(s, &format!("calibration sample {i}"))?;
    }
    let n = model.ffns.len();
    let mut hook = FfnHook::new(
        &model.ffns,
        &model.attention_inputs,
        1,
        None,
        vec![],
        MaskMode::Dense,
    );
    hook.capture = Some((
        vec![Vec::new(); n],
        vec![Vec::new(); n],
        vec![Vec::new(); n],
    ));
    for (i, s) in samples.iter().enumerate() {
        let mut cache = Cache::new();
        model.call(s, 0, &mut cache, &mut hook, &|| {
            format!("calibration sample {i}")
        })?;
    }
    let (xs, axs, hs) = hook.capture.expect("set above");
    let stack = |parts: Vec<Array2<f64>>| {
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(Axis(0), &views).expect("rows of equal width")
    };
    Ok(Captured {
        x: xs.into_iter().map(stack).collect(),
        attention: (axs.into_iter())
            .map(|a| (!a.is_empty()).then(|| stack(a)))
            .collect(),
        hidden: hs.into_iter().map(stack).collect(),
    })
}

/// One FFN's calibration result on the sample tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerReport {
    /// FFN index.
    pub ffn: usize,
    /// `layer 3` (or the scope).
    pub label: String,
    /// Activity threshold `τ` on `|hidden|`.
    pub tau: f64,
    /// Block threshold `δ`.
    pub threshold: f64,
    /// Truly active (token, block) pairs predicted active / truly active pairs.
    pub recall: f64,
    /// Pairs predicted inactive / all pairs.
    pub predicted_block_sparsity: f64,
    /// Truly inactive pairs / all pairs.
    pub true_block_sparsity: f64,
    /// Inactive (token, neuron) pairs / all.
    pub true_neuron_sparsity: f64,
    /// Sample tokens.
    pub tokens: usize,
}

/// Scores and magnitudes of the captured tokens, to choose thresholds for any target
/// without running the model again.
pub struct Calibration {
    layers: Vec<LayerData>,
    labels: Vec<String>,
}

struct LayerData {
    /// `[tokens, blocks]` predictor scores.
    scores: Array2<f64>,
    /// `[tokens, blocks]` max |hidden| per block.
    block_mag: Array2<f64>,
    /// |hidden| of every (token, neuron), ascending.
    sorted_mag: Vec<f64>,
}

impl Calibration {
    /// Scores the captured tokens with `predictor` (its factors; thresholds are ignored).
    pub fn new(
        model: &TokenModel,
        predictor: &Predictor,
        captured: &Captured,
    ) -> Result<Calibration, SparsityError> {
        if captured.tokens() == 0 {
            return Err(SparsityError::Samples("no calibration tokens".into()));
        }
        model.check_predictor(predictor)?;
        let layers = (0..predictor.ffns.len())
            .map(|k| {
                let h = &captured.hidden[k];
                let mut sorted_mag: Vec<f64> = h.iter().map(|v| v.abs()).collect();
                sorted_mag.sort_by(f64::total_cmp);
                LayerData {
                    scores: predictor.block_scores(
                        k,
                        captured
                            .predictor_input(k, predictor.input)
                            .expect("checked above")
                            .view(),
                    ),
                    block_mag: block_max(h.view(), predictor.block, f64::abs),
                    sorted_mag,
                }
            })
            .collect();
        Ok(Calibration {
            layers,
            labels: model.ffns.iter().map(Ffn::label).collect(),
        })
    }

    /// `τ` of FFN `k` for an activity definition.
    pub fn tau(&self, k: usize, activity: Activity) -> f64 {
        match activity {
            Activity::Nonzero => 0.0,
            Activity::Magnitude(s) => {
                let m = &self.layers[k].sorted_mag;
                let i = ((s * m.len() as f64).ceil() as usize).clamp(1, m.len());
                if s <= 0.0 { 0.0 } else { m[i - 1] }
            }
        }
    }

    /// For each FFN: `τ` for `activity`, and the largest `δ` whose block recall on the
    /// sample tokens is at least `target_recall` (in (0, 1]).
    pub fn solve(
        &self,
        activity: Activity,
        target_recall: f64,
    ) -> Result<Vec<LayerReport>, SparsityError> {
        check_recall(target_recall)?;
        if let Activity::Magnitude(s) = activity
            && !(0.0..1.0).contains(&s)
        {
            return Err(SparsityError::Options(format!(
                "neuron sparsity must be in [0, 1), not {s}"
            )));
        }
        Ok((0..self.layers.len())
            .map(|k| {
                let tau = self.tau(k, activity);
                let l = &self.layers[k];
                let mut active: Vec<f64> = (l.scores.iter().zip(&l.block_mag))
                    .filter(|(_, m)| **m > tau)
                    .map(|(s, _)| *s)
                    .collect();
                active.sort_by(f64::total_cmp);
                let threshold = match active.len() {
                    // nothing to recall: skip every block
                    0 => l.scores.iter().copied().fold(f64::NEG_INFINITY, f64::max) + 1.0,
                    n => {
                        let keep = ((target_recall * n as f64) - 1e-9).ceil() as usize;
                        active[n - keep.clamp(1, n)]
                    }
                };
                self.report(k, tau, threshold)
            })
            .collect())
    }

    /// The figures of FFN `k` at thresholds `τ`, `δ`.
    pub fn report(&self, k: usize, tau: f64, threshold: f64) -> LayerReport {
        let l = &self.layers[k];
        let pairs = l.scores.len() as u64;
        let (mut active, mut kept, mut hits) = (0u64, 0u64, 0u64);
        for (s, m) in l.scores.iter().zip(&l.block_mag) {
            let (a, p) = (*m > tau, *s >= threshold);
            active += a as u64;
            kept += p as u64;
            hits += (a && p) as u64;
        }
        let inactive_neurons = l.sorted_mag.partition_point(|v| *v <= tau);
        LayerReport {
            ffn: k,
            label: self.labels[k].clone(),
            tau,
            threshold,
            recall: ratio(hits, active, 1.0),
            predicted_block_sparsity: 1.0 - ratio(kept, pairs, 1.0),
            true_block_sparsity: 1.0 - ratio(active, pairs, 1.0),
            true_neuron_sparsity: inactive_neurons as f64 / l.sorted_mag.len() as f64,
            tokens: l.scores.nrows(),
        }
    }

    /// Sets `predictor`'s thresholds from `reports` (of [`Calibration::solve`]).
    pub fn apply(
        predictor: &mut Predictor,
        reports: &[LayerReport],
        activity: Activity,
        target_recall: f64,
    ) {
        for (p, r) in predictor.ffns.iter_mut().zip(reports) {
            p.tau = r.tau;
            p.threshold = r.threshold;
        }
        predictor.activity = activity;
        predictor.target_recall = target_recall;
    }
}

fn check_recall(t: f64) -> Result<(), SparsityError> {
    if t > 0.0 && t <= 1.0 {
        Ok(())
    } else {
        Err(SparsityError::Options(format!(
            "target recall must be in (0, 1], not {t}"
        )))
    }
}

/// Calibrates `predictor` on `captured` for `activity` and `target_recall`: sets every
/// FFN's `τ` and `δ` and returns the per-layer report.
pub fn calibrate(
    model: &TokenModel,
    predictor: &mut Predictor,
    captured: &Captured,
    activity: Activity,
    target_recall: f64,
) -> Result<Vec<LayerReport>, SparsityError> {
    let c = Calibration::new(model, predictor, captured)?;
    let reports = c.solve(activity, target_recall)?;
    Calibration::apply(predictor, &reports, activity, target_recall);
    Ok(reports)
}

/// `n` sequences of `len` uniformly random ids below `vocab` (seeded).
pub fn random_sequences(vocab: usize, n: usize, len: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            (0..len)
                .map(|_| (rng.next_u64() % vocab as u64) as u32)
                .collect()
        })
        .collect()
}

/// `n` sequences of `len` tokens written by the model itself: a uniformly random first
/// token, then tokens sampled from softmax(logits) (temperature 1), seeded.
pub fn sampled_sequences(
    model: &TokenModel,
    n: usize,
    len: usize,
    seed: u64,
) -> Result<Vec<Vec<u32>>, SparsityError> {
    if len == 0 || n == 0 {
        return Err(SparsityError::Options(
            "sample count and length must be at least 1".into(),
        ));
    }
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut hook = FfnHook::new(
        &model.ffns,
        &model.attention_inputs,
        1,
        None,
        vec![],
        MaskMode::Dense,
    );
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut seq = vec![(rng.next_u64() % model.vocab as u64) as u32];
        model.check_ids(&seq, &format!("sample {i}"))?;
        let mut cache = Cache::new();
        while seq.len() < len {
            let past = seq.len() - 1;
            let last = [*seq.last().expect("non-empty")];
            let logits = model.call(&last, past, &mut cache, &mut hook, &|| {
                format!("generating sample {i}")
            })?;
            let row = logits.row(0);
            let top = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = row.iter().map(|v| (v - top).exp()).collect();
            let total: f64 = w.iter().sum();
            let mut u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
            let mut next = w.len() - 1;
            for (j, wj) in w.iter().enumerate() {
                if u < *wj {
                    next = j;
                    break;
                }
                u -= wj;
            }
            seq.push(next as u32);
            model.check_ids(&seq, &format!("sample {i}"))?;
        }
        out.push(seq);
    }
    Ok(out)
}

fn argmax(row: ndarray::ArrayView1<f64>) -> u32 {
    (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b }) as u32
}

/// Prompts and the dense model's behaviour on them, to compare masked runs with.
pub struct EvalSet {
    /// The prompts.
    pub prompts: Vec<Vec<u32>>,
    /// Greedy tokens generated per prompt.
    pub steps: usize,
    /// The dense model's greedy continuations.
    pub dense_tokens: Vec<Vec<u32>>,
    /// The dense logits at the positions that choose those tokens (`[steps, vocab]`,
    /// prompt followed by the dense continuation, one call).
    pub dense_logits: Vec<Array2<f64>>,
}

/// How a masked run compares with the dense one on an [`EvalSet`].
#[derive(Debug, Clone)]
pub struct Agreement {
    /// Per prompt: greedy tokens equal to the dense ones before the first divergence.
    pub matched: Vec<usize>,
    /// Tokens generated per prompt.
    pub steps: usize,
    /// max |logits − dense logits| over every prompt and position, fed the same tokens
    /// (the prompt and the dense continuation).
    pub max_logits_error: f64,
    /// max |dense logits| over the same positions (the scale of that error).
    pub max_logits: f64,
    /// Counts of the teacher-forced runs (recall, skipped blocks on these tokens).
    pub stats: MaskStats,
}

impl Agreement {
    /// Σ matched.
    pub fn total_matched(&self) -> usize {
        self.matched.iter().sum()
    }
}

impl EvalSet {
    /// Runs the dense model on every prompt: greedy continuation of `steps` tokens and the
    /// logits of the prompt followed by it.
    pub fn new(
        model: &TokenModel,
        prompts: Vec<Vec<u32>>,
        steps: usize,
    ) -> Result<EvalSet, SparsityError> {
        if prompts.is_empty() || steps == 0 {
            return Err(SparsityError::Options(
                "evaluation needs at least one prompt and one step".into(),
            ));
        }
        for (i, p) in prompts.iter().enumerate() {
            model.check_ids(p, &format!("evaluation prompt {i}"))?;
            if let Some(m) = model.max_len
                && p.len() + steps > m
            {
                return Err(SparsityError::Samples(format!(
                    "evaluation prompt {i} has {} tokens: with {steps} generated the model's \
                     {m} positions do not suffice",
                    p.len()
                )));
            }
        }
        let mut set = EvalSet {
            prompts,
            steps,
            dense_tokens: vec![],
            dense_logits: vec![],
        };
        for i in 0..set.prompts.len() {
            let (tokens, _) = set.greedy(model, i, None, MaskMode::Dense)?;
            let (logits, _) = set.forced(model, i, &tokens, None, MaskMode::Dense)?;
            set.dense_tokens.push(tokens);
            set.dense_logits.push(logits);
        }
        Ok(set)
    }

    fn hook<'p>(
        model: &TokenModel,
        predictor: Option<&'p Predictor>,
        mode: MaskMode,
    ) -> FfnHook<'p> {
        let block = predictor.map_or(1, |p| p.block);
        let taus = predictor.map_or(vec![], |p| p.ffns.iter().map(|f| f.tau).collect());
        FfnHook::new(
            &model.ffns,
            &model.attention_inputs,
            block,
            predictor,
            taus,
            mode,
        )
    }

    /// Free-running greedy decoding of prompt `i` under `mode`.
    fn greedy(
        &self,
        model: &TokenModel,
        i: usize,
        predictor: Option<&Predictor>,
        mode: MaskMode,
    ) -> Result<(Vec<u32>, MaskStats), SparsityError> {
        let mut hook = Self::hook(model, predictor, mode);
        let prompt = &self.prompts[i];
        let mut cache = Cache::new();
        let ctx = || format!("evaluation prompt {i}");
        let logits = model.call(prompt, 0, &mut cache, &mut hook, &ctx)?;
        let mut out = vec![argmax(logits.row(logits.nrows() - 1))];
        while out.len() < self.steps {
            let past = prompt.len() + out.len() - 1;
            let last = [*out.last().expect("non-empty")];
            let logits = model.call(&last, past, &mut cache, &mut hook, &ctx)?;
            out.push(argmax(logits.row(0)));
        }
        Ok((out, hook.stats))
    }

    /// Prompt `i` followed by `continuation[.. steps − 1]` in one call: the logits rows
    /// that choose each continuation token.
    fn forced(
        &self,
        model: &TokenModel,
        i: usize,
        continuation: &[u32],
        predictor: Option<&Predictor>,
        mode: MaskMode,
    ) -> Result<(Array2<f64>, MaskStats), SparsityError> {
        let mut hook = Self::hook(model, predictor, mode);
        let prompt = &self.prompts[i];
        let mut ids = prompt.clone();
        ids.extend_from_slice(&continuation[..self.steps - 1]);
        let logits = model.call(&ids, 0, &mut Cache::new(), &mut hook, &|| {
            format!("evaluation prompt {i}")
        })?;
        let rows = logits.slice(ndarray::s![prompt.len() - 1.., ..]).to_owned();
        Ok((rows, hook.stats))
    }

    /// Runs every prompt under `mode` (with `predictor`'s thresholds for
    /// [`MaskMode::Predicted`] and its `τ` for [`MaskMode::Oracle`] and the counts).
    pub fn compare(
        &self,
        model: &TokenModel,
        predictor: Option<&Predictor>,
        mode: MaskMode,
    ) -> Result<Agreement, SparsityError> {
        if mode == MaskMode::Predicted && predictor.is_none() {
            return Err(SparsityError::Options(
                "a predicted mask needs a predictor".into(),
            ));
        }
        if let Some(p) = predictor {
            model.check_predictor(p)?;
        }
        let mut matched = Vec::new();
        let mut max_err: f64 = 0.0;
        let mut max_logits: f64 = 0.0;
        let mut stats = MaskStats::new(model.ffns.len());
        for i in 0..self.prompts.len() {
            let (tokens, _) = self.greedy(model, i, predictor, mode)?;
            let same = (tokens.iter().zip(&self.dense_tokens[i]))
                .take_while(|(a, b)| a == b)
                .count();
            matched.push(same);
            let (logits, s) = self.forced(model, i, &self.dense_tokens[i], predictor, mode)?;
            let dense = &self.dense_logits[i];
            for (a, b) in logits.iter().zip(dense) {
                max_err = max_err.max((a - b).abs());
                max_logits = max_logits.max(b.abs());
            }
            for k in 0..stats.pairs.len() {
                stats.pairs[k] += s.pairs[k];
                stats.active[k] += s.active[k];
                stats.kept[k] += s.kept[k];
                stats.hits[k] += s.hits[k];
            }
        }
        Ok(Agreement {
            matched,
            steps: self.steps,
            max_logits_error: max_err,
            max_logits,
            stats,
        })
    }
}
