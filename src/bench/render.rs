//! The runtime benchmark's table and the goals, from the JSON report.

use serde_json::{Value, json};
use std::fmt::Write;

use super::{f, u};
use crate::report::bytes;

/// Decode step over TCP, the client's wall time (issue 11; stretch 0.5 s).
const DECODE_SECONDS_GOAL: f64 = 1.0;
/// The session's setup of GPT-2 small.
const SETUP_SECONDS_GOAL: f64 = 15.0;
/// Peak resident memory per party: this many bytes per fixed-operand element …
const PEAK_BYTES_PER_ELEMENT_GOAL: u64 = 20;
/// … plus this.
const PEAK_BYTES_BASE_GOAL: u64 = 1 << 29;
/// The dealer service's working set.
const DEALER_PEAK_BYTES_GOAL: u64 = 1 << 30;
/// The share matmul against f64.
const MATMUL_RATIO_GOAL: f64 = 4.0;

/// The machine in one line.
pub fn machine_line(m: &Value) -> String {
    format!(
        "{}, {} cores (available_parallelism), {:.1} GiB RAM ({:.1} GiB available), {} build; \
         load average {:.2} at the start",
        m["cpu"].as_str().unwrap_or("?"),
        u(&m["cores"]),
        u(&m["memory_bytes"]) as f64 / (1u64 << 30) as f64,
        u(&m["memory_available_bytes"]) as f64 / (1u64 << 30) as f64,
        m["build"].as_str().unwrap_or("?"),
        f(&m["load_average_1min"])
    )
}

fn calls_of(v: &Value) -> Vec<Value> {
    v["calls"].as_array().cloned().unwrap_or_default()
}

/// A process's peak over its calls and before them.
fn peak_of(v: &Value) -> Option<u64> {
    let p = calls_of(v).iter().map(|c| u(&c["peak_bytes"])).max()?;
    Some(p.max(u(&v["peak_bytes_before_calls"])))
}

/// The median of the decode steps' (every call after the first) wall times.
fn decode_median(v: &Value) -> Option<f64> {
    let mut t: Vec<f64> = calls_of(v)
        .iter()
        .skip(1)
        .map(|c| f(&c["seconds"]))
        .collect();
    t.sort_by(f64::total_cmp);
    t.get(t.len() / 2).copied()
}

/// Adds `goals`: whether each of the goals was met.
pub fn with_goals(mut report: Value) -> Value {
    let rows = report["matmul"].as_array().cloned().unwrap_or_default();
    let worst = rows.iter().map(|r| f(&r["ratio"])).fold(0.0, f64::max);
    let tcp = &report["tcp"];
    let decode = decode_median(&tcp["party1"]);
    let setup = (calls_of(&tcp["party1"]).first()).map(|c| f(&c["setup_seconds"]));
    let elements =
        u(&tcp["party0"]["fixed_elements"]).max(u(&report["inprocess"]["fixed_elements"]));
    let budget = PEAK_BYTES_PER_ELEMENT_GOAL * elements + PEAK_BYTES_BASE_GOAL;
    let party_peak = [peak_of(&tcp["party0"]), peak_of(&tcp["party1"])]
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .map(|v| v.into_iter().max().unwrap_or(0));
    let dealer_peak = tcp["dealer"]["peak_bytes"].as_u64();
    report["goals"] = json!({
        "matmul_ratio_max": worst,
        "matmul_within_4x": !rows.is_empty() && worst <= MATMUL_RATIO_GOAL,
        "decode_seconds_tcp_median": decode,
        "decode_within_goal": decode.is_some_and(|s| s <= DECODE_SECONDS_GOAL),
        "setup_seconds_tcp": setup,
        "setup_within_goal": setup.is_some_and(|s| s <= SETUP_SECONDS_GOAL),
        "fixed_elements": elements,
        "peak_bytes_budget_per_party": budget,
        "peak_bytes_tcp_party_max": party_peak,
        "peak_within_budget": party_peak.is_some_and(|p| p <= budget),
        "bytes_per_fixed_element": party_peak.map(|p| p as f64 / elements.max(1) as f64),
        "dealer_peak_bytes": dealer_peak,
        "dealer_within_1gib": dealer_peak.is_some_and(|p| p <= DEALER_PEAK_BYTES_GOAL),
        "peak_bytes_inprocess": peak_of(&report["inprocess"]),
    });
    report
}

fn ms(s: f64) -> String {
    match s {
        s if s >= 1.0 => format!("{s:.2} s"),
        s if s >= 1e-3 => format!("{:.1} ms", s * 1e3),
        s => format!("{:.1} µs", s * 1e6),
    }
}

