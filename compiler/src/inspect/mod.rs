//! `comet inspect`: what a costed plan spends, per layer, per op kind and per protocol, for
//! a prompt and a generation, and how long that takes on a network.
//!
//! **Input.** A program after the `cost` pass: every node has a [`NodeCost`] (rounds,
//! online bits, dealer bits, local ring multiplications, as polynomials in `seq` and
//! `past`) and, if it communicates, a start round (`analyses.rounds`, ASAP: a node starts
//! when all its operands have finished, operand `x` finishing at `start(x) + rounds(x)`).
//! A plan without costs is an error ([`InspectError::NoCosts`]).
//!
//! **Calls.** `--prompt N --generate M`: the prefill is the call `seq = N, past = 0` and
//! yields the first token; each further token is a decode step `seq = 1, past = N + j − 1`
//! for `j = 1 ..= M − 1` (the KV cache grows by one each step). A model that reads no KV
//! cache (an encoder) runs as one call, and the report says so in a note.
//!
//! **Figures of a call.** *Rounds* (merged) = the latest finish over all nodes,
//! `max(start + rounds)`: every exchange of a round travels together. *Rounds before
//! merging* (`unmerged`) = Σ of every node's own rounds. *Online bytes* are sent by both
//! parties together, *offline bytes* by the dealer (PROTOCOLS.md); *local ops* are ring
//! multiplications per party. For a group of nodes (a layer, an op kind, a protocol),
//! `rounds` counts the rounds in which the group sends anything — the size of the union of
//! its nodes' `[start, start + rounds)` — so groups that share rounds add up to more than
//! the call's total; `unmerged` is the group's Σ of own rounds.
//!
//! **Latency** ([`net`]) = `rounds · latency + online_bits / bandwidth + local_ops / rate`,
//! with the profiles `lan` (10 Gbit/s, 0.1 ms), `wan` (100 Mbit/s, 40 ms) or `BW:LAT`, and
//! an *assumed* compute rate ([`DEFAULT_COMPUTE_RATE`], `--compute-rate`) until the runtime
//! benchmark calibrates it.
//!
//! **Groups.** By layer: `scope.layer`; a node outside every layer belongs to its top-level
//! block (the first segment of `scope.path`), else to `before layers` or `after layers` by
//! whether it depends on some layer's output (`top level` in a model without layers).
//! Layer rows come in that order: before layers, layers ascending, after layers. By op
//! kind: `scope.origin` (the source-level op an expanded node implements), else the op's
//! name. By protocol: [`NodeCost::protocol`]. Op kinds and protocols are sorted by online
//! bytes descending, then name; the text form leaves out rows with no cost at all.
//!
//! **Memory** ([`memory`]): each party's projected resident peak in the setup, the prefill
//! and the last decode step, from the plan's shapes and cost annotations, and bytes per
//! model parameter.
//!
//! **Truncation failure** ([`crate::range`]): per call, a union bound on the probability
//! that a local truncation fails, from the range analysis with weights declared within
//! `±weight_bound`; the first truncation at risk and the worst ones; recipe inputs outside
//! their assumed range and unmodelled ops, which void the bound.
//!
//! **Plots** ([`mod@svg`], `comet inspect --svg FILE`): the per-layer and per-op-kind online
//! bytes, rounds and dealer bytes of the prefill and the last decode step as horizontal bar
//! charts in one SVG file; with `--compare`, both plans' bars side by side.
//!
//! **Speed.** [`report`] compiles every node's polynomials once into flat terms over a
//! shared monomial table; each call then costs one pass over the nodes with no allocation
//! or formatting per node (see `eval`), and only the prefill and the last decode step are
//! broken down into groups.
//!
//! [`NodeCost`]: comet_ir::cost::NodeCost
//! [`NodeCost::protocol`]: comet_ir::cost::NodeCost::protocol

mod eval;
mod failure;
pub mod leakage;
pub mod memory;
pub mod net;
mod render;
mod report;
pub mod svg;
pub mod units;

#[cfg(test)]
mod tests;

pub use memory::{MemoryReport, PartyMemory, PhaseMemory};
pub use net::{NetError, NetProfile};
pub use render::{render, render_compare, to_json};
pub use report::{
    AmountRatios, Amounts, CallReport, CompareReport, DEFAULT_COMPUTE_RATE, InspectOptions,
    Latency, Ratios, Report, Row, Settings, Totals, compare, ratio, report,
};
pub use svg::{svg, svg_compare};

/// The long help of `comet inspect`.
pub const ABOUT: &str = "\
Rounds, online and offline bytes and projected latency of a compiled plan, per layer, per op
kind and per protocol, for a prompt and a generation.

Calls: the prefill processes the prompt (seq = N, past = 0) and yields the first token; each
further token is a decode step (seq = 1, past = N … N + M − 2). A model without a KV cache
runs as one call. Rounds are counted after merging (all exchanges of a round travel
together) and before (`unmerged`: every exchange on its own); online bytes are sent by both
parties together, offline bytes by the dealer.

Latency = rounds × round latency + online bytes / bandwidth + local ring multiplications /
compute rate (the compute rate is an assumption: see --compute-rate).

Projected memory per party: the resident peak of the setup, the prefill and the last decode
step = 0.5 GiB for the process + F = W − B and B_p of every fixed operand (16 bytes per
element) + the weights a call still reads (f64, at their owner) + the KV cache + the working
sets of the phase (docs/runtime.md, \"Projected memory per party\").";

/// Why a program cannot be inspected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// The `cost` pass has not run.
    #[error(
        "plan `{plan}` has no cost annotations: it was not compiled through the `cost` pass \
         (compile the model again with `comet compile MODEL -o PLAN`, which runs every pass)"
    )]
    NoCosts {
        /// The plan.
        plan: String,
    },
    /// Costs exist but some node has none.
    #[error("plan `{plan}`: node {node} has no cost annotation (a compiler bug)")]
    MissingCost {
        /// The plan.
        plan: String,
        /// The node, e.g. ``%12 (`matmul`)``.
        node: String,
    },
    /// A communicating node has no start round.
    #[error("plan `{plan}`: node {node} communicates but has no start round (pass `schedule`)")]
    MissingRound {
        /// The plan.
        plan: String,
        /// The node.
        node: String,
    },
    /// A figure evaluated to a negative number or beyond 64 bits.
    #[error(
        "plan `{plan}`: node {node} has {what} = {value} at seq = {seq}, past = {past} \
         (a compiler bug)"
    )]
    OutOfRange {
        /// The plan.
        plan: String,
        /// The node.
        node: String,
        /// Which figure.
        what: &'static str,
        /// Its value.
        value: i128,
        /// The call's `seq`.
        seq: u64,
        /// The call's `past`.
        past: u64,
    },
    /// The graph has a cycle (only for programs that skipped the verifier).
    #[error("{0}")]
    Cycle(#[from] comet_ir::graph::CycleError),
    /// An option is out of range.
    #[error("{0}")]
    Options(String),
    /// Drawing the SVG plot failed.
    #[error("cannot draw the SVG plot: {0}")]
    Svg(String),
}
