//! Estimate = measurement on the architecture of every example. The full-size models are
//! too large to run in a test (GPT-2's prefill alone needs 42 GiB of dealer material), so
//! each example runs with its dimensions shrunk (same `.model` text, same blocks and ops:
//! only the `dim` values change) and seeded random weights: a prefill of 3 tokens, then two
//! decode steps through the KV cache where the model has one. For every call, the measured
//! online bits, rounds and dealer bits equal the plan's estimate exactly, and the outputs
//! agree with the fixed-point backend running the same plan without secrets. Every
//! architecture runs twice: compiled with FSS comparisons (the default) and with GMW
//! comparisons (`--comparison gmw`: XOR-shared bits, B2A, selects on XOR bits). Every
//! architecture also runs as two parties over loopback TCP, once with material files and
//! once with the dealer service streaming each call.

mod common;

use comet_ir::protocol::Protocol;
use comet_ir::{Comparison, DimEnv, Elem, Op, Program};
use comet_runtime::{fixed, interp};
use common::tcp::{Source, tcp_session};
use common::{estimate, shrink};
use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use std::collections::HashMap;

fn compile(name: &str, comparison: Comparison) -> Program {
    compile_approx(name, comparison, None)
}

/// [`compile`] with an approximation config (`--approx`), else the default.
fn compile_approx(name: &str, comparison: Comparison, approx: Option<&str>) -> Program {
    let path = format!("{}/examples/{name}.model", env!("CARGO_MANIFEST_DIR"));
    let source = shrink(&std::fs::read_to_string(&path).unwrap());
    let mut opts = comet_compiler::Options {
        comparison,
        ..Default::default()
    };
    if let Some(a) = approx {
        opts.approx = a.parse().unwrap();
    }
    comet_compiler::compile(&source, &path, &opts)
        .unwrap_or_else(|e| panic!("{name}: {e}\n{source}"))
        .program
}

fn weights(p: &Program, seed: u64) -> HashMap<String, ArrayD<f64>> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut uniform = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
    (p.info.weights.iter())
        .map(|w| {
            let shape: Vec<usize> = w.shape.iter().map(|&d| d as usize).collect();
            // norm gains near 1, everything else small
            let gain = w.name.contains("ln") || w.name.contains("norm") || w.name.contains("_g");
            let v = ArrayD::from_shape_simple_fn(IxDyn(&shape), || {
                if gain {
                    1.0 + 0.2 * uniform()
                } else {
                    0.2 * uniform()
                }
            });
            (w.name.clone(), v)
        })
        .collect()
}

fn inputs(p: &Program, env: DimEnv, seed: u64) -> HashMap<String, ArrayD<f64>> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    (p.info.inputs.iter())
        .map(|i| {
            let shape: Vec<usize> = i.shape.iter().map(|d| d.eval(env) as usize).collect();
            let v = ArrayD::from_shape_simple_fn(IxDyn(&shape), || match i.elem {
                // ids below 2: valid for token tables and BERT's two segment types
                Elem::Index => (rng.next_u64() % 2) as f64,
                _ => (rng.next_u64() % 1000) as f64 / 1000.0 - 0.5,
            });
            (i.name.clone(), v)
        })
        .collect()
}

fn check(name: &str, comparison: Comparison) {
    check_plan(name, comparison, compile(name, comparison));
}

