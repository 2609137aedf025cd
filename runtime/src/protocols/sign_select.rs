//! The select on a sign, `y·[x ≥ 0]` ([`comet_ir::Op::SignSelect`]; ReLU when y is x, and
//! each level of a row maximum, `max(a, b) = b + (a − b)·[a − b ≥ 0]`), fused into one
//! FSS gate (SIGMA, Gupta et al., ePrint 2023/1269): **2 rounds**, the comparison's bit is
//! never opened unmasked, never shared at 64 bits and never multiplied by a Beaver triple.
//! Keys and local steps: [`crate::fss::sign_select`].
//!
//! ## Derivation
//! x is a signed m-bit value (2 ≤ m ≤ 64) shared in Z_2^64, y is shared in Z_2^64. Write
//! msb(v) for bit m − 1 of v and v' = v mod 2^(m−1). BCG+21's sign gate: with a mask r and
//! x̂ = x + r mod 2^m,
//!
//! ```text
//! DReLU(x) = [x ≥ 0] = 1 ⊕ msb(x̂) ⊕ msb(r) ⊕ [x̂' < r'].
//! ```
//!
//! **Dealer** (per gate; everything but the corrections expands from each party's seed):
//! masks r = r_0 + r_1 of x (uniform in Z_2^64) and s = s_0 + s_1 of y (s = r when y is x),
//! flip bits σ_0, σ_1, and ρ = σ_0 ⊕ σ_1 ⊕ msb(r), a uniform bit. It deals a 1-bit DCF
//! ([`crate::fss::dcf_bit`]) on m − 1 bits at r', whose outputs are XOR shares c_b of
//! [x̂' < r'], and additive shares of ρ (a_0 from party 0's seed, a_1 = ρ − a_0 sent to
//! party 1) and of ρ·s (likewise c'_1 = ρ·s − c'_0 sent to party 1).
//!
//! **Round 1**: party b sends x_b + r_b (mod 2^m, packed at m bits; at 64 bits when y is x,
//! since the same opening then serves as ŷ) and, when y is not x, y_b + s_b (64 bits). Both
//! learn x̂ = x + r and ŷ = y + s.
//!
//! **Round 2**: party b sends e_b = c_b ⊕ σ_b ⊕ \[b = 0\]·(1 ⊕ msb(x̂)), one bit packed eight
//! to a byte. Both learn e = e_0 ⊕ e_1 = DReLU(x) ⊕ ρ.
//!
//! **Output**: DReLU(x) = e ⊕ ρ = e + (1 − 2e)·ρ with e public, and y = ŷ − s, so
//!
//! ```text
//! y·DReLU(x) = (e + (1 − 2e)ρ)(ŷ − s) = e·ŷ − e·s + (1 − 2e)(ŷ·ρ − ρ·s),
//! ```
//!
//! linear in the shares of s, ρ and ρ·s: party b outputs
//! `[b = 0]·e·ŷ − e·s_b + (1 − 2e)(ŷ·a_b − c'_b)`.
//!
//! **What is opened**: x̂ and ŷ are masked by r and s, uniform and known to neither party
//! (each holds one share); the DCF key is pseudorandom to its holder. e is masked by ρ, in
//! which σ_{1−b} is uniform and unknown to party b; e_{1−b} alone adds nothing once e and
//! e_b are known. So each party's view is uniform and independent of x and y, and the plan's
//! leakage report lists nothing for this gate.
//!
//! ## Costs (what the cost model states, `comet_compiler::cost`)
//! Per gate and party: round 1 w bits (w = 64 when y is x, else m) plus 64 when y is not x,
//! packed: ⌈n·w/8⌉ + 8n bytes for n gates; round 2 ⌈n/8⌉ bytes. Keys:
//! [`SignSelectKey::element_bytes`] = 926 (party 0) and 942 (party 1) bytes at m = 64, plus a
//! [`BATCH_HEADER_BYTES`] header per batch of at most [`SIGN_SELECT_BATCH`] gates and party
//! (counted apart, as the other key batches). Today's DReLU + mux for the same gate: 1 + 1
//! rounds, 64 + 128 bits per party and element, 1,536 + 1,536 + 8 key bytes.

use std::fmt;

use super::material::{
    DealerStreams, KeyBatch, MaterialError, PartyStreams, batch_sizes, deal_key_batches,
    read_key_batch,
};
use super::{
    MessageError, PartyId, Share, Step, check_party, pack, pack_bits, packed_len, ring_ops, unpack,
    unpack_bits,
};
use crate::fss::BATCH_HEADER_BYTES;
use crate::fss::sign_select::{self, SignSelectKey};

/// Gates per batch of keys (≤ 15.5 MB per party at m = 64): a streaming dealer holds one
/// batch at a time whatever the node's size.
pub const SIGN_SELECT_BATCH: usize = 1 << 14;

