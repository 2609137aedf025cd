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
use crate::passes::fold_gains;
use comet_ir::table::{self, TableFn, half_range, low_end};
use comet_ir::{Comparison, NodeId, Op};

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

/// The norms' rsqrt: `2^8/sqrt(x)` on `[4^8, 4^9)` read at whole units (2^19 entries; its
/// slope there is below 7.7·10⁻⁶, so a unit step costs less than the output's precision).
pub const RSQRT: Table = Table {
    func: TableFn::RsqrtScaled,
    bits: 19,
    frac: 0,
};
/// The softmax's reciprocal: `2^12/x` on `[2^12, 2^13)` at 1/2 (2^15 entries, slope below
/// 2.5·10⁻⁴).
pub const RECIP: Table = Table {
    func: TableFn::RecipScaled,
    bits: 15,
    frac: 1,
};
/// The rsqrt's range reduction: thresholds `4^j`, j = −[`RSQRT_J`]..=[`RSQRT_J`], so
/// inputs in `[4^−9, 4^9)` are scaled by `4^(8 − a)` into `[4^8, 4^9)`.
pub const RSQRT_J: i32 = 8;
/// The lowest input the rsqrt's range reduction and table hold for: `4^−11` (below
/// `4^−9` on the table's lower part).
pub const RSQRT_LOW: f64 = 2.384185791015625e-7;
/// The reciprocal's range reduction: thresholds `2^(i+1)`, i < [`RECIP_A`], so row sums in
/// `[1/2, 2^12)` (softmax rows of up to 4,096 keys) are scaled by `2^(12 − a)` into
/// `[2^11, 2^13)`.
pub const RECIP_A: i32 = 12;

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
///
/// With FSS comparisons the bits are arithmetic 0/1 shares, so `inside` is their
/// difference (local), and the table reads `x` where it is inside and `−T` elsewhere:
/// `inside·x + T·inside − T` (`T` an integer: its product with the converted bit is
/// local and exact). Outside, the table gives `g(±T)` (the index `−2^(n−1)`, or `2^(n−1) −
/// 1` after the shares' carry): 1.3·10⁻⁴ for GeLU, 1.8·10⁻⁶ for SiLU, no more than the gap
/// the clip drops. The select of `x` by the range bit is read at the table's index width
/// (`s − q + n` bits: 19 for GeLU) instead of the gap's output width (41 on GPT-2), one
/// round before the table instead of after it; and it shares its opening of `x` with the
/// ReLU's select ([`stacked_selects`]). GMW's XOR-shared bits are converted and
/// multiplied with the gap read at `x`.
fn activation(b: &mut Builder, x: NodeId, t: Table) -> NodeId {
    let high = half_range(t.bits, t.frac);
    let ends = [0.0, low_end(t.bits, t.frac), high];
    let bits = at_least(b, x, &ends);
    if b.program().options.comparison == Comparison::Gmw {
        let relu = b.select(bits[0], x);
        let gap = lookup(b, x, t);
        let above_low = b.b2a(bits[1]);
        let above_high = b.b2a(bits[2]);
        let inside = b.sub(above_low, above_high);
        let kept = b.mul(inside, gap);
        return b.sub(relu, kept);
    }
    assert!(
        high.fract() == 0.0,
        "a gap table's half range is an integer"
    );
    let inside = b.between(bits[1], bits[2]);
    let (relu, kept) = stacked_selects(b, [bits[0], inside], x);
    let one = b.b2a(inside);
    let shift = b.mul_const(one, high);
    let moved = b.add(kept, shift);
    let index = b.add_const(moved, -high);
    let gap = lookup(b, index, t);
    b.sub(relu, gap)
}

