//! Head sparsity end to end: `comet calibrate --heads` (per-layer group recall and
//! sparsity on the shipped model, the curve with greedy tokens and KV misses), and wrong
//! option values.

mod common;

use common::{comet, stderr, stdout};

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
