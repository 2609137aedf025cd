//! The cost model: rounds, online bits and dealer bits of every protocol primitive, as
//! polynomials in the symbolic sizes (PROTOCOLS.md, "Primitives the runtime implements").
//!
//! Conventions: `l` = 64 ring bits; "online bits" are sent by **both parties together**;
//! "offline bits" are what the dealer sends to both parties (only corrections: everything
//! else is expanded from per-party PRG seeds). The runtime counts the bytes that actually
//! cross its channels and a test compares them with these figures, so every formula here
//! is a statement about what the runtime sends.

use comet_ir::cost::HeadCost;
use comet_ir::cost::{BlockCost, NodeCost};
use comet_ir::head_region::{HeadRegion, head_regions};
use comet_ir::poly::Poly;
use comet_ir::protocol::{Protocol, fixed_values, protocol_of};
use comet_ir::sparse::{Masked, masked_nodes};
use comet_ir::{Comparison, NodeId, Program, ValueType};
use std::collections::{HashMap, HashSet};

/// Ring bits `l`.
pub const RING_BITS: i64 = 64;
/// FSS security parameter λ (AES-128 PRG).
pub const LAMBDA: i64 = 128;
/// DReLU key bits per element and party: the correction words of a DCF on the low
/// `l − 1 = 63` bits with a payload in Z_2^64 (Boyle et al. 2021; the sign trick compares
/// the low bits of the masked value and corrects with the top bits): per level a λ-bit
/// seed correction and an l-bit value correction (63 · 192 bits = 1,512 bytes), two
/// control bits per level (126 bits, 16 bytes) and the final l-bit output correction
/// (8 bytes): 1,536 bytes. The party's root seed and mask share are expanded from its PRG
/// seed, so they are not sent. PROTOCOLS.md's `l(λ+2)+l` = 8,384 bits is the size of a
/// DCF with a 1-bit payload, whose XOR-shared output would need a conversion round; the
/// runtime's `comet_runtime::fss::DRELU_KEY_BYTES_PER_ELEMENT` is this figure; it is
/// [`dcf_key_bits`] at m = 64.
pub const DCF_KEY_BITS: i64 = 8 * (24 * (RING_BITS - 1) + 16 + 8);

/// DReLU key bits per element and party at comparison width `m` (2..=64; the node's
/// `cmp_width`): the correction words of a DCF on the low `m − 1` bits of `x + r mod 2^m`,
/// still with a Z_2^64 payload: 8·(24(m−1) + ⌈2(m−1)/8⌉ + 8) bits
/// (`comet_runtime::fss::DreluKey::element_bytes`). 12,288 at m = 64 ([`DCF_KEY_BITS`]),
/// 9,184 at m = 48, 7,632 at m = 40, 6,080 at m = 32, 4,528 at m = 24, 2,976 at m = 16.
pub const fn dcf_key_bits(m: i64) -> i64 {
    let n = m - 1;
    8 * (24 * n + (2 * n + 7) / 8 + 8)
}
/// Correction-word bytes of a 1-bit DCF on `n` bits with early termination at
/// ν = min(n, 7) levels (`comet_runtime::fss::DcfBitKey::correction_bytes`): per tree level
/// a λ-bit seed correction and two control bits, then the 2^ν-bit leaf block:
/// 16(n − ν) + ⌈2(n − ν)/8⌉ + ⌈2^ν/8⌉. 926 at n = 63.
pub const fn dcf_bit_bytes(n: i64) -> i64 {
    let nu = if n < 7 { n } else { 7 };
    let levels = n - nu;
    16 * levels + (2 * levels + 7) / 8 + ((1 << nu) + 7) / 8
}

/// Sign-select key bytes per gate for **both** parties together at comparison width `m`
/// (`comet_runtime::fss::sign_select::SignSelectKey::element_bytes`): each party the 1-bit
/// DCF on the low m − 1 bits ([`dcf_bit_bytes`]), party 1 also its 8-byte corrections of ρ
/// and ρ·s: 2·dcf_bit(m − 1) + 16. 1,868 at m = 64 (926 + 942), against 3,080 for DReLU +
/// mux (1,536 + 1,536 + 8).
pub const fn sign_select_key_bytes(m: i64) -> i64 {
    2 * dcf_bit_bytes(m - 1) + 16
}

/// Faithful-truncation key bytes per element for **both** parties together, dropping `s`
/// bits (`comet_runtime::fss::trunc::TruncKey::element_bytes`): each party the s-bit DCF's
/// correction words with a Z_2^64 payload, 24s + ⌈2s/8⌉ + 8, party 1 also its 8-byte
/// share of the mask's top bit: 2·(24s + ⌈2s/8⌉ + 8) + 8. 800 at s = 16 (396 + 404).
pub const fn faithful_trunc_key_bytes(s: i64) -> i64 {
    2 * (24 * s + (2 * s + 7) / 8 + 8) + 8
}

