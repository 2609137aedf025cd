//! Products with a **fixed** shared operand (weights): PROTOCOLS.md "matmul with a fixed
//! secret matrix" (1 round, dealer l·|Z|) and docs/runtime.md `fixed_mul`.
//!
//! At setup, once per session, both parties open `F = W − B` for the fixed operand `W` and
//! its dealer mask `B` ([`setup_start`], [`setup_finish`], sent with
//! `Channel::exchange_setup` so it is not counted per call). A 2-D operand is kept packed
//! ([`PackedRhs`]). The fixed operand is always the right one; an element-wise product
//! commutes, so the caller swaps operands when the left one is fixed. Two forms, by the
//! operand's mask ([`Side`]):
//!
//! - **Two-sided** (an operand no single party may know: block-permuted weights). Each
//!   party keeps `F` and its `B_p`; each call opens `E = X − A` with a fresh `A` (both
//!   parties send: 2l·|X| bits), and `Z = C + E·B + A·F + E·F`, which party `p` evaluates
//!   as `C_p + E·B_p + (A_p + [p = 0]·E)·F`: two products per party.
//! - **One-sided** (the server's weights, [`comet_ir::protocol::mask_owner`]; `B` is the
//!   owner's share): the owner may know `W`, so after the setup it keeps `W = F + B` and
//!   the other party keeps `F`, 8 bytes per element each instead of 16. Each call the
//!   other party alone sends `E = X_o − A` (its share of X under a fresh mask only it
//!   holds: l·|X| bits); the owner computes `C_w + (X_w + E)·W` and the other party
//!   `C_o + A·F`, with `C_w + C_o = A·B` from the dealer. They add up to
//!   `X·W − A·W + A·F + A·B = X·W`. One product per party, and the other party's does not
//!   wait for the message. The owner learns `E`, masked by `A`; the other party learns
//!   nothing.

use std::fmt;

use ndarray::{ArrayD, IxDyn};

pub use super::fixed_mask::{FixedMask, FixedMaskMaterial};
use super::material::{self, DealerStreams, MaterialError, PartyStreams, Product};
use super::{MessageError, PartyId, Share, check_len, check_party, ring_ops};
use crate::ring::{self, PackedRhs};

/// How a party takes part in the products with one fixed operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Both parties hold a share of the mask: each keeps `F` and `B_p` and opens its
    /// `X_p − A_p`.
    Both,
    /// This party owns the operand (a one-sided mask): it keeps `W`, sends nothing.
    Owner,
    /// The other party owns it: this party keeps `F = W − B` and sends `X_p − A`.
    Other,
}

impl Side {
    /// Party `party`'s side of an operand whose mask is one-sided to `owner`, if any.
    pub fn of(owner: Option<PartyId>, party: PartyId) -> Side {
        match owner {
            None => Side::Both,
            Some(o) if o == party => Side::Owner,
            Some(_) => Side::Other,
        }
    }
}

/// Between [`setup_start`] and [`setup_finish`].
pub struct SetupState {
    party: PartyId,
    side: Side,
    /// `B_p`, or `None` when it is 0.
    b: Option<ArrayD<u64>>,
    f: ArrayD<u64>,
}

impl fmt::Debug for SetupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("fixed::SetupState")
            .field("party", &self.party)
            .field("shape", &self.f.shape())
            .finish_non_exhaustive()
    }
}

/// A fixed operand after setup: the public `W − B` and this party's `B_p` (two-sided), `W`
/// (the owner of a one-sided operand) or `W − B` alone (the other party); a 2-D operand is
/// kept only packed for matrix products (one copy of each, not two).
pub struct FixedOperand {
    party: PartyId,
    side: Side,
    shape: Vec<usize>,
    /// `(F, B_p)` of an operand that is not 2-D.
    dense: Option<(ArrayD<u64>, Option<ArrayD<u64>>)>,
    packed: Option<(PackedRhs, Option<PackedRhs>)>,
}

