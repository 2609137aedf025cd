//! Pass `narrow-comparisons`: each FSS comparison gets the width the range analysis proves,
//! from the plan's declared weight bound; the runtime refuses weights beyond that bound.
//!
//! The model: token ids (an index: no range to assume) → embedding (|e| ≤ B, the weight
//! bound) → `h = e·w1` over d = 8 terms, so |h| ≤ 8·B² → ReLU. With B = 1/2 that is
//! |h| ≤ 2: 2·2^16 ring units plus the pass's rounding allowance of 2^12 is below 2^18,
//! so the ReLU's sign needs 18 + 2 = 20 bits (sign bit and one bit of margin); the
//! runtime packs opened values at exactly that many bits (⌈n·m/8⌉ bytes per message),
//! and the cost model counts the same.

mod common;

use comet_compiler::passes::faithful_trunc::default_policy;
use comet_compiler::passes::narrow_comparisons::{ERROR_ULPS, bits_for};
use comet_compiler::{Options, compile};
use comet_ir::{DimEnv, Interval, Op, Program, TruncationPolicy};
use comet_runtime::interp;
use common::estimate;
use ndarray::{ArrayD, IxDyn};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;
use std::collections::HashMap;

const SOURCE: &str = "
model tiny {
  format ring = 64, frac = 16;
  dim vocab = 16, d = 8, ff = 16;
  dim seq;
  input t: token[seq] from client;
  weight e: [vocab, d] = \"e\";
  weight w1: [d, ff] = \"w1\";
  let h = relu(matmul(embed(t, e), w1));
  output h to client;
}
";

const BOUND: f64 = 0.5;

fn plan(narrow: bool, weight_bound: f64) -> Program {
    // the comparisons' widths alone: products keep the ring (`narrow-openings` is
    // tested in tests/narrow_openings.rs)
    let opts = Options {
        narrow_comparisons: narrow,
        narrow_openings: false,
        truncation: Some(TruncationPolicy {
            weight_bound,
            ..default_policy()
        }),
        ..Default::default()
    };
    compile(SOURCE, "tiny.model", &opts)
        .unwrap_or_else(|e| panic!("{e}"))
        .program
}

/// The comparison widths of the plan, in plan order (not the stochastic truncations',
/// which also take a width).
fn widths(p: &Program) -> Vec<(String, Option<u8>)> {
    (p.graph.ids())
        .filter(|&id| comet_ir::graph::takes_cmp_width(&p.graph.node(id).op))
        .filter(|&id| !matches!(p.graph.node(id).op, comet_ir::Op::StochasticTrunc { .. }))
        // the comparisons' widths only, not the products' (`narrow-openings`)
        .filter(|&id| !comet_ir::graph::takes_open_width(&p.graph.node(id).op))
        .map(|id| {
            (
                p.graph.node(id).op.name().to_string(),
                p.graph.node(id).cmp_width,
            )
        })
        .collect()
}

fn weights(seed: u64, scale: f64) -> HashMap<String, ArrayD<f64>> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    [("e", [16, 8]), ("w1", [8, 16])]
        .into_iter()
        .map(|(name, shape)| {
            let v = ArrayD::from_shape_simple_fn(IxDyn(&shape), || {
                (rng.random::<f64>() * 2.0 - 1.0) * scale
            });
            (name.to_string(), v)
        })
        .collect()
}

fn tokens(seq: usize, seed: u64) -> HashMap<String, ArrayD<f64>> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let t = ArrayD::from_shape_simple_fn(IxDyn(&[seq]), || f64::from(rng.random_range(0..16u8)));
    HashMap::from([("t".to_string(), t)])
}

#[test]
fn the_relu_works_at_the_width_its_bound_proves() {
    let narrow = plan(true, BOUND);
    assert_eq!(widths(&narrow), [("sign_select".to_string(), Some(20))]);
    assert_eq!(narrow.options.truncation.unwrap().weight_bound, BOUND);
    // a bound 16 times larger: |h| ≤ 8·8² = 512, 2^25 + 2^12 units → 26 + 2 = 28 bits
    assert_eq!(widths(&plan(true, 8.0)), [("sign_select".into(), Some(28))]);
    let full = plan(false, BOUND);
    assert_eq!(widths(&full), [("sign_select".into(), None)]);
}

