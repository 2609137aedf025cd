//! A compiled program: the model's declarations plus its dataflow graph.

use crate::approx::ApproxConfig;
use crate::dim::Dim;
use crate::graph::{Graph, NodeId};
use crate::op::Stage;
use crate::side::SideTable;
use crate::types::{Elem, Party};
use serde::{Deserialize, Serialize};

/// The fixed-point encoding: values are `round(x · 2^frac)` in Z_2^ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedFormat {
    /// Ring bit width `l`.
    pub ring: u32,
    /// Fractional bits `f`.
    pub frac: u32,
}

impl Default for FixedFormat {
    fn default() -> Self {
        FixedFormat { ring: 64, frac: 16 }
    }
}

/// A named dimension as declared in the model (`None`: symbolic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimInfo {
    /// Its name.
    pub name: String,
    /// Its constant value, or `None` for `seq`/`past`.
    pub value: Option<i64>,
}

/// A declared input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputInfo {
    /// Its name.
    pub name: String,
    /// Element kind.
    pub elem: Elem,
    /// Shape.
    pub shape: Vec<Dim>,
    /// Provider.
    pub party: Party,
}

/// A weight: where to find it in a checkpoint and what shape it must have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightInfo {
    /// Qualified name in the model (`decoder.3.wq`).
    pub name: String,
    /// Tensor name in the checkpoint, after interpolation and renames.
    pub tensor: String,
    /// Shape the model computes with.
    pub shape: Vec<u64>,
    /// The checkpoint stores the transpose of `shape`.
    pub transposed: bool,
    /// Provider.
    pub party: Party,
}

impl WeightInfo {
    /// The shape the checkpoint tensor must have.
    pub fn stored_shape(&self) -> Vec<u64> {
        let mut s = self.shape.clone();
        if self.transposed {
            s.reverse();
        }
        s
    }
}

/// A declared output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputInfo {
    /// Its name.
    pub name: String,
    /// Receiver.
    pub party: Party,
}

/// Everything a plan says about the model besides its graph.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// The model's name.
    pub name: String,
    /// Fixed-point encoding.
    pub format: FixedFormat,
    /// Declared dimensions in source order.
    pub dims: Vec<DimInfo>,
    /// Inputs in source order.
    pub inputs: Vec<InputInfo>,
    /// Weights used by the graph, in first-use order.
    pub weights: Vec<WeightInfo>,
    /// Outputs in source order.
    pub outputs: Vec<OutputInfo>,
}

impl ModelInfo {
    /// The weight called `name`.
    pub fn weight(&self, name: &str) -> Option<&WeightInfo> {
        self.weights.iter().find(|w| w.name == name)
    }

    /// The input called `name`.
    pub fn input(&self, name: &str) -> Option<&InputInfo> {
        self.inputs.iter().find(|i| i.name == name)
    }
}

/// Analyses attached to a program by later passes, keyed by node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Analyses {
    /// The round in which each communicating node starts (pass `schedule`): a max of
    /// polynomials, since a row maximum over `past + seq` keys takes `2⌈log2(past+seq)⌉`.
    pub rounds: Option<SideTable<crate::poly::MaxPoly>>,
    /// What each node costs (pass `cost`).
    pub costs: Option<SideTable<crate::cost::NodeCost>>,
    /// Ranges that recipes guarantee or assume (pass `expand`, carried through
    /// `insert-conversions`), read by the range analysis ([`crate::range`]).
    pub declared: Option<SideTable<crate::range::Declared>>,
}

/// Which protocol computes comparisons (DReLU), and so `relu`, `max` and `select` inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// Function secret sharing (a DCF key per element from the dealer): 1 round.
    #[default]
    Fss,
    /// GMW with a prefix adder (A2B then MSB): the baseline of CrypTen/SPU, 7 rounds.
    Gmw,
}

/// The block sparsity of a plan's FFNs (pass `sparsify`, docs/sparsity.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparsityOptions {
    /// Neurons per block `B`.
    pub block: u64,
    /// Rank `r` of the predictor the plan was compiled for (its weights are `[d, blocks]`
    /// after folding the factors, so the rank only matters to calibration).
    pub rank: u64,
    /// The block recall the predictor's thresholds are calibrated for.
    pub recall: f64,
    /// Per sparse FFN, in order: the expected fraction of active blocks per token, at
    /// which estimates (`comet inspect`) are evaluated. Measured calls use the realised
    /// counts.
    pub density: Vec<f64>,
    /// Per sparse FFN: its layer, `ff`, and the number of blocks. A head-sparse plan
    /// (pass `head-sparsify`) appends one entry per attention after the FFNs (`ff` =
    /// query columns, `blocks` = KV groups): the **sparse units**, indexed by the
    /// `block_matmul`s' `ffn` attribute; `density` covers them too.
    pub ffns: Vec<SparseFfnInfo>,
    /// Head-sparse attentions (absent: dense attention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<HeadSparsity>,
    /// What the predictors read (`ffn` when absent: plans written before the choice).
    #[serde(default)]
    pub input: crate::ffn::PredictorInput,
}

