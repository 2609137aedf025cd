//! The stochastic truncation's cost at a width, by hand.

use super::*;
use comet_ir::{Dim, DimEnv, Domain, Elem};

fn shape(dims: Vec<Dim>) -> ValueType {
    ValueType::new(Elem::Fixed { scale: 32 }, dims, Domain::Arith)
}

fn eval(p: &Poly, seq: u64) -> i128 {
    p.eval(DimEnv { seq, past: 0 })
}

#[test]
fn a_stochastic_truncation_costs_m_bits_per_element_and_party_online() {
    let x = shape(vec![Dim::SEQ, Dim::constant(3)]);
    // 64 bits: the whole ring's figures, 128 bits online and 128 dealer bits per element
    let c = stochastic_trunc_cost(&x, 64);
    for seq in [1, 5, 128] {
        let n = 3 * seq as i128;
        assert_eq!(eval(&c.online_bits, seq), 128 * n);
        assert_eq!(eval(&c.offline_bits, seq), 128 * n);
        assert_eq!(eval(&c.rounds, seq), 1);
    }
    // 21 bits: ⌈3·seq·21/8⌉ bytes per party (seq 1: 63 bits, 8 bytes; seq 5: 315 bits,
    // 40 bytes; seq 128: 8,064 bits, 1,008 bytes), both parties 16 bits per byte; the
    // dealer's 64-bit shares unchanged
    let c = stochastic_trunc_cost(&x, 21);
    for (seq, bytes) in [(1, 8), (5, 40), (128, 1008)] {
        assert_eq!(eval(&c.online_bits, seq), 16 * bytes, "seq {seq}");
        assert_eq!(eval(&c.offline_bits, seq), 128 * 3 * seq as i128);
    }
    // a constant shape folds to a constant: 7 elements at 20 bits, 140 bits = 18 bytes
    let c = stochastic_trunc_cost(&shape(vec![Dim::constant(7)]), 20);
    assert_eq!(c.online_bits.as_constant(), Some(16 * 18));
}

#[test]
fn the_cost_model_reads_a_stochastic_truncations_width_not_its_shift() {
    let src = "model m { dim seq, past; input x: fixed[seq, 4] from client; weight w: [4, 3];
        output y = matmul(x, w) to client; }";
    let mut p = crate::compile(src, "t.model", &crate::Options::default())
        .unwrap()
        .program;
    let t = (p.graph.ids())
        .find(|&id| matches!(p.graph.node(id).op, comet_ir::Op::StochasticTrunc { .. }))
        .expect("the default plan truncates stochastically");
    let at = |p: &Program| CostModel::new(p).node(t).online_bits.clone();
    assert_eq!(eval(&at(&p), 5), 128 * 15, "64 bits when unset");
    p.graph.node_mut(t).cmp_width = Some(40);
    assert_eq!(
        eval(&at(&p), 5),
        2 * 40 * 15,
        "15 elements at 40 bits, 75 bytes each"
    );
    p.graph.node_mut(t).cmp_width = Some(20);
    assert_eq!(eval(&at(&p), 5), 16 * 38, "300 bits: 38 bytes per party");
}
