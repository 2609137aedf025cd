//! The verifier.
//!
//! [`verify`] checks, in this order (later checks assume the earlier ones passed):
//! 1. **Handles**: every node's operand positions are exactly `0..n` and `n` fits the
//!    op's arity; no node reads a sink (`output`, `cache_write`).
//! 2. **Acyclic**: the graph is a DAG.
//! 3. **Sources agree with the declarations**: each `input` and `weight` node names a
//!    declared input/weight and has its declared element kind, shape and provider's
//!    domain; `positions` are public `idx[seq]`; every declared weight has exactly one node.
//!    Whatever depends on a sparse FFN's masked region works entry by entry up to its
//!    block product ([`crate::sparse::check_regions`]); a node of a region or a
//!    `block_matmul` carries a width only if its blocks are a multiple of 8 entries.
//! 4. **Types**: every other node's type equals the type rule ([`crate::infer`]) applied to
//!    its operands. The rules enforce shapes, fixed-point scales (an op that mixes scales
//!    needs a truncation between) and domains (a result's domain is the join of its
//!    operands', so two parties' private values only meet in shares; an output is
//!    readable by its receiver only after a `reveal`).
//! 5. **KV cache**: each slot has one `cache_read` `[h, past, k]` and one `cache_write`
//!    `[h, past + seq, k]` of the same element kind and domain; a head-masked
//!    `cache_matmul`'s mask is the mask of a head-sparse unit's `block_matmul` (whose
//!    unit its costs and the runtime's counts name).
//! 6. **Outputs**: each declared output has exactly one `output` node and vice versa.
//! 7. **Rounds** (when scheduled): a node starts no earlier than its operands finish
//!    (rounds never decrease along an edge), at sample values of `seq` and `past`.
//!
//! It runs after every pass in debug builds and in tests.

use crate::dim::{Dim, DimEnv, shape_string};
use crate::graph::NodeId;
use crate::infer::infer;
use crate::op::Op;
use crate::poly::Poly;
use crate::program::Program;
use crate::protocol::Protocol;
use crate::types::{Domain, Elem, ValueType};
use std::collections::BTreeMap;

/// Sizes at which symbolic round numbers are compared.
const SAMPLE_ENVS: [DimEnv; 4] = [
    DimEnv { seq: 1, past: 0 },
    DimEnv { seq: 7, past: 0 },
    DimEnv { seq: 1, past: 100 },
    DimEnv {
        seq: 128,
        past: 1000,
    },
];

/// The problems found, one line each, naming the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the IR is invalid:\n  {}", .problems.join("\n  "))]
pub struct VerifyError {
    /// One line per problem.
    pub problems: Vec<String>,
}

struct Checker<'a> {
    p: &'a Program,
    problems: Vec<String>,
}

/// Checks every invariant listed in the module docs.
pub fn verify(p: &Program) -> Result<(), VerifyError> {
    let mut c = Checker {
        p,
        problems: Vec::new(),
    };
    c.handles();
    if c.problems.is_empty() {
        c.acyclic();
    }
    if c.problems.is_empty() {
        c.sources();
        c.widths();
        c.block_widths();
        c.types();
        c.cache();
        c.outputs();
        c.rounds();
    }
    match c.problems.is_empty() {
        true => Ok(()),
        false => Err(VerifyError {
            problems: c.problems,
        }),
    }
}

