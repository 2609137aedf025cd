//! One party's run of one call: the walker over the call's [`ExecPlan`]. Before each round
//! it computes the local nodes of that round's epoch, then starts (or steps) the
//! communicating nodes active in the round, packs their messages into one buffer, makes
//! one exchange, and finishes them. Values are dropped after their last reader (the
//! layout's read counts). The KV cache, the checks of inputs, weights and cache reads and
//! their errors are the execution core's ([`crate::exec`]), as in the plaintext backends.

use std::collections::HashMap;
use std::sync::Arc;

use comet_ir::{DimEnv, NodeId, Op, Program};
use ndarray::ArrayD;

use super::material::PartyMaterial;
use super::plan::{ExecPlan, Pos};
use super::{InterpError, RunOptions};
use crate::exec::{At, sources};
use crate::fixed::Cache;
use crate::protocols::dispatch::Pending;
use crate::protocols::fixed::FixedOperand;
use crate::protocols::{PartyId, Share};
use crate::ring::Ring;
use crate::transport::Channel;

/// The sources one party provides: its inputs and weights, real-valued, by name.
#[derive(Clone, Default)]
pub struct PartyInputs {
    /// Inputs this party provides.
    pub inputs: HashMap<String, ArrayD<f64>>,
    /// Weights this party provides.
    pub weights: HashMap<String, ArrayD<f64>>,
    /// A checkpoint the weights missing from `weights` are read from, one at a time, when
    /// a call first needs them.
    pub checkpoint: Option<std::sync::Arc<crate::weights::Checkpoint>>,
    /// The weights already checked against the plan's bound and statistics (a weight
    /// that calls read again is checked once: its Gram matrix costs milliseconds).
    pub(crate) checked: std::collections::HashSet<String>,
}

impl std::fmt::Debug for PartyInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut inputs: Vec<_> = self.inputs.keys().collect();
        let mut weights: Vec<_> = self.weights.keys().collect();
        inputs.sort();
        weights.sort();
        f.debug_struct("PartyInputs")
            .field("inputs", &inputs)
            .field("weights", &weights.len())
            .finish_non_exhaustive()
    }
}

impl PartyInputs {
    /// The weights of `weights` that the plan says party `p` provides, taken without
    /// copies (the others are dropped).
    pub fn take_weights(
        program: &Program,
        p: usize,
        mut weights: HashMap<String, ArrayD<f64>>,
    ) -> PartyInputs {
        let info = &program.info;
        weights.retain(|n, _| info.weight(n).is_some_and(|w| w.party.index() == p));
        PartyInputs {
            inputs: HashMap::new(),
            weights,
            checkpoint: None,
            checked: Default::default(),
        }
    }

    /// Drops the weights that only set-up products use: after the session's setup no call
    /// reads them again (their `W − B` and `B_p` are kept packed).
    pub(crate) fn drop_set_up_weights(&mut self, program: &Program, plan: &ExecPlan) {
        let droppable = droppable_weights(program, plan);
        self.weights.retain(|n, _| !droppable.contains_key(n));
        // the weights later calls read were all read by this call, and kept
        self.checkpoint = None;
    }

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
            checkpoint: None,
            checked: Default::default(),
        }
    }
}

/// What a party keeps between the calls of a session: its KV-cache shares and its fixed
/// operands, opened once at the session's setup.
#[derive(Default)]
pub struct PartyState {
    /// The KV-cache shares.
    pub cache: Cache,
    /// The KV-cache rows opened under their masks (`cache_matmul`): public to both parties.
    /// In a head-sparse plan a row waits (is not valid) until its group is active.
    pub opened: Cache,
    /// This party's shares `K_p − B_p` of the rows of head-masked slots (read while a row
    /// waits for its opening).
    pub(super) own: Cache,
    pub(super) fixed: HashMap<NodeId, FixedOperand>,
    /// Shares of the obliviously permuted weights (`block_permute`), from the setup.
    pub(super) permuted: HashMap<NodeId, Arc<Share>>,
    /// Whether the session's setup ran.
    pub(super) set_up: bool,
    /// Active (token, block) pairs per sparse FFN in the last call.
    pub last_active: Vec<u64>,
    /// Per sparse unit, the KV refill of the last call's head-masked cache products.
    pub last_kv: Vec<crate::protocols::cache_masked::Refill>,
    /// Seconds the last call spent in the session's setup (0 after the first call).
    pub last_setup_seconds: f64,
}

