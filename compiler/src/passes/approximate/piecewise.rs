//! Piecewise polynomials that share their comparisons and their powers.
//!
//! All breakpoints of an input are compared in independent `drelu` nodes of the input
//! itself, so the ASAP schedule puts them into one round (beside the first squaring), and
//! every power `x^k` is computed once per input ([`Powers`]) and read by every piece.
//!
//! With bits `b_j = [x ≥ t_j]` (monotone in `j`) and pieces `p_j` valid from `t_j` on, the
//! value is `Σ_j select(b_j, p_j − p_{j−1})` (`p_{−1} = 0`): where `x` lies in piece `k`,
//! the selected differences telescope to `p_k`. Pieces are subtracted as nodes, not as
//! coefficient differences, so a piece that overflows the ring far outside its interval
//! (`x^6` at |x| > 36 with 16 fractional bits) cancels exactly: ring additions wrap
//! without loss, while separately truncated products would not.

use crate::passes::builder::Builder;
use comet_ir::NodeId;
use std::collections::BTreeMap;

/// An input and its powers, each computed once, by the shallowest chain: an even power
/// by squaring its half, or as `x^(k−2)·x²` when the half is not there but those are
/// (`x⁶ = x⁴·x²` without computing `x³`), an odd one by one product with `x`.
pub(super) struct Powers {
    pows: BTreeMap<u32, NodeId>,
}

impl Powers {
    /// `x` with no power computed yet.
    pub(super) fn new(x: NodeId) -> Self {
        Powers {
            pows: BTreeMap::from([(1, x)]),
        }
    }

    /// `x` whose power `k` is already known as `node` (`|x|^2 = x^2`).
    pub(super) fn with(mut self, k: u32, node: NodeId) -> Self {
        self.pows.insert(k, node);
        self
    }

    /// `x^k`, `k ≥ 1`.
    pub(super) fn get(&mut self, b: &mut Builder, k: u32) -> NodeId {
        if let Some(n) = self.pows.get(&k) {
            return *n;
        }
        let known = |j: u32| self.pows.get(&j).copied();
        let n = match (k % 2, known(k / 2), known(k - 2), known(2)) {
            (0, None, Some(lower), Some(x2)) => b.mul(lower, x2),
            (0, ..) => {
                let half = self.get(b, k / 2);
                b.square(half)
            }
            _ => {
                let even = self.get(b, k - 1);
                b.mul(even, self.pows[&1])
            }
        };
        self.pows.insert(k, n);
        n
    }
}

/// `c_0 + Σ c_k·x^k` for `coeffs[k] = c_k` (zero coefficients are skipped): products by
/// public constants and additions, all local.
pub(super) fn poly(b: &mut Builder, pw: &mut Powers, coeffs: &[f64]) -> NodeId {
    let mut sum: Option<NodeId> = None;
    for (k, c) in coeffs.iter().enumerate().skip(1) {
        if *c == 0.0 {
            continue;
        }
        let xk = pw.get(b, k as u32);
        let term = if *c == 1.0 { xk } else { scale(b, xk, *c) };
        sum = Some(match sum {
            None => term,
            Some(s) => b.add(s, term),
        });
    }
    let sum = sum.expect("a polynomial of degree at least 1");
    match coeffs[0] {
        0.0 => sum,
        c0 => b.add_const(sum, c0),
    }
}

/// `c·x` for a public `c`. A fixed-point constant is encoded with the plan's `frac`
/// fractional bits, so a small one keeps few significant bits (Bumblebee's −2.47e-4 becomes
/// −16/2^16, 1.3% off, which is 0.1 on `c·|x|⁵` at |x| = 8). Below 1/2, `c` is applied as
/// `c·2^m` in [1, 2) (full precision) followed by the exact `2^−m`, `m ≤ frac`: one more
/// local truncation.
fn scale(b: &mut Builder, x: NodeId, c: f64) -> NodeId {
    let frac = b.program().info.format.frac as i32;
    let m = ((-c.abs().log2()).ceil() as i32).min(frac);
    if c.abs() >= 0.5 || m <= 0 {
        return b.mul_const(x, c);
    }
    let wide = b.mul_const(x, c * 2f64.powi(m));
    b.mul_const(wide, 2f64.powi(-m))
}

/// The bits `[x ≥ t]` for every breakpoint `t`, each a `drelu` of `x − t`.
pub(super) fn compare(b: &mut Builder, x: NodeId, breakpoints: &[f64]) -> Vec<NodeId> {
    breakpoints
        .iter()
        .map(|t| {
            let d = b.add_const(x, -t);
            b.drelu(d)
        })
        .collect()
}

/// `Σ_j select(bits[j], pieces[j] − pieces[j−1])`: `pieces[j]` where `bits[..=j]` are set
/// and `bits[j+1..]` are not, 0 where none is set.
pub(super) fn piecewise(b: &mut Builder, bits: &[NodeId], pieces: &[NodeId]) -> NodeId {
    assert_eq!(bits.len(), pieces.len(), "one piece per breakpoint");
    let mut sum: Option<NodeId> = None;
    for j in 0..pieces.len() {
        let step = match j {
            0 => pieces[0],
            _ => b.sub(pieces[j], pieces[j - 1]),
        };
        let term = b.select(bits[j], step);
        sum = Some(match sum {
            None => term,
            Some(s) => b.add(s, term),
        });
    }
    sum.expect("at least one piece")
}
