//! Norm bounds beside the intervals: for every node, bounds on the L2 and L1 norms of its
//! rows (the last axis), the L2 norm of its columns (the second to last axis) and, for
//! weights, the spectral norm of each matrix. Interval arithmetic bounds a product of `k`
//! terms by `k·|a|·|b|`, which is hopeless on a transformer (GPT-2's FFN input would be
//! bounded by 10^8); Cauchy–Schwarz bounds it by `‖a_row‖·‖b_col‖`, and a normalised row
//! has a known norm, so a layer's activations get bounds within a small factor of what a
//! real checkpoint produces — and still provable, from the weights' declared statistics
//! ([`comet_ir::WeightStats`], checked at setup) and the recipes' declarations.
//!
//! Every bound is a maximum over all rows (columns, matrices) of the node; `∞` means
//! nothing is known beyond what the interval implies ([`Norms::tighten`] derives that).
//! The rules, for `out` from operands `a`, `b`:
//! - `a + b`, `a − b`: norms add (an operand broadcast along an axis counts as its
//!   magnitude times the square root of the axis' length);
//! - `a · b` elementwise: `‖a‖·max|b|`; `a²`: `‖a²‖₁ = ‖a‖₂²` exactly;
//! - `a · B` (matmul): every entry within `‖a_row‖₂·‖B_col‖₂` and `‖a_row‖₁·max|B|`;
//!   rows within `‖a_row‖₂·‖B‖_op` and `‖a_row‖₁·max_k ‖B_row k‖₂`; columns within
//!   `‖a‖_op·‖B_col‖₂`;
//! - `x − mean(x)` (a norm's centring) has rows no longer than `x`'s;
//! - data movement keeps what it can (a transpose swaps rows and columns, `merge_heads`
//!   multiplies row norms by `sqrt(h)`, RoPE rotates pairs: rows at most 1.01× longer);
//! - selects and masks only zero entries: every norm of the selected operand holds.

use comet_ir::{DimEnv, Interval, NodeId, Op, Program, WeightStats};

/// Norm bounds of one node (`∞`: unknown).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Norms {
    /// Every row's L2 norm (last axis).
    pub row_l2: f64,
    /// Every row's L1 norm.
    pub row_l1: f64,
    /// Every column's L2 norm (second to last axis).
    pub col_l2: f64,
    /// Every matrix's spectral norm (last two axes).
    pub op: f64,
}

impl Norms {
    /// Nothing known.
    pub const UNKNOWN: Norms = Norms {
        row_l2: f64::INFINITY,
        row_l1: f64::INFINITY,
        col_l2: f64::INFINITY,
        op: f64::INFINITY,
    };

    /// The norms a weight's declared statistics give.
    pub fn of_weight(s: &WeightStats, rank: usize) -> Norms {
        if rank < 2 {
            return Norms {
                row_l2: s.row_l2,
                ..Norms::UNKNOWN
            };
        }
        Norms {
            row_l2: s.row_l2,
            row_l1: f64::INFINITY,
            col_l2: s.col_l2,
            op: s.op,
        }
    }

    /// Each bound made consistent with the others and with the magnitude `mag` of every
    /// entry, for rows of `n` entries and columns of `m`: `‖x‖₂ ≤ ‖x‖₁ ≤ sqrt(n)·‖x‖₂`,
    /// `‖x‖₂ ≤ sqrt(n)·mag`, `‖X‖_op ≤ ‖X‖_F ≤ min(sqrt(m)·rows, sqrt(n)·columns)`.
    pub fn tighten(self, mag: f64, n: f64, m: f64) -> Norms {
        let row_l2 = self.row_l2.min(self.row_l1).min(mag * n.sqrt());
        let row_l1 = self.row_l1.min(row_l2 * n.sqrt()).min(mag * n);
        let col_l2 = self.col_l2.min(mag * m.sqrt());
        let op = (self.op).min(row_l2 * m.sqrt()).min(col_l2 * n.sqrt());
        Norms {
            row_l2: finite_or_inf(row_l2),
            row_l1: finite_or_inf(row_l1),
            col_l2: finite_or_inf(col_l2),
            op: finite_or_inf(op),
        }
    }

    /// The bound on every entry the row norms give.
    pub fn magnitude(self) -> f64 {
        self.row_l2.min(self.row_l1)
    }

    /// Each bound the larger of the two (values that are one or the other).
    pub fn hull(self, o: Norms) -> Norms {
        Norms {
            row_l2: self.row_l2.max(o.row_l2),
            row_l1: self.row_l1.max(o.row_l1),
            col_l2: self.col_l2.max(o.col_l2),
            op: self.op.max(o.op),
        }
    }