/// GMW DReLU (`comet_runtime::protocols::gmw`): the sign of `x0 + x1` from a carry circuit
/// on the parties' 64-bit shares (SPU `msb_a2b`, CrypTen `_ltz`). `msb = x0[63] ⊕ x1[63] ⊕
/// c63`; the propagate bits `x0 ⊕ x1` are XOR-shared for free, so only ANDs cost rounds:
/// round 1 computes the 63 generate bits `x0 ∧ x1` of bits 0..62 (an AND of two private
/// words: each party opens 63 bits), then a binary tree over the groups (63 → 32 → 16 → 8
/// → 4 → 2 → 1) combines pairs with `G = G_hi ⊕ P_hi∧G_lo`, `P = P_hi ∧ P_lo` (no `P` for
/// the lowest group), the two ANDs sharing the opening of `P_hi`: 3 bits per pair and
/// party, 2 for the lowest. Per level 31, 16, 8, 4, 2, 1 pairs: 92, 47, 23, 11, 5, 2 bits.
/// Each round's bits are packed per element and padded to whole bytes (so the figure is a
/// polynomial in the sizes): [`GMW_DRELU_BYTES_PER_ROUND`].
pub const GMW_DRELU_BYTES_PER_ROUND: [i64; 7] = [8, 12, 6, 3, 2, 1, 1];
/// GMW DReLU online bits per element and party: 8 × (8 + 12 + 6 + 3 + 2 + 1 + 1) = 264.
pub const GMW_DRELU_BITS_PER_PARTY: i64 = {
    let mut bytes = 0;
    let mut r = 0;
    while r < GMW_DRELU_BYTES_PER_ROUND.len() {
        bytes += GMW_DRELU_BYTES_PER_ROUND[r];
        r += 1;
    }
    8 * bytes
};
/// GMW DReLU rounds: the circuit's AND depth, 1 + 6 levels.
pub const GMW_DRELU_ROUNDS: i64 = GMW_DRELU_BYTES_PER_ROUND.len() as i64;
/// GMW DReLU AND gates per element: 63 generate bits, then per level 2 per pair less the
/// lowest pair's `P`: 63 + 61 + 31 + 15 + 7 + 3 + 1 = 181.
pub const GMW_DRELU_AND_GATES: i64 = 63 + 61 + 31 + 15 + 7 + 3 + 1;
/// GMW DReLU dealer bits per element: one correction bit (party 1's share of `a ∧ b`) per
/// AND gate, padded to whole bytes per element: 8 × 23 = 184.
pub const GMW_DRELU_OFFLINE_BITS: i64 = 8 * ((GMW_DRELU_AND_GATES + 7) / 8);
/// Bits on the wire for one opened bit (B2A, the select with an XOR-shared bit): a byte,
/// as boolean messages are padded to whole bytes per element.
pub const OPENED_BIT_BITS: i64 = 8;

/// Costs of every node of a protocol-stage program.
pub struct CostModel<'a> {
    p: &'a Program,
    fixed: HashSet<NodeId>,
    masked: HashMap<NodeId, Masked>,
    heads: HashMap<NodeId, HeadRegion>,
}

impl<'a> CostModel<'a> {
    /// Prepares the model (computes which values are fixed across calls).
    pub fn new(p: &'a Program) -> Self {
        CostModel {
            p,
            fixed: fixed_values(p),
            masked: masked_nodes(p),
            heads: head_regions(p),
        }
    }

    /// Whether `id` is a product with a one-sided fixed operand (the server's weights):
    /// only the other party sends ([`fixed_product_cost`]).
    fn one_sided(&self, protocol: Protocol, id: NodeId) -> bool {
        matches!(protocol, Protocol::FixedMul | Protocol::FixedMatMul) && {
            let w = crate::inspect::memory::fixed_operand_of(self.p, id, &self.fixed);
            comet_ir::protocol::mask_owner(self.p, w).is_some()
        }
    }

