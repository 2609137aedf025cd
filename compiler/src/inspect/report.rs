//! The report: figures per call, per group and for the whole generation.

use super::InspectError;
use super::eval::{Grouping, NodeEval, Prepared, Sums, call_sums, group_sums};
use super::memory::{CallFigures, MemoryReport, project};
use super::net::NetProfile;
use crate::range::{RangeOptions, RangeReport, range_report};
use comet_ir::{Comparison, DimEnv, Program};
use serde::Serialize;
use serde::ser::SerializeStruct;

/// What to evaluate and under which assumptions.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectOptions {
    /// Prompt length `N`: the prefill call has `seq = N, past = 0`.
    pub prompt: u64,
    /// Tokens to generate `M ≥ 1`: the prefill yields the first, then `M − 1` decode steps
    /// with `seq = 1, past = N + j − 1` for `j = 1 ..= M − 1`.
    pub generate: u64,
    /// The network.
    pub net: NetProfile,
    /// Ring multiplications per second and party, for the compute estimate.
    pub compute_rate: f64,
    /// The declared bound on every weight entry, for the truncation failure bound.
    pub weight_bound: f64,
}

/// Default compute rate: 10^9 ring multiplications per second and party (an assumption
/// until the runtime benchmark calibrates it).
pub const DEFAULT_COMPUTE_RATE: f64 = 1e9;

impl Default for InspectOptions {
    fn default() -> Self {
        InspectOptions {
            prompt: 128,
            generate: 1,
            net: NetProfile::lan(),
            compute_rate: DEFAULT_COMPUTE_RATE,
            weight_bound: crate::range::DEFAULT_WEIGHT_BOUND,
        }
    }
}

/// Rounds, bits and local work of a call, a group, or several calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    /// Rounds after merging (for a group: rounds in which the group exchanges anything).
    pub rounds: u64,
    /// Rounds before merging: Σ of every node's own rounds.
    pub rounds_unmerged: u64,
    /// Online bits, both parties together.
    pub online_bits: u64,
    /// Dealer bits.
    pub offline_bits: u64,
    /// Ring multiplications per party.
    pub local_ops: u64,
}

impl Amounts {
    fn of(s: Sums) -> Amounts {
        Amounts {
            rounds: s.rounds,
            rounds_unmerged: s.rounds_unmerged,
            online_bits: s.online,
            offline_bits: s.offline,
            local_ops: s.ops,
        }
    }

    fn plus(self, o: Amounts) -> Amounts {
        Amounts {
            rounds: self.rounds + o.rounds,
            rounds_unmerged: self.rounds_unmerged + o.rounds_unmerged,
            online_bits: self.online_bits + o.online_bits,
            offline_bits: self.offline_bits + o.offline_bits,
            local_ops: self.local_ops + o.local_ops,
        }
    }

    /// Online bytes (`online_bits / 8`).
    pub fn online_bytes(&self) -> f64 {
        self.online_bits as f64 / 8.0
    }

    /// Dealer bytes (`offline_bits / 8`).
    pub fn offline_bytes(&self) -> f64 {
        self.offline_bits as f64 / 8.0
    }
}

/// Serialized with bytes beside the exact bits, for scripts.
impl Serialize for Amounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Amounts", 7)?;
        st.serialize_field("rounds", &self.rounds)?;
        st.serialize_field("rounds_unmerged", &self.rounds_unmerged)?;
        st.serialize_field("online_bits", &self.online_bits)?;
        st.serialize_field("online_bytes", &self.online_bytes())?;
        st.serialize_field("offline_bits", &self.offline_bits)?;
        st.serialize_field("offline_bytes", &self.offline_bytes())?;
        st.serialize_field("local_ops", &self.local_ops)?;
        st.end()
    }
}

/// Projected wall time and its parts, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// `rounds_s + transfer_s + compute_s`.
    pub total_s: f64,
    /// Rounds × per-round latency.
    pub rounds_s: f64,
    /// Online bits / bandwidth.
    pub transfer_s: f64,
    /// Local ops / compute rate.
    pub compute_s: f64,
}

impl Latency {
    /// The latency of `a` under `net` at `compute_rate` ring multiplications per second.
    pub fn of(a: &Amounts, net: &NetProfile, compute_rate: f64) -> Latency {
        let rounds_s = net.rounds_s(a.rounds);
        let transfer_s = net.transfer_s(a.online_bits);
        let compute_s = a.local_ops as f64 / compute_rate;
        Latency {
            total_s: rounds_s + transfer_s + compute_s,
            rounds_s,
            transfer_s,
            compute_s,
        }
    }
}

