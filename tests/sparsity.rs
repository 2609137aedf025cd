//! Sparsity foundations on the shipped examples: FFN detection on every example's
//! semantic-stage program, and calibration and masked runs on the real glassllm
//! checkpoint and on a shrunk synthetic OPT (random weights with clustered ReLU sparsity).

mod common;

use comet_compiler::driver::lower_only;
use comet_ir::ffn::find_ffns;
use comet_ir::{Program, UnaryFn};
use comet_runtime::sparsity::calibrate::{EvalSet, MaskMode, random_sequences};
use comet_runtime::sparsity::svd::SvdOptions;
use comet_runtime::sparsity::synthetic::{SyntheticOptions, relu_model_weights};
use comet_runtime::sparsity::{
    Activity, Calibration, Predictor, PredictorOptions, Score, TokenModel, capture,
};
use common::reference::{load_weights, numbers, reference, root};

fn lowered(name: &str) -> Program {
    let path = root().join(format!("examples/{name}.model"));
    let source = std::fs::read_to_string(&path).unwrap();
    lower_only(&source, &path.display().to_string()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// (FFNs, activation, gated, d, ff, act weight of FFN 1, its bias, down weight, down bias).
#[test]
fn every_example_s_ffns_are_found() {
    struct Want {
        name: &'static str,
        count: usize,
        func: UnaryFn,
        gated: bool,
        d: u64,
        ff: u64,
        act: &'static str,
        act_bias: Option<&'static str>,
        mul: Option<&'static str>,
        down: &'static str,
        down_bias: Option<&'static str>,
    }
    let wants = [
        Want {
            name: "gpt2",
            count: 12,
            func: UnaryFn::Gelu,
            gated: false,
            d: 768,
            ff: 3072,
            act: "mlp.1.w_fc",
            act_bias: Some("mlp.1.b_fc"),
            mul: None,
            down: "mlp.1.w_proj",
            down_bias: Some("mlp.1.b_proj"),
        },
        Want {
            name: "opt-1.3b",
            count: 24,
            func: UnaryFn::Relu,
            gated: false,
            d: 2048,
            ff: 8192,
            act: "layer.1.w1",
            act_bias: Some("layer.1.b1"),
            mul: None,
            down: "layer.1.w2",
            down_bias: Some("layer.1.b2"),
        },
        Want {
            name: "llama2-7b",
            count: 32,
            func: UnaryFn::Silu,
            gated: true,
            d: 4096,
            ff: 11008,
            act: "layer.1.w_gate",
            act_bias: None,
            mul: Some("layer.1.w_up"),
            down: "layer.1.w_down",
            down_bias: None,
        },
        Want {
            name: "bert-base",
            count: 12,
            func: UnaryFn::Gelu,
            gated: false,
            d: 768,
            ff: 3072,
            act: "layer.1.w1",
            act_bias: Some("layer.1.b1"),
            mul: None,
            down: "layer.1.w2",
            down_bias: Some("layer.1.b2"),
        },
        Want {
            name: "glassllm",
            count: 4,
            func: UnaryFn::Silu,
            gated: true,
            d: 128,
            ff: 341,
            act: "decoder.1.w1",
            act_bias: None,
            mul: Some("decoder.1.w3"),
            down: "decoder.1.w2",
            down_bias: None,
        },
    ];
    for w in wants {
        let p = lowered(w.name);
        let ffns = find_ffns(&p);
        assert_eq!(ffns.len(), w.count, "{}", w.name);
        for (i, f) in ffns.iter().enumerate() {
            assert_eq!(
                f.layer,
                Some(i as u32),
                "{}: FFN {i} in layer order",
                w.name
            );
            assert_eq!(
                (f.func, f.is_gated(), f.d, f.ff),
                (w.func, w.gated, w.d, w.ff)
            );
        }
        let f = &ffns[1];
        assert_eq!(f.weights.act, w.act, "{}", w.name);
        assert_eq!(f.weights.act_bias.as_deref(), w.act_bias, "{}", w.name);
        assert_eq!(f.weights.mul.as_deref(), w.mul, "{}", w.name);
        assert_eq!(f.weights.down, w.down, "{}", w.name);
        assert_eq!(f.weights.down_bias.as_deref(), w.down_bias, "{}", w.name);
        // after `expand` the activations are primitives: nothing is found
        if w.name == "glassllm" {
            let source = std::fs::read_to_string(root().join("examples/glassllm.model"));
            let full = comet_compiler::compile(
                &source.unwrap(),
                "glassllm.model",
                &comet_compiler::Options::default(),
            )
            .unwrap();
            assert!(find_ffns(&full.program).is_empty());
        }
    }
}

#[test]
fn glassllm_calibrates_and_runs_densely_like_its_reference() {
    let p = lowered("glassllm");
    let w = load_weights(&p);
    let model = TokenModel::new(&p, &w).unwrap();
    assert_eq!((model.vocab, model.max_len), (1024, None));
    let samples = random_sequences(1024, 4, 24, 3);
    let captured = capture(&model, &samples).unwrap();
    let opts = PredictorOptions {
        block: 16,
        rank: 32,
        score: Score::Max,
        svd: SvdOptions::default(),
    };
    let mut pred = Predictor::from_weights(&p, &model.ffns, &w, &opts).unwrap();
    let cal = Calibration::new(&model, &pred, &captured).unwrap();
    let reports = cal.solve(Activity::Magnitude(0.9), 0.95).unwrap();
    for r in &reports {
        assert!(r.recall >= 0.95, "{r:?}");
        assert!((r.true_neuron_sparsity - 0.9).abs() < 1e-3, "{r:?}");
        // SwiGLU magnitude sparsity is not clustered: far fewer whole blocks are inactive
        assert!(r.true_block_sparsity < 0.6, "{r:?}");
    }
    Calibration::apply(&mut pred, &reports, Activity::Magnitude(0.9), 0.95);

    // the dense masked-run machinery is the model: the reference's greedy tokens
    let cases = reference()["cases"].as_array().unwrap().clone();
    let prompts: Vec<Vec<u32>> = cases
        .iter()
        .map(|c| {
            numbers(&c["prompt_ids"])
                .iter()
                .map(|&x| x as u32)
                .collect()
        })
        .collect();
    let set = EvalSet::new(&model, prompts, 16).unwrap();
    for (got, c) in set.dense_tokens.iter().zip(&cases) {
        let want: Vec<u32> = numbers(&c["greedy_ids"])
            .iter()
            .map(|&x| x as u32)
            .collect();
        assert_eq!(got, &want);
    }
    // an oracle mask at 0 sparsity keeps everything; skipping every block is very wrong
    let mut keep = pred.clone();
    let all = cal.solve(Activity::Magnitude(0.0), 1.0).unwrap();
    Calibration::apply(&mut keep, &all, Activity::Magnitude(0.0), 1.0);
    let oracle = set.compare(&model, Some(&keep), MaskMode::Oracle).unwrap();
    assert_eq!((oracle.total_matched(), oracle.max_logits_error), (48, 0.0));
    let off = set.compare(&model, Some(&pred), MaskMode::AllOff).unwrap();
    assert!(
        off.total_matched() < 10 && off.max_logits_error > 5.0,
        "{off:?}"
    );
}

/// OPT's architecture shrunk (d 64, 4 heads, ff 256, 2 layers, vocab 64) with synthetic
/// weights: ~90% of the ReLU neurons inactive, whole blocks inactive, and a rank-r
/// predictor that sees every cluster direction reaches the recall with most blocks
/// skipped and the greedy tokens kept.
#[test]
fn synthetic_opt_is_sparse_in_blocks_and_predictable() {
    let path = root().join("examples/opt-1.3b.model");
    let source = std::fs::read_to_string(&path).unwrap();
    let source = source
        .replace("vocab = 50272", "vocab = 64")
        .replace("d = 2048", "d = 64")
        .replace("heads = 32", "heads = 4")
        .replace("ff = 8192", "ff = 256")
        .replace("max_pos = 2048", "max_pos = 64")
        .replace("n_layers = 24", "n_layers = 2");
    let p = lower_only(&source, "opt-small.model").unwrap();
    let opts = SyntheticOptions {
        cluster: 16,
        ..SyntheticOptions::default()
    };
    let w = relu_model_weights(&p, &opts).unwrap();
    let model = TokenModel::new(&p, &w).unwrap();
    assert_eq!((model.vocab, model.max_len), (64, Some(64)));
    let captured = capture(&model, &random_sequences(64, 8, 24, 1)).unwrap();
    let popts = PredictorOptions {
        block: 16,
        rank: 32, // 16 clusters
        score: Score::Max,
        svd: SvdOptions::default(),
    };
    let mut pred = Predictor::from_weights(&p, &model.ffns, &w, &popts).unwrap();
    let cal = Calibration::new(&model, &pred, &captured).unwrap();
    let reports = cal.solve(Activity::Nonzero, 0.95).unwrap();
    for r in &reports {
        assert!(r.recall >= 0.95, "{r:?}");
        assert!((0.85..0.95).contains(&r.true_neuron_sparsity), "{r:?}");
        assert!(r.true_block_sparsity > 0.75, "{r:?}");
        assert!(r.predicted_block_sparsity > 0.6, "{r:?}");
    }
    Calibration::apply(&mut pred, &reports, Activity::Nonzero, 0.95);
    let set = EvalSet::new(&model, random_sequences(64, 3, 8, 7), 8).unwrap();
    let oracle = set.compare(&model, Some(&pred), MaskMode::Oracle).unwrap();
    assert_eq!(
        oracle.max_logits_error, 0.0,
        "inactive ReLU blocks are exact zeros"
    );
    let predicted = set
        .compare(&model, Some(&pred), MaskMode::Predicted)
        .unwrap();
    let off = set.compare(&model, Some(&pred), MaskMode::AllOff).unwrap();
    assert!(predicted.stats.recall() > 0.85, "{:?}", predicted.stats);
    assert!(predicted.stats.skipped() > 0.6, "{:?}", predicted.stats);
    assert!(
        predicted.max_logits_error < 0.5 * off.max_logits_error,
        "{predicted:?} vs {off:?}"
    );
}
