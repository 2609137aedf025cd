//! Pass `head-mask-rounds`: a head-masked product with the KV cache waits for no mask.
//!
//! Pass `cache-openings` gives both cache products of a head-sparse attention (`q·kᵀ` and
//! `p·v`) the attention's head mask, which the product needs in its round (it opens the
//! active pairs only, and a row when its group is active). The mask is open two rounds
//! after the predictor's product (a comparison, an opening). In an attention with rotary
//! embeddings the queries are ready no earlier (their projection's truncation, then the
//! rotation's), so `q·kᵀ` waits for nothing; without them (OPT, GPT-2-like models) the
//! queries are ready a round earlier, and waiting for the mask would add a round to every
//! layer. This pass drops the mask from every head-masked product whose mask is ready
//! later than its other operands (ASAP rounds, [`super::schedule`], at sample sizes):
//! that product then opens its slot's rows when they are written, as in a dense plan, and
//! its attention's other product keeps the mask (`p·v` reads the softmax, ready long
//! after the mask), so the plan has the dense plan's rounds.

use super::schedule;
use crate::cost::CostModel;
use comet_ir::poly::MaxPoly;
use comet_ir::{DimEnv, NodeId, Program};

/// Sizes at which a mask must be ready no later than the product's other operands: a
/// decode step at a long context, a prefill, and one in between.
const SAMPLES: [DimEnv; 3] = [
    DimEnv { seq: 1, past: 1024 },
    DimEnv { seq: 128, past: 0 },
    DimEnv { seq: 16, past: 16 },
];

/// Runs the pass (after the passes that change protocols, before `schedule`).
pub fn run(p: &mut Program) {
    let masked: Vec<NodeId> = (p.graph.ids())
        .filter(|&id| comet_ir::sparse::is_head_masked(p, id))
        .collect();
    if masked.is_empty() {
        return;
    }
    let mut trial = p.clone();
    schedule::run(&mut trial);
    let late: Vec<NodeId> = {
        let model = CostModel::new(&trial);
        let start = trial.analyses.rounds.as_ref().expect("scheduled");
        let finish = |x: NodeId| -> MaxPoly {
            let s = start.get(x).cloned().unwrap_or_default();
            s.plus(&model.node(x).rounds)
        };
        masked
            .into_iter()
            .filter(|&id| {
                let xs = trial.graph.operands(id);
                let others = (xs[..3].iter()).fold(MaxPoly::default(), |a, &x| a.max(&finish(x)));
                let mask = finish(xs[3]);
                SAMPLES.iter().any(|&e| mask.eval(e) > others.eval(e))
            })
            .collect()
    };
    for id in late {
        let xs = p.graph.operands(id)[..3].to_vec();
        p.graph.set_operands(id, &xs);
    }
}