/// How sign-select key batches travel.
fn kind(bits: u32, same: bool) -> KeyBatch<'static, SignSelectKey> {
    KeyBatch {
        what: "sign-select",
        bits: u32::from(SignSelectKey::width_byte(bits, same)),
        batch: SIGN_SELECT_BATCH,
        element_bytes: SignSelectKey::element_bytes(0, bits),
        party1_extra: SignSelectKey::element_bytes(1, bits) - SignSelectKey::element_bytes(0, bits),
        header_bytes: BATCH_HEADER_BYTES,
        to_bytes: SignSelectKey::to_bytes,
    }
}

/// Fails unless `bits` is a width the gate takes (2..=64).
///
/// # Errors
/// If it is not.
pub fn check_width(bits: u32) -> Result<(), MaterialError> {
    sign_select::check_width(bits).map_err(|_| {
        MaterialError::Mismatch(format!(
            "a sign select at {bits} bits: the gate takes 2 to 64"
        ))
    })
}

/// One party's keys for the gates of one node: a [`SignSelectKey`] per batch.
#[derive(Clone, PartialEq, Eq)]
pub struct SignSelectMaterial {
    party: PartyId,
    bits: u32,
    same: bool,
    keys: Vec<SignSelectKey>,
}

impl fmt::Debug for SignSelectMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignSelectMaterial")
            .field("party", &self.party)
            .field("bits", &self.bits)
            .field("same", &self.same)
            .field("gates", &self.len())
            .finish_non_exhaustive()
    }
}

impl SignSelectMaterial {
    /// The comparison width m.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Whether y is x.
    pub fn same(&self) -> bool {
        self.same
    }

    /// Number of gates.
    pub fn len(&self) -> usize {
        self.keys.iter().map(SignSelectKey::len).sum()
    }

    /// Whether there are no gates.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys of gates `idx` (across the batches, in order), as one batch: the active
    /// entries of a sparse FFN's masked region ([`SignSelectKey::gather`]).
    ///
    /// # Panics
    /// As [`SignSelectKey::gather`].
    pub fn gather(&self, idx: &[usize]) -> SignSelectMaterial {
        SignSelectMaterial {
            party: self.party,
            bits: self.bits,
            same: self.same,
            keys: vec![SignSelectKey::gather(&self.keys, idx)],
        }
    }

    /// The party's body bytes: every batch serialized, in order.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.keys.iter().flat_map(SignSelectKey::to_bytes).collect()
    }

    fn x_wire_bits(&self) -> u32 {
        if self.same { 64 } else { self.bits }
    }
}

/// Deals keys for `n` gates at width `bits` (`same`: y is x), batch by batch; counts the
/// correction bytes and the headers.
///
/// # Panics
/// If `bits` is not in 2..=64 ([`check_width`]).
pub fn deal(d: &mut dyn DealerStreams, n: usize, bits: u32, same: bool) -> [SignSelectMaterial; 2] {
    deal_batches(d, n, bits, same, true, None).expect("kept")
}

/// [`deal`], handing each batch's body bytes to `sink`, if any, as soon as it is drawn, and
/// keeping the keys only when `keep` (else `None`).
///
/// # Panics
/// As [`deal`].
pub fn deal_batches(
    d: &mut dyn DealerStreams,
    n: usize,
    bits: u32,
    same: bool,
    keep: bool,
    sink: Option<&mut dyn FnMut([Vec<u8>; 2])>,
) -> Option<[SignSelectMaterial; 2]> {
    let [k0, k1] = deal_key_batches(d, n, &kind(bits, same), keep, sink, |len, rng| {
        sign_select::sign_select_offline(bits, same, len, rng)
    })?;
    Some([(0, k0), (1, k1)].map(|(party, keys)| SignSelectMaterial {
        party,
        bits,
        same,
        keys,
    }))
}