fn gb(b: u64) -> String {
    format!("{:.2} GB", b as f64 / 1e9)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

/// The table.
pub fn render(r: &Value) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "machine: {}", machine_line(&r["machine"]));
    matmul_table(&mut o, r);
    session_table(&mut o, r);
    goals(&mut o, r);
    o
}

fn matmul_table(o: &mut String, r: &Value) {
    let empty = Vec::new();
    let rows = r["matmul"].as_array().unwrap_or(&empty);
    let threads = rows.first().map_or(0, |x| u(&x["threads"]));
    let _ = writeln!(
        o,
        "\nshare matmul, one party's fixed-weight product C_p + E·B_p + (A_p + E)·F (weights \
         set up, packed: two ring products), against ndarray f64 dot (1 thread); median of {} \
         after a warm-up; 1 product: one of the two ring products alone; ratio: share / \
         f64; per core: share on 1 thread / f64; best: fastest share / fastest f64",
        u(&r["reps"])
    );
    let _ = writeln!(
        o,
        "{:<20} {:<26} {:>11} {:>12} {:>12} {:>10} {:>7} {:>9} {:>9}",
        "shape",
        "in GPT-2 small",
        "1 product",
        format!("share, {threads} thr"),
        "share, 1 thr",
        "f64",
        "ratio",
        "per core",
        "best"
    );
    for x in rows {
        let shape = format!(
            "{}×{} · {}×{}",
            u(&x["m"]),
            u(&x["k"]),
            u(&x["k"]),
            u(&x["n"])
        );
        let _ = writeln!(
            o,
            "{shape:<20} {:<26} {:>11} {:>12} {:>12} {:>10} {:>6.2}× {:>8.2}× {:>8.2}×",
            x["what"].as_str().unwrap_or(""),
            ms(f(&x["one_product_s"])),
            ms(f(&x["share_s"])),
            ms(f(&x["share_1t_s"])),
            ms(f(&x["f64_s"])),
            f(&x["ratio"]),
            f(&x["ratio_1t"]),
            f(&x["ratio_best"])
        );
    }
}

/// One row of the session table.
fn row(o: &mut String, cells: [&str; 11]) {
    let [
        run,
        call,
        time,
        cpu,
        online,
        rounds,
        dealer,
        setup,
        exact,
        before,
        peak,
    ] = cells;
    let _ = writeln!(
        o,
        "{run:<23} {call:<22} {time:>8} {cpu:>8} {online:>10} {rounds:>6} {dealer:>10} \
         {setup:>9} {exact:>5} {before:>8} {peak:>8}"
    );
}

fn call_name(k: usize, c: &Value) -> String {
    let kind = if k == 0 { "prefill" } else { "decode" };
    let setup = if k == 0 { " +setup" } else { "" };
    format!(
        "{}: {kind} {}@{}{setup}",
        k + 1,
        u(&c["seq"]),
        u(&c["past"])
    )
}

/// A run's rows; `offline(k)`: the dealer's bits of call `k` (in process: measured; over
/// TCP: both parties' parts).
fn call_rows(o: &mut String, label: &str, v: &Value, offline: &dyn Fn(usize) -> u64) {
    if let Some(e) = v["error"].as_str() {
        let _ = writeln!(o, "{label:<23} failed: {e}");
        return;
    }
    for (k, c) in calls_of(v).iter().enumerate() {
        let (m, est) = (&c["measured"], &c["estimated"]);
        let exact = u(&m["online_bits"]) == u(&est["online_bits"])
            && u(&m["rounds"]) == u(&est["rounds"])
            && offline(k) == u(&est["offline_bits"]);
        let setup = match u(&m["setup_bits"]) {
            0 => "-".to_string(),
            s => format!("{} {}", bytes(s), ms(f(&c["setup_seconds"]))),
        };
        let cells = [
            label,
            &call_name(k, c),
            &ms(f(&c["seconds"])),
            &ms(f(&c["cpu_seconds"])),
            &bytes(u(&m["online_bits"])),
            &u(&m["rounds"]).to_string(),
            &bytes(offline(k)),
            &setup,
            yes(exact),
            &gb(u(&c["rss_before_bytes"])),
            &gb(u(&c["peak_bytes"])),
        ];
        row(o, cells);
    }
}

