//! The dealer's material for one call, generated up front in canonical node order and
//! split per party, so both parties hold consistent material for every node.

use std::collections::HashMap;

use comet_ir::protocol::Protocol;
use comet_ir::{DimEnv, NodeId, Op, Program};

use super::ExecPlan;
use crate::dealer::{
    B2aMaterial, BitMuxMaterial, BlockMatMulMaterial, Deal, DreluMaterial, FixedCallMaterial,
    FixedMaskMaterial, GmwDreluMaterial, MaterialError, Pair, Product, ShuffleMaterial,
    SquareMaterial, TripleMaterial,
};
use crate::protocols::row_max::LevelMaterial;
use crate::protocols::share::InputSeed;

/// One node's material for one party.
pub(crate) enum NodeMaterial {
    /// Beaver triple (mul, matmul, mux).
    Triple(TripleMaterial),
    /// Square pair.
    Square(SquareMaterial),
    /// Per-call material of a product with a fixed operand.
    Fixed(FixedCallMaterial),
    /// DReLU keys.
    Drelu(DreluMaterial),
    /// The AND triples of a GMW DReLU.
    GmwDrelu(GmwDreluMaterial),
    /// daBits of a B2A.
    B2a(B2aMaterial),
    /// A select with XOR-shared bits (GMW).
    BitMux(BitMuxMaterial),
    /// The shared seed of a `share` node.
    Seed(InputSeed),
    /// Per level of a row maximum: the comparison's and the select's material.
    RowMax(Vec<LevelMaterial>),
    /// Per-call material of a block-sparse product.
    BlockMatMul(BlockMatMulMaterial),
}

/// One party's material for the call.
#[derive(Default)]
pub(crate) struct PartyMaterial {
    /// Per node.
    pub nodes: HashMap<NodeId, NodeMaterial>,
    /// Masks of the fixed operands, by the fixed operand's node, in canonical order.
    pub fixed_masks: Vec<(NodeId, FixedMaskMaterial)>,
    /// Permutation correlations of the `block_permute` nodes, in canonical order.
    pub shuffles: Vec<(NodeId, ShuffleMaterial)>,
}

/// One party's once-per-session material: shuffles, then fixed masks.
pub(crate) type SetupMaterial = (
    Vec<(NodeId, ShuffleMaterial)>,
    Vec<(NodeId, FixedMaskMaterial)>,
);

/// The view of a `block_permute` node's (padded) shape that its shuffle permutes: one row
/// per block, `(rows, k)`.
pub(crate) fn shuffle_view(program: &Program, id: NodeId) -> (usize, usize) {
    let Op::BlockPermute { block, axis, .. } = program.graph.node(id).op else {
        unreachable!("shuffles are block_permute nodes")
    };
    let shape = shape_of(program, id, DimEnv { seq: 1, past: 0 });
    let rows = shape[axis as usize] / block as usize;
    (rows, shape.iter().product::<usize>() / rows.max(1))
}

/// The fixed operand of product `id` (protocol `proto`): the right one of a block-sparse
/// product, else whichever operand is fixed.
pub(crate) fn fixed_operand_of(
    program: &Program,
    id: NodeId,
    fixed: &std::collections::HashSet<NodeId>,
) -> NodeId {
    let xs = program.graph.operands(id);
    if matches!(program.graph.node(id).op, Op::BlockMatMul { .. }) || fixed.contains(&xs[1]) {
        xs[1]
    } else {
        xs[0]
    }
}

/// The evaluated shape of node `id`.
pub(crate) fn shape_of(program: &Program, id: NodeId, env: DimEnv) -> Vec<usize> {
    let node = program.graph.node(id);
    node.ty.shape.iter().map(|d| d.eval(env) as usize).collect()
}

