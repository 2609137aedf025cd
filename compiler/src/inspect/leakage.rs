//! `comet inspect --leakage`: what a plan opens, derived from its graph.
//!
//! **Opened values.** Every node that makes a secret value readable: `reveal` (to one
//! party), `output` (to its receiver; its operand is a `reveal` or already that party's)
//! and `open` (to both parties). Everything else is secret-shared or private to the party
//! that provided it. Outputs are listed by name; an `open` read by a sparse FFN's
//! `apply_mask` or `block_matmul` is that FFN's block mask; any other opened value is listed
//! as such, so nothing that opens a value goes unreported.
//!
//! **Sparse FFNs.** A mask `[seq, blocks]` tells, per token, which blocks of `B` neurons are
//! active. It is in permuted order when the predictor that computes it reads
//! `block_permute`d weights (found by walking back from the `open` through the predictor's
//! nodes: same layer, same origin). The permutation is uniform and unknown to both parties,
//! so one token's mask alone tells no more than its number of active blocks, at most
//! `log2(blocks + 1)` bits; across the tokens of a session, which use the same permutation,
//! the masks show which permuted blocks co-occur. The whole mask is ≤ `blocks` bits per
//! token.
//!
//! **Trust.** The permutation `π = π1∘π0` is dealt: the dealer draws both halves, party 0
//! learns only `π0`, party 1 only `π1`; the dealer, who knows `π`, must not collude with
//! either party, as for all dealt material.

use comet_ir::dim::shape_string;
use comet_ir::exposure::{AcceptLeakage, least_acceptance, mask_of, mask_permutations};
use comet_ir::{NodeId, Op, Party, Program};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

/// What a plan reveals, from its graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeakageReport {
    /// The plan (as named by the caller).
    pub plan: String,
    /// The model's name.
    pub model: String,
    /// Whether the plan has sparse FFNs (masks opened to both parties).
    pub sparse: bool,
    /// One sentence: what is opened beyond the outputs.
    pub verdict: String,
    /// Every node that opens a value, grouped.
    pub opened: Opened,
    /// Per sparse FFN (by layer): what its opened mask reveals and bounds on it.
    pub layers: Vec<LayerLeakage>,
    /// The sums of the per-layer bounds (sparse plans only).
    pub totals: Option<Totals>,
    /// The trust assumptions the statements rely on.
    pub trust: Vec<String>,
    /// What every plan makes public: the symbolic lengths (shapes are public).
    pub public: String,
    /// Whether `comet run --party 1` runs the plan, and with which `--accept-leakage`
    /// (`comet_ir::exposure`: the client's reveal policy, from the same graph).
    pub client: String,
    /// The first sparse unit that is a head-sparse attention's KV-group mask (pass
    /// `head-sparsify`): units from it on are attentions, not FFNs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_units: Option<u32>,
}

/// The nodes that open a value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Opened {
    /// The model's outputs.
    pub outputs: Vec<OpenedOutput>,
    /// The block masks of the sparse FFNs, in layer order.
    pub masks: Vec<OpenedMask>,
    /// Anything else that opens a value (a `reveal` that feeds no output, an `open` that is
    /// no FFN's mask); empty for plans built by the compiler.
    pub other: Vec<OpenedValue>,
}

/// An output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenedOutput {
    /// The `output` node, numbered as in `comet show` (`%12`).
    pub node: String,
    /// Output name.
    pub name: String,
    /// Receiver.
    pub to: Party,
    /// Shape, e.g. `[seq, 1024]`.
    pub shape: String,
    /// The `reveal` node that opens it, if its operand is one.
    pub reveal: Option<String>,
}

