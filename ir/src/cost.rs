//! Cost annotations: what each node spends, as functions of the symbolic sizes.

use crate::poly::Poly;
use crate::protocol::Protocol;
use serde::{Deserialize, Serialize};

/// What one node costs in one call of the plan. Bits are **online bits sent by both
/// parties together**; offline bits are what the dealer sends (corrections only);
/// `rounds` are the node's own sequential exchanges (0 for local work).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCost {
    /// The protocol that computes the node.
    pub protocol: Protocol,
    /// Sequential exchanges.
    pub rounds: Poly,
    /// Online bits, both parties together.
    pub online_bits: Poly,
    /// Dealer bits, to both parties together.
    pub offline_bits: Poly,
    /// Ring multiplications done locally by each party (for the compute estimate).
    pub local_ops: Poly,
    /// For a node of a sparse FFN that works on the active blocks only: what each active
    /// (token, block) pair adds to `online_bits` and `local_ops`, which then hold the part
    /// that does not depend on the mask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_block: Option<BlockCost>,
}

/// What one active (token, block) pair of sparse FFN `ffn` costs a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockCost {
    /// The sparse FFN (its `apply_mask`/`block_matmul` attribute).
    pub ffn: u32,
    /// Online bits per active pair, both parties.
    pub online_bits: i64,
    /// Ring multiplications per active pair and party.
    pub local_ops: i64,
}

impl NodeCost {
    /// Online bits at `env` with `active(ffn)` active (token, block) pairs per sparse FFN.
    pub fn online_at(&self, env: crate::DimEnv, active: &dyn Fn(u32) -> f64) -> f64 {
        let fixed = self.online_bits.eval(env) as f64;
        match &self.per_block {
            Some(b) => fixed + b.online_bits as f64 * active(b.ffn),
            None => fixed,
        }
    }

    /// The cost with its per-block part folded in at the plan's expected density (the
    /// fraction of active blocks per token of its FFN: `density · blocks · seq` active
    /// pairs per call, bits rounded to whole bits); unchanged for a dense node.
    pub fn expected(&self, sparsity: Option<&crate::SparsityOptions>) -> NodeCost {
        let (Some(b), Some(s)) = (&self.per_block, sparsity) else {
            return self.clone();
        };
        let k = b.ffn as usize;
        let blocks = s.ffns.get(k).map_or(0, |f| f.blocks) as f64;
        let density = s.density.get(k).copied().unwrap_or(1.0);
        let per_seq = |per_pair: i64| {
            let c = (per_pair as f64 * density * blocks).round() as i64;
            Poly::dim(crate::Dim::SEQ).scale(c)
        };
        NodeCost {
            online_bits: self.online_bits.add(&per_seq(b.online_bits)),
            local_ops: self.local_ops.add(&per_seq(b.local_ops)),
            per_block: None,
            ..self.clone()
        }
    }

    /// Local ring multiplications at `env` with `active` as in [`NodeCost::online_at`].
    pub fn local_ops_at(&self, env: crate::DimEnv, active: &dyn Fn(u32) -> f64) -> f64 {
        let fixed = self.local_ops.eval(env) as f64;
        match &self.per_block {
            Some(b) => fixed + b.local_ops as f64 * active(b.ffn),
            None => fixed,
        }
    }
}
