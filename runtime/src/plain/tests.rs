//! Each op family against values worked out by hand or by a naive loop, then whole
//! programs built by hand for the interpreter's checks (inputs, weights, cache, trace).

use super::*;
use comet_ir::{
    Dim, Domain, Elem, InputInfo, ModelInfo, Party, RopeStyle, Scope, UnaryFn, ValueType,
    WeightInfo,
};
use ndarray::{Array, ArrayD, IxDyn};

fn arr(shape: &[usize], values: &[f64]) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).unwrap()
}

/// `0, 1, 2, …` scaled and shifted so that no two entries agree.
fn ramp(shape: &[usize]) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    arr(
        shape,
        &(0..n).map(|i| 0.37 * i as f64 - 1.1).collect::<Vec<_>>(),
    )
}

fn run(op: Op, xs: &[&ArrayD<f64>], env: DimEnv) -> OpResult {
    let views: Vec<ArrayViewD<f64>> = xs.iter().map(|x| x.view()).collect();
    apply(&op, &views, env)
}

fn run1(op: Op, xs: &[&ArrayD<f64>]) -> ArrayD<f64> {
    run(op, xs, DimEnv { seq: 1, past: 0 }).unwrap()
}

fn close(a: &ArrayD<f64>, b: &ArrayD<f64>, tol: f64) {
    assert_eq!(a.shape(), b.shape());
    let err = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(err <= tol, "max abs difference {err}\n{a}\n{b}");
}

fn naive_matmul(a: &ArrayD<f64>, b: &ArrayD<f64>) -> ArrayD<f64> {
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    Array::from_shape_fn(IxDyn(&[m, n]), |ix| {
        (0..k).map(|t| a[[ix[0], t]] * b[[t, ix[1]]]).sum()
    })
}

#[test]
fn matmul_2d_broadcast_and_batched() {
    let (a, b) = (ramp(&[3, 4]), ramp(&[4, 5]));
    close(&run1(Op::MatMul, &[&a, &b]), &naive_matmul(&a, &b), 1e-12);
    let a3 = ramp(&[2, 3, 4]);
    let c = run1(Op::MatMul, &[&a3, &b]);
    assert_eq!(c.shape(), &[2, 3, 5]);
    for i in 0..2 {
        let ai = a3.index_axis(ndarray::Axis(0), i).to_owned();
        close(
            &c.index_axis(ndarray::Axis(0), i).to_owned(),
            &naive_matmul(&ai, &b),
            1e-12,
        );
    }
    let b3 = ramp(&[2, 4, 5]);
    let c = run1(Op::MatMul, &[&a3, &b3]);
    for i in 0..2 {
        let ai = a3.index_axis(ndarray::Axis(0), i).to_owned();
        let bi = b3.index_axis(ndarray::Axis(0), i).to_owned();
        close(
            &c.index_axis(ndarray::Axis(0), i).to_owned(),
            &naive_matmul(&ai, &bi),
            1e-12,
        );
    }
}

#[test]
fn matmul_few_rows_path_agrees_with_gemm_path() {
    // 1 to 4 rows take the row-scaling path, 5 and more the blocked GEMM; both against
    // the naive product, with a right operand in standard and in transposed layout.
    let b = ramp(&[7, 9]);
    let bt = ramp(&[9, 7]).reversed_axes();
    for rows in [1, 2, 4, 5, 8] {
        let a = ramp(&[rows, 7]);
        for b in [&b, &bt] {
            let c = run1(Op::MatMul, &[&a, b]);
            assert_eq!(c.shape(), &[rows, 9]);
            close(&c, &naive_matmul(&a, b), 1e-12);
        }
    }
}

#[test]
fn matmul_rejects_bad_shapes() {
    let env = DimEnv { seq: 1, past: 0 };
    let err = run(Op::MatMul, &[&ramp(&[3, 4]), &ramp(&[5, 2])], env).unwrap_err();
    assert_eq!(
        err,
        "`matmul`: left is [3, 4], right is [5, 2]: inner dimensions differ"
    );
    let err = run(Op::MatMul, &[&ramp(&[2, 3, 4]), &ramp(&[3, 4, 2])], env).unwrap_err();
    assert!(err.ends_with("batch axes differ"), "{err}");
    assert!(run(Op::MatMul, &[&ramp(&[4]), &ramp(&[4, 2])], env).is_err());
}

