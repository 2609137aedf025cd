//! Pass `insert-conversions`: semantic stage → protocol stage.
//!
//! Rebuilds the graph node by node (in canonical order) and makes every conversion
//! explicit:
//! - a value private to one party that meets a shared value, or the other party's private
//!   value, is `share`d first (once per value: a weight used twice is shared once);
//! - an embedding lookup with private ids becomes a `one_hot` at the ids' owner (integers,
//!   scale 0), shared, times the shared table: no truncation needed;
//! - a product whose scale exceeds the plan's `frac` is followed by a `trunc` back to it
//!   (SecureML local truncation; a sparse FFN's projection read by `apply_mask` only is
//!   truncated after the mask, in the masked region), except a product read by table
//!   lookups only: a `lut` reads a bit slice of its input at any scale (each party shifts
//!   its own share, [`comet_ir::table`]), so it reads the product itself and the
//!   truncation's round goes; and, in plans whose truncations may be faithful, a product
//!   read only by `mul_const`s whose declared ranges keep the doubly scaled value far
//!   inside the ring, which then truncate once (by both scales' bits) instead of twice;
//! - outputs keep the `reveal` that `lower` placed, so a value is opened only to the party
//!   that receives it.
//!
//! The result passes the verifier's protocol-stage rules: scales line up, and no private
//! value reaches a shared computation without a `share`.

use comet_ir::{Domain, Graph, Node, NodeId, Op, Program, Scope, Stage, ValueType};
use std::collections::HashMap;

struct Rebuild<'a> {
    old: &'a Program,
    new: Program,
    map: HashMap<NodeId, NodeId>,
    shared: HashMap<NodeId, NodeId>,
}

/// Runs the pass.
pub fn run(p: &mut Program) {
    let order = p.graph.topo_order().expect("the verifier rejected cycles");
    let mut r = Rebuild {
        old: p,
        new: Program {
            info: p.info.clone(),
            stage: Stage::Protocol,
            options: p.options.clone(),
            graph: Graph::new(),
            analyses: Default::default(),
        },
        map: HashMap::new(),
        shared: HashMap::new(),
    };
    for id in order {
        let new = r.convert(id);
        r.map.insert(id, new);
        r.carry_declared(id, new);
    }
    *p = r.new;
}

fn is_shared(d: Domain) -> bool {
    matches!(d, Domain::Arith | Domain::Bool)
}

