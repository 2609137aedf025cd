//! Pass `head-sparsify`: attention heads skipped per token by a head predictor (COMET.md
//! §4, docs/sparsity.md "Head sparsity").
//!
//! For every attention ([`comet_ir::heads`]) with `G` KV groups of `g` query heads of
//! dimension `hd`, it builds
//!
//! ```text
//! score  = [x, 1] · π([P; c])                 P [d, G], c [G]: the folded head predictor
//! mask   = open(drelu(score))                 public [seq, G]: group j of token t is active
//! q,k,v  = x · π(W_Q), x · π(W_K), x · π(W_V)  [+ π(b)]  (columns permuted by groups)
//! out    = block_matmul(merged, π(W_O), mask)  the rows of W_O of the active groups only
//! ```
//!
//! where `π` (`block_permute`, one permutation of the `G` groups per attention, drawn by
//! the oblivious shuffle of the sparse FFNs) moves whole groups: `g·hd` columns of `W_Q`
//! and rows of `W_O`, `hd` columns of `W_K` and `W_V`. Rotations act within a head and
//! query head `h` reads KV head `h / g`, so the permuted attention computes the permuted
//! heads of the same function; the opened mask is in permuted order. An inactive group
//! contributes exactly zero (its rows of `W_O` are skipped, and its entries of `merged`
//! are never opened).
//!
//! **What is skipped, and what is not yet.** The output projection opens `merged − A`
//! at the active groups only (`block_matmul`, measured). The Q/K/V projections stay
//! dense: with fixed-weight Beaver products the opening of `x − A` is the whole input
//! anyway, so skipping columns would save only local work and dealer material. Every
//! K/V row is computed on shares when written; pass `cache-openings` then gives the
//! attention's cache products the mask, so that they open the active (token, group)
//! pairs only and a row when its group is next active (the merged KV refill,
//! `comet_runtime::protocols::cache_masked`; pass `head-mask-rounds` keeps that from
//! adding rounds). The scaling and softmax between the two cache products still run on
//! every head (docs/sparsity.md, "Left to do").
//!
//! The attention units follow the plan's sparse FFNs in `SparsityOptions::ffns` (unit
//! `first + k` for attention `k`, its `block_permute`s' permutation and its
//! `block_matmul`'s `ffn`), so the cost model, the runtime's active counts and the
//! leakage report treat a head mask as one more block mask of `G` bits per token. The
//! predictor weights `sparsity.heads{k}.w` and `sparsity.heads{k}.c` are server weights
//! derived from a head predictor file (`comet calibrate --heads --out FILE`).

use super::builder::Builder;
use super::sparsify::declare_weight;
use comet_ir::heads::{Attention, find_attentions};
use comet_ir::sparse::head_predictor_weights;
use comet_ir::{
    HeadSparsity, NodeId, Op, Program, Scope, SparseAttentionInfo, SparseFfnInfo, SparsityOptions,
};

/// Why the pass cannot make the program head-sparse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--sparsity heads: {0}")]
pub struct HeadSparsifyError(pub String);

/// The options of `--sparsity heads[:recall=T,density=D]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadSparsityOptions {
    /// The group recall the predictor is calibrated for (recorded in the plan).
    pub recall: f64,
    /// Expected fraction of active groups per token (one value, or one per attention),
    /// for estimates; empty: every group active.
    pub density: Vec<f64>,
}

