//! The shape of the compiled forms: which composites each rewrite replaces and leaves,
//! origins, fallbacks, and that piecewise forms compare once per breakpoint in a single
//! round and compute each power once.

use crate::front::parse::parse_model;
use crate::passes::approximate::{REWRITES, Rewrite, effective, rewrite, run};
use crate::passes::{expand, lower::lower};
use crate::{Options, compile};
use comet_ir::table::TableFn;
use comet_ir::{
    ApproxConfig, ApproxKind, ApproxProfile, DimEnv, NodeId, Op, Program, print, verify,
};
use std::collections::{BTreeMap, BTreeSet};

/// A model applying `call` to `x: [seq, 64]`, with client norm parameters `g`, `b`.
fn single(call: &str) -> String {
    format!(
        "model t {{ dim seq, past; dim n = 64;
           input x: fixed[seq, n] from client;
           weight g: [n] from client; weight b: [n] from client;
           output y = {call} to client; }}"
    )
}

/// `call` applied to `h = x + s`, shared between client and server (so that every
/// comparison and product communicates).
fn shared(call: &str) -> String {
    format!(
        "model t {{ dim seq, past; dim n = 64;
           input x: fixed[seq, n] from client; input s: fixed[seq, n] from server;
           let h = x + s;
           output y = {} to client; }}",
        call.replace("(x", "(h")
    )
}

/// Causal attention scores `x: [seq, seq]` through `softmax(causal_mask(x))`.
const MASKED: &str = "model t { dim seq, past; input x: fixed[seq, seq] from client;
                      output y = softmax(causal_mask(x)) to client; }";

/// The call exercising `op`.
fn call(op: &str) -> String {
    match op {
        "layer_norm" => "layer_norm(x, g, b, eps = 1e-5)".into(),
        "rms_norm" => "rms_norm(x, g, eps = 1e-6)".into(),
        f => format!("{f}(x)"),
    }
}

fn lowered(source: &str) -> Program {
    let ast = parse_model(source).unwrap_or_else(|d| panic!("{}", d.message));
    lower(&ast).unwrap_or_else(|d| panic!("{}", d.message))
}

/// The configuration that applies `r` to its op and nothing else.
fn only(r: &Rewrite) -> ApproxConfig {
    let kind = ApproxKind::ALL
        .into_iter()
        .find(|k| super::super::ops_of(*k).contains(&r.op))
        .expect("every op has a kind");
    let mut c = ApproxConfig::default();
    c.set(kind, r.profile);
    c
}

/// Op name → count over the nodes whose origin is `origin`.
fn by_origin(p: &Program, origin: &str) -> BTreeMap<&'static str, usize> {
    let mut c = BTreeMap::new();
    for id in p.graph.ids() {
        let n = p.graph.node(id);
        if n.scope.origin == origin {
            *c.entry(n.op.name()).or_default() += 1;
        }
    }
    c
}

fn composites(p: &Program) -> Vec<&'static str> {
    let mut v: Vec<&str> = p
        .graph
        .ids()
        .map(|id| &p.graph.node(id).op)
        .filter(|op| op.is_composite())
        .map(|op| op.name())
        .collect();
    v.sort();
    v
}

#[test]
fn the_table_names_and_finds_every_rewrite() {
    let mut seen = BTreeSet::new();
    for r in REWRITES {
        assert_eq!(r.name, format!("{}.{}", r.profile.name(), r.op));
        assert!(seen.insert((r.profile, r.op)), "{} twice", r.name);
        assert_ne!(r.profile, ApproxProfile::Exact, "{}", r.name);
        assert_eq!(rewrite(r.profile, r.op).map(|f| f.name), Some(r.name));
        assert!(
            r.domain.0 < r.domain.1 && r.max_abs_error > 0.0,
            "{}",
            r.name
        );
    }
    for p in ApproxProfile::ALL.into_iter().skip(1) {
        assert!(
            REWRITES.iter().any(|r| r.profile == p),
            "{} has no rewrite",
            p.name()
        );
    }
}

#[test]
fn kinds_a_profile_does_not_define_fall_back_to_exact() {
    let e = |s: &str| effective(s.parse().unwrap()).to_string();
    assert_eq!(e("pcf"), "pcf");
    assert_eq!(e("puma"), "gelu=puma,silu=puma,softmax=puma");
    assert_eq!(e("bolt"), "gelu=bolt,softmax=bolt");
    assert_eq!(
        e("bumblebee"),
        "gelu=bumblebee,silu=bumblebee,softmax=bumblebee"
    );
    assert_eq!(e("mpcformer"), "gelu=mpcformer,softmax=mpcformer");
    assert_eq!(e("norm=bolt,softmax=pcf"), "softmax=pcf");
    assert_eq!(e("exact"), "exact");
}

