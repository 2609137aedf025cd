//! What a plan opens to the server of the client's values, and the client's reveal policy.
//!
//! The plan is code the server may have written: the client (party 1) must not run one
//! that opens its prompt, or anything computed from it, to the server beyond what the
//! client accepts. [`exposed_to_server`] derives that from the graph alone, never from a
//! flag stored in the plan:
//!
//! - a value is **client-derived** when it is, or is computed from, a client `input` or a
//!   `cache_read` (the KV cache holds what earlier calls computed from the prompt);
//! - it is **exposed** when a client-derived value is the operand of a `reveal` to the
//!   server, an `open` (to both parties) or an `output` to the server.
//!
//! An `open` that a sparse FFN's `apply_mask` or `block_matmul` reads as its block mask
//! (`[seq, blocks]` bits) is classified as that FFN's mask: it carries at most `blocks`
//! bits per token, and it is *permuted* when the predictor that computes it reads weights
//! block-permuted by that FFN's permutation (found by walking back from the `open` through
//! the predictor's nodes: same layer, same origin). Anything else exposed is refused
//! whatever the client accepts.
//!
//! [`check_client`] applies an [`AcceptLeakage`] (`comet run --accept-leakage`): `none`
//! (the default) accepts a plan that exposes nothing, as every dense plan of the compiler;
//! `sparse-masks[:BITS]` also accepts the permuted block masks of sparse FFNs, at most
//! `BITS` mask bits per token over all of them. A mask in the model's block order (no
//! permutation) is refused: it shows which neurons each token uses.
//!
//! **Limits.** The check is structural: it bounds what a mask can carry (its shape and
//! element type) and checks that a permutation reaches it, not that the predictor computes
//! a faithful prediction; a plan may still put up to `BITS` bits per token of its choice
//! into accepted masks. Values opened to the *client* are not the client's concern here.

use crate::dim::shape_string;
use crate::graph::NodeId;
use crate::op::Op;
use crate::program::Program;
use crate::types::{Elem, Party};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

/// What the client accepts to open to the server (`--accept-leakage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcceptLeakage {
    /// Nothing of the client's values (`none`, the default): dense plans.
    #[default]
    Nothing,
    /// The permuted block masks of sparse FFNs (`sparse-masks[:BITS]`), at most `max_bits`
    /// mask bits per token over all of them when given.
    SparseMasks {
        /// Σ blocks over the accepted masks, per token.
        max_bits: Option<u64>,
    },
}

impl FromStr for AcceptLeakage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let expected = "expected `none`, `sparse-masks` or `sparse-masks:BITS` (at most BITS \
                        mask bits per token over all sparse FFNs)";
        match s.split_once(':') {
            None if s == "none" => Ok(AcceptLeakage::Nothing),
            None if s == "sparse-masks" => Ok(AcceptLeakage::SparseMasks { max_bits: None }),
            Some(("sparse-masks", bits)) => match bits.parse::<u64>() {
                Ok(b) => Ok(AcceptLeakage::SparseMasks { max_bits: Some(b) }),
                Err(_) => Err(format!(
                    "--accept-leakage `{s}`: `{bits}` is not a number of bits; {expected}"
                )),
            },
            _ => Err(format!("--accept-leakage `{s}`: {expected}")),
        }
    }
}

impl fmt::Display for AcceptLeakage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcceptLeakage::Nothing => write!(f, "none"),
            AcceptLeakage::SparseMasks { max_bits: None } => write!(f, "sparse-masks"),
            AcceptLeakage::SparseMasks { max_bits: Some(b) } => write!(f, "sparse-masks:{b}"),
        }
    }
}

/// How a client-derived value reaches the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExposureKind {
    /// A `reveal` to the server.
    Reveal,
    /// An `output` to the server.
    Output,
    /// An `open` that is no sparse FFN's mask.
    Open,
    /// The block mask of sparse FFN `ffn`: `blocks` bits per token.
    Mask {
        /// The sparse FFN.
        ffn: u32,
        /// Blocks per token (= the mask's bits per token).
        blocks: u64,
        /// Whether the predictor reads weights permuted by the FFN's permutation.
        permuted: bool,
    },
}

