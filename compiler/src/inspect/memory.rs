//! Projected resident memory per party, from the plan alone (docs/runtime.md, "Projected
//! memory per party").
//!
//! For a prompt of `N` tokens and `M` generated tokens (a KV cache of `N + M − 1`
//! positions at the last decode step), each party's peak in a phase is the sum of the parts
//! live in it; every value is 8 bytes per element (an `f64` or a ring element):
//! - **process**: [`PROCESS_BYTES`] (binary, allocator, threads), in every phase;
//! - **fixed operands**: every distinct fixed operand of a product (a node whose protocol
//!   [`has_fixed_operand`]) is kept packed, in every phase (the setup's end): a two-sided
//!   one as `F = W − B` and the party's `B_p`, [`FIXED_OPERAND_ELEMENT_BYTES`] per
//!   element; a one-sided one (the server's weights) as `W` at its owner and `F` at the
//!   other party, [`ONE_SIDED_ELEMENT_BYTES`];
//! - **weights**: at their owner only, as `f64`. After the setup only the weights that a
//!   call still reads (anything but a chain of local fixed values ending in fixed
//!   operands, as the runtime's `set_up_only`) stay. During the setup every weight only
//!   the setup reads is dropped once encoded while its operands' `F` and `B_p` (16 bytes
//!   per element, at least as many elements) are added, so the setup's peak is its end
//!   unless its start (every weight of the party) is larger: the larger of the two counts;
//! - **KV cache**: every `cache_write` slot's value at the call's shape (`[h, N, k]` after
//!   the prefill, `[h, N + M − 1, k]` at the last decode step);
//! - **setup working set** (setup only): the largest fixed operand × [`SETUP_COPIES`]
//!   (its share, the mask, `W − B` being opened, the two packed copies) plus one
//!   [`SETUP_CHUNK_BYTES`] exchange;
//! - **call working set** (prefill, decode): [`LIVE_VALUES`] × the largest value a call
//!   computes (any node but those only the setup computes) at the call's shape — a bound
//!   for an operand pair and its result, since the runtime drops a value after its last
//!   reader;
//! - **material working set** (prefill, decode): one communicating node's material, the
//!   largest of the call: its half of the dealer's bytes (`offline_bits / 16`) plus the
//!   masks it expands from its seed, about as large as its own online message
//!   (`online_bits / 16`). The runtime takes material item by item as the walker reaches a
//!   node (in one process a dealer channel may hold 2 more items).
//!
//! Bytes per parameter = the party's largest phase peak / the elements of all weights.
//!
//! [`has_fixed_operand`]: comet_ir::protocol::Protocol::has_fixed_operand

use comet_ir::dim::numel;
use comet_ir::protocol::fixed_values;
use comet_ir::{DimEnv, NodeId, Op, Party, Program};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// The process itself (binary, allocator, threads): 0.5 GiB.
pub const PROCESS_BYTES: u64 = 512 << 20;
/// One setup exchange: the runtime opens `W − B` in chunks of at most 64 MiB.
pub const SETUP_CHUNK_BYTES: u64 = 64 << 20;
/// A two-sided fixed operand's element after setup: `F = W − B` and `B_p`, 8 bytes each.
pub const FIXED_OPERAND_ELEMENT_BYTES: u64 = 16;
/// A one-sided fixed operand's element after setup: `W` (owner) or `F` (other party).
pub const ONE_SIDED_ELEMENT_BYTES: u64 = 8;
/// An element of any value: an `f64` or a ring element.
pub const VALUE_ELEMENT_BYTES: u64 = 8;
/// Copies of the fixed operand being set up: its share, the mask, `W − B` being opened,
/// and the two packed copies.
pub const SETUP_COPIES: u64 = 5;
/// Values of the largest size live at once in a call (two operands and a result).
pub const LIVE_VALUES: u64 = 3;

