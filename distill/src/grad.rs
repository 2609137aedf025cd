//! Reverse-mode gradients over a program's f64 evaluation.
//!
//! The forward pass is the runtime's reference interpreter ([`comet_runtime::plain`]) with
//! its trace (every node's value); [`backward`] then walks the graph in reverse
//! topological order and applies each op's vector-Jacobian product (VJP), accumulating
//! the gradient of every weight. So the semantics that is differentiated is exactly the one
//! the interpreter (and, up to fixed point, the two parties) computes: no second
//! implementation of the forward pass to keep in step.
//!
//! Bits (`drelu`, `compare`) carry no gradient: a `select(b, x)` passes `b·g` to `x` and
//! nothing to `b`, which is the derivative of the piecewise form almost everywhere. `lut`
//! (a staircase) and the protocol-stage ops (`cache_matmul`, the block-sparse ops) have no
//! useful gradient: [`check_differentiable`] rejects a program with them before training.

use comet_ir::{DimEnv, Node, NodeId, Op, Program, UnaryFn};
use comet_runtime::movement;
use ndarray::{Array2, ArrayD, ArrayViewD, Axis, Ix2, IxDyn, Zip};
use std::collections::HashMap;

/// Why gradients could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GradError {
    /// The program has an op without a gradient here.
    #[error("node {id} `{op}` ({scope}) has no gradient in `comet distill`: {why}")]
    Unsupported {
        /// The node.
        id: NodeId,
        /// The op's name.
        op: &'static str,
        /// Its scope, for the place.
        scope: String,
        /// Why.
        why: &'static str,
    },
    /// The trace lacks a value the VJP needs (not a traced evaluation of this program).
    #[error("node {0} has no value in the trace: evaluate the program with its trace first")]
    MissingValue(NodeId),
    /// A gradient has the wrong shape (an internal error, with the place).
    #[error("node {id} `{op}`: gradient of shape {got:?}, value of shape {want:?}")]
    Shape {
        /// The node.
        id: NodeId,
        /// The op's name.
        op: &'static str,
        /// The gradient's shape.
        got: Vec<usize>,
        /// The value's shape.
        want: Vec<usize>,
    },
}

fn why_not(op: &Op) -> Option<&'static str> {
    match op {
        Op::Lut { .. } => Some(
            "a table lookup is a staircase (zero derivative almost everywhere); distil for a \
             profile whose forms are polynomials or ReLUs (pcf, mpcformer, puma, bolt, \
             bumblebee), not `lut`",
        ),
        Op::CacheMatMul { .. } => Some("a protocol-stage op: distil the semantic program"),
        Op::BlockPermute { .. } | Op::ApplyMask { .. } | Op::BlockMatMul { .. } => {
            Some("block-sparse FFNs are not trained: distil the dense model")
        }
        _ => None,
    }
}

/// Checks that every op of `program` has a gradient.
///
/// # Errors
/// [`GradError::Unsupported`] for the first op (in id order) that has none.
pub fn check_differentiable(program: &Program) -> Result<(), GradError> {
    let mut ids: Vec<NodeId> = program.graph.ids().collect();
    ids.sort();
    for id in ids {
        let node = program.graph.node(id);
        if let Some(why) = why_not(&node.op) {
            return Err(unsupported(id, node, why));
        }
    }
    Ok(())
}

fn unsupported(id: NodeId, node: &Node, why: &'static str) -> GradError {
    GradError::Unsupported {
        id,
        op: node.op.name(),
        scope: match (node.scope.path.as_str(), node.scope.origin.as_str()) {
            ("", "") => "top level".into(),
            (p, "") => p.to_string(),
            ("", o) => format!("in `{o}`"),
            (p, o) => format!("{p}, in `{o}`"),
        },
        why,
    }
}

