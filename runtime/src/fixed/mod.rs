//! The fixed-point plaintext backend: a protocol-stage plan evaluated on ring values.
//!
//! [`eval`] runs a protocol-stage [`Program`] on plaintext elements of Z_2^64 (`u64`,
//! every operation wrapping), computing exactly what the two parties' shares will sum to,
//! so a two-party run must reproduce it bit for bit, up to the ±1 ulp that SecureML's
//! local truncation adds per `trunc` on shares. It is the yardstick of the protocols; the
//! f64 interpreter ([`crate::plain`]) is the yardstick of this one, up to fixed-point
//! rounding at `2^−frac`.
//!
//! A value's node type says how to read its ring elements: `Fixed { scale }` is a two's
//! complement fixed-point number with `scale` fractional bits, `Index` a non-negative
//! integer, `Bit` the integer 0 or 1 (bits are arithmetic 0/1 shares under FSS, so they
//! live in the ring too). Per op:
//! - **sources**: a fixed-point input or weight is encoded (`crate::ring::encode`) at its
//!   declared scale (the plan's `frac`); token ids and positions (`past + offset + i`) are
//!   integers; `cache_read` returns the ring tensor the last call's `cache_write` stored
//!   (zeros `[h, 0, k]` at `past = 0`).
//! - **conversions**: `share` and `reveal` are identities (values are plaintext here);
//!   `output` decodes at the value's scale, so outputs are f64.
//! - **linear**: `add`, `sub`, `neg` wrap; `mul`, `square` and `matmul` (2D, broadcast
//!   `[.., m, k]·[k, n]`, batched, through [`crate::ring::matmul_batched`]) are wrapping
//!   products whose scale is the sum of the operands' (the node's type says so);
//!   `trunc { bits }` shifts the signed value right (the floor; on shares it is the floor
//!   or one more).
//! - **constants**: `mul_const` multiplies by the constant itself when
//!   [`is_integer_constant`](comet_ir::infer::is_integer_constant) (scale unchanged), else
//!   by its encoding at `frac` (scale grows by `frac`); `add_const` adds its encoding at
//!   the operand's scale.
//! - **comparisons**: `drelu` is 1 where the signed value is ≥ 0, else 0; `b2a` turns the
//!   bit into the fixed-point 0 or 1 at `frac` (times `2^frac`); `select(b, x)` is the
//!   wrapping product `b·x` (broadcast), i.e. `x` where `b = 1` and exactly 0 where
//!   `b = 0` whatever `x` holds; `row_sum` wraps; `row_max` is the signed maximum.
//! - **positions**: `one_hot` gives integer 0/1 rows (scale 0); `embed` gathers rows by
//!   public ids; `rope` multiplies by public cos/sin encoded at `frac` (scale grows by
//!   `frac`); `causal_mask` adds [`MASK_OFFSET`] (−2^20 real units) encoded at the scores'
//!   scale to hidden keys.
//! - **data movement** (`slice`, `row`, `concat`, `transpose`, heads, `repeat_kv`) as in
//!   the f64 interpreter, on ring elements.
//!
//! Composite functions (`softmax`, element-wise functions, norms) are errors: the backend
//! runs plans after `expand` and `insert-conversions` only. The backend is one of the
//! execution core's ([`crate::exec`]), which walks the program, checks every result
//! against its node's declared shape, reports bad inputs, weights and cache contents as
//! errors that name the node (never panics) and applies `cache_write`s when the call
//! succeeds; the KV cache ([`Cache`]) is the core's, with validity, and is also each
//! party's in two-party runs. This module keeps the ops' semantics on ring elements.

mod arith;
mod position;
#[cfg(test)]
mod tests;

pub use crate::exec::CacheError;
pub use position::MASK_OFFSET;

use crate::exec::{self, Backend, Call, OpNode, Value};
use crate::movement;
use crate::ring::{Ring, decode, encode};
use comet_ir::{DimEnv, Elem, Node, Op, Program, Stage};
use ndarray::{ArrayD, ArrayViewD};
use std::collections::HashMap;