/// One party's figures in one phase, in bytes; `peak_bytes` is the sum of the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PhaseMemory {
    /// Resident peak: the sum of the parts below.
    pub peak_bytes: u64,
    /// The process itself.
    pub process_bytes: u64,
    /// `F = W − B` and `B_p` of every fixed operand.
    pub fixed_operands_bytes: u64,
    /// The party's weights held as `f64`.
    pub weights_bytes: u64,
    /// The KV cache's shares, and the opened rows of the slots that `cache_matmul`
    /// products read (as many elements again: both parties keep them).
    pub kv_cache_bytes: u64,
    /// The fixed operand being set up and one exchange (setup only).
    pub setup_working_bytes: u64,
    /// The largest live values of a call (prefill, decode).
    pub call_working_bytes: u64,
    /// The largest node's material (prefill, decode).
    pub material_working_bytes: u64,
}

impl PhaseMemory {
    /// Sets `peak_bytes` to the sum of the parts.
    fn summed(mut self) -> PhaseMemory {
        self.peak_bytes = self.process_bytes
            + self.fixed_operands_bytes
            + self.weights_bytes
            + self.kv_cache_bytes
            + self.setup_working_bytes
            + self.call_working_bytes
            + self.material_working_bytes;
        self
    }
}

/// One party's projected memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartyMemory {
    /// 0 (the server, which owns the weights) or 1 (the client).
    pub party: u8,
    /// The session's setup (in its first call).
    pub setup: PhaseMemory,
    /// The prefill, after the setup.
    pub prefill: PhaseMemory,
    /// The last decode step (the full context), if there is one.
    pub decode: Option<PhaseMemory>,
    /// The largest of the phases' peaks.
    pub peak_bytes: u64,
    /// `peak_bytes / parameters` (`None` for a plan without weights).
    pub bytes_per_parameter: Option<f64>,
}

/// The projection for both parties.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryReport {
    /// Elements of all weights.
    pub parameters: u64,
    /// Elements of all distinct fixed operands.
    pub fixed_operand_elements: u64,
    /// Those of one-sided fixed operands (kept as `W` or `F` alone).
    pub one_sided_elements: u64,
    /// Elements of the largest fixed operand.
    pub largest_fixed_operand_elements: u64,
    /// KV-cache positions at the last call (`N + M − 1`; `N` without decode steps).
    pub context: u64,
    /// Party 0, then party 1.
    pub parties: Vec<PartyMemory>,
}

/// What the projection needs of one evaluated call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallFigures {
    /// The call's `seq` and `past`.
    pub env: DimEnv,
    /// The largest `online_bits + offline_bits` of one node in the call.
    pub max_node_bits: u64,
}

/// The fixed operand of product `id`: the right one of a block-sparse product, else
/// whichever operand is fixed (the right one when both are), as the runtime picks it.
pub fn fixed_operand_of(p: &Program, id: NodeId, fixed: &HashSet<NodeId>) -> NodeId {
    let xs = p.graph.operands(id);
    match p.graph.node(id).op {
        Op::BlockMatMul { .. } => xs[1],
        _ if fixed.contains(&xs[1]) => xs[1],
        _ => xs[0],
    }
}

/// Figures of the plan that do not depend on the call.
struct PlanFacts {
    /// Distinct fixed operands, in canonical order of their first product.
    fixed_operands: Vec<NodeId>,
    /// Nodes computed only during the setup.
    set_up_only: HashSet<NodeId>,
    /// Every weight, once per name.
    weights: Vec<WeightFacts>,
}

/// One weight (by name).
#[derive(Debug, Clone, Copy)]
struct WeightFacts {
    elements: u64,
    owner: Party,
    /// Whether a call still reads it, so that the runtime keeps it after the setup.
    kept: bool,
}

impl PlanFacts {
    /// `party`'s weights as `f64`: all of them, or those kept after the setup.
    fn weights_bytes(&self, party: Party, kept_only: bool) -> u64 {
        (self.weights.iter())
            .filter(|w| w.owner == party && (w.kept || !kept_only))
            .map(|w| w.elements * VALUE_ELEMENT_BYTES)
            .sum()
    }
}

/// The shape of a value that is the same in every call (no `seq` or `past` dims).
const FIXED_ENV: DimEnv = DimEnv { seq: 1, past: 0 };

