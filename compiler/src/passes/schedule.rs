//! Pass `schedule`: assigns every node the round in which it starts (ASAP).
//!
//! A node starts as soon as every operand has finished: `start(n) = max over operands x of
//! start(x) + rounds(x)`, where `rounds(x)` is the number of sequential exchanges of x's
//! protocol (0 for local work; `2⌈log2 t⌉` for a row maximum over `t` keys). All messages
//! of the nodes that exchange in the same round travel in one exchange, so independent
//! communication at the same depth is merged, and work off the critical path (it finishes
//! before the nodes that wait for it) adds no round. Round numbers are polynomials in the
//! symbolic sizes, kept as a maximum over paths ([`MaxPoly`]).
//!
//! One exception: a comparison that reads its stochastic truncation's opening
//! ([`Protocol::DreluOpened`]) sends nothing and needs only that opening, so it starts in
//! the truncation's round and ends with it.

use crate::cost::CostModel;
use comet_ir::poly::{MaxPoly, Poly};
use comet_ir::protocol::Protocol;
use comet_ir::{NodeId, Program, SideTable};
use std::collections::HashMap;

/// Runs the pass.
pub fn run(p: &mut Program) {
    let model = CostModel::new(p);
    let order = p.graph.topo_order().expect("the verifier rejected cycles");
    let costs: HashMap<NodeId, _> = order.iter().map(|id| (*id, model.node(*id))).collect();
    let mut start: SideTable<MaxPoly> = SideTable::new();
    for id in &order {
        if costs[id].protocol == Protocol::DreluOpened {
            let trunc = p.graph.operands(*id)[0];
            let s = start.get(trunc).expect("operands come first").clone();
            start.insert(*id, s);
            continue;
        }
        let s = p
            .graph
            .operands(*id)
            .iter()
            .fold(MaxPoly::default(), |acc, x| {
                let done = start
                    .get(*x)
                    .expect("operands come first")
                    .plus(&costs[x].rounds);
                acc.max(&done)
            });
        start.insert(*id, s);
    }
    p.analyses.rounds = Some(start);
}

/// The total rounds of one call: the latest finish over all nodes.
pub fn total_rounds(p: &Program) -> MaxPoly {
    let (Some(start), Some(costs)) = (&p.analyses.rounds, &p.analyses.costs) else {
        return MaxPoly::default();
    };
    p.graph.ids().fold(MaxPoly::default(), |acc, id| {
        let own = costs.get(id).map_or(Poly::zero(), |c| c.rounds.clone());
        acc.max(&start.get(id).cloned().unwrap_or_default().plus(&own))
    })
}
