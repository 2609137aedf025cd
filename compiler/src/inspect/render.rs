//! Text and JSON forms of reports.

use super::memory::{
    FIXED_OPERAND_ELEMENT_BYTES, ONE_SIDED_ELEMENT_BYTES, PartyMemory, PhaseMemory,
};
use super::report::{Amounts, CallReport, CompareReport, Report, Row, Totals, ratio};
use super::units;
use std::collections::BTreeMap;
use std::fmt::Write;

/// A table: a header and rows of cells; the first column is left-aligned, the others are
/// right-aligned; an optional last row is set off by a rule.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    total: Option<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            total: None,
        }
    }

    fn render(&self, out: &mut String) {
        let all = || {
            std::iter::once(&self.header)
                .chain(&self.rows)
                .chain(&self.total)
        };
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| all().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        line(out, &widths, &self.header);
        for r in &self.rows {
            line(out, &widths, r);
        }
        if let Some(t) = &self.total {
            let width = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            out.push_str(&"-".repeat(width));
            out.push('\n');
            line(out, &widths, t);
        }
    }
}

/// One table line: the first cell padded on the right, the others on the left.
fn line(out: &mut String, widths: &[usize], cells: &[String]) {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .enumerate()
        .map(|(c, (cell, w))| match c {
            0 => format!("{cell:<w$}"),
            _ => format!("{cell:>w$}"),
        })
        .collect();
    out.push_str(padded.join("  ").trim_end());
    out.push('\n');
}

const GROUP_COLUMNS: [&str; 6] = [
    "rounds",
    "unmerged",
    "online",
    "offline",
    "share",
    "local ops",
];

fn group_cells(name: &str, a: &Amounts, share: f64) -> Vec<String> {
    vec![
        name.to_string(),
        units::count(a.rounds),
        units::count(a.rounds_unmerged),
        units::bits_as_bytes(a.online_bits),
        units::bits_as_bytes(a.offline_bits),
        units::percent(share),
        units::count(a.local_ops),
    ]
}

fn is_empty(a: &Amounts) -> bool {
    *a == Amounts::default()
}

/// One call's table grouped one way; rows with no cost at all are left out and counted.
fn group_table(out: &mut String, title: &str, first: &str, rows: &[Row], call: &Totals) {
    let _ = writeln!(out, "\n{title}");
    let mut header = vec![first];
    header.extend(GROUP_COLUMNS);
    let mut t = Table::new(&header);
    let shown: Vec<&Row> = rows.iter().filter(|r| !is_empty(&r.amounts)).collect();
    for r in &shown {
        t.rows
            .push(group_cells(&r.name, &r.amounts, r.online_share));
    }
    let share = if call.amounts.online_bits == 0 {
        0.0
    } else {
        1.0
    };
    t.total = Some(group_cells("total", &call.amounts, share));
    t.render(out);
    let hidden = rows.len() - shown.len();
    if hidden > 0 {
        let _ = writeln!(out, "({hidden} more with no rounds, bytes or local ops)");
    }
}

fn call_title(c: &CallReport, what: &str) -> String {
    format!("{what} (seq {}, past {})", c.seq, c.past)
}

fn call_tables(out: &mut String, c: &CallReport, what: &str) {
    let title = call_title(c, what);
    group_table(
        out,
        &format!("{title}, by layer"),
        "layer",
        &c.by_layer,
        &c.totals,
    );
    group_table(
        out,
        &format!("{title}, by op kind"),
        "op kind",
        &c.by_op_kind,
        &c.totals,
    );
    group_table(
        out,
        &format!("{title}, by protocol"),
        "protocol",
        &c.by_protocol,
        &c.totals,
    );
}

fn totals_cells(name: String, t: &Totals) -> Vec<String> {
    let a = &t.amounts;
    vec![
        name,
        units::count(a.rounds),
        units::count(a.rounds_unmerged),
        units::bits_as_bytes(a.online_bits),
        units::bits_as_bytes(a.offline_bits),
        units::count(a.local_ops),
        units::seconds(t.latency.total_s),
    ]
}

/// `1 token`, `16 tokens`.
fn tokens(n: u64) -> String {
    match n {
        1 => "1 token".into(),
        n => format!("{} tokens", units::count(n)),
    }
}

/// The calls a report covers, in words.
fn calls_line(r: &Report) -> String {
    let s = &r.settings;
    match s.generate {
        1 => format!("prefill of {} tokens (1 call)", s.prompt),
        2 => format!(
            "prefill of {} tokens, then 1 decode step (past {})",
            s.prompt, s.prompt
        ),
        g => format!(
            "prefill of {} tokens, then {} decode steps (past {} … {})",
            s.prompt,
            g - 1,
            s.prompt,
            s.prompt + g - 2
        ),
    }
}

fn assumptions(out: &mut String, r: &Report) {
    let s = &r.settings;
    let _ = writeln!(out, "calls: {}", calls_line(r));
    let _ = writeln!(
        out,
        "network: {}; compute: {} ring multiplications/s per party (assumed)",
        s.net,
        units::rate(s.compute_rate_ops_per_s)
    );
}