fn elements(p: &Program, id: NodeId, env: DimEnv) -> u64 {
    numel(&p.graph.node(id).ty.shape, env)
}

impl PlanFacts {
    fn new(p: &Program) -> PlanFacts {
        let order = p.canonical_order().unwrap_or_default();
        let fixed = fixed_values(p);
        let costs = p.analyses.costs.as_ref();
        let fixed_operand: HashMap<NodeId, NodeId> = (order.iter())
            .filter(|id| {
                costs
                    .and_then(|c| c.get(**id))
                    .is_some_and(|c| c.protocol.has_fixed_operand())
            })
            .map(|&id| (id, fixed_operand_of(p, id, &fixed)))
            .collect();
        let mut seen = HashSet::new();
        let fixed_operands = (order.iter())
            .filter_map(|id| fixed_operand.get(id).copied())
            .filter(|w| seen.insert(*w))
            .collect();
        let set_up_only = set_up_only(p, &order, &fixed, &fixed_operand);
        let weights = weights(p, &order, &set_up_only);
        PlanFacts {
            fixed_operands,
            set_up_only,
            weights,
        }
    }
}

/// Fixed values needed only to set up fixed operands: used only as the fixed operand of
/// products, or by other such values (the runtime's `set_up_only`).
fn set_up_only(
    p: &Program,
    order: &[NodeId],
    fixed: &HashSet<NodeId>,
    fixed_operand: &HashMap<NodeId, NodeId>,
) -> HashSet<NodeId> {
    let mut only = HashSet::new();
    for &id in order.iter().rev() {
        let users = p.graph.users(id);
        if !fixed.contains(&id) || users.is_empty() {
            continue;
        }
        let by_setup = |u: &NodeId| only.contains(u) || fixed_operand.get(u) == Some(&id);
        if users.iter().all(by_setup) {
            only.insert(id);
        }
    }
    only
}

/// Each weight by name: elements, owner, and whether some `weight` node of it is read by a
/// call.
fn weights(p: &Program, order: &[NodeId], set_up_only: &HashSet<NodeId>) -> Vec<WeightFacts> {
    let mut by_name: HashMap<&str, WeightFacts> = HashMap::new();
    let mut names = Vec::new();
    for &id in order {
        let Op::Weight { name } = &p.graph.node(id).op else {
            continue;
        };
        let w = by_name.entry(name).or_insert_with(|| {
            names.push(name.as_str());
            WeightFacts {
                elements: elements(p, id, FIXED_ENV),
                owner: p.info.weight(name).map_or(Party::Server, |w| w.party),
                kept: false,
            }
        });
        w.kept |= !set_up_only.contains(&id);
    }
    names.iter().map(|n| by_name[n]).collect()
}

/// Projects both parties' resident memory; `decode` is the last decode step, if any.
pub(crate) fn project(
    p: &Program,
    prefill: CallFigures,
    decode: Option<CallFigures>,
) -> MemoryReport {
    let facts = PlanFacts::new(p);
    let sizes: Vec<u64> = (facts.fixed_operands.iter())
        .map(|w| elements(p, *w, FIXED_ENV))
        .collect();
    let fixed_operand_elements: u64 = sizes.iter().sum();
    let one_sided_elements: u64 = (facts.fixed_operands.iter().zip(&sizes))
        .filter(|(w, _)| comet_ir::protocol::mask_owner(p, **w).is_some())
        .map(|(_, n)| n)
        .sum();
    let fixed_bytes = one_sided_elements * ONE_SIDED_ELEMENT_BYTES
        + (fixed_operand_elements - one_sided_elements) * FIXED_OPERAND_ELEMENT_BYTES;
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let parameters = facts.weights.iter().map(|w| w.elements).sum();
    let context = decode.map_or(prefill.env.seq, |d| d.env.seq + d.env.past);
    let prefill = call_parts(p, &facts, prefill);
    let decode = decode.map(|d| call_parts(p, &facts, d));
    let parties = [Party::Server, Party::Client]
        .into_iter()
        .map(|party| {
            let base = PhaseMemory {
                process_bytes: PROCESS_BYTES,
                fixed_operands_bytes: fixed_bytes,
                weights_bytes: facts.weights_bytes(party, true),
                ..PhaseMemory::default()
            };
            let setup = setup_phase(base, facts.weights_bytes(party, false), largest);
            let call = |c: PhaseMemory| base_plus(base, c);
            party_memory(party, setup, call(prefill), decode.map(call), parameters)
        })
        .collect();
    MemoryReport {
        parameters,
        fixed_operand_elements,
        one_sided_elements,
        largest_fixed_operand_elements: largest,
        context,
        parties,
    }
}