/// `(bits[0]·x, bits[1]·x)` from one select of `x` by both bits stacked on a new leading
/// axis (`[2, s, n]`, broadcasting `x`): one opening of `x − a` serves both, at the
/// wider of the widths the two products are read at, and each bit opens one bit. For a
/// rank-2 `x` in a plan without sparse FFNs (whose masked regions gather their nodes'
/// entries; a head-sparse plan's FFNs are dense); else two selects.
fn stacked_selects(b: &mut Builder, bits: [NodeId; 2], x: NodeId) -> (NodeId, NodeId) {
    let shape = b.program().graph.node(x).ty.shape.clone();
    let n = shape.get(1).and_then(|d| d.as_const());
    let sparse_ffns =
        (b.program().options.sparsity.as_ref()).is_some_and(|s| !s.ffn_units().is_empty());
    let (Some(n), 2, false) = (n, shape.len(), sparse_ffns) else {
        return (b.select(bits[0], x), b.select(bits[1], x));
    };
    let [b0, b1] = bits.map(|bit| b.emit(Op::SplitHeads { heads: 1 }, &[bit]));
    let both = b.emit(Op::Concat { axis: 0 }, &[b0, b1]);
    let selected = b.select(both, x);
    let flat = b.emit(Op::MergeHeads, &[selected]);
    let n = n as u64;
    let first = b.emit(Op::Slice { start: 0, end: n }, &[flat]);
    let second = b.emit(
        Op::Slice {
            start: n,
            end: 2 * n,
        },
        &[flat],
    );
    (first, second)
}

/// `Σ_i bit_i·c_i + c0` over fixed-point 0/1 values (local).
fn linear(b: &mut Builder, bits: &[NodeId], coef: impl Fn(usize) -> f64, c0: f64) -> NodeId {
    let terms: Vec<NodeId> = (bits.iter().enumerate())
        .map(|(i, &bit)| {
            let one = b.b2a(bit);
            b.mul_const(one, coef(i))
        })
        .collect();
    let sum = (terms.into_iter())
        .reduce(|acc, t| b.add(acc, t))
        .expect("thresholds are non-empty");
    b.add_const(sum, c0)
}

/// `1/sqrt(v)` for v in `[4^−11, 4^9)` (below `4^−9` on the table's lower part), in two
/// factors `(T, G)` with `rsqrt(v) = T·G·2^−8`, `G = 2^(8−a)`. One comparison of v with the 17
/// powers `4^j` counts `L = a + 9` of them at most v (`4^a ≤ v < 4^(a+1)`); the factors
/// are linear in the monotone bits: `F = 4^(8−a) = 4^17 − Σ_i c_i·3·4^(16−i)` and `G =
/// 2^(8−a) = 2^17 − Σ_i c_i·2^(16−i)`, with integer coefficients (exact, no truncation).
/// Then `v·F` lies in `[4^8, 4^9)`, and the table reads that product
/// untruncated (a lookup's index is a bit slice of its input at any scale), giving `T =
/// 2^8/sqrt(v·F) = 2^a/sqrt(v)` in (1/2, 1] from v = 4^−9 up, in (1, 4] below. Rounds:
/// the comparison, `v·F`, the table (2).
fn rsqrt_factors(b: &mut Builder, v: NodeId) -> (NodeId, NodeId) {
    let j = RSQRT_J;
    // below 4^−9 no threshold is passed and v·F lies under 4^8, where the table still
    // holds 2^8/sqrt(x) (it covers [1, 2^18)); down to v = 4^−11 (v·F ≥ 4^6) its index
    // step errs by under 2^−13 relative: a norm's eps of 10^−6 on a row of zeros is
    // inside
    debug_assert_eq!(RSQRT_LOW, 4f64.powi(-j - 3));
    b.assume(v, "lut.rsqrt", RSQRT_LOW, 4f64.powi(j + 1));
    let thresholds: Vec<f64> = (-j..=j).map(|e| 4f64.powi(e)).collect();
    let bits = at_least(b, v, &thresholds);
    let top = 2 * j;
    let f = linear(
        b,
        &bits,
        |i| -3.0 * 4f64.powi(top - i as i32),
        4f64.powi(top + 1),
    );
    let g = linear(
        b,
        &bits,
        |i| -(2f64.powi(top - i as i32)),
        2f64.powi(top + 1),
    );
    let reduced = b.mul(v, f);
    b.declare(reduced, 4f64.powi(j - 2) - 1.0, 4f64.powi(j + 1));
    let t = lookup(b, reduced, RSQRT);
    // 2^8/sqrt(v·F) on [4^6 − 1, 4^9]: within (1/2, 4.001], and 1 or less from v = 4^−9 up
    b.declare(t, 0.0, 4.001);
    (t, g)
}