impl fmt::Debug for FixedOperand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedOperand")
            .field("party", &self.party)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl FixedOperand {
    /// The fixed operand's shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Elements of the operand.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The party whose share `B_p` it holds.
    pub(crate) fn party(&self) -> PartyId {
        self.party
    }

    /// How this party takes part in its products.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Whether this party holds a share `B_p` that is not 0.
    pub(crate) fn has_mask_share(&self) -> bool {
        match (&self.dense, &self.packed) {
            (Some((_, b)), _) => b.is_some(),
            (None, Some((_, b))) => b.is_some(),
            (None, None) => unreachable!("a fixed operand is dense or packed"),
        }
    }

    /// `F` (`which = 0`; `W` for the owner of a one-sided operand) or `B_p` (`which = 1`)
    /// packed, when the operand is a matrix (`None` for a `B_p` that is 0).
    pub(crate) fn packed(&self, which: usize) -> Option<&PackedRhs> {
        let (f, b) = self.packed.as_ref()?;
        if which == 0 { Some(f) } else { b.as_ref() }
    }

    /// `F` (`which = 0`) or `B_p` (`which = 1`, zeros when it is 0), dense.
    pub(crate) fn dense(&self, which: usize) -> std::borrow::Cow<'_, ArrayD<u64>> {
        use std::borrow::Cow;
        match (&self.dense, &self.packed, which) {
            (Some((f, _)), _, 0) => Cow::Borrowed(f),
            (Some((_, Some(b))), _, _) => Cow::Borrowed(b),
            (None, Some((f, _)), 0) => Cow::Owned(f.to_dense().into_dyn()),
            (None, Some((_, Some(b))), _) => Cow::Owned(b.to_dense().into_dyn()),
            (Some(_), _, _) | (None, Some(_), _) => Cow::Owned(ArrayD::zeros(IxDyn(&self.shape))),
            (None, None, _) => unreachable!("a fixed operand is dense or packed"),
        }
    }
}

/// Setup: the message is `W_p − B_p` (send with `Channel::exchange_setup`).
///
/// # Panics
/// If the mask belongs to another party or has another shape.
pub fn setup_start(party: PartyId, w: &Share, m: FixedMaskMaterial) -> (SetupState, Vec<u64>) {
    let state = setup_begin(party, w, m);
    let msg = state.message().to_vec();
    (state, msg)
}

/// Setup: opens `W − B` and packs it (and `B_p`) when `W` is a matrix.
///
/// # Errors
/// If the peer's message has the wrong length.
pub fn setup_finish(mut state: SetupState, peer: &[u64]) -> Result<FixedOperand, MessageError> {
    check_len(peer, state.f.len())?;
    state.absorb(0, peer)?;
    Ok(setup_end(state))
}

/// Setup without copies of the message: the state holds `W_p − B_p`
/// ([`SetupState::message`]), which may be sent in chunks, each peer chunk added in place
/// ([`SetupState::absorb`]) before [`setup_end`].
///
/// # Panics
/// If the mask belongs to another party or has another shape.
pub fn setup_begin(party: PartyId, w: &Share, m: FixedMaskMaterial) -> SetupState {
    check_party(party);
    assert_eq!(
        m.party, party,
        "material of party {} used by party {party}",
        m.party
    );
    assert_eq!(w.shape(), m.shape(), "W and its mask have one shape");
    let side = Side::of(m.owner(), party);
    if m.is_zero() {
        let f = w.0.as_standard_layout().into_owned();
        return SetupState {
            party,
            side,
            b: None,
            f,
        };
    }
    let b = m.expand();
    let f = ring_ops::sub(w.0.view(), b.view())
        .as_standard_layout()
        .into_owned();
    SetupState {
        party,
        side,
        b: Some(b),
        f,
    }
}

impl SetupState {
    /// This party's message, `W_p − B_p`, in row-major order (until absorbed).
    pub fn message(&self) -> &[u64] {
        self.f.as_slice().expect("standard layout")
    }

    /// Adds the peer's message for elements `at..at + peer.len()`: they become `W − B`.
    ///
    /// # Errors
    /// If the chunk runs past the operand.
    pub fn absorb(&mut self, at: usize, peer: &[u64]) -> Result<(), MessageError> {
        let f = self.f.as_slice_mut().expect("standard layout");
        let len = f.len();
        let part = (f.get_mut(at..at + peer.len())).ok_or(MessageError::Length {
            expected: 8 * len.saturating_sub(at),
            actual: 8 * peer.len(),
        })?;
        for (x, &y) in part.iter_mut().zip(peer) {
            *x = x.wrapping_add(y);
        }
        Ok(())
    }
}

