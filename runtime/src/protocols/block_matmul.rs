//! Block-sparse product `Y = H · W` with a fixed right operand `W` `[ff, d]`
//! ([`super::fixed`]: `F = W − B` opened at setup) and a **public** mask `[seq, ff/block]`
//! of the active blocks of each token row of `H` `[seq, ff]`: only active entries count,
//! `Y[t] = Σ_{b active in row t} H[t, block b] · W[block b rows, :]`.
//!
//! 1 round; each party sends `D_p = H_p − A'_p` at the active entries only (row-major
//! `(t, b, i)` order), `l` bits per active entry; dealer `l·seq·(ff/block)·d`
//! ([`BlockMatMulMaterial`]: a fresh mask `A'` `[seq, ff]` of `H`
//! from each party's stream, and per token row and block the share of
//! `C[t, b, :] = A'[t, block b] · B[block b rows, :]`, party 1's the correction; every
//! block's correction is dealt, whichever blocks turn out active). With `D` opened, party `p` outputs
//! `Y_p[t] = Σ_{b active} ([p = 0]·D[t,b] + A'_p[t,b])·F_b + D[t,b]·B_p,b + C_p[t,b]`.
//!
//! Two equal routes compute the products: one zero-filled dense product by the packed `F`
//! and `B_p` (cost `seq·ff·d`, nothing unpacked), or one product per block on its active
//! rows only (cost `active·d`, plus unpacking `F` and `B_p` once, about
//! [`UNPACK_ROWS`]`·ff·d`). [`finish`] takes the cheaper.

use std::fmt;

use ndarray::{Array2, ArrayD, ArrayView1, ArrayView2, Ix2, IxDyn, s};

use super::fixed::{FixedMask, FixedOperand};
use super::material::{self, DealerStreams, MaterialError, PartyStreams};
use super::{MessageError, PartyId, Share, check_len, check_party};
use crate::ring;

/// The per-block route's unpacking of `F` and `B_p`, counted in rows of `H` multiplied.
pub const UNPACK_ROWS: usize = 4;

/// Between [`start`] and [`finish`].
pub struct State {
    party: PartyId,
    block: usize,
    /// `[seq, ff]`.
    shape: [usize; 2],
    /// The active `(t, b)`, row-major.
    active: Vec<(usize, usize)>,
    /// `H_p − A'_p` at the active entries.
    d: Vec<u64>,
    /// `A'_p` at the active entries.
    a: Vec<u64>,
    /// `C_p`, `[seq, ff/block, d]`.
    c: ArrayD<u64>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("block_matmul::State")
            .field("party", &self.party)
            .field("shape", &self.shape)
            .field("block", &self.block)
            .field("active_blocks", &self.active.len())
            .finish_non_exhaustive()
    }
}

/// Starts `H · W` on the blocks `mask` marks active: the message is `H_p − A'_p` at the
/// active entries (`block` values per active block).
///
/// # Panics
/// If the material belongs to another party or another block size, `H` is not
/// `[seq, ff]` like the material's mask, or `mask` is not `[seq, ff/block]`.
pub fn start(
    party: PartyId,
    h: &Share,
    mask: ArrayView2<'_, bool>,
    block: usize,
    m: BlockMatMulMaterial,
) -> (State, Vec<u64>) {
    check_party(party);
    assert_eq!(
        m.party, party,
        "material of party {} used by party {party}",
        m.party
    );
    assert_eq!(m.block, block, "material dealt for blocks of {}", m.block);
    assert_eq!(h.shape(), m.a.shape(), "H and its mask have one shape");
    let shape: [usize; 2] = h.shape().try_into().expect("H is [seq, ff]");
    assert_eq!(
        mask.dim(),
        (shape[0], shape[1] / block),
        "one mask entry per token and block"
    );
    let active: Vec<(usize, usize)> = (mask.indexed_iter())
        .filter_map(|(tb, &on)| on.then_some(tb))
        .collect();
    let a = gather(&m.a, &active, block);
    let d: Vec<u64> = (gather(&h.0, &active, block).iter().zip(&a))
        .map(|(h, a)| h.wrapping_sub(*a))
        .collect();
    let state = State {
        party,
        block,
        shape,
        active,
        d: d.clone(),
        a,
        c: m.c,
    };
    (state, d)
}

/// This party's share of `Y` `[seq, d]`; zero rows where no block is active.
///
/// # Errors
/// If the peer's message has the wrong length.
///
/// # Panics
/// If `w` belongs to another party or is not the `[ff, d]` the material was dealt for.
pub fn finish(state: State, w: &FixedOperand, peer: &[u64]) -> Result<Share, MessageError> {
    let [seq, ff] = state.shape;
    let per_block = state.d.len() + UNPACK_ROWS * ff < seq * ff;
    finish_route(state, w, peer, per_block)
}

