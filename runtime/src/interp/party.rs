//! One party's run of one call: local passes, the setup exchange, and one exchange per
//! round carrying the messages of every node that starts in it.

use std::collections::{HashMap, HashSet};

use comet_ir::protocol::{Protocol, fixed_values};
use comet_ir::{DimEnv, Domain, Elem, NodeId, Op, Party, Program};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::material::{NodeMaterial, PartyMaterial, shape_of, shuffle_view};
use super::{InterpError, Schedule};
use crate::fixed::{self, Cache, decode_value};
use crate::protocols::driver::{round_bytes, setup_round};
use crate::protocols::fixed::FixedOperand;
use crate::protocols::{
    MessageError, PartyId, Share, Step, XorShare, b2a, beaver_matmul, beaver_mul, bit_mux,
    block_matmul, drelu, fixed as fixed_proto, gmw, mux, pack, reveal, row_max, share, shuffle,
    square, unpack,
};
use crate::ring::{self, Ring};
use crate::transport::Channel;
use comet_ir::sparse::{Masked, masked_nodes};

/// The sources one party provides: its inputs and weights, real-valued, by name.
#[derive(Debug, Clone, Default)]
pub struct PartyInputs {
    /// Inputs this party provides.
    pub inputs: HashMap<String, ArrayD<f64>>,
    /// Weights this party provides.
    pub weights: HashMap<String, ArrayD<f64>>,
}

impl PartyInputs {
    /// The sources of `inputs` and `weights` that the plan says party `p` provides.
    pub fn for_party(
        program: &Program,
        p: usize,
        inputs: &HashMap<String, ArrayD<f64>>,
        weights: &HashMap<String, ArrayD<f64>>,
    ) -> PartyInputs {
        let info = &program.info;
        PartyInputs {
            inputs: (inputs.iter())
                .filter(|(n, _)| info.input(n).is_some_and(|i| i.party.index() == p))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
            weights: (weights.iter())
                .filter(|(n, _)| info.weight(n).is_some_and(|w| w.party.index() == p))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
        }
    }
}

/// A communicating node between its start and its finish.
enum Pending {
    Beaver(beaver_mul::State),
    Square(square::State),
    Fixed(fixed_proto::State, NodeId),
    Drelu(drelu::State),
    Reveal(reveal::State),
    /// A GMW DReLU between its rounds.
    Gmw(gmw::State),
    B2a(b2a::State),
    BitMux(bit_mux::State),
    /// A row maximum between its rounds.
    RowMax(Box<row_max::State>),
    /// A block-sparse product with its fixed operand.
    Block(block_matmul::State, NodeId),
}

/// What a node's round ended with: its value, or its next state and message.
enum Finished {
    Value(Option<ArrayD<Ring>>),
    Next(Box<Pending>, Vec<u8>),
}

/// One party's state during a call.
struct Run<'a> {
    program: &'a Program,
    schedule: &'a Schedule,
    party: PartyId,
    env: DimEnv,
    frac: u32,
    sources: &'a PartyInputs,
    cache: &'a Cache,
    material: PartyMaterial,
    fixed: HashSet<NodeId>,
    /// Computed nodes: `None` where this party holds nothing (a value private to the peer,
    /// or a sink).
    values: HashMap<NodeId, Option<ArrayD<Ring>>>,
    fixed_operands: HashMap<NodeId, FixedOperand>,
    /// Fixed values needed only as operands that were set up: not computed again.
    skip: HashSet<NodeId>,
    /// Multi-round nodes between rounds: their state and next message.
    in_flight: HashMap<NodeId, (Pending, Vec<u8>)>,
    outputs: HashMap<String, ArrayD<f64>>,
    writes: Vec<(u32, ArrayD<Ring>)>,
    /// Nodes of sparse FFNs' masked regions.
    masked: HashMap<NodeId, Masked>,
    /// The opened block masks, with their sparse FFN.
    mask_ffn: HashMap<NodeId, u32>,
    /// Masked nodes between start and finish: the flat indices of their active entries
    /// and their full shape, to scatter the result back.
    scatter: HashMap<NodeId, (Vec<usize>, Vec<usize>)>,
    /// Permuted values computed by this call's shuffles.
    permuted: HashMap<NodeId, ArrayD<Ring>>,
    /// Active (token, block) pairs per sparse FFN, from the opened masks.
    active: Vec<u64>,
}