impl Rebuild<'_> {
    fn ty(&self, id: NodeId) -> &ValueType {
        &self.new.graph.node(id).ty
    }

    fn add(&mut self, op: Op, xs: &[NodeId], scope: &Scope) -> NodeId {
        let tys: Vec<&ValueType> = xs.iter().map(|x| self.ty(*x)).collect();
        let ty = comet_ir::infer::infer(&op, &tys, self.new.ctx()).unwrap_or_else(|e| {
            panic!("insert-conversions built an ill-typed `{}`: {e}", op.name())
        });
        self.new.graph.add(op, xs, ty, scope.clone())
    }

    fn convert(&mut self, id: NodeId) -> NodeId {
        let node: &Node = self.old.graph.node(id);
        let scope = with_origin(&node.scope, node.op.name());
        let xs: Vec<NodeId> = self
            .old
            .graph
            .operands(id)
            .iter()
            .map(|x| self.map[x])
            .collect();
        match &node.op {
            op if op.is_source() => self.source(node),
            Op::Embed
                if self.ty(xs[0]).domain != Domain::Public
                    && self.ty(xs[0]).domain != self.ty(xs[1]).domain =>
            {
                self.private_embed(xs[0], xs[1], &scope)
            }
            op => {
                // a shuffle permutes shares, so its operand is shared even alone
                let force = matches!(op, Op::BlockPermute { .. });
                let xs = self.share_operands(&xs, &scope, force);
                let y = self.add(op.clone(), &xs, &scope);
                if self.masked_product(id)
                    || self.read_by_tables(id, y)
                    || self.read_by_scalings(id, y)
                    || self.read_by_row_sums(id, y)
                    || self.read_by_signs(id, y)
                    || self.kept_at_scale(id)
                {
                    return y;
                }
                self.truncate(y, &scope)
            }
        }
    }

    fn source(&mut self, node: &Node) -> NodeId {
        let mut ty = node.ty.clone();
        if matches!(node.op, Op::CacheRead { .. }) && ty.domain != Domain::Public {
            ty.domain = Domain::Arith; // the cache holds shares
        }
        self.new
            .graph
            .add(node.op.clone(), &[], ty, node.scope.clone())
    }

    /// Shares the private operands of a computation that involves shares or both parties.
    fn share_operands(&mut self, xs: &[NodeId], scope: &Scope, force: bool) -> Vec<NodeId> {
        let doms: Vec<Domain> = xs.iter().map(|x| self.ty(*x).domain).collect();
        let privates: std::collections::BTreeSet<_> = doms
            .iter()
            .filter(|d| matches!(d, Domain::Private(_)))
            .collect();
        let needs_shares = doms.iter().any(|d| is_shared(*d)) || privates.len() > 1 || force;
        if !needs_shares {
            return xs.to_vec();
        }
        xs.iter().map(|x| self.share(*x, scope)).collect()
    }

    /// `share` of a private value (memoized), or the value itself.
    fn share(&mut self, x: NodeId, scope: &Scope) -> NodeId {
        let Domain::Private(from) = self.ty(x).domain else {
            return x;
        };
        if let Some(s) = self.shared.get(&x) {
            return *s;
        }
        let owner_scope = self.new.graph.node(x).scope.clone();
        let scope = if owner_scope.path.is_empty() && owner_scope.layer.is_none() {
            scope.clone()
        } else {
            owner_scope
        };
        let s = self.add(Op::Share { from }, &[x], &scope);
        self.shared.insert(x, s);
        s
    }

    /// `embed(ids, table)` with private ids: `one_hot(ids)` at their owner, shared, times
    /// the shared table. One-hot rows are integers (scale 0), so the product keeps the
    /// table's scale.
    fn private_embed(&mut self, ids: NodeId, table: NodeId, scope: &Scope) -> NodeId {
        let depth = self.ty(table).shape[0]
            .as_const()
            .expect("a weight has a constant shape") as u64;
        let hot = self.add(Op::OneHot { depth }, &[ids], scope);
        let xs = self.share_operands(&[hot, table], scope, false);
        self.add(Op::MatMul, &xs, scope)
    }

    /// Carries the declared range of `old` to `new`, and to the product under `new` when
    /// `new` is its truncation (the same real value: the truncation's input is where a
    /// large value would make it fail).
    fn carry_declared(&mut self, old: NodeId, new: NodeId) {
        let Some(d) = self.old.analyses.declared.as_ref().and_then(|t| t.get(old)) else {
            return;
        };
        let table = self
            .new
            .analyses
            .declared
            .get_or_insert_with(Default::default);
        table.insert(new, d.clone());
        if matches!(self.new.graph.node(new).op, Op::Trunc { .. }) {
            let product = self.new.graph.operands(new)[0];
            table.insert(product, d.clone());
        }
    }

    /// Whether `old` is a product read only by `apply_mask` nodes (a sparse FFN's up or
    /// gate projection): its truncation goes after the mask, into the masked region, so
    /// that it runs on the active blocks only.
    ///
    /// Only for a predictor beside attention, whose mask is ready before the product: a
    /// predictor on the FFN's input opens its mask two rounds after the product starts,
    /// and the truncation waiting for it would add a round.
    fn masked_product(&self, old: NodeId) -> bool {
        let early = (self.old.options.sparsity.as_ref())
            .is_some_and(|s| s.input == comet_ir::ffn::PredictorInput::Attention);
        if !early {
            return false;
        }
        let g = &self.old.graph;
        let users = g.users(old);
        matches!(g.node(old).op, Op::MatMul)
            && !users.is_empty()
            && users
                .iter()
                .all(|&u| matches!(g.node(u).op, Op::ApplyMask { .. }) && g.operands(u)[0] == old)
    }

    /// Whether `old` (converted to `new`) is read by table lookups only, each of which can
    /// take its index from `new` at its scale: a lookup of `n` index bits with `q`
    /// fractional bits reads an input at scale `s ≥ q` when `n + s − q ≤ 64` (the index
    /// survives the carry lost between the two parties' shifted shares,
    /// [`comet_ir::table`]). Its truncation would only cost a round.
    fn read_by_tables(&self, old: NodeId, new: NodeId) -> bool {
        let comet_ir::Elem::Fixed { scale } = self.ty(new).elem else {
            return false;
        };
        if scale <= self.new.info.format.frac {
            return false;
        }
        let users = self.old.graph.users(old);
        !users.is_empty()
            && users.iter().all(|&u| match self.old.graph.node(u).op {
                Op::Lut { bits, frac, .. } => frac <= scale && bits + scale - frac <= 64,
                _ => false,
            })
    }

    /// Whether `old` (converted to `new`, a product at scale `s`) is read only by
    /// `mul_const`s by non-integer constants, each with a declared range `[lo, hi]` such
    /// that its value at scale `s + frac` stays within [`SCALED_LIMIT`] ring units. Each
    /// such `mul_const` then yields scale `s + frac` and one truncation by `s` bits, where
    /// the product's own truncation would have cost a round (and the constant's rounding
    /// error is the same: the constant is encoded at `frac` bits either way).
    ///
    /// Only when the plan's policy may make truncations faithful (`auto`, `always`): a
    /// local truncation of the doubly scaled value would fail with probability
    /// `2^frac·|c|` times that of the product's own (`|c|` the constant), so plans with
    /// every truncation local (`never`, or no policy) keep both.
    fn read_by_scalings(&self, old: NodeId, new: NodeId) -> bool {
        if !self.old.options.may_truncate_faithfully() {
            return false;
        }
        let frac = self.new.info.format.frac;
        let comet_ir::Elem::Fixed { scale } = self.ty(new).elem else {
            return false;
        };
        if scale <= frac || scale + frac > 64 {
            return false;
        }
        let declared = self.old.analyses.declared.as_ref();
        let users = self.old.graph.users(old);
        !users.is_empty()
            && users.iter().all(|&u| {
                let Op::MulConst { value } = self.old.graph.node(u).op else {
                    return false;
                };
                let range = declared.and_then(|t| t.get(u)).and_then(|d| d.range);
                !comet_ir::infer::is_integer_constant(value)
                    && range.is_some_and(|r| {
                        r.magnitude() * f64::from(scale + frac).exp2() <= SCALED_LIMIT
                    })
            })
    }

    /// Whether `old` (converted to `new`, a product at scale `s > frac`) is read only by
    /// `row_sum`s: each sums the products at scale `s` (exact in the ring) and is truncated
    /// itself, one value per row instead of one per element (a norm's squares: `[seq, d]`
    /// truncations become `[seq, 1]`). The sums' rounding is finer than the products'.
    ///
    /// Only when the plan's policy may make truncations faithful, as
    /// [`Rebuild::read_by_scalings`]: a local truncation of the larger sum would fail more
    /// often.
    fn read_by_row_sums(&self, old: NodeId, new: NodeId) -> bool {
        let comet_ir::Elem::Fixed { scale } = self.ty(new).elem else {
            return false;
        };
        let users = self.old.graph.users(old);
        self.old.options.may_truncate_faithfully()
            && scale > self.new.info.format.frac
            && matches!(self.old.graph.node(old).op, Op::Square | Op::Mul)
            && !users.is_empty()
            && (users.iter()).all(|&u| matches!(self.old.graph.node(u).op, Op::RowSum))
    }

    /// Whether `old` (converted to `new`, a product at scale `s > frac`) is read only by
    /// comparisons with 0 (`drelu`): the sign of the product at scale `s` is the sign the
    /// truncated value would have (exactly, where the truncation would round a tiny value
    /// to 0), so its truncation would only cost a round. The comparison works on the
    /// wider value (`narrow-comparisons` sizes it from the range analysis).
    fn read_by_signs(&self, old: NodeId, new: NodeId) -> bool {
        let comet_ir::Elem::Fixed { scale } = self.ty(new).elem else {
            return false;
        };
        let users = self.old.graph.users(old);
        scale > self.new.info.format.frac
            && !users.is_empty()
            && (users.iter()).all(|&u| matches!(self.old.graph.node(u).op, Op::Drelu))
    }

    /// Whether a recipe keeps `old` at its doubled scale ([`comet_ir::Declared::untruncated`]),
    /// in a plan whose truncations may be faithful (the recipes keep a scale only there).
    fn kept_at_scale(&self, old: NodeId) -> bool {
        let declared = self.old.analyses.declared.as_ref();
        self.old.options.may_truncate_faithfully()
            && declared
                .and_then(|t| t.get(old))
                .is_some_and(|d| d.untruncated)
    }

    /// Truncates a product back to the plan's scale.
    fn truncate(&mut self, y: NodeId, scope: &Scope) -> NodeId {
        let frac = self.new.info.format.frac;
        match self.ty(y).elem {
            comet_ir::Elem::Fixed { scale } if scale > frac => {
                self.add(Op::Trunc { bits: scale - frac }, &[y], scope)
            }
            _ => y,
        }
    }
}

/// The largest value, in ring units, that [`Rebuild::read_by_scalings`] lets a doubly
/// scaled product reach: 2^56, 64 times below the faithful truncation gates' input bound
/// 2^62 (`runtime/src/protocols/trunc_stochastic.rs`).
const SCALED_LIMIT: f64 = 72_057_594_037_927_936.0;

/// The node's scope, with `origin` set to its op when the node had none.
fn with_origin(s: &Scope, op: &str) -> Scope {
    let mut s = s.clone();
    if s.origin.is_empty() {
        s.origin = op.to_string();
    }
    s
}
