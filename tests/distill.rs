//! `comet distill` end to end: a short distillation of the shipped model for `pcf` writes
//! a checkpoint with the input's tensors, which two parties then run with the pcf plan:
//! tokens equal to the fixed-point backend's on the same weights, measured bytes, rounds
//! and dealer bytes equal to the plan's estimate in every call. And the command's errors.

mod common;
use common::*;

use comet_ir::{ApproxConfig, ApproxProfile, DimEnv};
use comet_runtime::{fixed, interp};
use ndarray::{ArrayD, Axis, IxDyn};
use std::collections::HashMap;

const MODEL: &str = "examples/glassllm.model";
const WEIGHTS: &str = "models/glassllm-en/model.safetensors";

fn argmax(row: &[f64]) -> u64 {
    (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b }) as u64
}

fn last_row(out: &HashMap<String, ArrayD<f64>>) -> Vec<f64> {
    let l = &out["logits"];
    l.index_axis(Axis(0), l.shape()[0] - 1)
        .iter()
        .copied()
        .collect()
}

#[test]
fn a_distilled_pcf_checkpoint_runs_for_two_parties() {
    let dir = temp_path("distill-two-party");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("pcf.safetensors");
    let report = dir.join("report.json");
    let o = comet(&[
        "distill",
        MODEL,
        "--weights",
        WEIGHTS,
        "--approx",
        "pcf",
        "--steps",
        "2",
        "--batch",
        "2",
        "--seq",
        "8",
        "--eval-sequences",
        "1",
        "--quiet",
        "-o",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "--quiet: {}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["approx"], "pcf");
    assert_eq!(r["curve"].as_array().unwrap().len(), 2);
    assert!(r["after"]["student_perplexity"].as_f64().unwrap() > 1.0);

    let source = std::fs::read_to_string(MODEL).unwrap();
    let opts = comet_compiler::Options {
        approx: ApproxConfig::uniform(ApproxProfile::Pcf),
        ..Default::default()
    };
    let program = comet_compiler::compile(&source, MODEL, &opts)
        .unwrap()
        .program;
    let original = comet_runtime::weights::load(WEIGHTS.as_ref(), &program.info.weights).unwrap();
    let weights = comet_runtime::weights::load(&out, &program.info.weights).unwrap();
    for (name, w) in &weights {
        assert_eq!(w.shape(), original[name].shape(), "{name}");
    }
    assert!(
        weights.iter().any(|(n, w)| *w != original[n]),
        "training changed the weights"
    );

    let prompt: Vec<f64> = vec![41.0, 69.0, 186.0, 960.0, 94.0, 437.0];
    let mut session = interp::InProcess::new(&program, &weights, 5);
    let mut cache = fixed::Cache::new();
    let (mut fed, mut past) = (prompt, 0u64);
    let (mut two, mut plain) = (Vec::new(), Vec::new());
    for call in 0..3 {
        let env = DimEnv {
            seq: fed.len() as u64,
            past,
        };
        let inputs = HashMap::from([(
            "tokens".to_string(),
            ArrayD::from_shape_vec(IxDyn(&[fed.len()]), fed.clone()).unwrap(),
        )]);
        let (o2, measured) = session.call(&inputs, env).unwrap();
        let of = fixed::eval(&program, &inputs, &weights, env, &mut cache).unwrap();
        let (t2, tf) = (argmax(&last_row(&o2)), argmax(&last_row(&of)));
        two.push(t2);
        plain.push(tf);
        assert_eq!(
            (measured.online_bits, measured.rounds, measured.offline_bits),
            estimate(&program, env),
            "call {call}: measured = estimate"
        );
        past += fed.len() as u64;
        fed = vec![tf as f64];
    }
    assert_eq!(
        two, plain,
        "two parties generate the fixed-point backend's tokens"
    );
}

#[test]
fn distill_errors_name_the_place_and_the_expectation() {
    let dir = temp_path("distill-errors");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("o.safetensors");
    let out = out.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "distill",
            MODEL,
            "--weights",
            WEIGHTS,
            "--steps",
            "1",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        comet(&args)
    };
    // an unknown profile: a usage error listing the profiles
    let o = run(&["--approx", "fast", "-o", out]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown approximation profile `fast`: expected one of exact, pcf"),
        "{}",
        stderr(&o)
    );
    // weights that do not fit the model
    let o = comet(&[
        "distill",
        "examples/gpt2.model",
        "--weights",
        WEIGHTS,
        "--approx",
        "pcf",
        "-o",
        out,
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("weights `models/glassllm-en/model.safetensors`") && e.contains("needs tensor"),
        "{e}"
    );
    // an unwritable output, refused before training
    let o = run(&["--approx", "pcf", "-o", "/nonexistent-dir/x.safetensors"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("cannot write checkpoint `/nonexistent-dir/x.safetensors`"),
        "{e}"
    );
    // a profile without gradients, and one that changes nothing
    let o = run(&["--approx", "lut", "-o", out]);
    assert!(
        stderr(&o).contains("has no gradient in `comet distill`"),
        "{}",
        stderr(&o)
    );
    let o = run(&["--approx", "exact", "-o", out]);
    assert!(
        stderr(&o).contains("the student would be the teacher"),
        "{}",
        stderr(&o)
    );
    // a state file of another run
    let o = run(&["--approx", "pcf", "-o", out, "--resume", WEIGHTS]);
    assert!(
        stderr(&o).contains("not a `comet distill` state file"),
        "{}",
        stderr(&o)
    );
    assert!(
        !std::path::Path::new(out).exists(),
        "no output after an error"
    );
    let o = run(&["--approx", "pcf", "-o", out, "--seq", "1"]);
    assert!(
        stderr(&o).contains("--seq must be at least 2"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bench_approx_compares_a_distilled_checkpoint_with_the_original() {
    let dir = temp_path("distill-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("pcf.safetensors");
    let o = comet(&[
        "distill",
        MODEL,
        "--weights",
        WEIGHTS,
        "--approx",
        "pcf",
        "--steps",
        "1",
        "--batch",
        "1",
        "--seq",
        "4",
        "--eval-sequences",
        "0",
        "--quiet",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let arg = format!("pcf={}", out.display());
    let o = comet(&[
        "bench",
        "approx",
        "--quick",
        "--profiles",
        "pcf",
        "--distilled",
        &arg,
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let profiles = v["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 2);
    assert!(profiles[0]["distilled"].is_null());
    assert_eq!(profiles[1]["distilled"], out.display().to_string());
    let rows = v["distilled"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let (before, after) = (&rows[0]["original"], &rows[0]["distilled"]);
    assert_eq!(before["teacher_perplexity"], after["teacher_perplexity"]);
    assert_ne!(before["student_perplexity"], after["student_perplexity"]);
    // a malformed --distilled is a usage error naming the form
    let o = comet(&["bench", "approx", "--quick", "--distilled", "pcf"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("expected PROFILE=FILE"),
        "{}",
        stderr(&o)
    );
}