fn session_table(o: &mut String, r: &Value) {
    let (ip, tcp) = (&r["inprocess"], &r["tcp"]);
    let _ = writeln!(
        o,
        "\nsession of {} with random weights: a prefill of {} tokens into an empty KV cache \
         (with the once-per-session setup), then {} decode steps",
        r["model"].as_str().unwrap_or("?"),
        u(&r["prefill"]),
        u(&r["steps"])
    );
    let head = [
        "run", "call", "time", "cpu", "online", "rounds", "dealer", "setup", "= est", "mem", "peak",
    ];
    row(o, head);
    let estimated = [ip, &tcp["party1"], &tcp["party0"]]
        .into_iter()
        .map(calls_of)
        .find(|c| !c.is_empty())
        .unwrap_or_default();
    for (k, c) in estimated.iter().enumerate() {
        let e = &c["estimated"];
        let (on, rounds, off) = (u(&e["online_bits"]), u(&e["rounds"]), u(&e["offline_bits"]));
        let cells = [
            "plan's estimate",
            &call_name(k, c),
            "",
            "",
            &bytes(on),
            &rounds.to_string(),
            &bytes(off),
            "",
            "",
            "",
            "",
        ];
        row(o, cells);
    }
    let ip_calls = calls_of(ip);
    call_rows(o, "in process, 2 parties", ip, &|k| {
        u(&ip_calls[k]["measured"]["offline_bits"])
    });
    if let Some(e) = tcp["error"].as_str() {
        let _ = writeln!(o, "{:<23} failed: {e}", "TCP loopback");
        return;
    }
    let (c0, c1) = (calls_of(&tcp["party0"]), calls_of(&tcp["party1"]));
    let both =
        |k: usize| u(&c0[k]["measured"]["offline_bits"]) + u(&c1[k]["measured"]["offline_bits"]);
    call_rows(o, "TCP, party 1 (client)", &tcp["party1"], &both);
    call_rows(o, "TCP, party 0 (server)", &tcp["party0"], &both);
    dealer_rows(o, &tcp["dealer"]);
    let _ = writeln!(
        o,
        "time: wall clock, the client's over TCP; in process it includes the dealer. cpu: the \
         process's CPU time during the call (all threads). setup: the once-per-session opening \
         of W − B (bytes both parties sent, and seconds). mem: resident memory before the call \
         (freed memory returned); peak: the process's peak resident memory during the call. \
         In process: both parties and the dealer; over TCP: one process per party, and the \
         dealer service streaming each call's material as the parties reach it (its peak: over \
         the whole session)."
    );
}

fn dealer_rows(o: &mut String, d: &Value) {
    for (k, c) in calls_of(d).iter().enumerate() {
        let exact = u(&c["dealt_bits"]) == u(&c["estimated_bits"]);
        let peak = if k == 0 {
            gb(u(&d["peak_bytes"]))
        } else {
            String::new()
        };
        let cells = [
            "TCP, dealer service",
            &call_name(k, c),
            &ms(f(&c["seconds"])),
            &cpu_cell(&c["cpu_seconds"]),
            "-",
            "-",
            &bytes(u(&c["dealt_bits"])),
            "-",
            yes(exact),
            "",
            &peak,
        ];
        row(o, cells);
    }
}

/// A CPU time in seconds, or nothing where the report has none.
fn cpu_cell(v: &Value) -> String {
    v.as_f64().map_or_else(String::new, |s| format!("{s:.2} s"))
}

fn goals(o: &mut String, r: &Value) {
    let g = &r["goals"];
    let opt_ms = |v: &Value| v.as_f64().map_or("-".into(), ms);
    let opt_gb = |v: &Value| v.as_u64().map_or("-".into(), gb);
    let _ = writeln!(
        o,
        "\n{}goals (issue 11) on {} cores: decode step ≤ 1.0 s over TCP: {} (median {}); setup \
         ≤ 15 s: {} ({}); peak per party ≤ 20 B per fixed-operand element + 0.5 GiB = {}: {} \
         ({}, {:.1} B per element); dealer service ≤ 1 GiB: {} ({}); in process: {}; share \
         matmul within 4× of f64: {} (worst {:.2}×)",
        match r["quick"].as_bool() {
            Some(true) => "(--quick: the goals are GPT-2 small's; figures of the tiny model) ",
            _ => "",
        },
        u(&r["machine"]["cores"]),
        yes(g["decode_within_goal"].as_bool().unwrap_or(false)),
        opt_ms(&g["decode_seconds_tcp_median"]),
        yes(g["setup_within_goal"].as_bool().unwrap_or(false)),
        opt_ms(&g["setup_seconds_tcp"]),
        gb(u(&g["peak_bytes_budget_per_party"])),
        yes(g["peak_within_budget"].as_bool().unwrap_or(false)),
        opt_gb(&g["peak_bytes_tcp_party_max"]),
        f(&g["bytes_per_fixed_element"]),
        yes(g["dealer_within_1gib"].as_bool().unwrap_or(false)),
        opt_gb(&g["dealer_peak_bytes"]),
        opt_gb(&g["peak_bytes_inprocess"]),
        yes(g["matmul_within_4x"].as_bool().unwrap_or(false)),
        f(&g["matmul_ratio_max"]),
    );
}