#[test]
fn exact_changes_nothing() {
    for source in [
        single("softmax(gelu(layer_norm(x, g, b, eps = 1e-5)))"),
        MASKED.into(),
    ] {
        let mut p = lowered(&source);
        let before = print::print_graph(&p);
        run(&mut p);
        assert_eq!(print::print_graph(&p), before);
    }
}

/// Each rewrite replaces its composite by primitives charged to it, leaving only the
/// softmax's reciprocal (one per row) for `expand` (none in `lut`, whose reciprocal is a
/// table); after `expand` nothing composite is left and the program verifies.
#[test]
fn each_rewrite_replaces_its_composite() {
    for r in REWRITES {
        let mut p = lowered(&single(&call(r.op)));
        p.options.approx = only(r);
        run(&mut p);
        verify(&p).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        let left = composites(&p);
        let want: &[&str] = if r.op == "softmax" && r.profile != ApproxProfile::Lut {
            &["reciprocal"]
        } else {
            &[]
        };
        assert_eq!(left, want, "{}", r.name);
        for id in p.graph.ids() {
            let n = p.graph.node(id);
            if !n.op.is_source() && !n.op.is_sink() {
                assert_eq!(n.scope.origin, r.op, "{}: `{}`", r.name, n.op.name());
            }
        }
        expand::run(&mut p);
        verify(&p).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        assert!(composites(&p).is_empty(), "{}", r.name);
    }
}

/// A compiled program's region: the communicating nodes charged to `origin`, with their
/// start rounds at `seq` = 4.
struct Region {
    nodes: Vec<(NodeId, i128, i128)>,
}

impl Region {
    fn of(p: &Program, origin: &str) -> Region {
        let env = DimEnv { seq: 4, past: 0 };
        let starts = p.analyses.rounds.as_ref().expect("scheduled");
        let costs = p.analyses.costs.as_ref().expect("costed");
        let nodes = p
            .graph
            .ids()
            .filter(|id| p.graph.node(*id).scope.origin == origin)
            .map(|id| {
                let own = costs.get(id).expect("costed").rounds.eval(env);
                (id, starts.get(id).expect("scheduled").eval(env), own)
            })
            .filter(|(_, _, own)| *own > 0)
            .collect();
        Region { nodes }
    }

    /// Rounds from the region's first start to its last finish.
    fn span(&self) -> i128 {
        let first = self.nodes.iter().map(|n| n.1).min().expect("not empty");
        let last = self
            .nodes
            .iter()
            .map(|n| n.1 + n.2)
            .max()
            .expect("not empty");
        last - first
    }

    /// Start rounds of the nodes whose op is `name`.
    fn starts(&self, p: &Program, name: &str) -> Vec<i128> {
        let mut v: Vec<i128> = self
            .nodes
            .iter()
            .filter(|n| p.graph.node(n.0).op.name() == name)
            .map(|n| n.1)
            .collect();
        v.sort();
        v
    }
}

fn compiled(source: &str, approx: &str) -> Program {
    let opts = Options {
        verify: true,
        approx: approx.parse().unwrap(),
        // the forms' own round structure, with local truncations (faithful ones add a
        // round after each product: pass faithful-trunc, tested on its own)
        truncation: None,
        ..Options::default()
    };
    compile(source, "t.model", &opts)
        .unwrap_or_else(|e| panic!("{e}"))
        .program
}

