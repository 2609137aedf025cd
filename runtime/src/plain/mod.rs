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
//! The KV cache ([`Cache`]) maps slots to `[h, past, k]` tensors; `cache_write`s take
//! effect when the call succeeds, so a failed call leaves the cache as it was.

mod cache;
mod erf;
mod error;
mod linalg;
mod nonlinear;
mod position;
#[cfg(test)]
mod tests;

pub use cache::Cache;
pub use erf::{erf, erfc};
pub use error::{At, PlainError};
pub use nonlinear::{exact, gelu_tanh};
pub use position::MASK_OFFSET;

use crate::movement;
use comet_ir::{DimEnv, Node, NodeId, Op, Program};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use std::collections::HashMap;
use std::rc::Rc;

/// What an op function returns: its value, or what is wrong with its operands.
type OpResult = Result<ArrayD<f64>, String>;

/// The outputs of a call and the value of every node (for sinks, their operand's value).
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// Outputs by name.
    pub outputs: HashMap<String, ArrayD<f64>>,
    /// Every node's value (empty unless traced).
    pub values: HashMap<NodeId, ArrayD<f64>>,
}

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
    run(program, inputs, weights, env, cache, false).map(|e| e.outputs)
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
    run(program, inputs, weights, env, cache, true)
}

/// Sees each node's value during a call ([`eval_with_hook`]) and may replace it.
pub trait Hook {
    /// Called once per node of the call, in evaluation order, right after `node` (`id`)
    /// is computed and its shape checked, before any user reads it (sinks included: a
    /// sink's value is its operand's). Returning `Some(v)` makes `v` the node's value for
    /// every user, the trace and the outputs; `v` must have the same shape, else the call
    /// fails with [`PlainError::Op`] at that node.
    fn after(&mut self, id: NodeId, node: &Node, value: ArrayViewD<'_, f64>)
    -> Option<ArrayD<f64>>;
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
    run_hooked(program, inputs, weights, env, cache, false, Some(hook)).map(|e| e.outputs)
}

/// Runs the call against the cache as it was, then applies its writes.
fn run(
    program: &Program,
    inputs: &HashMap<String, ArrayD<f64>>,
    weights: &HashMap<String, ArrayD<f64>>,
    env: DimEnv,
    cache: &mut Cache,
    trace: bool,
) -> Result<Evaluation, PlainError> {
    run_hooked(program, inputs, weights, env, cache, trace, None)
}

/// [`run`] with a [`Hook`] called after every node.
fn run_hooked(
    program: &Program,
    inputs: &HashMap<String, ArrayD<f64>>,
    weights: &HashMap<String, ArrayD<f64>>,
    env: DimEnv,
    cache: &mut Cache,
    trace: bool,
    hook: Option<&mut dyn Hook>,
) -> Result<Evaluation, PlainError> {
    let sources = Sources {
        inputs,
        weights,
        cache: &*cache,
    };
    let mut run = Run::new(program, sources, env, trace);
    // (assigned from the `Some`, so that the trait object's lifetime shortens to the call's)
    if let Some(h) = hook {
        run.hook = Some(h);
    }
    let (result, writes) = run.execute()?;
    for (slot, value) in writes {
        cache.set(slot, value);
    }
    Ok(result)
}

/// A slot and its new contents.
type CacheWrite = (u32, ArrayD<f64>);

/// What a call reads besides its program: the caller's inputs, weights and cache.
struct Sources<'a> {
    inputs: &'a HashMap<String, ArrayD<f64>>,
    weights: &'a HashMap<String, ArrayD<f64>>,
    cache: &'a Cache,
}

/// A node's value: borrowed from the caller (inputs, weights, cache) or computed and shared
/// by the identity ops that pass it on.
#[derive(Clone)]
enum Value<'a> {
    Borrowed(&'a ArrayD<f64>),
    Computed(Rc<ArrayD<f64>>),
}

