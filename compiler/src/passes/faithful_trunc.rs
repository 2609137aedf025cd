//! Pass `faithful-trunc`: each truncation of a shared value stays local (SecureML: no
//! communication, but wrong by about `2^(64 − bits)` with probability `|x|·2^scale / 2^64`
//! per element) only where the range analysis ([`crate::range`]) bounds that risk, and
//! elsewhere becomes a faithful truncation, never wrong by a wrap for `|x| < 2^62` ring
//! units, 1 round, of the policy's gate ([`TruncationPolicy::gate`],
//! `comet compile --faithful-gate`):
//!
//! - `stochastic` (default, [`Op::StochasticTrunc`],
//!   `comet_runtime::protocols::trunc_stochastic`): `x + r` opened and 16 dealer bytes per
//!   element; the floor or one more (stochastic rounding, unbiased), the last-bit error a
//!   local truncation has too;
//! - `exact` ([`Op::FaithfulTrunc`], `comet_runtime::protocols::trunc_fss`): the floor, by a
//!   DCF key on the dropped bits (396–404 bytes per element at 16 bits): bit for bit the
//!   fixed-point backend's result.
//!
//! The policy is the plan's [`TruncationPolicy`] (`comet compile --faithful-trunc`,
//! `--trunc-failure`, `--weight-bound`, `--trunc-context`):
//!
//! - `never`: every truncation local (the plans before this pass).
//! - `always`: every truncation faithful.
//! - `auto` (default): the **budget** `max_failure` (2^−40) bounds the union bound of the
//!   local truncations' failure probabilities in the design calls — a prefill of `context`
//!   tokens and a decode step after `context − 1` cached ones, whichever is larger per
//!   truncation. Truncations are kept local smallest risk first while the sum stays
//!   within the budget; the rest become faithful. A truncation whose input is unbounded,
//!   or whose declared ranges rest on a violated recipe assumption, is never kept local.
//!
//! So a plan's local truncations fail, in a call no larger than the design calls, with
//! probability at most the budget (`comet inspect` prints the figure per call). In the
//! 64-bit ring at 16 fractional bits a local truncation of a value bounded by `B` fails
//! with probability `B·2^-32` per element, so at the default budget almost every
//! truncation of a real model is faithful: what local truncation saves is only safe for
//! tiny tensors or far looser budgets.
//!
//! Truncations inside a sparse FFN's masked region are chosen like any other (their risk
//! counted at the dense size, an upper bound); a faithful one runs on the active entries
//! only, with its keys gathered there, like the region's other protocols.

use crate::range::{RangeOptions, TruncationRisk, truncation_risks};
use comet_ir::{DimEnv, FaithfulGate, FaithfulMode, NodeId, Op, Program, TruncationPolicy};
use std::collections::{HashMap, HashSet};

/// The default budget: 2^−40 per call.
pub const DEFAULT_MAX_FAILURE: f64 = 9.094947017729282e-13;

/// The default design context (tokens).
pub const DEFAULT_CONTEXT: u64 = 1024;

/// The default policy: `auto` at 2^−40 per call, weights `|w| ≤ 64`, context 1,024, the
/// stochastic gate.
pub fn default_policy() -> TruncationPolicy {
    TruncationPolicy {
        mode: FaithfulMode::Auto,
        max_failure: DEFAULT_MAX_FAILURE,
        weight_bound: crate::range::DEFAULT_WEIGHT_BOUND,
        context: DEFAULT_CONTEXT,
        gate: FaithfulGate::Stochastic,
    }
}

/// Runs the pass with the plan's policy (none: nothing changes).
pub fn run(p: &mut Program) {
    let Some(policy) = p.options.truncation else {
        return;
    };
    let faithful = choose(p, &policy);
    for id in faithful {
        let node = p.graph.node_mut(id);
        if let Op::Trunc { bits } = node.op {
            node.op = match policy.gate {
                FaithfulGate::Exact => Op::FaithfulTrunc { bits },
                FaithfulGate::Stochastic => Op::StochasticTrunc { bits },
            };
        }
    }
}

/// The truncations `policy` makes faithful.
pub fn choose(p: &Program, policy: &TruncationPolicy) -> Vec<NodeId> {
    let candidates = |risks: &[(NodeId, TruncationRisk)]| -> Vec<NodeId> {
        (risks.iter())
            .filter(|(_, t)| !t.faithful)
            .map(|(id, _)| *id)
            .collect()
    };
    match policy.mode {
        FaithfulMode::Never => Vec::new(),
        FaithfulMode::Always => {
            let opts = RangeOptions {
                weight_bound: policy.weight_bound,
            };
            candidates(&truncation_risks(p, DimEnv { seq: 1, past: 0 }, &opts))
        }
        FaithfulMode::Auto => auto(p, policy),
    }
}

/// `auto`: local smallest risk first within the budget.
fn auto(p: &Program, policy: &TruncationPolicy) -> Vec<NodeId> {
    let opts = RangeOptions {
        weight_bound: policy.weight_bound,
    };
    let n = policy.context.max(1);
    let calls = [
        DimEnv { seq: n, past: 0 },
        DimEnv {
            seq: 1,
            past: n - 1,
        },
    ];
    let void = calls.iter().any(|env| {
        !crate::range::range_report(p, *env, &opts)
            .violations
            .is_empty()
    });
    // per truncation, its largest total over the design calls
    let mut worst: HashMap<NodeId, f64> = HashMap::new();
    let mut order = Vec::new();
    for env in calls {
        for (id, t) in truncation_risks(p, env, &opts) {
            if t.faithful {
                continue;
            }
            let total = if t.bound.is_none() || void {
                1.0
            } else {
                t.elements as f64 * t.per_element
            };
            let e = worst.entry(id).or_insert_with(|| {
                order.push(id);
                0.0
            });
            *e = e.max(total);
        }
    }
    let mut by_risk = order.clone();
    by_risk.sort_by(|a, b| worst[a].total_cmp(&worst[b]));
    let mut spent = 0.0;
    let mut local = HashSet::new();
    for id in by_risk {
        let r = worst[&id];
        if r < 1.0 && spent + r <= policy.max_failure {
            spent += r;
            local.insert(id);
        }
    }
    order.into_iter().filter(|id| !local.contains(id)).collect()
}