/// Runs `p`'s calls for two parties; returns the largest |2PC − fixed point| over them.
fn check_plan(name: &str, comparison: Comparison, p: Program) -> f64 {
    let mut largest = 0.0f64;
    let w = weights(&p, 1);
    let has_cache = p
        .graph
        .ids()
        .any(|id| matches!(p.graph.node(id).op, Op::CacheRead { .. }));
    let calls: &[DimEnv] = if has_cache {
        &[
            DimEnv { seq: 3, past: 0 },
            DimEnv { seq: 1, past: 3 },
            DimEnv { seq: 1, past: 4 },
        ]
    } else {
        &[DimEnv { seq: 3, past: 0 }]
    };
    let mut session = interp::InProcess::new(&p, &w, 5);
    let mut plain = fixed::Cache::new();
    for (k, &env) in calls.iter().enumerate() {
        let x = inputs(&p, env, 10 + k as u64);
        let (got, measured) = session
            .call(&x, env)
            .unwrap_or_else(|e| panic!("{name} call {k}: {e}"));
        let expected = fixed::eval(&p, &x, &w, env, &mut plain).unwrap();
        let mut worst = 0.0f64;
        for (out, e) in &expected {
            let g = &got[out];
            assert_eq!(g.shape(), e.shape(), "{name} `{out}`");
            worst = g
                .iter()
                .zip(e)
                .map(|(a, b)| (a - b).abs())
                .fold(worst, f64::max);
        }
        let (on, rounds, off) = estimate(&p, env);
        eprintln!(
            "{name} ({comparison:?}) call {k} (seq {}, past {}): |2PC − fixed| ≤ {worst:.2e}; online {} bits, \
             {} rounds, dealer {} bits (estimate {on}, {rounds}, {off})",
            env.seq, env.past, measured.online_bits, measured.rounds, measured.offline_bits
        );
        assert_eq!(
            (measured.online_bits, measured.rounds, measured.offline_bits),
            (on, rounds, off),
            "{name} call {k}: measured = estimated"
        );
        assert!(
            worst < 0.05,
            "{name} call {k}: 2PC drifts {worst} from fixed point"
        );
        largest = largest.max(worst);
    }
    largest
}

/// Every truncation faithful (`--faithful-trunc always`) with the exact gate: the two
/// parties compute exactly what the fixed-point backend computes (every other protocol is
/// exact in the ring, and the exact gate is the backend's arithmetic shift), and measured
/// = estimated.
fn check_faithful(name: &str) {
    let path = format!("{}/examples/{name}.model", env!("CARGO_MANIFEST_DIR"));
    let source = shrink(&std::fs::read_to_string(&path).unwrap());
    let opts = comet_compiler::Options {
        truncation: Some(comet_ir::TruncationPolicy {
            mode: comet_ir::FaithfulMode::Always,
            gate: comet_ir::FaithfulGate::Exact,
            ..comet_compiler::passes::faithful_trunc::default_policy()
        }),
        ..Default::default()
    };
    let p = comet_compiler::compile(&source, &path, &opts)
        .unwrap()
        .program;
    let count = |f: fn(&Op) -> bool| {
        (p.graph.ids())
            .filter(|&id| f(&p.graph.node(id).op))
            .count()
    };
    assert!(count(|op| matches!(op, Op::FaithfulTrunc { .. })) > 0);
    let local = (p.graph.ids())
        .filter(|&id| matches!(p.graph.node(id).op, Op::Trunc { .. }))
        .filter(|&id| matches!(p.graph.node(id).ty.domain, comet_ir::Domain::Arith))
        .count();
    assert_eq!(local, 0, "{name}: no shared value truncated locally");
    let worst = check_plan(&format!("{name} (faithful)"), Comparison::Fss, p);
    assert_eq!(worst, 0.0, "{name}: faithful truncations are exact");
}

