//! The failure report of one call: every local truncation's bound and failure
//! probability, their union bound, and what makes the bound unreliable.

use super::{RangeOptions, Ranges, analyse, failure_per_element, faithful_failure_per_element};
use comet_ir::dim::numel;
use comet_ir::{DimEnv, Elem, Interval, NodeId, Op, Program};
use serde::Serialize;
use std::collections::HashMap;

/// How many truncations [`RangeReport::worst`] lists.
pub const WORST: usize = 5;

/// The per-element failure probability above which a local truncation is *at risk*:
/// 2^−40.
pub const AT_RISK: f64 = 9.094947017729282e-13;

/// One truncation of a call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TruncationRisk {
    /// The truncation node, numbered as in the plan (`%12`).
    pub node: String,
    /// Whether it is a faithful (FSS) truncation: then it fails only if its input may
    /// leave `[−2^62, 2^62)` ring units (per element 0, or 1 when the bound does not
    /// show it inside); else a local one, failing with probability `|x|·2^scale / 2^64`.
    pub faithful: bool,
    /// The op kind it serves (the scope's origin, else the truncated op's name).
    pub op_kind: String,
    /// Block path and layer (`decoder.3/attention`).
    pub scope: String,
    /// `|x|` bound of the truncated value in real units; `None`: unbounded.
    pub bound: Option<f64>,
    /// Its fractional bits before the truncation.
    pub scale: u32,
    /// Elements truncated in the call.
    pub elements: u64,
    /// Failure probability per element.
    pub per_element: f64,
    /// `elements × per_element`, capped at 1.
    pub total: f64,
}

/// A recipe whose input may leave the range it assumes: its declared ranges, and so the
/// failure bound, do not hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// The recipe's input node, numbered as in the plan.
    pub node: String,
    /// The recipe.
    pub recipe: String,
    /// Block path and layer.
    pub scope: String,
    /// The input's propagated range.
    pub range: Interval,
    /// The range the recipe assumes.
    pub assumed: Interval,
}

/// The truncation failure bound of one call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeReport {
    /// Tokens processed.
    pub seq: u64,
    /// Tokens cached before the call.
    pub past: u64,
    /// The declared weight bound.
    pub weight_bound: f64,
    /// Truncations in the plan, local and faithful.
    pub truncations: u64,
    /// Of those, faithful (FSS) truncations (pass `faithful-trunc`).
    pub faithful: u64,
    /// Elements the faithful truncations truncate in the call.
    pub faithful_elements: u64,
    /// Truncations of an unbounded value (each may fail with probability 1).
    pub unbounded: u64,
    /// Union bound on the probability that some truncation of the call fails, capped at 1
    /// (1 as well when an assumption is violated).
    pub total_failure: f64,
    /// Truncations whose per-element failure probability exceeds [`AT_RISK`]: where a
    /// faithful (FSS) truncation would be needed.
    pub at_risk: u64,
    /// The first of those in plan order: where the bounds first break down.
    pub first_at_risk: Option<TruncationRisk>,
    /// The truncations with the largest totals (at most [`WORST`]), largest first (ties:
    /// larger bound first, then plan order).
    pub worst: Vec<TruncationRisk>,
    /// Recipes whose assumed input range is not implied by the bounds.
    pub violations: Vec<Violation>,
    /// Nodes (`%n (op)`) whose op the analysis does not model.
    pub unmodelled: Vec<String>,
}

/// Analyses `p` for the call `env` and bounds its truncations' failure probability.
pub fn range_report(p: &Program, env: DimEnv, opts: &RangeOptions) -> RangeReport {
    let r = analyse(p, env, opts);
    let names = plan_numbering(p);
    let mut risks = risks_of(p, &r, env, &names);
    let violations = violations(p, &r, &names);
    let sum: f64 = risks.iter().map(|t| t.total).sum();
    let total_failure = if violations.is_empty() {
        sum.min(1.0)
    } else {
        1.0
    };
    let unbounded = risks.iter().filter(|t| t.bound.is_none()).count() as u64;
    let truncations = risks.len() as u64;
    let faithful = risks.iter().filter(|t| t.faithful).count() as u64;
    let faithful_elements = (risks.iter().filter(|t| t.faithful))
        .map(|t| t.elements)
        .sum();
    let at_risk = risks.iter().filter(|t| t.per_element > AT_RISK).count() as u64;
    let first_at_risk = risks.iter().find(|t| t.per_element > AT_RISK).cloned();
    let bound = |t: &TruncationRisk| t.bound.unwrap_or(f64::INFINITY);
    risks.sort_by(|a, b| (b.total.total_cmp(&a.total)).then(bound(b).total_cmp(&bound(a))));
    risks.truncate(WORST);
    RangeReport {
        seq: env.seq,
        past: env.past,
        weight_bound: opts.weight_bound,
        truncations,
        faithful,
        faithful_elements,
        unbounded,
        total_failure,
        at_risk,
        first_at_risk,
        worst: risks,
        violations,
        unmodelled: r
            .unmodelled
            .iter()
            .map(|id| format!("{} ({})", names[id], p.graph.node(*id).op.name()))
            .collect(),
    }
}

