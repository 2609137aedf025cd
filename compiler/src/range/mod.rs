//! Range analysis: a bound on the real value of every node of a protocol-stage program,
//! and from it the probability that a call's local truncations fail (issue 12, item 4).
//!
//! **Bounds.** Intervals of reals ([`Interval`]), propagated in topological order by
//! each op's transfer function (`ops.rs`): sums add, products multiply, a matmul is `k`
//! products, a row sum `n` terms (`k` and `n` evaluated at the call's [`DimEnv`]), a mux
//! or block mask adds 0, data movement and truncation keep the operand's range,
//! `causal_mask` adds [`CAUSAL_MASK_OFFSET`](comet_ir::range::CAUSAL_MASK_OFFSET) on the
//! hidden keys, RoPE multiplies the magnitude by `sqrt(2)`, a one-hot row times a table
//! gives one entry of the table. Sources: a weight is within `±weight_bound`
//! ([`RangeOptions`]; the runtime can check a checkpoint against it at setup), an index
//! is an index, a fixed-point input is unbounded, and a cache read is bounded by what the
//! plan writes to its slot (a fixed point over the calls, below). Where a recipe of
//! `expand` declares a range ([`comet_ir::range::Declared`]), the propagated interval is
//! intersected with it: interval arithmetic alone cannot see that a Newton iterate
//! converges or that a normalised row is normalised. An op the analysis does not model
//! is unbounded and listed ([`RangeReport::unmodelled`]), never treated as safe.
//!
//! **Assumptions.** A declared range holds only while its recipe's input lies in the range
//! the recipe assumes; every assumption is checked against the propagated bound and a
//! violated one is listed ([`RangeReport::violations`]). A plan with a violation has no
//! failure bound: its total is reported as 1.
//!
//! **Failure probability** ([`failure_per_element`]): see there. The total per call is a
//! union bound: Σ over the call's truncations of (elements × per-element bound), capped
//! at 1.

mod norms;
mod ops;
mod report;

#[cfg(test)]
mod tests;

pub use report::{
    AT_RISK, RangeReport, TruncationRisk, Violation, WORST, assumptions_hold, range_report,
    truncation_risks,
};

pub use norms::Norms;

use comet_ir::{DimEnv, Interval, NodeId, Op, Program, SideTable};
use std::collections::BTreeMap;

/// The bound every weight is declared to satisfy when nothing else is said: `|w| ≤ 64`.
/// Conservative for the checkpoints at hand (GPT-2's largest entries are LayerNorm gains
/// below 50); the runtime can check a checkpoint against it at setup.
pub const DEFAULT_WEIGHT_BOUND: f64 = 64.0;

/// The declared bounds the analysis starts from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RangeOptions {
    /// `|w|` of every weight entry is at most this.
    pub weight_bound: f64,
}

impl Default for RangeOptions {
    fn default() -> Self {
        RangeOptions {
            weight_bound: DEFAULT_WEIGHT_BOUND,
        }
    }
}

/// The range of every node in one call, and the nodes the analysis does not model.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranges {
    /// Each node's range.
    pub values: SideTable<Interval>,
    /// Each node's norm bounds ([`Norms`]).
    pub norms: SideTable<Norms>,
    /// Nodes whose op has no transfer function (their range is unbounded).
    pub unmodelled: Vec<NodeId>,
    /// Nodes downstream of a recipe input outside its assumed range (and those inputs):
    /// no declared range or norm is applied to them, since the recipe that declared it
    /// may be wrong there, and nothing about them is narrowed.
    pub tainted: std::collections::HashSet<NodeId>,
}

impl Ranges {
    /// The range of `id` (unbounded if unknown).
    pub fn of(&self, id: NodeId) -> Interval {
        self.values.get(id).copied().unwrap_or(Interval::UNBOUNDED)
    }

    /// The norm bounds of `id` (unknown if unknown).
    pub fn norms_of(&self, id: NodeId) -> Norms {
        self.norms.get(id).copied().unwrap_or(Norms::UNKNOWN)
    }
}

/// A cache slot's range and norms, and whether a tainted value is written to it.
type Slots = BTreeMap<u32, (Interval, Norms, bool)>;

/// How many times the cache's fixed point is iterated before its slots count as
/// unbounded (a layer's writes depend on earlier layers' reads: about one layer settles
/// per iteration).
const CACHE_ITERATIONS: usize = 64;