/// The KV cache of ring values: the fixed-point backend's, and each party's shares in a
/// two-party run ([`exec::Cache`], with validity).
pub type Cache = exec::Cache<Ring>;

/// Why a program could not be evaluated in fixed point (the execution core's
/// [`exec::ExecError`]).
pub type FixedError = exec::ExecError;

/// The outputs of a call, decoded at their scale, and, when traced, every node's ring
/// value; read those with [`decode_value`] and the node's element kind.
pub type Evaluation = exec::Evaluation<Ring>;

/// What an op function returns: its value, or what is wrong with its operands.
type OpResult = Result<ArrayD<Ring>, String>;

/// Evaluates the protocol-stage `program` at `env` in fixed point; outputs are decoded.
///
/// `inputs` are real numbers keyed by input name (token ids as integral f64s), encoded
/// here by their declared element kind; `weights` are real, keyed by qualified weight name
/// (as [`crate::weights::load`] returns them) and encoded at their declared scale. `cache`
/// holds the ring `[h, past, k]` per slot from earlier calls and receives `[h, past + seq, k]`.
pub fn eval(
    program: &Program,
    inputs: &HashMap<String, ArrayD<f64>>,
    weights: &HashMap<String, ArrayD<f64>>,
    env: DimEnv,
    cache: &mut Cache,
) -> Result<HashMap<String, ArrayD<f64>>, FixedError> {
    let call = Call::new(program, inputs, weights, env);
    run(call, cache).map(|e| e.outputs)
}

/// Like [`eval`], and also returns every node's ring value (to find where precision goes).
pub fn eval_with_trace(
    program: &Program,
    inputs: &HashMap<String, ArrayD<f64>>,
    weights: &HashMap<String, ArrayD<f64>>,
    env: DimEnv,
    cache: &mut Cache,
) -> Result<Evaluation, FixedError> {
    let call = Call::new(program, inputs, weights, env).traced();
    run(call, cache)
}

/// The real numbers a ring tensor of element kind `elem` stands for: fixed point decoded
/// at its scale, integers and bits as they are (signed).
pub fn decode_value(elem: Elem, x: &ArrayD<Ring>) -> ArrayD<f64> {
    match elem {
        Elem::Fixed { scale } if scale < 64 => x.mapv(|v| decode(v, scale)),
        _ => x.mapv(|v| v as i64 as f64),
    }
}

/// Checks the program's stage and `frac`, then runs the call on the execution core.
fn run(call: Call<'_>, cache: &mut Cache) -> Result<Evaluation, FixedError> {
    let program = call.program;
    if program.stage != Stage::Protocol {
        let stage = program.stage;
        return Err(FixedError::NotProtocol { stage });
    }
    let frac = program.info.format.frac;
    if frac >= 64 {
        return Err(FixedError::Frac { frac });
    }
    exec::evaluate(&FixedPoint { frac }, call, cache, None)
}

/// Fixed point in Z_2^64 as a backend of the execution core (the op semantics are in
/// the module docs).
struct FixedPoint {
    /// The plan's fractional bits.
    frac: u32,
}

impl Backend for FixedPoint {
    type Elem = Ring;

    fn input<'a>(&self, node: &Node, x: &'a ArrayD<f64>) -> Result<Value<'a, Ring>, String> {
        encode_input(x, node.ty.elem).map(Value::new)
    }

    fn weight<'a>(&self, node: &Node, w: &'a ArrayD<f64>) -> Value<'a, Ring> {
        Value::new(encode_weight(w, node.ty.elem, self.frac))
    }

    fn positions(&self, offset: i64, env: DimEnv) -> ArrayD<Ring> {
        position::positions(offset, env)
    }

    fn passes_through(&self, op: &Op) -> bool {
        matches!(
            op,
            Op::Share { .. } | Op::Reveal { .. } | Op::Output { .. } | Op::CacheWrite { .. }
        )
    }

    fn op(
        &self,
        node: &OpNode<'_>,
        x: &[ArrayViewD<'_, Ring>],
    ) -> Result<ArrayD<Ring>, FixedError> {
        let op = &node.node.op;
        if op.is_composite() {
            let (at, op) = (node.at(), op.name());
            return Err(FixedError::Composite { at, op });
        }
        let scale = node.operand(0).and_then(|n| match n.ty.elem {
            Elem::Fixed { scale } => Some(scale),
            _ => None,
        });
        let ctx = OpCtx {
            env: node.env,
            frac: self.frac,
            scale,
        };
        apply(op, x, ctx).map_err(|m| node.fail(m))
    }

    fn output(&self, node: &Node, x: &ArrayD<Ring>) -> ArrayD<f64> {
        decode_value(node.ty.elem, x)
    }
}

