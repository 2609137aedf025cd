//! Each op family on ring values worked out by hand, against the f64 interpreter where the
//! two must agree up to rounding, and the program-level checks (stage, composites, inputs).

use super::*;
use crate::ring::decode_tensor;
use comet_ir::{Dim, Domain, InputInfo, ModelInfo, Party, RopeStyle, Scope, UnaryFn, ValueType};
use ndarray::IxDyn;

const FRAC: u32 = 16;

fn ctx(scale: u32) -> OpCtx {
    OpCtx {
        env: DimEnv { seq: 1, past: 0 },
        frac: FRAC,
        scale: Some(scale),
    }
}

fn ring(shape: &[usize], values: &[f64], scale: u32) -> ArrayD<Ring> {
    let x = ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).unwrap();
    crate::ring::encode_tensor(&x, scale)
}

fn run(op: Op, xs: &[&ArrayD<Ring>], c: OpCtx) -> ArrayD<Ring> {
    let views: Vec<ArrayViewD<Ring>> = xs.iter().map(|x| x.view()).collect();
    apply(&op, &views, c).unwrap()
}

#[test]
fn trunc_is_the_signed_floor() {
    let x = ring(&[3], &[-1.5, 1.5, -0.25], 2 * FRAC);
    let t = run(Op::Trunc { bits: FRAC }, &[&x], ctx(2 * FRAC));
    assert_eq!(
        decode_tensor(&t, FRAC).as_slice().unwrap(),
        &[-1.5, 1.5, -0.25]
    );
    let odd = ArrayD::from_elem(IxDyn(&[1]), (-3i64) as Ring);
    assert_eq!(
        run(Op::Trunc { bits: 1 }, &[&odd], ctx(1))[[0]],
        (-2i64) as Ring
    );
    let err = apply(&Op::Trunc { bits: 64 }, &[odd.view()], ctx(1)).unwrap_err();
    assert!(err.contains("bits < 64"), "{err}");
}

#[test]
fn products_add_scales_and_wrap() {
    let (a, b) = (
        ring(&[2], &[1.5, -2.0], FRAC),
        ring(&[2], &[-0.5, -3.0], FRAC),
    );
    let p = run(Op::Mul, &[&a, &b], ctx(FRAC));
    assert_eq!(
        decode_tensor(&p, 2 * FRAC).as_slice().unwrap(),
        &[-0.75, 6.0]
    );
    let s = run(Op::Square, &[&b], ctx(FRAC));
    assert_eq!(
        decode_tensor(&s, 2 * FRAC).as_slice().unwrap(),
        &[0.25, 9.0]
    );
    let big = ArrayD::from_elem(IxDyn(&[1]), u64::MAX);
    let one = ArrayD::from_elem(IxDyn(&[1]), 2u64);
    assert_eq!(run(Op::Add, &[&big, &one], ctx(0))[[0]], 1);
}

#[test]
fn constants_follow_the_type_rules() {
    let x = ring(&[2], &[1.5, -2.0], FRAC);
    let int = run(Op::MulConst { value: 3.0 }, &[&x], ctx(FRAC));
    assert_eq!(decode_tensor(&int, FRAC).as_slice().unwrap(), &[4.5, -6.0]);
    let half = run(Op::MulConst { value: 0.5 }, &[&x], ctx(FRAC));
    assert_eq!(
        decode_tensor(&half, 2 * FRAC).as_slice().unwrap(),
        &[0.75, -1.0]
    );
    let wide = ring(&[1], &[1.0], 2 * FRAC);
    let added = run(Op::AddConst { value: 0.25 }, &[&wide], ctx(2 * FRAC));
    assert_eq!(decode_tensor(&added, 2 * FRAC)[[0]], 1.25);
}

#[test]
fn comparisons_bits_and_muxes() {
    let x = ring(&[4], &[-1.0, 0.0, 2.0, -0.0001], FRAC);
    let b = run(Op::Drelu, &[&x], ctx(FRAC));
    assert_eq!(b.as_slice().unwrap(), &[0, 1, 1, 0]);
    let a = run(Op::B2A, &[&b], ctx(0));
    assert_eq!(
        decode_tensor(&a, FRAC).as_slice().unwrap(),
        &[0.0, 1.0, 1.0, 0.0]
    );
    let sel = run(Op::Select, &[&b, &x], ctx(0));
    let want = ring(&[4], &[0.0, 0.0, 2.0, 0.0], FRAC);
    assert_eq!(sel, want);
}

#[test]
fn row_reductions_are_signed_and_wrapping() {
    let x = ring(&[2, 3], &[-3.0, -1.0, -2.0, 0.5, 4.0, -7.0], FRAC);
    let m = run(Op::RowMax, &[&x], ctx(FRAC));
    assert_eq!(decode_tensor(&m, FRAC).as_slice().unwrap(), &[-1.0, 4.0]);
    let s = run(Op::RowSum, &[&x], ctx(FRAC));
    assert_eq!(decode_tensor(&s, FRAC).as_slice().unwrap(), &[-6.0, -2.5]);
    assert_eq!(s.shape(), &[2, 1]);
}

#[test]
fn causal_mask_hides_later_keys_by_two_to_the_twenty() {
    let x = ring(&[1, 2, 3], &[0.0; 6], FRAC);
    let m = decode_tensor(&run(Op::CausalMask, &[&x], ctx(FRAC)), FRAC);
    assert_eq!(
        m.as_slice().unwrap(),
        &[0.0, 0.0, MASK_OFFSET, 0.0, 0.0, 0.0]
    );
}

