//! Evaluation of a costed plan for concrete calls.
//!
//! A plan's costs are polynomials in `seq`, `past` and `⌈log2 d⌉` terms. [`Prepared`]
//! compiles every node's polynomials once into a flat list of `(coefficient, monomial)`
//! terms over a shared monomial table; evaluating a call then computes each distinct
//! monomial once and each node with a few multiply-adds, with no allocation and no string
//! formatting per node. It also assigns every node to its layer, op-kind and protocol group.

use super::InspectError;
use comet_ir::poly::{MaxPoly, Mono, Poly, Sym, ceil_log2};
use comet_ir::{DimEnv, Node, NodeId, Program};
use std::collections::HashMap;

/// A range of compiled terms (or of a node's start-round polynomials).
#[derive(Debug, Clone, Copy)]
struct Span {
    lo: u32,
    hi: u32,
}

/// One node's compiled cost.
#[derive(Debug, Clone, Copy)]
struct Compiled {
    id: NodeId,
    rounds: Span,
    online: Span,
    offline: Span,
    ops: Span,
    /// Into `Prepared::starts`: the terms of the start-round maximum.
    start: Span,
}

/// One node's figures for one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NodeEval {
    pub start: u64,
    pub rounds: u64,
    pub online: u64,
    pub offline: u64,
    pub ops: u64,
}

/// A partition of the nodes into named groups.
#[derive(Debug, Clone, Default)]
pub(crate) struct Grouping {
    /// Group names, indexed by group.
    pub names: Vec<String>,
    /// The layer of each group (layer groups only).
    pub layers: Vec<Option<u32>>,
    /// The group of each prepared node.
    pub of_node: Vec<u32>,
}

/// A plan compiled for fast repeated evaluation.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    monos: Vec<Mono>,
    terms: Vec<(i64, u32)>,
    starts: Vec<Span>,
    nodes: Vec<Compiled>,
    /// Groups by layer, in report order (before layers, layers ascending, after layers).
    pub layers: Grouping,
    /// Groups by op kind (`scope.origin`, else the op's name).
    pub ops: Grouping,
    /// Groups by protocol.
    pub protocols: Grouping,
    /// Whether the plan reads a KV cache (so decode steps exist).
    pub kv_cache: bool,
    /// Nodes whose protocol exchanges messages.
    pub communicating: usize,
}

/// Interns monomials and compiles polynomials into terms.
#[derive(Default)]
struct TermTable {
    monos: Vec<Mono>,
    index: HashMap<Mono, u32>,
    terms: Vec<(i64, u32)>,
}

impl TermTable {
    fn compile(&mut self, p: &Poly) -> Span {
        let lo = self.terms.len() as u32;
        for (c, m) in Vec::<(i64, Mono)>::from(p.clone()) {
            let next = self.monos.len() as u32;
            let k = *self.index.entry(m.clone()).or_insert(next);
            if k == next {
                self.monos.push(m);
            }
            self.terms.push((c, k));
        }
        Span {
            lo,
            hi: self.terms.len() as u32,
        }
    }
}

/// The value of a symbol in a call.
fn sym_value(s: Sym, env: DimEnv) -> i128 {
    match s {
        Sym::Seq => env.seq as i128,
        Sym::Past => env.past as i128,
        Sym::Log2(d) => ceil_log2(d.eval(env)) as i128,
        Sym::Packed(_) => s.value(env),
    }
}