/// A checkpoint with a weight beyond the plan's `--weight-bound` is refused at setup with
/// the weight's name, its largest magnitude and the bound to recompile with.
#[test]
fn a_weight_beyond_the_plans_bound_is_an_error() {
    let path = format!("{}/examples/glassllm.model", env!("CARGO_MANIFEST_DIR"));
    let source = shrink(&std::fs::read_to_string(&path).unwrap());
    let opts = comet_compiler::Options {
        truncation: Some(comet_ir::TruncationPolicy {
            weight_bound: 0.5,
            ..comet_compiler::passes::faithful_trunc::default_policy()
        }),
        ..Default::default()
    };
    let p = comet_compiler::compile(&source, &path, &opts)
        .unwrap()
        .program;
    // norm gains near 1: beyond 0.5
    let w = weights(&p, 1);
    let env = DimEnv { seq: 3, past: 0 };
    let mut session = interp::InProcess::new(&p, &w, 5);
    let err = match session.call(&inputs(&p, env, 10), env) {
        Ok(_) => panic!("a weight beyond the bound was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("beyond the bound |w| ≤ 0.5") && err.contains("--weight-bound 2"),
        "{err}"
    );
}

#[test]
fn gpt2_architecture_faithful_truncations_are_exact() {
    check_faithful("gpt2");
}

#[test]
fn glassllm_architecture_faithful_truncations_are_exact() {
    check_faithful("glassllm");
}

/// The default plan: every truncation of these models is faithful with the stochastic
/// gate; measured = estimated, and the result is within `check_plan`'s tolerance of the
/// fixed-point backend (each truncation the floor or one more).
#[test]
fn glassllm_architecture_stochastic_truncations() {
    let p = compile("glassllm", Comparison::Fss);
    let count = |f: fn(&Op) -> bool| {
        (p.graph.ids())
            .filter(|&id| f(&p.graph.node(id).op))
            .count()
    };
    assert!(count(|op| matches!(op, Op::StochasticTrunc { .. })) > 0);
    assert_eq!(count(|op| matches!(op, Op::FaithfulTrunc { .. })), 0);
    let worst = check_plan("glassllm (stochastic)", Comparison::Fss, p);
    assert!(
        worst > 0.0,
        "stochastic rounding differs from the floor somewhere"
    );
}

/// MPCFormer's 2Quad softmax masks its causal scores by `select(drelu(mask(q)), q)`: a
/// select whose y (q) is ready with its x, fused into a two-operand `sign_select` (x + r
/// and y + s opened in round 1); measured = estimated and the fixed-point result, as above.
#[test]
fn gpt2_architecture_with_a_two_operand_sign_select() {
    let p = compile_approx("gpt2", Comparison::Fss, Some("softmax=mpcformer"));
    let two = (p.graph.ids())
        .filter(|&id| matches!(p.graph.node(id).op, Op::SignSelect))
        .filter(|&id| p.graph.operands(id).len() == 2)
        .count();
    assert!(two > 0, "a fused select with its own y");
    check_plan("gpt2 (2Quad softmax)", Comparison::Fss, p);
}

/// Every truncation local (`--faithful-trunc never`, the plans before the pass): still
/// measured = estimated and within the fixed-point tolerance on these small weights.
#[test]
fn glassllm_architecture_local_truncations() {
    let path = format!("{}/examples/glassllm.model", env!("CARGO_MANIFEST_DIR"));
    let source = shrink(&std::fs::read_to_string(&path).unwrap());
    let opts = comet_compiler::Options {
        truncation: None,
        ..Default::default()
    };
    let p = comet_compiler::compile(&source, &path, &opts)
        .unwrap()
        .program;
    assert!(!(p.graph.ids()).any(|id| matches!(p.graph.node(id).op, Op::FaithfulTrunc { .. })));
    check_plan("glassllm (local truncations)", Comparison::Fss, p);
}

#[test]
fn gpt2_architecture() {
    check("gpt2", Comparison::Fss);
}

#[test]
fn gpt2_architecture_gmw() {
    check("gpt2", Comparison::Gmw);
}

#[test]
fn opt_architecture() {
    check("opt-1.3b", Comparison::Fss);
}

#[test]
fn opt_architecture_gmw() {
    check("opt-1.3b", Comparison::Gmw);
}

#[test]
fn llama2_architecture() {
    check("llama2-7b", Comparison::Fss);
}

#[test]
fn llama2_architecture_gmw() {
    check("llama2-7b", Comparison::Gmw);
}

#[test]
fn bert_architecture() {
    check("bert-base", Comparison::Fss);
}

#[test]
fn bert_architecture_gmw() {
    check("bert-base", Comparison::Gmw);
}

#[test]
fn glassllm_architecture() {
    check("glassllm", Comparison::Fss);
}

#[test]
fn glassllm_architecture_gmw() {
    check("glassllm", Comparison::Gmw);
}

/// BERT's LayerNorm epsilon (10^−12) lies below the `lut` rsqrt's domain (4^−11); the
/// recipe raises it to the domain, so with the checkpoint's statistics declared the range
/// analysis proves every truncation (before, the first norm's input was a violated
/// assumption and nothing after it was bounded: P(fail) 1, the comparisons at full
/// width). The narrowed plan measures its estimate and agrees with fixed point.
#[test]
fn bert_architecture_with_the_checkpoints_statistics() {
    for approx in ["exact", "lut"] {
        check_bert_with_statistics(approx);
    }
}

fn check_bert_with_statistics(approx: &str) {
    let path = format!("{}/examples/bert-base.model", env!("CARGO_MANIFEST_DIR"));
    let source = shrink(&std::fs::read_to_string(&path).unwrap());
    assert!(source.contains("eps = 1e-12"), "the case under test");
    let compile_with = |stats| {
        let opts = comet_compiler::Options {
            weight_stats: stats,
            approx: approx.parse().unwrap(),
            ..Default::default()
        };
        comet_compiler::compile(&source, &path, &opts)
            .unwrap()
            .program
    };
    let w = weights(&compile_with(None), 1);
    let stats = comet_runtime::weights::stats::declared_map(&w);
    let p = compile_with(Some(stats));
    let env = DimEnv { seq: 3, past: 0 };
    let bound = comet_compiler::range::RangeOptions {
        weight_bound: p.options.truncation.map_or(64.0, |t| t.weight_bound),
    };
    let report = comet_compiler::range::range_report(&p, env, &bound);
    assert!(
        report.violations.is_empty(),
        "{approx}: {:?}",
        report.violations
    );
    assert_eq!(report.unbounded, 0, "{approx}");
    assert!(
        report.total_failure <= 2f64.powi(-40),
        "{approx}: {}",
        report.total_failure
    );
    // `lut`: every comparison and truncation narrowed (not only those before the first
    // norm); the `exact` recipes' comparisons and truncations keep the full ring
    let wide: Vec<String> = (p.graph.ids())
        .filter(|&id| comet_ir::graph::takes_cmp_width(&p.graph.node(id).op))
        .filter(|&id| !comet_ir::graph::takes_open_width(&p.graph.node(id).op))
        .filter(|&id| p.graph.node(id).comparison_bits() == 64)
        .map(|id| format!("{} {}", id.index(), p.graph.node(id).op.name()))
        .collect();
    assert!(
        approx != "lut" || wide.is_empty(),
        "at full width: {wide:?}"
    );
    check_plan(
        &format!("bert ({approx}, with statistics)"),
        Comparison::Fss,
        p,
    );
}

#[test]
fn shrinking_keeps_the_structure() {
    let s = shrink(
        "  dim vocab = 50257, n_ctx = 1024;   // sizes\n  dim d = 768, heads = 12, hd = d / heads;\n  dim seq, past;\n",
    );
    assert_eq!(
        s,
        "  dim vocab = 48, n_ctx = 32;\n  dim d = 32, heads = 2, hd = d / heads;\n  dim seq, past;\n"
    );
}

/// Estimate = measurement and agreement with fixed point for `name` over TCP: each party
/// measures both directions' bytes and the rounds; its material is its half of the dealer's.
fn check_tcp(name: &str, source: Source) {
    check_tcp_plan(name, source, compile(name, Comparison::Fss));
}

/// [`check_tcp`] of plan `p`.
fn check_tcp_plan(name: &str, source: Source, p: Program) {
    let w = weights(&p, 1);
    let calls = [DimEnv { seq: 3, past: 0 }, DimEnv { seq: 1, past: 3 }];
    let has_cache = (p.graph.ids()).any(|id| matches!(p.graph.node(id).op, Op::CacheRead { .. }));
    let calls = if has_cache { &calls[..] } else { &calls[..1] };
    let [server, client] = tcp_session(&p, &w, calls, source, inputs);
    let mut plain = fixed::Cache::new();
    for (k, &env) in calls.iter().enumerate() {
        let x = inputs(&p, env, 10 + k as u64);
        let expected = fixed::eval(&p, &x, &w, env, &mut plain).unwrap();
        let ((got0, m0), (got1, m1)) = (&server[k], &client[k]);
        for (out, e) in &expected {
            let g = got0
                .get(out)
                .or(got1.get(out))
                .expect("an output reaches its receiver");
            let worst = g
                .iter()
                .zip(e)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                worst < 0.05,
                "{name} ({source:?}) call {k}: `{out}` drifts {worst}"
            );
        }
        let (on, rounds, off) = estimate(&p, env);
        for m in [m0, m1] {
            assert_eq!(
                (m.online_bits, m.rounds),
                (on, rounds),
                "{name} ({source:?}) call {k}"
            );
        }
        assert_eq!(
            m0.offline_bits + m1.offline_bits,
            off,
            "{name} ({source:?}) call {k}: dealer"
        );
    }
}