/// The setup's peak: at its end (`base`) or at its start (every weight, no fixed operand
/// yet), whichever is larger, plus the working set of one fixed operand.
fn setup_phase(base: PhaseMemory, all_weights_bytes: u64, largest_elements: u64) -> PhaseMemory {
    let start = PhaseMemory {
        fixed_operands_bytes: 0,
        weights_bytes: all_weights_bytes,
        ..base
    };
    let held = |m: &PhaseMemory| m.fixed_operands_bytes + m.weights_bytes;
    let phase = if held(&start) > held(&base) {
        start
    } else {
        base
    };
    PhaseMemory {
        setup_working_bytes: largest_elements * SETUP_COPIES * VALUE_ELEMENT_BYTES
            + SETUP_CHUNK_BYTES,
        ..phase
    }
    .summed()
}

/// The parts of a call that are the same for both parties: the KV cache and the working
/// sets at the call's shape.
fn call_parts(p: &Program, facts: &PlanFacts, c: CallFigures) -> PhaseMemory {
    // copies of a slot's rows: the shares; the opened rows of a cache product; this
    // party's `K_p − B_p` of a head-masked product's rows (read while a row waits)
    let copies: std::collections::HashMap<u32, u64> = (p.graph.ids())
        .filter_map(|id| match p.graph.node(id).op {
            Op::CacheMatMul { slot, .. } => {
                let head_masked = comet_ir::sparse::is_head_masked(p, id);
                Some((slot, if head_masked { 3 } else { 2 }))
            }
            _ => None,
        })
        .collect();
    let mut kv_elements = 0;
    let mut largest_value = 0;
    for id in p.graph.ids() {
        if let Op::CacheWrite { slot } = p.graph.node(id).op {
            kv_elements += copies.get(&slot).copied().unwrap_or(1) * elements(p, id, c.env);
        }
        if !facts.set_up_only.contains(&id) {
            largest_value = largest_value.max(elements(p, id, c.env));
        }
        // a cache product reads its cache operand repeated per query group
        if let Op::CacheMatMul { groups, .. } = p.graph.node(id).op {
            let cache = p.graph.operands(id)[1];
            largest_value = largest_value.max(groups * elements(p, cache, c.env));
        }
    }
    PhaseMemory {
        kv_cache_bytes: kv_elements * VALUE_ELEMENT_BYTES,
        call_working_bytes: LIVE_VALUES * largest_value * VALUE_ELEMENT_BYTES,
        material_working_bytes: c.max_node_bits / 16,
        ..PhaseMemory::default()
    }
}

/// A call after the setup: what a party holds across calls (`base`) plus `call`'s parts.
fn base_plus(base: PhaseMemory, call: PhaseMemory) -> PhaseMemory {
    PhaseMemory {
        kv_cache_bytes: call.kv_cache_bytes,
        call_working_bytes: call.call_working_bytes,
        material_working_bytes: call.material_working_bytes,
        ..base
    }
    .summed()
}

fn party_memory(
    party: Party,
    setup: PhaseMemory,
    prefill: PhaseMemory,
    decode: Option<PhaseMemory>,
    parameters: u64,
) -> PartyMemory {
    let peak_bytes = [Some(setup), Some(prefill), decode]
        .iter()
        .flatten()
        .map(|m| m.peak_bytes)
        .max()
        .unwrap_or(0);
    PartyMemory {
        party: party.index() as u8,
        setup,
        prefill,
        decode,
        peak_bytes,
        bytes_per_parameter: (parameters > 0).then(|| peak_bytes as f64 / parameters as f64),
    }
}
