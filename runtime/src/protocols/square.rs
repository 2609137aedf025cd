//! Squaring with `(a, a²)` pairs (PROTOCOLS.md "square": 1 round, 2l·n bits, dealer l·n):
//! open `e = x − a`, then `x² = a² + 2e·a + e²`.

use std::fmt;

use ndarray::ArrayD;

use super::material::{self, DealerStreams, MaterialError, PartyStreams, check_indices, take};
use super::{MessageError, PartyId, Share, check_len, check_party, ring_ops};

/// Between [`start`] and [`finish`].
pub struct State {
    party: PartyId,
    m: SquareMaterial,
    e: ArrayD<u64>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("square::State")
            .field("party", &self.party)
            .field("material", &self.m)
            .finish_non_exhaustive()
    }
}

/// Starts `x²`: the message is `x_p − a_p`.
///
/// # Panics
/// If the material belongs to another party or has another shape.
pub fn start(party: PartyId, x: &Share, m: SquareMaterial) -> (State, Vec<u64>) {
    check_party(party);
    assert_eq!(
        m.party, party,
        "material of party {} used by party {party}",
        m.party
    );
    assert_eq!(x.shape(), m.a.shape(), "x and its mask have one shape");
    let e = ring_ops::sub(x.0.view(), m.a.view());
    let msg = e.iter().copied().collect();
    (State { party, m, e }, msg)
}

/// This party's share of `x²`.
///
/// # Errors
/// If the peer's message has the wrong length.
pub fn finish(state: State, peer: &[u64]) -> Result<Share, MessageError> {
    let State { party, m, e } = state;
    check_len(peer, e.len())?;
    let e = ring_ops::add(e.view(), ring_ops::from_flat(e.shape(), peer).view());
    let two_e = e.mapv(|v| v.wrapping_mul(2));
    let mut z = ring_ops::add(m.c.view(), ring_ops::mul(two_e.view(), m.a.view()).view());
    if party == 0 {
        z = ring_ops::add(z.view(), ring_ops::mul(e.view(), e.view()).view());
    }
    Ok(Share(z))
}

/// `(a, a²)` shares for [`square`](self).
#[derive(Clone, PartialEq, Eq)]
pub struct SquareMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    /// Share of the mask `a`.
    pub a: ArrayD<u64>,
    /// Share of `a²` (party 1's is the materialised correction).
    pub c: ArrayD<u64>,
}

impl fmt::Debug for SquareMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes = [("a", self.a.shape()), ("c", self.c.shape())];
        material::redact(f, "SquareMaterial", self.party, &shapes)
    }
}

impl SquareMaterial {
    /// The `(a, a²)` pairs of flat elements `idx`.
    ///
    /// # Panics
    /// If `a` and `c` differ in length, or an index is out of range or repeats.
    pub fn gather(&self, idx: &[usize]) -> SquareMaterial {
        assert_eq!(self.a.len(), self.c.len(), "a and a² have one element each");
        check_indices(idx, self.a.len());
        SquareMaterial {
            party: self.party,
            a: take(&self.a, idx),
            c: take(&self.c, idx),
        }
    }
}

/// Deals `(a, a²)` of `shape`: the masks, then the shares of `a²`.
pub fn deal(d: &mut dyn DealerStreams, shape: &[usize]) -> [SquareMaterial; 2] {
    let a = material::masks(d, shape);
    let sum = material::sum(&a);
    let [c0, c1] = material::correct(d, ring_ops::mul(sum.view(), sum.view()));
    let [a0, a1] = a;
    [
        SquareMaterial {
            party: 0,
            a: a0,
            c: c0,
        },
        SquareMaterial {
            party: 1,
            a: a1,
            c: c1,
        },
    ]
}

/// What a party's material body carries of a pair: party 1's `c`.
pub fn body(m: &[SquareMaterial; 2]) -> [Vec<u8>; 2] {
    material::correction_body(&m[1].c)
}

/// One party's `(a, a²)` of `shape`, re-derived as [`deal`] drew it.
///
/// # Errors
/// If the body cannot be read.
pub fn replay(r: &mut dyn PartyStreams, shape: &[usize]) -> Result<SquareMaterial, MaterialError> {
    let a = material::own_mask(r, shape);
    let c = material::product_share(r, shape)?;
    Ok(SquareMaterial {
        party: r.party(),
        a,
        c,
    })
}
