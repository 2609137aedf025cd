//! Every rewrite compiled and run by the interpreters, on the inputs its declared error is
//! measured on (`comet_compiler::passes::approximate::samples`), against the same program
//! without the rewrite (which the f64 interpreter evaluates exactly).
//!
//! In f64 (after `approximate` and `expand`, as `tests/expand.rs` does for the exact
//! recipes) the output must match the rewrite's formula — to 1e-9 for the polynomial forms,
//! to the reciprocal's relative error where one divides by a row sum — and stay within the
//! declared error of the exact function. On the fixed-point backend (the whole pipeline at
//! 16 fractional bits) it must stay within the declared error too: the declared bounds
//! leave room for the rounding measured there.

use comet_compiler::front::parse::parse_model;
use comet_compiler::passes::approximate::{self, Formula, REWRITES, Rewrite, samples};
use comet_compiler::passes::{expand, lower::lower};
use comet_ir::{ApproxConfig, ApproxKind, DimEnv, Program, verify};
use comet_runtime::{fixed, plain};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

type Weights = HashMap<String, ArrayD<f64>>;

/// The model of a rewrite's op: element-wise and softmax on a `[seq]` input (a row of any
/// length), norms on `[seq, 64]` with client parameters `g`, `b`.
fn source(op: &str) -> String {
    let (shape, call) = match op {
        "layer_norm" => ("[seq, n]", "layer_norm(x, g, b, eps = 1e-5)".to_string()),
        "rms_norm" => ("[seq, n]", "rms_norm(x, g, eps = 1e-5)".to_string()),
        f => ("[seq]", format!("{f}(x)")),
    };
    format!(
        "model t {{ dim seq, past; dim n = {};
           input x: fixed{shape} from client;
           weight g: [n] from client; weight b: [n] from client;
           output y = {call} to client; }}",
        samples::NORM_WIDTH
    )
}

/// The configuration applying `r` and nothing else.
fn only(r: &Rewrite) -> ApproxConfig {
    let kind = ApproxKind::ALL
        .into_iter()
        .find(|k| approximate::ops_of(*k).contains(&r.op))
        .expect("every op has a kind");
    let mut c = ApproxConfig::default();
    c.set(kind, r.profile);
    c
}

/// The exact program (after `lower`) and the approximated one (after `approximate` and
/// `expand`), both semantic-stage.
fn programs(r: &Rewrite) -> (Program, Program) {
    let src = source(r.op);
    let ast = parse_model(&src).unwrap_or_else(|d| panic!("{}", d.message));
    let exact = lower(&ast).unwrap_or_else(|d| panic!("{}", d.message));
    let mut approx = exact.clone();
    approx.options.approx = only(r);
    approximate::run(&mut approx);
    expand::run(&mut approx);
    verify(&approx).unwrap_or_else(|e| panic!("{}: {e}", r.name));
    (exact, approx)
}

/// The whole pipeline with `r` applied (for the fixed-point backend).
fn compiled(r: &Rewrite) -> Program {
    let opts = comet_compiler::Options {
        approx: only(r),
        ..Default::default()
    };
    comet_compiler::compile(&source(r.op), "t.model", &opts)
        .unwrap_or_else(|e| panic!("{e}"))
        .program
}

/// The norm parameters: `|g| ≤ 1` (the declared errors assume it).
fn weights() -> Weights {
    let n = samples::NORM_WIDTH;
    HashMap::from([
        (
            "g".to_string(),
            ArrayD::from_shape_fn(IxDyn(&[n]), |i| 1.0 - 0.5 * (i[0] as f64 / n as f64)),
        ),
        (
            "b".to_string(),
            ArrayD::from_shape_fn(IxDyn(&[n]), |i| 0.1 * (i[0] as f64).cos()),
        ),
    ])
}

#[derive(Clone, Copy)]
enum Backend {
    F64,
    Fixed,
}

