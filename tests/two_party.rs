//! The two-party interpreter against the fixed-point backend on the same compiled plans:
//! outputs agree within a few ulps (SecureML truncation adds ±1 ulp per `trunc` on
//! shares), and the measured online bits, rounds and dealer bits equal the plan's
//! estimate evaluated at the call's sizes.

mod common;

use comet_ir::{Comparison, DimEnv, Program};
use comet_runtime::{fixed, interp};
use common::estimate;
use common::reference::{Caller, env as call_env, numbers, reference, run_case, tokens};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

fn compile_with(source: &str, comparison: Comparison) -> Program {
    compile_opts(
        source,
        comet_compiler::Options {
            comparison,
            ..Default::default()
        },
    )
}

fn compile_opts(source: &str, opts: comet_compiler::Options) -> Program {
    comet_compiler::compile(source, "t.model", &opts)
        .unwrap_or_else(|e| panic!("{e}"))
        .program
}

/// `y = call` with a client input `x: [seq, 16]`, server weights `w, v: [16, 8]`,
/// `u: [8, 8]` and `g: [8]`, compiled with `comparison`.
fn model(call: &str, comparison: Comparison) -> Program {
    compile_with(
        &format!(
            "model t {{ dim seq, past; dim n = 16, m = 8;
           input x: fixed[seq, n] from client;
           weight w: [n, m]; weight v: [n, m]; weight u: [m, m]; weight g: [m]; weight o: [n, 5];
           output y = {call} to client; }}"
        ),
        comparison,
    )
}

fn tensor(shape: &[usize], f: impl Fn(&[usize]) -> f64) -> ArrayD<f64> {
    ArrayD::from_shape_fn(IxDyn(shape), |ix| {
        let ix: Vec<usize> = (0..shape.len()).map(|k| ix[k]).collect();
        f(&ix)
    })
}

fn inputs(seq: usize) -> HashMap<String, ArrayD<f64>> {
    let x = tensor(&[seq, 16], |i| {
        (0.5 + 0.3 * i[0] as f64) * (0.9 * i[1] as f64 + 0.5 * i[0] as f64).sin() - 0.2
    });
    HashMap::from([("x".to_string(), x)])
}

fn weights() -> HashMap<String, ArrayD<f64>> {
    let m = |a: f64, b: f64| {
        tensor(&[16, 8], move |i| {
            0.3 * (a * i[0] as f64 - b * i[1] as f64).cos()
        })
    };
    HashMap::from([
        ("w".to_string(), m(0.7, 1.3)),
        ("v".to_string(), m(0.4, 0.9)),
        (
            "u".to_string(),
            tensor(&[8, 8], |i| {
                0.25 * (0.3 * i[0] as f64 + 1.1 * i[1] as f64).sin()
            }),
        ),
        (
            "o".to_string(),
            tensor(&[16, 5], |i| {
                0.3 * (0.5 * i[0] as f64 + 0.8 * i[1] as f64).sin()
            }),
        ),
        ("g".to_string(), tensor(&[8], |i| 0.5 + 0.05 * i[0] as f64)),
    ])
}

const ULP: f64 = 1.0 / 65536.0;

/// Runs `call` in 2PC and in fixed point; checks the outputs within `ulps` and the costs.
fn check(call: &str, ulps: f64) {
    check_with(call, ulps, Comparison::Fss);
}

/// [`check`] with GMW comparisons: XOR-shared bits, B2A with daBits, selects on XOR bits.
fn check_gmw(call: &str, ulps: f64) {
    check_with(call, ulps, Comparison::Gmw);
}

fn check_with(call: &str, ulps: f64, comparison: Comparison) {
    let p = model(call, comparison);
    let seq = 3;
    let env = DimEnv {
        seq: seq as u64,
        past: 0,
    };
    let (x, w) = (inputs(seq), weights());
    let expected =
        fixed::eval(&p, &x, &w, env, &mut fixed::Cache::new()).unwrap_or_else(|e| panic!("{e}"));
    let (got, measured) =
        interp::run_in_process(&p, &x, &w, env, 7).unwrap_or_else(|e| panic!("{call}: {e}"));
    let (y, e) = (&got["y"], &expected["y"]);
    assert_eq!(y.shape(), e.shape());
    let err = y
        .iter()
        .zip(e)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let (on, rounds, off) = estimate(&p, env);
    eprintln!(
        "{call} ({comparison:?}): max |2pc - fixed| = {:.1} ulp; online bits {} (est {on}), \
         rounds {} (est {rounds}), offline bits {} (est {off}), setup bits {}",
        err / ULP,
        measured.online_bits,
        measured.rounds,
        measured.offline_bits,
        measured.setup_bits
    );
    assert!(err <= ulps * ULP, "{call}: {:.1} ulp > {ulps}", err / ULP);
    assert_eq!(measured.online_bits, on, "{call}: online bits");
    assert_eq!(measured.rounds, rounds, "{call}: rounds");
    assert_eq!(measured.offline_bits, off, "{call}: offline bits");
}

