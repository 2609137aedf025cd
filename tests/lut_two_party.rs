//! Table lookups (`lut`) end to end: a small model is compiled, `lut` nodes are spliced into
//! its protocol-stage plan (`y = relu(h) − gelu_gap(h) + exp_neg(x·w)` with `h` the
//! truncated product: one table reads an input at scale 16, the other the product at
//! scale 32), the plan is scheduled and costed again, and two parties run it in process
//! and over loopback TCP with material files and with the dealer service. Per call, the
//! measured online bits and rounds equal the plan's estimate, so do the dealer bits (both
//! parties' material together over TCP), and the outputs are within the tables' index
//! uncertainty of the fixed-point backend on the same plan.

mod common;

use comet_ir::{Comparison, DimEnv, Domain, Elem, Op, Program, TableFn};
use comet_runtime::{fixed, interp};
use common::estimate;
use common::tcp::{Source, tcp_session};
use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use std::collections::HashMap;

const SOURCE: &str = "
model t {
  format ring = 64, frac = 16;
  dim seq; dim n = 16, m = 8;
  input x: fixed[seq, n] from client;
  weight w: [n, m];
  output y = relu(matmul(x, w)) to client;
}
";

/// GeLU's gap at 8 index bits of 5 fractional bits (T = 4: larger |h| wrap, where the gap
/// is below 1.3·10⁻⁴); the exponential at 13 bits of 8 (T = 16).
const GELU: (TableFn, u32, u32) = (TableFn::GeluGap, 8, 5);
const EXP: (TableFn, u32, u32) = (TableFn::ExpNeg, 13, 8);

/// One table step at most, plus a ±1-ulp truncation difference in `h`: 2·2^−5·max|f′|
/// (max|f′| ≤ 0.5 for the gap) and 2^−8 for the exponential, with margin.
const TOLERANCE: f64 = 0.05;

fn compile() -> Program {
    let opts = comet_compiler::Options {
        comparison: Comparison::Fss,
        ..Default::default()
    };
    comet_compiler::compile(SOURCE, "t.model", &opts)
        .unwrap_or_else(|e| panic!("{e}"))
        .program
}

/// The only node whose op matches `f`.
fn only(p: &Program, f: impl Fn(&Op) -> bool) -> comet_ir::NodeId {
    let found: Vec<_> = (p.graph.ids())
        .filter(|&id| f(&p.graph.node(id).op))
        .collect();
    assert_eq!(found.len(), 1, "one such node");
    found[0]
}

/// A `lut` node reading `x` (shared), at the plan's scale.
fn lut(
    p: &mut Program,
    x: comet_ir::NodeId,
    (func, bits, frac): (TableFn, u32, u32),
) -> comet_ir::NodeId {
    let n = p.graph.node(x).clone();
    let ty = n.ty.with_elem(Elem::Fixed { scale: 16 });
    p.graph.add(Op::Lut { func, bits, frac }, &[x], ty, n.scope)
}

/// The plan with `relu(h) − gelu_gap(h) + exp_neg(x·w)` revealed instead of `relu(h)`,
/// scheduled and costed again.
fn spliced() -> Program {
    let mut p = compile();
    // relu(h) is one fused sign select (pass fuse-selects) reading h alone
    let h = p
        .graph
        .operands(only(&p, |op| matches!(op, Op::SignSelect)))[0];
    let mm = only(&p, |op| matches!(op, Op::MatMul));
    let reveal = only(&p, |op| matches!(op, Op::Reveal { .. }));
    let relu = p.graph.operands(reveal)[0];
    for (id, scale) in [(h, 16), (mm, 32)] {
        let ty = &p.graph.node(id).ty;
        assert_eq!((ty.elem, ty.domain), (Elem::Fixed { scale }, Domain::Arith));
    }
    let (g, e) = (lut(&mut p, h, GELU), lut(&mut p, mm, EXP));
    let n = p.graph.node(relu).clone();
    let sum = p.graph.add(Op::Add, &[], n.ty.clone(), n.scope.clone());
    p.graph.replace_uses(relu, sum);
    let diff = p.graph.add(Op::Sub, &[relu, g], n.ty, n.scope);
    p.graph.connect(diff, sum, 0);
    p.graph.connect(e, sum, 1);
    comet_compiler::passes::schedule::run(&mut p);
    comet_compiler::passes::cost::run(&mut p);
    comet_ir::verify::verify(&p).unwrap_or_else(|e| panic!("{e}"));
    p
}

fn uniform(rng: &mut ChaCha12Rng, scale: f64) -> f64 {
    ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2.0 * scale
}

/// `w` uniform in [−4, 4): `h` reaches beyond the gap table's ±4, so some lookups wrap.
fn weights() -> HashMap<String, ArrayD<f64>> {
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    let w = ArrayD::from_shape_simple_fn(IxDyn(&[16, 8]), || uniform(&mut rng, 4.0));
    HashMap::from([("w".to_string(), w)])
}

