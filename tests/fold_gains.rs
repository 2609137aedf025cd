//! Pass `fold-norm-gains`: a `lut` LayerNorm read only by a product with a weight matrix
//! leaves its gain and bias to that product (`x̂·(diag(g)·W) + β·W`, computed by the
//! weights' owner once, at setup). The plan has no product with the gain any more, its
//! projection is a fixed-operand product with the folded matrix, and the plan, run by the
//! fixed-point backend and by two parties, computes `layer_norm(x)·W + c` within the
//! recipes' errors, with measured = estimated. A norm read by anything else (a residual)
//! keeps its gain.

mod common;

use comet_compiler::passes::faithful_trunc::default_policy;
use comet_compiler::{Options, compile};
use comet_ir::protocol::{Protocol, fixed_values, protocol_of};
use comet_ir::{ApproxConfig, ApproxProfile, DimEnv, Op, Program};
use comet_runtime::interp;
use ndarray::{Array2, ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use std::collections::HashMap;

const D: usize = 16;
const E: usize = 6;

fn plan(residual: bool) -> Program {
    let out = match residual {
        false => "matmul(h, w) + c",
        true => "matmul(h, w) + c + slice(h, 0, 6)",
    };
    let src = format!(
        "model t {{ dim seq, past;
           input x: fixed[seq, {D}] from client; input s: fixed[seq, {D}] from server;
           weight g: [{D}]; weight b: [{D}]; weight w: [{D}, {E}]; weight c: [{E}];
           let h = layer_norm(x + s, g, b, eps = 1e-5);
           output y = {out} to client; }}"
    );
    let opts = Options {
        approx: ApproxConfig::uniform(ApproxProfile::Lut),
        truncation: Some(default_policy()),
        ..Default::default()
    };
    compile(&src, "t.model", &opts).unwrap().program
}

fn weights(seed: u64) -> HashMap<String, ArrayD<f64>> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut draw = |shape: &[usize], centre: f64, scale: f64| {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || centre + common::uniform(&mut rng, scale))
    };
    HashMap::from([
        ("g".to_string(), draw(&[D], 1.0, 0.5)),
        ("b".to_string(), draw(&[D], 0.0, 0.5)),
        ("w".to_string(), draw(&[D, E], 0.0, 0.5)),
        ("c".to_string(), draw(&[E], 0.0, 0.5)),
    ])
}

fn inputs(seq: usize, seed: u64) -> HashMap<String, ArrayD<f64>> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut draw =
        || ArrayD::from_shape_simple_fn(IxDyn(&[seq, D]), || common::uniform(&mut rng, 1.5));
    HashMap::from([("x".to_string(), draw()), ("s".to_string(), draw())])
}

/// `layer_norm(x, g, b)·w + c` in f64.
fn reference(x: &ArrayD<f64>, w: &HashMap<String, ArrayD<f64>>) -> Array2<f64> {
    let seq = x.shape()[0];
    let mut h = Array2::zeros((seq, D));
    for i in 0..seq {
        let row: Vec<f64> = (0..D).map(|j| x[[i, j]]).collect();
        let mean = row.iter().sum::<f64>() / D as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / D as f64;
        for j in 0..D {
            h[[i, j]] = (row[j] - mean) / (var + 1e-5).sqrt() * w["g"][[j]] + w["b"][[j]];
        }
    }
    let wm = w["w"].view().into_dimensionality::<ndarray::Ix2>().unwrap();
    let c = w["c"].view().into_dimensionality::<ndarray::Ix1>().unwrap();
    let y: Array2<f64> = h.dot(&wm);
    y + c
}

/// Products in the call (not the setup) that read weight `name`, directly or through movement.
fn call_products_reading(p: &Program, name: &str) -> usize {
    let fixed = fixed_values(p);
    (p.graph.ids())
        .filter(|&id| protocol_of(p, id, &fixed).communicates())
        .filter(|&id| {
            p.graph.operands(id).iter().any(|&x| {
                let mut x = x;
                while matches!(p.graph.node(x).op, Op::Share { .. } | Op::Transpose) {
                    x = p.graph.operands(x)[0];
                }
                matches!(&p.graph.node(x).op, Op::Weight { name: n } if n == name)
            })
        })
        .count()
}

#[test]
fn a_folded_gain_leaves_the_norm_and_keeps_the_result() {
    let p = plan(false);
    let fixed = fixed_values(&p);
    assert_eq!(call_products_reading(&p, "g"), 0, "the gain is folded");
    let projections: Vec<Protocol> = (p.graph.ids())
        .filter(|&id| matches!(p.graph.node(id).op, Op::MatMul))
        .map(|id| protocol_of(&p, id, &fixed))
        .collect();
    assert_eq!(projections, [Protocol::FixedMatMul]);
    assert_eq!(
        call_products_reading(&plan(true), "g"),
        1,
        "a residual keeps it"
    );
    let w = weights(5);
    let mut session = interp::InProcess::new(&p, &w, 3);
    let seq = 5;
    let env = DimEnv { seq, past: 0 };
    for seed in 1..4 {
        let x = inputs(seq as usize, seed);
        let want = reference(&(&x["x"] + &x["s"]), &w).into_dyn();
        let worst = common::worst_errors(&p, &mut session, &x, &w, env, want.view());
        // the norm's declared error (6e-5 per entry) through 16 weights of up to 1/2,
        // the folded weights' rounding and the truncations
        assert!(worst.iter().all(|e| *e < 2e-3), "seed {seed}: {worst:?}");
    }
}

/// `comet compile --fold-gains false` keeps every norm's gain: its plan sends more than the
/// default's, by the gain's product and truncation.
#[test]
fn the_cli_folds_by_default_and_not_when_asked() {
    let model = common::temp_path("fold.model");
    let src = format!(
        "model t {{ dim seq, past;
           input x: fixed[seq, {D}] from client; input s: fixed[seq, {D}] from server;
           weight g: [{D}]; weight b: [{D}]; weight w: [{D}, {E}];
           output y = matmul(layer_norm(x + s, g, b, eps = 1e-5), w) to client; }}"
    );
    std::fs::write(&model, src).unwrap();
    let online = |fold: &str| {
        let plan = common::temp_path(&format!("fold-{fold}.plan"));
        let (m, p) = (model.to_str().unwrap(), plan.to_str().unwrap());
        let out = common::comet(&["compile", m, "--fold-gains", fold, "-o", p]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        let out = common::comet(&["inspect", p, "--prompt", "4", "--json"]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&common::stdout(&out)).unwrap();
        v["prefill"]["totals"]["online_bits"].as_u64().unwrap()
    };
    let (folded, kept) = (online("true"), online("false"));
    assert!(folded < kept, "{folded} bits folded, {kept} kept");
}