/// Every example (at the small sizes of [`common::SMALL`]).
const ARCHITECTURES: [&str; 6] = [
    "gpt2",
    "opt-1.3b",
    "llama2-7b",
    "bert-base",
    "glassllm",
    "smollm-135m",
];

#[test]
fn every_architecture_over_tcp_with_material_files() {
    for name in ARCHITECTURES {
        check_tcp(name, Source::Files);
    }
}

#[test]
fn every_architecture_over_tcp_with_the_dealer_service() {
    for name in ARCHITECTURES {
        check_tcp(name, Source::Dealer);
    }
}

/// The `lut` profile (the CLI's default) with the default truncation policy: its norms'
/// and softmax's tables read their range-reduced products untruncated (scale 32), and the
/// scalings by `2^−8` / `2^−12` truncate once with their products (by 32 bits); measured =
/// estimated and the fixed-point result, as above.
fn check_lut(name: &str, comparison: Comparison) {
    let p = compile_approx(name, comparison, Some("lut"));
    let product_lookups = (p.graph.ids())
        .filter(|&id| matches!(p.graph.node(id).op, Op::Lut { .. }))
        .filter(|&id| {
            let x = p.graph.operands(id)[0];
            p.graph.node(x).ty.elem == comet_ir::Elem::Fixed { scale: 32 }
        })
        .count();
    assert!(product_lookups > 0, "{name}: a table reads a product");
    let double = (p.graph.ids())
        .filter(|&id| matches!(p.graph.node(id).op, Op::StochasticTrunc { bits: 32 }))
        .count();
    assert!(double > 0, "{name}: a product truncated with its scaling");
    check_plan(&format!("{name} (lut)"), comparison, p);
}

