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

/// `apply_mask(x, mask)` keeps x where its block is active and is 0 elsewhere: x's range
/// and norms with 0, never the mask's [0, 1] (which once narrowed a sparse FFN's
/// truncation to a width its values overflowed).
#[test]
fn a_block_mask_keeps_the_values_range_not_the_masks() {
    let mut p = Program::default();
    let shape = || vec![Dim::constant(2), Dim::constant(8)];
    let x = weight(&mut p, shape()); // [-5, 5]
    let bits = |p: &mut Program| {
        let w = weight(p, vec![Dim::constant(2), Dim::constant(2)]);
        let ty = ValueType::new(
            Elem::Bit,
            vec![Dim::constant(2), Dim::constant(2)],
            Domain::Arith,
        );
        add(p, Op::Drelu, &[w], ty)
    };
    let mask = bits(&mut p);
    let masked = add(
        &mut p,
        Op::ApplyMask { ffn: 0, block: 4 },
        &[x, mask],
        fx(16, shape()),
    );
    let r = analyse(&p, env(1, 0), &opts(5.0));
    assert_eq!(r.of(mask), Interval::new(0.0, 1.0));
    assert_eq!(r.of(masked), Interval::new(-5.0, 5.0));
    assert_eq!(r.norms_of(masked).row_l2, r.norms_of(x).row_l2);
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

/// Declares statistics for the weights of `p` by name.
fn with_stats(p: &mut Program, stats: &[(NodeId, comet_ir::WeightStats)]) {
    let mut m = std::collections::BTreeMap::new();
    for (id, s) in stats {
        let Op::Weight { name } = &p.graph.node(*id).op else {
            panic!("not a weight")
        };
        m.insert(name.clone(), *s);
    }
    p.options.weight_stats = Some(m);
}

fn stats(max_abs: f64, row_l2: f64, col_l2: f64, op: f64) -> comet_ir::WeightStats {
    comet_ir::WeightStats {
        max_abs,
        row_l2,
        col_l2,
        op,
    }
}

/// A declared normalised row `x` (‖x‖₂ ≤ 10, entries within ±10), a gain `g` (|g| ≤ 2)
/// and a matrix `w` [100, 50] with columns of norm ≤ 0.5, spectral norm ≤ 3, entries
/// within ±0.25: `y = (x·g)·w` has entries within ‖x·g‖₂·0.5 = 20·0.5 = 10 (interval
/// arithmetic alone: 100 · 20 · 0.25 = 500) and rows within 20·3 = 60; a second product
/// `y·v` with v's columns ≤ 0.1 has entries within 6.
#[test]
fn products_are_bounded_by_row_and_column_norms() {
    let mut p = Program::default();
    let c = |n: i64| Dim::constant(n);
    let x = weight(&mut p, vec![Dim::SEQ, c(100)]);
    let g = weight(&mut p, vec![c(100)]);
    let w = weight(&mut p, vec![c(100), c(50)]);
    let v = weight(&mut p, vec![c(50), c(7)]);
    let xg = add(&mut p, Op::Mul, &[x, g], fx(32, vec![Dim::SEQ, c(100)]));
    let y = add(&mut p, Op::MatMul, &[xg, w], fx(32, vec![Dim::SEQ, c(50)]));
    let z = add(&mut p, Op::MatMul, &[y, v], fx(32, vec![Dim::SEQ, c(7)]));
    with_stats(
        &mut p,
        &[
            (x, stats(10.0, 10.0, f64::INFINITY, f64::INFINITY)),
            (g, stats(2.0, 20.0, 2.0, 2.0)),
            (w, stats(0.25, 1.0, 0.5, 3.0)),
            (v, stats(0.1, 1.0, 0.1, 1.0)),
        ],
    );
    let r = analyse(&p, env(4, 0), &opts(64.0));
    assert_eq!(r.norms_of(xg).row_l2, 20.0);
    assert_eq!(r.of(y), Interval::symmetric(10.0));
    assert_eq!(r.norms_of(y).row_l2, 60.0);
    assert_eq!(r.of(z), Interval::symmetric(6.0));
    // without statistics, interval arithmetic: 100 · (64·64) · 64
    let mut bare = p.clone();
    bare.options.weight_stats = None;
    let r = analyse(&bare, env(4, 0), &opts(64.0));
    assert_eq!(r.of(y).magnitude(), 100.0 * 64.0 * 64.0 * 64.0);
}

/// A softmax-like row `p` with a declared L1 norm of 1 (entries in [0, 1]) times values
/// `v` [keys, 8] within ±3 whose rows have norm ≤ 5: entries within 1·3 (whatever the
/// number of keys; interval arithmetic says keys·3), rows within 1·5 (plus the rounding
/// allowance of 16 ulps per row for the declared norm).
#[test]
fn a_row_stochastic_product_is_bounded_by_its_l1_norm() {
    let mut p = Program::default();
    let keys = vec![Dim::SEQ, Dim::constant(64)];
    let probs = weight(&mut p, keys.clone());
    let v = weight(&mut p, vec![Dim::constant(64), Dim::constant(8)]);
    let out = add(
        &mut p,
        Op::MatMul,
        &[probs, v],
        fx(32, vec![Dim::SEQ, Dim::constant(8)]),
    );
    with_stats(&mut p, &[(v, stats(3.0, 5.0, 100.0, 100.0))]);
    let mut declared = comet_ir::SideTable::new();
    declared.insert(
        probs,
        comet_ir::Declared {
            range: Some(Interval::new(0.0, 1.0)),
            row_l1: Some(1.0),
            ..Default::default()
        },
    );
    p.analyses.declared = Some(declared);
    let r = analyse(&p, env(4, 0), &opts(64.0));
    let l1 = 1.0 + 64.0 * 2f64.powi(-16);
    assert_eq!(r.of(out), Interval::symmetric(l1 * 3.0));
    assert_eq!(r.norms_of(out).row_l2, l1 * 5.0);
}

/// `x − mean(x)` (through the mean's truncation) is no longer than `x`, up to one unit in
/// the last place per entry; a plain difference of the same operands adds their norms.
#[test]
fn a_centred_row_is_no_longer_than_the_row() {
    let mut p = Program::default();
    let c = |n: i64| Dim::constant(n);
    let x = weight(&mut p, vec![Dim::SEQ, c(16)]);
    let sum = add(&mut p, Op::RowSum, &[x], fx(16, vec![Dim::SEQ, c(1)]));
    let mean = add(
        &mut p,
        Op::MulConst { value: 1.0 / 16.0 },
        &[sum],
        fx(32, vec![Dim::SEQ, c(1)]),
    );
    let t = add(
        &mut p,
        Op::StochasticTrunc { bits: 16 },
        &[mean],
        fx(16, vec![Dim::SEQ, c(1)]),
    );
    let centred = add(&mut p, Op::Sub, &[x, t], fx(16, vec![Dim::SEQ, c(16)]));
    let other = add(&mut p, Op::Sub, &[x, x], fx(16, vec![Dim::SEQ, c(16)]));
    with_stats(&mut p, &[(x, stats(4.0, 8.0, 100.0, 100.0))]);
    let r = analyse(&p, env(2, 0), &opts(64.0));
    assert_eq!(r.norms_of(centred).row_l2, 8.0 + 4.0 * 2f64.powi(-16));
    assert_eq!(r.norms_of(other).row_l2, 16.0);
}

/// A recipe input outside its assumed range taints everything downstream of it: no
/// declared range or norm applies there (the recipe may be wrong), while a node beside
/// it keeps its declaration.
#[test]
fn a_violated_assumption_taints_what_follows_it() {
    let mut p = Program::default();
    let c = |n: i64| vec![Dim::constant(n)];
    let a = weight(&mut p, c(4)); // [-2, 2]
    let b = weight(&mut p, c(4));
    let after = add(&mut p, Op::MulConst { value: 3.0 }, &[a], fx(16, c(4)));
    let beside = add(&mut p, Op::MulConst { value: 3.0 }, &[b], fx(16, c(4)));
    let mut declared = comet_ir::SideTable::new();
    // a recipe on `a` assumes [-1, 1] (violated: a is within ±2) and declares its result
    // within ±1; one on `b` assumes [-2, 2] (holds) and declares ±1 too
    for (input, assumed, out) in [(a, 1.0, after), (b, 2.0, beside)] {
        declared.insert(
            input,
            comet_ir::Declared {
                assumes: Some(Interval::symmetric(assumed)),
                recipe: "test".into(),
                ..Default::default()
            },
        );
        declared.insert(
            out,
            comet_ir::Declared {
                range: Some(Interval::symmetric(1.0)),
                ..Default::default()
            },
        );
    }
    p.analyses.declared = Some(declared);
    let r = analyse(&p, env(1, 0), &opts(2.0));
    assert!(r.tainted.contains(&a) && r.tainted.contains(&after));
    assert!(!r.tainted.contains(&b) && !r.tainted.contains(&beside));
    assert_eq!(
        r.of(after),
        Interval::symmetric(6.0),
        "declaration not applied"
    );
    assert_eq!(
        r.of(beside),
        Interval::symmetric(1.0),
        "declaration applied"
    );
}