/// The range of every node of `p` in the call `env`.
///
/// Cache slots start at the range of an empty cache (0) and are widened to what the plan
/// writes to them until nothing changes; a slot still growing after a few rounds is
/// unbounded.
pub fn analyse(p: &Program, env: DimEnv, opts: &RangeOptions) -> Ranges {
    let mut slots = Slots::new();
    for _ in 0..CACHE_ITERATIONS {
        let r = propagate(p, env, opts, &slots);
        let written = cache_writes(p, &r, &slots);
        if written == slots {
            return r;
        }
        slots = written;
    }
    let unbounded = (slots.keys())
        .map(|s| (*s, (Interval::UNBOUNDED, Norms::UNKNOWN, true)))
        .collect();
    propagate(p, env, opts, &unbounded)
}

/// One pass in topological order with the cache slots' ranges fixed.
fn propagate(p: &Program, env: DimEnv, opts: &RangeOptions, slots: &Slots) -> Ranges {
    let mut r = Ranges {
        values: SideTable::new(),
        norms: SideTable::new(),
        unmodelled: Vec::new(),
        tainted: Default::default(),
    };
    let order = p.graph.topo_order().expect("a verified program is acyclic");
    for id in order {
        let (v, n) = node_range(p, id, env, opts, slots, &mut r);
        r.values.insert(id, v);
        r.norms.insert(id, n);
    }
    r
}

/// The range and norms of one node: its transfer functions, intersected with its declared
/// range and norms, each tightened by the other.
fn node_range(
    p: &Program,
    id: NodeId,
    env: DimEnv,
    opts: &RangeOptions,
    slots: &Slots,
    r: &mut Ranges,
) -> (Interval, Norms) {
    let operands = p.graph.operands(id);
    let xs: Vec<Interval> = operands.iter().map(|x| r.of(*x)).collect();
    let ns: Vec<Norms> = operands.iter().map(|x| r.norms_of(*x)).collect();
    let mut tainted = operands.iter().any(|x| r.tainted.contains(x));
    let (v, n) = if let Op::CacheRead { slot } = p.graph.node(id).op {
        let empty = (Interval::point(0.0), Norms::UNKNOWN, false);
        let (v, n, t) = slots.get(&slot).copied().unwrap_or(empty);
        tainted |= t;
        (v, n)
    } else {
        let c = ops::Ctx {
            p,
            id,
            xs: &xs,
            env,
            opts,
        };
        let v = ops::transfer(&c).unwrap_or_else(|| {
            r.unmodelled.push(id);
            Interval::UNBOUNDED
        });
        let nc = norms::NormCtx {
            p,
            id,
            env,
            xs: &xs,
            ns: &ns,
            product: norms::matrix_vector(p, id).map(|(a, v)| (r.norms_of(a), r.norms_of(v))),
        };
        (v, norms::transfer(&nc, weight_stats(p, id)))
    };
    let v = v.meet(norm_bound(p, id, &xs, &ns, n));
    let dims: Vec<u64> = (p.graph.node(id).ty.shape.iter())
        .map(|d| d.eval(env))
        .collect();
    let len = |from_end: usize| dims.len().checked_sub(from_end).map_or(1, |i| dims[i]) as f64;
    let declared = p.analyses.declared.as_ref().and_then(|d| d.get(id));
    let (v, n) = match declared.filter(|_| !tainted) {
        Some(d) => {
            // declared norms are of the real values; rounding adds a unit per entry
            let (n_row, ulp) = (len(1), norms::ulp(p, id));
            let l2 = d.row_l2.map_or(f64::INFINITY, |b| b + n_row.sqrt() * ulp);
            let l1 = d.row_l1.map_or(f64::INFINITY, |b| b + n_row * ulp);
            let per_gain = (d.row_l2_per_gain)
                .and_then(|c| gain_of(p, id).map(|g| (c, r.of(g).magnitude())))
                .map_or(f64::INFINITY, |(c, g)| {
                    c * g + n_row.sqrt() * ulp * (1.0 + 4.0 * g)
                });
            let n = Norms {
                row_l2: n.row_l2.min(l2).min(per_gain),
                row_l1: n.row_l1.min(l1),
                ..n
            };
            // no entry exceeds its row's L2 norm
            let v = d.range.map_or(v, |d| v.meet(d));
            let v = match n.row_l2.is_finite() {
                true => v.meet(Interval::new(-n.row_l2, n.row_l2)),
                false => v,
            };
            (v, n)
        }
        None => (v, n),
    };
    if declared
        .and_then(|d| d.assumes)
        .is_some_and(|a| !v.within(a))
    {
        tainted = true;
    }
    if tainted {
        r.tainted.insert(id);
    }
    (v, n.tighten(v.magnitude(), len(1), len(2)))
}