impl Value<'_> {
    fn view(&self) -> ArrayViewD<'_, f64> {
        match self {
            Value::Borrowed(a) => a.view(),
            Value::Computed(a) => a.view(),
        }
    }

    fn shape(&self) -> &[usize] {
        match self {
            Value::Borrowed(a) => a.shape(),
            Value::Computed(a) => a.shape(),
        }
    }

    fn to_array(&self) -> ArrayD<f64> {
        match self {
            Value::Borrowed(a) => (*a).clone(),
            Value::Computed(a) => (**a).clone(),
        }
    }
}

/// One call of a program.
struct Run<'a> {
    program: &'a Program,
    sources: Sources<'a>,
    env: DimEnv,
    /// Live values, dropped after their last use.
    values: HashMap<NodeId, Value<'a>>,
    /// Uses left per live value.
    uses_left: HashMap<NodeId, usize>,
    /// Cache writes, applied when the call succeeds.
    writes: Vec<CacheWrite>,
    result: Evaluation,
    trace: bool,
    hook: Option<&'a mut dyn Hook>,
}

impl<'a> Run<'a> {
    fn new(program: &'a Program, sources: Sources<'a>, env: DimEnv, trace: bool) -> Self {
        Run {
            program,
            sources,
            env,
            values: HashMap::new(),
            uses_left: HashMap::new(),
            writes: Vec::new(),
            result: Evaluation::default(),
            trace,
            hook: None,
        }
    }

    /// The outputs (and trace), and the cache writes to apply.
    fn execute(mut self) -> Result<(Evaluation, Vec<CacheWrite>), PlainError> {
        self.check_input_names()?;
        let order = self
            .program
            .graph
            .topo_order()
            .map_err(|e| PlainError::Cycle(e.0))?;
        for id in order {
            self.step(id)?;
        }
        Ok((self.result, self.writes))
    }