/// One row of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Layer, op kind or protocol name.
    pub name: String,
    /// The layer index (layer rows only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<u32>,
    /// The group's figures in this call.
    #[serde(flatten)]
    pub amounts: Amounts,
    /// The group's online bits / the call's online bits (0 when the call sends nothing).
    pub online_share: f64,
}

/// Figures of one or more calls with their projected latency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    /// How many calls are summed.
    pub calls: u64,
    /// Summed figures (rounds: Σ of each call's merged rounds).
    #[serde(flatten)]
    pub amounts: Amounts,
    /// Projected latency.
    pub latency: Latency,
}

/// One call of the plan, with its tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallReport {
    /// Tokens processed.
    pub seq: u64,
    /// Tokens cached before the call.
    pub past: u64,
    /// The call's totals.
    pub totals: Totals,
    /// Per layer, in layer order.
    pub by_layer: Vec<Row>,
    /// Per op kind, by online bits descending, then name.
    pub by_op_kind: Vec<Row>,
    /// Per protocol, by online bits descending, then name.
    pub by_protocol: Vec<Row>,
    /// The failure bound of the call's local truncations ([`crate::range`]).
    pub truncation: RangeReport,
}

/// The options a report was made with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// Prompt length.
    pub prompt: u64,
    /// Tokens generated (1 for a model without a KV cache).
    pub generate: u64,
    /// The network.
    pub net: NetProfile,
    /// Ring multiplications per second and party (assumed).
    pub compute_rate_ops_per_s: f64,
}

/// Everything `comet inspect` shows about one plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The plan's name (its path, for a file).
    pub plan: String,
    /// The model's name.
    pub model: String,
    /// The plan's comparison protocol.
    pub comparison: Comparison,
    /// How the plan chose its truncations (pass `faithful-trunc`; absent: every one local).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncation_policy: Option<comet_ir::TruncationPolicy>,
    /// The plan's approximation profiles (`exact`, `puma`, `softmax=pcf,gelu=bolt`).
    pub approx: String,
    /// Number of nodes.
    pub nodes: u64,
    /// Nodes whose protocol exchanges messages.
    pub communicating_nodes: u64,
    /// Whether the plan reads a KV cache (a decoder that generates token by token).
    pub kv_cache: bool,
    /// What was evaluated.
    pub settings: Settings,
    /// The prefill call.
    pub prefill: CallReport,
    /// The last decode step, if there is one.
    pub last_decode: Option<CallReport>,
    /// All decode steps together, if there are any.
    pub decode_steps: Option<Totals>,
    /// Prefill plus every decode step.
    pub generation: Totals,
    /// Remarks about the evaluation (e.g. `--generate` on a model without a KV cache).
    pub notes: Vec<String>,
    /// Projected resident memory per party and phase.
    pub memory: MemoryReport,
}