/// The gain `g` of a norm's output `(s ⊙ g)·t` (or of its truncation): the second operand
/// of the first operand of the product, through truncations and shares.
fn gain_of(p: &Program, id: NodeId) -> Option<NodeId> {
    let strip = |mut x: NodeId| {
        while matches!(
            p.graph.node(x).op,
            Op::Trunc { .. }
                | Op::FaithfulTrunc { .. }
                | Op::StochasticTrunc { .. }
                | Op::Share { .. }
        ) {
            x = p.graph.operands(x)[0];
        }
        x
    };
    let product = strip(id);
    let ops = p.graph.operands(product);
    if !matches!(p.graph.node(product).op, Op::Mul) || ops.len() != 2 {
        return None;
    }
    let gained = strip(ops[0]);
    let gops = p.graph.operands(gained);
    if !matches!(p.graph.node(gained).op, Op::Mul) || gops.len() != 2 {
        return None;
    }
    Some(gops[1])
}

/// The declared statistics of weight node `id`, if the plan has them.
fn weight_stats(p: &Program, id: NodeId) -> Option<&comet_ir::WeightStats> {
    let Op::Weight { name } = &p.graph.node(id).op else {
        return None;
    };
    p.options.weight_stats.as_ref()?.get(name)
}

/// The interval the norms give a node's entries (unbounded where they say nothing): a
/// product's entries by Cauchy–Schwarz, a row sum by the row's L1 norm, a weight by its
/// declared `max|w|`, any value by its rows' norms.
fn norm_bound(p: &Program, id: NodeId, xs: &[Interval], ns: &[Norms], own: Norms) -> Interval {
    let op = &p.graph.node(id).op;
    let b = match op {
        Op::MatMul | Op::BlockMatMul { .. } => norms::matmul_entry(ns[0], xs[1], ns[1]),
        Op::CacheMatMul { transpose, .. } => {
            norms::matmul_entry(ns[0], xs[1], norms::cache_operand(ns[1], *transpose))
        }
        Op::RowSum => ns[0].row_l1,
        Op::Weight { .. } => weight_stats(p, id).map_or(f64::INFINITY, |s| s.max_abs),
        _ => own.magnitude(),
    };
    let b = b.min(own.magnitude());
    if b.is_nan() {
        Interval::UNBOUNDED
    } else {
        Interval::symmetric(b)
    }
}

/// Each slot's range: the hull of its old range and of everything written to it.
fn cache_writes(p: &Program, r: &Ranges, slots: &Slots) -> Slots {
    let mut out = slots.clone();
    for id in p.graph.ids() {
        if let Op::CacheWrite { slot } = p.graph.node(id).op {
            let x = p.graph.operands(id)[0];
            // rows only: a slot's columns grow with every call (the cache is appended to),
            // so their norms have no fixed point; they are derived from the magnitude
            let n = r.norms_of(x);
            let rows = Norms {
                row_l2: n.row_l2,
                row_l1: n.row_l1,
                ..Norms::UNKNOWN
            };
            let w = (r.of(x), rows, r.tainted.contains(&x));
            let e = out.entry(slot).or_insert(w);
            *e = (e.0.hull(w.0), e.1.hull(w.1), e.2 || w.2);
        }
    }
    out
}

/// The probability that the faithful truncation
/// (`comet_runtime::fss::trunc`) of one element of magnitude at most `bound` (real units)
/// at `scale` fractional bits is wrong: 0 while `bound · 2^scale < 2^(ring − 2)` (the
/// gate is exact on `[−2^62, 2^62)` in the 64-bit ring), else 1 (unbounded or too large:
/// nothing is guaranteed).
pub fn faithful_failure_per_element(bound: f64, scale: u32, ring: u32) -> f64 {
    let x = bound * 2f64.powi(scale as i32);
    if x.is_nan() || x >= 2f64.powi(ring as i32 - 2) {
        1.0
    } else {
        0.0
    }
}

/// An upper bound on the probability that SecureML's local truncation of one element
/// fails, for a value of magnitude at most `bound` (real units) held at `scale`
/// fractional bits in the ring `Z_2^ring`.
///
/// With `X = bound · 2^scale` ring units: the runtime (`runtime/src/ring/trunc.rs`) has
/// party 0 shift its share `x0` read as a signed integer and party 1 shift `x1 = x − x0`
/// negated; the result is off by about `2^(ring − bits)` exactly when `x − x0` leaves the
/// signed range `[−2^(ring−1), 2^(ring−1))`, i.e. when `x0`, uniform over the ring, falls
/// within `|x|` of the signed boundary: `|x| / 2^ring` of its values. So the failure
/// probability is at most `X / 2^ring` (SecureML's `2^(bits(x)+1−ring)` rounds it up),
/// and it is 1 when `X ≥ 2^(ring−1)`, where the value itself no longer fits the ring.
pub fn failure_per_element(bound: f64, scale: u32, ring: u32) -> f64 {
    let x = bound * 2f64.powi(scale as i32);
    if x.is_nan() || x >= 2f64.powi(ring as i32 - 1) {
        return 1.0;
    }
    x / 2f64.powi(ring as i32)
}
