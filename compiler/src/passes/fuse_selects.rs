//! Pass `fuse-selects`: `select(drelu(x), y)` → `sign_select(x, y)` (`sign_select(x)` when
//! y is x: ReLU), so that the comparison's bit is never a value of its own and the pair
//! runs as one FSS gate (`comet_runtime::protocols::sign_select`): 2 rounds as DReLU then
//! mux, but round 1 opens x + r (and y + s when y is not x) and round 2 one masked bit,
//! instead of the bit − a and y − b of a Beaver product; keys of 926 and 942 bytes per
//! element instead of 1,536 + 1,536 + 8 at m = 64.
//!
//! Only with FSS comparisons (GMW plans keep their XOR-shared bits and `bit_mux`). A pair
//! is fused when the `drelu` has no other user, its bits have the select's shape (no
//! broadcast), and neither node lies in a sparse FFN's masked region (those run on active
//! entries with gathered material). The row maximum's levels use the same gate inside
//! `row_max` itself. A `compare` with several thresholds (the `lut` profile's GeLU and
//! SiLU: sign and both ends of the table from one key) is left alone: splitting the sign
//! off it would add a key per element (about 1,868 bytes) to save 126 online bits.
//!
//! When y is not x and y is ready later than x, the fused gate starts when y is ready,
//! where the DReLU would have run alongside y's producer: one round more on that path
//! (the `lut` profile's softmax mask, one per layer), for 1,212 fewer key bytes and 126
//! fewer online bits per element.

use comet_ir::sparse::masked_nodes;
use comet_ir::{Comparison, NodeId, Op, Program};

/// Runs the pass.
pub fn run(p: &mut Program) {
    if p.options.comparison != Comparison::Fss {
        return;
    }
    let masked = masked_nodes(p);
    let g = &p.graph;
    let order = g.topo_order().expect("the verifier rejected cycles");
    let pairs: Vec<(NodeId, NodeId, Vec<NodeId>)> = (order.into_iter())
        .filter(|&s| matches!(g.node(s).op, Op::Select) && !masked.contains_key(&s))
        .filter_map(|s| {
            let xs = g.operands(s);
            let (bit, y) = (xs[0], xs[1]);
            let fusible = matches!(g.node(bit).op, Op::Drelu)
                && !masked.contains_key(&bit)
                && g.users(bit) == [s]
                && g.node(bit).ty.shape == g.node(s).ty.shape
                && g.node(y).ty.shape == g.node(s).ty.shape;
            let x = g.operands(bit)[0];
            let operands = if x == y { vec![x] } else { vec![x, y] };
            fusible.then_some((s, bit, operands))
        })
        .collect();
    // every fused node is added before any node is removed, so that none takes the index
    // (and a side table's entry) of a removed one
    let mut removed = Vec::new();
    for (s, bit, operands) in pairs {
        let (ty, scope) = (p.graph.node(s).ty.clone(), p.graph.node(s).scope.clone());
        let width = p.graph.node(bit).cmp_width;
        let fused = p.graph.add(Op::SignSelect, &operands, ty, scope);
        p.graph.node_mut(fused).cmp_width = width;
        if let Some(declared) = p.analyses.declared.as_mut()
            && let Some(d) = declared.get(s).cloned()
        {
            declared.insert(fused, d);
        }
        p.graph.replace_uses(s, fused);
        removed.extend([s, bit]);
    }
    for id in removed {
        p.graph.remove(id);
    }
}
