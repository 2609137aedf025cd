//! # comet-ir: Comet's dataflow IR
//!
//! A compiled model is a [`Program`]: the model's declarations ([`ModelInfo`]: fixed-point
//! format, dimensions, inputs, weights with their checkpoint names, outputs) and a
//! [`Graph`], a DAG of ops at tensor granularity.
//!
//! **What a node may refer to.** A node's operands are other nodes of the same graph,
//! recorded as edges with their positions; a node never reads a sink (`output`,
//! `cache_write`). Sources (`input`, `weight`, `positions`, `cache_read`) have no operands
//! and a declared type; every other node's type follows from its operands by the rules in
//! [`infer`]. Inputs and weights refer to [`ModelInfo`] by name.
//!
//! **Types.** Every value has a [`ValueType`]: element kind (fixed point with a scale,
//! bit, index), a shape of [`Dim`]s that may be affine in the symbols `seq` and `past`, and
//! a [`Domain`] (public, private to one party, arithmetic shares, boolean shares).
//!
//! **Analyses** (communication rounds, costs) live in side tables keyed by [`NodeId`]
//! ([`SideTable`], [`Analyses`]), not in nodes.
//!
//! **Invariants** are listed and checked by [`verify()`]. The text form ([`print`](mod@print)) and the
//! plan file format ([`plan`]) are deterministic: nodes appear in a canonical topological
//! order with compact numbering.
#![deny(missing_docs)]

pub mod approx;
pub mod cost;
pub mod dim;
pub mod erf;
pub mod exposure;
pub mod ffn;
pub mod graph;
pub mod head_region;
pub mod heads;
pub mod infer;
pub mod op;
pub mod plan;
pub mod poly;
pub mod print;
pub mod program;
pub mod protocol;
pub mod range;
pub mod side;
pub mod sparse;
pub mod table;
pub mod types;
pub mod verify;

pub use approx::{ApproxConfig, ApproxKind, ApproxProfile};
pub use dim::{Dim, DimEnv, Shape};
pub use graph::{Graph, Node, NodeId, Scope};
pub use op::{Op, RopeStyle, Stage, UnaryFn};
pub use program::{
    Analyses, Comparison, DimInfo, FaithfulGate, FaithfulMode, FixedFormat, HeadSparsity,
    InputInfo, ModelInfo, OutputInfo, Program, ProtocolOptions, SparseAttentionInfo, SparseFfnInfo,
    SparsityOptions, TruncationPolicy, WeightInfo,
};
pub use range::{Declared, Interval, WeightStats};
pub use side::SideTable;
pub use table::TableFn;
pub use types::{Domain, Elem, Party, ValueType};
pub use verify::{VerifyError, verify};
