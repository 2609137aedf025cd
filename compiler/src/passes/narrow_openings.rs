//! Pass `narrow-openings`: a product whose value is read only modulo 2^w opens its
//! masked operands modulo 2^w, packed at w bits (issue 12, "narrow rings where they pay").
//!
//! A Beaver product, a select, a square, a product with a fixed operand or with the KV
//! cache computes its output from openings `x − a` and linear work in the ring: modulo
//! 2^w the output depends only on the operands and the openings modulo 2^w. A table
//! lookup's output share is linear in the masked sum its second round opens, which it
//! then sends modulo 2^w (its first round, the masked index, is already n bits). So when every
//! reader of the output looks at its low w bits only, each party sends `x_p − a_p mod 2^w`
//! instead of 64 bits, and the output's shares are correct modulo 2^w (its upper bits are
//! not, and nothing reads them). Unlike `narrow-comparisons` this rests on no range
//! analysis and no declaration: it is exact for any input.
//!
//! What a node reads of an operand, backwards from the plan's outputs:
//! - a stochastic truncation or an FSS comparison at width m: m bits (its gate reduces
//!   each share modulo 2^m before anything else);
//! - a table lookup of n index bits with q fractional bits from an operand at scale s:
//!   the bits below `s − q + n` (each party shifts its own share);
//! - a linear op (sums, constants, movement, RoPE, the causal mask) and every product:
//!   what its readers read of its output;
//! - the bit of a select: its lowest bit only, but bits come from comparisons, which
//!   send nothing narrower for it;
//! - a row maximum or a fused ReLU (`sign_select(x)`) at comparison width m whose own
//!   value is read to at most m bits: m (it then opens `x + r` mod 2^m, which also serves
//!   as ŷ: [`comet_ir::graph::Node::open_at_cmp_width`]);
//! - a sparse FFN's `apply_mask` (it zeroes inactive blocks) and the first operand of its
//!   `block_matmul`: what their readers read;
//! - anything else (outputs, reveals, openings, cache writes, shares, local and exact
//!   truncations, other row maxima and sign selects, a block mask): all 64.
//!
//! The width of a product is what its readers read, to the bit (the runtime packs each
//! opened operand at w bits, ⌈n·w/8⌉ bytes, as the cost model counts it), at least 8, and
//! kept in the node's [`comet_ir::graph::Node::cmp_width`] when below 64. Products with the KV
//! cache that read one slot share the rows it opened in earlier calls, so they share the
//! widest of their widths. Products in a sparse FFN's masked region (which run on
//! gathered entries) and its `block_matmul` are narrowed when its blocks pack to whole
//! bytes ([`comet_ir::sparse::packs_whole`]), else they keep the ring.

use std::collections::HashSet;

use comet_ir::protocol::{Protocol, fixed_values, protocol_of};
use comet_ir::sparse::{masked_nodes, may_narrow};
use comet_ir::{Elem, NodeId, Op, Program};

/// The ring's width.
const RING: u32 = 64;

/// A sparse FFN's masked nodes ([`masked_nodes`]).
type Masked = std::collections::HashMap<NodeId, comet_ir::sparse::Masked>;

/// Runs the pass.
pub fn run(p: &mut Program) {
    let Ok(order) = p.graph.topo_order() else {
        return;
    };
    let fixed = fixed_values(p);
    let masked = masked_nodes(p);
    let mut need = std::collections::HashMap::<NodeId, u32>::new();
    for &id in order.iter().rev() {
        let users = p.graph.users(id);
        let w = match users.is_empty() {
            true => RING,
            false => (users.iter())
                .map(|&u| read_by(p, &masked, u, id, need.get(&u).copied().unwrap_or(RING)))
                .max()
                .unwrap_or(RING),
        };
        need.insert(id, w);
    }
    let narrowable: HashSet<NodeId> = (p.graph.ids())
        .filter(|id| may_narrow(p, &masked, *id))
        .filter(|&id| opens_operands(protocol_of(p, id, &fixed)))
        .collect();
    // products with one cache slot share its opened rows across calls: one width for all
    let mut slot_need = std::collections::HashMap::<u32, u32>::new();
    for &id in &narrowable {
        if let Op::CacheMatMul { slot, .. } = p.graph.node(id).op {
            let w = slot_need.entry(slot).or_default();
            *w = (*w).max(need[&id]);
        }
    }
    for id in p.graph.ids().collect::<Vec<_>>() {
        let out = need.get(&id).copied().unwrap_or(RING);
        if opens_at_cmp_width(p, &masked, id, out) {
            p.graph.node_mut(id).open_at_cmp_width = true;
        }
    }
    for id in narrowable {
        let w = match p.graph.node(id).op {
            Op::CacheMatMul { slot, .. } => slot_need[&slot],
            _ => need[&id],
        };
        // (a second run, after `fuse-trunc-openings` widened truncations, may widen a
        // product back to the ring)
        let w = w.max(8);
        p.graph.node_mut(id).cmp_width = (w < RING).then_some(w as u8);
    }
}