    /// The cost of one node.
    pub fn node(&self, id: NodeId) -> NodeCost {
        let protocol = protocol_of(self.p, id, &self.fixed);
        let g = &self.p.graph;
        let out = &g.node(id).ty;
        let xs: Vec<&ValueType> = g.operands(id).iter().map(|x| &g.node(*x).ty).collect();
        let mut dense = self.at_types(id, protocol, out, &xs);
        if let (comet_ir::Op::BlockMatMul { ffn, .. }, Some(b)) =
            (&g.node(id).op, dense.per_block.as_mut())
        {
            b.ffn = *ffn;
        }
        if let Some(k) = dense.per_kv.as_mut() {
            // the verifier refuses a head mask no head-sparse `block_matmul` reads
            k.unit = comet_ir::sparse::mask_unit(self.p, g.operands(id)[3]).unwrap_or(u32::MAX);
        }
        match self.masked.get(&id) {
            Some(m) if protocol.communicates() => {
                // per active pair: the same protocol on one block of one token
                let one =
                    |t: &ValueType| t.with_shape(vec![comet_ir::Dim::constant(m.block as i64)]);
                let xs1: Vec<ValueType> = xs.iter().map(|t| one(t)).collect();
                let xs1: Vec<&ValueType> = xs1.iter().collect();
                let pair = match protocol {
                    // whole bytes per block: the node's own protocol and widths on them
                    _ if m.packs_whole() => self.at_types(id, protocol, &one(out), &xs1),
                    // a select on active entries opens a byte per bit
                    // (`comet_runtime::protocols::mux::start_gathered`)
                    Protocol::Mux => {
                        let n = Poly::constant(m.block as i64);
                        mux_cost(&n, &n.scale(OPENED_BIT_BITS), &n.scale(RING_BITS), &n)
                    }
                    _ => {
                        let b = self.basics(id);
                        let (out, xs) = (&one(out), &xs1);
                        cost_at_width(protocol, out, xs, &b.fixed, b.fss, b.is_matmul, b.bits)
                    }
                };
                per_block(dense, m.ffn, &pair)
            }
            _ => match self.heads.get(&id) {
                Some(r) if protocol.communicates() => self.per_head(id, protocol, r, dense),
                _ => dense,
            },
        }
    }

    /// A node of a head-masked core ([`head_regions`]): online bits and local work of the
    /// same protocol at the gathered rows; rounds and dealer bits of the dense node.
    fn per_head(
        &self,
        id: NodeId,
        protocol: Protocol,
        r: &HeadRegion,
        dense: NodeCost,
    ) -> NodeCost {
        let g = &self.p.graph;
        let gather = |t: &ValueType| t.with_shape(r.gathered(&t.shape));
        let out = gather(&g.node(id).ty);
        let xs: Vec<ValueType> = (g.operands(id).iter())
            .map(|x| gather(&g.node(*x).ty))
            .collect();
        let xs: Vec<&ValueType> = xs.iter().collect();
        let rows = self.at_types(id, protocol, &out, &xs);
        NodeCost {
            online_bits: Poly::zero(),
            local_ops: Poly::zero(),
            per_head: Some(HeadCost {
                unit: r.unit,
                rows_per_pair: r.rows_per_pair(),
                online_bits: rows.online_bits,
                local_ops: rows.local_ops,
                dense_online_bits: dense.online_bits.clone(),
            }),
            ..dense
        }
    }

    /// The cost of node `id`'s protocol on values of types `out` and `xs` (its own, or
    /// gathered ones).
    fn at_types(
        &self,
        id: NodeId,
        protocol: Protocol,
        out: &ValueType,
        xs: &[&ValueType],
    ) -> NodeCost {
        let g = &self.p.graph;
        let Basics {
            fixed,
            fss,
            is_matmul,
            bits,
        } = self.basics(id);
        let narrow = g.node(id).open_at_cmp_width && fss;
        if self.one_sided(protocol, id) {
            fixed_product_cost(protocol, out, xs, &fixed, 1, i64::from(bits))
        } else if narrow && protocol == Protocol::RowMaxTree {
            row_max_cost_at(xs[0], i64::from(bits), i64::from(bits))
        } else if narrow && protocol == Protocol::SignSelect {
            sign_select_cost_at(xs[0], true, i64::from(bits), i64::from(bits))
        } else if protocol == Protocol::Lut {
            let w = g.node(id).comparison_bits();
            lut_cost(xs[0], i64::from(bits), i64::from(w))
        } else {
            cost_at_width(protocol, out, xs, &fixed, fss, is_matmul, bits)
        }
    }

    /// What node `id`'s cost depends on besides its protocol and types.
    fn basics(&self, id: NodeId) -> Basics {
        let g = &self.p.graph;
        Basics {
            fixed: (g.operands(id).iter())
                .map(|x| self.fixed.contains(x))
                .collect(),
            fss: self.p.options.comparison == Comparison::Fss,
            is_matmul: matches!(g.node(id).op, comet_ir::Op::MatMul),
            // a lookup's index bits, a faithful truncation's shift; else the node's width
            // (a comparison's, a stochastic truncation's input's)
            bits: match g.node(id).op {
                comet_ir::Op::Lut { bits, .. } | comet_ir::Op::FaithfulTrunc { bits } => bits,
                _ => g.node(id).comparison_bits(),
            },
        }
    }
}

/// [`CostModel::basics`]: which operands are fixed, whether comparisons are FSS, whether
/// the node is a matrix product, and its bits (comparison width, index bits or shift).
struct Basics {
    fixed: Vec<bool>,
    fss: bool,
    is_matmul: bool,
    bits: u32,
}

