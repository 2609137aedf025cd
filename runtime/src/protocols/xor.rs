//! XOR (boolean) shares and AND gates by Beaver bit triples: the GMW protocol over GF(2)
//! (Goldreich, Micali, Wigderson, STOC 1987) with Beaver's precomputed triples (CRYPTO
//! 1991), as in CrypTen's and SPU's boolean shares.
//!
//! **Representation.** An [`XorShare`] is an `ArrayD<u64>` whose every element is a word
//! of up to 64 boolean *lanes* (bit `k` of the word is lane `k`): the value is
//! `x = x0 ⊕ x1`, lane-wise. Circuits on 64-bit values (the carry circuit of
//! [`super::gmw`]) keep one value per word; a single bit per element (a comparison's
//! result) is lane 0, the word being 0 or 1.
//!
//! **AND.** With a triple `c = a ∧ b` (party 0's shares of `a`, `b`, `c` and party 1's of
//! `a`, `b` from the parties' PRG seeds, party 1's `c` a dealer correction: one bit per
//! gate), both open `d = x ⊕ a` and `e = y ⊕ b` and
//! `x ∧ y = c ⊕ (d ∧ b) ⊕ (a ∧ e) ⊕ (d ∧ e)`, party 0 adding the public `d ∧ e`. Each party
//! sends 2 bits per gate, packed per element (`bits`): `⌈2·lanes/8⌉` bytes.

use std::fmt;

use ndarray::{ArrayD, IxDyn};
use rand::Rng;

pub use crate::ring::share::XorShare;

use super::material::{DealerStreams, MaterialError, PartyStreams, draw, draw_product};
use super::{MessageError, PartyId, bits, check_party};
use rand_chacha::ChaCha12Rng;

/// `x0 ⊕ x1`: the words behind two shares (tests).
///
/// # Panics
/// If the shapes differ.
pub fn reconstruct_xor(x0: &XorShare, x1: &XorShare) -> ArrayD<u64> {
    assert_eq!(x0.shape(), x1.shape(), "both shares have one shape");
    ndarray::Zip::from(&x0.0)
        .and(&x1.0)
        .map_collect(|a, b| a ^ b)
}

/// Splits the low `lanes` lanes of `x` into two XOR shares with a mask from `rng` (tests).
pub fn split_xor<R: Rng + ?Sized>(x: &ArrayD<u64>, lanes: u32, rng: &mut R) -> [XorShare; 2] {
    let m = bits::low(lanes);
    let r = ArrayD::from_shape_simple_fn(IxDyn(x.shape()), || rng.next_u64() & m);
    let x0 = ndarray::Zip::from(x)
        .and(&r)
        .map_collect(|v, r| (v & m) ^ r);
    [XorShare(x0), XorShare(r)]
}

/// One party's share of `x ∧ y` from the opened `d = x ⊕ a`, `e = y ⊕ b` and its triple
/// shares.
pub(crate) fn beaver_and(party: PartyId, d: u64, e: u64, a: u64, b: u64, c: u64) -> u64 {
    let z = c ^ (d & b) ^ (a & e);
    if party == 0 { z ^ (d & e) } else { z }
}

/// Between [`and_start`] and [`and_finish`].
pub struct AndState {
    party: PartyId,
    shape: Vec<usize>,
    m: BitTripleMaterial,
    d: Vec<u64>,
    e: Vec<u64>,
}

impl fmt::Debug for AndState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("xor::AndState")
            .field("party", &self.party)
            .field("shape", &self.shape)
            .field("material", &self.m)
            .finish_non_exhaustive()
    }
}

/// Starts `x ∧ y` on the low `m.lanes` lanes of every element: the message is, per
/// element, `x ⊕ a` then `y ⊕ b` (`lanes` bits each), padded to whole bytes.
///
/// # Panics
/// If the material belongs to another party or covers another number of elements, or the
/// operands' shapes differ.
pub fn and_start(
    party: PartyId,
    x: &XorShare,
    y: &XorShare,
    m: BitTripleMaterial,
) -> (AndState, Vec<u8>) {
    check_party(party);
    assert_eq!(
        m.party, party,
        "material of party {} used by party {party}",
        m.party
    );
    assert_eq!(x.shape(), y.shape(), "AND operands have one shape");
    assert_eq!(x.len(), m.a.len(), "one triple per element");
    let mask = bits::low(m.lanes);
    let d: Vec<u64> = x.0.iter().zip(&m.a).map(|(x, a)| (x ^ a) & mask).collect();
    let e: Vec<u64> = y.0.iter().zip(&m.b).map(|(y, b)| (y ^ b) & mask).collect();
    let msg = bits::pack(d.len(), &[(&d, m.lanes), (&e, m.lanes)]);
    let shape = x.shape().to_vec();
    (
        AndState {
            party,
            shape,
            m,
            d,
            e,
        },
        msg,
    )
}