#[test]
fn gpt2_architecture_lut() {
    check_lut("gpt2", Comparison::Fss);
}

#[test]
fn glassllm_architecture_lut() {
    check_lut("glassllm", Comparison::Fss);
}

/// As [`glassllm_architecture_lut`] with GMW comparisons (the range reductions' bits from
/// `drelu`s and B2A).
#[test]
fn glassllm_architecture_lut_gmw() {
    check_lut("glassllm", Comparison::Gmw);
}

/// With the checkpoint's statistics the `lut` SiLU's comparison and selects are narrow
/// enough to read the gate projection's truncation opening (pass `fuse-trunc-openings`):
/// the comparison sends nothing and ends in the truncation's round, the select sends its
/// bits only, and the plan still measures its estimate and agrees with fixed point;
/// without the pass they open their own inputs.
#[test]
fn glassllm_architecture_comparisons_read_truncation_openings() {
    check_reads_openings("glassllm");
}

/// BERT's up projection reads no folded norm: pass `fold-biases` moves its bias into the
/// product, so that its GeLU reads the truncation's opening as glassllm's SiLU does.
#[test]
fn bert_architecture_comparisons_read_truncation_openings() {
    check_reads_openings("bert-base");
}

/// GPT-2's up projection reads its folded pre-norm: pass `fold-norm-gains` moves the
/// product's bias into the norm's shift row, and its GeLU reads the truncation's opening.
#[test]
fn gpt2_architecture_comparisons_read_truncation_openings() {
    check_reads_openings("gpt2");
}

