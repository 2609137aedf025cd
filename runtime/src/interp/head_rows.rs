//! Nodes of a head-masked attention core ([`comet_ir::head_region`]): run on the active
//! rows only — the rows `(h, s)` of query heads whose KV group the public head mask marks
//! active at token `s` — with their operands and (dense) material gathered there, the
//! protocol run as on a `[rows, ..]` tensor, and the result scattered back (zeros at the
//! inactive rows).

use comet_ir::head_region::HeadRegion;
use ndarray::ArrayD;

use super::InterpError;
use super::gathered::Gathered;
use super::material::shape_of;
use super::party::Run;
use super::plan::Pos;
use super::start::At;
use crate::protocols::Share;
use crate::protocols::dispatch::{self, NodeMaterial, Pending};
use crate::protocols::material::take_rows;
use crate::protocols::row_max::LevelMaterial;
use crate::protocols::square::SquareMaterial;

impl Run<'_> {
    /// Starts a node of a head-masked core on its active rows: operands and material
    /// gathered there; the result is scattered back when it finishes.
    pub(super) fn start_head_rows(
        &mut self,
        i: Pos,
        r: HeadRegion,
        material: NodeMaterial,
    ) -> Result<(Pending, Vec<u8>), InterpError> {
        let id = self.plan.id(i);
        let shape = shape_of(self.program, id, self.env);
        let seq = shape.get(1).copied().unwrap_or(0);
        let lead = r.heads as usize * seq;
        let mask = self.mask_bits(i, self.plan.pos(r.mask))?;
        if mask.dim() != (seq, r.groups as usize) {
            let msg = format!(
                "head mask {:?} for {seq} tokens, {} groups",
                mask.dim(),
                r.groups
            );
            return Err(self.fail(i, msg));
        }
        let bits: Vec<bool> = mask.iter().copied().collect();
        let rows = r.active_rows(seq, &bits);
        let mut xs = Vec::new();
        for &x in self.plan.operands(i) {
            let v = self.held(i, x)?;
            xs.push(Share(
                rows_of(&v.0, &rows, lead).map_err(|e| self.fail(i, e))?,
            ));
        }
        let material = gather_material(material, &xs, &rows, lead).map_err(|e| self.fail(i, e))?;
        let node = Gathered {
            at: At { run: self, pos: i },
            xs,
        };
        let started = dispatch::start(&node, Some(material))?;
        let idx = entries(&rows, shape[2..].iter().product());
        self.scatter.insert(i, (idx, shape));
        Ok(started)
    }
}

/// Rows `rows` of a core value `[H, seq, ..]` (`H·seq = lead`): `[rows, ..]`.
fn rows_of(x: &ArrayD<u64>, rows: &[usize], lead: usize) -> Result<ArrayD<u64>, String> {
    let s = x.shape();
    if s.len() < 3 || s[0] * s[1] != lead {
        return Err(format!(
            "a core value must be [heads, seq, ..] with {lead} rows, got {s:?}"
        ));
    }
    Ok(take_rows(x, rows, lead))
}

/// The flat indices of `rows`' entries, `per` entries a row.
fn entries(rows: &[usize], per: usize) -> Vec<usize> {
    (rows.iter()).flat_map(|r| r * per..(r + 1) * per).collect()
}

/// The dense material of a core node at its active rows; `xs` are the gathered operands
/// (whose row sizes give the per-entry materials' layout).
fn gather_material(
    m: NodeMaterial,
    xs: &[Share],
    rows: &[usize],
    lead: usize,
) -> Result<NodeMaterial, String> {
    // entries per row of the operand the per-entry keys are laid out on (its first)
    let per: usize = xs[0].shape()[1..].iter().product();
    let idx = || entries(rows, per);
    Ok(match m {
        NodeMaterial::Triple(t) => NodeMaterial::Triple(t.gather_rows(rows, lead)),
        NodeMaterial::BitMux(t) => NodeMaterial::BitMux(t.gather_rows(rows, lead)),
        NodeMaterial::Square(t) => NodeMaterial::Square(SquareMaterial {
            party: t.party,
            a: take_rows(&t.a, rows, lead),
            c: take_rows(&t.c, rows, lead),
        }),
        NodeMaterial::Drelu(t) => NodeMaterial::Drelu(t.gather(&idx())),
        NodeMaterial::Lut(t) => NodeMaterial::Lut(t.gather(&idx())),
        NodeMaterial::SignSelect(t) => NodeMaterial::SignSelect(t.gather(&idx())),
        NodeMaterial::Trunc(t) => NodeMaterial::Trunc(t.gather(&idx())),
        NodeMaterial::StochasticTrunc(t) => NodeMaterial::StochasticTrunc(t.gather(&idx())),
        NodeMaterial::RowMax(levels) => NodeMaterial::RowMax(row_max_levels(levels, rows, per)?),
        _ => return Err("this protocol does not run on a head-masked core's rows".into()),
    })
}

/// A row maximum's levels at `rows`: level `k` of rows of `t` candidates compares
/// `⌊k/2⌋` pairs a row (then `⌈k/2⌉` candidates remain).
fn row_max_levels(
    levels: Vec<LevelMaterial>,
    rows: &[usize],
    t: usize,
) -> Result<Vec<LevelMaterial>, String> {
    let mut k = t;
    let mut out = Vec::with_capacity(levels.len());
    for level in levels {
        let LevelMaterial::Fss(m) = level else {
            return Err("a GMW row maximum does not run on a head-masked core's rows".into());
        };
        out.push(LevelMaterial::Fss(m.gather(&entries(rows, k / 2))));
        k = k.div_ceil(2);
    }
    Ok(out)
}