/// A masked node's cost: rounds and dealer bits of the dense node (the dealer cannot know
/// the mask), online bits and local work per active (token, block) pair, from `pair`, the
/// cost of the same protocol on one block.
fn per_block(dense: NodeCost, ffn: u32, pair: &NodeCost) -> NodeCost {
    let constant = |p: &Poly| p.as_constant().expect("a one-block cost is a constant");
    NodeCost {
        online_bits: Poly::zero(),
        local_ops: Poly::zero(),
        per_block: Some(BlockCost {
            ffn,
            online_bits: constant(&pair.online_bits),
            local_ops: constant(&pair.local_ops),
        }),
        ..dense
    }
}

/// Bits one party sends for the values of `t` packed at `w` bits: 8⌈w·n/8⌉ (`w·n` at
/// 64 bits, or whenever `w·n` is a multiple of 8), as the runtime packs each opened part.
fn packed_bits(w: i64, t: &ValueType) -> Poly {
    match w {
        RING_BITS => numel(t).scale(RING_BITS),
        w => Poly::packed(w as u32, &t.shape, false).scale(8),
    }
}

fn numel(t: &ValueType) -> Poly {
    Poly::numel(&t.shape)
}

fn l(k: i64) -> Poly {
    Poly::constant(RING_BITS * k)
}

fn cost(protocol: Protocol, rounds: i64, online: Poly, offline: Poly, ops: Poly) -> NodeCost {
    NodeCost {
        protocol,
        rounds: Poly::constant(rounds),
        online_bits: online,
        offline_bits: offline,
        local_ops: ops,
        per_block: None,
        per_kv: None,
        per_head: None,
    }
}

/// The cost of `protocol` producing `out` from operands `xs` (`fixed[i]`: operand `i` is
/// the same in every call; `fss`: comparisons use FSS, else GMW, whose bits are XOR-shared,
/// which changes the select's protocol and the row max's comparisons;
/// `matmul`: the node is a matrix product, which matters for local work). Comparisons work
/// on the whole 64-bit ring; [`cost_at_width`] takes a node's comparison width.
pub fn cost_of(
    protocol: Protocol,
    out: &ValueType,
    xs: &[&ValueType],
    fixed: &[bool],
    fss: bool,
    matmul: bool,
) -> NodeCost {
    cost_at_width(protocol, out, xs, fixed, fss, matmul, RING_BITS as u32)
}

