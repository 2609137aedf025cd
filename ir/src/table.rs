//! Public functions read from lookup tables: the meaning of
//! [`Op::Lut`](crate::Op::Lut), shared by the plaintext backends, the two-party runtime's
//! table gate and the compiler's error checks, so the table that is built is the table
//! that is read everywhere.
//!
//! A `lut {func, bits = n, frac = q}` node reads its input x (fixed point at scale s ≥ q)
//! as the signed n-bit integer k = ⌊x·2^q⌋ mod 2^n (two's complement, so the index wraps
//! outside [−T, T) with T = 2^(n−1−q), [`half_range`]) and outputs f((k + 1)/2^q) at the
//! plan's scale. Two parties compute the index from local truncations of their shares,
//! which may land one below ⌊x·2^q⌋ and never further: the carry lost between the shares
//! matters only modulo 2^(64−s+q), and the index is read modulo 2^n. So a lookup at index
//! k stands for x ∈ [k, k + 2)/2^q, and the table samples the middle of that interval:
//! the error against f is at most 2^−q·max|f′| near x, whichever of the two indices the
//! parties read. An input below −T + 2^−q or at least T reads a wrapped index; forms that
//! use a table compare x with those two ends ([`low_end`], [`half_range`]) and discard the
//! lookup outside.

use serde::{Deserialize, Serialize};

use crate::erf::erfc;

/// The widest table index: 2^20 entries.
pub const MAX_TABLE_BITS: u32 = 20;

/// A public function a table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableFn {
    /// `relu(x) − gelu(x) = |x|·Φ(−|x|)` (erf GeLU): even, 0.17 at |x| = 0.75, below
    /// 1.3·10⁻⁴ from |x| = 4 on.
    GeluGap,
    /// `relu(x) − silu(x) = |x|·σ(−|x|)`: even, 0.28 at |x| = 1.28, below 1.8·10⁻⁶ from
    /// |x| = 16 on.
    SiluGap,
    /// `e^min(x, 0)`: the exponential of a softmax row after its maximum is subtracted.
    ExpNeg,
    /// `e^(min(x, 0)/8)`: the same of scores still to be scaled by 1/8 (`1/sqrt(64)`: an
    /// attention of 64-wide heads), read at 3 fractional bits fewer than `exp_neg`, so
    /// that it holds the same entries.
    ExpNegEighth,
    /// `2^8/sqrt(x)` (0 for x ≤ 0): a norm's rsqrt on its input scaled into
    /// `[4^8, 4^9)`, where it lies in (1/2, 1].
    RsqrtScaled,
    /// `2^12/x` (0 for x ≤ 0): a softmax's reciprocal on its row sum scaled into
    /// `[2^12, 2^13)`, where it lies in (1/2, 1].
    RecipScaled,
}

impl TableFn {
    /// Every function, in a fixed order.
    pub const ALL: [TableFn; 6] = [
        TableFn::GeluGap,
        TableFn::SiluGap,
        TableFn::ExpNeg,
        TableFn::ExpNegEighth,
        TableFn::RsqrtScaled,
        TableFn::RecipScaled,
    ];

    /// The name in the text form and the plan file.
    pub fn name(self) -> &'static str {
        match self {
            TableFn::GeluGap => "gelu_gap",
            TableFn::SiluGap => "silu_gap",
            TableFn::ExpNeg => "exp_neg",
            TableFn::ExpNegEighth => "exp_neg_eighth",
            TableFn::RsqrtScaled => "rsqrt_scaled",
            TableFn::RecipScaled => "recip_scaled",
        }
    }

    /// The exact value at `x`.
    pub fn eval(self, x: f64) -> f64 {
        let a = x.abs();
        match self {
            TableFn::GeluGap => 0.5 * a * erfc(a / std::f64::consts::SQRT_2),
            TableFn::SiluGap => a / (1.0 + a.exp()),
            TableFn::ExpNeg => x.min(0.0).exp(),
            TableFn::ExpNegEighth => (x.min(0.0) / 8.0).exp(),
            TableFn::RsqrtScaled if x > 0.0 => 256.0 / x.sqrt(),
            TableFn::RecipScaled if x > 0.0 => 4096.0 / x,
            TableFn::RsqrtScaled | TableFn::RecipScaled => 0.0,
        }
    }
}

/// T = 2^(n−1−q): indices cover [−T, T).
pub fn half_range(bits: u32, frac: u32) -> f64 {
    (f64::from(bits) - 1.0 - f64::from(frac)).exp2()
}

