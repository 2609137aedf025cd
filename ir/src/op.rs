//! Operations.
//!
//! Ops are at tensor granularity: one node computes a whole tensor, never one element or
//! one head. An op's attributes are compile-time constants; its operands are graph edges.
//! The ops produced by `lower` are *semantic*: arithmetic on fixed-point values keeps the
//! plan's scale (the rescaling truncation is implicit until `insert-conversions` makes it
//! explicit), and composite functions (`softmax`, `gelu`, norms) are single nodes until
//! `expand` lowers them to protocol primitives.

use crate::table::TableFn;
use crate::types::Party;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Element-wise nonlinear functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnaryFn {
    /// max(x, 0)
    Relu,
    /// Gaussian error linear unit.
    Gelu,
    /// x · sigmoid(x)
    Silu,
    /// Hyperbolic tangent.
    Tanh,
    /// e^x
    Exp,
    /// 1 / (1 + e^−x)
    Sigmoid,
    /// 1 / x (for x in a declared positive range)
    Reciprocal,
    /// 1 / sqrt(x) (for x in a declared positive range)
    Rsqrt,
}

impl UnaryFn {
    /// Every function, in a fixed order.
    pub const ALL: [UnaryFn; 8] = [
        UnaryFn::Relu,
        UnaryFn::Gelu,
        UnaryFn::Silu,
        UnaryFn::Tanh,
        UnaryFn::Exp,
        UnaryFn::Sigmoid,
        UnaryFn::Reciprocal,
        UnaryFn::Rsqrt,
    ];

    /// The name used in `.model` files and the text form.
    pub fn name(self) -> &'static str {
        match self {
            UnaryFn::Relu => "relu",
            UnaryFn::Gelu => "gelu",
            UnaryFn::Silu => "silu",
            UnaryFn::Tanh => "tanh",
            UnaryFn::Exp => "exp",
            UnaryFn::Sigmoid => "sigmoid",
            UnaryFn::Reciprocal => "reciprocal",
            UnaryFn::Rsqrt => "rsqrt",
        }
    }
}

/// Which pairs of a head's channels RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeStyle {
    /// Channels `(2j, 2j+1)` (the original RoFormer, GPT-J, glassllm).
    Adjacent,
    /// Channels `(j, j + k/2)` (Hugging Face LLaMA's `rotate_half`).
    Half,
}

impl RopeStyle {
    /// The name used in `.model` files.
    pub fn name(self) -> &'static str {
        match self {
            RopeStyle::Adjacent => "adjacent",
            RopeStyle::Half => "half",
        }
    }
}

