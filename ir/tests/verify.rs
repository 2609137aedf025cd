//! The verifier rejects each kind of broken program, naming the problem; a well-formed
//! program passes. Each test breaks exactly one invariant of a small valid program.

use comet_ir::plan::{read_plan_json, write_plan_json};
use comet_ir::poly::MaxPoly;
use comet_ir::*;

const FX: Elem = Elem::Fixed { scale: 16 };

fn c(n: i64) -> Dim {
    Dim::constant(n)
}

/// y = (x · W) revealed to the client, with x from the client and W from the server.
fn small() -> (Program, [NodeId; 4]) {
    let mut p = Program::default();
    p.info.name = "small".into();
    p.info.inputs.push(InputInfo {
        name: "x".into(),
        elem: FX,
        shape: vec![Dim::SEQ, c(4)],
        party: Party::Client,
    });
    p.info.weights.push(WeightInfo {
        name: "w".into(),
        tensor: "w".into(),
        shape: vec![4, 2],
        transposed: false,
        party: Party::Server,
    });
    p.info.outputs.push(OutputInfo {
        name: "y".into(),
        party: Party::Client,
    });
    let g = &mut p.graph;
    let x = g.add(
        Op::Input {
            name: "x".into(),
            party: Party::Client,
        },
        &[],
        ValueType::new(FX, vec![Dim::SEQ, c(4)], Domain::Private(Party::Client)),
        Scope::default(),
    );
    let w = g.add(
        Op::Weight { name: "w".into() },
        &[],
        ValueType::new(FX, vec![c(4), c(2)], Domain::Private(Party::Server)),
        Scope::default(),
    );
    let y = g.add(
        Op::MatMul,
        &[x, w],
        ValueType::new(FX, vec![Dim::SEQ, c(2)], Domain::Arith),
        Scope::default(),
    );
    let r = g.add(
        Op::Reveal { to: Party::Client },
        &[y],
        ValueType::new(FX, vec![Dim::SEQ, c(2)], Domain::Private(Party::Client)),
        Scope::default(),
    );
    g.add(
        Op::Output {
            name: "y".into(),
            party: Party::Client,
        },
        &[r],
        ValueType::new(FX, vec![Dim::SEQ, c(2)], Domain::Private(Party::Client)),
        Scope::default(),
    );
    (p, [x, w, y, r])
}

fn problems(p: &Program) -> String {
    verify(p)
        .expect_err("the program is broken")
        .problems
        .join("\n")
}

#[test]
fn valid_program_passes() {
    let (p, _) = small();
    verify(&p).expect("valid");
}

#[test]
fn wrong_result_shape_is_reported_with_both_types() {
    let (mut p, [_, _, y, _]) = small();
    p.graph.node_mut(y).ty.shape = vec![Dim::SEQ, c(3)];
    let msg = problems(&p);
    assert!(
        msg.contains("has type fx16[seq, 3] arith, its operands give fx16[seq, 2] arith"),
        "{msg}"
    );
}

#[test]
fn wrong_domain_is_reported() {
    let (mut p, [_, _, y, _]) = small();
    p.graph.node_mut(y).ty.domain = Domain::Private(Party::Server);
    assert!(problems(&p).contains("its operands give fx16[seq, 2] arith"));
}

#[test]
fn scale_mismatch_needs_a_truncation() {
    let (mut p, [_, _, y, _]) = small();
    p.graph.node_mut(y).ty.elem = Elem::Fixed { scale: 32 };
    assert!(problems(&p).contains("fx32"));
}

#[test]
fn output_of_a_shared_value_without_reveal_is_rejected() {
    let (mut p, [_, _, y, r]) = small();
    let out = p.graph.users(r)[0];
    p.graph.remove(out);
    p.graph.add(
        Op::Output {
            name: "y".into(),
            party: Party::Client,
        },
        &[y],
        p.graph.node(y).ty.clone(),
        Scope::default(),
    );
    assert!(
        problems(&p).contains("an output to the client must be readable by it, got a arith value")
    );
}

