//! The walker of the plaintext backends: one call of a program over a [`Backend`], node by
//! node in the [`Layout`]'s canonical order, each value checked against its node's
//! declared shape, offered to a [`Hook`], and dropped after its last reader (by the
//! layout's read counts). Cache writes are applied only when the whole call succeeds.

use std::collections::HashMap;
use std::rc::Rc;

use comet_ir::{DimEnv, Node, NodeId, Op, Program};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::sources::{self, Tensors, dims};
use super::{At, Cache, ExecError, Layout, Pos};

/// A node's value: borrowed from the caller (inputs, weights, the cache) or computed, and
/// shared by the ops that pass it on.
#[derive(Debug, Clone)]
pub enum Value<'a, T> {
    /// The caller's tensor.
    Borrowed(&'a ArrayD<T>),
    /// A computed tensor.
    Computed(Rc<ArrayD<T>>),
}

impl<T: Clone> Value<'_, T> {
    /// A computed value.
    pub fn new(x: ArrayD<T>) -> Self {
        Value::Computed(Rc::new(x))
    }

    /// The tensor.
    pub fn array(&self) -> &ArrayD<T> {
        match self {
            Value::Borrowed(a) => a,
            Value::Computed(a) => a,
        }
    }
}

/// How one backend computes each node; the walker does everything else.
pub trait Backend {
    /// The element of its tensors.
    type Elem: Clone + Default;

    /// The value of input `node` from the caller's real numbers `x` (already checked
    /// against the declared shape); an error says why `x` has no value here.
    fn input<'a>(&self, node: &Node, x: &'a ArrayD<f64>) -> Result<Value<'a, Self::Elem>, String>;

    /// The value of weight `node` from the caller's real numbers `w` (shape checked).
    fn weight<'a>(&self, node: &Node, w: &'a ArrayD<f64>) -> Value<'a, Self::Elem>;

    /// The position ids `past + offset ..< past + offset + seq`.
    fn positions(&self, offset: i64, env: DimEnv) -> ArrayD<Self::Elem>;

    /// Whether `op`'s value is its first operand's, shared rather than copied.
    fn passes_through(&self, op: &Op) -> bool;

    /// The value of a computed node (`x`: its operands' values, as many as its arity).
    fn op(
        &self,
        node: &OpNode<'_>,
        x: &[ArrayViewD<'_, Self::Elem>],
    ) -> Result<ArrayD<Self::Elem>, ExecError>;

    /// What output `node` gives the caller for its operand's value `x`.
    fn output(&self, node: &Node, x: &ArrayD<Self::Elem>) -> ArrayD<f64>;
}

/// The node a [`Backend::op`] computes, with what it may need to know of the call.
pub struct OpNode<'a> {
    /// The program.
    pub program: &'a Program,
    /// Its layout.
    pub layout: &'a Layout,
    /// The node's position.
    pub pos: Pos,
    /// The node.
    pub node: &'a Node,
    /// The call's sizes.
    pub env: DimEnv,
}

impl OpNode<'_> {
    /// The node's place, for errors.
    pub fn at(&self) -> At {
        At::of(self.layout.id(self.pos), self.node)
    }

    /// The node of operand `k` (`None` if there is no such operand).
    pub fn operand(&self, k: usize) -> Option<&Node> {
        let x = *self.layout.operands(self.pos).get(k)?;
        Some(self.program.graph.node(self.layout.id(x)))
    }

    /// An [`ExecError::Op`] at this node.
    pub fn fail(&self, message: String) -> ExecError {
        ExecError::Op {
            at: self.at(),
            message,
        }
    }
}

/// Sees each node's value during a call and may replace it (the sparsity tools capture
/// activations and zero the neuron blocks a predictor skips). `T` is the backend's
/// element: `f64` by default, the reference interpreter's.
pub trait Hook<T = f64> {
    /// Called once per node of the call, in evaluation order, right after `node` (`id`)
    /// is computed and its shape checked, before any user reads it (sinks included: a
    /// sink's value is its operand's). Returning `Some(v)` makes `v` the node's value for
    /// every user, the trace and the outputs; `v` must have the same shape, else the call
    /// fails with [`ExecError::Op`] at that node.
    fn after(&mut self, id: NodeId, node: &Node, value: ArrayViewD<'_, T>) -> Option<ArrayD<T>>;
}

/// The outputs of a call and, when traced, every node's value (for sinks, their
/// operand's). `Debug` shows names and shapes, never values.
#[derive(Clone)]
pub struct Evaluation<T> {
    /// Outputs by name, as real numbers.
    pub outputs: HashMap<String, ArrayD<f64>>,
    /// Every node's value (empty unless traced).
    pub values: HashMap<NodeId, ArrayD<T>>,
}

impl<T> std::fmt::Debug for Evaluation<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut outputs: Vec<_> = self.outputs.iter().map(|(k, v)| (k, v.shape())).collect();
        outputs.sort();
        f.debug_struct("Evaluation")
            .field("outputs", &outputs)
            .field("values", &self.values.len())
            .finish()
    }
}