/// This party's share of `x ∧ y` (lanes above `lanes` are 0).
///
/// # Errors
/// If the peer's message has the wrong length.
pub fn and_finish(state: AndState, peer: &[u8]) -> Result<XorShare, MessageError> {
    let AndState {
        party,
        shape,
        m,
        d,
        e,
    } = state;
    let theirs = bits::unpack(peer, d.len(), &[m.lanes, m.lanes])?;
    let z: Vec<u64> = (0..d.len())
        .map(|i| {
            let (d, e) = (d[i] ^ theirs[0][i], e[i] ^ theirs[1][i]);
            beaver_and(party, d, e, m.a[i], m.b[i], m.c[i])
        })
        .collect();
    Ok(XorShare(
        ArrayD::from_shape_vec(IxDyn(&shape), z).expect("one word per element"),
    ))
}

/// Beaver bit triples for AND gates on the low `lanes` lanes of one word per element
/// ([`and_start`]): this party's XOR shares of `a`, `b` and `c = a ∧ b` (party 1's `c` is
/// the materialised correction, one bit per gate, padded to bytes per element).
#[derive(Clone, PartialEq, Eq)]
pub struct BitTripleMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    /// Lanes per element (at most 64).
    pub lanes: u32,
    /// Share of the mask of `x`, per element.
    pub a: Vec<u64>,
    /// Share of the mask of `y`, per element.
    pub b: Vec<u64>,
    /// Share of `a ∧ b`, per element.
    pub c: Vec<u64>,
}

impl fmt::Debug for BitTripleMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitTripleMaterial")
            .field("party", &self.party)
            .field("lanes", &self.lanes)
            .field("elements", &self.a.len())
            .finish_non_exhaustive()
    }
}

/// Party `party`'s triples on `lanes` lanes of `n` words from its stream: `a`, `b`, then
/// (party 0) `c`.
fn draw_triples(rng: &mut ChaCha12Rng, party: PartyId, n: usize, lanes: u32) -> BitTripleMaterial {
    let m = bits::low(lanes);
    let (a, b) = (draw(rng, n, m), draw(rng, n, m));
    let c = draw_product(party, rng, n, m);
    BitTripleMaterial {
        party,
        lanes,
        a,
        b,
        c,
    }
}

/// Bytes of party 1's corrections for `n` gates on `lanes` lanes.
fn body_len(n: usize, lanes: u32) -> usize {
    n * bits::bytes_per_element(&[lanes])
}

/// Deals bit triples for `n` AND gates on `lanes` lanes: party 1's
/// `c = (a0 ⊕ a1) ∧ (b0 ⊕ b1) ⊕ c0` (counted).
pub fn deal(d: &mut dyn DealerStreams, n: usize, lanes: u32) -> [BitTripleMaterial; 2] {
    let [m0, mut m1] = [0, 1].map(|p| draw_triples(d.stream(p), p, n, lanes));
    for i in 0..m0.a.len() {
        m1.c[i] = ((m0.a[i] ^ m1.a[i]) & (m0.b[i] ^ m1.b[i])) ^ m0.c[i];
    }
    d.count_offline(body_len(n, lanes) as u64);
    [m0, m1]
}

/// What a party's material body carries: party 1's `c`, bit-packed per element.
pub fn body(m: &[BitTripleMaterial; 2]) -> [Vec<u8>; 2] {
    [
        Vec::new(),
        bits::pack(m[1].c.len(), &[(&m[1].c, m[1].lanes)]),
    ]
}

/// One party's bit triples, as [`deal`] drew them.
///
/// # Errors
/// If the body cannot be read.
pub fn replay(
    r: &mut dyn PartyStreams,
    n: usize,
    lanes: u32,
) -> Result<BitTripleMaterial, MaterialError> {
    let party = r.party();
    let mut m = draw_triples(r.stream(), party, n, lanes);
    if party == 1 {
        let bytes = r.body(body_len(n, lanes))?;
        m.c = bits::unpack(&bytes, n, &[lanes])
            .expect("the length was read")
            .remove(0);
    }
    Ok(m)
}