impl SparsityOptions {
    /// The sparse FFNs (the units before the attentions').
    pub fn ffn_units(&self) -> &[SparseFfnInfo] {
        let n = self
            .heads
            .as_ref()
            .map_or(self.ffns.len(), |h| h.first as usize);
        &self.ffns[..n.min(self.ffns.len())]
    }
}

/// The head sparsity of a plan's attentions (pass `head-sparsify`, docs/sparsity.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSparsity {
    /// The sparse unit of attention 0: attention `k` is unit `first + k`.
    pub first: u32,
    /// The group recall the predictor's thresholds are calibrated for.
    pub recall: f64,
    /// Per attention.
    pub attentions: Vec<SparseAttentionInfo>,
}

/// One head-sparse attention of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseAttentionInfo {
    /// Layer index, if any.
    pub layer: Option<u32>,
    /// Query heads.
    pub heads: u64,
    /// KV groups (key/value heads): the mask's bits per token.
    pub kv_heads: u64,
    /// Head dimension.
    pub hd: u64,
    /// Input width.
    pub d: u64,
}

/// One sparse FFN of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseFfnInfo {
    /// Layer index, if any.
    pub layer: Option<u32>,
    /// Neurons before padding.
    pub ff: u64,
    /// Blocks `⌈ff / B⌉`.
    pub blocks: u64,
    /// Input width `d`.
    pub d: u64,
}

/// Protocol choices that apply to the whole plan.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolOptions {
    /// The comparison protocol.
    pub comparison: Comparison,
    /// The approximation profile of each op kind (pass `approximate`). Absent in plans
    /// without approximations (and in plans written before it existed): all `exact`.
    #[serde(default, skip_serializing_if = "ApproxConfig::is_exact")]
    pub approx: ApproxConfig,
    /// Block-sparse FFNs (absent: dense).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<SparsityOptions>,
    /// How the pass `faithful-trunc` chose between local and faithful truncations (absent
    /// in plans compiled before it: every truncation local).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<TruncationPolicy>,
    /// Declared statistics of each weight (by its name in the model), from the checkpoint
    /// the plan was compiled for (`comet compile --weights`); the range analysis bounds
    /// products by them, and the runtime refuses a checkpoint that exceeds them. Absent:
    /// every weight is only bounded by the truncation policy's `weight_bound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_stats: Option<std::collections::BTreeMap<String, crate::range::WeightStats>>,
}

impl ProtocolOptions {
    /// Whether the plan's truncations may be faithful (a policy other than `never`): the
    /// passes that let a product grow to twice its scale before one truncation take that
    /// truncation's premise from a faithful gate, never from a local one.
    pub fn may_truncate_faithfully(&self) -> bool {
        self.truncation
            .is_some_and(|t| t.mode != FaithfulMode::Never)
    }
}

/// Which truncations are faithful (`comet compile --faithful-trunc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaithfulMode {
    /// Local where the range analysis bounds the plan's failure probability per call
    /// within the budget, faithful elsewhere.
    #[default]
    Auto,
    /// Every truncation of a shared value faithful.
    Always,
    /// Every truncation local (SecureML; may fail silently).
    Never,
}

/// The gate a truncation that must not fail becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaithfulGate {
    /// The exact arithmetic shift `⌊x / 2^bits⌋` by one DCF key per element
    /// ([`Op::FaithfulTrunc`](crate::Op::FaithfulTrunc)). What plans without this field
    /// used.
    #[default]
    Exact,
    /// The floor or one more, rounded stochastically (unbiased), by an opening and 16 dealer
    /// bytes per element ([`Op::StochasticTrunc`](crate::Op::StochasticTrunc)).
    Stochastic,
}

/// The pass `faithful-trunc`'s inputs, recorded in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TruncationPolicy {
    /// Which truncations are faithful.
    pub mode: FaithfulMode,
    /// The budget: the union bound on a call's probability that some local truncation
    /// fails, at the design call (`auto` only).
    pub max_failure: f64,
    /// The declared bound on every weight entry the range analysis assumed.
    pub weight_bound: f64,
    /// The design context: the pass bounds a prefill of this many tokens and a decode step
    /// after `context − 1` cached tokens.
    pub context: u64,
    /// The gate of the truncations that are not local.
    #[serde(default)]
    pub gate: FaithfulGate,
}

/// A model's declarations, its graph and the analyses attached so far.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// Declarations.
    pub info: ModelInfo,
    /// Which type rules apply (see [`Stage`]).
    pub stage: Stage,
    /// Protocol choices.
    pub options: ProtocolOptions,
    /// The dataflow graph.
    pub graph: Graph,
    /// Side tables.
    pub analyses: Analyses,
}

impl Program {
    /// The context of the type rules.
    pub fn ctx(&self) -> crate::infer::Ctx {
        crate::infer::Ctx {
            frac: self.info.format.frac,
            stage: self.stage,
        }
    }

    /// Nodes in the canonical order used by the text form and the plan format.
    pub fn canonical_order(&self) -> Result<Vec<NodeId>, crate::graph::CycleError> {
        self.graph.topo_order()
    }
}