/// An operation. See the module docs for the semantic/primitive split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    // ---- sources ----
    /// A model input, provided by `party`. Its type is declared in the model.
    Input {
        /// Input name.
        name: String,
        /// Provider.
        party: Party,
    },
    /// A weight tensor, described in the model's weight table under `name`.
    Weight {
        /// Qualified weight name (`decoder.3.wq`).
        name: String,
    },
    /// Public position ids `past + offset ..< past + offset + seq`.
    Positions {
        /// Added to every position (OPT's learned positions start at 2).
        offset: i64,
    },
    /// The KV-cache contents of `slot` from earlier calls: `[h, past, k]`.
    CacheRead {
        /// Cache slot.
        slot: u32,
    },
    // ---- sinks ----
    /// Stores `[h, past + seq, k]` as the new contents of cache `slot`.
    CacheWrite {
        /// Cache slot.
        slot: u32,
    },
    /// A model output; its operand must already be readable by `party`.
    Output {
        /// Output name.
        name: String,
        /// Receiver.
        party: Party,
    },
    // ---- conversions ----
    /// Opens a value to one party.
    Reveal {
        /// Receiver.
        to: Party,
    },
    // ---- linear algebra and data movement ----
    /// Row gather: `ids[..]`, `table[V, d]` → `[.., d]`.
    Embed,
    /// `[.., m, k] · [k, n]` or batched `[b, m, k] · [b, k, n]`.
    MatMul,
    /// A product with the KV cache whose cached rows were opened under fresh masks when
    /// they were written (pass `cache-openings`): operands `x`, `c = concat(cache_read(slot),
    /// new)` (`[h_kv, past + seq, k]`) and `new` (`[h_kv, seq, k]`); the value is
    /// `x · view(c)` with `view` = [`Op::RepeatKv`] by `groups` (1: none), then, if
    /// `transpose`, [`Op::Transpose`]. Each call opens only `x` and the `new` rows.
    ///
    /// A fourth operand, the public head mask `[seq, h_kv]` of a head-sparse attention
    /// (pass `head-sparsify`), makes the product head-masked: entries of query heads whose
    /// KV group is inactive at a token are not computed (their value is 0), and a cached
    /// row of a group is opened only in the first call where the group is active (a row
    /// written while it is inactive waits: the merged KV refill, docs/sparsity.md).
    CacheMatMul {
        /// The cache slot `c` extends.
        slot: u32,
        /// Whether the cache operand is transposed (`q · kᵀ`) or not (`p · v`).
        transpose: bool,
        /// Query heads per cached head (GQA); 1 without repetition.
        groups: u64,
    },
    /// Swaps the last two axes.
    Transpose,
    /// Element-wise sum with broadcasting.
    Add,
    /// Element-wise difference with broadcasting.
    Sub,
    /// Element-wise product with broadcasting.
    Mul,
    /// Negation.
    Neg,
    /// Product with a public constant.
    MulConst {
        /// The constant.
        value: f64,
    },
    /// Sum with a public constant.
    AddConst {
        /// The constant.
        value: f64,
    },
    /// `x[.., start..end]` on the last axis.
    Slice {
        /// First index.
        start: u64,
        /// One past the last index.
        end: u64,
    },
    /// One row of a `[s, d]` matrix: `[1, d]`.
    Row {
        /// Row index.
        index: u64,
    },
    /// Concatenation along `axis`.
    Concat {
        /// The axis.
        axis: u32,
    },
    /// `[s, h·k]` → `[h, s, k]`.
    SplitHeads {
        /// Number of heads `h`.
        heads: u64,
    },
    /// `[h, s, k]` → `[s, h·k]`.
    MergeHeads,
    /// `[h, t, k]` → `[h·groups, t, k]`, each head repeated `groups` times.
    RepeatKv {
        /// Query heads per key/value head.
        groups: u64,
    },
    /// Rotary position embedding at positions `past ..< past + seq`.
    Rope {
        /// Frequency base.
        base: f64,
        /// Which channels pair up.
        style: RopeStyle,
    },
    /// Hides key `j` from query `i` when `j > past + i` (adds a large negative number).
    CausalMask,
    // ---- composite nonlinear functions ----
    /// An element-wise function.
    Unary {
        /// Which.
        func: UnaryFn,
    },
    /// Softmax over the last axis.
    Softmax,
    /// `(x − mean) / sqrt(var + eps) · g + b` over the last axis.
    LayerNorm {
        /// Variance epsilon.
        eps: f64,
    },
    /// `x / sqrt(mean(x²) + eps) · g` over the last axis.
    RmsNorm {
        /// Epsilon.
        eps: f64,
    },
    // ---- primitives produced by `expand` ----
    /// `x²` element-wise.
    Square,
    /// Sum over the last axis: `[.., n]` → `[.., 1]`.
    RowSum,
    /// Maximum over the last axis, by a tree of comparisons: `[.., n]` → `[.., 1]`.
    RowMax,
    /// The bit `x ≥ 0` (DReLU).
    Drelu,
    /// The bits `x ≥ t` for each public threshold `t`, stacked on a new last axis:
    /// `[..]` → `[.., k]`. With FSS comparisons one mask and one DCF key per element serve
    /// every threshold (the key is evaluated at `x + r − t`), so this costs one DReLU.
    Compare {
        /// The thresholds, in real units.
        thresholds: Vec<f64>,
    },
    /// Entry `index` of the last axis, which is dropped: `[.., k]` → `[..]`.
    Pick {
        /// The entry.
        index: u64,
    },
    /// The bit `[lo ≤ x < hi]` from the bits `[x ≥ lo]` and `[x ≥ hi]` (operands 0 and 1,
    /// one shape) of one value with `lo < hi`: their difference, which is exact (and local
    /// on arithmetic 0/1 shares) because the second bit implies the first.
    Between,
    /// `b · x` for a bit `b`: `x` where the bit is set, else 0 (mux with zero).
    Select,
    /// `y·[x ≥ 0]` fused (pass `fuse-selects`, FSS comparisons only): operands `[x]` (ReLU,
    /// y is x) or `[x, y]` of one shape; `select(drelu(x), y)` without the bit as a value.
    SignSelect,
    /// A bit as the fixed-point number 0 or 1 (B2A with dealer daBits).
    B2A,
    /// A public function read from a table of `2^bits` entries
    /// ([`crate::table`]): the input cut to `frac` fractional bits, read as a signed
    /// `bits`-bit index (wrapping), gives `func` at that point, at the plan's scale.
    Lut {
        /// The function the table holds.
        func: TableFn,
        /// Index bits n (1..=[`crate::table::MAX_TABLE_BITS`]).
        bits: u32,
        /// Fractional bits q of the index (at most the input's scale).
        frac: u32,
    },
    // ---- block sparsity, inserted by `sparsify` (COMET.md §1–3) ----
    /// Pads axis `axis` to whole blocks of `block` entries (zeros at the end) and permutes
    /// the blocks by the session's secret permutation number `perm`, which neither party
    /// knows (a dealer-assisted two-party shuffle, once per session at setup). The result
    /// is shared. `[.., n, ..]` → `[.., ⌈n/B⌉·B, ..]`.
    BlockPermute {
        /// Which permutation (one per sparse FFN).
        perm: u32,
        /// Entries per block along `axis`.
        block: u64,
        /// The permuted axis.
        axis: u32,
    },
    /// `x` `[seq, n]` with every block of `block` entries on the last axis that the public
    /// mask `[seq, n/B]` marks inactive (0) set to zero. Element-wise ops that follow
    /// compute only the active entries (`comet_ir::sparse`).
    ApplyMask {
        /// Which sparse FFN.
        ffn: u32,
        /// Entries per block.
        block: u64,
    },
    /// `x · W` for `x` `[seq, n]`, `W` `[n, d]`, skipping the rows of the blocks the public
    /// mask `[seq, n/B]` marks inactive in each token's row: operands `(x, W, mask)`.
    BlockMatMul {
        /// Which sparse FFN.
        ffn: u32,
        /// Rows per block.
        block: u64,
    },
    /// Opens a shared value to both parties.
    Open,
    // ---- primitives produced by `insert-conversions` ----
    /// One-hot encoding of ids as integers (scale 0): `idx[..]` → `[.., depth]`.
    OneHot {
        /// Number of classes.
        depth: u64,
    },
    /// Secret-shares a value provided by `from` (the peer derives its share from a PRG).
    Share {
        /// The party that holds the value.
        from: Party,
    },
    /// Drops `bits` fractional bits (SecureML local truncation on shares).
    Trunc {
        /// Bits dropped.
        bits: u32,
    },
    /// Drops `bits` fractional bits exactly (the arithmetic shift `⌊x / 2^bits⌋` of the
    /// signed value) by a faithful FSS truncation: one DCF key per element and one round
    /// (`comet_runtime::protocols::trunc_fss`); exact for `|x| < 2^62` ring units. Chosen
    /// by the `faithful-trunc` pass where the local truncation's failure bound does not
    /// hold.
    FaithfulTrunc {
        /// Bits dropped.
        bits: u32,
    },
    /// Drops `bits` fractional bits without the local truncation's wrap failure, rounding
    /// stochastically (`⌊x / 2^bits⌋` or one more, unbiased) by one opening and 16 dealer
    /// bytes per element (`comet_runtime::protocols::trunc_stochastic`); never wrong by more
    /// than one unit in the last place for `|x| < 2^62` ring units, or, at a node width m
    /// ([`crate::graph::Node::cmp_width`]), for `−2^(m−2) ≤ x < 2^(m−2)`, opening m bits
    /// per element instead of 64. The `faithful-trunc` pass's default gate.
    StochasticTrunc {
        /// Bits dropped.
        bits: u32,
    },
}

