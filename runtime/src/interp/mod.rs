//! # The two-party plan interpreter
//!
//! docs/runtime.md, "What a party runs": both parties run the same protocol-stage plan,
//! party 0 (the server) with the weights it provides, party 1 (the client) with its inputs.
//! For one call at a concrete `env`, each party evaluates every node's start round
//! (`analyses.rounds`) and protocol ([`protocol_of`]), then walks rounds `0, 1, 2, …`: it
//! computes every local node whose operands are ready, then starts every communicating
//! node scheduled in the round, packs all their messages into one buffer, makes **one**
//! [`Channel::exchange`], splits the peer's buffer the same way and finishes each node.
//! Products with a fixed operand (weights) open `W − B` once, in a setup exchange before
//! round 0 ([`Channel::exchange_setup`], not counted per call).
//!
//! Values are ring tensors: plaintext at their owner (`Private(p)`: the other party holds
//! nothing), public (both), or this party's share: additive for `Arith`; for `Bool` bits an
//! arithmetic 0/1 share under FSS comparisons, an XOR share (0 or 1 per element,
//! [`crate::protocols::xor`]) under GMW comparisons, which only `b2a` and `select`
//! consume. Local ops reuse the fixed-point backend's op
//! functions ([`crate::fixed`]), which are linear in a shared operand except for
//! `add_const` and `causal_mask` (party 0 adds the constant) and `trunc` (SecureML's local
//! truncation per party, ±1 ulp).
//!
//! Multi-round nodes step once per round ([`crate::protocols::Step`]): a GMW DReLU
//! ([`crate::protocols::gmw`], 7 rounds) and `row_max` (per level of its tree, the DReLU
//! rounds on the differences of adjacent pairs, then one round of select,
//! `max = b + [a ≥ b]·(a − b)`, an odd last element carried to the next level;
//! [`crate::protocols::row_max`]). Messages are bytes: the arithmetic protocols' `u64`s
//! packed little-endian, the boolean protocols' bits packed per element.
//!
//! [`Channel::exchange`]: crate::transport::Channel::exchange
//! [`Channel::exchange_setup`]: crate::transport::Channel::exchange_setup

mod material;
mod party;
mod session;

use std::collections::HashMap;

use comet_ir::protocol::{Protocol, fixed_values, protocol_of};
use comet_ir::{Comparison, DimEnv, NodeId, Program, Stage};
use ndarray::ArrayD;

use crate::dealer::MaterialError;
use crate::protocols::driver::RoundError;
use crate::protocols::{MessageError, gmw, row_max};
use crate::transport::ChannelError;

pub use party::{PartyInputs, PartyMaterialHandle, PartyState, run_party};
pub use session::{
    DealtFiles, InProcess, Outputs, RemoteParty, deal_call, deal_session, deal_to_files,
};

/// What a call cost, as the channel and the dealer counted it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measured {
    /// Online payload bits sent by both parties together (`8 ×` bytes).
    pub online_bits: u64,
    /// Online rounds (exchanges).
    pub rounds: u64,
    /// Bits the dealer materialised for the call (corrections, DCF correction words).
    pub offline_bits: u64,
    /// Setup payload bits (shuffles, opening fixed masks), both parties: once per session.
    pub setup_bits: u64,
    /// Dealer bits of the setup (the shuffles' corrections), once per session: not in
    /// `offline_bits`.
    pub setup_offline_bits: u64,
    /// Per sparse FFN: the active (token, block) pairs of the call's opened mask (empty
    /// for a dense plan). The estimate at these counts is what the call should cost.
    pub active: Vec<u64>,
}

