//! Wrap-free stochastic truncation ([`comet_ir::Op::StochasticTrunc`]): shares of
//! `⌊x / 2^s⌋ + e`, `e ∈ {0, 1}` with `P(e = 1) = (x mod 2^s) / 2^s` (unbiased stochastic
//! rounding), for a shared signed value `x ∈ [−2^(m−2), 2^(m−2))` (ring units) at a
//! **width** m, s + 2 ≤ m ≤ 64 (the node's `cmp_width`, 64 when unset: `|x| < 2^62`), in
//! **1 round**, m bits per element and party online and 16 bytes of dealer material per
//! element (party 1; party 0's expands from its seed). It never fails by a wrap, unlike
//! the local (SecureML) truncation, whose failure probability `|x| / 2^64` the compiler
//! cannot bound on a real model; against the exact FSS truncation ([`super::trunc_fss`],
//! the floor, 396–404 bytes of DCF key per element) it gives up only the exactness of the
//! last bit, which a local truncation never had either.
//!
//! ## Derivation (at width m)
//! Let `y = x + 2^(m−2)`, so `0 ≤ y < 2^(m−1)` (the input bound), and `r` the dealer's
//! uniform mask in Z_2^m; both parties open `ŷ = y + r mod 2^m`. With `v = v_h·2^s + v_l`
//! (`0 ≤ v_l < 2^s`) for `v < 2^m`, and `msb_m(v)` bit m−1: as integers
//! `y = ŷ − r + 2^m·w`, where the wrap `w = [ŷ < r] = msb_m(r)·(1 − msb_m(ŷ))` because
//! `y < 2^(m−1)` (if `r < 2^(m−1)` the sum stays below 2^m; otherwise it wraps exactly
//! when it lands below 2^(m−1)). Hence
//!
//! ```text
//! ⌊y / 2^s⌋ = ŷ_h − r_h + 2^(m−s)·msb_m(r)·(1 − msb_m(ŷ)) − [ŷ_l < r_l]
//! ```
//!
//! an identity between integers, which the parties evaluate in Z_2^64 (the output ring).
//! The exact gate computes the carry `[ŷ_l < r_l]` with a DCF; this one drops it. The
//! result is `⌊y / 2^s⌋ + [ŷ_l < r_l]`, and `ŷ_l < r_l` exactly when `y_l + r_l` carries
//! into bit s, which for a uniform `r_l` happens with probability `y_l / 2^s`: the output
//! is `y / 2^s` rounded down or up, up with the probability of the dropped fraction.
//! Subtracting `2^(m−2−s)` gives `x` (2^(m−2) is a multiple of 2^s as m − 2 ≥ s).
//!
//! The parties' shares `x_b` live in Z_2^64, and `x_0 + x_1 ≡ x (mod 2^m)` as 2^m divides
//! 2^64, so each party reduces its own message mod 2^m: the mask `r = r_0 + r_1 mod 2^m`
//! from the parties' 64-bit streams, and `ŷ` the sum of the two messages mod 2^m. At
//! m = 64 every reduction is the identity: the gate, its messages and its material are
//! those of the 64-bit gate before widths existed.
//!
//! **Dealer** (per element): the mask shares `r_0`, `r_1` (each from its party's stream),
//! additive shares in Z_2^64 of `r_h = ⌊r / 2^s⌋` and of `msb_m(r)`: party 0's from its
//! stream, party 1's (`r_h − h_0`, `msb_m(r) − m_0`) sent, 16 bytes, whatever m.
//!
//! **Round 1**: party b sends `x_b + r_b (+ 2^(m−2) for b = 0) mod 2^m`, packed at m bits
//! per element ([`pack_bits`]): ⌈n·m/8⌉ bytes for n elements. On the active entries of a
//! sparse FFN ([`start_in_blocks`]) each block of entries is packed on its own, so that
//! every active (token, block) pair costs the same ⌈block·m/8⌉ bytes.
//!
//! **Output**: party b outputs
//! `[b = 0]·(ŷ_h − 2^(m−2−s)) − h_b + 2^(m−s)·(1 − msb_m(ŷ))·m_b` in Z_2^64.
//!
//! **What is opened**: `ŷ`, masked by the uniform `r` in Z_2^m that neither party knows,
//! so uniform itself; nothing about x. The plan's leakage report lists nothing for this
//! gate. A width the input does not fit (`|x| ≥ 2^(m−2)`) makes the result wrong, never
//! leaky: the opened value stays uniform.
//!
//! ## Costs (what the cost model states, `comet_compiler::cost`)
//! Per party ⌈n·m/8⌉ bytes online (both: 2m·n bits when n·m is a multiple of 8, 1 round);
//! dealer 128 bits per element (party 1's two shares); local work a few ring operations
//! per element.