impl PartyState {
    /// A fresh state: empty cache, no setup yet.
    pub fn new() -> PartyState {
        PartyState::default()
    }

    /// Whether the fixed operands were set up.
    pub fn set_up(&self) -> bool {
        self.set_up
    }

    /// Elements of the fixed operands set up (this party keeps `W − B` and `B_p` of each).
    pub fn fixed_elements(&self) -> u64 {
        self.fixed.values().map(|f| f.len() as u64).sum()
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

/// One party's material source for a call, opaque outside the interpreter.
pub struct PartyMaterialHandle<'s>(pub(crate) PartyMaterial<'s>);

impl std::fmt::Debug for PartyMaterialHandle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartyMaterial(..)")
    }
}

/// A node's value at this party during a call.
#[derive(Clone)]
pub(super) enum Slot {
    /// Not computed yet.
    Empty,
    /// Computed, but this party holds nothing (a value private to the peer, a sink, a
    /// fixed value needed only by set-up products), or dropped after its last reader.
    Absent,
    /// This party's plaintext, public value or share.
    Held(Arc<Share>),
}

/// One party's state during a call.
pub(super) struct Run<'a> {
    pub program: &'a Program,
    pub plan: &'a ExecPlan,
    pub party: PartyId,
    pub env: DimEnv,
    pub frac: u32,
    pub sources: &'a mut PartyInputs,
    /// Weights read only by set-up-only nodes: dropped as soon as the setup encoded them.
    /// (with how many `weight` nodes still read it).
    pub droppable: HashMap<String, usize>,
    pub cache: &'a Cache,
    /// The cache rows opened by earlier calls, per slot.
    pub opened: &'a Cache,
    /// This party's shares of the rows of head-masked slots.
    pub own: &'a Cache,
    /// The opened rows of the slots this call's cache products extended.
    pub opened_writes: Vec<(u32, OpenedRows)>,
    /// Per sparse unit, the KV refill of its head-masked cache products.
    pub kv: Vec<crate::protocols::cache_masked::Refill>,
    pub material: PartyMaterial<'a>,
    /// The seeds of the call's `share` nodes.
    pub seeds: HashMap<NodeId, crate::protocols::share::InputSeed>,
    pub options: RunOptions,
    pub values: Vec<Slot>,
    /// Readers left per value: a value is dropped when it reaches 0.
    pub uses: Vec<u32>,
    pub fixed_operands: HashMap<NodeId, FixedOperand>,
    /// Fixed values needed only to set up fixed operands: computed during the setup only.
    pub set_up_only: Vec<bool>,
    /// Multi-round nodes between rounds: their state and next message.
    pub in_flight: HashMap<Pos, (Pending, Vec<u8>)>,
    /// The openings of stochastic truncations that other nodes read, with the readers
    /// still to read them (`Protocol::DreluOpened` in the truncation's round,
    /// `Protocol::MuxOpened` later).
    pub openings: HashMap<Pos, HeldOpening>,
    pub outputs: HashMap<String, ArrayD<f64>>,
    pub writes: Vec<(u32, ArrayD<Ring>)>,
    /// The opened block masks, with their sparse FFN.
    pub mask_ffn: HashMap<Pos, u32>,
    /// Masked nodes between start and finish: the flat indices of their active entries
    /// and their full shape, to scatter the result back.
    pub scatter: HashMap<Pos, (Vec<usize>, Vec<usize>)>,
    /// Permuted values computed by this call's shuffles.
    pub permuted: HashMap<NodeId, Arc<Share>>,
    /// Active (token, block) pairs per sparse FFN, from the opened masks.
    pub active: Vec<u64>,
    /// Seconds spent in the session's setup (shuffles and fixed operands).
    pub setup_seconds: f64,
}

