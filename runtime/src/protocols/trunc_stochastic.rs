//! Wrap-free stochastic truncation ([`comet_ir::Op::StochasticTrunc`]): shares of
//! `⌊x / 2^s⌋ + e`, `e ∈ {0, 1}` with `P(e = 1) = (x mod 2^s) / 2^s` (unbiased stochastic
//! rounding), for a shared signed value with `|x| < 2^62` ring units, in **1 round** and
//! with 16 bytes of dealer material per element (party 1; party 0's expands from its
//! seed). It never fails by a wrap, unlike the local (SecureML) truncation, whose
//! failure probability `|x| / 2^64` the compiler cannot bound on a real model; against
//! the exact FSS truncation ([`super::trunc_fss`], the floor, 396–404 bytes of DCF key
//! per element) it gives up only the exactness of the last bit, which a local truncation
//! never had either.
//!
//! ## Derivation
//! Let `y = x + 2^62`, so `0 ≤ y < 2^63` (the input bound), and `r` the dealer's uniform
//! mask in Z_2^64; both parties open `ŷ = y + r mod 2^64`. With `v = v_h·2^s + v_l`
//! (`0 ≤ v_l < 2^s`) and `msb(v)` bit 63: as integers `y = ŷ − r + 2^64·w`, where the wrap
//! `w = [ŷ < r] = msb(r)·(1 − msb(ŷ))` because `y < 2^63` (the derivation of
//! [`crate::fss::trunc`]). Hence
//!
//! ```text
//! ⌊y / 2^s⌋ = ŷ_h − r_h + 2^(64−s)·msb(r)·(1 − msb(ŷ)) − [ŷ_l < r_l]
//! ```
//!
//! The exact gate computes the carry `[ŷ_l < r_l]` with a DCF; this one drops it. The
//! result is `⌊y / 2^s⌋ + [ŷ_l < r_l]`, and `ŷ_l < r_l` exactly when `y_l + r_l` carries
//! into bit s, which for a uniform `r_l` happens with probability `y_l / 2^s`: the output
//! is `y / 2^s` rounded down or up, up with the probability of the dropped fraction.
//! Subtracting `2^(62−s)` gives `x` (2^62 is a multiple of 2^s).
//!
//! **Dealer** (per element): the mask shares `r_0`, `r_1` (each from its party's stream),
//! additive shares of `r_h = ⌊r / 2^s⌋` and of `msb(r)`: party 0's from its stream,
//! party 1's (`r_h − h_0`, `msb(r) − m_0`) sent, 16 bytes.
//!
//! **Round 1**: party b sends `x_b + r_b` (+ 2^62 for b = 0), 64 bits per element.
//!
//! **Output**: party b outputs
//! `[b = 0]·(ŷ_h − 2^(62−s)) − h_b + 2^(64−s)·(1 − msb(ŷ))·m_b`.
//!
//! **What is opened**: `ŷ`, masked by the uniform `r` that neither party knows; nothing
//! about x. The plan's leakage report lists nothing for this gate.
//!
//! ## Costs (what the cost model states, `comet_compiler::cost`)
//! Per element 64 bits online per party (both: 128n bits, 1 round); dealer 128 bits per
//! element (party 1's two shares); local work a few ring operations per element.

use std::fmt;

use rand_chacha::ChaCha12Rng;

use rand::Rng;

use super::material::{DealerStreams, MaterialError, PartyStreams, batch_sizes, words};
use super::{MessageError, PartyId, Share, check_party, pack, ring_ops, unpack};
use crate::fss::trunc::OFFSET;

/// Dealer bytes per element (party 1's shares of `r_h` and `msb(r)`).
pub const ELEMENT_BYTES: u64 = 16;

/// Elements dealt at a time (6 MiB of both parties' material): a streaming dealer holds
/// one batch whatever the node's size (a GPT-2 head's logits are 6.4 M elements).
pub const BATCH: usize = 1 << 16;