fn eval(p: &Program, x: &ArrayD<f64>, w: &Weights, backend: Backend) -> ArrayD<f64> {
    let inputs = HashMap::from([("x".to_string(), x.clone())]);
    let env = DimEnv {
        seq: x.shape()[0] as u64,
        past: 0,
    };
    let mut out = match backend {
        Backend::F64 => plain::eval(p, &inputs, w, env, &mut plain::Cache::new())
            .unwrap_or_else(|e| panic!("{e}")),
        Backend::Fixed => fixed::eval(p, &inputs, w, env, &mut fixed::Cache::new())
            .unwrap_or_else(|e| panic!("{e}")),
    };
    out.remove("y").expect("output y")
}

/// Largest `|a − b|` (NaN counts as infinite).
fn max_abs(a: impl IntoIterator<Item = f64>, b: impl IntoIterator<Item = f64>) -> f64 {
    a.into_iter()
        .zip(b)
        .map(|(a, b)| match (a - b).abs() {
            d if d.is_nan() => f64::INFINITY,
            d => d,
        })
        .fold(0.0, f64::max)
}

/// The errors of `r` on its samples: against the exact function (f64 and fixed point)
/// and against its own formula (f64).
struct Errors {
    exact_f64: f64,
    exact_fixed: f64,
    formula: f64,
}

fn elementwise(r: &Rewrite, f: fn(f64) -> f64) -> Errors {
    let (exact, approx) = programs(r);
    let fixed_plan = compiled(r);
    let xs = samples::points(r);
    let x = ArrayD::from_shape_vec(IxDyn(&[xs.len()]), xs.clone()).expect("1-d");
    let w = weights();
    let e = eval(&exact, &x, &w, Backend::F64);
    let y = eval(&approx, &x, &w, Backend::F64);
    let z = eval(&fixed_plan, &x, &w, Backend::Fixed);
    Errors {
        exact_f64: max_abs(y.iter().copied(), e.iter().copied()),
        exact_fixed: max_abs(z.iter().copied(), e.iter().copied()),
        formula: max_abs(y.iter().copied(), xs.iter().map(|x| f(*x))),
    }
}

/// Softmax rows one call each (`seq` = the row's length).
fn softmax_rows(r: &Rewrite, f: fn(&[f64]) -> Vec<f64>) -> Errors {
    let (exact, approx) = programs(r);
    let fixed_plan = compiled(r);
    let w = weights();
    let mut errs = Errors {
        exact_f64: 0.0,
        exact_fixed: 0.0,
        formula: 0.0,
    };
    for row in samples::rows(r) {
        let x = ArrayD::from_shape_vec(IxDyn(&[row.len()]), row.clone()).expect("1-d");
        let e = eval(&exact, &x, &w, Backend::F64);
        let y = eval(&approx, &x, &w, Backend::F64);
        let z = eval(&fixed_plan, &x, &w, Backend::Fixed);
        errs.exact_f64 = errs
            .exact_f64
            .max(max_abs(y.iter().copied(), e.iter().copied()));
        errs.exact_fixed = errs
            .exact_fixed
            .max(max_abs(z.iter().copied(), e.iter().copied()));
        errs.formula = errs.formula.max(max_abs(y.iter().copied(), f(&row)));
    }
    errs
}

/// Norm rows in one `[rows, 64]` call; the formula is taken with `g = 1`, `b = 0`, so it
/// is compared after applying `g` and `b`.
fn norm_rows(r: &Rewrite, f: fn(&[f64]) -> Vec<f64>) -> Errors {
    let (exact, approx) = programs(r);
    let fixed_plan = compiled(r);
    let rows = samples::rows(r);
    let n = samples::NORM_WIDTH;
    let flat: Vec<f64> = rows.concat();
    let x = ArrayD::from_shape_vec(IxDyn(&[rows.len(), n]), flat).expect("2-d");
    let w = weights();
    let e = eval(&exact, &x, &w, Backend::F64);
    let y = eval(&approx, &x, &w, Backend::F64);
    let z = eval(&fixed_plan, &x, &w, Backend::Fixed);
    let bias = r.op == "layer_norm";
    let want = rows.iter().flat_map(|row| {
        let (g, b) = (&w["g"], &w["b"]);
        f(row)
            .into_iter()
            .enumerate()
            .map(move |(j, v)| v * g[j] + if bias { b[j] } else { 0.0 })
    });
    Errors {
        exact_f64: max_abs(y.iter().copied(), e.iter().copied()),
        exact_fixed: max_abs(z.iter().copied(), e.iter().copied()),
        formula: max_abs(y.iter().copied(), want),
    }
}