/// A head-sparse plan's KV refill, merged (the plan's rounds) against naive (`comet run
/// --kv-refill naive`): the naive refill's expected extra rounds per decode step at the
/// plan's densities, a group active after an inactive token missing rows with
/// probability `d·(1 − d)` if its activity is independent from token to token, and
/// sending them in an exchange per head-masked cache product (K and V, or V alone where
/// pass `head-mask-rounds` left `q·kᵀ` dense).
///
/// Side by side, one decode step after `past` tokens: the plan with every group active
/// (the dense attention's bytes, the predictor included), and at the plan's densities
/// merged and naive.
fn refill_note(p: &Program, past: u64) -> Option<String> {
    let s = p.options.sparsity.as_ref()?;
    let h = s.heads.as_ref()?;
    let units: Vec<u32> = (p.graph.ids())
        .filter(|&id| comet_ir::sparse::is_head_masked(p, id))
        .filter_map(|id| comet_ir::sparse::mask_unit(p, p.graph.operands(id)[3]))
        .collect();
    if units.is_empty() {
        return None;
    }
    let exchanges: f64 = (h.attentions.iter().enumerate())
        .map(|(k, a)| {
            let unit = h.first + k as u32;
            let d = s.density.get(unit as usize).copied().unwrap_or(1.0);
            let products = units.iter().filter(|&&u| u == unit).count() as f64;
            products * a.kv_heads as f64 * d * (1.0 - d)
        })
        .sum();
    let env = DimEnv { seq: 1, past };
    let rounds = crate::passes::schedule::total_rounds(p).eval(env);
    let mut all = s.clone();
    all.density.iter_mut().for_each(|d| *d = 1.0);
    let online = |sp: &comet_ir::SparsityOptions| -> u64 {
        let costs = p.analyses.costs.iter().flat_map(|c| c.iter());
        let bits: i128 = costs
            .map(|(_, c)| c.expected(Some(sp)).online_bits.eval(env))
            .sum();
        bits.max(0) as u64
    };
    let (dense, sparse) = (online(&all), online(s));
    let bytes = super::units::bits_as_bytes;
    Some(format!(
        "KV refill of the head-sparse attention: merged (these figures), a group's missed K/V \
         rows open in its cache products' own round, 0 extra rounds; naive (`comet run \
         --kv-refill naive`), an exchange per miss request and cache product, the same bytes \
         and about {exchanges:.1} extra rounds per decode step at the plan's densities \
         (G·d·(1 − d) per attention and head-masked product, for activity independent from \
         token to token); the estimates count each K/V row opened once. Side by side, one \
         decode step after {past} tokens: every group active {} in {rounds} rounds; \
         head-sparse, merged refill {} in {rounds} rounds; naive refill {} in about {:.1} \
         rounds",
        bytes(dense),
        bytes(sparse),
        bytes(sparse),
        rounds as f64 + exchanges,
    ))
}

/// Evaluates a costed program for `opts`; `plan` names it in the report and in errors.
pub fn report(p: &Program, plan: &str, opts: &InspectOptions) -> Result<Report, InspectError> {
    check_options(opts)?;
    let prep = Prepared::new(p, plan)?;
    let mut notes = Vec::new();
    let mut generate = opts.generate;
    if !prep.kv_cache && generate > 1 {
        notes.push(format!(
            "model `{}` reads no KV cache: it runs as one call, so --generate {generate} \
             does not apply",
            p.info.name
        ));
        generate = 1;
    }
    notes.extend(refill_note(p, opts.prompt));
    let mut vals = Vec::new();
    let env = DimEnv {
        seq: opts.prompt,
        past: 0,
    };
    prep.eval(env, plan, &mut vals)?;
    let prefill = call_report(p, &prep, env, &vals, opts);
    let prefill_figures = call_figures(env, &vals);
    let mut decode = Amounts::default();
    let mut last_decode = None;
    let mut decode_figures = None;
    for j in 1..generate {
        let env = DimEnv {
            seq: 1,
            past: opts.prompt + j - 1,
        };
        prep.eval(env, plan, &mut vals)?;
        decode = decode.plus(Amounts::of(call_sums(&vals)));
        if j == generate - 1 {
            last_decode = Some(call_report(p, &prep, env, &vals, opts));
            decode_figures = Some(call_figures(env, &vals));
        }
    }
    let steps = generate - 1;
    let decode_steps = (steps > 0).then(|| totals(steps, decode, opts));
    let generation = totals(generate, prefill.totals.amounts.plus(decode), opts);
    Ok(Report {
        plan: plan.to_string(),
        model: p.info.name.clone(),
        comparison: p.options.comparison,
        truncation_policy: p.options.truncation,
        approx: p.options.approx.to_string(),
        nodes: prep.len() as u64,
        communicating_nodes: prep.communicating as u64,
        kv_cache: prep.kv_cache,
        settings: Settings {
            prompt: opts.prompt,
            generate,
            net: opts.net.clone(),
            compute_rate_ops_per_s: opts.compute_rate,
        },
        prefill,
        last_decode,
        decode_steps,
        generation,
        notes,
        memory: project(p, prefill_figures, decode_figures),
    })
}

/// What the memory projection needs of an evaluated call.
fn call_figures(env: DimEnv, vals: &[NodeEval]) -> CallFigures {
    let max_node_bits = vals.iter().map(|v| v.online + v.offline).max();
    CallFigures {
        env,
        max_node_bits: max_node_bits.unwrap_or(0),
    }
}

fn check_options(opts: &InspectOptions) -> Result<(), InspectError> {
    let bad = |m: &str| Err(InspectError::Options(m.to_string()));
    if opts.prompt == 0 {
        return bad("the prompt must have at least one token");
    }
    if opts.generate == 0 {
        return bad("--generate must be at least 1 (the prefill yields the first token)");
    }
    if !(opts.weight_bound.is_finite() && opts.weight_bound > 0.0) {
        return bad("the weight bound must be a positive number");
    }
    if !(opts.compute_rate.is_finite() && opts.compute_rate > 0.0) {
        return bad("the compute rate must be a positive number of ring multiplications/s");
    }
    Ok(())
}