#[test]
fn transpose_swaps_the_last_two_axes() {
    let x = ramp(&[2, 3, 4]);
    let t = run1(Op::Transpose, &[&x]);
    assert_eq!(t.shape(), &[2, 4, 3]);
    assert_eq!(t[[1, 3, 2]], x[[1, 2, 3]]);
}

#[test]
fn elementwise_ops_broadcast() {
    let a = ramp(&[2, 3]);
    let row = arr(&[3], &[10.0, 20.0, 30.0]);
    let col = arr(&[2, 1], &[2.0, -1.0]);
    assert_eq!(run1(Op::Add, &[&a, &row])[[1, 2]], a[[1, 2]] + 30.0);
    assert_eq!(run1(Op::Sub, &[&row, &a])[[0, 1]], 20.0 - a[[0, 1]]);
    assert_eq!(
        run1(Op::Mul, &[&col, &row]),
        arr(&[2, 3], &[20.0, 40.0, 60.0, -10.0, -20.0, -30.0])
    );
    let bits = arr(&[2, 1], &[1.0, 0.0]);
    assert_eq!(
        run1(Op::Select, &[&bits, &row]),
        arr(&[2, 3], &[10.0, 20.0, 30.0, 0.0, 0.0, 0.0])
    );
    let err = run(
        Op::Add,
        &[&a, &arr(&[2], &[1.0, 2.0])],
        DimEnv { seq: 1, past: 0 },
    );
    assert_eq!(
        err.unwrap_err(),
        "`add`: left is [2, 3], right is [2]: they do not broadcast"
    );
}

#[test]
fn constants_and_elementwise_primitives() {
    let x = arr(&[4], &[-2.0, -0.0, 0.5, 3.0]);
    assert_eq!(
        run1(Op::MulConst { value: 0.5 }, &[&x]),
        arr(&[4], &[-1.0, -0.0, 0.25, 1.5])
    );
    assert_eq!(
        run1(Op::AddConst { value: 1.0 }, &[&x]),
        arr(&[4], &[-1.0, 1.0, 1.5, 4.0])
    );
    assert_eq!(run1(Op::Neg, &[&x]), arr(&[4], &[2.0, 0.0, -0.5, -3.0]));
    assert_eq!(run1(Op::Square, &[&x]), arr(&[4], &[4.0, 0.0, 0.25, 9.0]));
    assert_eq!(run1(Op::Drelu, &[&x]), arr(&[4], &[0.0, 1.0, 1.0, 1.0]));
}

#[test]
fn reductions_keep_the_last_axis() {
    let x = arr(&[2, 3], &[1.0, 5.0, -2.0, -4.0, -1.0, -9.0]);
    assert_eq!(run1(Op::RowSum, &[&x]), arr(&[2, 1], &[4.0, -14.0]));
    assert_eq!(run1(Op::RowMax, &[&x]), arr(&[2, 1], &[5.0, -1.0]));
}

