//! Bounds of hand-built protocol-stage programs, computed by hand in the comments, and of
//! the example models.

use super::*;
use comet_ir::{Dim, Domain, Elem, Party, Scope, ValueType};

fn fx(scale: u32, shape: Vec<Dim>) -> ValueType {
    ValueType::new(Elem::Fixed { scale }, shape, Domain::Arith)
}

fn add(p: &mut Program, op: Op, xs: &[NodeId], ty: ValueType) -> NodeId {
    p.graph.add(op, xs, ty, Scope::default())
}

fn weight(p: &mut Program, shape: Vec<Dim>) -> NodeId {
    let name = format!("w{}", p.graph.ids().count());
    add(p, Op::Weight { name }, &[], fx(16, shape))
}

fn env(seq: u64, past: u64) -> DimEnv {
    DimEnv { seq, past }
}

fn opts(w: f64) -> RangeOptions {
    RangeOptions { weight_bound: w }
}

#[test]
fn elementwise_ops_by_hand() {
    let mut p = Program::default();
    let c = |n| vec![Dim::constant(n)];
    let a = weight(&mut p, c(4)); // [-2, 2]
    let b = weight(&mut p, c(4)); // [-2, 2]
    let sum = add(&mut p, Op::Add, &[a, b], fx(16, c(4))); // [-4, 4]
    let k = add(&mut p, Op::MulConst { value: -3.0 }, &[sum], fx(32, c(4))); // [-12, 12]
    let shifted = add(&mut p, Op::AddConst { value: 20.0 }, &[k], fx(32, c(4))); // [8, 32]
    let prod = add(&mut p, Op::Mul, &[shifted, a], fx(48, c(4))); // [-64, 64]
    let sq = add(&mut p, Op::Square, &[a], fx(32, c(4))); // [0, 4]
    let bit = add(
        &mut p,
        Op::Drelu,
        &[a],
        ValueType::new(Elem::Bit, c(4), Domain::Arith),
    );
    let sel = add(&mut p, Op::Select, &[bit, shifted], fx(32, c(4))); // [0, 32]
    let rs = add(&mut p, Op::RowSum, &[sq], fx(32, c(1))); // 4 · [0, 4] = [0, 16]
    let t = add(&mut p, Op::Trunc { bits: 16 }, &[prod], fx(32, c(4))); // [-64, 64]
    let r = analyse(&p, env(1, 0), &opts(2.0));
    let want = [
        (sum, (-4.0, 4.0)),
        (k, (-12.0, 12.0)),
        (shifted, (8.0, 32.0)),
        (prod, (-64.0, 64.0)),
        (sq, (0.0, 4.0)),
        (bit, (0.0, 1.0)),
        (sel, (0.0, 32.0)),
        (rs, (0.0, 16.0)),
        (t, (-64.0, 64.0)),
    ];
    for (id, (lo, hi)) in want {
        assert_eq!(
            r.of(id),
            Interval::new(lo, hi),
            "{}",
            p.graph.node(id).op.name()
        );
    }
    assert!(r.unmodelled.is_empty());
}

#[test]
fn matmul_sums_k_products_and_one_hot_picks_one_row() {
    let mut p = Program::default();
    // x [seq, 8] in [-3, 3] (a weight slice stands in), w [8, 5] in [-3, 3]
    let x = weight(&mut p, vec![Dim::SEQ, Dim::constant(8)]);
    let w = weight(&mut p, vec![Dim::constant(8), Dim::constant(5)]);
    let y = add(
        &mut p,
        Op::MatMul,
        &[x, w],
        fx(32, vec![Dim::SEQ, Dim::constant(5)]),
    );
    // one_hot(ids) · table [100, 5]: one row of the table, not 100 of them
    let ids = add(
        &mut p,
        Op::Input {
            name: "ids".into(),
            party: Party::Client,
        },
        &[],
        ValueType::new(Elem::Index, vec![Dim::SEQ], Domain::Private(Party::Client)),
    );
    let hot = add(
        &mut p,
        Op::OneHot { depth: 100 },
        &[ids],
        fx(0, vec![Dim::SEQ, Dim::constant(100)]),
    );
    let shared = add(
        &mut p,
        Op::Share {
            from: Party::Client,
        },
        &[hot],
        fx(0, vec![Dim::SEQ, Dim::constant(100)]),
    );
    let table = weight(&mut p, vec![Dim::constant(100), Dim::constant(5)]);
    let e = add(
        &mut p,
        Op::MatMul,
        &[shared, table],
        fx(16, vec![Dim::SEQ, Dim::constant(5)]),
    );
    let r = analyse(&p, env(4, 0), &opts(3.0));
    // 8 products in [-9, 9]
    assert_eq!(r.of(y), Interval::symmetric(72.0));
    assert_eq!(r.of(e), Interval::symmetric(3.0));
}