/// A sparse FFN's block mask, opened to both parties.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenedMask {
    /// The `open` node.
    pub node: String,
    /// The sparse FFN (`ffn` of its `apply_mask` / `block_matmul`).
    pub ffn: u32,
    /// Its layer, if any.
    pub layer: Option<u32>,
    /// Shape `[seq, blocks]`.
    pub shape: String,
    /// Blocks per token.
    pub blocks: u64,
    /// Neurons per block `B`.
    pub block: u64,
    /// The FFN's width before padding (from the plan's sparsity options).
    pub ff: Option<u64>,
    /// `blocks · B`: the width after padding with zero neurons.
    pub padded: u64,
    /// The permutations the mask's columns are in (the `block_permute`s its predictor
    /// reads); empty: the mask is in the model's block order.
    pub permutations: Vec<u32>,
}

/// Any other opened value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenedValue {
    /// The node.
    pub node: String,
    /// Its op (`reveal`, `open`).
    pub op: String,
    /// `both`, `client` or `server`.
    pub to: String,
    /// Shape.
    pub shape: String,
    /// Layer, if any.
    pub layer: Option<u32>,
    /// Block path (empty at top level).
    pub path: String,
}

/// What one sparse FFN's mask reveals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerLeakage {
    /// Layer, if any.
    pub layer: Option<u32>,
    /// The sparse FFN.
    pub ffn: u32,
    /// The `open` node.
    pub mask: String,
    /// The mask's shape.
    pub shape: String,
    /// Blocks per token.
    pub blocks: u64,
    /// Neurons per block `B`.
    pub block: u64,
    /// Whether the mask is in a secret permuted order.
    pub permuted: bool,
    /// Upper bound on the information in the number of active blocks per token:
    /// `log2(blocks + 1)` bits.
    pub count_bits: f64,
    /// Upper bound on the information in the whole mask per token: `blocks` bits.
    pub mask_bits: u64,
    /// What the mask reveals.
    pub revealed: String,
    /// What it does not reveal.
    pub not_revealed: String,
}

/// Per token, over all sparse FFNs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    /// Sparse FFNs.
    pub ffns: usize,
    /// Σ blocks.
    pub blocks: u64,
    /// Σ log2(blocks + 1).
    pub count_bits: f64,
    /// Σ blocks.
    pub mask_bits: u64,
}

