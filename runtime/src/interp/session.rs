//! Sessions: the calls of one generation (prefill, then decode steps) share a dealer
//! session, the parties' KV caches and the fixed operands, which are opened once, in the
//! first call's setup exchange.
//!
//! [`InProcess`] runs both parties in this process (two threads over an in-memory channel,
//! the dealer in process). [`RemoteParty`] is one party of a two-process run: it replays
//! its material file and talks to the other party over any [`Channel`] (TCP).

use std::collections::HashMap;

use comet_ir::{DimEnv, Program};
use ndarray::ArrayD;

use std::sync::mpsc::{SyncSender, sync_channel};

use super::material::{
    ChannelSource, DealOrder, Item, PartyMaterial, ReplaySource, deal_call_items,
};
use super::party::{PartyInputs, PartyMaterialHandle, PartyState, run_party};
use super::{ExecPlan, InterpError, Measured, RunOptions};
use crate::dealer::{MaterialError, PartyReplay, SessionDealer};
use crate::protocols::PartyId;
use crate::protocols::driver::{RoundError, run_two_party};
use crate::transport::{Channel, ChannelStats};

/// Outputs of a call, by name, as their receiver decoded them.
pub type Outputs = HashMap<String, ArrayD<f64>>;

/// How many material items the dealer thread of an in-process call may be ahead of a
/// party: a bound on the dealer's working set.
const ITEMS_AHEAD: usize = 2;

/// Deals a call's material on its own thread and sends each party its half, item by item,
/// through bounded channels; returns the call's and the setup's offline bytes.
fn deal_to_channels(
    program: &Program,
    plan: &ExecPlan,
    env: DimEnv,
    deal: &mut SessionDealer,
    set_up: bool,
    txs: [SyncSender<Result<Item, MaterialError>>; 2],
) -> Result<(u64, u64), MaterialError> {
    let result = deal_call_items(program, plan, env, deal, set_up, |pair| {
        for (tx, item) in txs.iter().zip(pair) {
            let item =
                item.ok_or_else(|| MaterialError::Mismatch("a party's half is missing".into()))?;
            // a party that stopped early drops its receiver: its own error is reported
            let _ = tx.send(Ok(item));
        }
        Ok(())
    });
    if let Err(e) = &result {
        for tx in &txs {
            let _ = tx.send(Err(MaterialError::Mismatch(format!(
                "the dealer failed: {e}"
            ))));
        }
    }
    result
}

/// Both parties of a session in this process, with an in-process dealer.
pub struct InProcess<'a> {
    program: &'a Program,
    sources: [PartyInputs; 2],
    dealer: SessionDealer,
    states: [PartyState; 2],
    set_up: bool,
    options: RunOptions,
}

impl std::fmt::Debug for InProcess<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess")
            .field("model", &self.program.info.name)
            .field("states", &self.states)
            .finish_non_exhaustive()
    }
}

