//! Pass `approximate`: semantic stage → semantic stage, with the nonlinear composites
//! replaced by the forms of the plan's approximation profiles (APPROXIMATIONS.md).
//!
//! The plan's [`ApproxConfig`] (`program.options.approx`, set by the driver from
//! `--approx`) names a profile per op kind: `gelu`, `silu`, `softmax`, `norm`
//! (`layer_norm` and `rms_norm`). Every composite of a kind whose profile is not `exact`
//! is replaced by that profile's [`Rewrite`] ([`REWRITES`] lists them, each with its
//! declared range and maximum error); everything else is left to `expand`, which then
//! expands the remaining composites, including those a rewrite emits (the one
//! `reciprocal` per softmax row), with the exact recipes. A profile that defines no form
//! for an op (`bolt` and `norm`, `puma` and `norm` — PUMA's LayerNorm is the exact
//! recipe) leaves it exact; [`effective`] says so before the pass runs, so the plan
//! records only what was applied.
//!
//! New nodes are typed by [`comet_ir::infer::infer`] and take the composite's scope with
//! its op name as `origin` (as `expand` does), so `inspect` charges a rewrite to the same
//! op-kind row as the exact recipe and plans with different profiles compare row by row.
//! Which form an origin got follows from the plan's `approx` line and [`rewrite`]; no
//! node carries it.

mod activation;
pub mod lookup;
mod norm;
mod piecewise;
pub mod samples;
mod softmax;
mod table;

#[cfg(test)]
mod tests;

pub use activation::{
    BOLT_GELU_ABS, BOLT_GELU_CUT, BUMBLEBEE_GELU_CUT, BUMBLEBEE_SIGMOID_ABS, BUMBLEBEE_SILU_CUT,
    PUMA_GELU_BREAKS, PUMA_GELU_CUBIC, PUMA_GELU_SEXTIC, PUMA_SILU_BREAKS, PUMA_SILU_QUADRATIC,
    PUMA_SILU_SEXTIC, QUAD,
};
pub use softmax::{BOLT_EXP_SQUARINGS, EXP_CLIP, PUMA_EXP_SQUARINGS, RELUN1_EPS, TWO_QUAD_SHIFT};
pub use table::{Formula, REWRITES, Rewrite, ops_of, rewrite};

use super::builder::{Builder, composite_scope};
use comet_ir::{ApproxConfig, ApproxKind, ApproxProfile, NodeId, Op, Program, UnaryFn};

/// `config` with every kind whose profile defines no rewrite set to `exact`: what the
/// pass will apply.
pub fn effective(config: ApproxConfig) -> ApproxConfig {
    let mut out = config;
    for kind in ApproxKind::ALL {
        let profile = config.get(kind);
        if !ops_of(kind).iter().any(|op| rewrite(profile, op).is_some()) {
            out.set(kind, ApproxProfile::Exact);
        }
    }
    out
}

/// Runs the pass: replaces every composite whose kind has a rewrite under the plan's
/// profiles, in topological order.
pub fn run(p: &mut Program) {
    let config = p.options.approx;
    if config.is_exact() {
        return;
    }
    let order = p.graph.topo_order().expect("the verifier rejected cycles");
    for id in order {
        if let Some(r) = chosen(&p.graph.node(id).op, config) {
            replace(p, id, r);
        }
    }
}

/// The op kind of a composite `op`, if a profile may replace it.
fn kind_of(op: &Op) -> Option<ApproxKind> {
    match op {
        Op::Unary {
            func: UnaryFn::Gelu,
        } => Some(ApproxKind::Gelu),
        Op::Unary {
            func: UnaryFn::Silu,
        } => Some(ApproxKind::Silu),
        Op::Softmax => Some(ApproxKind::Softmax),
        Op::LayerNorm { .. } | Op::RmsNorm { .. } => Some(ApproxKind::Norm),
        _ => None,
    }
}

/// The rewrite `config` chooses for `op`, if any.
fn chosen(op: &Op, config: ApproxConfig) -> Option<&'static Rewrite> {
    let kind = kind_of(op)?;
    rewrite(config.get(kind), op.name())
}

/// Replaces composite `id` by the form of `r` and removes it, with operands that only
/// it used and that are not sources (the `causal_mask` that `2Quad` bypasses).
fn replace(p: &mut Program, id: NodeId, r: &Rewrite) {
    let scope = composite_scope(p, id);
    let xs = p.graph.operands(id);
    let op = p.graph.node(id).op.clone();
    let y = (r.build)(&mut Builder::new(p, scope), &xs, &op);
    p.graph.replace_uses(id, y);
    p.graph.remove(id);
    // operands the rewrite no longer reads, and what only they read
    let mut left = xs;
    while let Some(x) = left.pop() {
        let unused = p.graph.contains(x) && p.graph.users(x).is_empty();
        if unused && !p.graph.node(x).op.is_source() {
            left.extend(p.graph.operands(x));
            p.graph.remove(x);
        }
    }
}