/// Ends the setup once every element was absorbed: `W − B` and `B_p` (the owner of a
/// one-sided operand: `W = (W − B) + B` alone), packed when `W` is a matrix.
pub fn setup_end(state: SetupState) -> FixedOperand {
    let SetupState {
        party,
        side,
        mut b,
        mut f,
    } = state;
    if side == Side::Owner {
        let mask = b.take().expect("the owner holds the whole mask");
        f = ring_ops::add(f.view(), mask.view())
            .as_standard_layout()
            .into_owned();
    }
    let shape = f.shape().to_vec();
    let (dense, packed) = if f.ndim() == 2 {
        let packed = (pack(&f), b.as_ref().map(pack));
        (None, Some(packed))
    } else {
        (Some((f, b)), None)
    };
    FixedOperand {
        party,
        side,
        shape,
        dense,
        packed,
    }
}

fn pack(x: &ArrayD<u64>) -> PackedRhs {
    PackedRhs::new(x.view().into_dimensionality().expect("rank 2"))
}

/// Which product a call computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mul,
    MatMul,
}

/// Between a call's start and finish.
pub struct State {
    kind: Kind,
    m: FixedCallMaterial,
    e: ArrayD<u64>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("fixed::State")
            .field("kind", &self.kind)
            .field("material", &self.m)
            .finish_non_exhaustive()
    }
}

/// Starts `x ⊙ W` (element-wise, broadcast): the message is `x_p − a_p` (nothing from the
/// owner of a one-sided operand).
///
/// # Panics
/// If the material belongs to another party or does not match `x`'s shape.
pub fn mul_start(party: PartyId, x: &Share, m: FixedCallMaterial) -> (State, Vec<u64>) {
    start(Kind::Mul, party, x, m)
}

/// Starts `X · W` (`X`: `[.., m, k]`, `W`: `[k, n]` or batched): the message is `X_p − A_p`.
///
/// # Panics
/// As [`mul_start`].
pub fn matmul_start(party: PartyId, x: &Share, m: FixedCallMaterial) -> (State, Vec<u64>) {
    start(Kind::MatMul, party, x, m)
}

fn start(kind: Kind, party: PartyId, x: &Share, m: FixedCallMaterial) -> (State, Vec<u64>) {
    check_party(party);
    assert_eq!(
        m.party, party,
        "material of party {} used by party {party}",
        m.party
    );
    if m.side == Side::Owner {
        // keeps X_p; the other party's masked share completes it
        let e = x.0.clone();
        return (State { kind, m, e }, Vec::new());
    }
    assert_eq!(x.shape(), m.a.shape(), "x and its mask have one shape");
    let e = ring_ops::sub(x.0.view(), m.a.view());
    let msg = e.iter().copied().collect();
    if m.side == Side::Other {
        return (
            State {
                kind,
                m,
                e: ArrayD::zeros(IxDyn(&[0])),
            },
            msg,
        );
    }
    (State { kind, m, e }, msg)
}

/// The length in bytes of the peer's message for a call started as `state`, given this
/// party's (`mine`): the same for a two-sided operand; the other party's masked share
/// (`width` bits per element of x, 64 or a product's narrowed width, a multiple of 8) for
/// the owner of a one-sided operand, which sends nothing; nothing for the other party.
pub fn peer_len(state: &State, mine: usize, width: u32) -> usize {
    match state.m.side {
        Side::Both => mine,
        Side::Owner => super::packed_len(state.e.len(), width),
        Side::Other => 0,
    }
}

/// This party's share of the product with `w`.
///
/// # Errors
/// If the peer's message has the wrong length.
///
/// # Panics
/// If `w` belongs to another party than the call's material.
pub fn finish(state: State, w: &FixedOperand, peer: &[u64]) -> Result<Share, MessageError> {
    let State { kind, m, e } = state;
    assert_eq!(w.party, m.party, "fixed operand and material of one party");
    assert_eq!(w.side, m.side, "fixed operand and material of one form");
    let product = |x: &ArrayD<u64>| match kind {
        Kind::Mul => ring_ops::mul(x.view(), w.dense(0).view()),
        Kind::MatMul => matmul(x, w, 0),
    };
    match m.side {
        Side::Owner => {
            // C_w + (X_w + E)·W
            check_len(peer, e.len())?;
            let x = ring_ops::add(e.view(), ring_ops::from_flat(e.shape(), peer).view());
            return Ok(Share(ring_ops::add(m.c.view(), product(&x).view())));
        }
        Side::Other => {
            // C_o + A·F
            check_len(peer, 0)?;
            return Ok(Share(ring_ops::add(m.c.view(), product(&m.a).view())));
        }
        Side::Both => {}
    }
    check_len(peer, e.len())?;
    let e = ring_ops::add(e.view(), ring_ops::from_flat(e.shape(), peer).view());
    let a_plus = if m.party == 0 {
        ring_ops::add(m.a.view(), e.view())
    } else {
        m.a
    };
    let af = match kind {
        Kind::Mul => ring_ops::mul(a_plus.view(), w.dense(0).view()),
        Kind::MatMul => matmul(&a_plus, w, 0),
    };
    let mut z = ring_ops::add(m.c.view(), af.view());
    if w.has_mask_share() {
        let eb = match kind {
            Kind::Mul => ring_ops::mul(e.view(), w.dense(1).view()),
            Kind::MatMul => matmul(&e, w, 1),
        };
        z = ring_ops::add(z.view(), eb.view());
    }
    Ok(Share(z))
}

