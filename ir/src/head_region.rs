//! The head-masked attention cores of a head-sparse plan (issue 14; docs/sparsity.md).
//!
//! In a head-sparse attention whose two products with the KV cache are both head-masked
//! (`q·kᵀ` and `p·v` read the public head mask `[seq, G]`), the nodes between them — the
//! scaling, the causal mask and the softmax, on `[H, seq, ..]` values — form the
//! attention's **core**. Its communicating nodes run on the **active rows** only: the rows
//! `(h, s)` of query heads whose KV group is active at token `s` (`H/G` rows per active
//! (token, group) pair), their operands and (dense) dealer material gathered there, the
//! protocol run as on a `[rows, ..]` tensor, and the result scattered back (zeros at the
//! inactive rows, which only `p·v` reads and ignores). Local nodes run on every row.
//!
//! The cost model and the runtime both call [`head_regions`], so the rows estimated are
//! the rows computed. A gathered node's cost is the same protocol's cost at the gathered
//! shape [`HeadRegion::gathered`], evaluated in [`HeadRegion::env`]: there `seq` counts
//! the active rows and `past` is the call's key length `past + seq`.

use crate::dim::{Dim, DimEnv, Shape};
use crate::graph::NodeId;
use crate::op::Op;
use crate::program::{Comparison, Program};
use crate::protocol::{Protocol, fixed_values, protocol_of};
use std::collections::{HashMap, HashSet};

/// The core of one head-masked attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadRegion {
    /// The attention's sparse unit (its `block_matmul`'s `ffn`).
    pub unit: u32,
    /// The public head mask `[seq, G]`.
    pub mask: NodeId,
    /// Query heads `H` (the core's leading axis).
    pub heads: u64,
    /// KV groups `G`: query heads `g·H/G .. (g+1)·H/G` read group `g`.
    pub groups: u64,
}

impl HeadRegion {
    /// Rows of the core per active (token, group) pair: `H/G`.
    pub fn rows_per_pair(&self) -> u64 {
        self.heads / self.groups
    }

    /// The sizes a gathered node's cost is evaluated at: `seq` = the active rows
    /// (`active` pairs times [`HeadRegion::rows_per_pair`]), `past` = the call's key length.
    pub fn env(&self, env: DimEnv, active: u64) -> DimEnv {
        gathered_env(env, active, self.rows_per_pair())
    }

    /// A core value's shape `[H, seq, rest..]` as gathered: `[rows, rest..]`, with `rows`
    /// written as `seq` and each dim of `rest` (a function of the key length
    /// `t = past + seq`) written with `past` for `t` ([`HeadRegion::env`]).
    ///
    /// # Panics
    /// If the shape is not one of the core's ([`is_core_shape`]).
    pub fn gathered(&self, shape: &[Dim]) -> Shape {
        assert!(
            is_core_shape(shape, self.heads),
            "not a core shape: {shape:?}"
        );
        let rest = shape[2..].iter().map(|d| Dim {
            seq: 0,
            past: d.past,
            c: d.c,
        });
        std::iter::once(Dim::SEQ).chain(rest).collect()
    }

    /// The flat row indices `h·seq + s` of the active rows for the mask's bits `[seq, G]`
    /// (`bits[s·G + g]`), in increasing order.
    pub fn active_rows(&self, seq: usize, bits: &[bool]) -> Vec<usize> {
        let (g, per) = (self.groups as usize, self.rows_per_pair() as usize);
        let mut rows = Vec::new();
        for h in 0..self.heads as usize {
            for s in 0..seq {
                if bits.get(s * g + h / per).copied().unwrap_or(false) {
                    rows.push(h * seq + s);
                }
            }
        }
        rows
    }
}

/// The sizes a gathered core node's cost is evaluated at for a call of sizes `env` with
/// `active` (token, group) pairs of `rows_per_pair` rows each: `seq` = the active rows,
/// `past` = the call's key length `past + seq`.
pub fn gathered_env(env: DimEnv, active: u64, rows_per_pair: u64) -> DimEnv {
    DimEnv {
        seq: active * rows_per_pair,
        past: env.past + env.seq,
    }
}

/// Whether `shape` is `[H, seq, rest..]` with a non-empty `rest` of functions of the key
/// length `past + seq` only.
pub fn is_core_shape(shape: &[Dim], heads: u64) -> bool {
    shape.len() >= 3
        && shape[0].as_const() == Some(heads as i64)
        && shape[1] == Dim::SEQ
        && shape[2..].iter().all(|d| d.seq == d.past)
}

/// Whether `op` keeps rows apart: its row `(h, s)` reads only its operands' rows `(h, s)`.
fn row_wise(op: &Op) -> bool {
    crate::sparse::is_elementwise(op)
        || matches!(
            op,
            Op::RowSum
                | Op::RowMax
                | Op::CausalMask
                | Op::Compare { .. }
                | Op::Pick { .. }
                | Op::Lut { .. }
                | Op::Slice { .. }
                | Op::StochasticTrunc { .. }
        )
        || matches!(op, Op::Concat { axis } if *axis >= 2)
}

/// The protocols a core node may run on gathered rows.
fn gathers(p: Protocol) -> bool {
    matches!(
        p,
        Protocol::BeaverMul
            | Protocol::Square
            | Protocol::DreluFss
            | Protocol::Mux
            | Protocol::Lut
            | Protocol::SignSelect
            | Protocol::FaithfulTrunc
            | Protocol::StochasticTrunc
            | Protocol::RowMaxTree
    )
}