/// `x` uniform in [−0.5, 0.5).
fn inputs(_: &Program, env: DimEnv, seed: u64) -> HashMap<String, ArrayD<f64>> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let shape = [env.seq as usize, 16];
    let x = ArrayD::from_shape_simple_fn(IxDyn(&shape), || uniform(&mut rng, 0.5));
    HashMap::from([("x".to_string(), x)])
}

/// max |got − fixed| over the output `y`.
fn drift(got: &HashMap<String, ArrayD<f64>>, want: &HashMap<String, ArrayD<f64>>) -> f64 {
    let (g, e) = (&got["y"], &want["y"]);
    assert_eq!(g.shape(), e.shape());
    (g.iter().zip(e))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn the_spliced_plan_has_two_lookups_costed_by_the_model() {
    let p = spliced();
    let costs = p.analyses.costs.as_ref().unwrap();
    let env = DimEnv { seq: 3, past: 0 };
    let luts: Vec<_> = (p.graph.ids())
        .filter(|&id| matches!(p.graph.node(id).op, Op::Lut { .. }))
        .collect();
    assert_eq!(luts.len(), 2);
    for id in luts {
        let c = costs.get(id).unwrap();
        let Op::Lut { bits, .. } = p.graph.node(id).op else {
            unreachable!()
        };
        let (n, count) = (i128::from(bits), 3 * 8);
        assert_eq!(c.protocol, comet_ir::protocol::Protocol::Lut);
        assert_eq!(c.rounds.eval(env), 2);
        // the masked indices travel packed at n bits, ⌈count·n/8⌉ bytes per party
        assert_eq!(
            c.online_bits.eval(env),
            16 * ((count * n + 7) / 8) + 2 * count * 64
        );
        let key = comet_runtime::fss::LutKey::element_bytes(bits) as i128;
        assert_eq!(c.offline_bits.eval(env), 2 * count * 8 * key);
    }
}

#[test]
fn lookups_in_process_cost_what_they_measure_and_agree_with_fixed_point() {
    let p = spliced();
    let w = weights();
    let mut session = interp::InProcess::new(&p, &w, 5);
    let mut cache = fixed::Cache::new();
    let mut wrapped = 0;
    for (k, seq) in [3u64, 4, 1].into_iter().enumerate() {
        let env = DimEnv { seq, past: 0 };
        let x = inputs(&p, env, 10 + k as u64);
        let want = fixed::eval(&p, &x, &w, env, &mut cache).unwrap_or_else(|e| panic!("{e}"));
        let (got, m) = session.call(&x, env).unwrap_or_else(|e| panic!("{e}"));
        let measured = (m.online_bits, m.rounds, m.offline_bits);
        assert_eq!(measured, estimate(&p, env), "call {k}");
        let worst = drift(&got, &want);
        eprintln!("call {k} (seq {seq}): {measured:?}, max |2pc − fixed| = {worst:.2e}");
        assert!(worst < TOLERANCE, "call {k}: {worst}");
        wrapped += wraps(&x, &w);
    }
    assert!(wrapped > 0, "some inputs of the gap's table wrap");
}

/// How many elements of `h = x·w` lie outside the gap table's [−4, 4).
fn wraps(x: &HashMap<String, ArrayD<f64>>, w: &HashMap<String, ArrayD<f64>>) -> usize {
    let (x, w) = (&x["x"], &w["w"]);
    let (rows, t) = (x.shape()[0], comet_ir::table::half_range(GELU.1, GELU.2));
    let mut n = 0;
    for i in 0..rows {
        for j in 0..8 {
            let h: f64 = (0..16).map(|k| x[[i, k]] * w[[k, j]]).sum();
            n += usize::from(!(-t..t).contains(&h));
        }
    }
    n
}

fn check_tcp(source: Source) {
    let p = spliced();
    let w = weights();
    let calls = [DimEnv { seq: 3, past: 0 }, DimEnv { seq: 2, past: 0 }];
    let [server, client] = tcp_session(&p, &w, &calls, source, inputs);
    let mut cache = fixed::Cache::new();
    for (k, &env) in calls.iter().enumerate() {
        let x = inputs(&p, env, 10 + k as u64);
        let want = fixed::eval(&p, &x, &w, env, &mut cache).unwrap();
        let ((_, m0), (got, m1)) = (&server[k], &client[k]);
        let worst = drift(got, &want);
        assert!(worst < TOLERANCE, "{source:?} call {k}: {worst}");
        let what = format!("{source:?} call {k}");
        common::assert_tcp_call_measures_estimate(&p, env, [m0, m1], &what);
    }
}

#[test]
fn lookups_over_tcp_with_material_files() {
    check_tcp(Source::Files);
}

#[test]
fn lookups_over_tcp_with_the_dealer_service() {
    check_tcp(Source::Dealer);
}
