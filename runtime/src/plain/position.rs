//! What depends on token positions: position ids, rotary embeddings, the causal mask.

use comet_ir::{DimEnv, RopeStyle};
use ndarray::{Array1, Array3, ArrayD, ArrayViewD, Axis};

use super::OpResult;
use crate::movement;

/// Added to the score of every hidden key by `causal_mask`.
///
/// Finite, so that a masked score times a zero bit stays 0 in expanded programs, and large
/// enough that `exp(score + MASK_OFFSET − max)` underflows to exactly 0 in f64 (below
/// −745) for any score under 10⁸ in magnitude: softmax gives hidden keys exactly 0.
pub const MASK_OFFSET: f64 = -1e9;

/// Position ids `past + offset ..< past + offset + seq`.
pub(super) fn positions(offset: i64, env: DimEnv) -> ArrayD<f64> {
    let first = env.past as f64 + offset as f64;
    Array1::from_iter((0..env.seq).map(|i| first + i as f64)).into_dyn()
}

/// Rotary embedding of `[h, s, k]` at positions `past ..< past + s`: the channel pair `j`
/// turns by `pos · base^(−2j/k)` (RoFormer, Su et al. 2021, eq. 34).
pub(super) fn rope(x: &ArrayViewD<f64>, base: f64, style: RopeStyle, past: u64) -> OpResult {
    if x.ndim() != 3 || !x.shape()[2].is_multiple_of(2) {
        return Err(format!(
            "`rope` needs [h, seq, k] with an even k, got {:?}",
            x.shape()
        ));
    }
    let mut out: Array3<f64> = x.to_owned().into_dimensionality().expect("rank 3");
    let (seq, k) = (out.shape()[1], out.shape()[2]);
    for (t, pair, angle) in crate::movement::rope_rotations(seq, k, past, base, style) {
        rotate(&mut out, t, pair, angle);
    }
    Ok(out.into_dyn())
}

/// Turns channels `(p, q)` of position `t` of every head by `angle`.
fn rotate(x: &mut Array3<f64>, t: usize, (p, q): (usize, usize), angle: f64) {
    let (sin, cos) = angle.sin_cos();
    for mut head in x.axis_iter_mut(Axis(0)) {
        let (a, b) = (head[(t, p)], head[(t, q)]);
        head[(t, p)] = a * cos - b * sin;
        head[(t, q)] = a * sin + b * cos;
    }
}

/// Adds [`MASK_OFFSET`] to the score of every hidden key ([`movement::mask_future`]).
pub(super) fn causal_mask(x: &ArrayViewD<f64>) -> OpResult {
    movement::mask_future(x, |v| v + MASK_OFFSET)
}