/// `1/z` for a softmax row sum z in `[1/2, 2^12)`, in two factors `(T, F)` with `1/z =
/// T·F·2^−12`: with `c_i = [z ≥ 2^(i+1)]` (one comparison), `F = 2^(12−a) = 2^12 −
/// Σ_i c_i·2^(11−i)` for `2^a ≤ z < 2^(a+1)`, `z·F` in `[2^11, 2^13)` read untruncated by
/// the table, which gives `T = 2^12/(z·F)` in (1/2, 1]. Rounds: the comparison, `z·F`,
/// the table (2).
fn reciprocal_factors(b: &mut Builder, z: NodeId) -> (NodeId, NodeId) {
    let a = RECIP_A;
    b.assume(z, "lut.reciprocal", 0.5, 2f64.powi(a));
    let thresholds: Vec<f64> = (1..=a).map(|e| 2f64.powi(e)).collect();
    let bits = at_least(b, z, &thresholds);
    let f = linear(b, &bits, |i| -(2f64.powi(a - 1 - i as i32)), 2f64.powi(a));
    let reduced = b.mul(z, f);
    b.declare(reduced, 2f64.powi(a - 1), 2f64.powi(a + 1));
    (lookup(b, reduced, RECIP), f)
}

/// `g·x / sqrt(row_sum(x²)/d + eps)` for rows `x` of width d and a gain `g` (the norm's
/// weight): `(x·g)·(S·T)` with [`rsqrt_factors`] and `S = G·2^−8 = 2^−a`. `x·g` (a
/// product with the fixed gain and its truncation) is computed beside the squares, the
/// comparison and the table; `S` (one exact truncation per row: `G`'s low 8 bits are 0)
/// beside `v·F` and the table; the per-row factor `S·T = 2^−a·T` is an exact product
/// kept at 32 fractional bits (no truncation), and the row's product with it is truncated
/// once, by 32 bits. Rounds: the square, the sum's truncation, the mean's, the
/// comparison, `v·F`, the table (2), `S·T`, `(x·g)·(S·T)`, its truncation. Per element
/// two products and two truncations (`x·g`, the last), where [`normalize_rows_local`]
/// has three of each in as many rounds.
///
/// Only in plans whose truncations may be faithful: a local truncation of the product at
/// 48 fractional bits would fail `2^16` times as often as one at 32, so plans with every
/// truncation local keep [`normalize_rows_local`].
///
/// Declared ranges: `S·T = rsqrt(v)` within the table's error, in `(0, 2^9·4.001]` (v
/// down to 4^−11); `|x·g·rsqrt(v)|` has rows of norm at most `sqrt(d)·max|g|` (the
/// normalised row has norm `sqrt(d)`), which bounds the truncated product. (In fixed
/// point, a row whose mean square is within a few units in the last place of zero can
/// exceed it; such rows are near-constant and their entries tiny.)
fn normalize_rows(b: &mut Builder, x: NodeId, gain: NodeId, eps: f64) -> NodeId {
    if !b.program().options.may_truncate_faithfully() {
        return normalize_rows_local(b, x, gain, eps);
    }
    let inv_d = 1.0 / b.last_width(x) as f64;
    let v = mean_square(b, x, inv_d, eps);
    let (t, g) = rsqrt_factors(b, v);
    // a gain folded into the next product (pass `fold-norm-gains`) is not applied here
    let unit = fold_gains::is_unit_gain(b.program(), gain);
    let xg = match unit {
        true => x,
        false => b.mul(x, gain),
    };
    let s = b.mul_const(g, 2f64.powi(-RSQRT_J));
    let factor = b.mul(s, t);
    b.declare(factor, 0.0, 2f64.powi(RSQRT_J + 1) * 4.001);
    b.keep_scale(factor);
    let out = b.mul(xg, factor);
    // x·g·2^−a·T = x·g·rsqrt(v) (the table's error under 2^−12): a row of norm at most
    // sqrt(d·v)·rsqrt(v) = sqrt(d), times the gain entry by entry
    declare_row(b, out, 1.01 / inv_d.sqrt(), unit);
    out
}

