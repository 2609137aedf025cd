//! Pass `narrow-openings`: products read modulo 2^w open their operands modulo 2^w.
//!
//! On glassllm with its real checkpoint and the default `lut` profile (whose statistics
//! narrow the truncations, so that products feeding them are read at 40–56 bits), a prefill and two decode steps run in
//! one process twice with the same dealer seed: once with narrowed openings, once on the
//! whole ring. Openings mod 2^w change no value any gate reads, so the logits are equal
//! to the last bit; each call measures what the plan estimates, sends fewer bytes, and
//! keeps its rounds and dealer bytes.

mod common;

use comet_compiler::{Options, compile};
use comet_ir::graph::takes_open_width;
use comet_ir::{ApproxConfig, ApproxProfile, Op, Program};
use comet_runtime::interp;
use common::estimate;
use common::reference::{env, load_weights, reference, root, tokens};
use std::collections::BTreeMap;

fn plan(narrow: bool) -> Program {
    let path = root().join("examples/glassllm.model");
    let src = std::fs::read_to_string(&path).unwrap();
    let lowered = comet_compiler::driver::lower_only(&src, "glassllm.model").unwrap();
    let ckpt = root().join("../shared/models/glassllm-en/model.safetensors");
    let stats =
        comet_runtime::weights::stats::declared_for(&ckpt, &lowered.info.weights, |_| {}).unwrap();
    let opts = Options {
        approx: ApproxConfig::uniform(ApproxProfile::Lut),
        narrow_openings: narrow,
        // narrowing alone: which gates read a truncation's opening depends on the widths
        // (pass `fuse-trunc-openings`, tests/examples_two_party.rs)
        fuse_trunc_openings: false,
        weight_stats: Some(stats),
        ..Default::default()
    };
    compile(&src, "glassllm.model", &opts).unwrap().program
}

/// The products' widths, by op name: how many at each width.
fn widths(p: &Program) -> BTreeMap<(String, u8), usize> {
    let mut out = BTreeMap::new();
    for id in p.graph.ids() {
        let n = p.graph.node(id);
        if let (true, Some(w)) = (takes_open_width(&n.op), n.cmp_width) {
            *out.entry((n.op.name().to_string(), w)).or_default() += 1;
        }
    }
    out
}

/// Every narrowed product is read at its width: each reader is a stochastic truncation or
/// comparison of at most that width, or a linear op or product itself read no wider.
#[test]
fn products_feeding_narrow_truncations_are_narrowed_to_their_width() {
    let p = plan(true);
    let w = widths(&p);
    eprintln!("{w:?}");
    let narrowed: usize = w.values().sum();
    assert!(narrowed >= 20, "glassllm's products are narrowed: {w:?}");
    assert!(widths(&plan(false)).is_empty());
    // each projection read only by a stochastic truncation is narrowed to its width
    let mut checked = 0;
    for id in p.graph.ids() {
        let n = p.graph.node(id);
        let users = p.graph.users(id);
        if !matches!(n.op, Op::MatMul) || users.len() != 1 {
            continue;
        }
        let u = p.graph.node(users[0]);
        if let (Op::StochasticTrunc { .. }, Some(m)) = (&u.op, u.cmp_width) {
            let want = (m < 64).then_some(m.max(8));
            assert_eq!(n.cmp_width, want, "{id:?} read by {:?}", users[0]);
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked} projections checked");
}

#[test]
fn narrowed_openings_measure_their_estimate_and_change_no_value() {
    let (narrow, full) = (plan(true), plan(false));
    // the row maxima (whose levels' `x + r` also serve as ŷ) open at their comparison
    // width where the maximum is read no wider: all but the last layer's, whose bounds
    // rest on a violated assumption and keep the ring
    let at_cmp_width = |p: &Program| {
        (p.graph.ids())
            .filter(|&id| p.graph.node(id).open_at_cmp_width)
            .filter(|&id| matches!(p.graph.node(id).op, Op::RowMax))
            .count()
    };
    assert_eq!((at_cmp_width(&narrow), at_cmp_width(&full)), (3, 0));
    let w = load_weights(&narrow);
    let mut a = interp::InProcess::new(&narrow, &w, 5);
    let mut b = interp::InProcess::new(&full, &w, 5);
    let case = &reference()["cases"][0];
    let prompt = common::reference::numbers(&case["prompt_ids"]);
    let mut ids = prompt.clone();
    let mut past = 0;
    for step in 0..3 {
        let input = &ids[past..];
        let e = env(input.len(), past);
        let (got, ma) = a.call(&tokens(input), e).unwrap();
        let (want, mb) = b.call(&tokens(input), e).unwrap();
        let figures = |m: &interp::Measured| (m.online_bits, m.rounds, m.offline_bits);
        assert_eq!(figures(&ma), estimate(&narrow, e), "call {step}, narrowed");
        assert_eq!(figures(&mb), estimate(&full, e), "call {step}, full ring");
        assert!(ma.online_bits < mb.online_bits, "call {step}");
        assert_eq!((ma.rounds, ma.offline_bits), (mb.rounds, mb.offline_bits));
        eprintln!(
            "call {step}: online {} / {} bits narrowed / full",
            ma.online_bits, mb.online_bits
        );
        assert_eq!(got["logits"], want["logits"], "call {step}: logits");
        let last = common::reference::last_row(&got["logits"]);
        past = ids.len();
        ids.push(common::reference::argmax(&last));
    }
}