fn totals_table(out: &mut String, r: &Report) {
    let mut t = Table::new(&[
        "",
        "rounds",
        "unmerged",
        "online",
        "offline",
        "local ops",
        "latency",
    ]);
    t.rows.push(totals_cells(
        format!("prefill (seq {})", r.prefill.seq),
        &r.prefill.totals,
    ));
    if let Some(d) = &r.last_decode {
        t.rows.push(totals_cells(
            format!("last decode step (past {})", d.past),
            &d.totals,
        ));
    }
    // one decode step: its row above is already the sum
    if let Some(d) = r.decode_steps.as_ref().filter(|d| d.calls > 1) {
        let label = format!("all {} decode steps", units::count(d.calls));
        t.rows.push(totals_cells(label, d));
    }
    let g = &r.generation;
    // an encoder runs once: there is no generation to speak of
    let (label, what) = match r.kv_cache {
        true => (
            format!("generation ({})", tokens(g.calls)),
            "generation latency",
        ),
        false => ("total (1 call)".to_string(), "latency"),
    };
    t.total = Some(totals_cells(label, g));
    t.render(out);
    let l = &g.latency;
    let _ = writeln!(
        out,
        "{what} = {} rounds + {} transfer + {} compute",
        units::seconds(l.rounds_s),
        units::seconds(l.transfer_s),
        units::seconds(l.compute_s)
    );
}

/// The projected resident peaks per party and phase, and bytes per parameter.
fn memory_table(out: &mut String, r: &Report) {
    let m = &r.memory;
    let _ = writeln!(out, "\nprojected memory per party (resident peak)");
    let mut t = Table::new(&["", "party 0", "party 1"]);
    let row = |label: String, cell: &dyn Fn(&PartyMemory) -> String| -> Vec<String> {
        std::iter::once(label)
            .chain(m.parties.iter().map(cell))
            .collect()
    };
    let peak = |x: &PhaseMemory| units::bytes(x.peak_bytes as f64);
    t.rows.push(row("setup".into(), &|p| peak(&p.setup)));
    let prefill = format!("prefill (seq {})", r.prefill.seq);
    t.rows.push(row(prefill, &|p| peak(&p.prefill)));
    if let Some(d) = &r.last_decode {
        let decode = format!("last decode step (past {})", d.past);
        t.rows
            .push(row(decode, &|p| p.decode.as_ref().map_or("—".into(), peak)));
    }
    let per_parameter =
        |p: &PartyMemory| (p.bytes_per_parameter).map_or("—".into(), |b| format!("{b:.1}"));
    t.rows
        .push(row("bytes per parameter".into(), &per_parameter));
    t.render(out);
    let kv = match r.kv_cache {
        true => format!("KV cache at {} positions", units::count(m.context)),
        false => "no KV cache".into(),
    };
    let _ = writeln!(
        out,
        "{} parameters; fixed operands: {} elements, {} one-sided × {ONE_SIDED_ELEMENT_BYTES} \
         B (W at the owner, F = W − B at the other party), {} two-sided × \
         {FIXED_OPERAND_ELEMENT_BYTES} B (F and B_p) per party; {kv}",
        units::count(m.parameters),
        units::count(m.fixed_operand_elements),
        units::count(m.one_sided_elements),
        units::count(m.fixed_operand_elements - m.one_sided_elements),
    );
}

const LEGEND: &str = "\
rounds: after merging (every exchange of a round travels together); for a group, the rounds
  in which it sends anything, so groups that share rounds add up to more than the total.
unmerged: Σ of every node's own rounds, each exchange on its own.
online: bytes sent by both parties together; offline: bytes sent by the dealer; share: of
  the call's online bytes. local ops: ring multiplications per party.
latency = rounds × round latency + online bytes / bandwidth + local ops / compute rate.
";

/// The text form of a report.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan {}: model {}, comparison {}{}, {} nodes ({} communicating)",
        r.plan,
        r.model,
        comparison_name(r),
        approx_note(r),
        units::count(r.nodes),
        units::count(r.communicating_nodes)
    );
    assumptions(&mut out, r);
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out.push('\n');
    totals_table(&mut out, r);
    memory_table(&mut out, r);
    super::failure::failure_section(&mut out, r);
    call_tables(&mut out, &r.prefill, "prefill");
    if let Some(d) = &r.last_decode {
        call_tables(&mut out, d, "last decode step");
    }
    out.push('\n');
    out.push_str(LEGEND);
    out
}

/// `, approx puma`; nothing for an exact plan (whose header stays as it was).
fn approx_note(r: &Report) -> String {
    match r.approx.as_str() {
        "exact" => String::new(),
        a => format!(", approx {a}"),
    }
}

fn comparison_name(r: &Report) -> &'static str {
    match r.comparison {
        comet_ir::Comparison::Fss => "fss",
        comet_ir::Comparison::Gmw => "gmw",
    }
}

