//! FFN detection: the feed-forward blocks of a semantic-stage program.
//!
//! An FFN is the pattern
//!
//! ```text
//! pre    = matmul(x, W_act) [+ b_act]             the projection under the activation
//! a      = act(pre)                               act ∈ {relu, gelu, silu}
//! hidden = a                                      plain FFN (GPT-2, OPT, BERT)
//!        | a ⊙ (matmul(x, W_mul) [+ b_mul])       gated FFN (SwiGLU: LLaMA, glassllm)
//! out    = matmul(hidden, W_down) [+ b_down]
//! ```
//!
//! where every `W` and `b` is a `weight` node (`b` of rank 1), both projections read the
//! same `x`, the product's operands may come in either order, as may a bias add's, and
//! the intermediate values (`pre`, `a`, the gated product and its right factor) have no
//! other user: skipping a neuron of `hidden` then changes nothing but `out`.
//!
//! **Naming.** [`FfnWeights::act`] is the projection *under the activation*, whatever the
//! checkpoint calls it: OPT's `fc1`, GPT-2's `c_fc`, glassllm's `W1`, Hugging Face
//! LLaMA's `gate_proj`. [`FfnWeights::mul`] is the other factor of a gated FFN
//! (glassllm's `W3`, LLaMA's `up_proj`). A sparsity predictor approximates `x · W_act`.
//!
//! The analysis reads op kinds, so it runs on a program in the semantic stage (after
//! `lower` or `approximate`, before `expand` turns the activations into primitives); on a
//! later program it finds nothing.

use crate::graph::{Graph, NodeId};
use crate::op::{Op, UnaryFn};
use crate::program::Program;

/// The weights of one FFN, by qualified name ([`crate::WeightInfo::name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FfnWeights {
    /// `[d, ff]`: the projection whose result goes through the activation.
    pub act: String,
    /// `[ff]`: its bias, if any.
    pub act_bias: Option<String>,
    /// `[d, ff]`: the other factor of a gated FFN.
    pub mul: Option<String>,
    /// `[ff]`: its bias, if any.
    pub mul_bias: Option<String>,
    /// `[ff, d_out]`: the down projection.
    pub down: String,
    /// `[d_out]`: its bias, if any.
    pub down_bias: Option<String>,
}

/// One FFN found in a program. Node handles refer to the analysed program.
#[derive(Debug, Clone, PartialEq)]
pub struct Ffn {
    /// Layer index (the outermost indexed block instance), if any.
    pub layer: Option<u32>,
    /// Block path of the activation node (`decoder.3`, `layer.0/mlp.0`).
    pub scope: String,
    /// The FFN's input `x` (`[.., d]`), read by both projections.
    pub input: NodeId,
    /// `matmul(x, W_act)`.
    pub act_matmul: NodeId,
    /// The activation's operand: `act_matmul`, or the bias add after it.
    pub pre_activation: NodeId,
    /// The activation node.
    pub activation: NodeId,
    /// Which activation.
    pub func: UnaryFn,
    /// `matmul(x, W_mul)` of a gated FFN.
    pub mul_matmul: Option<NodeId>,
    /// The gated product `act(pre) ⊙ (x · W_mul [+ b])`.
    pub product: Option<NodeId>,
    /// The down projection's left operand (`[.., ff]`): the activation, or the product.
    /// Zeroing a neuron here is exactly skipping it.
    pub hidden: NodeId,
    /// `matmul(hidden, W_down)`.
    pub down_matmul: NodeId,
    /// The FFN's result: `down_matmul`, or the bias add after it.
    pub output: NodeId,
    /// Weight names.
    pub weights: FfnWeights,
    /// Input width `d` (rows of `W_act`).
    pub d: u64,
    /// Width `ff` (neurons: columns of `W_act`, rows of `W_down`).
    pub ff: u64,
}

impl Ffn {
    /// Whether the FFN is gated (`act(x·W_act) ⊙ (x·W_mul)`).
    pub fn is_gated(&self) -> bool {
        self.product.is_some()
    }

    /// A short label: `layer 3` or the scope path.
    pub fn label(&self) -> String {
        match self.layer {
            Some(l) => format!("layer {l}"),
            None if self.scope.is_empty() => "top level".to_string(),
            None => self.scope.clone(),
        }
    }
}

/// Which value a sparse FFN's activation predictor reads (`--sparsity ffn:input=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictorInput {
    /// The FFN's own input `x` (after the pre-FFN norm): what a weight-derived (SVD)
    /// predictor approximates `x·W_act` for. Its comparison and the mask's opening come
    /// after the up projection's round: 2 more rounds per FFN.
    #[default]
    Ffn,
    /// The layer's input after the pre-attention norm, the value attention's own
    /// projections read: the predictor's product, comparison and opening run beside
    /// attention, in rounds it has anyway (0 added rounds). Needs a trained predictor
    /// (`comet calibrate --train`): the FFN's input also depends on attention's output.
    Attention,
}