/// [`cost_of`] for a node whose FSS comparisons (DReLU, the row maximum's levels) work at
/// the signed width `cmp_bits` (2..=64, the node's `cmp_width`), or, for a table lookup,
/// with `cmp_bits` index bits, for a faithful truncation dropping `cmp_bits` bits, for a
/// stochastic truncation at the input width `cmp_bits` (its `cmp_width`); GMW comparisons
/// and every other protocol do not depend on it.
pub fn cost_at_width(
    protocol: Protocol,
    out: &ValueType,
    xs: &[&ValueType],
    fixed: &[bool],
    fss: bool,
    matmul: bool,
    cmp_bits: u32,
) -> NodeCost {
    let zero = Poly::zero;
    let m = i64::from(cmp_bits);
    match protocol {
        Protocol::Local | Protocol::Share => {
            let ops = if matmul {
                local_matmul_ops(out, xs)
            } else {
                zero()
            };
            cost(protocol, 0, zero(), zero(), ops)
        }
        // the holder of one share sends it: l·n
        Protocol::Reveal => cost(protocol, 1, l(1).mul(&numel(xs[0])), zero(), zero()),
        // both send their shares: 2l·n
        Protocol::Open => cost(protocol, 1, l(2).mul(&numel(xs[0])), zero(), zero()),
        // once per session, at setup: nothing per call
        Protocol::Shuffle => cost(protocol, 0, zero(), zero(), zero()),
        Protocol::BlockFixedMatMul => block_matmul_cost(out, xs, m),
        // both open x − a and y − b at the node's width w (64, or less when its value is
        // read mod 2^w: pass `narrow-openings`), each packed on its own:
        // 2·(⌈w·n_x/8⌉ + ⌈w·n_y/8⌉) bytes; dealer: c = ab correction, l·n_out
        Protocol::BeaverMul => {
            let opened = packed_bits(m, xs[0]).add(&packed_bits(m, xs[1]));
            cost(
                protocol,
                1,
                opened.scale(2),
                l(1).mul(&numel(out)),
                numel(out).scale(3),
            )
        }
        // the fixed operand's mask was opened at setup: only the other one, 2l·n
        Protocol::FixedMul | Protocol::FixedMatMul => {
            fixed_product_cost(protocol, out, xs, fixed, 2, m)
        }
        // open x − a at the node's width w: 2·⌈w·n/8⌉ bytes; dealer: (a, a²) correction l·n
        Protocol::Square => cost(
            protocol,
            1,
            packed_bits(m, out).scale(2),
            l(1).mul(&numel(out)),
            numel(out).scale(2),
        ),
        Protocol::BeaverMatMul => beaver_matmul_cost(out, xs, m),
        Protocol::CacheMatMul => cache_matmul_cost(out, xs, m),
        Protocol::DreluFss => NodeCost {
            online_bits: packed_bits(m, xs[0]).scale(2),
            ..drelu_cost(protocol, &numel(xs[0]), true, m)
        },
        // nothing opened (the truncation's opening is read): the DCF keys only; its one
        // round is the truncation's, where the schedule starts it
        Protocol::DreluOpened => NodeCost {
            online_bits: Poly::zero(),
            ..drelu_cost(protocol, &numel(xs[0]), true, m)
        },
        Protocol::DreluGmw => drelu_cost(protocol, &numel(xs[0]), false, m),
        Protocol::Mux => {
            let bits = Poly::packed(1, &xs[0].shape, false).scale(8);
            mux_cost(&numel(xs[0]), &bits, &packed_bits(m, xs[1]), &numel(out))
        }
        // the masked bits only: x − a is the truncation's opening
        Protocol::MuxOpened => {
            let bits = Poly::packed(1, &xs[0].shape, false).scale(8);
            NodeCost {
                protocol,
                ..mux_cost(&numel(xs[0]), &bits, &Poly::zero(), &numel(out))
            }
        }
        Protocol::RowMaxTree => row_max_cost(xs[0], fss, m),
        Protocol::Lut => lut_cost(xs[0], m, RING_BITS),
        Protocol::SignSelect => sign_select_cost(xs[0], xs.len() == 1, m),
        // both open x + r (+ 2^62), 64 bits each: 2l·n; dealer: the s-bit DCF per element
        // and party and party 1's share of msb(r), n·8·faithful_trunc_key_bytes(s); 1 round.
        // Local work: the DCF's 2s AES blocks and a few ring operations, counted as 4n.
        Protocol::FaithfulTrunc => cost(
            protocol,
            1,
            l(2).mul(&numel(xs[0])),
            numel(xs[0]).scale(8 * faithful_trunc_key_bytes(m)),
            numel(xs[0]).scale(4),
        ),
        Protocol::StochasticTrunc => stochastic_trunc_cost(xs[0], m),
        // open the bit masked by a daBit's boolean half, a byte per bit and party: 2·8·n;
        // dealer: the daBit's arithmetic half, l·n
        Protocol::B2A => cost(
            protocol,
            1,
            numel(out).scale(2 * OPENED_BIT_BITS),
            l(1).mul(&numel(out)),
            numel(out),
        ),
    }
}

/// A stochastic truncation of `x` at width `m` (`comet_runtime::protocols::trunc_stochastic`),
/// 1 round: both open `x + r + 2^(m−2) mod 2^m`, packed at m bits per element, ⌈n·m/8⌉
/// bytes per party ([`Poly::packed`]: exact, padding included; 2m·n bits in all when n·m
/// is a multiple of 8, 128n at m = 64). Dealer: party 1's shares of `r_h` and `msb_m(r)`,
/// 2l·n whatever m. Local work: a few ring operations, counted as n. On a sparse FFN's
/// active entries the runtime packs each (token, block) pair apart, so the per-pair figure
/// (this on one block) is exact too.
pub fn stochastic_trunc_cost(x: &ValueType, m: i64) -> NodeCost {
    let n = numel(x);
    cost(
        Protocol::StochasticTrunc,
        1,
        Poly::packed(m as u32, &x.shape, false).scale(16),
        l(2).mul(&n),
        n,
    )
}

/// A select `b·x` (bits of `n_b` elements, output of `n_out`), 1 round
/// (`comet_runtime::protocols::bit_mux`): both open `b ⊕ r` (`bit_bits` per party: a
/// select node packs them eight to a byte, 8⌈n_b/8⌉; a GMW row maximum's level sends a
/// byte per bit) and `x − a` at the node's width w (64, or less when its value is read
/// mod 2^w), `x_bits` per party (8⌈w·n_x/8⌉: [`packed_bits`]), 2·(bit_bits + x_bits);
/// dealer: the daBit `r`'s arithmetic share and `r·a`, l·(n_b + n_out). GMW bits are
/// XOR-shared; FSS bits are arithmetic 0/1 shares, whose lowest bit is an XOR share of the
/// bit (`comet_runtime::protocols::mux`): one protocol.
fn mux_cost(n_b: &Poly, bit_bits: &Poly, x_bits: &Poly, n_out: &Poly) -> NodeCost {
    let opened = bit_bits.add(x_bits);
    let offline = l(1).mul(&n_b.add(n_out));
    cost(Protocol::Mux, 1, opened.scale(2), offline, n_out.scale(3))
}

