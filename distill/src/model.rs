//! The teacher and student programs of one model and the tensors they compute with.

use crate::DistillError;
use comet_compiler::passes::approximate;
use comet_ir::{ApproxConfig, DimEnv, Elem, NodeId, Op, Program};
use comet_runtime::plain;
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;
use std::path::Path;

/// Weights by qualified weight name (`decoder.0.wq`), as the interpreter takes them.
pub type Weights = HashMap<String, ArrayD<f64>>;

/// The teacher (exact) and student (approximated) programs of a language model.
#[derive(Debug, Clone)]
pub struct Models {
    /// The model as written: `lower` only.
    pub teacher: Program,
    /// The model after `approximate` with the student's profile.
    pub student: Program,
    /// What the pass applied (kinds a profile does not define read exact).
    pub approx: ApproxConfig,
    /// The token input's name.
    pub input: String,
    /// The logits output's name.
    pub output: String,
    /// Vocabulary size (the logits' last axis).
    pub vocab: usize,
    /// Residual-stream nodes present in both programs with the same op and shape: the
    /// hidden states of the hidden-state loss.
    pub hidden: Vec<NodeId>,
    /// The teacher with every `transpose` of a weight read from a transposed copy of it
    /// instead (the tied LM head's `transpose(E)`): sampling calls the teacher once per
    /// token, and transposing the embedding at each call took a sixth of a training step.
    pub sampler: Program,
    /// The sampler's extra weights: (name, transposed weight's name).
    pub transposed: Vec<(String, String)>,
}

impl Models {
    /// Compiles `source` (named `path` in diagnostics) into the teacher and the student for
    /// `approx`.
    ///
    /// # Errors
    /// A source error, or a model without one token input and one `[seq, vocab]` output.
    pub fn new(source: &str, path: &str, approx: ApproxConfig) -> Result<Models, DistillError> {
        let render = |e: comet_compiler::CompileError| match e {
            comet_compiler::CompileError::Source(d) => DistillError::Compile(d.render_plain()),
            other => DistillError::Compile(format!("{path}: {other}")),
        };
        let teacher = comet_compiler::driver::lower_only(source, path).map_err(render)?;
        let mut student = teacher.clone();
        let applied = approximate::effective(approx);
        student.options.approx = applied;
        approximate::run(&mut student);
        comet_ir::verify(&student).map_err(|e| {
            DistillError::Compile(format!("{path}: internal error after `approximate`: {e}"))
        })?;
        crate::grad::check_differentiable(&student)?;
        let bad = |message: String| DistillError::Model {
            model: path.to_string(),
            message,
        };
        let inputs: Vec<(NodeId, String)> = teacher
            .graph
            .ids()
            .filter_map(|id| match &teacher.graph.node(id).op {
                Op::Input { name, .. } => Some((id, name.clone())),
                _ => None,
            })
            .collect();
        let [(input_id, input)] = inputs.as_slice() else {
            return Err(bad(format!(
                "`comet distill` trains language models with one token input; this one has {} \
                 inputs",
                inputs.len()
            )));
        };
        if teacher.graph.node(*input_id).ty.elem != Elem::Index {
            return Err(bad(format!(
                "input `{input}` is not a token sequence (token[seq])"
            )));
        }
        let outputs: Vec<(NodeId, String)> = teacher
            .graph
            .ids()
            .filter_map(|id| match &teacher.graph.node(id).op {
                Op::Output { name, .. } => Some((id, name.clone())),
                _ => None,
            })
            .collect();
        let [(out_id, output)] = outputs.as_slice() else {
            return Err(bad(format!(
                "`comet distill` needs exactly one output (the logits); this model has {}",
                outputs.len()
            )));
        };
        let env = DimEnv { seq: 3, past: 0 };
        let shape = comet_runtime::exec::sources::dims(&teacher.graph.node(*out_id).ty.shape, env);
        let vocab = match shape.as_slice() {
            [3, v] => *v,
            s => {
                return Err(bad(format!(
                    "output `{output}` must be logits of shape [seq, vocab], got {s:?} at seq 3"
                )));
            }
        };
        let hidden = residual_nodes(&teacher, &student, env);
        let (sampler, transposed) = pre_transposed(&teacher);
        Ok(Models {
            sampler,
            transposed,
            input: input.clone(),
            output: output.clone(),
            vocab,
            approx: applied,
            hidden,
            teacher,
            student,
        })
    }

