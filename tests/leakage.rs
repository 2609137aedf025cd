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
    // the predictor on the FFN's input, and beside attention: the same masks
    for (name, spec) in [
        ("sparse", "ffn:block=16"),
        ("sparse-beside", "ffn:block=16,input=attention"),
    ] {
        sparse_plan_lists_each_layers_permuted_mask_for(name, spec);
    }
}

fn sparse_plan_lists_each_layers_permuted_mask_for(name: &str, spec: &str) {
    let p = plan(name, spec);
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
    assert!(text.contains("Fixed permutation:"), "{text}");
    assert!(text.contains("frequency"), "{text}");
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

// ---- the client's reveal policy (`comet_ir::exposure`, `comet run --accept-leakage`) ----

use comet_ir::Program;
use comet_ir::exposure::{AcceptLeakage, ExposureKind, check_client, exposed_to_server};

fn compile_with(model: &str, sparsity: Option<&str>) -> Program {
    let source = std::fs::read_to_string(format!("examples/{model}.model")).unwrap();
    let mut opts = comet_compiler::Options::default();
    if let Some(spec) = sparsity {
        opts.sparsity = comet_compiler::passes::sparsify::parse_spec(spec).unwrap();
    }
    comet_compiler::compile(&source, &format!("{model}.model"), &opts)
        .unwrap_or_else(|e| panic!("{model}: {e}"))
        .program
}

const MASKS: AcceptLeakage = AcceptLeakage::SparseMasks { max_bits: None };

#[test]
fn every_shipped_dense_plan_passes_the_default_policy() {
    for entry in std::fs::read_dir("examples").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("model") {
            continue;
        }
        let model = path.file_stem().unwrap().to_str().unwrap();
        let p = compile_with(model, None);
        assert_eq!(exposed_to_server(&p), vec![], "{model}");
        let a = check_client(&p, AcceptLeakage::Nothing).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.masks, a.bits_per_token), (0, 0), "{model}");
    }
}

#[test]
fn a_sparse_plan_needs_the_flag_and_fits_a_bit_budget() {
    // ff 341 in blocks of 16: 22 blocks per FFN, 4 FFNs, 88 mask bits per token
    let p = compile_with("glassllm", Some("ffn:block=16"));
    let exposed = exposed_to_server(&p);
    assert_eq!(exposed.len(), 4);
    for (i, e) in exposed.iter().enumerate() {
        let want = ExposureKind::Mask {
            ffn: i as u32,
            blocks: 22,
            permuted: true,
        };
        assert_eq!(e.kind, want);
    }
    let err = check_client(&p, AcceptLeakage::Nothing).unwrap_err();
    assert_eq!(err.refused.len(), 4);
    let text = err.to_string();
    assert!(text.contains("--accept-leakage none"), "{text}");
    assert!(
        text.contains("pass --accept-leakage sparse-masks (here 88 bits per token)"),
        "{text}"
    );
    assert!(
        text.contains("block mask of sparse FFN 0 (22 bits per token, in a secret permuted order)"),
        "{text}"
    );
    let a = check_client(&p, MASKS).unwrap();
    assert_eq!((a.masks, a.bits_per_token), (4, 88));
    let exact = AcceptLeakage::SparseMasks { max_bits: Some(88) };
    assert!(check_client(&p, exact).is_ok());
    let tight = AcceptLeakage::SparseMasks { max_bits: Some(87) };
    let err = check_client(&p, tight).unwrap_err();
    assert!(
        err.to_string()
            .contains("88 bits per token in all, more than 87"),
        "{err}"
    );
    assert_eq!(comet_ir::exposure::least_acceptance(&p), Some(exact));
}