/// The compilation stage a program is in; it decides the type rules of arithmetic.
///
/// In the **semantic** stage (after `lower` and until `insert-conversions`), fixed-point
/// arithmetic keeps the plan's scale (truncation is implicit) and values of different
/// owners may meet (the result is shared). In the **protocol** stage every conversion is a
/// node: products carry the sum of their operands' scales until a `trunc`, and a private
/// value must be `share`d before it meets a shared one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Implicit conversions.
    #[default]
    Semantic,
    /// Explicit conversions.
    Protocol,
}

/// How many operands an op takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// Exactly this many.
    Exactly(usize),
    /// At least this many.
    AtLeast(usize),
    /// From the first to the second, both included.
    Between(usize, usize),
}

impl Arity {
    /// Whether `n` operands fit.
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
            Arity::Between(lo, hi) => (lo..=hi).contains(&n),
        }
    }
}

impl fmt::Display for Arity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arity::Exactly(k) => write!(f, "{k}"),
            Arity::AtLeast(k) => write!(f, "at least {k}"),
            Arity::Between(lo, hi) => write!(f, "{lo} to {hi}"),
        }
    }
}

impl Op {
    /// The op's name in the text form.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Weight { .. } => "weight",
            Op::Positions { .. } => "positions",
            Op::CacheRead { .. } => "cache_read",
            Op::CacheWrite { .. } => "cache_write",
            Op::Output { .. } => "output",
            Op::Reveal { .. } => "reveal",
            Op::Embed => "embed",
            Op::MatMul => "matmul",
            Op::CacheMatMul { .. } => "cache_matmul",
            Op::Transpose => "transpose",
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Neg => "neg",
            Op::MulConst { .. } => "mul_const",
            Op::AddConst { .. } => "add_const",
            Op::Slice { .. } => "slice",
            Op::Row { .. } => "row",
            Op::Concat { .. } => "concat",
            Op::SplitHeads { .. } => "split_heads",
            Op::MergeHeads => "merge_heads",
            Op::RepeatKv { .. } => "repeat_kv",
            Op::Rope { .. } => "rope",
            Op::CausalMask => "causal_mask",
            Op::Unary { func } => func.name(),
            Op::Softmax => "softmax",
            Op::LayerNorm { .. } => "layer_norm",
            Op::RmsNorm { .. } => "rms_norm",
            Op::Square => "square",
            Op::RowSum => "row_sum",
            Op::RowMax => "row_max",
            Op::Drelu => "drelu",
            Op::Compare { .. } => "compare",
            Op::Pick { .. } => "pick",
            Op::Between => "between",
            Op::Select => "select",
            Op::SignSelect => "sign_select",
            Op::B2A => "b2a",
            Op::Lut { .. } => "lut",
            Op::OneHot { .. } => "one_hot",
            Op::Share { .. } => "share",
            Op::Trunc { .. } => "trunc",
            Op::FaithfulTrunc { .. } => "faithful_trunc",
            Op::StochasticTrunc { .. } => "stochastic_trunc",
            Op::BlockPermute { .. } => "block_permute",
            Op::ApplyMask { .. } => "apply_mask",
            Op::BlockMatMul { .. } => "block_matmul",
            Op::Open => "open",
        }
    }

    /// Number of operands.
    pub fn arity(&self) -> Arity {
        use Arity::*;
        match self {
            Op::Input { .. } | Op::Weight { .. } | Op::Positions { .. } | Op::CacheRead { .. } => {
                Exactly(0)
            }
            Op::Embed
            | Op::MatMul
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::RmsNorm { .. }
            | Op::Between
            | Op::Select
            | Op::ApplyMask { .. } => Exactly(2),
            Op::LayerNorm { .. } | Op::BlockMatMul { .. } => Exactly(3),
            Op::CacheMatMul { .. } => Between(3, 4),
            Op::Concat { .. } => AtLeast(2),
            Op::SignSelect => AtLeast(1),
            _ => Exactly(1),
        }
    }

    /// Sources have no operands; their type is declared, not inferred.
    pub fn is_source(&self) -> bool {
        self.arity() == Arity::Exactly(0)
    }

    /// Sinks produce nothing later ops may read.
    pub fn is_sink(&self) -> bool {
        matches!(self, Op::Output { .. } | Op::CacheWrite { .. })
    }

    /// Composite functions that `expand` must lower before `insert-conversions`.
    pub fn is_composite(&self) -> bool {
        matches!(
            self,
            Op::Unary { .. } | Op::Softmax | Op::LayerNorm { .. } | Op::RmsNorm { .. }
        )
    }

    /// Attributes as `key = value` pairs, for the text form.
    pub fn attrs(&self) -> Vec<(&'static str, String)> {
        match self {
            Op::Input { name, party } => vec![("name", name.clone()), ("from", party.to_string())],
            Op::Weight { name } => vec![("name", name.clone())],
            Op::Positions { offset } => vec![("offset", offset.to_string())],
            Op::CacheRead { slot } | Op::CacheWrite { slot } => vec![("slot", slot.to_string())],
            Op::Output { name, party } => vec![("name", name.clone()), ("to", party.to_string())],
            Op::Reveal { to } => vec![("to", to.to_string())],
            Op::MulConst { value } | Op::AddConst { value } => vec![("value", num(*value))],
            Op::Slice { start, end } => {
                vec![("start", start.to_string()), ("end", end.to_string())]
            }
            Op::Row { index } | Op::Pick { index } => vec![("index", index.to_string())],
            Op::Compare { thresholds } => {
                let ts: Vec<String> = thresholds.iter().map(|t| num(*t)).collect();
                vec![("thresholds", format!("[{}]", ts.join(", ")))]
            }
            Op::Concat { axis } => vec![("axis", axis.to_string())],
            Op::CacheMatMul {
                slot,
                transpose,
                groups,
            } => vec![
                ("slot", slot.to_string()),
                ("transpose", transpose.to_string()),
                ("groups", groups.to_string()),
            ],
            Op::SplitHeads { heads } => vec![("heads", heads.to_string())],
            Op::RepeatKv { groups } => vec![("groups", groups.to_string())],
            Op::Rope { base, style } => vec![("base", num(*base)), ("style", style.name().into())],
            Op::LayerNorm { eps } | Op::RmsNorm { eps } => vec![("eps", num(*eps))],
            Op::OneHot { depth } => vec![("depth", depth.to_string())],
            Op::Share { from } => vec![("from", from.to_string())],
            Op::Trunc { bits } | Op::FaithfulTrunc { bits } | Op::StochasticTrunc { bits } => {
                vec![("bits", bits.to_string())]
            }
            Op::Lut { func, bits, frac } => vec![
                ("func", func.name().into()),
                ("bits", bits.to_string()),
                ("frac", frac.to_string()),
            ],
            Op::BlockPermute { perm, block, axis } => vec![
                ("perm", perm.to_string()),
                ("block", block.to_string()),
                ("axis", axis.to_string()),
            ],
            Op::ApplyMask { ffn, block } | Op::BlockMatMul { ffn, block } => {
                vec![("ffn", ffn.to_string()), ("block", block.to_string())]
            }
            _ => vec![],
        }
    }
}

/// Shortest text that reads back as the same `f64`.
fn num(v: f64) -> String {
    format!("{v:?}")
}
