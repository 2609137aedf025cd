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
    /// For a head-masked product with the KV cache: its opened `x` entries per active
    /// (token, group) pair and its opened rows, which then replace `online_bits`'s
    /// mask-dependent part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_kv: Option<KvCost>,
    /// For a node of a head-masked attention core that runs on the active rows only
    /// ([`crate::head_region`]): its online bits and local work at the gathered rows,
    /// which then replace `online_bits` and `local_ops` (zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_head: Option<HeadCost>,
}

/// What a node of a head-masked attention core costs on its active rows: the same
/// protocol at the gathered shape, in [`crate::head_region::HeadRegion::env`]'s sizes
/// (`seq` = active rows, `past` = the call's key length).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadCost {
    /// The head-sparse attention's unit (its `block_matmul`'s `ffn`).
    pub unit: u32,
    /// Core rows per active (token, group) pair: query heads per KV group.
    pub rows_per_pair: u64,
    /// Online bits, both parties, at the gathered sizes.
    pub online_bits: Poly,
    /// Ring multiplications per party at the gathered sizes.
    pub local_ops: Poly,
    /// Online bits of the node on every row (at the call's sizes), for the expected
    /// figure at a density.
    pub dense_online_bits: Poly,
}

impl HeadCost {
    /// The sizes this cost is evaluated at, for `active` (token, group) pairs.
    fn env(&self, env: crate::DimEnv, active: f64) -> crate::DimEnv {
        crate::head_region::gathered_env(env, active.max(0.0) as u64, self.rows_per_pair)
    }
}

/// What a head-masked product with the KV cache opens: each party sends `x − A` at the
/// active (token, group) pairs (`pair` entries each) and each cache row opened in the
/// call (`row` entries each: the new rows of the groups active in the call and their rows
/// left unopened by earlier calls), each part packed at `width` bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvCost {
    /// The head-sparse attention's unit (its `block_matmul`'s `ffn`).
    pub unit: u32,
    /// Bits per opened entry.
    pub width: u32,
    /// Entries of `x` per active (token, group) pair.
    pub pair: Poly,
    /// Entries per opened cache row.
    pub row: i64,
}

impl KvCost {
    /// Online bits, both parties, with `active` pairs and `rows` opened rows: each party
    /// sends `⌈n·width/8⌉` bytes per part.
    pub fn online_bits(&self, env: crate::DimEnv, active: u64, rows: u64) -> u64 {
        let bytes = |n: u64| (n * u64::from(self.width)).div_ceil(8);
        let pair = self.pair.eval(env).max(0) as u64;
        2 * 8 * (bytes(pair * active) + bytes(self.row.max(0) as u64 * rows))
    }
}

/// A call's mask-dependent counts per sparse unit (FFN or attention), for the estimate
/// of [`NodeCost::online_at`].
pub trait UnitCounts {
    /// Active (token, block) pairs of unit `k`'s mask.
    fn active(&self, k: u32) -> f64;
    /// Cache rows opened by each head-masked cache product of unit `k`.
    fn kv_rows(&self, k: u32) -> f64;
}

/// Counts from two lists indexed by unit (missing entries: 0).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Active pairs per unit.
    pub active: Vec<f64>,
    /// Opened rows per head-masked cache product, per unit.
    pub kv_rows: Vec<f64>,
}

impl UnitCounts for Counts {
    fn active(&self, k: u32) -> f64 {
        self.active.get(k as usize).copied().unwrap_or(0.0)
    }
    fn kv_rows(&self, k: u32) -> f64 {
        self.kv_rows.get(k as usize).copied().unwrap_or(0.0)
    }
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
    /// Online bits at `env` with the counts of each sparse unit: `active(k)` active
    /// (token, block) pairs, `kv_rows(k)` cache rows opened per head-masked product.
    pub fn online_at(&self, env: crate::DimEnv, counts: &dyn UnitCounts) -> f64 {
        let fixed = self.online_bits.eval(env) as f64;
        let block =
            (self.per_block.as_ref()).map_or(0.0, |b| b.online_bits as f64 * counts.active(b.ffn));
        let kv = (self.per_kv.as_ref()).map_or(0.0, |k| {
            let (a, r) = (counts.active(k.unit), counts.kv_rows(k.unit));
            k.online_bits(env, a as u64, r as u64) as f64
        });
        let head = (self.per_head.as_ref()).map_or(0.0, |h| {
            h.online_bits.eval(h.env(env, counts.active(h.unit))) as f64
        });
        fixed + block + kv + head
    }

