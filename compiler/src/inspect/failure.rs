//! The text form of the truncation failure bound of each call ([`crate::range`]).

use super::report::{CallReport, Report};
use super::units;
use crate::range::{RangeReport, TruncationRisk};
use std::fmt::Write;

/// The section: one block per evaluated call.
pub(super) fn failure_section(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "\ntruncation failure per call (local SecureML and faithful FSS truncations, union \
         bound; weights |w| ≤ {})",
        r.prefill.truncation.weight_bound
    );
    let _ = writeln!(out, "  {}", policy(r.truncation_policy.as_ref()));
    call_block(out, &r.prefill, "prefill", "seq");
    if let Some(d) = &r.last_decode {
        call_block(out, d, "last decode step", "past");
    }
}

fn call_block(out: &mut String, c: &CallReport, label: &str, dim: &str) {
    let t = &c.truncation;
    let n = if dim == "seq" { c.seq } else { c.past };
    let _ = writeln!(
        out,
        "  {label} ({dim} {n}): P(fail) ≤ {}; {} truncations ({} local, {} faithful), {} at \
         risk (> 2^-40 per element), {} unbounded",
        probability(t.total_failure),
        units::count(t.truncations),
        units::count(t.truncations - t.faithful),
        units::count(t.faithful),
        units::count(t.at_risk),
        units::count(t.unbounded)
    );
    for (name, gate) in [
        ("stochastic_trunc", "stochastic"),
        ("faithful_trunc", "exact"),
    ] {
        if let Some(row) = c.by_protocol.iter().find(|r| r.name == name) {
            let _ = writeln!(
                out,
                "    faithful truncations ({gate} gate): {} elements, online {}, dealer {}, {} \
                 rounds in which they exchange",
                units::count(t.faithful_elements),
                units::bits_as_bytes(row.amounts.online_bits),
                units::bits_as_bytes(row.amounts.offline_bits),
                units::count(row.amounts.rounds)
            );
        }
    }
    if let Some(f) = &t.first_at_risk {
        let _ = writeln!(out, "    first at risk: {}", risk(f));
    }
    for w in &t.worst {
        let _ = writeln!(out, "    worst: {}", risk(w));
    }
    notes(out, t);
}

/// Violated recipe assumptions and unmodelled ops, which void the bound.
fn notes(out: &mut String, t: &RangeReport) {
    if let Some(v) = t.violations.first() {
        let _ = writeln!(
            out,
            "    recipe inputs outside their assumed range: {} (first: {} {} in {}: {} not in {})",
            t.violations.len(),
            v.node,
            v.recipe,
            place(&v.scope),
            interval(v.range.lo, v.range.hi),
            interval(v.assumed.lo, v.assumed.hi)
        );
    }
    if !t.unmodelled.is_empty() {
        let _ = writeln!(
            out,
            "    unmodelled ops (unbounded): {}",
            t.unmodelled.join(", ")
        );
    }
}

/// The plan's truncation policy (pass `faithful-trunc`).
fn policy(p: Option<&comet_ir::TruncationPolicy>) -> String {
    match p {
        None => "plan compiled without the faithful-trunc pass: every truncation local".into(),
        Some(p) => {
            let mode = match p.mode {
                comet_ir::FaithfulMode::Auto => format!(
                    "auto (local within {} per call at context {}, |w| ≤ {})",
                    probability(p.max_failure),
                    p.context,
                    p.weight_bound
                ),
                comet_ir::FaithfulMode::Always => "always".into(),
                comet_ir::FaithfulMode::Never => "never (every truncation local)".into(),
            };
            let gate = match p.gate {
                comet_ir::FaithfulGate::Stochastic => "stochastic",
                comet_ir::FaithfulGate::Exact => "exact",
            };
            format!("plan's policy (--faithful-trunc): {mode}; gate (--faithful-gate): {gate}")
        }
    }
}

fn risk(t: &TruncationRisk) -> String {
    let bound = t
        .bound
        .map_or("unbounded".to_string(), |b| format!("|x| ≤ {}", number(b)));
    format!(
        "{}{} {} in {}: {bound} at {} fractional bits, {} per element × {} = {}",
        t.node,
        if t.faithful { " (faithful)" } else { "" },
        t.op_kind,
        if t.scope.is_empty() {
            "top level"
        } else {
            &t.scope
        },
        t.scale,
        probability(t.per_element),
        units::count(t.elements),
        probability(t.total)
    )
}

fn place(scope: &str) -> &str {
    if scope.is_empty() { "top level" } else { scope }
}

/// `1`, `0`, or `2^-18.3`.
fn probability(p: f64) -> String {
    if p >= 1.0 {
        "1".into()
    } else if p <= 0.0 {
        "0".into()
    } else {
        format!("2^{:.1}", p.log2())
    }
}

/// Three significant digits, in scientific notation outside [0.01, 10^5).
fn number(v: f64) -> String {
    if !v.is_finite() {
        return if v > 0.0 {
            "∞".into()
        } else {
            "−∞".into()
        };
    }
    if v == 0.0 || (0.01..1e5).contains(&v.abs()) {
        format!("{}", (v * 1000.0).round() / 1000.0)
    } else {
        format!("{v:.2e}")
    }
}

fn interval(lo: f64, hi: f64) -> String {
    format!("[{}, {}]", number(lo), number(hi))
}
