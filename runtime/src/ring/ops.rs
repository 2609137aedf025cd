//! Wrapping element-wise arithmetic on ring tensors, with NumPy broadcasting.
//!
//! `ndarray`'s `*` and `+` on `u64` panic on overflow in debug builds, while ring arithmetic
//! must wrap: every protocol goes through these helpers instead.

use ndarray::{ArrayD, ArrayViewD, IxDyn};

/// `f(a, b)` element-wise over the broadcast shape.
pub(crate) fn zip_with(
    a: ArrayViewD<'_, u64>,
    b: ArrayViewD<'_, u64>,
    f: impl Fn(u64, u64) -> u64,
) -> ArrayD<u64> {
    crate::movement::binary("ring op", &a, &b, f).unwrap_or_else(|e| panic!("{e}"))
}

/// `a + b`, wrapping, broadcast.
pub(crate) fn add(a: ArrayViewD<'_, u64>, b: ArrayViewD<'_, u64>) -> ArrayD<u64> {
    zip_with(a, b, u64::wrapping_add)
}

/// `a − b`, wrapping, broadcast.
pub(crate) fn sub(a: ArrayViewD<'_, u64>, b: ArrayViewD<'_, u64>) -> ArrayD<u64> {
    zip_with(a, b, u64::wrapping_sub)
}

/// `a · b`, wrapping, broadcast.
pub(crate) fn mul(a: ArrayViewD<'_, u64>, b: ArrayViewD<'_, u64>) -> ArrayD<u64> {
    zip_with(a, b, u64::wrapping_mul)
}

/// A tensor of `shape` filled from a flat slice (row-major).
///
/// # Panics
/// If the slice does not have one element per entry.
pub(crate) fn from_flat(shape: &[usize], data: &[u64]) -> ArrayD<u64> {
    ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).expect("one element per entry")
}

/// The elements of `x` in row-major order.
pub(crate) fn flat(x: &ArrayD<u64>) -> impl Iterator<Item = u64> + '_ {
    x.iter().copied()
}