    /// The cost with its per-block part folded in at the plan's expected density (the
    /// fraction of active blocks per token of its FFN: `density · blocks · seq` active
    /// pairs per call, bits rounded to whole bits); unchanged for a dense node.
    ///
    /// A head-masked cache product's part is folded in with `density · groups · seq`
    /// active pairs and `groups · seq` opened rows per call: in a long generation every
    /// row is opened once, when its group is next active (rows whose group is never active
    /// again are never opened, so this is an upper bound).
    ///
    /// A node of a head-masked core is folded in at its every-row cost times the density
    /// (packing padding aside: an estimate, not an identity).
    pub fn expected(&self, sparsity: Option<&crate::SparsityOptions>) -> NodeCost {
        let with_kv = self.expected_kv(sparsity).expected_head(sparsity);
        let (Some(b), Some(s)) = (&with_kv.per_block, sparsity) else {
            return with_kv;
        };
        let k = b.ffn as usize;
        let blocks = s.ffns.get(k).map_or(0, |f| f.blocks) as f64;
        let density = s.density.get(k).copied().unwrap_or(1.0);
        let per_seq = |per_pair: i64| {
            let c = (per_pair as f64 * density * blocks).round() as i64;
            Poly::dim(crate::Dim::SEQ).scale(c)
        };
        NodeCost {
            online_bits: with_kv.online_bits.add(&per_seq(b.online_bits)),
            local_ops: with_kv.local_ops.add(&per_seq(b.local_ops)),
            per_block: None,
            ..with_kv.clone()
        }
    }

    /// [`NodeCost::expected`]'s head-core part.
    fn expected_head(&self, sparsity: Option<&crate::SparsityOptions>) -> NodeCost {
        let (Some(h), Some(s)) = (&self.per_head, sparsity) else {
            return self.clone();
        };
        let density = s.density.get(h.unit as usize).copied().unwrap_or(1.0);
        NodeCost {
            online_bits: (self.online_bits).add(&h.dense_online_bits.scale_f64(density)),
            per_head: None,
            ..self.clone()
        }
    }

    /// [`NodeCost::expected`]'s cache part.
    fn expected_kv(&self, sparsity: Option<&crate::SparsityOptions>) -> NodeCost {
        let (Some(k), Some(s)) = (&self.per_kv, sparsity) else {
            return self.clone();
        };
        let unit = k.unit as usize;
        let groups = s.ffns.get(unit).map_or(0, |f| f.blocks) as f64;
        let density = s.density.get(unit).copied().unwrap_or(1.0);
        let seq = Poly::dim(crate::Dim::SEQ);
        let w = i64::from(k.width);
        let pairs = k.pair.mul(&seq).scale(2 * w).scale_f64(density * groups);
        let rows = seq.scale(2 * w * k.row).scale_f64(groups);
        NodeCost {
            online_bits: self.online_bits.add(&pairs).add(&rows),
            per_kv: None,
            ..self.clone()
        }
    }

    /// Local ring multiplications at `env` with `active` as in [`NodeCost::online_at`].
    pub fn local_ops_at(&self, env: crate::DimEnv, active: &dyn Fn(u32) -> f64) -> f64 {
        let fixed = self.local_ops.eval(env) as f64;
        let head = (self.per_head.as_ref())
            .map_or(0.0, |h| h.local_ops.eval(h.env(env, active(h.unit))) as f64);
        match &self.per_block {
            Some(b) => fixed + head + b.local_ops as f64 * active(b.ffn),
            None => fixed + head,
        }
    }
}
