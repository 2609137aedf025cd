//! The execution plan of one call: everything the walker needs, computed once per call
//! from the plan's annotations, so that no round scans the graph.
//!
//! It builds on the call's structural [`Layout`] (nodes numbered by their position in the
//! canonical order, operand positions, read counts: [`crate::exec`]); per node it adds its
//! protocol and own rounds **as the cost pass
//! annotated them** (`analyses.costs`, never re-derived), and its start round
//! (`analyses.rounds`). From those it derives when each value becomes available
//! ([`ExecPlan::epoch`]): a communicating node's value after its last round, a local
//! node's as soon as its last operand's. The walker then runs, for each round `r`, the
//! local nodes of epoch `r` (in canonical order) and the communicating nodes active in
//! round `r` ([`ExecPlan::round`]), with no search.

use std::collections::HashMap;
use std::ops::Deref;

use comet_ir::head_region::{HeadRegion, head_regions};
use comet_ir::protocol::{Protocol, fixed_values};
use comet_ir::sparse::{Masked, masked_nodes};
use comet_ir::{Comparison, DimEnv, Program, Stage};

use super::InterpError;
pub(crate) use crate::exec::Pos;
use crate::exec::{At, Layout};

/// The schedule of one call at a concrete `env`: the program's [`Layout`] (which it
/// dereferences to) and dense per-node tables of protocols and rounds.
#[derive(Debug, Clone)]
pub struct ExecPlan {
    /// The structural layout; a node in a masked region also reads its block mask.
    layout: Layout,
    /// The nodes of sparse FFNs' masked regions, by position.
    masked: HashMap<Pos, Masked>,
    /// The nodes of head-masked attention cores, by position.
    heads: HashMap<Pos, HeadRegion>,
    /// Per position: the protocol that computes it (from the cost annotations).
    protocol: Vec<Protocol>,
    /// Per position: its start round and own rounds (0 for local nodes).
    start: Vec<u64>,
    own: Vec<u64>,
    /// Per position: the round before which its value is available (see module docs).
    epoch: Vec<u64>,
    /// Per position: whether its value depends on a `block_permute` (shuffle) output,
    /// so that the first call computes it only after the shuffles' setup.
    after_shuffle: Vec<bool>,
    /// Per round: the communicating nodes active in it, in canonical order.
    rounds: Vec<Vec<Pos>>,
    /// Per epoch `0..=total_rounds`: the local nodes to compute before that round (the last
    /// epoch: after the last round), in canonical order.
    locals: Vec<Vec<Pos>>,
    /// Communicating nodes in the order they start (start round, then canonical order).
    starts: Vec<Pos>,
    /// The fixed operands of the call's products, each once, in the canonical order of
    /// their first product: the order of the session's setup.
    setup_order: Vec<Pos>,
    /// Whether comparisons are GMW (bits XOR-shared) rather than FSS.
    pub gmw: bool,
    /// Rounds of the call: max over nodes of start + own rounds.
    pub total_rounds: u64,
    /// Per position: whether the value is the same in every call (weights and local
    /// functions of them).
    fixed: Vec<bool>,
    /// Per position: the fixed operand of a product with one.
    fixed_operand: Vec<Option<Pos>>,
    /// Per position: how many nodes read its opening (a stochastic truncation's:
    /// [`Protocol::DreluOpened`], [`Protocol::MuxOpened`]).
    opening_readers: Vec<u32>,
}

/// A plan whose comparisons or truncations work on narrowed widths is sound only for the
/// calls its range analysis covered: at most its truncation policy's `context` tokens
/// processed and as many cached (`comet compile --trunc-context`).
fn within_design_context(program: &Program, env: DimEnv) -> Result<(), InterpError> {
    let narrowed = (program.graph.ids()).any(|id| program.graph.node(id).cmp_width.is_some());
    let Some(policy) = program.options.truncation.filter(|_| narrowed) else {
        return Ok(());
    };
    let n = policy.context;
    if env.seq <= n && env.past <= n {
        return Ok(());
    }
    Err(InterpError::Sizes(format!(
        "this call processes {} tokens after {} cached, but the plan's comparison widths \
         are proven for at most {n} tokens and {n} cached (its design context): recompile \
         with `comet compile --trunc-context N` for longer calls",
        env.seq, env.past
    )))
}

