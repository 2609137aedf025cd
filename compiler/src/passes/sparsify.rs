//! Pass `sparsify`: block-sparse FFNs with an activation predictor (COMET.md §1–3,
//! docs/sparsity.md).
//!
//! For every FFN ([`comet_ir::ffn`]) `out = act(x·W_act [+ b]) [⊙ (x·W_mul [+ b])] · W_down`
//! with `ff` neurons in blocks of `B` (`n = ⌈ff/B⌉` blocks, padded to `n·B`), it builds:
//!
//! ```text
//! score  = x · π(P) + π(c)             P [d, n], c [n]: the folded predictor (server's)
//! mask   = open(drelu(score))          public [seq, n]: block b of token t is active
//! pre    = apply_mask(x · π(W_act), mask) [+ π(b_act)]               input=attention
//!        | apply_mask(x · π(W_act) [+ π(b_act)], mask)               input=ffn
//! hidden = act(pre) [⊙ (apply_mask(x · π(W_mul), mask) [+ π(b_mul)])]   (input=ffn: no
//!                                                                      mask on the gate)
//! out    = block_matmul(hidden, π(W_down), mask)
//! ```
//!
//! where `π` (`block_permute`, one permutation per FFN) pads the neuron axis to whole
//! blocks and permutes the blocks by a permutation neither party knows, so the opened mask
//! is in permuted order. By default (`input=ffn`) the predictor reads the FFN's own input
//! `x`: its product runs in the round of the up projection, its comparison and the mask's
//! opening add two rounds per FFN before the activation (the price of a weight-derived
//! predictor, which approximates `x·W_act` for exactly this `x`). With `input=attention`
//! it reads the layer input after the pre-attention norm (the value attention's
//! projections read, [`comet_ir::ffn::predictor_input`]): its product, comparison and
//! opening run in rounds attention has anyway, so the FFN adds no round (the predictor
//! must be trained for that input: `comet calibrate --train`).
//!
//! The predictor weights `sparsity.ffn{k}.w` and `sparsity.ffn{k}.c` are declared as server
//! weights; the runtime derives them from a predictor file (`comet calibrate`).

use super::builder::Builder;
use comet_ir::ffn::{Ffn, PredictorInput, find_ffns, predictor_input};
use comet_ir::sparse::predictor_weights;
use comet_ir::{
    Dim, Domain, Elem, NodeId, Op, Party, Program, Scope, SparseFfnInfo, SparsityOptions,
    ValueType, WeightInfo,
};

/// Why the pass cannot sparsify the program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--sparsity: {0}")]
pub struct SparsifyError(pub String);

/// Runs the pass with `opts` (its `density` may be empty: every block counted active).
///
/// # Errors
/// If the model has no FFN, or the block size does not fit one.
pub fn run(p: &mut Program, opts: &SparsityOptions) -> Result<(), SparsifyError> {
    if p.options.comparison != comet_ir::Comparison::Fss {
        return Err(SparsifyError(
            "sparse FFNs need `--comparison fss` (the block mask is opened from arithmetic \
             bit shares)"
                .into(),
        ));
    }
    let ffns = find_ffns(p);
    if ffns.is_empty() {
        return Err(SparsifyError(format!(
            "model `{}` has no FFN (an activation relu/gelu/silu between two projections)",
            p.info.name
        )));
    }
    let inputs = (ffns.iter())
        .map(|f| predictor_input(p, f, opts.input))
        .collect::<Result<Vec<_>, _>>()
        .map_err(SparsifyError)?;
    let mut infos = Vec::new();
    for (k, (f, &input)) in ffns.iter().zip(&inputs).enumerate() {
        if opts.block == 0 || opts.block > f.ff {
            return Err(SparsifyError(format!(
                "block={} must be between 1 and the FFN width {} ({})",
                opts.block,
                f.ff,
                f.label()
            )));
        }
        let early = opts.input == PredictorInput::Attention;
        infos.push(sparsify_ffn(p, f, input, k as u32, opts.block, early));
    }
    let density = match opts.density.as_slice() {
        [] => vec![1.0; infos.len()],
        [one] => vec![*one; infos.len()],
        many if many.len() == infos.len() => many.to_vec(),
        many => {
            return Err(SparsifyError(format!(
                "density= gives {} values for {} FFNs",
                many.len(),
                infos.len()
            )));
        }
    };
    p.graph.remove_dead();
    p.options.sparsity = Some(SparsityOptions {
        density,
        ffns: infos,
        ..opts.clone()
    });
    Ok(())
}

