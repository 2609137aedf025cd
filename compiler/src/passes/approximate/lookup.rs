//! The `lut` profile: SIGMA's way (PETS'24) of computing activations and the softmax's
//! exponential from FSS lookup tables ([`comet_ir::table`]) instead of polynomials.
//!
//! - **GeLU, SiLU**: `f(x) = relu(x) − g(x)` where the gap `g(x) = |x|·Φ(−|x|)` (GeLU) or
//!   `|x|·σ(−|x|)` (SiLU) is even, at most 0.17 / 0.28, and negligible beyond a cut `T`.
//!   The gap is read from a table indexed by `x` itself (signed, `q` fractional bits), so
//!   no `|x|` is computed first; the table is kept where `x` lies in `[−T + 2^−q, T)`,
//!   and 0 elsewhere, where the index wraps. The sign and the two ends are one `compare`
//!   of `x` with three thresholds: one DCF key evaluated at three points, as SIGMA does. Rounds: the comparisons (1) beside the table (2), then one mux and one
//!   product: 3, against the exact recipe's 21 (GeLU).
//! - **Softmax**: the row maximum is subtracted (`d ≤ 0`), `e^d` is read from a table on
//!   `[−T, 0]` and kept where `d ≥ −T + 2^−q` (one comparison beside the table, one mux),
//!   then the exact recipe's `reciprocal` of the row sum. Keys hidden by `causal_mask`
//!   (`d` near −2^20) fall below the cut and get exactly 0.
//!
//! The sizes below follow from the error each table may add: sampled at the middle of the
//! two indices two parties may read ([`comet_ir::table`]), a table with `q` fractional
//! bits errs by at most `2^−q·max|f′|`: 0.5/256 for the gaps, `e^0/256` for the
//! exponential.

use crate::passes::builder::Builder;
use comet_ir::table::{self, TableFn, half_range, low_end};
use comet_ir::{Comparison, NodeId, Op, UnaryFn};

/// A table: function, index bits n and fractional bits q.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// The function.
    pub func: TableFn,
    /// Index bits.
    pub bits: u32,
    /// Fractional bits of the index.
    pub frac: u32,
}

/// GeLU's gap on `[−4, 4)` at 1/256: 2^11 entries (beyond, the gap is below 1.3·10⁻⁴).
pub const GELU_GAP: Table = Table {
    func: TableFn::GeluGap,
    bits: 11,
    frac: 8,
};
/// SiLU's gap on `[−16, 16)` at 1/256: 2^13 entries (beyond, below 1.8·10⁻⁶).
pub const SILU_GAP: Table = Table {
    func: TableFn::SiluGap,
    bits: 13,
    frac: 8,
};
/// `e^d` on `[−16, 0]` at 1/256 (the table covers `[−16, 16)`, the upper half reads 1):
/// 2^13 entries; below −16, `e^d < 1.2·10⁻⁷`, under the fixed-point step.
pub const EXP: Table = Table {
    func: TableFn::ExpNeg,
    bits: 13,
    frac: 8,
};

fn lookup(b: &mut Builder, x: NodeId, t: Table) -> NodeId {
    b.emit(
        Op::Lut {
            func: t.func,
            bits: t.bits,
            frac: t.frac,
        },
        &[x],
    )
}

/// The bits `[x ≥ c]` for each of `cs`: with FSS comparisons one `compare` (one mask, one
/// DCF key, one opening for all), with GMW one `drelu` of `x − c` each.
fn at_least(b: &mut Builder, x: NodeId, cs: &[f64]) -> Vec<NodeId> {
    if b.program().options.comparison == Comparison::Gmw {
        return (cs.iter())
            .map(|&c| match c {
                0.0 => b.drelu(x),
                c => {
                    let shifted = b.add_const(x, -c);
                    b.drelu(shifted)
                }
            })
            .collect();
    }
    let bits = b.emit(
        Op::Compare {
            thresholds: cs.to_vec(),
        },
        &[x],
    );
    (0..cs.len() as u64)
        .map(|index| b.emit(Op::Pick { index }, &[bits]))
        .collect()
}

/// `relu(x) − g(x)·[−T + 2^−q ≤ x < T]` with the gap `g` read from table `t`.
fn activation(b: &mut Builder, x: NodeId, t: Table) -> NodeId {
    let ends = [0.0, low_end(t.bits, t.frac), half_range(t.bits, t.frac)];
    let bits = at_least(b, x, &ends);
    let relu = b.select(bits[0], x);
    let above_low = b.b2a(bits[1]);
    let above_high = b.b2a(bits[2]);
    let inside = b.sub(above_low, above_high);
    let gap = lookup(b, x, t);
    let kept = b.mul(inside, gap);
    b.sub(relu, kept)
}

/// `lut.gelu`.
pub(super) fn gelu(b: &mut Builder, x: NodeId) -> NodeId {
    activation(b, x, GELU_GAP)
}

/// `lut.silu`.
pub(super) fn silu(b: &mut Builder, x: NodeId) -> NodeId {
    activation(b, x, SILU_GAP)
}

/// `lut.softmax`: `e = exp-table(s − max)·[s − max ≥ −T + 2^−q]`, then
/// `e · reciprocal(row_sum(e))`. The row sum lies in [1, n] (the maximum contributes
/// `e^0` read at index −1 or −2: within 1/128 of 1).
pub(super) fn softmax(b: &mut Builder, s: NodeId) -> NodeId {
    let m = b.row_max(s);
    let d = b.sub(s, m);
    let shifted = b.add_const(d, -low_end(EXP.bits, EXP.frac));
    let inside = b.drelu(shifted);
    let e = lookup(b, d, EXP);
    let kept = b.select(inside, e);
    let z = b.row_sum(kept);
    let r = b.unary(UnaryFn::Reciprocal, z);
    b.mul(kept, r)
}

/// Table `t` at `x` as the plaintext backend reads it (the floor index).
fn read_f64(t: Table, x: f64) -> f64 {
    let i = table::index_f64(x, t.frac, t.bits);
    table::value(t.func, i, t.bits, t.frac)
}

fn activation_f64(t: Table, x: f64) -> f64 {
    let inside = x >= low_end(t.bits, t.frac) && x < half_range(t.bits, t.frac);
    x.max(0.0) - if inside { read_f64(t, x) } else { 0.0 }
}

/// [`gelu`] in f64.
pub(super) fn gelu_f64(x: f64) -> f64 {
    activation_f64(GELU_GAP, x)
}

/// [`silu`] in f64.
pub(super) fn silu_f64(x: f64) -> f64 {
    activation_f64(SILU_GAP, x)
}

/// [`softmax`] in f64.
pub(super) fn softmax_f64(s: &[f64]) -> Vec<f64> {
    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let low = low_end(EXP.bits, EXP.frac);
    let e: Vec<f64> = s
        .iter()
        .map(|v| match v - m {
            d if d < low => 0.0,
            d => read_f64(EXP, d),
        })
        .collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|v| v / z).collect()
}