/// RoPE in the ring equals the f64 interpreter's up to cos/sin rounding (half an ulp of
/// each, times |x| ≤ 2).
#[test]
fn rope_agrees_with_f64() {
    let values: Vec<f64> = (0..2 * 3 * 4).map(|i| 0.17 * i as f64 - 2.0).collect();
    let x = ring(&[2, 3, 4], &values, FRAC);
    for style in [RopeStyle::Adjacent, RopeStyle::Half] {
        let op = Op::Rope {
            base: 10000.0,
            style,
        };
        let mut c = ctx(FRAC);
        c.env = DimEnv { seq: 3, past: 5 };
        let got = decode_tensor(&run(op.clone(), &[&x], c), 2 * FRAC);
        let real = decode_tensor(&x, FRAC);
        let want = naive_rope(&real, 10000.0, style, 5);
        let err = (&got - &want).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(err < 4.0 / 65536.0, "{style:?}: {err}");
    }
}

/// RoFormer's rotation written out per element.
fn naive_rope(x: &ArrayD<f64>, base: f64, style: RopeStyle, past: u64) -> ArrayD<f64> {
    let k = x.shape()[2];
    let mut out = x.clone();
    for h in 0..x.shape()[0] {
        for t in 0..x.shape()[1] {
            for j in 0..k / 2 {
                let angle = (past + t as u64) as f64 * base.powf(-((2 * j) as f64) / k as f64);
                let (p, q) = match style {
                    RopeStyle::Adjacent => (2 * j, 2 * j + 1),
                    RopeStyle::Half => (j, j + k / 2),
                };
                let (a, b) = (x[[h, t, p]], x[[h, t, q]]);
                out[[h, t, p]] = a * angle.cos() - b * angle.sin();
                out[[h, t, q]] = a * angle.sin() + b * angle.cos();
            }
        }
    }
    out
}

#[test]
fn data_movement_and_gathers() {
    let t = ring(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], FRAC);
    let ids = ArrayD::from_shape_vec(IxDyn(&[2]), vec![2u64, 0]).unwrap();
    let e = run(Op::Embed, &[&ids, &t], ctx(0));
    assert_eq!(
        decode_tensor(&e, FRAC).as_slice().unwrap(),
        &[5.0, 6.0, 1.0, 2.0]
    );
    let h = run(Op::OneHot { depth: 3 }, &[&ids], ctx(0));
    assert_eq!(h.as_slice().unwrap(), &[0, 0, 1, 1, 0, 0]);
    let bad = ArrayD::from_elem(IxDyn(&[1]), 3u64);
    let err = apply(&Op::Embed, &[bad.view(), t.view()], ctx(0)).unwrap_err();
    assert!(err.contains("outside the table of 3 rows"), "{err}");
}

fn fx(shape: Vec<Dim>, domain: Domain) -> ValueType {
    ValueType::new(Elem::Fixed { scale: FRAC }, shape, domain)
}

/// `y = op(x)` on a client input `x: [seq, 2]`, in the protocol stage.
fn one_op_program(op: Op, stage: Stage) -> Program {
    let mut g = comet_ir::Graph::new();
    let s = Scope::default();
    let shape = vec![Dim::SEQ, Dim::constant(2)];
    let private = Domain::Private(Party::Client);
    let input = Op::Input {
        name: "x".into(),
        party: Party::Client,
    };
    let x = g.add(input, &[], fx(shape.clone(), private), s.clone());
    let y = g.add(op, &[x], fx(shape.clone(), private), s.clone());
    let output = Op::Output {
        name: "y".into(),
        party: Party::Client,
    };
    g.add(output, &[y], fx(shape.clone(), private), s);
    let mut info = ModelInfo::default();
    info.format.frac = FRAC;
    info.inputs.push(InputInfo {
        name: "x".into(),
        elem: Elem::Fixed { scale: FRAC },
        shape,
        party: Party::Client,
    });
    Program {
        info,
        stage,
        graph: g,
        ..Program::default()
    }
}

fn input(values: &[f64]) -> HashMap<String, ArrayD<f64>> {
    let x = ArrayD::from_shape_vec(IxDyn(&[values.len() / 2, 2]), values.to_vec()).unwrap();
    HashMap::from([("x".to_string(), x)])
}

fn eval1(p: &Program, x: &HashMap<String, ArrayD<f64>>) -> Result<ArrayD<f64>, FixedError> {
    let env = DimEnv { seq: 1, past: 0 };
    eval(p, x, &HashMap::new(), env, &mut Cache::new()).map(|mut o| o.remove("y").unwrap())
}

#[test]
fn evaluates_a_protocol_program_and_decodes_outputs() {
    let p = one_op_program(Op::Neg, Stage::Protocol);
    let y = eval1(&p, &input(&[1.25, -3.5])).unwrap();
    assert_eq!(y.as_slice().unwrap(), &[-1.25, 3.5]);
}

#[test]
fn refuses_semantic_programs_composites_and_bad_inputs() {
    let semantic = one_op_program(Op::Neg, Stage::Semantic);
    let err = eval1(&semantic, &input(&[1.0, 2.0])).unwrap_err();
    assert!(matches!(err, FixedError::NotProtocol { .. }), "{err}");
    let composite = one_op_program(Op::Unary { func: UnaryFn::Exp }, Stage::Protocol);
    let err = eval1(&composite, &input(&[1.0, 2.0]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("%1 (exp): composite `exp`") && err.contains("expand first"),
        "{err}"
    );
    let p = one_op_program(Op::Neg, Stage::Protocol);
    let err = eval1(&p, &input(&[f64::NAN, 2.0])).unwrap_err().to_string();
    assert!(err.contains("input `x`: holds NaN"), "{err}");
    let err = eval1(&p, &input(&[1.0, 2.0, 3.0, 4.0]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input `x` has shape [2, 2], expected [1, 2]"),
        "{err}"
    );
}