/// Every node of every head-masked attention core, with its region. An attention has a
/// core only when both its cache products are head-masked, comparisons are FSS, and every
/// node between them is row-wise on `[H, seq, ..]` values, read only inside the core or by
/// `p·v` (as its left operand), with gathered protocols only; otherwise its core runs on
/// every row (and none of its nodes is listed).
pub fn head_regions(p: &Program) -> HashMap<NodeId, HeadRegion> {
    let mut out = HashMap::new();
    if p.options.comparison != Comparison::Fss {
        return out;
    }
    let Ok(order) = p.graph.topo_order() else {
        return out;
    };
    let fixed = fixed_values(p);
    for &pv in &order {
        if let Some((region, nodes)) = core_of(p, pv, &order, &fixed) {
            out.extend(nodes.into_iter().map(|n| (n, region)));
        }
    }
    out
}

/// The core ending at `pv`, if `pv` is a head-masked `p·v` with one.
fn core_of(
    p: &Program,
    pv: NodeId,
    order: &[NodeId],
    fixed: &HashSet<NodeId>,
) -> Option<(HeadRegion, Vec<NodeId>)> {
    let g = &p.graph;
    if !crate::sparse::is_head_masked(p, pv)
        || matches!(
            g.node(pv).op,
            Op::CacheMatMul {
                transpose: true,
                ..
            }
        )
    {
        return None;
    }
    let xs = g.operands(pv);
    let (probs, mask) = (xs[0], xs[3]);
    let heads = g.node(probs).ty.shape.first()?.as_const()? as u64;
    let groups = g.node(mask).ty.shape.get(1)?.as_const()? as u64;
    if groups == 0 || !heads.is_multiple_of(groups) {
        return None;
    }
    let region = HeadRegion {
        unit: crate::sparse::mask_unit(p, mask)?,
        mask,
        heads,
        groups,
    };
    let (walked, qk) = walk_back(p, probs, heads)?;
    // the core: the walked nodes that descend from q·kᵀ
    let mut core: HashSet<NodeId> = HashSet::new();
    for &n in order.iter().filter(|n| walked.contains(n)) {
        if g.operands(n).iter().any(|x| *x == qk || core.contains(x)) {
            core.insert(n);
        }
    }
    let ok = core.contains(&probs)
        && core.iter().all(|&n| {
            let read_ok =
                |u: NodeId| core.contains(&u) || (u == pv && n == probs && !xs[1..].contains(&n));
            g.users(n).into_iter().all(read_ok) && node_gathers(p, n, heads, fixed)
        });
    ok.then(|| (region, core.into_iter().collect()))
}

/// The nodes above `probs` with core shapes, up to (not through) the head-masked `q·kᵀ`,
/// and that product; `None` unless exactly one such product is reached.
fn walk_back(p: &Program, probs: NodeId, heads: u64) -> Option<(HashSet<NodeId>, NodeId)> {
    let g = &p.graph;
    let (mut seen, mut stack, mut qk) = (HashSet::new(), vec![probs], None);
    while let Some(n) = stack.pop() {
        if matches!(
            g.node(n).op,
            Op::CacheMatMul {
                transpose: true,
                ..
            }
        ) {
            if !crate::sparse::is_head_masked(p, n) || qk.is_some_and(|q| q != n) {
                return None;
            }
            qk = Some(n);
            continue;
        }
        if !is_core_shape(&g.node(n).ty.shape, heads) || !seen.insert(n) {
            continue;
        }
        stack.extend(g.operands(n));
    }
    Some((seen, qk?))
}

/// Whether core node `n` can run on gathered rows: row-wise, and if it communicates, by a
/// gathered protocol on operands of core shapes.
fn node_gathers(p: &Program, n: NodeId, heads: u64, fixed: &HashSet<NodeId>) -> bool {
    let g = &p.graph;
    if !row_wise(&g.node(n).op) {
        return false;
    }
    let proto = protocol_of(p, n, fixed);
    if !proto.communicates() {
        return true;
    }
    gathers(proto) && (g.operands(n).iter()).all(|x| is_core_shape(&g.node(*x).ty.shape, heads))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(heads: u64, groups: u64) -> HeadRegion {
        HeadRegion {
            unit: 0,
            mask: NodeId::from_index(0),
            heads,
            groups,
        }
    }

    #[test]
    fn active_rows_are_the_query_heads_of_active_groups() {
        // 4 query heads in 2 groups, 3 tokens; mask [seq, G] row-major
        let bits = [true, false, false, false, true, true];
        let rows = region(4, 2).active_rows(3, &bits);
        // group 0 (heads 0, 1) at tokens 0 and 2; group 1 (heads 2, 3) at token 2
        assert_eq!(rows, vec![0, 2, 3, 5, 8, 11]);
        assert_eq!(
            region(4, 4).active_rows(1, &[false, true, false, true]),
            vec![1, 3]
        );
        assert!(region(4, 2).active_rows(3, &[false; 6]).is_empty());
    }

    #[test]
    fn gathered_shapes_count_rows_as_seq_and_keys_as_past() {
        let t = Dim {
            seq: 1,
            past: 1,
            c: 0,
        };
        let r = region(4, 2);
        let g = r.gathered(&[Dim::constant(4), Dim::SEQ, t]);
        assert_eq!(g, vec![Dim::SEQ, Dim::PAST]);
        let e = r.env(DimEnv { seq: 3, past: 5 }, 2);
        assert_eq!((e.seq, e.past), (4, 8));
        assert_eq!(g[1].eval(e), t.eval(DimEnv { seq: 3, past: 5 }));
        assert!(!is_core_shape(&[Dim::constant(4), Dim::SEQ, Dim::SEQ], 4));
        assert!(!is_core_shape(&[Dim::constant(2), Dim::SEQ, t], 4));
        assert!(!is_core_shape(&[Dim::constant(4), Dim::SEQ], 4));
    }
}
