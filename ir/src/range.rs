//! Value ranges: closed intervals of reals, for the range analysis of fixed-point values.
//!
//! A node's **declared range** is a fact a recipe guarantees about its real value (the
//! Newton iterates of a reciprocal stay in `[0, 1.11]`, a normalised row stays within
//! `±1.01·sqrt(d)`), which interval arithmetic alone cannot see because it forgets that
//! the operands of `x·y` are related. The compiler's pass `expand` records them
//! ([`Analyses::declared`](crate::Analyses::declared)); they hold only while each recipe's
//! input stays in its assumed range, and the range analysis checks that too. Plans carry
//! them per node (`declared`), so a plan read back can be analysed again.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The closed interval `[lo, hi]` of reals; either end may be infinite (`±∞`: unbounded
/// on that side). Serialized as `[lo, hi]`, with `null` for an infinite end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

impl Interval {
    /// Every real.
    pub const UNBOUNDED: Interval = Interval {
        lo: f64::NEG_INFINITY,
        hi: f64::INFINITY,
    };

    /// `[lo, hi]`.
    pub const fn new(lo: f64, hi: f64) -> Interval {
        Interval { lo, hi }
    }

    /// `[v, v]`.
    pub const fn point(v: f64) -> Interval {
        Interval { lo: v, hi: v }
    }

    /// `[−b, b]`.
    pub const fn symmetric(b: f64) -> Interval {
        Interval { lo: -b, hi: b }
    }

    /// The largest `|x|` over the interval (`∞` when unbounded).
    pub fn magnitude(self) -> f64 {
        self.lo.abs().max(self.hi.abs())
    }

    /// Both ends are finite.
    pub fn is_bounded(self) -> bool {
        self.lo.is_finite() && self.hi.is_finite()
    }

    /// The smallest interval holding both.
    pub fn hull(self, o: Interval) -> Interval {
        Interval::new(self.lo.min(o.lo), self.hi.max(o.hi))
    }

    /// The common part; if there is none (a declared range contradicts what the operands
    /// allow), `self` is kept: a contradiction is not evidence of a small value.
    pub fn meet(self, o: Interval) -> Interval {
        let m = Interval::new(self.lo.max(o.lo), self.hi.min(o.hi));
        if m.lo <= m.hi { m } else { self }
    }

    /// Whether `self ⊆ o`.
    pub fn within(self, o: Interval) -> bool {
        o.lo <= self.lo && self.hi <= o.hi
    }

    /// `{a + b}`.
    pub fn plus(self, o: Interval) -> Interval {
        Interval::new(self.lo + o.lo, self.hi + o.hi)
    }

    /// `{−a}`.
    pub fn negated(self) -> Interval {
        Interval::new(-self.hi, -self.lo)
    }

    /// `{a − b}`.
    pub fn minus(self, o: Interval) -> Interval {
        self.plus(o.negated())
    }

    /// `{a · b}` (with `0 · ∞` read as 0: a factor that is exactly zero).
    pub fn times(self, o: Interval) -> Interval {
        let p = |a: f64, b: f64| if a == 0.0 || b == 0.0 { 0.0 } else { a * b };
        let c = [
            p(self.lo, o.lo),
            p(self.lo, o.hi),
            p(self.hi, o.lo),
            p(self.hi, o.hi),
        ];
        let lo = c.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Interval::new(lo, hi)
    }

    /// `{a · c}` for a constant `c`.
    pub fn scale(self, c: f64) -> Interval {
        self.times(Interval::point(c))
    }

    /// `{a²}`: exact, unlike `mul(self, self)`, which forgets that both factors are equal.
    pub fn square(self) -> Interval {
        let (a, b) = (self.lo * self.lo, self.hi * self.hi);
        let lo = if self.lo <= 0.0 && self.hi >= 0.0 {
            0.0
        } else {
            a.min(b)
        };
        Interval::new(lo, a.max(b))
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}]", self.lo, self.hi)
    }
}

/// `[lo, hi]` with `null` for an infinite end (JSON has no infinity).
impl Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let end = |v: f64| v.is_finite().then_some(v);
        (end(self.lo), end(self.hi)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (lo, hi): (Option<f64>, Option<f64>) = Deserialize::deserialize(d)?;
        Ok(Interval::new(
            lo.unwrap_or(f64::NEG_INFINITY),
            hi.unwrap_or(f64::INFINITY),
        ))
    }
}