#[test]
fn a_narrowed_plan_measures_its_estimate_and_agrees_with_the_full_ring() {
    let (narrow, full) = (plan(true, BOUND), plan(false, BOUND));
    let w = weights(1, BOUND);
    let mut a = interp::InProcess::new(&narrow, &w, 5);
    let mut b = interp::InProcess::new(&full, &w, 5);
    for (k, seq) in [5usize, 3].into_iter().enumerate() {
        let env = DimEnv {
            seq: seq as u64,
            past: 0,
        };
        let t = tokens(seq, 20 + k as u64);
        let (got, m) = a.call(&t, env).unwrap();
        let (want, m64) = b.call(&t, env).unwrap();
        let measured = |m: &interp::Measured| (m.online_bits, m.rounds, m.offline_bits);
        assert_eq!(measured(&m), estimate(&narrow, env), "call {k}, narrowed");
        assert_eq!(measured(&m64), estimate(&full, env), "call {k}, full ring");
        // the ReLU is one `sign_select` with y = x: it opens x + r on the whole ring either
        // way (its output needs it), so only its key, and the dealer's bytes, shrink; the
        // product's stochastic truncation (|h| ≤ 2 at 32 fractional bits: 2^33 + 2^12
        // units → 34 + 2 = 36 bits) opens 36 bits per element and party, not 64
        let truncs: Vec<Option<u8>> = (narrow.graph.ids())
            .filter(|&id| matches!(narrow.graph.node(id).op, Op::StochasticTrunc { .. }))
            .map(|id| narrow.graph.node(id).cmp_width)
            .collect();
        assert_eq!(truncs, [Some(36)]);
        // 16·seq values of 36 bits: whole bytes, so no padding in either figure
        let saved = 2 * (64 - 36) * 16 * seq as u64;
        assert_eq!(m64.online_bits - m.online_bits, saved, "call {k}");
        assert!(m.offline_bits < m64.offline_bits, "call {k}");
        eprintln!(
            "call {k}: dealer {} / {} bits narrowed / full",
            m.offline_bits, m64.offline_bits
        );
        let worst = (got["h"].iter().zip(&want["h"]))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f64, f64::max);
        assert!(worst < 1e-3, "call {k}: |narrow − full| = {worst}");
    }
}

#[test]
fn weights_beyond_the_plans_bound_are_refused() {
    let narrow = plan(true, BOUND);
    let mut w = weights(2, BOUND);
    w.get_mut("w1").unwrap()[[3, 7]] = -0.75;
    let mut s = interp::InProcess::new(&narrow, &w, 5);
    let e = s
        .call(&tokens(4, 1), DimEnv { seq: 4, past: 0 })
        .unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains(
            "weight `w1` (tensor `w1`) has an entry -0.75, beyond the bound |w| ≤ 0.5 the plan \
             was compiled with"
        ) && e.contains("--weight-bound 1` or more"),
        "{e}"
    );
    // a plan compiled for the bound the error suggests runs the same weights
    let wider = plan(true, 1.0);
    let mut s = interp::InProcess::new(&wider, &w, 5);
    s.call(&tokens(4, 1), DimEnv { seq: 4, past: 0 }).unwrap();
}

#[test]
fn widths_hold_the_bound_with_margin() {
    // 1.0 at 16 fractional bits: 2^16 + 2^12 units → 17 bits → 19 with sign and margin
    assert_eq!(bits_for(Interval::new(-1.0, 0.5), 16), Some(19));
    // 63.9·2^16 + 2^12 < 2^22: 22 + 2 = 24; 64·2^16 + 2^12 > 2^22: 23 + 2 = 25
    assert_eq!(bits_for(Interval::new(-63.9, 0.0), 16), Some(24));
    assert_eq!(bits_for(Interval::new(-64.0, 0.0), 16), Some(25));
    // the allowance alone: 2^12 units → 12 + 2 = 14
    assert_eq!(
        bits_for(Interval::new(0.0, 0.0), 16),
        Some(14),
        "the allowance alone"
    );
    assert_eq!(bits_for(Interval::UNBOUNDED, 16), None);
    assert_eq!(
        bits_for(Interval::new(-1e15, 1.0), 16),
        None,
        "beyond the ring"
    );
    // every value in the interval, with the allowance, fits the signed width
    for (b, f) in [(3.7, 16u32), (1000.0, 12), (0.001, 20)] {
        let m = bits_for(Interval::symmetric(b), f).unwrap();
        assert!(b * 2f64.powi(f as i32) + ERROR_ULPS < 2f64.powi(i32::from(m) - 1));
    }
}