/// Ring multiplications of a local matrix product (public or one party's private
/// operands): b·m·k·n. Other local work (additions, data movement, truncation) is linear
/// in the data and left out of the compute estimate.
fn local_matmul_ops(out: &ValueType, xs: &[&ValueType]) -> Poly {
    let a = xs[0];
    numel(out).mul(&Poly::dim(a.shape[a.shape.len() - 1]))
}

/// `[.., m, k] · [.., k, n]`: both open `X − A` (2l·bmk) and, unless `Y` is fixed,
/// `Y − B` (2l·kn per batch); the dealer sends the `C = AB` correction, l·bmn.
/// A product with a fixed operand (`comet_runtime::protocols::fixed`), 1 round: the
/// varying operand's masked shares are opened, l·|X| per sending party, and each party
/// computes one product per sending party; the dealer sends the correction of `A ∘ B`,
/// l·|Z|. Two parties send for a two-sided mask (`E = X − A`: 2l·|X|, two products); only
/// the party that does not own a one-sided operand (the server's weights) sends its
/// share under its mask (l·|X|, one product each). Openings at the node's width `w`
/// (64, or less when its value is read mod 2^w: pass `narrow-openings`) send w bits per
/// element instead of l.
fn fixed_product_cost(
    protocol: Protocol,
    out: &ValueType,
    xs: &[&ValueType],
    fixed: &[bool],
    senders: i64,
    w: i64,
) -> NodeCost {
    let (varying, products) = if protocol == Protocol::FixedMatMul {
        let k = Poly::dim(xs[0].shape[xs[0].shape.len() - 1]);
        (xs[0], numel(out).mul(&k))
    } else {
        (if fixed[0] { xs[1] } else { xs[0] }, numel(out))
    };
    cost(
        protocol,
        1,
        packed_bits(w, varying).scale(senders),
        l(1).mul(&numel(out)),
        products.scale(senders),
    )
}

/// A Beaver matrix product, 1 round: both open `X − A` and `Y − B` at the node's width w,
/// 2w·(|X| + |Y|); the dealer sends the correction of `C = A·B`, l·|Z|; three products
/// per party.
fn beaver_matmul_cost(out: &ValueType, xs: &[&ValueType], w: i64) -> NodeCost {
    let (a, b) = (xs[0], xs[1]);
    let opened = packed_bits(w, a).add(&packed_bits(w, b));
    let k = Poly::dim(a.shape[a.shape.len() - 1]);
    let ops = numel(out).mul(&k).scale(3);
    cost(
        Protocol::BeaverMatMul,
        1,
        opened.scale(2),
        l(1).mul(&numel(out)),
        ops,
    )
}

/// `cache_matmul(x, c, new)`, 1 round: both open `X − A` (2l·|X|) and the new cache rows
/// under their fresh masks (2l·|new|); the rows cached by earlier calls were opened when
/// they were written, so nothing of them is sent again. The dealer sends the correction
/// of `C = A·view(B)`, l·|Z|, as for a Beaver product. Each party computes two products
/// of the output's size times the inner dimension (`E·view(B_p)` and `X_p·view(F)`).
/// At the node's width w both openings send w bits per element instead of l.
fn cache_matmul_cost(out: &ValueType, xs: &[&ValueType], w: i64) -> NodeCost {
    let (x, new) = (xs[0], xs[2]);
    let k = Poly::dim(x.shape[x.shape.len() - 1]);
    let ops = numel(out).mul(&k).scale(2);
    let head_masked = xs.len() == 4;
    let opened = match head_masked {
        true => Poly::zero(),
        false => packed_bits(w, x).add(&packed_bits(w, new)),
    };
    let mut c = cost(
        Protocol::CacheMatMul,
        1,
        opened.scale(2),
        l(1).mul(&numel(out)),
        ops,
    );
    if head_masked {
        c.per_kv = Some(head_masked_cache_cost(x, new, w));
    }
    c
}

/// A head-masked cache product's opened parts (`comet_runtime::protocols::cache_matmul`,
/// "Head mask"): `x` `[H, seq, n]` at the active (token, group) pairs, `H/h_kv · n`
/// entries each, and whole rows of `new` `[h_kv, seq, k]`, `k` entries each.
fn head_masked_cache_cost(x: &ValueType, new: &ValueType, w: i64) -> comet_ir::cost::KvCost {
    let per_group = match (x.shape[0].as_const(), new.shape[0].as_const()) {
        (Some(h), Some(g)) if g > 0 => h / g,
        _ => 1,
    };
    comet_ir::cost::KvCost {
        unit: u32::MAX, // set by the caller, who knows the mask
        width: w as u32,
        pair: Poly::dim(x.shape[2]).scale(per_group),
        row: new.shape[2].as_const().unwrap_or(0),
    }
}

