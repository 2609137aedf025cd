//! Comparisons on a reduced bit width, end to end: a small model is compiled, every DReLU
//! and row maximum is given a comparison width of 40 bits (what a range analysis would
//! set), the plan is costed again and run by two parties in process. Per call, the
//! measured online bits, rounds and dealer bits equal the plan's estimate, and the outputs
//! equal those of the same plan at the full 64-bit width within fixed-point tolerance.
//!
//! Why 40 bits is safe here: inputs lie in [−0.5, 0.5), weights in [−0.1, 0.1) and the
//! model's widest sum is over 16 terms, so every compared value (the ReLU's input, the
//! softmax's scores, their pairwise differences, the exponential's range checks) is below
//! 2^4 in magnitude as a real; at 16 fractional bits, even before a product's truncation
//! (32 fractional bits), that is under 2^36 < 2^39 as a ring value. The exponential's
//! clipping threshold is a constant of a few tens, also well inside.

mod common;

use comet_ir::{Comparison, DimEnv, Op, Program};
use comet_runtime::interp;
use common::estimate;
use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use std::collections::HashMap;

const SOURCE: &str = "
model tiny {
  format ring = 64, frac = 16;
  dim d = 8, ff = 16;
  dim seq;
  input x: fixed[seq, d] from client;
  weight w1: [d, ff] = \"w1\";
  weight w2: [ff, d] = \"w2\";
  let h = relu(matmul(x, w1));
  let p = softmax(matmul(h, w2));
  output p to client;
}
";

const WIDTH: u8 = 40;

fn compile() -> Program {
    let opts = comet_compiler::Options {
        comparison: Comparison::Fss,
        ..Default::default()
    };
    comet_compiler::compile(SOURCE, "tiny.model", &opts)
        .unwrap_or_else(|e| panic!("{e}"))
        .program
}

/// The plan with every comparison at `width` bits, costed again.
fn at_width(mut p: Program, width: u8) -> Program {
    let ids: Vec<_> = p.graph.ids().collect();
    let mut set = 0;
    for id in ids {
        let n = p.graph.node_mut(id);
        if matches!(n.op, Op::Drelu | Op::RowMax) {
            n.cmp_width = Some(width);
            set += 1;
        }
    }
    assert!(set >= 2, "the model has comparisons ({set})");
    comet_compiler::passes::cost::run(&mut p);
    comet_ir::verify::verify(&p).expect("valid");
    p
}

fn weights(seed: u64) -> HashMap<String, ArrayD<f64>> {
    common::uniform_weights(seed, &[("w1", &[8, 16]), ("w2", &[16, 8])], 0.1)
}

fn inputs(env: DimEnv, seed: u64) -> HashMap<String, ArrayD<f64>> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let v = ArrayD::from_shape_simple_fn(IxDyn(&[env.seq as usize, 8]), || {
        common::uniform(&mut rng, 0.5)
    });
    HashMap::from([("x".to_string(), v)])
}

#[test]
fn a_plan_at_40_bits_costs_what_it_measures_and_agrees_with_64_bits() {
    let full = compile();
    let reduced = at_width(full.clone(), WIDTH);
    let w = weights(1);
    let mut s64 = interp::InProcess::new(&full, &w, 5);
    let mut s40 = interp::InProcess::new(&reduced, &w, 5);
    for (k, seq) in [3u64, 4, 1].into_iter().enumerate() {
        let env = DimEnv { seq, past: 0 };
        let x = inputs(env, 10 + k as u64);
        let (want, m64) = s64.call(&x, env).unwrap();
        let (got, m40) = s40.call(&x, env).unwrap();
        let measured = |m: &interp::Measured| (m.online_bits, m.rounds, m.offline_bits);
        assert_eq!(
            measured(&m40),
            estimate(&reduced, env),
            "call {k} at 40 bits"
        );
        assert_eq!(measured(&m64), estimate(&full, env), "call {k} at 64 bits");
        assert!(m40.online_bits < m64.online_bits && m40.offline_bits < m64.offline_bits);
        assert_eq!(
            m40.rounds, m64.rounds,
            "the width does not change the rounds"
        );
        eprintln!(
            "call {k} (seq {seq}): online {} / {} bits, dealer {} / {} bits at 40 / 64 bits",
            m40.online_bits, m64.online_bits, m40.offline_bits, m64.offline_bits
        );
        assert_eq!(want.len(), 1, "one output");
        for (name, e) in &want {
            let worst = got[name]
                .iter()
                .zip(e)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f64, f64::max);
            assert!(worst < 1e-3, "call {k} `{name}`: |40 − 64 bits| = {worst}");
        }
    }
}
