//! Which cryptographic protocol computes each node of a protocol-stage program.
//!
//! The compiler's cost model and the runtime's interpreter both call [`protocol_of`], so
//! the protocol that is estimated is the protocol that runs. The choice follows from the
//! op, its operands' domains, and whether an operand is **fixed**: derived from weights and
//! public values only, so that it is the same in every call and its Beaver mask can be
//! opened once at setup ([`fixed_values`]).

use crate::graph::NodeId;
use crate::op::Op;
use crate::program::{Comparison, Program};
use crate::types::{Domain, Party};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;

/// A protocol primitive (PROTOCOLS.md, "Primitives the runtime implements").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// No communication: local arithmetic, data movement, truncation, sources and sinks.
    Local,
    /// Input sharing from a PRG seed: no communication.
    Share,
    /// Opening a shared value to one party.
    Reveal,
    /// Element-wise Beaver multiplication of two shared values.
    BeaverMul,
    /// Element-wise product with a fixed shared operand (its mask opened at setup).
    FixedMul,
    /// Beaver squaring with `(a, a²)` pairs.
    Square,
    /// Matrix product of two shared values.
    BeaverMatMul,
    /// Matrix product with a fixed shared right operand (`W − B` opened at setup).
    FixedMatMul,
    /// Matrix product with the KV cache ([`Op::CacheMatMul`]): each cached row was opened
    /// under a fresh mask when written, so a call opens only the left operand and the new
    /// rows.
    CacheMatMul,
    /// DReLU by function secret sharing (a DCF key per element).
    DreluFss,
    /// An FSS comparison of a stochastic truncation's output that reads the truncation's
    /// opened masked value ([`crate::graph::Node::reads_opening`]): the dealer keys its DCF
    /// on the truncation's mask, so it sends nothing and ends in the truncation's round.
    DreluOpened,
    /// DReLU by GMW over a prefix adder.
    DreluGmw,
    /// Bit × shared value (bit injection with dealer pairs).
    Mux,
    /// A select of a stochastic truncation's output that reads the truncation's opening as
    /// its `x − a` ([`crate::graph::Node::reads_opening`]): only the masked bits are
    /// opened.
    MuxOpened,
    /// Row maximum by a tree of comparisons and muxes.
    RowMaxTree,
    /// A shared bit to an arithmetic share (daBits). Only with GMW comparisons, whose bits
    /// are XOR-shared; FSS comparisons output arithmetic shares of their bits directly.
    B2A,
    /// Opening a shared value to both parties (a sparse FFN's block mask).
    Open,
    /// A product with a fixed right operand whose rows are skipped per token by a public
    /// block mask: only the active blocks of the left operand are opened, and the dealer
    /// sends one correction per (token, block).
    BlockFixedMatMul,
    /// A public table read at a shared index by FSS (a DPF over the index, 2 rounds).
    Lut,
    /// `y·[x ≥ 0]` by one FSS gate (a 1-bit DCF; x + r and y + s opened, then a masked
    /// bit: 2 rounds).
    SignSelect,
    /// Faithful truncation by FSS (one DCF key per element on the dropped bits; `x + r`
    /// opened: 1 round), exact where the local truncation may fail.
    FaithfulTrunc,
    /// Wrap-free truncation with stochastic rounding (`x + r` opened, 16 dealer bytes per
    /// element: 1 round), within one unit in the last place where the local one may fail.
    StochasticTrunc,
    /// The oblivious block permutation of a fixed operand: two one-way messages once per
    /// session, at setup, with dealer permutation correlations; nothing per call.
    Shuffle,
}