/// One node that exposes a client-derived value to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// The node.
    pub id: NodeId,
    /// Its number in the canonical order, as `comet show` prints it (`%12`).
    pub number: usize,
    /// How.
    pub kind: ExposureKind,
    /// The node's op name.
    pub op: &'static str,
    /// The exposed value's shape.
    pub shape: String,
    /// Its layer, if any.
    pub layer: Option<u32>,
}

impl fmt::Display for Exposure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layer = self
            .layer
            .map_or(String::new(), |l| format!(" in layer {l}"));
        let (n, op, shape) = (self.number, self.op, &self.shape);
        match &self.kind {
            ExposureKind::Reveal => write!(
                f,
                "%{n} {op} {shape}{layer} reveals a value computed from the client's input to \
                 the server"
            ),
            ExposureKind::Output => write!(
                f,
                "%{n} {op} {shape}{layer} outputs a value computed from the client's input to \
                 the server"
            ),
            ExposureKind::Open => write!(
                f,
                "%{n} {op} {shape}{layer} opens a value computed from the client's input to \
                 both parties (it is no sparse FFN's block mask)"
            ),
            ExposureKind::Mask {
                ffn,
                blocks,
                permuted,
            } => write!(
                f,
                "%{n} {op} {shape}{layer} opens the block mask of sparse FFN {ffn} ({blocks} \
                 bits per token, {})",
                match permuted {
                    true => "in a secret permuted order",
                    false => "in the model's block order: it shows which neurons are active",
                }
            ),
        }
    }
}

/// Every node that exposes a client-derived value to the server, in canonical order.
pub fn exposed_to_server(p: &Program) -> Vec<Exposure> {
    let g = &p.graph;
    let order = p.canonical_order().unwrap_or_else(|_| g.ids().collect());
    let number: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let derived = client_derived(p, &order);
    let mut out = Vec::new();
    for &id in &order {
        let node = g.node(id);
        let from_client = || g.operands(id).iter().any(|x| derived.contains(x));
        let kind = match &node.op {
            Op::Reveal { to: Party::Server } if from_client() => ExposureKind::Reveal,
            Op::Output {
                party: Party::Server,
                ..
            } if from_client() => ExposureKind::Output,
            Op::Open if from_client() => match sparse_mask(p, id) {
                Some((ffn, blocks)) => ExposureKind::Mask {
                    ffn,
                    blocks,
                    permuted: mask_permutations(p, id).contains(&ffn),
                },
                None => ExposureKind::Open,
            },
            _ => continue,
        };
        out.push(Exposure {
            id,
            number: number[&id],
            kind,
            op: node.op.name(),
            shape: shape_string(&node.ty.shape),
            layer: node.scope.layer,
        });
    }
    out
}

/// The nodes whose value is, or is computed from, a client input or the KV cache.
fn client_derived(p: &Program, order: &[NodeId]) -> HashSet<NodeId> {
    let g = &p.graph;
    let mut derived = HashSet::new();
    for &id in order {
        let source = matches!(
            g.node(id).op,
            Op::Input {
                party: Party::Client,
                ..
            } | Op::CacheRead { .. }
        );
        if source || g.operands(id).iter().any(|x| derived.contains(x)) {
            derived.insert(id);
        }
    }
    derived
}

/// The sparse FFN whose block mask `open` is, and its blocks per token: the `ffn` of an
/// `apply_mask` or `block_matmul` that reads it as its mask, when it is `[seq, blocks]`
/// bits with a constant `blocks`.
fn sparse_mask(p: &Program, open: NodeId) -> Option<(u32, u64)> {
    let (ffn, _) = mask_of(p, open)?;
    let ty = &p.graph.node(open).ty;
    let blocks = match ty.shape.as_slice() {
        [_, b] if ty.elem == Elem::Bit => b.as_const().filter(|b| *b > 0)?,
        _ => return None,
    };
    Some((ffn, blocks as u64))
}

/// The sparse FFN and block size whose mask `open` is: the `ffn` of an `apply_mask` or
/// `block_matmul` that reads it as its mask.
pub fn mask_of(p: &Program, open: NodeId) -> Option<(u32, u64)> {
    let g = &p.graph;
    g.users(open).into_iter().find_map(|u| {
        let xs = g.operands(u);
        match g.node(u).op {
            Op::ApplyMask { ffn, block } if xs.get(1) == Some(&open) => Some((ffn, block)),
            Op::BlockMatMul { ffn, block } if xs.get(2) == Some(&open) => Some((ffn, block)),
            _ => None,
        }
    })
}

