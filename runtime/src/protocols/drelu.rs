//! DReLU, `[x ≥ 0]`, by function secret sharing ([`crate::fss`], BCG+21) on a width m
//! (2 ≤ m ≤ 64; exact while the signed x fits m bits, m = 64 the whole ring): 1 round,
//! each party sends its share of `x + r mod 2^m` packed at m bits per element
//! ([`pack_bits`], ⌈n·m/8⌉ bytes: 2m·n bits in all when n·m is a multiple of 8); the
//! dealer's DCF keys ([`DreluKey::element_bytes`] = 24(m−1) + ⌈2(m−1)/8⌉ + 8 bytes per
//! element and party) are the offline cost. The output is an **arithmetic** 0/1 share,
//! ready for [`super::mux`]. The width travels with the keys: [`deal`] and [`replay`] take
//! it from the plan, [`start`] and [`finish`] read it off the key.

use std::fmt;

use super::material::{
    DealerStreams, KeyBatch, MaterialError, PartyStreams, batch_sizes, deal_key_batches,
    read_key_batch,
};
use super::{MessageError, PartyId, Share, check_party, pack_bits, ring_ops, unpack_bits};
use crate::fss::{self, DreluKey, drelu::DRELU_KEY_HEADER_BYTES};

/// Between [`start`] and [`finish`].
pub struct State {
    party: PartyId,
    m: DreluMaterial,
    shape: Vec<usize>,
    mine: Vec<u64>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("drelu::State")
            .field("party", &self.party)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

/// Starts `[x ≥ 0]` element-wise: the message is `x_p + r_p mod 2^m`, packed.
///
/// # Panics
/// If the key belongs to another party or covers another number of gates.
pub fn start(party: PartyId, x: &Share, m: DreluMaterial) -> (State, Vec<u8>) {
    start_ge(party, x, 0, m)
}

/// Starts `[x ≥ t]` for a public ring threshold `t` (DReLU of `x − t`; exact while `x − t`
/// fits the key's width m in signed bits).
///
/// # Panics
/// As [`start`].
pub fn start_ge(party: PartyId, x: &Share, t: u64, m: DreluMaterial) -> (State, Vec<u8>) {
    check_party(party);
    let mine = fss::ge_threshold_online_message(party, &m.key, &x.to_flat(), t);
    let msg = pack_bits(&mine, m.key.bits());
    let shape = x.shape().to_vec();
    (
        State {
            party,
            m,
            shape,
            mine,
        },
        msg,
    )
}

/// This party's arithmetic share of the bits.
///
/// # Errors
/// If the peer's message has the wrong length (or nonzero padding).
pub fn finish(state: State, peer: &[u8]) -> Result<Share, MessageError> {
    let peer = unpack_bits(peer, state.mine.len(), state.m.key.bits())?;
    let x_hat = fss::open_masked(&state.mine, &peer);
    let bits = fss::drelu_finish(state.party, &state.m.key, &x_hat);
    Ok(Share(ring_ops::from_flat(&state.shape, &bits)))
}

/// This party's arithmetic shares of `[x ≥ t]` for every public ring threshold `t` of
/// `thresholds`, on a new last axis, from the one opening of `x + r` that [`start`] began:
/// the key's DCF is evaluated at `x + r − t` for each (`[x ≥ t]` is `DReLU(x − t)`, whose
/// masked value is `x + r − t`), so the thresholds share the mask, the key and the round.
///
/// # Errors
/// If the peer's message has the wrong length (or nonzero padding).
pub fn finish_at(state: State, peer: &[u8], thresholds: &[u64]) -> Result<Share, MessageError> {
    let peer = unpack_bits(peer, state.mine.len(), state.m.key.bits())?;
    let x_hat = fss::open_masked(&state.mine, &peer);
    finish_opened(state.party, &state.m, &x_hat, &state.shape, thresholds)
}

/// This party's arithmetic shares of `[x ≥ t]` for every public ring threshold `t`, on a
/// new last axis of `shape`, from an opened `x̂ = x + r mod 2^m`: [`finish_at`]'s own
/// opening, or one another gate opened with keys dealt on its mask
/// ([`deal_batches_on_masks`]): the comparison of a stochastic truncation's output that
/// reads the truncation's opening (`comet_ir::protocol::Protocol::DreluOpened`), no message
/// of its own.
///
/// # Errors
/// If the opened value does not cover the keys' gates.
pub fn finish_opened(
    party: PartyId,
    m: &DreluMaterial,
    x_hat: &[u64],
    shape: &[usize],
    thresholds: &[u64],
) -> Result<Share, MessageError> {
    check_party(party);
    if x_hat.len() != m.key.len() {
        return Err(MessageError::Length {
            expected: m.key.len(),
            actual: x_hat.len(),
        });
    }
    let k = thresholds.len();
    let per_threshold: Vec<Vec<u64>> = (thresholds.iter())
        .map(|t| {
            let shifted: Vec<u64> = x_hat.iter().map(|v| v.wrapping_sub(*t)).collect();
            fss::drelu_finish(party, &m.key, &shifted)
        })
        .collect();
    let flat: Vec<u64> = (0..x_hat.len() * k)
        .map(|i| per_threshold[i % k][i / k])
        .collect();
    let mut shape = shape.to_vec();
    shape.push(k);
    Ok(Share(ring_ops::from_flat(&shape, &flat)))
}

/// DReLU keys for [`drelu`](self).
#[derive(Clone, PartialEq, Eq)]
pub struct DreluMaterial {
    /// The FSS key batch.
    pub key: DreluKey,
}

impl fmt::Debug for DreluMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DreluMaterial")
            .field("key", &self.key)
            .finish()
    }
}

