//! The deterministic text form, laid out with the `pretty` crate.
//!
//! Nodes print in the canonical topological order ([`Program::canonical_order`]) and are
//! numbered compactly `%0, %1, ...` in that order, so two programs that differ only in
//! node creation order print the same. Long operand lists wrap at [`WIDTH`] columns.

use crate::dim::shape_string;
use crate::graph::NodeId;
use crate::program::{ModelInfo, Program};
use pretty::RcDoc;
use std::collections::HashMap;
use std::fmt::Write;

/// Line width of the text form.
pub const WIDTH: usize = 100;

/// The graph alone: one line (or wrapped group) per node.
pub fn print_graph(p: &Program) -> String {
    let order = match p.canonical_order() {
        Ok(o) => o,
        Err(e) => return format!("<unprintable: {e}>\n"),
    };
    let numbering: HashMap<NodeId, usize> =
        order.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut out = String::new();
    for id in &order {
        let doc = node_doc(p, *id, &numbering);
        doc.render_fmt(WIDTH, &mut out)
            .expect("writing to a String cannot fail");
        out.push('\n');
    }
    out
}

/// The whole plan: declarations, then the graph.
pub fn print_plan(p: &Program) -> String {
    let mut out = header(&p.info);
    if !p.options.approx.is_exact() {
        let _ = writeln!(out, "approx {}", p.options.approx);
    }
    out.push('\n');
    out.push_str(&print_graph(p));
    out
}

fn header(info: &ModelInfo) -> String {
    let mut s = String::new();
    let f = info.format;
    let _ = writeln!(s, "model {}  (ring {}, frac {})", info.name, f.ring, f.frac);
    let dims: Vec<String> = info
        .dims
        .iter()
        .map(|d| match d.value {
            Some(v) => format!("{} = {v}", d.name),
            None => d.name.clone(),
        })
        .collect();
    let _ = writeln!(s, "dims {}", dims.join(", "));
    for i in &info.inputs {
        let _ = writeln!(
            s,
            "input {}: {}{} from {}",
            i.name,
            i.elem,
            shape_string(&i.shape),
            i.party
        );
    }
    for w in &info.weights {
        let t = if w.transposed { " transposed" } else { "" };
        let _ = writeln!(
            s,
            "weight {}: {:?} = \"{}\"{t} from {}",
            w.name, w.shape, w.tensor, w.party
        );
    }
    for o in &info.outputs {
        let _ = writeln!(s, "output {} to {}", o.name, o.party);
    }
    s
}

fn node_doc<'a>(p: &'a Program, id: NodeId, numbering: &HashMap<NodeId, usize>) -> RcDoc<'a, ()> {
    let node = p.graph.node(id);
    let operands = p.graph.operands(id);
    let args = RcDoc::intersperse(
        operands
            .iter()
            .map(|x| RcDoc::text(format!("%{}", numbering[x]))),
        RcDoc::text(",").append(RcDoc::line()),
    );
    let mut doc = RcDoc::text(format!("%{} = {}", numbering[&id], node.op.name()));
    if !operands.is_empty() {
        doc = doc.append(RcDoc::text("(").append(args.nest(4)).append(")").group());
    }
    let mut attrs = node.op.attrs();
    if let Some(w) = node.cmp_width {
        attrs.push(("width", w.to_string()));
    }
    if node.open_at_cmp_width {
        attrs.push(("opened", "narrow".to_string()));
    }
    if node.reads_opening {
        attrs.push(("reads", "opening".to_string()));
    }
    doc = doc.append(attrs_doc(attrs));
    doc = doc.append(RcDoc::text(format!(" : {}", node.ty)));
    if let Some(c) = p.analyses.costs.as_ref().and_then(|t| t.get(id)) {
        doc = doc.append(RcDoc::text(format!(" [{}]", c.protocol)));
    }
    if let Some(r) = p.analyses.rounds.as_ref().and_then(|t| t.get(id)) {
        doc = doc.append(RcDoc::text(format!(" @{r}")));
    }
    let scope = &node.scope;
    let origin =
        (!scope.origin.is_empty() && scope.origin != node.op.name()).then_some(&scope.origin);
    match (scope.path.is_empty(), origin) {
        (true, None) => {}
        (false, None) => doc = doc.append(RcDoc::text(format!("  # {}", scope.path))),
        (true, Some(o)) => doc = doc.append(RcDoc::text(format!("  # ({o})"))),
        (false, Some(o)) => doc = doc.append(RcDoc::text(format!("  # {} ({o})", scope.path))),
    }
    doc
}

fn attrs_doc<'a>(attrs: Vec<(&'static str, String)>) -> RcDoc<'a, ()> {
    if attrs.is_empty() {
        return RcDoc::nil();
    }
    let items = attrs
        .into_iter()
        .map(|(k, v)| RcDoc::text(format!("{k} = {v}")));
    RcDoc::text(" {")
        .append(RcDoc::intersperse(items, RcDoc::text(",").append(RcDoc::line())).nest(4))
        .append("}")
        .group()
}
