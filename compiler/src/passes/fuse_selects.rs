//! Pass `fuse-selects`: `select(drelu(x), y)` → `sign_select(x, y)` (`sign_select(x)` when
//! y is x: ReLU), so that the comparison's bit is never a value of its own and the pair
//! runs as one FSS gate (`comet_runtime::protocols::sign_select`): 2 rounds as DReLU then
//! mux, but round 1 opens x + r (and y + s when y is not x) and round 2 one masked bit,
//! instead of the bit − a and y − b of a Beaver product; keys of 926 and 942 bytes per
//! element instead of 1,536 + 1,536 + 8 at m = 64.
//!
//! Only with FSS comparisons (GMW plans keep their XOR-shared bits and `bit_mux`). A pair
//! is fused when the `drelu` has no other user, its bits have the select's shape (no
//! broadcast); inside a sparse FFN's masked region the fused gate runs on the active
//! entries with its keys gathered there, like the region's other protocols. The row
//! maximum's levels use the same gate inside
//! `row_max` itself. A `compare` with several thresholds (the `lut` profile's GeLU and
//! SiLU: sign and both ends of the table from one key) is left alone: splitting the sign
//! off it would add a key per element (about 1,868 bytes) to save 126 online bits.
//!
//! When y is not x, the fused gate starts when both are ready, where the DReLU would have
//! started with x alone and run beside y's producer: so a pair is fused only when y
//! finishes no later than x (by the ASAP schedule of the plan before the pass, compared
//! term by term), which keeps every path's rounds. That leaves out, for example, the
//! `exact` profile's clipped exp (y after 8 squarings) and the `lut` profile's softmax
//! mask (y a 2-round table lookup of x's input): fusing those would save 1,212 key bytes
//! and 126 online bits per element at the price of one round each.

use crate::cost::CostModel;
use crate::passes::schedule;
use comet_ir::poly::MaxPoly;
use comet_ir::{Comparison, NodeId, Op, Program};
use std::collections::HashMap;

/// The round in which each node's value is ready (start + its own rounds), by the ASAP
/// schedule of the plan as it is.
fn ready(p: &mut Program) -> HashMap<NodeId, MaxPoly> {
    schedule::run(p);
    let start = p.analyses.rounds.take().expect("scheduled");
    let model = CostModel::new(p);
    (p.graph.ids())
        .map(|id| {
            let s = start.get(id).cloned().unwrap_or_default();
            (id, s.plus(&model.node(id).rounds))
        })
        .collect()
}

/// Whether `a ≤ b` for every size: each term of `a` is dominated by a term of `b`.
fn no_later(a: &MaxPoly, b: &MaxPoly) -> bool {
    (a.terms().iter()).all(|t| b.terms().iter().any(|u| u.dominates(t)))
}