/// A weight's encoding at its declared scale (the plan's `frac` if it has none that fits).
pub(crate) fn encode_weight(w: &ArrayD<f64>, elem: Elem, frac: u32) -> ArrayD<Ring> {
    let scale = match elem {
        Elem::Fixed { scale } if scale < 64 => scale,
        _ => frac,
    };
    crate::ring::encode_tensor(w, scale)
}

/// An input as ring elements: fixed point encoded at its scale, ids and bits as integers.
fn encode_input(x: &ArrayD<f64>, elem: Elem) -> OpResult {
    let bad = x.iter().find(|v| !v.is_finite());
    if let Some(v) = bad {
        return Err(format!("holds {v}, which has no fixed-point encoding"));
    }
    match elem {
        Elem::Fixed { scale } if scale < 64 => Ok(x.mapv(|v| encode(v, scale))),
        Elem::Fixed { scale } => Err(format!("its scale {scale} does not fit the ring")),
        Elem::Index | Elem::Bit => {
            let limit = if elem == Elem::Bit {
                2.0
            } else {
                2f64.powi(53)
            };
            match x
                .iter()
                .find(|v| v.fract() != 0.0 || **v < 0.0 || **v >= limit)
            {
                Some(v) => Err(format!(
                    "{v} is not a valid {elem} (a non-negative integer)"
                )),
                None => Ok(x.mapv(|v| v as Ring)),
            }
        }
    }
}

/// What an op needs besides its operands.
#[derive(Clone, Copy)]
struct OpCtx {
    env: DimEnv,
    /// The plan's fractional bits.
    frac: u32,
    /// The first operand's scale, when it is fixed point.
    scale: Option<u32>,
}

impl OpCtx {
    fn scale(self, what: &str) -> Result<u32, String> {
        match self.scale {
            Some(s) if s < 64 => Ok(s),
            Some(s) => Err(format!("`{what}`: scale {s} does not fit the ring")),
            None => Err(format!("`{what}` needs a fixed-point operand")),
        }
    }
}