/// `block_matmul(x [seq, n], W [n, d], mask [seq, n/B])`, 1 round: per active (token,
/// block) pair both parties open the block of `X − A'` (2w·B at the node's width w, 64
/// unless `narrow-openings` set it: only for blocks of a multiple of 8 entries, whole
/// bytes per pair) and each computes B·d products twice; the dealer sends one correction
/// `A'_{t,b}·B_b` per token and block, l·seq·(n/B)·d, whatever the mask (it does not know
/// it).
fn block_matmul_cost(out: &ValueType, xs: &[&ValueType], w: i64) -> NodeCost {
    let (x, mask) = (xs[0], xs[2]);
    let block = x.shape[1]
        .as_const()
        .zip(mask.shape[1].as_const())
        .map_or(1, |(n, b)| n / b.max(1));
    let d = out.shape[out.shape.len() - 1].as_const().unwrap_or(0);
    let offline = l(1).mul(&numel(out)).mul(&Poly::dim(mask.shape[1]));
    let mut c = cost(
        Protocol::BlockFixedMatMul,
        1,
        Poly::zero(),
        offline,
        Poly::zero(),
    );
    c.per_block = Some(BlockCost {
        ffn: u32::MAX, // set by the caller, who knows the node
        online_bits: 2 * w * block,
        local_ops: 2 * block * d,
    });
    c
}

/// DReLU on `n` elements. FSS at width `m` (64: the ring): each party sends its share of
/// `x + r mod 2^m`, m bits per element, 2·8⌈n·m/8⌉ online (the runtime packs a message of
/// n elements in ⌈n·m/8⌉ bytes; the caller states the ceiling with [`packed_bits`]),
/// and receives a DCF key per element from the dealer, 2n·[`dcf_key_bits`]\(m); 1 round.
/// GMW: the carry circuit of [`GMW_DRELU_BYTES_PER_ROUND`] on the whole ring, its output
/// XOR-shared.
fn drelu_cost(protocol: Protocol, n: &Poly, fss: bool, m: i64) -> NodeCost {
    if fss {
        cost(
            protocol,
            1,
            n.scale(2 * m),
            n.scale(2 * dcf_key_bits(m)),
            n.clone(),
        )
    } else {
        let online = n.scale(2 * GMW_DRELU_BITS_PER_PARTY);
        let offline = n.scale(GMW_DRELU_OFFLINE_BITS);
        cost(protocol, GMW_DRELU_ROUNDS, online, offline, n.scale(64))
    }
}

/// Key bytes per table lookup and party on `n`-bit indices
/// (`comet_runtime::fss::LutKey::element_bytes`): a DPF with early termination at
/// ν = min(n, 7) levels from the leaves, 1-bit outputs, 16(n − ν) + ⌈2(n − ν)/8⌉ bytes of
/// seed and control-bit corrections and ⌈2^ν/8⌉ bytes of leaf correction, plus the
/// 64-bit correction that removes the DPF's sign (party 0: a share of the sign, party 1:
/// of the sign times the output mask). The index mask, the DPF's root seed and the output
/// mask come from the party's seed. 41 bytes at n = 8, 106 at n = 12, 122 at n = 13.
pub const fn lut_key_bytes(n: i64) -> i64 {
    let nu = if n < 7 { n } else { 7 };
    let levels = n - nu;
    16 * levels + (2 * levels + 7) / 8 + ((1 << nu) + 7) / 8 + 8
}

/// A table lookup on the `count` elements of `x` with `n`-bit indices, 2 rounds: each party
/// sends its share of the masked index `x + r mod 2^n` packed at n bits (⌈count·n/8⌉
/// bytes, [`Poly::packed`]), then its masked share of the sign-carrying table sum at the
/// node's width w (64, or less when the value is read mod 2^w: pass `narrow-openings`):
/// 16·(⌈count·n/8⌉ + ⌈count·w/8⌉) online. Dealer: [`lut_key_bytes`] per element and party. Local
/// work: the DPF's full-domain evaluation and 2^n/4 table reads per element.
fn lut_cost(x: &ValueType, n: i64, w: i64) -> NodeCost {
    let count = &numel(x);
    let index = Poly::packed(n as u32, &x.shape, false).scale(16);
    cost(
        Protocol::Lut,
        2,
        index.add(&packed_bits(w, x).scale(2)),
        count.scale(2 * 8 * lut_key_bytes(n)),
        count.scale((1 << n) / 4),
    )
}

