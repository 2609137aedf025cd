//! Beaver multiplication of two shared tensors, element-wise with broadcasting
//! (PROTOCOLS.md "Beaver multiply": 1 round, 2l·(n_x + n_y) bits, dealer l·n_out).
//!
//! Each party sends `x_p − a_p` and `y_p − b_p` at the operands' own sizes, so a broadcast
//! operand is opened once, not once per use; the opened `e = x − a`, `f = y − b` are
//! broadcast afterwards in `z = c + e·b + a·f + e·f`.

use std::fmt;

use ndarray::ArrayD;

use super::material::{
    self, DealerStreams, MaterialError, PartyStreams, Product, check_indices, take,
};
use super::{MessageError, PartyId, Share, check_len, check_party, ring_ops};

/// Between [`start`] and [`finish`]: the triple and this party's masked operands.
pub struct State {
    party: PartyId,
    product: Product,
    m: TripleMaterial,
    e: ArrayD<u64>,
    f: ArrayD<u64>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("beaver::State")
            .field("party", &self.party)
            .field("product", &self.product)
            .field("material", &self.m)
            .finish_non_exhaustive()
    }
}

/// Starts `x ⊙ y`: the message is `x_p − a_p` then `y_p − b_p` (row-major).
///
/// # Panics
/// If the material belongs to another party or does not match the operands' shapes.
pub fn start(party: PartyId, x: &Share, y: &Share, m: TripleMaterial) -> (State, Vec<u64>) {
    start_with(Product::Elementwise, party, x, y, m)
}

/// This party's share of `x ⊙ y`.
///
/// # Errors
/// If the peer's message has the wrong length.
pub fn finish(state: State, peer: &[u64]) -> Result<Share, MessageError> {
    let State {
        party,
        product,
        m,
        e,
        f,
    } = state;
    check_len(peer, e.len() + f.len())?;
    let (pe, pf) = peer.split_at(e.len());
    let e = ring_ops::add(e.view(), ring_ops::from_flat(e.shape(), pe).view());
    let f = ring_ops::add(f.view(), ring_ops::from_flat(f.shape(), pf).view());
    let mut z = ring_ops::add(m.c.view(), product.apply(&e, &m.b).view());
    z = ring_ops::add(z.view(), product.apply(&m.a, &f).view());
    if party == 0 {
        z = ring_ops::add(z.view(), product.apply(&e, &f).view());
    }
    Ok(Share(z))
}

impl State {
    /// The values of each part of this party's message: `x − a`, then `y − b` (the peer's
    /// message has the same parts).
    pub fn parts(&self) -> [usize; 2] {
        [self.e.len(), self.f.len()]
    }
}

pub(crate) fn start_with(
    product: Product,
    party: PartyId,
    x: &Share,
    y: &Share,
    m: TripleMaterial,
) -> (State, Vec<u64>) {
    check_party(party);
    assert_eq!(
        m.party, party,
        "material of party {} used by party {party}",
        m.party
    );
    assert_eq!(x.shape(), m.a.shape(), "x and its mask have one shape");
    assert_eq!(y.shape(), m.b.shape(), "y and its mask have one shape");
    let e = ring_ops::sub(x.0.view(), m.a.view());
    let f = ring_ops::sub(y.0.view(), m.b.view());
    let msg = ring_ops::flat(&e).chain(ring_ops::flat(&f)).collect();
    (
        State {
            party,
            product,
            m,
            e,
            f,
        },
        msg,
    )
}

/// Beaver triple shares for [`beaver_mul`](self), [`mux`](super::mux) and
/// [`beaver_matmul`](super::beaver_matmul): this party's shares of `a` (shaped like `x`),
/// `b` (like `y`) and `c = a ∘ b` (like the output, `∘` the element-wise or matrix
/// product).
#[derive(Clone, PartialEq, Eq)]
pub struct TripleMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    /// Share of the mask of `x`.
    pub a: ArrayD<u64>,
    /// Share of the mask of `y`.
    pub b: ArrayD<u64>,
    /// Share of `a ∘ b` (party 1's is the materialised correction).
    pub c: ArrayD<u64>,
}

impl fmt::Debug for TripleMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes = [
            ("a", self.a.shape()),
            ("b", self.b.shape()),
            ("c", self.c.shape()),
        ];
        material::redact(f, "TripleMaterial", self.party, &shapes)
    }
}

impl TripleMaterial {
    /// The triple of flat elements `idx` of an element-wise triple whose `a`, `b` and `c`
    /// have one element each per entry (no broadcasting).
    ///
    /// # Panics
    /// If `a`, `b` and `c` differ in length (a broadcast or matrix triple), or an index is
    /// out of range or repeats.
    pub fn gather(&self, idx: &[usize]) -> TripleMaterial {
        let n = self.c.len();
        assert!(
            self.a.len() == n && self.b.len() == n,
            "only an element-wise triple without broadcasting gathers: a {:?}, b {:?}, c {:?}",
            self.a.shape(),
            self.b.shape(),
            self.c.shape()
        );
        check_indices(idx, n);
        TripleMaterial {
            party: self.party,
            a: take(&self.a, idx),
            b: take(&self.b, idx),
            c: take(&self.c, idx),
        }
    }
}

impl TripleMaterial {
    /// The triple of rows `rows` of an element-wise triple whose `a`, `b` and `c` each
    /// lead with the same `lead` rows (`[H, seq, ..]`, broadcasting within a row allowed):
    /// the rows of a head-masked attention core (`material::take_rows`).
    ///
    /// # Panics
    /// If an array does not split into `lead` rows.
    pub fn gather_rows(&self, rows: &[usize], lead: usize) -> TripleMaterial {
        let take = |x| material::take_rows(x, rows, lead);
        TripleMaterial {
            party: self.party,
            a: take(&self.a),
            b: take(&self.b),
            c: take(&self.c),
        }
    }
}

/// Deals a triple for `x ∘ y`: masks `a` then `b` from each party's stream, then the
/// shares of `c = a ∘ b` (`material::correct`).
///
/// # Panics
/// If the shapes do not combine.
pub fn deal(
    d: &mut dyn DealerStreams,
    kind: Product,
    x: &[usize],
    y: &[usize],
) -> [TripleMaterial; 2] {
    let a = material::masks(d, x);
    let b = material::masks(d, y);
    let c = material::correct(d, kind.apply(&material::sum(&a), &material::sum(&b)));
    let ([a0, a1], [b0, b1], [c0, c1]) = (a, b, c);
    [
        TripleMaterial {
            party: 0,
            a: a0,
            b: b0,
            c: c0,
        },
        TripleMaterial {
            party: 1,
            a: a1,
            b: b1,
            c: c1,
        },
    ]
}

/// What a party's material body carries of a triple: party 1's `c`.
pub fn body(m: &[TripleMaterial; 2]) -> [Vec<u8>; 2] {
    material::correction_body(&m[1].c)
}

/// One party's triple for `x ∘ y`, re-derived as [`deal`] drew it.
///
/// # Errors
/// If the shapes do not combine or the body cannot be read.
pub fn replay(
    r: &mut dyn PartyStreams,
    kind: Product,
    x: &[usize],
    y: &[usize],
) -> Result<TripleMaterial, MaterialError> {
    let out = kind.shape(x, y)?;
    let (a, b) = (material::own_mask(r, x), material::own_mask(r, y));
    let c = material::product_share(r, &out)?;
    Ok(TripleMaterial {
        party: r.party(),
        a,
        b,
        c,
    })
}
