//! The dealer's material for one call, dealt and taken one item at a time in one order
//! ([`DealOrder`]): the dealer (in process, to files, or as a service) produces it in that
//! order and a party takes it in that order as its walker reaches each node, so neither
//! holds more than a few nodes' material at once.

use std::collections::HashMap;

use comet_ir::protocol::Protocol;
use comet_ir::{DimEnv, NodeId, Op, Program};

use super::ExecPlan;
use super::plan::Pos;
use crate::dealer::{Deal, FixedMaskMaterial, MaterialError, Pair, ShuffleMaterial};
use crate::protocols::dispatch::{self, NodeMaterial, NodeSpec};
use crate::protocols::share::InputSeed;

/// One item of a party's material, in the order the walker takes them
/// ([`deal_call`]): the call's `share` seeds; in the session's first call the shuffles
/// and then each fixed operand's mask; then every communicating node's material in the
/// order the nodes start.
pub(crate) enum Item {
    /// The seeds of the call's `share` nodes.
    Seeds(Vec<(NodeId, InputSeed)>),
    /// The permutation correlations of the `block_permute` nodes.
    Shuffles(Vec<(NodeId, ShuffleMaterial)>),
    /// A fixed operand's mask.
    Mask(NodeId, FixedMaskMaterial),
    /// A communicating node's material (none for a protocol that needs none).
    Node(NodeId, Option<Box<NodeMaterial>>),
}

/// Where a party takes its material from, one item at a time.
pub(crate) trait Source {
    /// The next item.
    ///
    /// # Errors
    /// If the material cannot be produced or read.
    fn next(&mut self) -> Result<Item, MaterialError>;
}

/// A party's material source: items come in [`deal_call`]'s order and are checked
/// against what the walker expects.
pub(crate) struct PartyMaterial<'s> {
    source: Box<dyn Source + Send + 's>,
}

impl<'s> PartyMaterial<'s> {
    pub(crate) fn new(source: Box<dyn Source + Send + 's>) -> PartyMaterial<'s> {
        PartyMaterial { source }
    }

    fn out_of_order(expected: &str) -> MaterialError {
        MaterialError::Mismatch(format!("expected the material of {expected} next"))
    }

    /// The call's `share` seeds.
    pub(crate) fn seeds(&mut self) -> Result<HashMap<NodeId, InputSeed>, MaterialError> {
        match self.source.next()? {
            Item::Seeds(s) => Ok(s.into_iter().collect()),
            _ => Err(Self::out_of_order("the call's `share` nodes")),
        }
    }

    /// The shuffles' permutation correlations.
    pub(crate) fn shuffles(&mut self) -> Result<Vec<(NodeId, ShuffleMaterial)>, MaterialError> {
        match self.source.next()? {
            Item::Shuffles(s) => Ok(s),
            _ => Err(Self::out_of_order("the shuffles")),
        }
    }

    /// The mask of fixed operand `w`.
    pub(crate) fn mask(&mut self, w: NodeId) -> Result<FixedMaskMaterial, MaterialError> {
        match self.source.next()? {
            Item::Mask(id, m) if id == w => Ok(m),
            _ => Err(Self::out_of_order(&format!("fixed operand {w}"))),
        }
    }

    /// The material of communicating node `id` (none for a reveal or an opening).
    pub(crate) fn node(&mut self, id: NodeId) -> Result<Option<NodeMaterial>, MaterialError> {
        match self.source.next()? {
            Item::Node(n, m) if n == id => Ok(m.map(|m| *m)),
            _ => Err(Self::out_of_order(&format!("node {id}"))),
        }
    }
}

impl<S: Source + ?Sized> Source for &mut S {
    fn next(&mut self) -> Result<Item, MaterialError> {
        (**self).next()
    }
}

/// A party's items from a [`Deal`] that re-derives its half (a material file's or a
/// stream's replay), generated as the walker asks.
pub(crate) struct ReplaySource<'a, D: Deal + ?Sized> {
    pub items: DealOrder<'a>,
    pub deal: &'a mut D,
    pub party: usize,
}