impl Protocol {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Local => "local",
            Protocol::Share => "share",
            Protocol::Reveal => "reveal",
            Protocol::BeaverMul => "beaver_mul",
            Protocol::FixedMul => "fixed_mul",
            Protocol::Square => "square",
            Protocol::BeaverMatMul => "beaver_matmul",
            Protocol::FixedMatMul => "fixed_matmul",
            Protocol::CacheMatMul => "cache_matmul",
            Protocol::DreluFss => "drelu_fss",
            Protocol::DreluOpened => "drelu_opened",
            Protocol::DreluGmw => "drelu_gmw",
            Protocol::Mux => "mux",
            Protocol::MuxOpened => "mux_opened",
            Protocol::RowMaxTree => "row_max",
            Protocol::B2A => "b2a",
            Protocol::Open => "open",
            Protocol::BlockFixedMatMul => "block_fixed_matmul",
            Protocol::Shuffle => "shuffle",
            Protocol::Lut => "lut",
            Protocol::SignSelect => "sign_select",
            Protocol::FaithfulTrunc => "faithful_trunc",
            Protocol::StochasticTrunc => "stochastic_trunc",
        }
    }

    /// Whether it is a product with a fixed operand, whose mask is opened at setup.
    pub fn has_fixed_operand(self) -> bool {
        matches!(
            self,
            Protocol::FixedMul | Protocol::FixedMatMul | Protocol::BlockFixedMatMul
        )
    }

    /// Whether it exchanges messages in the rounds of a call (a shuffle exchanges at the
    /// session's setup only).
    pub fn communicates(self) -> bool {
        !matches!(self, Protocol::Local | Protocol::Share | Protocol::Shuffle)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Nodes whose value is the same in every call: weights, public values, and local
/// functions of those (a transposed weight, a shared weight, a function of one party's
/// weights that party computes in the clear: a norm's gain folded into the projection
/// after it, pass `fold-norm-gains`).
pub fn fixed_values(p: &Program) -> HashSet<NodeId> {
    let mut fixed = HashSet::new();
    let Ok(order) = p.graph.topo_order() else {
        return fixed;
    };
    for id in order {
        let node = p.graph.node(id);
        let is_fixed = match &node.op {
            Op::Weight { .. } => true,
            Op::Input { .. } | Op::Positions { .. } | Op::CacheRead { .. } => false,
            op if op.is_sink() => false,
            // permuted once per session, then the same in every call
            Op::BlockPermute { .. } => fixed.contains(&p.graph.operands(id)[0]),
            _ => {
                let local = matches!(protocol_local(&node.op), Some(true))
                    || matches!(node.ty.domain, Domain::Private(_));
                local && p.graph.operands(id).iter().all(|x| fixed.contains(x))
            }
        };
        if is_fixed {
            fixed.insert(id);
        }
    }
    fixed
}

/// The party that may know the whole mask of fixed value `id` because it knows the value
/// itself: the one party whose private values (weights, and public values) it derives from
/// by local ops. `None` when none may — values of both parties, or a block-permuted
/// operand, whose permutation neither party knows — and for a value that is not fixed.
/// The runtime gives such an owner a one-sided mask (`B` = the owner's share, the other
/// party's share 0), which hides the value from the other party as well as two shares do.
pub fn mask_owner(p: &Program, id: NodeId) -> Option<Party> {
    let mut owner = None;
    let mut stack = vec![id];
    let mut seen = HashSet::new();
    while let Some(x) = stack.pop() {
        if !seen.insert(x) {
            continue;
        }
        let node = p.graph.node(x);
        match (&node.op, node.ty.domain) {
            (Op::BlockPermute { .. }, _) => return None,
            (Op::Weight { .. }, Domain::Private(q)) => match owner {
                Some(o) if o != q => return None,
                _ => owner = Some(q),
            },
            (Op::Weight { .. }, Domain::Public) => {}
            (op, _) if op.is_source() => return None,
            _ => stack.extend(p.graph.operands(x)),
        }
    }
    owner
}

/// `Some(true)` for ops that never communicate, whatever their operands.
fn protocol_local(op: &Op) -> Option<bool> {
    match op {
        Op::Mul
        | Op::Square
        | Op::MatMul
        | Op::CacheMatMul { .. }
        | Op::Drelu
        | Op::Compare { .. }
        | Op::Select
        | Op::SignSelect
        | Op::FaithfulTrunc { .. }
        | Op::StochasticTrunc { .. }
        | Op::RowMax
        | Op::B2A
        | Op::Lut { .. }
        | Op::Reveal { .. }
        | Op::Open
        | Op::BlockMatMul { .. }
        | Op::BlockPermute { .. } => None,
        _ => Some(true),
    }
}

fn shared(d: Domain) -> bool {
    matches!(d, Domain::Arith | Domain::Bool)
}

/// The protocol that computes `id` in a protocol-stage program; `fixed` is
/// [`fixed_values`] of the same program.
pub fn protocol_of(p: &Program, id: NodeId, fixed: &HashSet<NodeId>) -> Protocol {
    let node = p.graph.node(id);
    let xs = p.graph.operands(id);
    let dom = |i: usize| p.graph.node(xs[i]).ty.domain;
    let both_shared = || xs.len() == 2 && shared(dom(0)) && shared(dom(1));
    let any_fixed = || xs.iter().any(|x| fixed.contains(x));
    match &node.op {
        Op::Share { .. } => Protocol::Share,
        Op::Open if shared(dom(0)) => Protocol::Open,
        Op::BlockMatMul { .. } if fixed.contains(&xs[1]) => Protocol::BlockFixedMatMul,
        Op::BlockPermute { .. } => Protocol::Shuffle,
        Op::Reveal { .. } if shared(dom(0)) => Protocol::Reveal,
        Op::Reveal { to } if dom(0) != Domain::Private(*to) && dom(0) != Domain::Public => {
            Protocol::Reveal
        }
        Op::Mul if both_shared() && any_fixed() => Protocol::FixedMul,
        Op::Mul if both_shared() => Protocol::BeaverMul,
        Op::Square if shared(dom(0)) => Protocol::Square,
        Op::MatMul if both_shared() && fixed.contains(&xs[1]) => Protocol::FixedMatMul,
        Op::MatMul if both_shared() => Protocol::BeaverMatMul,
        Op::CacheMatMul { .. } if xs[..3].iter().all(|&x| shared(p.graph.node(x).ty.domain)) => {
            Protocol::CacheMatMul
        }
        Op::Compare { .. }
            if node.reads_opening && shared(dom(0)) && p.options.comparison == Comparison::Fss =>
        {
            Protocol::DreluOpened
        }
        Op::Drelu | Op::Compare { .. } if shared(dom(0)) => match p.options.comparison {
            Comparison::Fss => Protocol::DreluFss,
            Comparison::Gmw => Protocol::DreluGmw,
        },
        Op::Select
            if node.reads_opening && both_shared() && p.options.comparison == Comparison::Fss =>
        {
            Protocol::MuxOpened
        }
        Op::Select if both_shared() => Protocol::Mux,
        Op::SignSelect if xs.iter().all(|x| shared(p.graph.node(*x).ty.domain)) => {
            Protocol::SignSelect
        }
        Op::Lut { .. } if shared(dom(0)) => Protocol::Lut,
        Op::FaithfulTrunc { .. } if shared(dom(0)) => Protocol::FaithfulTrunc,
        Op::StochasticTrunc { .. } if shared(dom(0)) => Protocol::StochasticTrunc,
        Op::RowMax if shared(dom(0)) => Protocol::RowMaxTree,
        // FSS comparisons already give arithmetic shares of their bits: nothing to convert
        Op::B2A if shared(dom(0)) && p.options.comparison == Comparison::Gmw => Protocol::B2A,
        _ => Protocol::Local,
    }
}

/// The party that must hold a value's plaintext for a local op on it, if any: used by the
/// runtime to run a private-domain op at its owner only.
pub fn owner(d: Domain) -> Option<Party> {
    match d {
        Domain::Private(p) => Some(p),
        _ => None,
    }
}