    fn check_input_names(&self) -> Result<(), PlainError> {
        let declared = &self.program.info.inputs;
        let mut given: Vec<&String> = self.sources.inputs.keys().collect();
        given.sort();
        match given
            .into_iter()
            .find(|n| self.program.info.input(n).is_none())
        {
            None => Ok(()),
            Some(name) => Err(PlainError::UnknownInput {
                name: name.clone(),
                declared: declared
                    .iter()
                    .map(|i| format!("`{}`", i.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Computes one node, checks its shape, records sinks and frees dead operands.
    fn step(&mut self, id: NodeId) -> Result<(), PlainError> {
        let node = self.program.graph.node(id);
        let operands = self.program.graph.operands(id);
        let mut value = self.compute(id, node, &operands)?;
        let expected = self.dims(&node.ty.shape);
        if value.shape() != expected.as_slice() {
            let actual = value.shape().to_vec();
            return Err(PlainError::Shape {
                at: At::of(id, node),
                expected,
                actual,
            });
        }
        if let Some(hook) = self.hook.as_deref_mut()
            && let Some(new) = hook.after(id, node, value.view())
        {
            if new.shape() != expected.as_slice() {
                let message = format!(
                    "a hook replaced the value of shape {expected:?} by one of shape {:?}",
                    new.shape()
                );
                return Err(PlainError::Op {
                    at: At::of(id, node),
                    message,
                });
            }
            value = computed(new);
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

    fn record(&mut self, id: NodeId, node: &Node, value: &Value<'a>) {
        match &node.op {
            Op::Output { name, .. } => {
                self.result.outputs.insert(name.clone(), value.to_array());
            }
            Op::CacheWrite { slot } => self.writes.push((*slot, value.to_array())),
            _ => {}
        }
        if self.trace {
            self.result.values.insert(id, value.to_array());
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

    fn compute(
        &self,
        id: NodeId,
        node: &Node,
        operands: &[NodeId],
    ) -> Result<Value<'a>, PlainError> {
        let at = || At::of(id, node);
        if !node.op.arity().accepts(operands.len()) {
            let message = format!("takes {} operands, got {}", node.op.arity(), operands.len());
            return Err(PlainError::Op { at: at(), message });
        }
        let args = operands
            .iter()
            .map(|o| self.values.get(o).ok_or(*o))
            .collect::<Result<Vec<&Value<'a>>, NodeId>>()
            .map_err(|o| PlainError::Op {
                at: at(),
                message: format!("operand {o} has no value (it is a sink)"),
            })?;
        match &node.op {
            Op::Input { name, .. } => self.input(name, node),
            Op::Weight { name } => self.weight(name, node),
            Op::CacheRead { slot } => self.cache_read(*slot, node, at),
            Op::Positions { offset } => Ok(computed(position::positions(*offset, self.env))),
            op if is_identity(op) => Ok(args[0].clone()),
            op => {
                let views: Vec<ArrayViewD<f64>> = args.iter().map(|v| v.view()).collect();
                apply(op, &views, self.env)
                    .map(computed)
                    .map_err(|message| PlainError::Op { at: at(), message })
            }
        }
    }

    fn input(&self, name: &str, node: &Node) -> Result<Value<'a>, PlainError> {
        let expected = self.dims(&node.ty.shape);
        let Some(x) = self.sources.inputs.get(name) else {
            return Err(PlainError::MissingInput {
                name: name.into(),
                expected,
            });
        };
        if x.shape() != expected.as_slice() {
            return Err(PlainError::InputShape {
                name: name.into(),
                expected,
                actual: x.shape().to_vec(),
                seq: self.env.seq,
                past: self.env.past,
            });
        }
        Ok(Value::Borrowed(x))
    }

    fn weight(&self, name: &str, node: &Node) -> Result<Value<'a>, PlainError> {
        let info = self.program.info.weight(name);
        let Some(w) = self.sources.weights.get(name) else {
            let tensor = info.map_or(name, |i| i.tensor.as_str()).to_string();
            return Err(PlainError::MissingWeight {
                name: name.into(),
                tensor,
            });
        };
        let expected = self.dims(&node.ty.shape);
        if w.shape() != expected.as_slice() {
            let actual = w.shape().to_vec();
            return Err(PlainError::WeightShape {
                name: name.into(),
                expected,
                actual,
            });
        }
        Ok(Value::Borrowed(w))
    }

    /// `[h, past, k]` from the cache; empty at `past = 0` (a new sequence).
    fn cache_read(
        &self,
        slot: u32,
        node: &Node,
        at: impl Fn() -> At,
    ) -> Result<Value<'a>, PlainError> {
        let expected = self.dims(&node.ty.shape);
        let fail = |message: String| PlainError::Cache {
            at: at(),
            slot,
            message,
        };
        if self.env.past == 0 {
            return Ok(computed(ArrayD::zeros(IxDyn(&expected))));
        }
        let past = self.env.past;
        let Some(x) = self.sources.cache.get(slot) else {
            return Err(fail(format!(
                "empty, but past = {past}: run the earlier calls (prefill) with this cache first"
            )));
        };
        if x.shape() != expected.as_slice() {
            return Err(fail(format!(
                "holds {:?}, but past = {past} needs {expected:?}",
                x.shape()
            )));
        }
        Ok(Value::Borrowed(x))
    }
}

fn computed<'a>(x: ArrayD<f64>) -> Value<'a> {
    Value::Computed(Rc::new(x))
}

/// Ops whose value is their operand's: on real numbers scales and domains do not exist.
fn is_identity(op: &Op) -> bool {
    matches!(
        op,
        Op::Trunc { .. }
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
        Op::Transpose => movement::transpose(&x[0]),
        Op::Add => movement::binary("add", &x[0], &x[1], |a, b| a + b),
        Op::Sub => movement::binary("sub", &x[0], &x[1], |a, b| a - b),
        Op::Mul => movement::binary("mul", &x[0], &x[1], |a, b| a * b),
        // a mux with bit 0 gives exactly 0, whatever the other input (even ±inf)
        Op::B2A => Ok(x[0].to_owned()),
        Op::Select => movement::binary(
            "select",
            &x[0],
            &x[1],
            |b, v| if b != 0.0 { b * v } else { 0.0 },
        ),
        Op::Neg => Ok(x[0].mapv(|v| -v)),
        Op::MulConst { value } => Ok(x[0].mapv(|v| v * value)),
        Op::AddConst { value } => Ok(x[0].mapv(|v| v + value)),
        Op::Square => Ok(x[0].mapv(|v| v * v)),
        Op::Drelu => Ok(x[0].mapv(|v| if v >= 0.0 { 1.0 } else { 0.0 })),
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
