//! Products, transposition and element-wise arithmetic with NumPy broadcasting.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, Array3, ArrayD, ArrayView2, ArrayViewD, Axis};

use super::OpResult;
use crate::movement::reshape_to;

/// `[.., m, k] · [k, n]` (the left operand's leading axes broadcast) or batched
/// `[b.., m, k] · [b.., k, n]`. The 2D products go through `ndarray`'s blocked GEMM.
pub(super) fn matmul(a: &ArrayViewD<f64>, b: &ArrayViewD<f64>) -> OpResult {
    let (ra, rb) = (a.ndim(), b.ndim());
    let shapes = || format!("left is {:?}, right is {:?}", a.shape(), b.shape());
    if ra < 2 || rb < 2 {
        return Err(format!("`matmul` needs matrices: {}", shapes()));
    }
    if a.shape()[ra - 1] != b.shape()[rb - 2] {
        return Err(format!("`matmul`: {}: inner dimensions differ", shapes()));
    }
    if rb == 2 {
        return Ok(matmul_shared_right(a, b));
    }
    if ra != rb || a.shape()[..ra - 2] != b.shape()[..rb - 2] {
        return Err(format!("`matmul`: {}: batch axes differ", shapes()));
    }
    Ok(matmul_batched(a, b))
}

/// `[.., m, k] · [k, n]`: one GEMM over all rows of the left operand.
fn matmul_shared_right(a: &ArrayViewD<f64>, b: &ArrayViewD<f64>) -> ArrayD<f64> {
    let k = b.shape()[0];
    let n = b.shape()[1];
    let lead = &a.shape()[..a.ndim() - 1];
    let rows: usize = lead.iter().product();
    let a2: Array2<f64> = reshape_to(a, &[rows, k])
        .into_dimensionality()
        .expect("rank 2");
    let b2: ArrayView2<f64> = b.view().into_dimensionality().expect("rank checked");
    let c = if rows <= FEW_ROWS {
        few_rows(&a2, &b2)
    } else {
        a2.dot(&b2)
    };
    let mut shape = lead.to_vec();
    shape.push(n);
    reshape_to(&c.into_dyn().view(), &shape)
}

/// Left operands with at most this many rows (a decode step's one token) skip the blocked
/// GEMM: it packs the whole right operand and pads the rows to its kernel's height, which
/// made one-token products several times slower than the arithmetic they do.
const FEW_ROWS: usize = 4;

/// `a · b` as a sum of `b`'s rows scaled by `a`'s entries (one pass over `b` per row of
/// `a`, contiguous when `b` is in standard layout).
fn few_rows(a: &Array2<f64>, b: &ArrayView2<f64>) -> Array2<f64> {
    let mut c = Array2::<f64>::zeros((a.nrows(), b.ncols()));
    for (ar, mut cr) in a.rows().into_iter().zip(c.rows_mut()) {
        for (&x, br) in ar.iter().zip(b.rows()) {
            cr.scaled_add(x, &br);
        }
    }
    c
}

/// `[b.., m, k] · [b.., k, n]`: one GEMM per batch entry.
fn matmul_batched(a: &ArrayViewD<f64>, b: &ArrayViewD<f64>) -> ArrayD<f64> {
    let r = a.ndim();
    let (m, k, n) = (a.shape()[r - 2], a.shape()[r - 1], b.shape()[r - 1]);
    let lead = &a.shape()[..r - 2];
    let batch: usize = lead.iter().product();
    let a3: Array3<f64> = into3(reshape_to(a, &[batch, m, k]));
    let b3: Array3<f64> = into3(reshape_to(b, &[batch, k, n]));
    let mut c = Array3::<f64>::zeros((batch, m, n));
    for i in 0..batch {
        let mut ci = c.index_axis_mut(Axis(0), i);
        general_mat_mul(
            1.0,
            &a3.index_axis(Axis(0), i),
            &b3.index_axis(Axis(0), i),
            0.0,
            &mut ci,
        );
    }
    let mut shape = lead.to_vec();
    shape.extend([m, n]);
    reshape_to(&c.into_dyn().view(), &shape)
}

fn into3(x: ArrayD<f64>) -> Array3<f64> {
    x.into_dimensionality().expect("reshaped to rank 3")
}