/// What a party keeps between the calls of a session: its KV-cache shares and its fixed
/// operands, opened once at the session's setup.
#[derive(Default)]
pub struct PartyState {
    /// The KV-cache shares.
    pub cache: Cache,
    fixed: HashMap<NodeId, FixedOperand>,
    /// Shares of the obliviously permuted weights (`block_permute`), from the setup.
    permuted: HashMap<NodeId, ArrayD<Ring>>,
    /// Active (token, block) pairs per sparse FFN in the last call.
    pub last_active: Vec<u64>,
}

impl PartyState {
    /// A fresh state: empty cache, no setup yet.
    pub fn new() -> PartyState {
        PartyState::default()
    }

    /// Whether the fixed operands were set up.
    pub fn set_up(&self) -> bool {
        !self.fixed.is_empty()
    }
}

impl std::fmt::Debug for PartyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyState")
            .field("cache_slots", &self.cache.slots().count())
            .field("fixed_operands", &self.fixed.len())
            .finish()
    }
}

/// Runs party `party`'s side of one call over `ch`. `state` holds its KV-cache shares
/// (updated with the call's writes when it succeeds) and its fixed operands: the first call
/// of a session carries their masks in `material` and opens them in a setup exchange;
/// later calls reuse them. Returns the outputs this party receives.
///
/// # Errors
/// If a node cannot be computed, or a round fails.
#[allow(clippy::too_many_arguments)]
pub fn run_party<C: Channel + ?Sized>(
    program: &Program,
    schedule: &Schedule,
    party: PartyId,
    env: DimEnv,
    sources: &PartyInputs,
    material: PartyMaterialHandle,
    state: &mut PartyState,
    ch: &mut C,
) -> Result<HashMap<String, ArrayD<f64>>, InterpError> {
    let fixed_operands = std::mem::take(&mut state.fixed);
    let skip = set_up_only(program, schedule, &fixed_operands);
    let masked = masked_nodes(program);
    let n_sparse = program
        .options
        .sparsity
        .as_ref()
        .map_or(0, |s| s.ffns.len());
    let values: HashMap<NodeId, Option<ArrayD<Ring>>> = (state.permuted.iter())
        .map(|(id, v)| (*id, Some(v.clone())))
        .collect();
    let mut run = Run {
        program,
        schedule,
        party,
        env,
        frac: program.info.format.frac,
        sources,
        cache: &state.cache,
        material: material.0,
        fixed: fixed_values(program),
        values,
        fixed_operands,
        skip,
        in_flight: HashMap::new(),
        outputs: HashMap::new(),
        writes: Vec::new(),
        mask_ffn: masked.values().map(|m| (m.mask, m.ffn)).collect(),
        masked,
        scatter: HashMap::new(),
        permuted: HashMap::new(),
        active: vec![0; n_sparse],
    };
    run.local_pass()?;
    if !run.material.shuffles.is_empty() {
        run.shuffle_setup(ch)?;
        run.local_pass()?;
    }
    run.setup(ch)?;
    for r in 0..schedule.total_rounds {
        if r > 0 {
            run.local_pass()?;
        }
        run.round(r, ch)?;
    }
    run.local_pass()?;
    if let Some(&id) = schedule
        .order
        .iter()
        .find(|id| !run.values.contains_key(id))
    {
        return Err(run.fail(id, "never computed: its operands were not ready".into()));
    }
    let Run {
        outputs,
        writes,
        fixed_operands,
        permuted,
        active,
        ..
    } = run;
    state.fixed = fixed_operands;
    state.permuted.extend(permuted);
    state.last_active = active;
    for (slot, v) in writes {
        state.cache.set(slot, v);
    }
    Ok(outputs)
}

/// Fixed values that a call after the setup need not compute: those used only as the
/// fixed operand of products already set up, or by other such values (the weights of
/// every matrix product, say: re-encoding them would cost a copy of the model per call).
fn set_up_only(
    program: &Program,
    schedule: &Schedule,
    set_up: &HashMap<NodeId, FixedOperand>,
) -> HashSet<NodeId> {
    let mut skip = HashSet::new();
    if set_up.is_empty() {
        return skip;
    }
    let fixed = fixed_values(program);
    for &id in schedule.order.iter().rev() {
        if !fixed.contains(&id) {
            continue;
        }
        let only_set_up = program.graph.users(id).iter().all(|&u| {
            skip.contains(&u)
                || (schedule.protocol[&u].has_fixed_operand() && set_up.contains_key(&id))
        });
        if only_set_up {
            skip.insert(id);
        }
    }
    skip
}

/// One party's material, opaque outside the interpreter.
pub struct PartyMaterialHandle(pub(crate) PartyMaterial);

impl std::fmt::Debug for PartyMaterialHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartyMaterial(..)")
    }
}

