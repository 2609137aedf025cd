//! Faithful truncation ([`comet_ir::Op::FaithfulTrunc`]): shares of the exact arithmetic
//! shift `⌊x / 2^s⌋` of a shared signed value with `|x| < 2^62` ring units, by one FSS key
//! per element (SIGMA's truncation, Gupta et al., ePrint 2023/1269), in **1 round**. It
//! replaces the local (SecureML) truncation where the compiler's range analysis cannot
//! bound that one's failure probability (`comet_compiler::passes::faithful_trunc`). Keys,
//! derivation and the two local steps: [`crate::fss::trunc`].
//!
//! **Round 1**: party b sends `x_b + r_b` (party 0 adding 2^62), 64 bits per element; both
//! learn `ŷ = x + 2^62 + r`, uniform. **Output**: each party evaluates its DCF at the low s
//! bits of ŷ and adds the public and masked terms ([`crate::fss::trunc::trunc_finish`]).
//!
//! **What is opened**: `ŷ`, masked by `r`, which neither party knows; the plan's leakage
//! report lists nothing for this gate.
//!
//! ## Costs (what the cost model states, `comet_compiler::cost`)
//! Per element and party 64 bits online (both parties: 128n bits, 1 round); keys
//! [`TruncKey::element_bytes`] = 24s + ⌈2s/8⌉ + 8 bytes (party 0) and 8 more (party 1): 396
//! and 404 at s = 16, plus a [`BATCH_HEADER_BYTES`] header per batch of at most
//! [`TRUNC_BATCH`] elements and party (counted apart, as the other key batches).

use std::fmt;

use super::material::{
    DealerStreams, KeyBatch, MaterialError, PartyStreams, batch_sizes, deal_key_batches,
    read_key_batch,
};
use super::{MessageError, PartyId, Share, check_party, pack, ring_ops, unpack};
use crate::fss::BATCH_HEADER_BYTES;
use crate::fss::trunc::{self, TruncKey};

/// Elements per batch of keys (≤ 6.7 MB per party at s = 16): a streaming dealer holds one
/// batch at a time whatever the node's size.
pub const TRUNC_BATCH: usize = 1 << 14;

/// How truncation key batches travel.
fn kind(bits: u32) -> KeyBatch<'static, TruncKey> {
    KeyBatch {
        what: "faithful-truncation",
        bits,
        batch: TRUNC_BATCH,
        element_bytes: TruncKey::element_bytes(0, bits),
        party1_extra: TruncKey::element_bytes(1, bits) - TruncKey::element_bytes(0, bits),
        header_bytes: BATCH_HEADER_BYTES,
        to_bytes: TruncKey::to_bytes,
    }
}

/// Fails unless `bits` is a shift the gate takes (1..=62).
///
/// # Errors
/// If it is not.
pub fn check_bits(bits: u32) -> Result<(), MaterialError> {
    trunc::check_bits(bits).map_err(|_| {
        MaterialError::Mismatch(format!(
            "a faithful truncation by {bits} bits: the gate drops 1 to 62 bits"
        ))
    })
}

/// One party's keys for the truncations of one node: a [`TruncKey`] per batch.
#[derive(Clone, PartialEq, Eq)]
pub struct TruncMaterial {
    party: PartyId,
    bits: u32,
    keys: Vec<TruncKey>,
}

impl fmt::Debug for TruncMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TruncMaterial")
            .field("party", &self.party)
            .field("bits", &self.bits)
            .field("elements", &self.len())
            .finish_non_exhaustive()
    }
}

impl TruncMaterial {
    /// The shift s.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.keys.iter().map(TruncKey::len).sum()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys of elements `idx` (across the batches, in order), as one batch: the
    /// active entries of a sparse FFN's masked region ([`TruncKey::gather`]).
    ///
    /// # Panics
    /// As [`TruncKey::gather`].
    pub fn gather(&self, idx: &[usize]) -> TruncMaterial {
        TruncMaterial {
            party: self.party,
            bits: self.bits,
            keys: vec![TruncKey::gather(&self.keys, idx)],
        }
    }

    /// The party's body bytes: every batch serialized, in order.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.keys.iter().flat_map(TruncKey::to_bytes).collect()
    }
}