impl ExecPlan {
    /// The execution plan of `program` at `env`.
    ///
    /// # Errors
    /// If the program is not a protocol-stage plan with its schedule and costs, or a node
    /// is scheduled before its operands are available.
    pub fn new(program: &Program, env: DimEnv) -> Result<ExecPlan, InterpError> {
        if program.stage != Stage::Protocol {
            return Err(InterpError::NotAPlan(format!("stage {:?}", program.stage)));
        }
        let Some(rounds) = &program.analyses.rounds else {
            return Err(InterpError::NotAPlan("no `rounds` analysis".into()));
        };
        let Some(costs) = &program.analyses.costs else {
            return Err(InterpError::NotAPlan("no `costs` analysis".into()));
        };
        // sizes may come from a file: every value's bytes must fit before anything is
        // allocated from them (shape arithmetic is checked, never wrapped)
        for id in program.graph.ids() {
            let elems = comet_ir::dim::try_numel(&program.graph.node(id).ty.shape, env)
                .map_err(|e| InterpError::Sizes(format!("node {}: {e}", id.index())))?;
            if elems > (isize::MAX as u64) / 8 {
                return Err(InterpError::Sizes(format!(
                    "node {} would hold {elems} elements at seq = {}, past = {}",
                    id.index(),
                    env.seq,
                    env.past
                )));
            }
        }
        within_design_context(program, env)?;
        let layout = Layout::new(program).map_err(|e| InterpError::NotAPlan(e.to_string()))?;
        let n = layout.len();
        let mut plan = ExecPlan {
            masked: HashMap::new(),
            heads: HashMap::new(),
            protocol: Vec::with_capacity(n),
            start: vec![0; n],
            own: vec![0; n],
            epoch: vec![0; n],
            after_shuffle: vec![false; n],
            rounds: Vec::new(),
            locals: Vec::new(),
            starts: Vec::new(),
            setup_order: Vec::new(),
            gmw: program.options.comparison == Comparison::Gmw,
            total_rounds: 0,
            fixed: vec![false; n],
            fixed_operand: vec![None; n],
            opening_readers: vec![0; n],
            layout,
        };
        let fixed = fixed_values(program);
        for i in 0..n {
            let id = plan.id(i as Pos);
            let cost = (costs.get(id))
                .ok_or_else(|| InterpError::NotAPlan(format!("{id} has no cost annotation")))?;
            plan.protocol.push(cost.protocol);
            plan.fixed[i] = fixed.contains(&id);
            if cost.protocol.has_fixed_operand() {
                let w = super::material::fixed_operand_of(program, id, &fixed);
                plan.fixed_operand[i] = Some(plan.pos(w));
            }
            if cost.protocol.communicates() {
                plan.own[i] = cost.rounds.eval(env).max(0) as u64;
                plan.start[i] = rounds.get(id).map_or(0, |m| m.eval(env)).max(0) as u64;
            }
        }
        for i in 0..n {
            if let Some(x) = plan.opening_of(i as Pos) {
                plan.opening_readers[x as usize] += 1;
            }
        }
        let mut seen = std::collections::HashSet::new();
        for w in plan.fixed_operand.iter().flatten() {
            if seen.insert(*w) {
                plan.setup_order.push(*w);
            }
        }
        for (id, m) in masked_nodes(program) {
            let i = plan.pos(id);
            plan.layout.add_read(i, plan.pos(m.mask));
            plan.masked.insert(i, m);
        }
        for (id, r) in head_regions(program) {
            let i = plan.pos(id);
            plan.layout.add_read(i, plan.pos(r.mask));
            plan.heads.insert(i, r);
        }
        plan.derive_epochs(program)?;
        Ok(plan)
    }

    /// Availability epochs, the per-round lists and the start order.
    fn derive_epochs(&mut self, program: &Program) -> Result<(), InterpError> {
        let n = self.len();
        for i in 0..n {
            let ready = match self.protocol[i] {
                // it reads its truncation's opening at the end of the truncation's round
                Protocol::DreluOpened => self.opening_ready(i as Pos),
                _ => (self.reads(i as Pos))
                    .map(|x| self.epoch[x as usize])
                    .max()
                    .unwrap_or(0),
            };
            self.after_shuffle[i] = self.protocol[i] == Protocol::Shuffle
                || self.reads(i as Pos).any(|x| self.after_shuffle[x as usize]);
            if self.communicating(i as Pos) {
                if ready > self.start[i] {
                    let id = self.id(i as Pos);
                    let message = match ready {
                        u64::MAX => "reads the opening of a stochastic truncation that does \
                                     not exchange in its round alone"
                            .to_string(),
                        _ => format!(
                            "scheduled in round {}, operands ready in round {ready}",
                            self.start[i]
                        ),
                    };
                    return Err(InterpError::Node {
                        at: At::of(id, program.graph.node(id)),
                        message,
                    });
                }
                self.epoch[i] = self.start[i] + self.own[i];
                self.total_rounds = self.total_rounds.max(self.epoch[i]);
            } else {
                self.epoch[i] = ready;
            }
        }
        let t = self.total_rounds as usize;
        self.rounds = vec![Vec::new(); t];
        self.locals = vec![Vec::new(); t + 1];
        for i in 0..n {
            if self.communicating(i as Pos) {
                let (s, o) = (self.start[i] as usize, self.own[i] as usize);
                for r in s..s + o {
                    self.rounds[r].push(i as Pos);
                }
                self.starts.push(i as Pos);
            } else if self.protocol[i] != Protocol::Shuffle {
                self.locals[self.epoch[i] as usize].push(i as Pos);
            }
        }
        let start = &self.start;
        self.starts.sort_by_key(|&i| start[i as usize]);
        Ok(())
    }