#[test]
fn unary_functions_are_exact() {
    // 0.5·x·(1 + erf(x/√2)) to double precision (mpmath, 40 digits).
    let gelu = [
        (-5.0, -1.4332578593959695e-06),
        (-1.5, -0.1002108019032871),
        (0.3, 0.1853734266566858),
        (2.2, 2.169412415470303),
    ];
    for (x, y) in gelu {
        assert!((exact(UnaryFn::Gelu, x) - y).abs() < 1e-15, "gelu({x})");
    }
    assert_eq!(exact(UnaryFn::Relu, -3.0), 0.0);
    assert!((exact(UnaryFn::Silu, 2.0) - 2.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-15);
    assert_eq!(exact(UnaryFn::Sigmoid, -800.0), 0.0);
    assert_eq!(exact(UnaryFn::Sigmoid, 800.0), 1.0);
    assert_eq!(exact(UnaryFn::Reciprocal, 4.0), 0.25);
    assert_eq!(exact(UnaryFn::Rsqrt, 4.0), 0.5);
    assert_eq!(exact(UnaryFn::Exp, 0.0), 1.0);
    assert_eq!(exact(UnaryFn::Tanh, 0.0), 0.0);
}

#[test]
fn gelu_forms_differ_by_under_5e_4() {
    let worst = (-1000..1000)
        .map(|i| f64::from(i) / 100.0)
        .map(|x| (exact(UnaryFn::Gelu, x) - gelu_tanh(x)).abs())
        .fold(0.0, f64::max);
    assert!(worst < 5e-4 && worst > 4e-4, "{worst}");
}

#[test]
fn softmax_normalizes_rows_and_masked_keys_get_exactly_zero() {
    let scores = arr(&[1, 2, 4], &[1.0, 2.0, 3.0, 4.0, 1000.0, 0.0, -1000.0, 5.0]);
    let p = run1(Op::Softmax, &[&scores]);
    for row in p.lanes(ndarray::Axis(2)) {
        assert!((row.sum() - 1.0).abs() < 1e-15);
    }
    let e: f64 = (1..=4).map(|k| f64::from(k).exp()).sum();
    assert!((p[[0, 0, 3]] - 4f64.exp() / e).abs() < 1e-15);
    assert_eq!(p[[0, 1, 0]], 1.0);
    // seq 2, past 2: query 0 sees keys 0..=2, query 1 sees 0..=3.
    let masked = run(
        Op::CausalMask,
        &[&ramp(&[1, 2, 4])],
        DimEnv { seq: 2, past: 2 },
    )
    .unwrap();
    let p = run1(Op::Softmax, &[&masked]);
    assert_eq!(p[[0, 0, 3]], 0.0);
    assert!(p[[0, 0, 2]] > 0.0 && p[[0, 1, 3]] > 0.0);
}

#[test]
fn causal_mask_without_cache_hides_the_future() {
    let masked = run1(Op::CausalMask, &[&ArrayD::zeros(IxDyn(&[3, 3]))]);
    for i in 0..3 {
        for j in 0..3 {
            let want = if j > i { MASK_OFFSET } else { 0.0 };
            assert_eq!(masked[[i, j]], want);
        }
    }
}

#[test]
fn norms_over_the_last_axis() {
    let x = arr(&[2, 2], &[3.0, 4.0, 1.0, -1.0]);
    let g = arr(&[2], &[1.0, 2.0]);
    let y = run1(Op::RmsNorm { eps: 0.0 }, &[&x, &g]);
    let r = (12.5f64).sqrt();
    close(&y, &arr(&[2, 2], &[3.0 / r, 8.0 / r, 1.0, -2.0]), 1e-15);
    let b = arr(&[2], &[0.5, -0.5]);
    let y = run1(Op::LayerNorm { eps: 0.0 }, &[&x, &g, &b]);
    close(&y, &arr(&[2, 2], &[-0.5, 1.5, 1.5, -2.5]), 1e-15);
    let err = run(
        Op::RmsNorm { eps: 0.0 },
        &[&x, &ramp(&[3])],
        DimEnv { seq: 1, past: 0 },
    );
    assert_eq!(
        err.unwrap_err(),
        "`rms_norm` of [2, 2] needs parameters of shape [2], got [3]"
    );
}

#[test]
fn rope_rotates_pairs_by_position() {
    let x = ramp(&[2, 3, 4]);
    let env = DimEnv { seq: 3, past: 0 };
    let adjacent = Op::Rope {
        base: 100.0,
        style: RopeStyle::Adjacent,
    };
    let y = run(adjacent.clone(), &[&x], env).unwrap();
    // position 0 is not rotated; position 2, pair 1 of 2 turns by 2·100^(-1/2).
    assert_eq!(
        y.index_axis(ndarray::Axis(1), 0),
        x.index_axis(ndarray::Axis(1), 0)
    );
    let (s, c) = (0.2f64).sin_cos();
    let (a, b) = (x[[1, 2, 2]], x[[1, 2, 3]]);
    assert!((y[[1, 2, 2]] - (a * c - b * s)).abs() < 1e-15);
    assert!((y[[1, 2, 3]] - (a * s + b * c)).abs() < 1e-15);
    // with past = 2, the first row is rotated like position 2 of a full prefill
    let late = x.slice_axis(ndarray::Axis(1), (2..3).into()).to_owned();
    let z = run(adjacent, &[&late], DimEnv { seq: 1, past: 2 }).unwrap();
    close(
        &z,
        &y.slice_axis(ndarray::Axis(1), (2..3).into()).to_owned(),
        1e-15,
    );
}

#[test]
fn rope_half_is_adjacent_on_interleaved_channels() {
    // channels (j, j + k/2) of `half` are channels (2j, 2j + 1) of `adjacent`.
    let k = 6;
    let x = ramp(&[1, 2, k]);
    let interleave: Vec<usize> = (0..k)
        .map(|c| if c % 2 == 0 { c / 2 } else { k / 2 + c / 2 })
        .collect();
    let xi = x.select(ndarray::Axis(2), &interleave);
    let env = DimEnv { seq: 2, past: 5 };
    let half = run(
        Op::Rope {
            base: 10.0,
            style: RopeStyle::Half,
        },
        &[&x],
        env,
    )
    .unwrap();
    let adj = run(
        Op::Rope {
            base: 10.0,
            style: RopeStyle::Adjacent,
        },
        &[&xi],
        env,
    )
    .unwrap();
    close(&half.select(ndarray::Axis(2), &interleave), &adj, 1e-14);
}

#[test]
fn positions_start_at_past_plus_offset() {
    let p = position::positions(2, DimEnv { seq: 3, past: 4 });
    assert_eq!(p, arr(&[3], &[6.0, 7.0, 8.0]));
}

#[test]
fn heads_split_merge_and_repeat() {
    let x = ramp(&[3, 8]);
    let h = run1(Op::SplitHeads { heads: 2 }, &[&x]);
    assert_eq!(h.shape(), &[2, 3, 4]);
    assert_eq!(h[[1, 2, 3]], x[[2, 7]]);
    assert_eq!(run1(Op::MergeHeads, &[&h]), x);
    let r = run1(Op::RepeatKv { groups: 3 }, &[&h]);
    assert_eq!(r.shape(), &[6, 3, 4]);
    for q in 0..6 {
        assert_eq!(
            r.index_axis(ndarray::Axis(0), q),
            h.index_axis(ndarray::Axis(0), q / 3)
        );
    }
}

#[test]
fn slices_rows_and_concatenation() {
    let x = ramp(&[2, 5]);
    let s = run1(Op::Slice { start: 1, end: 3 }, &[&x]);
    assert_eq!(
        s,
        arr(&[2, 2], &[x[[0, 1]], x[[0, 2]], x[[1, 1]], x[[1, 2]]])
    );
    assert_eq!(run1(Op::Row { index: 1 }, &[&x]).shape(), &[1, 5]);
    let env = DimEnv { seq: 1, past: 0 };
    assert_eq!(
        run(Op::Row { index: 2 }, &[&x], env).unwrap_err(),
        "`row` index 2 is outside 2 rows"
    );
    let c = run1(Op::Concat { axis: 1 }, &[&x, &ramp(&[2, 1])]);
    assert_eq!(c.shape(), &[2, 6]);
    let err = run(Op::Concat { axis: 0 }, &[&x, &ramp(&[2, 1])], env).unwrap_err();
    assert_eq!(
        err,
        "`concat` on axis 0: shapes [[2, 5], [2, 1]] differ elsewhere"
    );
}

#[test]
fn embed_and_one_hot_check_ids() {
    let table = ramp(&[4, 3]);
    let ids = arr(&[2], &[3.0, 0.0]);
    let e = run1(Op::Embed, &[&ids, &table]);
    assert_eq!(
        e.index_axis(ndarray::Axis(0), 0),
        table.index_axis(ndarray::Axis(0), 3)
    );
    let env = DimEnv { seq: 1, past: 0 };
    let err = run(Op::Embed, &[&arr(&[1], &[4.0]), &table], env).unwrap_err();
    assert_eq!(
        err,
        "`embed`: id 4 is outside the table of 4 rows (ids 0..4)"
    );
    let err = run(Op::Embed, &[&arr(&[1], &[1.5]), &table], env).unwrap_err();
    assert_eq!(err, "`embed`: id 1.5 is not a non-negative integer");
    let oh = run1(Op::OneHot { depth: 4 }, &[&ids]);
    assert_eq!(oh, arr(&[2, 4], &[0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]));
}

// ---- whole programs ----

fn fx(shape: Vec<Dim>) -> ValueType {
    ValueType::new(Elem::Fixed { scale: 16 }, shape, Domain::Arith)
}

fn c(n: i64) -> Dim {
    Dim::constant(n)
}

/// `y = x · w` and a cache slot holding `[1, past + seq, 2]` copies of `x`.
fn tiny_program() -> Program {
    let mut g = comet_ir::Graph::new();
    let s = Scope::default();
    let x_ty = fx(vec![Dim::SEQ, c(2)]);
    let x = g.add(
        Op::Input {
            name: "x".into(),
            party: Party::Client,
        },
        &[],
        x_ty.clone(),
        s.clone(),
    );
    let w = g.add(
        Op::Weight { name: "w".into() },
        &[],
        fx(vec![c(2), c(3)]),
        s.clone(),
    );
    let y = g.add(Op::MatMul, &[x, w], fx(vec![Dim::SEQ, c(3)]), s.clone());
    g.add(
        Op::Output {
            name: "y".into(),
            party: Party::Client,
        },
        &[y],
        fx(vec![Dim::SEQ, c(3)]),
        s.clone(),
    );
    let heads = g.add(
        Op::SplitHeads { heads: 1 },
        &[x],
        fx(vec![c(1), Dim::SEQ, c(2)]),
        s.clone(),
    );
    let old = g.add(
        Op::CacheRead { slot: 7 },
        &[],
        fx(vec![c(1), Dim::PAST, c(2)]),
        s.clone(),
    );
    let all_ty = fx(vec![c(1), Dim::PAST + Dim::SEQ, c(2)]);
    let all = g.add(
        Op::Concat { axis: 1 },
        &[old, heads],
        all_ty.clone(),
        s.clone(),
    );
    g.add(Op::CacheWrite { slot: 7 }, &[all], all_ty, s);
    let info = ModelInfo {
        name: "tiny".into(),
        inputs: vec![InputInfo {
            name: "x".into(),
            elem: x_ty.elem,
            shape: x_ty.shape,
            party: Party::Client,
        }],
        weights: vec![WeightInfo {
            name: "w".into(),
            tensor: "layer.w".into(),
            shape: vec![2, 3],
            transposed: false,
            party: Party::Server,
        }],
        ..ModelInfo::default()
    };
    Program {
        info,
        graph: g,
        ..Program::default()
    }
}

fn named(name: &str, x: ArrayD<f64>) -> HashMap<String, ArrayD<f64>> {
    HashMap::from([(name.to_string(), x)])
}

#[test]
fn evaluates_a_program_and_fills_the_cache() {
    let p = tiny_program();
    let w = named("w", ramp(&[2, 3]));
    let mut cache = Cache::new();
    let x0 = ramp(&[2, 2]);
    let out = eval(
        &p,
        &named("x", x0.clone()),
        &w,
        DimEnv { seq: 2, past: 0 },
        &mut cache,
    )
    .unwrap();
    close(&out["y"], &naive_matmul(&x0, &w["w"]), 1e-12);
    assert_eq!(cache.get(7).unwrap().shape(), &[1, 2, 2]);
    let x1 = arr(&[1, 2], &[9.0, 8.0]);
    let env = DimEnv { seq: 1, past: 2 };
    let trace = eval_with_trace(&p, &named("x", x1), &w, env, &mut cache).unwrap();
    assert_eq!(trace.values.len(), p.graph.len());
    let slot = cache.get(7).unwrap();
    assert_eq!(slot.shape(), &[1, 3, 2]);
    assert_eq!(slot[[0, 2, 0]], 9.0);
    assert_eq!(slot[[0, 1, 1]], x0[[1, 1]]);
    assert_eq!(cache.slots().collect::<Vec<_>>(), [7]);
}

fn error(
    p: &Program,
    inputs: &HashMap<String, ArrayD<f64>>,
    weights: &HashMap<String, ArrayD<f64>>,
    env: DimEnv,
    cache: &mut Cache,
) -> String {
    eval(p, inputs, weights, env, cache)
        .unwrap_err()
        .to_string()
}

#[test]
fn reports_bad_inputs_and_weights() {
    let p = tiny_program();
    let w = named("w", ramp(&[2, 3]));
    let x = named("x", ramp(&[2, 2]));
    let env = DimEnv { seq: 2, past: 0 };
    let mut cache = Cache::new();
    let none = HashMap::new();
    assert_eq!(
        error(&p, &none, &w, env, &mut cache),
        "input `x` is missing: the program needs it with shape [2, 2]"
    );
    assert_eq!(
        error(&p, &named("x", ramp(&[3, 2])), &w, env, &mut cache),
        "input `x` has shape [3, 2], expected [2, 2] (seq = 2, past = 0)"
    );
    assert_eq!(
        error(&p, &named("tokens", ramp(&[2])), &w, env, &mut cache),
        "unknown input `tokens`: the program's inputs are `x`"
    );
    assert_eq!(
        error(&p, &x, &none, env, &mut cache),
        "weight `w` (checkpoint tensor `layer.w`) is missing from the weights"
    );
    assert_eq!(
        error(&p, &x, &named("w", ramp(&[3, 2])), env, &mut cache),
        "weight `w` has shape [3, 2], expected [2, 3]"
    );
    assert!(cache.get(7).is_none(), "failed calls leave the cache alone");
}

#[test]
fn reports_cache_misuse() {
    let p = tiny_program();
    let w = named("w", ramp(&[2, 3]));
    let x = named("x", ramp(&[1, 2]));
    let mut cache = Cache::new();
    let env = DimEnv { seq: 1, past: 3 };
    assert_eq!(
        error(&p, &x, &w, env, &mut cache),
        "%5 (cache_read): cache slot 7: empty, but past = 3: run the earlier calls (prefill) \
         with this cache first"
    );
    cache.set(7, ramp(&[1, 2, 2]));
    assert_eq!(
        error(&p, &x, &w, env, &mut cache),
        "%5 (cache_read): cache slot 7: holds [1, 2, 2], but past = 3 needs [1, 3, 2]"
    );
    // past = 0 starts a new sequence whatever the cache holds
    let out = eval(&p, &x, &w, DimEnv { seq: 1, past: 0 }, &mut cache);
    assert!(out.is_ok());
    assert_eq!(cache.get(7).unwrap().shape(), &[1, 1, 2]);
}

#[test]
fn a_hole_in_the_cache_is_reported() {
    let p = tiny_program();
    let w = named("w", ramp(&[2, 3]));
    let mut cache = Cache::new();
    let prefill = DimEnv { seq: 2, past: 0 };
    eval(&p, &named("x", ramp(&[2, 2])), &w, prefill, &mut cache).unwrap();
    assert!(cache.invalidate(7, 0, 1));
    let x = named("x", ramp(&[1, 2]));
    assert_eq!(
        error(&p, &x, &w, DimEnv { seq: 1, past: 2 }, &mut cache),
        "%5 (cache_read): cache slot 7: head 0, position 1 is not valid (a hole that was \
         not refilled)"
    );
}

#[test]
fn a_value_that_contradicts_its_type_is_reported() {
    let mut p = tiny_program();
    let y = p
        .graph
        .ids()
        .find(|id| p.graph.node(*id).op == Op::MatMul)
        .unwrap();
    p.graph.node_mut(y).ty = fx(vec![Dim::SEQ, c(4)]);
    let w = named("w", ramp(&[2, 3]));
    let x = named("x", ramp(&[2, 2]));
    let msg = error(&p, &x, &w, DimEnv { seq: 2, past: 0 }, &mut Cache::new());
    assert_eq!(
        msg,
        "%2 (matmul): computed shape [2, 3], but its type says [2, 4]"
    );
}

#[test]
fn conversions_are_identities_on_real_numbers() {
    let mut g = comet_ir::Graph::new();
    let s = Scope::default();
    let ty = fx(vec![c(3)]);
    let x = g.add(
        Op::Input {
            name: "x".into(),
            party: Party::Client,
        },
        &[],
        ty.clone(),
        s.clone(),
    );
    let shared = g.add(
        Op::Share {
            from: Party::Client,
        },
        &[x],
        ty.clone(),
        s.clone(),
    );
    let sq = g.add(Op::Mul, &[shared, shared], ty.clone(), s.clone());
    let t = g.add(Op::Trunc { bits: 16 }, &[sq], ty.clone(), s.clone());
    let bit = g.add(Op::Drelu, &[shared], ty.with_elem(Elem::Bit), s.clone());
    let sel = g.add(Op::Select, &[bit, t], ty.clone(), s.clone());
    let open = g.add(
        Op::Reveal { to: Party::Client },
        &[sel],
        ty.clone(),
        s.clone(),
    );
    g.add(
        Op::Output {
            name: "y".into(),
            party: Party::Client,
        },
        &[open],
        ty.clone(),
        s,
    );
    let info = ModelInfo {
        inputs: vec![InputInfo {
            name: "x".into(),
            elem: ty.elem,
            shape: ty.shape,
            party: Party::Client,
        }],
        ..ModelInfo::default()
    };
    let p = Program {
        info,
        stage: comet_ir::Stage::Protocol,
        graph: g,
        ..Program::default()
    };
    let x = named("x", arr(&[3], &[-2.0, 0.5, 3.0]));
    let out = eval(
        &p,
        &x,
        &HashMap::new(),
        DimEnv { seq: 1, past: 0 },
        &mut Cache::new(),
    )
    .unwrap();
    assert_eq!(out["y"], arr(&[3], &[0.0, 0.25, 9.0]));
}
