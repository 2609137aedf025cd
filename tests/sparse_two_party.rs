//! Block-sparse FFNs end to end on the shipped model: `comet calibrate --score sum` writes
//! a predictor, `--sparsity ffn` compiles the plan, and the two parties run it with the
//! oblivious block permutation. The two-party run agrees with the fixed-point backend on
//! the same sparse plan (whose permutation is the identity: a permutation applied to the
//! weights and undone by the opened mask's order changes nothing), every call costs
//! exactly the estimate at its opened masks' active counts, and the failures a user can
//! make are clear errors.

mod common;

use comet_compiler::passes::schedule::total_rounds;
use comet_compiler::passes::sparsify::parse_spec;
use comet_ir::{DimEnv, Program};
use comet_runtime::interp::{InProcess, Measured};
use comet_runtime::{fixed, sparsity};
use common::reference::{argmax, env, last_row, load_weights, max_abs_diff, numbers, reference};
use common::{comet, stderr, temp_path};
use ndarray::ArrayD;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const MODEL: &str = "examples/glassllm.model";
const WEIGHTS: &str = "models/glassllm-en/model.safetensors";

fn compile(spec: &str) -> Program {
    compile_with(spec, None)
}

/// [`compile`] with the checkpoint's statistics declared (`comet compile --weights`).
fn compile_with(
    spec: &str,
    stats: Option<std::collections::BTreeMap<String, comet_ir::WeightStats>>,
) -> Program {
    let source = std::fs::read_to_string(common::reference::root().join(MODEL)).unwrap();
    // with statistics, `comet compile`'s default profile (what the server compiles)
    let approx = match stats.is_some() {
        true => comet_ir::ApproxConfig::uniform(comet_ir::ApproxProfile::Lut),
        false => comet_ir::ApproxConfig::default(),
    };
    let opts = comet_compiler::Options {
        sparsity: parse_spec(spec).unwrap(),
        weight_stats: stats,
        approx,
        ..Default::default()
    };
    comet_compiler::compile(&source, MODEL, &opts)
        .unwrap_or_else(|e| panic!("{e}"))
        .program
}

