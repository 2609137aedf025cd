//! `comet inspect`: the reviewed tables of every example (prefill 128, 16 tokens, `wan`),
//! and the binary as a user runs it (JSON, comparison, errors).

mod common;
use common::*;

use comet_compiler::inspect::{InspectOptions, NetProfile, render, report};
use comet_compiler::{Options, compile};
use comet_ir::DimEnv;
use comet_ir::cost::NodeCost;
use comet_ir::poly::Poly;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

fn compile_example(path: &Path) -> comet_ir::Program {
    let source = std::fs::read_to_string(path).expect("example is readable");
    let opts = Options {
        verify: true,
        ..Options::default()
    };
    match compile(&source, &path.display().to_string(), &opts) {
        Ok(c) => c.program,
        Err(comet_compiler::CompileError::Source(d)) => panic!("{}", d.render_plain()),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn example_inspect_tables() {
    let opts = InspectOptions {
        prompt: 128,
        generate: 16,
        net: NetProfile::wan(),
        ..InspectOptions::default()
    };
    insta::glob!("../examples", "*.model", |path| {
        let program = compile_example(path);
        let name = path.file_stem().unwrap().to_string_lossy();
        let r = report(&program, &format!("{name}.plan"), &opts).unwrap_or_else(|e| panic!("{e}"));
        insta::assert_snapshot!(render(&r));
    });
}

/// The report's totals are the plan's own figures: merged rounds as the `schedule` pass
/// computes them, the rest as plain sums of the nodes' costs.
#[test]
fn totals_agree_with_the_plan() {
    let program = compile_example(Path::new("examples/gpt2.model"));
    let opts = InspectOptions {
        prompt: 20,
        generate: 3,
        ..InspectOptions::default()
    };
    let r = report(&program, "gpt2.plan", &opts).unwrap();
    let costs = program.analyses.costs.as_ref().unwrap();
    let last = r.last_decode.as_ref().unwrap();
    for (call, env) in [
        (&r.prefill, DimEnv { seq: 20, past: 0 }),
        (last, DimEnv { seq: 1, past: 21 }),
    ] {
        let sum = |f: fn(&NodeCost) -> &Poly| -> u64 {
            costs.iter().map(|(_, c)| f(c).eval(env)).sum::<i128>() as u64
        };
        let a = &call.totals.amounts;
        let merged = comet_compiler::passes::schedule::total_rounds(&program).eval(env);
        assert_eq!(a.rounds as i128, merged, "{env:?}");
        assert_eq!(a.rounds_unmerged, sum(|c| &c.rounds), "{env:?}");
        assert_eq!(a.online_bits, sum(|c| &c.online_bits), "{env:?}");
        assert_eq!(a.offline_bits, sum(|c| &c.offline_bits), "{env:?}");
        assert_eq!(a.local_ops, sum(|c| &c.local_ops), "{env:?}");
    }
}

/// Compiles `examples/{model}.model` with `--comparison {cmp}` to a temporary plan file.
fn compiled_plan(model: &str, cmp: &str) -> PathBuf {
    let plan = temp_path(&format!("inspect-{model}-{cmp}.plan"));
    let example = format!("examples/{model}.model");
    let out = comet(&[
        "compile",
        &example,
        "--comparison",
        cmp,
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    plan
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).expect("--json prints one JSON object")
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

#[test]
fn json_report_of_gpt2() {
    let plan = compiled_plan("gpt2", "fss");
    let p = plan.to_str().unwrap();
    let args = [
        "inspect",
        p,
        "--prompt",
        "32",
        "--generate",
        "4",
        "--net",
        "wan",
        "--json",
    ];
    let r = json(&comet(&args));
    let prefill = &r["prefill"]["totals"];
    assert!(u(&prefill["rounds"]) > 0, "{prefill}");
    assert!(u(&prefill["rounds_unmerged"]) >= u(&prefill["rounds"]));
    assert!(u(&prefill["online_bits"]) > 0 && u(&prefill["offline_bits"]) > 0);
    assert_eq!(r["settings"]["net"]["name"], "wan");
    // prefill (seq 32) + 3 decode steps with past 32, 33, 34
    assert_eq!(u(&r["generation"]["calls"]), 4);
    assert_eq!(u(&r["decode_steps"]["calls"]), 3);
    assert_eq!(
        (u(&r["last_decode"]["seq"]), u(&r["last_decode"]["past"])),
        (1, 34)
    );
    let g = &r["generation"];
    let sum = u(&prefill["online_bits"]) + u(&r["decode_steps"]["online_bits"]);
    assert_eq!(u(&g["online_bits"]), sum);
    assert!(g["latency"]["total_s"].as_f64().unwrap() > 0.0);
    // groups partition the nodes: their bits add up to the call's
    for table in ["by_layer", "by_op_kind", "by_protocol"] {
        let rows = r["prefill"][table].as_array().unwrap();
        let bits: u64 = rows.iter().map(|row| u(&row["online_bits"])).sum();
        assert_eq!(bits, u(&prefill["online_bits"]), "{table}");
    }
    // before layers, 12 layers, after layers
    let layers: Vec<&str> = r["prefill"]["by_layer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(layers.len(), 14, "{layers:?}");
    assert_eq!(
        (layers[0], layers[1], layers[13]),
        ("before layers", "layer 0", "after layers")
    );
    // truncations: the plan's policy, and per call the faithful ones with their cost
    let policy = &r["truncation_policy"];
    assert_eq!(policy["mode"], "auto");
    assert_eq!(policy["max_failure"].as_f64(), Some(2f64.powi(-40)));
    assert_eq!(u(&policy["context"]), 1024);
    assert_eq!(policy["gate"], "stochastic");
    let t = &r["prefill"]["truncation"];
    assert!(u(&t["faithful"]) > 0 && u(&t["faithful"]) <= u(&t["truncations"]));
    assert!(u(&t["faithful_elements"]) > 0);
    assert!(t["total_failure"].as_f64().unwrap() <= 1.0);
    let rows = r["prefill"]["by_protocol"].as_array().unwrap();
    let faithful = (rows.iter())
        .find(|row| row["name"] == "stochastic_trunc")
        .expect("a stochastic_trunc row (the default gate)");
    assert!(!rows.iter().any(|row| row["name"] == "faithful_trunc"));
    // at most 64 bits per element and party online, fewer where narrow-comparisons
    // proved a width m (then m bits, at least the shift + 2 = 18: the cost at each width
    // is pinned by tests/protocol_costs.rs and tests/narrow_trunc.rs); party 1's shares of
    // the mask's high part and top bit, 16 bytes per element, from the dealer
    let online = u(&faithful["online_bits"]);
    let elements = u(&t["faithful_elements"]);
    assert!(
        online <= 128 * elements && online >= 2 * 18 * elements,
        "{online}"
    );
    assert_eq!(
        u(&faithful["offline_bits"]),
        8 * 16 * u(&t["faithful_elements"])
    );
    // memory: integer bytes per party and phase, each peak the sum of its parts
    let memory = &r["memory"];
    assert_eq!(u(&memory["context"]), 35);
    for party in memory["parties"].as_array().unwrap() {
        for phase in ["setup", "prefill", "decode"] {
            let m = party[phase].as_object().unwrap();
            let parts: u64 = (m.iter())
                .filter(|(k, _)| *k != "peak_bytes")
                .map(|(k, v)| {
                    assert!(k.ends_with("_bytes"), "{k}");
                    u(v)
                })
                .sum();
            assert_eq!(u(&m["peak_bytes"]), parts, "{phase}");
            assert!(u(&party["peak_bytes"]) >= parts);
        }
        assert!(party["bytes_per_parameter"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn comparing_a_plan_with_itself_gives_ratios_of_one() {
    let plan = compiled_plan("glassllm", "fss");
    let p = plan.to_str().unwrap();
    let out = comet(&["inspect", p, "--generate", "3", "--compare", p]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("prefill rounds"), "{text}");
    for line in text.lines().filter(|l| l.contains('×')) {
        assert!(
            line.split_whitespace()
                .filter(|w| w.ends_with('×') && w.starts_with(|c: char| c.is_ascii_digit()))
                .all(|w| w == "1.00×"),
            "{line}"
        );
    }
    let r = json(&comet(&[
        "inspect",
        p,
        "--generate",
        "3",
        "--compare",
        p,
        "--json",
    ]));
    for call in ["prefill", "last_decode", "generation"] {
        for fig in ["rounds", "online_bits", "offline_bits", "latency_s"] {
            assert_eq!(r["ratios"][call][fig], 1.0, "{call} {fig}");
        }
    }
}

#[test]
fn fss_comparisons_take_fewer_rounds_than_gmw() {
    let fss = compiled_plan("gpt2", "fss");
    let gmw = compiled_plan("gpt2", "gmw");
    let args = [
        "inspect",
        fss.to_str().unwrap(),
        "--compare",
        gmw.to_str().unwrap(),
        "--json",
    ];
    let r = json(&comet(&args));
    assert_eq!(
        (
            r["this"]["comparison"].as_str(),
            r["other"]["comparison"].as_str()
        ),
        (Some("fss"), Some("gmw"))
    );
    let rounds = r["ratios"]["prefill"]["rounds"].as_f64().unwrap();
    assert!(rounds < 1.0, "fss / gmw rounds = {rounds}");
}

#[test]
fn a_plan_without_costs_is_an_error() {
    let source = std::fs::read_to_string("examples/glassllm.model").unwrap();
    let ast = comet_compiler::front::parse::parse_model(&source).unwrap();
    let lowered = comet_compiler::passes::lower::lower(&ast).unwrap();
    let plan = temp_path("inspect-lowered.plan");
    std::fs::write(&plan, comet_ir::plan::write_plan_json(&lowered).unwrap()).unwrap();
    let out = comet(&["inspect", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let expected = format!("error: plan `{}` has no cost annotations: ", plan.display());
    assert!(stderr(&out).starts_with(&expected), "{}", stderr(&out));
}

#[test]
fn a_corrupt_plan_is_an_error() {
    let plan = temp_path("inspect-corrupt.plan");
    std::fs::write(&plan, "{ \"format\": \"comet-plan\", ").unwrap();
    let out = comet(&["inspect", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot load plan"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_network_profile_is_a_usage_error() {
    let out = comet(&["inspect", "any.plan", "--net", "fast"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("invalid network profile `fast`"), "{err}");
    assert!(err.contains("`1gbit:5ms`, `100mbit:40ms`"), "{err}");
}

/// The largest `online_bits + offline_bits` of one node at `env`, from the cost annotations.
fn largest_node_bits(program: &comet_ir::Program, env: DimEnv) -> u64 {
    let costs = program.analyses.costs.as_ref().unwrap();
    let bits = costs
        .iter()
        .map(|(_, c)| c.online_bits.eval(env) + c.offline_bits.eval(env));
    bits.max().unwrap() as u64
}

/// glassllm's projection from its shapes by hand (prompt 32, 8 tokens: 39 positions).
/// Every part is checked against its own figure and every peak against the hand sum, so
/// dropping or changing any term fails.
#[test]
fn glassllm_memory_by_hand() {
    use comet_compiler::inspect::PhaseMemory;
    let program = compile_example(Path::new("examples/glassllm.model"));
    let opts = InspectOptions {
        prompt: 32,
        generate: 8,
        ..InspectOptions::default()
    };
    let m = report(&program, "glassllm.plan", &opts).unwrap().memory;
    const MIB: u64 = 1 << 20;
    // vocab 1024, d 128, 4 layers of: 2 gammas [128], wq and wo [128, 128], wk and wv
    // [128, 64], w1 and w3 [128, 341], w2 [341, 128]; E [1024, 128] and norm_f [128]
    let layer = 2 * 128 + 2 * 128 * 128 + 2 * 128 * 64 + 3 * 128 * 341;
    let parameters = 1024 * 128 + 128 + 4 * layer;
    assert_eq!(m.parameters, 852_608);
    assert_eq!(m.parameters, parameters);
    // every weight is a product's fixed operand (the gammas of `fixed_mul`s), E twice: as
    // the embedding's [1024, 128] and as the tied head's Eᵀ [128, 1024]; no weight is
    // kept after the setup
    let fixed_elements = parameters + 128 * 1024;
    assert_eq!(m.fixed_operand_elements, fixed_elements);
    assert_eq!(m.largest_fixed_operand_elements, 1024 * 128);
    assert_eq!(m.context, 32 + 8 - 1);
    // every weight is the server's: one-sided operands, `W` at the server and `F` at the
    // client, 8 bytes per element each
    assert_eq!(m.one_sided_elements, fixed_elements);
    let base = PhaseMemory {
        process_bytes: 512 * MIB,
        fixed_operands_bytes: 8 * fixed_elements,
        ..PhaseMemory::default()
    };
    let setup = PhaseMemory {
        // Eᵀ (or E) × 5 copies × 8 bytes, plus one 64 MiB exchange
        setup_working_bytes: 1024 * 128 * 5 * 8 + 64 * MIB,
        ..base
    };
    let prefill = PhaseMemory {
        // 8 cache slots (K and V of 4 layers) of [2 kv heads, 32, 32], shares and the
        // rows opened by `cache_matmul`
        kv_cache_bytes: 2 * 8 * (2 * 32 * 32) * 8,
        // 3 × the largest value, the one-hot tokens and the logits [32, 1024]
        call_working_bytes: 3 * (32 * 1024) * 8,
        material_working_bytes: largest_node_bits(&program, DimEnv { seq: 32, past: 0 }) / 16,
        ..base
    };
    let decode = PhaseMemory {
        kv_cache_bytes: 2 * 8 * (2 * 39 * 32) * 8,
        // 3 × the largest value: K and V as the cache products read them, repeated to the
        // 4 query heads, [4, 39, 32]
        call_working_bytes: 3 * (4 * 39 * 32) * 8,
        material_working_bytes: largest_node_bits(&program, DimEnv { seq: 1, past: 38 }) / 16,
        ..base
    };
    let sum = |p: &PhaseMemory| {
        p.process_bytes
            + p.fixed_operands_bytes
            + p.kv_cache_bytes
            + p.setup_working_bytes
            + p.call_working_bytes
            + p.material_working_bytes
    };
    assert!(prefill.material_working_bytes > 0 && decode.material_working_bytes > 0);
    assert_eq!(m.parties.len(), 2);
    for (party, got) in m.parties.iter().enumerate() {
        assert_eq!(got.party as usize, party);
        for (what, got, want) in [
            ("setup", got.setup, setup),
            ("prefill", got.prefill, prefill),
            ("decode", got.decode.unwrap(), decode),
        ] {
            let want = PhaseMemory {
                peak_bytes: sum(&want),
                ..want
            };
            assert_eq!(got, want, "party {party}, {what}");
        }
        let peak = [sum(&setup), sum(&prefill), sum(&decode)]
            .into_iter()
            .max()
            .unwrap();
        assert_eq!(got.peak_bytes, peak, "party {party}");
        let per_parameter = got.bytes_per_parameter.unwrap();
        assert!((per_parameter - peak as f64 / parameters as f64).abs() < 1e-9);
    }
}

/// GPT-2's fixed-operand term is 8 bytes per element of every distinct fixed operand (all
/// one-sided: the server's weights), found here from the plan's protocols; with local
/// truncations its bytes per parameter lie between 8 and 40.
#[test]
fn gpt2_memory_fixed_operands_and_bytes_per_parameter() {
    let path = Path::new("examples/gpt2.model");
    let source = std::fs::read_to_string(path).expect("example is readable");
    let opts = Options {
        verify: true,
        truncation: None,
        ..Options::default()
    };
    let program = compile(&source, "examples/gpt2.model", &opts)
        .unwrap()
        .program;
    let fixed = comet_ir::protocol::fixed_values(&program);
    let costs = program.analyses.costs.as_ref().unwrap();
    let mut operands = std::collections::HashSet::new();
    for (id, c) in costs.iter() {
        if !c.protocol.has_fixed_operand() {
            continue;
        }
        let xs = program.graph.operands(id);
        let block = matches!(program.graph.node(id).op, comet_ir::Op::BlockMatMul { .. });
        operands.insert(if block || fixed.contains(&xs[1]) {
            xs[1]
        } else {
            xs[0]
        });
    }
    let one = DimEnv { seq: 1, past: 0 };
    let elements: u64 = (operands.iter())
        .map(|x| comet_ir::dim::numel(&program.graph.node(*x).ty.shape, one))
        .sum();
    // by hand: every parameter but the 888,576 a call reads (wpe [1024, 768]; per layer
    // the biases 3·768 + 768 + 3072 + 768 and both LayerNorm biases; ln_f's bias), plus
    // the tied head's wteᵀ [768, 50257]
    assert_eq!(elements, 124_439_808 - 888_576 + 768 * 50_257);
    let opts = InspectOptions {
        prompt: 128,
        generate: 16,
        ..InspectOptions::default()
    };
    let m = report(&program, "gpt2.plan", &opts).unwrap().memory;
    assert_eq!(m.parameters, 124_439_808);
    assert_eq!(m.fixed_operand_elements, elements);
    for p in &m.parties {
        let phases = [Some(p.setup), Some(p.prefill), p.decode];
        for phase in phases.iter().flatten() {
            assert_eq!(
                phase.fixed_operands_bytes,
                8 * elements,
                "party {}",
                p.party
            );
        }
        let b = p.bytes_per_parameter.unwrap();
        assert!(
            (8.0..=40.0).contains(&b),
            "party {}: {b} bytes per parameter",
            p.party
        );
    }
    // only the server owns weights
    let kept = |p: usize| m.parties[p].decode.unwrap().weights_bytes;
    assert_eq!((kept(0), kept(1)), (8 * 888_576, 0));
}