impl Checker<'_> {
    fn fail(&mut self, id: NodeId, msg: impl std::fmt::Display) {
        let op = self.p.graph.node(id).op.name();
        self.problems.push(format!("{id} ({op}): {msg}"));
    }

    fn handles(&mut self) {
        let g = &self.p.graph;
        for id in g.ids() {
            let edges = g.operand_edges(id);
            let contiguous = edges
                .iter()
                .enumerate()
                .all(|(i, (pos, _))| *pos == i as u32);
            let arity = g.node(id).op.arity();
            if !contiguous || !arity.accepts(edges.len()) {
                self.fail(
                    id,
                    format!("has operands {edges:?}, expected {arity} at positions 0.."),
                );
            }
            for (_, x) in edges {
                if g.node(x).op.is_sink() {
                    self.fail(id, format!("reads the sink {x}"));
                }
            }
        }
    }

    fn acyclic(&mut self) {
        if let Err(e) = self.p.graph.topo_order() {
            self.fail(e.0, "is on a cycle");
        }
    }

    fn sources(&mut self) {
        let mut weight_nodes: BTreeMap<&str, usize> = BTreeMap::new();
        for id in self.p.graph.ids() {
            let node = self.p.graph.node(id);
            let expected = match &node.op {
                Op::Input { name, party } => self.input_type(name, *party),
                Op::Weight { name } => {
                    *weight_nodes.entry(name.as_str()).or_default() += 1;
                    self.weight_type(name)
                }
                Op::Positions { .. } => {
                    Ok(ValueType::new(Elem::Index, vec![Dim::SEQ], Domain::Public))
                }
                _ => continue,
            };
            match expected {
                Ok(t) if t == node.ty => {}
                Ok(t) => self.fail(id, format!("has type {}, declared {t}", node.ty)),
                Err(msg) => self.fail(id, msg),
            }
        }
        for w in &self.p.info.weights {
            let n = weight_nodes.get(w.name.as_str()).copied().unwrap_or(0);
            if n != 1 {
                self.problems
                    .push(format!("weight `{}` has {n} nodes, expected 1", w.name));
            }
        }
    }

    fn input_type(&self, name: &str, party: crate::types::Party) -> Result<ValueType, String> {
        let i = self
            .p
            .info
            .input(name)
            .ok_or(format!("input `{name}` is not declared"))?;
        if i.party != party {
            return Err(format!(
                "input `{name}` is provided by the {}, not the {party}",
                i.party
            ));
        }
        Ok(ValueType::new(
            i.elem,
            i.shape.clone(),
            Domain::Private(party),
        ))
    }

    fn weight_type(&self, name: &str) -> Result<ValueType, String> {
        let w = self
            .p
            .info
            .weight(name)
            .ok_or(format!("weight `{name}` is not declared"))?;
        let shape = w.shape.iter().map(|d| Dim::constant(*d as i64)).collect();
        let elem = Elem::Fixed {
            scale: self.p.info.format.frac,
        };
        Ok(ValueType::new(elem, shape, Domain::Private(w.party)))
    }

    /// A node that reads its operand's opening: an FSS comparison of a stochastic
    /// truncation, or a select of one, whose opening covers the reader's width
    /// (`m − s ≥ w`).
    fn reads_opening(&mut self, id: NodeId) {
        let g = &self.p.graph;
        let node = g.node(id);
        let fss = self.p.options.comparison == crate::program::Comparison::Fss;
        let k = match node.op {
            Op::Select => 1,
            _ => 0,
        };
        let x = g.operands(id).get(k).map(|&x| g.node(x));
        let covered = match (x.map(|x| (&x.op, x.comparison_bits())), &node.op) {
            (Some((Op::StochasticTrunc { bits }, m)), Op::Compare { .. } | Op::Select) => {
                m >= bits + node.comparison_bits()
            }
            _ => false,
        };
        if !fss || !covered {
            self.fail(
                id,
                "reads its operand's opening, which only an FSS comparison of a stochastic \
                 truncation, or a select of one, whose width minus its shift covers the \
                 reader's width can"
                    .to_string(),
            );
        }
    }

    /// Comparison widths only on comparisons and stochastic truncations, within 2..=64
    /// bits; a truncation's at least its shift plus 2.
    fn widths(&mut self) {
        let g = &self.p.graph;
        for id in g.ids() {
            let node = g.node(id);
            let several = matches!(&node.op, Op::Compare { thresholds } if thresholds.len() > 1);
            if several && self.p.options.comparison == crate::program::Comparison::Gmw {
                self.fail(
                    id,
                    "compares with several thresholds, which needs FSS comparisons (one \
                     DCF key for all); GMW plans compare each threshold with a `drelu`"
                        .to_string(),
                );
            }
            if node.open_at_cmp_width {
                let fused_relu =
                    matches!(node.op, Op::SignSelect) && self.p.graph.operands(id).len() == 1;
                let narrowed = node.cmp_width.is_some_and(|w| w < 64);
                if !(fused_relu || matches!(node.op, Op::RowMax)) || !narrowed {
                    self.fail(
                        id,
                        "opens at its comparison width, which only a sign select of x by \
                         its own sign or a row maximum, narrowed below 64 bits, can"
                            .to_string(),
                    );
                }
            }
            if node.reads_opening {
                self.reads_opening(id);
            }
            let Some(w) = node.cmp_width else { continue };
            if !crate::graph::takes_cmp_width(&node.op) {
                self.fail(
                    id,
                    format!("has a comparison width ({w} bits) but compares nothing"),
                );
            } else if let Op::StochasticTrunc { bits } = node.op {
                if u32::from(w) < bits + 2 || w > 64 {
                    self.fail(
                        id,
                        format!(
                            "truncates by {bits} bits at width {w}: a stochastic truncation's \
                             width must be {} to 64 bits (the shift plus 2: at width m its \
                             input, in [−2^(m−2), 2^(m−2)), is offset by 2^(m−2), which must \
                             be a multiple of 2^{bits})",
                            bits + 2
                        ),
                    );
                }
            } else if crate::graph::takes_open_width(&node.op) {
                if !(8..=64).contains(&w) {
                    self.fail(
                        id,
                        format!(
                            "opens its operands at width {w}: a product's width is 8 \
                             to 64 bits"
                        ),
                    );
                }
            } else if !(2..=64).contains(&w) {
                self.fail(id, format!("comparison width {w} is outside 2..=64 bits"));
            }
        }
    }

    /// Regions stay in their FFN ([`crate::sparse::check_regions`]), and no node of a
    /// sparse FFN's masked region, and no `block_matmul`, whose blocks do not pack to whole
    /// bytes ([`crate::sparse::packs_whole`]) carries a width: the runtime runs them at 64
    /// bits, and their costs per pair say so.
    fn block_widths(&mut self) {
        let masked = crate::sparse::masked_nodes(self.p);
        if let Err(e) = crate::sparse::check_regions(self.p, &masked) {
            self.problems.push(e);
        }
        for id in self.p.graph.ids() {
            let block = crate::sparse::block_of(self.p, &masked, id);
            let w = self.p.graph.node(id).cmp_width;
            if let (Some(block), Some(w)) = (block, w)
                && !crate::sparse::packs_whole(block)
            {
                self.fail(
                    id,
                    format!(
                        "has width {w} in a sparse FFN of blocks of {block}: only blocks of a \
                         multiple of 8 entries run narrow"
                    ),
                );
            }
        }
    }

    fn types(&mut self) {
        let g = &self.p.graph;
        for id in g.ids() {
            let node = g.node(id);
            if node.op.is_source() {
                continue;
            }
            let operands: Vec<&ValueType> = g.operands(id).iter().map(|x| &g.node(*x).ty).collect();
            match infer(&node.op, &operands, self.p.ctx()) {
                Ok(t) if t == node.ty => {}
                Ok(t) => self.fail(id, format!("has type {}, its operands give {t}", node.ty)),
                Err(e) => self.fail(id, e),
            }
        }
    }

    fn cache(&mut self) {
        let mut reads = BTreeMap::new();
        let mut writes = BTreeMap::new();
        for id in self.p.graph.ids() {
            match self.p.graph.node(id).op {
                Op::CacheRead { slot } => reads.entry(slot).or_insert_with(Vec::new).push(id),
                Op::CacheWrite { slot } => writes.entry(slot).or_insert_with(Vec::new).push(id),
                _ => {}
            }
        }
        self.head_masks();
        let slots: std::collections::BTreeSet<u32> =
            reads.keys().chain(writes.keys()).copied().collect();
        for slot in slots {
            match (
                reads.get(&slot).map(Vec::as_slice),
                writes.get(&slot).map(Vec::as_slice),
            ) {
                (Some([r]), Some([w])) => self.cache_pair(*r, *w),
                _ => self.problems.push(format!(
                    "cache slot {slot} needs one cache_read and one cache_write"
                )),
            }
        }
    }

    fn head_masks(&mut self) {
        let g = &self.p.graph;
        let first = (self.p.options.sparsity.as_ref())
            .and_then(|s| s.heads.as_ref())
            .map(|h| h.first);
        for id in g
            .ids()
            .filter(|&id| crate::sparse::is_head_masked(self.p, id))
        {
            let mask = g.operands(id)[3];
            let unit = crate::sparse::mask_unit(self.p, mask);
            if !matches!((unit, first), (Some(u), Some(f)) if u >= f) {
                self.fail(
                    id,
                    format!(
                        "its head mask {mask} is not the mask of a head-sparse attention's \
                         block_matmul"
                    ),
                );
            }
        }
    }

    fn cache_pair(&mut self, r: NodeId, w: NodeId) {
        let (rt, wt) = (&self.p.graph.node(r).ty, &self.p.graph.node(w).ty);
        let shape_ok = rt.shape.len() == 3
            && rt.shape[1] == Dim::PAST
            && wt.shape.len() == 3
            && wt.shape[1] == (Dim::PAST + Dim::SEQ)
            && rt.shape[0] == wt.shape[0]
            && rt.shape[2] == wt.shape[2];
        if !shape_ok || rt.elem != wt.elem || rt.domain != wt.domain {
            let msg = format!(
                "reads {} {} but its slot is written as {} {}",
                shape_string(&rt.shape),
                rt.domain,
                shape_string(&wt.shape),
                wt.domain
            );
            self.fail(r, msg);
        }
    }

    fn outputs(&mut self) {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for id in self.p.graph.ids() {
            if let Op::Output { name, party } = &self.p.graph.node(id).op {
                *seen.entry(name.as_str()).or_default() += 1;
                let declared = self
                    .p
                    .info
                    .outputs
                    .iter()
                    .any(|o| &o.name == name && o.party == *party);
                if !declared {
                    self.fail(
                        id,
                        format!("output `{name}` to the {party} is not declared"),
                    );
                }
            }
        }
        for o in &self.p.info.outputs {
            let n = seen.get(o.name.as_str()).copied().unwrap_or(0);
            if n != 1 {
                self.problems
                    .push(format!("output `{}` has {n} nodes, expected 1", o.name));
            }
        }
    }

    /// Every node starts no earlier than each operand finishes (its start plus its own
    /// rounds), checked at sample sizes since rounds may depend on `seq` and `past`; a
    /// comparison that reads its truncation's opening starts in the truncation's round.
    fn rounds(&mut self) {
        let Some(rounds) = &self.p.analyses.rounds else {
            return;
        };
        let costs = self.p.analyses.costs.as_ref();
        let own = |x: NodeId| {
            costs
                .and_then(|c| c.get(x))
                .map_or(Poly::zero(), |c| c.rounds.clone())
        };
        let reads_opening = |id: NodeId| {
            (costs.and_then(|c| c.get(id))).is_some_and(|c| c.protocol == Protocol::DreluOpened)
        };
        for id in self.p.graph.ids() {
            let Some(r) = rounds.get(id) else { continue };
            for x in self.p.graph.operands(id) {
                let Some(rx) = rounds.get(x) else { continue };
                if reads_opening(id) {
                    if let Some(env) = SAMPLE_ENVS.iter().find(|e| r.eval(**e) != rx.eval(**e)) {
                        let msg = format!(
                            "reads the opening of {x}, so starts in its round {rx}, not {r} \
                             (seq = {}, past = {})",
                            env.seq, env.past
                        );
                        self.fail(id, msg);
                    }
                    continue;
                }
                let done = rx.plus(&own(x));
                if let Some(env) = SAMPLE_ENVS.iter().find(|e| r.eval(**e) < done.eval(**e)) {
                    let msg = format!(
                        "starts in round {r} but its operand {x} finishes in round {done} (seq = {}, past = {})",
                        env.seq, env.past
                    );
                    self.fail(id, msg);
                }
            }
        }
    }
}
