//! One party's run of one call: local passes, the setup exchange, and one exchange per
//! round carrying the messages of every node that starts in it.

use std::collections::{HashMap, HashSet};

use comet_ir::protocol::{Protocol, fixed_values};
use comet_ir::{DimEnv, Domain, Elem, NodeId, Op, Party, Program};
use ndarray::{Array2, ArrayD, ArrayViewD, Axis, IxDyn, concatenate, s};

use super::material::{NodeMaterial, PartyMaterial, shape_of};
use super::{InterpError, Schedule};
use crate::dealer::{DreluMaterial, TripleMaterial};
use crate::fixed::{self, Cache, decode_value};
use crate::protocols::driver::{round, setup_round};
use crate::protocols::fixed::FixedOperand;
use crate::protocols::{
    PartyId, Share, beaver_matmul, beaver_mul, drelu, fixed as fixed_proto, mux, reveal, share,
    square,
};
use crate::ring::{self, Ring};
use crate::transport::Channel;

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
    /// A row maximum's DReLU of a level.
    RowMaxDrelu(drelu::State),
    /// A row maximum's mux of a level.
    RowMaxMux(beaver_mul::State),
}

/// A row maximum between its rounds: the current candidates `[rows, k]` and, within a
/// level, the pairs' differences, right elements and comparison bits.
struct RowMax {
    cur: Array2<Ring>,
    levels: std::vec::IntoIter<(DreluMaterial, TripleMaterial)>,
    mux: Option<TripleMaterial>,
    diff: Array2<Ring>,
    right: Array2<Ring>,
    bits: Option<Share>,
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
    row_max: HashMap<NodeId, RowMax>,
    outputs: HashMap<String, ArrayD<f64>>,
    writes: Vec<(u32, ArrayD<Ring>)>,
}

