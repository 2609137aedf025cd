//! `comet bench approx`: the accuracy and cost table of the approximation profiles, in its
//! quick form. Checked are the properties the table is there to show, never figures
//! copied from a run: the exact profile reproduces the reference's greedy tokens, pcf
//! (unfit for a model not fine-tuned for it) does not, every approximation costs less
//! online than exact, and two parties compute what the fixed-point backend computes, with
//! the plan's estimated costs.

mod common;
use common::*;

use serde_json::Value;

const PROFILES: [&str; 7] = [
    "exact",
    "pcf",
    "puma",
    "bolt",
    "bumblebee",
    "mpcformer",
    "lut",
];

fn run_json(args: &[&str]) -> Value {
    let out = comet(args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("one JSON object")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn by_profile<'a>(rows: &'a [Value], profile: &str) -> &'a Value {
    (rows.iter().find(|r| r["profile"] == profile))
        .unwrap_or_else(|| panic!("no row for {profile}"))
}

/// Every profile on the reference prompts (fixed point), the cost tables and the tiny
/// two-party runs of `--runtime`.
#[test]
fn quick_bench_has_every_profile_and_the_expected_ordering() {
    let v = run_json(&["bench", "approx", "--quick", "--runtime", "--json"]);
    let cases = reference::reference()["cases"].as_array().unwrap().len();
    let generate = u(&v["settings"]["generate"]) as usize;
    assert!(generate >= 2, "the prefill and at least one decode step");
    assert!(v["note"].as_str().unwrap().contains("fine-tuned"));

    let profiles = v["profiles"].as_array().unwrap();
    let names: Vec<&str> = profiles
        .iter()
        .map(|p| p["profile"].as_str().unwrap())
        .collect();
    assert_eq!(names, PROFILES);
    for p in profiles {
        let name = &p["profile"];
        let runs = p["cases"].as_array().unwrap();
        assert_eq!(runs.len(), cases, "{name}");
        for c in runs {
            assert_eq!(c["tokens"].as_array().unwrap().len(), generate, "{name}");
            assert!(u(&c["agree"]) as usize <= generate);
            assert!(f(&c["max_abs_error"]) >= f(&c["mean_abs_error"]));
        }
        assert_eq!(u(&p["generated"]) as usize, cases * generate, "{name}");
        assert_eq!(u(&p["projected"]["calls"]), 16, "prefill + 15 decode steps");
    }
    let exact = by_profile(profiles, "exact");
    let pcf = by_profile(profiles, "pcf");
    assert_eq!(
        exact["agree"], exact["generated"],
        "exact follows the reference"
    );
    assert!(
        f(&exact["max_abs_error"]) < 0.08,
        "{}",
        exact["max_abs_error"]
    );
    assert!(u(&pcf["agree"]) < u(&exact["agree"]));
    assert!(f(&pcf["max_abs_error"]) > f(&exact["max_abs_error"]));
    assert_eq!(exact["applied"], "exact");
    assert_eq!(pcf["applied"], "pcf");
    for p in profiles.iter().filter(|p| p["profile"] != "exact") {
        for what in ["online_bits", "rounds"] {
            assert!(
                u(&p["projected"][what]) < u(&exact["projected"][what]),
                "{} {what}",
                p["profile"]
            );
        }
    }
    assert!(
        v["two_party"].as_array().unwrap().is_empty(),
        "not in --quick"
    );

    // table 2: both examples, every profile, prefill only
    let costs = v["costs"].as_array().unwrap();
    for model in ["gpt2", "bert-base"] {
        let rows: Vec<Value> = (costs.iter())
            .filter(|c| c["model"] == model)
            .cloned()
            .collect();
        let names: Vec<&str> = rows
            .iter()
            .map(|r| r["profile"].as_str().unwrap())
            .collect();
        assert_eq!(names, PROFILES, "{model}");
        let exact = by_profile(&rows, "exact");
        for r in &rows {
            assert_eq!(u(&r["calls"]), 1);
            assert!(f(&r["latency_s"]) > 0.0 && u(&r["local_ops"]) > 0);
            if r["profile"] != "exact" {
                assert!(
                    u(&r["online_bits"]) < u(&exact["online_bits"]),
                    "{model} {r}"
                );
            }
        }
    }

    // pcf / exact: the estimate for both examples, and the tiny two-party runs
    let runtime = v["runtime"].as_array().unwrap();
    assert_eq!(runtime.len(), 4, "two examples × exact, pcf");
    for r in runtime {
        assert_eq!(r["measured_is_estimate"], true, "{r}");
        assert_eq!(r["measured"]["online_bits"], r["estimated"]["online_bits"]);
        assert!(f(&r["seconds"]) > 0.0);
    }
    let ratios = v["pcf_over_exact"].as_array().unwrap();
    for model in ["gpt2", "bert-base"] {
        for source in ["estimate", "two_party"] {
            let r = (ratios.iter())
                .find(|r| r["model"] == model && r["source"] == source)
                .unwrap_or_else(|| panic!("no {source} ratio for {model}"));
            for what in ["online_bits", "rounds", "offline_bits"] {
                let x = f(&r[what]);
                assert!(x > 0.0 && x < 1.0, "{model} {source} {what}: {x}");
            }
        }
    }
}

/// The text form, with the two-party check on the real model: the tokens two parties
/// generate are the fixed-point backend's, at the estimated cost.
#[test]
fn two_party_check_in_the_text_form() {
    let out = comet(&[
        "bench",
        "approx",
        "--profiles",
        "pcf",
        "--generate",
        "1",
        "--two-party",
        "pcf",
        "--two-party-tokens",
        "2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "Table 1.",
        "Table 2.",
        "glassllm-en was not, so their accuracy here is the loss",
        "`comet inspect --prompt 128 --generate 16 --net wan`",
        "| profile | tokens agreeing | total |",
    ] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
    let row = (text.lines())
        .find(|l| l.starts_with("| pcf |") && l.matches('|').count() == 7)
        .unwrap_or_else(|| panic!("no two-party row in\n{text}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    // | profile | two-party tokens | fixed-point tokens | equal | difference | = estimate |
    assert_eq!(cells[2].split(',').count(), 2, "{row}");
    assert_eq!(cells[2], cells[3], "{row}");
    assert_eq!((cells[4], cells[6]), ("yes", "yes"), "{row}");
    assert!(cells[5].parse::<f64>().unwrap() < 0.05, "{row}");
    assert!(
        !text.contains("pcf / exact"),
        "no exact plan to compare with"
    );
}

/// Usage mistakes are reported, not run.
#[test]
fn bad_arguments_are_errors() {
    let out = comet(&["bench", "approx", "--profiles", "fast"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown approximation profile `fast`"));
    let out = comet(&["bench", "approx", "--generate", "99", "--quick"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--generate 99"), "{}", stderr(&out));
}