    /// The round in which the comparison at `i` may start: its truncation's, which it must
    /// end with (one round each); else never.
    fn opening_ready(&self, i: Pos) -> u64 {
        let x = self.operands(i)[0] as usize;
        let (s, t) = (i as usize, x);
        let paired = self.protocol[t] == Protocol::StochasticTrunc
            && self.own[t] == 1
            && self.own[s] == 1
            && self.start[t] == self.start[s];
        match paired {
            true => self.start[s],
            false => u64::MAX,
        }
    }

    /// How many nodes read the opening of the node at `i` (a stochastic truncation's).
    pub(crate) fn opening_readers(&self, i: Pos) -> u32 {
        self.opening_readers[i as usize]
    }

    /// The truncation whose opening the node at `i` reads, if it reads one.
    pub(crate) fn opening_of(&self, i: Pos) -> Option<Pos> {
        match self.protocol[i as usize] {
            Protocol::DreluOpened => Some(self.operands(i)[0]),
            Protocol::MuxOpened => Some(self.operands(i)[1]),
            _ => None,
        }
    }

    /// Whether the node at `i` exchanges messages in the call's rounds (a row maximum over
    /// rows of one element has no rounds and is local).
    pub(crate) fn communicating(&self, i: Pos) -> bool {
        self.protocol[i as usize].communicates() && self.own[i as usize] > 0
    }

    /// The protocol of the node at `i`.
    pub fn protocol(&self, i: Pos) -> Protocol {
        self.protocol[i as usize]
    }

    /// Whether the node at `i` has the same value in every call (weights and local
    /// functions of them).
    pub(crate) fn is_fixed(&self, i: Pos) -> bool {
        self.fixed[i as usize]
    }

    /// The masked-region nodes of sparse FFNs, by position.
    pub(crate) fn masked(&self) -> &HashMap<Pos, Masked> {
        &self.masked
    }

    /// The nodes of head-masked attention cores, by position.
    pub(crate) fn heads(&self) -> &HashMap<Pos, HeadRegion> {
        &self.heads
    }

    /// The fixed operand of the product at `i`, if it has one.
    pub(crate) fn fixed_operand(&self, i: Pos) -> Option<Pos> {
        self.fixed_operand[i as usize]
    }

    /// Whether the value at `i` depends on a shuffle's output.
    pub(crate) fn after_shuffle(&self, i: Pos) -> bool {
        self.after_shuffle[i as usize]
    }

    /// The local nodes computed before round `r` (`r = total_rounds`: after the last).
    pub(crate) fn locals(&self, r: u64) -> &[Pos] {
        &self.locals[r as usize]
    }

    /// The communicating nodes active in round `r`.
    pub(crate) fn round(&self, r: u64) -> &[Pos] {
        &self.rounds[r as usize]
    }

    /// Whether round `r` is the first round of the node at `i`.
    pub(crate) fn starts_in(&self, i: Pos, r: u64) -> bool {
        self.start[i as usize] == r
    }

    /// The communicating nodes in the order they start: the order in which a party takes
    /// their material.
    pub(crate) fn starts(&self) -> &[Pos] {
        &self.starts
    }

    /// The fixed operands in the order the session's setup opens them.
    pub(crate) fn setup_order(&self) -> &[Pos] {
        &self.setup_order
    }

    /// Whether the node at `i` is a `block_permute` node.
    pub(crate) fn is_shuffle(&self, i: Pos) -> bool {
        self.protocol[i as usize] == Protocol::Shuffle
    }
}

impl Deref for ExecPlan {
    type Target = Layout;

    fn deref(&self) -> &Layout {
        &self.layout
    }
}