#[test]
fn undeclared_weight_and_wrong_provider_are_rejected() {
    let (mut p, [x, w, _, _]) = small();
    p.graph.node_mut(w).op = Op::Weight { name: "v".into() };
    p.graph.node_mut(x).op = Op::Input {
        name: "x".into(),
        party: Party::Server,
    };
    let msg = problems(&p);
    assert!(msg.contains("weight `v` is not declared"), "{msg}");
    assert!(
        msg.contains("input `x` is provided by the client, not the server"),
        "{msg}"
    );
    assert!(msg.contains("weight `w` has 0 nodes, expected 1"), "{msg}");
}

#[test]
fn misnumbered_operands_are_rejected() {
    let (mut p, [_, _, y, r]) = small();
    p.graph.connect(r, y, 2);
    assert!(problems(&p).contains("expected 2 at positions 0.."));
}

#[test]
fn cycles_are_rejected() {
    let (mut p, [_, _, _, r]) = small();
    let t = p.graph.node(r).ty.clone();
    let a = p.graph.add(Op::Neg, &[], t.clone(), Scope::default());
    let b = p.graph.add(Op::Neg, &[a], t, Scope::default());
    p.graph.connect(b, a, 0);
    assert!(problems(&p).contains("is on a cycle"));
}

#[test]
fn reading_a_sink_is_rejected() {
    let (mut p, [_, _, _, r]) = small();
    let out = p.graph.users(r)[0];
    p.graph.add(
        Op::Neg,
        &[out],
        p.graph.node(r).ty.clone(),
        Scope::default(),
    );
    assert!(problems(&p).contains("reads the sink"));
}

#[test]
fn missing_output_node_is_rejected() {
    let (mut p, _) = small();
    p.info.outputs.push(OutputInfo {
        name: "z".into(),
        party: Party::Server,
    });
    assert!(problems(&p).contains("output `z` has 0 nodes, expected 1"));
}

#[test]
fn unpaired_cache_slot_is_rejected() {
    let (mut p, [_, _, y, _]) = small();
    let t = ValueType::new(FX, vec![c(1), Dim::PAST, c(2)], Domain::Arith);
    let read = p
        .graph
        .add(Op::CacheRead { slot: 0 }, &[], t, Scope::default());
    let _ = (read, y);
    assert!(problems(&p).contains("cache slot 0 needs one cache_read and one cache_write"));
}

#[test]
fn decreasing_rounds_are_rejected() {
    let (mut p, [_, _, y, r]) = small();
    let mut rounds = SideTable::new();
    rounds.insert(y, MaxPoly::of(poly::Poly::constant(3)));
    rounds.insert(r, MaxPoly::of(poly::Poly::constant(2)));
    p.analyses.rounds = Some(rounds);
    let msg = problems(&p);
    assert!(
        msg.contains("starts in round 2 but its operand %2 finishes in round 3"),
        "{msg}"
    );
}

#[test]
fn plan_round_trips_with_rounds() {
    let (mut p, [_, _, y, r]) = small();
    let mut rounds = SideTable::new();
    rounds.insert(y, MaxPoly::of(poly::Poly::constant(1)));
    rounds.insert(r, MaxPoly::of(poly::Poly::constant(2)));
    p.analyses.rounds = Some(rounds);
    let json = write_plan_json(&p).unwrap();
    let back = read_plan_json(&json).unwrap();
    assert_eq!(print::print_plan(&back), print::print_plan(&p));
    assert!(print::print_graph(&back).contains("@2"));
}

#[test]
fn plan_with_broken_types_is_rejected_on_read() {
    let (p, _) = small();
    let json =
        write_plan_json(&p)
            .unwrap()
            .replacen("\"party\": \"server\"", "\"party\": \"client\"", 1);
    let err = read_plan_json(&json).expect_err("inconsistent").to_string();
    assert!(err.contains("the plan is inconsistent"), "{err}");
}