/// Declares a normalised row's L2 norm `c` (times its gain's, unless the gain is folded).
fn declare_row(b: &mut Builder, out: NodeId, c: f64, unit_gain: bool) {
    match unit_gain {
        true => b.declare_norms(out, c, f64::INFINITY),
        false => b.declare_norm_per_gain(out, c),
    }
}

/// `mean(x²) + eps` per row.
///
/// An `eps` below the rsqrt's domain ([`RSQRT_LOW`]: BERT's 10^−12) is raised to it, so
/// `v` always lies where the recipe's declared ranges hold. In real numbers that moves
/// `rsqrt(v)` by `1.2·10^−7/v` relative; in the ring (`v` at 16 fractional bits) both
/// constants round to 0, so nothing changes (docs/approximations.md).
fn mean_square(b: &mut Builder, x: NodeId, inv_d: f64, eps: f64) -> NodeId {
    let sq = b.square(x);
    let sum = b.row_sum(sq);
    let mean = b.mul_const(sum, inv_d);
    b.add_const(mean, eps.max(RSQRT_LOW))
}

/// [`normalize_rows`] for plans whose truncations are all local: `((x·G·2^−8)·g)·T`.
/// `x·G·2^−8 = x·2^−a` is computed beside the table (its product and one truncation),
/// its product with `g` one round behind the table, so one product and its truncation
/// follow.
///
/// Declared ranges: `|x_i| ≤ sqrt(d·mean(x²)) ≤ sqrt(d·v)` and `2^−a < 2/sqrt(v)`, so
/// `|x·2^−a| < 2·sqrt(d)` (declared `±2.02·sqrt(d)`, and `2^8` times that for `x·G`);
/// the range analysis bounds the rest from `g`'s and `T`'s ranges.
fn normalize_rows_local(b: &mut Builder, x: NodeId, gain: NodeId, eps: f64) -> NodeId {
    let inv_d = 1.0 / b.last_width(x) as f64;
    let v = mean_square(b, x, inv_d, eps);
    let (t, g) = rsqrt_factors(b, v);
    let bound = 2.02 / inv_d.sqrt();
    let xg = b.mul(x, g);
    let grow = 2f64.powi(RSQRT_J);
    b.declare(xg, -bound * grow, bound * grow);
    let scaled = b.mul_const(xg, 1.0 / grow);
    b.declare(scaled, -bound, bound);
    // the same argument bounds the whole row: ‖x·2^−a‖₂ = 2^−a·sqrt(d·mean(x²)) < 2·sqrt(d)
    b.declare_norms(scaled, bound, f64::INFINITY);
    let unit = fold_gains::is_unit_gain(b.program(), gain);
    let gained = match unit {
        true => scaled,
        false => b.mul(scaled, gain),
    };
    let out = b.mul(gained, t);
    declare_row(b, out, 1.01 / inv_d.sqrt(), unit);
    out
}

/// `lut.layer_norm`: the exact recipe's form with the table rsqrt ([`normalize_rows`]).
pub(super) fn layer_norm(b: &mut Builder, x: NodeId, g: NodeId, bias: NodeId, eps: f64) -> NodeId {
    let inv_d = 1.0 / b.last_width(x) as f64;
    let sum = b.row_sum(x);
    let mean = b.mul_const(sum, inv_d);
    let c = b.sub(x, mean);
    let scaled = normalize_rows(b, c, g, eps);
    match fold_gains::is_zero_bias(b.program(), bias) {
        true => scaled,
        false => b.add(scaled, bias),
    }
}

