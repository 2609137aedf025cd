//! The dataflow graph: a petgraph `StableDiGraph` behind typed handles.
//!
//! Nodes are ops; an edge `a → b` with weight `i` says that `a` is `b`'s operand number `i`.
//! The edges are the only record of operands, so there is one truth to keep consistent.
//! `NodeId`s stay valid when other nodes are removed (stable indices) and are only ever
//! handed out by this type: no raw index leaks to callers.

use crate::op::Op;
use crate::types::ValueType;
use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use std::fmt;

/// A handle to a node of one [`Graph`]. Displays as `%n` (its index in the graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(NodeIndex<u32>);

impl NodeId {
    /// The id with index `i` (ids of a graph are its node indices; for tests and files).
    pub fn from_index(i: usize) -> NodeId {
        NodeId(NodeIndex::new(i))
    }

    /// The node's index.
    pub fn index(self) -> usize {
        self.0.index()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0.index())
    }
}

/// Where a node came from in the source: the block instance path and layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Block path, e.g. `decoder.3/attention` (empty at top level).
    pub path: String,
    /// Layer index: the index of the outermost indexed block instance, if any.
    pub layer: Option<u32>,
    /// The source-level operation this node implements (`softmax` for the squarings of
    /// its exponential); empty when it is the node's own op.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
}

/// One operation with its result type and origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What it computes.
    pub op: Op,
    /// The type of its result.
    pub ty: ValueType,
    /// Where it came from.
    pub scope: Scope,
    /// For a comparison (`drelu`; `row_max`, whose pairwise differences are compared): a
    /// signed bit width m (2..=64) that its compared values are known to fit,
    /// −2^(m−1) ≤ x < 2^(m−1), so that the protocol may work mod 2^m. For a stochastic
    /// truncation ([`Op::StochasticTrunc`]): the signed width m of its input, with the
    /// gate's headroom bit, −2^(m−2) ≤ x < 2^(m−2) (as at 64 bits, `|x| < 2^62`), so that
    /// it opens x masked mod 2^m, m bits per element; it must satisfy s + 2 ≤ m ≤ 64 for a
    /// shift of s bits. `None` (every node as built) is the whole 64-bit ring. A pass that
    /// knows value ranges sets it; passes that rebuild nodes through [`Graph::add`] drop
    /// it, so it is set late. For a product that opens masked operands (a Beaver or
    /// fixed-operand product, a select, a square, a product with the KV cache) and for a
    /// table lookup (whose second round opens its masked sum): the width w its value is
    /// read at, 8 to 63 bits (pass `narrow-openings`): its openings are taken
    /// mod 2^w and packed at w bits, and its value's shares are correct mod 2^w only.
    pub cmp_width: Option<u8>,
    /// For a sign select whose y is its x (a fused ReLU) and a row maximum (whose levels
    /// are such selects), both at a comparison width m below 64: the masked `x + r` is
    /// opened mod 2^m only (it also serves as ŷ), so its output's shares are correct mod
    /// 2^m only. Set by pass `narrow-openings` when every reader reads at most m bits.
    pub open_at_cmp_width: bool,
    /// For an FSS comparison whose operand is a stochastic truncation (pass
    /// `fuse-trunc-openings`): it reads the truncation's opened masked value instead of
    /// opening its own. The truncation opens `ŷ = y + r mod 2^m` and so, for free,
    /// `t + ⌊r / 2^s⌋ mod 2^(m−s)` of its output t; the dealer keys the comparison on
    /// that mask, so the comparison sends nothing and finishes in the truncation's round
    /// ([`crate::protocol::Protocol::DreluOpened`]). Requires the truncation's width
    /// minus its shift to be at least the comparison's width. Likewise for a select whose
    /// x (its second operand) is such a truncation: `x − a` is that opening with
    /// `a = −⌊r / 2^s⌋`, so only its bits are opened
    /// ([`crate::protocol::Protocol::MuxOpened`]); its width (the one its value is read at)
    /// must be covered the same way.
    pub reads_opening: bool,
}

impl Node {
    /// The width its comparisons (or its stochastic truncation) work at:
    /// [`Node::cmp_width`], or 64 when unset.
    pub fn comparison_bits(&self) -> u32 {
        self.cmp_width.map_or(64, u32::from)
    }
}

/// Whether `op` may carry a [`Node::cmp_width`]: the comparisons, the stochastic
/// truncation (the width of its input), and the products that open masked operands (the
/// width their value is read at).
pub fn takes_cmp_width(op: &Op) -> bool {
    takes_open_width(op)
        || matches!(
            op,
            Op::Drelu
                | Op::Compare { .. }
                | Op::RowMax
                | Op::SignSelect
                | Op::StochasticTrunc { .. }
        )
}

/// Whether `op` is a product whose [`Node::cmp_width`] is the width of its openings.
pub fn takes_open_width(op: &Op) -> bool {
    matches!(
        op,
        Op::Mul
            | Op::Square
            | Op::MatMul
            | Op::CacheMatMul { .. }
            | Op::BlockMatMul { .. }
            | Op::Select
            | Op::Lut { .. }
    )
}

/// A dataflow DAG of [`Node`]s. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    g: StableDiGraph<Node, u32>,
}