/// Rows `(label, this, other, ratio)` for one pair of totals.
fn compare_rows(t: &mut Table, what: &str, a: &Totals, b: &Totals) {
    let (x, y) = (&a.amounts, &b.amounts);
    let n = |v: u64| units::count(v);
    let by = |v: u64| units::bits_as_bytes(v);
    let cells: [(&str, String, String, Option<f64>); 5] = [
        (
            "rounds",
            n(x.rounds),
            n(y.rounds),
            ratio(x.rounds as f64, y.rounds as f64),
        ),
        (
            "unmerged",
            n(x.rounds_unmerged),
            n(y.rounds_unmerged),
            ratio(x.rounds_unmerged as f64, y.rounds_unmerged as f64),
        ),
        (
            "online",
            by(x.online_bits),
            by(y.online_bits),
            ratio(x.online_bits as f64, y.online_bits as f64),
        ),
        (
            "offline",
            by(x.offline_bits),
            by(y.offline_bits),
            ratio(x.offline_bits as f64, y.offline_bits as f64),
        ),
        (
            "latency",
            units::seconds(a.latency.total_s),
            units::seconds(b.latency.total_s),
            ratio(a.latency.total_s, b.latency.total_s),
        ),
    ];
    for (label, this, other, r) in cells {
        t.rows.push(vec![
            format!("{what} {label}"),
            this,
            other,
            units::ratio(r),
        ]);
    }
}

/// Per-op-kind rows of both calls, by the larger online figure, then name.
fn compare_ops(out: &mut String, title: &str, a: &CallReport, b: &CallReport) {
    let mut rows: BTreeMap<&str, (Amounts, Amounts)> = BTreeMap::new();
    for r in &a.by_op_kind {
        rows.entry(&r.name).or_default().0 = r.amounts;
    }
    for r in &b.by_op_kind {
        rows.entry(&r.name).or_default().1 = r.amounts;
    }
    let total = rows.len();
    let sends = |a: &Amounts| a.rounds + a.online_bits + a.offline_bits > 0;
    let mut rows: Vec<(&str, Amounts, Amounts)> = rows
        .into_iter()
        .filter(|(_, (x, y))| sends(x) || sends(y))
        .map(|(k, (x, y))| (k, x, y))
        .collect();
    let hidden = total - rows.len();
    rows.sort_by(|p, q| {
        let key = |r: &(&str, Amounts, Amounts)| r.1.online_bits.max(r.2.online_bits);
        key(q).cmp(&key(p)).then(p.0.cmp(q.0))
    });
    let _ = writeln!(out, "\n{title}, by op kind (this / other)");
    let mut t = Table::new(&[
        "op kind", "online", "other", "ratio", "rounds", "other", "ratio",
    ]);
    for (name, x, y) in rows {
        t.rows.push(vec![
            name.to_string(),
            units::bits_as_bytes(x.online_bits),
            units::bits_as_bytes(y.online_bits),
            units::ratio(ratio(x.online_bits as f64, y.online_bits as f64)),
            units::count(x.rounds),
            units::count(y.rounds),
            units::ratio(ratio(x.rounds as f64, y.rounds as f64)),
        ]);
    }
    t.render(out);
    if hidden > 0 {
        let _ = writeln!(out, "({hidden} more that communicate in neither plan)");
    }
}

/// The text form of a comparison.
pub fn render_compare(c: &CompareReport) -> String {
    let (a, b) = (&c.this, &c.other);
    let mut out = String::new();
    for (role, r) in [("this ", a), ("other", b)] {
        let _ = writeln!(
            out,
            "{role}: plan {}: model {}, comparison {}{}, {} nodes ({} communicating)",
            r.plan,
            r.model,
            comparison_name(r),
            approx_note(r),
            units::count(r.nodes),
            units::count(r.communicating_nodes)
        );
    }
    assumptions(&mut out, a);
    for n in a.notes.iter().chain(&b.notes) {
        let _ = writeln!(out, "note: {n}");
    }
    out.push_str("ratio = this / other\n\n");
    let mut t = Table::new(&["", "this", "other", "ratio"]);
    compare_rows(&mut t, "prefill", &a.prefill.totals, &b.prefill.totals);
    if let (Some(x), Some(y)) = (&a.last_decode, &b.last_decode) {
        compare_rows(&mut t, "last decode step", &x.totals, &y.totals);
    }
    compare_rows(&mut t, "generation", &a.generation, &b.generation);
    t.render(&mut out);
    compare_ops(
        &mut out,
        &call_title(&a.prefill, "prefill"),
        &a.prefill,
        &b.prefill,
    );
    if let (Some(x), Some(y)) = (&a.last_decode, &b.last_decode) {
        compare_ops(&mut out, &call_title(x, "last decode step"), x, y);
    }
    out.push('\n');
    out.push_str(LEGEND);
    out
}

/// The JSON form of a report (pretty, stable field names).
pub fn to_json<T: serde::Serialize>(r: &T) -> String {
    let mut s = serde_json::to_string_pretty(r).expect("reports hold no map with non-string keys");
    s.push('\n');
    s
}