/// Runs the pass.
pub fn run(p: &mut Program) {
    if p.options.comparison != Comparison::Fss {
        return;
    }
    let ready = ready(p);
    let g = &p.graph;
    let order = g.topo_order().expect("the verifier rejected cycles");
    let pairs: Vec<(NodeId, NodeId, Vec<NodeId>)> = (order.into_iter())
        .filter(|&s| matches!(g.node(s).op, Op::Select))
        .filter_map(|s| {
            let xs = g.operands(s);
            let (bit, y) = (xs[0], xs[1]);
            let fusible = matches!(g.node(bit).op, Op::Drelu)
                && g.users(bit) == [s]
                && g.node(bit).ty.shape == g.node(s).ty.shape
                && g.node(y).ty.shape == g.node(s).ty.shape;
            let x = g.operands(bit)[0];
            let in_time = x == y || no_later(&ready[&y], &ready[&x]);
            let fusible = fusible && in_time;
            let operands = if x == y { vec![x] } else { vec![x, y] };
            fusible.then_some((s, bit, operands))
        })
        .collect();
    // the select becomes the fused node in place (its index, scope, type and declared
    // range kept, so the plan's order and text stay put); its drelu goes
    for (s, bit, operands) in pairs {
        let width = p.graph.node(bit).cmp_width;
        let node = p.graph.node_mut(s);
        node.op = Op::SignSelect;
        node.cmp_width = width;
        p.graph.set_operands(s, &operands);
        p.graph.remove(bit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{Options, compile};
    use comet_ir::{Domain, Elem};

    const RELU: &str = "model m { dim seq, past; input x: fixed[seq, 4] from client;
        weight w: [4, 3]; output y = relu(matmul(x, w)) to client; }";

    fn plan(comparison: Comparison) -> Program {
        let opts = Options {
            comparison,
            ..Options::default()
        };
        compile(RELU, "t.model", &opts).unwrap().program
    }

    fn count(p: &Program, f: impl Fn(&Op) -> bool) -> usize {
        p.graph.ids().filter(|&id| f(&p.graph.node(id).op)).count()
    }

    #[test]
    fn relu_becomes_one_sign_select_with_fss_only() {
        let p = plan(Comparison::Fss);
        let fused: Vec<NodeId> = (p.graph.ids())
            .filter(|&id| matches!(p.graph.node(id).op, Op::SignSelect))
            .collect();
        assert_eq!(fused.len(), 1);
        assert_eq!(p.graph.operands(fused[0]).len(), 1, "y is x");
        assert_eq!(count(&p, |op| matches!(op, Op::Drelu | Op::Select)), 0);
        let gmw = plan(Comparison::Gmw);
        assert_eq!(count(&gmw, |op| matches!(op, Op::SignSelect)), 0);
        assert_eq!(count(&gmw, |op| matches!(op, Op::Drelu)), 1);
    }

    /// `select(drelu(x), y)` for a y ready with x (fused, two operands) and for a y one
    /// Beaver round later (left alone), and a drelu with a second user (left alone).
    #[test]
    fn y_is_fused_only_when_ready_with_x() {
        let mut p = plan(Comparison::Gmw);
        p.options.comparison = Comparison::Fss;
        let x = (p.graph.ids())
            .find(|&id| matches!(p.graph.node(id).op, Op::Drelu))
            .map(|id| p.graph.operands(id)[0])
            .unwrap();
        let (ty, scope) = (p.graph.node(x).ty.clone(), p.graph.node(x).scope.clone());
        let bit_ty = ty.with_elem(Elem::Bit).in_domain(Domain::Bool);
        let select = |p: &mut Program, y: NodeId, extra_user: bool| {
            let bit = p.graph.add(Op::Drelu, &[x], bit_ty.clone(), scope.clone());
            let s = p
                .graph
                .add(Op::Select, &[bit, y], ty.clone(), scope.clone());
            if extra_user {
                p.graph
                    .add(Op::Select, &[bit, x], ty.clone(), scope.clone());
            }
            s
        };
        let early = p
            .graph
            .add(Op::AddConst { value: 1.0 }, &[x], ty.clone(), scope.clone());
        let late = (p.graph).add(Op::Mul, &[x, x], ty.clone(), scope.clone());
        select(&mut p, early, false);
        select(&mut p, late, false);
        select(&mut p, early, true);
        run(&mut p);
        let fused: Vec<Vec<NodeId>> = (p.graph.ids())
            .filter(|&id| matches!(p.graph.node(id).op, Op::SignSelect))
            .map(|id| p.graph.operands(id))
            .collect();
        assert!(fused.contains(&vec![x]), "the plan's relu");
        assert!(fused.contains(&vec![x, early]), "y ready with x");
        assert_eq!(fused.len(), 2, "{fused:?}");
        // the late y's pair and the shared bit's pairs stay
        assert_eq!(count(&p, |op| matches!(op, Op::Drelu)), 2);
        assert_eq!(count(&p, |op| matches!(op, Op::Select)), 3);
        assert!(
            p.analyses.rounds.is_none(),
            "the pass leaves no stale schedule"
        );
    }
}