#[test]
fn matmul() {
    check("matmul(x, w)", 2.0);
}

#[test]
fn relu_of_matmul() {
    check("relu(matmul(x, w))", 2.0);
}

#[test]
fn beaver_mul_of_two_matmuls() {
    check("matmul(x, w) * matmul(x, v)", 4.0);
}

#[test]
fn two_layers() {
    check("matmul(relu(matmul(x, w)), u)", 8.0);
}

#[test]
fn rms_norm_of_matmul() {
    check("rms_norm(matmul(x, w), g)", 64.0);
}

/// silu's exp squares `1 + x/256` eight times: the ±1 ulp of a share truncation is
/// amplified up to 2^8 (as in the fixed-point backend against f64).
#[test]
fn silu_of_matmul() {
    check("silu(matmul(x, w))", 256.0);
}

/// `row_max` over 8 columns (3 levels, an even tree) and the exp/reciprocal recipe.
#[test]
fn softmax_of_matmul() {
    check("softmax(matmul(x, w))", 256.0);
}

/// Softmax after a Beaver product (3 levels again, other operands).
#[test]
fn softmax_of_shared_sum() {
    check("softmax(matmul(x, w) * matmul(x, v))", 256.0);
}

/// `row_max` over 5 columns: odd elements carried (5 → 3 → 2 → 1).
#[test]
fn softmax_odd_width() {
    check("softmax(matmul(x, o))", 256.0);
}

#[test]
fn gmw_relu_of_matmul() {
    check_gmw("relu(matmul(x, w))", 2.0);
}

#[test]
fn gmw_two_layers() {
    check_gmw("matmul(relu(matmul(x, w)), u)", 8.0);
}

/// rsqrt's range reduction: 14 comparisons, then 14 B2A conversions in one round.
#[test]
fn gmw_rms_norm_of_matmul() {
    check_gmw("rms_norm(matmul(x, w), g)", 64.0);
}

#[test]
fn gmw_silu_of_matmul() {
    check_gmw("silu(matmul(x, w))", 256.0);
}

/// `row_max` over 8 columns with GMW comparisons: 3 levels of 7 + 1 rounds.
#[test]
fn gmw_softmax_of_matmul() {
    check_gmw("softmax(matmul(x, w))", 256.0);
}

/// `row_max` over 5 columns (5 → 3 → 2 → 1) with GMW comparisons.
#[test]
fn gmw_softmax_odd_width() {
    check_gmw("softmax(matmul(x, o))", 256.0);
}

/// The shipped real model in two-party computation: glassllm-en's `exact` plan, prefill of
/// the first reference prompt then two decode steps through the shared KV cache. Each
/// call's greedy token equals the reference's, the logits stay close to the fixed-point
/// plaintext backend's (same plan, no secrets), and measured online bits, rounds and
/// dealer bits equal the plan's estimate for every call.
#[test]
fn glassllm_two_party_prefill_and_decode() {
    glassllm_prefill_and_decode(options(Comparison::Fss, "exact"));
}

/// As [`glassllm_two_party_prefill_and_decode`], with the `lut` profile: the gaps of SiLU
/// and the softmax's exponential read from FSS lookup tables, the sign and range ends by
/// one several-threshold comparison.
#[test]
fn glassllm_two_party_with_lookup_tables() {
    glassllm_prefill_and_decode(options(Comparison::Fss, "lut"));
}

fn options(comparison: Comparison, approx: &str) -> comet_compiler::Options {
    comet_compiler::Options {
        comparison,
        approx: approx.parse().unwrap(),
        ..Default::default()
    }
}

/// As [`glassllm_two_party_prefill_and_decode`], with the plan compiled with
/// `--comparison gmw`: every comparison a GMW carry circuit on XOR shares (the rsqrt range
/// reductions through B2A, the softmax maxima through selects on XOR bits).
#[test]
fn glassllm_two_party_with_gmw_comparisons() {
    glassllm_prefill_and_decode(options(Comparison::Gmw, "exact"));
}

