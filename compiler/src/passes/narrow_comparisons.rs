//! Pass `narrow-comparisons`: each FSS comparison works on the fewest bits its compared
//! values need (issue 12, "comparisons on a reduced bit width"), and each stochastic
//! truncation opens only the bits its input can occupy (issue 12, "narrow rings": the
//! gate at width m opens `x + r mod 2^m`, correct for `|x| < 2^(m−2)` ring units, which
//! [`bits_for`] guarantees with the same allowance and margin).
//!
//! A DReLU at signed width m opens `x + r mod 2^m` (m bits per element instead of 64) and
//! evaluates a DCF on its low m − 1 bits (m − 1 tree levels instead of 63): key bytes,
//! dealer work, online bytes and the parties' AES work all shrink about as m/64. It is
//! correct exactly when every compared value lies in `[−2^(m−1), 2^(m−1))` ring units
//! ([`comet_ir::graph::Node::cmp_width`]); outside, the sign wraps and the comparison is
//! silently wrong. So the width comes from the range analysis ([`crate::range`]), never
//! from observed values:
//!
//! - the compared values: `x` for `drelu` and `sign_select`; `x − t` for each threshold of
//!   a `compare`; the pairwise differences `a − b` of a `row_max` (`[lo − hi, hi − lo]`);
//! - their real bound `B` at the largest call the plan is narrowed for: its truncation
//!   policy's design context (`comet compile --trunc-context N`, 1,024 by default: N tokens
//!   processed and N cached; bounds only grow with the sizes, and the runtime refuses a
//!   longer call of a narrowed plan), in ring units `B·2^f` at the operand's `f`
//!   fractional bits, plus [`ERROR_ULPS`] for the fixed-point rounding the real-valued
//!   analysis does not see;
//! - m = ⌈log2(that)⌉ + 2 (the sign, and one bit of margin), at least 8, kept only when
//!   below 64. The runtime packs each party's opened values at exactly m bits, ⌈n·m/8⌉
//!   bytes per message, and the cost model counts the same ceiling
//!   ([`comet_ir::poly::Poly::packed`]).
//!
//! The analysis' bounds rest on declarations, all checked: every weight within the weight
//! bound of the plan's truncation policy (`comet compile --weight-bound`) and, with
//! `comet compile --weights`, within the statistics declared for it (max |w|, row, column
//! and spectral norms: [`comet_ir::WeightStats`]), both checked against the checkpoint
//! when the runtime loads it (a plan without a policy narrows nothing); and every
//! approximation recipe's input within the range the recipe assumes. Where some recipe's
//! assumption is not implied by the bounds
//! ([`crate::range::RangeReport::violations`]), its declared ranges, and every bound
//! downstream of it, would be unfounded: no comparison downstream of a violated assumption
//! is narrowed ([`crate::range::Ranges::tainted`]); those upstream are. Comparisons inside
//! a sparse FFN's masked region are narrowed like the others when its blocks pack to whole
//! bytes ([`comet_ir::sparse::Masked::packs_whole`]), else they keep the whole ring.

use crate::range::{RangeOptions, Ranges, analyse};
use comet_ir::sparse::{masked_nodes, may_narrow};
use comet_ir::{Comparison, DimEnv, Elem, Interval, NodeId, Op, Program};

/// Ring units added to every bound for the fixed-point rounding errors the real-valued
/// analysis does not model (each local truncation is off by at most one unit; a matmul
/// sums its inputs' errors): 2^12 units, 1/16 at 16 fractional bits.
pub const ERROR_ULPS: f64 = 4096.0;

/// Runs the pass with the weight bound of the plan's truncation policy.
pub fn run(p: &mut Program) {
    let Some(policy) = p.options.truncation else {
        return;
    };
    if p.options.comparison != Comparison::Fss {
        return;
    }
    let opts = &RangeOptions {
        weight_bound: policy.weight_bound,
    };
    let env = DimEnv {
        seq: policy.context,
        past: policy.context,
    };
    let ranges = analyse(p, env, opts);
    let masked = masked_nodes(p);
    let widths: Vec<(NodeId, u8)> = (p.graph.ids())
        .filter(|&id| may_narrow(p, &masked, id))
        .filter(|id| {
            !p.graph
                .operands(*id)
                .iter()
                .any(|x| ranges.tainted.contains(x))
        })
        .filter_map(|id| width(p, &ranges, id).map(|m| (id, m)))
        .collect();
    for (id, m) in widths {
        p.graph.node_mut(id).cmp_width = Some(m);
    }
}

/// The signed width the comparisons of `id` need, if it compares and is below 64 bits.
fn width(p: &Program, ranges: &Ranges, id: NodeId) -> Option<u8> {
    let node = p.graph.node(id);
    let x = *p.graph.operands(id).first()?;
    let r = ranges.of(x);
    let compared = match &node.op {
        Op::Drelu | Op::SignSelect => r,
        Op::Compare { thresholds } => {
            let (tmin, tmax) = thresholds
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), t| {
                    (a.min(*t), b.max(*t))
                });
            Interval::new(r.lo - tmax, r.hi - tmin)
        }
        Op::RowMax => Interval::new(r.lo - r.hi, r.hi - r.lo),
        // a stochastic truncation opens its input mod 2^m: `|x| < 2^(m−2)` ring units
        Op::StochasticTrunc { .. } => r,
        _ => return None,
    };
    let Elem::Fixed { scale } = p.graph.node(x).ty.elem else {
        return None;
    };
    let m = bits_for(compared, scale).filter(|&m| m < 64)?;
    match node.op {
        // the gate needs m ≥ shift + 2 (`comet_ir::verify`)
        Op::StochasticTrunc { bits } => Some(m.max(bits as u8 + 2)),
        _ => Some(m),
    }
}

/// The signed width that holds every value of `v` at `scale` fractional bits, with the
/// rounding allowance and one bit of margin (at least 8 bits); `None` when unbounded.
pub fn bits_for(v: Interval, scale: u32) -> Option<u8> {
    let bound = v.lo.abs().max(v.hi.abs());
    if !bound.is_finite() {
        return None;
    }
    let units = bound * 2f64.powi(scale as i32) + ERROR_ULPS;
    let m = (units.log2().ceil() + 2.0).max(8.0);
    (m <= 64.0).then_some(m as u8)
}
