//! Every rewrite's formula in f64 against the exact function, over its declared range:
//! the published coefficients are checked here, not trusted. Each declared bound must
//! hold and be tight (the measured error is at least 90% of it), so a bound that drifts
//! from the form in either direction fails.

use super::reference;
use crate::passes::approximate::samples::{self, grid};
use crate::passes::approximate::{Formula, REWRITES, Rewrite};

/// Largest `|a − e|` and where.
#[derive(Debug, Default, Clone, Copy)]
struct Worst {
    err: f64,
    at: f64,
}

impl Worst {
    fn see(&mut self, a: f64, e: f64, at: f64) {
        let err = match (a - e).abs() {
            d if d.is_nan() => f64::INFINITY,
            d => d,
        };
        if err > self.err {
            *self = Worst { err, at };
        }
    }
}

/// Asserts `worst` is within `r`'s bound and at least 90% of it.
fn check(r: &Rewrite, worst: Worst) {
    let bound = r.max_abs_error;
    eprintln!("{}: max error {:.4e} at {}", r.name, worst.err, worst.at);
    assert!(
        worst.err <= bound,
        "{}: error {:e} at {} exceeds the declared {bound:e}",
        r.name,
        worst.err,
        worst.at
    );
    assert!(
        r.limited_by_fixed_point || worst.err >= 0.9 * bound,
        "{}: error {:e} is far below the declared {bound:e}: tighten it",
        r.name,
        worst.err
    );
}

/// The exact function an element-wise rewrite replaces.
fn exact_elementwise(op: &str) -> fn(f64) -> f64 {
    match op {
        "gelu" => reference::gelu,
        "silu" => reference::silu,
        other => panic!("no element-wise reference for `{other}`"),
    }
}

fn elementwise(r: &Rewrite, f: fn(f64) -> f64) -> Worst {
    let exact = exact_elementwise(r.op);
    let mut w = Worst::default();
    for x in samples::points(r) {
        w.see(f(x), exact(x), x);
    }
    w
}

/// The exact function a row rewrite replaces.
fn exact_row(op: &str) -> fn(&[f64]) -> Vec<f64> {
    match op {
        "softmax" => reference::softmax,
        "layer_norm" => reference::layer_norm,
        "rms_norm" => reference::rms_norm,
        other => panic!("no row reference for `{other}`"),
    }
}

fn row(r: &Rewrite, f: fn(&[f64]) -> Vec<f64>) -> Worst {
    let exact = exact_row(r.op);
    let mut w = Worst::default();
    for (i, s) in samples::rows(r).iter().enumerate() {
        assert!(
            s.iter().all(|v| (r.domain.0..=r.domain.1).contains(v)),
            "{}",
            r.name
        );
        for (a, e) in f(s).into_iter().zip(exact(s)) {
            w.see(a, e, i as f64);
        }
    }
    w
}

#[test]
fn every_formula_is_within_its_declared_error() {
    for r in REWRITES {
        let worst = match r.formula {
            Formula::Elementwise(f) => elementwise(r, f),
            Formula::Row(f) => row(r, f),
        };
        check(r, worst);
    }
}

/// The checked numbers of APPROXIMATIONS.md, and where the error peaks.
#[test]
fn peaks_are_where_the_doc_says() {
    let at = |name: &str| {
        let r = REWRITES.iter().find(|r| r.name == name).expect("listed");
        let Formula::Elementwise(f) = r.formula else {
            panic!("{name} is element-wise")
        };
        elementwise(r, f)
    };
    let near = |w: Worst, x: f64, tol: f64| (w.at - x).abs() <= tol;
    assert!(near(at("puma.gelu"), 3.0, 1e-6), "{:?}", at("puma.gelu"));
    assert!(near(at("puma.silu"), 4.0, 1e-6), "{:?}", at("puma.silu"));
    assert!(near(at("bolt.gelu"), 2.7, 1e-3), "{:?}", at("bolt.gelu"));
    assert!(at("bumblebee.gelu").at.abs() - 3.0 < 1e-3);
    assert!(
        near(at("bumblebee.silu"), -8.0, 1e-3),
        "{:?}",
        at("bumblebee.silu")
    );
    assert!(
        near(at("mpcformer.gelu"), -4.0, 1e-6),
        "{:?}",
        at("mpcformer.gelu")
    );
}

/// `(1 + x/2^n)^(2^n)` on [−14, 0] (APPROXIMATIONS.md: n = 5: 0.0085, n = 8: 0.0011).
#[test]
fn taylor_exp_errors() {
    use crate::passes::approximate::{BOLT_EXP_SQUARINGS, PUMA_EXP_SQUARINGS};
    let worst = |n: u32| {
        let mut w = Worst::default();
        for x in grid(-14.0, 0.0, 140_000) {
            w.see((1.0 + x / f64::from(1u32 << n)).powi(1 << n), x.exp(), x);
        }
        w
    };
    let (puma, bolt) = (worst(PUMA_EXP_SQUARINGS), worst(BOLT_EXP_SQUARINGS));
    eprintln!("exp n = 5: {puma:?}; n = 6: {bolt:?}");
    assert!((0.00850..0.00860).contains(&puma.err) && (puma.at + 2.0).abs() < 0.05);
    assert!((0.00420..0.00430).contains(&bolt.err) && (bolt.at + 2.0).abs() < 0.05);
}

/// The reference erf against values from the literature (A&S table 7.1, 15 digits).
#[test]
fn reference_erf() {
    for (x, e) in [
        (0.5, 0.520_499_877_813_047),
        (1.0, 0.842_700_792_949_715),
        (2.0, 0.995_322_265_018_953),
        (3.0, 0.999_977_909_503_001),
    ] {
        assert!((reference::erf(x) - e).abs() < 1e-14, "erf({x})");
        assert!((reference::erf(-x) + e).abs() < 1e-14, "erf({x})");
    }
}