/// How closely the compiled form must follow its formula: exactly but for f64 rounding,
/// or up to the reciprocal's relative error (3.7e-8 on [1, 660], worse below 1: `relun1`
/// rows whose ReLU sum is near ε, `2Quad` rows near −5) where it divides by a row sum.
fn formula_tolerance(r: &Rewrite) -> f64 {
    match r.op {
        "softmax" => 1e-6,
        _ => 1e-9,
    }
}

#[test]
fn compiled_rewrites_are_within_their_declared_errors() {
    for r in REWRITES {
        let errs = match (r.formula, r.op) {
            (Formula::Elementwise(f), _) => elementwise(r, f),
            (Formula::Row(f), "softmax") => softmax_rows(r, f),
            (Formula::Row(f), _) => norm_rows(r, f),
        };
        eprintln!(
            "{}: vs exact {:.4e} (f64), {:.4e} (fixed point); vs formula {:.1e}; declared {:e}",
            r.name, errs.exact_f64, errs.exact_fixed, errs.formula, r.max_abs_error
        );
        assert!(
            errs.formula <= formula_tolerance(r),
            "{}: {:e}",
            r.name,
            errs.formula
        );
        if r.limited_by_fixed_point {
            assert!(
                errs.exact_fixed >= 0.9 * r.max_abs_error,
                "{}: the fixed-point error {:e} is far below the declared {:e}: tighten it",
                r.name,
                errs.exact_fixed,
                r.max_abs_error
            );
        }
        for (what, err) in [("f64", errs.exact_f64), ("fixed point", errs.exact_fixed)] {
            assert!(
                err <= r.max_abs_error,
                "{} ({what}): {err:e} exceeds the declared {:e}",
                r.name,
                r.max_abs_error
            );
        }
    }
}

/// Softmax forms after a real `causal_mask` (the interpreters hide keys with −1e9 in f64
/// and −2^20 in fixed point): every hidden key gets exactly 0 and every row follows the
/// form's formula over its visible keys. For `2Quad` this is the mask-aware form: a
/// hidden key's `(s + 5)²` would otherwise be about 1e18.
#[test]
fn softmax_forms_give_hidden_keys_zero() {
    let src = "model t { dim seq, past; input x: fixed[seq, seq] from client;
               output y = softmax(causal_mask(x)) to client; }";
    let n = 12;
    let x = ArrayD::from_shape_fn(IxDyn(&[n, n]), |ix| {
        let (i, j) = (ix[0] as f64, ix[1] as f64);
        6.0 * (1.3 * j + 0.7 * i).sin() + 0.1 * i
    });
    for r in REWRITES.iter().filter(|r| r.op == "softmax") {
        let Formula::Row(f) = r.formula else {
            unreachable!()
        };
        let opts = comet_compiler::Options {
            approx: only(r),
            ..Default::default()
        };
        let p = comet_compiler::compile(src, "t.model", &opts)
            .unwrap_or_else(|e| panic!("{e}"))
            .program;
        for backend in [Backend::F64, Backend::Fixed] {
            let y = eval(&p, &x, &Weights::new(), backend);
            for i in 0..n {
                let visible: Vec<f64> = (0..=i).map(|j| x[[i, j]]).collect();
                let want = f(&visible);
                for j in 0..n {
                    let got = y[[i, j]];
                    match j <= i {
                        true => assert!(
                            (got - want[j]).abs() < 2e-3,
                            "{}: row {i} key {j}: {got} vs {}",
                            r.name,
                            want[j]
                        ),
                        false => assert_eq!(got, 0.0, "{}: hidden key {j} of row {i}", r.name),
                    }
                }
            }
        }
    }
}