/// The rows a cache product leaves for its slot.
pub(super) enum OpenedRows {
    /// Every row opened.
    Dense(ArrayD<Ring>),
    /// A head-masked product's: some rows may wait.
    Masked(crate::protocols::cache_masked::Kept),
}

/// Runs party `party`'s side of one call over `ch`. `state` holds its KV-cache shares
/// (updated with the call's writes when it succeeds) and its fixed operands: the first call
/// of a session carries their masks in `material` and opens them in setup exchanges;
/// later calls reuse them. Returns the outputs this party receives.
///
/// # Errors
/// If a node cannot be computed, or a round fails.
#[allow(clippy::too_many_arguments)]
pub fn run_party<C: Channel + ?Sized>(
    program: &Program,
    plan: &ExecPlan,
    party: PartyId,
    env: DimEnv,
    sources: &mut PartyInputs,
    material: PartyMaterialHandle<'_>,
    state: &mut PartyState,
    ch: &mut C,
    options: RunOptions,
) -> Result<HashMap<String, ArrayD<f64>>, InterpError> {
    let set_up = state.set_up;
    let done = {
        let mut run = Run::new(program, plan, party, env, sources, material, state, options);
        run.walk(ch, set_up)?;
        Done::from(run)
    };
    let Done {
        outputs,
        writes,
        opened_writes,
        fixed_operands,
        permuted,
        active,
        kv,
        setup_seconds,
    } = done;
    state.last_setup_seconds = setup_seconds;
    if !fixed_operands.is_empty() {
        state.fixed = fixed_operands;
    }
    state.set_up = true;
    state.permuted.extend(permuted);
    state.last_active = active;
    state.last_kv = kv;
    for (slot, v) in writes {
        state.cache.set(slot, v);
    }
    for (slot, f) in opened_writes {
        match f {
            OpenedRows::Dense(f) => state.opened.set(slot, f),
            OpenedRows::Masked(k) => {
                state.opened.set_with_validity(slot, k.opened, k.valid);
                state.own.set(slot, k.own);
            }
        }
    }
    Ok(outputs)
}

/// What a finished call leaves for the party's state.
struct Done {
    outputs: HashMap<String, ArrayD<f64>>,
    writes: Vec<(u32, ArrayD<Ring>)>,
    opened_writes: Vec<(u32, OpenedRows)>,
    fixed_operands: HashMap<NodeId, FixedOperand>,
    permuted: HashMap<NodeId, Arc<Share>>,
    active: Vec<u64>,
    kv: Vec<crate::protocols::cache_masked::Refill>,
    setup_seconds: f64,
}

impl From<Run<'_>> for Done {
    fn from(run: Run<'_>) -> Done {
        Done {
            outputs: run.outputs,
            writes: run.writes,
            opened_writes: run.opened_writes,
            fixed_operands: run.fixed_operands,
            permuted: run.permuted,
            active: run.active,
            kv: run.kv,
            setup_seconds: run.setup_seconds,
        }
    }
}