/// The gradients of a scalar loss with respect to every weight of `program`, by weight
/// name (weights the loss does not depend on are absent).
///
/// `values` is the trace of one evaluation at `env` ([`comet_runtime::plain::eval_with_trace`]);
/// `seeds` are the loss's gradients with respect to some nodes' values (the logits, and
/// hidden states for a hidden-state loss), each of its node's shape.
///
/// # Errors
/// An op without a gradient, a missing value, or a seed of the wrong shape.
pub fn backward(
    program: &Program,
    env: DimEnv,
    values: &HashMap<NodeId, ArrayD<f64>>,
    seeds: Vec<(NodeId, ArrayD<f64>)>,
) -> Result<HashMap<String, ArrayD<f64>>, GradError> {
    let graph = &program.graph;
    let order = graph
        .topo_order()
        .map_err(|e| GradError::MissingValue(e.0))?;
    let mut grads: HashMap<NodeId, ArrayD<f64>> = HashMap::new();
    for (id, g) in seeds {
        accumulate(&mut grads, id, g, values, graph.node(id))?;
    }
    let mut out = HashMap::new();
    for &id in order.iter().rev() {
        let Some(g) = grads.remove(&id) else {
            continue;
        };
        let node = graph.node(id);
        if let Some(why) = why_not(&node.op) {
            return Err(unsupported(id, node, why));
        }
        if let Op::Weight { name } = &node.op {
            out.insert(name.clone(), g);
            continue;
        }
        let xs = graph.operands(id);
        let val = |k: usize| -> Result<&ArrayD<f64>, GradError> {
            values.get(&xs[k]).ok_or(GradError::MissingValue(xs[k]))
        };
        let y = || values.get(&id).ok_or(GradError::MissingValue(id));
        let parts = vjp(&node.op, &g, &xs, val, y, env).map_err(|m| match m {
            VjpError::Grad(e) => e,
            VjpError::Message(why) => unsupported(id, node, why),
        })?;
        for (k, gx) in parts {
            let x = xs[k];
            accumulate(&mut grads, x, gx, values, graph.node(x))?;
        }
    }
    Ok(out)
}

fn accumulate(
    grads: &mut HashMap<NodeId, ArrayD<f64>>,
    id: NodeId,
    g: ArrayD<f64>,
    values: &HashMap<NodeId, ArrayD<f64>>,
    node: &Node,
) -> Result<(), GradError> {
    if let Some(v) = values.get(&id)
        && v.shape() != g.shape()
    {
        return Err(GradError::Shape {
            id,
            op: node.op.name(),
            got: g.shape().to_vec(),
            want: v.shape().to_vec(),
        });
    }
    match grads.get_mut(&id) {
        Some(acc) => *acc += &g,
        None => {
            grads.insert(id, g);
        }
    }
    Ok(())
}

