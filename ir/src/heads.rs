//! Attention detection for head sparsity: the attentions of a semantic-stage program
//! (COMET.md §4, docs/sparsity.md "Head sparsity").
//!
//! An attention is the pattern the library `attention` block lowers to:
//!
//! ```text
//! q      = [rope](split_heads{heads}(x · W_Q [+ b_Q]))
//! k      = [rope](split_heads{kv_heads}(x · W_K [+ b_K]))      (then the KV cache)
//! v      = split_heads{kv_heads}(x · W_V [+ b_V])
//! mixed  = matmul(softmax(…q·kᵀ…), v)                         [heads, seq, hd]
//! merged = merge_heads(mixed)                                  [seq, heads·hd]
//! out    = merged · W_O [+ b_O]
//! ```
//!
//! where every `W` is a `weight` node and the three projections read the same `x`. The
//! unit of head sparsity is a **KV group**: one key/value head and the `heads / kv_heads`
//! query heads that read it (GQA; one query head per group for multi-head attention).
//! Skipping a group for a token skips its Q, K and V columns and its rows of `W_O`; the
//! group then contributes exactly zero to `out`. Query head `h` is in group
//! `h / (heads / kv_heads)` (numpy's `repeat` along the head axis, `repeat_kv`).
//!
//! Models whose attention is written from primitives (GPT-2's fused QKV) are not found.

use crate::graph::{Graph, NodeId};
use crate::op::Op;
use crate::program::Program;

/// One attention found in a program. Node handles refer to the analysed program.
#[derive(Debug, Clone, PartialEq)]
pub struct Attention {
    /// Layer index (the outermost indexed block instance), if any.
    pub layer: Option<u32>,
    /// The attention's input `x` (`[seq, d]`), read by the three projections.
    pub input: NodeId,
    /// `x · W_Q`, `x · W_K`, `x · W_V`.
    pub matmuls: [NodeId; 3],
    /// The projections' results before the head split: the matmul or its bias add.
    pub projections: [NodeId; 3],
    /// The `split_heads` of the three projections.
    pub splits: [NodeId; 3],
    /// `merge_heads(mixed)`: `[seq, heads·hd]`, the output projection's left operand.
    pub merged: NodeId,
    /// `merged · W_O`.
    pub out_matmul: NodeId,
    /// Weight names `W_Q`, `W_K`, `W_V`, `W_O`.
    pub weights: [String; 4],
    /// Query heads.
    pub heads: u64,
    /// Key/value heads (= KV groups).
    pub kv_heads: u64,
    /// Head dimension.
    pub hd: u64,
    /// Input width.
    pub d: u64,
}

impl Attention {
    /// Query heads per KV group.
    pub fn groups(&self) -> u64 {
        self.heads / self.kv_heads.max(1)
    }

    /// A short label: `layer 3`, or `attention k`.
    pub fn label(&self, k: usize) -> String {
        match self.layer {
            Some(l) => format!("layer {l}"),
            None => format!("attention {k}"),
        }
    }
}

/// Every attention of `program`, in topological order of their `merge_heads`.
pub fn find_attentions(program: &Program) -> Vec<Attention> {
    let g = &program.graph;
    let Ok(order) = g.topo_order() else {
        return Vec::new();
    };
    order
        .into_iter()
        .filter_map(|id| match_attention(program, id))
        .collect()
}

fn match_attention(program: &Program, merged: NodeId) -> Option<Attention> {
    let g = &program.graph;
    if !matches!(g.node(merged).op, Op::MergeHeads) {
        return None;
    }
    let out_matmul = sole_user(g, merged)?;
    let xs = g.operands(out_matmul);
    if !matches!(g.node(out_matmul).op, Op::MatMul) || xs[0] != merged {
        return None;
    }
    let w_o = weight_name(g, xs[1])?;
    let mixed = g.operands(merged)[0];
    if !matches!(g.node(mixed).op, Op::MatMul) {
        return None;
    }
    let [probs, v] = g.operands(mixed)[..] else {
        return None;
    };
    let v_split = back_to_split(g, v)?;
    let q_split = back_to_split(g, query_of(g, probs)?)?;
    let k_split = back_to_split(g, key_of(g, probs)?)?;
    let mut matmuls = [q_split; 3];
    let mut projections = [q_split; 3];
    let mut names: Vec<String> = Vec::new();
    let mut input = None;
    for (i, s) in [q_split, k_split, v_split].into_iter().enumerate() {
        let top = g.operands(s)[0];
        let mm = match g.node(top).op {
            Op::MatMul => top,
            Op::Add => *g
                .operands(top)
                .iter()
                .find(|&&o| matches!(g.node(o).op, Op::MatMul))?,
            _ => return None,
        };
        let [x, w] = g.operands(mm)[..] else {
            return None;
        };
        if *input.get_or_insert(x) != x {
            return None;
        }
        names.push(weight_name(g, w)?);
        matmuls[i] = mm;
        projections[i] = top;
    }
    let heads = split_heads(g, q_split)?;
    let kv_heads = split_heads(g, k_split)?;
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) || split_heads(g, v_split)? != kv_heads {
        return None;
    }
    let wq = program.info.weight(&names[0])?;
    let (d, qw) = (*wq.shape.first()?, *wq.shape.get(1)?);
    let hd = qw / heads;
    Some(Attention {
        layer: g.node(merged).scope.layer,
        input: input?,
        matmuls,
        projections,
        splits: [q_split, k_split, v_split],
        merged,
        out_matmul,
        weights: [names[0].clone(), names[1].clone(), names[2].clone(), w_o],
        heads,
        kv_heads,
        hd,
        d,
    })
}

/// Walks back from a head-shaped value through the cache, repetition, rotation and
/// transposition to its `split_heads`.
fn back_to_split(g: &Graph, mut v: NodeId) -> Option<NodeId> {
    for _ in 0..8 {
        match g.node(v).op {
            Op::SplitHeads { .. } => return Some(v),
            Op::Rope { .. } | Op::RepeatKv { .. } | Op::Transpose => v = g.operands(v)[0],
            Op::Concat { axis: 1 } => v = *g.operands(v).get(1)?,
            _ => return None,
        }
    }
    None
}

/// The `q·kᵀ` product under the attention probabilities `probs`.
fn scores_of(g: &Graph, mut v: NodeId) -> Option<NodeId> {
    for _ in 0..8 {
        match g.node(v).op {
            Op::MatMul => return Some(v),
            Op::Softmax | Op::CausalMask | Op::MulConst { .. } => v = g.operands(v)[0],
            _ => return None,
        }
    }
    None
}

fn query_of(g: &Graph, probs: NodeId) -> Option<NodeId> {
    Some(g.operands(scores_of(g, probs)?)[0])
}

fn key_of(g: &Graph, probs: NodeId) -> Option<NodeId> {
    Some(g.operands(scores_of(g, probs)?)[1])
}

fn split_heads(g: &Graph, s: NodeId) -> Option<u64> {
    match g.node(s).op {
        Op::SplitHeads { heads } => Some(heads),
        _ => None,
    }
}

fn weight_name(g: &Graph, id: NodeId) -> Option<String> {
    match &g.node(id).op {
        Op::Weight { name } => Some(name.clone()),
        _ => None,
    }
}

fn sole_user(g: &Graph, id: NodeId) -> Option<NodeId> {
    match g.users(id).as_slice() {
        [u] => Some(*u),
        _ => None,
    }
}