/// Fails unless `bits` is a shift the gate takes (1..=62).
///
/// # Errors
/// If it is not.
pub fn check_bits(bits: u32) -> Result<(), MaterialError> {
    crate::fss::trunc::check_bits(bits).map_err(|_| {
        MaterialError::Mismatch(format!(
            "a stochastic truncation by {bits} bits: the gate drops 1 to 62 bits"
        ))
    })
}

/// One party's material for the truncations of one node.
#[derive(Clone, PartialEq, Eq)]
pub struct StochasticTruncMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    bits: u32,
    /// Share of the mask `r`.
    r: Vec<u64>,
    /// Share of `r_h = ⌊r / 2^s⌋`.
    h: Vec<u64>,
    /// Share of `msb(r)`.
    m: Vec<u64>,
}

impl fmt::Debug for StochasticTruncMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StochasticTruncMaterial")
            .field("party", &self.party)
            .field("bits", &self.bits)
            .field("elements", &self.r.len())
            .finish_non_exhaustive()
    }
}

impl StochasticTruncMaterial {
    /// The shift s.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.r.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.r.is_empty()
    }

    /// The material of elements `idx`, in order: the active entries of a sparse FFN's
    /// masked region.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn gather(&self, idx: &[usize]) -> StochasticTruncMaterial {
        let pick = |v: &[u64]| idx.iter().map(|&i| v[i]).collect();
        StochasticTruncMaterial {
            party: self.party,
            bits: self.bits,
            r: pick(&self.r),
            h: pick(&self.h),
            m: pick(&self.m),
        }
    }

    /// Every share, in order (tests compare a replay with the dealing).
    #[cfg(test)]
    pub(crate) fn words(&self) -> Vec<u64> {
        [&self.r, &self.h, &self.m]
            .into_iter()
            .flatten()
            .copied()
            .collect()
    }
}

/// Party `party`'s draws for `n` elements from its stream, element by element (so that
/// any split into batches draws the same): `r_p`, then (party 0) `h_0` and `m_0`; party
/// 1's `h`, `m` are filled in from the dealer's correction.
fn draw_shares(
    rng: &mut ChaCha12Rng,
    party: PartyId,
    n: usize,
    bits: u32,
) -> StochasticTruncMaterial {
    let mut m = StochasticTruncMaterial {
        party,
        bits,
        r: Vec::with_capacity(n),
        h: vec![0; n],
        m: vec![0; n],
    };
    for i in 0..n {
        m.r.push(rng.next_u64());
        if party == 0 {
            m.h[i] = rng.next_u64();
            m.m[i] = rng.next_u64();
        }
    }
    m
}

/// Deals the material of `n` truncations by `bits`; counts party 1's 16 bytes per element.
///
/// # Panics
/// If `bits` is not in 1..=62 ([`check_bits`]).
pub fn deal(d: &mut dyn DealerStreams, n: usize, bits: u32) -> [StochasticTruncMaterial; 2] {
    deal_batches(d, n, bits, true, None).expect("kept")
}