impl<'a> InProcess<'a> {
    /// A session of `program` whose weights are split between the parties as the plan
    /// says; the dealer's randomness derives from `seed`.
    pub fn new(
        program: &'a Program,
        weights: &HashMap<String, ArrayD<f64>>,
        seed: u64,
    ) -> InProcess<'a> {
        InProcess::from_owned(program, weights.clone(), seed)
    }

    /// [`InProcess::new`] taking the weights without copying them; after the session's
    /// setup it keeps only those that later calls read.
    pub fn from_owned(
        program: &'a Program,
        weights: HashMap<String, ArrayD<f64>>,
        seed: u64,
    ) -> InProcess<'a> {
        InProcess::with_dealer(program, weights, SessionDealer::from_u64(seed))
    }

    /// [`InProcess::from_owned`] with the dealer's 32-byte `master` seed (from the
    /// operating system for a real run: a seed of a few bits is a session anyone can deal).
    pub fn from_master(
        program: &'a Program,
        weights: HashMap<String, ArrayD<f64>>,
        master: crate::dealer::PartySeed,
    ) -> InProcess<'a> {
        InProcess::with_dealer(program, weights, SessionDealer::new(master))
    }

    fn with_dealer(
        program: &'a Program,
        weights: HashMap<String, ArrayD<f64>>,
        dealer: SessionDealer,
    ) -> InProcess<'a> {
        let none = HashMap::new();
        let client = PartyInputs::for_party(program, 1, &none, &weights);
        InProcess {
            program,
            sources: [PartyInputs::take_weights(program, 0, weights), client],
            dealer,
            states: [PartyState::new(), PartyState::new()],
            set_up: false,
            options: RunOptions::default(),
        }
    }

    /// The same session reading the weights it was not given from `checkpoint` (mapped),
    /// one at a time as the setup reaches them.
    pub fn with_checkpoint(
        mut self,
        checkpoint: std::sync::Arc<crate::weights::Checkpoint>,
    ) -> Self {
        for s in &mut self.sources {
            s.checkpoint = Some(checkpoint.clone());
        }
        self
    }

    /// The same session with `options` (setup chunks, progress).
    pub fn with_options(mut self, options: RunOptions) -> Self {
        self.options = options;
        self
    }

    /// The parties' states (their KV-cache shares).
    pub fn states(&self) -> &[PartyState; 2] {
        &self.states
    }

    /// The parties' states, mutable (to invalidate cache entries, say).
    pub fn states_mut(&mut self) -> &mut [PartyState; 2] {
        &mut self.states
    }

    /// Runs one call at `env` with the parties' `inputs`.
    ///
    /// # Errors
    /// As [`ExecPlan::new`], or if either party fails.
    pub fn call(
        &mut self,
        inputs: &Outputs,
        env: DimEnv,
    ) -> Result<(Outputs, Measured), InterpError> {
        let program = self.program;
        let plan = ExecPlan::new(program, env)?;
        let none = HashMap::new();
        for (p, s) in self.sources.iter_mut().enumerate() {
            s.inputs = PartyInputs::for_party(program, p, inputs, &none).inputs;
        }
        let [s0, s1] = &mut self.sources;
        let [st0, st1] = &mut self.states;
        let (sc, set_up) = (&plan, self.set_up);
        let (opts0, opts1) = (self.options.clone(), self.options.clone());
        let dealer = &mut self.dealer;
        let (tx0, rx0) = sync_channel(ITEMS_AHEAD);
        let (tx1, rx1) = sync_channel(ITEMS_AHEAD);
        let (dealt, (r0, r1)) = std::thread::scope(|s| {
            let d = s.spawn(move || deal_to_channels(program, sc, env, dealer, set_up, [tx0, tx1]));
            let m0 = PartyMaterialHandle(PartyMaterial::new(Box::new(ChannelSource(rx0))));
            let m1 = PartyMaterialHandle(PartyMaterial::new(Box::new(ChannelSource(rx1))));
            let runs = run_two_party(
                move |ch| run_party(program, sc, 0, env, s0, m0, st0, ch, opts0),
                move |ch| run_party(program, sc, 1, env, s1, m1, st1, ch, opts1),
            );
            let dealt = d.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            (dealt, runs)
        });
        let outputs = match (r0.output, r1.output) {
            (Ok(mut a), Ok(b)) => {
                a.extend(b);
                a
            }
            (Err(a), Err(b)) => return Err(root_cause(a, b)),
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(e),
        };
        let (offline_bytes, setup_bytes) = dealt?;
        if !self.set_up {
            for s in &mut self.sources {
                s.drop_set_up_weights(program, &plan);
            }
        }
        self.set_up = true;
        let sent = |s: &ChannelStats| s.online.payload_bytes_sent;
        let setup = |s: &ChannelStats| s.setup.payload_bytes_sent;
        let measured = Measured {
            online_bits: 8 * (sent(&r0.stats) + sent(&r1.stats)),
            rounds: r0.stats.online.rounds,
            offline_bits: 8 * offline_bytes,
            setup_bits: 8 * (setup(&r0.stats) + setup(&r1.stats)),
            setup_offline_bits: 8 * setup_bytes,
            active: self.states[0].last_active.clone(),
            kv: self.states[0].last_kv.clone(),
        };
        Ok((outputs, measured))
    }
}

/// Of two parties' errors in one process, the one that caused the other: a party that
/// fails closes its end, and the other then reports the disconnect (party 1's bad token
/// id would otherwise surface as party 0's "peer disconnected").
fn root_cause(a: InterpError, b: InterpError) -> InterpError {
    use crate::transport::ChannelError::Disconnected;
    let disconnected = |e: &InterpError| {
        matches!(
            e,
            InterpError::Channel(Disconnected { .. })
                | InterpError::Round(RoundError::Channel(Disconnected { .. }))
        )
    };
    match disconnected(&a) && !disconnected(&b) {
        true => b,
        false => a,
    }
}

/// One party of a two-process session: its sources, its material replayed from a file,
/// its state, and the channel to the other party.
pub struct RemoteParty<'a, C: Channel> {
    program: &'a Program,
    party: PartyId,
    sources: PartyInputs,
    replay: PartyReplay,
    state: PartyState,
    ch: C,
    set_up: bool,
    options: RunOptions,
}