    fn scaled(self, c: f64) -> Norms {
        let c = c.abs();
        Norms {
            row_l2: self.row_l2 * c,
            row_l1: self.row_l1 * c,
            col_l2: self.col_l2 * c,
            op: self.op * c,
        }
    }

    fn plus(self, o: Norms) -> Norms {
        Norms {
            row_l2: self.row_l2 + o.row_l2,
            row_l1: self.row_l1 + o.row_l1,
            col_l2: self.col_l2 + o.col_l2,
            op: self.op + o.op,
        }
    }

    /// The norms of the transpose (last two axes swapped).
    pub fn transposed(self) -> Norms {
        Norms {
            row_l2: self.col_l2,
            row_l1: f64::INFINITY,
            col_l2: self.row_l2,
            op: self.op,
        }
    }
}

/// NaN (from `0·∞`) is unknown.
fn finite_or_inf(v: f64) -> f64 {
    if v.is_nan() { f64::INFINITY } else { v }
}

/// `a·b` with `0·∞ = 0` (a factor that is exactly zero).
fn mul(a: f64, b: f64) -> f64 {
    if a == 0.0 || b == 0.0 { 0.0 } else { a * b }
}

/// What the norm rules read about a node and its operands.
pub(super) struct NormCtx<'a> {
    /// The program.
    pub p: &'a Program,
    /// The node.
    pub id: NodeId,
    /// The call.
    pub env: DimEnv,
    /// The operands' intervals.
    pub xs: &'a [Interval],
    /// The operands' norms.
    pub ns: &'a [Norms],
    /// For `row_sum(A ⊙ v)` ([`matrix_vector`]): the norms of `A` and `v`.
    pub product: Option<(Norms, Norms)>,
}

impl NormCtx<'_> {
    fn dims(&self, x: NodeId) -> Vec<u64> {
        let shape = &self.p.graph.node(x).ty.shape;
        shape.iter().map(|d| d.eval(self.env)).collect()
    }

    /// Operand `i`'s norms as seen in the node's own shape: an operand broadcast along
    /// the last (second to last) axis has rows (columns) of its magnitude.
    fn operand(&self, i: usize) -> Norms {
        let x = self.p.graph.operands(self.id)[i];
        let (own, theirs) = (self.dims(self.id), self.dims(x));
        let mag = self.xs[i].magnitude();
        let mut n = self.ns[i];
        let (last, last_x) = (own.last().copied(), theirs.last().copied());
        if last != last_x {
            let len = last.unwrap_or(1) as f64;
            n.row_l2 = mag * len.sqrt();
            n.row_l1 = mag * len;
            n.op = f64::INFINITY;
        }
        let second = |d: &[u64]| (d.len() >= 2).then(|| d[d.len() - 2]);
        if second(&own) != second(&theirs) {
            n.col_l2 = mag * (second(&own).unwrap_or(1) as f64).sqrt();
            n.op = f64::INFINITY;
        }
        n
    }
}