/// `x · F` (`which = 0`) or `x · B_p` (`which = 1`), packed when `W` is a matrix.
fn matmul(x: &ArrayD<u64>, w: &FixedOperand, which: usize) -> ArrayD<u64> {
    let Some(rhs) = w.packed(which) else {
        return ring::matmul_batched(x.view(), w.dense(which).view()).expect("matmul shapes");
    };
    let (k, n) = rhs.dim();
    let lead = &x.shape()[..x.ndim() - 1];
    let rows = lead.iter().product();
    let x2 = x.to_shape((rows, k)).expect("x is [.., m, k]");
    let z = ring::matmul_packed(x2.view(), rhs);
    let mut shape = lead.to_vec();
    shape.push(n);
    z.into_shape_with_order(IxDyn(&shape))
        .expect("rows·n elements")
}

/// Per-call material of a product with a fixed operand: a fresh mask `a` of the varying
/// operand (none for the owner of a one-sided operand: an empty array) and the share of
/// `c = a ∘ B`.
#[derive(Clone, PartialEq, Eq)]
pub struct FixedCallMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    /// The form of the product.
    pub side: Side,
    /// Share of the mask of the varying operand.
    pub a: ArrayD<u64>,
    /// Share of `a ∘ B` (party 1's is the materialised correction).
    pub c: ArrayD<u64>,
}

impl fmt::Debug for FixedCallMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes = [("a", self.a.shape()), ("c", self.c.shape())];
        material::redact(f, "FixedCallMaterial", self.party, &shapes)
    }
}

/// Deals the per-call material of `x ∘ W` with `W` fixed under `mask`: the masks of `x`,
/// then the shares of `a ∘ B`.
///
/// # Panics
/// If the shapes do not combine.
pub fn deal_call(
    d: &mut dyn DealerStreams,
    mask: &FixedMask,
    kind: Product,
    x: &[usize],
) -> [FixedCallMaterial; 2] {
    let owner = mask.owner();
    let a = material::masks_of(d, x, owner);
    let c = match owner {
        // the other party's mask is the whole mask
        Some(o) => mask.product(kind, &a[usize::from(1 - o)]),
        None => mask.product(kind, &material::sum(&a)),
    };
    let [c0, c1] = material::correct(d, c);
    let [a0, a1] = a;
    [
        FixedCallMaterial {
            party: 0,
            side: Side::of(owner, 0),
            a: a0,
            c: c0,
        },
        FixedCallMaterial {
            party: 1,
            side: Side::of(owner, 1),
            a: a1,
            c: c1,
        },
    ]
}

/// What a party's material body carries of a call: party 1's `c`.
pub fn call_body(m: &[FixedCallMaterial; 2]) -> [Vec<u8>; 2] {
    material::correction_body(&m[1].c)
}

/// One party's per-call material of `x ∘ W` (`W` shaped `w`, its mask one-sided to
/// `owner` if any), as [`deal_call`] drew it.
///
/// # Errors
/// If the shapes do not combine or the body cannot be read.
pub fn replay_call(
    r: &mut dyn PartyStreams,
    kind: Product,
    x: &[usize],
    w: &[usize],
    owner: Option<PartyId>,
) -> Result<FixedCallMaterial, MaterialError> {
    let out = kind.shape(x, w)?;
    let side = Side::of(owner, r.party());
    let a = if side == Side::Owner {
        ArrayD::zeros(IxDyn(&[0]))
    } else {
        material::own_mask(r, x)
    };
    let c = material::product_share(r, &out)?;
    Ok(FixedCallMaterial {
        party: r.party(),
        side,
        a,
        c,
    })
}