/// `y·[x ≥ 0]` fused (`comet_runtime::protocols::sign_select`) on the `n` elements of `x`
/// at comparison width `m`, 2 rounds. Per party: round 1 sends `x + r` packed at w bits (w =
/// 64 when y is x, since the opening serves as ŷ; else m), ⌈n·w/8⌉ bytes, and when y is not
/// x also `y + s`, 8n bytes; round 2 sends the bits e packed eight to a byte, ⌈n/8⌉ bytes.
/// Online (both parties): 16·(⌈n·w/8⌉ + [y ≠ x]·8n + ⌈n/8⌉) bits, the ceilings as
/// [`Poly::packed`] (exact, padding included). Dealer: n·8·[`sign_select_key_bytes`]\(m).
/// Local work: the DCF's 2(m − 8) + 1 AES blocks and a few ring operations per element,
/// counted as 4n ring multiplications.
fn sign_select_cost(x: &ValueType, same: bool, m: i64) -> NodeCost {
    sign_select_cost_at(x, same, m, if same { RING_BITS } else { m })
}

/// [`sign_select_cost`] with `x + r` sent at `w` bits: m when y is x and the output is read
/// mod 2^m only ([`comet_ir::graph::Node::open_at_cmp_width`]).
fn sign_select_cost_at(x: &ValueType, same: bool, m: i64, w: i64) -> NodeCost {
    let n = numel(x);
    let mut bytes = Poly::packed(w as u32, &x.shape, false).add(&Poly::packed(1, &x.shape, false));
    if !same {
        bytes = bytes.add(&n.scale(8));
    }
    cost(
        Protocol::SignSelect,
        2,
        bytes.scale(16),
        n.scale(8 * sign_select_key_bytes(m)),
        n.scale(4),
    )
}

/// Max over rows of length `t` by a tournament: `t − 1` comparisons per row over
/// `⌈log2 t⌉` levels. With FSS each level is one `sign_select` gate per pair, y = x =
/// the difference (`max = b + (a − b)·[a − b ≥ 0]`), 2 rounds: per pair and party 64 bits
/// of `x + r`, and per level and party the level's bits e packed eight to a byte,
/// Σ_levels ⌈rows·⌊k/2⌋/8⌉ bytes ([`Poly::packed`] with `tree`); dealer
/// [`sign_select_key_bytes`]\(m) per pair. With GMW each level is a DReLU
/// ([`GMW_DRELU_ROUNDS`] rounds) then a select (`mux_cost`). FSS comparisons work at width
/// `m` (the differences' signed width; 64: the ring).
pub fn row_max_cost(x: &ValueType, fss: bool, m: i64) -> NodeCost {
    match fss {
        true => row_max_cost_at(x, m, RING_BITS),
        false => row_max_gmw_cost(x, m),
    }
}

/// The FSS row maximum with each level's `x + r` sent at `w` bits: 64, or m when the
/// maximum is read mod 2^m only ([`comet_ir::graph::Node::open_at_cmp_width`]): per level
/// ⌈rows·⌊k/2⌋·w/8⌉ bytes ([`Poly::packed`] with `tree`).
fn row_max_cost_at(x: &ValueType, m: i64, w: i64) -> NodeCost {
    let t = *x.shape.last().expect("row_max has a last axis");
    let rows = Poly::numel(&x.shape[..x.shape.len() - 1]);
    let pairs = rows.mul(&Poly::dim(t).sub(&Poly::constant(1)));
    let levels = Poly::log2(t);
    let opened = match w {
        RING_BITS => pairs.scale(RING_BITS),
        w => Poly::packed(w as u32, &x.shape, true).scale(8),
    };
    let bits = Poly::packed(1, &x.shape, true).scale(8).add(&opened);
    NodeCost {
        protocol: Protocol::RowMaxTree,
        rounds: levels.scale(2),
        online_bits: bits.scale(2),
        offline_bits: pairs.scale(8 * sign_select_key_bytes(m)),
        local_ops: pairs.scale(4),
        per_block: None,
        per_kv: None,
        per_head: None,
    }
}

/// The GMW row maximum: per level a DReLU and a select.
fn row_max_gmw_cost(x: &ValueType, m: i64) -> NodeCost {
    let t = *x.shape.last().expect("row_max has a last axis");
    let rows = Poly::numel(&x.shape[..x.shape.len() - 1]);
    let pairs = rows.mul(&Poly::dim(t).sub(&Poly::constant(1)));
    let levels = Poly::log2(t);
    let drelu = drelu_cost(Protocol::DreluFss, &pairs, false, m);
    let mux = mux_cost(
        &pairs,
        &pairs.scale(OPENED_BIT_BITS),
        &pairs.scale(RING_BITS),
        &pairs,
    );
    let per_level = drelu.rounds.add(&mux.rounds);
    NodeCost {
        protocol: Protocol::RowMaxTree,
        rounds: levels.mul(&per_level),
        online_bits: drelu.online_bits.add(&mux.online_bits),
        offline_bits: drelu.offline_bits.add(&mux.offline_bits),
        local_ops: pairs.scale(4),
        per_block: None,
        per_kv: None,
        per_head: None,
    }
}

#[cfg(test)]
mod tests;