    /// Loads the checkpoint's weights (every weight the model declares, as f64).
    ///
    /// # Errors
    /// [`DistillError::Weights`]: unreadable, a tensor missing or of the wrong shape.
    pub fn load(&self, path: &Path) -> Result<Weights, DistillError> {
        comet_runtime::weights::load(path, &self.teacher.info.weights).map_err(|e| {
            DistillError::Weights {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })
    }

    /// The teacher's weights with the transposed copies [`Models::sampler`] reads.
    pub fn sampling_weights(&self, teacher: &Weights) -> Weights {
        let mut w = teacher.clone();
        for (name, of) in &self.transposed {
            if let Some(x) = teacher.get(of) {
                let mut t = x.view();
                let r = t.ndim();
                t.swap_axes(r - 2, r - 1);
                w.insert(name.clone(), t.as_standard_layout().into_owned());
            }
        }
        w
    }

    /// The sampler if `weights` hold its transposed copies, else the teacher.
    pub fn sampler_for(&self, weights: &Weights) -> &Program {
        if self.transposed.iter().all(|(n, _)| weights.contains_key(n)) {
            &self.sampler
        } else {
            &self.teacher
        }
    }

    /// The token input holding `ids`.
    pub fn tokens(&self, ids: &[u64]) -> HashMap<String, ArrayD<f64>> {
        let v =
            ArrayD::from_shape_vec(IxDyn(&[ids.len()]), ids.iter().map(|t| *t as f64).collect())
                .expect("1-D");
        HashMap::from([(self.input.clone(), v)])
    }

    /// The logits `[seq, vocab]` of `program` on `ids` from position `past` on, with `cache`.
    ///
    /// # Errors
    /// The interpreter's error.
    pub fn logits(
        &self,
        program: &Program,
        weights: &Weights,
        ids: &[u64],
        past: u64,
        cache: &mut plain::Cache,
    ) -> Result<ArrayD<f64>, String> {
        let env = DimEnv {
            seq: ids.len() as u64,
            past,
        };
        let mut out = plain::eval(program, &self.tokens(ids), weights, env, cache)
            .map_err(|e| e.to_string())?;
        out.remove(&self.output)
            .ok_or_else(|| format!("no output `{}`", self.output))
    }

    /// The node of the logits output in `program`.
    pub fn output_node(&self, program: &Program) -> NodeId {
        program
            .graph
            .ids()
            .find(|id| matches!(&program.graph.node(*id).op, Op::Output { name, .. } if *name == self.output))
            .expect("checked in Models::new")
    }
}

/// `program` with each `transpose` of a weight turned into a weight of its own, named
/// `<weight>.T` (made unique), and the list of (new name, transposed weight).
fn pre_transposed(program: &Program) -> (Program, Vec<(String, String)>) {
    let mut p = program.clone();
    let taken: std::collections::HashSet<String> = p
        .graph
        .ids()
        .filter_map(|id| match &p.graph.node(id).op {
            Op::Weight { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let mut made = Vec::new();
    let mut ids: Vec<NodeId> = p.graph.ids().collect();
    ids.sort();
    for id in ids {
        if p.graph.node(id).op != Op::Transpose {
            continue;
        }
        let [x] = p.graph.operands(id)[..] else {
            continue;
        };
        let Op::Weight { name } = &p.graph.node(x).op else {
            continue;
        };
        if p.graph.node(x).ty.shape.len() != 2 {
            continue;
        }
        let mut new = format!("{name}.T");
        while taken.contains(&new) || made.iter().any(|(n, _): &(String, String)| *n == new) {
            new.push('_');
        }
        made.push((new.clone(), name.clone()));
        p.graph.set_operands(id, &[]);
        p.graph.node_mut(id).op = Op::Weight { name: new };
    }
    (p, made)
}

/// The residual stream: `add` nodes of the model's own code (no composite's origin) shaped
/// like the embedding `[seq, d]`, present in both programs with the same op and shape. The
/// pass `approximate` keeps the ids of the nodes it does not replace, so these are the same
/// values in both.
fn residual_nodes(teacher: &Program, student: &Program, env: DimEnv) -> Vec<NodeId> {
    let dims =
        |p: &Program, id| comet_runtime::exec::sources::dims(&p.graph.node(id).ty.shape, env);
    let width = teacher
        .graph
        .ids()
        .find(|id| matches!(teacher.graph.node(*id).op, Op::Embed))
        .map(|id| dims(teacher, id));
    let Some(width) = width else {
        return Vec::new();
    };
    let mut ids: Vec<NodeId> = teacher
        .graph
        .ids()
        .filter(|id| {
            let n = teacher.graph.node(*id);
            matches!(n.op, Op::Add)
                && n.scope.origin.is_empty()
                && dims(teacher, *id) == width
                && student.graph.contains(*id)
                && student.graph.node(*id).op == n.op
                && student.graph.operands(*id) == teacher.graph.operands(*id)
        })
        .collect();
    ids.sort();
    ids
}