impl DreluMaterial {
    /// The keys of gates `idx` ([`DreluKey::gather`]): the result cannot be written to a
    /// material file.
    ///
    /// # Panics
    /// If an index is out of range or repeats.
    pub fn gather(&self, idx: &[usize]) -> DreluMaterial {
        DreluMaterial {
            key: self.key.gather(idx),
        }
    }
}

/// Gates per batch of keys: a node's keys are dealt, sent and read in batches of at most
/// this many gates (25 MB per party at 1536 bytes per gate, m = 64), so that a dealer that streams
/// them never holds more than one batch, whatever the node's size.
pub const DRELU_BATCH: usize = 1 << 14;

/// How DReLU key batches of width `bits` travel.
fn kind(bits: u32) -> KeyBatch<'static, DreluKey> {
    KeyBatch {
        what: "DReLU",
        bits,
        batch: DRELU_BATCH,
        element_bytes: DreluKey::element_bytes(bits),
        party1_extra: 0,
        header_bytes: DRELU_KEY_HEADER_BYTES,
        to_bytes: DreluKey::to_bytes,
    }
}

/// Deals DCF keys for `n` gates of width `bits` from the FSS stream
/// ([`fss::drelu_offline_bits`]), batch by batch; counts the correction words and the key
/// headers.
///
/// # Panics
/// If `bits` is not in 2..=64.
pub fn deal(d: &mut dyn DealerStreams, n: usize, bits: u32) -> [DreluMaterial; 2] {
    deal_batches(d, n, bits, true, None).expect("kept")
}

/// [`deal`], handing each batch's body bytes (what each party's material carries, its
/// serialized keys) to `sink`, if any, as soon as the batch is drawn, and keeping the keys only
/// when `keep` (else `None`: a dealer that only streams holds one batch at a time).
pub fn deal_batches(
    d: &mut dyn DealerStreams,
    n: usize,
    bits: u32,
    keep: bool,
    sink: Option<&mut dyn FnMut([Vec<u8>; 2])>,
) -> Option<[DreluMaterial; 2]> {
    let [k0, k1] = deal_key_batches(d, n, &kind(bits), keep, sink, |len, rng| {
        fss::drelu_offline_bits(len, bits, rng)
    })?;
    Some([(0, k0), (1, k1)].map(|(party, keys)| DreluMaterial {
        key: DreluKey::concat(party, bits, keys),
    }))
}

/// [`deal_batches`] for gates whose masked input another gate opens under the mask
/// `masks[i]` ([`fss::drelu_offline_on_masks`]); the keys travel as any DReLU keys, so a
/// party replays them with [`replay`].
///
/// # Panics
/// If `bits` is not in 2..=64.
pub fn deal_batches_on_masks(
    d: &mut dyn DealerStreams,
    masks: &[u64],
    bits: u32,
    keep: bool,
    sink: Option<&mut dyn FnMut([Vec<u8>; 2])>,
) -> Option<[DreluMaterial; 2]> {
    let mut at = 0;
    let [k0, k1] = deal_key_batches(d, masks.len(), &kind(bits), keep, sink, |len, rng| {
        let keys = fss::drelu_offline_on_masks(&masks[at..at + len], bits, rng);
        at += len;
        keys
    })?;
    Some([(0, k0), (1, k1)].map(|(party, keys)| DreluMaterial {
        key: DreluKey::concat(party, bits, keys),
    }))
}

/// One party's keys for `n` gates of width `bits`, read from its body batch by batch (each
/// header checked against its batch).
///
/// # Errors
/// If the body ends, or holds keys of another party, width or count.
pub fn replay(
    r: &mut dyn PartyStreams,
    n: usize,
    bits: u32,
) -> Result<DreluMaterial, MaterialError> {
    let mut parts = Vec::new();
    for len in batch_sizes(n, DRELU_BATCH) {
        parts.push(replay_batch(r, len, bits)?);
    }
    Ok(DreluMaterial {
        key: DreluKey::concat(r.party(), bits, parts),
    })
}

/// One batch of `n` gates of width `bits` from the body.
fn replay_batch(r: &mut dyn PartyStreams, n: usize, bits: u32) -> Result<DreluKey, MaterialError> {
    let len = DreluKey::byte_len_bits(n, bits);
    let follow = "the file does not follow the plan";
    let (at, bytes) = read_key_batch(r, n, &kind(bits), len, follow)?;
    DreluKey::from_bytes(&bytes)
        .map_err(|e| MaterialError::Corrupt(format!("DReLU key at body byte {at}: {e}")))
}