impl PredictorInput {
    /// `ffn` or `attention`.
    pub fn name(self) -> &'static str {
        match self {
            PredictorInput::Ffn => "ffn",
            PredictorInput::Attention => "attention",
        }
    }

    /// Reads [`PredictorInput::name`].
    pub fn from_name(name: &str) -> Option<PredictorInput> {
        match name {
            "ffn" => Some(PredictorInput::Ffn),
            "attention" => Some(PredictorInput::Attention),
            _ => None,
        }
    }
}

/// The node FFN `f`'s predictor reads for `which`.
///
/// For [`PredictorInput::Attention`] the layer must be pre-norm: the FFN's input is a norm
/// (`layer_norm` / `rms_norm`) of a residual sum `u + a`, and one term `u` (the layer's
/// input) is also read by another norm `n` on which the other term `a` (attention's
/// output) depends. The answer is `n`.
///
/// # Errors
/// A message naming the FFN when the layer does not have that shape.
pub fn predictor_input(
    program: &Program,
    f: &Ffn,
    which: PredictorInput,
) -> Result<NodeId, String> {
    if which == PredictorInput::Ffn {
        return Ok(f.input);
    }
    let g = &program.graph;
    let is_norm = |id: NodeId| matches!(g.node(id).op, Op::LayerNorm { .. } | Op::RmsNorm { .. });
    let fail = |why: &str| {
        format!(
            "the predictor input `attention` needs a pre-norm layer; the FFN of {} {why}",
            f.label()
        )
    };
    if !is_norm(f.input) {
        return Err(fail("does not read a layer_norm or rms_norm"));
    }
    let sum = g.operands(f.input)[0];
    if !matches!(g.node(sum).op, Op::Add) {
        return Err(fail("normalises no residual sum (an add)"));
    }
    let terms = g.operands(sum);
    for (i, &u) in terms.iter().enumerate() {
        let other = terms[1 - i];
        for n in g.users(u) {
            if n != f.input && is_norm(n) && g.operands(n)[0] == u && depends_on(g, other, n) {
                return Ok(n);
            }
        }
    }
    Err(fail(
        "has no pre-attention norm: no term of its residual sum is normalised for the other",
    ))
}

/// Whether `v` is `n` or computed from it.
fn depends_on(g: &Graph, v: NodeId, n: NodeId) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![v];
    while let Some(x) = stack.pop() {
        if x == n {
            return true;
        }
        if seen.insert(x) {
            stack.extend(g.operands(x));
        }
    }
    false
}

/// Every FFN of `program`, in the program's topological order of activations (so layer
/// order for the example models). See the module docs for the pattern.
pub fn find_ffns(program: &Program) -> Vec<Ffn> {
    let g = &program.graph;
    let Ok(order) = g.topo_order() else {
        return Vec::new();
    };
    order
        .into_iter()
        .filter_map(|id| match_ffn(program, id))
        .collect()
}

/// The FFN whose activation is `act`, if the pattern matches there.
fn match_ffn(program: &Program, act: NodeId) -> Option<Ffn> {
    let g = &program.graph;
    let node = g.node(act);
    let func = match node.op {
        Op::Unary {
            func: f @ (UnaryFn::Relu | UnaryFn::Gelu | UnaryFn::Silu),
        } => f,
        _ => return None,
    };
    let pre = *g.operands(act).first()?;
    let (act_matmul, input, w_act, b_act) = projection(program, pre)?;
    let ff = cols(program, &w_act)?;
    let d = rows(program, &w_act)?;
    let after = sole_user(g, act)?;
    let (hidden, product, mul_matmul, w_mul, b_mul) = match &g.node(after).op {
        Op::Mul => {
            let ops = g.operands(after);
            let other = if ops[0] == act { ops[1] } else { ops[0] };
            if ops[0] == ops[1] || sole_user(g, other)? != after {
                return None;
            }
            let (mm, x2, w, b) = projection(program, other)?;
            if x2 != input || cols(program, &w)? != ff || rows(program, &w)? != d {
                return None;
            }
            (after, Some(after), Some(mm), Some(w), b)
        }
        Op::MatMul => (act, None, None, None, None),
        _ => return None,
    };
    let down_matmul = if product.is_some() {
        sole_user(g, hidden)?
    } else {
        after
    };
    if !matches!(g.node(down_matmul).op, Op::MatMul) {
        return None;
    }
    let ops = g.operands(down_matmul);
    if ops.len() != 2 || ops[0] != hidden {
        return None;
    }
    let w_down = weight_name(g, ops[1])?;
    if rows(program, &w_down)? != ff {
        return None;
    }
    let (output, down_bias) = match bias_add_after(program, down_matmul) {
        Some((add, b)) => (add, Some(b)),
        None => (down_matmul, None),
    };
    Some(Ffn {
        layer: node.scope.layer,
        scope: node.scope.path.clone(),
        input,
        act_matmul,
        pre_activation: pre,
        activation: act,
        func,
        mul_matmul,
        product,
        hidden,
        down_matmul,
        output,
        weights: FfnWeights {
            act: w_act,
            act_bias: b_act,
            mul: w_mul,
            mul_bias: b_mul,
            down: w_down,
            down_bias,
        },
        d,
        ff,
    })
}