/// The norms of the node's value before tightening, from its op.
pub(super) fn transfer(c: &NormCtx, stats: Option<&WeightStats>) -> Norms {
    let p = c.p;
    let op = &p.graph.node(c.id).op;
    let ns = c.ns;
    match op {
        Op::Weight { .. } => match stats {
            Some(s) => Norms::of_weight(s, p.graph.node(c.id).ty.shape.len()),
            None => Norms::UNKNOWN,
        },
        Op::OneHot { .. } => Norms {
            row_l2: 1.0,
            row_l1: 1.0,
            ..Norms::UNKNOWN
        },
        Op::Add => c.operand(0).plus(c.operand(1)),
        Op::Sub if is_centring(p, c.id) => {
            // a centred row is no longer than the row, up to the mean's rounding (one unit
            // in the last place per entry)
            let n = c.dims(c.id).last().copied().unwrap_or(1) as f64;
            Norms {
                row_l2: ns[0].row_l2 + n.sqrt() * ulp(p, c.id),
                ..Norms::UNKNOWN
            }
        }
        Op::Sub => c.operand(0).plus(c.operand(1)),
        Op::Neg => ns[0],
        Op::MulConst { value } => ns[0].scaled(*value),
        Op::AddConst { value } => {
            let n = c.dims(c.id).last().copied().unwrap_or(1) as f64;
            let shift = Norms {
                row_l2: value.abs() * n.sqrt(),
                row_l1: value.abs() * n,
                ..Norms::UNKNOWN
            };
            ns[0].plus(shift)
        }
        Op::Mul => elementwise_product(c),
        Op::Square => Norms {
            row_l2: mul(ns[0].row_l2, c.xs[0].magnitude()),
            row_l1: mul(ns[0].row_l2, ns[0].row_l2),
            ..Norms::UNKNOWN
        },
        Op::MatMul | Op::BlockMatMul { .. } => matmul(ns[0], ns[1]),
        Op::CacheMatMul { transpose, .. } => matmul(ns[0], cache_operand(ns[1], *transpose)),
        Op::Embed => Norms {
            row_l2: ns[1].row_l2,
            ..Norms::UNKNOWN
        },
        Op::Transpose => ns[0].transposed(),
        Op::RowSum => row_sum(c),
        Op::MergeHeads => {
            let h = c.dims(c.p.graph.operands(c.id)[0])[0] as f64;
            Norms {
                row_l2: ns[0].row_l2 * h.sqrt(),
                row_l1: ns[0].row_l1 * h,
                col_l2: ns[0].col_l2,
                op: f64::INFINITY,
            }
        }
        Op::SplitHeads { .. } | Op::RepeatKv { .. } => Norms {
            op: f64::INFINITY,
            ..ns[0]
        },
        Op::Rope { .. } => Norms {
            row_l2: ns[0].row_l2 * 1.01,
            col_l2: ns[0].col_l2 * std::f64::consts::SQRT_2 * 1.01,
            ..Norms::UNKNOWN
        },
        Op::Concat { axis } => concat(c, *axis),
        // a permutation of the entries along one axis, padded with zeros: every row's and
        // column's norms are some row's and column's of x (or 0), and the operator norm is
        // x's (a permutation matrix is orthogonal; zero rows and columns add nothing)
        Op::BlockPermute { .. } => ns[0],
        Op::Select | Op::SignSelect | Op::ApplyMask { .. } => {
            // the selected value: a select's last operand, `apply_mask`'s first
            let x = match op {
                Op::ApplyMask { .. } => ns[0],
                _ => ns[ns.len() - 1],
            };
            Norms {
                op: f64::INFINITY,
                ..x
            }
        }
        Op::Trunc { .. }
        | Op::FaithfulTrunc { .. }
        | Op::StochasticTrunc { .. }
        | Op::Share { .. }
        | Op::Reveal { .. }
        | Op::Open
        | Op::Output { .. }
        | Op::CacheWrite { .. }
        | Op::Slice { .. } => ns[0],
        Op::Row { .. } => Norms {
            row_l2: ns[0].row_l2,
            row_l1: ns[0].row_l1,
            ..Norms::UNKNOWN
        },
        _ => Norms::UNKNOWN,
    }
}

/// Rows of `a ⊙ b` (with broadcasting): `‖a‖·max|b|` or `max|a|·‖b‖`.
fn elementwise_product(c: &NormCtx) -> Norms {
    let (a, b) = (c.operand(0), c.operand(1));
    let (ma, mb) = (c.xs[0].magnitude(), c.xs[1].magnitude());
    let best = |x: f64, y: f64| mul(x, mb).min(mul(ma, y));
    // a matrix times a vector along its rows is `A·diag(v)`: ‖A·diag(v)‖_op ≤ ‖A‖_op·max|v|
    let rank = |k: usize| c.p.graph.node(c.p.graph.operands(c.id)[k]).ty.shape.len();
    let op = match (rank(0), rank(1)) {
        (2, 1) => mul(a.op, mb),
        (1, 2) => mul(b.op, ma),
        _ => f64::INFINITY,
    };
    Norms {
        row_l2: best(a.row_l2, b.row_l2),
        row_l1: best(a.row_l1, b.row_l1),
        col_l2: best(a.col_l2, b.col_l2),
        op,
    }
}

/// `a · B`: rows within `‖a_row‖₂·‖B‖_op` and `‖a_row‖₁·max_k ‖B_k‖₂`; columns within
/// `‖a‖_op·‖B_col‖₂`. (Entries: [`matmul_entry`].)
fn matmul(a: Norms, bn: Norms) -> Norms {
    Norms {
        row_l2: mul(a.row_l2, bn.op).min(mul(a.row_l1, bn.row_l2)),
        row_l1: f64::INFINITY,
        col_l2: mul(a.op, bn.col_l2),
        op: mul(a.op, bn.op),
    }
}

/// The norms of a cache product's right operand: the cache, transposed for `q · kᵀ`.
pub(super) fn cache_operand(cache: Norms, transpose: bool) -> Norms {
    if transpose { cache.transposed() } else { cache }
}

