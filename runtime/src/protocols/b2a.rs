//! B2A of one bit with daBits (PROTOCOLS.md "B2A of one bit": 1 round): an XOR-shared bit
//! `b` becomes an arithmetic 0/1 share in Z_2^64. The dealer's daBit is a random bit `r`
//! held both ways: XOR shares `r0 ⊕ r1` (each from its party's PRG seed) and arithmetic
//! shares `ρ0 + ρ1 = r` (party 0's from its seed, party 1's a 64-bit correction). Both
//! open `c = b ⊕ r`; then `b = c ⊕ r = c + (1 − 2c)·r`, linear in `r`'s arithmetic shares
//! (party 0 adds the public `c`). Each party sends one bit per element, padded to one byte
//! (`bits`): 2·8·n bits online, 64·n dealer bits.

use std::fmt;

use ndarray::{ArrayD, IxDyn};

use super::material::{DealerStreams, MaterialError, PartyStreams, draw, draw_product, words};
use super::xor::XorShare;
use super::{MessageError, PartyId, Share, bits, check_party};

/// Between [`start`] and [`finish`].
pub struct State {
    party: PartyId,
    shape: Vec<usize>,
    m: B2aMaterial,
    c: Vec<u64>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("b2a::State")
            .field("party", &self.party)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

/// Starts converting the bits (lane 0 of `b`): the message is `b_p ⊕ r_p`, a byte per
/// element.
///
/// # Panics
/// If the material belongs to another party or covers another number of elements.
pub fn start(party: PartyId, b: &XorShare, m: B2aMaterial) -> (State, Vec<u8>) {
    check_party(party);
    assert_eq!(
        m.party, party,
        "material of party {} used by party {party}",
        m.party
    );
    assert_eq!(b.len(), m.r.len(), "one daBit per element");
    let c: Vec<u64> = b.0.iter().zip(&m.r).map(|(b, r)| (b ^ r) & 1).collect();
    let msg = bits::pack(c.len(), &[(&c, 1)]);
    let shape = b.shape().to_vec();
    (State { party, shape, m, c }, msg)
}

/// This party's arithmetic share of the bits (0 or 1, no fractional bits).
///
/// # Errors
/// If the peer's message has the wrong length.
pub fn finish(state: State, peer: &[u8]) -> Result<Share, MessageError> {
    let State { party, shape, m, c } = state;
    let theirs = bits::unpack(peer, c.len(), &[1])?.remove(0);
    let out: Vec<u64> = (0..c.len())
        .map(|i| {
            let c = c[i] ^ theirs[i];
            let z = if c == 1 {
                m.rho[i].wrapping_neg()
            } else {
                m.rho[i]
            };
            if party == 0 { z.wrapping_add(c) } else { z }
        })
        .collect();
    Ok(Share(
        ArrayD::from_shape_vec(IxDyn(&shape), out).expect("one value per element"),
    ))
}

/// daBits for [`b2a`](self): a random bit `r` per element, as this party's XOR share
/// (`r`, 0 or 1) and arithmetic share (`rho`; party 1's is the correction).
#[derive(Clone, PartialEq, Eq)]
pub struct B2aMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    /// XOR share of `r`.
    pub r: Vec<u64>,
    /// Arithmetic share of `r`.
    pub rho: Vec<u64>,
}

impl fmt::Debug for B2aMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("B2aMaterial")
            .field("party", &self.party)
            .field("elements", &self.r.len())
            .finish_non_exhaustive()
    }
}

/// Party `party`'s daBits for `n` bits from its stream: `r`, then (party 0) `rho`.
fn draw_bits(rng: &mut rand_chacha::ChaCha12Rng, party: PartyId, n: usize) -> B2aMaterial {
    let r = draw(rng, n, 1);
    let rho = draw_product(party, rng, n, u64::MAX);
    B2aMaterial { party, r, rho }
}

/// Deals daBits for `n` conversions: party 1's `rho = (r0 ⊕ r1) − rho0` (counted, 8 bytes
/// per bit).
pub fn deal(d: &mut dyn DealerStreams, n: usize) -> [B2aMaterial; 2] {
    let [m0, mut m1] = [0, 1].map(|p| draw_bits(d.stream(p), p, n));
    for i in 0..m0.r.len() {
        m1.rho[i] = (m0.r[i] ^ m1.r[i]).wrapping_sub(m0.rho[i]);
    }
    d.count_offline(8 * n as u64);
    [m0, m1]
}

/// What a party's material body carries: party 1's `rho`, little-endian.
pub fn body(m: &[B2aMaterial; 2]) -> [Vec<u8>; 2] {
    [Vec::new(), super::pack(&m[1].rho)]
}

/// One party's daBits, as [`deal`] drew them.
///
/// # Errors
/// If the body cannot be read.
pub fn replay(r: &mut dyn PartyStreams, n: usize) -> Result<B2aMaterial, MaterialError> {
    let party = r.party();
    let mut m = draw_bits(r.stream(), party, n);
    if party == 1 {
        m.rho = words(&r.body(8 * n)?);
    }
    Ok(m)
}