/// `small()` in the protocol stage: x and w shared, the product truncated.
fn small_protocol() -> (Program, [NodeId; 5]) {
    let (mut p, [x, w, y, r]) = small();
    p.stage = Stage::Protocol;
    let t = |g: &Graph, n: NodeId| g.node(n).ty.clone();
    let xs = p.graph.add(
        Op::Share {
            from: Party::Client,
        },
        &[x],
        t(&p.graph, x).in_domain(Domain::Arith),
        Scope::default(),
    );
    let ws = p.graph.add(
        Op::Share {
            from: Party::Server,
        },
        &[w],
        t(&p.graph, w).in_domain(Domain::Arith),
        Scope::default(),
    );
    let prod = ValueType::new(
        Elem::Fixed { scale: 32 },
        vec![Dim::SEQ, c(2)],
        Domain::Arith,
    );
    let m = p.graph.add(Op::MatMul, &[xs, ws], prod, Scope::default());
    let tr = p.graph.add(
        Op::Trunc { bits: 16 },
        &[m],
        t(&p.graph, y),
        Scope::default(),
    );
    p.graph.replace_uses(y, tr);
    p.graph.remove(y);
    (p, [xs, ws, m, tr, r])
}

#[test]
fn protocol_stage_program_passes() {
    let (p, _) = small_protocol();
    verify(&p).expect("valid");
}

#[test]
fn a_truncation_of_64_bits_or_more_is_rejected() {
    for bits in [64, 65, 1000] {
        let (mut p, [_, _, m, tr, _]) = small_protocol();
        let ty = p.graph.node(tr).ty.clone();
        let big = p.graph.add(Op::Trunc { bits }, &[m], ty, Scope::default());
        p.graph.replace_uses(tr, big);
        p.graph.remove(tr);
        let msg = problems(&p);
        assert!(
            msg.contains(&format!("`trunc` by {bits} bits: shares live in the ring")),
            "{msg}"
        );
    }
}

#[test]
fn protocol_stage_rejects_a_missing_truncation() {
    let (mut p, [_, _, m, tr, _]) = small_protocol();
    p.graph.replace_uses(tr, m);
    p.graph.remove(tr);
    let msg = problems(&p);
    assert!(msg.contains("reveal") && msg.contains("fx32"), "{msg}");
}

#[test]
fn protocol_stage_rejects_a_private_value_meeting_shares() {
    let (mut p, [xs, _, _, _, _]) = small_protocol();
    let x = p.graph.operands(xs)[0];
    p.graph.replace_uses(xs, x);
    let msg = problems(&p);
    assert!(
        msg.contains("a private(client) value meets a shared one: it must be `share`d first"),
        "{msg}"
    );
}

#[test]
fn protocol_stage_rejects_sums_of_different_scales() {
    let (mut p, [_, _, m, tr, _]) = small_protocol();
    let ty = p.graph.node(tr).ty.clone();
    p.graph.add(Op::Add, &[m, tr], ty, Scope::default());
    let msg = problems(&p);
    assert!(
        msg.contains("`add` needs equal fixed-point scales, got fx32 and fx16: truncate first"),
        "{msg}"
    );
}

#[test]
fn composites_are_rejected_in_the_protocol_stage() {
    let (mut p, [_, _, _, tr, _]) = small_protocol();
    let ty = p.graph.node(tr).ty.clone();
    p.graph.add(Op::Softmax, &[tr], ty, Scope::default());
    assert!(
        problems(&p).contains("composite `softmax` must be expanded before `insert-conversions`")
    );
}

/// `small()` with a DReLU of the product (a dead end, as comparisons are checked alone).
fn small_with_drelu() -> (Program, NodeId) {
    let (mut p, [_, _, y, _]) = small();
    let ty = ValueType::new(Elem::Bit, vec![Dim::SEQ, c(2)], Domain::Bool);
    let d = p.graph.add(Op::Drelu, &[y], ty, Scope::default());
    (p, d)
}