/// `lut.rms_norm`: the exact recipe's form with the table rsqrt ([`normalize_rows`]).
pub(super) fn rms_norm(b: &mut Builder, x: NodeId, g: NodeId, eps: f64) -> NodeId {
    normalize_rows(b, x, g, eps)
}

/// `lut.gelu`.
pub(super) fn gelu(b: &mut Builder, x: NodeId) -> NodeId {
    activation(b, x, GELU_GAP)
}

/// `lut.silu`.
pub(super) fn silu(b: &mut Builder, x: NodeId) -> NodeId {
    activation(b, x, SILU_GAP)
}

/// `lut.softmax`: `e = exp-table(s − max)·[s − max ≥ −T + 2^−q]`, then `e ·
/// reciprocal(row_sum(e))` with the table reciprocal `T·F·2^−12` ([`reciprocal_factors`];
/// `T·F` and the scaling by `2^−12` truncate once). The row's entries are multiplied after
/// the per-row reciprocal rather than by `F` beside the table: that would save two rounds
/// but open and truncate the whole `[heads, seq, keys]` tensor twice more. The row sum lies in [1/2, n] (the maximum contributes `e^0`
/// read at index −1 or −2: within 1/128 of 1).
pub(super) fn softmax(b: &mut Builder, s: NodeId) -> NodeId {
    let (s, eighth) = unscaled(b, s);
    // e^(d/8) read at d: the same entries, 3 fractional bits coarser
    let exp = match eighth {
        true => Table {
            func: TableFn::ExpNegEighth,
            frac: EXP.frac - 3,
            ..EXP
        },
        false => EXP,
    };
    let m = b.row_max(s);
    let d = b.sub(s, m);
    let shifted = b.add_const(d, -low_end(exp.bits, exp.frac));
    let inside = b.drelu(shifted);
    let e = lookup(b, d, exp);
    let kept = b.select(inside, e);
    let z = b.row_sum(kept);
    let z = widened(b, z);
    // the row maximum's entry contributes e^0, read within 1/128 of 1: z ≥ 1/2 (and at
    // most the row's length, which interval arithmetic sees)
    b.declare(z, 0.5, f64::INFINITY);
    // 1/z = T·F·2^−12: F·2^−12 = 2^−a ≤ 2 (z ≥ 1/2) and T ≤ 1, so 1/z ≤ 2
    let (t, f) = reciprocal_factors(b, z);
    let tf = b.mul(t, f);
    let r = b.mul_const(tf, 2f64.powi(-RECIP_A));
    b.declare(r, 0.0, 2.02);
    let p = b.mul(kept, r);
    // a probability: the exact softmax is in [0, 1]; the tables' errors add under 2%. The
    // row sums to z·recip(z): within the reciprocal table's relative error (under 2^−12)
    // of 1, declared 1.02 (the analysis adds each entry's rounding)
    b.declare(p, 0.0, 1.02);
    b.declare_norms(p, f64::INFINITY, 1.02);
    p
}

/// The row sum `z` of a softmax re-shared on the whole ring: `2·(z·½)`, where `z·½` is a
/// product by `2^15` truncated by 16 bits (faithfully) and `2·` is local, so `z` loses
/// its last bit (`z ≥ 1/2`: under 2^−15 relative). The reciprocal reads `z·F` to the
/// table's high index bits, which a narrowed product needs modulo 2^46 or so, and a sum
/// is read at the width its readers read: without this, every entry of the row (a
/// `[heads, seq, keys]` table output and its select) would be opened at that width,
/// where their own product with the reciprocal reads 35 bits. The truncation reads
/// `z·2^15` at the width its range proves (`narrow-comparisons`), so `z` 15 bits less
/// (`narrow-openings`), and outputs 64-bit shares: one round and a few bytes per row
/// instead of ~11 bits per entry twice. Only in plans whose truncations may be faithful
/// (a local truncation reads all 64 bits).
fn widened(b: &mut Builder, z: NodeId) -> NodeId {
    if !b.program().options.may_truncate_faithfully() {
        return z;
    }
    let half = b.mul_const(z, 0.5);
    b.mul_const(half, 2.0)
}

