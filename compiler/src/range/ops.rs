//! The transfer function of each protocol-stage op: a bound on its result's real value
//! from its operands' bounds (interval arithmetic).

use super::RangeOptions;
use comet_ir::range::CAUSAL_MASK_OFFSET;
use comet_ir::{DimEnv, Interval, NodeId, Op, Program};

/// What a node's operands and context give its transfer function.
pub(super) struct Ctx<'a> {
    /// The program.
    pub p: &'a Program,
    /// The node.
    pub id: NodeId,
    /// Its operands' ranges, in order.
    pub xs: &'a [Interval],
    /// The call's dimensions.
    pub env: DimEnv,
    /// Declared bounds of sources.
    pub opts: &'a RangeOptions,
}

impl Ctx<'_> {
    /// The length of operand `i`'s last axis in this call.
    fn last_len(&self, i: usize) -> f64 {
        let x = self.p.graph.operands(self.id)[i];
        let shape = &self.p.graph.node(x).ty.shape;
        shape.last().map_or(1, |d| d.eval(self.env)) as f64
    }
}

/// The range of the node's real value, or `None` for an op the analysis does not model
/// (it must then be reported unbounded, never treated as safe).
pub(super) fn transfer(c: &Ctx) -> Option<Interval> {
    let xs = c.xs;
    let op = &c.p.graph.node(c.id).op;
    Some(match op {
        Op::Weight { .. } => Interval::symmetric(c.opts.weight_bound),
        Op::Input { .. } => Interval::UNBOUNDED,
        Op::Positions { offset } => Interval::new(*offset as f64, f64::INFINITY),
        Op::CacheRead { .. } => unreachable!("cache reads are set by the caller"),
        Op::Add => xs[0].plus(xs[1]),
        Op::Sub => xs[0].minus(xs[1]),
        Op::Mul => xs[0].times(xs[1]),
        Op::Square => xs[0].square(),
        Op::Neg => xs[0].negated(),
        Op::MulConst { value } => xs[0].scale(*value),
        Op::AddConst { value } => xs[0].plus(Interval::point(*value)),
        Op::MatMul | Op::CacheMatMul { .. } => matmul(c, xs[0], xs[1]),
        Op::BlockMatMul { .. } => matmul(c, xs[0], xs[1]).hull(Interval::point(0.0)),
        Op::Embed => xs[1],
        Op::OneHot { .. } | Op::Drelu | Op::Compare { .. } | Op::Between | Op::B2A => {
            Interval::new(0.0, 1.0)
        }
        Op::Select | Op::SignSelect => xs[xs.len() - 1].hull(Interval::point(0.0)),
        // `apply_mask(x, mask)`: x where its block is active, else 0 (the mask is a bit)
        Op::ApplyMask { .. } => xs[0].hull(Interval::point(0.0)),
        Op::Lut { func, bits, frac } => {
            let (lo, hi) = comet_ir::table::value_range(*func, *bits, *frac);
            Interval::new(lo, hi)
        }
        Op::RowSum => xs[0].scale(c.last_len(0)),
        Op::RowMax => xs[0],
        Op::CausalMask => xs[0].hull(xs[0].plus(Interval::point(CAUSAL_MASK_OFFSET))),
        Op::Rope { .. } => rope(xs[0]),
        Op::Concat { .. } => xs.iter().copied().reduce(Interval::hull)?,
        Op::BlockPermute { .. } => xs[0].hull(Interval::point(0.0)),
        Op::Trunc { .. }
        | Op::FaithfulTrunc { .. }
        | Op::StochasticTrunc { .. }
        | Op::Share { .. }
        | Op::Reveal { .. }
        | Op::Open
        | Op::Output { .. }
        | Op::CacheWrite { .. }
        | Op::Transpose
        | Op::Slice { .. }
        | Op::Row { .. }
        | Op::Pick { .. }
        | Op::SplitHeads { .. }
        | Op::MergeHeads
        | Op::RepeatKv { .. } => xs[0],
        Op::Unary { .. } | Op::Softmax | Op::LayerNorm { .. } | Op::RmsNorm { .. } => {
            return None;
        }
    })
}

/// `[.., m, k] · [k, n]`: each entry is a sum of `k` products of an `a` and a `b`; when
/// `a` is one-hot (an embedding lookup by private ids), a single `b`.
fn matmul(c: &Ctx, a: Interval, b: Interval) -> Interval {
    let left = c.p.graph.operands(c.id)[0];
    if is_one_hot(c.p, left) {
        return b.hull(Interval::point(0.0));
    }
    a.times(b).scale(c.last_len(0))
}

/// Whether `x` is a `one_hot`, possibly shared.
fn is_one_hot(p: &Program, x: NodeId) -> bool {
    match p.graph.node(x).op {
        Op::OneHot { .. } => true,
        Op::Share { .. } => is_one_hot(p, p.graph.operands(x)[0]),
        _ => false,
    }
}

/// A rotation of channel pairs: `x_a·cos − x_b·sin` has magnitude at most
/// `|x|·(|cos| + |sin|) ≤ sqrt(2)·|x|`.
fn rope(x: Interval) -> Interval {
    Interval::symmetric(x.magnitude() * std::f64::consts::SQRT_2)
}
