//! Reports of a hand-built program whose costs and rounds are written by hand, so every
//! expected figure below is derived in a comment rather than read off the code.

use super::*;
use comet_ir::cost::NodeCost;
use comet_ir::poly::{MaxPoly, Poly};
use comet_ir::protocol::Protocol;
use comet_ir::{Dim, Domain, Elem, Op, Party, Program, Scope, SideTable, ValueType};

fn ty() -> ValueType {
    ValueType::new(
        Elem::Fixed { scale: 16 },
        vec![Dim::SEQ, Dim::constant(4)],
        Domain::Arith,
    )
}

fn seq() -> Poly {
    Poly::dim(Dim::SEQ)
}

/// `2⌈log2(past + seq)⌉`: the rounds of a row maximum over the keys.
fn tree_rounds() -> Poly {
    Poly::log2(Dim::PAST + Dim::SEQ).scale(2)
}

fn cost(protocol: Protocol, rounds: Poly, online: Poly, offline: Poly, ops: Poly) -> NodeCost {
    NodeCost {
        protocol,
        rounds,
        online_bits: online,
        offline_bits: offline,
        local_ops: ops,
        per_block: None,
        per_kv: None,
        per_head: None,
    }
}

fn layer0(origin: &str) -> Scope {
    Scope {
        path: "layer.0".into(),
        layer: Some(0),
        origin: origin.into(),
    }
}

/// `x` (top level, local) feeds `a` (Beaver mul, 1 round) and `b` (a row max of a softmax,
/// `2⌈log2(past+seq)⌉` rounds), both in layer 0 and independent, so they start together in
/// round 0; `c` (a reveal at top level after the layers) waits for both:
/// start(c) = max(0 + 1, 0 + 2⌈log2(past+seq)⌉). With `kv`, `b` also reads a KV cache
/// (a free source), which makes the program a decoder with decode steps.
fn program(costed: bool, kv: bool) -> Program {
    let mut p = Program::default();
    p.info.name = "toy".into();
    let g = &mut p.graph;
    let input = Op::Input {
        name: "x".into(),
        party: Party::Client,
    };
    let x = g.add(input, &[], ty(), Scope::default());
    let k = kv.then(|| g.add(Op::CacheRead { slot: 0 }, &[], ty(), layer0("")));
    let a = g.add(Op::Mul, &[x, x], ty(), layer0(""));
    let b = g.add(Op::RowMax, &[x], ty(), layer0("softmax"));
    if let Some(k) = k {
        g.connect(k, b, 1);
    }
    let c = g.add(
        Op::Reveal { to: Party::Client },
        &[a, b],
        ty(),
        Scope::default(),
    );
    if !costed {
        return p;
    }
    let zero = Poly::zero;
    let mut costs = SideTable::new();
    for id in [Some(x), k].into_iter().flatten() {
        costs.insert(id, cost(Protocol::Local, zero(), zero(), zero(), zero()));
    }
    let (one, s) = (Poly::constant(1), seq());
    costs.insert(
        a,
        cost(
            Protocol::BeaverMul,
            one.clone(),
            s.scale(256),
            s.scale(64),
            s.scale(3),
        ),
    );
    let keys = Poly::dim(Dim::PAST + Dim::SEQ);
    costs.insert(
        b,
        cost(
            Protocol::RowMaxTree,
            tree_rounds(),
            s.mul(&keys).scale(64),
            zero(),
            zero(),
        ),
    );
    costs.insert(
        c,
        cost(Protocol::Reveal, one.clone(), s.scale(64), zero(), zero()),
    );
    let mut rounds = SideTable::new();
    for id in [Some(x), k, Some(a), Some(b)].into_iter().flatten() {
        rounds.insert(id, MaxPoly::default());
    }
    rounds.insert(c, MaxPoly::of(one).max(&MaxPoly::of(tree_rounds())));
    p.analyses.costs = Some(costs);
    p.analyses.rounds = Some(rounds);
    p
}

fn opts(prompt: u64, generate: u64, net: &str) -> InspectOptions {
    InspectOptions {
        prompt,
        generate,
        net: net.parse().unwrap(),
        compute_rate: DEFAULT_COMPUTE_RATE,
        weight_bound: crate::range::DEFAULT_WEIGHT_BOUND,
    }
}

fn amounts(rounds: u64, unmerged: u64, online: u64, offline: u64, ops: u64) -> Amounts {
    Amounts {
        rounds,
        rounds_unmerged: unmerged,
        online_bits: online,
        offline_bits: offline,
        local_ops: ops,
    }
}

