//! The f64 plaintext interpreter: the reference semantics of every [`Op`].
//!
//! [`eval`] runs a [`Program`] on real numbers, in the graph's topological order, with no
//! secrets, no fixed point and no approximation: the two-party runtime must agree with it
//! (up to fixed-point error) and the approximation passes measure themselves against it
//! ([`eval_with_trace`] keeps every node's value for that).
//!
//! It runs a program in either [`Stage`](comet_ir::Stage). A value is the real number its
//! fixed-point encoding stands for, so scales do not exist here: `trunc`, `share` and
//! `reveal` are identities, bits are 0.0/1.0 (`drelu` gives 1.0 for `x ≥ 0`, `select` is
//! `b·x`), ids and positions are integral f64s, `one_hot` gives 0/1 rows. Composite
//! functions use their exact forms ([`exact`]; `gelu` is the erf form), and `causal_mask`
//! adds [`MASK_OFFSET`], large enough that softmax gives hidden keys exactly 0.
//!
//! Every result is checked against the node's declared shape at the call's [`DimEnv`], so
//! a wrong cache length or a mis-shaped input is reported where it enters, never as a
//! wrong number later. Bad inputs, weights and cache contents are errors, not panics.
//!
//! A [`Hook`] ([`eval_with_hook`]) sees every node's value as soon as it is computed and
//! may replace it before any user reads it: the sparsity tools capture an FFN's input and
//! hidden activations with it, and zero the neuron blocks a predictor skips.
//!
//! The interpreter is a backend of the execution core ([`crate::exec`]): the walk, the
//! checks of inputs, weights and cache reads, the errors ([`PlainError`]) and the KV cache
//! ([`Cache`], `[h, past, k]` per slot) are the core's; `cache_write`s take effect when the
//! call succeeds, so a failed call leaves the cache as it was. This module keeps the ops'
//! semantics on real numbers.

mod linalg;
mod nonlinear;
mod position;
#[cfg(test)]
mod tests;

pub use crate::exec::{At, Hook};
pub use comet_ir::erf::{erf, erfc};
pub use nonlinear::{exact, gelu_tanh};
pub use position::MASK_OFFSET;

use crate::exec::{self, Backend, Call, OpNode, Value};
use crate::movement;
use comet_ir::{DimEnv, Node, Op, Program};
use ndarray::{ArrayD, ArrayViewD};
use std::collections::HashMap;

/// The KV cache of the plaintext interpreter: one `[h, positions, k]` tensor of reals per
/// slot, with validity ([`exec::Cache`]).
pub type Cache = exec::Cache<f64>;

/// Why a program could not be evaluated (the execution core's [`exec::ExecError`]).
pub type PlainError = exec::ExecError;

/// The outputs of a call and the value of every node (for sinks, their operand's).
pub type Evaluation = exec::Evaluation<f64>;

/// What an op function returns: its value, or what is wrong with its operands.
type OpResult = Result<ArrayD<f64>, String>;

/// Evaluates `program` at `env` and returns its outputs by name.
///
/// `inputs` are keyed by input name and must have their declared shapes at `env`; token
/// ids are integral f64s. `weights` are keyed by the model's qualified weight names
/// ([`WeightInfo::name`](comet_ir::WeightInfo), as [`crate::weights`] returns them).
/// `cache` holds `[h, past, k]` per slot from earlier calls (it is not read when
/// `env.past` is 0, which starts a new sequence) and receives `[h, past + seq, k]`.
pub fn eval(
    program: &Program,
    inputs: &HashMap<String, ArrayD<f64>>,
    weights: &HashMap<String, ArrayD<f64>>,
    env: DimEnv,
    cache: &mut Cache,
) -> Result<HashMap<String, ArrayD<f64>>, PlainError> {
    let call = Call::new(program, inputs, weights, env);
    exec::evaluate(&F64, call, cache, None).map(|e| e.outputs)
}

/// Like [`eval`], and also returns every node's value, to measure approximations on real
/// activations. It keeps every value alive (weights included), so it needs more memory.
pub fn eval_with_trace(
    program: &Program,
    inputs: &HashMap<String, ArrayD<f64>>,
    weights: &HashMap<String, ArrayD<f64>>,
    env: DimEnv,
    cache: &mut Cache,
) -> Result<Evaluation, PlainError> {
    let call = Call::new(program, inputs, weights, env).traced();
    exec::evaluate(&F64, call, cache, None)
}

/// Like [`eval`], calling `hook` after every node (see [`Hook`]).
pub fn eval_with_hook(
    program: &Program,
    inputs: &HashMap<String, ArrayD<f64>>,
    weights: &HashMap<String, ArrayD<f64>>,
    env: DimEnv,
    cache: &mut Cache,
    hook: &mut dyn Hook,
) -> Result<HashMap<String, ArrayD<f64>>, PlainError> {
    let call = Call::new(program, inputs, weights, env);
    exec::evaluate(&F64, call, cache, Some(hook)).map(|e| e.outputs)
}

/// The reference semantics as a backend of the execution core: inputs, weights and
/// cache contents are used as they are, scales and domains do not exist.
struct F64;

impl Backend for F64 {
    type Elem = f64;