/// Deals keys for `n` truncations by `bits`, batch by batch; counts the correction bytes
/// and the headers.
///
/// # Panics
/// If `bits` is not in 1..=62 ([`check_bits`]).
pub fn deal(d: &mut dyn DealerStreams, n: usize, bits: u32) -> [TruncMaterial; 2] {
    deal_batches(d, n, bits, true, None).expect("kept")
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
    keep: bool,
    sink: Option<&mut dyn FnMut([Vec<u8>; 2])>,
) -> Option<[TruncMaterial; 2]> {
    let [k0, k1] = deal_key_batches(d, n, &kind(bits), keep, sink, |len, rng| {
        trunc::trunc_offline(bits, len, rng)
    })?;
    Some([(0, k0), (1, k1)].map(|(party, keys)| TruncMaterial { party, bits, keys }))
}

/// One party's keys for `n` truncations, read from its body batch by batch (each header
/// checked).
///
/// # Errors
/// If the body ends, or holds keys of another party, shift, kind or count, or damaged keys.
pub fn replay(
    r: &mut dyn PartyStreams,
    n: usize,
    bits: u32,
) -> Result<TruncMaterial, MaterialError> {
    check_bits(bits)?;
    let party = r.party();
    let len = |n| TruncKey::byte_len(party, bits, n);
    let keys = batch_sizes(n, TRUNC_BATCH)
        .map(|n| {
            let follow = "the material does not follow the plan";
            let (at, bytes) = read_key_batch(r, n, &kind(bits), len(n), follow)?;
            TruncKey::from_bytes(&bytes).map_err(|e| {
                MaterialError::Corrupt(format!("faithful-truncation key at body byte {at}: {e}"))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(TruncMaterial { party, bits, keys })
}

/// Between the round's message and its end: this party's masked values and keys.
pub struct State {
    party: PartyId,
    shape: Vec<usize>,
    m: TruncMaterial,
    mine: Vec<u64>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("trunc_fss::State")
            .field("party", &self.party)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

/// Starts the truncation of `x` element-wise: the message is `x_b + r_b` (+ 2^62 for party
/// 0), 64 bits per element.
///
/// # Panics
/// If the keys belong to another party or cover another number of elements.
pub fn start(party: PartyId, x: &Share, m: TruncMaterial) -> (State, Vec<u8>) {
    check_party(party);
    assert_eq!(m.party, party, "truncation keys of party {}", m.party);
    assert_eq!(
        m.len(),
        x.len(),
        "keys for {} elements, {} inputs",
        m.len(),
        x.len()
    );
    let mine = per_batch(&m, &x.to_flat(), |k, v| trunc::trunc_message(party, k, v));
    let msg = pack(&mine);
    let st = State {
        party,
        shape: x.shape().to_vec(),
        m,
        mine,
    };
    (st, msg)
}

/// Ends the round with the peer's message: this party's share of `⌊x / 2^s⌋`.
///
/// # Errors
/// If the peer's message has the wrong length.
pub fn finish(st: State, peer: &[u8]) -> Result<Share, MessageError> {
    let n = st.m.len();
    if peer.len() != 8 * n {
        return Err(MessageError::Length {
            expected: 8 * n,
            actual: peer.len(),
        });
    }
    let theirs = unpack(peer)?;
    let y_hat: Vec<u64> = (st.mine.iter().zip(&theirs))
        .map(|(a, b)| a.wrapping_add(*b))
        .collect();
    let party = st.party;
    let out = per_batch(&st.m, &y_hat, |k, y| trunc::trunc_finish(party, k, y));
    Ok(Share(ring_ops::from_flat(&st.shape, &out)))
}

/// `f(batch key, the batch's slice of v)` over the batches, concatenated.
fn per_batch(
    m: &TruncMaterial,
    v: &[u64],
    mut f: impl FnMut(&TruncKey, &[u64]) -> Vec<u64>,
) -> Vec<u64> {
    let mut out = Vec::with_capacity(v.len());
    let mut at = 0;
    for k in &m.keys {
        out.extend(f(k, &v[at..at + k.len()]));
        at += k.len();
    }
    out
}
