//! Pass `fuse-trunc-openings`: a comparison of a stochastic truncation's output reads the
//! truncation's opening instead of opening its own (SIGMA's fusion of a truncation with the
//! gate after it).
//!
//! A stochastic truncation by s bits at width m opens `ŷ = x + 2^(m−2) + r mod 2^m`
//! (`comet_runtime::protocols::trunc_stochastic`), and its output t satisfies
//! `t + ⌊r / 2^s⌋ ≡ ⌊ŷ / 2^s⌋ − 2^(m−2−s) (mod 2^(m−s))`: the output, masked by the
//! mask's high part, is public for free. An FSS comparison at width w ≤ m − s needs
//! exactly that, `t + r' mod 2^w` for a mask r' its keys were made for; with
//! `r' = ⌊r / 2^s⌋ mod 2^w` (the dealer knows r) it sends nothing and ends in the
//! truncation's round: per element w bits less from each party, and one round less on
//! the path through it (SiLU's and GeLU's `lut` comparison right after the gate or up
//! projection). What is opened does not change: ŷ, uniform, as before.
//!
//! The pass marks such comparisons ([`comet_ir::graph::Node::reads_opening`]); where the
//! truncation's width is short of `w + s`, it widens the truncation to it when that fits
//! the 64-bit ring and pays: `w + s − m` bits more per element in the truncation's
//! opening and at most as many in the opening of the product it reads (pass
//! `narrow-openings`, which runs after this one, reads the truncation's new width),
//! against w saved. Comparisons in
//! a sparse FFN's masked region or a head-masked attention core (whose nodes run on
//! gathered entries) are left as they are, as are GMW comparisons.

use std::collections::HashSet;

use comet_ir::{Comparison, Domain, NodeId, Op, Program};

/// Runs the pass (after `narrow-comparisons` sets the widths, before `narrow-openings`,
/// which must see the widened truncations, and `schedule`).
pub fn run(p: &mut Program) {
    if p.options.comparison != Comparison::Fss {
        return;
    }
    let gathered: HashSet<NodeId> = (comet_ir::sparse::masked_nodes(p).into_keys())
        .chain(comet_ir::head_region::head_regions(p).into_keys())
        .collect();
    let mut fused: HashSet<NodeId> = HashSet::new();
    let ids: Vec<NodeId> = p.graph.ids().collect();
    for id in ids {
        let Some((trunc, width)) = fusable(p, id, &gathered) else {
            continue;
        };
        if !fused.insert(trunc) {
            continue; // one comparison per truncation reads its opening
        }
        let t = p.graph.node_mut(trunc);
        if t.comparison_bits() < width {
            t.cmp_width = Some(width as u8);
        }
        p.graph.node_mut(id).reads_opening = true;
    }
}

/// The truncation comparison `id` may read, and the width that truncation needs for it.
fn fusable(p: &Program, id: NodeId, gathered: &HashSet<NodeId>) -> Option<(NodeId, u32)> {
    let g = &p.graph;
    let node = g.node(id);
    if !matches!(node.op, Op::Compare { .. }) || gathered.contains(&id) {
        return None;
    }
    let trunc = *g.operands(id).first()?;
    let t = g.node(trunc);
    let Op::StochasticTrunc { bits } = t.op else {
        return None;
    };
    if t.ty.domain != Domain::Arith || gathered.contains(&trunc) {
        return None;
    }
    let (w, m) = (node.comparison_bits(), t.comparison_bits());
    let width = (bits + w).max(m);
    (width <= 64 && 2 * (width - m) < w).then_some((trunc, width))
}
