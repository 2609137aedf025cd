//! Pass `fold-norm-gains`: a norm whose output only feeds products with weight matrices
//! (GPT-2's and LLaMA's pre-norms before the attention's and the FFN's projections) leaves
//! its gain and bias to those products: `(x̂·g + β)·W = x̂·(diag(g)·W) + β·W`, with
//! `diag(g)·W` and `β·W` computed once by the weights' owner, in the clear, as local
//! functions of its weights (fixed values: `comet_ir::protocol::fixed_values`), and the
//! product with them a fixed-operand product as before (`[x̂, 1]·[diag(g)·W; β·W]` with a
//! bias: the shift is the fixed operand's last row, so no call reads the weights). The norm keeps its op with a unit
//! gain `1 + 0·g` and a zero bias `0·β`, which the `lut` recipes recognise
//! ([`is_unit_gain`], [`is_zero_bias`]) and skip: per entry one product with the gain and
//! its truncation less, in the rounds the rest of the norm already takes.
//!
//! Exact in real arithmetic. In fixed point `diag(g)·W` is rounded once to the plan's
//! fractional bits (as `W` is), and the norm's output is `x̂` instead of `x̂·g` rounded.
//!
//! Conditions, all checked per norm: a norm of shared values (one party's own norm is
//! computed in the clear); the `lut` profile for norms in a plan whose
//! truncations may be faithful (the recipe that skips the unit gain; other recipes would
//! multiply by ones, so they are left as they are); the gain and bias are one party's
//! weights; every user of the norm is a matrix product reading it as its left operand,
//! whose right operand is a matrix of the same party's weights that nothing else reads
//! (so `diag(g)·W` replaces `W` among the fixed operands, not beside it: GPT-2's final
//! norm before the tied LM head is left alone).

use comet_ir::protocol::mask_owner;
use comet_ir::{ApproxKind, ApproxProfile, Domain, NodeId, Op, Program};

/// Runs the pass.
pub fn run(p: &mut Program) {
    if p.options.approx.get(ApproxKind::Norm) != ApproxProfile::Lut
        || !p.options.may_truncate_faithfully()
    {
        return;
    }
    let norms: Vec<NodeId> = (p.graph.ids())
        .filter(|&id| {
            matches!(
                p.graph.node(id).op,
                Op::LayerNorm { .. } | Op::RmsNorm { .. }
            )
        })
        .collect();
    for n in norms {
        if let Some(products) = foldable(p, n) {
            fold(p, n, &products);
        }
    }
}

/// The products of norm `n` whose weights take its gain, if every user is one.
fn foldable(p: &Program, n: NodeId) -> Option<Vec<NodeId>> {
    let g = &p.graph;
    // a norm of one party's own values is computed in the clear: nothing to save
    if g.node(n).ty.domain != Domain::Arith {
        return None;
    }
    let affine = &g.operands(n)[1..];
    let owner = mask_owner(p, affine[0])?;
    if affine.iter().any(|&a| mask_owner(p, a) != Some(owner)) {
        return None;
    }
    let users = g.users(n);
    let foldable = !users.is_empty()
        && users.iter().all(|&u| {
            let xs = g.operands(u);
            matches!(g.node(u).op, Op::MatMul)
                && xs[0] == n
                && xs[1] != n
                && g.node(xs[1]).ty.shape.len() == 2
                && g.users(xs[1]) == [u]
                && mask_owner(p, xs[1]) == Some(owner)
        });
    foldable.then(|| users.to_vec())
}