impl<C: Channel> std::fmt::Debug for RemoteParty<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteParty")
            .field("party", &self.party)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<'a, C: Channel> RemoteParty<'a, C> {
    /// Party `replay.party()` of `program`, providing the `weights` the plan says it
    /// provides, over `ch` (already handshaken).
    pub fn new(
        program: &'a Program,
        weights: &HashMap<String, ArrayD<f64>>,
        replay: PartyReplay,
        ch: C,
    ) -> RemoteParty<'a, C> {
        let mine = PartyInputs::for_party(
            program,
            usize::from(replay.party()),
            &HashMap::new(),
            weights,
        );
        RemoteParty::from_owned(program, mine.weights, replay, ch)
    }

    /// [`RemoteParty::new`] taking the weights without copying them; after the session's
    /// setup it keeps only those that later calls read.
    pub fn from_owned(
        program: &'a Program,
        weights: HashMap<String, ArrayD<f64>>,
        replay: PartyReplay,
        ch: C,
    ) -> RemoteParty<'a, C> {
        let party = replay.party();
        RemoteParty {
            program,
            party,
            sources: PartyInputs::take_weights(program, usize::from(party), weights),
            replay,
            state: PartyState::new(),
            ch,
            set_up: false,
            options: RunOptions::default(),
        }
    }

    /// The same party reading the weights it was not given from `checkpoint` (mapped), one
    /// at a time as the setup reaches them.
    pub fn with_checkpoint(
        mut self,
        checkpoint: std::sync::Arc<crate::weights::Checkpoint>,
    ) -> Self {
        self.sources.checkpoint = Some(checkpoint);
        self
    }

    /// The same party with `options` (setup chunks, progress); both parties must cut the
    /// setup the same way.
    pub fn with_options(mut self, options: RunOptions) -> Self {
        self.options = options;
        self
    }

    /// The party's state (its KV-cache shares).
    pub fn state(&self) -> &PartyState {
        &self.state
    }

    /// The party's state, mutable (to fill or invalidate cache entries, say).
    pub fn state_mut(&mut self) -> &mut PartyState {
        &mut self.state
    }

    /// The channel to the other party (to bound its messages by the plan, say).
    pub fn channel_mut(&mut self) -> &mut C {
        &mut self.ch
    }

    /// The material replay (to check that no bytes are left at the end).
    pub fn replay_mut(&mut self) -> &mut PartyReplay {
        &mut self.replay
    }

    /// Runs this party's side of one call at `env` with its `inputs`. The figures are
    /// this party's view: the payload both parties sent (what it sent and received),
    /// rounds, and the material bytes it read from its file.
    ///
    /// # Errors
    /// As [`ExecPlan::new`], if the material runs out or does not fit, or if the call
    /// fails (the channel included).
    pub fn call(
        &mut self,
        inputs: &Outputs,
        env: DimEnv,
    ) -> Result<(Outputs, Measured), InterpError> {
        let program = self.program;
        let plan = ExecPlan::new(program, env)?;
        let p = usize::from(self.party);
        self.sources.inputs = PartyInputs::for_party(program, p, inputs, &HashMap::new()).inputs;
        let before = self.ch.stats();
        let mut source = ReplaySource {
            items: DealOrder::new(program, &plan, env, self.set_up),
            deal: &mut self.replay,
            party: p,
        };
        let outputs = run_party(
            program,
            &plan,
            self.party,
            env,
            &mut self.sources,
            PartyMaterialHandle(PartyMaterial::new(Box::new(&mut source))),
            &mut self.state,
            &mut self.ch,
            self.options.clone(),
        )?;
        let (offline_bytes, setup_bytes) = (source.items.call_bytes, source.items.setup_bytes);
        if !self.set_up {
            self.sources.drop_set_up_weights(program, &plan);
        }
        self.set_up = true;
        let s = self.ch.stats_since(&before);
        let measured = Measured {
            online_bits: 8 * (s.online.payload_bytes_sent + s.online.payload_bytes_received),
            rounds: s.online.rounds,
            offline_bits: 8 * offline_bytes,
            setup_bits: 8 * (s.setup.payload_bytes_sent + s.setup.payload_bytes_received),
            setup_offline_bits: 8 * setup_bytes,
            active: self.state.last_active.clone(),
            kv: self.state.last_kv.clone(),
        };
        Ok((outputs, measured))
    }
}

