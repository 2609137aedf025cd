//! What depends on token positions, in the ring: position ids, rotary embeddings with
//! public encoded cos/sin, the causal mask.

use comet_ir::{DimEnv, RopeStyle};
use ndarray::{Array1, Array3, ArrayD, ArrayViewD, Axis};

use super::OpResult;
use crate::movement;
use crate::ring::{Ring, encode};

/// Added, in real units, to the score of every hidden key by `causal_mask`.
///
/// `−2^20`, not the f64 interpreter's `MASK_OFFSET` (−1e9): it plays the same role (a
/// hidden key never wins `row_max` against real scores, and exp's clip below −14 gives it
/// exactly 0 through its `select`), while its encoding at scale 16, −2^36, keeps the masked
/// score and `exp`'s first product (`x/256` = −2^12 at scale 32: −2^44) inside the ring
/// with room to spare. exp's squarings of `1 + x/256` wrap for masked keys (as they do for any
/// score below −512 in plaintext too): harmless, because the clip's mux multiplies the
/// wrapped value by the bit 0, which is exact in the ring.
pub const MASK_OFFSET: f64 = -1_048_576.0;

/// Position ids `past + offset ..< past + offset + seq` as ring integers.
pub(super) fn positions(offset: i64, env: DimEnv) -> ArrayD<Ring> {
    let first = env.past.wrapping_add(offset as u64);
    Array1::from_iter((0..env.seq).map(|i| first.wrapping_add(i))).into_dyn()
}

/// Rotary embedding of `[h, s, k]` at positions `past ..< past + s`, with `cos` and `sin`
/// encoded at `frac`: the result carries `frac` more fractional bits than `x` (RoFormer,
/// Su et al. 2021, eq. 34; the angles are the f64 interpreter's).
pub(super) fn rope(
    x: &ArrayViewD<Ring>,
    base: f64,
    style: RopeStyle,
    past: u64,
    frac: u32,
) -> OpResult {
    if x.ndim() != 3 || !x.shape()[2].is_multiple_of(2) {
        return Err(format!(
            "`rope` needs [h, seq, k] with an even k, got {:?}",
            x.shape()
        ));
    }
    let mut out: Array3<Ring> = x.to_owned().into_dimensionality().expect("rank 3");
    let (seq, k) = (out.shape()[1], out.shape()[2]);
    for (t, pair, angle) in crate::movement::rope_rotations(seq, k, past, base, style) {
        let (sin, cos) = angle.sin_cos();
        rotate(&mut out, t, pair, (encode(cos, frac), encode(sin, frac)));
    }
    Ok(out.into_dyn())
}

/// Turns channels `(p, q)` of position `t` of every head by the encoded `(cos, sin)`.
fn rotate(x: &mut Array3<Ring>, t: usize, (p, q): (usize, usize), (cos, sin): (Ring, Ring)) {
    for mut head in x.axis_iter_mut(Axis(0)) {
        let (a, b) = (head[(t, p)], head[(t, q)]);
        head[(t, p)] = a.wrapping_mul(cos).wrapping_sub(b.wrapping_mul(sin));
        head[(t, q)] = a.wrapping_mul(sin).wrapping_add(b.wrapping_mul(cos));
    }
}

/// Adds [`MASK_OFFSET`] encoded at `scale` to the score of every hidden key
/// ([`movement::mask_future`]).
pub(super) fn causal_mask(x: &ArrayViewD<Ring>, scale: u32) -> OpResult {
    let mask = encode(MASK_OFFSET, scale);
    movement::mask_future(x, |v| v.wrapping_add(mask))
}