/// The leakage report of `program`, called `plan_name` in the report.
pub fn leakage(program: &Program, plan_name: &str) -> LeakageReport {
    let g = &program.graph;
    let order = program
        .canonical_order()
        .unwrap_or_else(|_| g.ids().collect());
    let number: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let name = |id: NodeId| format!("%{}", number[&id]);
    let shape = |id: NodeId| shape_string(&g.node(id).ty.shape);
    let ffns = program
        .options
        .sparsity
        .as_ref()
        .map(|s| s.ffns.as_slice())
        .unwrap_or_default();

    let mut opened = Opened {
        outputs: Vec::new(),
        masks: Vec::new(),
        other: Vec::new(),
    };
    for &id in &order {
        let node = g.node(id);
        match &node.op {
            Op::Output { name: out, party } => {
                let reveal = g
                    .operands(id)
                    .into_iter()
                    .find(|x| matches!(g.node(*x).op, Op::Reveal { .. }));
                opened.outputs.push(OpenedOutput {
                    node: name(id),
                    name: out.clone(),
                    to: *party,
                    shape: shape(id),
                    reveal: reveal.map(name),
                });
            }
            Op::Reveal { to } => {
                let feeds_output = g
                    .users(id)
                    .iter()
                    .any(|u| matches!(g.node(*u).op, Op::Output { .. }));
                if !feeds_output {
                    opened
                        .other
                        .push(other(program, id, name(id), to.to_string()));
                }
            }
            Op::Open => match mask_of(program, id) {
                Some((ffn, block)) => {
                    let info = ffns.get(ffn as usize);
                    let blocks = node
                        .ty
                        .shape
                        .last()
                        .and_then(|d| d.as_const())
                        .map(|n| n as u64)
                        .or(info.map(|f| f.blocks))
                        .unwrap_or(0);
                    opened.masks.push(OpenedMask {
                        node: name(id),
                        ffn,
                        layer: info.and_then(|f| f.layer).or(node.scope.layer),
                        shape: shape(id),
                        blocks,
                        block,
                        ff: info.map(|f| f.ff),
                        padded: blocks * block,
                        permutations: mask_permutations(program, id).into_iter().collect(),
                    });
                }
                None => opened
                    .other
                    .push(other(program, id, name(id), "both".into())),
            },
            _ => {}
        }
    }
    opened.masks.sort_by_key(|m| (m.layer, m.ffn));

    let layers: Vec<LayerLeakage> = opened.masks.iter().map(layer_leakage).collect();
    let sparse = !layers.is_empty();
    let totals = sparse.then(|| Totals {
        ffns: layers.len(),
        blocks: layers.iter().map(|l| l.blocks).sum(),
        count_bits: layers.iter().map(|l| l.count_bits).sum(),
        mask_bits: layers.iter().map(|l| l.mask_bits).sum(),
    });
    let verdict = verdict(&opened);
    let trust = trust(&opened.masks);
    let symbols: Vec<&str> = (program.info.dims.iter())
        .filter(|d| d.value.is_none())
        .map(|d| d.name.as_str())
        .collect();
    let mut public = match symbols.as_slice() {
        [] => "the plan itself (every shape is a constant)".to_string(),
        s => format!(
            "the lengths {} (shapes are public), as in every plan",
            s.join(" and ")
        ),
    };
    if let Some(stats) = &program.options.weight_stats {
        public.push_str(&format!(
            "; and, to the client, the declared statistics of {} server weights (`comet \
             compile --weights`: max |w|, row, column and spectral norms, each rounded up to a \
             power of 2^(1/4)), which the range analysis bounds products by",
            stats.len()
        ));
    }
    LeakageReport {
        plan: plan_name.to_string(),
        model: program.info.name.clone(),
        sparse,
        verdict,
        opened,
        layers,
        totals,
        trust,
        public,
        client: client_policy(program),
        head_units: (program.options.sparsity.as_ref())
            .and_then(|s| s.heads.as_ref())
            .map(|h| h.first),
    }
}

/// The client's reveal policy on `program`, in one sentence.
fn client_policy(program: &Program) -> String {
    match least_acceptance(program) {
        Some(AcceptLeakage::Nothing) => {
            "`comet run --party 1` runs this plan as it is (it opens nothing of the client's \
             input to the server)"
                .to_string()
        }
        Some(a) => format!(
            "`comet run --party 1` runs this plan only with `--accept-leakage sparse-masks` \
             (or `{a}`: the masks' bits per token)"
        ),
        None => "`comet run --party 1` refuses this plan whatever --accept-leakage says: it \
                 opens values of the client's input to the server that are no permuted block \
                 mask"
            .to_string(),
    }
}

fn other(p: &Program, id: NodeId, node: String, to: String) -> OpenedValue {
    let n = p.graph.node(id);
    OpenedValue {
        node,
        op: n.op.name().to_string(),
        to,
        shape: shape_string(&n.ty.shape),
        layer: n.scope.layer,
        path: n.scope.path.clone(),
    }
}

fn layer_leakage(m: &OpenedMask) -> LayerLeakage {
    let permuted = !m.permutations.is_empty();
    let (revealed, not_revealed) = if permuted {
        (
            format!(
                "per token: the number of active blocks (0..={}); across tokens of a session: \
                 which permuted blocks co-occur (the same permutation for the whole session)",
                m.blocks
            ),
            "which neurons/blocks in the model's order (the permutation is unknown to both \
             parties), the input, the scores, the weights"
                .to_string(),
        )
    } else {
        (
            format!(
                "per token: which of the {} blocks are active, in the model's order (the mask \
                 is not permuted)",
                m.blocks
            ),
            "the input, the scores, the weights".to_string(),
        )
    };
    LayerLeakage {
        layer: m.layer,
        ffn: m.ffn,
        mask: m.node.clone(),
        shape: m.shape.clone(),
        blocks: m.blocks,
        block: m.block,
        permuted,
        count_bits: ((m.blocks + 1) as f64).log2(),
        mask_bits: m.blocks,
        revealed,
        not_revealed,
    }
}