/// Runs the pass (after `sparsify`, whose units come first).
///
/// # Errors
/// If the model has no attention the pass recognises, or the options do not fit it.
pub fn run(p: &mut Program, opts: &HeadSparsityOptions) -> Result<(), HeadSparsifyError> {
    if p.options.comparison != comet_ir::Comparison::Fss {
        return Err(HeadSparsifyError(
            "head-sparse attention needs `--comparison fss` (the head mask is opened from \
             arithmetic bit shares)"
                .into(),
        ));
    }
    let atts = find_attentions(p);
    if atts.is_empty() {
        return Err(HeadSparsifyError(format!(
            "model `{}` has no attention written with the library `attention(...)` block \
             (its projections, head split and merge): nothing to make head-sparse",
            p.info.name
        )));
    }
    let density = match opts.density.as_slice() {
        [] => vec![1.0; atts.len()],
        [one] => vec![*one; atts.len()],
        many if many.len() == atts.len() => many.to_vec(),
        many => {
            return Err(HeadSparsifyError(format!(
                "density= gives {} values for {} attentions",
                many.len(),
                atts.len()
            )));
        }
    };
    let mut s = p.options.sparsity.take().unwrap_or(SparsityOptions {
        block: 0,
        rank: 0,
        recall: opts.recall,
        density: Vec::new(),
        ffns: Vec::new(),
        heads: None,
        input: comet_ir::ffn::PredictorInput::Ffn,
    });
    let first = s.ffns.len() as u32;
    let mut infos = Vec::new();
    for (k, a) in atts.iter().enumerate() {
        let unit = first + k as u32;
        sparsify_attention(p, a, k, unit);
        s.ffns.push(SparseFfnInfo {
            layer: a.layer,
            ff: a.heads * a.hd,
            blocks: a.kv_heads,
            d: a.d,
        });
        infos.push(SparseAttentionInfo {
            layer: a.layer,
            heads: a.heads,
            kv_heads: a.kv_heads,
            hd: a.hd,
            d: a.d,
        });
    }
    s.density.resize(first as usize, 1.0);
    s.density.extend(density);
    s.heads = Some(HeadSparsity {
        first,
        recall: opts.recall,
        attentions: infos,
    });
    p.graph.remove_dead();
    p.options.sparsity = Some(s);
    Ok(())
}

/// Rebuilds one attention head-sparse (module docs).
fn sparsify_attention(p: &mut Program, a: &Attention, k: usize, unit: u32) {
    let scope = p.graph.node(a.merged).scope.clone();
    let mask = predictor(p, a, k, unit, &scope);
    let group = a.groups() * a.hd;
    let mut rewired = Vec::new();
    let out = {
        let mut b = Builder::new(p, scope);
        for (i, (&mm, &top)) in a.matmuls.iter().zip(&a.projections).enumerate() {
            let block = if i == 0 { group } else { a.hd };
            let permute = |b: &mut Builder, x: NodeId, axis: u32| {
                b.emit(
                    Op::BlockPermute {
                        perm: unit,
                        block,
                        axis,
                    },
                    &[x],
                )
            };
            let xs = b.program().graph.operands(mm);
            let w = permute(&mut b, xs[1], 1);
            let mut y = b.emit(Op::MatMul, &[xs[0], w]);
            if top != mm {
                let ops = b.program().graph.operands(top);
                let bias = if ops[0] == mm { ops[1] } else { ops[0] };
                let bias = permute(&mut b, bias, 0);
                y = b.add(y, bias);
            }
            rewired.push((a.splits[i], y));
        }
        let w_o = b.program().graph.operands(a.out_matmul)[1];
        let w_o = b.emit(
            Op::BlockPermute {
                perm: unit,
                block: group,
                axis: 0,
            },
            &[w_o],
        );
        b.emit(
            Op::BlockMatMul {
                ffn: unit,
                block: group,
            },
            &[a.merged, w_o, mask],
        )
    };
    for (split, y) in rewired {
        p.graph.set_operands(split, &[y]);
    }
    p.graph.replace_uses(a.out_matmul, out);
}