impl<T> Default for Evaluation<T> {
    fn default() -> Self {
        Evaluation {
            outputs: HashMap::new(),
            values: HashMap::new(),
        }
    }
}

/// One call: the program, the caller's sources, the sizes, and whether to trace.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    /// The program.
    pub program: &'a Program,
    /// Inputs by name.
    pub inputs: &'a Tensors,
    /// Weights by qualified weight name.
    pub weights: &'a Tensors,
    /// The call's `seq` and `past`.
    pub env: DimEnv,
    /// Whether to keep every node's value ([`Evaluation::values`]).
    pub trace: bool,
}

impl<'a> Call<'a> {
    /// A call of `program` at `env` on these sources, not traced.
    pub fn new(
        program: &'a Program,
        inputs: &'a Tensors,
        weights: &'a Tensors,
        env: DimEnv,
    ) -> Self {
        let trace = false;
        Call {
            program,
            inputs,
            weights,
            env,
            trace,
        }
    }

    /// The same call, keeping every node's value.
    pub fn traced(self) -> Self {
        Call {
            trace: true,
            ..self
        }
    }
}

/// Runs `call` on `backend` against `cache` as it is, calling `hook` after every node,
/// then applies the call's cache writes (a failed call leaves the cache as it was).
///
/// # Errors
/// The first [`ExecError`], in canonical order: unknown inputs before any node.
pub fn evaluate<B: Backend>(
    backend: &B,
    call: Call<'_>,
    cache: &mut Cache<B::Elem>,
    hook: Option<&mut dyn Hook<B::Elem>>,
) -> Result<Evaluation<B::Elem>, ExecError> {
    sources::check_input_names(call.program, call.inputs.keys())?;
    let layout = Layout::new(call.program)?;
    let (result, writes) = Walk::new(backend, call, &layout, cache, hook).run()?;
    for (slot, value) in writes {
        cache.set(slot, value);
    }
    Ok(result)
}

/// A slot and its new contents.
type CacheWrite<T> = (u32, ArrayD<T>);

/// What a successful walk leaves: the result, and the cache writes to apply.
type Outcome<T> = (Evaluation<T>, Vec<CacheWrite<T>>);

/// The state of one call.
struct Walk<'a, 'h, B: Backend> {
    backend: &'a B,
    call: Call<'a>,
    hook: Option<&'h mut dyn Hook<B::Elem>>,
    layout: &'a Layout,
    cache: &'a Cache<B::Elem>,
    /// Per position: the live value (`None` before it is computed, after its last reader,
    /// and for values nobody reads).
    values: Vec<Option<Value<'a, B::Elem>>>,
    /// Per position: readers still to come.
    reads_left: Vec<u32>,
    writes: Vec<CacheWrite<B::Elem>>,
    result: Evaluation<B::Elem>,
}

impl<'a, 'h, B: Backend> Walk<'a, 'h, B> {
    fn new(
        backend: &'a B,
        call: Call<'a>,
        layout: &'a Layout,
        cache: &'a Cache<B::Elem>,
        hook: Option<&'h mut dyn Hook<B::Elem>>,
    ) -> Self {
        Walk {
            backend,
            call,
            hook,
            layout,
            cache,
            values: vec![None; layout.len()],
            reads_left: layout.read_counts(),
            writes: Vec::new(),
            result: Evaluation::default(),
        }
    }

    /// Every node in order; the result and the cache writes to apply.
    fn run(mut self) -> Result<Outcome<B::Elem>, ExecError> {
        for i in 0..self.layout.len() {
            self.step(i as Pos)?;
        }
        Ok((self.result, self.writes))
    }

    /// Computes one node, checks its shape, offers it to the hook, records sinks and
    /// frees the values read for the last time.
    fn step(&mut self, i: Pos) -> Result<(), ExecError> {
        let id = self.layout.id(i);
        let node = self.call.program.graph.node(id);
        let mut value = self.compute(i, node)?;
        let expected = dims(&node.ty.shape, self.call.env);
        ExecError::check_shape(value.array().shape(), &expected, || At::of(id, node))?;
        if let Some(new) = self.hooked(id, node, &value, &expected)? {
            value = new;
        }
        self.record(id, node, &value);
        for x in self.layout.reads(i) {
            let left = &mut self.reads_left[x as usize];
            *left -= 1;
            if *left == 0 {
                self.values[x as usize] = None;
            }
        }
        if self.reads_left[i as usize] > 0 {
            self.values[i as usize] = Some(value);
        }
        Ok(())
    }

