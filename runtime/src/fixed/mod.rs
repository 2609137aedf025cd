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
//! runs plans after `expand` and `insert-conversions` only. Every result is checked against
//! its node's declared shape; bad inputs, weights and cache contents are errors that name
//! the node, never panics. `cache_write`s take effect when the call succeeds.

mod arith;
mod cache;
mod error;
mod position;
#[cfg(test)]
mod tests;

pub use cache::{Cache, CacheError};
pub use error::FixedError;
pub use position::MASK_OFFSET;

use crate::movement;
use crate::plain::At;
use crate::ring::{Ring, decode, encode};
use comet_ir::{DimEnv, Elem, Node, NodeId, Op, Program, Stage};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use std::collections::HashMap;
use std::rc::Rc;

/// What an op function returns: its value, or what is wrong with its operands.
type OpResult = Result<ArrayD<Ring>, String>;

/// The outputs of a call and, when traced, every node's value.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// Outputs by name, decoded at their scale.
    pub outputs: HashMap<String, ArrayD<f64>>,
    /// Every node's ring value (empty unless traced); read it with [`decode_value`] and
    /// the node's element kind.
    pub values: HashMap<NodeId, ArrayD<Ring>>,
}

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
    run(program, inputs, weights, env, cache, false).map(|e| e.outputs)
}

/// Like [`eval`], and also returns every node's ring value (to find where precision goes).
pub fn eval_with_trace(
    program: &Program,
    inputs: &HashMap<String, ArrayD<f64>>,
    weights: &HashMap<String, ArrayD<f64>>,
    env: DimEnv,
    cache: &mut Cache,
) -> Result<Evaluation, FixedError> {
    run(program, inputs, weights, env, cache, true)
}

/// The real numbers a ring tensor of element kind `elem` stands for: fixed point decoded
/// at its scale, integers and bits as they are (signed).
pub fn decode_value(elem: Elem, x: &ArrayD<Ring>) -> ArrayD<f64> {
    match elem {
        Elem::Fixed { scale } if scale < 64 => x.mapv(|v| decode(v, scale)),
        _ => x.mapv(|v| v as i64 as f64),
    }
}

fn run(
    program: &Program,
    inputs: &HashMap<String, ArrayD<f64>>,
    weights: &HashMap<String, ArrayD<f64>>,
    env: DimEnv,
    cache: &mut Cache,
    trace: bool,
) -> Result<Evaluation, FixedError> {
    if program.stage != Stage::Protocol {
        return Err(FixedError::NotProtocol {
            stage: program.stage,
        });
    }
    let frac = program.info.format.frac;
    if frac >= 64 {
        return Err(FixedError::Frac { frac });
    }
    let sources = Sources {
        inputs,
        weights,
        cache: &*cache,
    };
    let (result, writes) = Run::new(program, sources, env, trace).execute()?;
    for (slot, value) in writes {
        cache.set(slot, value);
    }
    Ok(result)
}

/// A slot and its new contents.
type CacheWrite = (u32, ArrayD<Ring>);

/// What a call reads besides its program.
struct Sources<'a> {
    inputs: &'a HashMap<String, ArrayD<f64>>,
    weights: &'a HashMap<String, ArrayD<f64>>,
    cache: &'a Cache,
}

/// A node's value, shared by the identity ops that pass it on.
type Value = Rc<ArrayD<Ring>>;

/// One call of a program.
struct Run<'a> {
    program: &'a Program,
    sources: Sources<'a>,
    env: DimEnv,
    frac: u32,
    /// Live values, dropped after their last use.
    values: HashMap<NodeId, Value>,
    /// Uses left per live value.
    uses_left: HashMap<NodeId, usize>,
    writes: Vec<CacheWrite>,
    result: Evaluation,
    trace: bool,
}

impl<'a> Run<'a> {
    fn new(program: &'a Program, sources: Sources<'a>, env: DimEnv, trace: bool) -> Self {
        Run {
            program,
            sources,
            env,
            frac: program.info.format.frac,
            values: HashMap::new(),
            uses_left: HashMap::new(),
            writes: Vec::new(),
            result: Evaluation::default(),
            trace,
        }
    }