/// One party's keys for `n` gates, read from its body batch by batch (each header checked).
///
/// # Errors
/// If the body ends, or holds keys of another party, width, kind or count, or damaged keys.
pub fn replay(
    r: &mut dyn PartyStreams,
    n: usize,
    bits: u32,
    same: bool,
) -> Result<SignSelectMaterial, MaterialError> {
    check_width(bits)?;
    let party = r.party();
    let len = |n| SignSelectKey::byte_len(party, bits, n);
    let keys = batch_sizes(n, SIGN_SELECT_BATCH)
        .map(|n| {
            let follow = "the material does not follow the plan";
            let (at, bytes) = read_key_batch(r, n, &kind(bits, same), len(n), follow)?;
            SignSelectKey::from_bytes(&bytes).map_err(|e| {
                MaterialError::Corrupt(format!("sign-select key at body byte {at}: {e}"))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(SignSelectMaterial {
        party,
        bits,
        same,
        keys,
    })
}

/// Between the rounds.
pub struct State {
    party: PartyId,
    shape: Vec<usize>,
    /// Bits of x + r on the wire.
    wire: u32,
    m: SignSelectMaterial,
    phase: Phase,
}

enum Phase {
    /// Round 1: this party's x_b + r_b and (y not x) y_b + s_b.
    Open(Vec<u64>, Option<Vec<u64>>),
    /// Round 2: ŷ and this party's e_b.
    Reveal(Vec<u64>, Vec<bool>),
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let round = match self.phase {
            Phase::Open(..) => 1,
            Phase::Reveal(..) => 2,
        };
        f.debug_struct("sign_select::State")
            .field("party", &self.party)
            .field("shape", &self.shape)
            .field("round", &round)
            .finish_non_exhaustive()
    }
}

/// Starts `y·[x ≥ 0]` element-wise (`y`: `None` when y is x): the message is x_b + r_b
/// packed at its wire width, then, when y is not x, y_b + s_b at 64 bits.
///
/// # Panics
/// If the keys belong to another party or cover another number of gates, or `y` is given
/// for keys dealt for y = x (or missing for the others), or x and y differ in size.
pub fn start(
    party: PartyId,
    x: &Share,
    y: Option<&Share>,
    m: SignSelectMaterial,
) -> (State, Vec<u8>) {
    start_at(party, x, y, m, false)
}

/// [`start`], with x + r sent at the comparison width m when `at_cmp_width` and y is x:
/// for an output read mod 2^m only (x̂ then serves as ŷ mod 2^m, and the output's shares
/// are correct mod 2^m: [`comet_ir::graph::Node::open_at_cmp_width`]).
///
/// # Panics
/// As [`start`].
pub fn start_at(
    party: PartyId,
    x: &Share,
    y: Option<&Share>,
    m: SignSelectMaterial,
    at_cmp_width: bool,
) -> (State, Vec<u8>) {
    check_party(party);
    let wire = match at_cmp_width && m.same {
        true => m.bits,
        false => m.x_wire_bits(),
    };
    assert_eq!(m.party, party, "sign-select keys of party {}", m.party);
    assert_eq!(
        m.len(),
        x.len(),
        "keys for {} gates, {} inputs",
        m.len(),
        x.len()
    );
    assert_eq!(y.is_none(), m.same, "keys dealt for y = x: {}", m.same);
    let xs = per_batch(&m, &x.to_flat(), |k, v| sign_select::x_message(party, k, v));
    let mut msg = pack_bits(&xs, wire);
    let ys = y.map(|y| {
        assert_eq!(y.len(), x.len(), "x and y of one size");
        per_batch(&m, &y.to_flat(), |k, v| sign_select::y_message(party, k, v))
    });
    if let Some(ys) = &ys {
        msg.extend(pack(ys));
    }
    let st = State {
        party,
        shape: x.shape().to_vec(),
        wire,
        m,
        phase: Phase::Open(xs, ys),
    };
    (st, msg)
}

/// Ends a round with the peer's message: after round 1, the state and this party's bits
/// e_b (packed eight to a byte); after round 2, this party's share of `y·[x ≥ 0]`.
///
/// # Errors
/// If the peer's message has the wrong length (or nonzero padding).
pub fn step(mut st: State, peer: &[u8]) -> Result<Step<State, Share>, MessageError> {
    let n = st.m.len();
    match st.phase {
        Phase::Open(xs, ys) => {
            let x_len = packed_len(n, st.wire);
            let y_len = if ys.is_some() { 8 * n } else { 0 };
            if peer.len() != x_len + y_len {
                return Err(MessageError::Length {
                    expected: x_len + y_len,
                    actual: peer.len(),
                });
            }
            let theirs = unpack_bits(&peer[..x_len], n, st.wire)?;
            let x_hat = add(&xs, &theirs);
            let y_hat = match ys {
                Some(ys) => add(&ys, &unpack(&peer[x_len..])?),
                None => x_hat.clone(),
            };
            let party = st.party;
            let e: Vec<bool> = per_batch(&st.m, &x_hat, |k, v| {
                (sign_select::reveal_message(party, k, v).into_iter())
                    .map(u64::from)
                    .collect()
            })
            .into_iter()
            .map(|b| b == 1)
            .collect();
            let msg = pack_bits(&e.iter().map(|b| u64::from(*b)).collect::<Vec<_>>(), 1);
            st.phase = Phase::Reveal(y_hat, e);
            Ok(Step::Next(st, msg))
        }
        Phase::Reveal(y_hat, mine) => {
            let theirs = unpack_bits(peer, n, 1)?;
            let e: Vec<u64> = (mine.iter().zip(&theirs))
                .map(|(a, b)| u64::from(*a) ^ b)
                .collect();
            let (party, mut at) = (st.party, 0);
            let out = per_batch(&st.m, &y_hat, |k, y| {
                let e: Vec<bool> = e[at..at + y.len()].iter().map(|b| *b == 1).collect();
                at += y.len();
                sign_select::finish(party, k, &e, y)
            });
            Ok(Step::Done(Share(ring_ops::from_flat(&st.shape, &out))))
        }
    }
}

fn add(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(a, b)| a.wrapping_add(*b)).collect()
}

/// `f(batch key, the batch's slice of v)` over the batches, concatenated.
fn per_batch(
    m: &SignSelectMaterial,
    v: &[u64],
    mut f: impl FnMut(&SignSelectKey, &[u64]) -> Vec<u64>,
) -> Vec<u64> {
    let mut out = Vec::with_capacity(v.len());
    let mut at = 0;
    for k in &m.keys {
        out.extend(f(k, &v[at..at + k.len()]));
        at += k.len();
    }
    out
}