    fn input<'a>(&self, _: &Node, x: &'a ArrayD<f64>) -> Result<Value<'a, f64>, String> {
        Ok(Value::Borrowed(x))
    }

    fn weight<'a>(&self, _: &Node, w: &'a ArrayD<f64>) -> Value<'a, f64> {
        Value::Borrowed(w)
    }

    fn positions(&self, offset: i64, env: DimEnv) -> ArrayD<f64> {
        position::positions(offset, env)
    }

    fn passes_through(&self, op: &Op) -> bool {
        is_identity(op)
    }

    fn op(&self, node: &OpNode<'_>, x: &[ArrayViewD<'_, f64>]) -> Result<ArrayD<f64>, PlainError> {
        apply(&node.node.op, x, node.env).map_err(|m| node.fail(m))
    }

    fn output(&self, _: &Node, x: &ArrayD<f64>) -> ArrayD<f64> {
        x.clone()
    }
}

/// Ops whose value is their operand's: on real numbers scales and domains do not exist.
fn is_identity(op: &Op) -> bool {
    matches!(
        op,
        Op::Trunc { .. }
            | Op::FaithfulTrunc { .. }
            | Op::StochasticTrunc { .. }
            | Op::Share { .. }
            | Op::Reveal { .. }
            | Op::Output { .. }
            | Op::CacheWrite { .. }
    )
}

/// The value of a non-source, non-identity op; `x` has as many operands as its arity.
fn apply(op: &Op, x: &[ArrayViewD<f64>], env: DimEnv) -> OpResult {
    match op {
        Op::Embed => movement::embed(&x[0], &x[1]),
        Op::MatMul => linalg::matmul(&x[0], &x[1]),
        Op::CacheMatMul {
            transpose, groups, ..
        } => linalg::matmul(
            &x[0],
            &movement::cache_view(&x[1], *transpose, *groups)?.view(),
        ),
        Op::Transpose => movement::transpose(&x[0]),
        Op::Add => movement::binary("add", &x[0], &x[1], |a, b| a + b),
        Op::Sub => movement::binary("sub", &x[0], &x[1], |a, b| a - b),
        Op::Mul => movement::binary("mul", &x[0], &x[1], |a, b| a * b),
        // a mux with bit 0 gives exactly 0, whatever the other input (even ±inf)
        Op::B2A => Ok(x[0].to_owned()),
        Op::Between => movement::binary("between", &x[0], &x[1], |a, b| a - b),
        Op::Select => movement::binary(
            "select",
            &x[0],
            &x[1],
            |b, v| if b != 0.0 { b * v } else { 0.0 },
        ),
        // y·[x ≥ 0], y = x for one operand (ReLU)
        Op::SignSelect => movement::binary("sign_select", &x[0], &x[x.len() - 1], |a, v| {
            if a >= 0.0 { v } else { 0.0 }
        }),
        Op::Neg => Ok(x[0].mapv(|v| -v)),
        Op::MulConst { value } => Ok(x[0].mapv(|v| v * value)),
        Op::AddConst { value } => Ok(x[0].mapv(|v| v + value)),
        Op::Square => Ok(x[0].mapv(|v| v * v)),
        Op::Drelu => Ok(x[0].mapv(|v| if v >= 0.0 { 1.0 } else { 0.0 })),
        Op::Compare { thresholds } => Ok(movement::compare(&x[0], thresholds, |v, t| {
            f64::from(u8::from(v >= t))
        })),
        Op::Pick { index } => movement::pick(&x[0], *index),
        Op::Lut { func, bits, frac } => Ok(x[0].mapv(|v| {
            let i = comet_ir::table::index_f64(v, *frac, *bits);
            comet_ir::table::value(*func, i, *bits, *frac)
        })),
        Op::Unary { func } => Ok(x[0].mapv(|v| exact(*func, v))),
        Op::Slice { start, end } => movement::slice(&x[0], *start, *end),
        Op::Row { index } => movement::row(&x[0], *index),
        Op::Concat { axis } => movement::concat(x, *axis),
        Op::SplitHeads { heads } => movement::split_heads(&x[0], *heads),
        Op::MergeHeads => movement::merge_heads(&x[0]),
        Op::RepeatKv { groups } => movement::repeat_kv(&x[0], *groups),
        Op::OneHot { depth } => movement::one_hot(&x[0], *depth),
        Op::Rope { base, style } => position::rope(&x[0], *base, *style, env.past),
        Op::CausalMask => position::causal_mask(&x[0]),
        Op::Softmax => nonlinear::softmax(&x[0]),
        Op::RmsNorm { eps } => nonlinear::rms_norm(&x[0], &x[1], *eps),
        Op::LayerNorm { eps } => nonlinear::layer_norm(&x[0], &x[1], &x[2], *eps),
        Op::RowSum => nonlinear::reduce_row("row_sum", &x[0], |r| r.sum()),
        Op::RowMax => nonlinear::reduce_row("row_max", &x[0], nonlinear::row_max),
        Op::Trunc { .. }
        | Op::FaithfulTrunc { .. }
        | Op::StochasticTrunc { .. }
        | Op::Share { .. }
        | Op::Reveal { .. }
        | Op::Output { .. }
        | Op::CacheWrite { .. }
        | Op::Open => Ok(x[0].to_owned()),
        Op::BlockPermute { block, axis, .. } => movement::pad_blocks(&x[0], *block, *axis),
        Op::ApplyMask { block, .. } => movement::apply_mask(&x[0], &x[1], *block),
        Op::BlockMatMul { block, .. } => {
            linalg::matmul(&movement::apply_mask(&x[0], &x[2], *block)?.view(), &x[1])
        }
        Op::Input { .. } | Op::Weight { .. } | Op::Positions { .. } | Op::CacheRead { .. } => {
            Err(format!(
                "`{}` is a source: it has no operands to compute from",
                op.name()
            ))
        }
    }
}