    fn execute(mut self) -> Result<(Evaluation, Vec<CacheWrite>), FixedError> {
        self.check_input_names()?;
        let order = self
            .program
            .graph
            .topo_order()
            .map_err(|e| FixedError::Cycle(e.0))?;
        for id in order {
            self.step(id)?;
        }
        Ok((self.result, self.writes))
    }

    fn check_input_names(&self) -> Result<(), FixedError> {
        let mut given: Vec<&String> = self.sources.inputs.keys().collect();
        given.sort();
        match given
            .into_iter()
            .find(|n| self.program.info.input(n).is_none())
        {
            None => Ok(()),
            Some(name) => Err(FixedError::UnknownInput {
                name: name.clone(),
                declared: (self.program.info.inputs.iter())
                    .map(|i| format!("`{}`", i.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Computes one node, checks its shape, records sinks and frees dead operands.
    fn step(&mut self, id: NodeId) -> Result<(), FixedError> {
        let node = self.program.graph.node(id);
        let operands = self.program.graph.operands(id);
        let value = self.compute(id, node, &operands)?;
        let expected = self.dims(&node.ty.shape);
        if value.shape() != expected.as_slice() {
            let actual = value.shape().to_vec();
            let at = at_of(id, node);
            return Err(FixedError::Shape {
                at,
                expected,
                actual,
            });
        }
        self.record(id, node, &value);
        for o in &operands {
            self.release(*o);
        }
        let users = self.program.graph.users(id).len();
        if users > 0 {
            self.uses_left.insert(id, users);
            self.values.insert(id, value);
        }
        Ok(())
    }

    fn record(&mut self, id: NodeId, node: &Node, value: &Value) {
        match &node.op {
            Op::Output { name, .. } => {
                let decoded = decode_value(node.ty.elem, value);
                self.result.outputs.insert(name.clone(), decoded);
            }
            Op::CacheWrite { slot } => self.writes.push((*slot, (**value).clone())),
            _ => {}
        }
        if self.trace {
            self.result.values.insert(id, (**value).clone());
        }
    }

    fn release(&mut self, id: NodeId) {
        if let Some(n) = self.uses_left.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.uses_left.remove(&id);
                self.values.remove(&id);
            }
        }
    }

    fn dims(&self, shape: &[comet_ir::Dim]) -> Vec<usize> {
        shape.iter().map(|d| d.eval(self.env) as usize).collect()
    }

    fn compute(&self, id: NodeId, node: &Node, operands: &[NodeId]) -> Result<Value, FixedError> {
        let at = || at_of(id, node);
        let fail = |message: String| FixedError::Op { at: at(), message };
        if !node.op.arity().accepts(operands.len()) {
            let n = operands.len();
            return Err(fail(format!("takes {} operands, got {n}", node.op.arity())));
        }
        let args = (operands.iter())
            .map(|o| self.values.get(o).ok_or(*o))
            .collect::<Result<Vec<&Value>, NodeId>>()
            .map_err(|o| fail(format!("operand {o} has no value (it is a sink)")))?;
        match &node.op {
            Op::Input { name, .. } => self.input(name, node),
            Op::Weight { name } => self.weight(name, node),
            Op::CacheRead { slot } => self.cache_read(*slot, node, at),
            Op::Positions { offset } => Ok(Rc::new(position::positions(*offset, self.env))),
            Op::Share { .. } | Op::Reveal { .. } | Op::Output { .. } | Op::CacheWrite { .. } => {
                Ok(args[0].clone())
            }
            op if op.is_composite() => Err(FixedError::Composite {
                at: at(),
                op: op.name(),
            }),
            op => {
                let scale = operand_scale(self.program, operands);
                let views: Vec<ArrayViewD<Ring>> = args.iter().map(|v| v.view()).collect();
                let ctx = OpCtx {
                    env: self.env,
                    frac: self.frac,
                    scale,
                };
                apply(op, &views, ctx).map(Rc::new).map_err(fail)
            }
        }
    }

    fn input(&self, name: &str, node: &Node) -> Result<Value, FixedError> {
        let expected = self.dims(&node.ty.shape);
        let Some(x) = self.sources.inputs.get(name) else {
            return Err(FixedError::MissingInput {
                name: name.into(),
                expected,
            });
        };
        if x.shape() != expected.as_slice() {
            return Err(FixedError::InputShape {
                name: name.into(),
                expected,
                actual: x.shape().to_vec(),
                seq: self.env.seq,
                past: self.env.past,
            });
        }
        encode_input(x, node.ty.elem)
            .map(Rc::new)
            .map_err(|message| FixedError::InputValue {
                name: name.into(),
                message,
            })
    }

    fn weight(&self, name: &str, node: &Node) -> Result<Value, FixedError> {
        let Some(w) = self.sources.weights.get(name) else {
            let info = self.program.info.weight(name);
            let tensor = info.map_or(name, |i| i.tensor.as_str()).to_string();
            return Err(FixedError::MissingWeight {
                name: name.into(),
                tensor,
            });
        };
        let expected = self.dims(&node.ty.shape);
        if w.shape() != expected.as_slice() {
            let actual = w.shape().to_vec();
            return Err(FixedError::WeightShape {
                name: name.into(),
                expected,
                actual,
            });
        }
        let scale = match node.ty.elem {
            Elem::Fixed { scale } if scale < 64 => scale,
            _ => self.frac,
        };
        Ok(Rc::new(crate::ring::encode_tensor(w, scale)))
    }

    /// `[h, past, k]` from the cache; empty at `past = 0` (a new sequence).
    fn cache_read(&self, slot: u32, node: &Node, at: impl Fn() -> At) -> Result<Value, FixedError> {
        let expected = self.dims(&node.ty.shape);
        let fail = |message: String| FixedError::Cache {
            at: at(),
            slot,
            message,
        };
        if self.env.past == 0 {
            return Ok(Rc::new(ArrayD::zeros(IxDyn(&expected))));
        }
        let past = self.env.past;
        let x = match self.sources.cache.read(slot) {
            Ok(x) => x,
            Err(CacheError::Empty { .. }) => {
                return Err(fail(format!(
                    "empty, but past = {past}: run the earlier calls (prefill) with this cache first"
                )));
            }
            Err(hole) => return Err(fail(hole.to_string())),
        };
        if x.shape() != expected.as_slice() {
            return Err(fail(format!(
                "holds {:?}, but past = {past} needs {expected:?}",
                x.shape()
            )));
        }
        Ok(Rc::new(x.clone()))
    }
}

/// Names a node in error messages (as the f64 interpreter does).
fn at_of(id: NodeId, node: &Node) -> At {
    At {
        node: id,
        op: node.op.name(),
        scope: node.scope.path.clone(),
    }
}

/// The fixed-point scale of the first operand, if it has one.
fn operand_scale(program: &Program, operands: &[NodeId]) -> Option<u32> {
    let first = operands.first()?;
    match program.graph.node(*first).ty.elem {
        Elem::Fixed { scale } => Some(scale),
        _ => None,
    }
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
        Op::Transpose => movement::transpose(&x[0]),
        Op::Add => movement::binary("add", &x[0], &x[1], Ring::wrapping_add),
        Op::Sub => movement::binary("sub", &x[0], &x[1], Ring::wrapping_sub),
        Op::Mul => movement::binary("mul", &x[0], &x[1], Ring::wrapping_mul),
        Op::Square => Ok(x[0].mapv(|v| v.wrapping_mul(v))),
        Op::Neg => Ok(x[0].mapv(Ring::wrapping_neg)),
        Op::MulConst { value } => Ok(arith::mul_const(&x[0], *value, ctx.frac)),
        Op::AddConst { value } => Ok(arith::add_const(&x[0], *value, ctx.scale("add_const")?)),
        Op::Trunc { bits } => arith::trunc(&x[0], *bits),
        Op::Drelu => Ok(arith::drelu(&x[0])),
        Op::B2A => Ok(arith::b2a(&x[0], ctx.frac)),
        Op::Select => arith::select(&x[0], &x[1]),
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