fn glassllm_prefill_and_decode(opts: comet_compiler::Options) {
    let comparison = opts.comparison;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("examples/glassllm.model")).unwrap();
    let program = compile_opts(&source, opts);
    let weights = comet_runtime::weights::load(
        &root.join("../shared/models/glassllm-en/model.safetensors"),
        &program.info.weights,
    )
    .unwrap();
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("../shared/reference/glassllm-en-greedy.json")).unwrap(),
    )
    .unwrap();
    let case = &reference["cases"][0];
    let ids = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (prompt, greedy) = (ids(&case["prompt_ids"]), ids(&case["greedy_ids"]));
    let mut session = interp::InProcess::new(&program, &weights, 7);
    let mut plain_cache = fixed::Cache::new();
    let mut tokens = prompt.clone();
    let mut past = 0u64;
    for (step, want) in greedy.iter().take(3).enumerate() {
        let fed: Vec<f64> = if step == 0 {
            prompt.clone()
        } else {
            vec![*tokens.last().unwrap()]
        };
        let env = DimEnv {
            seq: fed.len() as u64,
            past,
        };
        let inputs = HashMap::from([(
            "tokens".to_string(),
            ArrayD::from_shape_vec(IxDyn(&[fed.len()]), fed.clone()).unwrap(),
        )]);
        let (out, measured) = session.call(&inputs, env).unwrap();
        assert_eq!(
            measured.setup_bits > 0,
            step == 0,
            "fixed operands are opened once per session, in the first call"
        );
        let expected = fixed::eval(&program, &inputs, &weights, env, &mut plain_cache).unwrap();
        let logits = &out["logits"];
        let last: Vec<f64> = logits
            .index_axis(ndarray::Axis(0), fed.len() - 1)
            .iter()
            .copied()
            .collect();
        let plain_last: Vec<f64> = expected["logits"]
            .index_axis(ndarray::Axis(0), fed.len() - 1)
            .iter()
            .copied()
            .collect();
        let diff = last
            .iter()
            .zip(&plain_last)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let token = last
            .iter()
            .enumerate()
            .fold(
                (0, f64::MIN),
                |m, (i, v)| if *v > m.1 { (i, *v) } else { m },
            )
            .0 as f64;
        eprintln!(
            "{comparison:?} call {step} (seq {}, past {past}): token {token} (reference {want}), |2PC − fixed| = {diff:.3e}, {measured:?}",
            fed.len()
        );
        assert_eq!(token, *want, "greedy token of call {step}");
        assert!(
            diff < 0.05,
            "2PC logits drift {diff} from the fixed-point backend"
        );
        let (online, rounds, offline) = estimate(&program, env);
        assert_eq!(
            (measured.online_bits, measured.rounds, measured.offline_bits),
            (online, rounds, offline),
            "call {step}"
        );
        tokens.push(token);
        past += fed.len() as u64;
    }
}

/// The shipped model in two-party computation, as a backend of the reference harness: a
/// new session (dealer, caches, setup) per sequence.
struct TwoParty<'a> {
    program: &'a Program,
    weights: &'a HashMap<String, ArrayD<f64>>,
    session: interp::InProcess<'a>,
}

impl Caller for TwoParty<'_> {
    fn reset(&mut self) {
        self.session = interp::InProcess::new(self.program, self.weights, 11);
    }

    fn call(&mut self, ids: &[f64], past: usize) -> ArrayD<f64> {
        let (mut out, _) = (self.session.call(&tokens(ids), call_env(ids.len(), past)))
            .unwrap_or_else(|e| panic!("{e}"));
        out.remove("logits").expect("the client receives `logits`")
    }
}

/// Every reference case, 16 greedy tokens each, computed on secret shares: the tokens are
/// the reference's and the prefill's last logits are within the fixed-point backend's
/// tolerance of the reference (`tests/fixed.rs`).
#[test]
fn glassllm_two_party_reproduces_every_reference_case() {
    every_reference_case(options(Comparison::Fss, "exact"));
}

/// As [`glassllm_two_party_reproduces_every_reference_case`] with the `lut` profile: the
/// 48 reference tokens on secret shares, the logits within the same tolerance.
#[test]
fn glassllm_two_party_lut_reproduces_every_reference_case() {
    every_reference_case(options(Comparison::Fss, "lut"));
}

fn every_reference_case(opts: comet_compiler::Options) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("examples/glassllm.model")).unwrap();
    let program = compile_opts(&source, opts);
    let weights = common::reference::load_weights(&program);
    let mut model = TwoParty {
        program: &program,
        weights: &weights,
        session: interp::InProcess::new(&program, &weights, 11),
    };
    for case in reference()["cases"].as_array().unwrap() {
        let (err, got) = run_case(&mut model, case);
        eprintln!(
            "2PC: {:?}: max |logits − reference| = {err:.3e}, {} greedy tokens",
            case["prompt"].as_str().unwrap_or("?"),
            got.len()
        );
        assert_eq!(got, numbers(&case["greedy_ids"]), "{}", case["prompt"]);
        assert!(err < 0.08, "max abs logits error {err}");
    }
}
