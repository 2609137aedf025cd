//! `comet inspect --svg`: the written file parsed as XML and checked against the report
//! `--json` prints for the same plan and options: every panel's title, one bar per
//! category with a non-zero value in the series' colour, bar lengths proportional to the
//! values, the categories' names and values as text; with `--compare`, both plans' bars
//! and the legend; errors.

mod common;
use common::process::compiled_glassllm;
use common::*;

use comet_compiler::inspect::svg::series_fill;
use comet_compiler::inspect::units;
use serde_json::Value;
use std::path::Path;

const METRICS: [(&str, &str); 3] = [
    ("online bytes", "online_bits"),
    ("rounds", "rounds"),
    ("dealer bytes", "offline_bits"),
];
const BREAKDOWNS: [(&str, &str); 2] = [("per layer", "by_layer"), ("per op kind", "by_op_kind")];

fn report(args: &[&str]) -> Value {
    let out = comet(args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("--json prints one JSON object")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The calls the report breaks down: (name, call).
fn calls(r: &Value) -> Vec<(&'static str, &Value)> {
    let mut out = vec![("prefill", &r["prefill"])];
    if !r["last_decode"].is_null() {
        out.push(("last decode step", &r["last_decode"]));
    }
    out
}

fn label(field: &str, row: &Value) -> String {
    match field {
        "rounds" => units::count(u(&row[field])),
        _ => units::bits_as_bytes(u(&row[field])),
    }
}

struct Svg {
    texts: Vec<String>,
    /// (fill, width) of every `<rect>`, in document order.
    rects: Vec<(String, f64)>,
}

fn parse(path: &Path) -> Svg {
    let text = std::fs::read_to_string(path).expect("the SVG was written");
    let doc = roxmltree::Document::parse(&text).expect("the SVG is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts = (doc.descendants())
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().trim().to_string())
        .collect();
    let rects = (doc.descendants())
        .filter(|n| n.has_tag_name("rect"))
        .map(|n| {
            let fill = n.attribute("fill").unwrap_or_default().to_uppercase();
            let w: f64 = n.attribute("width").unwrap().parse().unwrap();
            (fill, w)
        })
        .collect();
    Svg { texts, rects }
}

/// Checks one plan's panels in `svg` against its report `r`; `colour` is its series
/// colour; `legend`: its swatches in a legend (1 with --compare).
fn check_panels(svg: &Svg, r: &Value, colour: &str, legend: usize) {
    let mut expected_bars = Vec::new();
    for (call, c) in calls(r) {
        let (seq, past) = (u(&c["seq"]), u(&c["past"]));
        for (bname, table) in BREAKDOWNS {
            for (mname, field) in METRICS {
                let title = format!("{call} (seq {seq}, past {past}): {mname} {bname}");
                assert!(svg.texts.contains(&title), "no panel `{title}`");
                let rows = c[table].as_array().unwrap();
                assert!(!rows.is_empty(), "{title}");
                for row in rows {
                    let name = row["name"].as_str().unwrap().to_string();
                    assert!(svg.texts.contains(&name), "{title}: no label `{name}`");
                    let value = label(field, row);
                    assert!(svg.texts.contains(&value), "{title}: no value `{value}`");
                }
                expected_bars.push((title, rows.iter().map(|row| u(&row[field])).collect()));
            }
        }
    }
    let nonzero: usize = (expected_bars.iter())
        .map(|(_, v): &(String, Vec<u64>)| v.iter().filter(|&&x| x > 0).count())
        .sum();
    let bars: Vec<f64> = (svg.rects.iter())
        .filter(|(fill, _)| fill == colour)
        .map(|(_, w)| *w)
        .collect();
    assert_eq!(bars.len(), nonzero + legend, "bars in {colour}");
}

/// In the first panel (prefill, online bytes per layer) of a one-plan plot, the bars'
/// lengths are proportional to the layers' online bytes, the largest spanning the axis.
fn check_lengths(svg: &Svg, r: &Value) {
    let colour = series_fill(0);
    let values: Vec<f64> = (r["prefill"]["by_layer"].as_array().unwrap().iter())
        .map(|row| u(&row["online_bits"]) as f64)
        .filter(|&v| v > 0.0)
        .collect();
    let widths: Vec<f64> = (svg.rects.iter())
        .filter(|(fill, _)| *fill == colour)
        .take(values.len())
        .map(|(_, w)| *w)
        .collect();
    let max_v = values.iter().cloned().fold(0.0, f64::max);
    let max_w = widths.iter().cloned().fold(0.0, f64::max);
    assert!(max_w > 100.0, "the largest bar spans the axis: {max_w} px");
    for (v, w) in values.iter().zip(&widths) {
        let expected = v / max_v * max_w;
        assert!(
            (w - expected).abs() <= 1.5,
            "bar of {v} bits: {w} px, expected {expected:.1} px ({values:?}, {widths:?})"
        );
    }
}

#[test]
fn svg_of_a_plan_has_every_panel_bar_and_label() {
    let plan = compiled_glassllm("svg-glassllm.plan", "fss");
    let p = plan.to_str().unwrap();
    let svg_path = temp_path("svg-glassllm.svg");
    let _ = std::fs::remove_file(&svg_path);
    let opts = ["--prompt", "32", "--generate", "4"];
    let mut args = vec!["inspect", p, "--json", "--svg", svg_path.to_str().unwrap()];
    args.extend(opts);
    let r = report(&args);
    let svg = parse(&svg_path);
    assert_eq!(calls(&r).len(), 2, "prefill and a last decode step");
    // 2 calls × 3 metrics × 2 breakdowns, no legend for one plan
    check_panels(&svg, &r, &series_fill(0), 0);
    assert!(!svg.rects.iter().any(|(f, _)| *f == series_fill(1)));
    check_lengths(&svg, &r);
    // a layer row per transformer layer, and the plan's name in the title
    let layers = r["prefill"]["by_layer"].as_array().unwrap();
    assert!(layers.iter().filter(|l| !l["layer"].is_null()).count() >= 2);
    assert!(
        svg.texts
            .iter()
            .any(|t| t.starts_with("comet inspect") && t.contains(p))
    );
}

#[test]
fn svg_compare_draws_both_plans() {
    let fss = compiled_glassllm("svg-cmp-fss.plan", "fss");
    let gmw = compiled_glassllm("svg-cmp-gmw.plan", "gmw");
    let (a, b) = (fss.to_str().unwrap(), gmw.to_str().unwrap());
    let svg_path = temp_path("svg-compare.svg");
    let _ = std::fs::remove_file(&svg_path);
    let out = comet(&[
        "inspect",
        a,
        "--compare",
        b,
        "--prompt",
        "16",
        "--svg",
        svg_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("rounds"),
        "the text report is printed too"
    );
    let svg = parse(&svg_path);
    for (k, plan) in [a, b].into_iter().enumerate() {
        let r = report(&["inspect", plan, "--prompt", "16", "--json"]);
        // one legend swatch per plan
        check_panels(&svg, &r, &series_fill(k), 1);
        assert!(
            svg.texts.iter().any(|t| t.starts_with(plan)),
            "legend of {plan}"
        );
    }
}

#[test]
fn svg_errors_are_clear() {
    let plan = compiled_glassllm("svg-err.plan", "fss");
    let p = plan.to_str().unwrap();
    let out = comet(&["inspect", p, "--svg", "/nonexistent-dir/x.svg"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("error: cannot write `/nonexistent-dir/x.svg`"),
        "{err}"
    );
    let out = comet(&["inspect", p, "--leakage", "--svg", "x.svg"]);
    assert_eq!(out.status.code(), Some(2), "usage error");
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn svg_of_an_encoder_has_only_the_prefill() {
    let plan = temp_path("svg-bert.plan");
    let out = comet(&[
        "compile",
        "examples/bert-base.model",
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let p = plan.to_str().unwrap();
    let svg_path = temp_path("svg-bert.svg");
    let _ = std::fs::remove_file(&svg_path);
    let args = ["inspect", p, "--prompt", "16", "--generate", "4", "--json"];
    let r = report(&[&args[..], &["--svg", svg_path.to_str().unwrap()]].concat());
    assert!(r["last_decode"].is_null(), "an encoder runs as one call");
    let svg = parse(&svg_path);
    check_panels(&svg, &r, &series_fill(0), 0);
    assert!(!svg.texts.iter().any(|t| t.starts_with("last decode step")));
}
