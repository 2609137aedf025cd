//! `comet bench runtime --quick`: the runtime benchmark at tiny sizes prints its table
//! (matmul rows, the decode-step rows of every run, the goals) and, with `--json`, figures
//! whose measured bytes and rounds equal the plan's estimate in every run.

use serde_json::Value;
use std::process::{Command, Output, Stdio};

fn spawn(json: bool) -> std::process::Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_comet"));
    c.args(["bench", "runtime", "--quick"]);
    if json {
        c.arg("--json");
    }
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs")
}

fn finish(c: std::process::Child) -> (Output, String) {
    let out = c.wait_with_output().expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "exit {}:\n{stderr}", out.status);
    (out, stderr)
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

/// Every call of a run: measured online bits and rounds equal the estimate; returns the
/// calls' measured dealer bits.
fn exact_calls(run: &Value, what: &str) -> Vec<u64> {
    let calls = run["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no calls in {run}"));
    assert_eq!(calls.len(), 3, "{what}: a prefill and two decode steps");
    for (k, c) in calls.iter().enumerate() {
        let (m, e) = (&c["measured"], &c["estimated"]);
        for key in ["online_bits", "rounds"] {
            assert_eq!(u(&m[key]), u(&e[key]), "{what}, call {k}: {key}");
            assert!(u(&m[key]) > 0, "{what}, call {k}: {key} is 0");
        }
        assert!(c["seconds"].as_f64().unwrap() > 0.0);
        assert!(u(&c["peak_bytes"]) > 0, "{what}: peak memory measured");
        let (past, seq) = (u(&c["past"]), u(&c["seq"]));
        let expected = if k == 0 { (0, 8) } else { (7 + k as u64, 1) };
        assert_eq!(
            (past, seq),
            expected,
            "{what}: a prefill of 8 into an empty cache, then decode steps"
        );
        let setup = u(&m["setup_bits"]);
        assert_eq!(
            setup > 0,
            k == 0,
            "{what}: only the first call has the setup"
        );
        let setup_seconds = c["setup_seconds"].as_f64().unwrap();
        assert_eq!(setup_seconds > 0.0, k == 0, "{what}: the setup's time");
    }
    calls
        .iter()
        .map(|c| u(&c["measured"]["offline_bits"]))
        .collect()
}

#[test]
fn quick_runtime_benchmark_prints_its_table_and_measures_the_estimate() {
    // both runs at once: each is mostly one party waiting for the other
    let (table, json) = (spawn(false), spawn(true));
    let (table, _) = finish(table);
    let (json, stderr) = finish(json);

    let text = String::from_utf8_lossy(&table.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    assert!(text.starts_with("machine: "), "{text}");
    assert!(
        text.contains("share matmul, one party's fixed-weight product"),
        "{text}"
    );
    let matmul_rows = lines
        .iter()
        .filter(|l| l.contains(" · ") && l.ends_with('×'))
        .count();
    assert_eq!(matmul_rows, 4, "four matmul shapes:\n{text}");
    for run in [
        "in process, 2 parties",
        "TCP, party 1 (client)",
        "TCP, party 0 (server)",
        "TCP, dealer service",
        "plan's estimate",
    ] {
        assert_eq!(count(run), 3, "three calls of `{run}`:\n{text}");
        for l in lines.iter().filter(|l| l.starts_with(run)) {
            let exact = l.contains(" yes ") && !l.contains(" NO ");
            assert!(
                exact || run == "plan's estimate",
                "measured = estimate in `{l}`"
            );
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("goals (issue 11) on ") && l.contains("decode step ≤ 1.0 s")),
        "{text}"
    );

    let r: Value = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&json.stdout)));
    assert!(u(&r["machine"]["cores"]) >= 1);
    let rows = r["matmul"].as_array().expect("matmul rows");
    assert_eq!(rows.len(), 4);
    for row in rows {
        let (share, f) = (
            row["share_s"].as_f64().unwrap(),
            row["f64_s"].as_f64().unwrap(),
        );
        assert!(share > 0.0 && f > 0.0 && row["share_1t_s"].as_f64().unwrap() > 0.0);
        assert!((row["ratio"].as_f64().unwrap() - share / f).abs() < 1e-9 * share / f);
    }

    let ip = exact_calls(&r["inprocess"], "in process");
    for (k, c) in r["inprocess"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(
            ip[k],
            u(&c["estimated"]["offline_bits"]),
            "in process: dealer bits"
        );
    }
    let tcp = &r["tcp"];
    let p0 = exact_calls(&tcp["party0"], "party 0");
    let p1 = exact_calls(&tcp["party1"], "party 1");
    let deal = tcp["dealer"]["calls"].as_array().expect("dealt calls");
    assert_eq!(deal.len(), 3);
    for (k, c) in deal.iter().enumerate() {
        let est = u(&c["estimated_bits"]);
        assert_eq!(u(&c["dealt_bits"]), est, "dealt = estimated, call {k}");
        assert_eq!(
            p0[k] + p1[k],
            est,
            "the two streams hold the estimate, call {k}"
        );
        assert_eq!(ip[k], est, "in process and over TCP, one dealer");
    }
    let setup = |run: &Value| u(&run["calls"][0]["measured"]["setup_bits"]);
    assert_eq!(setup(&r["inprocess"]), setup(&tcp["party1"]));
    assert_eq!(setup(&tcp["party0"]), setup(&tcp["party1"]));
    assert!(r["goals"]["matmul_within_4x"].is_boolean());
    assert!(r["goals"]["peak_within_budget"].is_boolean());
    assert!(u(&r["goals"]["fixed_elements"]) > 0);
}
