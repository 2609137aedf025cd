//! Ring arithmetic: wrapping sums and products, truncation, comparisons, reductions.

use comet_ir::infer::mul_const_ring;
use comet_ir::table;
use ndarray::{ArrayD, ArrayViewD, Axis};

use super::OpResult;
use crate::movement::{binary, last_axis};
use crate::ring::{Ring, encode, matmul_batched};

/// The wrapping product `[.., m, k] · [k, n]` or batched `[b.., m, k] · [b.., k, n]`.
pub(super) fn matmul(a: &ArrayViewD<Ring>, b: &ArrayViewD<Ring>) -> OpResult {
    matmul_batched(a.view(), b.view()).map_err(|e| e.to_string())
}

/// `x · value`: by the integer itself when it is one (the scale stays), else by its
/// encoding at `frac` (the scale grows by `frac`), as the type rule of `mul_const` says.
pub(super) fn mul_const(x: &ArrayViewD<Ring>, value: f64, frac: u32) -> ArrayD<Ring> {
    let c = mul_const_ring(value, frac);
    x.mapv(|v| v.wrapping_mul(c))
}

/// `x + value` with `value` encoded at `x`'s scale.
pub(super) fn add_const(x: &ArrayViewD<Ring>, value: f64, scale: u32) -> ArrayD<Ring> {
    let c = encode(value, scale);
    x.mapv(|v| v.wrapping_add(c))
}

/// `⌊x / 2^bits⌋` of the signed value: what SecureML's truncation gives up to +1 ulp.
pub(super) fn trunc(x: &ArrayViewD<Ring>, bits: u32) -> OpResult {
    if bits >= 64 {
        return Err(format!("`trunc` by {bits} bits: needs bits < 64"));
    }
    Ok(x.mapv(|v| ((v as i64) >> bits) as Ring))
}

/// The bit `x ≥ 0` of the signed value, as the ring integer 0 or 1.
pub(super) fn drelu(x: &ArrayViewD<Ring>) -> ArrayD<Ring> {
    x.mapv(|v| Ring::from(v as i64 >= 0))
}

/// A table lookup (`comet_ir::table`): the entry at `⌊x·2^q⌋ mod 2^n` of the input at
/// `scale`, at `out_scale`.
pub(super) fn lut(
    x: &ArrayViewD<Ring>,
    (func, bits, frac): (comet_ir::TableFn, u32, u32),
    scale: u32,
    out_scale: u32,
) -> OpResult {
    if frac > scale || !(1..=table::MAX_TABLE_BITS).contains(&bits) {
        return Err(format!(
            "`lut` reads {frac} fractional bits at {bits} index bits of an input at scale \
             {scale}"
        ));
    }
    let t = table::entries(func, bits, frac, out_scale);
    Ok(x.mapv(|v| t[table::index_fixed(v, scale, frac, bits)]))
}

/// Real thresholds as ring elements at `scale` (`[x ≥ t]` is `DReLU(x − t)` in the ring).
pub(crate) fn thresholds(ts: &[f64], scale: u32) -> Vec<Ring> {
    ts.iter().map(|t| encode(*t, scale)).collect()
}

/// A 0/1 bit as the fixed-point 0 or 1 at `frac` fractional bits.
pub(super) fn b2a(x: &ArrayViewD<Ring>, frac: u32) -> ArrayD<Ring> {
    let one = 1u64 << frac;
    x.mapv(|v| v.wrapping_mul(one))
}

/// `b · x`: `x` where the bit is 1, 0 where it is 0 (the mux's product, exact in the ring
/// whatever `x` holds).
pub(super) fn select(b: &ArrayViewD<Ring>, x: &ArrayViewD<Ring>) -> OpResult {
    binary("select", b, x, Ring::wrapping_mul)
}

/// `y·[x ≥ 0]` (signed x): `y` where x is non-negative, else 0.
pub(super) fn sign_select(x: &ArrayViewD<Ring>, y: &ArrayViewD<Ring>) -> OpResult {
    binary(
        "sign_select",
        x,
        y,
        |a, v| if a as i64 >= 0 { v } else { 0 },
    )
}

/// Reduces the last axis with `f` from `init`, keeping it as an axis of size 1.
pub(super) fn reduce_row(
    what: &str,
    x: &ArrayViewD<Ring>,
    init: Ring,
    f: impl Fn(Ring, Ring) -> Ring,
) -> OpResult {
    let axis: Axis = last_axis(what, x)?;
    let reduced: ArrayD<Ring> = x.map_axis(axis, |row| row.iter().fold(init, |a, &v| f(a, v)));
    Ok(reduced.insert_axis(axis))
}

/// The larger of two signed values.
pub(super) fn signed_max(a: Ring, b: Ring) -> Ring {
    if (b as i64) > (a as i64) { b } else { a }
}