/// `v = matmul(x, W)` or `v = matmul(x, W) + b` (either order), the matmul used only
/// there: (matmul, x, W's name, b's name).
fn projection(program: &Program, v: NodeId) -> Option<(NodeId, NodeId, String, Option<String>)> {
    let g = &program.graph;
    let (mm, bias) = match g.node(v).op {
        Op::MatMul => (v, None),
        Op::Add => {
            let ops = g.operands(v);
            let (mm, b) = if matches!(g.node(ops[0]).op, Op::MatMul) {
                (ops[0], ops[1])
            } else {
                (ops[1], ops[0])
            };
            if !matches!(g.node(mm).op, Op::MatMul) || sole_user(g, mm)? != v {
                return None;
            }
            let b = weight_name(g, b)?;
            if program.info.weight(&b)?.shape.len() != 1 {
                return None;
            }
            (mm, Some(b))
        }
        _ => return None,
    };
    let ops = g.operands(mm);
    if ops.len() != 2 {
        return None;
    }
    let w = weight_name(g, ops[1])?;
    if program.info.weight(&w)?.shape.len() != 2 {
        return None;
    }
    if let Some(b) = &bias
        && program.info.weight(b)?.shape[0] != cols(program, &w)?
    {
        return None;
    }
    Some((mm, ops[0], w, bias))
}

/// `(add, b)` when the only user of `v` adds a rank-1 weight `b` to it.
fn bias_add_after(program: &Program, v: NodeId) -> Option<(NodeId, String)> {
    let g = &program.graph;
    let add = sole_user(g, v)?;
    if !matches!(g.node(add).op, Op::Add) {
        return None;
    }
    let ops = g.operands(add);
    let other = if ops[0] == v { ops[1] } else { ops[0] };
    let b = weight_name(g, other)?;
    (program.info.weight(&b)?.shape.len() == 1).then_some((add, b))
}

/// The name of a `weight` node.
fn weight_name(g: &Graph, id: NodeId) -> Option<String> {
    match &g.node(id).op {
        Op::Weight { name } => Some(name.clone()),
        _ => None,
    }
}

/// The one node that uses `id` (`None` when there are several uses or none).
fn sole_user(g: &Graph, id: NodeId) -> Option<NodeId> {
    match g.users(id).as_slice() {
        [u] => Some(*u),
        _ => None,
    }
}

fn rows(program: &Program, w: &str) -> Option<u64> {
    program.info.weight(w)?.shape.first().copied()
}

