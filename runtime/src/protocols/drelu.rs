//! DReLU, `[x ≥ 0]`, by function secret sharing ([`crate::fss`], BCG+21): 1 round, each
//! party sends its share of `x + r` (2l·n bits); the dealer's DCF keys are the offline
//! cost. The output is an **arithmetic** 0/1 share, ready for [`super::mux`].

use std::fmt;

use super::material::{DealerStreams, MaterialError, PartyStreams};
use super::{MessageError, PartyId, Share, check_len, check_party, ring_ops};
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

/// Starts `[x ≥ 0]` element-wise: the message is `x_p + r_p`.
///
/// # Panics
/// If the key belongs to another party or covers another number of gates.
pub fn start(party: PartyId, x: &Share, m: DreluMaterial) -> (State, Vec<u64>) {
    start_ge(party, x, 0, m)
}

/// Starts `[x ≥ t]` for a public ring threshold `t` (DReLU of `x − t`; exact while `x − t`
/// does not wrap).
///
/// # Panics
/// As [`start`].
pub fn start_ge(party: PartyId, x: &Share, t: u64, m: DreluMaterial) -> (State, Vec<u64>) {
    check_party(party);
    let mine = fss::ge_threshold_online_message(party, &m.key, &x.to_flat(), t);
    let shape = x.shape().to_vec();
    (
        State {
            party,
            m,
            shape,
            mine: mine.clone(),
        },
        mine,
    )
}

/// This party's arithmetic share of the bits.
///
/// # Errors
/// If the peer's message has the wrong length.
pub fn finish(state: State, peer: &[u64]) -> Result<Share, MessageError> {
    check_len(peer, state.mine.len())?;
    let x_hat = fss::open_masked(&state.mine, peer);
    let bits = fss::drelu_finish(state.party, &state.m.key, &x_hat);
    Ok(Share(ring_ops::from_flat(&state.shape, &bits)))
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

/// Deals DCF keys for `n` gates from the FSS stream ([`fss::drelu_offline`]); counts the
/// correction words and the key headers.
pub fn deal(d: &mut dyn DealerStreams, n: usize) -> [DreluMaterial; 2] {
    let (k0, k1) = fss::drelu_offline(n, d.fss_stream());
    d.count_offline(2 * (n * fss::DRELU_KEY_BYTES_PER_ELEMENT) as u64);
    d.count_headers(2 * DRELU_KEY_HEADER_BYTES as u64);
    [DreluMaterial { key: k0 }, DreluMaterial { key: k1 }]
}

/// What each party's material body carries: its serialized keys.
pub fn body(m: &[DreluMaterial; 2]) -> [Vec<u8>; 2] {
    [m[0].key.to_bytes(), m[1].key.to_bytes()]
}

/// One party's keys for `n` gates, read from its body (header checked against `n`).
///
/// # Errors
/// If the body ends, or holds keys of another party or count.
pub fn replay(r: &mut dyn PartyStreams, n: usize) -> Result<DreluMaterial, MaterialError> {
    let (at, party) = (r.body_offset(), r.party());
    let mut bytes = r.body(DRELU_KEY_HEADER_BYTES)?;
    let count = u64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes"));
    if bytes[0] != party || count != n as u64 {
        return Err(MaterialError::Corrupt(format!(
            "at body byte {at}: expected the DReLU keys of party {party} for {n} gates, found \
             party {} and {count} gates: the file does not follow the plan",
            bytes[0]
        )));
    }
    r.count_headers(DRELU_KEY_HEADER_BYTES as u64);
    bytes.extend(r.body(DreluKey::byte_len(n) - DRELU_KEY_HEADER_BYTES)?);
    let key = DreluKey::from_bytes(&bytes)
        .map_err(|e| MaterialError::Corrupt(format!("DReLU key at body byte {at}: {e}")))?;
    Ok(DreluMaterial { key })
}