/// A cycle was found through this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the graph has a cycle (it involves {0})")]
pub struct CycleError(pub NodeId);

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node whose operands are `inputs`, in order.
    pub fn add(&mut self, op: Op, inputs: &[NodeId], ty: ValueType, scope: Scope) -> NodeId {
        let n = self.g.add_node(Node {
            op,
            ty,
            scope,
            cmp_width: None,
            open_at_cmp_width: false,
            reads_opening: false,
        });
        for (i, x) in inputs.iter().enumerate() {
            self.g.add_edge(x.0, n, i as u32);
        }
        NodeId(n)
    }

    /// The node behind a handle.
    ///
    /// # Panics
    /// If `id` was removed: handles are only invalidated by [`Graph::remove`].
    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id.0]
    }

    /// Mutable access to a node.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.g[id.0]
    }

    /// Whether the handle refers to a live node.
    pub fn contains(&self, id: NodeId) -> bool {
        self.g.contains_node(id.0)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    /// Whether the graph has no node.
    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    /// All node handles in creation order.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices().map(NodeId)
    }

    /// Operands of `id` with their edge positions, sorted by position.
    pub fn operand_edges(&self, id: NodeId) -> Vec<(u32, NodeId)> {
        let mut v: Vec<(u32, NodeId)> = self
            .g
            .edges_directed(id.0, Direction::Incoming)
            .map(|e| (*e.weight(), NodeId(e.source())))
            .collect();
        v.sort();
        v
    }

    /// Operands of `id`, in order.
    pub fn operands(&self, id: NodeId) -> Vec<NodeId> {
        self.operand_edges(id).into_iter().map(|(_, n)| n).collect()
    }

    /// Nodes that use `id`, in creation order (with repeats if used twice).
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .g
            .edges_directed(id.0, Direction::Outgoing)
            .map(|e| NodeId(e.target()))
            .collect();
        v.sort();
        v
    }

    /// Removes a node and its edges.
    pub fn remove(&mut self, id: NodeId) -> Option<Node> {
        self.g.remove_node(id.0)
    }

    /// Adds an edge making `from` operand number `pos` of `to` (for passes and tests that
    /// rewire; the verifier checks the result).
    pub fn connect(&mut self, from: NodeId, to: NodeId, pos: u32) {
        self.g.add_edge(from.0, to.0, pos);
    }

    /// Replaces the operands of `id` by `inputs`, in order (for passes that rewrite a node
    /// in place, keeping its index; the verifier checks the result).
    pub fn set_operands(&mut self, id: NodeId, inputs: &[NodeId]) {
        let old: Vec<petgraph::stable_graph::EdgeIndex<u32>> = (self.g)
            .edges_directed(id.0, Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.g.remove_edge(e);
        }
        for (i, x) in inputs.iter().enumerate() {
            self.g.add_edge(x.0, id.0, i as u32);
        }
    }

    /// Makes every user of `old` use `new` instead.
    pub fn replace_uses(&mut self, old: NodeId, new: NodeId) {
        let uses: Vec<(petgraph::stable_graph::EdgeIndex<u32>, NodeIndex<u32>, u32)> = self
            .g
            .edges_directed(old.0, Direction::Outgoing)
            .map(|e| (e.id(), e.target(), *e.weight()))
            .collect();
        for (e, target, pos) in uses {
            self.g.remove_edge(e);
            self.g.add_edge(new.0, target, pos);
        }
    }

    /// Nodes in a deterministic topological order (Kahn's algorithm, lowest index first),
    /// or the first node found on a cycle.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, CycleError> {
        let mut indeg: std::collections::BTreeMap<NodeIndex<u32>, usize> = self
            .g
            .node_indices()
            .map(|n| (n, self.g.edges_directed(n, Direction::Incoming).count()))
            .collect();
        let mut ready: std::collections::BTreeSet<NodeIndex<u32>> = indeg
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut order = Vec::with_capacity(indeg.len());
        while let Some(n) = ready.pop_first() {
            order.push(NodeId(n));
            for e in self.g.edges_directed(n, Direction::Outgoing) {
                let d = indeg.get_mut(&e.target()).expect("edge to a live node");
                *d -= 1;
                if *d == 0 {
                    ready.insert(e.target());
                }
            }
        }
        if order.len() == indeg.len() {
            return Ok(order);
        }
        let done: std::collections::HashSet<NodeId> = order.into_iter().collect();
        let stuck = indeg.keys().map(|n| NodeId(*n)).find(|n| !done.contains(n));
        Err(CycleError(
            stuck.expect("some node is left when the order is short"),
        ))
    }

    /// Removes every node from which no sink is reachable. Returns how many were removed.
    pub fn remove_dead(&mut self) -> usize {
        let mut live = std::collections::HashSet::new();
        let mut stack: Vec<NodeIndex<u32>> = self
            .g
            .node_indices()
            .filter(|n| self.g[*n].op.is_sink())
            .collect();
        while let Some(n) = stack.pop() {
            if live.insert(n) {
                stack.extend(self.g.neighbors_directed(n, Direction::Incoming));
            }
        }
        let dead: Vec<NodeIndex<u32>> = self
            .g
            .node_indices()
            .filter(|n| !live.contains(n))
            .collect();
        for n in &dead {
            self.g.remove_node(*n);
        }
        dead.len()
    }
}