fn verdict(o: &Opened) -> String {
    let mut extra = Vec::new();
    if !o.masks.is_empty() {
        let permuted = o.masks.iter().all(|m| !m.permutations.is_empty());
        extra.push(format!(
            "one {}block mask per sparse FFN ({}) and token, to both parties",
            if permuted { "permuted " } else { "" },
            o.masks.len()
        ));
    }
    if !o.other.is_empty() {
        extra.push(format!(
            "{} other opened value{}",
            o.other.len(),
            if o.other.len() == 1 { "" } else { "s" }
        ));
    }
    match extra.as_slice() {
        [] => "reveals nothing beyond the outputs".to_string(),
        e => format!("reveals, beyond the outputs, {}", e.join("; and ")),
    }
}

fn trust(masks: &[OpenedMask]) -> Vec<String> {
    if masks.iter().any(|m| !m.permutations.is_empty()) {
        vec![format!(
            "each sparse FFN's permutation π = π1∘π0 is drawn by the dealer at session setup: \
             π0 is known to party 0 ({}) only, π1 to party 1 ({}) only; the dealer knows π and \
             must not collude with either party — the same assumption as all dealt material; \
             the dealer sees no online message",
            Party::Server,
            Party::Client
        )]
    } else {
        vec![
            "the dealt material (triples, comparison keys) assumes a dealer that colludes with \
             neither party; the dealer sees no online message"
                .to_string(),
        ]
    }
}

fn layer_name(layer: Option<u32>) -> String {
    layer.map_or_else(|| "top level".to_string(), |l| l.to_string())
}

/// Width of the labels of [`para`].
const LABEL: usize = 14;

