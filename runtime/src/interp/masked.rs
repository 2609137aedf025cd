//! Nodes of a sparse FFN's masked region: run on the entries of the active blocks only,
//! with their operands and (dense) material gathered there, and scattered back after.

use comet_ir::protocol::Protocol;
use comet_ir::sparse::Masked;
use ndarray::{ArrayD, IxDyn};

use super::InterpError;
use super::gathered::Gathered;
use super::material::shape_of;
use super::party::Run;
use super::plan::Pos;
use super::start::At;
use crate::protocols::Share;
use crate::protocols::dispatch::{self, NodeMaterial, Pending};
use crate::ring::Ring;

impl Run<'_> {
    /// The public block mask at `mask` as bits `[seq, blocks]`.
    pub(super) fn mask_bits(
        &self,
        i: Pos,
        mask: Pos,
    ) -> Result<ndarray::Array2<bool>, InterpError> {
        let v = (self.value(mask)).ok_or_else(|| self.fail(i, "block mask not opened".into()))?;
        (v.0.mapv(|b| b != 0).into_dimensionality::<ndarray::Ix2>())
            .map_err(|_| self.fail(i, format!("block mask {:?} is not 2-D", v.shape())))
    }

    /// Starts a node of a sparse FFN's masked region on its active entries only: its
    /// operands and its (dense) material gathered at them; the result is scattered back
    /// when it finishes. With blocks of whole bytes ([`Masked::packs_whole`]) the node's
    /// own protocol runs on the entries at its widths; else the gathered starts of the
    /// dispatch, at 64 bits with bits a byte each.
    pub(super) fn start_masked(
        &mut self,
        i: Pos,
        m: Masked,
        proto: Protocol,
        material: NodeMaterial,
    ) -> Result<(Pending, Vec<u8>), InterpError> {
        let id = self.plan.id(i);
        let shape = shape_of(self.program, id, self.env);
        let mask = self.mask_bits(i, self.plan.pos(m.mask))?;
        let idx =
            active_entries(mask.view(), &shape, m.block as usize).map_err(|e| self.fail(i, e))?;
        let mut xs = Vec::new();
        for &x in self.plan.operands(i) {
            let v = self.held(i, x)?;
            xs.push(gather_entries(&v.0, &shape, &idx).map_err(|e| self.fail(i, e))?);
        }
        let started = match m.packs_whole() {
            true => {
                let material = gather_flat(material, &idx).map_err(|e| self.fail(i, e))?;
                let node = Gathered {
                    at: At { run: self, pos: i },
                    xs,
                };
                dispatch::start(&node, Some(material))?
            }
            false => {
                dispatch::start_gathered(self.party, proto, &xs, material, &idx, m.block as usize)
                    .map_err(|e| self.fail(i, e))?
            }
        };
        self.scatter.insert(i, (idx, shape));
        Ok(started)
    }

    /// A masked node's result on its active entries, back at its full shape (zeros at
    /// the inactive entries); other nodes' results unchanged.
    pub(super) fn scatter_back(&mut self, i: Pos, v: Option<ArrayD<Ring>>) -> Option<ArrayD<Ring>> {
        let (Some(v), Some((idx, shape))) = (v.as_ref(), self.scatter.remove(&i)) else {
            return v;
        };
        let mut full = ArrayD::zeros(IxDyn(&shape));
        let flat = full.as_slice_mut().expect("standard layout");
        for (&i, &x) in idx.iter().zip(v.iter()) {
            flat[i] = x;
        }
        Some(full)
    }

    /// Counts the active pairs of an opened block mask.
    pub(super) fn count_active(&mut self, i: Pos) {
        let Some(&ffn) = self.mask_ffn.get(&i) else {
            return;
        };
        let ones = self
            .value(i)
            .map_or(0, |v| v.0.iter().filter(|&&b| b != 0).count());
        if let Some(a) = self.active.get_mut(ffn as usize) {
            *a += ones as u64;
        }
    }
}

/// The flat indices of the entries of `shape` (`[seq, n]`) in the blocks `mask` marks
/// active, in row-major order.
fn active_entries(
    mask: ndarray::ArrayView2<bool>,
    shape: &[usize],
    block: usize,
) -> Result<Vec<usize>, String> {
    let [seq, n] = shape else {
        return Err(format!("a masked value must be [seq, n], got {shape:?}"));
    };
    if block == 0 || !n.is_multiple_of(block) || mask.dim() != (*seq, n / block) {
        return Err(format!(
            "block mask {:?} does not cover {shape:?} in blocks of {block}",
            mask.dim()
        ));
    }
    let mut idx = Vec::new();
    for ((t, b), &on) in mask.indexed_iter() {
        if on {
            idx.extend((0..block).map(|i| t * n + b * block + i));
        }
    }
    Ok(idx)
}

/// The dense material of a masked node at the flat entries `idx`.
fn gather_flat(m: NodeMaterial, idx: &[usize]) -> Result<NodeMaterial, String> {
    Ok(match m {
        NodeMaterial::Triple(t) => NodeMaterial::Triple(t.gather(idx)),
        NodeMaterial::BitMux(t) => NodeMaterial::BitMux(t.gather(idx)),
        NodeMaterial::Square(t) => NodeMaterial::Square(t.gather(idx)),
        NodeMaterial::Drelu(t) => NodeMaterial::Drelu(t.gather(idx)),
        NodeMaterial::Lut(t) => NodeMaterial::Lut(t.gather(idx)),
        NodeMaterial::SignSelect(t) => NodeMaterial::SignSelect(t.gather(idx)),
        NodeMaterial::Trunc(t) => NodeMaterial::Trunc(t.gather(idx)),
        NodeMaterial::StochasticTrunc(t) => NodeMaterial::StochasticTrunc(t.gather(idx)),
        _ => return Err("this protocol does not run on the active blocks of a sparse FFN".into()),
    })
}

/// `x` broadcast to `shape`, at the flat indices `idx`: a 1-D share.
fn gather_entries(x: &ArrayD<Ring>, shape: &[usize], idx: &[usize]) -> Result<Share, String> {
    let full = x
        .broadcast(IxDyn(shape))
        .ok_or_else(|| format!("operand {:?} does not broadcast to {shape:?}", x.shape()))?;
    let full = full.as_standard_layout();
    let flat = full.as_slice().expect("standard layout");
    Ok(Share(ArrayD::from_shape_fn(IxDyn(&[idx.len()]), |i| {
        flat[idx[i[0]]]
    })))
}
