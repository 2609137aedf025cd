//! Pass `cache-openings`: products with the KV cache open each cached row once.
//!
//! Attention multiplies by the whole cache in every call: `q · kᵀ` and `p · v` with
//! `k = concat(cache_read(slot), k_new)`, possibly repeated per query group (GQA). As a
//! Beaver product that opens `k − b` for every cached row again in every decode step, so a
//! step's traffic grows with the context. This pass rewrites such products into
//! [`Op::CacheMatMul`]: a row is opened against a fresh mask once, in the call that writes
//! it, and later calls open only the left operand and their new rows (the fixed-operand
//! trick of the weights, applied per cached row; `comet_runtime::protocols::cache_matmul`).
//!
//! A product is rewritten when its right operand is `[transpose](​[repeat_kv](concat(
//! cache_read(slot), new)))` with the concatenation along the positions (axis 1) and every
//! operand shared. The transposition and repetition move into the op's attributes; nodes
//! they leave unused are removed.
//!
//! In a head-sparse plan (pass `head-sparsify`) the product also reads its attention's
//! public head mask: the `block_matmul` of a head-sparse unit that its value reaches
//! first. It then computes the active (token, group) pairs only and opens a cached row in
//! the first call where its group is active (docs/sparsity.md, "KV refill").

use std::collections::{HashSet, VecDeque};

use comet_ir::{Domain, NodeId, Op, Program};

/// Runs the pass.
pub fn run(p: &mut Program) {
    let ids: Vec<NodeId> = p.graph.ids().collect();
    let mut rewrote = false;
    for id in ids {
        if let Some((op, operands)) = rewrite(p, id) {
            p.graph.node_mut(id).op = op;
            p.graph.set_operands(id, &operands);
            rewrote = true;
        }
    }
    if rewrote {
        p.graph.remove_dead();
    }
}

/// The cache product that replaces `id`, with its operands `[x, c, new]` and, in a
/// head-sparse attention, its head mask.
fn rewrite(p: &Program, id: NodeId) -> Option<(Op, Vec<NodeId>)> {
    let g = &p.graph;
    if !matches!(g.node(id).op, Op::MatMul) {
        return None;
    }
    let [x, mut rhs] = g.operands(id)[..] else {
        return None;
    };
    let transpose = matches!(g.node(rhs).op, Op::Transpose);
    if transpose {
        rhs = g.operands(rhs)[0];
    }
    let groups = match g.node(rhs).op {
        Op::RepeatKv { groups } => {
            rhs = g.operands(rhs)[0];
            groups
        }
        _ => 1,
    };
    let c = rhs;
    let Op::Concat { axis: 1 } = g.node(c).op else {
        return None;
    };
    let [cached, new] = g.operands(c)[..] else {
        return None;
    };
    let Op::CacheRead { slot } = g.node(cached).op else {
        return None;
    };
    let shared = |v: NodeId| g.node(v).ty.domain == Domain::Arith;
    if !(shared(x) && shared(c) && shared(new)) {
        return None;
    }
    let op = Op::CacheMatMul {
        slot,
        transpose,
        groups,
    };
    let mut operands = vec![x, c, new];
    operands.extend(head_mask(p, id, g.node(c).ty.shape[0]));
    Some((op, operands))
}

/// The head mask `[seq, h_kv]` of the head-sparse attention that `id`'s value reaches
/// first (breadth first through its users): the mask of the first `block_matmul` of a
/// head-sparse unit, if its groups match the cache's heads.
fn head_mask(p: &Program, id: NodeId, h_kv: comet_ir::Dim) -> Option<NodeId> {
    let heads = p.options.sparsity.as_ref()?.heads.as_ref()?;
    let g = &p.graph;
    let mut seen = HashSet::from([id]);
    let mut queue = VecDeque::from([id]);
    while let Some(v) = queue.pop_front() {
        if let Op::BlockMatMul { ffn, .. } = g.node(v).op
            && ffn >= heads.first
        {
            let mask = g.operands(v)[2];
            let fits = g.node(mask).ty.shape.get(1) == Some(&h_kv);
            return fits.then_some(mask);
        }
        for u in g.users(v) {
            if seen.insert(u) {
                queue.push_back(u);
            }
        }
    }
    None
}
