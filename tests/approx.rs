//! `comet compile --approx`: the profiles as a user selects them (parsing and its errors,
//! what the plan records, that `exact` changes nothing), the cost comparison of an exact
//! and a pcf plan of glassllm (reviewed snapshot), and in `accuracy` every rewrite run by
//! the f64 and fixed-point interpreters against its declared error.

mod common;
use common::*;

#[path = "approx/accuracy.rs"]
mod accuracy;

use serde_json::Value;
use std::path::PathBuf;

const GLASSLLM: &str = "examples/glassllm.model";

/// `comet compile MODEL --approx APPROX -o PLAN`, checked to succeed; the plan's path.
fn compile_plan(model: &str, approx: &str) -> PathBuf {
    let stem = std::path::Path::new(model)
        .file_stem()
        .unwrap()
        .to_string_lossy();
    let plan = temp_path(&format!(
        "approx-{stem}-{}.plan",
        approx.replace([',', '='], "_")
    ));
    let out = comet(&[
        "compile",
        model,
        "--approx",
        approx,
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    plan
}

fn plan_json(path: &PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("the plan is JSON")
}

/// `--approx lut` is the command line's default: the plan's text and file are byte for byte
/// the same; `--approx exact` (the library's default, the precise baseline) records no
/// approximation (its options: the comparison and the truncation policy, `auto` at 2^-40
/// by default).
#[test]
fn lut_is_the_default_and_exact_changes_nothing() {
    let default = comet(&["compile", GLASSLLM]);
    let lut = comet(&["compile", GLASSLLM, "--approx", "lut"]);
    let exact = comet(&["compile", GLASSLLM, "--approx", "exact"]);
    assert!(default.status.success() && lut.status.success() && exact.status.success());
    assert_eq!(stdout(&default), stdout(&lut));
    assert!(stdout(&lut).contains("\napprox lut\n"));
    assert!(!stdout(&exact).contains("approx"));
    let plan = compile_plan(GLASSLLM, "exact");
    let json = plan_json(&plan);
    let truncation = serde_json::json!({
        "mode": "auto",
        "max_failure": 2f64.powi(-40),
        "weight_bound": 64.0,
        "context": 1024,
        "gate": "stochastic",
    });
    assert_eq!(
        json["options"],
        serde_json::json!({"comparison": "fss", "truncation": truncation})
    );
}

/// The plan records what was applied: kinds a profile does not define (bolt's norms,
/// puma's: its LayerNorm is the exact recipe) stay exact; `inspect` and `show` read it.
#[test]
fn the_plan_records_the_applied_profiles() {
    let cases = [
        (
            "pcf",
            r#"{"gelu":"pcf","silu":"pcf","softmax":"pcf","norm":"pcf"}"#,
            "pcf",
        ),
        (
            "puma",
            r#"{"gelu":"puma","silu":"puma","softmax":"puma"}"#,
            "gelu=puma,silu=puma,softmax=puma",
        ),
        (
            "bolt",
            r#"{"gelu":"bolt","softmax":"bolt"}"#,
            "gelu=bolt,softmax=bolt",
        ),
        (
            "softmax=pcf,norm=bolt",
            r#"{"softmax":"pcf"}"#,
            "softmax=pcf",
        ),
    ];
    for (arg, json, text) in cases {
        let plan = compile_plan(GLASSLLM, arg);
        let want: Value = serde_json::from_str(json).unwrap();
        assert_eq!(plan_json(&plan)["options"]["approx"], want, "{arg}");
        let file = std::fs::read_to_string(&plan).unwrap();
        let back = comet_ir::plan::read_plan_json(&file).expect("the plan reads back");
        assert_eq!(back.options.approx.to_string(), text, "{arg}");
        assert_eq!(
            comet_ir::plan::write_plan_json(&back).unwrap(),
            file,
            "{arg}"
        );
        let shown = comet(&["show", plan.to_str().unwrap()]);
        assert!(shown.status.success(), "{}", stderr(&shown));
        assert!(
            stdout(&shown).contains(&format!("\napprox {text}\n")),
            "{arg}"
        );
        let r = comet(&["inspect", plan.to_str().unwrap(), "--json"]);
        let r: Value = serde_json::from_str(&stdout(&r)).expect("JSON report");
        assert_eq!(r["approx"], text, "{arg}");
    }
}

/// Every profile compiles the examples with GeLU (gpt2, bert-base) and SiLU (glassllm),
/// causal and not, with the verifier on after every pass (debug build).
#[test]
fn every_profile_compiles_every_example() {
    for model in ["glassllm", "gpt2", "bert-base"] {
        let path = format!("examples/{model}.model");
        for profile in ["pcf", "puma", "bolt", "bumblebee", "mpcformer"] {
            compile_plan(&path, profile);
        }
    }
}

/// Usage errors: exit status 2 and the accepted values.
#[test]
fn bad_approx_strings_are_usage_errors() {
    let profiles = "expected one of exact, pcf, puma, bolt, bumblebee, mpcformer";
    let kinds = "gelu, silu, softmax, norm";
    let cases: [(&str, String); 7] = [
        (
            "fast",
            format!("unknown approximation profile `fast`: {profiles}"),
        ),
        (
            "softmax=fast",
            format!("unknown approximation profile `fast`: {profiles}"),
        ),
        (
            "exp=pcf",
            format!("unknown op kind `exp`: expected one of {kinds}"),
        ),
        ("softmax=", "malformed item `softmax=`".to_string()),
        ("=pcf", "malformed item `=pcf`".to_string()),
        (
            "gelu=pcf,gelu=puma",
            "op kind `gelu` is given more than one profile".to_string(),
        ),
        (
            "pcf,puma",
            "more than one profile for the whole model (`pcf` and `puma`)".to_string(),
        ),
    ];
    for (arg, message) in cases {
        let out = comet(&["compile", GLASSLLM, "--approx", arg]);
        assert_eq!(out.status.code(), Some(2), "{arg}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("invalid value '{arg}' for '--approx <PROFILES>'")),
            "{err}"
        );
        assert!(err.contains(&message), "{arg}: {err}");
    }
    let err = stderr(&comet(&["compile", GLASSLLM, "--approx", "softmax="]));
    let listed = "exact, pcf, puma, bolt, bumblebee, mpcformer";
    assert!(err.contains(listed) && err.contains(kinds), "{err}");
}

/// `inspect --compare` of a pcf and an exact glassllm plan (prefill 128, 16 tokens, lan):
/// the per-op-kind rows line up, since rewrites keep the op's name as origin.
#[test]
fn glassllm_pcf_against_exact() {
    let pcf = compile_plan(GLASSLLM, "pcf");
    let exact = compile_plan(GLASSLLM, "exact");
    let out = comet(&[
        "inspect",
        pcf.to_str().unwrap(),
        "--compare",
        exact.to_str().unwrap(),
        "--generate",
        "16",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out)
        .replace(pcf.to_str().unwrap(), "glassllm-pcf.plan")
        .replace(exact.to_str().unwrap(), "glassllm-exact.plan");
    insta::assert_snapshot!(text);
}
