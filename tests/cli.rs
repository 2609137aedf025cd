//! The `comet` binary as a user runs it: exit status and what it prints.

mod common;
use common::*;

#[test]
fn compile_writes_a_plan_that_show_reads() {
    let plan = temp_path("glassllm.plan");
    let out = comet(&[
        "compile",
        "examples/glassllm.model",
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = comet(&["show", plan.to_str().unwrap()]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let direct = comet(&["compile", "examples/glassllm.model", "--emit", "plan"]);
    assert_eq!(shown.stdout, direct.stdout);
    assert!(String::from_utf8_lossy(&direct.stdout).contains("blocks.3.ffn.W2"));
}

#[test]
fn print_after_lower_prints_the_ir() {
    let out = comet(&[
        "compile",
        "examples/glassllm.model",
        "--emit",
        "ir",
        "--print-after",
        "lower",
    ]);
    assert!(out.status.success());
    assert!(stderr(&out).starts_with("; IR after `lower`"));
    assert!(stderr(&out).contains("= rms_norm("));
}

#[test]
fn unknown_pass_is_an_error() {
    let out = comet(&[
        "compile",
        "examples/glassllm.model",
        "--print-after",
        "inline",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown pass `inline`: expected one of lower"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn source_errors_render_with_place_and_exit_1() {
    let bad = temp_path("bad.model");
    std::fs::write(&bad, "model m {\n  dim d = 4, seq;\n  input x: fixed[seq, d] from client;\n  output y = matmul(x, x) to client;\n}\n").unwrap();
    let out = comet(&["compile", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("invalid operands for `matmul`"), "{err}");
    assert!(err.contains("bad.model:4:"), "{err}");
    assert!(err.contains("left is [seq, 4], right is [seq, 4]"), "{err}");
}

#[test]
fn missing_model_file_is_an_error() {
    let out = comet(&["compile", "examples/nope.model"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read model `examples/nope.model`"));
}

#[test]
fn corrupt_and_truncated_plans_are_errors() {
    let plan = temp_path("gpt2.plan");
    let out = comet(&[
        "compile",
        "examples/gpt2.model",
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&plan).unwrap();
    let cases = [
        (
            "truncated.plan",
            text[..text.len() / 2].to_string(),
            "not a valid plan file: EOF while parsing",
        ),
        (
            "garbage.plan",
            "\u{1}\u{2}binary".to_string(),
            "not a valid plan file",
        ),
        (
            "version.plan",
            text.replacen("\"version\": 1", "\"version\": 99", 1),
            "plan format version 99 is not supported",
        ),
        (
            "unknown.plan",
            text.replacen("\"format\"", "\"extra\": 1, \"format\"", 1),
            "unknown field `extra`",
        ),
        (
            "tag.plan",
            text.replacen("comet-plan", "other", 1),
            "not a Comet plan",
        ),
        (
            "forward.plan",
            text.replacen(
                "\"inputs\": [\n        0",
                "\"inputs\": [\n        999999",
                1,
            ),
            "must refer to earlier nodes",
        ),
    ];
    for (name, body, expected) in cases {
        let path = temp_path(name);
        std::fs::write(&path, body).unwrap();
        let out = comet(&["show", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = stderr(&out);
        assert!(err.contains(expected), "{name}: {err}");
        assert!(
            err.contains(name),
            "{name}: the message names the file: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn inconsistent_plan_is_caught_by_the_verifier() {
    let plan = temp_path("glass-bad.plan");
    comet(&[
        "compile",
        "examples/glassllm.model",
        "-o",
        plan.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&plan).unwrap();
    let broken = text.replacen("\"heads\": 4", "\"heads\": 8", 1);
    assert_ne!(broken, text);
    let path = temp_path("glass-broken.plan");
    std::fs::write(&path, broken).unwrap();
    let out = comet(&["show", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the plan is inconsistent"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_generates_the_reference_tokens_in_two_party_computation() {
    let plan = temp_path("run-glassllm.plan");
    let out = comet(&[
        "compile",
        "examples/glassllm.model",
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let args = [
        "run",
        plan.to_str().unwrap(),
        "--weights",
        "models/glassllm-en/model.safetensors",
    ];
    let out = comet(
        &[
            &args[..],
            &[
                "--prompt-ids",
                "41,69,186,960,94,437",
                "--generate",
                "2",
                "--json",
            ],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    // the first two greedy tokens of "Once upon a time" in ../shared/reference
    assert_eq!(v["tokens"], serde_json::json!([4, 75]));
    for call in v["calls"].as_array().unwrap() {
        assert_eq!(
            call["measured"]["online_bits"],
            call["estimated"]["online_bits"]
        );
        assert_eq!(call["measured"]["rounds"], call["estimated"]["rounds"]);
        assert_eq!(
            call["measured"]["offline_bits"],
            call["estimated"]["offline_bits"]
        );
    }
    assert!(
        stderr(&out).contains("token   2/2"),
        "progress lines: {}",
        stderr(&out)
    );
}

#[test]
fn run_with_another_models_weights_is_an_error() {
    let plan = temp_path("run-gpt2.plan");
    let out = comet(&[
        "compile",
        "examples/gpt2.model",
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let out = comet(&[
        "run",
        plan.to_str().unwrap(),
        "--weights",
        "models/glassllm-en/model.safetensors",
        "--prompt-ids",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("wte.weight"),
        "names the missing tensor: {}",
        stderr(&out)
    );
}

#[test]
fn run_needs_a_generating_plan() {
    let model = temp_path("no-tokens.model");
    std::fs::write(&model, "model m { dim seq, past; input x: fixed[seq, 4] from client; weight w: [4, 4];\n output y = matmul(x, w) to client; }\n").unwrap();
    let plan = temp_path("no-tokens.plan");
    assert!(
        comet(&[
            "compile",
            model.to_str().unwrap(),
            "-o",
            plan.to_str().unwrap()
        ])
        .status
        .success()
    );
    let out = comet(&[
        "run",
        plan.to_str().unwrap(),
        "--weights",
        "models/glassllm-en/model.safetensors",
        "--prompt-ids",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("needs an input `tokens` and an output `logits`"),
        "{}",
        stderr(&out)
    );
}

/// Output piped into a reader that stops early (`comet compile m.model | head -1`) ends the
/// process quietly: no panic message, no abort.
#[test]
fn a_closed_output_pipe_is_not_a_panic() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_comet"))
        .args(["compile", "examples/gpt2.model"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // the read end is dropped here, with most of the plan's text unread
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
}

/// `--weights random[:SEED]` declares the statistics of the benchmark's random weights
/// (`inspect --leakage` lists them as what the client learns), and a malformed seed is an
/// error naming the accepted forms.
#[test]
fn weights_random_declares_the_benchmarks_statistics() {
    let plan = common::temp_path("random-weights.plan");
    let plan = plan.to_str().unwrap();
    let o = comet(&[
        "compile",
        "examples/glassllm.model",
        "--weights",
        "random:3",
        "-o",
        plan,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let leakage = comet(&["inspect", plan, "--leakage"]);
    assert!(leakage.status.success(), "{}", stderr(&leakage));
    assert!(
        stdout(&leakage).contains("the declared statistics of 38 server weights"),
        "the statistics are listed: {}",
        stdout(&leakage)
    );
    let bad = comet(&[
        "compile",
        "examples/glassllm.model",
        "--weights",
        "random:x",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("expected a checkpoint, `random` or `random:SEED`"),
        "{}",
        stderr(&bad)
    );
}