#[test]
fn causal_mask_makes_masked_scores_large_and_their_truncation_is_reported() {
    let mut p = Program::default();
    p.info.format = comet_ir::FixedFormat { ring: 64, frac: 16 };
    let keys = Dim::PAST + Dim::SEQ;
    let s = weight(&mut p, vec![Dim::SEQ, keys]); // scores in [-4, 4]
    let masked = add(&mut p, Op::CausalMask, &[s], fx(16, vec![Dim::SEQ, keys]));
    let scaled = add(
        &mut p,
        Op::MulConst { value: 0.125 },
        &[masked],
        fx(32, vec![Dim::SEQ, keys]),
    );
    let t = add(
        &mut p,
        Op::Trunc { bits: 16 },
        &[scaled],
        fx(16, vec![Dim::SEQ, keys]),
    );
    let e = env(128, 0);
    let r = analyse(&p, e, &opts(4.0));
    // [-4 - 2^20, 4], then / 8
    assert_eq!(r.of(masked), Interval::new(-4.0 - 1_048_576.0, 4.0));
    assert_eq!(r.of(t), Interval::new((-4.0 - 1_048_576.0) / 8.0, 0.5));
    let rep = range_report(&p, e, &opts(4.0));
    assert_eq!(rep.truncations, 1);
    let worst = &rep.worst[0];
    assert_eq!(worst.node, format!("%{}", t.index()));
    assert_eq!(worst.bound, Some((4.0 + 1_048_576.0) / 8.0));
    assert_eq!(worst.elements, 128 * 128);
    // X = 131072.5 · 2^32 ring units: X / 2^64 per element
    let per = 131_072.5 / 2f64.powi(32);
    assert_eq!(worst.per_element, per);
    assert_eq!(rep.total_failure, 128.0 * 128.0 * per);
    // 2^17 · 2^14 elements / 2^32 = 0.5: the mask alone makes the call likely to fail
    assert!(rep.total_failure > 0.49, "{}", rep.total_failure);
}

#[test]
fn unmodelled_op_is_unbounded_and_listed() {
    let mut p = Program::default();
    let c = vec![Dim::constant(4)];
    let x = weight(&mut p, c.clone());
    let y = add(
        &mut p,
        Op::Unary {
            func: comet_ir::UnaryFn::Tanh,
        },
        &[x],
        fx(16, c.clone()),
    );
    let z = add(&mut p, Op::MulConst { value: 0.5 }, &[y], fx(32, c.clone()));
    let t = add(&mut p, Op::Trunc { bits: 16 }, &[z], fx(16, c));
    let r = analyse(&p, env(1, 0), &opts(1.0));
    assert_eq!(r.of(y), Interval::UNBOUNDED);
    assert_eq!(r.of(t), Interval::UNBOUNDED);
    assert_eq!(r.unmodelled, vec![y]);
    let rep = range_report(&p, env(1, 0), &opts(1.0));
    assert_eq!((rep.unbounded, rep.total_failure), (1, 1.0));
    assert_eq!(rep.worst[0].bound, None);
    assert_eq!(rep.unmodelled, vec![format!("%{} (tanh)", y.index())]);
}

#[test]
fn cache_reads_are_bounded_by_what_is_written() {
    let mut p = Program::default();
    let shape = vec![Dim::constant(1), Dim::PAST, Dim::constant(2)];
    let new_shape = vec![Dim::constant(1), Dim::SEQ, Dim::constant(2)];
    let all = vec![Dim::constant(1), Dim::PAST + Dim::SEQ, Dim::constant(2)];
    let read = add(&mut p, Op::CacheRead { slot: 0 }, &[], fx(16, shape));
    let k = weight(&mut p, new_shape);
    let cat = add(
        &mut p,
        Op::Concat { axis: 1 },
        &[read, k],
        fx(16, all.clone()),
    );
    add(&mut p, Op::CacheWrite { slot: 0 }, &[cat], fx(16, all));
    let r = analyse(&p, env(1, 5), &opts(7.0));
    assert_eq!(r.of(read), Interval::symmetric(7.0));
    assert_eq!(r.of(cat), Interval::symmetric(7.0));
}

#[test]
fn failure_formula() {
    // 1.0 at 32 fractional bits: X = 2^32, X / 2^64 = 2^-32
    assert_eq!(failure_per_element(1.0, 32, 64), 2f64.powi(-32));
    // a value that does not fit the signed ring fails for sure
    assert_eq!(failure_per_element(2f64.powi(31), 32, 64), 1.0);
    assert_eq!(failure_per_element(f64::INFINITY, 16, 64), 1.0);
}

/// Prints the report of every example (run with `--nocapture` to read it).
#[test]
fn examples_have_reports() {
    for path in ["gpt2", "opt-1.3b", "llama2-7b", "glassllm"] {
        let file = format!("{}/../examples/{path}.model", env!("CARGO_MANIFEST_DIR"));
        let src = std::fs::read_to_string(&file).unwrap();
        let p = crate::compile(&src, &file, &Default::default())
            .unwrap()
            .program;
        let rep = range_report(&p, env(128, 0), &RangeOptions::default());
        assert!(rep.truncations > 0);
        assert!(rep.unmodelled.is_empty(), "{path}: {:?}", rep.unmodelled);
        eprintln!("{path}: {}", serde_json::to_string_pretty(&rep).unwrap());
    }
}