/// Moves norm `n`'s gain (and bias) into `products`. With a bias, each product reads the
/// norm's rows with a 1 appended and a matrix with `β·W` appended as its last row, so that
/// the shift is part of the fixed operand (set up once; the weights are not needed by any
/// call after the setup): `[x̂, 1]·[diag(g)·W; β·W]`.
fn fold(p: &mut Program, n: NodeId, products: &[NodeId]) {
    let affine = p.graph.operands(n)[1..].to_vec();
    let (gain, bias) = (affine[0], affine.get(1).copied());
    let scope = p.graph.node(n).scope.clone();
    let add =
        |p: &mut Program, op: Op, xs: &[NodeId]| add_typed(p, op, xs, &scope, "fold-norm-gains");
    // the rows with a 1 appended (shares of the constant: `0·Σx + 1`, local)
    let lhs = match bias {
        None => n,
        Some(_) => {
            let sums = add(p, Op::RowSum, &[n]);
            let zeros = add(p, Op::MulConst { value: 0.0 }, &[sums]);
            let ones = add(p, Op::AddConst { value: 1.0 }, &[zeros]);
            add(p, Op::Concat { axis: 1 }, &[n, ones])
        }
    };
    for &u in products {
        let w = p.graph.operands(u)[1];
        // diag(g)·W = (Wᵀ·g)ᵀ, g broadcast along Wᵀ's rows
        let wt = add(p, Op::Transpose, &[w]);
        let scaled = add(p, Op::Mul, &[wt, gain]);
        let folded = add(p, Op::Transpose, &[scaled]);
        let rhs = match bias {
            None => folded,
            Some(beta) => {
                // β·W as a row: the row sums of Wᵀ·β, transposed
                let terms = add(p, Op::Mul, &[wt, beta]);
                let sums = add(p, Op::RowSum, &[terms]);
                let mut row = add(p, Op::Transpose, &[sums]);
                // the product's own bias joins the shift: β·W + b
                // the product's own bias joins the shift row when a `lut` GeLU or SiLU
                // alone reads the sum ([`super::fold_biases::bias_add`])
                let owner = mask_owner(p, beta);
                if let Some((plus, b)) = owner.and_then(|o| super::fold_biases::bias_add(p, u, o)) {
                    row = add(p, Op::Add, &[row, b]);
                    p.graph.replace_uses(plus, u);
                    p.graph.remove(plus);
                }
                add(p, Op::Concat { axis: 0 }, &[folded, row])
            }
        };
        p.graph.set_operands(u, &[lhs, rhs]);
    }
    let zero_gain = add(p, Op::MulConst { value: 0.0 }, &[gain]);
    let unit = add(p, Op::AddConst { value: 1.0 }, &[zero_gain]);
    let mut operands = vec![p.graph.operands(n)[0], unit];
    if let Some(beta) = bias {
        operands.push(add(p, Op::MulConst { value: 0.0 }, &[beta]));
    }
    p.graph.set_operands(n, &operands);
}

/// Adds `op` of `xs` in `scope`, typed by inference (a pass that builds an ill-typed node,
/// named `pass` in the panic, is a compiler bug).
pub(super) fn add_typed(
    p: &mut Program,
    op: Op,
    xs: &[NodeId],
    scope: &comet_ir::Scope,
    pass: &str,
) -> NodeId {
    let tys: Vec<_> = xs.iter().map(|x| &p.graph.node(*x).ty).collect();
    let ty = comet_ir::infer::infer(&op, &tys, p.ctx())
        .unwrap_or_else(|e| panic!("{pass} built an ill-typed `{}`: {e}", op.name()));
    p.graph.add(op, xs, ty, scope.clone())
}

/// Whether `gain` is the unit gain this pass leaves a norm with: `1 + 0·g`.
pub fn is_unit_gain(p: &Program, gain: NodeId) -> bool {
    matches!(p.graph.node(gain).op, Op::AddConst { value } if value == 1.0)
        && is_zero_bias(p, p.graph.operands(gain)[0])
}

/// Whether `bias` is the zero bias this pass leaves a norm with: `0·β`.
pub fn is_zero_bias(p: &Program, bias: NodeId) -> bool {
    matches!(p.graph.node(bias).op, Op::MulConst { value } if value == 0.0)
}
