//! The masked regions of a block-sparse plan (pass `sparsify`, docs/sparsity.md).
//!
//! A sparse FFN's region starts at its `apply_mask` nodes and ends at its `block_matmul`:
//! every element-wise node with an operand in the region is in the region, and computes
//! only the entries of the blocks the public mask marks active (the runtime gathers them,
//! runs the protocol on those, and leaves the other entries meaningless). The cost model
//! and the runtime both call [`masked_nodes`], so the entries that are estimated are the
//! entries that are computed.

use crate::graph::NodeId;
use crate::op::Op;
use crate::program::Program;
use std::collections::HashMap;

/// The names of sparse FFN `k`'s folded predictor weights (server weights the runtime
/// derives from a predictor file): `[d, blocks]` and `[blocks]`.
pub fn predictor_weights(k: usize) -> [String; 2] {
    [format!("sparsity.ffn{k}.w"), format!("sparsity.ffn{k}.c")]
}

/// Whether weight `name` is a folded predictor weight (not in the model's checkpoint).
pub fn is_predictor_weight(name: &str) -> bool {
    name.starts_with("sparsity.ffn") || name.starts_with("sparsity.heads")
}

/// A node of a masked region: which sparse FFN, its block size, and its mask node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Masked {
    /// The sparse FFN.
    pub ffn: u32,
    /// Entries per block on the last axis.
    pub block: u64,
    /// The public mask `[seq, blocks]`.
    pub mask: NodeId,
}

impl Masked {
    /// Whether the region's nodes run as their dense protocol on the gathered entries,
    /// at their widths: when a block is a whole number of bytes of bits (`block` a
    /// multiple of 8), every message part of the active entries packs to the sum of the
    /// pairs' parts, so a pair's cost is a constant; else each runs at 64 bits with its
    /// bits a byte each (`comet_runtime`'s gathered starts), and nothing in the region is
    /// narrowed.
    pub fn packs_whole(&self) -> bool {
        packs_whole(self.block)
    }
}

/// [`Masked::packs_whole`] for blocks of `block` entries (also a `block_matmul`'s).
pub fn packs_whole(block: u64) -> bool {
    block > 0 && block.is_multiple_of(8)
}

/// Whether `id` may carry a width: outside sparse FFNs, or in blocks that pack to whole
/// bytes ([`packs_whole`]).
pub fn may_narrow(p: &Program, masked: &HashMap<NodeId, Masked>, id: NodeId) -> bool {
    block_of(p, masked, id).is_none_or(packs_whole)
}

/// The block size `id` runs in: its region's (`masked`: [`masked_nodes`]) or, for a
/// `block_matmul`, its own; `None` outside sparse FFNs.
pub fn block_of(p: &Program, masked: &HashMap<NodeId, Masked>, id: NodeId) -> Option<u64> {
    match (masked.get(&id), &p.graph.node(id).op) {
        (Some(m), _) => Some(m.block),
        (None, Op::BlockMatMul { block, .. }) => Some(*block),
        _ => None,
    }
}

/// Whether `op` works entry by entry (with broadcasting), so that it can run on the
/// active entries only.
pub fn is_elementwise(op: &Op) -> bool {
    matches!(
        op,
        Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Neg
            | Op::MulConst { .. }
            | Op::AddConst { .. }
            | Op::Unary { .. }
            | Op::Square
            | Op::Drelu
            | Op::Between
            | Op::Select
            | Op::SignSelect
            | Op::B2A
            | Op::Trunc { .. }
            | Op::FaithfulTrunc { .. }
            | Op::StochasticTrunc { .. }
    )
}

/// Every node of a masked region, with its FFN and mask. `apply_mask` nodes themselves
/// are included (they are local).
pub fn masked_nodes(p: &Program) -> HashMap<NodeId, Masked> {
    let mut out = HashMap::new();
    let Ok(order) = p.graph.topo_order() else {
        return out;
    };
    for id in order {
        let node = p.graph.node(id);
        let xs = p.graph.operands(id);
        let m = match node.op {
            Op::ApplyMask { ffn, block } => Some(Masked {
                ffn,
                block,
                mask: xs[1],
            }),
            ref op if is_elementwise(op) => xs.iter().find_map(|x| out.get(x).copied()),
            _ => None,
        };
        if let Some(m) = m {
            out.insert(id, m);
        }
    }
    out
}

/// Checks that what a masked region computes on its active entries only never mixes with
/// anything but its FFN's block product: a region node holds the right values at the
/// active entries and zeros elsewhere (the scattered result), so every node that depends
/// on one, up to the `block_matmul` that reads only the active blocks of its first
/// operand, must work entry by entry ([`is_elementwise`], or a table, a comparison and
/// its picks); a row sum, a product across entries, an output or another layer reading
/// such a value would be silently wrong. (An `apply_mask` output itself is exact: zeros
/// at the inactive blocks; reading it anywhere is fine.) `masked` is [`masked_nodes`]
/// of `p`.
///
/// # Errors
/// A message naming the first offending node.
pub fn check_regions(p: &Program, masked: &HashMap<NodeId, Masked>) -> Result<(), String> {
    let per_entry = |op: &Op| {
        is_elementwise(op) || matches!(op, Op::Lut { .. } | Op::Compare { .. } | Op::Pick { .. })
    };
    let mut stack: Vec<(NodeId, Masked)> = (masked.iter())
        .filter(|(id, _)| !matches!(p.graph.node(**id).op, Op::ApplyMask { .. }))
        .map(|(&id, &m)| (id, m))
        .collect();
    let mut seen: std::collections::HashSet<NodeId> = stack.iter().map(|(id, _)| *id).collect();
    while let Some((id, m)) = stack.pop() {
        for u in p.graph.users(id) {
            let op = &p.graph.node(u).op;
            let ok = match op {
                Op::BlockMatMul { ffn, .. } => *ffn == m.ffn && p.graph.operands(u)[0] == id,
                op => per_entry(op),
            };
            if !ok {
                return Err(format!(
                    "{u} (`{}`) reads {id} (`{}`), which depends on the active blocks of sparse \
                     FFN {} only: only entry-by-entry ops and that FFN's block product may",
                    op.name(),
                    p.graph.node(id).op.name(),
                    m.ffn
                ));
            }
            if !matches!(op, Op::BlockMatMul { .. }) && seen.insert(u) {
                stack.push((u, m));
            }
        }
    }
    Ok(())
}

/// Whether `id` is a head-masked product with the KV cache: a `cache_matmul` that reads
/// its attention's head mask as a fourth operand (pass `cache-openings`).
pub fn is_head_masked(p: &Program, id: NodeId) -> bool {
    matches!(p.graph.node(id).op, Op::CacheMatMul { .. }) && p.graph.operands(id).len() == 4
}

/// The unit (`ffn`) of the `block_matmul` whose block mask is `mask`, if one reads it.
pub fn mask_unit(p: &Program, mask: NodeId) -> Option<u32> {
    (p.graph.users(mask).into_iter()).find_map(|u| match p.graph.node(u).op {
        Op::BlockMatMul { ffn, .. } if p.graph.operands(u)[2] == mask => Some(ffn),
        _ => None,
    })
}

/// The names of head-sparse attention `k`'s folded predictor weights (server weights the
/// runtime derives from a head predictor): `[d, kv_heads]` and `[kv_heads]`.
pub fn head_predictor_weights(k: usize) -> [String; 2] {
    [
        format!("sparsity.heads{k}.w"),
        format!("sparsity.heads{k}.c"),
    ]
}
