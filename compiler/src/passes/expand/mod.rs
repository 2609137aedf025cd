//! Pass `expand`: semantic stage → semantic stage without composite functions.
//!
//! Every composite node ([`Op::is_composite`]: the element-wise [`comet_ir::UnaryFn`]s,
//! `softmax`, `layer_norm`, `rms_norm`) is replaced by a subgraph of semantic primitives
//! (`add sub neg mul square add_const mul_const row_sum row_max drelu select`), so the
//! cost of every nonlinear function follows from the primitives' costs and the schedule
//! (PROTOCOLS.md, "Composite functions are expanded into primitives"). The recipes are the
//! `exact` profile of APPROXIMATIONS.md; each one (in `recipes.rs`) states the input range
//! it assumes and cites its source, and [`RECIPES`] lists the ranges for reports.
//!
//! Types of the new nodes come from [`comet_ir::infer::infer`], never from the recipe. Each
//! new node takes the composite's block path and layer, and as its `origin` the
//! composite's op name (or the composite's own origin if it already had one), so cost
//! tables can charge the squarings of an `exp` to the `softmax` they serve.

mod recipes;

#[cfg(test)]
mod tests;

pub use recipes::{RECIPES, RSQRT_HIGH, RSQRT_LOW};

use super::builder::{Builder, composite_scope};
use comet_ir::{NodeId, Op, Program, UnaryFn};

/// Runs the pass: expands every composite node, in topological order.
pub fn run(p: &mut Program) {
    let order = p.graph.topo_order().expect("the verifier rejected cycles");
    for id in order {
        if p.graph.node(id).op.is_composite() {
            expand_node(p, id);
        }
    }
}

/// Replaces one composite node by its recipe and removes it.
fn expand_node(p: &mut Program, id: NodeId) {
    let op = p.graph.node(id).op.clone();
    let scope = composite_scope(p, id);
    let xs = p.graph.operands(id);
    let mut b = Builder::new(p, scope);
    let y = match op {
        Op::Unary { func } => unary(&mut b, func, xs[0]),
        Op::Softmax => recipes::softmax(&mut b, xs[0]),
        Op::LayerNorm { eps } => recipes::layer_norm(&mut b, xs[0], xs[1], xs[2], eps),
        Op::RmsNorm { eps } => recipes::rms_norm(&mut b, xs[0], xs[1], eps),
        other => unreachable!("`{}` is not composite", other.name()),
    };
    p.graph.replace_uses(id, y);
    p.graph.remove(id);
}

/// The recipe of an element-wise function.
fn unary(b: &mut Builder, func: UnaryFn, x: NodeId) -> NodeId {
    match func {
        UnaryFn::Relu => recipes::relu(b, x),
        UnaryFn::Gelu => recipes::gelu(b, x),
        UnaryFn::Silu => recipes::silu(b, x),
        UnaryFn::Tanh => recipes::tanh(b, x),
        UnaryFn::Exp => recipes::exp(b, x),
        UnaryFn::Sigmoid => recipes::sigmoid(b, x),
        UnaryFn::Reciprocal => recipes::reciprocal(b, x),
        UnaryFn::Rsqrt => recipes::rsqrt(b, x),
    }
}
