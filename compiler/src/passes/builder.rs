//! Adding primitive nodes on behalf of a composite node (passes `approximate`, `expand`).
//!
//! Every node a pass builds in place of a composite takes its types from
//! [`comet_ir::infer::infer`], never from the pass, and the composite's scope
//! ([`composite_scope`]), so cost tables charge the replacement to the op it implements.

use comet_ir::{Declared, Interval, NodeId, Op, Program, Scope, UnaryFn, ValueType};

/// The scope of the nodes that replace composite `id`: its block path and layer, and as
/// `origin` the composite's op name, or the composite's own origin if it already had one
/// (the reciprocal a softmax approximation emits stays `softmax` once expanded).
pub(crate) fn composite_scope(p: &Program, id: NodeId) -> Scope {
    let node = p.graph.node(id);
    Scope {
        origin: match node.scope.origin.as_str() {
            "" => node.op.name().to_string(),
            kept => kept.to_string(),
        },
        ..node.scope.clone()
    }
}

/// Adds nodes in one scope, typed by the IR's type rules.
pub(crate) struct Builder<'a> {
    p: &'a mut Program,
    scope: Scope,
}

impl<'a> Builder<'a> {
    /// A builder adding nodes in `scope`.
    pub(crate) fn new(p: &'a mut Program, scope: Scope) -> Self {
        Builder { p, scope }
    }

    /// Adds `op` applied to `xs`, typed by the IR's type rule.
    ///
    /// # Panics
    /// If the rule rejects the operands: the composite was well typed, so this is a bug in
    /// a recipe.
    pub(crate) fn emit(&mut self, op: Op, xs: &[NodeId]) -> NodeId {
        let tys: Vec<&ValueType> = xs.iter().map(|x| &self.p.graph.node(*x).ty).collect();
        let ty = comet_ir::infer::infer(&op, &tys, self.p.ctx())
            .unwrap_or_else(|e| panic!("a recipe built an ill-typed `{}`: {e}", op.name()));
        self.p.graph.add(op, xs, ty, self.scope.clone())
    }

    /// The program being built.
    pub(crate) fn program(&self) -> &Program {
        self.p
    }

    /// The constant width of `x`'s last axis (norms are only typed when it is constant).
    pub(crate) fn last_width(&self, x: NodeId) -> u64 {
        let ty = &self.p.graph.node(x).ty;
        ty.shape
            .last()
            .and_then(|d| d.as_const())
            .and_then(|c| u64::try_from(c).ok())
            .expect("a norm's last axis is a constant (checked by its type rule)")
    }

    pub(crate) fn add(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.emit(Op::Add, &[a, b])
    }

    pub(crate) fn sub(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.emit(Op::Sub, &[a, b])
    }

    pub(crate) fn neg(&mut self, x: NodeId) -> NodeId {
        self.emit(Op::Neg, &[x])
    }

    pub(crate) fn mul(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.emit(Op::Mul, &[a, b])
    }

    pub(crate) fn square(&mut self, x: NodeId) -> NodeId {
        self.emit(Op::Square, &[x])
    }

    pub(crate) fn add_const(&mut self, x: NodeId, value: f64) -> NodeId {
        self.emit(Op::AddConst { value }, &[x])
    }

    pub(crate) fn mul_const(&mut self, x: NodeId, value: f64) -> NodeId {
        self.emit(Op::MulConst { value }, &[x])
    }

    pub(crate) fn row_sum(&mut self, x: NodeId) -> NodeId {
        self.emit(Op::RowSum, &[x])
    }

    pub(crate) fn row_max(&mut self, x: NodeId) -> NodeId {
        self.emit(Op::RowMax, &[x])
    }

    pub(crate) fn drelu(&mut self, x: NodeId) -> NodeId {
        self.emit(Op::Drelu, &[x])
    }

    pub(crate) fn select(&mut self, bit: NodeId, x: NodeId) -> NodeId {
        self.emit(Op::Select, &[bit, x])
    }

    /// `[lo ≤ x < hi]` from the bits `[x ≥ lo]` and `[x ≥ hi]` of one value (`lo < hi`).
    pub fn between(&mut self, above_low: NodeId, above_high: NodeId) -> NodeId {
        self.emit(Op::Between, &[above_low, above_high])
    }

    pub(crate) fn b2a(&mut self, bit: NodeId) -> NodeId {
        self.emit(Op::B2A, &[bit])
    }

    pub(crate) fn causal_mask(&mut self, x: NodeId) -> NodeId {
        self.emit(Op::CausalMask, &[x])
    }

    /// Records that the recipe guarantees `x`'s real value to lie in `[lo, hi]` (while its
    /// input lies in the range it assumes): read by the range analysis.
    pub(crate) fn declare(&mut self, x: NodeId, lo: f64, hi: f64) {
        self.fact(x).range = Some(Interval::new(lo, hi));
    }

    /// Records that every row (last axis) of `x`'s real value has an L2 norm of at most
    /// `l2` and an L1 norm of at most `l1` (`∞`: not declared); the range analysis adds
    /// one unit in the last place per entry for fixed-point rounding.
    pub(crate) fn declare_norms(&mut self, x: NodeId, l2: f64, l1: f64) {
        let f = self.fact(x);
        f.row_l2 = l2.is_finite().then_some(l2);
        f.row_l1 = l1.is_finite().then_some(l1);
    }

    /// Records that every row of `x = (s ⊙ g)·t` has an L2 norm of at most `c·max|g|`
    /// ([`comet_ir::Declared::row_l2_per_gain`]).
    pub(crate) fn declare_norm_per_gain(&mut self, x: NodeId, c: f64) {
        self.fact(x).row_l2_per_gain = Some(c);
    }

    /// Keeps the product `x` at its doubled scale: `insert-conversions` does not truncate
    /// it ([`comet_ir::Declared::untruncated`]); its readers must be products whose own
    /// truncation brings the result back, and the recipe must bound that result.
    pub(crate) fn keep_scale(&mut self, x: NodeId) {
        self.fact(x).untruncated = true;
    }

    /// Records that `recipe` assumes its input `x` to lie in `[lo, hi]`.
    pub(crate) fn assume(&mut self, x: NodeId, recipe: &str, lo: f64, hi: f64) {
        let f = self.fact(x);
        f.assumes = Some(Interval::new(lo, hi));
        f.recipe = recipe.to_string();
    }

    fn fact(&mut self, x: NodeId) -> &mut Declared {
        let table = self
            .p
            .analyses
            .declared
            .get_or_insert_with(Default::default);
        if table.get(x).is_none() {
            table.insert(x, Declared::default());
        }
        table.get_mut(x).expect("inserted above")
    }

    /// A composite element-wise function, left for `expand`.
    pub(crate) fn unary(&mut self, func: UnaryFn, x: NodeId) -> NodeId {
        self.emit(Op::Unary { func }, &[x])
    }
}