impl<'a> Run<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        program: &'a Program,
        plan: &'a ExecPlan,
        party: PartyId,
        env: DimEnv,
        sources: &'a mut PartyInputs,
        material: PartyMaterialHandle<'a>,
        state: &'a mut PartyState,
        options: RunOptions,
    ) -> Run<'a> {
        let n = plan.len();
        let mut values = vec![Slot::Empty; n];
        for (id, v) in &state.permuted {
            values[plan.pos(*id) as usize] = Slot::Held(v.clone());
        }
        let n_sparse = (program.options.sparsity.as_ref()).map_or(0, |s| s.ffns.len());
        let fixed_operands = std::mem::take(&mut state.fixed);
        let state: &'a PartyState = state;
        Run {
            program,
            plan,
            party,
            env,
            frac: program.info.format.frac,
            sources,
            droppable: droppable_weights(program, plan),
            cache: &state.cache,
            opened: &state.opened,
            own: &state.own,
            opened_writes: Vec::new(),
            kv: vec![Default::default(); n_sparse],
            material: material.0,
            seeds: HashMap::new(),
            options,
            uses: plan.read_counts(),
            set_up_only: set_up_only(plan),
            values,
            fixed_operands,
            in_flight: HashMap::new(),
            openings: HashMap::new(),
            outputs: HashMap::new(),
            writes: Vec::new(),
            mask_ffn: (plan.masked().values())
                .map(|m| (plan.pos(m.mask), m.ffn))
                .chain(block_matmul_masks(program, plan))
                .collect(),
            scatter: HashMap::new(),
            permuted: HashMap::new(),
            active: vec![0; n_sparse],
            setup_seconds: 0.0,
        }
    }

    /// The whole call: the local nodes available before round 0 (those that depend on a
    /// shuffle after the shuffles' setup), the fixed operands' setup in the session's
    /// first call, then every round with the local nodes of its epoch before it.
    fn walk<C: Channel + ?Sized>(&mut self, ch: &mut C, set_up: bool) -> Result<(), InterpError> {
        let plan = self.plan;
        sources::check_input_names(self.program, self.sources.inputs.keys())?;
        if set_up {
            for (i, only) in self.set_up_only.iter().enumerate() {
                if *only && matches!(self.values[i], Slot::Empty) {
                    self.values[i] = Slot::Absent;
                }
            }
        }
        self.seeds = self.material.seeds()?;
        let first: Vec<Pos> = plan.locals(0).to_vec();
        let (before, after): (Vec<Pos>, Vec<Pos>) =
            first.into_iter().partition(|&i| !plan.after_shuffle(i));
        self.compute_locals(&before)?;
        let started = std::time::Instant::now();
        if !set_up {
            let jobs = self.material.shuffles()?;
            if !jobs.is_empty() {
                self.shuffle_setup(jobs, ch)?;
            }
        }
        let shuffled = started.elapsed();
        self.compute_locals(&after)?;
        if !set_up {
            let started = std::time::Instant::now();
            self.setup(ch)?;
            self.setup_seconds = (shuffled + started.elapsed()).as_secs_f64();
        }
        for r in 0..plan.total_rounds {
            if r > 0 {
                self.compute_locals(plan.locals(r))?;
            }
            self.round(r, ch)?;
            let event = super::Progress::Round {
                done: r + 1,
                total: plan.total_rounds,
            };
            self.options.report(self.party, event);
        }
        self.compute_locals(plan.locals(plan.total_rounds))?;
        if let Some(i) = (0..plan.len()).find(|&i| matches!(self.values[i], Slot::Empty)) {
            return Err(self.fail(
                i as Pos,
                "never computed: its operands were not ready".into(),
            ));
        }
        Ok(())
    }

    /// Computes the local nodes `list` in order (set-up-only fixed values are skipped:
    /// the session's setup computes them when it needs them, later calls not at all).
    fn compute_locals(&mut self, list: &[Pos]) -> Result<(), InterpError> {
        for &i in list {
            if !matches!(self.values[i as usize], Slot::Empty) {
                continue;
            }
            if self.set_up_only[i as usize] {
                continue;
            }
            let v = self.local(i)?;
            self.store(i, v);
        }
        Ok(())
    }

    /// Records node `i`'s value and releases what it read.
    pub(super) fn store(&mut self, i: Pos, v: Option<Share>) {
        self.values[i as usize] = match v {
            Some(v) => Slot::Held(Arc::new(v)),
            None => Slot::Absent,
        };
        self.release_reads(i);
    }

    /// One reader of each value node `i` reads has finished with it.
    pub(super) fn release_reads(&mut self, i: Pos) {
        let plan = self.plan;
        for x in plan.reads(i) {
            let u = &mut self.uses[x as usize];
            *u = u.saturating_sub(1);
            if *u == 0 && !plan.is_shuffle(x) {
                self.values[x as usize] = Slot::Absent;
            }
        }
    }

    pub(super) fn fail(&self, i: Pos, message: String) -> InterpError {
        let id = self.plan.id(i);
        let at = At::of(id, self.program.graph.node(id));
        InterpError::Node { at, message }
    }

    /// This party's value of the node at `i`, if it holds one.
    pub(super) fn value(&self, i: Pos) -> Option<&Arc<Share>> {
        match &self.values[i as usize] {
            Slot::Held(v) => Some(v),
            _ => None,
        }
    }

    /// This party's value of the operand at `x` of the node at `i`: an error if it holds none.
    pub(super) fn held(&self, i: Pos, x: Pos) -> Result<&Arc<Share>, InterpError> {
        self.value(x)
            .ok_or_else(|| self.fail(i, format!("operand {} is not held here", self.plan.id(x))))
    }
}