#[test]
fn prefill_totals_merged_and_unmerged() {
    let r = report(&program(true, true), "toy.plan", &opts(4, 1, "wan")).unwrap();
    // seq 4, past 0: ⌈log2 4⌉ = 2, so b takes 4 rounds; a 1; c starts at max(1, 4) = 4 and
    // ends at 5. Merged: 5. Unmerged: 1 + 4 + 1 = 6.
    // online: a 256·4 = 1024, b 64·4·4 = 1024, c 64·4 = 256: 2304 bits. dealer: a 64·4.
    // local ops: a 3·4 = 12.
    assert_eq!(r.prefill.totals.amounts, amounts(5, 6, 2304, 256, 12));
    assert_eq!((r.nodes, r.communicating_nodes), (5, 3));
    assert!(r.last_decode.is_none() && r.decode_steps.is_none());
    assert_eq!(r.generation.amounts, r.prefill.totals.amounts);
    assert_eq!(r.generation.calls, 1);
}

#[test]
fn generation_sums_prefill_and_growing_decode_steps() {
    let r = report(&program(true, true), "toy.plan", &opts(4, 3, "wan")).unwrap();
    // step 1: seq 1, past 4: ⌈log2 5⌉ = 3, b 6 rounds, c ends at 7; unmerged 1 + 6 + 1 = 8;
    //   online 256 + 64·5 + 64 = 640; dealer 64; ops 3.
    // step 2: seq 1, past 5: ⌈log2 6⌉ = 3, rounds as step 1; online 256 + 64·6 + 64 = 704.
    let last = r.last_decode.as_ref().unwrap();
    assert_eq!((last.seq, last.past), (1, 5));
    assert_eq!(last.totals.amounts, amounts(7, 8, 704, 64, 3));
    let steps = r.decode_steps.as_ref().unwrap();
    assert_eq!(steps.calls, 2);
    assert_eq!(steps.amounts, amounts(14, 16, 1344, 128, 6));
    // + prefill (5, 6, 2304, 256, 12)
    assert_eq!(r.generation.calls, 3);
    assert_eq!(r.generation.amounts, amounts(19, 22, 3648, 384, 18));
    // wan: 19 · 40 ms = 0.76 s; 3648 bits / 10^8 bit/s = 36.48 µs; 18 / 10^9 s = 18 ns.
    let l = r.generation.latency;
    assert!((l.rounds_s - 0.76).abs() < 1e-12);
    assert!((l.transfer_s - 36.48e-6).abs() < 1e-15);
    assert!((l.compute_s - 18e-9).abs() < 1e-18);
    assert!((l.total_s - (0.76 + 36.48e-6 + 18e-9)).abs() < 1e-12);
}

#[test]
fn latency_on_lan_and_wan() {
    // 3 rounds, 10^6 bytes = 8·10^6 bits online, 2·10^6 local ring multiplications:
    // wan: 3 · 40 ms + 8·10^6 / 10^8 s + 2·10^6 / 10^9 s = 0.12 + 0.08 + 0.002 = 0.202 s
    // lan: 3 · 0.1 ms + 8·10^6 / 10^10 s + 0.002 s = 0.0003 + 0.0008 + 0.002 = 0.0031 s
    let a = amounts(3, 3, 8_000_000, 0, 2_000_000);
    let wan = Latency::of(&a, &NetProfile::wan(), 1e9);
    assert!((wan.total_s - 0.202).abs() < 1e-12, "{wan:?}");
    let lan = Latency::of(&a, &NetProfile::lan(), 1e9);
    assert!((lan.total_s - 0.0031).abs() < 1e-12, "{lan:?}");
    // 1gbit:5ms at 2·10^9 ops/s: 0.015 + 0.008 + 0.001 = 0.024 s
    let custom = Latency::of(&a, &"1gbit:5ms".parse().unwrap(), 2e9);
    assert!((custom.total_s - 0.024).abs() < 1e-12, "{custom:?}");
}

#[test]
fn groups_by_layer_op_kind_and_protocol() {
    let r = report(&program(true, true), "toy.plan", &opts(4, 1, "lan")).unwrap();
    let p = &r.prefill;
    let layer: Vec<(&str, u64, u64, u64)> = p
        .by_layer
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.amounts.rounds,
                r.amounts.rounds_unmerged,
                r.amounts.online_bits,
            )
        })
        .collect();
    // layer 0 exchanges in rounds [0,1) ∪ [0,4) = 4 rounds; its own rounds sum to 5.
    assert_eq!(
        layer,
        [
            ("before layers", 0, 0, 0),
            ("layer 0", 4, 5, 2048),
            ("after layers", 1, 1, 256)
        ]
    );
    assert_eq!(p.by_layer[1].layer, Some(0));
    // mul and softmax tie at 1024 bits: by name.
    let ops: Vec<(&str, u64)> = p
        .by_op_kind
        .iter()
        .map(|r| (r.name.as_str(), r.amounts.online_bits))
        .collect();
    assert_eq!(
        ops,
        [
            ("mul", 1024),
            ("softmax", 1024),
            ("reveal", 256),
            ("cache_read", 0),
            ("input", 0)
        ]
    );
    assert!((p.by_op_kind[0].online_share - 1024.0 / 2304.0).abs() < 1e-12);
    let protos: Vec<&str> = p.by_protocol.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(protos, ["beaver_mul", "row_max", "reveal", "local"]);
}