impl<D: Deal + ?Sized> Source for ReplaySource<'_, D> {
    fn next(&mut self) -> Result<Item, MaterialError> {
        let mut pair = (self.items.next_pair(self.deal))?
            .ok_or_else(|| MaterialError::Mismatch("the call asked for more material".into()))?;
        pair[self.party]
            .take()
            .ok_or_else(|| MaterialError::Mismatch(format!("no material for party {}", self.party)))
    }
}

/// Items received from a dealer thread (both parties in one process).
pub(crate) struct ChannelSource(pub std::sync::mpsc::Receiver<Result<Item, MaterialError>>);

impl Source for ChannelSource {
    fn next(&mut self) -> Result<Item, MaterialError> {
        self.0.recv().unwrap_or_else(|_| {
            Err(MaterialError::Mismatch(
                "the dealer stopped before the call's material was complete".into(),
            ))
        })
    }
}

/// The order in which a call's material is dealt and taken: seeds, the setup (in the
/// session's first call: shuffles, then each fixed operand's mask in
/// [`ExecPlan::setup_order`]), then the communicating nodes in start order.
pub(crate) struct DealOrder<'a> {
    program: &'a Program,
    plan: &'a ExecPlan,
    env: DimEnv,
    set_up: bool,
    stage: Stage,
    /// Offline bytes dealt so far for the setup (the shuffles' corrections) and for the
    /// call's nodes.
    pub setup_bytes: u64,
    pub call_bytes: u64,
}

/// Where a [`DealOrder`] is.
#[derive(Clone, Copy)]
enum Stage {
    Seeds,
    Shuffles,
    Masks(usize),
    Nodes(usize),
}

impl<'a> DealOrder<'a> {
    /// The order of a call at `env`, with the setup's material unless the session is
    /// `set_up`.
    pub(crate) fn new(program: &'a Program, plan: &'a ExecPlan, env: DimEnv, set_up: bool) -> Self {
        DealOrder {
            program,
            plan,
            env,
            set_up,
            stage: Stage::Seeds,
            setup_bytes: 0,
            call_bytes: 0,
        }
    }

    /// The next item for both parties from `deal`, or `None` after the last.
    ///
    /// # Errors
    /// If `deal` cannot produce it.
    pub(crate) fn next_pair<D: Deal + ?Sized>(
        &mut self,
        deal: &mut D,
    ) -> Result<Option<Pair<Item>>, MaterialError> {
        if let Stage::Masks(k) = self.stage
            && k == self.plan.setup_order().len()
        {
            self.stage = Stage::Nodes(0);
        }
        if let Some(message) = deal.failure() {
            let at = deal.offline_bytes();
            return Err(MaterialError::Source { at, message });
        }
        let before = deal.offline_bytes();
        let setup = matches!(self.stage, Stage::Shuffles | Stage::Masks(_));
        let item = self.step(deal)?;
        deal.item_done();
        let dealt = deal.offline_bytes() - before;
        if setup {
            self.setup_bytes += dealt;
        } else {
            self.call_bytes += dealt;
        }
        Ok(item)
    }

    fn step<D: Deal + ?Sized>(
        &mut self,
        deal: &mut D,
    ) -> Result<Option<Pair<Item>>, MaterialError> {
        let both = |x: Pair<Item>| Ok(Some(x));
        match self.stage {
            Stage::Seeds => {
                self.stage = if self.set_up {
                    Stage::Nodes(0)
                } else {
                    Stage::Shuffles
                };
                let seeds = share_seeds(self.plan, deal);
                both([Some(Item::Seeds(seeds.clone())), Some(Item::Seeds(seeds))])
            }
            Stage::Shuffles => {
                self.stage = Stage::Masks(0);
                let [a, b] = shuffles(self.program, self.plan, deal)?;
                both([Some(Item::Shuffles(a)), Some(Item::Shuffles(b))])
            }
            Stage::Masks(k) => {
                self.stage = Stage::Masks(k + 1);
                let w = self.plan.id(self.plan.setup_order()[k]);
                let shape = shape_of(self.program, w, DimEnv { seq: 1, past: 0 });
                let owner = comet_ir::protocol::mask_owner(self.program, w)
                    .map(|p| p.index() as crate::protocols::PartyId);
                both(
                    deal.fixed_mask(w, &shape, owner)?
                        .map(|m| m.map(|m| Item::Mask(w, m))),
                )
            }
            Stage::Nodes(k) => {
                let Some(&i) = self.plan.starts().get(k) else {
                    return Ok(None);
                };
                self.stage = Stage::Nodes(k + 1);
                let id = self.plan.id(i);
                let [a, b] =
                    dispatch::deal(&node_spec(self.program, self.plan, self.env, i), deal)?;
                let node = |m: Option<NodeMaterial>| Some(Item::Node(id, m.map(Box::new)));
                both([node(a), node(b)])
            }
        }
    }
}