/// The piecewise forms on the compiled plan: one `drelu` per breakpoint, all in the
/// region's first round (beside `x²`); each power once (no two communicating nodes with
/// the same op and operands); the muxes in one round at the end: 4 rounds in all, where
/// the exact recipes take 21 (GeLU) and 19 (SiLU).
#[test]
fn piecewise_forms_share_comparisons_and_powers() {
    // (profile, op, squares, products)
    let cases = [
        ("puma", "gelu", 3, 1), // x², x⁴, x⁶ = (x³)²; x³
        ("puma", "silu", 2, 1), // x², x⁴; x⁶ = x⁴·x²
        ("bolt", "gelu", 2, 1), // x², x⁴; |x|³ = x²·|x|
        ("bumblebee", "gelu", 2, 1),
        ("bumblebee", "silu", 2, 2), // |x|³, |x|⁵ = x⁴·|x|
    ];
    for (profile, op, squares, products) in cases {
        let what = format!("{profile}.{op}");
        let p = compiled(&shared(&call(op)), &format!("{op}={profile}"));
        let region = Region::of(&p, op);
        let first = region.nodes.iter().map(|n| n.1).min().unwrap();
        // a select whose piece is ready with its comparison is one fused sign select
        // (pass fuse-selects), which starts with the comparisons and takes 2 rounds
        let fused = region.starts(&p, "sign_select");
        let mut drelus = region.starts(&p, "drelu");
        drelus.extend(&fused);
        assert_eq!(drelus, vec![first; 3], "{what}");
        assert_eq!(region.starts(&p, "square").len(), squares, "{what}");
        assert_eq!(
            region.starts(&p, "square")[0],
            first,
            "{what}: x² beside them"
        );
        assert_eq!(region.starts(&p, "mul").len(), products, "{what}");
        let muxes = region.starts(&p, "select");
        assert_eq!(muxes.len() + fused.len(), 3, "{what}");
        assert_eq!(*muxes.last().unwrap(), first + 3, "{what}: last mux");
        assert_eq!(region.span(), 4, "{what}");
        let mut computed = BTreeSet::new();
        for (id, _, _) in &region.nodes {
            let key = (p.graph.node(*id).op.name(), p.graph.operands(*id));
            assert!(computed.insert(key.clone()), "{what}: {key:?} twice");
        }
    }
    for (op, exact) in [("gelu", 21), ("silu", 19)] {
        let p = compiled(&shared(&call(op)), "exact");
        assert_eq!(Region::of(&p, op).span(), exact, "exact {op}");
    }
}

/// `2Quad` after a causal mask squares the unmasked scores and masks the squares (one
/// comparison round); without a mask it compares nothing.
#[test]
fn two_quad_masks_the_squares() {
    let mut p = lowered(MASKED);
    p.options.approx = "softmax=mpcformer".parse().unwrap();
    run(&mut p);
    verify(&p).unwrap();
    let masks: Vec<NodeId> = p
        .graph
        .ids()
        .filter(|id| p.graph.node(*id).op == Op::CausalMask)
        .collect();
    assert_eq!(
        masks.len(),
        1,
        "the original mask is gone, one on the squares"
    );
    let operand = p.graph.operands(masks[0])[0];
    assert_eq!(p.graph.node(operand).op, Op::Square);
    assert_eq!(by_origin(&p, "softmax").get("drelu"), Some(&1));

    let mut p = lowered(&single("softmax(x)"));
    p.options.approx = "softmax=mpcformer".parse().unwrap();
    run(&mut p);
    assert_eq!(by_origin(&p, "softmax").get("drelu"), None);
}

/// The driver records what it applied, and the plan's text form shows it.
#[test]
fn the_plan_records_the_applied_profiles() {
    let p = compiled(&single("softmax(gelu(rms_norm(x, g, eps = 1e-6)))"), "bolt");
    assert_eq!(p.options.approx.to_string(), "gelu=bolt,softmax=bolt");
    assert!(print::print_plan(&p).contains("\napprox gelu=bolt,softmax=bolt\n"));
    let p = compiled(&single("gelu(x)"), "exact");
    assert!(!print::print_plan(&p).contains("approx"));
}

/// `call` on `h = x + s` (shared) with server norm parameters `g`, `b`.
fn shared_norm(call: &str) -> String {
    format!(
        "model t {{ dim seq, past; dim n = 64;
           input x: fixed[seq, n] from client; input s: fixed[seq, n] from server;
           weight g: [n] from server; weight b: [n] from server;
           let h = x + s;
           output y = {} to client; }}",
        call.replace("(x", "(h")
    )
}

/// [`compiled`] with every truncation faithful (one round each): the rounds a plan of a
/// real model has, where no truncation is provably safe locally.
fn compiled_faithful(source: &str, approx: &str) -> Program {
    let opts = Options {
        verify: true,
        approx: approx.parse().unwrap(),
        truncation: Some(comet_ir::TruncationPolicy {
            mode: comet_ir::FaithfulMode::Always,
            ..crate::passes::faithful_trunc::default_policy()
        }),
        ..Options::default()
    };
    compile(source, "t.model", &opts)
        .unwrap_or_else(|e| panic!("{e}"))
        .program
}

/// The operand ops of the `lut` nodes charged to `origin`.
fn table_inputs(p: &Program, origin: &str) -> Vec<&'static str> {
    p.graph
        .ids()
        .filter(|id| p.graph.node(*id).scope.origin == origin)
        .filter(|id| matches!(p.graph.node(*id).op, Op::Lut { .. }))
        .map(|id| p.graph.node(p.graph.operands(id)[0]).op.name())
        .collect()
}

