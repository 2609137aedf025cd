//! Norm forms: pcf's affine substitutes, which drop the division by the standard
//! deviation (no variance, no rsqrt).

use crate::passes::builder::Builder;
use comet_ir::NodeId;

/// pcf LayerNorm: `(x − mean(x))·g + b`.
pub(super) fn affine_layer_norm(b: &mut Builder, x: NodeId, g: NodeId, bias: NodeId) -> NodeId {
    let inv_d = 1.0 / b.last_width(x) as f64;
    let sum = b.row_sum(x);
    let mean = b.mul_const(sum, inv_d);
    let c = b.sub(x, mean);
    let scaled = b.mul(c, g);
    b.add(scaled, bias)
}

/// pcf RMSNorm: `x·g`.
pub(super) fn affine_rms_norm(b: &mut Builder, x: NodeId, g: NodeId) -> NodeId {
    b.mul(x, g)
}