/// Deals a whole call's material from `deal` in [`DealOrder`], handing each item pair to
/// `emit` (which may send it to the parties, or drop it when the dealer only records).
/// Returns the offline bytes of the call and of the setup.
///
/// # Errors
/// If `deal` fails, or as `emit`.
pub(crate) fn deal_call_items<D: Deal + ?Sized>(
    program: &Program,
    plan: &ExecPlan,
    env: DimEnv,
    deal: &mut D,
    set_up: bool,
    mut emit: impl FnMut(Pair<Item>) -> Result<(), MaterialError>,
) -> Result<(u64, u64), MaterialError> {
    let mut order = DealOrder::new(program, plan, env, set_up);
    while let Some(pair) = order.next_pair(deal)? {
        emit(pair)?;
    }
    Ok((order.call_bytes, order.setup_bytes))
}

/// The seeds of every `share` node, in canonical order.
fn share_seeds<D: Deal + ?Sized>(plan: &ExecPlan, deal: &mut D) -> Vec<(NodeId, InputSeed)> {
    (0..plan.len())
        .filter(|&i| plan.protocol(i as Pos) == Protocol::Share)
        .map(|i| (plan.id(i as Pos), deal.share_seed()))
        .collect()
}

/// The shuffle of every `block_permute` node, in canonical order.
fn shuffles<D: Deal + ?Sized>(
    program: &Program,
    plan: &ExecPlan,
    deal: &mut D,
) -> Result<[Vec<(NodeId, ShuffleMaterial)>; 2], MaterialError> {
    let mut out = [Vec::new(), Vec::new()];
    for &id in plan.order() {
        if let Op::BlockPermute { perm, .. } = program.graph.node(id).op {
            let (rows, k) = shuffle_view(program, id);
            for (p, m) in deal.shuffle(perm, rows, k)?.into_iter().enumerate() {
                if let Some(m) = m {
                    out[p].push((id, m));
                }
            }
        }
    }
    Ok(out)
}

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

/// Bytes of the largest setup message of a sparse plan's block shuffles: each of the two
/// shuffle exchanges carries every `block_permute` operand at once, one ring element per
/// entry (`interp::setup`); 0 for a plan without shuffles. A party caps its peer's setup
/// messages with it (and the weights' chunk size), rather than with the general cap.
pub fn shuffle_setup_bytes(program: &Program) -> u64 {
    (program.graph.ids())
        .filter(|&id| matches!(program.graph.node(id).op, Op::BlockPermute { .. }))
        .map(|id| {
            let (rows, k) = shuffle_view(program, id);
            8 * (rows as u64) * (k as u64)
        })
        .sum()
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
    crate::exec::sources::dims(&program.graph.node(id).ty.shape, env)
}

/// What dealing the material of the communicating node at `i` needs to know of it.
fn node_spec<'p>(program: &'p Program, plan: &ExecPlan, env: DimEnv, i: Pos) -> NodeSpec<'p> {
    let id = plan.id(i);
    let operands = program.graph.operands(id);
    NodeSpec {
        id,
        protocol: plan.protocol(i),
        op: &program.graph.node(id).op,
        readers: plan.opening_readers(i) as usize,
        gmw: plan.gmw,
        shapes: operands
            .iter()
            .map(|&x| shape_of(program, x, env))
            .collect(),
        operands,
        fixed: plan.fixed_operand(i).map(|w| plan.id(w)),
        bits: program.graph.node(id).comparison_bits(),
    }
}