enum VjpError {
    Grad(GradError),
    Message(&'static str),
}

impl From<GradError> for VjpError {
    fn from(e: GradError) -> Self {
        VjpError::Grad(e)
    }
}

impl From<String> for VjpError {
    fn from(_: String) -> Self {
        VjpError::Message("the gradient's data movement failed on these shapes")
    }
}

type Parts = Vec<(usize, ArrayD<f64>)>;

/// The gradients of one node's operands (by operand index) from its output gradient `g`.
fn vjp<'v>(
    op: &Op,
    g: &ArrayD<f64>,
    xs: &[NodeId],
    val: impl Fn(usize) -> Result<&'v ArrayD<f64>, GradError>,
    y: impl Fn() -> Result<&'v ArrayD<f64>, GradError>,
    env: DimEnv,
) -> Result<Parts, VjpError> {
    let one = |gx: ArrayD<f64>| Ok(vec![(0, gx)]);
    match op {
        // sources and bits: nothing flows further
        Op::Input { .. }
        | Op::Weight { .. }
        | Op::Positions { .. }
        | Op::CacheRead { .. }
        | Op::Drelu
        | Op::Compare { .. }
        | Op::Between
        | Op::OneHot { .. } => Ok(vec![]),
        Op::Trunc { .. }
        | Op::FaithfulTrunc { .. }
        | Op::StochasticTrunc { .. }
        | Op::Share { .. }
        | Op::Reveal { .. }
        | Op::Output { .. }
        | Op::CacheWrite { .. }
        | Op::Open
        | Op::B2A
        | Op::CausalMask
        | Op::AddConst { .. } => one(g.clone()),
        Op::Neg => one(g.mapv(|v| -v)),
        Op::MulConst { value } => one(g.mapv(|v| v * value)),
        Op::Square => one(g * &val(0)?.mapv(|v| 2.0 * v)),
        Op::Add => Ok(vec![
            (0, unbroadcast(g, val(0)?.shape())),
            (1, unbroadcast(g, val(1)?.shape())),
        ]),
        Op::Sub => Ok(vec![
            (0, unbroadcast(g, val(0)?.shape())),
            (1, unbroadcast(&g.mapv(|v| -v), val(1)?.shape())),
        ]),
        Op::Mul => {
            let (a, b) = (val(0)?, val(1)?);
            Ok(vec![
                (0, unbroadcast(&(g * b), a.shape())),
                (1, unbroadcast(&(g * a), b.shape())),
            ])
        }
        Op::Select => {
            let (b, x) = (val(0)?, val(1)?);
            let gx = g * &b.mapv(|v| if v != 0.0 { v } else { 0.0 });
            Ok(vec![(1, unbroadcast(&gx, x.shape()))])
        }
        Op::SignSelect => {
            let x = val(0)?;
            let last = xs.len() - 1;
            let gy = g * &x.mapv(|v| if v >= 0.0 { 1.0 } else { 0.0 });
            Ok(vec![(last, gy)])
        }
        Op::Unary { func } => {
            let x = val(0)?;
            let d = x.mapv(|v| derivative(*func, v));
            one(g * &d)
        }
        Op::MatMul => {
            let (a, b) = (val(0)?, val(1)?);
            let (ga, gb) = matmul_vjp(&a.view(), &b.view(), &g.view());
            Ok(vec![(0, ga), (1, gb)])
        }
        Op::Transpose => one(movement::transpose(&g.view())?),
        Op::Embed => {
            let (ids, table) = (val(0)?, val(1)?);
            let d = table.shape()[1];
            let mut gt = ArrayD::zeros(table.raw_dim());
            let flat = g
                .to_shape((ids.len(), d))
                .map_err(|_| VjpError::Message("embed"))?;
            for (p, id) in ids.iter().enumerate() {
                let mut row = gt.index_axis_mut(Axis(0), *id as usize);
                row += &flat.row(p);
            }
            Ok(vec![(1, gt)])
        }
        Op::Slice { start, end } => {
            let x = val(0)?;
            let mut gx = ArrayD::zeros(x.raw_dim());
            let ax = Axis(x.ndim() - 1);
            gx.slice_axis_mut(ax, (*start as usize..*end as usize).into())
                .assign(g);
            one(gx)
        }
        Op::Row { index } => {
            let x = val(0)?;
            let mut gx = ArrayD::zeros(x.raw_dim());
            gx.slice_axis_mut(Axis(0), (*index as usize..*index as usize + 1).into())
                .assign(g);
            one(gx)
        }
        Op::Pick { index } => {
            let x = val(0)?;
            let mut gx = ArrayD::zeros(x.raw_dim());
            let last = Axis(x.ndim() - 1);
            gx.index_axis_mut(last, *index as usize).assign(g);
            one(gx)
        }
        Op::Concat { axis } => {
            let ax = Axis(*axis as usize);
            let mut at = 0;
            let mut parts = Vec::new();
            for k in 0..xs.len() {
                let n = val(k)?.shape()[*axis as usize];
                parts.push((k, g.slice_axis(ax, (at..at + n).into()).to_owned()));
                at += n;
            }
            Ok(parts)
        }
        Op::SplitHeads { .. } => one(movement::merge_heads(&g.view())?),
        Op::MergeHeads => {
            let heads = val(0)?.shape()[0] as u64;
            one(movement::split_heads(&g.view(), heads)?)
        }
        Op::RepeatKv { groups } => {
            let x = val(0)?;
            let k = *groups as usize;
            let mut gx = ArrayD::zeros(x.raw_dim());
            for (j, gj) in g.axis_iter(Axis(0)).enumerate() {
                let mut head = gx.index_axis_mut(Axis(0), j / k);
                head += &gj;
            }
            one(gx)
        }
        Op::Rope { base, style } => {
            let (seq, k) = (g.shape()[1], g.shape()[2]);
            let mut gx = g.clone();
            for (t, (p, q), angle) in movement::rope_rotations(seq, k, env.past, *base, *style) {
                let (sin, cos) = (-angle).sin_cos();
                for mut head in gx.axis_iter_mut(Axis(0)) {
                    let (a, b) = (head[[t, p]], head[[t, q]]);
                    head[[t, p]] = a * cos - b * sin;
                    head[[t, q]] = a * sin + b * cos;
                }
            }
            one(gx)
        }
        Op::Softmax => {
            let y = y()?;
            let mut gx = g * y;
            let last = Axis(y.ndim() - 1);
            let dot = gx.sum_axis(last).insert_axis(last);
            gx -= &(y * &dot);
            one(gx)
        }
        Op::RowSum => {
            let x = val(0)?;
            one(g
                .broadcast(x.raw_dim())
                .expect("[.., 1] broadcasts")
                .to_owned())
        }
        Op::RowMax => {
            let x = val(0)?;
            let last = Axis(x.ndim() - 1);
            let mut gx = ArrayD::zeros(x.raw_dim());
            Zip::from(gx.lanes_mut(last))
                .and(x.lanes(last))
                .and(g.lanes(last))
                .for_each(|mut gr, xr, gv| {
                    let mut best = 0;
                    for (i, v) in xr.iter().enumerate() {
                        if *v > xr[best] {
                            best = i;
                        }
                    }
                    gr[best] = gv[0];
                });
            one(gx)
        }
        Op::RmsNorm { eps } => {
            let (x, gamma) = (val(0)?, val(1)?);
            let (gx, gg) = rms_norm_vjp(x, gamma, g, *eps);
            Ok(vec![(0, gx), (1, gg)])
        }
        Op::LayerNorm { eps } => {
            let (x, gamma) = (val(0)?, val(1)?);
            let (gx, gg, gb) = layer_norm_vjp(x, gamma, g, *eps);
            Ok(vec![(0, gx), (1, gg), (2, gb)])
        }
        Op::Lut { .. }
        | Op::CacheMatMul { .. }
        | Op::BlockPermute { .. }
        | Op::ApplyMask { .. }
        | Op::BlockMatMul { .. } => Err(VjpError::Message(why_not(op).expect("listed in why_not"))),
    }
}