impl Prepared {
    /// Compiles `p`'s cost and round annotations; `plan` names it in errors.
    pub fn new(p: &Program, plan: &str) -> Result<Prepared, InspectError> {
        let plan_s = || plan.to_string();
        let costs = p
            .analyses
            .costs
            .as_ref()
            .ok_or_else(|| InspectError::NoCosts { plan: plan_s() })?;
        let rounds = p.analyses.rounds.as_ref();
        let order = p.canonical_order()?;
        let mut table = TermTable::default();
        let mut starts = Vec::new();
        let mut nodes = Vec::with_capacity(order.len());
        let mut groups = Groups::new(p, &order);
        let (mut kv_cache, mut communicating) = (false, 0);
        let empty = MaxPoly::default();
        for (pos, &id) in order.iter().enumerate() {
            let node = p.graph.node(id);
            let cost = costs.get(id).ok_or_else(|| InspectError::MissingCost {
                plan: plan_s(),
                node: node_label(id, node),
            })?;
            let cost = &cost.expected(p.options.sparsity.as_ref());
            let start = match rounds.and_then(|r| r.get(id)) {
                Some(s) => s,
                None if cost.rounds.is_zero() => &empty,
                None => {
                    return Err(InspectError::MissingRound {
                        plan: plan_s(),
                        node: node_label(id, node),
                    });
                }
            };
            let lo = starts.len() as u32;
            starts.extend(start.terms().iter().map(|t| table.compile(t)));
            nodes.push(Compiled {
                id,
                rounds: table.compile(&cost.rounds),
                online: table.compile(&cost.online_bits),
                offline: table.compile(&cost.offline_bits),
                ops: table.compile(&cost.local_ops),
                start: Span {
                    lo,
                    hi: starts.len() as u32,
                },
            });
            groups.add(pos, node, cost.protocol.name());
            kv_cache |= matches!(node.op, comet_ir::Op::CacheRead { .. });
            communicating += usize::from(cost.protocol.communicates());
        }
        let (layers, ops, protocols) = groups.finish();
        Ok(Prepared {
            monos: table.monos,
            terms: table.terms,
            starts,
            nodes,
            layers,
            ops,
            protocols,
            kv_cache,
            communicating,
        })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Evaluates every node for `env` into `out` (cleared first; one entry per node, in
    /// canonical order). A negative figure is a compiler bug and is reported as such.
    pub fn eval(
        &self,
        env: DimEnv,
        plan: &str,
        out: &mut Vec<NodeEval>,
    ) -> Result<(), InspectError> {
        let vals: Vec<i128> = self
            .monos
            .iter()
            .map(|m| {
                m.0.iter()
                    .map(|(s, e)| sym_value(*s, env).pow(*e))
                    .product()
            })
            .collect();
        let sum = |s: Span| -> i128 {
            self.terms[s.lo as usize..s.hi as usize]
                .iter()
                .map(|(c, m)| *c as i128 * vals[*m as usize])
                .sum()
        };
        out.clear();
        out.reserve(self.nodes.len());
        for n in &self.nodes {
            let start = self.starts[n.start.lo as usize..n.start.hi as usize]
                .iter()
                .map(|s| sum(*s))
                .max()
                .unwrap_or(0);
            let figures = [
                start,
                sum(n.rounds),
                sum(n.online),
                sum(n.offline),
                sum(n.ops),
            ];
            let mut v = [0u64; 5];
            for (i, f) in figures.into_iter().enumerate() {
                v[i] = u64::try_from(f).map_err(|_| self.negative(n.id, i, f, env, plan))?;
            }
            out.push(NodeEval {
                start: v[0],
                rounds: v[1],
                online: v[2],
                offline: v[3],
                ops: v[4],
            });
        }
        Ok(())
    }

    fn negative(
        &self,
        id: NodeId,
        what: usize,
        value: i128,
        env: DimEnv,
        plan: &str,
    ) -> InspectError {
        const WHAT: [&str; 5] = [
            "start round",
            "rounds",
            "online bits",
            "offline bits",
            "local ops",
        ];
        InspectError::OutOfRange {
            plan: plan.to_string(),
            node: id.to_string(),
            what: WHAT[what],
            value,
            seq: env.seq,
            past: env.past,
        }
    }
}

fn node_label(id: NodeId, node: &Node) -> String {
    format!("{id} (`{}`)", node.op.name())
}

/// Builds the three groupings while the nodes are compiled.
struct Groups {
    /// Whether a node (by canonical position) depends on some layer's output.
    after_layers: Vec<bool>,
    any_layer: bool,
    /// Sort key of each layer group: (class, layer or first position).
    layer_keys: Vec<(u8, u64)>,
    layers: Builder,
    ops: Builder,
    protocols: Builder,
}

#[derive(Default)]
struct Builder {
    index: HashMap<String, u32>,
    g: Grouping,
}

impl Builder {
    /// Puts the next node in group `name`; returns whether the group is new.
    fn add(&mut self, name: &str, layer: Option<u32>) -> bool {
        let next = self.g.names.len() as u32;
        let k = match self.index.get(name) {
            Some(k) => *k,
            None => {
                self.index.insert(name.to_string(), next);
                self.g.names.push(name.to_string());
                self.g.layers.push(layer);
                next
            }
        };
        self.g.of_node.push(k);
        k == next
    }
}

impl Groups {
    fn new(p: &Program, order: &[NodeId]) -> Groups {
        let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let mut after_layers = vec![false; order.len()];
        for (i, id) in order.iter().enumerate() {
            after_layers[i] = p.graph.operands(*id).iter().any(|x| {
                let j = pos[x];
                after_layers[j] || p.graph.node(*x).scope.layer.is_some()
            });
        }
        let any_layer = order
            .iter()
            .any(|id| p.graph.node(*id).scope.layer.is_some());
        Groups {
            after_layers,
            any_layer,
            layer_keys: Vec::new(),
            layers: Builder::default(),
            ops: Builder::default(),
            protocols: Builder::default(),
        }
    }

    /// Assigns the node at canonical position `pos`.
    fn add(&mut self, pos: usize, node: &Node, protocol: &str) {
        let (name, layer, key) = self.layer_of(pos, node);
        if self.layers.add(&name, layer) {
            self.layer_keys.push(key);
        }
        let origin = &node.scope.origin;
        self.ops.add(
            if origin.is_empty() {
                node.op.name()
            } else {
                origin
            },
            None,
        );
        self.protocols.add(protocol, None);
    }

    /// The layer row of a node: `layer i`; a top-level block's name; else `before
    /// layers` / `after layers` by whether it depends on a layer (`top level` without
    /// layers).
    fn layer_of(&self, pos: usize, node: &Node) -> (String, Option<u32>, (u8, u64)) {
        let scope = &node.scope;
        let class = if self.after_layers[pos] { 2 } else { 0 };
        if let Some(l) = scope.layer {
            return (format!("layer {l}"), Some(l), (1, l as u64));
        }
        if let Some(block) = scope.path.split('/').next().filter(|b| !b.is_empty()) {
            return (block.to_string(), None, (class, pos as u64));
        }
        let name = match (self.any_layer, class) {
            (false, _) => "top level",
            (true, 0) => "before layers",
            (true, _) => "after layers",
        };
        (name.to_string(), None, (class, pos as u64))
    }

    /// The groupings, layer groups renumbered into report order.
    fn finish(self) -> (Grouping, Grouping, Grouping) {
        let mut by_key: Vec<u32> = (0..self.layer_keys.len() as u32).collect();
        by_key.sort_by_key(|g| self.layer_keys[*g as usize]);
        let mut rank = vec![0u32; by_key.len()];
        for (r, g) in by_key.iter().enumerate() {
            rank[*g as usize] = r as u32;
        }
        let old = self.layers.g;
        let layers = Grouping {
            names: by_key
                .iter()
                .map(|g| old.names[*g as usize].clone())
                .collect(),
            layers: by_key.iter().map(|g| old.layers[*g as usize]).collect(),
            of_node: old.of_node.iter().map(|g| rank[*g as usize]).collect(),
        };
        (layers, self.ops.g, self.protocols.g)
    }
}

/// Per-group sums for one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sums {
    /// Rounds in which the group communicates (union of its nodes' round intervals).
    pub rounds: u64,
    /// Σ of own rounds.
    pub rounds_unmerged: u64,
    pub online: u64,
    pub offline: u64,
    pub ops: u64,
}

/// The whole call: merged rounds = the latest finish over all nodes.
pub(crate) fn call_sums(vals: &[NodeEval]) -> Sums {
    let mut s = Sums::default();
    for v in vals {
        s.rounds = s.rounds.max(v.start + v.rounds);
        s.rounds_unmerged += v.rounds;
        s.online += v.online;
        s.offline += v.offline;
        s.ops += v.ops;
    }
    s
}

/// Sums per group of `g`. A group's `rounds` counts the rounds in which any of its nodes
/// exchanges: the size of the union of `[start, start + rounds)` over its nodes.
pub(crate) fn group_sums(g: &Grouping, vals: &[NodeEval]) -> Vec<Sums> {
    let mut out = vec![Sums::default(); g.names.len()];
    let mut intervals = Vec::new();
    for (v, k) in vals.iter().zip(&g.of_node) {
        let s = &mut out[*k as usize];
        s.rounds_unmerged += v.rounds;
        s.online += v.online;
        s.offline += v.offline;
        s.ops += v.ops;
        if v.rounds > 0 {
            intervals.push((*k, v.start, v.start + v.rounds));
        }
    }
    intervals.sort_unstable();
    let mut cur: Option<(u32, u64, u64)> = None;
    for (k, lo, hi) in intervals {
        cur = match cur {
            Some((ck, clo, chi)) if ck == k && lo <= chi => Some((ck, clo, chi.max(hi))),
            Some((ck, clo, chi)) => {
                out[ck as usize].rounds += chi - clo;
                Some((k, lo, hi))
            }
            None => Some((k, lo, hi)),
        };
    }
    if let Some((k, lo, hi)) = cur {
        out[k as usize].rounds += hi - lo;
    }
    out
}