/// No comparison downstream of a recipe input outside its assumed range is narrowed (its
/// declared ranges, and every bound downstream of them, would be unfounded): checked on
/// every shipped example at the pass's own call size (the design context).
#[test]
fn comparisons_downstream_of_violated_assumptions_keep_the_whole_ring() {
    let context = default_policy().context;
    let env = DimEnv {
        seq: context,
        past: context,
    };
    let mut violated = 0;
    for name in [
        "gpt2",
        "glassllm",
        "smollm-135m",
        "opt-1.3b",
        "bert-base",
        "llama2-7b",
    ] {
        let path = format!("{}/examples/{name}.model", env!("CARGO_MANIFEST_DIR"));
        let Ok(src) = std::fs::read_to_string(&path) else {
            continue;
        };
        let p = compile(&src, &path, &Options::default()).unwrap().program;
        let ranges = comet_compiler::range::analyse(&p, env, &Default::default());
        let report = comet_compiler::range::range_report(&p, env, &Default::default());
        if report.violations.is_empty() {
            continue;
        }
        violated += 1;
        for id in p.graph.ids() {
            // a product's width (`narrow-openings`) rests on no range: exact for any input
            let op = &p.graph.node(id).op;
            if p.graph.node(id).cmp_width.is_some() && !comet_ir::graph::takes_open_width(op) {
                let x = p.graph.operands(id)[0];
                assert!(
                    !ranges.tainted.contains(&x),
                    "{name}: {id:?} ({}) narrowed",
                    p.graph.node(id).op.name()
                );
            }
        }
    }
    assert!(violated > 0, "the check ran on some plan with a violation");
}

/// One softmax row (`tests/costs.rs`, `one_softmax_row`, derived there at full width):
/// the scores come from an unbounded client input, so the row maximum and the exp's clip
/// keep the whole ring. The reciprocal's clip compares `1 − 2z` with z the row sum of 8
/// exps, each in [0, 1]: |1 − 2z| ≤ 15, and 15·2^16 + 2^12 = 987,136 < 2^20, so it needs
/// 20 + 2 = 22 bits. Saved: 2·(64 − 24) = 80 online bits (each party opens the one value
/// at 22 bits, packed in 3 bytes, not 64) and 2·(12,288 − 4,144) = 16,288 dealer bits (a
/// DCF on 21 bits: 8·(24·21 + ⌈42/8⌉ + 8) = 4,144 bits per party).
#[test]
fn a_softmax_row_narrows_its_reciprocals_clip_only() {
    let src = "model m { dim seq, past; input x: fixed[seq, 4] from client; weight w: [4, 8];
        output p = softmax(matmul(x, w)) to client; }";
    let opts = |narrow| Options {
        narrow_comparisons: narrow,
        narrow_openings: false,
        ..Default::default()
    };
    let narrow = compile(src, "row.model", &opts(true)).unwrap().program;
    let full = compile(src, "row.model", &opts(false)).unwrap().program;
    let is_trunc = |p: &Program, id| matches!(p.graph.node(id).op, Op::StochasticTrunc { .. });
    let narrowed: Vec<u8> = (narrow.graph.ids())
        .filter(|&id| !is_trunc(&narrow, id))
        .filter_map(|id| narrow.graph.node(id).cmp_width)
        .collect();
    assert_eq!(narrowed, [22]);
    // the stochastic truncations are narrowed too (their openings, not their material);
    // the comparisons' saving alone, with the truncations at full width:
    let mut comparisons_only = narrow.clone();
    for id in narrow.graph.ids().filter(|&id| is_trunc(&narrow, id)) {
        comparisons_only.graph.node_mut(id).cmp_width = None;
    }
    comet_compiler::passes::cost::run(&mut comparisons_only);
    let env = DimEnv { seq: 1, past: 0 };
    let (with_truncs, a, b) = (
        estimate(&narrow, env),
        estimate(&comparisons_only, env),
        estimate(&full, env),
    );
    assert!(
        with_truncs.0 < a.0 && with_truncs.2 == a.2,
        "{with_truncs:?} {a:?}"
    );
    assert_eq!(b.0 - a.0, 80, "online bits");
    assert_eq!(b.1, a.1, "rounds");
    assert_eq!(b.2 - a.2, 16_288, "dealer bits");
}

