//! Activation sparsity in the clear: predictors of active FFN neuron blocks, their
//! calibration on sample inputs, and the f64 model run with the predicted blocks only.
//!
//! These are the plaintext foundations of Comet's sparse FFN (docs: COMET.md §1–2); the
//! compiler pass `sparsify` and the two-party protocol build on them.
//!
//! # Definitions
//!
//! An FFN ([`comet_ir::ffn`]) computes `hidden = act(x·W_act + b_act) [⊙ (x·W_mul + b_mul)]`
//! (`[tokens, ff]`) and then `hidden · W_down`. Its `ff` neurons are cut into blocks of `B`
//! consecutive neurons, `⌈ff / B⌉` of them (the last one shorter when `B` does not divide
//! `ff`: glassllm's 341 = 21·16 + 5). All figures are per token.
//!
//! - **Active neuron** ([`Activity`]): `|hidden_j| > τ`. With [`Activity::Nonzero`],
//!   `τ = 0`: for a ReLU FFN exactly the neurons whose pre-activation is positive (the
//!   others contribute exactly 0). With [`Activity::Magnitude`]`(s)`, for SiLU/GeLU FFNs
//!   whose outputs are never exactly 0, `τ` is the `s`-quantile of `|hidden|` of that
//!   layer over all sample tokens and neurons, so a fraction `s` of the neurons is
//!   inactive ("magnitude sparsity"; for a gated FFN `hidden` is the product
//!   `silu(x·W1) ⊙ (x·W3)`, so both factors count).
//! - **Active block**: a block with at least one active neuron.
//! - **Predictor** ([`Predictor`], one [`FfnPredictor`] per FFN): rank-`r` factors `P1`
//!   (`[d, r]`) and `P2` (`[r, ff]`) with `x·P1·P2 ≈ x·W_act`, plus `b_act` (zeros when the
//!   FFN has none): `z = x·P1·P2 + b` approximates the pre-activation under the
//!   activation. Derived without training ([`Predictor::from_weights`]) from the rank-`r`
//!   SVD `W_act ≈ U_r·S_r·V_rᵀ` ([`svd`]): `P1 = U_r·S_r`, `P2 = V_rᵀ`. (A trained
//!   predictor of the same form loads from a file: [`Predictor::load`].)
//! - **Block score** ([`Score`]): [`Score::Max`] = `max_{j∈block} z_j` (a ReLU neuron fires
//!   when its pre-activation is positive), [`Score::MaxAbs`] = `max_{j∈block} |z_j|`.
//! - **Predicted active**: score `≥ δ` (the comparison a DReLU of `score − δ` computes).
//!   `δ` is per FFN, chosen by [`calibrate()`] as the largest value whose **block recall**
//!   (true active (token, block) pairs that are predicted active, over all true active
//!   pairs of the sample) is at least the target `T`.
//! - **Predicted block sparsity**: the fraction of (token, block) pairs predicted inactive
//!   (skipped). **True block sparsity**: the fraction of truly inactive pairs. **True
//!   neuron sparsity**: the fraction of inactive (token, neuron) pairs.
//! - **Masked evaluation** ([`calibrate::MaskMode`]): the model runs with `hidden` zeroed
//!   on every block predicted inactive, token by token, exactly what the sparse protocol
//!   computes (up/gate columns, activation and down rows of the active blocks only).
//! - **Predictor file**: safetensors, one `p1`, `p2`, `bias`, `threshold`, `tau` per FFN
//!   plus metadata ([`mod@file`]); loading checks it against the model.
//! - **Predictor input** ([`PredictorInput`]): the FFN's own input `x` (after the pre-FFN
//!   norm), the value the SVD factors approximate `x·W_act` for; or the layer's input after
//!   the pre-attention norm (what attention reads), for a predictor trained by least
//!   squares on captured activations ([`train`]), which runs beside attention in two
//!   parties (0 added rounds).

pub mod calibrate;
pub mod file;
pub mod heads;
pub mod plan;
pub mod svd;
pub mod synthetic;
pub mod synthetic_heads;
#[cfg(test)]
mod tests;
pub mod train;