/// One unit in the last place of `id`'s fixed-point encoding (0 for bits and indices,
/// which are exact).
pub(super) fn ulp(p: &Program, id: NodeId) -> f64 {
    match p.graph.node(id).ty.elem {
        comet_ir::Elem::Fixed { scale } => 2f64.powi(-(scale as i32)),
        _ => 0.0,
    }
}

/// The bound on every entry of `a · B`: `‖a_row‖₂·‖B_col‖₂` and `‖a_row‖₁·max|B|`.
pub(super) fn matmul_entry(a: Norms, b: Interval, bn: Norms) -> f64 {
    mul(a.row_l2, bn.col_l2).min(mul(a.row_l1, b.magnitude()))
}

/// Concatenation along `axis`: along the last axis rows are joined (`‖·‖₂² add`), along
/// the second to last columns are; along others every bound is the larger one.
fn concat(c: &NormCtx, axis: u32) -> Norms {
    let rank = c.p.graph.node(c.id).ty.shape.len();
    let all = c.ns.iter().copied();
    let hull = all.clone().reduce(Norms::hull).unwrap_or(Norms::UNKNOWN);
    let root_sum = |f: fn(&Norms) -> f64| c.ns.iter().map(|n| f(n) * f(n)).sum::<f64>().sqrt();
    let mut out = Norms {
        op: f64::INFINITY,
        ..hull
    };
    if axis as usize + 1 == rank {
        out.row_l2 = root_sum(|n| n.row_l2);
        out.row_l1 = c.ns.iter().map(|n| n.row_l1).sum();
    } else if axis as usize + 2 == rank {
        out.col_l2 = root_sum(|n| n.col_l2);
    }
    if rank == 2 {
        // ‖[A; B]‖_op² ≤ ‖A‖_op² + ‖B‖_op² (and side by side); a one-row or one-column
        // block's operator norm is its L2 norm
        let ops: Vec<f64> = (c.p.graph.operands(c.id).iter().zip(c.ns))
            .map(|(&x, n)| {
                let shape = &c.p.graph.node(x).ty.shape;
                match (shape[0].as_const(), shape[1].as_const()) {
                    (Some(1), _) => n.op.min(n.row_l2),
                    (_, Some(1)) => n.op.min(n.col_l2),
                    _ => n.op,
                }
            })
            .collect();
        out.op = ops.iter().map(|o| o * o).sum::<f64>().sqrt();
    }
    out
}

/// `(A, v)` when node `id` is `row_sum(A ⊙ v)` for a matrix `A` and a vector `v` along
/// its rows: `A·v`, one column.
pub(super) fn matrix_vector(p: &Program, id: NodeId) -> Option<(NodeId, NodeId)> {
    if !matches!(p.graph.node(id).op, Op::RowSum) {
        return None;
    }
    let x = p.graph.operands(id)[0];
    let ops = p.graph.operands(x);
    let rank = |y: NodeId| p.graph.node(y).ty.shape.len();
    (matches!(p.graph.node(x).op, Op::Mul) && rank(ops[0]) == 2 && rank(ops[1]) == 1)
        .then(|| (ops[0], ops[1]))
}

/// `row_sum(A ⊙ v) = A·v` ([`matrix_vector`]): its column's L2 norm is at most
/// `‖A‖_op·‖v‖₂`; else nothing beyond the entries.
fn row_sum(c: &NormCtx) -> Norms {
    match c.product {
        Some((a, v)) => Norms {
            col_l2: mul(a.op, v.row_l2),
            ..Norms::UNKNOWN
        },
        None => Norms::UNKNOWN,
    }
}

/// Whether `id` is `x − mean(x)` over the last axis (`x − row_sum(x)·(1/n)`): a centred
/// row is never longer than the row itself.
fn is_centring(p: &Program, id: NodeId) -> bool {
    let ops = p.graph.operands(id);
    let (x, mut m) = (ops[0], ops[1]);
    // the mean may be truncated back to the plan's scale first
    while matches!(
        p.graph.node(m).op,
        Op::Trunc { .. } | Op::FaithfulTrunc { .. } | Op::StochasticTrunc { .. }
    ) {
        m = p.graph.operands(m)[0];
    }
    let Op::MulConst { value } = p.graph.node(m).op else {
        return false;
    };
    let sum = p.graph.operands(m)[0];
    if !matches!(p.graph.node(sum).op, Op::RowSum) || p.graph.operands(sum)[0] != x {
        return false;
    }
    // the constant is 1/n for the row's length n (a norm's width: no call dimension)
    let n = (p.graph.node(x).ty.shape.last()).map(|d| d.eval(DimEnv { seq: 1, past: 1 }));
    n.is_some_and(|n| (value * n as f64 - 1.0).abs() < 1e-9)
}