use std::fmt;

use rand_chacha::ChaCha12Rng;

use rand::Rng;

use super::material::{DealerStreams, MaterialError, PartyStreams, batch_sizes, words};
use super::{
    MessageError, PartyId, Share, check_party, pack, pack_bits, ring_ops, unpack, unpack_bits,
};
use crate::ring::message::packed_len;

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

/// Fails unless the gate can drop `bits` bits at width `width`: a shift in 1..=62 and
/// `bits + 2 ≤ width ≤ 64` (the input's offset 2^(width−2) must be a multiple of 2^bits).
///
/// # Errors
/// If it cannot.
pub fn check_width(bits: u32, width: u32) -> Result<(), MaterialError> {
    check_bits(bits)?;
    if width < bits + 2 || width > 64 {
        return Err(MaterialError::Mismatch(format!(
            "a stochastic truncation by {bits} bits at width {width}: the width must be \
             {} to 64 bits (the shift plus 2)",
            bits + 2
        )));
    }
    Ok(())
}

/// `v mod 2^width`.
fn reduce(v: u64, width: u32) -> u64 {
    match width {
        64 => v,
        w => v & ((1 << w) - 1),
    }
}

/// One party's material for the truncations of one node.
#[derive(Clone, PartialEq, Eq)]
pub struct StochasticTruncMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    bits: u32,
    /// The width m: the mask lives in Z_2^m.
    width: u32,
    /// Elements per separately packed block of the message (0: the whole message).
    block: usize,
    /// Share of the mask `r` (a 64-bit word; the mask is the sum mod 2^m).
    r: Vec<u64>,
    /// Share of `r_h = ⌊r / 2^s⌋`.
    h: Vec<u64>,
    /// Share of `msb_m(r)`.
    m: Vec<u64>,
}

impl fmt::Debug for StochasticTruncMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StochasticTruncMaterial")
            .field("party", &self.party)
            .field("bits", &self.bits)
            .field("width", &self.width)
            .field("elements", &self.r.len())
            .finish_non_exhaustive()
    }
}