/// A predictor file calibrated by the CLI (block sums, recall `recall`, magnitude
/// sparsity `sparsity`).
fn predictor(name: &str, recall: &str, sparsity: &str) -> PathBuf {
    let out = temp_path(name);
    let o = comet(&[
        "calibrate",
        MODEL,
        "--weights",
        WEIGHTS,
        "--score",
        "sum",
        "--recall",
        recall,
        "--sparsity",
        sparsity,
        "--samples",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

/// The checkpoint's weights plus the plan's folded predictor weights.
fn weights(p: &Program, pred: &Path) -> HashMap<String, ArrayD<f64>> {
    let mut w = load_weights(&dense_view(p));
    w.extend(sparsity::plan::plan_weights(pred, p).unwrap_or_else(|e| panic!("{e}")));
    w
}

/// The plan with only the checkpoint's weights declared (for loading them).
fn dense_view(p: &Program) -> Program {
    let mut q = p.clone();
    q.info
        .weights
        .retain(|w| !comet_ir::sparse::is_predictor_weight(&w.name));
    q
}

/// (online bits, rounds, offline bits) estimated at the call's realised active counts.
fn estimate_at(p: &Program, e: DimEnv, m: &Measured) -> (u64, u64, u64) {
    let costs = p.analyses.costs.as_ref().unwrap();
    let online: f64 = costs.iter().map(|(_, c)| c.online_at(e, m)).sum();
    let offline: i128 = costs.iter().map(|(_, c)| c.offline_bits.eval(e)).sum();
    (
        online as u64,
        total_rounds(p).eval(e) as u64,
        offline as u64,
    )
}

/// Runs prefill + 5 decode steps of reference case 0 for two parties and in fixed point
/// on the sparse plan with the predictor `pred`; returns the two-party greedy tokens and
/// the (token, block) pairs the opened masks skipped.
fn two_party_against_fixed_point(p: &Program, pred: &Path) -> (Vec<f64>, u64) {
    let w = weights(p, pred);
    let case = &reference()["cases"][0];
    let prompt = numbers(&case["prompt_ids"]);
    let mut session = InProcess::new(p, &w, 7);
    let mut cache = fixed::Cache::new();
    let (mut ids, mut past) = (prompt.clone(), 0);
    let mut two_party_tokens = Vec::new();
    let mut skipped = 0;
    for step in 0..6 {
        let e = env(ids.len(), past);
        let x = common::reference::tokens(&ids);
        let (out, m) = session.call(&x, e).unwrap_or_else(|err| panic!("{err}"));
        let plain = fixed::eval(p, &x, &w, e, &mut cache).unwrap();
        let (a, b) = (last_row(&out["logits"]), last_row(&plain["logits"]));
        let err = max_abs_diff(&a, &b);
        assert!(
            err < 0.1,
            "step {step}: 2PC vs fixed point, max |Δ| = {err}"
        );
        assert_eq!(argmax(&a), argmax(&b), "step {step}: greedy tokens differ");
        assert_eq!(m.active.len(), 4, "one count per FFN");
        let blocks = 22 * e.seq;
        assert!(m.active.iter().all(|&a| a <= blocks), "{:?}", m.active);
        skipped += m.active.iter().map(|a| blocks - a).sum::<u64>();
        let est = estimate_at(p, e, &m);
        assert_eq!(
            (m.online_bits, m.rounds, m.offline_bits),
            est,
            "step {step}"
        );
        if step == 0 {
            assert!(
                m.setup_offline_bits > 0,
                "the shuffles' corrections are dealt"
            );
        }
        past += ids.len();
        ids = vec![argmax(&a)];
        two_party_tokens.push(ids[0]);
    }
    (two_party_tokens, skipped)
}

/// At 90% magnitude sparsity and recall 0.95 the predictor skips blocks (the run opens
/// masks with inactive blocks), and the two parties compute exactly what the fixed-point
/// backend computes on the same sparse plan. The shipped model does not keep its greedy
/// continuation at that recall (`comet calibrate --curve` measures 9/48 tokens in f64),
/// so the reference is not the yardstick here.
#[test]
fn glassllm_sparse_two_party_agrees_with_its_plaintext_and_costs_its_estimate() {
    let p = compile("ffn:block=16");
    let pred = predictor("glass-sum.pred", "0.95", "0.9");
    let (_, skipped) = two_party_against_fixed_point(&p, &pred);
    assert!(
        skipped > 0,
        "the masks skipped no block: the sparse path was not exercised"
    );
}

/// With the checkpoint's statistics declared (and the `lut` profile, as `comet compile
/// --weights` compiles), the masked regions (blocks of 16: whole bytes) and the block
/// products get the widths their ranges prove, like the dense
/// plan's nodes; the region's truncations are in it (they were not, before: every
/// stochastic truncation, then the activation after it, ran on all entries). The two
/// parties still compute what the fixed-point backend computes, and each call measures
/// its estimate.
#[test]
fn glassllm_sparse_regions_run_narrow_with_the_checkpoints_statistics() {
    let dense = compile("off");
    // the checkpoint's statistics, computed once for both plans below
    let stats = comet_runtime::weights::stats::declared_map(&load_weights(&dense));
    let p = compile_with("ffn:block=16", Some(stats.clone()));
    let masked = comet_ir::sparse::masked_nodes(&p);
    let in_region = |op: fn(&comet_ir::Op) -> bool| {
        (masked.keys())
            .filter(|&&id| op(&p.graph.node(id).op))
            .map(|&id| p.graph.node(id).cmp_width)
            .collect::<Vec<_>>()
    };
    let truncs = in_region(|op| matches!(op, comet_ir::Op::StochasticTrunc { .. }));
    assert!(!truncs.is_empty(), "the region's truncations are in it");
    let narrowed = (masked.keys()).filter(|&&id| p.graph.node(id).cmp_width.is_some());
    assert!(narrowed.count() > 0, "some region node is narrowed");
    let blocks: Vec<_> = (p.graph.ids())
        .filter(|&id| matches!(p.graph.node(id).op, comet_ir::Op::BlockMatMul { .. }))
        .map(|id| p.graph.node(id).cmp_width)
        .collect();
    // the last layer's ranges are not proven (its RMSNorm input is bounded beyond the
    // rsqrt table, README "Bounds from the checkpoint"): it keeps the ring
    assert_eq!(blocks.len(), 4);
    assert!(
        blocks[..3].iter().all(|w| w.is_some_and(|w| w < 64)),
        "{blocks:?}"
    );
    // blocks of 12 entries are not whole bytes of bits: nothing there runs narrow, and a
    // plan that says otherwise is refused
    let mut odd = compile_with("ffn:block=12", Some(stats));
    let block = (odd.graph.ids())
        .find(|&id| matches!(odd.graph.node(id).op, comet_ir::Op::BlockMatMul { .. }))
        .unwrap();
    let regions = comet_ir::sparse::masked_nodes(&odd);
    assert!(!regions.is_empty());
    assert!(
        regions
            .keys()
            .all(|&id| odd.graph.node(id).cmp_width.is_none())
    );
    assert_eq!(odd.graph.node(block).cmp_width, None);
    odd.graph.node_mut(block).cmp_width = Some(40);
    let e = comet_ir::verify(&odd).unwrap_err().to_string();
    assert!(
        e.contains("has width 40 in a sparse FFN of blocks of 12"),
        "{e}"
    );
    // a region's values (zeros at the inactive blocks) summed across entries: refused
    let mut mixed = p.clone();
    let region = (masked.keys().copied())
        .find(|&id| {
            matches!(
                mixed.graph.node(id).op,
                comet_ir::Op::StochasticTrunc { .. }
            )
        })
        .unwrap();
    let node = mixed.graph.node(region).clone();
    let mut ty = node.ty.clone();
    *ty.shape.last_mut().unwrap() = comet_ir::Dim::constant(1);
    let sum = mixed
        .graph
        .add(comet_ir::Op::RowSum, &[region], ty, node.scope);
    let e = comet_ir::verify(&mixed).unwrap_err().to_string();
    assert!(
        e.contains(&format!("{sum} (`row_sum`) reads {region}"))
            && e.contains("depends on the active blocks of sparse FFN"),
        "{e}"
    );
    let pred = predictor("glass-stats.pred", "0.95", "0.9");
    let (_, skipped) = two_party_against_fixed_point(&p, &pred);
    assert!(skipped > 0, "the sparse path was exercised");
}

/// With a predictor calibrated to recall 1 every truly active block is kept, and the
/// sparse two-party run gives the reference's greedy tokens.
#[test]
fn glassllm_sparse_at_full_recall_gives_the_reference_tokens() {
    let p = compile("ffn:block=16");
    let pred = predictor("glass-full.pred", "1.0", "0.3");
    let (got, _) = two_party_against_fixed_point(&p, &pred);
    let want = numbers(&reference()["cases"][0]["greedy_ids"]);
    assert_eq!(got, want[..6].to_vec());
}

/// A predictor trained by `comet calibrate --train` on the attention input.
fn trained(name: &str, recall: &str, sparsity: &str) -> PathBuf {
    let out = temp_path(name);
    let o = comet(&[
        "calibrate",
        MODEL,
        "--weights",
        WEIGHTS,
        "--train",
        "--train-samples",
        "16",
        "--recall",
        recall,
        "--sparsity",
        sparsity,
        "--samples",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

/// The predictor beside attention (`input=attention`) adds no round: the sparse plan
/// has at most the dense plan's rounds at every size (fewer when the truncation policy
/// keeps a masked truncation local), where the FFN-input predictor adds 2 per FFN; the
/// two parties compute what the fixed-point backend computes at the estimated cost, and
/// a predictor file for the other input is refused.
#[test]
fn a_predictor_beside_attention_adds_no_round() {
    let dense = compile("off");
    let beside = compile("ffn:block=16,input=attention");
    let after = compile("ffn:block=16");
    for e in [env(6, 0), env(1, 6), env(32, 100)] {
        let r = |p: &Program| total_rounds(p).eval(e);
        assert!(
            r(&beside) <= r(&dense),
            "{e:?}: {} > {}",
            r(&beside),
            r(&dense)
        );
        assert!(r(&after) > r(&beside), "{e:?}");
    }
    let pred = trained("glass-trained.pred", "0.95", "0.9");
    let (_, skipped) = two_party_against_fixed_point(&beside, &pred);
    assert!(skipped > 0, "the masks skipped no block");
    let svd = predictor("glass-svd-for-beside.pred", "0.95", "0.9");
    let e = sparsity::plan::plan_weights(&svd, &beside)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("its predictors read the ffn input, the plan's read the attention input"),
        "{e}"
    );
    let e = sparsity::plan::plan_weights(&pred, &after)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("compile with --sparsity ffn:input=attention"),
        "{e}"
    );
}

#[test]
fn sparsity_options_that_do_not_fit_are_clear_errors() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--sparsity", "ffn:input=up"],
            "input=up: expected `ffn` (the FFN's input) or `attention`",
        ),
        (&["--sparsity", "attn"], "unknown sparsity `attn`"),
        (
            &["--sparsity", "ffn:block=0"],
            "block=0: expected a positive integer",
        ),
        (
            &["--sparsity", "ffn:recall=1.5"],
            "recall=1.5: expected a number in (0, 1]",
        ),
        (
            &["--sparsity", "ffn:block=400"],
            "block=400 must be between 1 and the FFN width 341",
        ),
        (
            &["--sparsity", "ffn", "--comparison", "gmw"],
            "sparse FFNs need `--comparison fss`",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["compile", MODEL];
        all.extend_from_slice(args);
        let o = comet(&all);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn a_predictor_that_does_not_fit_the_plan_is_a_clear_error() {
    let plan = temp_path("glass-sparse-32.plan");
    let o = comet(&[
        "compile",
        MODEL,
        "--sparsity",
        "ffn:block=32",
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = |pred: Option<&Path>| {
        let mut args = vec![
            "run",
            plan.to_str().unwrap(),
            "--weights",
            WEIGHTS,
            "--prompt-ids",
            "41,69",
            "--generate",
            "1",
            "--accept-leakage",
            "sparse-masks",
        ];
        if let Some(p) = pred {
            args.extend(["--predictor", p.to_str().unwrap()]);
        }
        let o = comet(&args);
        assert!(!o.status.success());
        stderr(&o)
    };
    assert!(run(None).contains("give their predictor with --predictor FILE"));
    // blocks of 16 for a plan of blocks of 32
    let p16 = predictor("glass-16.pred", "0.95", "0.9");
    assert!(
        run(Some(&p16)).contains("compiled for blocks of 32"),
        "{}",
        run(Some(&p16))
    );
    // a `max` score has no two-party predictor
    let max = temp_path("glass-max.pred");
    let o = comet(&[
        "calibrate",
        MODEL,
        "--weights",
        WEIGHTS,
        "--block",
        "32",
        "--samples",
        "2",
        "--out",
        max.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(run(Some(&max)).contains("calibrate with `comet calibrate --score sum`"));
    // not a predictor file at all
    let err = run(Some(Path::new(WEIGHTS)));
    assert!(err.contains("not a predictor file"), "{err}");
}