/// Whether `protocol` opens masked values and computes its output linearly from them
/// (narrowable): the products, and the table lookup, whose output share is linear in its
/// second round's opened sum.
pub fn opens_operands(protocol: Protocol) -> bool {
    matches!(
        protocol,
        Protocol::BeaverMul
            | Protocol::BeaverMatMul
            | Protocol::Mux
            | Protocol::MuxOpened
            | Protocol::Square
            | Protocol::FixedMul
            | Protocol::FixedMatMul
            | Protocol::CacheMatMul
            | Protocol::BlockFixedMatMul
            | Protocol::Lut
    )
}

/// The power of two dividing a `mul_const`'s ring constant
/// ([`comet_ir::infer::mul_const_ring`]); 64 for 0.
fn const_twos(value: f64, frac: u32) -> u32 {
    comet_ir::infer::mul_const_ring(value, frac).trailing_zeros()
}

/// Whether `id`, read to `out` bits, is an FSS sign select of x by its own sign (a fused
/// ReLU) or a row maximum (whose levels are such selects) at a comparison width m < 64
/// with `out ≤ m`: its masked `x + r`, which also serves as ŷ, then opens mod 2^m, and its
/// output is correct mod 2^m, all its readers look at. Not in a sparse FFN's masked region
/// whose blocks do not pack to whole bytes (whose nodes keep the ring).
fn opens_at_cmp_width(p: &Program, masked: &Masked, id: NodeId, out: u32) -> bool {
    if !may_narrow(p, masked, id) {
        return false;
    }
    let node = p.graph.node(id);
    let selects = match node.op {
        Op::RowMax => true,
        Op::SignSelect => p.graph.operands(id).len() == 1,
        _ => false,
    };
    let m = node.cmp_width.map_or(RING, u32::from);
    selects && p.options.comparison == comet_ir::Comparison::Fss && m < RING && out <= m
}

/// The low bits of `x` that node `u` reads, when `u`'s own value is read to `out` bits.
fn read_by(p: &Program, masked: &Masked, u: NodeId, x: NodeId, out: u32) -> u32 {
    let node = p.graph.node(u);
    let own = node.cmp_width.map_or(RING, u32::from);
    if opens_at_cmp_width(p, masked, u, out) {
        return own;
    }
    match &node.op {
        Op::StochasticTrunc { .. } | Op::Drelu | Op::Compare { .. } => own,
        Op::Lut { bits, frac, .. } => match p.graph.node(x).ty.elem {
            Elem::Fixed { scale } if *frac <= scale => (scale - frac + bits).min(RING),
            _ => RING,
        },
        Op::Select if p.graph.operands(u)[0] == x && p.graph.operands(u)[1] != x => RING,
        // `x·c` with `c = 2^k·odd` in the ring: its low `out` bits are those of `x`'s low
        // `out − k` shifted up
        Op::MulConst { value } => out
            .saturating_sub(const_twos(*value, p.info.format.frac))
            .max(1),
        Op::Add
        | Op::Sub
        | Op::Neg
        | Op::AddConst { .. }
        | Op::RowSum
        | Op::Transpose
        | Op::Slice { .. }
        | Op::Row { .. }
        | Op::Concat { .. }
        | Op::SplitHeads { .. }
        | Op::MergeHeads
        | Op::RepeatKv { .. }
        | Op::Rope { .. }
        | Op::CausalMask
        | Op::Mul
        | Op::Square
        | Op::MatMul
        | Op::CacheMatMul { .. }
        | Op::ApplyMask { .. }
        | Op::Select => out,
        // the block product is linear in its first operand (the mask is a public bit)
        Op::BlockMatMul { .. } if p.graph.operands(u)[0] == x => out,
        _ => RING,
    }
}

#[cfg(test)]
mod tests {
    use super::const_twos;

    /// The power of two in a `mul_const`'s ring constant, as `comet_runtime::fixed` encodes
    /// it: integers as themselves, other values at the plan's fractional bits.
    #[test]
    fn a_constant_reads_its_operand_narrower_by_its_twos() {
        assert_eq!(const_twos(0.5, 16), 15); // 2^15
        assert_eq!(const_twos(0.125, 16), 13);
        assert_eq!(const_twos(2.0, 16), 1); // an integer: 2 itself
        assert_eq!(const_twos(3.0, 16), 0);
        assert_eq!(const_twos(-4.0, 16), 2);
        assert_eq!(const_twos(1.0 / 768.0, 16), 0); // 85, odd
        assert_eq!(const_twos(0.0, 16), 64);
    }
}