/// The permutations the mask `open` is in: the `block_permute`s reached by walking back
/// from it through the nodes of its own scope (the predictor: same layer, same origin).
pub fn mask_permutations(p: &Program, open: NodeId) -> BTreeSet<u32> {
    let g = &p.graph;
    let scope = &g.node(open).scope;
    let mut perms = BTreeSet::new();
    let mut seen = HashSet::new();
    let mut stack = g.operands(open);
    while let Some(x) = stack.pop() {
        if !seen.insert(x) {
            continue;
        }
        let node = g.node(x);
        if let Op::BlockPermute { perm, .. } = node.op {
            perms.insert(perm);
        } else if node.scope.layer == scope.layer && node.scope.origin == scope.origin {
            stack.extend(g.operands(x));
        }
    }
    perms
}

/// What a plan the client accepts exposes: its masks' bits per token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Sparse FFN masks opened (all permuted).
    pub masks: usize,
    /// Σ blocks over them: mask bits per token.
    pub bits_per_token: u64,
}

/// Why the client refuses a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the plan opens more of the client's input to the server than --accept-leakage {accept} \
     allows, so the client refuses it (nothing was sent and no material was used):\n  {}{}",
    refused.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  "),
    hint.as_deref().map_or(String::new(), |h| format!("\n{h}"))
)]
pub struct PolicyError {
    /// The policy applied.
    pub accept: AcceptLeakage,
    /// The exposures it refuses.
    pub refused: Vec<Exposure>,
    /// What to pass to accept the plan, if some value would.
    pub hint: Option<String>,
}

/// Checks the plan against what the client accepts: `Ok` with the accepted masks, or the
/// list of refused exposures.
pub fn check_client(p: &Program, accept: AcceptLeakage) -> Result<Accepted, PolicyError> {
    let exposed = exposed_to_server(p);
    let mut refused = Vec::new();
    let mut masks = Vec::new();
    for e in exposed {
        match (&e.kind, accept) {
            (
                ExposureKind::Mask {
                    permuted: true,
                    blocks,
                    ..
                },
                AcceptLeakage::SparseMasks { .. },
            ) => masks.push((e.clone(), *blocks)),
            _ => refused.push(e),
        }
    }
    let bits: u64 = masks.iter().map(|(_, b)| *b).sum();
    if let AcceptLeakage::SparseMasks {
        max_bits: Some(max),
    } = accept
        && bits > max
    {
        refused.extend(masks.iter().map(|(e, _)| e.clone()));
        refused.sort_by_key(|e| e.number);
        return Err(PolicyError {
            accept,
            refused,
            hint: Some(format!(
                "the permuted block masks carry {bits} bits per token in all, more than {max}"
            )),
        });
    }
    if refused.is_empty() {
        return Ok(Accepted {
            masks: masks.len(),
            bits_per_token: bits,
        });
    }
    let only_masks = refused
        .iter()
        .all(|e| matches!(e.kind, ExposureKind::Mask { permuted: true, .. }));
    let hint = only_masks.then(|| {
        let bits: u64 = refused
            .iter()
            .map(|e| match e.kind {
                ExposureKind::Mask { blocks, .. } => blocks,
                _ => 0,
            })
            .sum::<u64>()
            + bits;
        format!(
            "a sparse plan opens its block masks to both parties (`comet inspect --leakage`); \
             to accept them, pass --accept-leakage sparse-masks (here {bits} bits per token)"
        )
    });
    Err(PolicyError {
        accept,
        refused,
        hint,
    })
}

/// The least `--accept-leakage` the client needs to run `p`, or `None` when no value
/// accepts it.
pub fn least_acceptance(p: &Program) -> Option<AcceptLeakage> {
    if check_client(p, AcceptLeakage::Nothing).is_ok() {
        return Some(AcceptLeakage::Nothing);
    }
    let all = AcceptLeakage::SparseMasks { max_bits: None };
    check_client(p, all)
        .ok()
        .map(|a| AcceptLeakage::SparseMasks {
            max_bits: Some(a.bits_per_token),
        })
}