use crate::plain::PlainError;
use comet_ir::ffn::{Ffn, PredictorInput};
use comet_ir::{Program, UnaryFn};
use ndarray::{Array1, Array2, ArrayD, ArrayView2, Axis, Ix2};
use std::collections::HashMap;
use std::path::PathBuf;

pub use calibrate::{
    Calibration, Captured, LayerReport, MaskMode, MaskStats, TokenModel, calibrate, capture,
};
pub use file::PREDICTOR_FORMAT;

/// Why a sparsity tool failed.
#[derive(Debug, thiserror::Error)]
pub enum SparsityError {
    /// The model does not have what the tool needs (no FFN, no token input, …).
    #[error("{0}")]
    Model(String),
    /// An option value is out of range.
    #[error("{0}")]
    Options(String),
    /// The calibration or evaluation inputs do not fit the model.
    #[error("{0}")]
    Samples(String),
    /// A predictor file does not fit the model, or is not a predictor file.
    #[error("predictor file {origin}: {message}")]
    Predictor {
        /// Where it came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The f64 interpreter failed.
    #[error("{context}: {error}")]
    Eval {
        /// Which call.
        context: String,
        /// The interpreter's error.
        error: Box<PlainError>,
    },
    /// A file could not be read or written.
    #[error("cannot {what} `{path}`: {source}")]
    Io {
        /// `read` or `write`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Weights by qualified name, as [`crate::weights::load`] returns them.
pub type Weights = HashMap<String, ArrayD<f64>>;

/// When a neuron counts as active (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activity {
    /// `hidden ≠ 0`: for ReLU FFNs, a positive pre-activation.
    Nonzero,
    /// `|hidden| > τ`, `τ` the given quantile (neuron sparsity, in [0, 1)) of `|hidden|`.
    Magnitude(f64),
}

impl Activity {
    /// The natural definition for an activation: exact zeros for ReLU, magnitude
    /// sparsity `s` otherwise.
    pub fn for_activation(func: UnaryFn, s: f64) -> Activity {
        match func {
            UnaryFn::Relu => Activity::Nonzero,
            _ => Activity::Magnitude(s),
        }
    }

    /// The text form in files and reports: `nonzero`, `magnitude:0.9`.
    pub fn to_text(self) -> String {
        match self {
            Activity::Nonzero => "nonzero".into(),
            Activity::Magnitude(s) => format!("magnitude:{s}"),
        }
    }

    /// Reads [`Activity::to_text`].
    pub fn from_text(text: &str) -> Option<Activity> {
        match text.strip_prefix("magnitude:") {
            None if text == "nonzero" => Some(Activity::Nonzero),
            None => None,
            Some(s) => s
                .parse::<f64>()
                .ok()
                .filter(|s| (0.0..1.0).contains(s))
                .map(Activity::Magnitude),
        }
    }
}

/// How a block's score summarises its neurons' approximate pre-activations `z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    /// `max z`.
    Max,
    /// `max |z|`.
    MaxAbs,
    /// `Σ z` over the block: linear in `x`, so on secret shares the score is two
    /// fixed-weight products (`x·P1`, then `·P2·G` with `G` summing each block's columns)
    /// and the block needs one comparison, where `max` needs `B − 1` more (as many as the
    /// FFN's own activation). The score the two-party protocol computes.
    Sum,
}

impl Score {
    /// `max` or `max_abs`.
    pub fn name(self) -> &'static str {
        match self {
            Score::Max => "max",
            Score::MaxAbs => "max_abs",
            Score::Sum => "sum",
        }
    }

    /// Reads [`Score::name`] (also `max-abs`).
    pub fn from_name(name: &str) -> Option<Score> {
        match name {
            "max" => Some(Score::Max),
            "max_abs" | "max-abs" => Some(Score::MaxAbs),
            "sum" => Some(Score::Sum),
            _ => None,
        }
    }

    /// The default for an activation: `max` for ReLU (a neuron fires iff its
    /// pre-activation is positive), and also for SiLU and GeLU, whose magnitude is large
    /// mostly for positive inputs. Measured on glassllm (gated SiLU, blocks of 16, rank
    /// 32, recall 0.95): at 90% magnitude sparsity `max` skips 10.9% of the blocks on the
    /// samples, `max_abs` 6.1%; at 50% (almost every block active) both skip about 5%.
    pub fn for_activation(_func: UnaryFn) -> Score {
        Score::Max
    }
}