/// [`finish`] by the route `per_block` names (tests compare both).
pub(crate) fn finish_route(
    state: State,
    w: &FixedOperand,
    peer: &[u64],
    per_block: bool,
) -> Result<Share, MessageError> {
    check_len(peer, state.d.len())?;
    let [_, ff] = state.shape;
    assert_eq!(
        w.party(),
        state.party,
        "fixed operand and material of one party"
    );
    assert_eq!(
        w.shape(),
        [ff, state.c.shape()[2]],
        "W is the [ff, d] dealt for"
    );
    let e: Vec<u64> = (state.d.iter().zip(peer))
        .map(|(a, b)| a.wrapping_add(*b))
        .collect();
    let x: Vec<u64> = match state.party {
        0 => (e.iter().zip(&state.a))
            .map(|(e, a)| e.wrapping_add(*a))
            .collect(),
        _ => state.a.clone(),
    };
    let mut y = if per_block {
        per_block_product(&state, &x, &e, w)
    } else {
        dense_product(&state, &x, &e, w)
    };
    for &(t, b) in &state.active {
        add_row(&mut y, t, state.c.slice(s![t, b, ..]));
    }
    Ok(Share(y.into_dyn()))
}

/// `x · F + e · B_p` with `x`, `e` zero-filled to `[seq, ff]`, by the packed operands.
fn dense_product(state: &State, x: &[u64], e: &[u64], w: &FixedOperand) -> Array2<u64> {
    let scatter = |v: &[u64]| scatter(v, &state.active, state.block, state.shape);
    let f = w.packed(0).expect("a matrix fixed operand is packed");
    let xf = ring::matmul_packed(scatter(x).view(), f);
    match w.packed(1) {
        Some(b) => add(xf, &ring::matmul_packed(scatter(e).view(), b).view()),
        None => xf,
    }
}

/// `Σ x_b · F_b + e_b · B_p,b`, one product per block on its active rows.
fn per_block_product(state: &State, x: &[u64], e: &[u64], w: &FixedOperand) -> Array2<u64> {
    let [seq, _] = state.shape;
    let n = state.block;
    let (f, bp) = (w.dense(0), w.dense(1));
    let f = f.view().into_dimensionality::<Ix2>().expect("[ff, d]");
    let bp = bp.view().into_dimensionality::<Ix2>().expect("[ff, d]");
    let mut y = Array2::zeros((seq, f.ncols()));
    let mut by_block = vec![Vec::new(); state.c.shape()[1]];
    for (i, &(_, b)) in state.active.iter().enumerate() {
        by_block[b].push(i);
    }
    for (b, rows) in by_block.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
        let pick = |v: &[u64]| {
            let data = rows.iter().flat_map(|&i| &v[i * n..(i + 1) * n]).copied();
            Array2::from_shape_vec((rows.len(), n), data.collect()).expect("rows × block")
        };
        let wrows = b * n..(b + 1) * n;
        let p = ring::matmul(pick(x).view(), f.slice(s![wrows.clone(), ..]));
        let p = add(
            p,
            &ring::matmul(pick(e).view(), bp.slice(s![wrows, ..])).view(),
        );
        for (j, &i) in rows.iter().enumerate() {
            add_row(&mut y, state.active[i].0, p.row(j));
        }
    }
    y
}

/// The active entries of `x` `[seq, ff]`, row-major `(t, b, i)`.
fn gather(x: &ArrayD<u64>, active: &[(usize, usize)], block: usize) -> Vec<u64> {
    let x = x.view().into_dimensionality::<Ix2>().expect("[seq, ff]");
    (active.iter())
        .flat_map(|&(t, b)| x.slice(s![t, b * block..(b + 1) * block]).to_vec())
        .collect()
}

/// The inverse of [`gather`]: `[seq, ff]` with zeros outside the active entries.
fn scatter(v: &[u64], active: &[(usize, usize)], block: usize, shape: [usize; 2]) -> Array2<u64> {
    let mut x = Array2::zeros(shape);
    for (chunk, &(t, b)) in v.chunks_exact(block).zip(active) {
        let mut dst = x.slice_mut(s![t, b * block..(b + 1) * block]);
        dst.assign(&ArrayView1::from(chunk));
    }
    x
}