/// The once-per-session material: the shuffle of every `block_permute` node, then the
/// mask of every fixed operand of a product, each in canonical order.
pub(crate) fn generate_setup(
    program: &Program,
    plan: &ExecPlan,
    deal: &mut dyn Deal,
) -> Result<[SetupMaterial; 2], MaterialError> {
    let mut out = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    for &id in &plan.order {
        if let Op::BlockPermute { perm, .. } = program.graph.node(id).op {
            let (rows, k) = shuffle_view(program, id);
            for (p, m) in deal.shuffle(perm, rows, k)?.into_iter().enumerate() {
                if let Some(m) = m {
                    out[p].0.push((id, m));
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for i in 0..plan.order.len() {
        if let Some(w) = plan.fixed_operand(i as super::plan::Pos) {
            let w = plan.id(w);
            if seen.insert(w) {
                let shape = shape_of(program, w, DimEnv { seq: 1, past: 0 });
                for (p, m) in deal.fixed_mask(w, &shape)?.into_iter().enumerate() {
                    if let Some(m) = m {
                        out[p].1.push((w, m));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The material of one call at `env`, per party (a replay fills its own party's only).
pub(crate) fn generate_call(
    program: &Program,
    plan: &ExecPlan,
    env: DimEnv,
    deal: &mut dyn Deal,
) -> Result<[PartyMaterial; 2], MaterialError> {
    let mut out = [PartyMaterial::default(), PartyMaterial::default()];
    let shape = |id| shape_of(program, id, env);
    for (i, &id) in plan.order.iter().enumerate() {
        let i = i as super::plan::Pos;
        let xs = program.graph.operands(id);
        let kind = match program.graph.node(id).op {
            Op::MatMul => Product::MatMul,
            _ => Product::Elementwise,
        };
        if plan.protocol(i).communicates() && !plan.communicating(i) {
            continue;
        }
        let pair: Pair<NodeMaterial> = match plan.protocol(i) {
            Protocol::Share => {
                let s = deal.share_seed();
                [Some(NodeMaterial::Seed(s)), Some(NodeMaterial::Seed(s))]
            }
            Protocol::Mux if plan.gmw => {
                let m = deal.bit_mux(&shape(xs[0]), &shape(xs[1]))?;
                m.map(|m| m.map(NodeMaterial::BitMux))
            }
            Protocol::BeaverMul | Protocol::Mux | Protocol::BeaverMatMul => {
                let m = deal.triple(kind, &shape(xs[0]), &shape(xs[1]))?;
                m.map(|m| m.map(NodeMaterial::Triple))
            }
            Protocol::Square => (deal.square(&shape(xs[0]))?).map(|m| m.map(NodeMaterial::Square)),
            Protocol::FixedMul | Protocol::FixedMatMul => {
                let w = plan.id(plan
                    .fixed_operand(i)
                    .expect("a product with a fixed operand"));
                let k = usize::from(xs[1] == w);
                let m = deal.fixed_call(w, kind, &shape(xs[1 - k]))?;
                m.map(|m| m.map(NodeMaterial::Fixed))
            }
            Protocol::DreluFss => {
                let n = shape(xs[0]).iter().product();
                (deal.drelu(n)?).map(|m| m.map(NodeMaterial::Drelu))
            }
            Protocol::DreluGmw => {
                let n = shape(xs[0]).iter().product();
                (deal.gmw_drelu(n)?).map(|m| m.map(NodeMaterial::GmwDrelu))
            }
            Protocol::B2A => {
                let n = shape(xs[0]).iter().product();
                (deal.b2a(n)?).map(|m| m.map(NodeMaterial::B2a))
            }
            Protocol::RowMaxTree => row_max(deal, &shape(xs[0]), plan.gmw)?,
            Protocol::BlockFixedMatMul => {
                let Op::BlockMatMul { block, .. } = program.graph.node(id).op else {
                    unreachable!("block_fixed_matmul computes block_matmul nodes")
                };
                let seq = shape(xs[0])[0];
                let m = deal.block_matmul(xs[1], seq, block as usize)?;
                m.map(|m| m.map(NodeMaterial::BlockMatMul))
            }
            _ => continue,
        };
        for (p, m) in pair.into_iter().enumerate() {
            if let Some(m) = m {
                out[p].nodes.insert(id, m);
            }
        }
    }
    Ok(out)
}

/// Per level of a row maximum over `x`: the comparison of the pairs (DReLU keys, or GMW
/// triples), then the select's material.
fn row_max(
    deal: &mut dyn Deal,
    x: &[usize],
    gmw: bool,
) -> Result<Pair<NodeMaterial>, MaterialError> {
    let rows: usize = x[..x.len() - 1].iter().product();
    let mut k = x[x.len() - 1];
    let mut levels = [Vec::new(), Vec::new()];
    while k > 1 {
        let pairs = [rows, k / 2];
        let level: Pair<LevelMaterial> = if gmw {
            let d = deal.gmw_drelu(rows * (k / 2))?;
            let m = deal.bit_mux(&pairs, &pairs)?;
            zip_pair(d, m, LevelMaterial::Gmw)
        } else {
            let d = deal.drelu(rows * (k / 2))?;
            let t = deal.triple(Product::Elementwise, &pairs, &pairs)?;
            zip_pair(d, t, LevelMaterial::Fss)
        };
        for (p, l) in level.into_iter().enumerate() {
            if let Some(l) = l {
                levels[p].push(l);
            }
        }
        k = k.div_ceil(2);
    }
    let [l0, l1] = levels;
    let wrap = |l: Vec<_>| (!l.is_empty()).then_some(NodeMaterial::RowMax(l));
    Ok([wrap(l0), wrap(l1)])
}

/// Combines two pairs party by party.
fn zip_pair<A, B, T>(a: Pair<A>, b: Pair<B>, f: impl Fn(A, B) -> T) -> Pair<T> {
    let [a0, a1] = a;
    let [b0, b1] = b;
    [
        a0.zip(b0).map(|(a, b)| f(a, b)),
        a1.zip(b1).map(|(a, b)| f(a, b)),
    ]
}