/// Deals the material of a session's `calls` (the setup first, with the first call) from
/// `dealer`, which records it to the parties' files; `progress(k, bytes)` hears of each
/// call. Returns the bytes materialised per call (both parties), as
/// [`Measured::offline_bits`]` / 8` would count them in process, and those of the
/// session's setup (the shuffles' corrections, [`Measured::setup_offline_bits`]` / 8`).
///
/// # Errors
/// As [`ExecPlan::new`] for a call's sizes.
pub fn deal_session(
    program: &Program,
    calls: &[DimEnv],
    dealer: &mut SessionDealer,
    mut progress: impl FnMut(usize, u64),
) -> Result<(Vec<u64>, u64), InterpError> {
    let mut per_call = Vec::with_capacity(calls.len());
    let mut setup = 0;
    for (k, &env) in calls.iter().enumerate() {
        let (call_bytes, setup_bytes) = deal_call(program, env, dealer, k > 0)?;
        setup += setup_bytes;
        per_call.push(call_bytes);
        progress(k, call_bytes);
    }
    Ok((per_call, setup))
}

/// Deals one call's material at `env` (and the session's setup, unless it is `set_up`)
/// from `dealer` into its recording sinks, item by item, keeping none of it. Returns the
/// call's offline bytes and the setup's, as [`Measured::offline_bits`]` / 8` and
/// [`Measured::setup_offline_bits`]` / 8` count them.
///
/// # Errors
/// As [`ExecPlan::new`] for the call's sizes, or if the dealer fails.
pub fn deal_call(
    program: &Program,
    env: DimEnv,
    dealer: &mut SessionDealer,
    set_up: bool,
) -> Result<(u64, u64), InterpError> {
    let plan = ExecPlan::new(program, env)?;
    Ok(deal_call_items(
        program,
        &plan,
        env,
        dealer,
        set_up,
        |_| Ok(()),
    )?)
}

/// What [`deal_to_files`] wrote.
#[derive(Debug, Clone)]
pub struct DealtFiles {
    /// `party0.mat` and `party1.mat`.
    pub paths: [std::path::PathBuf; 2],
    /// Bytes materialised per call, both parties (as [`deal_session`] counts them).
    pub per_call: Vec<u64>,
    /// DReLU key headers written beyond the estimate, both parties.
    pub header_bytes: u64,
    /// The setup's material (the shuffles' corrections), both parties.
    pub setup_bytes: u64,
    /// Each file's size.
    pub file_bytes: [u64; 2],
}

/// Deals a session of `calls` into `dir/party0.mat` and `dir/party1.mat` (the format of
/// [`crate::dealer::file`]) from the dealer's `master` seed, under session nonce `session`
/// (the session id derives from it, [`crate::dealer::file::session_id`]); `progress` as in
/// [`deal_session`]. The files are created new (mode 0600): an existing one is an error and
/// is left as it was. A marker left by an earlier, removed file of the same name is
/// removed: a freshly dealt file is unused.
///
/// # Errors
/// If a file exists or cannot be written, or as [`deal_session`].
pub fn deal_to_files(
    program: &Program,
    calls: &[DimEnv],
    dir: &std::path::Path,
    master: crate::dealer::PartySeed,
    session: [u8; 32],
    progress: impl FnMut(usize, u64),
) -> Result<DealtFiles, InterpError> {
    use crate::dealer::{MaterialError, MaterialHeader, file, plan_digest};
    let dealer = SessionDealer::new(master).streaming();
    let digest = plan_digest(program);
    let paths = [0, 1].map(|p| dir.join(format!("party{p}.mat")));
    if let Some(existing) = paths.iter().find(|p| p.exists()) {
        return Err(MaterialError::Exists(existing.clone()).into());
    }
    let mut sinks: Vec<Box<dyn std::io::Write + Send>> = Vec::new();
    for (p, path) in (0u8..).zip(&paths) {
        let header = MaterialHeader::new(
            p,
            digest,
            session,
            calls.to_vec(),
            dealer.party_seed(p),
            dealer.common_seed(),
        );
        match file::create(path, &header) {
            Ok(sink) => sinks.push(Box::new(sink)),
            Err(e) => {
                // created by this call a moment ago: remove it, leave the other as it was
                if p == 1 {
                    drop(sinks);
                    let _ = std::fs::remove_file(&paths[0]);
                }
                return Err(e.into());
            }
        }
        let _ = std::fs::remove_file(file::used_marker(path));
    }
    let [s0, s1]: [_; 2] = sinks
        .try_into()
        .unwrap_or_else(|_| unreachable!("two sinks"));
    let mut dealer = dealer.recording([s0, s1]);
    let (per_call, setup_bytes) = deal_session(program, calls, &mut dealer, progress)?;
    let header_bytes = dealer.header_bytes();
    dealer.finish().map_err(|e| MaterialError::io(dir, e))?;
    let file_bytes = [file::seal(&paths[0])?, file::seal(&paths[1])?];
    Ok(DealtFiles {
        paths,
        per_call,
        header_bytes,
        setup_bytes,
        file_bytes,
    })
}