/// With the checkpoint's statistics declared (`comet compile --weights`), the product is
/// bounded by Cauchy–Schwarz, `|h_j| ≤ ‖e_row‖₂·‖w1_col j‖₂`, not by `8·B²`: a plan whose
/// weight bound is 8 (|h| ≤ 512, 28 bits) narrows to at most 20 bits on weights within
/// ±1/2 (each norm of 8 entries at most sqrt(8)/2 ≈ 1.41, rounded up to the 2^(1/4) grid:
/// |h| ≤ 2.83, 2^17.5 + 2^12 units → 18 + 2 = 20 bits), exactly the width of its own
/// declared norms. It runs with measured =
/// estimate and agrees with the full ring; a checkpoint whose column exceeds its declared
/// norm, every entry still within the bound, is refused naming the statistic.
#[test]
fn declared_weight_statistics_narrow_by_norms_and_are_checked() {
    let w = weights(3, BOUND);
    let stats = comet_runtime::weights::stats::declared_map(&w);
    let compile_with = |stats: Option<_>| {
        let opts = Options {
            truncation: Some(TruncationPolicy {
                weight_bound: 8.0,
                ..default_policy()
            }),
            weight_stats: stats,
            narrow_openings: false,
            ..Default::default()
        };
        compile(SOURCE, "tiny.model", &opts).unwrap().program
    };
    let loose = compile_with(None);
    assert_eq!(widths(&loose), [("sign_select".to_string(), Some(28))]);
    let tight = compile_with(Some(stats.clone()));
    // the declared norms of these weights (not the worst case above): an embedding row of
    // `e` times a column of `w1`, at 16 fractional bits
    let h = stats["e"].row_l2 * stats["w1"].col_l2;
    let want = bits_for(Interval::new(-h, h), 16).unwrap();
    assert!(want <= 20, "{h}: within the worst case");
    assert_eq!(widths(&tight), [("sign_select".to_string(), Some(want))]);
    let full = plan(false, 8.0);
    let mut a = interp::InProcess::new(&tight, &w, 7);
    let mut b = interp::InProcess::new(&full, &w, 7);
    let env = DimEnv { seq: 6, past: 0 };
    let t = tokens(6, 9);
    let (got, m) = a.call(&t, env).unwrap();
    let (want, _) = b.call(&t, env).unwrap();
    assert_eq!(
        (m.online_bits, m.rounds, m.offline_bits),
        estimate(&tight, env)
    );
    let worst = (got["h"].iter().zip(&want["h"]))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f64, f64::max);
    assert!(worst < 1e-3, "|narrow − full| = {worst}");
    // every entry of column 2 at the weight's largest magnitude: within the weight bound,
    // beyond the declared norms (this seed's rows give out first; `weights::stats` tests
    // each statistic alone)
    let mut bad = w.clone();
    let col_max = stats["w1"].max_abs;
    for i in 0..8 {
        bad.get_mut("w1").unwrap()[[i, 2]] = col_max * 0.99;
    }
    let mut s = interp::InProcess::new(&tight, &bad, 7);
    let e = s.call(&t, env).unwrap_err().to_string();
    assert!(
        e.contains("weight `w1` (tensor `w1`) has row L2 norm")
            && e.contains("beyond the")
            && e.contains("recompile with `comet compile --weights`"),
        "{e}"
    );
}
