//! Stochastic truncations on a narrow width, end to end: a small model is compiled with
//! every truncation faithful (the stochastic gate), every truncation is given the input
//! width a range analysis would prove (set here by hand, derived below), the plan is
//! costed again and run by two parties, in process and over TCP (material files and the
//! dealer service). Per call, the measured online bits, rounds and dealer bits equal the
//! plan's estimate, the online bits are below the 64-bit plan's by what the packing saves
//! (derived from the shapes), and the outputs agree with the fixed-point reference.
//!
//! The widths. Inputs lie in [−0.5, 0.5), weights in [−0.1, 0.1), so `x·w1` is below
//! 8 · 0.05 = 0.4 and `relu(.)·w2` below 12 · 0.04 = 0.48 in magnitude: the two products'
//! truncation inputs (32 fractional bits) are below 0.5 · 2^32 = 2^31, width 33. The
//! softmax's truncations multiply values in [0, 1] (the exponential's squarings, the
//! normalised probabilities) or the row sum (≤ 8, eight terms ≤ 1) by the reciprocal's
//! iterate (≤ 1) and its correction (≤ 2): below 16 · 2^32 = 2^36, width 38. Neither width
//! is a multiple of 8, so the softmax's `[seq, 1]` openings end in padding. The test also
//! checks, on the fixed-point reference's trace, that every truncation's input of these
//! calls lies within its width (the precondition, not the result).

mod common;

use comet_compiler::passes::faithful_trunc::default_policy;
use comet_ir::{DimEnv, FaithfulMode, Op, Program, TruncationPolicy};
use comet_runtime::{fixed, interp};
use common::estimate;
use common::tcp::{Source, tcp_session};
use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use std::collections::HashMap;

const SOURCE: &str = "
model tiny {
  format ring = 64, frac = 16;
  dim d = 8, ff = 12;
  dim seq;
  input x: fixed[seq, d] from client;
  weight w1: [d, ff] = \"w1\";
  weight w2: [ff, d] = \"w2\";
  let h = relu(matmul(x, w1));
  let p = softmax(matmul(h, w2));
  output p to client;
}
";

fn compile() -> Program {
    let opts = comet_compiler::Options {
        narrow_comparisons: false,
        truncation: Some(TruncationPolicy {
            mode: FaithfulMode::Always,
            ..default_policy()
        }),
        ..Default::default()
    };
    comet_compiler::compile(SOURCE, "tiny.model", &opts)
        .unwrap_or_else(|e| panic!("{e}"))
        .program
}

fn weights(seed: u64) -> HashMap<String, ArrayD<f64>> {
    common::uniform_weights(seed, &[("w1", &[8, 12]), ("w2", &[12, 8])], 0.1)
}

fn inputs(_: &Program, env: DimEnv, seed: u64) -> HashMap<String, ArrayD<f64>> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let v = ArrayD::from_shape_simple_fn(IxDyn(&[env.seq as usize, 8]), || {
        common::uniform(&mut rng, 0.5)
    });
    HashMap::from([("x".to_string(), v)])
}

/// The width of the products' truncations, and of the softmax's.
const PRODUCT_WIDTH: u8 = 33;
const SOFTMAX_WIDTH: u8 = 38;

/// The plan with every stochastic truncation at its width (the products' by origin
/// `matmul`), costed again.
fn narrowed(mut p: Program) -> Program {
    let ids: Vec<_> = p.graph.ids().collect();
    let mut set = 0;
    for id in ids {
        let n = p.graph.node_mut(id);
        if matches!(n.op, Op::StochasticTrunc { .. }) {
            let product = n.scope.origin == "matmul";
            n.cmp_width = Some(if product {
                PRODUCT_WIDTH
            } else {
                SOFTMAX_WIDTH
            });
            set += 1;
        }
    }
    assert!(set >= 10, "the model truncates stochastically ({set})");
    comet_compiler::passes::cost::run(&mut p);
    comet_ir::verify::verify(&p).expect("valid");
    p
}

/// Bits the packing saves per call: per truncation of n elements at width m, each party
/// sends ⌈n·m/8⌉ bytes instead of 8n, so both together 16·(8n − ⌈n·m/8⌉) bits fewer.
fn saved_bits(p: &Program, env: DimEnv) -> u64 {
    (p.graph.ids())
        .filter(|&id| matches!(p.graph.node(id).op, Op::StochasticTrunc { .. }))
        .map(|id| {
            let node = p.graph.node(id);
            let n: u64 = node.ty.shape.iter().map(|d| d.eval(env)).product();
            let m = u64::from(node.cmp_width.expect("a width"));
            16 * (8 * n - (n * m).div_ceil(8))
        })
        .sum()
}

/// Every truncation's input within its width on the reference's trace of this call.
fn inputs_fit(p: &Program, w: &HashMap<String, ArrayD<f64>>, env: DimEnv, seed: u64) {
    let e =
        fixed::eval_with_trace(p, &inputs(p, env, seed), w, env, &mut fixed::Cache::new()).unwrap();
    for id in p.graph.ids() {
        let node = p.graph.node(id);
        if let Some(m) = node
            .cmp_width
            .filter(|_| matches!(node.op, Op::StochasticTrunc { .. }))
        {
            let x = &e.values[&p.graph.operands(id)[0]];
            let bound = 1i64 << (m - 2);
            assert!(
                x.iter().all(|v| (-bound..bound).contains(&(*v as i64))),
                "{id}'s input fits {m} bits"
            );
        }
    }
}