fn shared(d: Domain) -> bool {
    matches!(d, Domain::Arith | Domain::Bool)
}

impl Run<'_> {
    fn fail(&self, id: NodeId, message: String) -> InterpError {
        InterpError::Node {
            node: id,
            op: self.program.graph.node(id).op.name(),
            message,
        }
    }

    fn holds(&self, d: Domain) -> bool {
        match d {
            Domain::Private(p) => p.index() == usize::from(self.party),
            _ => true,
        }
    }

    fn value(&self, id: NodeId) -> Option<&ArrayD<Ring>> {
        self.values.get(&id).and_then(Option::as_ref)
    }

    fn ready(&self, id: NodeId) -> bool {
        (self.program.graph.operands(id).iter()).all(|o| self.values.contains_key(o))
    }

    /// Computes every local node whose operands are ready, in canonical order.
    fn local_pass(&mut self) -> Result<(), InterpError> {
        for &id in &self.schedule.order {
            if self.skip.contains(&id) {
                self.values.entry(id).or_insert(None);
                continue;
            }
            let no_rounds = self.schedule.own.get(&id) == Some(&0);
            let shuffled = self.schedule.protocol[&id] == Protocol::Shuffle;
            if self.values.contains_key(&id)
                || shuffled
                || (self.schedule.protocol[&id].communicates() && !no_rounds)
                || !self.ready(id)
            {
                continue;
            }
            if no_rounds {
                // a row maximum over rows of one element
                let x = self.program.graph.operands(id)[0];
                let v = self.value(x).cloned();
                self.values.insert(id, v);
                continue;
            }
            let v = self.local(id)?;
            self.values.insert(id, v);
        }
        Ok(())
    }

    /// The value of a local node at this party.
    fn local(&mut self, id: NodeId) -> Result<Option<ArrayD<Ring>>, InterpError> {
        let program = self.program;
        let node = program.graph.node(id);
        let xs = program.graph.operands(id);
        let dom = node.ty.domain;
        let me = usize::from(self.party);
        let shape = shape_of(program, id, self.env);
        let operand = |i: usize| self.value(xs[i]);
        let missing = |i: usize| self.fail(id, format!("operand {} is not held here", xs[i]));
        let bool_operand = xs
            .iter()
            .any(|&x| program.graph.node(x).ty.domain == Domain::Bool);
        if self.schedule.gmw && bool_operand {
            return Err(self.fail(
                id,
                "a local op on XOR-shared bits (GMW comparisons): only `b2a` and `select` \
                 consume them"
                    .into(),
            ));
        }
        let v = match &node.op {
            Op::Input { name, party } => {
                if party.index() != me {
                    return Ok(None);
                }
                let x = (self.sources.inputs.get(name))
                    .ok_or_else(|| self.fail(id, format!("missing input `{name}`")))?;
                if x.shape() != shape.as_slice() {
                    return Err(self.fail(id, format!("input `{name}`: shape {:?}", x.shape())));
                }
                fixed::encode_source(x, node.ty.elem).map_err(|m| self.fail(id, m))?
            }
            Op::Weight { name } => {
                let owner = program.info.weight(name).map_or(Party::Server, |w| w.party);
                if owner.index() != me {
                    return Ok(None);
                }
                let w = (self.sources.weights.get(name))
                    .ok_or_else(|| self.fail(id, format!("missing weight `{name}`")))?;
                if w.shape() != shape.as_slice() {
                    return Err(self.fail(id, format!("weight `{name}`: shape {:?}", w.shape())));
                }
                let scale = match node.ty.elem {
                    Elem::Fixed { scale } if scale < 64 => scale,
                    _ => self.frac,
                };
                ring::encode_tensor(w, scale)
            }
            Op::Positions { offset } => fixed::position_ids(*offset, self.env),
            Op::CacheRead { slot } => {
                if !self.holds(dom) {
                    return Ok(None);
                }
                if self.env.past == 0 {
                    ArrayD::zeros(IxDyn(&shape))
                } else {
                    let c = (self.cache.read(*slot)).map_err(|e| self.fail(id, e.to_string()))?;
                    if c.shape() != shape.as_slice() {
                        return Err(self.fail(id, format!("cache holds {:?}", c.shape())));
                    }
                    c.clone()
                }
            }
            Op::Share { from } => {
                let Some(NodeMaterial::Seed(seed)) = self.material.nodes.get(&id) else {
                    return Err(self.fail(id, "no seed".into()));
                };
                if from.index() == me {
                    let x = operand(0).ok_or_else(|| missing(0))?;
                    share::share_own_input(x, seed).0
                } else {
                    share::share_peer_input(&shape, seed).0
                }
            }
            Op::Output { name, party } => {
                if party.index() == me {
                    let x = operand(0).ok_or_else(|| missing(0))?;
                    let decoded = decode_value(program.graph.node(xs[0]).ty.elem, x);
                    self.outputs.insert(name.clone(), decoded);
                }
                return Ok(None);
            }
            Op::CacheWrite { slot } => {
                if let Some(x) = operand(0) {
                    self.writes.push((*slot, x.clone()));
                }
                return Ok(None);
            }
            // a local reveal: the value is already readable by its receiver
            Op::Reveal { .. } => match operand(0) {
                Some(x) if self.holds(dom) => x.clone(),
                _ => return Ok(None),
            },
            Op::Trunc { bits } if shared(dom) => {
                let mut x = operand(0).ok_or_else(|| missing(0))?.clone();
                ring::trunc_share(&mut x, *bits, me);
                x
            }
            // the public constant is added once, by party 0
            Op::AddConst { .. } | Op::CausalMask if shared(dom) && self.party == 1 => {
                operand(0).ok_or_else(|| missing(0))?.clone()
            }
            op => {
                if !self.holds(dom) {
                    return Ok(None);
                }
                // sums with a public operand: party 1 adds zeros in its place
                let zero_public = shared(dom)
                    && self.party == 1
                    && matches!(op, Op::Add | Op::Sub | Op::Concat { .. });
                let mut owned = Vec::new();
                for (i, &x) in xs.iter().enumerate() {
                    let public = program.graph.node(x).ty.domain == Domain::Public;
                    let v = operand(i).ok_or_else(|| missing(i))?;
                    owned.push(if zero_public && public {
                        ArrayD::zeros(v.raw_dim())
                    } else {
                        v.clone()
                    });
                }
                let views: Vec<ArrayViewD<Ring>> = owned.iter().map(|v| v.view()).collect();
                let scale = xs
                    .first()
                    .and_then(|&x| match program.graph.node(x).ty.elem {
                        Elem::Fixed { scale } => Some(scale),
                        _ => None,
                    });
                fixed::apply_op(op, &views, self.env, self.frac, scale)
                    .map_err(|m| self.fail(id, m))?
            }
        };
        if v.shape() != shape.as_slice() {
            return Err(self.fail(id, format!("computed {:?}, declared {shape:?}", v.shape())));
        }
        Ok(Some(v))
    }

    /// Permutes the blocks of every `block_permute` operand by the session's secret
    /// permutations, all nodes together: two setup exchanges (step 0: party 1's masked
    /// shares to party 0, who permutes by `π0`; step 1: party 0's to party 1, `π1`).
    fn shuffle_setup<C: Channel + ?Sized>(&mut self, ch: &mut C) -> Result<(), InterpError> {
        let jobs = std::mem::take(&mut self.material.shuffles);
        let mut views = Vec::new();
        for (id, _) in &jobs {
            let x = self.program.graph.operands(*id)[0];
            let v = (self.value(x))
                .ok_or_else(|| self.fail(*id, "operand not computed before the shuffle".into()))?;
            views.push(Share(
                to_rows(self.program, *id, v).map_err(|m| self.fail(*id, m))?,
            ));
        }
        for step in 0..2 {
            let mut states = Vec::new();
            let mut msg = Vec::new();
            for ((_, m), v) in jobs.iter().zip(&views) {
                let (st, part) = shuffle::start_step(self.party, step, v, m);
                states.push(st);
                msg.extend(part);
            }
            let peer = setup_round(ch, &msg)?;
            let mut at = 0;
            for (i, st) in states.into_iter().enumerate() {
                let n = if step == usize::from(self.party) {
                    views[i].0.len()
                } else {
                    0
                };
                let part = peer.get(at..at + n).ok_or(MessageError::Length {
                    expected: at + n,
                    actual: peer.len(),
                })?;
                at += n;
                views[i] = shuffle::finish_step(st, part)?;
            }
            crate::protocols::check_len(&peer, at)?;
        }
        for ((id, _), v) in jobs.iter().zip(views) {
            let full = from_rows(self.program, *id, v.0);
            self.permuted.insert(*id, full.clone());
            self.values.insert(*id, Some(full));
        }
        Ok(())
    }

    /// Opens `W − B` of every fixed operand in one setup exchange.
    fn setup<C: Channel + ?Sized>(&mut self, ch: &mut C) -> Result<(), InterpError> {
        let masks = std::mem::take(&mut self.material.fixed_masks);
        if masks.is_empty() {
            return Ok(());
        }
        let mut states = Vec::new();
        let mut msg = Vec::new();
        for (w, m) in masks {
            let x = self
                .value(w)
                .ok_or_else(|| self.fail(w, "fixed operand not computed before setup".into()))?;
            let (st, part) = fixed_proto::setup_start(self.party, &Share(x.clone()), m);
            states.push((w, st, part.len()));
            msg.extend(part);
        }
        let peer = setup_round(ch, &msg)?;
        let mut at = 0;
        let total: usize = states.iter().map(|s| s.2).sum();
        crate::protocols::check_len(&peer, total)?;
        for (w, st, n) in states {
            let op = fixed_proto::setup_finish(st, &peer[at..at + n])?;
            at += n;
            self.fixed_operands.insert(w, op);
        }
        Ok(())
    }

    /// Starts every node scheduled in round `r` (or takes its next message, for a node in
    /// its later rounds), makes one exchange, and ends the round of each.
    fn round<C: Channel + ?Sized>(&mut self, r: u64, ch: &mut C) -> Result<(), InterpError> {
        let active: Vec<NodeId> = (self.schedule.order.iter())
            .copied()
            .filter(|id| {
                let (s, n) = (self.schedule.start.get(id), self.schedule.own.get(id));
                matches!((s, n), (Some(&s), Some(&n)) if s <= r && r < s + n)
            })
            .collect();
        if active.is_empty() {
            return Ok(());
        }
        let mut pending = Vec::new();
        let mut msg = Vec::new();
        for id in active {
            let (st, part) = match self.in_flight.remove(&id) {
                Some(next) => next,
                None if self.values.contains_key(&id) => {
                    return Err(self.fail(id, format!("finished before its round {r}")));
                }
                None if !self.ready(id) => {
                    return Err(
                        self.fail(id, format!("scheduled in round {r}, operands not ready"))
                    );
                }
                None => self.start(id)?,
            };
            pending.push((id, st, part.len()));
            msg.extend(part);
        }
        let peer = round_bytes(ch, &msg)?;
        // the peer's parts have the sizes its own starts produced; both parties' sizes are
        // equal except for one-way reveals, whose receiver part is split below
        let mut at = 0;
        for (id, st, mine) in pending {
            let n = self.peer_len(id, mine);
            let part = peer.get(at..at + n).ok_or(MessageError::Length {
                expected: at + n,
                actual: peer.len(),
            })?;
            at += n;
            match self.finish(id, st, part)? {
                Finished::Value(v) => {
                    let v = self.scatter_back(id, v);
                    self.values.insert(id, v);
                    self.count_active(id);
                }
                Finished::Next(st, next) => {
                    self.in_flight.insert(id, (*st, next));
                }
            }
        }
        if at != peer.len() {
            return Err(MessageError::Length {
                expected: at,
                actual: peer.len(),
            }
            .into());
        }
        Ok(())
    }

    /// The length in bytes of the peer's part for node `id`, given this party's: the same,
    /// except for a one-way reveal (the receiver gets the sender's share and sends
    /// nothing).
    fn peer_len(&self, id: NodeId, mine: usize) -> usize {
        match self.program.graph.node(id).op {
            Op::Reveal { to } if to.index() == usize::from(self.party) => {
                8 * shape_of(self.program, id, self.env)
                    .iter()
                    .product::<usize>()
            }
            Op::Reveal { .. } => 0,
            _ => mine,
        }
    }

    fn share_of(&self, id: NodeId, x: NodeId) -> Result<Share, InterpError> {
        self.value(x)
            .map(|v| Share(v.clone()))
            .ok_or_else(|| self.fail(id, format!("operand {x} is not held here")))
    }

    /// This party's XOR share of bits `x` (a GMW comparison's output).
    fn bits_of(&self, id: NodeId, x: NodeId) -> Result<XorShare, InterpError> {
        self.share_of(id, x).map(|s| XorShare(s.0))
    }

    fn start_reveal(&self, id: NodeId) -> Result<(Pending, Vec<u8>), InterpError> {
        let xs = self.program.graph.operands(id);
        let Op::Reveal { to } = self.program.graph.node(id).op else {
            unreachable!("the reveal protocol computes reveal nodes")
        };
        if self.schedule.gmw && self.program.graph.node(xs[0]).ty.domain == Domain::Bool {
            return Err(self.fail(id, "revealing XOR-shared bits is not supported".into()));
        }
        let to = to.index() as PartyId;
        let x = match self.value(xs[0]) {
            Some(v) => Share(v.clone()),
            // a private value revealed to its non-owner: the receiver adds zeros
            None => Share(ArrayD::zeros(IxDyn(&shape_of(
                self.program,
                xs[0],
                self.env,
            )))),
        };
        let (st, msg) = reveal::start(self.party, Some(to), &x);
        Ok((Pending::Reveal(st), pack(&msg)))
    }

    fn start(&mut self, id: NodeId) -> Result<(Pending, Vec<u8>), InterpError> {
        let xs = self.program.graph.operands(id);
        let p = self.party;
        let proto = self.schedule.protocol[&id];
        if proto == Protocol::Reveal {
            return self.start_reveal(id);
        }
        if proto == Protocol::Open {
            let (st, msg) = reveal::start(p, None, &self.share_of(id, xs[0])?);
            return Ok((Pending::Reveal(st), pack(&msg)));
        }
        if let Some(m) = self.masked.get(&id).copied() {
            return self.start_masked(id, m, proto);
        }
        let material = (self.material.nodes.remove(&id))
            .ok_or_else(|| self.fail(id, "no dealer material".into()))?;
        let bad = || self.fail(id, "dealer material of another protocol".into());
        let arith = |(st, msg): (Pending, Vec<u64>)| (st, pack(&msg));
        Ok(match (proto, material) {
            (Protocol::BeaverMul, NodeMaterial::Triple(m)) => {
                let (a, b) = (self.share_of(id, xs[0])?, self.share_of(id, xs[1])?);
                let (st, msg) = beaver_mul::start(p, &a, &b, m);
                arith((Pending::Beaver(st), msg))
            }
            (Protocol::Mux, NodeMaterial::Triple(m)) => {
                let (a, b) = (self.share_of(id, xs[0])?, self.share_of(id, xs[1])?);
                let (st, msg) = mux::start(p, &a, &b, m);
                arith((Pending::Beaver(st), msg))
            }
            (Protocol::Mux, NodeMaterial::BitMux(m)) => {
                let (b, x) = (self.bits_of(id, xs[0])?, self.share_of(id, xs[1])?);
                let (st, msg) = bit_mux::start(p, &b, &x, m);
                (Pending::BitMux(st), msg)
            }
            (Protocol::BeaverMatMul, NodeMaterial::Triple(m)) => {
                let (a, b) = (self.share_of(id, xs[0])?, self.share_of(id, xs[1])?);
                let (st, msg) = beaver_matmul::start(p, &a, &b, m);
                arith((Pending::Beaver(st), msg))
            }
            (Protocol::Square, NodeMaterial::Square(m)) => {
                let (st, msg) = square::start(p, &self.share_of(id, xs[0])?, m);
                arith((Pending::Square(st), msg))
            }
            (Protocol::FixedMul | Protocol::FixedMatMul, NodeMaterial::Fixed(m)) => {
                let k = usize::from(self.fixed.contains(&xs[1]));
                let x = self.share_of(id, xs[1 - k])?;
                let (st, msg) = if proto == Protocol::FixedMatMul {
                    fixed_proto::matmul_start(p, &x, m)
                } else {
                    fixed_proto::mul_start(p, &x, m)
                };
                arith((Pending::Fixed(st, xs[k]), msg))
            }
            (Protocol::DreluFss, NodeMaterial::Drelu(m)) => {
                let (st, msg) = drelu::start(p, &self.share_of(id, xs[0])?, m);
                arith((Pending::Drelu(st), msg))
            }
            (Protocol::DreluGmw, NodeMaterial::GmwDrelu(m)) => {
                let (st, msg) = gmw::start(p, &self.share_of(id, xs[0])?, m);
                (Pending::Gmw(st), msg)
            }
            (Protocol::B2A, NodeMaterial::B2a(m)) => {
                let (st, msg) = b2a::start(p, &self.bits_of(id, xs[0])?, m);
                (Pending::B2a(st), msg)
            }
            (Protocol::RowMaxTree, NodeMaterial::RowMax(levels)) => {
                let (st, msg) = row_max::start(p, &self.share_of(id, xs[0])?, levels);
                (Pending::RowMax(Box::new(st)), msg)
            }
            (Protocol::BlockFixedMatMul, NodeMaterial::BlockMatMul(m)) => {
                let Op::BlockMatMul { block, .. } = self.program.graph.node(id).op else {
                    return Err(bad());
                };
                let h = self.share_of(id, xs[0])?;
                let mask = self.mask_bits(id, xs[2])?;
                let (st, msg) = block_matmul::start(p, &h, mask.view(), block as usize, m);
                arith((Pending::Block(st, xs[1]), msg))
            }
            _ => return Err(bad()),
        })
    }

    /// The public block mask `mask` as bits `[seq, blocks]`.
    fn mask_bits(&self, id: NodeId, mask: NodeId) -> Result<ndarray::Array2<bool>, InterpError> {
        let v = (self.value(mask)).ok_or_else(|| self.fail(id, "block mask not opened".into()))?;
        (v.mapv(|b| b != 0).into_dimensionality::<ndarray::Ix2>())
            .map_err(|_| self.fail(id, format!("block mask {:?} is not 2-D", v.shape())))
    }

    /// Starts a node of a sparse FFN's masked region on its active entries only: its
    /// operands and its (dense) material gathered at them; the result is scattered back
    /// when it finishes.
    fn start_masked(
        &mut self,
        id: NodeId,
        m: Masked,
        proto: Protocol,
    ) -> Result<(Pending, Vec<u8>), InterpError> {
        let shape = shape_of(self.program, id, self.env);
        let mask = self.mask_bits(id, m.mask)?;
        let idx =
            active_entries(mask.view(), &shape, m.block as usize).map_err(|e| self.fail(id, e))?;
        let mut xs = Vec::new();
        for x in self.program.graph.operands(id) {
            let v = self.share_of(id, x)?;
            xs.push(gather_entries(&v.0, &shape, &idx).map_err(|e| self.fail(id, e))?);
        }
        let material = (self.material.nodes.remove(&id))
            .ok_or_else(|| self.fail(id, "no dealer material".into()))?;
        let p = self.party;
        let (st, msg) = match (proto, material) {
            (Protocol::DreluFss, NodeMaterial::Drelu(t)) => {
                let (st, msg) = drelu::start(p, &xs[0], t.gather(&idx));
                (Pending::Drelu(st), msg)
            }
            (Protocol::Mux, NodeMaterial::Triple(t)) => {
                let (st, msg) = mux::start(p, &xs[0], &xs[1], t.gather(&idx));
                (Pending::Beaver(st), msg)
            }
            (Protocol::BeaverMul, NodeMaterial::Triple(t)) => {
                let (st, msg) = beaver_mul::start(p, &xs[0], &xs[1], t.gather(&idx));
                (Pending::Beaver(st), msg)
            }
            (Protocol::Square, NodeMaterial::Square(t)) => {
                let (st, msg) = square::start(p, &xs[0], t.gather(&idx));
                (Pending::Square(st), msg)
            }
            (proto, _) => {
                return Err(self.fail(
                    id,
                    format!("`{proto}` does not run on the active blocks of a sparse FFN"),
                ));
            }
        };
        self.scatter.insert(id, (idx, shape));
        Ok((st, pack(&msg)))
    }

    /// A masked node's result on its active entries, back at its full shape (zeros at
    /// the inactive entries); other nodes' results unchanged.
    fn scatter_back(&mut self, id: NodeId, v: Option<ArrayD<Ring>>) -> Option<ArrayD<Ring>> {
        let (Some(v), Some((idx, shape))) = (v.as_ref(), self.scatter.remove(&id)) else {
            return v;
        };
        let mut full = ArrayD::zeros(IxDyn(&shape));
        let flat = full.as_slice_mut().expect("standard layout");
        for (&i, &x) in idx.iter().zip(v.iter()) {
            flat[i] = x;
        }
        Some(full)
    }

    /// Counts the active pairs of an opened block mask.
    fn count_active(&mut self, id: NodeId) {
        let Some(&ffn) = self.mask_ffn.get(&id) else {
            return;
        };
        let ones = self
            .value(id)
            .map_or(0, |v| v.iter().filter(|&&b| b != 0).count());
        if let Some(a) = self.active.get_mut(ffn as usize) {
            *a += ones as u64;
        }
    }

    /// Ends node `id`'s round with the peer's part.
    fn finish(&mut self, id: NodeId, st: Pending, peer: &[u8]) -> Result<Finished, InterpError> {
        let value = |s: Share| Finished::Value(Some(s.0));
        Ok(match st {
            Pending::Beaver(s) => value(beaver_mul::finish(s, &unpack(peer)?)?),
            Pending::Square(s) => value(square::finish(s, &unpack(peer)?)?),
            Pending::Drelu(s) => value(drelu::finish(s, &unpack(peer)?)?),
            Pending::Fixed(s, w) => {
                let w = (self.fixed_operands.get(&w))
                    .ok_or_else(|| self.fail(id, "fixed operand was not set up".into()))?;
                value(fixed_proto::finish(s, w, &unpack(peer)?)?)
            }
            Pending::Reveal(s) => Finished::Value(reveal::finish(s, &unpack(peer)?)?),
            Pending::BitMux(s) => value(bit_mux::finish(s, peer)?),
            Pending::B2a(s) => {
                // the bit as the fixed-point 0 or 1 of the node's scale
                let scale = match self.program.graph.node(id).ty.elem {
                    Elem::Fixed { scale } => scale,
                    _ => self.frac,
                };
                let one = 1u64.checked_shl(scale).unwrap_or(0);
                value(Share(b2a::finish(s, peer)?.0.mapv(|v| v.wrapping_mul(one))))
            }
            Pending::Gmw(s) => match gmw::step(s, peer)? {
                Step::Next(s, msg) => Finished::Next(Box::new(Pending::Gmw(s)), msg),
                Step::Done(bits) => Finished::Value(Some(bits.0)),
            },
            Pending::RowMax(s) => match row_max::step(*s, peer)? {
                Step::Next(s, msg) => Finished::Next(Box::new(Pending::RowMax(Box::new(s))), msg),
                Step::Done(max) => value(max),
            },
            Pending::Block(s, w) => {
                let w = (self.fixed_operands.get(&w))
                    .ok_or_else(|| self.fail(id, "fixed operand was not set up".into()))?;
                value(block_matmul::finish(s, w, &unpack(peer)?)?)
            }
        })
    }
}

