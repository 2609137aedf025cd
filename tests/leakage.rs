//! `comet inspect --leakage` as a user runs it: on a sparse and a dense glassllm plan.

mod common;
use common::*;

/// Compiles glassllm with `--sparsity spec` to a plan file named after `name`.
fn plan(name: &str, sparsity: &str) -> String {
    let plan = temp_path(&format!("leakage-{name}.plan"));
    let path = plan.to_str().unwrap().to_string();
    let out = comet(&[
        "compile",
        "examples/glassllm.model",
        "--sparsity",
        sparsity,
        "-o",
        &path,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    path
}

#[test]
fn sparse_plan_lists_each_layers_permuted_mask() {
    let p = plan("sparse", "ffn:block=16");
    let out = comet(&["inspect", &p, "--leakage"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("(model glassllm, 4 sparse FFNs)"), "{text}");
    assert!(
        text.contains("output `logits` [seq, 1024] to client"),
        "{text}"
    );
    // ff 341 in blocks of 16: 22 blocks, padded to 352.
    for layer in 0..4 {
        let line = format!("layer {layer}: %");
        let found = text.lines().find(|l| l.trim_start().starts_with(&line));
        let found = found.unwrap_or_else(|| panic!("no mask line for layer {layer}:\n{text}"));
        assert!(
            found.contains("open [seq, 22], blocks of B = 16"),
            "{found}"
        );
        assert!(found.contains("ff 341 padded to 352 = 22·16"), "{found}");
        assert!(
            found.contains(&format!("secret permutation {layer}")),
            "{found}"
        );
    }
    assert!(text.contains("0..=22"), "{text}");
    assert!(text.contains("4.52"), "{text}");
    assert!(
        text.contains("the number of active blocks (0..=blocks)"),
        "{text}"
    );
    assert!(text.contains("π = π1∘π0"), "{text}");
    assert!(!text.contains("nothing beyond the outputs"), "{text}");
}

#[test]
fn dense_plan_reveals_nothing_beyond_the_outputs() {
    let p = plan("dense", "off");
    let out = comet(&["inspect", &p, "--leakage"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("the plan reveals nothing beyond the outputs."),
        "{text}"
    );
    assert!(
        text.contains("output `logits` [seq, 1024] to client"),
        "{text}"
    );
    assert!(!text.contains("open ["), "{text}");
    assert!(!text.contains("Sparse FFNs"), "{text}");
}

#[test]
fn json_has_the_per_layer_entries() {
    let p = plan("sparse-json", "ffn:block=32");
    let out = comet(&["inspect", &p, "--leakage", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON object");
    assert_eq!(v["model"], "glassllm");
    assert_eq!(v["sparse"], true);
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4);
    for (i, l) in layers.iter().enumerate() {
        // ⌈341/32⌉ = 11 blocks.
        assert_eq!(l["layer"], i as u64);
        assert_eq!(l["blocks"], 11);
        assert_eq!(l["block"], 32);
        assert_eq!(l["shape"], "[seq, 11]");
        assert_eq!(l["permuted"], true);
        assert_eq!(l["mask_bits"], 11);
        let bits = l["count_bits"].as_f64().unwrap();
        assert!((bits - 12f64.log2()).abs() < 1e-9, "{bits}");
        assert!(l["revealed"].as_str().unwrap().contains("(0..=11)"));
    }
    let masks = v["opened"]["masks"].as_array().unwrap();
    assert_eq!(masks.len(), 4);
    assert_eq!(masks[0]["padded"], 352);
    assert_eq!(masks[0]["ff"], 341);
    assert_eq!(v["opened"]["outputs"][0]["name"], "logits");
    assert_eq!(v["opened"]["outputs"][0]["to"], "client");
    assert_eq!(v["totals"]["blocks"], 44);

    let dense = plan("dense-json", "off");
    let out = comet(&["inspect", &dense, "--leakage", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON object");
    assert_eq!(v["sparse"], false);
    assert_eq!(v["verdict"], "reveals nothing beyond the outputs");
    assert!(v["layers"].as_array().unwrap().is_empty());
    assert!(v["totals"].is_null());
}

#[test]
fn leakage_needs_no_costs_and_conflicts_with_compare() {
    let source = std::fs::read_to_string("examples/glassllm.model").unwrap();
    let ast = comet_compiler::front::parse::parse_model(&source).unwrap();
    let lowered = comet_compiler::passes::lower::lower(&ast).unwrap();
    let plan = temp_path("leakage-lowered.plan");
    std::fs::write(&plan, comet_ir::plan::write_plan_json(&lowered).unwrap()).unwrap();
    let p = plan.to_str().unwrap();
    let out = comet(&["inspect", p, "--leakage"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("reveals nothing beyond the outputs"),
        "{text}"
    );
    assert!(
        text.contains("output `logits` [seq, 1024] to client"),
        "{text}"
    );
    let out = comet(&["inspect", p, "--leakage", "--compare", p]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