/// Rebuilds one FFN block-sparse (module docs), its predictor reading `input`. With
/// `early` (the mask is ready before the FFN's input: a predictor beside attention) the
/// mask applies to the up and gate products themselves, so that their truncations and
/// bias adds run on the active blocks only; else (the mask comes 2 rounds after the FFN's
/// input) it applies to the pre-activation, after the up projection's truncation and
/// bias, which then stay dense but add no wait for the mask.
fn sparsify_ffn(
    p: &mut Program,
    f: &Ffn,
    input: NodeId,
    k: u32,
    block: u64,
    early: bool,
) -> SparseFfnInfo {
    let blocks = f.ff.div_ceil(block);
    let scope = p.graph.node(f.activation).scope.clone();
    let mask = predictor(p, f, input, k, blocks, &scope);
    let mut b = Builder::new(p, scope);
    let permute = |b: &mut Builder, w: NodeId, axis: u32| block_permute(b, w, k, block, axis);
    let masked = |b: &mut Builder, y: NodeId| b.emit(Op::ApplyMask { ffn: k, block }, &[y, mask]);
    let dense = |_: &mut Builder, y: NodeId| y;
    let on_product: &dyn Fn(&mut Builder, NodeId) -> NodeId = if early { &masked } else { &dense };
    let pre = projection(&mut b, f.act_matmul, f.pre_activation, &permute, on_product);
    let pre = if early { pre } else { masked(&mut b, pre) };
    let func = f.func;
    let mut hidden = b.emit(Op::Unary { func }, &[pre]);
    if let (Some(mm), Some(prod)) = (f.mul_matmul, f.product) {
        let other = other_operand(b.program(), prod, f.activation);
        let gate = projection(&mut b, mm, other, &permute, on_product);
        hidden = b.mul(hidden, gate);
    }
    let w_down = b.program().graph.operands(f.down_matmul)[1];
    let w_down = permute(&mut b, w_down, 0);
    let out = b.emit(Op::BlockMatMul { ffn: k, block }, &[hidden, w_down, mask]);
    p.graph.replace_uses(f.down_matmul, out);
    SparseFfnInfo {
        layer: f.layer,
        ff: f.ff,
        blocks,
        d: f.d,
    }
}

/// `on_product(x · π(W)) [+ π(b)]` for the projection `matmul` and its result `top` (the
/// matmul, or the bias add after it). When `on_product` applies the mask, the product's
/// truncation (`insert-conversions` puts it after the `apply_mask`) and the bias add run
/// in the masked region, on the active blocks only.
fn projection(
    b: &mut Builder,
    matmul: NodeId,
    top: NodeId,
    permute: &dyn Fn(&mut Builder, NodeId, u32) -> NodeId,
    on_product: &dyn Fn(&mut Builder, NodeId) -> NodeId,
) -> NodeId {
    let xs = b.program().graph.operands(matmul);
    let w = permute(b, xs[1], 1);
    let y = b.emit(Op::MatMul, &[xs[0], w]);
    let y = on_product(b, y);
    if top == matmul {
        return y;
    }
    let bias = other_operand(b.program(), top, matmul);
    let bias = permute(b, bias, 0);
    b.add(y, bias)
}

/// `block_permute` of `x` by FFN `perm`'s permutation, in blocks of `block` along `axis`.
fn block_permute(b: &mut Builder, x: NodeId, perm: u32, block: u64, axis: u32) -> NodeId {
    b.emit(Op::BlockPermute { perm, block, axis }, &[x])
}

/// The operand of binary node `node` that is not `one`.
fn other_operand(p: &Program, node: NodeId, one: NodeId) -> NodeId {
    let xs = p.graph.operands(node);
    if xs[0] == one { xs[1] } else { xs[0] }
}