fn cols(program: &Program, w: &str) -> Option<u64> {
    program.info.weight(w)?.shape.get(1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dim::Dim;
    use crate::graph::Scope;
    use crate::program::WeightInfo;
    use crate::types::{Domain, Elem, Party, ValueType};

    const FX: Elem = Elem::Fixed { scale: 16 };

    struct B {
        p: Program,
    }

    impl B {
        fn new() -> B {
            B {
                p: Program::default(),
            }
        }

        fn ty(shape: &[i64]) -> ValueType {
            let mut s = vec![Dim::SEQ];
            s.extend(shape.iter().map(|&n| Dim::constant(n)));
            ValueType::new(FX, s, Domain::Arith)
        }

        fn weight(&mut self, name: &str, shape: &[u64]) -> NodeId {
            self.p.info.weights.push(WeightInfo {
                name: name.into(),
                tensor: name.into(),
                shape: shape.to_vec(),
                transposed: false,
                party: Party::Server,
            });
            let ty = ValueType::new(
                FX,
                shape.iter().map(|&n| Dim::constant(n as i64)).collect(),
                Domain::Private(Party::Server),
            );
            self.p.graph.add(
                Op::Weight { name: name.into() },
                &[],
                ty,
                Scope {
                    path: "l.0".into(),
                    layer: Some(0),
                    origin: String::new(),
                },
            )
        }

        fn op(&mut self, op: Op, args: &[NodeId], width: i64) -> NodeId {
            let scope = Scope {
                path: "l.0".into(),
                layer: Some(0),
                origin: String::new(),
            };
            self.p.graph.add(op, args, Self::ty(&[width]), scope)
        }

        fn input(&mut self, d: i64) -> NodeId {
            self.op(
                Op::Input {
                    name: "x".into(),
                    party: Party::Client,
                },
                &[],
                d,
            )
        }

        fn output(&mut self, v: NodeId, d: i64) {
            self.op(
                Op::Output {
                    name: "y".into(),
                    party: Party::Client,
                },
                &[v],
                d,
            );
        }
    }

    /// relu(x·W1 + b1)·W2 + b2, with the bias add's operands in `swap` order.
    fn relu_ffn(swap: bool) -> (Program, NodeId) {
        let mut b = B::new();
        let x = b.input(4);
        let w1 = b.weight("w1", &[4, 8]);
        let b1 = b.weight("b1", &[8]);
        let w2 = b.weight("w2", &[8, 4]);
        let b2 = b.weight("b2", &[4]);
        let mm = b.op(Op::MatMul, &[x, w1], 8);
        let add = if swap {
            b.op(Op::Add, &[b1, mm], 8)
        } else {
            b.op(Op::Add, &[mm, b1], 8)
        };
        let r = b.op(
            Op::Unary {
                func: UnaryFn::Relu,
            },
            &[add],
            8,
        );
        let down = b.op(Op::MatMul, &[r, w2], 4);
        let out = b.op(Op::Add, &[down, b2], 4);
        b.output(out, 4);
        (b.p, x)
    }

    #[test]
    fn finds_a_relu_ffn_with_biases_in_either_order() {
        for swap in [false, true] {
            let (p, x) = relu_ffn(swap);
            let f = find_ffns(&p);
            assert_eq!(f.len(), 1, "swap = {swap}");
            let f = &f[0];
            assert_eq!(f.input, x);
            assert_eq!(f.func, UnaryFn::Relu);
            assert_eq!(f.weights.act, "w1");
            assert_eq!(f.weights.act_bias.as_deref(), Some("b1"));
            assert_eq!(f.weights.down, "w2");
            assert_eq!(f.weights.down_bias.as_deref(), Some("b2"));
            assert_eq!((f.d, f.ff, f.layer), (4, 8, Some(0)));
            assert_eq!(f.hidden, f.activation);
            assert!(!f.is_gated());
        }
    }

    /// (silu(x·W1) ⊙ (x·W3))·W2 with the product's operands in `swap` order; `leak`
    /// gives the activation a second user.
    fn gated(swap: bool, leak: bool, other_x: bool) -> Program {
        let mut b = B::new();
        let x = b.input(4);
        let x2 = if other_x { b.op(Op::Neg, &[x], 4) } else { x };
        let w1 = b.weight("w1", &[4, 8]);
        let w3 = b.weight("w3", &[4, 8]);
        let w2 = b.weight("w2", &[8, 4]);
        let m1 = b.op(Op::MatMul, &[x, w1], 8);
        let s = b.op(
            Op::Unary {
                func: UnaryFn::Silu,
            },
            &[m1],
            8,
        );
        let m3 = b.op(Op::MatMul, &[x2, w3], 8);
        let prod = if swap {
            b.op(Op::Mul, &[m3, s], 8)
        } else {
            b.op(Op::Mul, &[s, m3], 8)
        };
        let down = b.op(Op::MatMul, &[prod, w2], 4);
        b.output(down, 4);
        if leak {
            b.output(s, 8);
        }
        b.p
    }

    #[test]
    fn finds_a_gated_ffn_and_names_the_activation_side() {
        for swap in [false, true] {
            let p = gated(swap, false, false);
            let f = find_ffns(&p);
            assert_eq!(f.len(), 1);
            let f = &f[0];
            assert!(f.is_gated());
            assert_eq!(f.func, UnaryFn::Silu);
            assert_eq!(f.weights.act, "w1");
            assert_eq!(f.weights.mul.as_deref(), Some("w3"));
            assert_eq!(f.weights.down, "w2");
            assert_eq!(f.hidden, f.product.unwrap());
            assert_eq!(f.output, f.down_matmul);
        }
    }

    #[test]
    fn rejects_an_activation_read_elsewhere_or_factors_of_different_inputs() {
        assert!(find_ffns(&gated(false, true, false)).is_empty());
        assert!(find_ffns(&gated(false, false, true)).is_empty());
    }

    #[test]
    fn ignores_other_activations() {
        let mut b = B::new();
        let x = b.input(4);
        let w1 = b.weight("w1", &[4, 8]);
        let w2 = b.weight("w2", &[8, 4]);
        let mm = b.op(Op::MatMul, &[x, w1], 8);
        let t = b.op(
            Op::Unary {
                func: UnaryFn::Tanh,
            },
            &[mm],
            8,
        );
        let down = b.op(Op::MatMul, &[t, w2], 4);
        b.output(down, 4);
        assert!(find_ffns(&b.p).is_empty());
    }
}