/// The flat indices of the entries of `shape` (`[seq, n]`) in the blocks `mask` marks
/// active, in row-major order.
fn active_entries(
    mask: ndarray::ArrayView2<bool>,
    shape: &[usize],
    block: usize,
) -> Result<Vec<usize>, String> {
    let [seq, n] = shape else {
        return Err(format!("a masked value must be [seq, n], got {shape:?}"));
    };
    if block == 0 || !n.is_multiple_of(block) || mask.dim() != (*seq, n / block) {
        return Err(format!(
            "block mask {:?} does not cover {shape:?} in blocks of {block}",
            mask.dim()
        ));
    }
    let mut idx = Vec::new();
    for ((t, b), &on) in mask.indexed_iter() {
        if on {
            idx.extend((0..block).map(|i| t * n + b * block + i));
        }
    }
    Ok(idx)
}

/// `x` broadcast to `shape`, at the flat indices `idx`: a 1-D share.
fn gather_entries(x: &ArrayD<Ring>, shape: &[usize], idx: &[usize]) -> Result<Share, String> {
    let full = x
        .broadcast(IxDyn(shape))
        .ok_or_else(|| format!("operand {:?} does not broadcast to {shape:?}", x.shape()))?;
    let full = full.as_standard_layout();
    let flat = full.as_slice().expect("standard layout");
    Ok(Share(ArrayD::from_shape_fn(IxDyn(&[idx.len()]), |i| {
        flat[idx[i[0]]]
    })))
}