/// Parses a probability: `2^-40`, `1e-12` or `0.001` (in (0, 1]).
///
/// # Errors
/// If it is not such a number.
pub fn parse_probability(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_prefix("2^") {
        Some(e) => e
            .parse::<f64>()
            .map(|e| 2f64.powf(e))
            .map_err(|_| format!("`{s}`: expected 2^E with a number E, such as 2^-40"))?,
        None => t
            .parse::<f64>()
            .map_err(|_| format!("`{s}`: expected a probability such as 2^-40 or 1e-12"))?,
    };
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(format!(
            "`{s}`: a failure probability must be in (0, 1], got {v}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{Options, compile};

    /// A tiny product (4 elements of at most 4·1·1 at 32 fractional bits: 2^-28 per
    /// element), and a large one (4,096 × 1,024 products of unbounded inputs).
    const MODEL: &str = "model m { dim seq, past; input x: fixed[seq, 4] from client;
        weight w: [4, 1]; output y = matmul(x, w) to client; }";

    fn plan(policy: Option<TruncationPolicy>) -> Program {
        let opts = Options {
            truncation: policy,
            ..Options::default()
        };
        compile(MODEL, "t.model", &opts).unwrap().program
    }

    fn count(p: &Program, f: fn(&Op) -> bool) -> usize {
        p.graph.ids().filter(|&id| f(&p.graph.node(id).op)).count()
    }

    /// (local, faithful of either gate) truncations.
    fn kinds(p: &Program) -> (usize, usize) {
        (
            count(p, |op| matches!(op, Op::Trunc { .. })),
            count(p, |op| {
                matches!(op, Op::FaithfulTrunc { .. } | Op::StochasticTrunc { .. })
            }),
        )
    }

    #[test]
    fn the_gate_follows_the_policy() {
        let stochastic = plan(Some(default_policy()));
        assert_eq!(
            count(&stochastic, |op| matches!(op, Op::StochasticTrunc { .. })),
            1,
            "the default gate is the stochastic one"
        );
        let exact = plan(Some(TruncationPolicy {
            gate: FaithfulGate::Exact,
            ..default_policy()
        }));
        assert_eq!(
            count(&exact, |op| matches!(op, Op::FaithfulTrunc { .. })),
            1
        );
        assert_eq!(
            count(&exact, |op| matches!(op, Op::StochasticTrunc { .. })),
            0
        );
    }

    #[test]
    fn parses_probabilities() {
        assert_eq!(parse_probability("2^-40"), Ok(DEFAULT_MAX_FAILURE));
        assert_eq!(parse_probability("0.5"), Ok(0.5));
        assert!(parse_probability("2^x").unwrap_err().contains("2^E"));
        assert!(parse_probability("2").unwrap_err().contains("(0, 1]"));
        assert!(parse_probability("0").is_err());
        assert!(parse_probability("nope").is_err());
    }

    #[test]
    fn never_and_no_policy_keep_every_truncation_local() {
        let never = TruncationPolicy {
            mode: FaithfulMode::Never,
            ..default_policy()
        };
        let (local, faithful) = kinds(&plan(Some(never)));
        assert!(local > 0);
        assert_eq!(faithful, 0);
        assert_eq!(kinds(&plan(None)), (local, 0));
    }

    #[test]
    fn an_unbounded_truncation_becomes_faithful() {
        // x is a client input: unbounded, so its product's truncation cannot stay local
        let (local, faithful) = kinds(&plan(Some(default_policy())));
        assert_eq!((local, faithful), (0, 1));
    }

    /// A bounded input (a one-hot embedding row of a weight table, |w| ≤ 1): its
    /// truncation's risk at context 1 is 4 elements × 2^-31; within a budget of 2^-20 it
    /// stays local, within 2^-40 it becomes faithful.
    #[test]
    fn a_bounded_truncation_stays_local_within_the_budget() {
        const EMB: &str =
            "model m { dim seq, past; dim vocab = 8; input ids: token[seq] from client;
            weight e: [vocab, 4]; weight w: [4, 1];
            output y = matmul(embed(ids, e), w) to client; }";
        let compile_with = |max_failure: f64| {
            let policy = TruncationPolicy {
                max_failure,
                weight_bound: 1.0,
                context: 1,
                mode: FaithfulMode::Auto,
                gate: FaithfulGate::Stochastic,
            };
            let opts = Options {
                truncation: Some(policy),
                ..Options::default()
            };
            kinds(&compile(EMB, "t.model", &opts).unwrap().program)
        };
        let loose = compile_with(2f64.powi(-20));
        let tight = compile_with(DEFAULT_MAX_FAILURE);
        assert_eq!(loose.1, 0, "kept local: {loose:?}");
        assert!(loose.0 >= 1);
        assert_eq!(tight, (0, loose.0), "all faithful at 2^-40");
    }

    #[test]
    fn always_makes_every_shared_truncation_faithful() {
        let always = TruncationPolicy {
            mode: FaithfulMode::Always,
            ..default_policy()
        };
        assert_eq!(kinds(&plan(Some(always))), (0, 1));
    }
}
