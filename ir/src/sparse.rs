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

/// Checks that masked values stay in their region: each is read only by nodes of the
/// same region or as the left operand of its FFN's `block_matmul` (the entries of
/// inactive blocks are meaningless, so nothing else may read them), and that the right
/// operand of every `block_matmul` does not come from a region.
///
/// # Errors
/// A message naming the first offending node.
pub fn check_regions(p: &Program) -> Result<(), String> {
    let masked = masked_nodes(p);
    for (&id, m) in &masked {
        for u in p.graph.users(id) {
            let ok = match p.graph.node(u).op {
                Op::BlockMatMul { ffn, .. } => ffn == m.ffn && p.graph.operands(u)[0] == id,
                _ => masked.get(&u).is_some_and(|n| n.ffn == m.ffn),
            };
            if !ok {
                return Err(format!(
                    "{id} (`{}`) holds the active blocks of sparse FFN {} only, but {u} (`{}`) \
                     reads it outside that FFN's region",
                    p.graph.node(id).op.name(),
                    m.ffn,
                    p.graph.node(u).op.name()
                ));
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