#[test]
fn comparison_widths_round_trip_and_old_plans_read_as_64_bits() {
    let (mut p, d) = small_with_drelu();
    verify(&p).expect("valid");
    let old = write_plan_json(&p).unwrap();
    assert!(!old.contains("cmp_width"), "absent widths are not written");
    assert_eq!(
        read_plan_json(&old)
            .unwrap()
            .graph
            .node(d)
            .comparison_bits(),
        64
    );
    p.graph.node_mut(d).cmp_width = Some(40);
    let json = write_plan_json(&p).unwrap();
    assert!(json.contains("\"cmp_width\": 40"), "{json}");
    let back = read_plan_json(&json).unwrap();
    assert_eq!(print::print_plan(&back), print::print_plan(&p));
    assert!(print::print_graph(&back).contains("drelu(%2) {width = 40}"));
}

#[test]
fn comparison_widths_are_checked() {
    let (mut p, d) = small_with_drelu();
    p.graph.node_mut(d).cmp_width = Some(1);
    assert!(problems(&p).contains("comparison width 1 is outside 2..=64 bits"));
    p.graph.node_mut(d).cmp_width = Some(65);
    assert!(problems(&p).contains("comparison width 65 is outside"));
    let (mut p, [x, _, _, _]) = small();
    p.graph.node_mut(x).cmp_width = Some(32);
    assert!(problems(&p).contains("has a comparison width (32 bits) but compares nothing"));
    // a product's width is the width its value is read at (pass `narrow-openings`)
    let (mut p, [_, _, y, _]) = small();
    p.graph.node_mut(y).cmp_width = Some(32);
    verify(&p).expect("a product read at 32 bits");
    // any width from 8 bits: the runtime packs each opened part at exactly w bits
    p.graph.node_mut(y).cmp_width = Some(12);
    verify(&p).expect("a product read at 12 bits");
    p.graph.node_mut(y).cmp_width = Some(7);
    assert!(problems(&p).contains("opens its operands at width 7"));
    // only a fused ReLU or a row maximum opens at its comparison width
    let (mut p, [_, _, y, _]) = small();
    p.graph.node_mut(y).open_at_cmp_width = true;
    assert!(problems(&p).contains("opens at its comparison width"));
}

/// `small()` with a stochastic truncation of the product by 8 bits (a dead end).
fn small_with_stochastic_trunc() -> (Program, NodeId) {
    let (mut p, [_, _, y, _]) = small();
    let ty = ValueType::new(
        Elem::Fixed { scale: 8 },
        vec![Dim::SEQ, c(2)],
        Domain::Arith,
    );
    let t = p
        .graph
        .add(Op::StochasticTrunc { bits: 8 }, &[y], ty, Scope::default());
    (p, t)
}

#[test]
fn a_stochastic_truncation_takes_a_width_of_its_shift_plus_2_to_64_bits() {
    let (mut p, t) = small_with_stochastic_trunc();
    verify(&p).expect("valid without a width");
    for w in [10, 24, 41, 64] {
        p.graph.node_mut(t).cmp_width = Some(w);
        verify(&p).unwrap_or_else(|e| panic!("width {w}: {e:?}"));
    }
    p.graph.node_mut(t).cmp_width = Some(24);
    let back = read_plan_json(&write_plan_json(&p).unwrap()).unwrap();
    assert_eq!(back.graph.node(t).comparison_bits(), 24);
    assert!(print::print_graph(&back).contains("stochastic_trunc(%2) {bits = 8, width = 24}"));
    for w in [0, 2, 9, 65, 200] {
        p.graph.node_mut(t).cmp_width = Some(w);
        let problems = problems(&p);
        assert!(
            problems.contains(&format!(
                "{t} (stochastic_trunc): truncates by 8 bits at width {w}: a stochastic \
                 truncation's width must be 10 to 64 bits"
            )),
            "width {w}: {problems}"
        );
    }
}

/// Only a comparison or select of a stochastic truncation reads an opening (the width
/// rule is checked on real plans: `tests/examples_two_party.rs`).
#[test]
fn nothing_but_a_truncations_reader_reads_an_opening() {
    let (mut p, d) = small_with_drelu();
    p.graph.node_mut(d).reads_opening = true;
    assert!(problems(&p).contains("reads its operand's opening"));
    let (mut p, [_, _, y, _]) = small();
    p.graph.node_mut(y).reads_opening = true;
    assert!(problems(&p).contains("reads its operand's opening"));
}
