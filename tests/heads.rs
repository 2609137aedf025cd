//! Head sparsity end to end: `comet calibrate --heads` (per-layer group recall and
//! sparsity on the shipped model, the curve with greedy tokens and KV misses), the pass
//! `head-sparsify` run by two parties (against the fixed-point backend on the same plan
//! and the f64 head-masked model, measured = estimate at the opened masks' counts, the
//! masks listed as permuted in the leakage report), and wrong option values.

mod common;

use comet_compiler::passes::head_sparsify;
use comet_compiler::passes::schedule::total_rounds;
use comet_ir::exposure::{ExposureKind, exposed_to_server};
use comet_ir::{DimEnv, Program};
use comet_runtime::fixed;
use comet_runtime::interp::{InProcess, Measured};
use comet_runtime::sparsity::heads::{self, HeadLayer, HeadMode, HeadPredictor};
use common::reference::{argmax, env, last_row, load_weights, max_abs_diff, numbers, reference};
use common::{comet, stderr, stdout, temp_path};
use ndarray::{ArrayD, Ix1, Ix2};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const MODEL: &str = "examples/glassllm.model";
const WEIGHTS: &str = "models/glassllm-en/model.safetensors";

/// The per-layer rows: (recall, predicted skip %, true skip %).
fn rows(text: &str) -> Vec<(f64, f64, f64)> {
    text.lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            (t.len() == 8 && t[0] == "layer").then(|| {
                let pct = |s: &str| s.trim_end_matches('%').parse::<f64>().unwrap();
                (t[3].parse().unwrap(), pct(t[4]), pct(t[5]))
            })
        })
        .collect()
}

