//! The error function to double precision, for the exact (erf) form of GeLU.
//!
//! Below 2 a series with positive terms only (Abramowitz & Stegun 7.1.6,
//! `erf x = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3···(2n+1))`), so no cancellation; from 2 on
//! the continued fraction for `erfc` (A&S 7.1.14) evaluated backwards over a fixed depth
//! (relative error below 1e-16 there). `erf` stays within a few ulps of the true value
//! (checked against 40-digit values in the tests); `erfc` is `1 − erf` below 2, so there its
//! error is a few ulps of 1, not of the result. Polynomial fits such as A&S 7.1.26 (error 1.5e-7) are not precise enough for a
//! reference.

use std::f64::consts::PI;

/// Where the series hands over to the continued fraction.
const SWITCH: f64 = 2.0;
/// Depth of the continued fraction: at x ≥ 2 it has converged to double precision by 60.
const CF_DEPTH: u32 = 60;

/// The error function `erf x = 2/√π ∫₀ˣ e^(−t²) dt`.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        x
    } else if x < 0.0 {
        -erf(-x)
    } else if x < SWITCH {
        erf_series(x)
    } else {
        1.0 - erfc_fraction(x)
    }
}

/// The complementary error function `1 − erf x`, to full relative precision from 2 on.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        x
    } else if x < SWITCH {
        1.0 - erf(x)
    } else {
        erfc_fraction(x)
    }
}

/// A&S 7.1.6 for `0 ≤ x < 2`: at most ~31 terms.
fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let (mut term, mut sum) = (x, x);
    for n in 1..200 {
        term *= 2.0 * x2 / f64::from(2 * n + 1);
        sum += term;
        if term <= sum * 1e-17 {
            break;
        }
    }
    2.0 / PI.sqrt() * (-x2).exp() * sum
}

/// A&S 7.1.14 for `x ≥ 2`: `erfc x = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))`.
fn erfc_fraction(x: f64) -> f64 {
    let mut t = x;
    for n in (1..=CF_DEPTH).rev() {
        t = x + f64::from(n) / 2.0 / t;
    }
    (-x * x).exp() / PI.sqrt() / t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (x, erf x, erfc x) to double precision (mpmath, 40 digits).
    const TABLE: [(f64, f64, f64); 9] = [
        (0.1, 0.1124629160182849, 0.8875370839817152),
        (0.5, 0.5204998778130465, 0.4795001221869535),
        (1.0, 0.8427007929497149, 0.15729920705028513),
        (1.9, 0.9927904292352575, 0.00720957076474253),
        (2.0, 0.9953222650189527, 0.004677734981047266),
        (2.5, 0.999593047982555, 0.0004069520174449589),
        (3.0, 0.9999779095030014, 2.209049699858544e-05),
        (4.5, 0.9999999998033839, 1.9661604415428876e-10),
        (6.0, 1.0, 2.1519736712498913e-17),
    ];

    #[test]
    fn matches_high_precision_values() {
        for (x, e, c) in TABLE {
            assert!((erf(x) - e).abs() < 1e-15, "erf({x}) = {} vs {e}", erf(x));
            assert!((erf(-x) + e).abs() < 1e-15, "erf(-{x})");
            let tol = if x < SWITCH { 1e-15 } else { 1e-14 * c };
            assert!((erfc(x) - c).abs() <= tol, "erfc({x}) = {} vs {c}", erfc(x));
        }
    }

    #[test]
    fn is_continuous_at_the_switch() {
        let below = erf(SWITCH - 1e-14);
        let above = erf(SWITCH);
        assert!((below - above).abs() < 1e-15, "{below} vs {above}");
    }

    #[test]
    fn handles_extremes() {
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(40.0), 1.0);
        assert_eq!(erf(f64::INFINITY), 1.0);
        assert_eq!(erf(f64::NEG_INFINITY), -1.0);
        assert!(erf(f64::NAN).is_nan());
        assert_eq!(erfc(40.0), 0.0);
    }
}
