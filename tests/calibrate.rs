//! `comet calibrate` end to end: the per-layer table on the shipped model and on a
//! synthetic OPT, the predictor file it writes (read back, refused by a model it does not
//! fit), the curve, and wrong option values.

mod common;

use common::{comet, stderr, stdout, temp_path};

const MODEL: &str = "examples/glassllm.model";
const WEIGHTS: &str = "models/glassllm-en/model.safetensors";

/// The per-layer rows: (recall, predicted block sparsity %, true block %, true neuron %).
fn rows(text: &str) -> Vec<(f64, f64, f64, f64)> {
    text.lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            (t.len() >= 7 && t[0].parse::<usize>().is_ok() && t[1] == "layer").then(|| {
                let pct = |s: &str| s.trim_end_matches('%').parse::<f64>().unwrap();
                (t[3].parse().unwrap(), pct(t[4]), pct(t[5]), pct(t[6]))
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
fn glassllm_per_layer_table_file_and_curve() {
    let out = temp_path("glassllm-predictor.safetensors");
    let text = ok(&[
        "calibrate",
        MODEL,
        "--weights",
        WEIGHTS,
        "--block",
        "16",
        "--rank",
        "32",
        "--recall",
        "0.95",
        "--samples",
        "3",
        "--sample-len",
        "24",
        "--out",
        out.to_str().unwrap(),
        "--curve",
    ]);
    assert!(
        text.contains("4 FFNs (gated silu, d 128, ff 341), blocks of 16"),
        "{text}"
    );
    let r = rows(&text);
    assert_eq!(r.len(), 4, "{text}");
    for (recall, pred, true_block, neuron) in &r {
        assert!(*recall >= 0.95, "{text}");
        assert!(
            (neuron - 90.0).abs() < 0.2,
            "default magnitude sparsity 90%: {text}"
        );
        assert!(*pred > 0.0 && *pred <= *true_block + 5.0, "{text}");
    }
    // the curve runs the reference prompts beside the weights, densely equal to them
    assert!(
        text.contains("dense f64 greedy tokens equal to the reference file: 48/48"),
        "{text}"
    );
    assert!(text.contains("magnitude sparsity (fraction of neurons counted inactive)"));
    assert!(
        text.contains("every block skipped: agreement   0/48"),
        "{text}"
    );

    // the file reads back for the same model (thresholds calibrated again)
    let again = ok(&[
        "calibrate",
        MODEL,
        "--weights",
        WEIGHTS,
        "--predictor",
        out.to_str().unwrap(),
        "--samples",
        "2",
        "--sample-len",
        "16",
    ]);
    assert_eq!(rows(&again).len(), 4, "{again}");
    assert!(
        again.contains("blocks of 16 (22 per FFN), rank 32"),
        "{again}"
    );

    // and is refused by a model with another FFN count
    let e = fails(
        &[
            "calibrate",
            "examples/opt-1.3b.model",
            "--synthetic",
            "opt-125m",
            "--layers",
            "1",
            "--predictor",
            out.to_str().unwrap(),
            "--samples",
            "1",
            "--sample-len",
            "4",
        ],
        1,
    );
    assert!(
        e.contains("it has predictors for 4 FFNs (metadata `ffns`), model `opt_1_3b` has 1"),
        "{e}"
    );
}

#[test]
fn synthetic_opt_125m_is_about_90_percent_sparse_per_layer() {
    let text = ok(&[
        "calibrate",
        "examples/opt-1.3b.model",
        "--synthetic",
        "opt-125m",
        "--layers",
        "2",
        "--block",
        "32",
        "--rank",
        "64",
        "--samples",
        "2",
        "--sample-len",
        "16",
    ]);
    assert!(text.contains("2 FFNs (relu, d 768, ff 3072), blocks of 32 (96 per FFN), rank 64"));
    let r = rows(&text);
    assert_eq!(r.len(), 2, "{text}");
    for (recall, pred, true_block, neuron) in r {
        assert!(recall >= 0.95, "{text}");
        assert!((85.0..95.0).contains(&neuron), "{text}");
        assert!(true_block > 75.0 && pred > 70.0, "{text}");
    }
}

/// `--train`: least-squares predictors on the attention input of a synthetic OPT, with
/// thresholds calibrated on separate samples; the file records what they read.
#[test]
fn synthetic_opt_trained_beside_attention_skips_blocks() {
    let out = temp_path("trained-opt.pred");
    let text = ok(&[
        "calibrate",
        "examples/opt-1.3b.model",
        "--synthetic",
        "opt-125m",
        "--layers",
        "2",
        "--train",
        "--train-samples",
        "16",
        "--samples",
        "4",
        "--sample-len",
        "16",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(text.contains("trained by ridge least squares"), "{text}");
    assert!(
        text.contains("predictor input: the layer input after the pre-attention norm"),
        "{text}"
    );
    assert!(text.contains("score sum"), "{text}");
    let r = rows(&text);
    assert_eq!(r.len(), 2, "{text}");
    for (recall, pred, true_block, _) in r {
        assert!(recall >= 0.95, "{text}");
        assert!(pred > 10.0 && pred < true_block, "{text}");
    }
    // read back: the thresholds calibrate again, the input stays `attention`
    let again = ok(&[
        "calibrate",
        "examples/opt-1.3b.model",
        "--synthetic",
        "opt-125m",
        "--layers",
        "2",
        "--predictor",
        out.to_str().unwrap(),
        "--samples",
        "2",
        "--sample-len",
        "8",
    ]);
    assert!(
        again.contains("predictor input: the layer input after the pre-attention norm"),
        "{again}"
    );
}

#[test]
fn wrong_files_and_option_values_are_clear_errors() {
    // a file that is not a predictor
    let e = fails(
        &[
            "calibrate",
            MODEL,
            "--weights",
            WEIGHTS,
            "--predictor",
            WEIGHTS,
        ],
        1,
    );
    assert!(
        e.contains("no metadata `format` = `comet-sparsity-predictor`"),
        "{e}"
    );
    let e = fails(
        &[
            "calibrate",
            MODEL,
            "--weights",
            WEIGHTS,
            "--predictor",
            "nope.st",
        ],
        1,
    );
    assert!(e.contains("cannot read `nope.st`"), "{e}");
    // values out of range
    let e = fails(
        &["calibrate", MODEL, "--weights", WEIGHTS, "--recall", "0"],
        1,
    );
    assert!(e.contains("--recall must be in (0, 1], not 0"), "{e}");
    let e = fails(
        &[
            "calibrate",
            MODEL,
            "--weights",
            WEIGHTS,
            "--sparsity",
            "1.5",
        ],
        1,
    );
    assert!(e.contains("--sparsity must be in [0, 1), not 1.5"), "{e}");
    let e = fails(
        &["calibrate", MODEL, "--weights", WEIGHTS, "--rank", "129"],
        1,
    );
    assert!(
        e.contains("rank 129 must be between 1 and min(d, ff) = 128"),
        "{e}"
    );
    let e = fails(
        &["calibrate", MODEL, "--weights", WEIGHTS, "--block", "342"],
        1,
    );
    assert!(
        e.contains("block size 342 must be between 1 and the FFN width 341"),
        "{e}"
    );
    // an SVD predictor reads the FFN's input; a trained one fits block sums
    let e = fails(
        &[
            "calibrate",
            MODEL,
            "--weights",
            WEIGHTS,
            "--input",
            "attention",
        ],
        1,
    );
    assert!(e.contains("--input attention needs --train"), "{e}");
    let e = fails(
        &[
            "calibrate",
            MODEL,
            "--weights",
            WEIGHTS,
            "--train",
            "--score",
            "max",
        ],
        1,
    );
    assert!(
        e.contains("--train fits block sums: use --score sum"),
        "{e}"
    );
    // calibration inputs of the wrong shape
    let ids = temp_path("calibrate-ids.txt");
    std::fs::write(&ids, "5 6 7\n8 9 4096\n").unwrap();
    let e = fails(
        &[
            "calibrate",
            MODEL,
            "--weights",
            WEIGHTS,
            "--prompts",
            ids.to_str().unwrap(),
        ],
        1,
    );
    assert!(
        e.contains("calibration sample 1, token 2: id 4096 is outside the vocabulary [0, 1024)"),
        "{e}"
    );
    std::fs::write(&ids, "5 6 seven\n").unwrap();
    let e = fails(
        &[
            "calibrate",
            MODEL,
            "--weights",
            WEIGHTS,
            "--prompts",
            ids.to_str().unwrap(),
        ],
        1,
    );
    assert!(e.contains("line 1: `seven` is not a token id"), "{e}");
    // --synthetic needs ReLU FFNs with a bias
    let e = fails(
        &[
            "calibrate",
            MODEL,
            "--synthetic",
            "opt-125m",
            "--layers",
            "1",
        ],
        1,
    );
    assert!(e.contains("ReLU"), "{e}");
    let e = fails(
        &["calibrate", MODEL, "--weights", WEIGHTS, "--layers", "1"],
        1,
    );
    assert!(
        e.contains("--layers applies to --synthetic models only"),
        "{e}"
    );
    // usage mistakes (clap, status 2)
    fails(&["calibrate", MODEL], 2);
    fails(
        &[
            "calibrate",
            MODEL,
            "--weights",
            WEIGHTS,
            "--synthetic",
            "opt-125m",
        ],
        2,
    );
    fails(&["calibrate", MODEL, "--synthetic", "opt-7b"], 2);
    fails(
        &["calibrate", MODEL, "--weights", WEIGHTS, "--block", "0"],
        2,
    );
    fails(
        &["calibrate", MODEL, "--weights", WEIGHTS, "--recall", "high"],
        2,
    );
    fails(
        &[
            "calibrate",
            MODEL,
            "--weights",
            WEIGHTS,
            "--predictor",
            "p",
            "--rank",
            "8",
        ],
        2,
    );
    // a missing model file
    let e = fails(&["calibrate", "nope.model", "--weights", WEIGHTS], 1);
    assert!(e.contains("cannot read model `nope.model`"), "{e}");
}