/// The `lut` norms and softmax with faithful truncations. A table reads its range-reduced
/// product untruncated; the scalings by `2^−8` and `2^−12` truncate once with their
/// products; the norm multiplies its row by `2^−a` and `g` beside the table. LayerNorm:
/// the mean's truncation, the square, its truncation, the mean square's, the comparison,
/// `v·F`, the table (2), `·T`, its truncation: 11 rounds (16 before). RMSNorm: 10 (no
/// mean). Softmax over 64 keys: the maximum (2 per level: 12), the exponential's table
/// (2), the mux, the row sum's re-sharing (`z·½` truncated: 1), the comparison, `z·F`,
/// the table (2), `T·F`, its truncation, the product, its truncation: 24 (25 before the
/// tables' products, 23 before the re-sharing).
#[test]
fn lut_norms_and_softmax_read_products_and_multiply_beside_the_table() {
    for (op, want) in [("layer_norm", 11), ("rms_norm", 10), ("softmax", 24)] {
        let p = compiled_faithful(&shared_norm(&call(op)), "lut");
        assert_eq!(Region::of(&p, op).span(), want, "lut {op}");
        let inputs = table_inputs(&p, op);
        match op {
            "softmax" => assert_eq!(inputs, ["sub", "mul"], "{op}: exp at d, 1/z at z·F"),
            _ => assert_eq!(inputs, ["mul"], "{op}: rsqrt at v·F"),
        }
        // one truncation by 32 bits (product and scaling by 2^−8 or 2^−12 together)
        let double: Vec<u32> = p
            .graph
            .ids()
            .filter_map(|id| match p.graph.node(id).op {
                Op::StochasticTrunc { bits } if bits > 16 => Some(bits),
                _ => None,
            })
            .collect();
        assert_eq!(double, [32], "{op}");
    }
}

/// With every truncation local (no faithful policy) a scaling keeps its own truncation:
/// a local truncation of the doubly scaled value would fail `2^16·|c|` times as often.
/// Tables still read their products untruncated (a lookup's index never fails).
#[test]
fn local_truncations_keep_the_scalings_separate() {
    for op in ["layer_norm", "softmax"] {
        let p = compiled(&shared_norm(&call(op)), "lut");
        assert!(
            p.graph.ids().all(|id| match p.graph.node(id).op {
                Op::Trunc { bits } => bits == 16,
                _ => true,
            }),
            "{op}: a truncation by more than 16 bits"
        );
        assert!(table_inputs(&p, op).contains(&"mul"), "{op}");
    }
}

/// A softmax of scores scaled by 1/8 (GPT-2's and BERT's `/ sqrt(64)`) reads the scores
/// themselves: the table of `e^(d/8)` at 5 fractional bits, its clip scaled alike, no
/// product or truncation for the scaling; another scaling (glassllm's `/ sqrt(32)`) keeps
/// its `mul_const` (tests/softmax_scale.rs checks the values).
#[test]
fn a_power_of_two_scaling_before_the_softmax_is_read_by_its_table() {
    for (scale, folded) in [(0.125, true), (0.5, false), (0.17677669529663687, false)] {
        let src = format!(
            "model t {{ dim seq, past;
               input x: fixed[seq, seq] from client; input s: fixed[seq, seq] from server;
               let h = x + s;
               output y = softmax(causal_mask(h * {scale})) to client; }}"
        );
        let p = compiled_faithful(&src, "lut");
        // the scores' scaling (not the row sum's `z·½`, which re-shares it: `widened`)
        let scalings = (p.graph.ids())
            .filter(|&id| matches!(p.graph.node(id).op, Op::MulConst { value } if value == scale))
            .filter(|&id| {
                let x = p.graph.operands(id)[0];
                !matches!(p.graph.node(x).op, Op::RowSum)
            })
            .count();
        assert_eq!(scalings, usize::from(!folded), "scale {scale}");
        let tables: Vec<(TableFn, u32)> = (p.graph.ids())
            .filter_map(|id| match p.graph.node(id).op {
                Op::Lut { func, frac, .. } if func != TableFn::RecipScaled => Some((func, frac)),
                _ => None,
            })
            .collect();
        let want = match folded {
            true => (TableFn::ExpNegEighth, 5),
            false => (TableFn::ExpNeg, 8),
        };
        assert_eq!(tables, [want], "scale {scale}");
    }
}