/// The predictor of FFN `k` on `input` (`[seq, d]`): the public mask `[seq, blocks]`.
fn predictor(
    p: &mut Program,
    f: &Ffn,
    input: NodeId,
    k: u32,
    blocks: u64,
    scope: &Scope,
) -> NodeId {
    let [wn, cn] = predictor_weights(k as usize);
    let w = declare_weight(p, &wn, vec![f.d, blocks], scope);
    let c = declare_weight(p, &cn, vec![blocks], scope);
    let scope = Scope {
        origin: "predictor".into(),
        ..scope.clone()
    };
    let mut b = Builder::new(p, scope);
    let w = block_permute(&mut b, w, k, 1, 1);
    let c = block_permute(&mut b, c, k, 1, 0);
    let s = b.emit(Op::MatMul, &[input, w]);
    let s = b.add(s, c);
    let bits = b.emit(Op::Drelu, &[s]);
    b.emit(Op::Open, &[bits])
}

/// Adds a server weight `name` of `shape` to the declarations and the graph (a
/// predictor's; also the head predictor's, `head_sparsify`).
pub(crate) fn declare_weight(
    p: &mut Program,
    name: &str,
    shape: Vec<u64>,
    scope: &Scope,
) -> NodeId {
    p.info.weights.push(WeightInfo {
        name: name.into(),
        tensor: name.into(),
        shape: shape.clone(),
        transposed: false,
        party: Party::Server,
    });
    let ty = ValueType::new(
        Elem::Fixed {
            scale: p.info.format.frac,
        },
        shape.iter().map(|&n| Dim::constant(n as i64)).collect(),
        Domain::Private(Party::Server),
    );
    let scope = Scope {
        origin: "predictor".into(),
        ..scope.clone()
    };
    p.graph
        .add(Op::Weight { name: name.into() }, &[], ty, scope)
}

/// Defaults of `--sparsity ffn`: blocks of 16 neurons, rank 32, recall 0.95.
pub const DEFAULT_BLOCK: u64 = 16;
/// See [`DEFAULT_BLOCK`].
pub const DEFAULT_RANK: u64 = 32;
/// See [`DEFAULT_BLOCK`].
pub const DEFAULT_RECALL: f64 = 0.95;

/// Reads `--sparsity`: `off`, or `ffn` with optional `:key=value,…` for the keys `block`
/// (neurons per block), `rank` (predictor rank), `recall` (target block recall, in (0, 1])
/// `density` (expected fraction of active blocks per token, in [0, 1], one value or
/// one per FFN separated by `/`, for estimates; `comet calibrate` prints it) and `input`
/// (what the predictor reads: `ffn`, the default, or `attention`, the layer input after
/// the pre-attention norm, for trained predictors: 0 added rounds).
///
/// # Errors
/// A message naming the key or value that is wrong.
pub fn parse_spec(spec: &str) -> Result<Option<SparsityOptions>, String> {
    let spec = spec.trim();
    if spec == "off" {
        return Ok(None);
    }
    let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
    if kind != "ffn" {
        return Err(format!(
            "unknown sparsity `{kind}`: expected `off` or `ffn[:block=B,rank=R,recall=T,density=D,input=ffn|attention]`"
        ));
    }
    let mut o = SparsityOptions {
        block: DEFAULT_BLOCK,
        rank: DEFAULT_RANK,
        recall: DEFAULT_RECALL,
        density: Vec::new(),
        ffns: Vec::new(),
        heads: None,
        input: PredictorInput::Ffn,
    };
    for pair in rest.split(',').filter(|s| !s.trim().is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not key=value"))?;
        let (key, value) = (key.trim(), value.trim());
        match key {
            "block" => o.block = positive(key, value)?,
            "rank" => o.rank = positive(key, value)?,
            "recall" => o.recall = fraction(key, value, false)?,
            "input" => {
                o.input = PredictorInput::from_name(value).ok_or_else(|| {
                    format!("input={value}: expected `ffn` (the FFN's input) or `attention`")
                })?
            }
            "density" => {
                o.density = (value.split('/'))
                    .map(|v| fraction(key, v, true))
                    .collect::<Result<_, _>>()?
            }
            _ => {
                return Err(format!(
                    "unknown key `{key}`: expected block, rank, recall, density or input"
                ));
            }
        }
    }
    Ok(Some(o))
}

fn positive(key: &str, v: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{key}={v}: expected a positive integer"))
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
