//! # The two-party plan interpreter
//!
//! docs/runtime.md, "What a party runs": both parties run the same protocol-stage plan,
//! party 0 (the server) with the weights it provides, party 1 (the client) with its inputs.
//! For one call at a concrete `env`, each party evaluates every node's start round
//! (`analyses.rounds`) and protocol ([`protocol_of`](comet_ir::protocol::protocol_of)), then walks rounds `0, 1, 2, …`: it
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

mod gathered;
mod head_rows;
mod local;
mod masked;
mod material;
mod party;
mod plan;
mod session;
mod setup;
mod start;

use std::collections::HashMap;

use comet_ir::{DimEnv, Program};
use ndarray::ArrayD;

use crate::dealer::MaterialError;
use crate::exec::{At, ExecError};
use crate::protocols::MessageError;
use crate::protocols::driver::RoundError;
use crate::transport::ChannelError;

pub use party::{PartyInputs, PartyMaterialHandle, PartyState, run_party};

pub use material::shuffle_setup_bytes;
pub use plan::ExecPlan;
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
    /// Per sparse unit, the KV refill of a head-sparse attention's cache products: rows
    /// opened by each product, missed rows among them, miss requests, and the naive
    /// refill's extra exchanges (all 0 for a dense plan or an FFN unit).
    pub kv: Vec<crate::protocols::cache_masked::Refill>,
}

impl Measured {
    /// The KV refill of the call summed over the attentions.
    pub fn kv_total(&self) -> crate::protocols::cache_masked::Refill {
        self.kv.iter().fold(Default::default(), |a, k| a.plus(k))
    }
}

/// The counts the estimate of the call's cost reads
/// ([`comet_ir::cost::NodeCost::online_at`]).
impl comet_ir::cost::UnitCounts for Measured {
    fn active(&self, k: u32) -> f64 {
        self.active.get(k as usize).copied().unwrap_or(0) as f64
    }
    fn kv_rows(&self, k: u32) -> f64 {
        self.kv.get(k as usize).map_or(0, |r| r.rows) as f64
    }
}

/// A call failed.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    /// The program is not a protocol-stage plan with schedule and costs.
    #[error("the interpreter runs protocol-stage plans with rounds analysed: {0}")]
    NotAPlan(String),
    /// A call's sizes make a value too large to hold (its element count overflows).
    #[error("the call's sizes do not fit: {0}")]
    Sizes(String),
    /// A node could not be computed.
    #[error("{at}: {message}")]
    Node {
        /// The node.
        at: At,
        /// What went wrong.
        message: String,
    },
    /// An input, weight or cache read failed the execution core's checks.
    #[error(transparent)]
    Exec(#[from] ExecError),
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

/// What a long call reports as it goes, to a [`RunOptions::progress`] callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The session's setup opened fixed operand `done` of `total` (`bytes` of `W − B`
    /// sent so far by this party, of `total_bytes`).
    Setup {
        /// Operands opened.
        done: usize,
        /// Operands in all.
        total: usize,
        /// Bytes sent so far.
        bytes: u64,
        /// Bytes to send in all.
        total_bytes: u64,
    },
    /// Round `done` of the call's `total` rounds ended.
    Round {
        /// Rounds done.
        done: u64,
        /// Rounds of the call.
        total: u64,
    },
}

/// A progress callback (called from the party's thread).
pub type ProgressFn = std::sync::Arc<dyn Fn(u8, Progress) + Send + Sync>;

/// How a party runs its calls: the setup's chunk size, and who hears of progress.
#[derive(Clone)]
pub struct RunOptions {
    /// The setup sends `W − B` in exchanges of at most this many payload bytes (4 MiB by
    /// default), so that no frame grows with the model. Small chunks also keep the
    /// exchange's buffers below the allocator's mapping threshold (glibc: 32 MiB), so they
    /// are reused rather than freshly mapped and zeroed by the kernel for every chunk.
    pub chunk_bytes: usize,
    /// Called with the party and a [`Progress`] event during the setup and after each
    /// round (none by default).
    pub progress: Option<ProgressFn>,
    /// Head-masked cache products refill the rows their groups missed naively, each miss
    /// request in an exchange of its own (the baseline), rather than merged into the
    /// product's round (the default).
    pub naive_refill: bool,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("chunk_bytes", &self.chunk_bytes)
            .field("progress", &self.progress.is_some())
            .field("naive_refill", &self.naive_refill)
            .finish()
    }
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            chunk_bytes: 4 << 20,
            progress: None,
            naive_refill: false,
        }
    }
}

impl RunOptions {
    /// Ring elements per setup exchange.
    pub(crate) fn chunk_elements(&self) -> usize {
        (self.chunk_bytes / 8).max(1)
    }

    /// Reports `event` for `party`, if anyone listens.
    pub(crate) fn report(&self, party: u8, event: Progress) {
        if let Some(f) = &self.progress {
            f(party, event);
        }
    }
}

/// Runs one call of `program` at `env` with both parties in this process: party 0 (the
/// server) over `weights` it provides, party 1 (the client) over `inputs`, each source
/// handed only to the party the plan says provides it. The dealer's material for the call
/// (and the session's setup) is generated up front from `seed`. Returns the outputs as
/// their receivers decoded them, and what the call cost; for several calls sharing a KV
/// cache, use an [`InProcess`] session.
///
/// # Errors
/// As [`ExecPlan::new`], or if either party fails.
pub fn run_in_process(
    program: &Program,
    inputs: &HashMap<String, ArrayD<f64>>,
    weights: &HashMap<String, ArrayD<f64>>,
    env: DimEnv,
    seed: u64,
) -> Result<(HashMap<String, ArrayD<f64>>, Measured), InterpError> {
    InProcess::new(program, weights, seed).call(inputs, env)
}