/// `y[t] += r`, wrapping.
fn add_row(y: &mut Array2<u64>, t: usize, r: ArrayView1<'_, u64>) {
    y.row_mut(t)
        .zip_mut_with(&r, |y, r| *y = y.wrapping_add(*r));
}

fn add(mut a: Array2<u64>, b: &ArrayView2<'_, u64>) -> Array2<u64> {
    a.zip_mut_with(b, |a, b| *a = a.wrapping_add(*b));
    a
}

/// One party's material of one block-sparse product with a fixed operand.
#[derive(Clone, PartialEq, Eq)]
pub struct BlockMatMulMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    /// Columns of `H` (rows of `W`) per block.
    pub block: usize,
    /// Share of the mask `A'` of `H`, `[seq, ff]`.
    pub a: ArrayD<u64>,
    /// Share of the per-block products `A'_b · B_b`, `[seq, ff/block, d]` (party 1's is the
    /// materialised correction).
    pub c: ArrayD<u64>,
}

impl fmt::Debug for BlockMatMulMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockMatMulMaterial")
            .field("party", &self.party)
            .field("block", &self.block)
            .field("a", &format_args!("[..] shape {:?}", self.a.shape()))
            .field("c", &format_args!("[..] shape {:?}", self.c.shape()))
            .finish()
    }
}

/// The shapes of `A'` and `C` for `seq` rows against a fixed operand shaped `w`.
///
/// # Errors
/// If `w` is not a matrix, or `block` is 0 or does not divide its rows.
pub(crate) fn block_shapes(
    w: &[usize],
    seq: usize,
    block: usize,
) -> Result<([usize; 2], [usize; 3]), MaterialError> {
    match *w {
        [ff, d] if block > 0 && ff.is_multiple_of(block) => Ok(([seq, ff], [seq, ff / block, d])),
        _ => Err(MaterialError::Shape(format!(
            "block-sparse product by a fixed operand {w:?} in blocks of {block}: the operand \
             must be a matrix whose rows the block divides"
        ))),
    }
}

/// Deals the per-call material of the block-sparse `H · W` (`H`: `[seq, ff]`) with `W`
/// fixed under `mask`, in blocks of `block` rows of `W`: the masks `A'`, then the shares of
/// the per-block products.
///
/// # Panics
/// If `W` is not a matrix, or `block` is 0 or does not divide its rows.
pub fn deal(
    d: &mut dyn DealerStreams,
    mask: &FixedMask,
    seq: usize,
    block: usize,
) -> [BlockMatMulMaterial; 2] {
    let (a_shape, _) = block_shapes(mask.shape(), seq, block).expect("block shapes");
    let a = material::masks(d, &a_shape);
    let [c0, c1] = material::correct(d, block_products(&material::sum(&a), &mask.dense(), block));
    let [a0, a1] = a;
    [(0, a0, c0), (1, a1, c1)].map(|(party, a, c)| BlockMatMulMaterial { party, block, a, c })
}

/// What a party's material body carries: party 1's `c`.
pub fn body(m: &[BlockMatMulMaterial; 2]) -> [Vec<u8>; 2] {
    material::correction_body(&m[1].c)
}

/// One party's material of the block-sparse product by a fixed operand shaped `w`, as
/// [`deal`] drew it.
///
/// # Errors
/// If the shapes do not fit (`block_shapes`) or the body cannot be read.
pub fn replay(
    r: &mut dyn PartyStreams,
    w: &[usize],
    seq: usize,
    block: usize,
) -> Result<BlockMatMulMaterial, MaterialError> {
    let (a_shape, c_shape) = block_shapes(w, seq, block)?;
    let a = material::own_mask(r, &a_shape);
    let c = material::product_share(r, &c_shape)?;
    Ok(BlockMatMulMaterial {
        party: r.party(),
        block,
        a,
        c,
    })
}

/// `C[t, b, :] = a[t, block b] · w[block b rows, :]`.
fn block_products(a: &ArrayD<u64>, w: &ArrayD<u64>, block: usize) -> ArrayD<u64> {
    let a = a.view().into_dimensionality::<Ix2>().expect("[seq, ff]");
    let w = w.view().into_dimensionality::<Ix2>().expect("[ff, d]");
    let (seq, ff) = a.dim();
    let d = w.ncols();
    let mut c = ArrayD::zeros(IxDyn(&[seq, ff / block, d]));
    for b in 0..ff / block {
        let cols = b * block..(b + 1) * block;
        let p: Array2<u64> = ring::matmul(a.slice(s![.., cols.clone()]), w.slice(s![cols, ..]));
        c.slice_mut(s![.., b, ..]).assign(&p);
    }
    c
}