fn ok(args: &[&str]) -> String {
    let o = comet(args);
    assert!(
        o.status.success(),
        "{args:?}\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn fails(args: &[&str], code: i32) -> String {
    let o = comet(args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{args:?}\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    stderr(&o)
}

#[test]
fn glassllm_head_recall_and_sparsity_per_layer() {
    let text = ok(&[
        "calibrate",
        MODEL,
        "--weights",
        WEIGHTS,
        "--heads",
        "--recall",
        "0.9",
        "--head-sparsity",
        "0.5",
        "--samples",
        "4",
        "--sample-len",
        "24",
    ]);
    assert!(
        text.contains("4 attentions, 4 query heads in 2 KV groups of 2 (head dim 32, d 128)"),
        "{text}"
    );
    let r = rows(&text);
    assert_eq!(r.len(), 4, "{text}");
    for (recall, pred, truth) in r {
        // the threshold reaches the target on the samples it was chosen on
        assert!(recall >= 0.9, "{text}");
        // a group is active above the median contribution: half of the pairs are not
        assert!((truth - 50.0).abs() <= 1.0, "{text}");
        // the predictor skips some pairs, never more than it must keep for the recall
        assert!(pred > 0.0 && pred < 100.0, "{text}");
    }
}

#[test]
fn glassllm_head_curve_reports_tokens_and_misses() {
    let text = ok(&[
        "calibrate",
        MODEL,
        "--weights",
        WEIGHTS,
        "--heads",
        "--curve",
        "--samples",
        "2",
        "--sample-len",
        "16",
        "--steps",
        "4",
    ]);
    let row = |name: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no `{name}` row:\n{text}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    for name in ["0.8", "0.95", "1", "oracle"] {
        let r = row(name);
        assert_eq!(r.len(), 7, "{text}");
        let (matched, total) = r[3].split_once('/').unwrap();
        let (matched, total): (usize, usize) = (matched.parse().unwrap(), total.parse().unwrap());
        assert!(matched <= total && total == 12, "{text}");
        // groups active per decode step: 4 layers × 2 groups at most
        let active: f64 = r[4].parse().unwrap();
        assert!((0.0..=8.0).contains(&active), "{text}");
    }
    // fewer groups kept at a lower recall target: more missed rows to refill
    let miss = |name: &str| row(name)[5].parse::<f64>().unwrap();
    let skip = |name: &str| row(name)[1].trim_end_matches('%').parse::<f64>().unwrap();
    assert!(skip("0.8") > skip("1"), "{text}");
    assert!(miss("0.8") > 0.0, "{text}");
}

#[test]
fn head_option_errors() {
    let e = fails(
        &[
            "calibrate",
            MODEL,
            "--weights",
            WEIGHTS,
            "--heads",
            "--head-sparsity",
            "1",
        ],
        1,
    );
    assert!(
        e.contains("--head-sparsity must be in [0, 1), not 1"),
        "{e}"
    );
    // --head-sparsity without --heads is a usage error
    let e = fails(
        &[
            "calibrate",
            MODEL,
            "--weights",
            WEIGHTS,
            "--head-sparsity",
            "0.5",
        ],
        2,
    );
    assert!(e.contains("--heads"), "{e}");
}

fn compile(spec: &str) -> Program {
    let source = std::fs::read_to_string(common::reference::root().join(MODEL)).unwrap();
    let opts = comet_compiler::Options {
        heads: Some(head_sparsify::parse_spec(spec).unwrap()),
        ..Default::default()
    };
    comet_compiler::compile(&source, MODEL, &opts)
        .unwrap_or_else(|e| panic!("{e}"))
        .program
}

/// A head predictor file written by the CLI at group recall `recall`.
fn head_predictor(name: &str, recall: &str) -> PathBuf {
    let out = temp_path(name);
    ok(&[
        "calibrate",
        MODEL,
        "--weights",
        WEIGHTS,
        "--heads",
        "--recall",
        recall,
        "--samples",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    out
}

/// The checkpoint's weights plus the plan's head predictor weights.
fn weights(p: &Program, pred: &Path) -> HashMap<String, ArrayD<f64>> {
    let mut q = p.clone();
    q.info
        .weights
        .retain(|w| !comet_ir::sparse::is_predictor_weight(&w.name));
    let mut w = load_weights(&q);
    w.extend(heads::head_plan_weights(pred, p).unwrap_or_else(|e| panic!("{e}")));
    w
}

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

/// The f64 head predictor the file's folded weights define (threshold folded into `c`).
fn folded_predictor(w: &HashMap<String, ArrayD<f64>>, n: usize) -> HeadPredictor {
    let layers = (0..n)
        .map(|k| {
            let [wn, cn] = comet_ir::sparse::head_predictor_weights(k);
            HeadLayer {
                w: w[&wn].clone().into_dimensionality::<Ix2>().unwrap(),
                bias: w[&cn].clone().into_dimensionality::<Ix1>().unwrap(),
                threshold: 0.0,
                tau: 0.0,
            }
        })
        .collect();
    HeadPredictor { layers }
}

/// What [`two_party_steps`] saw: the greedy tokens, each call's sizes and measurement,
/// and the (token, group) pairs the masks skipped.
struct Steps {
    tokens: Vec<u32>,
    steps: Vec<(DimEnv, Measured)>,
    skipped: u64,
}

/// Prefill and 5 decode steps of reference case 0 on the head-sparse plan `p`, the
/// refill naive or merged: at each call the two parties agree with the fixed-point
/// backend, and the call costs its estimate at the opened masks' counts (the naive
/// refill's extra exchanges aside).
fn two_party_steps(p: &Program, w: &HashMap<String, ArrayD<f64>>, naive: bool) -> Steps {
    let case = &reference()["cases"][0];
    let prompt = numbers(&case["prompt_ids"]);
    let options = comet_runtime::interp::RunOptions {
        naive_refill: naive,
        ..Default::default()
    };
    let mut session = InProcess::new(p, w, 11).with_options(options);
    let mut cache = fixed::Cache::new();
    let (mut ids, mut past) = (prompt.clone(), 0);
    let mut out = Steps {
        tokens: Vec::new(),
        steps: Vec::new(),
        skipped: 0,
    };
    for step in 0..6 {
        let e = env(ids.len(), past);
        let x = common::reference::tokens(&ids);
        let (o, m) = session.call(&x, e).unwrap_or_else(|err| panic!("{err}"));
        let plain = fixed::eval(p, &x, w, e, &mut cache).unwrap();
        let (a, b) = (last_row(&o["logits"]), last_row(&plain["logits"]));
        let err = max_abs_diff(&a, &b);
        assert!(
            err < 0.1,
            "step {step}: 2PC vs fixed point, max |Δ| = {err}"
        );
        assert_eq!(argmax(&a), argmax(&b), "step {step}: greedy tokens differ");
        assert_eq!(m.active.len(), 4, "one count per attention");
        let groups = 2 * e.seq;
        assert!(m.active.iter().all(|&a| a <= groups), "{:?}", m.active);
        out.skipped += m.active.iter().map(|a| groups - a).sum::<u64>();
        for k in &m.kv {
            assert_eq!(
                k.missed_bits > 0,
                k.missed > 0,
                "refill bytes iff missed rows"
            );
            assert!(
                k.missed_bits <= 2 * 2 * k.missed * 32 * 64,
                "K and V rows of hd 32"
            );
        }
        let (online, rounds, offline) = estimate_at(p, e, &m);
        let extra = m.kv_total().exchanges;
        assert_eq!(
            (m.online_bits, m.rounds, m.offline_bits),
            (online, rounds + extra, offline),
            "step {step}"
        );
        past += ids.len();
        ids = vec![argmax(&a)];
        out.tokens.push(ids[0] as u32);
        out.steps.push((e, m));
    }
    // a new sequence in the same session: a prefill at past 0 writes every row anew
    let x = common::reference::tokens(&prompt);
    let e = env(prompt.len(), 0);
    let (o, _) = session.call(&x, e).unwrap_or_else(|err| panic!("{err}"));
    let plain = fixed::eval(p, &x, w, e, &mut fixed::Cache::new()).unwrap();
    let (a, b) = (last_row(&o["logits"]), last_row(&plain["logits"]));
    assert!(max_abs_diff(&a, &b) < 0.1, "a new sequence");
    out
}

/// Prefill and 5 decode steps of reference case 0: the two parties agree with the
/// fixed-point backend on the head-sparse plan at every step, and with the f64 model
/// whose groups are masked by the same predictor; every call costs its estimate at the
/// opened masks' counts, and the masks skip groups. Rows written while their group is
/// inactive wait and are opened when it is next active, in the product's round (merged)
/// or in an exchange per miss request (naive: the same bytes, the extra rounds counted).
#[test]
fn glassllm_head_sparse_two_party_agrees_and_costs_its_estimate() {
    let p = compile("heads:recall=0.9");
    let s = p.options.sparsity.as_ref().unwrap();
    let h = s.heads.as_ref().unwrap();
    assert_eq!((h.first, h.attentions.len()), (0, 4));
    // the leakage: 4 head masks of 2 bits per token, each permuted
    let exposed = exposed_to_server(&p);
    assert_eq!(exposed.len(), 4, "{exposed:?}");
    for e in &exposed {
        assert!(
            matches!(
                e.kind,
                ExposureKind::Mask {
                    blocks: 2,
                    permuted: true,
                    ..
                }
            ),
            "{e:?}"
        );
    }
    let pred = head_predictor("glass-heads-0.9.st", "0.9");
    let w = weights(&p, &pred);
    let merged = two_party_steps(&p, &w, false);
    let tokens = merged.tokens.clone();
    assert!(
        merged.skipped > 0,
        "the masks skipped no group: the sparse path was not exercised"
    );
    // a row written while its group is inactive waits: some call opens fewer rows than
    // it writes, and over the calls each row is opened at most once
    let positions: u64 = merged.steps.iter().map(|(e, _)| e.seq).sum();
    for unit in 0..4 {
        let rows: Vec<u64> = merged.steps.iter().map(|(_, m)| m.kv[unit].rows).collect();
        assert!(
            rows.iter().sum::<u64>() <= 2 * positions,
            "unit {unit}: {rows:?}"
        );
    }
    assert!(
        (merged.steps.iter()).any(|(e, m)| m.kv.iter().any(|k| k.rows < 2 * e.seq)),
        "no row waited for its group"
    );
    assert!(
        (merged.steps.iter()).all(|(_, m)| m.kv.iter().all(|k| k.exchanges == 0)),
        "merged: no extra exchange"
    );
    // the naive refill: the same tokens and bytes, one more round per miss request
    let naive = two_party_steps(&p, &w, true);
    assert_eq!(naive.tokens, tokens);
    let mut requests = 0;
    for ((e, m), (_, n)) in merged.steps.iter().zip(&naive.steps) {
        let extra = n.kv_total().exchanges;
        let asked = 2 * n.kv_total().requests;
        assert_eq!(
            extra, asked,
            "one exchange per miss request and slot (K, V)"
        );
        assert_eq!(n.online_bits, m.online_bits, "past {}", e.past);
        assert_eq!(n.rounds, m.rounds + extra, "past {}", e.past);
        requests += asked;
    }
    assert!(
        requests > 0,
        "no group missed rows: the refill was not exercised"
    );
    // as pass `head-mask-rounds` leaves it without rotary embeddings: `q·kᵀ` dense (K rows
    // open when written), `p·v` head-masked (V rows wait); the same tokens, each call at
    // its estimate, and the V product's misses refilled naively at one exchange each
    let mut mixed = p.clone();
    for id in mixed.graph.ids().collect::<Vec<_>>() {
        let xs = mixed.graph.operands(id).to_vec();
        if let comet_ir::Op::CacheMatMul {
            transpose: true, ..
        } = mixed.graph.node(id).op
        {
            mixed.graph.set_operands(id, &xs[..3]);
        }
    }
    comet_compiler::passes::schedule::run(&mut mixed);
    comet_compiler::passes::cost::run(&mut mixed);
    comet_ir::verify::verify(&mixed).unwrap();
    for naive in [false, true] {
        let run = two_party_steps(&mixed, &w, naive);
        assert_eq!(run.tokens, tokens);
        for (_, m) in &run.steps {
            let (extra, asked) = (m.kv_total().exchanges, m.kv_total().requests);
            assert_eq!(extra, if naive { asked } else { 0 });
        }
    }
    // the f64 model with the same predictor's groups masked chooses the same tokens
    let program = comet_compiler::driver::lower_only(
        &std::fs::read_to_string(common::reference::root().join(MODEL)).unwrap(),
        MODEL,
    )
    .unwrap();
    let base = load_weights(&program);
    let model = comet_runtime::sparsity::TokenModel::new(&program, &base).unwrap();
    let atts = heads::attentions(&model).unwrap();
    let hp = folded_predictor(&w, atts.len());
    let prompt = numbers(&reference()["cases"][0]["prompt_ids"]);
    let ids: Vec<u32> = prompt.iter().map(|&t| t as u32).collect();
    let (f64_tokens, _) =
        heads::greedy_heads(&model, &atts, &[ids], 6, Some(&hp), HeadMode::Predicted).unwrap();
    assert_eq!(f64_tokens[0], tokens);
}

/// The attention core between the two head-masked cache products (scaling, causal mask,
/// softmax) runs on the active rows only: `head_regions` lists its nodes, every
/// communicating one is costed on the gathered rows, and with every (token, group) pair
/// active that cost is the dense node's (the same protocol at the same sizes), with half
/// of them active less. Without a head-masked `q·kᵀ` (OPT, where `head-mask-rounds` drops
/// it) the core runs on every row.
#[test]
fn the_attention_core_runs_on_the_active_rows_only() {
    use comet_ir::head_region::head_regions;
    use comet_ir::protocol::Protocol;
    let source = std::fs::read_to_string(common::reference::root().join(MODEL)).unwrap();
    let lut = comet_compiler::Options {
        heads: Some(head_sparsify::parse_spec("heads").unwrap()),
        approx: comet_ir::ApproxConfig::uniform(comet_ir::ApproxProfile::Lut),
        ..Default::default()
    };
    let lut = comet_compiler::compile(&source, MODEL, &lut)
        .unwrap()
        .program;
    let mut protocols = std::collections::BTreeSet::new();
    for p in [compile("heads"), lut] {
        protocols.extend(core_costs_per_row(&p));
    }
    for proto in [
        Protocol::RowMaxTree,
        Protocol::Lut,
        Protocol::Square,
        Protocol::DreluFss,
        Protocol::Mux,
        Protocol::BeaverMul,
        Protocol::StochasticTrunc,
    ] {
        assert!(
            protocols.contains(&proto),
            "{proto} missing from {protocols:?}"
        );
    }
    // OPT: q·kᵀ keeps no mask, so its core runs on every row
    let source =
        std::fs::read_to_string(common::reference::root().join("examples/opt-1.3b.model")).unwrap();
    let opts = comet_compiler::Options {
        heads: Some(head_sparsify::parse_spec("heads").unwrap()),
        ..Default::default()
    };
    let opt = comet_compiler::compile(&source, "opt-1.3b.model", &opts)
        .unwrap()
        .program;
    assert!(head_regions(&opt).is_empty());
}

/// Checks the per-row costs of glassllm plan `p`'s cores (one per attention; every
/// communicating core node costed per row, its dense cost with every pair active, less
/// with half); returns their protocols.
fn core_costs_per_row(p: &Program) -> std::collections::BTreeSet<comet_ir::protocol::Protocol> {
    use comet_ir::cost::Counts;
    use comet_ir::head_region::head_regions;
    let regions = head_regions(p);
    let units: std::collections::BTreeSet<u32> = regions.values().map(|r| r.unit).collect();
    assert_eq!(units, (0..4).collect(), "one core per attention");
    let costs = p.analyses.costs.as_ref().unwrap();
    let mut protocols = std::collections::BTreeSet::new();
    let mut gathered = 0;
    for (id, c) in costs.iter() {
        let Some(h) = &c.per_head else {
            continue;
        };
        assert!(
            regions.contains_key(&id),
            "{id} is costed per row but not in a core"
        );
        assert!(
            c.online_bits.is_zero(),
            "{id}: the rows' cost replaces the dense one"
        );
        protocols.insert(c.protocol);
        gathered += 1;
        for e in [env(1, 31), env(16, 0), env(1, 511), env(5, 7)] {
            let all = Counts {
                active: vec![(2 * e.seq) as f64; 4],
                kv_rows: vec![0.0; 4],
            };
            let half = Counts {
                active: vec![e.seq as f64; 4],
                ..all.clone()
            };
            let dense = h.dense_online_bits.eval(e) as f64;
            assert_eq!(c.online_at(e, &all), dense, "{id} at {e:?}");
            assert!(c.online_at(e, &half) < dense, "{id} at {e:?}");
        }
    }
    assert_eq!(gathered, regions.len() - local_core_nodes(p, &regions));
    protocols
}

/// The synthetic model with realistic head sparsity: every weight drawn at its shape and
/// seeded; a token's topics make about `active / G` of its groups matter, so the head
/// predictor finds far fewer groups active than the dense count, and the head-sparse
/// decode steps cost their estimate and send less than dense.
#[test]
fn bench_heads_synthetic_is_head_sparse_and_costs_its_estimate() {
    use comet_runtime::sparsity::synthetic_heads::{HeadSyntheticOptions, head_model_weights};
    let source =
        std::fs::read_to_string(common::reference::root().join("examples/llama2-7b.model"))
            .unwrap()
            .replace("vocab = 32000", "vocab = 64")
            .replace("d = 4096", "d = 64")
            .replace("ff = 11008", "ff = 32")
            .replace("n_layers = 32", "n_layers = 2");
    let small = source.replace("heads = 32, kv_heads = 32", "heads = 8, kv_heads = 8");
    let p = comet_compiler::driver::lower_only(&small, "synthetic").unwrap();
    let opts = HeadSyntheticOptions { active: 2, seed: 3 };
    let w = head_model_weights(&p, &opts).unwrap();
    for info in &p.info.weights {
        let shape: Vec<usize> = info.shape.iter().map(|&n| n as usize).collect();
        assert_eq!(w[&info.name].shape(), &shape[..], "{}", info.name);
    }
    assert_eq!(head_model_weights(&p, &opts).unwrap(), w, "seeded");
    let too_many = HeadSyntheticOptions { active: 9, seed: 3 };
    assert!(head_model_weights(&p, &too_many).is_err());
    // 3 orthogonal directions per group and layer: 2 · 32 · 3 > 64
    let wide = comet_compiler::driver::lower_only(&source.replace("d = 64", "d = 128"), "wide");
    let e = head_model_weights(&wide.unwrap(), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("orthogonal directions"), "{e}");

    let text = ok(&["bench", "heads", "--synthetic", "--quick", "--json"]);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert!(v["model"].as_str().unwrap().starts_with("synthetic"), "{v}");
    for r in v["rows"].as_array().unwrap() {
        for plan in ["reopened", "dense", "heads", "heads_naive"] {
            assert_eq!(r[plan]["measured_is_estimate"], true, "{r}");
        }
        // 2 of 8 groups per token and layer matter; the predictor (recall 0.95) keeps
        // well under half of the 16
        let active = r["heads"]["groups_active_per_step"].as_f64().unwrap();
        assert!(active > 0.0 && active < 8.0, "{r}");
        let online = |k: &str| r[k]["online_bits_per_step"].as_u64().unwrap();
        assert!(online("heads") < online("dense"), "{r}");
        assert_eq!(r["f64_masked_tokens_equal_to_two_party"], true, "{r}");
    }
    let o = comet(&["bench", "heads", "--synthetic", "--active", "9"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--active must be 1 to 8, not 9"),
        "{}",
        stderr(&o)
    );
}

/// The core nodes that do not communicate (they run on every row, at no cost).
fn local_core_nodes(
    p: &Program,
    regions: &HashMap<comet_ir::NodeId, comet_ir::head_region::HeadRegion>,
) -> usize {
    let costs = p.analyses.costs.as_ref().unwrap();
    (regions.keys())
        .filter(|id| !costs.get(**id).unwrap().protocol.communicates())
        .count()
}

/// Both cache products of each attention read its head mask, and the verifier refuses a
/// head-masked product whose mask is not a head-sparse unit's (its costs and the runtime's
/// counts name the unit).
#[test]
fn cache_products_read_the_head_mask_of_their_unit() {
    let mut p = compile("heads");
    let masked = (p.graph.ids())
        .filter(|&id| {
            matches!(p.graph.node(id).op, comet_ir::Op::CacheMatMul { .. })
                && p.graph.operands(id).len() == 4
        })
        .count();
    assert_eq!(masked, 8, "q·kᵀ and p·v of 4 attentions");
    comet_ir::verify::verify(&p).unwrap();
    p.options.sparsity.as_mut().unwrap().heads = None;
    let e = comet_ir::verify::verify(&p).unwrap_err().to_string();
    assert!(
        e.contains("is not the mask of a head-sparse attention's block_matmul"),
        "{e}"
    );
}

/// OPT's attention has no rotary embedding: its queries are ready a round before the head
/// mask, so `q·kᵀ` would wait a round per layer for it. Pass `head-mask-rounds` leaves the
/// mask to `p·v` only there (K rows open when written, V rows wait for their group), and
/// the head-sparse plan has the dense plan's rounds, prefill and decode.
#[test]
fn without_rotary_embeddings_only_the_value_product_waits_for_the_mask() {
    let source =
        std::fs::read_to_string(common::reference::root().join("examples/opt-1.3b.model")).unwrap();
    let build = |heads: Option<&str>| {
        let opts = comet_compiler::Options {
            heads: heads.map(|h| head_sparsify::parse_spec(h).unwrap()),
            ..Default::default()
        };
        (comet_compiler::compile(&source, "opt-1.3b.model", &opts))
            .unwrap_or_else(|e| panic!("{e}"))
            .program
    };
    let (dense, sparse) = (build(None), build(Some("heads")));
    let masked: Vec<bool> = (sparse.graph.ids())
        .filter_map(|id| match sparse.graph.node(id).op {
            comet_ir::Op::CacheMatMul { transpose, .. } if sparse.graph.operands(id).len() == 4 => {
                Some(transpose)
            }
            _ => None,
        })
        .collect();
    assert_eq!(masked.len(), 24, "one product per layer keeps the mask");
    assert!(masked.iter().all(|t| !t), "p·v (not transposed) keeps it");
    for e in [env(1, 1024), env(128, 0), env(7, 9)] {
        assert_eq!(
            total_rounds(&sparse).eval(e),
            total_rounds(&dense).eval(e),
            "{e:?}"
        );
    }
    // inspect's naive-refill figure counts the one head-masked product per layer:
    // 24 layers × 32 groups × d(1 − d) at density 0.5
    let plan = temp_path("opt-heads-half.plan");
    let spec = "heads:density=0.5";
    let args = [
        "compile",
        "examples/opt-1.3b.model",
        "--sparsity",
        spec,
        "-o",
    ];
    ok(&[&args[..], &[plan.to_str().unwrap()]].concat());
    let text = ok(&[
        "inspect",
        plan.to_str().unwrap(),
        "--prompt",
        "16",
        "--generate",
        "2",
    ]);
    assert!(
        text.contains("about 192.0 extra rounds per decode step"),
        "{text}"
    );
    // dense (every group active), merged and naive side by side, in the plan's rounds
    let side = text
        .split("Side by side")
        .nth(1)
        .expect("side by side figures");
    let rounds_after = |what: &str| -> u64 {
        let rest = side
            .split(what)
            .nth(1)
            .unwrap_or_else(|| panic!("{what}: {side}"));
        let rest = rest.split(" in ").nth(1).unwrap();
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    let rounds = rounds_after("every group active");
    assert_eq!(rounds_after("merged refill"), rounds, "{side}");
    assert!(
        side.contains(&format!("in about {:.1} rounds", rounds as f64 + 192.0)),
        "{side}"
    );
}

#[test]
fn head_sparse_plans_and_predictors_that_do_not_fit_are_clear_errors() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--sparsity", "heads:recall=2"],
            "recall=2: expected a number in (0, 1]",
        ),
        (
            &["--sparsity", "heads:block=2"],
            "unknown key `block` of `heads`",
        ),
        (
            &["--sparsity", "heads", "--comparison", "gmw"],
            "head-sparse attention needs `--comparison fss`",
        ),
        (&["--sparsity", "heads+heads"], "`heads` is given twice"),
    ];
    for (args, want) in cases {
        let mut all = vec!["compile", MODEL];
        all.extend_from_slice(args);
        let o = comet(&all);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    // a model whose attention is written from primitives (GPT-2's fused QKV)
    let o = comet(&["compile", "examples/gpt2.model", "--sparsity", "heads"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("has no attention written with the library"),
        "{}",
        stderr(&o)
    );

    let plan = temp_path("glass-heads.plan");
    ok(&[
        "compile",
        MODEL,
        "--sparsity",
        "heads",
        "-o",
        plan.to_str().unwrap(),
    ]);
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
            args.extend(["--head-predictor", p.to_str().unwrap()]);
        }
        let o = comet(&args);
        assert!(!o.status.success());
        stderr(&o)
    };
    // the leakage report lists the four KV-group masks, each under its secret permutation
    let leak = ok(&["inspect", plan.to_str().unwrap(), "--leakage"]);
    let lines: Vec<&str> = leak
        .lines()
        .filter(|l| l.contains("KV-group mask of the head-sparse attention (2 groups"))
        .collect();
    assert_eq!(lines.len(), 4, "{leak}");
    assert!(
        lines.iter().all(|l| l.contains("secret permutation")),
        "{leak}"
    );
    let e = run(None);
    assert!(
        e.contains("give its head predictor with --head-predictor FILE"),
        "{e}"
    );
    let e = run(Some(Path::new(WEIGHTS)));
    assert!(e.contains("not a head predictor file"), "{e}");
    // the client refuses the masks unless it accepts them
    let o = comet(&[
        "run",
        plan.to_str().unwrap(),
        "--weights",
        WEIGHTS,
        "--prompt-ids",
        "41,69",
        "--generate",
        "1",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--accept-leakage"), "{}", stderr(&o));
}

/// `comet bench heads --quick`: every plan costs its estimate (the reopened baseline, the
/// dense and the head-sparse plan, merged and naive); the head-sparse decode steps open
/// masks with fewer active groups than the dense plan's 8; the naive refill gives the
/// merged one's tokens, the reopened baseline the dense plan's, and sends more.
#[test]
fn bench_heads_quick_measures_both_plans() {
    let text = ok(&["bench", "heads", "--quick", "--json"]);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        for plan in ["reopened", "dense", "heads", "heads_naive"] {
            assert_eq!(r[plan]["measured_is_estimate"], true, "{r}");
        }
        assert_eq!(r["naive_tokens_equal_to_merged"], true, "{r}");
        // the seeded masks miss rows in the 3 decode steps: refilled merged in no extra
        // round, naively in some, with their bytes reported
        for plan in ["heads", "heads_naive"] {
            let x = &r[plan];
            assert!(x["kv_missed_rows_per_step"].as_f64().unwrap() > 0.0, "{r}");
            assert!(x["refill_bits_per_step"].as_f64().unwrap() > 0.0, "{r}");
        }
        assert_eq!(r["heads"]["refill_exchanges_per_step"].as_f64(), Some(0.0));
        assert!(
            r["heads_naive"]["refill_exchanges_per_step"]
                .as_f64()
                .unwrap()
                > 0.0
        );
        assert_eq!(r["reopened_tokens_equal_to_dense"], r["tokens"], "{r}");
        let online = |k: &str| r[k]["online_bits_per_step"].as_u64().unwrap();
        assert!(online("reopened") > online("dense"), "{r}");
        let active = r["heads"]["groups_active_per_step"].as_f64().unwrap();
        assert!((0.0..=8.0).contains(&active), "{r}");
        assert_eq!(
            r["dense"]["groups_active_per_step"].as_f64(),
            Some(0.0),
            "{r}"
        );
        assert_eq!(r["f64_masked_tokens_equal_to_two_party"], true, "{r}");
    }
    let o = comet(&["bench", "heads", "--quick", "--recall", "0"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--recall must be in (0, 1], not 0"),
        "{}",
        stderr(&o)
    );
}