    /// The hook's replacement of `value`, if it gives one of the `expected` shape.
    fn hooked(
        &mut self,
        id: NodeId,
        node: &Node,
        value: &Value<'a, B::Elem>,
        expected: &[usize],
    ) -> Result<Option<Value<'a, B::Elem>>, ExecError> {
        let Some(hook) = self.hook.as_deref_mut() else {
            return Ok(None);
        };
        let Some(new) = hook.after(id, node, value.array().view()) else {
            return Ok(None);
        };
        if new.shape() != expected {
            let message = format!(
                "a hook replaced the value of shape {expected:?} by one of shape {:?}",
                new.shape()
            );
            let at = At::of(id, node);
            return Err(ExecError::Op { at, message });
        }
        Ok(Some(Value::new(new)))
    }

    fn record(&mut self, id: NodeId, node: &Node, value: &Value<'a, B::Elem>) {
        match &node.op {
            Op::Output { name, .. } => {
                let out = self.backend.output(node, value.array());
                self.result.outputs.insert(name.clone(), out);
            }
            Op::CacheWrite { slot } => self.writes.push((*slot, value.array().clone())),
            _ => {}
        }
        if self.call.trace {
            self.result.values.insert(id, value.array().clone());
        }
    }

    /// The value of the node at `i`: a source, a passed-on operand, or the backend's op.
    fn compute(&self, i: Pos, node: &'a Node) -> Result<Value<'a, B::Elem>, ExecError> {
        let id = self.layout.id(i);
        let at = || At::of(id, node);
        let fail = |message: String| ExecError::Op { at: at(), message };
        let operands = self.layout.operands(i);
        if !node.op.arity().accepts(operands.len()) {
            let n = operands.len();
            return Err(fail(format!("takes {} operands, got {n}", node.op.arity())));
        }
        let args = (operands.iter())
            .map(|&x| self.values[x as usize].as_ref().ok_or(x))
            .collect::<Result<Vec<_>, Pos>>()
            .map_err(|x| {
                let o = self.layout.id(x);
                fail(format!("operand {o} has no value (it is a sink)"))
            })?;
        let env = self.call.env;
        match &node.op {
            Op::Input { name, .. } => self.input(name, node),
            Op::Weight { name } => self.weight(name, node),
            Op::CacheRead { slot } => self.cache_read(*slot, node, at),
            Op::Positions { offset } => Ok(Value::new(self.backend.positions(*offset, env))),
            op if self.backend.passes_through(op) => Ok(args[0].clone()),
            _ => {
                let views: Vec<ArrayViewD<B::Elem>> =
                    args.iter().map(|v| v.array().view()).collect();
                let program = self.call.program;
                let (layout, pos) = (self.layout, i);
                let op_node = OpNode {
                    program,
                    layout,
                    pos,
                    node,
                    env,
                };
                self.backend.op(&op_node, &views).map(Value::new)
            }
        }
    }

    fn input(&self, name: &str, node: &Node) -> Result<Value<'a, B::Elem>, ExecError> {
        let (env, expected) = (self.call.env, dims(&node.ty.shape, self.call.env));
        let x = sources::input(self.call.inputs, name, expected, env)?;
        self.backend.input(node, x).map_err(|message| {
            let name = name.into();
            ExecError::InputValue { name, message }
        })
    }

    fn weight(&self, name: &str, node: &Node) -> Result<Value<'a, B::Elem>, ExecError> {
        let expected = dims(&node.ty.shape, self.call.env);
        let found = self.call.weights.get(name);
        let w = sources::weight(self.call.program, name, found, expected)?;
        Ok(self.backend.weight(node, w))
    }

    fn cache_read(
        &self,
        slot: u32,
        node: &Node,
        at: impl Fn() -> At,
    ) -> Result<Value<'a, B::Elem>, ExecError> {
        let expected = dims(&node.ty.shape, self.call.env);
        let read = sources::cache_read(self.cache, slot, &expected, self.call.env, at)?;
        Ok(match read {
            Some(x) => Value::Borrowed(x),
            None => Value::new(ArrayD::default(IxDyn(&expected))),
        })
    }
}
