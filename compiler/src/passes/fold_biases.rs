//! Pass `fold-biases`: a weight product whose bias feeds a `lut` activation takes the bias
//! as its fixed operand's last row: `x·W + b = [x, 1]·[W; b]`.
//!
//! The product's truncation then outputs the biased value itself, so the activation's
//! comparison and selects read that truncation's opening (pass `fuse-trunc-openings`)
//! instead of opening their own inputs: BERT's and OPT's up projections, whose input is
//! not a folded norm (pass `fold-norm-gains` gives pre-norm models the shift row and the
//! bias with it). The cost: the ones column of `x`, one more opened element per row, and
//! one more row of the fixed operand, set up once.
//!
//! Exact in real arithmetic; in fixed point the bias joins the product before its
//! truncation instead of after it (a value at scale 2f, exactly `b·2^f`).
//!
//! Conditions: the `lut` profile for the activation and truncations that may be faithful
//! (where the fusion can happen); the product's right operand is a matrix of one party's
//! weights that nothing else reads (it is replaced, not copied); the product's only user
//! adds a vector of the same party's weights, and every user of that sum is a GeLU or SiLU.

use comet_ir::protocol::mask_owner;
use comet_ir::{ApproxKind, ApproxProfile, NodeId, Op, Party, Program, UnaryFn};

/// Runs the pass (after `fold-norm-gains`, before `approximate`).
pub fn run(p: &mut Program) {
    if !p.options.may_truncate_faithfully() {
        return;
    }
    let products: Vec<(NodeId, NodeId, NodeId)> = (p.graph.ids())
        .filter_map(|u| foldable(p, u).map(|(plus, b)| (u, plus, b)))
        .collect();
    for (u, plus, b) in products {
        fold(p, u, plus, b);
    }
}

/// The bias add after product `u` and its bias, if `u` may take it.
fn foldable(p: &Program, u: NodeId) -> Option<(NodeId, NodeId)> {
    let g = &p.graph;
    if !matches!(g.node(u).op, Op::MatMul) {
        return None;
    }
    let [x, w] = g.operands(u)[..] else {
        return None;
    };
    let owner = mask_owner(p, w)?;
    let matrix = g.node(w).ty.shape.len() == 2 && g.users(w) == [u] && x != w;
    matrix.then(|| bias_add(p, u, owner))?
}

/// The add of a bias vector `b` of `owner`'s weights to product `u`, its only user, if
/// any and if a `lut` GeLU or SiLU alone reads the sum: `(add, b)`. Here and in pass
/// `fold-norm-gains` (whose folded norm already gives the product a shift row,
/// `[x̂, 1]·[W'; β·W + b]`) the product then computes the biased value and the add goes
/// (exact in real arithmetic; in fixed point `b` joins the product before its truncation
/// instead of after it), so the activation's comparison and selects read the product's
/// truncation directly (pass `fuse-trunc-openings`). Only then: the range analysis bounds
/// the product through the concatenations (Cauchy–Schwarz on `[x, 1]` and the column
/// `(W_j, b_j)`), which multiplies the bias by about `sqrt(d)`; a large bias (the
/// synthetic ReLU model of `comet bench sparsity`) would widen everything after it for no
/// opening saved.
pub(super) fn bias_add(p: &Program, u: NodeId, owner: Party) -> Option<(NodeId, NodeId)> {
    let g = &p.graph;
    let [plus] = g.users(u)[..] else {
        return None;
    };
    let xs = g.operands(plus);
    if !matches!(g.node(plus).op, Op::Add) || xs.len() != 2 {
        return None;
    }
    let b = *xs.iter().find(|&&y| y != u)?;
    let n = g.node(u).ty.shape.last().cloned();
    let vector = g.node(b).ty.shape.len() == 1 && g.node(b).ty.shape.last().cloned() == n;
    (vector && feeds_lut_activation(p, plus) && mask_owner(p, b) == Some(owner))
        .then_some((plus, b))
}

/// Whether every user of `x` is a GeLU or SiLU of the `lut` profile, whose comparison and
/// selects may read the opening of a truncation of `x` (pass `fuse-trunc-openings`).
fn feeds_lut_activation(p: &Program, x: NodeId) -> bool {
    let users = p.graph.users(x);
    !users.is_empty()
        && users.iter().all(|&a| match p.graph.node(a).op {
            Op::Unary {
                func: UnaryFn::Gelu,
            } => lut(p, ApproxKind::Gelu),
            Op::Unary {
                func: UnaryFn::Silu,
            } => lut(p, ApproxKind::Silu),
            _ => false,
        })
}

fn lut(p: &Program, kind: ApproxKind) -> bool {
    p.options.approx.get(kind) == ApproxProfile::Lut
}

/// `[x, 1]·[W; b]` in place of `x·W + b`.
fn fold(p: &mut Program, u: NodeId, plus: NodeId, b: NodeId) {
    let [x, w] = p.graph.operands(u)[..] else {
        unreachable!("checked by `foldable`")
    };
    let scope = p.graph.node(u).scope.clone();
    let add = |p: &mut Program, op: Op, xs: &[NodeId]| {
        super::fold_gains::add_typed(p, op, xs, &scope, "fold-biases")
    };
    // the rows with a 1 appended (shares of the constant: `0·Σx + 1`, local)
    let sums = add(p, Op::RowSum, &[x]);
    let zeros = add(p, Op::MulConst { value: 0.0 }, &[sums]);
    let ones = add(p, Op::AddConst { value: 1.0 }, &[zeros]);
    let lhs = add(p, Op::Concat { axis: 1 }, &[x, ones]);
    // b as a row `[1, n]`: a zero row of W (the first column of Wᵀ, transposed) plus b
    let wt = add(p, Op::Transpose, &[w]);
    let column = add(p, Op::Slice { start: 0, end: 1 }, &[wt]);
    let row = add(p, Op::Transpose, &[column]);
    let zero_row = add(p, Op::MulConst { value: 0.0 }, &[row]);
    let bias_row = add(p, Op::Add, &[zero_row, b]);
    let rhs = add(p, Op::Concat { axis: 0 }, &[w, bias_row]);
    p.graph.set_operands(u, &[lhs, rhs]);
    p.graph.replace_uses(plus, u);
    p.graph.remove(plus);
}