/// What a party keeps between the calls of a session: its KV-cache shares and its fixed
/// operands, opened once at the session's setup.
#[derive(Default)]
pub struct PartyState {
    /// The KV-cache shares.
    pub cache: Cache,
    fixed: HashMap<NodeId, FixedOperand>,
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
        values: HashMap::new(),
        fixed_operands,
        skip,
        row_max: HashMap::new(),
        outputs: HashMap::new(),
        writes: Vec::new(),
    };
    run.local_pass()?;
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
        ..
    } = run;
    state.fixed = fixed_operands;
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
                || (matches!(
                    schedule.protocol[&u],
                    Protocol::FixedMul | Protocol::FixedMatMul
                ) && set_up.contains_key(&id))
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
            if self.values.contains_key(&id)
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

    /// Starts every node scheduled in round `r`, makes one exchange, finishes them.
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
            if !self.ready(id) {
                return Err(self.fail(id, format!("scheduled in round {r}, operands not ready")));
            }
            let (st, part) = if self.schedule.protocol[&id] == Protocol::RowMaxTree {
                self.row_max_start(id, r - self.schedule.start[&id])?
            } else {
                self.start(id)?
            };
            pending.push((id, st, part.len()));
            msg.extend(part);
        }
        let peer = round(ch, &msg)?;
        // the peer's parts have the sizes its own starts produced; both parties' sizes are
        // equal except for one-way reveals, whose receiver part is split below
        let mut at = 0;
        for (id, st, mine) in pending {
            let n = self.peer_len(id, mine);
            if at + n > peer.len() {
                crate::protocols::check_len(&peer, at + n)?;
            }
            let part = &peer[at..at + n];
            at += n;
            let v = match st {
                Pending::RowMaxDrelu(s) => {
                    let bits = drelu::finish(s, part)?;
                    self.row_max.get_mut(&id).expect("started").bits = Some(bits);
                    continue;
                }
                Pending::RowMaxMux(s) => {
                    let prod = beaver_mul::finish(s, part)?;
                    match self.row_max_level_done(id, prod) {
                        None => continue,
                        Some(v) => v,
                    }
                }
                st => self.finish(id, st, part)?,
            };
            self.values.insert(id, v);
        }
        crate::protocols::check_len(&peer, at)?;
        Ok(())
    }

    /// The length of the peer's part for node `id`, given this party's: the same, except
    /// for a one-way reveal (the receiver gets the sender's share and sends nothing).
    fn peer_len(&self, id: NodeId, mine: usize) -> usize {
        match self.program.graph.node(id).op {
            Op::Reveal { to } if to.index() == usize::from(self.party) => {
                shape_of(self.program, id, self.env).iter().product()
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

    fn start(&mut self, id: NodeId) -> Result<(Pending, Vec<u64>), InterpError> {
        let xs = self.program.graph.operands(id);
        let p = self.party;
        let proto = self.schedule.protocol[&id];
        if proto == Protocol::Reveal {
            let Op::Reveal { to } = self.program.graph.node(id).op else {
                unreachable!("the reveal protocol computes reveal nodes")
            };
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
            let (st, msg) = reveal::start(p, Some(to), &x);
            return Ok((Pending::Reveal(st), msg));
        }
        let material = (self.material.nodes.remove(&id))
            .ok_or_else(|| self.fail(id, "no dealer material".into()))?;
        let bad = || self.fail(id, "dealer material of another protocol".into());
        Ok(match (proto, material) {
            (Protocol::BeaverMul, NodeMaterial::Triple(m)) => {
                let (a, b) = (self.share_of(id, xs[0])?, self.share_of(id, xs[1])?);
                let (st, msg) = beaver_mul::start(p, &a, &b, m);
                (Pending::Beaver(st), msg)
            }
            (Protocol::Mux, NodeMaterial::Triple(m)) => {
                let (a, b) = (self.share_of(id, xs[0])?, self.share_of(id, xs[1])?);
                let (st, msg) = mux::start(p, &a, &b, m);
                (Pending::Beaver(st), msg)
            }
            (Protocol::BeaverMatMul, NodeMaterial::Triple(m)) => {
                let (a, b) = (self.share_of(id, xs[0])?, self.share_of(id, xs[1])?);
                let (st, msg) = beaver_matmul::start(p, &a, &b, m);
                (Pending::Beaver(st), msg)
            }
            (Protocol::Square, NodeMaterial::Square(m)) => {
                let (st, msg) = square::start(p, &self.share_of(id, xs[0])?, m);
                (Pending::Square(st), msg)
            }
            (Protocol::FixedMul | Protocol::FixedMatMul, NodeMaterial::Fixed(m)) => {
                let k = usize::from(self.fixed.contains(&xs[1]));
                let x = self.share_of(id, xs[1 - k])?;
                let (st, msg) = if proto == Protocol::FixedMatMul {
                    fixed_proto::matmul_start(p, &x, m)
                } else {
                    fixed_proto::mul_start(p, &x, m)
                };
                (Pending::Fixed(st, xs[k]), msg)
            }
            (Protocol::DreluFss, NodeMaterial::Drelu(m)) => {
                let (st, msg) = drelu::start(p, &self.share_of(id, xs[0])?, m);
                (Pending::Drelu(st), msg)
            }
            _ => return Err(bad()),
        })
    }

    fn finish(
        &mut self,
        id: NodeId,
        st: Pending,
        peer: &[u64],
    ) -> Result<Option<ArrayD<Ring>>, InterpError> {
        Ok(match st {
            Pending::Beaver(s) => Some(beaver_mul::finish(s, peer)?.0),
            Pending::Square(s) => Some(square::finish(s, peer)?.0),
            Pending::Drelu(s) => Some(drelu::finish(s, peer)?.0),
            Pending::Fixed(s, w) => {
                let w = (self.fixed_operands.get(&w))
                    .ok_or_else(|| self.fail(id, "fixed operand was not set up".into()))?;
                Some(fixed_proto::finish(s, w, peer)?.0)
            }
            Pending::Reveal(s) => reveal::finish(s, peer)?,
            Pending::RowMaxDrelu(_) | Pending::RowMaxMux(_) => {
                unreachable!("row maxima finish in `round`")
            }
        })
    }
}

impl Run<'_> {
    /// Step `step` of row maximum `id`: even steps compare the pairs of a level (DReLU of
    /// `a − b`), odd steps select (`b + [a ≥ b]·(a − b)`, a mux).
    fn row_max_start(&mut self, id: NodeId, step: u64) -> Result<(Pending, Vec<u64>), InterpError> {
        if step == 0 {
            let x = self.program.graph.operands(id)[0];
            let v = (self.value(x))
                .ok_or_else(|| self.fail(id, format!("operand {x} is not held here")))?;
            let t = v.shape().last().copied().unwrap_or(1);
            let cur = (v.to_shape((v.len() / t.max(1), t)))
                .map_err(|e| self.fail(id, e.to_string()))?
                .to_owned();
            let Some(NodeMaterial::RowMax(levels)) = self.material.nodes.remove(&id) else {
                return Err(self.fail(id, "no dealer material".into()));
            };
            let empty = Array2::zeros((0, 0));
            let state = RowMax {
                cur,
                levels: levels.into_iter(),
                mux: None,
                diff: empty.clone(),
                right: empty,
                bits: None,
            };
            self.row_max.insert(id, state);
        }
        let party = self.party;
        let fail = |m: &str| InterpError::Node {
            node: id,
            op: "row_max",
            message: m.into(),
        };
        let Some(st) = self.row_max.get_mut(&id) else {
            return Err(fail("not started"));
        };
        if step.is_multiple_of(2) {
            let k = st.cur.ncols();
            let pairs = 2 * (k / 2);
            let a = st.cur.slice(s![.., 0..pairs;2]);
            let b = st.cur.slice(s![.., 1..pairs;2]);
            st.diff = ndarray::Zip::from(&a)
                .and(&b)
                .map_collect(|&x, &y| x.wrapping_sub(y));
            st.right = b.to_owned();
            let Some((d, m)) = st.levels.next() else {
                return Err(fail("dealer material for fewer levels"));
            };
            st.mux = Some(m);
            let (s, msg) = drelu::start(party, &Share(st.diff.clone().into_dyn()), d);
            Ok((Pending::RowMaxDrelu(s), msg))
        } else {
            let (Some(bits), Some(m)) = (st.bits.take(), st.mux.take()) else {
                return Err(fail("mux before its comparison"));
            };
            let (s, msg) = mux::start(party, &bits, &Share(st.diff.clone().into_dyn()), m);
            Ok((Pending::RowMaxMux(s), msg))
        }
    }

    /// Ends a level of row maximum `id` with the mux's product; the maximum once the
    /// last level is done.
    fn row_max_level_done(&mut self, id: NodeId, prod: Share) -> Option<Option<ArrayD<Ring>>> {
        let st = self.row_max.get_mut(&id).expect("started");
        let prod = prod.0.into_dimensionality().expect("rank 2");
        let mut next = ndarray::Zip::from(&st.right)
            .and(&prod)
            .map_collect(|&b, &p| b.wrapping_add(p));
        let k = st.cur.ncols();
        if !k.is_multiple_of(2) {
            let last = st.cur.slice(s![.., k - 1..k]);
            next = concatenate(Axis(1), &[next.view(), last]).expect("same rows");
        }
        st.cur = next;
        if st.cur.ncols() > 1 {
            return None;
        }
        let st = self.row_max.remove(&id).expect("started");
        let shape = shape_of(self.program, id, self.env);
        Some(Some(
            st.cur
                .into_shape_with_order(IxDyn(&shape))
                .expect("rows × 1 elements"),
        ))
    }
}