#[test]
fn an_extra_reveal_to_the_server_is_refused_whatever_the_client_accepts() {
    for sparsity in [None, Some("ffn:block=16")] {
        let p = with_extra_reveal_to_server(compile_with("glassllm", sparsity));
        for accept in [AcceptLeakage::Nothing, MASKS] {
            let err = check_client(&p, accept).unwrap_err();
            let reveals: Vec<_> = (err.refused.iter())
                .filter(|e| e.kind == ExposureKind::Reveal)
                .collect();
            assert_eq!(reveals.len(), 1, "{err}");
            let text = err.to_string();
            assert!(
                text.contains(&format!(
                    "%{} reveal [seq, 1024] reveals a value computed from the client's input \
                     to the server",
                    reveals[0].number
                )),
                "{text}"
            );
            assert!(text.contains("no material was used"), "{text}");
            // the masks alone would be accepted: no hint to pass a flag that cannot help
            assert!(!text.contains("pass --accept-leakage"), "{text}");
        }
        assert_eq!(comet_ir::exposure::least_acceptance(&p), None);
    }
}

#[test]
fn an_open_of_client_values_and_an_unpermuted_mask_are_refused() {
    use comet_ir::Op;
    // an `open` of the shared logits: no FFN reads it as a mask
    let mut p = compile_with("glassllm", None);
    let g = &p.graph;
    let reveal = g
        .ids()
        .find(|&id| matches!(g.node(id).op, Op::Reveal { .. }))
        .unwrap();
    let x = g.operands(reveal)[0];
    let ty = comet_ir::ValueType {
        domain: comet_ir::Domain::Public,
        ..g.node(x).ty.clone()
    };
    let scope = g.node(x).scope.clone();
    p.graph.add(Op::Open, &[x], ty, scope);
    let err = check_client(&p, MASKS).unwrap_err();
    assert_eq!(err.refused.len(), 1);
    assert_eq!(err.refused[0].kind, ExposureKind::Open);
    assert!(
        err.to_string().contains("it is no sparse FFN's block mask"),
        "{err}"
    );

    // a sparse plan whose predictors read unpermuted weights (every `block_permute`
    // bypassed; 341 = 31·11, so no padding changes a shape): masks in the model's order
    let mut p = compile_with("glassllm", Some("ffn:block=11"));
    let permutes: Vec<_> = (p.graph.ids())
        .filter(|&id| matches!(p.graph.node(id).op, Op::BlockPermute { .. }))
        .collect();
    assert!(!permutes.is_empty());
    for bp in permutes {
        let x = p.graph.operands(bp)[0];
        p.graph.replace_uses(bp, x);
    }
    let exposed = exposed_to_server(&p);
    assert_eq!(exposed.len(), 4);
    assert!(exposed.iter().all(|e| matches!(
        e.kind,
        ExposureKind::Mask {
            permuted: false,
            blocks: 31,
            ..
        }
    )));
    let err = check_client(&p, MASKS).unwrap_err();
    assert_eq!(err.refused.len(), 4);
    assert!(
        err.to_string().contains("in the model's block order"),
        "{err}"
    );
}

#[test]
fn the_accept_leakage_values_parse() {
    assert_eq!("none".parse(), Ok(AcceptLeakage::Nothing));
    assert_eq!("sparse-masks".parse(), Ok(MASKS));
    assert_eq!(
        "sparse-masks:40".parse(),
        Ok(AcceptLeakage::SparseMasks { max_bits: Some(40) })
    );
    for bad in ["", "all", "sparse-masks:", "sparse-masks:x", "none:3"] {
        let e = bad.parse::<AcceptLeakage>().unwrap_err();
        assert!(e.contains("expected `none`, `sparse-masks`"), "{bad}: {e}");
    }
    for a in [
        AcceptLeakage::Nothing,
        MASKS,
        AcceptLeakage::SparseMasks { max_bits: Some(7) },
    ] {
        assert_eq!(a.to_string().parse(), Ok(a));
    }
}

#[test]
fn the_leakage_report_states_the_clients_policy() {
    let out = comet(&["inspect", &plan("policy-dense", "off"), "--leakage"]);
    let text = stdout(&out);
    assert!(
        text.contains("Client:       `comet run --party 1` runs this plan as it is"),
        "{text}"
    );
    let out = comet(&[
        "inspect",
        &plan("policy-sparse", "ffn:block=16"),
        "--leakage",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let client = v["client"].as_str().unwrap();
    assert!(
        client.contains("only with `--accept-leakage sparse-masks` (or `sparse-masks:88`"),
        "{client}"
    );
}