/// The value of a computed op; `x` has as many operands as its arity.
fn apply(op: &Op, x: &[ArrayViewD<Ring>], ctx: OpCtx) -> OpResult {
    match op {
        Op::Embed => movement::embed(&x[0], &x[1]),
        Op::MatMul => arith::matmul(&x[0], &x[1]),
        Op::CacheMatMul {
            transpose, groups, ..
        } => arith::matmul(
            &x[0],
            &movement::cache_view(&x[1], *transpose, *groups)?.view(),
        ),
        Op::Transpose => movement::transpose(&x[0]),
        Op::Add => movement::binary("add", &x[0], &x[1], Ring::wrapping_add),
        Op::Sub => movement::binary("sub", &x[0], &x[1], Ring::wrapping_sub),
        Op::Mul => movement::binary("mul", &x[0], &x[1], Ring::wrapping_mul),
        Op::Square => Ok(x[0].mapv(|v| v.wrapping_mul(v))),
        Op::Neg => Ok(x[0].mapv(Ring::wrapping_neg)),
        Op::MulConst { value } => Ok(arith::mul_const(&x[0], *value, ctx.frac)),
        Op::AddConst { value } => Ok(arith::add_const(&x[0], *value, ctx.scale("add_const")?)),
        Op::Trunc { bits } | Op::FaithfulTrunc { bits } | Op::StochasticTrunc { bits } => {
            arith::trunc(&x[0], *bits)
        }
        Op::Drelu => Ok(arith::drelu(&x[0])),
        Op::Compare { thresholds } => {
            let ts = arith::thresholds(thresholds, ctx.scale("compare")?);
            Ok(movement::compare(&x[0], &ts, |v, t| {
                Ring::from(v.wrapping_sub(t) as i64 >= 0)
            }))
        }
        Op::Pick { index } => movement::pick(&x[0], *index),
        Op::B2A => Ok(arith::b2a(&x[0], ctx.frac)),
        Op::Lut { func, bits, frac } => {
            arith::lut(&x[0], (*func, *bits, *frac), ctx.scale("lut")?, ctx.frac)
        }
        // [x ≥ lo] − [x ≥ hi]: 0 or 1 since the second implies the first
        Op::Between => movement::binary("between", &x[0], &x[1], Ring::wrapping_sub),
        Op::Select => arith::select(&x[0], &x[1]),
        Op::SignSelect => arith::sign_select(&x[0], &x[x.len() - 1]),
        Op::RowSum => arith::reduce_row("row_sum", &x[0], 0, Ring::wrapping_add),
        Op::RowMax => arith::reduce_row("row_max", &x[0], i64::MIN as Ring, arith::signed_max),
        Op::Slice { start, end } => movement::slice(&x[0], *start, *end),
        Op::Row { index } => movement::row(&x[0], *index),
        Op::Concat { axis } => movement::concat(x, *axis),
        Op::SplitHeads { heads } => movement::split_heads(&x[0], *heads),
        Op::MergeHeads => movement::merge_heads(&x[0]),
        Op::RepeatKv { groups } => movement::repeat_kv(&x[0], *groups),
        Op::OneHot { depth } => movement::one_hot(&x[0], *depth),
        Op::Rope { base, style } => position::rope(&x[0], *base, *style, ctx.env.past, ctx.frac),
        Op::CausalMask => position::causal_mask(&x[0], ctx.scale("causal_mask")?),
        Op::Share { .. }
        | Op::Reveal { .. }
        | Op::Output { .. }
        | Op::CacheWrite { .. }
        | Op::Open => Ok(x[0].to_owned()),
        Op::BlockPermute { block, axis, .. } => movement::pad_blocks(&x[0], *block, *axis),
        Op::ApplyMask { block, .. } => movement::apply_mask(&x[0], &x[1], *block),
        Op::BlockMatMul { block, .. } => {
            arith::matmul(&movement::apply_mask(&x[0], &x[2], *block)?.view(), &x[1])
        }
        Op::Unary { .. } | Op::Softmax | Op::LayerNorm { .. } | Op::RmsNorm { .. } => {
            Err(format!("composite `{}` must be expanded first", op.name()))
        }
        Op::Input { .. } | Op::Weight { .. } | Op::Positions { .. } | Op::CacheRead { .. } => {
            Err(format!(
                "`{}` is a source: it has no operands to compute from",
                op.name()
            ))
        }
    }
}

/// For the two-party interpreter ([`crate::interp`]): the value of a computed op on ring
/// tensors. It runs the same functions as [`eval`], on plaintext at a value's owner, and on
/// shares for the ops that are linear in their shared operands (data movement, sums,
/// public products, rope, `row_sum`).
pub(crate) fn apply_op(
    op: &Op,
    x: &[ArrayViewD<Ring>],
    env: DimEnv,
    frac: u32,
    scale: Option<u32>,
) -> Result<ArrayD<Ring>, String> {
    apply(op, x, OpCtx { env, frac, scale })
}

/// For the two-party interpreter: an input's ring encoding, as [`eval`] encodes it.
pub(crate) fn encode_source(x: &ArrayD<f64>, elem: Elem) -> Result<ArrayD<Ring>, String> {
    encode_input(x, elem)
}

/// For the two-party interpreter: the public position ids of `positions { offset }`.
pub(crate) fn position_ids(offset: i64, env: DimEnv) -> ArrayD<Ring> {
    position::positions(offset, env)
}