/// The head predictor of attention `k` on its input: the public mask `[seq, G]`.
///
/// The bias rides in the product, `[x, 1] · π([P; c])`, so that the comparison reads the
/// product at its doubled scale with no truncation (`insert-conversions` keeps a product
/// read by comparisons only untruncated): the mask is open one round after the
/// projections' products, when the queries' truncation is done, and the cache products
/// that read it wait for nothing.
fn predictor(p: &mut Program, a: &Attention, k: usize, unit: u32, scope: &Scope) -> NodeId {
    let [wn, cn] = head_predictor_weights(k);
    let w = declare_weight(p, &wn, vec![a.d, a.kv_heads], scope);
    let c = declare_weight(p, &cn, vec![a.kv_heads], scope);
    let scope = Scope {
        origin: "predictor".into(),
        ..scope.clone()
    };
    let mut b = Builder::new(p, scope);
    // c as a row [1, G]: 0·(P's first row) + c
    let wt = b.emit(Op::Transpose, &[w]);
    let first = b.emit(Op::Slice { start: 0, end: 1 }, &[wt]);
    let first = b.emit(Op::Transpose, &[first]);
    let zeros = b.emit(Op::MulConst { value: 0.0 }, &[first]);
    let c_row = b.add(zeros, c);
    let stacked = b.emit(Op::Concat { axis: 0 }, &[w, c_row]);
    let stacked = b.emit(
        Op::BlockPermute {
            perm: unit,
            block: 1,
            axis: 1,
        },
        &[stacked],
    );
    // [x, 1]
    let sums = b.emit(Op::RowSum, &[a.input]);
    let zeros = b.emit(Op::MulConst { value: 0.0 }, &[sums]);
    let ones = b.emit(Op::AddConst { value: 1.0 }, &[zeros]);
    let x1 = b.emit(Op::Concat { axis: 1 }, &[a.input, ones]);
    let s = b.emit(Op::MatMul, &[x1, stacked]);
    let bits = b.emit(Op::Drelu, &[s]);
    b.emit(Op::Open, &[bits])
}

/// Default target group recall of `--sparsity heads`.
pub const DEFAULT_RECALL: f64 = 0.95;

/// Reads the `heads[:recall=T,density=D]` part of `--sparsity` (`density`: one value, or
/// one per attention separated by `/`, each in [0, 1]; `comet calibrate --heads` prints
/// the realised values).
///
/// # Errors
/// A message naming the key or value that is wrong.
pub fn parse_spec(spec: &str) -> Result<HeadSparsityOptions, String> {
    let (kind, rest) = spec.trim().split_once(':').unwrap_or((spec.trim(), ""));
    if kind != "heads" {
        return Err(format!(
            "unknown sparsity `{kind}`: expected `heads[:recall=T,density=D]`"
        ));
    }
    let mut o = HeadSparsityOptions {
        recall: DEFAULT_RECALL,
        density: Vec::new(),
    };
    for pair in rest.split(',').filter(|s| !s.trim().is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not key=value"))?;
        let (key, value) = (key.trim(), value.trim());
        match key {
            "recall" => o.recall = fraction(key, value, false)?,
            "density" => {
                o.density = (value.split('/'))
                    .map(|v| fraction(key, v, true))
                    .collect::<Result<_, _>>()?
            }
            _ => {
                return Err(format!(
                    "unknown key `{key}` of `heads`: expected recall or density"
                ));
            }
        }
    }
    Ok(o)
}

/// A number in (0, 1], or [0, 1] with `zero`.
fn fraction(key: &str, v: &str, zero: bool) -> Result<f64, String> {
    let x: f64 = v
        .trim()
        .parse()
        .map_err(|_| format!("{key}={v}: expected a number"))?;
    let ok = x <= 1.0 && (x > 0.0 || (zero && x == 0.0));
    if !ok {
        let range = if zero { "[0, 1]" } else { "(0, 1]" };
        return Err(format!("{key}={v}: expected a number in {range}"));
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_keys_and_errors() {
        let o = parse_spec("heads:recall=0.9,density=0.5/0.75").unwrap();
        assert_eq!(o.recall, 0.9);
        assert_eq!(o.density, vec![0.5, 0.75]);
        assert_eq!(parse_spec("heads").unwrap().recall, DEFAULT_RECALL);
        let e = parse_spec("heads:recall=0").unwrap_err();
        assert!(e.contains("recall=0: expected a number in (0, 1]"), "{e}");
        let e = parse_spec("heads:block=4").unwrap_err();
        assert!(e.contains("unknown key `block`"), "{e}");
        let e = parse_spec("head").unwrap_err();
        assert!(e.contains("unknown sparsity `head`"), "{e}");
    }
}
