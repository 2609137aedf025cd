//! Material of the block-sparse product `H · W` with a fixed `W` `[ff, d]`
//! ([`crate::protocols::block_matmul`]): a fresh mask `A'` `[seq, ff]` of `H` from each
//! party's stream (free), and per token row and block the share of
//! `C[t, b, :] = A'[t, block b] · B[block b rows, :]` (`[seq, ff/block, d]`): party 0's
//! from its stream, party 1's the correction, `8·seq·(ff/block)·d` bytes. Every block's
//! correction is dealt, whichever blocks turn out active.

use std::fmt;

use ndarray::{Array2, ArrayD, Ix2, IxDyn, s};

use super::{Dealer, FixedMask, MaterialError};
use crate::protocols::PartyId;
use crate::protocols::ring_ops;
use crate::ring;

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
pub(super) fn block_shapes(
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

impl Dealer {
    /// Per-call material of the block-sparse `H · W` (`H`: `[seq, ff]`) with `W` fixed under
    /// `mask`, in blocks of `block` rows of `W`.
    ///
    /// # Panics
    /// If `W` is not a matrix, or `block` is 0 or does not divide its rows.
    pub fn block_matmul(
        &mut self,
        mask: &FixedMask,
        seq: usize,
        block: usize,
    ) -> [BlockMatMulMaterial; 2] {
        let (a_shape, _) = block_shapes(mask.shape(), seq, block).expect("block shapes");
        let [a0, a1] = self.masks(&a_shape);
        let a = ring_ops::add(a0.view(), a1.view());
        let [c0, c1] = self.correct(block_products(&a, &mask.b, block));
        [(0, a0, c0), (1, a1, c1)].map(|(party, a, c)| BlockMatMulMaterial { party, block, a, c })
    }
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