/// A recipe's guarantee about one node: its real value lies in `range` whenever the
/// recipe's input lies in the range the recipe assumes (`assumes`, recorded on the
/// recipe's input node, with the recipe's name in `recipe`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    /// The guaranteed range of this node, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Interval>,
    /// The range a recipe assumes of this node (its input), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumes: Option<Interval>,
    /// The recipe that assumes `assumes` (`reciprocal`, `rsqrt`, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub recipe: String,
    /// A bound on the L2 norm of every row (the last axis) of this node, if declared (a
    /// normalised row: `1.01·sqrt(d)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_l2: Option<f64>,
    /// A bound on the L1 norm of every row, if declared (a softmax row: about 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_l1: Option<f64>,
    /// For a norm's output `(s ⊙ g)·t` (its first operand a product with the gain `g`,
    /// through truncations and shares): every row's L2 norm is at most this times
    /// `max |g|` (the normalised row has norm `sqrt(d)`, whatever `s` and `t` are apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_l2_per_gain: Option<f64>,
    /// A product the recipe keeps at its doubled scale (no truncation of its own): its
    /// readers are products whose truncation follows, and the recipe bounds the result
    /// (a norm's `rsqrt` factor `2^−a·T`, read by the row's product).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub untruncated: bool,
}

/// Declared statistics of one weight tensor, in the shape the model computes with (a
/// checkpoint's transposed tensor is read as the model reads it), each rounded up to a
/// power of [`STAT_STEP`] so that a plan reveals them only to that precision. The runtime
/// checks a checkpoint against them when it loads it: the range analysis' bounds, and so
/// a plan's narrowed comparisons and truncation widths, rest on them.
///
/// For a matrix `[.., m, n]` (every leading index a separate matrix): `max_abs` bounds
/// every `|w|`, `row_l2` every row's L2 norm (over the last axis), `col_l2` every column's
/// (over the second to last), `op` every matrix's spectral norm (largest singular value).
/// For a vector `[n]`: `row_l2` is its L2 norm and the others are `max_abs`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightStats {
    /// Bound on `|w|`.
    pub max_abs: f64,
    /// Bound on each row's L2 norm.
    pub row_l2: f64,
    /// Bound on each column's L2 norm.
    pub col_l2: f64,
    /// Bound on each matrix's spectral norm.
    pub op: f64,
}

/// The grid declared weight statistics are rounded up to: powers of `2^(1/4)` (a plan
/// tells the client each statistic within 19%).
pub const STAT_STEP: f64 = 1.189_207_115_002_721;

/// `v` rounded up to the next power of [`STAT_STEP`] (0 stays 0; a non-finite value or a
/// NaN is infinite: no bound).
pub fn round_stat(v: f64) -> f64 {
    if v == 0.0 {
        return 0.0;
    }
    if !v.is_finite() || v.is_nan() {
        return f64::INFINITY;
    }
    let k = (v.log2() * 4.0).ceil();
    let r = 2f64.powf(k / 4.0);
    // log2 and powf round: step up once more if that landed below v
    if r < v { 2f64.powf((k + 1.0) / 4.0) } else { r }
}

/// The offset `causal_mask` adds to a hidden key's score, in real units: `−2^20`. The
/// runtime's fixed-point backends use the same number (a test in `tests/` compares them);
/// it is large enough that softmax gives hidden keys exactly 0, and so it makes masked
/// scores the largest values of a decoder.
pub const CAUSAL_MASK_OFFSET: f64 = -1_048_576.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_by_hand() {
        let a = Interval::new(-2.0, 3.0);
        let b = Interval::new(1.0, 4.0);
        assert_eq!(a.plus(b), Interval::new(-1.0, 7.0));
        assert_eq!(a.minus(b), Interval::new(-6.0, 2.0));
        assert_eq!(a.times(b), Interval::new(-8.0, 12.0));
        assert_eq!(a.square(), Interval::new(0.0, 9.0));
        assert_eq!(b.square(), Interval::new(1.0, 16.0));
        assert_eq!(a.scale(-0.5), Interval::new(-1.5, 1.0));
        assert_eq!(a.magnitude(), 3.0);
        assert_eq!(a.meet(b), Interval::new(1.0, 3.0));
        assert_eq!(a.meet(Interval::new(5.0, 6.0)), a);
        assert_eq!(
            Interval::point(0.0).times(Interval::UNBOUNDED),
            Interval::point(0.0)
        );
    }

    #[test]
    fn infinite_ends_serialize_as_null() {
        let json = serde_json::to_string(&Interval::new(f64::NEG_INFINITY, 0.0)).unwrap();
        assert_eq!(json, "[null,0.0]");
        let back: Interval = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Interval::new(f64::NEG_INFINITY, 0.0));
    }
}