/// A `block_permute` node's operand padded to its shape and laid out one block per row:
/// `[rows, k]` (the permuted axis moved first).
fn to_rows(program: &Program, id: NodeId, x: &ArrayD<Ring>) -> Result<ArrayD<Ring>, String> {
    let Op::BlockPermute { block, axis, .. } = program.graph.node(id).op else {
        unreachable!("shuffles are block_permute nodes")
    };
    let padded = crate::movement::pad_blocks(&x.view(), block, axis)?;
    let mut order: Vec<usize> = (0..padded.ndim()).collect();
    order.remove(axis as usize);
    order.insert(0, axis as usize);
    let moved = padded.permuted_axes(IxDyn(&order));
    let (rows, k) = shuffle_view(program, id);
    Ok(crate::movement::reshape_to(&moved.view(), &[rows, k]))
}

/// The inverse of [`to_rows`]: rows back to the node's (padded) shape.
fn from_rows(program: &Program, id: NodeId, rows: ArrayD<Ring>) -> ArrayD<Ring> {
    let Op::BlockPermute { axis, .. } = program.graph.node(id).op else {
        unreachable!("shuffles are block_permute nodes")
    };
    let shape = shape_of(program, id, DimEnv { seq: 1, past: 0 });
    let axis = axis as usize;
    let mut moved_shape = shape.clone();
    let n = moved_shape.remove(axis);
    moved_shape.insert(0, n);
    let moved = crate::movement::reshape_to(&rows.view(), &moved_shape);
    let mut order: Vec<usize> = (1..shape.len()).collect();
    order.insert(axis, 0);
    moved
        .permuted_axes(IxDyn(&order))
        .as_standard_layout()
        .into_owned()
}