/// A stochastic truncation's opening kept for the nodes that read it.
#[derive(Debug)]
pub(super) struct HeldOpening {
    /// `t + r_h mod 2^(m−s)` per element (public).
    pub opened: Vec<u64>,
    /// This party's shares of `r_h`.
    pub h: Vec<u64>,
    /// Readers still to read it.
    pub left: u32,
}

/// The weights whose every `weight` node is needed only to set up fixed operands, with
/// the number of such nodes.
fn droppable_weights(program: &Program, plan: &ExecPlan) -> HashMap<String, usize> {
    let only = set_up_only(plan);
    let mut all: HashMap<String, usize> = HashMap::new();
    let mut needed = std::collections::HashSet::new();
    for (i, &id) in plan.order().iter().enumerate() {
        if let comet_ir::Op::Weight { name } = &program.graph.node(id).op {
            *all.entry(name.clone()).or_default() += 1;
            if !only[i] {
                needed.insert(name.clone());
            }
        }
    }
    all.retain(|n, _| !needed.contains(n));
    all
}

/// Fixed values that are needed only to set up fixed operands: those used only as the
/// fixed operand of products (the weights of every matrix product, say), or by other such
/// values. The session's first call computes them during its setup, one fixed operand at
/// a time; later calls not at all (re-encoding them would cost a copy of the model).
fn set_up_only(plan: &ExecPlan) -> Vec<bool> {
    let n = plan.len();
    let mut only = vec![false; n];
    let mut users: Vec<Vec<Pos>> = vec![Vec::new(); n];
    for u in 0..n {
        for x in plan.reads(u as Pos) {
            users[x as usize].push(u as Pos);
        }
    }
    for i in (0..n).rev() {
        if !plan.is_fixed(i as Pos) || users[i].is_empty() {
            continue;
        }
        only[i] =
            (users[i].iter()).all(|&u| only[u as usize] || plan.fixed_operand(u) == Some(i as Pos));
    }
    only
}

/// The mask of every `block_matmul` with its sparse unit: a head-sparse attention's mask
/// has no `apply_mask` region, only its output projection reads it.
fn block_matmul_masks<'p>(
    program: &'p Program,
    plan: &'p ExecPlan,
) -> impl Iterator<Item = (Pos, u32)> + 'p {
    (0..plan.len()).filter_map(move |i| {
        let i = i as Pos;
        match program.graph.node(plan.id(i)).op {
            Op::BlockMatMul { ffn, .. } => Some((plan.operands(i)[2], ffn)),
            _ => None,
        }
    })
}
