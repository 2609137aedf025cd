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
//! projection). A select of the truncation's output by bits (the same activations' ReLU
//! and range selects) opens `x − a` for a mask `a` of its choosing: with
//! `a = −⌊r / 2^s⌋` (shares: the truncation's own shares of `r_h`, negated) that is the
//! same opening, so it opens only its bits. What is opened does not change: ŷ, uniform,
//! as before.
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

/// Runs the pass (after `narrow-comparisons` and `narrow-openings` set the widths, before
/// `head-mask-rounds` and `schedule`); where it widens a truncation, the driver runs
/// `narrow-openings` again so that the product the truncation reads opens as wide.
/// Returns whether it widened any.
pub fn run(p: &mut Program) -> bool {
    if p.options.comparison != Comparison::Fss {
        return false;
    }
    let gathered: HashSet<NodeId> = (comet_ir::sparse::masked_nodes(p).into_keys())
        .chain(comet_ir::head_region::head_regions(p).into_keys())
        .collect();
    let truncs: Vec<NodeId> = (p.graph.ids())
        .filter(|&id| matches!(p.graph.node(id).op, Op::StochasticTrunc { .. }))
        .filter(|&id| p.graph.node(id).ty.domain == Domain::Arith && !gathered.contains(&id))
        .collect();
    let mut widened = false;
    for t in truncs {
        let readers = readers(p, t, &gathered);
        let Some((width, chosen)) = choose(p, t, &readers) else {
            continue;
        };
        let node = p.graph.node_mut(t);
        if node.comparison_bits() < width {
            node.cmp_width = Some(width as u8);
            widened = true;
        }
        for r in chosen {
            p.graph.node_mut(r).reads_opening = true;
        }
    }
    widened
}

/// The users of truncation `t` that may read its opening, with the width each reads at:
/// a comparison of `t` (its comparison width) and a select of `t` by bits (the width its
/// value is read at), outside gathered regions.
fn readers(p: &Program, t: NodeId, gathered: &HashSet<NodeId>) -> Vec<(NodeId, u32)> {
    let g = &p.graph;
    (g.users(t).into_iter())
        .filter(|u| !gathered.contains(u))
        .filter(|&u| {
            let xs = g.operands(u);
            match g.node(u).op {
                Op::Compare { .. } => xs[0] == t,
                Op::Select => xs.len() == 2 && xs[1] == t && xs[0] != t,
                _ => false,
            }
        })
        .map(|u| (u, g.node(u).comparison_bits()))
        .collect()
}

/// The width truncation `t` opens at and the readers that read it: all of `readers` if
/// widening to the widest one's needs fits the ring and pays (the widening costs at most
/// twice its bits per element, in the truncation's opening and in its input product's,
/// against the readers' widths saved), else those its opening already covers.
fn choose(p: &Program, t: NodeId, readers: &[(NodeId, u32)]) -> Option<(u32, Vec<NodeId>)> {
    let node = p.graph.node(t);
    let Op::StochasticTrunc { bits } = node.op else {
        return None;
    };
    let m = node.comparison_bits();
    let widest = readers.iter().map(|r| r.1).max()?;
    let width = (bits + widest).max(m);
    let saved: u32 = readers.iter().map(|r| r.1).sum();
    if width <= 64 && 2 * (width - m) < saved {
        return Some((width, readers.iter().map(|r| r.0).collect()));
    }
    let covered: Vec<NodeId> = (readers.iter())
        .filter(|r| bits + r.1 <= m)
        .map(|r| r.0)
        .collect();
    (!covered.is_empty()).then_some((m, covered))
}
