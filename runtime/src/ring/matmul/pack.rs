//! Packing: copies of the operands laid out in the order the micro-kernels read them.

use std::ops::Range;

use ndarray::{ArrayView2, s};
use rayon::prelude::*;

use super::kernel::{NR, Row};

/// The right operand of a product, packed once and reusable across products.
///
/// Column panels of width `NR` (the last one zero-padded), each stored `k`-major: panel
/// `p` holds `B[0, 4p..4p+4], B[1, 4p..4p+4], …`. A Beaver matmul with a fixed secret
/// matrix (PROTOCOLS.md: the weights' `W − B` is opened once at setup) multiplies by the
/// same right operand on every call, so it can pack it once with [`PackedRhs::new`] and
/// call [`matmul_packed`](super::matmul_packed).
#[derive(Clone)]
pub struct PackedRhs {
    k: usize,
    n: usize,
    data: Vec<u64>,
}

impl std::fmt::Debug for PackedRhs {
    /// Shape only: the contents are usually a share or a masked secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedRhs({}×{}, ..)", self.k, self.n)
    }
}

impl PackedRhs {
    /// Packs the `k × n` matrix `b` (any memory layout), in parallel over groups of panels.
    pub fn new(b: ArrayView2<'_, u64>) -> Self {
        let (k, n) = b.dim();
        let b = b.as_standard_layout();
        let rows = b.as_slice().expect("standard layout");
        let mut data = vec![0u64; n.div_ceil(NR) * k * NR];
        if k > 0 {
            data.par_chunks_mut(PANELS_PER_TASK * k * NR)
                .enumerate()
                .for_each(|(t, panels)| pack_panels(rows, n, t * PANELS_PER_TASK, panels));
        }
        PackedRhs { k, n, data }
    }

    /// The packed matrix, unpacked (for the rare element-wise use of a packed operand).
    pub fn to_dense(&self) -> ndarray::Array2<u64> {
        ndarray::Array2::from_shape_fn((self.k, self.n), |(kk, j)| {
            self.data[((j / NR) * self.k + kk) * NR + j % NR]
        })
    }

    /// `(k, n)`: the shape of the matrix that was packed.
    pub fn dim(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// Number of column panels (the last may be partly padding).
    pub(super) fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// Rows `ks` of panel `p`.
    pub(super) fn rows(&self, p: usize, ks: Range<usize>) -> std::slice::Iter<'_, Row> {
        let panel = &self.data[(p * self.k + ks.start) * NR..(p * self.k + ks.end) * NR];
        panel.as_chunks::<NR>().0.iter()
    }
}

/// Panels packed per rayon task: 16 panels read 64 columns (eight cache lines) of a row.
const PANELS_PER_TASK: usize = 16;

/// Packs the panels starting with panel `p0` of the row-major `? × n` matrix `b` into
/// `out` (whole panels of `k · NR` values), leaving missing columns zero. Reads `b` row by
/// row (contiguously) and scatters each row's pieces to the panels.
fn pack_panels(b: &[u64], n: usize, p0: usize, out: &mut [u64]) {
    let k = b.len() / n;
    let panels = out.len() / (k * NR);
    for (kk, row) in b.chunks_exact(n).enumerate() {
        let (whole, rest) = row[p0 * NR..].as_chunks::<NR>();
        for (i, piece) in whole.iter().take(panels).enumerate() {
            *out[(i * k + kk) * NR..]
                .first_chunk_mut()
                .expect("in the panel") = *piece;
        }
        if whole.len() < panels && !rest.is_empty() {
            out[(whole.len() * k + kk) * NR..][..rest.len()].copy_from_slice(rest);
        }
    }
}

/// Packs rows `rows` × columns `ks` of `a` for the kernels into `out` (overwritten).
///
/// Groups of `mr` rows (the last zero-padded), each `k`-major: for each `k`, the group's
/// `mr` entries as pairs `(v, v.rotate_left(32))` (the AVX2 kernel multiplies by both).
pub(super) fn pack_lhs(
    a: ArrayView2<'_, u64>,
    rows: Range<usize>,
    ks: Range<usize>,
    mr: usize,
    out: &mut Vec<u64>,
) {
    let slab = ks.len() * mr * 2;
    out.clear();
    out.resize(rows.len().div_ceil(mr) * slab, 0);
    for (i, r) in rows.enumerate() {
        let group = &mut out[i / mr * slab..][..slab];
        let values = a.slice(s![r, ks.clone()]);
        for (pair, &v) in group.chunks_exact_mut(2 * mr).zip(&values) {
            let at = 2 * (i % mr);
            pair[at] = v;
            pair[at + 1] = v.rotate_left(32);
        }
    }
}