/// A softmax's input `s = y/8` (or `causal_mask(y/8)`: the attention scores' scaling by
/// `1/sqrt(64)` in GPT-2 and BERT), read by the softmax alone: `(y, true)` (or
/// `(causal_mask(y), true)`), since the softmax of `y/8` is the recipe on `y` with the
/// table of `e^(d/8)` read 3 fractional bits coarser (the index `⌊d·2^(q−3)⌋ = ⌊(d/8)·2^q⌋`
/// and the same entries; the clip at `−2^(n−1−q+3) + 2^(3−q)`, 8 times `exp_neg`'s: the
/// same error) and the row maximum taken before the scaling (it commutes with a positive
/// factor). The scaling's product and truncation, one per score, are not needed. Else
/// `(s, false)`.
fn unscaled(b: &mut Builder, s: NodeId) -> (NodeId, bool) {
    let g = &b.program().graph;
    let masked = matches!(g.node(s).op, Op::CausalMask);
    let m = if masked { g.operands(s)[0] } else { s };
    let alone = g.users(s).len() == 1 && (!masked || g.users(m).len() == 1);
    if !alone || !matches!(g.node(m).op, Op::MulConst { value } if value == 0.125) {
        return (s, false);
    }
    let y = g.operands(m)[0];
    let y = match masked {
        true => b.emit(Op::CausalMask, &[y]),
        false => y,
    };
    (y, true)
}

/// Table `t` at `x` as the plaintext backend reads it (the floor index).
fn read_f64(t: Table, x: f64) -> f64 {
    let i = table::index_f64(x, t.frac, t.bits);
    table::value(t.func, i, t.bits, t.frac)
}

/// [`activation`] in f64, as FSS comparisons compute it (the table at `−T` outside its
/// range).
fn activation_f64(t: Table, x: f64) -> f64 {
    let high = half_range(t.bits, t.frac);
    let inside = x >= low_end(t.bits, t.frac) && x < high;
    x.max(0.0) - read_f64(t, if inside { x } else { -high })
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
    let r = reciprocal_f64(z);
    e.into_iter().map(|v| v * r).collect()
}

/// How many of `thresholds` are at most `v`.
fn count_at_most(v: f64, thresholds: impl Iterator<Item = f64>) -> i32 {
    thresholds.filter(|t| v >= *t).count() as i32
}

/// [`rsqrt`] in f64.
pub(super) fn rsqrt_f64(v: f64) -> f64 {
    let j = RSQRT_J;
    let a = count_at_most(v, (-j..=j).map(|e| 4f64.powi(e))) - j - 1;
    read_f64(RSQRT, v * 4f64.powi(j - a)) * 2f64.powi(-a)
}

/// [`reciprocal`] in f64.
fn reciprocal_f64(z: f64) -> f64 {
    let a = count_at_most(z, (1..=RECIP_A).map(|e| 2f64.powi(e)));
    let f = 2f64.powi(RECIP_A - a);
    read_f64(RECIP, z * f) * f * 2f64.powi(-RECIP_A)
}

/// [`layer_norm`] in f64, with `g = 1`, `b = 0` and the epsilon of the accuracy rows.
pub(super) fn layer_norm_f64(x: &[f64]) -> Vec<f64> {
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    let c: Vec<f64> = x.iter().map(|v| v - mean).collect();
    rms_f64(&c)
}

/// [`rms_norm`] in f64, with `g = 1` and the epsilon of the accuracy rows.
pub(super) fn rms_norm_f64(x: &[f64]) -> Vec<f64> {
    rms_f64(x)
}

fn rms_f64(x: &[f64]) -> Vec<f64> {
    let v = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + super::samples::NORM_EPS;
    let r = rsqrt_f64(v);
    x.iter().map(|v| v * r).collect()
}