fn check_reads_openings(name: &str) {
    let path = format!("{}/examples/{name}.model", env!("CARGO_MANIFEST_DIR"));
    let source = shrink(&std::fs::read_to_string(&path).unwrap());
    let compile_with = |stats, fuse| {
        let opts = comet_compiler::Options {
            weight_stats: stats,
            approx: "lut".parse().unwrap(),
            fuse_trunc_openings: fuse,
            ..Default::default()
        };
        comet_compiler::compile(&source, &path, &opts)
            .unwrap()
            .program
    };
    let w = weights(&compile_with(None, true), 1);
    let stats = comet_runtime::weights::stats::declared_map(&w);
    let fused = compile_with(Some(stats.clone()), true);
    let plain = compile_with(Some(stats), false);
    let reading = |p: &Program, proto: Protocol| {
        let costs = p.analyses.costs.as_ref().unwrap();
        (p.graph.ids())
            .filter(|&id| costs.get(id).unwrap().protocol == proto)
            .count()
    };
    for proto in [Protocol::DreluOpened, Protocol::MuxOpened] {
        assert!(reading(&fused, proto) > 0, "a {proto} reads an opening");
        assert_eq!(reading(&plain, proto), 0);
    }
    // the plan file keeps the flag; a reader wider than the opening is refused
    let json = comet_ir::plan::write_plan_json(&fused).unwrap();
    assert!(json.contains("\"reads_opening\": true"));
    let mut wide = comet_ir::plan::read_plan_json(&json).unwrap();
    let reader = (wide.graph.ids())
        .find(|&id| {
            let n = wide.graph.node(id);
            n.reads_opening && matches!(n.op, Op::Compare { .. })
        })
        .unwrap();
    let t = wide.graph.operands(reader)[0];
    let m = wide.graph.node(t).comparison_bits();
    // the truncation shifts by 16 bits: one bit more than its opening covers
    wide.graph.node_mut(reader).cmp_width = Some((m - 15).min(64) as u8);
    let problems = format!("{:?}", comet_ir::verify(&wide).unwrap_err());
    assert!(
        problems.contains("reads its operand's opening"),
        "{problems}"
    );
    let env = DimEnv { seq: 3, past: 0 };
    let (on_fused, rounds_fused, _) = estimate(&fused, env);
    let (on_plain, rounds_plain, _) = estimate(&plain, env);
    assert!(on_fused < on_plain, "{on_fused} < {on_plain}");
    assert!(
        rounds_fused < rounds_plain,
        "{rounds_fused} < {rounds_plain}"
    );
    check_plan(&format!("{name} (opens)"), Comparison::Fss, plain);
    // the parties' material replayed from files and streamed by the dealer service: the
    // comparison's keys and the select's corrections dealt on the truncation's masks
    for source in [Source::Files, Source::Dealer] {
        check_tcp_plan(name, source, fused.clone());
    }
    check_plan(&format!("{name} (reads openings)"), Comparison::Fss, fused);
}