/// A call failed.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    /// The program is not a protocol-stage plan with schedule and costs.
    #[error("the interpreter runs protocol-stage plans with rounds analysed: {0}")]
    NotAPlan(String),
    /// A node could not be computed.
    #[error("{node} (`{op}`): {message}")]
    Node {
        /// The node.
        node: NodeId,
        /// Its op.
        op: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A round failed.
    #[error(transparent)]
    Round(#[from] RoundError),
    /// A peer message had the wrong size.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The channel failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The dealer's material could not be produced or read.
    #[error(transparent)]
    Material(#[from] MaterialError),
}

/// The concrete schedule of a call: every node's protocol and, for communicating nodes,
/// its start round; in canonical (topological) order.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Nodes in canonical order.
    pub order: Vec<NodeId>,
    /// Protocol per node.
    pub protocol: HashMap<NodeId, Protocol>,
    /// Start round per communicating node.
    pub start: HashMap<NodeId, u64>,
    /// Own rounds per communicating node (1; 7 for a GMW DReLU; per level of a row maximum
    /// over `t`, `⌈log2 t⌉` levels, 2 with FSS comparisons and 8 with GMW).
    pub own: HashMap<NodeId, u64>,
    /// Whether comparisons are GMW (bits XOR-shared) rather than FSS.
    pub gmw: bool,
    /// Rounds of the call: max over nodes of start + own rounds.
    pub total_rounds: u64,
}

impl Schedule {
    /// Evaluates the plan's schedule at `env`.
    ///
    /// # Errors
    /// If the program is not an analysed protocol-stage plan.
    pub fn new(program: &Program, env: DimEnv) -> Result<Schedule, InterpError> {
        if program.stage != Stage::Protocol {
            return Err(InterpError::NotAPlan(format!("stage {:?}", program.stage)));
        }
        let Some(rounds) = &program.analyses.rounds else {
            return Err(InterpError::NotAPlan("no `rounds` analysis".into()));
        };
        let order =
            (program.graph.topo_order()).map_err(|e| InterpError::NotAPlan(e.to_string()))?;
        let fixed = fixed_values(program);
        let gmw = program.options.comparison == Comparison::Gmw;
        let mut protocol = HashMap::new();
        let mut start = HashMap::new();
        let mut own = HashMap::new();
        let mut total_rounds = 0;
        for &id in &order {
            let proto = protocol_of(program, id, &fixed);
            protocol.insert(id, proto);
            if !proto.communicates() {
                continue;
            }
            let r = rounds.get(id).map_or(0, |m| m.eval(env)).max(0) as u64;
            let own_rounds = match proto {
                Protocol::RowMaxTree => {
                    row_max::rounds_per_level(gmw) * u64::from(row_max_levels(program, id, env))
                }
                Protocol::DreluGmw => gmw::ROUNDS as u64,
                _ => 1,
            };
            start.insert(id, r);
            own.insert(id, own_rounds);
            total_rounds = total_rounds.max(r + own_rounds);
        }
        Ok(Schedule {
            order,
            protocol,
            start,
            own,
            gmw,
            total_rounds,
        })
    }
}

/// The levels of the comparison tree of `row_max` node `id`: `⌈log2 t⌉` for rows of `t`.
pub(crate) fn row_max_levels(program: &Program, id: NodeId, env: DimEnv) -> u32 {
    let x = program.graph.operands(id)[0];
    let t = material::shape_of(program, x, env)
        .last()
        .copied()
        .unwrap_or(1);
    comet_ir::poly::ceil_log2(t as u64)
}

/// Runs one call of `program` at `env` with both parties in this process: party 0 (the
/// server) over `weights` it provides, party 1 (the client) over `inputs`, each source
/// handed only to the party the plan says provides it. The dealer's material for the call
/// (and the session's setup) is generated up front from `seed`. Returns the outputs as
/// their receivers decoded them, and what the call cost; for several calls sharing a KV
/// cache, use an [`InProcess`] session.
///
/// # Errors
/// As [`Schedule::new`], or if either party fails.
pub fn run_in_process(
    program: &Program,
    inputs: &HashMap<String, ArrayD<f64>>,
    weights: &HashMap<String, ArrayD<f64>>,
    env: DimEnv,
    seed: u64,
) -> Result<(HashMap<String, ArrayD<f64>>, Measured), InterpError> {
    InProcess::new(program, weights, seed).call(inputs, env)
}