/// Appends `text` after `label` (padded to [`LABEL`] columns), wrapped at 100 columns with
/// the continuation lines indented to the text.
fn para(out: &mut String, label: &str, text: &str) {
    const WIDTH: usize = 100;
    let width = LABEL.max(label.chars().count() + 1);
    let mut line = format!("{label:<width$}");
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(width);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// Rows of cells, the first column left-aligned, the others right-aligned.
fn table(out: &mut String, rows: &[Vec<String>], rule_before_last: bool) {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for (i, r) in rows.iter().enumerate() {
        if rule_before_last && i + 1 == rows.len() {
            let width = widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
            out.push_str(&"-".repeat(width));
            out.push('\n');
        }
        let cells: Vec<String> = (r.iter().zip(&widths).enumerate())
            .map(|(c, (cell, w))| match c {
                0 => format!("{cell:<w$}"),
                _ => format!("{cell:>w$}"),
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
}

/// The text form of a leakage report.
pub fn render_leakage(r: &LeakageReport) -> String {
    let mut out = String::new();
    let is_head = |unit: u32| r.head_units.is_some_and(|f| unit >= f);
    let n_heads = (r.opened.masks.iter()).filter(|m| is_head(m.ffn)).count();
    let kind = match (r.layers.len() - n_heads.min(r.layers.len()), n_heads) {
        (0, 0) => "dense".to_string(),
        (1, 0) => "1 sparse FFN".to_string(),
        (n, 0) => format!("{n} sparse FFNs"),
        (f, h) => format!(
            "{f} sparse FFNs and {h} head-sparse attentions, whose KV-group masks are listed \
             as block masks of units {} on",
            r.head_units.unwrap_or(0)
        ),
    };
    let _ = writeln!(
        out,
        "Leakage of plan `{}` (model {}, {kind})\n",
        r.plan, r.model
    );
    para(&mut out, "Verdict:", &format!("the plan {}.", r.verdict));
    para(&mut out, "Client:", &format!("{}.", r.client));
    let _ = writeln!(
        out,
        "\nNodes that open a value (everything else stays secret-shared or private):"
    );
    let o = &r.opened;
    let _ = writeln!(out, "  outputs ({}):", o.outputs.len());
    for x in &o.outputs {
        let via = (x.reveal.as_ref()).map_or(String::new(), |v| format!(" (reveal {v})"));
        let _ = writeln!(
            out,
            "    {} output `{}` {} to {}{via}",
            x.node, x.name, x.shape, x.to
        );
    }
    if !o.masks.is_empty() {
        let _ = writeln!(
            out,
            "  block masks of the sparse FFNs ({}), to both parties:",
            o.masks.len()
        );
        for m in &o.masks {
            let ff = match m.ff {
                Some(ff) if ff == m.padded => format!(", ff {ff} (no padding)"),
                Some(ff) => format!(
                    ", ff {ff} padded to {} = {}·{}",
                    m.padded, m.blocks, m.block
                ),
                None => String::new(),
            };
            let order = match m.permutations.as_slice() {
                [] => "in the model's block order (NOT PERMUTED)".to_string(),
                [one] => format!("secret permutation {one}"),
                many => format!("secret permutations {many:?}"),
            };
            if is_head(m.ffn) {
                let _ = writeln!(
                    out,
                    "    layer {}: {} open {}, KV-group mask of the head-sparse attention \
                     ({} groups of {} query columns), {order}",
                    layer_name(m.layer),
                    m.node,
                    m.shape,
                    m.blocks,
                    m.block
                );
                continue;
            }
            let _ = writeln!(
                out,
                "    layer {}: {} open {}, blocks of B = {}{ff}, {order}",
                layer_name(m.layer),
                m.node,
                m.shape,
                m.block
            );
        }
    }
    if !o.other.is_empty() {
        let _ = writeln!(out, "  other opened values ({}):", o.other.len());
        for v in &o.other {
            let place = match (&v.layer, v.path.is_empty()) {
                (Some(l), _) => format!(" in layer {l}"),
                (None, false) => format!(" in {}", v.path),
                (None, true) => String::new(),
            };
            let _ = writeln!(
                out,
                "    {} {} {} to {}{place}",
                v.node, v.op, v.shape, v.to
            );
        }
    }

    if let Some(t) = &r.totals {
        let _ = writeln!(
            out,
            "\nSparse FFNs, per layer; information per token in bits"
        );
        let mut rows = vec![
            [
                "layer",
                "mask",
                "blocks",
                "B",
                "active",
                "count ≤",
                "mask ≤",
                "order",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for l in &r.layers {
            rows.push(vec![
                layer_name(l.layer),
                l.shape.clone(),
                l.blocks.to_string(),
                l.block.to_string(),
                format!("0..={}", l.blocks),
                format!("{:.2}", l.count_bits),
                l.mask_bits.to_string(),
                if l.permuted { "permuted" } else { "MODEL" }.to_string(),
            ]);
        }
        rows.push(vec![
            "all".into(),
            String::new(),
            t.blocks.to_string(),
            String::new(),
            String::new(),
            format!("{:.2}", t.count_bits),
            t.mask_bits.to_string(),
            String::new(),
        ]);
        table(&mut out, &rows, true);
        out.push('\n');
        let permuted: Vec<&OpenedMask> = (o.masks.iter())
            .filter(|m| !m.permutations.is_empty())
            .collect();
        if let Some(l) = r.layers.iter().find(|l| l.permuted) {
            para(
                &mut out,
                "Revealed:",
                "per token: the number of active blocks (0..=blocks); across tokens of a \
                 session: which permuted blocks co-occur (the same permutation for the whole \
                 session).",
            );
            para(&mut out, "Not revealed:", &format!("{}.", l.not_revealed));
            para(
                &mut out,
                "Bounds:",
                "the count carries ≤ log2(blocks + 1) bits per token (column `count`), the \
                 whole mask ≤ blocks bits (column `mask`). The mask is a set of permuted \
                 blocks: one token's mask alone tells no more than its count (the permutation \
                 is uniform and unknown); co-occurrence across tokens is what the permutation \
                 does not hide. A session of T tokens reveals at most T times these bounds.",
            );
            let distinct: BTreeSet<&Vec<u32>> = permuted.iter().map(|m| &m.permutations).collect();
            let text = if distinct.len() == permuted.len() {
                format!(
                    "{} secret permutation{}, one per sparse FFN, each fixed for a session; \
                     blocks do not line up across layers.",
                    permuted.len(),
                    if permuted.len() == 1 { "" } else { "s" }
                )
            } else {
                format!(
                    "{} secret permutations for {} sparse FFNs, each fixed for a session; FFNs \
                     that share one show which of their permuted blocks line up.",
                    distinct.len(),
                    permuted.len()
                )
            };
            para(&mut out, "Permutations:", &text);
            para(
                &mut out,
                "Fixed permutation:",
                "the server knows the FFN weights and the predictor, so it can estimate how \
                 often each true block is active on typical inputs; over a session, the \
                 opened masks give each permuted block's activity frequency, and matching \
                 the two frequency profiles narrows down the permutation, more with every \
                 token (blocks of similar frequency stay confused). Once matched, masks \
                 reveal which true blocks (neurons) a token activates. The plan does not \
                 re-shuffle: one permutation serves the whole session, so a session of T \
                 tokens gives T samples per block; re-shuffling every N tokens would bound \
                 that to N (not implemented).",
            );
        }
        for l in r.layers.iter().filter(|l| !l.permuted) {
            para(
                &mut out,
                &format!("Layer {} NOT PERMUTED, reveals:", layer_name(l.layer)),
                &format!("{}.", l.revealed),
            );
        }
    }

    out.push('\n');
    for t in &r.trust {
        para(&mut out, "Trust:", &format!("{t}."));
    }
    para(&mut out, "Public:", &format!("{}.", r.public));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, compile};
    use comet_ir::Domain;

    const GLASSLLM: &str = include_str!("../../../examples/glassllm.model");

    fn glassllm(sparsity: &str) -> Program {
        let opts = Options {
            sparsity: crate::passes::sparsify::parse_spec(sparsity).unwrap(),
            ..Options::default()
        };
        compile(GLASSLLM, "glassllm.model", &opts).unwrap().program
    }

    #[test]
    fn sparse_glassllm_opens_one_permuted_mask_per_ffn() {
        let r = leakage(&glassllm("ffn:block=16"), "glassllm.plan");
        assert!(r.sparse);
        assert_eq!(r.opened.outputs.len(), 1);
        assert_eq!(r.opened.outputs[0].name, "logits");
        assert_eq!(r.opened.outputs[0].to, Party::Client);
        assert_eq!(r.opened.outputs[0].shape, "[seq, 1024]");
        assert!(r.opened.outputs[0].reveal.is_some());
        assert!(r.opened.other.is_empty());
        assert_eq!(r.layers.len(), 4);
        for (i, m) in r.opened.masks.iter().enumerate() {
            // ff 341 in blocks of 16: ⌈341/16⌉ = 22 blocks, padded to 352.
            assert_eq!(m.layer, Some(i as u32));
            assert_eq!(m.shape, "[seq, 22]");
            assert_eq!(
                (m.blocks, m.block, m.ff, m.padded),
                (22, 16, Some(341), 352)
            );
            assert_eq!(m.permutations, vec![m.ffn]);
        }
        let l = &r.layers[0];
        assert!(l.permuted);
        assert!((l.count_bits - 23f64.log2()).abs() < 1e-12);
        assert_eq!(l.mask_bits, 22);
        let t = r.totals.as_ref().unwrap();
        assert_eq!((t.ffns, t.blocks, t.mask_bits), (4, 88, 88));
        assert!(r.verdict.contains("beyond the outputs"));
        assert!(r.trust[0].contains("π = π1∘π0"));
    }

    #[test]
    fn other_block_sizes_change_the_mask() {
        // ⌈341/32⌉ = 11 blocks of 32, padded to 352.
        let r = leakage(&glassllm("ffn:block=32"), "p");
        let m = &r.opened.masks[0];
        assert_eq!(
            (m.shape.as_str(), m.blocks, m.padded),
            ("[seq, 11]", 11, 352)
        );
        assert!((r.layers[0].count_bits - 12f64.log2()).abs() < 1e-12);
    }

    #[test]
    fn dense_glassllm_reveals_nothing_beyond_the_outputs() {
        let r = leakage(&glassllm("off"), "glassllm.plan");
        assert!(!r.sparse);
        assert_eq!(r.verdict, "reveals nothing beyond the outputs");
        assert!(r.opened.masks.is_empty() && r.opened.other.is_empty());
        assert!(r.layers.is_empty() && r.totals.is_none());
        assert_eq!(r.opened.outputs.len(), 1);
        assert!(!r.trust[0].contains("π"));
    }

    #[test]
    fn an_unpermuted_mask_is_reported_in_model_order() {
        // Replace the predictor's permutations by their inputs: the mask is in model order.
        let mut p = glassllm("ffn:block=16");
        let permutes: Vec<NodeId> = (p.graph.ids())
            .filter(|&id| {
                let n = p.graph.node(id);
                matches!(
                    n.op,
                    Op::BlockPermute {
                        perm: 0,
                        block: 1,
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(permutes.len(), 2);
        for id in permutes {
            let x = p.graph.operands(id)[0];
            p.graph.replace_uses(id, x);
        }
        let r = leakage(&p, "p");
        assert!(!r.layers[0].permuted && r.layers[1].permuted);
        assert!(r.layers[0].revealed.contains("in the model's order"));
        assert!(r.verdict.contains("one block mask"));
        assert!(render_leakage(&r).contains("Layer 0 NOT PERMUTED, reveals:"));
    }

    #[test]
    fn an_extra_reveal_is_listed() {
        let mut p = glassllm("off");
        let v = (p.graph.ids())
            .find(|&id| matches!(p.graph.node(id).op, Op::Drelu))
            .unwrap();
        let ty = p.graph.node(v).ty.in_domain(Domain::Private(Party::Server));
        let scope = p.graph.node(v).scope.clone();
        p.graph
            .add(Op::Reveal { to: Party::Server }, &[v], ty, scope);
        let r = leakage(&p, "p");
        assert_eq!(r.opened.other.len(), 1);
        assert_eq!(r.opened.other[0].to, "server");
        assert!(r.verdict.ends_with("1 other opened value"), "{}", r.verdict);
    }

    #[test]
    fn json_has_stable_fields() {
        let r = leakage(&glassllm("ffn:block=16"), "glassllm.plan");
        let v: serde_json::Value = serde_json::from_str(&super::super::to_json(&r)).unwrap();
        assert_eq!(v["model"], "glassllm");
        assert_eq!(v["sparse"], true);
        assert_eq!(v["layers"].as_array().unwrap().len(), 4);
        assert_eq!(v["layers"][0]["blocks"], 22);
        assert_eq!(v["opened"]["masks"][0]["shape"], "[seq, 22]");
        assert_eq!(v["opened"]["outputs"][0]["to"], "client");
    }

    #[test]
    fn text_snapshots() {
        let sparse = leakage(&glassllm("ffn:block=16"), "glassllm.plan");
        insta::assert_snapshot!("glassllm_sparse", render_leakage(&sparse));
        let dense = leakage(&glassllm("off"), "glassllm.plan");
        insta::assert_snapshot!("glassllm_dense", render_leakage(&dense));
    }
}