impl StochasticTruncMaterial {
    /// The shift s.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The width m.
    pub fn width(&self) -> u32 {
        self.width
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
            width: self.width,
            block: self.block,
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
    [bits, width]: [u32; 2],
) -> StochasticTruncMaterial {
    let mut m = StochasticTruncMaterial {
        party,
        bits,
        width,
        block: 0,
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

/// Deals the material of `n` truncations by `bits` at width `width`; counts party 1's 16
/// bytes per element.
///
/// # Panics
/// If the gate cannot work at that width ([`check_width`]).
pub fn deal(
    d: &mut dyn DealerStreams,
    n: usize,
    bits: u32,
    width: u32,
) -> [StochasticTruncMaterial; 2] {
    deal_batches(d, n, [bits, width], true, None).expect("kept")
}

/// [`deal`] of `[bits, width]`, batch by batch ([`BATCH`] elements), handing each batch's
/// body bytes to `sink`, if any, as soon as it is drawn, and keeping the material only
/// when `keep` (else `None`).
///
/// # Panics
/// As [`deal`].
pub fn deal_batches(
    d: &mut dyn DealerStreams,
    n: usize,
    [bits, width]: [u32; 2],
    keep: bool,
    sink: Option<&mut dyn FnMut([Vec<u8>; 2])>,
) -> Option<[StochasticTruncMaterial; 2]> {
    deal_batches_masks(d, n, [bits, width], keep, sink, None)
}

/// [`deal_batches`], also pushing to `masks`, if any, each element's `⌊r / 2^s⌋`: the mask
/// of the output's opening that the truncation gives for free ([`finish_opened`]), which
/// the comparison reading it is keyed on.
///
/// # Panics
/// As [`deal`].
pub fn deal_batches_masks(
    d: &mut dyn DealerStreams,
    n: usize,
    [bits, width]: [u32; 2],
    keep: bool,
    mut sink: Option<&mut dyn FnMut([Vec<u8>; 2])>,
    mut masks: Option<&mut Vec<u64>>,
) -> Option<[StochasticTruncMaterial; 2]> {
    check_width(bits, width).expect("the caller checks the shift and the width");
    let mut kept = keep.then(|| {
        [0, 1].map(|party| StochasticTruncMaterial {
            party,
            bits,
            width,
            block: 0,
            r: Vec::with_capacity(n),
            h: Vec::with_capacity(n),
            m: Vec::with_capacity(n),
        })
    });
    for len in batch_sizes(n, BATCH) {
        let [m0, mut m1] = [0, 1].map(|p| draw_shares(d.stream(p), p, len, [bits, width]));
        for i in 0..len {
            let r = reduce(m0.r[i].wrapping_add(m1.r[i]), width);
            m1.h[i] = (r >> bits).wrapping_sub(m0.h[i]);
            m1.m[i] = (r >> (width - 1)).wrapping_sub(m0.m[i]);
            if let Some(masks) = masks.as_mut() {
                masks.push(r >> bits);
            }
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

/// What a party's material body carries: party 1's shares of `r_h` and `msb_m(r)`,
/// interleaved per element, little-endian.
pub fn body(m: &[StochasticTruncMaterial; 2]) -> [Vec<u8>; 2] {
    let hm: Vec<u64> = (m[1].h.iter().zip(&m[1].m))
        .flat_map(|(h, m)| [*h, *m])
        .collect();
    [Vec::new(), pack(&hm)]
}

/// One party's material for `n` truncations by `bits` at width `width`, as [`deal`]
/// drew it.
///
/// # Errors
/// If the shift or the width is out of range ([`check_width`]) or the body cannot be
/// read.
pub fn replay(
    r: &mut dyn PartyStreams,
    n: usize,
    bits: u32,
    width: u32,
) -> Result<StochasticTruncMaterial, MaterialError> {
    check_width(bits, width)?;
    let party = r.party();
    let mut m = draw_shares(r.stream(), party, n, [bits, width]);
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

/// Bytes of the message of `n` elements at `width` bits, packed in blocks of `block`
/// elements (0: one block): each block ⌈block·width/8⌉ bytes, the last one possibly short.
pub fn message_len(n: usize, width: u32, block: usize) -> usize {
    match block {
        0 => packed_len(n, width),
        b => (n / b) * packed_len(b, width) + packed_len(n % b, width),
    }
}

/// The chunks of `n` elements a message of blocks of `block` (0: one block) packs apart.
fn chunks(n: usize, block: usize) -> usize {
    match block {
        0 => n.max(1),
        b => b,
    }
}

/// Starts the truncation of `x` element-wise: the message is
/// `x_b + r_b (+ 2^(m−2) for party 0) mod 2^m`, packed at m bits per element.
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
    let offset = if party == 0 { 1 << (m.width - 2) } else { 0 };
    let mine: Vec<u64> = (x.to_flat().iter().zip(&m.r))
        .map(|(x, r)| reduce(x.wrapping_add(*r).wrapping_add(offset), m.width))
        .collect();
    // at 64 bits every block is whole bytes: one plain packing is the blocks' concatenation
    let msg = match m.width {
        64 => pack(&mine),
        w => (mine.chunks(chunks(mine.len(), m.block)))
            .flat_map(|c| pack_bits(c, w))
            .collect(),
    };
    let shape = x.shape().to_vec();
    (State { shape, m, mine }, msg)
}

/// [`start`] on the active entries of a sparse FFN, `x` and `m` gathered there: blocks of
/// `block` entries (one active (token, block) pair each), each packed on its own, so that
/// every pair costs ⌈block·m/8⌉ bytes whatever the others.
///
/// # Panics
/// As [`start`].
pub fn start_in_blocks(
    party: PartyId,
    x: &Share,
    mut m: StochasticTruncMaterial,
    block: usize,
) -> (State, Vec<u8>) {
    m.block = block;
    start(party, x, m)
}

/// Ends the round with the peer's message: this party's share of `⌊x / 2^s⌋ + e`.
///
/// # Errors
/// If the peer's message has the wrong length (or nonzero padding).
pub fn finish(st: State, peer: &[u8]) -> Result<Share, MessageError> {
    finish_inner(st, peer, false).map(|o| o.share)
}

/// [`finish`], with the output's opening that comes for free: per element
/// `t̂ = ⌊ŷ / 2^s⌋ − 2^(m−2−s) mod 2^(m−s)`, which is `t + ⌊r / 2^s⌋ mod 2^(m−s)` for the
/// output t. From the output formula, `t = t̂ − r_h + 2^(m−s)·(1 − msb_m(ŷ))·msb_m(r)`
/// summed over the parties, and the last term vanishes mod 2^(m−s). It is a function of
/// the opened ŷ, so it reveals nothing more; a comparison keyed on the mask `r_h mod 2^w`
/// (w ≤ m − s) reads it instead of opening its own input. Also returns this party's
/// shares of `r_h` (in Z_2^64), with which a select of t takes `a = −r_h` as its mask.
///
/// # Errors
/// As [`finish`].
pub fn finish_opened(st: State, peer: &[u8]) -> Result<Opened, MessageError> {
    finish_inner(st, peer, true)
}

/// What [`finish_opened`] gives.
pub struct Opened {
    /// This party's share of the output t.
    pub share: Share,
    /// `t + r_h mod 2^(m−s)` per element (public).
    pub opened: Vec<u64>,
    /// This party's share of `r_h` per element.
    pub h: Vec<u64>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("trunc_stochastic::Opened")
            .field("elements", &self.opened.len())
            .finish_non_exhaustive()
    }
}

/// The output, and with `opening` the opening and the shares of `r_h` (else empty).
fn finish_inner(st: State, peer: &[u8], opening: bool) -> Result<Opened, MessageError> {
    let n = st.m.len();
    let (s, width, party) = (st.m.bits, st.m.width, st.m.party);
    let expected = message_len(n, width, st.m.block);
    if peer.len() != expected {
        return Err(MessageError::Length {
            expected,
            actual: peer.len(),
        });
    }
    let theirs = match width {
        64 => unpack(peer)?,
        _ => {
            let per = chunks(n, st.m.block);
            let mut theirs = Vec::with_capacity(n);
            for (k, bytes) in peer.chunks(packed_len(per, width)).enumerate() {
                theirs.extend(unpack_bits(bytes, per.min(n - k * per), width)?);
            }
            theirs
        }
    };
    let offset = 1u64 << (width - 2 - s);
    let mut out = Vec::with_capacity(n);
    let mut opened = Vec::with_capacity(if opening { n } else { 0 });
    for (i, (mine, theirs)) in st.mine.iter().zip(&theirs).enumerate() {
        let y = reduce(mine.wrapping_add(*theirs), width);
        let high = (y >> s).wrapping_sub(offset);
        let wrap = (1 - (y >> (width - 1))).wrapping_shl(width - s);
        let public = if party == 0 { high } else { 0 };
        out.push(
            public
                .wrapping_sub(st.m.h[i])
                .wrapping_add(wrap.wrapping_mul(st.m.m[i])),
        );
        if opening {
            opened.push(reduce(high, width - s));
        }
    }
    Ok(Opened {
        share: Share(ring_ops::from_flat(&st.shape, &out)),
        opened,
        h: if opening { st.m.h } else { Vec::new() },
    })
}