/// [`deal`], batch by batch ([`BATCH`] elements), handing each batch's body bytes to
/// `sink`, if any, as soon as it is drawn, and keeping the material only when `keep`
/// (else `None`).
///
/// # Panics
/// As [`deal`].
pub fn deal_batches(
    d: &mut dyn DealerStreams,
    n: usize,
    bits: u32,
    keep: bool,
    mut sink: Option<&mut dyn FnMut([Vec<u8>; 2])>,
) -> Option<[StochasticTruncMaterial; 2]> {
    check_bits(bits).expect("the caller checks the shift");
    let mut kept = keep.then(|| {
        [0, 1].map(|party| StochasticTruncMaterial {
            party,
            bits,
            r: Vec::with_capacity(n),
            h: Vec::with_capacity(n),
            m: Vec::with_capacity(n),
        })
    });
    for len in batch_sizes(n, BATCH) {
        let [m0, mut m1] = [0, 1].map(|p| draw_shares(d.stream(p), p, len, bits));
        for i in 0..len {
            let r = m0.r[i].wrapping_add(m1.r[i]);
            m1.h[i] = (r >> bits).wrapping_sub(m0.h[i]);
            m1.m[i] = (r >> 63).wrapping_sub(m0.m[i]);
        }
        d.count_offline(ELEMENT_BYTES * len as u64);
        let batch = [m0, m1];
        if let Some(sink) = sink.as_mut() {
            sink(body(&batch));
        }
        if let Some(k) = kept.as_mut() {
            for (k, b) in k.iter_mut().zip(batch) {
                k.r.extend(b.r);
                k.h.extend(b.h);
                k.m.extend(b.m);
            }
        }
    }
    kept
}

/// What a party's material body carries: party 1's shares of `r_h` and `msb(r)`,
/// interleaved per element, little-endian.
pub fn body(m: &[StochasticTruncMaterial; 2]) -> [Vec<u8>; 2] {
    let hm: Vec<u64> = (m[1].h.iter().zip(&m[1].m))
        .flat_map(|(h, m)| [*h, *m])
        .collect();
    [Vec::new(), pack(&hm)]
}

/// One party's material for `n` truncations, as [`deal`] drew it.
///
/// # Errors
/// If the shift is out of range or the body cannot be read.
pub fn replay(
    r: &mut dyn PartyStreams,
    n: usize,
    bits: u32,
) -> Result<StochasticTruncMaterial, MaterialError> {
    check_bits(bits)?;
    let party = r.party();
    let mut m = draw_shares(r.stream(), party, n, bits);
    if party == 1 {
        let hm = words(&r.body(ELEMENT_BYTES as usize * n)?);
        m.h = hm.iter().step_by(2).copied().collect();
        m.m = hm.iter().skip(1).step_by(2).copied().collect();
    }
    Ok(m)
}

/// Between the round's message and its end.
pub struct State {
    shape: Vec<usize>,
    m: StochasticTruncMaterial,
    mine: Vec<u64>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("trunc_stochastic::State")
            .field("party", &self.m.party)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

/// Starts the truncation of `x` element-wise: the message is `x_b + r_b` (+ 2^62 for
/// party 0), 64 bits per element.
///
/// # Panics
/// If the material belongs to another party or covers another number of elements.
pub fn start(party: PartyId, x: &Share, m: StochasticTruncMaterial) -> (State, Vec<u8>) {
    check_party(party);
    assert_eq!(m.party, party, "truncation material of party {}", m.party);
    assert_eq!(
        m.len(),
        x.len(),
        "material for {} elements, {} inputs",
        m.len(),
        x.len()
    );
    let offset = if party == 0 { OFFSET } else { 0 };
    let mine: Vec<u64> = (x.to_flat().iter().zip(&m.r))
        .map(|(x, r)| x.wrapping_add(*r).wrapping_add(offset))
        .collect();
    let msg = pack(&mine);
    let shape = x.shape().to_vec();
    (State { shape, m, mine }, msg)
}

/// Ends the round with the peer's message: this party's share of `⌊x / 2^s⌋ + e`.
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
    let s = st.m.bits;
    let party = st.m.party;
    let out: Vec<u64> = (0..n)
        .map(|i| {
            let y = st.mine[i].wrapping_add(theirs[i]);
            let wrap = (1 - (y >> 63)).wrapping_shl(64 - s);
            let public = if party == 0 {
                (y >> s).wrapping_sub(OFFSET >> s)
            } else {
                0
            };
            public
                .wrapping_sub(st.m.h[i])
                .wrapping_add(wrap.wrapping_mul(st.m.m[i]))
        })
        .collect();
    Ok(Share(ring_ops::from_flat(&st.shape, &out)))
}