#[test]
fn uncosted_plan_is_an_error() {
    let e = report(&program(false, true), "toy.plan", &opts(4, 1, "lan")).unwrap_err();
    assert!(matches!(e, InspectError::NoCosts { .. }));
    assert!(
        e.to_string()
            .starts_with("plan `toy.plan` has no cost annotations: "),
        "{e}"
    );
}

#[test]
fn communicating_node_without_round_is_an_error() {
    let mut p = program(true, true);
    let c = p.graph.ids().last().unwrap();
    let mut rounds = SideTable::new();
    for (id, r) in p.analyses.rounds.as_ref().unwrap().iter() {
        if id != c {
            rounds.insert(id, r.clone());
        }
    }
    p.analyses.rounds = Some(rounds);
    let e = report(&p, "toy.plan", &opts(4, 1, "lan")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "plan `toy.plan`: node %4 (`reveal`) communicates but has no start round (pass `schedule`)"
    );
}

#[test]
fn negative_figures_are_reported() {
    let mut p = program(true, true);
    let a = p.graph.ids().nth(2).unwrap();
    let mut costs = p.analyses.costs.take().unwrap();
    let mut bad = costs.get(a).unwrap().clone();
    bad.online_bits = seq().sub(&Poly::constant(10));
    costs.insert(a, bad);
    p.analyses.costs = Some(costs);
    let e = report(&p, "toy.plan", &opts(4, 1, "lan")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "plan `toy.plan`: node %2 has online bits = -6 at seq = 4, past = 0 (a compiler bug)"
    );
}

#[test]
fn options_are_checked() {
    let p = program(true, true);
    for (o, msg) in [
        (opts(0, 1, "lan"), "prompt"),
        (opts(4, 0, "lan"), "--generate must be at least 1"),
        (
            InspectOptions {
                compute_rate: 0.0,
                ..opts(4, 1, "lan")
            },
            "compute rate",
        ),
    ] {
        let e = report(&p, "toy.plan", &o).unwrap_err().to_string();
        assert!(e.contains(msg), "{e}");
    }
}

#[test]
fn a_model_without_kv_cache_runs_once_with_a_note() {
    let r = report(&program(true, false), "toy.plan", &opts(4, 3, "lan")).unwrap();
    assert_eq!(r.notes.len(), 1);
    assert!(r.notes[0].contains("reads no KV cache"), "{:?}", r.notes);
    assert_eq!((r.settings.generate, r.generation.calls), (1, 1));
    assert!(r.last_decode.is_none());
    assert!(render(&r).contains("\nnote: model `toy` reads no KV cache"));
}

#[test]
fn text_and_json_forms() {
    let r = report(&program(true, true), "toy.plan", &opts(4, 1, "wan")).unwrap();
    let text = render(&r);
    assert!(
        text.starts_with("plan toy.plan: model toy, comparison fss, 5 nodes (3 communicating)\n"),
        "{text}"
    );
    assert!(
        text.contains("network: wan (100 Mbit/s, 40.0 ms per round)"),
        "{text}"
    );
    // 2304 bits = 288 B
    assert!(text.contains("prefill (seq 4)"), "{text}");
    assert!(text.contains("288 B"), "{text}");
    assert!(
        text.contains("prefill (seq 4, past 0), by op kind"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&to_json(&r)).unwrap();
    assert_eq!(json["prefill"]["totals"]["rounds"], 5);
    assert_eq!(json["prefill"]["totals"]["online_bytes"], 288.0);
    assert_eq!(json["prefill"]["by_layer"][1]["layer"], 0);
    assert_eq!(json["settings"]["net"]["name"], "wan");
    assert_eq!(json["comparison"], "fss");
}

#[test]
fn comparing_a_plan_with_itself() {
    let r = report(&program(true, true), "toy.plan", &opts(4, 1, "lan")).unwrap();
    let c = compare(r.clone(), r);
    assert_eq!(c.ratios.prefill.rounds, Some(1.0));
    assert_eq!(c.ratios.generation.online_bits, Some(1.0));
    let text = render_compare(&c);
    assert!(text.contains("prefill rounds"), "{text}");
    assert!(text.contains("1.00×"), "{text}");
    assert!(text.contains("by op kind (this / other)"), "{text}");
}