/// The predictor of one FFN. See the module docs. Its factors are the server's secret
/// (low-rank factors of its weights): `Debug` shows their shapes only.
#[derive(Clone, PartialEq)]
pub struct FfnPredictor {
    /// `[d, r]`.
    pub p1: Array2<f64>,
    /// `[r, ff]`.
    pub p2: Array2<f64>,
    /// `[ff]`: added to `x·P1·P2` (the FFN's `b_act`, or zeros).
    pub bias: Array1<f64>,
    /// `δ`: a block is predicted active when its score is `≥ δ`.
    pub threshold: f64,
    /// `τ`: the activity threshold on `|hidden|` the threshold was calibrated for.
    pub tau: f64,
}

impl std::fmt::Debug for FfnPredictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FfnPredictor")
            .field("p1", &self.p1.shape())
            .field("p2", &self.p2.shape())
            .field("bias", &self.bias.shape())
            .finish_non_exhaustive()
    }
}

impl FfnPredictor {
    /// The approximate pre-activations `x·P1·P2 + b` (`[tokens, ff]`) of `x` (`[tokens, d]`).
    pub fn approx(&self, x: ArrayView2<f64>) -> Array2<f64> {
        x.dot(&self.p1).dot(&self.p2) + self.bias.view().insert_axis(Axis(0))
    }
}

/// Predictors for every FFN of a model, in [`comet_ir::ffn::find_ffns`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictor {
    /// The model's name ([`comet_ir::ModelInfo::name`]).
    pub model: String,
    /// Neurons per block `B`.
    pub block: usize,
    /// Rank `r`.
    pub rank: usize,
    /// How blocks are scored.
    pub score: Score,
    /// The recall the thresholds were calibrated for (NaN before calibration).
    pub target_recall: f64,
    /// The activity definition the thresholds were calibrated for.
    pub activity: Activity,
    /// What the predictors read ([`comet_ir::ffn::predictor_input`]).
    pub input: PredictorInput,
    /// One per FFN.
    pub ffns: Vec<FfnPredictor>,
}

/// Options of [`Predictor::from_weights`].
#[derive(Debug, Clone, Copy)]
pub struct PredictorOptions {
    /// Neurons per block.
    pub block: usize,
    /// Rank of the factors.
    pub rank: usize,
    /// Block score.
    pub score: Score,
    /// The randomized SVD's settings.
    pub svd: svd::SvdOptions,
}

impl Predictor {
    /// Derives a predictor for every FFN from its `W_act` (rank-`r` SVD) and `b_act`,
    /// uncalibrated (thresholds `-∞`: every block predicted active; see [`calibrate()`]).
    pub fn from_weights(
        program: &Program,
        ffns: &[Ffn],
        weights: &Weights,
        opts: &PredictorOptions,
    ) -> Result<Predictor, SparsityError> {
        check_structure(ffns, opts.block, opts.rank)?;
        let ffns = ffns
            .iter()
            .map(|f| {
                let w = matrix(weights, &f.weights.act, (f.d as usize, f.ff as usize))?;
                let s = svd::truncated_svd(w.view(), opts.rank, &opts.svd);
                let p1 = &s.u * &s.s.view().insert_axis(Axis(0));
                let bias = bias(weights, f)?;
                Ok(FfnPredictor {
                    p1,
                    p2: s.vt,
                    bias,
                    threshold: f64::NEG_INFINITY,
                    tau: 0.0,
                })
            })
            .collect::<Result<Vec<_>, SparsityError>>()?;
        Ok(Predictor {
            model: program.info.name.clone(),
            block: opts.block,
            rank: opts.rank,
            score: opts.score,
            target_recall: f64::NAN,
            activity: Activity::Nonzero,
            input: PredictorInput::Ffn,
            ffns,
        })
    }

    /// Block scores `[tokens, ⌈ff/B⌉]` of FFN `k` for its predictor input `x`
    /// (`[tokens, d]`: the FFN's input, or the attention input, by [`Predictor::input`]).
    pub fn block_scores(&self, k: usize, x: ArrayView2<f64>) -> Array2<f64> {
        let z = self.ffns[k].approx(x);
        match self.score {
            Score::Max => block_max(z.view(), self.block, |v| v),
            Score::MaxAbs => block_max(z.view(), self.block, f64::abs),
            Score::Sum => block_sum(z.view(), self.block),
        }
    }