/// `f'(x)` of an element-wise function (GeLU in its erf form, as the interpreter computes it).
pub fn derivative(func: UnaryFn, x: f64) -> f64 {
    let sigmoid = |x: f64| comet_runtime::plain::exact(UnaryFn::Sigmoid, x);
    match func {
        UnaryFn::Relu => f64::from(u8::from(x > 0.0)),
        UnaryFn::Gelu => {
            let cdf = 0.5 * (1.0 + comet_runtime::plain::erf(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            cdf + x * pdf
        }
        UnaryFn::Silu => {
            let s = sigmoid(x);
            s * (1.0 + x * (1.0 - s))
        }
        UnaryFn::Tanh => 1.0 - x.tanh().powi(2),
        UnaryFn::Exp => x.exp(),
        UnaryFn::Sigmoid => {
            let s = sigmoid(x);
            s * (1.0 - s)
        }
        UnaryFn::Reciprocal => -1.0 / (x * x),
        UnaryFn::Rsqrt => -0.5 * x.powf(-1.5),
    }
}

/// Sums `g` over the axes that broadcasting added or stretched to reach `shape`.
fn unbroadcast(g: &ArrayD<f64>, shape: &[usize]) -> ArrayD<f64> {
    if g.shape() == shape {
        return g.clone();
    }
    let mut out = g.clone();
    while out.ndim() > shape.len() {
        out = out.sum_axis(Axis(0));
    }
    for (i, &n) in shape.iter().enumerate() {
        if n == 1 && out.shape()[i] != 1 {
            out = out.sum_axis(Axis(i)).insert_axis(Axis(i));
        }
    }
    out
}

fn to2(x: &ArrayViewD<f64>, rows: usize, cols: usize) -> Array2<f64> {
    movement::reshape_to(x, &[rows, cols])
        .into_dimensionality::<Ix2>()
        .expect("rank 2")
}

/// The VJP of `a · b` (shapes as [`Op::MatMul`] takes them).
fn matmul_vjp(
    a: &ArrayViewD<f64>,
    b: &ArrayViewD<f64>,
    g: &ArrayViewD<f64>,
) -> (ArrayD<f64>, ArrayD<f64>) {
    let r = a.ndim();
    let (m, k) = (a.shape()[r - 2], a.shape()[r - 1]);
    let n = b.shape()[b.ndim() - 1];
    if b.ndim() == 2 {
        let rows = a.len() / k;
        let a2 = to2(a, rows, k);
        let g2 = to2(g, rows, n);
        let b2 = to2(b, k, n);
        let ga = g2.dot(&b2.t());
        let gb = a2.t().dot(&g2);
        let ga = movement::reshape_to(&ga.into_dyn().view(), a.shape());
        return (ga, gb.into_dyn());
    }
    let batch = a.len() / (m * k);
    let a3 = movement::reshape_to(a, &[batch, m, k]);
    let b3 = movement::reshape_to(b, &[batch, k, n]);
    let g3 = movement::reshape_to(g, &[batch, m, n]);
    let mut ga = ndarray::Array3::<f64>::zeros((batch, m, k));
    let mut gb = ndarray::Array3::<f64>::zeros((batch, k, n));
    for i in 0..batch {
        let ai = a3
            .index_axis(Axis(0), i)
            .into_dimensionality::<Ix2>()
            .expect("2");
        let bi = b3
            .index_axis(Axis(0), i)
            .into_dimensionality::<Ix2>()
            .expect("2");
        let gi = g3
            .index_axis(Axis(0), i)
            .into_dimensionality::<Ix2>()
            .expect("2");
        ga.index_axis_mut(Axis(0), i).assign(&gi.dot(&bi.t()));
        gb.index_axis_mut(Axis(0), i).assign(&ai.t().dot(&gi));
    }
    (
        ga.into_shape_with_order(IxDyn(a.shape()))
            .expect("same size"),
        gb.into_shape_with_order(IxDyn(b.shape()))
            .expect("same size"),
    )
}

/// The VJP of `x / sqrt(mean(x²) + eps) · γ` over the last axis.
fn rms_norm_vjp(
    x: &ArrayD<f64>,
    gamma: &ArrayD<f64>,
    g: &ArrayD<f64>,
    eps: f64,
) -> (ArrayD<f64>, ArrayD<f64>) {
    let last = Axis(x.ndim() - 1);
    let n = x.shape()[x.ndim() - 1] as f64;
    let mut gx = ArrayD::zeros(x.raw_dim());
    let mut gg = ArrayD::zeros(gamma.raw_dim());
    Zip::from(gx.lanes_mut(last))
        .and(x.lanes(last))
        .and(g.lanes(last))
        .for_each(|mut gxr, xr, gr| {
            let ms = xr.iter().map(|v| v * v).sum::<f64>() / n;
            let r = 1.0 / (ms + eps).sqrt();
            let mut dot = 0.0;
            for i in 0..xr.len() {
                let u = gr[i] * gamma[i];
                dot += u * xr[i];
                gg[i] += gr[i] * xr[i] * r;
            }
            for i in 0..xr.len() {
                gxr[i] = r * gr[i] * gamma[i] - xr[i] * r * r * r * dot / n;
            }
        });
    (gx, gg)
}

/// The VJP of `(x − μ)/sqrt(var + eps)·γ + β` over the last axis.
fn layer_norm_vjp(
    x: &ArrayD<f64>,
    gamma: &ArrayD<f64>,
    g: &ArrayD<f64>,
    eps: f64,
) -> (ArrayD<f64>, ArrayD<f64>, ArrayD<f64>) {
    let last = Axis(x.ndim() - 1);
    let d = x.shape()[x.ndim() - 1];
    let n = d as f64;
    let mut gx = ArrayD::zeros(x.raw_dim());
    let mut gg = ArrayD::zeros(gamma.raw_dim());
    let mut gb = ArrayD::zeros(gamma.raw_dim());
    Zip::from(gx.lanes_mut(last))
        .and(x.lanes(last))
        .and(g.lanes(last))
        .for_each(|mut gxr, xr, gr| {
            let mean = xr.sum() / n;
            let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let r = 1.0 / (var + eps).sqrt();
            let xhat: Vec<f64> = xr.iter().map(|v| (v - mean) * r).collect();
            let u: Vec<f64> = (0..d).map(|i| gr[i] * gamma[i]).collect();
            let mean_u = u.iter().sum::<f64>() / n;
            let mean_ux = (0..d).map(|i| u[i] * xhat[i]).sum::<f64>() / n;
            for i in 0..d {
                gg[i] += gr[i] * xhat[i];
                gb[i] += gr[i];
                gxr[i] = r * (u[i] - mean_u - xhat[i] * mean_ux);
            }
        });
    (gx, gg, gb)
}
