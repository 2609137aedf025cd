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

fn finish_route(
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
    let packed = |which| w.packed(which).expect("a matrix fixed operand is packed");
    let scatter = |v: &[u64]| scatter(v, &state.active, state.block, state.shape);
    let xf = ring::matmul_packed(scatter(x).view(), packed(0));
    add(
        xf,
        &ring::matmul_packed(scatter(e).view(), packed(1)).view(),
    )
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
    let [c0, c1] = material::correct(d, block_products(&material::sum(&a), &mask.b, block));
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
/// If the shapes do not fit ([`block_shapes`]) or the body cannot be read.
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

#[cfg(test)]
mod tests {
    use ndarray::{Array2, ArrayD, IxDyn};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha12Rng;

    use super::*;
    use crate::dealer::Dealer;
    use crate::protocols::driver::{round, run_two_party, setup_round};
    use crate::protocols::fixed;
    use crate::protocols::share::{reconstruct, split};

    const BLOCK: usize = 3;

    fn tensor(r: &mut ChaCha12Rng, shape: &[usize]) -> ArrayD<u64> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || r.next_u64())
    }

    /// Runs setup and one product as both parties (`route`: forced, or `finish`'s choice);
    /// the opened `Y` and the online bytes each party sent.
    fn run(
        h: &ArrayD<u64>,
        w: &ArrayD<u64>,
        mask: &Array2<bool>,
        route: Option<bool>,
    ) -> (ArrayD<u64>, [u64; 2]) {
        let mut r = ChaCha12Rng::seed_from_u64(7);
        let mut d = Dealer::from_u64(7);
        let (fm, [b0, b1]) = d.fixed_mask(w.shape());
        let [m0, m1] = d.block_matmul(&fm, h.shape()[0], BLOCK);
        let ((h0, h1), (w0, w1)) = (split(h, &mut r), split(w, &mut r));
        let party = |p: PartyId, b, w: Share, h: Share, m| {
            move |ch: &mut crate::transport::MemChannel| {
                let (st, msg) = fixed::setup_start(p, &w, b);
                let w = fixed::setup_finish(st, &setup_round(ch, &msg).unwrap()).unwrap();
                let (st, msg) = start(p, &h, mask.view(), BLOCK, m);
                let peer = round(ch, &msg).unwrap();
                match route {
                    None => finish(st, &w, &peer).unwrap(),
                    Some(per_block) => finish_route(st, &w, &peer, per_block).unwrap(),
                }
            }
        };
        let (a, b) = run_two_party(party(0, b0, w0, h0, m0), party(1, b1, w1, h1, m1));
        let sent = [&a, &b].map(|x| x.stats.online.payload_bytes_sent);
        (reconstruct(&a.output, &b.output), sent)
    }

    /// The plaintext masked product, by the definition.
    fn plain(h: &ArrayD<u64>, w: &ArrayD<u64>, mask: &Array2<bool>) -> ArrayD<u64> {
        let (seq, d) = (h.shape()[0], w.shape()[1]);
        ArrayD::from_shape_fn(IxDyn(&[seq, d]), |ix| {
            let (t, j) = (ix[0], ix[1]);
            let mut s = 0u64;
            for ((_, b), _) in mask.indexed_iter().filter(|(tb, on)| tb.0 == t && **on) {
                for i in b * BLOCK..(b + 1) * BLOCK {
                    s = s.wrapping_add(h[[t, i]].wrapping_mul(w[[i, j]]));
                }
            }
            s
        })
    }

    #[test]
    fn both_routes_give_the_masked_product() {
        let mut r = ChaCha12Rng::seed_from_u64(41);
        for (seq, ff, d) in [(5, 12, 7), (9, 6, 3), (1, 15, 4)] {
            let (h, w) = (tensor(&mut r, &[seq, ff]), tensor(&mut r, &[ff, d]));
            let mask =
                Array2::from_shape_simple_fn((seq, ff / BLOCK), || r.next_u64().is_multiple_of(3));
            let active = mask.iter().filter(|on| **on).count();
            let want = plain(&h, &w, &mask);
            for route in [None, Some(true), Some(false)] {
                let (y, sent) = run(&h, &w, &mask, route);
                assert_eq!(y, want, "{seq}×{ff}·{ff}×{d}, route {route:?}");
                assert_eq!(sent, [8 * (active * BLOCK) as u64; 2]);
            }
        }
    }

    #[test]
    fn an_all_ones_mask_is_the_dense_product() {
        let mut r = ChaCha12Rng::seed_from_u64(42);
        let (h, w) = (tensor(&mut r, &[4, 9]), tensor(&mut r, &[9, 5]));
        let dense = ring::matmul_batched(h.view(), w.view()).unwrap();
        for route in [Some(true), Some(false)] {
            assert_eq!(
                run(&h, &w, &Array2::from_elem((4, 3), true), route).0,
                dense
            );
        }
    }

    #[test]
    fn an_all_zero_mask_gives_zeros_and_sends_nothing() {
        let mut r = ChaCha12Rng::seed_from_u64(43);
        let (h, w) = (tensor(&mut r, &[3, 6]), tensor(&mut r, &[6, 2]));
        let (y, sent) = run(&h, &w, &Array2::from_elem((3, 2), false), None);
        assert_eq!((y, sent), (ArrayD::zeros(IxDyn(&[3, 2])), [0, 0]));
    }

    #[test]
    fn a_wrong_sized_message_is_an_error_and_state_is_redacted() {
        let mut d = Dealer::from_u64(44);
        let (fm, [b0, _]) = d.fixed_mask(&[6, 2]);
        let [m0, _] = d.block_matmul(&fm, 2, BLOCK);
        let zeros = |shape: &[usize]| Share(ArrayD::zeros(IxDyn(shape)));
        let (st, _) = fixed::setup_start(0, &zeros(&[6, 2]), b0);
        let w = fixed::setup_finish(st, &[0; 12]).unwrap();
        let mask = Array2::from_shape_vec((2, 2), vec![true, false, true, true]).unwrap();
        let (st, msg) = start(0, &zeros(&[2, 6]), mask.view(), BLOCK, m0);
        assert_eq!(msg.len(), 3 * BLOCK);
        let text = format!("{st:?}");
        assert!(text.contains("active_blocks: 3"), "{text}");
        assert!(finish(st, &w, &[0; 8]).is_err());
    }
}