/// The smallest input whose lookup cannot wrap: −T + 2^−q.
pub fn low_end(bits: u32, frac: u32) -> f64 {
    -half_range(bits, frac) + (-f64::from(frac)).exp2()
}

fn index_mask(bits: u32) -> u64 {
    (1u64 << bits) - 1
}

/// The index of a fixed-point input `x` at scale `scale` (≥ `frac`): ⌊x·2^q⌋ mod 2^n.
pub fn index_fixed(x: u64, scale: u32, frac: u32, bits: u32) -> usize {
    (((x as i64) >> (scale - frac)) as u64 & index_mask(bits)) as usize
}

/// The index of a real input `x`: ⌊x·2^q⌋ mod 2^n (saturating far outside the ring).
pub fn index_f64(x: f64, frac: u32, bits: u32) -> usize {
    let k = (x * f64::from(frac).exp2()).floor() as i64;
    (k as u64 & index_mask(bits)) as usize
}

/// The signed integer k of index `index`.
fn signed(index: usize, bits: u32) -> i64 {
    let k = index as i64;
    if k >= 1 << (bits - 1) {
        k - (1 << bits)
    } else {
        k
    }
}

/// The point the entry at `index` samples: (k + 1)/2^q.
pub fn point(index: usize, bits: u32, frac: u32) -> f64 {
    (signed(index, bits) + 1) as f64 * (-f64::from(frac)).exp2()
}

/// The real value of the entry at `index`.
pub fn value(func: TableFn, index: usize, bits: u32, frac: u32) -> f64 {
    func.eval(point(index, bits, frac))
}

/// The smallest and largest value the table holds.
pub fn value_range(func: TableFn, bits: u32, frac: u32) -> (f64, f64) {
    (0..1usize << bits)
        .map(|i| value(func, i, bits, frac))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

/// The whole table as fixed-point ring elements at `scale` (round to nearest), index by
/// index: 2^n entries.
pub fn entries(func: TableFn, bits: u32, frac: u32, scale: u32) -> Vec<u64> {
    let one = f64::from(scale).exp2();
    (0..1usize << bits)
        .map(|i| (value(func, i, bits, frac) * one).round() as i64 as u64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_relu_minus_the_function() {
        for x in [-5.0, -1.28, -0.75, 0.0, 0.3, 2.0, 7.5] {
            let gelu = 0.5 * x * (1.0 + crate::erf::erf(x / std::f64::consts::SQRT_2));
            let silu = x / (1.0 + f64::exp(-x));
            assert!((TableFn::GeluGap.eval(x) - (f64::max(x, 0.0) - gelu)).abs() < 1e-15);
            assert!((TableFn::SiluGap.eval(x) - (f64::max(x, 0.0) - silu)).abs() < 1e-14);
        }
        assert_eq!(TableFn::ExpNeg.eval(3.0), 1.0);
    }

    #[test]
    fn fixed_and_real_indices_agree_and_wrap() {
        let (bits, frac, scale) = (10, 6, 16);
        for x in [-9.0, -8.0, -7.99, -0.001, 0.0, 0.02, 3.3, 7.98, 8.0, 100.0] {
            let fx = (x * 65536.0_f64).round() as i64 as u64;
            assert_eq!(
                index_fixed(fx, scale, frac, bits),
                index_f64(x, frac, bits),
                "{x}"
            );
        }
        assert_eq!(half_range(bits, frac), 8.0);
        // −8 reads the lowest index, whose point is −8 + 1/64; 8 wraps to it
        assert_eq!(
            point(index_f64(-8.0, frac, bits), bits, frac),
            -8.0 + 1.0 / 64.0
        );
        assert_eq!(index_f64(8.0, frac, bits), index_f64(-8.0, frac, bits));
        assert_eq!(low_end(bits, frac), -8.0 + 1.0 / 64.0);
    }

    #[test]
    fn entries_encode_the_values() {
        let t = entries(TableFn::ExpNeg, 8, 4, 16);
        assert_eq!(t.len(), 256);
        // index of x = −1/16 is 255 (k = −1), whose point is 0: e^0 = 1
        assert_eq!(t[255], 1 << 16);
        let k = index_f64(-2.0, 4, 8);
        assert_eq!(
            t[k],
            ((-2.0 + 1.0 / 16.0_f64).exp() * 65536.0).round() as u64
        );
    }
}
