//! The one error type of a call's execution, naming the node, input, weight or cache slot
//! where the call failed.

use comet_ir::{Node, NodeId, Stage};
use std::fmt;

/// Names a node in error messages: `%31 (matmul in decoder.0/attention)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// The node.
    pub node: NodeId,
    /// Its op's name.
    pub op: &'static str,
    /// Its block path (empty at top level).
    pub scope: String,
}

impl At {
    /// The place of node `id`.
    pub fn of(id: NodeId, node: &Node) -> At {
        At {
            node: id,
            op: node.op.name(),
            scope: node.scope.path.clone(),
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope.as_str() {
            "" => write!(f, "{} ({})", self.node, self.op),
            s => write!(f, "{} ({} in {s})", self.node, self.op),
        }
    }
}

/// Why a call could not be executed: the same errors, with the same messages, from every
/// backend (the plaintext ones as `PlainError`/`FixedError`, the parties inside
/// `InterpError`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    /// The program still has implicit truncations and composite functions (fixed point).
    #[error(
        "the fixed-point backend runs protocol-stage plans, got a {stage:?}-stage program: \
         compile it with the full pipeline"
    )]
    NotProtocol {
        /// The program's stage.
        stage: Stage,
    },
    /// The plan's fractional bits do not fit the 64-bit ring (fixed point).
    #[error("the plan's frac = {frac} does not fit Z_2^64 (needs frac < 64)")]
    Frac {
        /// The plan's fractional bits.
        frac: u32,
    },
    /// The graph is not a DAG.
    #[error("the program's graph has a cycle through {0}")]
    Cycle(NodeId),
    /// A declared input was not given.
    #[error("input `{name}` is missing: the program needs it with shape {expected:?}")]
    MissingInput {
        /// The input.
        name: String,
        /// Its declared shape at this call.
        expected: Vec<usize>,
    },
    /// An input that the program does not declare was given.
    #[error("unknown input `{name}`: the program's inputs are {declared}")]
    UnknownInput {
        /// The input given.
        name: String,
        /// The declared inputs, comma-separated.
        declared: String,
    },
    /// An input has the wrong shape.
    #[error(
        "input `{name}` has shape {actual:?}, expected {expected:?} (seq = {seq}, past = {past})"
    )]
    InputShape {
        /// The input.
        name: String,
        /// Its declared shape at this call.
        expected: Vec<usize>,
        /// The shape given.
        actual: Vec<usize>,
        /// The call's `seq`.
        seq: u64,
        /// The call's `past`.
        past: u64,
    },
    /// An input holds a value its element kind cannot encode (a fractional token id).
    #[error("input `{name}`: {message}")]
    InputValue {
        /// The input.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A weight the graph reads was not given.
    #[error("weight `{name}` (checkpoint tensor `{tensor}`) is missing from the weights")]
    MissingWeight {
        /// Its qualified name.
        name: String,
        /// The checkpoint tensor it comes from.
        tensor: String,
    },
    /// A weight has the wrong shape.
    #[error("weight `{name}` has shape {actual:?}, expected {expected:?}")]
    WeightShape {
        /// Its qualified name.
        name: String,
        /// The declared shape.
        expected: Vec<usize>,
        /// The shape given.
        actual: Vec<usize>,
    },
    /// A weight has an entry beyond the bound the plan was compiled for: its truncations'
    /// failure bound and its comparison widths rest on it.
    #[error(
        "weight `{name}` (tensor `{tensor}`) has an entry {value}, beyond the bound |w| ≤ \
         {bound} the plan was compiled with (its truncations' failure bound and its \
         comparison widths rest on it): recompile with `comet compile --weight-bound \
         {suggested}` or more"
    )]
    WeightBound {
        /// Its qualified name.
        name: String,
        /// Its checkpoint tensor.
        tensor: String,
        /// The offending entry.
        value: f64,
        /// The plan's bound.
        bound: f64,
        /// A bound that holds: the next power of two above the largest entry.
        suggested: f64,
    },
    /// A weight exceeds a statistic the plan declares for it (`comet compile --weights`):
    /// the range analysis, and so the plan's comparison and truncation widths, rest on it.
    #[error(
        "weight `{name}` (tensor `{tensor}`) has {what} {value:.6}, beyond the {bound} the \
         plan declares for it (its comparison and truncation widths rest on it): this is \
         not the checkpoint the plan was compiled for; recompile with `comet compile \
         --weights` on this checkpoint"
    )]
    WeightStats {
        /// Its qualified name.
        name: String,
        /// Its checkpoint tensor.
        tensor: String,
        /// Which statistic (`max |w|`, `row L2 norm`, `column L2 norm`, `spectral norm`).
        what: &'static str,
        /// The value found (the spectral norm: an estimate).
        value: f64,
        /// The plan's bound.
        bound: f64,
    },
    /// The KV cache does not hold what this call expects.
    #[error("{at}: cache slot {slot}: {message}")]
    Cache {
        /// The `cache_read` node.
        at: At,
        /// The slot.
        slot: u32,
        /// What is wrong.
        message: String,
    },
    /// A composite function reached a backend that only runs protocol primitives.
    #[error("{at}: composite `{op}` has no fixed-point semantics here: expand first")]
    Composite {
        /// The node.
        at: At,
        /// The op's name.
        op: &'static str,
    },
    /// An op cannot take its operands (ill-formed graph or out-of-range ids).
    #[error("{at}: {message}")]
    Op {
        /// The node.
        at: At,
        /// What is wrong.
        message: String,
    },
    /// A value's shape disagrees with its node's declared type: a bug in the program or
    /// in a backend.
    #[error("{at}: computed shape {actual:?}, but its type says {expected:?}")]
    Shape {
        /// The node.
        at: At,
        /// The declared shape at this call.
        expected: Vec<usize>,
        /// The computed shape.
        actual: Vec<usize>,
    },
}

impl ExecError {
    /// Checks the shape of a value computed at `at` against its node's declared shape at
    /// the call's sizes.
    ///
    /// # Errors
    /// [`ExecError::Shape`] if they differ.
    pub fn check_shape(
        actual: &[usize],
        expected: &[usize],
        at: impl FnOnce() -> At,
    ) -> Result<(), ExecError> {
        if actual == expected {
            return Ok(());
        }
        Err(ExecError::Shape {
            at: at(),
            expected: expected.to_vec(),
            actual: actual.to_vec(),
        })
    }
}