/// Every node's name in the plan's canonical numbering (`%12`).
fn plan_numbering(p: &Program) -> HashMap<NodeId, String> {
    let order = p.canonical_order().expect("a verified program is acyclic");
    order
        .into_iter()
        .enumerate()
        .map(|(i, id)| (id, format!("%{i}")))
        .collect()
}

/// The truncations, local and faithful, in plan order.
fn truncations(p: &Program) -> impl Iterator<Item = NodeId> + '_ {
    let order = p.canonical_order().expect("a verified program is acyclic");
    order.into_iter().filter(|id| {
        let node = p.graph.node(*id);
        matches!(
            node.op,
            Op::Trunc { .. } | Op::FaithfulTrunc { .. } | Op::StochasticTrunc { .. }
        ) && matches!(node.ty.domain, comet_ir::Domain::Arith)
    })
}

fn risks_of(
    p: &Program,
    r: &Ranges,
    env: DimEnv,
    names: &HashMap<NodeId, String>,
) -> Vec<TruncationRisk> {
    truncations(p).map(|t| risk(p, r, env, t, names)).collect()
}

/// Every truncation of a shared value in `p` with its risk in the call `env`, in plan
/// order, beside its node: what the pass `faithful-trunc` chooses from.
pub fn truncation_risks(
    p: &Program,
    env: DimEnv,
    opts: &RangeOptions,
) -> Vec<(NodeId, TruncationRisk)> {
    let r = analyse(p, env, opts);
    let names = plan_numbering(p);
    truncations(p)
        .map(|t| (t, risk(p, &r, env, t, &names)))
        .collect()
}

fn risk(
    p: &Program,
    r: &Ranges,
    env: DimEnv,
    t: NodeId,
    names: &HashMap<NodeId, String>,
) -> TruncationRisk {
    let x = p.graph.operands(t)[0];
    let xn = p.graph.node(x);
    let scale = match xn.ty.elem {
        Elem::Fixed { scale } => scale,
        _ => 0,
    };
    let bound = r.of(x).magnitude();
    let node = p.graph.node(t);
    let faithful = matches!(
        node.op,
        Op::FaithfulTrunc { .. } | Op::StochasticTrunc { .. }
    );
    let per_element = if faithful {
        faithful_failure_per_element(bound, scale, p.info.format.ring)
    } else {
        failure_per_element(bound, scale, p.info.format.ring)
    };
    let elements = numel(&xn.ty.shape, env);
    TruncationRisk {
        node: names[&t].clone(),
        faithful,
        op_kind: if node.scope.origin.is_empty() {
            xn.op.name().to_string()
        } else {
            node.scope.origin.clone()
        },
        scope: scope_name(&node.scope),
        bound: bound.is_finite().then_some(bound),
        scale,
        elements,
        per_element,
        total: (elements as f64 * per_element).min(1.0),
    }
}

fn scope_name(s: &comet_ir::Scope) -> String {
    match s.layer {
        Some(l) if !s.path.contains(&l.to_string()) => format!("{} (layer {l})", s.path),
        _ => s.path.clone(),
    }
}

/// The recipe inputs whose propagated range leaves the range the recipe assumes.
fn violations(p: &Program, r: &Ranges, names: &HashMap<NodeId, String>) -> Vec<Violation> {
    violated(p, r)
        .map(|(id, recipe, range, assumed)| Violation {
            node: names[&id].clone(),
            recipe: recipe.to_string(),
            scope: scope_name(&p.graph.node(id).scope),
            range,
            assumed,
        })
        .collect()
}

/// Whether every recipe input of `p` stays, by the ranges `r`, within the range its recipe
/// assumes (no [`Violation`]): only then do the declared ranges, and every bound
/// downstream of them, hold.
pub fn assumptions_hold(p: &Program, r: &Ranges) -> bool {
    violated(p, r).next().is_none()
}

/// Each recipe input outside its assumed range: the node, its recipe, its range and the
/// assumed one.
fn violated<'a>(
    p: &'a Program,
    r: &'a Ranges,
) -> impl Iterator<Item = (NodeId, &'a str, Interval, Interval)> + 'a {
    (p.analyses.declared.iter())
        .flat_map(|table| table.iter())
        .filter_map(|(id, d)| {
            let assumed = d.assumes?;
            let range = r.of(id);
            (!range.within(assumed)).then_some((id, d.recipe.as_str(), range, assumed))
        })
}