/// The largest difference between two calls' outputs.
fn drift(got: &HashMap<String, ArrayD<f64>>, want: &HashMap<String, ArrayD<f64>>) -> f64 {
    assert_eq!(got.len(), want.len(), "one output");
    (want.iter())
        .flat_map(|(name, e)| got[name].iter().zip(e).map(|(a, b)| (a - b).abs()))
        .fold(0.0f64, f64::max)
}

const CALLS: [DimEnv; 3] = [
    DimEnv { seq: 3, past: 0 },
    DimEnv { seq: 4, past: 0 },
    DimEnv { seq: 1, past: 0 },
];

#[test]
fn narrow_truncations_cost_what_they_measure_in_process() {
    let full = compile();
    let narrow = narrowed(full.clone());
    let w = weights(1);
    let mut s64 = interp::InProcess::new(&full, &w, 5);
    let mut narrow_run = interp::InProcess::new(&narrow, &w, 5);
    let mut cache = fixed::Cache::new();
    for (k, env) in CALLS.into_iter().enumerate() {
        let seed = 10 + k as u64;
        inputs_fit(&narrow, &w, env, seed);
        let x = inputs(&narrow, env, seed);
        let (want64, m64) = s64.call(&x, env).unwrap();
        let (got, m) = narrow_run.call(&x, env).unwrap();
        let measured = |m: &interp::Measured| (m.online_bits, m.rounds, m.offline_bits);
        assert_eq!(measured(&m), estimate(&narrow, env), "call {k} narrow");
        assert_eq!(measured(&m64), estimate(&full, env), "call {k} at 64 bits");
        assert_eq!(
            m64.online_bits - m.online_bits,
            saved_bits(&narrow, env),
            "call {k}: the packing's saving"
        );
        assert_eq!((m.rounds, m.offline_bits), (m64.rounds, m64.offline_bits));
        eprintln!(
            "call {k} (seq {}): online {} / {} bits narrow / 64-bit",
            env.seq, m.online_bits, m64.online_bits
        );
        let reference = fixed::eval(&narrow, &x, &w, env, &mut cache).unwrap();
        assert!(
            drift(&got, &reference) < 1e-3,
            "call {k}: against the reference"
        );
        assert!(drift(&got, &want64) < 1e-3, "call {k}: against 64 bits");
    }
}

fn check_tcp(source: Source) {
    let p = narrowed(compile());
    let w = weights(1);
    let [server, client] = tcp_session(&p, &w, &CALLS, source, inputs);
    let mut cache = fixed::Cache::new();
    for (k, &env) in CALLS.iter().enumerate() {
        let want = fixed::eval(&p, &inputs(&p, env, 10 + k as u64), &w, env, &mut cache).unwrap();
        let ((_, m0), (got, m1)) = (&server[k], &client[k]);
        assert!(drift(got, &want) < 1e-3, "{source:?} call {k}");
        let what = format!("{source:?} call {k}");
        common::assert_tcp_call_measures_estimate(&p, env, [m0, m1], &what);
    }
}

#[test]
fn narrow_truncations_over_tcp_with_material_files() {
    check_tcp(Source::Files);
}

#[test]
fn narrow_truncations_over_tcp_with_the_dealer_service() {
    check_tcp(Source::Dealer);
}

/// `comet inspect` of the narrowed plan: the `stochastic_trunc` row's online bits are the
/// packed openings, ⌈n·m/8⌉ bytes per truncation and party, and the failure report's
/// faithful-truncation line states them.
#[test]
fn inspect_states_the_packed_openings() {
    let p = narrowed(compile());
    let path = common::temp_path("narrow-trunc.plan");
    std::fs::write(&path, comet_ir::plan::write_plan_json(&p).unwrap()).unwrap();
    let out = common::comet(&["inspect", path.to_str().unwrap(), "--prompt", "3", "--json"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let r: serde_json::Value = serde_json::from_str(&common::stdout(&out)).unwrap();
    let rows = r["prefill"]["by_protocol"].as_array().unwrap();
    let row = (rows.iter())
        .find(|row| row["name"] == "stochastic_trunc")
        .expect("a stochastic_trunc row");
    let env = DimEnv { seq: 3, past: 0 };
    let elements: u64 = (p.graph.ids())
        .filter(|&id| matches!(p.graph.node(id).op, Op::StochasticTrunc { .. }))
        .map(|id| {
            p.graph
                .node(id)
                .ty
                .shape
                .iter()
                .map(|d| d.eval(env))
                .product::<u64>()
        })
        .sum();
    // at 64 bits 128 bits per element; the packing saves what saved_bits derives
    let want = 128 * elements - saved_bits(&p, env);
    assert_eq!(row["online_bits"].as_u64(), Some(want));
    assert!(want < 128 * elements);
    assert_eq!(
        row["offline_bits"].as_u64(),
        Some(128 * elements),
        "16 bytes each"
    );
    let t = &r["prefill"]["truncation"];
    assert_eq!(t["faithful_elements"].as_u64(), Some(elements));
    let text = common::stdout(&common::comet(&[
        "inspect",
        path.to_str().unwrap(),
        "--prompt",
        "3",
    ]));
    let line = (text.lines())
        .find(|l| l.contains("faithful truncations (stochastic gate)"))
        .unwrap_or_else(|| panic!("{text}"));
    let bytes = want / 8;
    // inspect's units: whole bytes below 1,000, else KiB to 3 significant digits
    let shown = if bytes < 1000 {
        format!("online {bytes} B")
    } else {
        let kib = bytes as f64 / 1024.0;
        let decimals = 2 - kib.log10().floor() as usize;
        format!("online {kib:.decimals$} KiB")
    };
    assert!(line.contains(&shown), "{line} states {shown}");
}