    /// Which blocks of FFN `k` are predicted active for `x` (`[tokens, d]`).
    pub fn predict(&self, k: usize, x: ArrayView2<f64>) -> Array2<bool> {
        let delta = self.ffns[k].threshold;
        self.block_scores(k, x).mapv(|s| s >= delta)
    }
}

/// Checks block size and rank against every FFN.
pub(crate) fn check_structure(
    ffns: &[Ffn],
    block: usize,
    rank: usize,
) -> Result<(), SparsityError> {
    if ffns.is_empty() {
        return Err(SparsityError::Model(
            "the model has no FFN (activation relu/gelu/silu between two projections)".into(),
        ));
    }
    for f in ffns {
        if block == 0 || block as u64 > f.ff {
            return Err(SparsityError::Options(format!(
                "block size {block} must be between 1 and the FFN width {} ({})",
                f.ff,
                f.label()
            )));
        }
        let most = f.d.min(f.ff);
        if rank == 0 || rank as u64 > most {
            return Err(SparsityError::Options(format!(
                "rank {rank} must be between 1 and min(d, ff) = {most} ({}: W_act `{}` is \
                 [{}, {}])",
                f.label(),
                f.weights.act,
                f.d,
                f.ff
            )));
        }
    }
    Ok(())
}

/// Number of blocks of `B` neurons covering `ff`.
pub fn n_blocks(ff: usize, block: usize) -> usize {
    ff.div_ceil(block)
}

/// `[tokens, ⌈ff/B⌉]`: per token and block, the max of `f(v)` over the block's columns.
pub fn block_max(v: ArrayView2<f64>, block: usize, f: impl Fn(f64) -> f64) -> Array2<f64> {
    let (t, ff) = v.dim();
    let nb = n_blocks(ff, block);
    let mut out = Array2::from_elem((t, nb), f64::NEG_INFINITY);
    for (row, mut o) in v.rows().into_iter().zip(out.rows_mut()) {
        for (j, x) in row.iter().enumerate() {
            let b = j / block;
            let y = f(*x);
            if y > o[b] {
                o[b] = y;
            }
        }
    }
    out
}

/// `[tokens, ⌈ff/B⌉]`: per token and block, the sum over the block's columns.
pub fn block_sum(v: ArrayView2<f64>, block: usize) -> Array2<f64> {
    let (t, ff) = v.dim();
    let mut out = Array2::zeros((t, n_blocks(ff, block)));
    for (row, mut o) in v.rows().into_iter().zip(out.rows_mut()) {
        for (j, x) in row.iter().enumerate() {
            o[j / block] += x;
        }
    }
    out
}

/// A rank-2 weight as `[rows, cols]`.
pub(crate) fn matrix(
    weights: &Weights,
    name: &str,
    shape: (usize, usize),
) -> Result<Array2<f64>, SparsityError> {
    let w = weights
        .get(name)
        .ok_or_else(|| SparsityError::Model(format!("weight `{name}` was not loaded")))?;
    w.view()
        .into_dimensionality::<Ix2>()
        .ok()
        .filter(|m| m.dim() == shape)
        .map(|m| m.to_owned())
        .ok_or_else(|| {
            SparsityError::Model(format!(
                "weight `{name}` has shape {:?}, the FFN needs {:?}",
                w.shape(),
                [shape.0, shape.1]
            ))
        })
}

/// The FFN's `b_act`, or zeros.
pub(crate) fn bias(weights: &Weights, f: &Ffn) -> Result<Array1<f64>, SparsityError> {
    let ff = f.ff as usize;
    let Some(name) = &f.weights.act_bias else {
        return Ok(Array1::zeros(ff));
    };
    let b = weights
        .get(name)
        .ok_or_else(|| SparsityError::Model(format!("weight `{name}` was not loaded")))?;
    if b.shape() != [ff] {
        return Err(SparsityError::Model(format!(
            "bias `{name}` has shape {:?}, the FFN needs [{ff}]",
            b.shape()
        )));
    }
    Ok(b.iter().copied().collect())
}