fn totals(calls: u64, amounts: Amounts, opts: &InspectOptions) -> Totals {
    Totals {
        calls,
        amounts,
        latency: Latency::of(&amounts, &opts.net, opts.compute_rate),
    }
}

fn call_report(
    p: &Program,
    prep: &Prepared,
    env: DimEnv,
    vals: &[NodeEval],
    opts: &InspectOptions,
) -> CallReport {
    let amounts = Amounts::of(call_sums(vals));
    let total = amounts.online_bits;
    let mut by_op_kind = rows(&prep.ops, vals, total);
    let mut by_protocol = rows(&prep.protocols, vals, total);
    for t in [&mut by_op_kind, &mut by_protocol] {
        t.sort_by(|a, b| (b.amounts.online_bits, &a.name).cmp(&(a.amounts.online_bits, &b.name)));
    }
    CallReport {
        seq: env.seq,
        past: env.past,
        totals: totals(1, amounts, opts),
        by_layer: rows(&prep.layers, vals, total),
        by_op_kind,
        by_protocol,
        truncation: range_report(p, env, &range_options(opts)),
    }
}

fn range_options(opts: &InspectOptions) -> RangeOptions {
    RangeOptions {
        weight_bound: opts.weight_bound,
    }
}

fn rows(g: &Grouping, vals: &[NodeEval], total_online: u64) -> Vec<Row> {
    group_sums(g, vals)
        .into_iter()
        .enumerate()
        .map(|(k, s)| Row {
            name: g.names[k].clone(),
            layer: g.layers[k],
            amounts: Amounts::of(s),
            online_share: if total_online == 0 {
                0.0
            } else {
                s.online as f64 / total_online as f64
            },
        })
        .collect()
}

/// Two reports side by side, with ratios `this / other`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompareReport {
    /// The plan being inspected.
    pub this: Report,
    /// The plan it is compared with.
    pub other: Report,
    /// `this / other` of the totals.
    pub ratios: Ratios,
}

/// Ratios of the totals; `None` where `other` is zero.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratios {
    /// Of the prefill calls.
    pub prefill: AmountRatios,
    /// Of the last decode steps (when both plans have one).
    pub last_decode: Option<AmountRatios>,
    /// Of the whole generations.
    pub generation: AmountRatios,
}

/// `this / other` of each figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AmountRatios {
    /// Rounds after merging.
    pub rounds: Option<f64>,
    /// Rounds before merging.
    pub rounds_unmerged: Option<f64>,
    /// Online bits.
    pub online_bits: Option<f64>,
    /// Dealer bits.
    pub offline_bits: Option<f64>,
    /// Local ring multiplications.
    pub local_ops: Option<f64>,
    /// Projected latency.
    pub latency_s: Option<f64>,
}

/// `a / b`, undefined when `b` is zero.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0).then(|| a / b)
}

impl AmountRatios {
    /// `this / other`.
    pub fn of(this: &Totals, other: &Totals) -> AmountRatios {
        let (a, b) = (&this.amounts, &other.amounts);
        let r = |x: u64, y: u64| ratio(x as f64, y as f64);
        AmountRatios {
            rounds: r(a.rounds, b.rounds),
            rounds_unmerged: r(a.rounds_unmerged, b.rounds_unmerged),
            online_bits: r(a.online_bits, b.online_bits),
            offline_bits: r(a.offline_bits, b.offline_bits),
            local_ops: r(a.local_ops, b.local_ops),
            latency_s: ratio(this.latency.total_s, other.latency.total_s),
        }
    }
}

/// Puts two reports side by side (made with the same options).
pub fn compare(this: Report, other: Report) -> CompareReport {
    let last = match (&this.last_decode, &other.last_decode) {
        (Some(a), Some(b)) => Some(AmountRatios::of(&a.totals, &b.totals)),
        _ => None,
    };
    let ratios = Ratios {
        prefill: AmountRatios::of(&this.prefill.totals, &other.prefill.totals),
        last_decode: last,
        generation: AmountRatios::of(&this.generation, &other.generation),
    };
    CompareReport {
        this,
        other,
        ratios,
    }
}
